//! The access decision: pure, synchronous, no I/O, no allocation.
//!
//! [`decide`] takes a [`Snapshot`] (the live index of keys: a sorted table
//! of keys and holders in a few flat arrays, plus a small persistent overlay
//! of recent changes, swapped whole by provisioning through `arc-swap`) and
//! a fixed-size [`Request`] (the keyed
//! hash of what was presented, door and device indices, the time) and returns
//! a [`Decision`]. It never touches the store, never waits and never
//! allocates; `tests/no_alloc.rs` proves the last with a counting allocator.
//!
//! - [`enroll`]: the bounds of an enrolment window.
//! - [`schedule`]: weekly windows on local time.
//! - [`keypad`]: keys to a submitted PIN.
//! - [`lockout`]: brute-force lockout per input device.
//! - [`hasher`]: the keyed hash a presented key is looked up by.
//! - [`room`]: the room's policy around `decide`: keypad entry, lockouts,
//!   enrolment windows, card plus PIN, key uses, the clock's trust; answers
//!   with typed effects.

pub mod enroll;
pub mod hasher;
pub mod keypad;
pub mod lockout;
pub mod room;
pub mod schedule;

use schedule::{LocalTime, Window};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// HMAC-SHA256 of a presented key under the device secret, truncated to its
/// first 128 bits: the only form in which PINs, QR tokens and card UIDs are
/// stored or looked up. (A truncated HMAC is still a MAC; 128 bits keep a
/// collision among a controller's keys out of reach and halve the index.)
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KeyHash(pub [u8; KeyHash::LEN]);

impl KeyHash {
    pub const LEN: usize = 16;
}

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
/// Changes since the table was last rebuilt: `None` is a removal.
pub type DeltaMap =
    imbl::GenericHashMap<KeyHash, Option<KeyEntry>, KeyHasherBuilder, imbl::shared_ptr::DefaultSharedPtr>;
/// The limits of the few limited-use or expiring keys.
pub type LimitMap = imbl::GenericHashMap<KeyHash, Limit, KeyHasherBuilder, imbl::shared_ptr::DefaultSharedPtr>;

/// A key that opens a number of times or until an instant (a one-time code
/// for a resident's parcel), as the live index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub uses: Option<u32>,
    pub expires_ms: Option<i64>,
    /// When the key was made: its uses are counted for this key only.
    pub created_ms: i64,
}

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
    /// The role's place in [`Role::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Each role's default weekly schedule, in [`Role::ALL`] order: the schedule
/// of a holder who has none of their own (`[roles.<role>] schedule`).
pub type RoleSchedules = [Vec<schedule::Window>; 4];

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

/// A holder's checks as provisioning states them; [`Holder::new`] turns it
/// into the compact form the live index shares between the holder's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: String,
    pub role: Role,
    pub enabled: bool,
    pub doors: DoorSet,
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
    pub schedule: Vec<Window>,
}

/// What the decision needs to know of a holder, as the live index keeps it:
/// one per holder, shared by its keys (80 bytes plus the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub id: Box<str>,
    pub role: Role,
    pub rule: Rule,
    /// The schedule when longer than [`INLINE_WINDOWS`]; empty otherwise.
    long: Box<[Window]>,
}

impl Holder {
    pub fn new(p: &Profile) -> Holder {
        let rule = Rule::of(p);
        let long = if rule.n == u8::MAX { p.schedule.clone().into_boxed_slice() } else { Box::default() };
        Holder { id: p.id.as_str().into(), role: p.role, rule, long }
    }

    /// The holder as a decision sees it.
    pub fn view(&self) -> HolderRef<'_> {
        HolderRef { id: &self.id, role: self.role, rule: &self.rule, long: &self.long }
    }
}

/// A holder as a decision sees it, borrowed from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderRef<'a> {
    pub id: &'a str,
    pub role: Role,
    pub rule: &'a Rule,
    /// The schedule when longer than [`INLINE_WINDOWS`]; empty otherwise.
    long: &'a [Window],
}

impl HolderRef<'_> {
    /// Whether the holder's schedule allows `t`.
    pub fn allows(&self, t: schedule::LocalTime) -> bool {
        match self.rule.n {
            u8::MAX => schedule::allows(self.long, t),
            n => schedule::allows(&self.rule.windows[..n as usize], t),
        }
    }
}

/// Schedules of up to this many windows are kept inside the [`Rule`].
pub const INLINE_WINDOWS: usize = 2;

/// The holder's checks in packed form (40 bytes), so that a decision reads
/// the key's entry and the holder and nothing else, unless the holder's
/// schedule has more than [`INLINE_WINDOWS`] windows: the door mask with
/// every bit set for all doors, absent validity dates as the extreme
/// instants.
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
    pub fn of(h: &Profile) -> Rule {
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

    /// Whether the rule depends on the time: validity dates or a schedule.
    pub fn time_bound(&self) -> bool {
        self.valid_from_ms != i64::MIN || self.valid_until_ms != i64::MAX || self.n != 0
    }
}

/// One key of the overlay: its holder is shared by the holder's keys.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub holder: Arc<Holder>,
    pub kind: KeyKind,
    pub active: bool,
}

impl KeyEntry {
    pub fn new(holder: Arc<Holder>, kind: KeyKind, active: bool) -> Self {
        KeyEntry { holder, kind, active }
    }
}

/// A key found in the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub holder: HolderRef<'a>,
    pub kind: KeyKind,
    pub active: bool,
}

/// One key of the table (24 bytes): its holder is a row number.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: KeyHash,
    row: u32,
    kind: KeyKind,
    active: bool,
}

/// One holder of the table (56 bytes); its id and a long schedule live in
/// the table's shared text and window arrays.
#[derive(Debug, Clone, Copy)]
struct Row {
    rule: Rule,
    id_at: u32,
    long_at: u32,
    id_len: u16,
    long_len: u16,
    role: Role,
}

/// The bulk of the index, built in one go: the keys in sorted order in a
/// table of about 1.5 to 3 slots per key, each key at the slot its leading
/// bits name or, when that is taken, at the first free one after it (the
/// order is kept, so a run never has a hole). Keyed hashes are uniform, so a
/// lookup reads the slot its bits name and usually one or two after it, in
/// the same cache line: then the holder's row. Everything sits in five
/// allocations, whatever the number of holders (about 100 bytes a key for
/// 100,000 holders with 125,000 keys, ids included).
#[derive(Debug, Default)]
struct Table {
    /// Sorted by key; an empty slot has `row == EMPTY`.
    slots: Vec<Slot>,
    /// Keys in `slots`.
    keys: usize,
    /// 64 minus the number of leading bits that name a slot.
    shift: u32,
    rows: Vec<Row>,
    ids: String,
    windows: Vec<Window>,
}

/// The row number of an empty slot.
const EMPTY: u32 = u32::MAX;

/// Slots of a table of `keys` keys: a power of two, at least 4/3 of the
/// keys (1 for none: the table's search then ends at once).
fn table_len(keys: usize) -> usize {
    match keys {
        0 => 1,
        n => 1usize << (usize::BITS - (n * 4 / 3).max(1).leading_zeros()).min(28),
    }
}

/// Slots reserved past a table's end for a run of keys that goes past its
/// last slot (rare: a few keys with the same leading bits at its end).
const TAIL_ROOM: usize = 16;

impl Table {
    fn bucket(&self, k: &KeyHash) -> usize {
        let mut lead = [0u8; 8];
        lead.copy_from_slice(&k.0[..8]);
        u64::from_be_bytes(lead).checked_shr(self.shift).unwrap_or(0) as usize
    }

    fn get(&self, k: &KeyHash) -> Option<Found<'_>> {
        if self.keys == 0 {
            return None;
        }
        // From the slot the key's bits name, through the run that follows:
        // the key, an empty slot or a greater key ends the search.
        for s in &self.slots[self.bucket(k)..] {
            if s.row == EMPTY || s.key > *k {
                return None;
            }
            if s.key == *k {
                return Some(Found { holder: self.holder(s.row), kind: s.kind, active: s.active });
            }
        }
        None
    }

    fn holder(&self, row: u32) -> HolderRef<'_> {
        let r = &self.rows[row as usize];
        HolderRef {
            id: &self.ids[r.id_at as usize..][..usize::from(r.id_len)],
            role: r.role,
            rule: &r.rule,
            long: &self.windows[r.long_at as usize..][..usize::from(r.long_len)],
        }
    }
}

/// Builds the table of a [`Snapshot`] in one go: holders first, then their
/// keys by the holder number [`TableBuilder::holder`] returned.
#[derive(Debug, Default)]
pub struct TableBuilder {
    t: Table,
}

impl TableBuilder {
    /// Room for `keys` keys and `holders` holders: the keys' array is
    /// made as large as the finished table, which [`TableBuilder::finish`]
    /// then lays out in place (no second array of every key while the
    /// largest allocation of a sync is made).
    fn with_capacity(keys: usize, holders: usize) -> Self {
        let mut t = Table::default();
        t.slots.reserve_exact(table_len(keys).max(keys) + TAIL_ROOM);
        t.rows.reserve_exact(holders);
        TableBuilder { t }
    }

    /// Adds a holder; returns its number for [`TableBuilder::key`].
    fn holder(&mut self, h: HolderRef<'_>) -> u32 {
        let t = &mut self.t;
        // Ids are at most 64 bytes and schedules a few windows (the
        // commands refuse more, and so does reading a stored record), far
        // inside the 16-bit lengths; the cut, should one ever be needed, is
        // on a character, never inside one.
        let mut cut = h.id.len().min(usize::from(u16::MAX));
        while !h.id.is_char_boundary(cut) {
            cut -= 1;
        }
        let id = &h.id[..cut];
        let long = &h.long[..h.long.len().min(usize::from(u16::MAX))];
        let row = Row {
            rule: *h.rule,
            id_at: t.ids.len() as u32,
            long_at: t.windows.len() as u32,
            id_len: id.len() as u16,
            long_len: long.len() as u16,
            role: h.role,
        };
        t.ids.push_str(id);
        t.windows.extend_from_slice(long);
        t.rows.push(row);
        (t.rows.len() - 1) as u32
    }

    /// Adds a holder given as a [`Profile`].
    pub fn profile(&mut self, p: &Profile) -> u32 {
        let rule = Rule::of(p);
        let long: &[Window] = if rule.n == u8::MAX { &p.schedule } else { &[] };
        self.holder(HolderRef { id: &p.id, role: p.role, rule: &rule, long })
    }

    /// Adds a key of holder number `holder`. Of a key added twice the
    /// table keeps the greatest (by holder number, then kind, then active):
    /// the store never holds one key twice, and the choice does not depend
    /// on the order of the scan.
    pub fn key(&mut self, key: KeyHash, holder: u32, kind: KeyKind, active: bool) {
        self.t.slots.push(Slot { key, row: holder, kind, active });
    }

    pub fn finish(self) -> Snapshot {
        let mut t = self.t;
        // In place (a stable sort would take a copy of every key), on
        // every field, so that of equal keys the greatest stays last and
        // the table is the same whatever order the keys came in.
        let mut slots = std::mem::take(&mut t.slots);
        slots.sort_unstable_by(|a, b| {
            (a.key, a.row, a.kind as u8, a.active).cmp(&(b.key, b.row, b.kind as u8, b.active))
        });
        slots.dedup_by(|later, kept| {
            let same = later.key == kept.key;
            if same {
                *kept = *later;
            }
            same
        });
        t.keys = slots.len();
        let len = table_len(t.keys);
        t.shift = 64 - len.trailing_zeros();
        // Each key goes to the slot its leading bits name, or just after the
        // key before it: so a key's slot is never before its place in the
        // sorted order, and the keys can be moved there in place, from the
        // last to the first, in the same array. (A run past the last slot
        // makes the table longer by its tail.)
        let mut at = Vec::with_capacity(t.keys);
        let mut next = 0;
        for s in &slots {
            let a = t.bucket(&s.key).max(next);
            at.push(a as u32);
            next = a + 1;
        }
        let empty = Slot { key: KeyHash([0; KeyHash::LEN]), row: EMPTY, kind: KeyKind::Pin, active: false };
        slots.resize(len.max(next), empty);
        for (i, a) in at.into_iter().enumerate().rev() {
            let a = a as usize;
            if a != i {
                slots[a] = slots[i];
                slots[i] = empty;
            }
        }
        slots.shrink_to_fit();
        t.slots = slots;
        t.ids.shrink_to_fit();
        t.windows.shrink_to_fit();
        t.rows.shrink_to_fit();
        Snapshot { base: Arc::new(t), delta: DeltaMap::default(), limits: LimitMap::default() }
    }
}

/// Rebuild the table once this many changes have piled up.
pub const COMPACT_AT: usize = 2048;

/// The live, immutable decision index: the table, plus the changes made
/// since it was built in a persistent map that provisioning clones in O(1).
/// Provisioning builds a new snapshot and swaps it in whole; every
/// [`COMPACT_AT`] changes it folds the changes into a new table, so a
/// single change never copies the whole index, and a lookup is one probe of
/// a usually empty overlay plus one of the table.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    base: Arc<Table>,
    delta: DeltaMap,
    limits: LimitMap,
}

impl Snapshot {
    /// A builder for a snapshot made in one go (at start, after a sync).
    pub fn builder(keys: usize, holders: usize) -> TableBuilder {
        TableBuilder::with_capacity(keys, holders)
    }

    pub fn get(&self, h: &KeyHash) -> Option<Found<'_>> {
        if !self.delta.is_empty() {
            if let Some(d) = self.delta.get(h) {
                return d.as_ref().map(|e| Found { holder: e.holder.view(), kind: e.kind, active: e.active });
            }
        }
        self.base.get(h)
    }

    pub fn insert(&mut self, h: KeyHash, e: KeyEntry) {
        self.delta.insert(h, Some(e));
    }

    pub fn remove(&mut self, h: &KeyHash) {
        self.delta.insert(*h, None);
        self.limits.remove(h);
    }

    /// The limit of a limited-use or expiring key.
    pub fn limit(&self, h: &KeyHash) -> Option<&Limit> {
        if self.limits.is_empty() {
            return None;
        }
        self.limits.get(h)
    }

    /// Sets (or, with `None`, clears) a key's limit.
    pub fn set_limit(&mut self, h: KeyHash, l: Option<Limit>) {
        match l {
            Some(l) => {
                self.limits.insert(h, l);
            }
            None => {
                self.limits.remove(&h);
            }
        }
    }

    /// Folds the pending changes into a new table.
    pub fn compact(&mut self) {
        if self.delta.is_empty() {
            return;
        }
        let t = &self.base;
        let mut b = TableBuilder::with_capacity(t.keys + self.delta.len(), t.rows.len() + self.delta.len());
        // A holder's keys change together (provisioning removes and adds
        // them all), so a row is either kept whole or replaced whole.
        let mut rows = vec![u32::MAX; t.rows.len()];
        for s in &t.slots {
            if s.row == EMPTY || self.delta.contains_key(&s.key) {
                continue;
            }
            let r = &mut rows[s.row as usize];
            if *r == u32::MAX {
                *r = b.holder(t.holder(s.row));
            }
            b.key(s.key, *r, s.kind, s.active);
        }
        let mut shared: std::collections::HashMap<*const Holder, u32> = std::collections::HashMap::new();
        for (k, e) in self.delta.iter() {
            if let Some(e) = e {
                let r = *shared.entry(Arc::as_ptr(&e.holder)).or_insert_with(|| b.holder(e.holder.view()));
                b.key(*k, r, e.kind, e.active);
            }
        }
        let limits = std::mem::take(&mut self.limits);
        *self = b.finish();
        self.limits = limits;
    }

    /// [`Snapshot::compact`] once enough changes have piled up.
    pub fn maybe_compact(&mut self) {
        if self.delta.len() >= COMPACT_AT {
            self.compact();
        }
    }

    /// Keys in the index (walks the overlay; not for the decision path).
    pub fn len(&self) -> usize {
        let mut n = self.base.keys;
        for (h, e) in self.delta.iter() {
            match (self.base.get(h).is_some(), e.is_some()) {
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

    /// Changes not yet folded into the table.
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
    /// Whether the wall clock cannot be trusted now (not synchronised, and
    /// the policy is to deny): keys bound by time are then denied, except
    /// those of staff and managers.
    pub clock_untrusted: bool,
    /// The grants this key has given, if it is limited ([`Limit`]).
    pub spent: u32,
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
    ClockUnsynchronized,
    /// Card plus PIN: a PIN or QR code alone where a card and its holder's
    /// PIN are wanted (decided by the decision loop, not by [`decide`]).
    CardRequired,
    /// Card plus PIN: the PIN typed after the card is another holder's.
    PinMismatch,
    /// Card plus PIN: no PIN came in time after the card.
    PinRequired,
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
            Reason::ClockUnsynchronized => "clock_unsynchronized",
            Reason::CardRequired => "card_required",
            Reason::PinMismatch => "pin_mismatch",
            Reason::PinRequired => "pin_required",
        }
    }
}

/// The outcome, borrowing the holder from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    Grant { holder: HolderRef<'a> },
    Deny { reason: Reason, holder: Option<HolderRef<'a>> },
}

impl<'a> Decision<'a> {
    pub fn is_grant(&self) -> bool {
        matches!(self, Decision::Grant { .. })
    }
    pub fn holder(&self) -> Option<HolderRef<'a>> {
        match self {
            Decision::Grant { holder } => Some(*holder),
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
    // The key, then its holder's row; only a schedule too long for the
    // rule is read from a third place.
    let h = entry.holder;
    let r = h.rule;
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
    let limit = snap.limit(&req.key);
    let time_bound = r.time_bound() || limit.is_some_and(|l| l.expires_ms.is_some());
    if req.clock_untrusted && time_bound && !matches!(h.role, Role::Staff | Role::Manager) {
        return deny(Reason::ClockUnsynchronized);
    }
    if r.not_yet_valid(req.now_ms) {
        return deny(Reason::NotYetValid);
    }
    if r.expired(req.now_ms) {
        return deny(Reason::Expired);
    }
    if let Some(l) = limit {
        if l.expires_ms.is_some_and(|e| req.now_ms >= e) || l.uses.is_some_and(|u| req.spent >= u) {
            return deny(Reason::Expired);
        }
    }
    if !r.door(req.door) {
        return deny(Reason::WrongDoor);
    }
    if !h.allows(req.local) {
        return deny(Reason::OutsideSchedule);
    }
    Decision::Grant { holder: h }
}

#[cfg(test)]
mod tests;
