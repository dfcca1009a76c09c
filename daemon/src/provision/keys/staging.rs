//! The staged set of a full sync: its bounds, its idle expiry, and the
//! clearing of a staged set that will never be committed.
//!
//! Clearing a large staged set takes long on an SD card (200,000 holders took
//! 76 s), so it never happens inside a command: `sync.begin`, an expiry and a
//! commit only mark the staging space as holding leftovers, and the janitor
//! thread removes them in chunks of [`CHUNK`] records, taking the writer
//! mutex for one chunk at a time, so that other commands run in between.
//!
//! A sync begun while leftovers remain stages its records beside them. Until
//! the clear is done, the [`Fence`] lists what the open sync has written: the
//! janitor removes only records outside it, and the sync ignores records
//! outside it (a leftover is not "staged", its key is no duplicate). The fence
//! lives in memory only, so at start a store whose clear was cut short drops
//! its open sync (`stale`: begin again). `sync.commit` finishes an unfinished
//! clear itself before it flips the live space.
//!
//! The PINs a `sync.put` retires (its `retired`) are staged in the same space
//! as keyed hashes under [`retired_prefix`], and become tombstones (`t/`) in
//! the commit's own batch: a sync cut short retires none. They are leftovers
//! like the rest when the sync is dropped.

use super::{KeyService, SyncState};
use crate::access::KeyHash;
use crate::provision::error::{ErrorCode, OpError};
use crate::store::records::{self, Space};
use crate::store::{Batch, Store};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Holders one staged sync may hold at most (twice the 100,000 the
/// benchmarks sync).
pub const MAX_HOLDERS: u64 = 200_000;
/// Bytes of records (holders and the key index, as stored) one staged sync
/// may hold at most.
pub const MAX_BYTES: u64 = 64 << 20;
/// PINs one staged sync may retire at most (their tombstones are written in
/// the commit's one batch).
pub const MAX_RETIRED: u64 = 200_000;
/// How long an open sync waits for its next `sync.put` before it is dropped.
pub const IDLE: Duration = Duration::from_secs(600);
/// Records removed per chunk of a clear (one store batch, under the writer
/// mutex).
pub const CHUNK: usize = 256;
/// Present while the staging space holds records of no open sync (a sync
/// replaced, expired or committed), until the janitor has removed them.
pub(super) const DIRTY: &[u8] = crate::store::records::SYNC_CLEAR;

/// The prefix of the PINs retired by the sync staged in `space`: `x/a/` or
/// `x/b/`, then the PIN's 16-byte keyed hash, with an empty value. The commit
/// turns each into a tombstone.
pub(super) fn retired_prefix(space: Space) -> Vec<u8> {
    vec![b'x', b'/', space.0, b'/']
}

/// The staged entry of one retired PIN.
pub(super) fn retired_key(space: Space, h: &KeyHash) -> Vec<u8> {
    [retired_prefix(space).as_slice(), &h.0].concat()
}

/// The bounds of a staged sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncLimits {
    pub holders: u64,
    pub bytes: u64,
    /// PINs retired (`sync.put`'s `retired`).
    pub retired: u64,
    /// The idle time after which an open sync is dropped.
    pub idle: Duration,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits { holders: MAX_HOLDERS, bytes: MAX_BYTES, retired: MAX_RETIRED, idle: IDLE }
    }
}

/// What the open sync has written while leftovers remain beside it.
#[derive(Debug, Default)]
pub(super) struct Fence {
    pub holders: HashSet<String>,
    pub keys: HashSet<KeyHash>,
    /// Hashes of the PINs it retired.
    pub retired: HashSet<KeyHash>,
}

/// What the writer mutex guards, besides the right to write.
#[derive(Debug, Default)]
pub(super) struct Writer {
    /// `Some` while the staging space holds leftovers.
    pub fence: Option<Fence>,
    /// Where the clear goes on: which prefix (holders, then keys) and the
    /// last key it looked at.
    cursor: (usize, Option<Vec<u8>>),
    /// Records removed and when the current clear started, for the log.
    removed: u64,
    started: Option<Instant>,
    /// When the open sync expires; `None` without an open sync.
    pub expires: Option<Instant>,
    pub limits: SyncLimits,
    stop: bool,
}

impl Writer {
    /// Whether the staged holder `id` belongs to the open sync.
    pub fn staged_holder(&self, id: &str) -> bool {
        self.fence.as_ref().is_none_or(|f| f.holders.contains(id))
    }

    /// Whether the staged key index entry for `h` belongs to the open sync.
    pub fn staged_key(&self, h: &KeyHash) -> bool {
        self.fence.as_ref().is_none_or(|f| f.keys.contains(h))
    }

    /// Whether the staged retired PIN `h` belongs to the open sync.
    pub fn staged_retired(&self, h: &KeyHash) -> bool {
        self.fence.as_ref().is_none_or(|f| f.retired.contains(h))
    }

    /// Marks everything staged so far as leftovers, to be cleared from the
    /// start. The caller writes [`DIRTY`] in its batch.
    pub fn start_clear(&mut self) {
        self.fence = Some(Fence::default());
        self.cursor = (0, None);
        self.started.get_or_insert_with(Instant::now);
    }
}

/// What the service and its janitor thread share.
pub(super) struct Shared {
    pub store: Store,
    /// The live space (`records::Space`), flipped by a sync commit.
    pub space: AtomicU8,
    pub writer: Mutex<Writer>,
    /// Wakes the janitor: a clear to do, a new expiry, or stop.
    pub wake: Condvar,
}

impl Shared {
    pub fn space(&self) -> Space {
        Space(self.space.load(Ordering::SeqCst))
    }

    pub fn lock(&self) -> Result<MutexGuard<'_, Writer>, OpError> {
        self.writer.lock().map_err(|_| OpError::internal("writer lock poisoned"))
    }

    /// Removes the next chunk of leftovers from the staging space; returns
    /// whether the clear is done (or there was none).
    pub fn clear_chunk(&self, w: &mut Writer) -> Result<bool, OpError> {
        if w.fence.is_none() {
            return Ok(true);
        }
        let staging = self.space().other();
        let prefixes = [staging.holders(), staging.keys(), retired_prefix(staging)];
        while w.cursor.0 < prefixes.len() {
            let prefix = &prefixes[w.cursor.0];
            let keys = match &w.cursor.1 {
                None => self.store.scan(prefix).take(CHUNK).map(|r| r.map(|(k, _)| k)).collect::<Result<Vec<_>, _>>(),
                Some(after) => self
                    .store
                    .scan_after(prefix, after)
                    .take(CHUNK)
                    .map(|r| r.map(|(k, _)| k))
                    .collect::<Result<Vec<_>, _>>(),
            }?;
            let Some(last) = keys.last().cloned() else {
                w.cursor = (w.cursor.0 + 1, None);
                continue;
            };
            let fence = w.fence.as_ref().expect("checked above");
            let mut b = Batch::default();
            for k in keys.iter() {
                let rest = &k[prefix.len()..];
                let hash = || <[u8; KeyHash::LEN]>::try_from(rest).ok().map(KeyHash);
                let kept = match w.cursor.0 {
                    0 => std::str::from_utf8(rest).is_ok_and(|id| fence.holders.contains(id)),
                    1 => hash().is_some_and(|h| fence.keys.contains(&h)),
                    _ => hash().is_some_and(|h| fence.retired.contains(&h)),
                };
                if !kept {
                    b.remove(k.clone());
                }
            }
            w.removed += b.len() as u64;
            // Flushed before the cursor moves on: a chunk lost to a crash or
            // a reopen of the store is cleared again, never skipped.
            self.store.apply(b)?;
            w.cursor.1 = Some(last);
            if keys.len() == CHUNK {
                return Ok(false);
            }
            w.cursor = (w.cursor.0 + 1, None);
        }
        let mut b = Batch::default();
        b.remove(DIRTY.to_vec());
        self.store.apply(b)?;
        let ms = w.started.take().map_or(0, |t| t.elapsed().as_millis() as u64);
        tracing::info!(removed = w.removed, elapsed_ms = ms, "sync: staged set cleared");
        w.fence = None;
        w.cursor = (0, None);
        w.removed = 0;
        Ok(true)
    }

    /// Drops the open sync if it has been idle too long; returns whether it
    /// did.
    pub fn expire_if_idle(&self, w: &mut Writer) -> Result<bool, OpError> {
        if w.expires.is_none_or(|at| at > Instant::now()) {
            return Ok(false);
        }
        w.expires = None;
        let Some(mut state) = read_sync(&self.store)? else { return Ok(false) };
        let idle = w.limits.idle.as_secs();
        state.dropped = Some(format!(
            "the sync at generation {} was dropped after {idle} s without a sync.put; send sync.begin again",
            state.generation
        ));
        tracing::warn!(
            generation = state.generation,
            holders = state.holders,
            idle_s = idle,
            "sync: staged set expired and dropped"
        );
        w.start_clear();
        let mut b = Batch::default();
        b.put(records::SYNC.to_vec(), serde_json::to_vec(&state).unwrap_or_default());
        b.put(DIRTY.to_vec(), b"1".to_vec());
        self.store.apply(b)?;
        Ok(true)
    }
}

/// The open sync as stored, dropped or not.
pub(super) fn read_sync(store: &Store) -> Result<Option<SyncState>, OpError> {
    Ok(store.get(records::SYNC)?.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// The open sync, or the error that a `sync.put` or `sync.commit` gets.
pub(super) fn open_sync(shared: &Shared, w: &mut Writer) -> Result<SyncState, OpError> {
    shared.expire_if_idle(w)?;
    match read_sync(&shared.store)? {
        None => Err(OpError::invalid("no sync is open: send sync.begin first")),
        Some(SyncState { dropped: Some(why), .. }) => Err(OpError::new(ErrorCode::Stale, why)),
        Some(s) => Ok(s),
    }
}

/// Whether the staging space holds any record.
pub(super) fn has_records(store: &Store, space: Space) -> Result<bool, OpError> {
    for prefix in [space.holders(), space.keys(), retired_prefix(space)] {
        if store.scan(&prefix).next().transpose()?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The state of the staging space at start: a clear cut short (or a commit
/// by a Porter that cleared at the next `sync.begin`) is taken up again, and
/// an open sync that was staged beside leftovers is dropped, since what it
/// wrote is no longer known.
pub(super) fn at_start(store: &Store, space: Space, limits: SyncLimits) -> Result<Writer, OpError> {
    let mut w = Writer { limits, ..Default::default() };
    let sync = read_sync(store)?;
    let dirty = store.get(DIRTY)?.is_some();
    match sync {
        Some(mut s) if dirty && s.dropped.is_none() => {
            s.dropped = Some(format!(
                "the sync at generation {} was dropped: the controller restarted while an older staged set was \
                 being cleared; send sync.begin again",
                s.generation
            ));
            let mut b = Batch::default();
            b.put(records::SYNC.to_vec(), serde_json::to_vec(&s).unwrap_or_default());
            store.apply(b)?;
            w.start_clear();
        }
        Some(s) if s.dropped.is_none() => w.expires = Some(Instant::now() + limits.idle),
        _ if dirty || has_records(store, space.other())? => {
            if !dirty {
                let mut b = Batch::default();
                b.put(DIRTY.to_vec(), b"1".to_vec());
                store.apply(b)?;
            }
            w.start_clear();
        }
        _ => {}
    }
    Ok(w)
}

/// The janitor: clears leftovers chunk by chunk and expires an idle sync,
/// until the service is dropped. It runs at the provisioning priority.
pub(super) fn janitor(shared: Arc<Shared>) {
    crate::provision::lower_this_thread();
    let Ok(mut w) = shared.writer.lock() else { return };
    loop {
        if w.stop {
            return;
        }
        if w.fence.is_some() {
            if let Err(e) = shared.clear_chunk(&mut w) {
                tracing::error!(error = %e, "sync: clearing the staged set failed; trying again in 5 s");
                w = match shared.wake.wait_timeout(w, Duration::from_secs(5)) {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
                continue;
            }
            // Let the commands waiting for the writer mutex in.
            drop(w);
            std::thread::yield_now();
            w = match shared.writer.lock() {
                Ok(g) => g,
                Err(_) => return,
            };
            continue;
        }
        if let Err(e) = shared.expire_if_idle(&mut w) {
            tracing::error!(error = %e, "sync: dropping an idle staged set failed");
        }
        if w.fence.is_some() {
            continue;
        }
        let r = match w.expires {
            Some(at) => shared.wake.wait_timeout(w, at.saturating_duration_since(Instant::now())).map(|(g, _)| g).ok(),
            None => shared.wake.wait(w).ok(),
        };
        w = match r {
            Some(g) => g,
            None => return,
        };
    }
}

impl KeyService {
    /// This service with other bounds for staged syncs (the idle time from
    /// `store.sync_idle_s`; tests use small ones).
    pub fn with_sync_limits(self, limits: SyncLimits) -> Self {
        if let Ok(mut w) = self.shared.writer.lock() {
            // An open sync's expiry moves with the new idle time.
            let old = w.limits.idle;
            w.expires = w.expires.map(|at| at.checked_sub(old).unwrap_or(at) + limits.idle);
            w.limits = limits;
        }
        self.shared.wake.notify_all();
        self
    }

    /// [`KeyService::with_sync_limits`] with only the idle time changed.
    pub fn with_sync_idle(self, idle: Duration) -> Self {
        let limits = self.shared.writer.lock().map(|w| w.limits).unwrap_or_default();
        self.with_sync_limits(SyncLimits { idle, ..limits })
    }
}

impl Drop for KeyService {
    /// Stops the janitor and waits for it (at most one chunk of a clear); a
    /// clear left unfinished goes on at the next start.
    fn drop(&mut self) {
        if let Ok(mut w) = self.shared.writer.lock() {
            w.stop = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.janitor.take() {
            let _ = t.join();
        }
    }
}
