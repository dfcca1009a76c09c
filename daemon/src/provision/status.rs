//! The retained status document on `{prefix}/status` (docs/mqtt.md,
//! "Status"), as one type.
//!
//! The fields are declared in the order they appear on the wire: sorted by
//! name, as the document has always been (it was a JSON map, whose keys
//! serde_json sorts). A test pins the bytes.

use serde::Serialize;
use std::collections::BTreeMap;

/// What the controller reports about itself. The MQTT session adds `state`
/// (online or offline) when it publishes.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub cards: u64,
    pub clock: ClockStatus,
    /// From a key's last byte or a card's arrival to the lock command, over
    /// the recent grants (docs/mqtt.md, "Status").
    pub decision_latency: LatencyFigures,
    /// Device id to `online`, `offline` or `unknown`; absent if the map
    /// could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<BTreeMap<String, &'static str>>,
    /// The generation of the last committed full sync (0 before any).
    pub generation: u64,
    pub holders: u64,
    /// The controller's public key, which signs every reply, event and
    /// status (docs/mqtt.md, "The controller's signature").
    pub identity: crate::store::identity::PublicIdentity,
    /// Events recorded but not yet confirmed by the broker.
    pub outbox: u64,
    pub pins: u64,
    pub qr: u64,
    /// `online` or `offline`: set by the MQTT session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    pub storage: StorageStatus,
    /// `ok`, or `needs_sync` after a recovery until the portal's next full sync.
    pub store: &'static str,
    pub uptime_s: u64,
    pub version: &'static str,
}

/// What the status document reports (`decision_latency`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LatencyFigures {
    /// Grants measured in the window.
    pub grants: u64,
    /// `null` while `grants` is 0.
    pub max_us: Option<u64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    /// The window: the last this many seconds, and at most 1,024 grants (`runtime::latency`).
    pub window_s: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClockStatus {
    /// `null` when the clock's state cannot be read.
    pub synchronized: Option<bool>,
    /// The configured policy while unsynchronized (`clock.unsynchronized`).
    pub unsynchronized: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageStatus {
    pub free_mb: u64,
    pub low: bool,
}

impl Status {
    /// The document as published, with `state` set.
    pub fn to_json(mut self, online: bool) -> Vec<u8> {
        self.state = Some(if online { "online" } else { "offline" });
        serde_json::to_vec(&self).unwrap_or_default()
    }

    /// What a change is judged on: the document without the fields that
    /// move with the clock alone (`uptime_s`, `storage.free_mb`), which the
    /// minute's refresh carries.
    pub fn compared(&self) -> Vec<u8> {
        let mut s = self.clone();
        s.uptime_s = 0;
        s.storage.free_mb = 0;
        serde_json::to_vec(&s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte for byte what the map-built document was: keys sorted, nested
    /// objects sorted, `devices` present when known.
    #[test]
    fn the_status_document_keeps_its_bytes() {
        let s = Status {
            cards: 4,
            clock: ClockStatus { synchronized: None, unsynchronized: "deny" },
            decision_latency: LatencyFigures {
                grants: 2,
                max_us: Some(900),
                p50_us: Some(400),
                p99_us: Some(900),
                window_s: 900,
            },
            devices: Some(BTreeMap::from([("keypad1".to_string(), "online"), ("lock1".to_string(), "unknown")])),
            generation: 7,
            holders: 3,
            identity: crate::store::identity::Identity::from_seed(&[1; 32]).public(),
            outbox: 2,
            pins: 3,
            qr: 1,
            state: None,
            storage: StorageStatus { free_mb: 512, low: false },
            store: "ok",
            uptime_s: 61,
            version: "0.1.0",
        };
        let want = r#"{"cards":4,"clock":{"synchronized":null,"unsynchronized":"deny"},"decision_latency":{"grants":2,"max_us":900,"p50_us":400,"p99_us":900,"window_s":900},"devices":{"keypad1":"online","lock1":"unknown"},"generation":7,"holders":3,"identity":{"algorithm":"ed25519","key_id":"34750f98bd59fcfc","public_key":"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=","public_key_pem":"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAiojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=\n-----END PUBLIC KEY-----\n"},"outbox":2,"pins":3,"qr":1,"state":"online","storage":{"free_mb":512,"low":false},"store":"ok","uptime_s":61,"version":"0.1.0"}"#;
        assert_eq!(String::from_utf8(s.clone().to_json(true)).unwrap(), want);
        // The same through a JSON map, as it was built before: sorted keys.
        let mut m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&String::from_utf8(s.clone().to_json(true)).unwrap()).unwrap();
        m.insert("state".into(), "offline".into());
        assert_eq!(serde_json::to_vec(&m).unwrap(), s.to_json(false));
    }
}
