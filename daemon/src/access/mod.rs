//! The access decision: pure, synchronous, no I/O, no allocation.
//!
//! [`decide`] takes a [`Snapshot`] (the live index of keys: a flat hash map
//! plus a small persistent overlay of recent changes, swapped whole by
//! provisioning through `arc-swap`) and a fixed-size [`Request`] (the keyed
//! hash of what was presented, door and device indices, the time) and returns
//! a [`Decision`]. It never touches the store, never waits and never
//! allocates; `tests/no_alloc.rs` proves the last with a counting allocator.
//!
//! - [`schedule`]: weekly windows on local time.
//! - [`keypad`]: keys to a submitted PIN.
//! - [`lockout`]: brute-force lockout per input device.

pub mod keypad;
pub mod lockout;
pub mod schedule;

use schedule::{LocalTime, Window};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// HMAC-SHA256 of a presented key under the device secret: the only form in
/// which PINs, QR tokens and card UIDs are stored or looked up.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl Hash for KeyHash {
    // The hash is a MAC output, uniform and not chosen by an attacker who
    // lacks the secret, so its first 8 bytes are as good as any hasher.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(b));
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({:02x}{:02x}{:02x}{:02x}..)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// Passes a `write_u64` through; only for [`KeyHash`].
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for KeyHash; fold anything else in simply.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type KeyHasherBuilder = BuildHasherDefault<PassThrough>;
/// The flat index: one probe, so few cache misses on a cold lookup.
pub type FlatMap = std::collections::HashMap<KeyHash, KeyEntry, KeyHasherBuilder>;
/// Changes since the flat index was last rebuilt: `None` is a removal.
pub type DeltaMap =
    imbl::GenericHashMap<KeyHash, Option<KeyEntry>, KeyHasherBuilder, imbl::shared_ptr::DefaultSharedPtr>;

/// Which kind of key was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Pin,
    Qr,
    Card,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Pin => "pin",
            KeyKind::Qr => "qr",
            KeyKind::Card => "card",
        }
    }
    /// The domain-separation tag hashed before the key itself.
    pub fn tag(self) -> u8 {
        match self {
            KeyKind::Pin => b'p',
            KeyKind::Qr => b'q',
            KeyKind::Card => b'c',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Courier,
    Staff,
    Resident,
    Manager,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Courier, Role::Staff, Role::Resident, Role::Manager];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Courier => "courier",
            Role::Staff => "staff",
            Role::Resident => "resident",
            Role::Manager => "manager",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The doors of this controller a holder may use, by door index (at most 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorSet {
    All,
    Mask(u64),
}

impl DoorSet {
    pub fn contains(self, door: u8) -> bool {
        match self {
            DoorSet::All => true,
            DoorSet::Mask(m) => door < 64 && m & (1u64 << door) != 0,
        }
    }
}

/// What the decision needs to know of a holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub id: String,
    pub role: Role,
    pub enabled: bool,
    pub doors: DoorSet,
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
    pub schedule: Vec<Window>,
}

/// Schedules of up to this many windows are copied into each key entry.
pub const INLINE_WINDOWS: usize = 2;

/// A copy of the holder's checks kept inside each key entry, so that a
/// decision reads the entry and nothing else, unless the holder's schedule
/// has more than [`INLINE_WINDOWS`] windows.
///
/// Packed, since there is one per key (40 bytes): the door mask with every
/// bit set for all doors, absent validity dates as the extreme instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    doors: u64,
    valid_from_ms: i64,
    valid_until_ms: i64,
    /// The schedule when short enough: `windows[..n]`; `n == u8::MAX` means
    /// read it from the holder.
    windows: [Window; INLINE_WINDOWS],
    n: u8,
    pub enabled: bool,
}

impl Rule {
    pub fn of(h: &Holder) -> Rule {
        let mut windows = [Window { days: 0, from: 0, to: 0 }; INLINE_WINDOWS];
        let n = if h.schedule.len() <= INLINE_WINDOWS {
            windows[..h.schedule.len()].copy_from_slice(&h.schedule);
            h.schedule.len() as u8
        } else {
            u8::MAX
        };
        Rule {
            enabled: h.enabled,
            doors: match h.doors {
                DoorSet::All => u64::MAX,
                DoorSet::Mask(m) => m,
            },
            valid_from_ms: h.valid_from_ms.unwrap_or(i64::MIN),
            valid_until_ms: h.valid_until_ms.unwrap_or(i64::MAX),
            windows,
            n,
        }
    }

    /// Whether `now_ms` is before the holder's first valid instant.
    pub fn not_yet_valid(&self, now_ms: i64) -> bool {
        now_ms < self.valid_from_ms
    }

    /// Whether `now_ms` is at or past the holder's end of validity.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.valid_until_ms != i64::MAX && now_ms >= self.valid_until_ms
    }

    /// Whether the holder may use door `door`.
    pub fn door(&self, door: u8) -> bool {
        door < 64 && self.doors & (1u64 << door) != 0
    }

    /// Whether the schedule allows `t`; `holder` is read only for a long schedule.
    pub fn allows(&self, holder: &Holder, t: schedule::LocalTime) -> bool {
        match self.n {
            u8::MAX => schedule::allows(&holder.schedule, t),
            n => schedule::allows(&self.windows[..n as usize], t),
        }
    }
}

/// One key in the live index.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub holder: Arc<Holder>,
    pub rule: Rule,
    pub kind: KeyKind,
    pub active: bool,
}

impl KeyEntry {
    pub fn new(holder: Arc<Holder>, kind: KeyKind, active: bool) -> Self {
        KeyEntry { rule: Rule::of(&holder), holder, kind, active }
    }
}

/// Rebuild the flat index once this many changes have piled up.
pub const COMPACT_AT: usize = 2048;

/// The live, immutable decision index: a flat hash map, plus the changes made
/// since it was built in a persistent map that provisioning clones in O(1).
/// Provisioning builds a new snapshot and swaps it in whole; every
/// [`COMPACT_AT`] changes it folds the changes into a new flat map, so a
/// single change never copies the whole index, and a lookup is one probe of
/// a usually empty overlay plus one probe of the flat map.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    base: Arc<FlatMap>,
    delta: DeltaMap,
}

impl Snapshot {
    /// A snapshot over a flat map built in one go (at start, after a sync).
    pub fn from_flat(base: FlatMap) -> Self {
        Snapshot { base: Arc::new(base), delta: DeltaMap::default() }
    }

    pub fn get(&self, h: &KeyHash) -> Option<&KeyEntry> {
        if !self.delta.is_empty() {
            if let Some(d) = self.delta.get(h) {
                return d.as_ref();
            }
        }
        self.base.get(h)
    }

    pub fn insert(&mut self, h: KeyHash, e: KeyEntry) {
        self.delta.insert(h, Some(e));
    }

    pub fn remove(&mut self, h: &KeyHash) {
        self.delta.insert(*h, None);
    }

    /// Folds the pending changes into a new flat map.
    pub fn compact(&mut self) {
        if self.delta.is_empty() {
            return;
        }
        let mut base = FlatMap::clone(&self.base);
        for (h, e) in std::mem::take(&mut self.delta) {
            match e {
                Some(e) => base.insert(h, e),
                None => base.remove(&h),
            };
        }
        self.base = Arc::new(base);
    }

    /// [`Snapshot::compact`] once enough changes have piled up.
    pub fn maybe_compact(&mut self) {
        if self.delta.len() >= COMPACT_AT {
            self.compact();
        }
    }

    /// Keys in the index (walks the overlay; not for the decision path).
    pub fn len(&self) -> usize {
        let mut n = self.base.len();
        for (h, e) in self.delta.iter() {
            match (self.base.contains_key(h), e.is_some()) {
                (false, true) => n += 1,
                (true, false) => n -= 1,
                _ => {}
            }
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes not yet folded into the flat map.
    pub fn pending(&self) -> usize {
        self.delta.len()
    }
}

/// One presented key.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub door: u8,
    pub device: u16,
    pub kind: KeyKind,
    pub key: KeyHash,
    /// Wall-clock time, unix milliseconds.
    pub now_ms: i64,
    /// The same instant on the site's local clock.
    pub local: LocalTime,
    /// Whether the presenting device is locked out.
    pub device_locked: bool,
}

/// Why access was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Unknown,
    Inactive,
    HolderDisabled,
    NotYetValid,
    Expired,
    OutsideSchedule,
    WrongDoor,
    LockedOut,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unknown => "unknown",
            Reason::Inactive => "inactive",
            Reason::HolderDisabled => "holder_disabled",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::OutsideSchedule => "outside_schedule",
            Reason::WrongDoor => "wrong_door",
            Reason::LockedOut => "locked_out",
        }
    }
}

/// The outcome, borrowing the holder from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    Grant { holder: &'a Holder },
    Deny { reason: Reason, holder: Option<&'a Holder> },
}

impl<'a> Decision<'a> {
    pub fn is_grant(&self) -> bool {
        matches!(self, Decision::Grant { .. })
    }
    pub fn holder(&self) -> Option<&'a Holder> {
        match self {
            Decision::Grant { holder } => Some(holder),
            Decision::Deny { holder, .. } => *holder,
        }
    }
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Grant { .. } => None,
            Decision::Deny { reason, .. } => Some(*reason),
        }
    }
}

/// Decides one request. The checks run in a fixed order, so the reason given
/// is the first that applies: lockout, unknown key, inactive key, disabled
/// holder, validity dates, door, schedule.
pub fn decide<'a>(snap: &'a Snapshot, req: &Request) -> Decision<'a> {
    if req.device_locked {
        return Decision::Deny { reason: Reason::LockedOut, holder: None };
    }
    let Some(entry) = snap.get(&req.key) else {
        return Decision::Deny { reason: Reason::Unknown, holder: None };
    };
    // Taking the reference reads no memory of the holder itself: only a
    // schedule too long to copy into the entry follows the pointer.
    let h: &Holder = &entry.holder;
    let r = &entry.rule;
    let deny = |reason| Decision::Deny { reason, holder: Some(h) };
    if entry.kind != req.kind {
        // Cannot happen with tagged hashes; refuse rather than trust it.
        return Decision::Deny { reason: Reason::Unknown, holder: None };
    }
    if !entry.active {
        return deny(Reason::Inactive);
    }
    if !r.enabled {
        return deny(Reason::HolderDisabled);
    }
    if r.not_yet_valid(req.now_ms) {
        return deny(Reason::NotYetValid);
    }
    if r.expired(req.now_ms) {
        return deny(Reason::Expired);
    }
    if !r.door(req.door) {
        return deny(Reason::WrongDoor);
    }
    if !r.allows(h, req.local) {
        return deny(Reason::OutsideSchedule);
    }
    Decision::Grant { holder: h }
}

#[cfg(test)]
mod tests;
