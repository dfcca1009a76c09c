//! `[home_assistant]`: Home Assistant MQTT discovery (docs/config.md,
//! docs/mqtt.md "Home Assistant"). Off unless `enabled = true`; Home
//! Assistant may unlock only the doors listed in `unlock_doors`.

use porter_drivers::settings::{ConfigErrors, Section};

#[derive(Debug, Clone, Default)]
pub struct HomeAssistantConfig {
    pub enabled: bool,
    /// Home Assistant's `discovery_prefix` (its default `homeassistant`).
    pub discovery_prefix: String,
    /// The doors whose lock entity's unlock/open Home Assistant may use:
    /// a momentary `door.unlock`, recorded `by = "home_assistant"`.
    pub unlock_doors: Vec<String>,
}

impl HomeAssistantConfig {
    /// `[home_assistant]` of `top`, or off.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let Some(mut s) = top.opt_table("home_assistant", errs) else {
            return HomeAssistantConfig { discovery_prefix: "homeassistant".into(), ..Default::default() };
        };
        let enabled = s.bool_or("enabled", false, errs);
        let discovery_prefix = s.string_or("discovery_prefix", "homeassistant", errs);
        let ok = !discovery_prefix.is_empty()
            && !discovery_prefix.contains(['+', '#', '\0'])
            && !discovery_prefix.starts_with('/')
            && !discovery_prefix.ends_with('/');
        if !ok {
            errs.push(
                s.key_path("discovery_prefix"),
                format!("`{}` is not an MQTT topic prefix", porter_drivers::logtext::escape(&discovery_prefix)),
                Some("use Home Assistant's discovery prefix, by default discovery_prefix = \"homeassistant\"".into()),
            );
        }
        let unlock_doors = s.opt_strings("unlock_doors", errs).unwrap_or_default();
        s.finish(errs);
        HomeAssistantConfig { enabled, discovery_prefix, unlock_doors }
    }

    /// Checks what needs the rest of the config: the doors named exist, and
    /// discovery has a broker to go to.
    pub(crate) fn check(&self, doors: &[String], mqtt: bool, errs: &mut ConfigErrors) {
        for (i, d) in self.unlock_doors.iter().enumerate() {
            if !doors.contains(d) {
                errs.push(
                    format!("home_assistant.unlock_doors[{i}]"),
                    format!("no door `{}`", porter_drivers::logtext::escape(d)),
                    Some(format!("name a [[doors]] id: {}", doors.join(", "))),
                );
            }
        }
        if self.enabled && !mqtt {
            errs.push(
                "home_assistant.enabled",
                "Home Assistant discovery needs a broker, and there is no [mqtt] section",
                Some("add [mqtt] with the broker Home Assistant uses, or set enabled = false".into()),
            );
        }
    }
}
