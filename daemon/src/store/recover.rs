//! Opening the store at start: checked against its record, and recovered
//! when it is damaged.
//!
//! [`open`] opens `data_dir/store` and compares it with the check record
//! ([`super::check`]). A store that cannot be read (sled fails or panics on
//! its files), that is empty, another one, or older than the record says is
//! never used silently. With `store.on_damage = "refuse"` the start stops
//! with the cause and the fix. With `"recover"` (the default) the damaged
//! folder is moved aside to `data_dir/store.damaged-<unix ms>`, a new store
//! is made, and the newest good snapshot ([`super::snapshot`]) is restored
//! into it: with `store.restore = "restrictive"` (the default) only what
//! refuses access (retired PINs, lockouts, spent uses of limited keys), so a
//! key the portal deactivated or deleted after the snapshot cannot open the
//! door again; with `"all"` the holders and keys too. Either way the store
//! is marked as needing the portal's full sync until the next `sync.commit`.
//!
//! Sequence numbers never go back: after an unclean stop or a recovery the
//! next `seq` continues above every number the record says may have been
//! published, and the start reports the range as an `audit.gap`.

use super::check::{self, CheckRecord, Damage};
use super::records::{self, HolderRecord, Space};
use super::{snapshot, Batch, Store, StoreError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Set while a recovered store waits for the portal's full sync.
pub const NEEDS_SYNC: &[u8] = super::records::NEEDS_SYNC;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDamage {
    Recover,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    Restrictive,
    All,
}

impl Restore {
    pub fn as_str(self) -> &'static str {
        match self {
            Restore::Restrictive => "restrictive",
            Restore::All => "all",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the store in {dir}: {err}")]
    Store { dir: String, err: StoreError },
    #[error("the store in {dir} is damaged: {damage}; store.on_damage = \"refuse\" keeps it as it is. Fix: restore data_dir from a backup (docs/ops.md, \"A damaged store\"), or set store.on_damage = \"recover\" to move it aside and start from the newest snapshot")]
    Refused { dir: String, damage: Damage },
    #[error("the store in {dir} is damaged ({damage}) and cannot be moved aside: {err}; free space or fix the permissions of data_dir")]
    Recovery { dir: String, damage: Damage, err: String },
}

/// What a recovery did, for the log and the `store.recovered` event.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub damage: Damage,
    pub moved_to: PathBuf,
    /// The snapshot restored from: its file, when it was taken, its generation.
    pub snapshot: Option<(PathBuf, i64, u64)>,
    pub restore: Restore,
    pub holders: usize,
    pub tombstones: usize,
    pub lockouts: usize,
    pub uses: usize,
    /// What the record said was acknowledged before the damage.
    pub recorded: Option<CheckRecord>,
}

/// Events may be missing: no event has a `seq` in (`after`, the gap event's
/// own `seq`), and events decided since `since_ms` may not have been written.
#[derive(Debug, Clone)]
pub struct Gap {
    pub after: u64,
    pub reason: &'static str,
    pub since_ms: Option<i64>,
}

/// The opened, checked store.
pub struct Opened {
    pub store: Store,
    pub recovery: Option<Recovery>,
    pub gap: Option<Gap>,
}

/// Opens the store in `data_dir`, checks it against its record, recovers it
/// as `on_damage` says, and attaches the record (now `running`).
pub fn open(
    data_dir: &Path,
    cache_bytes: u64,
    on_damage: OnDamage,
    restore: Restore,
    now_ms: i64,
) -> Result<Opened, OpenError> {
    let dir = data_dir.join("store");
    let dir_text = dir.display().to_string();
    let record_path = check::path(data_dir);
    let record = match check::read(&record_path) {
        Ok(r) => r,
        Err(e) => {
            // Written atomically, so this is tampering or a failing disk:
            // the store cannot be vouched for.
            tracing::error!(error = %e, "the store's check record cannot be read; checking the store without it");
            None
        }
    };
    let damage = match Store::open(&dir, cache_bytes) {
        Ok(store) => match store.found().map_err(|err| Damage { kind: "unreadable", detail: err.to_string() }) {
            Ok(found) => match check::verify(&found, record.as_ref()) {
                Ok(()) => return finish(store, data_dir, record, None, now_ms),
                Err(d) => d,
            },
            Err(d) => d,
        },
        Err(err) if err.is_damage() => Damage { kind: "unreadable", detail: err.to_string() },
        Err(err) => return Err(OpenError::Store { dir: dir_text, err }),
    };
    recover(data_dir, cache_bytes, on_damage, restore, record, damage, now_ms)
}

/// Recovers from a store found damaged after it was opened (a record that
/// does not decode while the keys are loaded): the same as [`open`] does.
pub fn recover_after(
    store: Store,
    data_dir: &Path,
    cache_bytes: u64,
    on_damage: OnDamage,
    restore: Restore,
    damage: Damage,
    now_ms: i64,
) -> Result<Opened, OpenError> {
    drop(store);
    let record = check::read(&check::path(data_dir)).ok().flatten();
    recover(data_dir, cache_bytes, on_damage, restore, record, damage, now_ms)
}

fn recover(
    data_dir: &Path,
    cache_bytes: u64,
    on_damage: OnDamage,
    restore: Restore,
    record: Option<CheckRecord>,
    damage: Damage,
    now_ms: i64,
) -> Result<Opened, OpenError> {
    let dir = data_dir.join("store");
    let dir_text = dir.display().to_string();
    if on_damage == OnDamage::Refuse {
        return Err(OpenError::Refused { dir: dir_text, damage });
    }
    tracing::error!(store = %dir_text, damage = %damage, "store damaged; moving it aside and recovering");
    let moved_to = data_dir.join(format!("store.damaged-{now_ms}"));
    let fail = |err: String| OpenError::Recovery { dir: dir_text.clone(), damage: damage.clone(), err };
    if dir.exists() {
        std::fs::rename(&dir, &moved_to).map_err(|e| fail(e.to_string()))?;
    }
    let store = Store::open(&dir, cache_bytes).map_err(|e| fail(e.to_string()))?;
    let mut r = Recovery {
        damage: damage.clone(),
        moved_to,
        snapshot: None,
        restore,
        holders: 0,
        tombstones: 0,
        lockouts: 0,
        uses: 0,
        recorded: record.clone(),
    };
    let mut b = Batch::default();
    if let Some((path, c)) = snapshot::newest(&snapshot::dir(data_dir)) {
        for (k, v) in &c.restrictive {
            if k.starts_with(records::TOMBSTONE) {
                r.tombstones += 1;
            } else if k.starts_with(records::LOCKOUT) {
                r.lockouts += 1;
            } else if k.starts_with(records::SIGNED_COUNTER) {
                // Portal keys' counters: always restored, never counted.
            } else {
                r.uses += 1;
            }
            b.put(k.clone(), v.clone());
        }
        if restore == Restore::All {
            for (k, v) in &c.holders {
                let Ok(rec) = HolderRecord::decode(k, v) else { continue };
                for (h, ..) in rec.keys() {
                    b.put(records::key_key(Space::A, &h), rec.id.as_bytes().to_vec());
                }
                b.put(k.clone(), v.clone());
                r.holders += 1;
            }
            b.put(records::GENERATION.to_vec(), c.generation.to_string().into_bytes());
        }
        r.snapshot = Some((path, c.taken_ms, c.generation));
    }
    b.put(records::ACTIVE.to_vec(), b"a".to_vec());
    b.put(NEEDS_SYNC.to_vec(), now_ms.to_string().into_bytes());
    store.apply(b).map_err(|e| fail(e.to_string()))?;
    finish(store, data_dir, record, Some(r), now_ms)
}

/// Gives the store its identity, moves `seq` above what may have been
/// published, and attaches the record.
fn finish(
    store: Store,
    data_dir: &Path,
    record: Option<CheckRecord>,
    recovery: Option<Recovery>,
    now_ms: i64,
) -> Result<Opened, OpenError> {
    let dir_text = data_dir.join("store").display().to_string();
    let err = |e: String| OpenError::Store {
        dir: dir_text.clone(),
        err: StoreError::Sled(sled::Error::Io(std::io::Error::other(e))),
    };
    let store_id = store.ensure_id().map_err(|e| err(e.to_string()))?;
    let found = store.found().map_err(|e| err(e.to_string()))?;
    let unclean = record.as_ref().is_some_and(|r| r.running);
    let reserved = record.as_ref().map_or(0, |r| r.seq_reserved);
    let mut gap = None;
    if recovery.is_some() || unclean {
        let reason = if recovery.is_some() { "store_recovered" } else { "unclean_stop" };
        let last_ts = store.last(records::AUDIT).ok().flatten().and_then(|(_, v)| {
            let e: serde_json::Value = serde_json::from_slice(&v).ok()?;
            chrono::DateTime::parse_from_rfc3339(e.get("ts")?.as_str()?).ok().map(|t| t.timestamp_millis())
        });
        let since_ms = last_ts.or(record.as_ref().map(|r| r.written_ms));
        gap = Some(Gap { after: found.seq, reason, since_ms });
        if reserved > found.seq {
            let mut b = Batch::default();
            b.put(records::SEQ.to_vec(), reserved.to_string().into_bytes());
            store.apply(b).map_err(|e| err(e.to_string()))?;
        }
    }
    let counters = carry_counters(&store, record.as_ref()).map_err(|e| err(e.to_string()))?;
    let seq = found.seq.max(if gap.is_some() { reserved } else { 0 });
    let rec = CheckRecord {
        version: 1,
        store_id,
        changes: found.changes,
        generation: found.generation,
        seq_floor: seq,
        seq_reserved: reserved.max(seq),
        running: true,
        written_ms: now_ms,
        counters,
    };
    let guard = check::Guard::start(check::path(data_dir), rec, now_ms).map_err(|e| err(e.to_string()))?;
    store.attach(guard);
    Ok(Opened { store, recovery, gap })
}

/// The portal keys' command counters: each the higher of the store's and
/// the record's (a store restored from an older snapshot, or one that lost
/// its last writes, gets the record's back), written to the store; returns
/// them all for the new record.
fn carry_counters(store: &Store, record: Option<&CheckRecord>) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut all = BTreeMap::new();
    for r in store.scan(records::SIGNED_COUNTER) {
        let (k, v) = r?;
        if let (Ok(id), Some(c)) = (std::str::from_utf8(&k[records::SIGNED_COUNTER.len()..]), records::decimal(&v)) {
            all.insert(id.to_string(), c);
        }
    }
    let mut b = Batch::default();
    for (id, &c) in record.map(|r| &r.counters).into_iter().flatten() {
        if all.get(id).is_none_or(|&have| have < c) {
            tracing::warn!(key = %crate::logtext::escape(id), counter = c, "a portal key's command counter restored from the store's check record");
            b.put(records::prefixed(records::SIGNED_COUNTER, id.as_bytes()), c.to_string().into_bytes());
            all.insert(id.clone(), c);
        }
    }
    if !b.is_empty() {
        store.apply(b)?;
    }
    Ok(all)
}

/// Whether the store waits for the portal's full sync after a recovery.
pub fn needs_sync(store: &Store) -> bool {
    store.get(NEEDS_SYNC).ok().flatten().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_at(dir: &Path, restore: Restore) -> Opened {
        open(dir, 1 << 20, OnDamage::Recover, restore, 1_000).map_err(|e| e.to_string()).unwrap()
    }

    fn stop(o: Opened) {
        let seq = o.store.found().unwrap().seq;
        o.store.guard().unwrap().stopped(seq).unwrap();
    }

    #[test]
    fn a_deleted_store_is_found_out_and_restored_from_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let o = open_at(dir.path(), Restore::Restrictive);
        assert!(o.recovery.is_none() && o.gap.is_none());
        let mut b = Batch::default();
        b.put(records::prefixed(records::TOMBSTONE, &[7; 16]), b"1".to_vec());
        b.put(records::prefixed(records::SIGNED_COUNTER, b"portal-1"), b"41".to_vec());
        b.put(records::SEQ.to_vec(), b"40".to_vec());
        o.store.apply_change(b).unwrap();
        snapshot::write(&o.store, &snapshot::dir(dir.path()), 3, 500).unwrap();
        stop(o);
        // A clean stop, then a start: nothing found wrong, no gap.
        let o = open_at(dir.path(), Restore::Restrictive);
        assert!(o.recovery.is_none() && o.gap.is_none());
        stop(o);
        std::fs::remove_dir_all(dir.path().join("store")).unwrap();
        let o = open_at(dir.path(), Restore::Restrictive);
        let r = o.recovery.as_ref().expect("recovered");
        assert_eq!(r.damage.kind, "emptied");
        assert_eq!((r.tombstones, r.holders), (1, 0));
        assert!(needs_sync(&o.store));
        assert!(o.store.get(&records::prefixed(records::TOMBSTONE, &[7; 16])).unwrap().is_some());
        // A portal key's counter survives, so replays stay refused.
        assert_eq!(
            o.store.get(&records::prefixed(records::SIGNED_COUNTER, b"portal-1")).unwrap().as_deref(),
            Some(&b"41"[..])
        );
        // seq goes on above what was published.
        let g = o.gap.as_ref().unwrap();
        assert_eq!(g.reason, "store_recovered");
        assert!(o.store.found().unwrap().seq >= 40);
    }

    #[test]
    fn an_unclean_stop_continues_above_the_reserved_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let o = open_at(dir.path(), Restore::Restrictive);
        o.store.guard().unwrap().reserve(0, 1000).unwrap();
        drop(o); // no clean stop
        let o = open_at(dir.path(), Restore::Restrictive);
        assert!(o.recovery.is_none());
        assert_eq!(o.gap.as_ref().unwrap().reason, "unclean_stop");
        assert_eq!(o.store.found().unwrap().seq, 1000);
    }

    #[test]
    fn refuse_keeps_the_damaged_store_in_place() {
        let dir = tempfile::tempdir().unwrap();
        stop(open_at(dir.path(), Restore::Restrictive));
        std::fs::remove_dir_all(dir.path().join("store")).unwrap();
        let e = open(dir.path(), 1 << 20, OnDamage::Refuse, Restore::All, 0).err().unwrap();
        assert!(e.to_string().contains("emptied"), "{e}");
        assert!(e.to_string().contains("Fix:"), "{e}");
        assert!(!dir.path().join("store.damaged-0").exists());
    }
}
