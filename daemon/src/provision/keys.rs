//! The key operations: one library API that the admin socket uses now and
//! MQTT uses too. Every change is one atomic store batch, flushed, and then
//! swapped into the live decision snapshot before the call returns, so "ok"
//! means on disk and deciding.
//!
//! Writers are serialised by one mutex; readers (the decision loop) never
//! take it: they load the snapshot through `arc-swap`.

use super::error::OpError;
use crate::access::{KeyEntry, KeyHash, KeyKind, Role, Snapshot};
use crate::store::records::{self, CardRecord, HolderRecord, KeyLimit, KeyRecord, Space, WindowRecord};
use crate::store::secret::KeyHasher;
use crate::store::{Batch, Store};
use crate::time::{Clock, SystemClock};
use arc_swap::ArcSwap;
use base64::Engine;
use porter_drivers::CardUid;
use sha2::Digest;
use staging::Shared;
pub use staging::SyncLimits;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod staging;
mod sync_put;
mod views;
pub use views::{
    CardView, HolderPage, HolderView, KeyView, KeysView, LimitView, NewKey, SyncBegun, SyncCommitted, SyncStaged,
};

/// The most key cards one holder may have.
pub const MAX_CARDS: usize = 32;
/// Attempts to draw an unused, non-trivial PIN before giving up.
const PIN_DRAWS: usize = 10_000;

/// What `holder.put` sets; keys are untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderSpec {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub doors: Option<Vec<String>>,
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
    pub schedule: Vec<WindowRecord>,
    pub enabled: bool,
}

impl HolderSpec {
    /// An enabled holder with every door, no schedule and no validity dates.
    pub fn new(id: &str, name: &str, role: Role) -> Self {
        HolderSpec {
            id: id.into(),
            name: name.into(),
            role,
            doors: None,
            valid_from_ms: None,
            valid_until_ms: None,
            schedule: vec![],
            enabled: true,
        }
    }
}

/// One holder of a full sync, with its keys in plaintext (hashed on arrival).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncHolder {
    pub spec: HolderSpec,
    /// The PIN, whether it is active, and its limit.
    pub pin: Option<(String, bool, Option<KeyLimit>)>,
    pub qr: Option<(String, bool, Option<KeyLimit>)>,
    pub cards: Vec<(CardUid, bool)>,
}

/// An open sync, as kept in the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SyncState {
    generation: u64,
    holders: u64,
    /// Bytes of its staged records (holders and key index, as stored).
    #[serde(default)]
    bytes: u64,
    /// Keys (PINs, QR codes, cards) of its staged holders: room made for
    /// the index at the commit.
    #[serde(default)]
    keys: u64,
    /// PINs retired by its `sync.put`s (staged until the commit).
    #[serde(default)]
    retired: u64,
    /// Why it was dropped (idle too long, a restart during a clear): its
    /// `sync.put` and `sync.commit` get `stale` with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dropped: Option<String>,
}

/// Counts and digest for `state.get`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StateView {
    pub generation: u64,
    pub holders: u64,
    pub pins: u64,
    pub qr: u64,
    pub cards: u64,
    pub digest: String,
    /// Non-trivial PINs of `keys.pin_length` digits (docs/security.md).
    pub pin_space: u64,
    /// Of those, the PINs neither live nor held back as retired within
    /// `keys.pin_retention_days`: what `pin.generate` may still draw.
    pub pin_space_free: u64,
}

/// The default of `keys.pin_retention_days`.
pub const PIN_RETENTION_DEFAULT: Duration = Duration::from_secs(365 * 86_400);

pub struct KeyService {
    store: Store,
    hasher: KeyHasher,
    live: Arc<ArcSwap<Snapshot>>,
    doors: Vec<String>,
    /// Each role's default schedule, for holders without their own.
    role_schedules: crate::access::RoleSchedules,
    pin_length: usize,
    /// How long a retired PIN is held back from everyone (its tombstone's
    /// age below this); after it the PIN may be drawn or set again.
    pin_retention_ms: i64,
    /// The writer mutex, the live space and the staged sync's state, shared
    /// with the janitor thread (see `staging`).
    shared: Arc<Shared>,
    janitor: Option<std::thread::JoinHandle<()>>,
    /// The live set's generation and counts, kept as they change so that
    /// the status document needs no scan of the store. They change together,
    /// under the writer's lock, right after the snapshot is swapped: a
    /// reader gets both from the same committed set.
    summary: std::sync::Mutex<Summary>,
    /// Where every time this service writes (a key's creation, a holder's
    /// update, a tombstone) or compares with (a limit's expiry) is read:
    /// the daemon's injected clock ([`KeyService::with_clock`]), so tests
    /// move time instead of sleeping for it.
    clock: Arc<dyn Clock>,
}

/// How long a key limited in uses lasts when no expiry is given.
pub const LIMITED_LIFE_MS: i64 = 24 * 3600 * 1000;

/// A limit as stored: one limited in uses but given no expiry expires
/// [`LIMITED_LIFE_MS`] after the key was made.
pub fn resolve(limit: Option<KeyLimit>, created_ms: i64) -> Option<KeyLimit> {
    limit.map(|l| match l {
        KeyLimit { uses: Some(_), expires_ms: None } => {
            KeyLimit { expires_ms: Some(created_ms + LIMITED_LIFE_MS), ..l }
        }
        l => l,
    })
}

/// The limits of a holder's limited keys, as the live index keeps them.
fn limits_of(rec: &HolderRecord) -> impl Iterator<Item = (KeyHash, crate::access::Limit)> + '_ {
    [&rec.pin, &rec.qr].into_iter().flatten().filter_map(|k| {
        k.limit.map(|l| {
            (k.hash, crate::access::Limit { uses: l.uses, expires_ms: l.expires_ms, created_ms: k.created_ms })
        })
    })
}

/// The live set's generation and counts, one value (the status document's).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub generation: u64,
    pub counts: Counts,
}

/// The live set's counts, as the status document shows them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub holders: u64,
    pub pins: u64,
    pub qr: u64,
    pub cards: u64,
}

impl Counts {
    fn of(rec: &HolderRecord) -> Counts {
        Counts {
            holders: 1,
            pins: u64::from(rec.pin.is_some()),
            qr: u64::from(rec.qr.is_some()),
            cards: rec.cards.len() as u64,
        }
    }

    fn add(&mut self, c: Counts) {
        self.holders += c.holders;
        self.pins += c.pins;
        self.qr += c.qr;
        self.cards += c.cards;
    }

    fn sub(&mut self, c: Counts) {
        self.holders = self.holders.saturating_sub(c.holders);
        self.pins = self.pins.saturating_sub(c.pins);
        self.qr = self.qr.saturating_sub(c.qr);
        self.cards = self.cards.saturating_sub(c.cards);
    }
}

/// Whether a PIN is too easy to guess: one digit repeated, a run up or down
/// (wrapping, as 890123), or a block of two or three repeated (121212, 123123).
pub fn is_trivial(pin: &[u8]) -> bool {
    let n = pin.len();
    if n < 2 {
        return true;
    }
    let step = |d: i8| pin.windows(2).all(|w| (w[1] as i8 - w[0] as i8).rem_euclid(10) == d.rem_euclid(10));
    // A block must repeat at least twice to count (1212, 123123), so a
    // four-digit PIN is not refused merely for starting and ending alike.
    let period = |p: usize| n >= 2 * p && (p..n).all(|i| pin[i] == pin[i - p]);
    step(0) || step(1) || step(-1) || period(2) || period(3)
}

impl KeyService {
    /// Opens the service over `store` and builds the live snapshot from it.
    pub fn open(store: Store, hasher: KeyHasher, doors: Vec<String>, pin_length: usize) -> Result<Self, OpError> {
        Self::open_with_roles(store, hasher, doors, pin_length, Default::default())
    }

    /// [`KeyService::open`] with each role's default schedule, which applies
    /// to the holders of that role who have no schedule of their own.
    pub fn open_with_roles(
        store: Store,
        hasher: KeyHasher,
        doors: Vec<String>,
        pin_length: usize,
        role_schedules: crate::access::RoleSchedules,
    ) -> Result<Self, OpError> {
        let space = records::active_space(&store);
        let writer = staging::at_start(&store, space, SyncLimits::default())?;
        let shared = Arc::new(Shared {
            store: store.clone(),
            space: AtomicU8::new(space.0),
            writer: std::sync::Mutex::new(writer),
            wake: Default::default(),
        });
        let janitor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sync-janitor".into())
                .spawn(move || staging::janitor(shared))
                .map_err(|e| OpError::internal(format!("cannot start the sync janitor thread: {e}")))?
        };
        let svc = KeyService {
            store,
            hasher,
            live: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            doors,
            role_schedules,
            pin_length,
            pin_retention_ms: PIN_RETENTION_DEFAULT.as_millis() as i64,
            shared,
            janitor: Some(janitor),
            summary: Default::default(),
            clock: Arc::new(SystemClock),
        };
        svc.reload()?;
        Ok(svc)
    }

    /// The service reading the time from `clock` (the system clock until
    /// then).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Unix time in milliseconds, from the service's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The live space.
    fn space(&self) -> Space {
        self.shared.space()
    }

    /// Rebuilds the live snapshot from the live space, in one go.
    fn reload(&self) -> Result<(), OpError> {
        let c = self.counts();
        self.reload_sized((c.pins + c.qr + c.cards) as usize, c.holders as usize)
    }

    /// [`KeyService::reload`] with room made for `keys` keys of `holders`
    /// holders (a sync's staged counts).
    fn reload_sized(&self, keys: usize, holders: usize) -> Result<(), OpError> {
        // The table is a few large arrays, not an allocation per holder, so
        // nothing of the live index is scattered among the scan's short-lived
        // allocations. Their size is made beforehand where it is known (the
        // sync's counts, else the set being replaced, none at start); they
        // grow as the scan needs.
        let mut table = Snapshot::builder(keys, holders);
        let mut counts = Counts::default();
        let mut limits = Vec::new();
        for r in self.store.scan(&self.space().holders()) {
            let (k, v) = r?;
            let rec = HolderRecord::decode(&k, &v)?;
            counts.add(Counts::of(&rec));
            let row = table.profile(&self.profile(&rec));
            for (h, kind, active) in rec.keys() {
                table.key(h, row, kind, active);
            }
            limits.extend(limits_of(&rec));
        }
        let mut snap = table.finish();
        for (h, l) in limits {
            snap.set_limit(h, Some(l));
        }
        let generation = stored_generation(&self.store)?;
        self.live.store(Arc::new(snap));
        *self.summary.lock().unwrap_or_else(|e| e.into_inner()) = Summary { generation, counts };
        Ok(())
    }

    /// The live snapshot the decision loop reads.
    pub fn live(&self) -> Arc<ArcSwap<Snapshot>> {
        self.live.clone()
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn pin_length(&self) -> usize {
        self.pin_length
    }

    /// A holder as the decision core sees them: doors resolved against this
    /// controller's, and their role's default schedule if they have none.
    fn profile(&self, rec: &HolderRecord) -> crate::access::Profile {
        let mut p = rec.profile(&self.doors);
        if p.schedule.is_empty() {
            p.schedule = self.role_schedules[p.role.index()].clone();
        }
        p
    }

    /// The live-index entries of one holder's keys.
    fn entries(&self, rec: &HolderRecord) -> impl Iterator<Item = (KeyHash, KeyEntry)> {
        let holder = Arc::new(crate::access::Holder::new(&self.profile(rec)));
        rec.keys().into_iter().map(move |(h, kind, active)| (h, KeyEntry::new(holder.clone(), kind, active)))
    }

    fn load(&self, id: &str) -> Result<Option<HolderRecord>, OpError> {
        match self.store.get(&records::holder_key(self.space(), id))? {
            None => Ok(None),
            Some(v) => Ok(Some(HolderRecord::decode(id.as_bytes(), &v)?)),
        }
    }

    fn owner_of(&self, h: &KeyHash) -> Result<Option<String>, OpError> {
        Ok(self.store.get(&records::key_key(self.space(), h))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Whether the PIN of hash `h` is held back: retired within the
    /// retention period (a tombstone whose time does not read is held back).
    fn is_tombstoned(&self, h: &KeyHash) -> Result<bool, OpError> {
        Ok(self.store.get(&records::tombstone_key(h))?.is_some_and(|v| self.holds_back(&v)))
    }

    /// Whether a tombstone with value `v` (its retirement time) still holds its PIN back.
    fn holds_back(&self, v: &[u8]) -> bool {
        match std::str::from_utf8(v).ok().and_then(|t| t.parse::<i64>().ok()) {
            Some(t) => self.now_ms().saturating_sub(t) < self.pin_retention_ms,
            None => true,
        }
    }

    /// The service holding a retired PIN back for `d` (`keys.pin_retention_days`).
    pub fn with_pin_retention(mut self, d: Duration) -> Self {
        self.pin_retention_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Writes the change from `old` to `new` (either may be absent) plus
    /// `batch` atomically, flushes, then swaps the live snapshot.
    fn commit(&self, old: Option<&HolderRecord>, new: Option<&HolderRecord>, mut batch: Batch) -> Result<(), OpError> {
        let space = self.space();
        let old_keys = old.map(|o| o.keys()).unwrap_or_default();
        let new_keys = new.map(|n| n.keys()).unwrap_or_default();
        for (h, ..) in &old_keys {
            if !new_keys.iter().any(|(n, ..)| n == h) {
                batch.remove(records::key_key(space, h));
                batch.remove(records::uses_key(h));
            }
        }
        match (old, new) {
            (_, Some(n)) => {
                for (h, ..) in &new_keys {
                    batch.put(records::key_key(space, h), n.id.as_bytes().to_vec());
                }
                batch.put(records::holder_key(space, &n.id), n.encode());
            }
            (Some(o), None) => batch.remove(records::holder_key(space, &o.id)),
            (None, None) => {}
        }
        self.store.apply_change(batch)?;
        let cur = self.live.load_full();
        let mut snap = Snapshot::clone(&cur);
        for (h, ..) in &old_keys {
            snap.remove(h);
        }
        if let Some(n) = new {
            for (h, e) in self.entries(n) {
                snap.insert(h, e);
            }
            for (h, l) in limits_of(n) {
                snap.set_limit(h, Some(l));
            }
        }
        snap.maybe_compact();
        self.live.store(Arc::new(snap));
        let counts = &mut self.summary.lock().unwrap_or_else(|e| e.into_inner()).counts;
        old.map(Counts::of).into_iter().for_each(|c| counts.sub(c));
        new.map(Counts::of).into_iter().for_each(|c| counts.add(c));
        Ok(())
    }

    /// The live set's generation and counts, without a scan and without
    /// waiting for the writer (for the status document): both always of the
    /// same committed set.
    pub fn summary(&self) -> Summary {
        *self.summary.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live set's counts ([`KeyService::summary`]).
    pub fn counts(&self) -> Counts {
        self.summary().counts
    }

    /// Loads holder `id`, lets `f` change it (and add to the batch), commits.
    fn modify<T>(
        &self,
        id: &str,
        f: impl FnOnce(&Self, &mut HolderRecord, &mut Batch) -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        let _w = self.shared.lock()?;
        let old = self.load(id)?.ok_or_else(|| OpError::not_found(format!("no holder `{id}`")))?;
        let mut rec = old.clone();
        let mut batch = Batch::default();
        let out = f(self, &mut rec, &mut batch)?;
        if rec != old {
            rec.updated_ms = self.now_ms();
            self.commit(Some(&old), Some(&rec), batch)?;
        }
        Ok(out)
    }

    // ---- holders ----

    /// Creates the holder or replaces its profile; its keys are kept.
    pub fn holder_put(&self, spec: HolderSpec) -> Result<HolderView, OpError> {
        let _w = self.shared.lock()?;
        let old = self.load(&spec.id)?;
        let now = self.now_ms();
        let rec = HolderRecord {
            id: spec.id,
            name: spec.name,
            role: spec.role,
            doors: spec.doors,
            valid_from_ms: spec.valid_from_ms,
            valid_until_ms: spec.valid_until_ms,
            schedule: spec.schedule,
            enabled: spec.enabled,
            pin: old.as_ref().and_then(|o| o.pin.clone()),
            qr: old.as_ref().and_then(|o| o.qr.clone()),
            cards: old.as_ref().map(|o| o.cards.clone()).unwrap_or_default(),
            created_ms: old.as_ref().map(|o| o.created_ms).unwrap_or(now),
            updated_ms: now,
        };
        self.commit(old.as_ref(), Some(&rec), Batch::default())?;
        Ok(HolderView::of(&rec, now))
    }

    pub fn holder_get(&self, id: &str) -> Result<HolderView, OpError> {
        let rec = self.load(id)?.ok_or_else(|| OpError::not_found(format!("no holder `{id}`")))?;
        let mut v = HolderView::of(&rec, self.now_ms());
        // A limited key's uses left, as last written by the decision loop.
        for (k, view) in [(&rec.pin, &mut v.keys.pin), (&rec.qr, &mut v.keys.qr)] {
            let Some((k, uses)) = k.as_ref().and_then(|k| Some((k, k.limit?.uses?))) else { continue };
            let Some(limit) = view.as_mut().and_then(|v| v.limit.as_mut()) else { continue };
            let used = self
                .store
                .get(&records::uses_key(&k.hash))?
                .and_then(|b| records::Spent::decode(&b))
                .filter(|s| s.created_ms == k.created_ms)
                .map_or(0, |s| s.used);
            limit.uses_left = Some(uses.saturating_sub(used));
            limit.expired |= used >= uses;
        }
        Ok(v)
    }

    /// Holders in id order after `after`, at most `limit`, optionally of one
    /// role; `next` is the cursor for the following page.
    pub fn holder_list(&self, role: Option<Role>, after: Option<&str>, limit: usize) -> Result<HolderPage, OpError> {
        let (space, now) = (self.space(), self.now_ms());
        let start = records::holder_key(space, after.unwrap_or(""));
        let iter: Box<dyn Iterator<Item = _>> = match after {
            Some(_) => Box::new(self.store.scan_after(&space.holders(), &start)),
            None => Box::new(self.store.scan(&space.holders())),
        };
        let mut out = Vec::new();
        let mut next = None;
        for r in iter {
            let (k, v) = r?;
            let rec = HolderRecord::decode(&k, &v)?;
            if role.is_some_and(|r| r != rec.role) {
                continue;
            }
            if out.len() == limit {
                next = out.last().map(|v: &HolderView| v.holder.clone());
                break;
            }
            out.push(HolderView::of(&rec, now));
        }
        Ok(HolderPage { holders: out, next })
    }

    /// Deletes the holder and all its keys; its PIN becomes a tombstone.
    pub fn holder_delete(&self, id: &str) -> Result<(), OpError> {
        let _w = self.shared.lock()?;
        let old = self.load(id)?.ok_or_else(|| OpError::not_found(format!("no holder `{id}`")))?;
        let mut batch = Batch::default();
        tombstone(&old.pin, self.now_ms(), &mut batch);
        self.commit(Some(&old), None, batch)
    }

    // ---- PINs ----

    fn check_pin_free(&self, h: &KeyHash, holder: &str) -> Result<bool, OpError> {
        match self.owner_of(h)? {
            Some(owner) if owner == holder => Ok(true),
            Some(_) => Err(OpError::duplicate("this PIN is in use by another holder; choose another")),
            None if self.is_tombstoned(h)? => Err(OpError::duplicate(
                "this PIN was used before and deleted; a deleted PIN is never reused, choose another",
            )),
            None => Ok(false),
        }
    }

    /// Draws a fresh PIN for the holder, replacing (and tombstoning) any old one.
    pub fn pin_generate(&self, id: &str) -> Result<String, OpError> {
        self.pin_generate_limited(id, None).map(|(pin, _)| pin)
    }

    /// [`KeyService::pin_generate`], limited in uses or time when `limit`
    /// says; returns the PIN and its limit as stored ([`resolve`]).
    pub fn pin_generate_limited(
        &self,
        id: &str,
        limit: Option<KeyLimit>,
    ) -> Result<(String, Option<KeyLimit>), OpError> {
        self.modify(id, |svc, rec, batch| {
            for _ in 0..PIN_DRAWS {
                let pin = random_pin(svc.pin_length)?;
                if is_trivial(pin.as_bytes()) {
                    continue;
                }
                let h = svc.hasher.hash(KeyKind::Pin, pin.as_bytes());
                if svc.owner_of(&h)?.is_some() || svc.is_tombstoned(&h)? {
                    continue;
                }
                tombstone(&rec.pin, svc.now_ms(), batch);
                let created_ms = svc.now_ms();
                let limit = resolve(limit, created_ms);
                rec.pin = Some(KeyRecord { hash: h, active: true, created_ms, limit });
                return Ok((pin, limit));
            }
            Err(OpError::internal(format!(
                "no unused PIN could be drawn in {PIN_DRAWS} tries; the PIN space is nearly exhausted (state.get's pin_space_free): delete unused PINs, lower keys.pin_retention_days, or raise keys.pin_length"
            )))
        })
    }

    /// Sets the holder's PIN to `pin` (the portal's "customise" with its duplicate check).
    pub fn pin_set(&self, id: &str, pin: &str) -> Result<(), OpError> {
        self.pin_set_limited(id, pin, None).map(|_| ())
    }

    /// [`KeyService::pin_set`], limited in uses or time when `limit` says;
    /// returns the limit as stored ([`resolve`]).
    pub fn pin_set_limited(&self, id: &str, pin: &str, limit: Option<KeyLimit>) -> Result<Option<KeyLimit>, OpError> {
        if pin.len() != self.pin_length || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OpError::invalid(format!("a PIN is exactly {} digits", self.pin_length)));
        }
        if is_trivial(pin.as_bytes()) {
            return Err(OpError::invalid("this PIN is too easy to guess (a repeated digit, a run such as 123456, or a repeated block); choose another"));
        }
        let h = self.hasher.hash(KeyKind::Pin, pin.as_bytes());
        self.modify(id, |svc, rec, batch| {
            if svc.check_pin_free(&h, &rec.id)?
                && limit.is_none()
                && rec.pin.as_ref().is_some_and(|p| p.limit.is_none())
            {
                // The holder's own PIN again, unlimited as it was: nothing changes.
                return Ok(None);
            }
            if rec.pin.as_ref().is_some_and(|p| p.hash != h) {
                tombstone(&rec.pin, svc.now_ms(), batch);
            }
            let created_ms = svc.now_ms();
            let limit = resolve(limit, created_ms);
            // A PIN set or made again with limits is a new key: active, its count fresh.
            rec.pin = Some(KeyRecord { hash: h, active: true, created_ms, limit });
            Ok(limit)
        })
    }

    pub fn pin_set_active(&self, id: &str, active: bool) -> Result<(), OpError> {
        self.modify(id, |_, rec, _| match rec.pin.as_mut() {
            Some(p) => {
                p.active = active;
                Ok(())
            }
            None => Err(OpError::not_found(format!("holder `{id}` has no PIN"))),
        })
    }

    pub fn pin_delete(&self, id: &str) -> Result<(), OpError> {
        self.modify(id, |svc, rec, batch| {
            if rec.pin.is_none() {
                return Err(OpError::not_found(format!("holder `{id}` has no PIN")));
            }
            tombstone(&rec.pin, svc.now_ms(), batch);
            rec.pin = None;
            Ok(())
        })
    }

    // ---- QR tokens ----

    /// Draws a fresh QR token (128 random bits, URL-safe base64), replacing any old one.
    pub fn qr_generate(&self, id: &str) -> Result<String, OpError> {
        self.qr_generate_limited(id, None).map(|(t, _)| t)
    }

    /// [`KeyService::qr_generate`], limited in uses or time when `limit`
    /// says; returns the token and its limit as stored ([`resolve`]).
    pub fn qr_generate_limited(
        &self,
        id: &str,
        limit: Option<KeyLimit>,
    ) -> Result<(String, Option<KeyLimit>), OpError> {
        self.modify(id, |svc, rec, _| {
            let mut raw = [0u8; 16];
            getrandom::fill(&mut raw).map_err(|e| OpError::internal(format!("no randomness: {e}")))?;
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            let h = svc.hasher.hash(KeyKind::Qr, token.as_bytes());
            let created_ms = svc.now_ms();
            let limit = resolve(limit, created_ms);
            rec.qr = Some(KeyRecord { hash: h, active: true, created_ms, limit });
            Ok((token, limit))
        })
    }

    pub fn qr_set_active(&self, id: &str, active: bool) -> Result<(), OpError> {
        self.modify(id, |_, rec, _| match rec.qr.as_mut() {
            Some(q) => {
                q.active = active;
                Ok(())
            }
            None => Err(OpError::not_found(format!("holder `{id}` has no QR code"))),
        })
    }

    pub fn qr_delete(&self, id: &str) -> Result<(), OpError> {
        self.modify(id, |_, rec, _| match rec.qr.take() {
            Some(_) => Ok(()),
            None => Err(OpError::not_found(format!("holder `{id}` has no QR code"))),
        })
    }

    // ---- key cards ----

    /// Assigns a card to the holder; a card of another holder is `duplicate`.
    pub fn card_assign(&self, id: &str, uid: &CardUid) -> Result<(), OpError> {
        let h = self.hasher.hash(KeyKind::Card, uid.as_bytes());
        let hex_uid = uid.to_hex();
        self.modify(id, |svc, rec, _| {
            match svc.owner_of(&h)? {
                Some(owner) if owner == rec.id => return Ok(()),
                Some(_) => {
                    return Err(OpError::duplicate("this card is assigned to another holder; delete it there first"))
                }
                None => {}
            }
            if rec.cards.len() >= MAX_CARDS {
                return Err(OpError::invalid(format!("a holder has at most {MAX_CARDS} cards")));
            }
            rec.cards.push(CardRecord {
                hash: h,
                hint: hex_uid[hex_uid.len().saturating_sub(4)..].to_string(),
                active: true,
                created_ms: svc.now_ms(),
            });
            Ok(())
        })
    }

    fn card_owner(&self, uid: &CardUid) -> Result<(String, KeyHash), OpError> {
        let h = self.hasher.hash(KeyKind::Card, uid.as_bytes());
        let owner = self.owner_of(&h)?.ok_or_else(|| OpError::not_found("no holder has this card"))?;
        Ok((owner, h))
    }

    pub fn card_set_active(&self, uid: &CardUid, active: bool) -> Result<String, OpError> {
        let (owner, hash) = self.card_owner(uid)?;
        self.modify(&owner, |_, rec, _| {
            rec.cards.iter_mut().filter(|c| c.hash == hash).for_each(|c| c.active = active);
            Ok(())
        })?;
        Ok(owner)
    }

    pub fn card_delete(&self, uid: &CardUid) -> Result<String, OpError> {
        let (owner, hash) = self.card_owner(uid)?;
        self.modify(&owner, |_, rec, _| {
            rec.cards.retain(|c| c.hash != hash);
            Ok(())
        })?;
        Ok(owner)
    }

    // ---- full sync ----

    /// `sync.begin`: opens a full replace at `generation` (which must be newer
    /// than the live one). The set is staged in the space that is not live;
    /// the live set keeps deciding until the commit. What an earlier sync
    /// left there is cleared in the background, never seen by this one
    /// (see `staging`), so this returns at once however much was staged.
    pub fn sync_begin(&self, generation: u64) -> Result<SyncBegun, OpError> {
        let mut w = self.shared.lock()?;
        let live = self.generation()?;
        if generation <= live {
            return Err(OpError::new(
                super::error::ErrorCode::Stale,
                format!("generation {generation} is not newer than the live generation {live}"),
            ));
        }
        let mut b = Batch::default();
        if w.fence.is_some() || staging::has_records(&self.store, self.space().other())? {
            w.start_clear();
            b.put(staging::DIRTY.to_vec(), b"1".to_vec());
        }
        let state = SyncState { generation, holders: 0, bytes: 0, keys: 0, retired: 0, dropped: None };
        b.put(records::SYNC.to_vec(), serde_json::to_vec(&state).unwrap_or_default());
        self.store.apply(b)?;
        w.expires = Some(std::time::Instant::now() + w.limits.idle);
        self.shared.wake.notify_all();
        Ok(SyncBegun { generation })
    }

    /// `sync.put`: stages holders with their keys (plaintext in, keyed hashes
    /// stored). A holder staged twice is replaced; a key staged for two
    /// holders, or a deleted PIN, is refused as `duplicate`.
    pub fn sync_put(&self, holders: Vec<SyncHolder>) -> Result<SyncStaged, OpError> {
        self.sync_put_retiring(holders, Vec::new())
    }

    /// `sync.commit`: makes the staged set live in one atomic step.
    pub fn sync_commit(&self) -> Result<SyncCommitted, OpError> {
        let mut w = self.shared.lock()?;
        let state = staging::open_sync(&self.shared, &mut w)?;
        let now = self.now_ms();
        // Leftovers of an earlier sync must not become live: a clear still
        // under way is finished first.
        while !self.shared.clear_chunk(&mut w)? {}
        // The sync.puts' freed pages go back before the index is built: the
        // commit's own allocations then add to what is live, not to what the
        // puts left resident (docs/performance.md).
        crate::memory::trim();
        let (live, staging) = (self.space(), self.space().other());
        // PINs of the live set that the new set drops become tombstones. They
        // are written before the flip: a tombstone for a PIN still live is
        // harmless, a missing one would let a dropped PIN come back.
        let mut b = Batch::default();
        for r in self.store.scan(&live.holders()) {
            let (k, v) = r?;
            let rec = HolderRecord::decode(&k, &v)?;
            if let Some(h) = rec.pin.as_ref().map(|p| p.hash) {
                if self.store.get(&records::key_key(staging, &h))?.is_none() {
                    b.put(records::tombstone_key(&h), now.to_string().into_bytes());
                }
            }
            if b.len() >= 1000 {
                self.store.apply_unflushed(std::mem::take(&mut b))?;
            }
        }
        // The PINs the portal retired become tombstones in the batch that
        // flips the live space, so a sync cut short retires none. (The clear
        // above left only this sync's entries.) A tombstone keeps its time.
        let prefix = staging::retired_prefix(staging);
        for r in self.store.scan(&prefix) {
            let (k, _) = r?;
            if let Some(h) = k.get(prefix.len()..).and_then(|h| <[u8; KeyHash::LEN]>::try_from(h).ok()) {
                if !self.is_tombstoned(&KeyHash(h))? {
                    b.put(records::tombstone_key(&KeyHash(h)), now.to_string().into_bytes());
                }
            }
            b.remove(k.to_vec());
        }
        // The use counts of limited keys the new set drops go with them.
        for r in self.store.scan(records::USES) {
            let (k, _) = r?;
            let Some(h) = k.get(records::USES.len()..).and_then(|h| <[u8; KeyHash::LEN]>::try_from(h).ok()) else {
                continue;
            };
            if self.store.get(&records::key_key(staging, &KeyHash(h)))?.is_none() {
                b.remove(k.to_vec());
            }
        }
        b.put(records::ACTIVE.to_vec(), staging.as_str().as_bytes().to_vec());
        b.put(records::GENERATION.to_vec(), state.generation.to_string().into_bytes());
        b.remove(records::SYNC.to_vec());
        // The portal's full sync ends the wait after a recovery.
        b.remove(crate::store::recover::NEEDS_SYNC.to_vec());
        // The old live set, now in the staging space, is cleared in the
        // background.
        b.put(staging::DIRTY.to_vec(), b"1".to_vec());
        self.store.apply_change(b)?;
        self.shared.space.store(staging.0, Ordering::SeqCst);
        w.start_clear();
        w.expires = None;
        self.shared.wake.notify_all();
        self.reload_sized(state.keys as usize, state.holders as usize)?;
        let s = self.state_unlocked()?;
        // The sync's short-lived allocations are all freed by now.
        crate::memory::trim();
        Ok(SyncCommitted { state: s, retired: state.retired })
    }

    /// The generation of the last committed full sync (0 before any), as
    /// the live set has it ([`KeyService::summary`]).
    pub fn generation(&self) -> Result<u64, OpError> {
        Ok(self.summary().generation)
    }

    // ---- state ----

    /// Counts and the digest described in docs/ops.md: one consistent view.
    ///
    /// The store has no snapshot reads, so the scan runs under the writer's
    /// lock: no commit can land between reading the generation and the
    /// holders (a sync commit writes the generation before it flips the live
    /// space), and no `sync.begin` can clear the space being scanned. During a
    /// sync commit it therefore waits for the commit and answers the new set.
    /// The decision path never takes this lock.
    pub fn state(&self) -> Result<StateView, OpError> {
        let _w = self.shared.lock()?;
        self.state_unlocked()
    }

    /// [`KeyService::state`], for a caller that holds the writer's lock.
    fn state_unlocked(&self) -> Result<StateView, OpError> {
        let generation = self.summary().generation;
        let mut s = StateView {
            generation,
            holders: 0,
            pins: 0,
            qr: 0,
            cards: 0,
            digest: String::new(),
            pin_space: pin_space(self.pin_length),
            pin_space_free: 0,
        };
        let mut digest = sha2::Sha256::new();
        for r in self.store.scan(&self.space().holders()) {
            let (k, v) = r?;
            let rec = HolderRecord::decode(&k, &v)?;
            s.holders += 1;
            s.pins += u64::from(rec.pin.is_some());
            s.qr += u64::from(rec.qr.is_some());
            s.cards += rec.cards.len() as u64;
            digest.update(digest_line(&rec).as_bytes());
        }
        s.digest = hex::encode(digest.finalize());
        let mut held = 0u64;
        for r in self.store.scan(records::TOMBSTONE) {
            held += u64::from(self.holds_back(&r?.1));
        }
        s.pin_space_free = s.pin_space.saturating_sub(s.pins + held);
        Ok(s)
    }
}

/// Bytes a staged holder takes: its record and its key index entries, keys
/// and values, as stored.
fn staged_bytes(rec: &HolderRecord) -> u64 {
    let record = records::holder_key(Space::A, &rec.id).len() + rec.encode().len();
    let keys = rec.keys().len() * (Space::A.keys().len() + KeyHash::LEN + rec.id.len());
    (record + keys) as u64
}

/// Bytes a retired PIN's tombstone takes as stored: `t/`, the keyed hash and
/// the time in unix ms as text.
const TOMBSTONE_BYTES: u64 = (records::TOMBSTONE.len() + KeyHash::LEN + 13) as u64;

/// The generation of the last committed full sync, as stored (0 before any).
fn stored_generation(store: &Store) -> Result<u64, OpError> {
    Ok(store.counter(records::GENERATION)?)
}

/// One holder's line of the state digest:
/// `holder:role:enabled:pin:qr:active_cards/cards\n`, where enabled is 0 or 1
/// and pin and qr are `-` (none), `a` (active) or `i` (inactive).
pub fn digest_line(rec: &HolderRecord) -> String {
    let k = |k: &Option<KeyRecord>| match k {
        None => "-",
        Some(k) if k.active => "a",
        Some(_) => "i",
    };
    let active_cards = rec.cards.iter().filter(|c| c.active).count();
    format!(
        "{}:{}:{}:{}:{}:{}/{}\n",
        rec.id,
        rec.role.as_str(),
        u8::from(rec.enabled),
        k(&rec.pin),
        k(&rec.qr),
        active_cards,
        rec.cards.len()
    )
}

/// The non-trivial PINs of `len` digits ([`is_trivial`]: 120 at 4 and 5
/// digits, 1,110 at 6 to 8; a test counts them).
fn pin_space(len: usize) -> u64 {
    let trivial = if len <= 5 { 120 } else { 1110 };
    10u64.pow(len as u32) - trivial
}

fn tombstone(pin: &Option<KeyRecord>, now: i64, batch: &mut Batch) {
    if let Some(h) = pin.as_ref().map(|p| p.hash) {
        batch.put(records::tombstone_key(&h), now.to_string().into_bytes());
    }
}

/// `len` uniform decimal digits from the OS CSPRNG (rejection sampling, so no
/// digit is favoured).
fn random_pin(len: usize) -> Result<String, OpError> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| OpError::internal(format!("no randomness: {e}")))?;
        for b in buf {
            if b < 250 && out.len() < len {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
