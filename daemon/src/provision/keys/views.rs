//! What the key operations return: typed results that serialize to the
//! replies' JSON (docs/ops.md). They become JSON only at the edge, in the
//! reply ([`crate::provision::command::Op::apply`]). The reply's objects
//! are `serde_json` maps, whose keys are sorted, so a field's place here does
//! not change the wire.
//!
//! None holds a PIN or a QR token except the result of the op that made it
//! (`pin.generate`, `qr.generate`), which the contract shows once.

use super::StateView;
use crate::store::records::{self, CardRecord, HolderRecord, KeyLimit, KeyRecord};
use serde::Serialize;

/// A holder as `holder.get` shows it: never a PIN, token or full card UID.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HolderView {
    pub holder: String,
    pub name: String,
    pub role: &'static str,
    /// Every door (`"*"`) when `None`.
    #[serde(serialize_with = "doors")]
    pub doors: Option<Vec<String>>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    /// Each window as the store writes it (`records::window_json`).
    pub schedule: Vec<serde_json::Value>,
    pub enabled: bool,
    pub keys: KeysView,
    pub created: String,
    pub updated: String,
}

/// A holder's keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeysView {
    pub pin: Option<KeyView>,
    pub qr: Option<KeyView>,
    pub cards: Vec<CardView>,
}

/// A PIN or QR code, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyView {
    /// The portal's tick.
    pub active: bool,
    pub created: String,
    /// Only for a key limited in uses or time.
    #[serde(flatten)]
    pub limit: Option<LimitView>,
}

/// The limit of a limited key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitView {
    pub uses: Option<u32>,
    pub expires: Option<String>,
    /// Whether it can no longer open (expired, or every use spent), beside
    /// `active`, the portal's tick.
    pub expired: bool,
    /// Uses left, as last written by the decision loop (`holder.get` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
}

/// A key card: a short id from its keyed hash and the last four hex digits
/// of its UID, never the whole UID.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardView {
    pub id: String,
    pub hint: String,
    pub active: bool,
    pub created: String,
}

/// A page of `holder.list`; `next` is the cursor for the following page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HolderPage {
    pub holders: Vec<HolderView>,
    pub next: Option<String>,
}

/// `sync.begin`'s result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncBegun {
    pub generation: u64,
}

/// `sync.put`'s result: the holders and retired PINs staged so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncStaged {
    pub staged: u64,
    pub retired: u64,
}

/// `sync.commit`'s result: the new live set's state and the PINs retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncCommitted {
    #[serde(flatten)]
    pub state: StateView,
    pub retired: u64,
}

/// A limited key made now (`pin.generate`, `pin.set`, `qr.generate`): its
/// secret when the op made it, and its limit as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl NewKey {
    /// `pin` or `token` (either or neither) with `limit` when there is one.
    pub fn new(pin: Option<String>, token: Option<String>, limit: Option<KeyLimit>) -> Self {
        let (uses, expires_ms) = limit.map_or((None, None), |l| (l.uses, l.expires_ms));
        NewKey { pin, token, uses, expires: expires_ms.map(records::rfc3339) }
    }
}

fn doors<S: serde::Serializer>(doors: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
    match doors {
        None => s.serialize_str("*"),
        Some(d) => d.serialize(s),
    }
}

impl KeyView {
    fn of(k: &KeyRecord, now_ms: i64) -> Self {
        let limit = k.limit.map(|l| LimitView {
            uses: l.uses,
            expires: l.expires_ms.map(records::rfc3339),
            expired: l.expires_ms.is_some_and(|e| e <= now_ms),
            uses_left: None,
        });
        KeyView { active: k.active, created: records::rfc3339(k.created_ms), limit }
    }
}

impl CardView {
    fn of(c: &CardRecord) -> Self {
        CardView {
            id: hex::encode(&c.hash.0[..8]),
            hint: c.hint.clone(),
            active: c.active,
            created: records::rfc3339(c.created_ms),
        }
    }
}

impl HolderView {
    /// `rec` as shown to the portal, its limits' expiry judged at `now_ms`.
    pub fn of(rec: &HolderRecord, now_ms: i64) -> Self {
        HolderView {
            holder: rec.id.clone(),
            name: rec.name.clone(),
            role: rec.role.as_str(),
            doors: rec.doors.clone(),
            valid_from: rec.valid_from_ms.map(records::rfc3339),
            valid_until: rec.valid_until_ms.map(records::rfc3339),
            schedule: rec.schedule.iter().map(records::window_json).collect(),
            enabled: rec.enabled,
            keys: KeysView {
                pin: rec.pin.as_ref().map(|k| KeyView::of(k, now_ms)),
                qr: rec.qr.as_ref().map(|k| KeyView::of(k, now_ms)),
                cards: rec.cards.iter().map(CardView::of).collect(),
            },
            created: records::rfc3339(rec.created_ms),
            updated: records::rfc3339(rec.updated_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{KeyHash, Role};
    use crate::store::records::WindowRecord;
    use serde_json::json;

    /// The JSON that `holder.get` sent before its result was typed, written
    /// out: the typed view must serialize to it exactly.
    #[test]
    fn a_holder_view_is_the_json_it_always_was() {
        let t = |ms: i64| records::rfc3339(ms);
        let (made, now) = (1_795_622_400_000, 1_795_622_460_000);
        let key = |limit| KeyRecord { hash: KeyHash([7; KeyHash::LEN]), active: true, created_ms: made, limit };
        let mut rec = HolderRecord {
            id: "res-12b".into(),
            name: "12B".into(),
            role: Role::Resident,
            doors: Some(vec!["main".into()]),
            valid_from_ms: Some(made),
            valid_until_ms: None,
            schedule: vec![WindowRecord { days: 0x1f, from: 420, to: 1260 }],
            enabled: true,
            pin: Some(key(Some(KeyLimit { uses: Some(2), expires_ms: Some(now) }))),
            qr: Some(key(Some(KeyLimit { uses: None, expires_ms: Some(now + 1) }))),
            cards: vec![CardRecord {
                hash: KeyHash([9; KeyHash::LEN]),
                hint: "b2c3".into(),
                active: false,
                created_ms: made,
            }],
            created_ms: made,
            updated_ms: now,
        };
        let v = serde_json::to_value(HolderView::of(&rec, now)).unwrap();
        assert_eq!(
            v,
            json!({
                "holder": "res-12b", "name": "12B", "role": "resident", "doors": ["main"],
                "valid_from": t(made), "valid_until": null,
                "schedule": [records::window_json(&rec.schedule[0])], "enabled": true,
                "keys": {
                    "pin": {"active": true, "created": t(made), "uses": 2, "expires": t(now), "expired": true},
                    "qr": {"active": true, "created": t(made), "uses": null, "expires": t(now + 1), "expired": false},
                    "cards": [{"id": "0909090909090909", "hint": "b2c3", "active": false, "created": t(made)}],
                },
                "created": t(made), "updated": t(now),
            })
        );
        rec.doors = None;
        rec.pin = Some(key(None));
        rec.qr = None;
        let v = serde_json::to_value(HolderView::of(&rec, now)).unwrap();
        assert_eq!(
            (&v["doors"], &v["keys"]["pin"], &v["keys"]["qr"]),
            (&json!("*"), &json!({"active": true, "created": t(made)}), &json!(null))
        );
        let new =
            |pin: Option<&str>, limit| serde_json::to_value(NewKey::new(pin.map(Into::into), None, limit)).unwrap();
        assert_eq!(new(Some("483920"), None), json!({"pin": "483920"}));
        assert_eq!(new(None, Some(KeyLimit { uses: Some(1), expires_ms: None })), json!({"uses": 1}));
        let committed = SyncCommitted {
            state: StateView {
                generation: 2,
                holders: 1,
                pins: 1,
                qr: 0,
                cards: 0,
                digest: "d".into(),
                pin_space: 998_890,
                pin_space_free: 998_889,
            },
            retired: 3,
        };
        let v = serde_json::to_value(committed).unwrap();
        assert_eq!(
            v,
            json!({"generation": 2, "holders": 1, "pins": 1, "qr": 0, "cards": 0, "digest": "d",
                   "pin_space": 998_890, "pin_space_free": 998_889, "retired": 3})
        );
    }
}
