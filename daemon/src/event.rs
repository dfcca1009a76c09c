//! Every event the daemon records, one variant per `type`.
//!
//! The audit writer ([`crate::audit`]) turns an [`Event`] into the
//! JSON line it stores and publishes: the variant's fields, its `type`, and
//! the `seq` and `ts` it adds. `serde_json` keeps an object's keys sorted, so
//! the order of the fields here does not reach the wire; their names, types
//! and whether an absent one is `null` or left out do, and the tests below pin
//! each kind against a literal of the JSON published before this type
//! existed. docs/ops.md's "Events" headings are checked against [`KINDS`].
//!
//! No event holds a PIN, a QR token or a secret: the fields are ids, reasons
//! and counts. Only `card.enrolled` and `enroll.refused` name a card's UID.
//!
//! Add an event: a variant here with its `rename`, its line in
//! [`Event::kind`] and [`KINDS`], its sample in the tests, and its heading in
//! docs/ops.md.

use serde::Serialize;

/// An event before the writer numbers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A key was accepted and the door was told to open.
    #[serde(rename = "access.granted")]
    AccessGranted {
        #[serde(flatten)]
        presented: Presented,
        /// `not_driven` when the door's command queue was full.
        #[serde(skip_serializing_if = "Option::is_none")]
        lock: Option<&'static str>,
        /// A limited key: the grants it has left.
        #[serde(skip_serializing_if = "Option::is_none")]
        uses_left: Option<u32>,
    },
    /// A key was refused.
    #[serde(rename = "access.denied")]
    AccessDenied {
        #[serde(flatten)]
        presented: Presented,
        reason: &'static str,
    },
    #[serde(rename = "lockout.engaged")]
    LockoutEngaged {
        door: String,
        device: String,
        /// `consecutive_failures` or `daily_cap`.
        why: &'static str,
        /// RFC 3339; `null` for the daily cap (the end of the local day).
        until: Option<String>,
        failures_today: u32,
    },
    #[serde(rename = "lockout.cleared")]
    LockoutCleared { device: String },
    /// A `door.unlock` command opened the door.
    #[serde(rename = "door.unlocked")]
    DoorUnlocked { door: String, ms: u64, by: &'static str },
    #[serde(rename = "door.lock_failed")]
    DoorLockFailed {
        door: String,
        /// The state the lock was told: `locked` or `unlocked`.
        lock: &'static str,
        error: String,
    },
    #[serde(rename = "door.lock_restored")]
    DoorLockRestored { door: String },
    #[serde(rename = "door.opened")]
    DoorOpened { door: String },
    #[serde(rename = "door.closed")]
    DoorClosed { door: String },
    #[serde(rename = "door.forced")]
    DoorForced { door: String },
    #[serde(rename = "door.held_open")]
    DoorHeldOpen { door: String, held_open_s: u64 },
    #[serde(rename = "door.exit")]
    DoorExit { door: String },
    /// An enrolment window opened, by command or by an enrolment PIN.
    #[serde(rename = "enroll.started")]
    EnrollStarted {
        door: String,
        holder: String,
        /// RFC 3339: when the window closes.
        until: String,
        /// `command` or `keypad`.
        via: &'static str,
        /// `keypad` only: the keypad the PIN was entered at.
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<String>,
    },
    #[serde(rename = "card.enrolled")]
    CardEnrolled { door: String, device: String, holder: String, uid: String },
    #[serde(rename = "enroll.refused")]
    EnrollRefused {
        door: String,
        device: String,
        holder: String,
        uid: String,
        /// The error code of the refused assignment.
        reason: &'static str,
        message: String,
    },
    #[serde(rename = "enroll.expired")]
    EnrollExpired { door: String, holder: String },
    #[serde(rename = "enroll.denied")]
    EnrollDenied { door: String, device: String, key: &'static str, holder: Option<String>, reason: &'static str },
    #[serde(rename = "clock.synchronized")]
    ClockSynchronized { policy: &'static str },
    #[serde(rename = "clock.unsynchronized")]
    ClockUnsynchronized { policy: &'static str },
    #[serde(rename = "clock.jumped")]
    ClockJumped { by_ms: i64 },
    #[serde(rename = "device.online")]
    DeviceOnline { device: String },
    #[serde(rename = "device.offline")]
    DeviceOffline { device: String, error: String, error_kind: &'static str },
    /// A device's tamper switch: its case opened or it was pried off
    /// (`active`), or closed again.
    #[serde(rename = "device.tamper")]
    DeviceTamper {
        device: String,
        /// The device's door; left out for a device of no door.
        #[serde(skip_serializing_if = "Option::is_none")]
        door: Option<String>,
        active: bool,
    },
    /// A device's power failure began (`active`) or ended.
    #[serde(rename = "device.power")]
    DevicePower {
        device: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        door: Option<String>,
        active: bool,
    },
    /// Events may be missing after `after`. A gap found at start says
    /// `since` (`null` when unknown); a full queue's gap says `dropped`.
    #[serde(rename = "audit.gap")]
    AuditGap {
        after: u64,
        reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<Option<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dropped: Option<u64>,
    },
    #[serde(rename = "store.recovered")]
    StoreRecovered {
        damage: &'static str,
        detail: String,
        moved_to: String,
        snapshot: Option<RecoveredSnapshot>,
        restore: &'static str,
        restored: Restored,
        recorded: Option<Recorded>,
        missing: &'static str,
    },
    /// An MQTT command refused before anything was applied: unsigned, badly
    /// signed, replayed, expired, or a secret sent on the fleet topic.
    #[serde(rename = "command.refused")]
    CommandRefused {
        /// The reply's error code (`unauthorized`, `stale`, `forbidden`, or `internal` when the store failed).
        code: &'static str,
        reason: &'static str,
        /// The pinned key that signed it; `null` when unsigned or unknown.
        key: Option<String>,
        /// Received on the fleet topic.
        fleet: bool,
    },
    #[serde(rename = "storage.low")]
    StorageLow(Storage),
    #[serde(rename = "storage.ok")]
    StorageOk(Storage),
}

/// A key presented at a door, for `access.granted` and `access.denied`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Presented {
    pub door: String,
    pub device: String,
    /// `pin`, `qr`, `card` or `card+pin`.
    pub key: &'static str,
    /// `null` when the key is nobody's.
    pub holder: Option<String>,
    /// Card plus PIN: the reader the card was presented at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_device: Option<String>,
}

/// The snapshot a recovered store was restored from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveredSnapshot {
    pub file: String,
    /// RFC 3339.
    pub taken: String,
    pub generation: u64,
}

/// What a recovery restored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restored {
    pub holders: usize,
    pub tombstones: usize,
    pub lockouts: usize,
    pub uses: usize,
}

/// What the check record said was acknowledged before the damage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recorded {
    pub changes: u64,
    pub generation: u64,
    pub seq: u64,
}

/// The disk of `data_dir`, for `storage.low` and `storage.ok`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Storage {
    pub free_mb: u64,
    pub total_mb: u64,
    pub low_mb: u64,
    /// `held` or `released`.
    pub reserve: &'static str,
}

/// Every event `type`, in the order of [`Event`].
pub const KINDS: &[&str] = &[
    "access.granted",
    "access.denied",
    "lockout.engaged",
    "lockout.cleared",
    "door.unlocked",
    "door.lock_failed",
    "door.lock_restored",
    "door.opened",
    "door.closed",
    "door.forced",
    "door.held_open",
    "door.exit",
    "enroll.started",
    "card.enrolled",
    "enroll.refused",
    "enroll.expired",
    "enroll.denied",
    "clock.synchronized",
    "clock.unsynchronized",
    "clock.jumped",
    "device.online",
    "device.offline",
    "device.tamper",
    "device.power",
    "audit.gap",
    "store.recovered",
    "command.refused",
    "storage.low",
    "storage.ok",
];

impl Event {
    /// The event's `type`.
    pub fn kind(&self) -> &'static str {
        KINDS[self.index()]
    }

    /// The variant's place in [`KINDS`].
    fn index(&self) -> usize {
        match self {
            Event::AccessGranted { .. } => 0,
            Event::AccessDenied { .. } => 1,
            Event::LockoutEngaged { .. } => 2,
            Event::LockoutCleared { .. } => 3,
            Event::DoorUnlocked { .. } => 4,
            Event::DoorLockFailed { .. } => 5,
            Event::DoorLockRestored { .. } => 6,
            Event::DoorOpened { .. } => 7,
            Event::DoorClosed { .. } => 8,
            Event::DoorForced { .. } => 9,
            Event::DoorHeldOpen { .. } => 10,
            Event::DoorExit { .. } => 11,
            Event::EnrollStarted { .. } => 12,
            Event::CardEnrolled { .. } => 13,
            Event::EnrollRefused { .. } => 14,
            Event::EnrollExpired { .. } => 15,
            Event::EnrollDenied { .. } => 16,
            Event::ClockSynchronized { .. } => 17,
            Event::ClockUnsynchronized { .. } => 18,
            Event::ClockJumped { .. } => 19,
            Event::DeviceOnline { .. } => 20,
            Event::DeviceOffline { .. } => 21,
            Event::DeviceTamper { .. } => 22,
            Event::DevicePower { .. } => 23,
            Event::AuditGap { .. } => 24,
            Event::StoreRecovered { .. } => 25,
            Event::CommandRefused { .. } => 26,
            Event::StorageLow(_) => 27,
            Event::StorageOk(_) => 28,
        }
    }

    /// The event's fields and its `type`, as one JSON object (keys sorted).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            // Every variant is a struct of plain fields: serialising cannot
            // fail or give anything but an object. Were it to, the event
            // still says what happened.
            _ => serde_json::Map::from_iter([("type".to_string(), self.kind().into())]),
        }
    }
}

#[cfg(test)]
mod tests;
