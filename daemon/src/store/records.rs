//! Typed records and the key layout of the store.
//!
//! | prefix | key | value |
//! | --- | --- | --- |
//! | `m/` | `schema`, `generation`, `seq`, `active`, `sync`, ... | text |
//! | `h/<space>/` | holder id | [`HolderRecord`], binary ([`HolderRecord::encode`]) |
//! | `k/<space>/` | 16-byte keyed hash | holder id: the lookup and duplicate index |
//! | `t/` | 16-byte keyed hash of a deleted PIN | deletion time: a tombstone |
//! | `l/` | device id | lockout state as JSON |
//! | `s/` | portal key id | the key's last accepted command counter, decimal |
//! | `a/` | seq, 8 bytes big-endian | audit event as JSON |
//!
//! Holders and their key index live in one of two spaces, `a` and `b`;
//! `m/active` names the live one. A full sync stages the new set in the other
//! space and commits by flipping `m/active` in one small batch, so a crash or
//! a lost broker in the middle leaves the old set fully in force.
//!
//! Keys are never stored in plaintext: a record keeps the keyed hash, and a
//! card keeps only a four-hex-digit hint for people to recognise it.
//!
//! Holder records are postcard (a compact serde format: varints, no field
//! names), about 60 bytes for a holder with a PIN, a quarter of their JSON
//! form in schema 1: sled keeps in memory what a scan reads, so the size of
//! a record is memory. Postcard does not describe itself: any change to
//! these structs is a new schema version with a migration (see `migrate`).

use crate::access::schedule::{self, Window};
use crate::access::{DoorSet, KeyHash, KeyKind, Profile, Role};
use serde::{Deserialize, Serialize};

/// One of the two spaces holders and keys live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space(pub u8);

impl Space {
    pub const A: Space = Space(b'a');
    pub const B: Space = Space(b'b');

    pub fn other(self) -> Space {
        if self == Space::A {
            Space::B
        } else {
            Space::A
        }
    }
    /// The prefix of holder records in this space.
    pub fn holders(self) -> Vec<u8> {
        vec![b'h', b'/', self.0, b'/']
    }
    /// The prefix of the key index in this space.
    pub fn keys(self) -> Vec<u8> {
        vec![b'k', b'/', self.0, b'/']
    }
    pub fn as_str(self) -> &'static str {
        if self == Space::A {
            "a"
        } else {
            "b"
        }
    }
}

/// The live space, as recorded in the store (`a` when never set).
pub fn active_space(store: &crate::store::Store) -> Space {
    match store.get(ACTIVE).ok().flatten().as_deref() {
        Some(b"b") => Space::B,
        _ => Space::A,
    }
}

pub const ACTIVE: &[u8] = b"m/active";
pub const SYNC: &[u8] = b"m/sync";
pub const TOMBSTONE: &[u8] = b"t/";
pub const LOCKOUT: &[u8] = b"l/";
pub const AUDIT: &[u8] = b"a/";
pub const GENERATION: &[u8] = b"m/generation";
pub const SEQ: &[u8] = b"m/seq";
/// A value only the device secret gives ([`crate::store::secret::KeyHasher::check_value`]).
pub const SECRET_CHECK: &[u8] = b"m/secret_check";
/// Each portal key's last accepted command counter: `s/<key id>` -> decimal
/// (provision::signed's replay guard).
pub const SIGNED_COUNTER: &[u8] = b"s/";
/// Uses spent of limited keys: `u/<hash>` -> [`Spent`].
pub const USES: &[u8] = b"u/";
/// The schema version (`store::open`).
pub const SCHEMA: &[u8] = b"m/schema";
/// Set while a recovered store waits for the portal's full sync (`store::recover`).
pub const NEEDS_SYNC: &[u8] = b"m/needs_sync";
/// The store's identity and its count of changes, mirrored in the check
/// record beside it (`store::check`).
pub const STORE_ID: &[u8] = b"m/store_id";
pub const CHANGES: &[u8] = b"m/changes";
/// The highest event `seq` the broker confirmed (`provision::mqtt`'s outbox).
pub const EVENTS_ACKED: &[u8] = b"m/events_acked";
/// The Home Assistant discovery config topics last published, one a line,
/// so that they are emptied when discovery is turned off or a door goes
/// (`provision::home_assistant`).
pub const HA_CONFIGS: &[u8] = b"m/ha_configs";
/// The order of stored command replies (`provision::replies`).
pub const REPLY_SEQ: &[u8] = b"m/reply_seq";
/// Set while a staged set is being cleared (`provision::keys::staging`).
pub const SYNC_CLEAR: &[u8] = b"m/sync_clear";

/// A counter's stored form (`m/seq`, `m/generation`, `m/changes`, ...): its
/// decimal text. `None` when the bytes are not one.
pub fn decimal(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The longest holder id a command accepts (`provision::command::check_id`).
pub const MAX_HOLDER_ID_BYTES: usize = 64;

/// A store key for an error or a log line: escaped, and at most 120
/// characters (a tampered key may be any bytes, of any length).
pub fn key_text(key: &[u8]) -> String {
    crate::logtext::clip(&String::from_utf8_lossy(key), 120)
}

pub fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

pub fn holder_key(space: Space, id: &str) -> Vec<u8> {
    prefixed(&space.holders(), id.as_bytes())
}
pub fn key_key(space: Space, h: &KeyHash) -> Vec<u8> {
    prefixed(&space.keys(), &h.0)
}
pub fn tombstone_key(h: &KeyHash) -> Vec<u8> {
    prefixed(TOMBSTONE, &h.0)
}
pub fn audit_key(seq: u64) -> Vec<u8> {
    prefixed(AUDIT, &seq.to_be_bytes())
}
pub fn lockout_key(device: &str) -> Vec<u8> {
    prefixed(LOCKOUT, device.as_bytes())
}
pub fn uses_key(h: &KeyHash) -> Vec<u8> {
    prefixed(USES, &h.0)
}

/// The grants a limited key has given, for the key created at `created_ms`
/// (a key given again, with a new creation time, starts from none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spent {
    pub created_ms: i64,
    pub used: u32,
}

impl Spent {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("always serializes")
    }
    pub fn decode(v: &[u8]) -> Option<Spent> {
        postcard::from_bytes(v).ok()
    }
}

/// One stored key (PIN or QR token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub hash: KeyHash,
    pub active: bool,
    pub created_ms: i64,
    /// A limited-use or expiring key (schema 3); `None`: neither.
    pub limit: Option<KeyLimit>,
}

/// How often and until when a key opens: a one-time code is `uses: 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimit {
    /// The number of grants the key gives; `None`: any number.
    pub uses: Option<u32>,
    /// The key opens before this instant (unix ms) only; `None`: no end.
    pub expires_ms: Option<i64>,
}

/// One stored key card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRecord {
    pub hash: KeyHash,
    /// The last four hex digits of the UID, for people to tell cards apart.
    pub hint: String,
    pub active: bool,
    pub created_ms: i64,
}

/// A weekly window as stored: day mask (bit 0 = Monday), minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub days: u8,
    pub from: u16,
    pub to: u16,
}

/// A holder and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// `None`: every door.
    pub doors: Option<Vec<String>>,
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
    pub schedule: Vec<WindowRecord>,
    pub enabled: bool,
    pub pin: Option<KeyRecord>,
    pub qr: Option<KeyRecord>,
    pub cards: Vec<CardRecord>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl HolderRecord {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a holder record always serializes")
    }

    /// Reads a stored record; `key` names it in the error. A record that
    /// decodes but holds what no command could have written (an id that is
    /// not 1-64 letters, digits, `.`, `_`, `-`, or other than its key's; a
    /// name over 128 bytes; more than [`schedule::MAX_WINDOWS`] windows) is
    /// as corrupt as one that does not: a tampered store never reaches the
    /// decision table, whose lengths are 16-bit.
    pub fn decode(key: &[u8], v: &[u8]) -> Result<HolderRecord, crate::store::StoreError> {
        let corrupt = |detail: String| crate::store::StoreError::Corrupt { key: key_text(key), detail };
        let rec: HolderRecord = postcard::from_bytes(v).map_err(|e| corrupt(e.to_string()))?;
        let id_ok = !rec.id.is_empty()
            && rec.id.len() <= MAX_HOLDER_ID_BYTES
            && rec.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            let shown = crate::logtext::clip(&rec.id, 80);
            return Err(corrupt(format!(
                "holder id {shown} ({} bytes) is not 1-64 letters, digits, `.`, `_`, `-`",
                rec.id.len()
            )));
        }
        // The key is `h/<space>/<id>`; a record under another id's key is moved, not written.
        if key.len() > 4 && key.starts_with(b"h/") && &key[4..] != rec.id.as_bytes() {
            return Err(corrupt(format!("holds holder `{}`, not the one its key names", rec.id)));
        }
        if rec.name.len() > 128 || rec.schedule.len() > schedule::MAX_WINDOWS {
            return Err(corrupt(format!(
                "holder `{}`: a name over 128 bytes or over {} windows",
                rec.id,
                schedule::MAX_WINDOWS
            )));
        }
        Ok(rec)
    }

    /// Every key of this holder: (hash, kind, active).
    pub fn keys(&self) -> Vec<(KeyHash, KeyKind, bool)> {
        let mut out = Vec::with_capacity(2 + self.cards.len());
        if let Some(p) = &self.pin {
            out.push((p.hash, KeyKind::Pin, p.active));
        }
        if let Some(q) = &self.qr {
            out.push((q.hash, KeyKind::Qr, q.active));
        }
        for c in &self.cards {
            out.push((c.hash, KeyKind::Card, c.active));
        }
        out
    }

    /// The decision core's view, with door ids resolved against this
    /// controller's doors (ids of other controllers' doors are ignored).
    pub fn profile(&self, doors: &[String]) -> Profile {
        let doors = match &self.doors {
            None => DoorSet::All,
            Some(list) => DoorSet::Mask(
                list.iter()
                    .filter_map(|d| doors.iter().position(|x| x == d))
                    .filter(|i| *i < 64)
                    .fold(0u64, |m, i| m | (1u64 << i)),
            ),
        };
        Profile {
            id: self.id.clone(),
            role: self.role,
            enabled: self.enabled,
            doors,
            valid_from_ms: self.valid_from_ms,
            valid_until_ms: self.valid_until_ms,
            schedule: self.schedule.iter().map(|w| Window { days: w.days, from: w.from, to: w.to }).collect(),
        }
    }
}

pub use crate::time::rfc3339;

/// Renders a stored window for people: `{"days": ["mon", ...], "from": "07:00", "to": "21:00"}`.
pub fn window_json(w: &WindowRecord) -> serde_json::Value {
    let days: Vec<&str> = (0..7).filter(|d| w.days & (1 << d) != 0).map(|d| schedule::DAY_NAMES[d]).collect();
    serde_json::json!({"days": days, "from": schedule::format_hhmm(w.from), "to": schedule::format_hhmm(w.to)})
}
