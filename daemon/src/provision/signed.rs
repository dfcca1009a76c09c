//! Signed commands: the portal signs each command with Ed25519, and the
//! controller applies only what a pinned portal key signed for the topic it
//! arrived on, with a counter above the last one that key used.
//!
//! The bytes signed ([`message`], docs/mqtt.md "Signed commands"):
//!
//! ```text
//! porter-cmd-v1\n<topic>\n<key id>\n<counter>\n<expires unix ms, or nothing>\n<the command's exact bytes>
//! ```
//!
//! MQTT 5 carries the signature in user properties (`porter-key`,
//! `porter-counter`, `porter-expires`, `porter-sig`) beside the unchanged
//! command; MQTT 3.1.1 clients send the envelope
//! `{"signed": {"key", "counter", "expires"?, "sig"}, "command": "<base64>"}`.
//!
//! The replay guard needs no clock: each key's last accepted counter is kept
//! in the store (`s/<key id>`), written and flushed before the command is
//! applied, and in the store's check record beside it, so a store recovered
//! from an older snapshot still knows it. The
//! optional expiry is checked only while the clock is known to be
//! synchronised.

use super::error::{ErrorCode, OpError};
use crate::config::PortalKey;
use crate::store::Store;
use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::{Signature, VerifyingKey};
use std::collections::HashMap;
use std::sync::Arc;

/// The domain-separation tag: the first line of every signed message.
pub const TAG: &str = "porter-cmd-v1";
/// The store's prefix of each key's last accepted counter: `s/<key id>` -> decimal.
pub use crate::store::records::SIGNED_COUNTER as COUNTER;

/// User property names of an MQTT 5 signed command.
pub const PROP_KEY: &str = "porter-key";
pub const PROP_COUNTER: &str = "porter-counter";
pub const PROP_EXPIRES: &str = "porter-expires";
pub const PROP_SIG: &str = "porter-sig";

/// The bytes a portal signs for `command` sent to `topic`.
pub fn message(topic: &str, key_id: &str, counter: u64, expires_ms: Option<u64>, command: &[u8]) -> Vec<u8> {
    let expires = expires_ms.map(|e| e.to_string()).unwrap_or_default();
    let mut m = format!("{TAG}\n{topic}\n{key_id}\n{counter}\n{expires}\n").into_bytes();
    m.extend_from_slice(command);
    m
}

/// A signature as it arrived, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub key_id: String,
    pub counter: u64,
    pub expires_ms: Option<u64>,
    pub sig: [u8; 64],
}

/// What arrived on a command topic.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Unsigned(Bytes),
    Signed(Seal, Bytes),
    /// Signature fields that cannot be read: refused as `unauthorized`.
    Malformed(String),
}

fn b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}

fn seal(key: Option<&str>, counter: Option<&str>, expires: Option<&str>, sig: Option<&str>) -> Result<Seal, String> {
    let key_id = key.filter(|k| !k.is_empty()).ok_or(format!("the signature has no {PROP_KEY}"))?.to_string();
    let counter = counter
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or(format!("{PROP_COUNTER} is not a whole number (0 to 2^64-1)"))?;
    let expires_ms = match expires.filter(|e| !e.is_empty()) {
        Some(e) => Some(e.parse::<u64>().map_err(|_| format!("{PROP_EXPIRES} is not a unix time in ms"))?),
        None => None,
    };
    let sig = sig
        .and_then(b64)
        .and_then(|s| <[u8; 64]>::try_from(s).ok())
        .ok_or(format!("{PROP_SIG} is not 64 bytes in base64"))?;
    Ok(Seal { key_id, counter, expires_ms, sig })
}

/// The MQTT 3.1.1 envelope.
#[derive(serde::Deserialize)]
struct Envelope {
    signed: EnvelopeSeal,
    command: String,
}

#[derive(serde::Deserialize)]
struct EnvelopeSeal {
    key: String,
    counter: u64,
    expires: Option<u64>,
    sig: String,
}

/// Reads the signature of a command: from the MQTT 5 user properties
/// `props`, else from the envelope, else the command is unsigned.
pub fn extract(payload: Bytes, props: &[(String, String)]) -> Incoming {
    let prop = |name: &str| props.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if props.iter().any(|(k, _)| k.starts_with("porter-")) {
        return match seal(prop(PROP_KEY), prop(PROP_COUNTER), prop(PROP_EXPIRES), prop(PROP_SIG)) {
            Ok(s) => Incoming::Signed(s, payload),
            Err(e) => Incoming::Malformed(e),
        };
    }
    // Only a payload that names "signed" is read as an envelope: a plain
    // command is not parsed twice. A command has an `op`; an envelope has not.
    if !payload.windows(8).any(|w| w == b"\"signed\"") {
        return Incoming::Unsigned(payload);
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        op: Option<serde::de::IgnoredAny>,
        signed: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Probe>(&payload) {
        Ok(Probe { op: None, signed: Some(_) }) => {}
        _ => return Incoming::Unsigned(payload),
    }
    let env: Envelope = match serde_json::from_slice(&payload) {
        Ok(e) => e,
        Err(e) => return Incoming::Malformed(format!("the signed envelope cannot be read: {e}")),
    };
    let Some(command) = b64(&env.command) else {
        return Incoming::Malformed("the envelope's command is not base64".into());
    };
    let counter = env.signed.counter.to_string();
    let expires = env.signed.expires.map(|e| e.to_string());
    match seal(Some(&env.signed.key), Some(&counter), expires.as_deref(), Some(&env.signed.sig)) {
        Ok(s) => Incoming::Signed(s, Bytes::from(command)),
        Err(e) => Incoming::Malformed(e),
    }
}

/// Why a command was refused before anything was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    /// A short word for logs and the `command.refused` event.
    pub reason: &'static str,
    pub message: String,
    /// The pinned key that signed it, when it is one.
    pub key: Option<String>,
    /// Received on the fleet topic.
    pub fleet: bool,
}

impl Refusal {
    fn new(code: ErrorCode, reason: &'static str, message: impl Into<String>, key: Option<&str>) -> Self {
        Refusal { code, reason, message: message.into(), key: key.map(str::to_string), fleet: false }
    }

    /// The check itself failed (the store, a worker that died).
    pub fn internal(message: impl Into<String>) -> Self {
        Refusal::new(ErrorCode::Internal, "internal", message, None)
    }

    /// A command on the fleet topic that would carry a PIN or QR token.
    pub fn secret_on_fleet(op: &str, signer: Option<&str>) -> Self {
        let mut r = Refusal::new(
            ErrorCode::Forbidden,
            "secret_on_fleet_topic",
            format!(
                "{op} carries a PIN or QR token, which every controller of the site would read on the fleet topic; send it to the controller's own topic porter/{{site}}/{{controller}}/cmd"
            ),
            signer,
        );
        r.fleet = true;
        r
    }

    /// Logs the refusal (key ids are config-checked names; the message is
    /// escaped) and records a `command.refused` event.
    pub fn record(&self, audit: &crate::audit::Audit, now_ms: i64) {
        tracing::warn!(
            code = self.code.as_str(),
            reason = self.reason,
            key = self.key.as_deref().unwrap_or("-"),
            fleet = self.fleet,
            message = %crate::logtext::escape(&self.message),
            "mqtt: command refused"
        );
        let event = crate::event::Event::CommandRefused {
            code: self.code.as_str(),
            reason: self.reason,
            key: self.key.clone(),
            fleet: self.fleet,
        };
        audit.record(crate::audit::Draft { ts_ms: now_ms, event });
    }

    /// The reply: the command's id when it can be read.
    pub fn reply(&self, command: &[u8]) -> serde_json::Value {
        #[derive(serde::Deserialize)]
        struct IdOnly {
            id: serde_json::Value,
        }
        let id = serde_json::from_slice::<IdOnly>(command)
            .ok()
            .map(|i| i.id)
            .filter(|id| super::command::check_command_id(id).is_ok())
            .unwrap_or(serde_json::Value::Null);
        super::command::error_reply(&id, &self.error())
    }
    pub fn error(&self) -> OpError {
        OpError::new(self.code, self.message.clone())
    }
}

/// A command let through: its exact bytes and the key that signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub command: Bytes,
    pub signer: Option<String>,
    /// Received on the fleet topic.
    pub fleet: bool,
}

/// The signature policy and the replay guard.
pub struct Guard {
    keys: HashMap<String, VerifyingKey>,
    require: bool,
    /// The controller's command topic and the fleet's.
    cmd: String,
    all_cmd: String,
    store: Store,
    /// Whether the clock is known to be synchronised (expiry is checked only then).
    clock_trusted: Arc<dyn Fn() -> bool + Send + Sync>,
    now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Serialises the counter's read and write (the MQTT worker is one
    /// task, but nothing should depend on that).
    lock: std::sync::Mutex<()>,
}

impl Guard {
    pub fn new(
        keys: &[PortalKey],
        require: bool,
        (cmd, all_cmd): (&str, &str),
        store: Store,
        clock_trusted: Arc<dyn Fn() -> bool + Send + Sync>,
        now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Self {
        let keys = keys.iter().filter_map(|k| Some((k.id.clone(), VerifyingKey::from_bytes(&k.key).ok()?))).collect();
        let (cmd, all_cmd) = (cmd.to_string(), all_cmd.to_string());
        Guard { keys, require, cmd, all_cmd, store, clock_trusted, now_ms, lock: Default::default() }
    }

    /// Now, in unix ms, by the daemon's clock.
    pub fn now_ms(&self) -> i64 {
        (self.now_ms)()
    }

    /// Checks what arrived on `topic` (the controller's or the fleet's
    /// command topic). A signed command that passes has its counter on disk
    /// before this returns.
    pub fn admit(&self, topic: &[u8], incoming: Incoming) -> Result<Admitted, Refusal> {
        let fleet = topic == self.all_cmd.as_bytes();
        let (topic, other) = if fleet { (&self.all_cmd, &self.cmd) } else { (&self.cmd, &self.all_cmd) };
        self.check(topic, other, incoming).map(|(command, signer)| Admitted { command, signer, fleet }).map_err(
            |mut r| {
                r.fleet = fleet;
                r
            },
        )
    }

    /// [`Guard::admit`] on `topic`; `other` is the controller's other
    /// command topic, to name a re-targeted command as such.
    fn check(&self, topic: &str, other: &str, incoming: Incoming) -> Result<(Bytes, Option<String>), Refusal> {
        let (seal, command) = match incoming {
            Incoming::Unsigned(command) if !self.require => return Ok((command, None)),
            Incoming::Unsigned(_) => {
                return Err(Refusal::new(
                    ErrorCode::Unauthorized,
                    "unsigned",
                    "this controller takes only signed commands (mqtt.require_signed); sign it with a pinned portal key (docs/mqtt.md, \"Signed commands\")",
                    None,
                ))
            }
            Incoming::Malformed(m) => return Err(Refusal::new(ErrorCode::Unauthorized, "malformed_signature", m, None)),
            Incoming::Signed(s, c) => (s, c),
        };
        let Some((id, key)) = self.keys.get_key_value(&seal.key_id) else {
            return Err(Refusal::new(
                ErrorCode::Unauthorized,
                "unknown_key",
                "signed by a key this controller does not pin (mqtt.portal_keys)",
                None,
            ));
        };
        let sig = Signature::from_bytes(&seal.sig);
        let signed_for =
            |t: &str| key.verify_strict(&message(t, id, seal.counter, seal.expires_ms, &command), &sig).is_ok();
        if !signed_for(topic) {
            let (reason, message) = if signed_for(other) {
                ("wrong_topic", format!("signed for {other}, received on {topic}"))
            } else {
                ("bad_signature", "the signature does not match the command and topic".to_string())
            };
            return Err(Refusal::new(ErrorCode::Unauthorized, reason, message, Some(id)));
        }
        if let Some(exp) = seal.expires_ms {
            let now = (self.now_ms)();
            if (self.clock_trusted)() && now > 0 && now as u64 > exp {
                return Err(Refusal::new(
                    ErrorCode::Stale,
                    "expired",
                    format!("the command expired {} ms ago", now as u64 - exp),
                    Some(id),
                ));
            }
        }
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let last = self.last(id).map_err(|e| Refusal::new(ErrorCode::Internal, "store", e.message, Some(id)))?;
        if last.is_some_and(|l| seal.counter <= l) {
            return Err(Refusal::new(
                ErrorCode::Stale,
                "replay",
                format!(
                    "counter {} is not above {}, the last this key used: a replay, or a portal that lost its counter",
                    seal.counter,
                    last.unwrap_or(0)
                ),
                Some(id),
            ));
        }
        self.store
            .accept_counter(id, seal.counter)
            .map_err(|e| Refusal::new(ErrorCode::Internal, "store", OpError::from(e).message, Some(id)))?;
        Ok((command, Some(id.clone())))
    }

    /// The last counter `key_id` used, if it signed anything yet.
    pub fn last(&self, key_id: &str) -> Result<Option<u64>, OpError> {
        Ok(self.store.get(&counter_key(key_id))?.as_deref().and_then(crate::store::records::decimal))
    }
}

fn counter_key(key_id: &str) -> Vec<u8> {
    crate::store::records::prefixed(COUNTER, key_id.as_bytes())
}

/// Signs `command` for `topic` (porterctl and the tests): returns the
/// signature in base64.
pub fn sign(
    key: &ed25519_dalek::SigningKey,
    topic: &str,
    key_id: &str,
    counter: u64,
    expires_ms: Option<u64>,
    command: &[u8],
) -> String {
    use ed25519_dalek::Signer as _;
    let sig = key.sign(&message(topic, key_id, counter, expires_ms, command));
    base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
}

/// The MQTT 5 user properties of a signed command.
pub fn properties(key_id: &str, counter: u64, expires_ms: Option<u64>, sig: &str) -> Vec<(String, String)> {
    let mut p = vec![(PROP_KEY.to_string(), key_id.to_string()), (PROP_COUNTER.to_string(), counter.to_string())];
    if let Some(e) = expires_ms {
        p.push((PROP_EXPIRES.to_string(), e.to_string()));
    }
    p.push((PROP_SIG.to_string(), sig.to_string()));
    p
}

/// Whether a command's arguments or reply hold a PIN or QR token in the
/// clear: `pin.set`, `pin.generate`, `qr.generate`, and any op given a
/// `pin`, `qr` or `retired` argument or holders carrying them (`sync.put`,
/// `holder.put`). Refused on the fleet topic, which every controller of the
/// site reads.
pub fn holds_secret(op: &str, args: &serde_json::Map<String, serde_json::Value>) -> bool {
    let carries = |o: &serde_json::Map<String, serde_json::Value>| {
        ["pin", "qr", "retired"].iter().any(|k| o.get(*k).is_some_and(|v| !v.is_null()))
    };
    matches!(op, "pin.set" | "pin.generate" | "qr.generate")
        || carries(args)
        || args
            .get("holders")
            .and_then(|h| h.as_array())
            .is_some_and(|hs| hs.iter().any(|h| h.as_object().is_some_and(carries)))
}

#[cfg(test)]
#[path = "signed/tests.rs"]
mod tests;
