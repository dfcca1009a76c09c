//! Home Assistant MQTT discovery (docs/mqtt.md, "Home Assistant"): retained
//! config messages under Home Assistant's discovery prefix, one device per
//! controller, and the entities' state topics under `P/ha/`.
//!
//! Everything here is plain: it builds topics and payloads and judges a
//! command; the MQTT session publishes them. Per door: a `lock` (its state
//! from the door task's [`DoorView`]: locked, unlocked, or jammed while the
//! lock output fails), a `binary_sensor` (device_class door) where a contact
//! is wired, an `event` entity for access decisions (holder and reason only).
//! For the controller: diagnostic entities read from the retained status.
//! Availability is the status's `state`, so the Last Will makes every
//! entity unavailable.
//!
//! Commands: Home Assistant cannot sign, so `require_signed` does not apply
//! to its topic; it may do one thing only, a momentary unlock of a door
//! listed in `home_assistant.unlock_doors`, recorded `by = "home_assistant"`.

use crate::config::HomeAssistantConfig;
use serde_json::{json, Value};

/// The lock's state as the door task last drove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockState {
    #[default]
    Locked,
    Unlocked,
    /// The lock output failed (`door.lock_failed`) and has not worked since.
    Jammed,
}

/// What a door shows Home Assistant, kept by the door task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DoorView {
    pub lock: LockState,
    /// The contact's level (`true` open); `None` without one or before its first report.
    pub contact: Option<bool>,
}

/// Every door's view, by door index.
pub type DoorViews = tokio::sync::watch::Receiver<Vec<DoorView>>;

/// A door as discovery needs it.
#[derive(Debug, Clone)]
pub struct HaDoor {
    pub id: String,
    pub has_contact: bool,
}

/// Discovery for one controller.
pub struct Discovery {
    cfg: HomeAssistantConfig,
    /// `porter/{site}/{controller}`.
    base: String,
    /// The node id in discovery topics and the device identifier.
    node: String,
    device_name: String,
    doors: Vec<HaDoor>,
}

/// What Home Assistant asked of a door.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// A momentary unlock of door `0` (an index), allowed.
    Unlock(usize),
    /// Refused: the reason, for the log.
    Refused(&'static str),
}

/// `text` as a discovery topic segment: `[a-zA-Z0-9_-]` only.
fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

impl Discovery {
    pub fn new(cfg: HomeAssistantConfig, site: &str, controller: &str, doors: Vec<HaDoor>) -> Discovery {
        Discovery {
            cfg,
            base: format!("porter/{site}/{controller}"),
            node: slug(&format!("porter_{site}_{controller}")),
            device_name: format!("Porter {site} {controller}"),
            doors,
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn status_topic(&self) -> String {
        format!("{}/status", self.base)
    }

    pub fn lock_topic(&self, door: usize) -> String {
        format!("{}/ha/{}/lock", self.base, slug(&self.doors[door].id))
    }

    pub fn contact_topic(&self, door: usize) -> String {
        format!("{}/ha/{}/contact", self.base, slug(&self.doors[door].id))
    }

    pub fn access_topic(&self, door: usize) -> String {
        format!("{}/ha/{}/access", self.base, slug(&self.doors[door].id))
    }

    pub fn command_topic(&self, door: usize) -> String {
        format!("{}/ha/{}/set", self.base, slug(&self.doors[door].id))
    }

    /// The topics Home Assistant commands on (subscribed when enabled).
    pub fn command_topics(&self) -> Vec<String> {
        (0..self.doors.len()).map(|i| self.command_topic(i)).collect()
    }

    fn config_topic(&self, component: &str, object: &str) -> String {
        format!("{}/{component}/{}/{}/config", self.cfg.discovery_prefix, self.node, slug(object))
    }

    fn device(&self) -> Value {
        json!({
            "identifiers": [self.node],
            "name": self.device_name,
            "manufacturer": "Porter",
            "model": "porterd",
            "sw_version": env!("CARGO_PKG_VERSION"),
        })
    }

    /// The common part of every entity: device, origin, availability from
    /// the retained status (the Last Will says offline), QoS 1.
    fn entity(&self, unique: &str, name: &str) -> serde_json::Map<String, Value> {
        let v = json!({
            "unique_id": format!("{}_{}", self.node, slug(unique)),
            "name": name,
            "device": self.device(),
            "origin": {"name": "Porter", "sw_version": env!("CARGO_PKG_VERSION")},
            "availability": [{
                "topic": self.status_topic(),
                "value_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }],
            "qos": 1,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        }
    }

    /// Every retained config message: (topic, JSON payload).
    pub fn configs(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (i, d) in self.doors.iter().enumerate() {
            let mut lock = self.entity(&format!("{}_lock", d.id), &format!("{} lock", d.id));
            lock.extend(
                json!({
                    "state_topic": self.lock_topic(i),
                    "command_topic": self.command_topic(i),
                    "payload_lock": "LOCK",
                    "payload_unlock": "UNLOCK",
                    "payload_open": "OPEN",
                    "state_locked": "LOCKED",
                    "state_unlocked": "UNLOCKED",
                    "state_jammed": "JAMMED",
                    "optimistic": false,
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            );
            out.push((self.config_topic("lock", &format!("{}_lock", d.id)), Value::Object(lock)));
            if d.has_contact {
                let mut c = self.entity(&format!("{}_door", d.id), &format!("{} door", d.id));
                c.insert("state_topic".into(), json!(self.contact_topic(i)));
                c.insert("device_class".into(), json!("door"));
                c.insert("payload_on".into(), json!("ON"));
                c.insert("payload_off".into(), json!("OFF"));
                out.push((self.config_topic("binary_sensor", &format!("{}_door", d.id)), Value::Object(c)));
            }
            let mut e = self.entity(&format!("{}_access", d.id), &format!("{} access", d.id));
            e.insert("state_topic".into(), json!(self.access_topic(i)));
            e.insert("event_types".into(), json!(["granted", "denied"]));
            out.push((self.config_topic("event", &format!("{}_access", d.id)), Value::Object(e)));
        }
        let diag = |unique: &str, name: &str, extra: Value| {
            let mut m = self.entity(unique, name);
            m.insert("state_topic".into(), json!(self.status_topic()));
            m.insert("entity_category".into(), json!("diagnostic"));
            m.extend(extra.as_object().cloned().unwrap_or_default());
            Value::Object(m)
        };
        let mut online = diag(
            "online",
            "Online",
            json!({"device_class": "connectivity", "value_template": "{{ value_json.state }}",
                   "payload_on": "online", "payload_off": "offline"}),
        );
        // The controller's own connectivity is shown, not hidden, when it is offline.
        if let Some(m) = online.as_object_mut() {
            m.remove("availability");
        }
        out.push((self.config_topic("binary_sensor", "online"), online));
        out.push((
            self.config_topic("binary_sensor", "clock_synchronized"),
            diag(
                "clock_synchronized",
                "Clock synchronized",
                json!({"value_template": "{{ 'ON' if value_json.clock.synchronized else 'OFF' }}",
                       "payload_on": "ON", "payload_off": "OFF"}),
            ),
        ));
        out.push((
            self.config_topic("sensor", "outbox"),
            diag(
                "outbox",
                "Events not yet confirmed",
                json!({"value_template": "{{ value_json.outbox }}", "state_class": "measurement", "unit_of_measurement": "events"}),
            ),
        ));
        out.push((
            self.config_topic("sensor", "devices_offline"),
            diag(
                "devices_offline",
                "Devices offline",
                json!({"value_template": "{{ (value_json.devices | default({})).values() | select('equalto', 'offline') | list | count }}",
                       "state_class": "measurement", "unit_of_measurement": "devices"}),
            ),
        ));
        out.push((
            self.config_topic("sensor", "decision_latency_p99"),
            diag(
                "decision_latency_p99",
                "Decision latency p99",
                json!({"value_template": "{{ ((value_json.decision_latency.p99_us or 0) / 1000) | round(3) }}",
                       "state_class": "measurement", "unit_of_measurement": "ms", "device_class": "duration"}),
            ),
        ));
        out
    }

    /// The lock's state payload.
    pub fn lock_state(v: &DoorView) -> &'static str {
        match v.lock {
            LockState::Locked => "LOCKED",
            LockState::Unlocked => "UNLOCKED",
            LockState::Jammed => "JAMMED",
        }
    }

    /// The state messages (topic, payload, retained) of door `i` for `view`,
    /// as far as it differs from `before`.
    pub fn states(&self, i: usize, view: &DoorView, before: Option<&DoorView>) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        if before.map(|b| b.lock) != Some(view.lock) {
            out.push((self.lock_topic(i), Self::lock_state(view)));
        }
        if self.doors.get(i).is_some_and(|d| d.has_contact) && before.map(|b| b.contact) != Some(view.contact) {
            if let Some(open) = view.contact {
                out.push((self.contact_topic(i), if open { "ON" } else { "OFF" }));
            }
        }
        out
    }

    /// An access decision as the door's event entity's message: the event
    /// type, holder and reason; never a key, PIN or token.
    pub fn access(&self, event: &Value) -> Option<(String, Value)> {
        let kind = match event["type"].as_str()? {
            "access.granted" => "granted",
            "access.denied" => "denied",
            _ => return None,
        };
        let door = self.doors.iter().position(|d| event["door"].as_str() == Some(d.id.as_str()))?;
        let payload = json!({
            "event_type": kind,
            "holder": event["holder"],
            "reason": event["reason"],
            "device": event["device"],
        });
        Some((self.access_topic(door), payload))
    }

    /// Judges a message on a command topic.
    pub fn asked(&self, topic: &str, payload: &[u8]) -> Option<Asked> {
        let door = (0..self.doors.len()).find(|&i| self.command_topic(i) == topic)?;
        Some(match payload {
            b"UNLOCK" | b"OPEN" if self.cfg.unlock_doors.contains(&self.doors[door].id) => Asked::Unlock(door),
            b"UNLOCK" | b"OPEN" => {
                Asked::Refused("the door is not in home_assistant.unlock_doors: Home Assistant may not unlock it")
            }
            b"LOCK" => Asked::Refused("the lock relocks by itself after the unlock time; LOCK does nothing"),
            _ => Asked::Refused("not LOCK, UNLOCK or OPEN"),
        })
    }

    pub fn door_id(&self, i: usize) -> &str {
        &self.doors[i].id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(enabled: bool, unlock: &[&str]) -> Discovery {
        let cfg = HomeAssistantConfig {
            enabled,
            discovery_prefix: "homeassistant".into(),
            unlock_doors: unlock.iter().map(|s| s.to_string()).collect(),
        };
        let doors = vec![
            HaDoor { id: "main".into(), has_contact: true },
            HaDoor { id: "back.door".into(), has_contact: false },
        ];
        Discovery::new(cfg, "oak", "room-1", doors)
    }

    #[test]
    fn entities_per_door_and_for_the_controller() {
        let topics: Vec<String> = d(true, &[]).configs().into_iter().map(|(t, _)| t).collect();
        assert!(topics.contains(&"homeassistant/lock/porter_oak_room-1/main_lock/config".to_string()));
        assert!(topics.contains(&"homeassistant/binary_sensor/porter_oak_room-1/main_door/config".to_string()));
        assert!(topics.contains(&"homeassistant/lock/porter_oak_room-1/back_door_lock/config".to_string()));
        assert!(!topics.iter().any(|t| t.contains("back_door_door")), "no contact, no door sensor");
        assert_eq!(topics.len(), 3 + 2 + 5);
    }

    #[test]
    fn only_a_listed_door_is_unlocked_and_only_momentarily() {
        let x = d(true, &["main"]);
        assert_eq!(x.asked("porter/oak/room-1/ha/main/set", b"OPEN"), Some(Asked::Unlock(0)));
        assert_eq!(x.asked("porter/oak/room-1/ha/main/set", b"UNLOCK"), Some(Asked::Unlock(0)));
        assert!(matches!(x.asked("porter/oak/room-1/ha/back_door/set", b"UNLOCK"), Some(Asked::Refused(_))));
        assert!(matches!(x.asked("porter/oak/room-1/ha/main/set", b"LOCK"), Some(Asked::Refused(_))));
        assert_eq!(x.asked("porter/oak/room-1/cmd", b"UNLOCK"), None);
    }

    #[test]
    fn an_access_event_carries_holder_and_reason_never_a_key() {
        let ev = json!({"type": "access.denied", "door": "main", "device": "keypad1", "key": "pin",
                        "holder": null, "reason": "unknown", "seq": 3});
        let (topic, p) = d(true, &[]).access(&ev).unwrap();
        assert_eq!(topic, "porter/oak/room-1/ha/main/access");
        assert_eq!(p, json!({"event_type": "denied", "holder": null, "reason": "unknown", "device": "keypad1"}));
    }
}
