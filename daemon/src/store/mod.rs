//! The store: sled behind a narrow interface.
//!
//! Everything lives in one sled tree under short key prefixes, so that any
//! change, however many records it touches, is one atomic [`Batch`], flushed
//! before [`Store::apply`] returns. Nothing above this module names sled: the
//! interface is open, get, scan, apply a batch, flush, export.
//!
//! - [`secret`]: the device secret and the keyed hash of PINs, tokens, UIDs.
//! - [`identity`]: the controller's Ed25519 key pair, which signs what it publishes.
//! - [`records`]: the typed records and their key layout.

pub mod check;
pub mod identity;
mod migrate;
pub mod records;
pub mod recover;
pub mod secret;
pub mod snapshot;
pub mod space;

std::thread_local! {
    /// The database opening (its epoch) this thread has applied batches to
    /// without a flush since; see [`Store::apply`].
    static PENDING: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

use std::path::Path;

/// How long [`Store::open`] waits for another handle to let go of the folder.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The schema this build reads and writes. An older one is migrated at
/// start (see `migrate`); a newer one is refused.
pub const SCHEMA_VERSION: u32 = 3;
const SCHEMA_KEY: &[u8] = records::SCHEMA;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store at {path} has schema version {found}, this build reads {SCHEMA_VERSION}; {hint}")]
    Schema { path: String, found: String, hint: &'static str },
    #[error("store at {path} is in use by another process (is another porterd running with this data_dir?)")]
    Locked { path: String },
    #[error("store: corrupt record {key}: {detail}")]
    Corrupt { key: String, detail: String },
    /// The database is being reopened after a failure; try again.
    #[error("store: being reopened after a write failure; try again")]
    Reopening,
    /// sled panicked while reading its files: they are damaged.
    #[error("store at {path} cannot be read: {detail}")]
    Unreadable { path: String, detail: String },
}

impl StoreError {
    /// Whether the error is the disk being full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(e)) if is_no_space(e))
    }

    /// Whether the error means the store's files are damaged (rather than
    /// in use, of another version, or on a disk that refuses writes).
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Corrupt { .. } | StoreError::Unreadable { .. } => true,
            StoreError::Sled(sled::Error::Corruption { .. }) => true,
            StoreError::Sled(sled::Error::Io(e)) => {
                // sled reports bad data it read as InvalidData / UnexpectedEof.
                matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof)
                    || e.to_string().contains("corrupt")
            }
            StoreError::Sled(sled::Error::ReportableBug(_)) => true,
            _ => false,
        }
    }
}

/// One stored record: key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// A set of writes applied atomically.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }
    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// The open store.
#[derive(Clone)]
pub struct Store {
    inner: std::sync::Arc<Inner>,
}

/// One opening of the database.
struct DbAt {
    /// Which opening this is: unique in the process, new at every reopen.
    epoch: u64,
    db: sled::Db,
    /// sled's data file, synced after sled's own flush: sled makes its
    /// writes durable with `sync_file_range`, which neither saves the
    /// file's size and new blocks nor flushes the card's write cache; a
    /// power cut could then lose what was reported on disk.
    file: Option<std::fs::File>,
}

struct Inner {
    /// The open database; `None` only while it is being reopened.
    db: arc_swap::ArcSwapOption<DbAt>,
    /// Where it lives and its page cache (`None` for a temporary store, which
    /// is never reopened).
    dir: Option<(std::path::PathBuf, u64)>,
    /// The check record kept beside the store, once attached.
    guard: std::sync::OnceLock<check::Guard>,
    /// The space held back in `data_dir`, once attached.
    reserve: std::sync::OnceLock<space::Reserve>,
    /// Held while the database is reopened.
    reopening: std::sync::Mutex<()>,
}

/// The source of [`DbAt::epoch`].
static OPENINGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_epoch() -> u64 {
    OPENINGS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, with a page cache of
    /// `cache_bytes`, and checks its schema version.
    ///
    /// sled holds an exclusive file lock while open, and releases it a moment
    /// after the last handle is dropped (its flusher thread lets go last), so
    /// a lock conflict is retried for up to [`LOCK_WAIT`] before it is
    /// reported as another process using the folder.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            // No periodic flusher thread: every change is flushed before it
            // is reported done, and a flusher at normal priority would take
            // CPU from the decision path during a large sync.
            let config = sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .mode(sled::Mode::LowSpace)
                .flush_every_ms(None);
            // sled panics on some damaged files (`tried to serialize
            // Uninitialized`): that is damage to report, not a crash.
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                config.open().and_then(|db| {
                    // Reading every page once finds the damage sled panics
                    // on now, rather than in the middle of a decision.
                    db.iter().try_for_each(|r| r.map(|_| ()))?;
                    Ok(db)
                })
            }))
            .map_err(|p| StoreError::Unreadable { path: dir.display().to_string(), detail: panic_text(&p) })?;
            match opened {
                Ok(db) => return Self::check_schema(db, dir, Some(cache_bytes)),
                // sled reports the lock conflict only as text.
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked { path: dir.display().to_string() });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A store in a temporary folder that vanishes on drop (tests, benches).
    pub fn temporary() -> Result<Store, StoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        Self::check_schema(db, Path::new("<temporary>"), None)
    }

    fn check_schema(db: sled::Db, dir: &Path, cache_bytes: Option<u64>) -> Result<Store, StoreError> {
        let db = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::check_schema_inner(db, dir)))
            .map_err(|p| StoreError::Unreadable { path: dir.display().to_string(), detail: panic_text(&p) })??;
        let file = match cache_bytes {
            Some(_) => Some(std::fs::File::open(dir.join("db")).map_err(sled::Error::Io)?),
            None => None,
        };
        Ok(Store {
            inner: std::sync::Arc::new(Inner {
                db: arc_swap::ArcSwapOption::from_pointee(DbAt { epoch: next_epoch(), db, file }),
                dir: cache_bytes.map(|c| (dir.to_path_buf(), c)),
                guard: Default::default(),
                reserve: Default::default(),
                reopening: Default::default(),
            }),
        })
    }

    /// The open database, or an error while it is being reopened.
    fn db(&self) -> Result<std::sync::Arc<DbAt>, StoreError> {
        self.inner.db.load_full().ok_or(StoreError::Reopening)
    }

    fn check_schema_inner(db: sled::Db, dir: &Path) -> Result<sled::Db, StoreError> {
        match db.get(SCHEMA_KEY)? {
            None => {
                if db.iter().next().is_some() {
                    return Err(StoreError::Schema {
                        path: dir.display().to_string(),
                        found: "none".into(),
                        hint: "this folder holds data that is not a Porter store; point data_dir elsewhere",
                    });
                }
                db.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())?;
                db.flush()?;
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_string().as_bytes() => {}
            Some(v) if v.as_ref() == b"1" => {
                let holders = migrate::v1_to_current(&db, SCHEMA_KEY)?;
                tracing::info!(path = %dir.display(), holders, "store migrated from schema 1 to {SCHEMA_VERSION}");
            }
            Some(v) if v.as_ref() == b"2" => {
                let holders = migrate::v2_to_v3(&db, SCHEMA_KEY)?;
                tracing::info!(path = %dir.display(), holders, "store migrated from schema 2 to 3");
            }
            Some(v) => {
                return Err(StoreError::Schema {
                    path: dir.display().to_string(),
                    found: String::from_utf8_lossy(&v).into_owned(),
                    hint:
                        "it was written by a newer Porter: run that version, or move the folder away and re-provision",
                })
            }
        }
        Ok(db)
    }

    /// What the store says of itself, for [`check::verify`]. A store
    /// without an identity that holds nothing but its schema is given one.
    pub fn found(&self) -> Result<check::Found, StoreError> {
        let num = |k: &[u8]| self.counter(k);
        let has_data = self.db()?.db.iter().keys().filter_map(|k| k.ok()).any(|k| k.as_ref() != SCHEMA_KEY);
        Ok(check::Found {
            store_id: self.get(check::STORE_ID)?.map(|v| String::from_utf8_lossy(&v).into_owned()),
            changes: num(check::CHANGES)?,
            generation: num(records::GENERATION)?,
            seq: num(records::SEQ)?,
            has_data,
        })
    }

    /// Gives the store an identity (a new store, or one from before the
    /// check record); returns it.
    pub fn ensure_id(&self) -> Result<String, StoreError> {
        if let Some(v) = self.get(check::STORE_ID)? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)
            .map_err(|e| StoreError::Sled(sled::Error::Io(std::io::Error::other(e.to_string()))))?;
        let id = hex::encode(id);
        let mut b = Batch::default();
        b.put(check::STORE_ID.to_vec(), id.as_bytes().to_vec());
        self.apply(b)?;
        Ok(id)
    }

    /// Attaches the check record that [`Store::apply_change`] keeps current.
    pub fn attach(&self, guard: check::Guard) {
        let _ = self.inner.guard.set(guard);
    }

    /// The attached check record, if any.
    pub fn guard(&self) -> Option<&check::Guard> {
        self.inner.guard.get()
    }

    /// Attaches the reserve that a full disk releases ([`space`]).
    pub fn attach_reserve(&self, reserve: space::Reserve) {
        let _ = self.inner.reserve.set(reserve);
    }

    /// The attached reserve, if any.
    pub fn reserve(&self) -> Option<&space::Reserve> {
        self.inner.reserve.get()
    }

    /// Whether the database is open (not being reopened after a failure).
    pub fn is_open(&self) -> bool {
        self.inner.db.load().is_some()
    }

    /// Reopens the database. sled keeps failing every write after the disk
    /// was full, even once space is back, until it is opened again: this
    /// drops it (everything flushed stays; a batch not flushed is lost, and
    /// its caller was told it failed) and opens it again. Operations in the
    /// meantime fail with [`StoreError::Reopening`]. A temporary store is
    /// not reopened.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let Some((dir, cache)) = &self.inner.dir else { return Ok(()) };
        let _one = self.inner.reopening.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.db.store(None);
        let fresh = Store::open(dir, *cache)?;
        let db = fresh.inner.db.load_full();
        self.inner.db.store(db);
        tracing::info!(dir = %dir.display(), "store reopened");
        Ok(())
    }

    /// After a failed write: when the disk is full, releases the reserve
    /// (the space it frees lets the audit log and commands go on) and
    /// reopens the database. Returns whether the write may be tried again.
    fn recover_from(&self, e: &StoreError) -> bool {
        if !e.is_no_space() || self.inner.dir.is_none() {
            return false;
        }
        self.make_room();
        match self.reopen() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the store after a full disk; trying again when space returns");
                false
            }
        }
    }

    /// [`Store::apply`] for a change of holders and keys that will be
    /// reported done: it counts the change in the store and, once the
    /// change is on disk, in the check record, so a store that later loses
    /// it is found out at the next start. Changes are applied one at a time.
    pub fn apply_change(&self, mut batch: Batch) -> Result<(), StoreError> {
        let Some(guard) = self.inner.guard.get() else { return self.apply(batch) };
        let _one = guard.serial();
        let changes = self.counter(check::CHANGES)? + 1;
        batch.put(check::CHANGES.to_vec(), changes.to_string().into_bytes());
        self.apply(batch)?;
        // The change is durable in the store; a record that cannot be
        // written only weakens the next start's check (it is retried with
        // the next change): the change itself stands. A full disk gives up
        // the reserve for it first.
        let generation = self.counter(records::GENERATION)?;
        let mut written = guard.changed(changes, generation);
        if written.as_ref().is_err_and(is_no_space) && self.make_room() {
            written = guard.changed(changes, generation);
        }
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot update the store's check record");
        }
        Ok(())
    }

    /// Keeps `counter` as the last command counter accepted from the portal
    /// key `key_id`: in the store (`s/<key id>`, flushed), then in the check
    /// record, which outlives a damaged store (a recovery from an older
    /// snapshot takes the higher of the two). A record that cannot be
    /// written is logged, like a change's: the store holds the counter.
    pub fn accept_counter(&self, key_id: &str, counter: u64) -> Result<(), StoreError> {
        let mut b = Batch::default();
        b.put(records::prefixed(records::SIGNED_COUNTER, key_id.as_bytes()), counter.to_string().into_bytes());
        self.apply(b)?;
        let Some(guard) = self.inner.guard.get() else { return Ok(()) };
        let mut written = guard.signed(key_id, counter);
        if written.as_ref().is_err_and(is_no_space) && self.make_room() {
            written = guard.signed(key_id, counter);
        }
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot keep a signed command's counter in the store's check record");
        }
        Ok(())
    }

    /// Releases the reserve for a write outside the database (the check
    /// record) that found the disk full; true when it was there to release.
    pub fn make_room(&self) -> bool {
        let released = self.reserve().is_some_and(|r| r.release());
        if released {
            tracing::error!("the disk of data_dir is full: the storage reserve is released so the audit log and commands go on; free space (docs/ops.md, \"A full disk\")");
        }
        released
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db()?.db.get(key)?.map(|v| v.to_vec()))
    }

    /// The counter at `key` ([`records::decimal`]); 0 when absent or not a number.
    pub fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self.get(key)?.as_deref().and_then(records::decimal).unwrap_or(0))
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<Record, StoreError>> + Send> {
        match self.db() {
            Ok(at) => Box::new(
                at.db.scan_prefix(prefix).map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::from)),
            ),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// Records after `start` (exclusive) that share `prefix`, in key order.
    pub fn scan_after(
        &self,
        prefix: &[u8],
        start: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Record, StoreError>> + Send> {
        let prefix = prefix.to_vec();
        let mut lower = start.to_vec();
        lower.push(0);
        match self.db() {
            Ok(at) => Box::new(
                at.db
                    .range(lower..)
                    .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::from))
                    .take_while(move |r| r.as_ref().map(|(k, _)| k.starts_with(&prefix)).unwrap_or(true)),
            ),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// The last record under `prefix`, by key order.
    pub fn last(&self, prefix: &[u8]) -> Result<Option<Record>, StoreError> {
        Ok(self.db()?.db.scan_prefix(prefix).next_back().transpose()?.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    /// Applies `batch` atomically and flushes it to disk before returning:
    /// once this returns `Ok`, a crash cannot lose the change.
    ///
    /// A write that finds the disk full releases the reserve, reopens the
    /// database and is tried once more, unless this thread applied batches
    /// without a flush before it (a reopen lost them, so this one alone must
    /// not be written: the caller's sequence fails whole).
    pub fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let earlier = PENDING.get().is_some();
        match self.apply_unflushed_ref(&batch).and_then(|()| self.flush()) {
            Ok(()) => Ok(()),
            Err(e) => {
                PENDING.set(None);
                if self.recover_from(&e) && !earlier {
                    self.apply_unflushed_ref(&batch)?;
                    self.flush()
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Applies `batch` atomically without waiting for the disk; callers that
    /// group many batches into one flush use this and then [`Store::flush`]
    /// (or a last [`Store::apply`]), on the same thread.
    pub fn apply_unflushed(&self, batch: Batch) -> Result<(), StoreError> {
        self.apply_unflushed_ref(&batch)
    }

    fn apply_unflushed_ref(&self, batch: &Batch) -> Result<(), StoreError> {
        let at = self.db()?;
        check_pending(&at)?;
        if PENDING.get().is_none() {
            PENDING.set(Some(at.epoch));
        }
        at.db.apply_batch(sled_batch(batch))?;
        Ok(())
    }

    /// Applies `batch` now and leaves it to the next flush of anyone: for
    /// records whose loss in a crash or a reopen does no harm (the highest
    /// event the broker confirmed). Not part of a caller's sequence.
    pub fn apply_lazy(&self, batch: Batch) -> Result<(), StoreError> {
        self.db()?.db.apply_batch(sled_batch(&batch))?;
        Ok(())
    }

    /// Waits until everything applied so far is on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        // One opening throughout: a flush of a database reopened since this
        // thread's batches went in must not report them written.
        let at = self.db()?;
        check_pending(&at)?;
        at.db.flush()?;
        if let Some(f) = &at.file {
            f.sync_data().map_err(sled::Error::Io)?;
        }
        PENDING.set(None);
        Ok(())
    }

    /// Every record as (key, value), for backups and diagnostics.
    pub fn export(&self) -> impl Iterator<Item = Result<Record, StoreError>> {
        self.scan(b"")
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db().ok().and_then(|at| at.db.size_on_disk().ok()).unwrap_or(0)
    }
}

/// Whether an I/O error is the disk being full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == std::io::ErrorKind::StorageFull
}

/// Fails when this thread's unflushed batches were applied to another
/// opening of the database than `at` (a reopen lost them).
fn check_pending(at: &DbAt) -> Result<(), StoreError> {
    match PENDING.get() {
        Some(e) if e != at.epoch => {
            PENDING.set(None);
            Err(StoreError::Reopening)
        }
        _ => Ok(()),
    }
}

fn sled_batch(batch: &Batch) -> sled::Batch {
    let mut b = sled::Batch::default();
    for (k, v) in &batch.ops {
        match v {
            Some(v) => b.insert(k.as_slice(), v.as_slice()),
            None => b.remove(k.as_slice()),
        }
    }
    b
}

/// The message of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("the storage engine failed reading it ({msg})")
}

#[cfg(test)]
mod tests;
