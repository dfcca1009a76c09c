//! Raw TOML plus `PORTER_` environment overrides, to a validated [`Config`].
//!
//! The file (read by the `config` crate) and the environment (`PORTER_DATA_DIR`
//! for a top-level key, `PORTER_MQTT__URL` for a nested one,
//! `PORTER_DOORS__0__UNLOCK_MS` for a key of an entry) make one tree;
//! [`Section`] then walks it, collecting every error with its key path and a
//! hint, and rejecting unknown keys. After this module, nothing checks the
//! config again: a [`Config`] is valid by construction. Every key is
//! documented, with its default, in docs/config.md.
//!
//! Layout: each section is read and checked by its own config type, in
//! `config/<file>.rs`: `store.rs` `[store]`; `access.rs` `[keys]`,
//! `[keypad]`, `[lockout]` and `[roles]`; `enroll.rs` `[enroll]`; `clock.rs`
//! `[clock]`; `service.rs` `[audit]`, `[admin]` and `[demo]`; `mqtt.rs`
//! `[mqtt]`; `home_assistant.rs` `[home_assistant]`; `[gpio]` is read here by porter-drivers' `GpioSettings`; `devices.rs` `[[devices]]` and `[[doors]]` (each device's own
//! keys are its kind's, in porter-drivers); `env.rs` the `PORTER_` overrides.
//! This module reads the top-level keys and calls them in the file's order,
//! which is the order errors are listed in. The config sits below the runtime
//! and provisioning: it imports only `access`, `store` and porter-drivers.

mod access;
pub mod clock;
mod devices;
pub mod enroll;
mod env;
mod home_assistant;
mod mqtt;
mod service;
mod store;

pub use self::access::{KeypadConfig, KeysConfig};
pub use self::clock::{ClockConfig, SyncSource, Unsynchronized};
pub use self::devices::{DeviceConfig, DoorConfig, Purpose, MAX_DOORS};
pub use self::enroll::EnrollConfig;
pub use self::home_assistant::HomeAssistantConfig;
pub use self::mqtt::{parse_mqtt_url, parse_public_key, MqttConfig, PortalKey};
pub use self::service::{AdminConfig, AuditConfig, DemoConfig};
pub use self::store::StoreConfig;

use crate::access::lockout::LockoutPolicy;
use env::{apply_env, parse_toml, TOP_LEVEL};
use porter_drivers::settings::{ConfigErrors, Section};
use std::path::{Path, PathBuf};

/// The demo configuration embedded in the binary (`porterd --demo`).
pub const DEMO_TOML: &str = include_str!("../../configs/demo.toml");

/// The default config path.
pub const DEFAULT_PATH: &str = "/etc/porter/porter.toml";

#[derive(Debug, Clone)]
pub struct Config {
    pub site: String,
    pub controller: String,
    pub data_dir: PathBuf,
    pub secret_file: PathBuf,
    /// The controller's Ed25519 key pair (PKCS#8 PEM); `identity.pem` beside
    /// `secret_file` unless set.
    pub identity_file: PathBuf,
    pub timezone: chrono_tz::Tz,
    pub log_level: String,
    pub store: StoreConfig,
    pub keys: KeysConfig,
    pub keypad: KeypadConfig,
    pub lockout: LockoutPolicy,
    pub enroll: EnrollConfig,
    /// Whether the clock is synchronised, and what to do while it is not.
    pub clock: ClockConfig,
    /// Each role's default schedule (`[roles.<role>] schedule`).
    pub role_schedules: crate::access::RoleSchedules,
    /// The roles whose cards open only with their PIN (`[roles.<role>] card_plus_pin`).
    pub card_plus_pin_roles: Vec<crate::access::Role>,
    pub audit: AuditConfig,
    pub admin: AdminConfig,
    pub mqtt: Option<MqttConfig>,
    /// `[home_assistant]`: MQTT discovery, off by default.
    pub home_assistant: HomeAssistantConfig,
    pub demo: DemoConfig,
    /// `[gpio]`: which GPIO backend the GPIO kinds use, on which chip.
    pub gpio: porter_drivers::gpio::GpioSettings,
    pub doors: Vec<DoorConfig>,
    pub devices: Vec<DeviceConfig>,
    /// `PORTER_*` variables that name no config key and were ignored.
    pub env_ignored: Vec<String>,
}

impl Config {
    /// Loads `path` with `PORTER_` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(
                path.display().to_string(),
                format!("cannot read the config file: {e}"),
                Some(format!("pass an existing file with --config (the default is {DEFAULT_PATH})")),
            );
            errs
        })?;
        Self::from_toml(&text)
    }

    /// Parses TOML text with `PORTER_` environment overrides.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        Self::from_toml_with_env(text, std::env::vars())
    }

    /// Parses TOML text with the overrides found in `env`.
    ///
    /// Each `PORTER_` variable is applied to the file's tree by [`apply_env`]
    /// before anything is checked: `PORTER_DATA_DIR`, `PORTER_MQTT__URL`, or a
    /// key of a `[[doors]]` or `[[devices]]` entry by its index,
    /// `PORTER_DEVICES__1__DOOR`. A variable whose first part names no
    /// top-level key (`PORTER_LOG`) is not Porter's: it is ignored and listed
    /// in [`Config::env_ignored`] rather than failing the config. An error
    /// about a key that a variable set ends with `(from PORTER_...)`.
    pub fn from_toml_with_env(text: &str, env: impl Iterator<Item = (String, String)>) -> Result<Config, ConfigErrors> {
        let mut raw = parse_toml(text).map_err(|e| {
            let mut errs = ConfigErrors::default();
            errs.push(
                "(file)",
                format!("not valid TOML: {e}"),
                Some("check quoting and brackets near the line named".into()),
            );
            errs
        })?;
        let mut vars: Vec<(String, String)> = env.filter(|(name, _)| name.starts_with("PORTER_")).collect();
        vars.sort();
        let mut errs = ConfigErrors::default();
        let mut ignored = Vec::new();
        // The key path each variable set (or the section it created), and the variable.
        let mut set_by: Vec<(String, String)> = Vec::new();
        for (name, value) in vars {
            let first = name["PORTER_".len()..].split("__").next().unwrap_or_default().to_ascii_lowercase();
            if !TOP_LEVEL.contains(&first.as_str()) {
                ignored.push(name);
            } else if let Some(path) = apply_env(&mut raw, &name, &value, &mut errs) {
                set_by.push((path, name));
            }
        }
        let from_env = errs.len();
        let cfg = validate(&raw, &mut errs);
        for e in &mut errs.0[from_env..] {
            let within =
                |p: &str| e.path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
            // The most specific override that the key lies in.
            if let Some((_, name)) = set_by.iter().filter(|(p, _)| within(p)).max_by_key(|(p, _)| p.len()) {
                e.message.push_str(&format!(" (from {name})"));
            }
        }
        match cfg {
            Some(mut c) if errs.is_empty() => {
                c.env_ignored = ignored;
                Ok(c)
            }
            _ => Err(errs),
        }
    }
}

pub(crate) fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The top-level keys: the MQTT topic segments, the paths, the time zone
/// and the log level.
struct TopKeys {
    site: Option<String>,
    controller: Option<String>,
    data_dir: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    identity_file: Option<PathBuf>,
    timezone: Option<chrono_tz::Tz>,
    log_level: String,
}

impl TopKeys {
    fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let segment_hint = "letters, digits, `-` and `_` only: it is an MQTT topic segment";
        let segment = |top: &mut Section<'_>, key: &'static str, errs: &mut ConfigErrors| {
            let v = top.string(key, &format!("set {key} = \"...\" ({segment_hint})"), errs);
            if let Some(s) = &v {
                if !valid_id(s) {
                    errs.push(key, format!("`{s}` cannot be used"), Some(segment_hint.into()));
                }
            }
            v
        };
        let site = segment(top, "site", errs);
        let controller = segment(top, "controller", errs);
        if controller.as_deref() == Some("all") {
            errs.push(
                "controller",
                "`all` is reserved: porter/{site}/all/cmd reaches every controller of the site",
                Some("give this controller its own name, such as \"room-1\"".into()),
            );
        }
        let data_dir = top.string("data_dir", "set data_dir = \"/var/lib/porter\"", errs).map(PathBuf::from);
        let secret_file =
            top.string("secret_file", "set secret_file = \"/var/lib/porter/device.key\"", errs).map(PathBuf::from);
        // Beside the device secret by default: the folder that already
        // keeps a secret with the daemon's user and mode 0600.
        let identity_file = top
            .opt_path("identity_file", "set identity_file = \"/var/lib/porter/identity.pem\", or leave it out", errs)
            .or_else(|| secret_file.as_ref().map(|f| f.with_file_name("identity.pem")));
        let tz_name = top.string_or("timezone", "UTC", errs);
        let timezone = tz_name.parse::<chrono_tz::Tz>().map_err(|_| {
            errs.push(
                "timezone",
                format!("unknown time zone `{tz_name}`"),
                Some("use an IANA name such as \"America/New_York\" or \"UTC\"".into()),
            );
        });
        let log_level = top.string_or("log_level", "info", errs);
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            errs.push(
                "log_level",
                format!("unknown level `{log_level}`"),
                Some("use error, warn, info, debug or trace".into()),
            );
        }

        TopKeys { site, controller, data_dir, secret_file, identity_file, timezone: timezone.ok(), log_level }
    }
}

/// Every section, in the file's order: each one's errors are listed in it.
fn validate(raw: &serde_json::Value, errs: &mut ConfigErrors) -> Option<Config> {
    let mut top = Section::new("", raw, errs)?;
    let keys_top = TopKeys::parse(&mut top, errs);
    let store = StoreConfig::parse(&mut top, errs);
    let keys = KeysConfig::parse(&mut top, errs);
    let keypad = KeypadConfig::parse(&mut top, errs);
    let lockout = access::lockout(&mut top, errs);
    let enroll = EnrollConfig::parse(&mut top, errs);
    let roles = access::RolesConfig::parse(&mut top, errs);
    let clock = ClockConfig::parse(&mut top, errs);
    let audit = AuditConfig::parse(&mut top, errs);
    let admin = AdminConfig::parse(&mut top, errs);
    let mut mqtt = MqttConfig::parse(&mut top, errs);
    let home_assistant = HomeAssistantConfig::parse(&mut top, errs);
    let demo = DemoConfig::parse(&mut top, errs);
    let gpio = match top.opt_table("gpio", errs) {
        Some(mut s) => {
            let g = porter_drivers::gpio::GpioSettings::parse(&mut s, errs);
            s.finish(errs);
            g
        }
        None => porter_drivers::gpio::GpioSettings::default(),
    };
    let wiring = devices::RawWiring::read(&mut top, errs);
    top.finish(errs);
    let wiring = wiring.resolve(errs);
    let door_ids: Vec<String> = wiring.doors.iter().map(|d| d.id.clone()).collect();
    home_assistant.check(&door_ids, mqtt.is_some(), errs);

    let TopKeys { site, controller, data_dir, secret_file, identity_file, timezone, log_level } = keys_top;
    if let (Some(m), Some(site), Some(controller)) = (mqtt.as_mut(), &site, &controller) {
        if m.client_id.is_empty() {
            m.client_id = format!("porter-{site}-{controller}");
        }
    }
    Some(Config {
        site: site?,
        controller: controller?,
        data_dir: data_dir?,
        secret_file: secret_file?,
        identity_file: identity_file?,
        timezone: timezone?,
        log_level,
        store,
        keys,
        keypad,
        lockout,
        enroll,
        role_schedules: roles.schedules,
        card_plus_pin_roles: roles.card_plus_pin,
        clock,
        audit,
        admin,
        mqtt,
        home_assistant,
        demo,
        gpio,
        doors: wiring.doors,
        devices: wiring.devices,
        env_ignored: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
