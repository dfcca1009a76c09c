//! The check record: what the store should hold, kept outside it.
//!
//! sled cannot tell what it lost: a truncated or deleted data file opens as
//! an empty or older tree without an error. So a small record beside the
//! store, `data_dir/store.check`, says what it should find: the store's
//! identity, how many changes were acknowledged, the generation of the last
//! full sync, the lowest `seq` a start may continue from and the highest
//! `seq` that may have been published, and whether the daemon is running
//! (an unclean stop leaves `running` set). Every start compares the store
//! with it ([`verify`]) before anything is read from the store.
//!
//! The record is replaced atomically: written to a temporary file, synced,
//! renamed over the old one, and the folder synced. It is rewritten
//!
//! - after every acknowledged change of holders and keys ([`Guard::changed`],
//!   from [`crate::store::Store::apply_change`]), before the change is
//!   reported done;
//! - when the audit writer reserves a new block of sequence numbers
//!   ([`Guard::reserve`]), before any number of the block is published;
//! - at start (`running: true`) and at a clean stop (`running: false`, with
//!   the exact last `seq`);
//! - after a signed command's counter is on disk ([`Guard::signed`]), before
//!   the command is applied: the replay guard outlives a damaged store, so a
//!   store recovered from an older snapshot still refuses every command
//!   accepted before the damage.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file name, in `data_dir`.
pub const FILE: &str = "store.check";
/// How many sequence numbers one reservation covers. A crash skips at most
/// this many numbers (reported as an `audit.gap`).
pub const SEQ_BLOCK: u64 = 1000;
/// The store's identity, a random value set when the store is made.
pub const STORE_ID: &[u8] = super::records::STORE_ID;
/// The count of acknowledged changes of holders and keys.
pub const CHANGES: &[u8] = super::records::CHANGES;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub version: u32,
    /// The store's `m/store_id`, hex.
    pub store_id: String,
    /// The store's `m/changes` when last written.
    pub changes: u64,
    /// The generation of the last committed full sync.
    pub generation: u64,
    /// Every event up to this `seq` was on disk when the record was written.
    pub seq_floor: u64,
    /// No event above this `seq` has been published.
    pub seq_reserved: u64,
    /// Set from start to a clean stop: found set at start, the last stop
    /// was a crash, a kill or a power cut.
    pub running: bool,
    /// When the record was written, unix ms.
    pub written_ms: i64,
    /// Each portal key's last accepted command counter (the store's
    /// `s/<key id>`), by key id. Absent in records written before signed
    /// commands.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
}

/// The record's path for a data folder.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Reads the record; `Ok(None)` when there is none. A record that cannot be
/// parsed is an error: it was written atomically, so it was tampered with or
/// the disk is failing.
pub fn read(path: &Path) -> Result<Option<CheckRecord>, String> {
    match std::fs::read(path) {
        Ok(b) => parse(&b).map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A record file's bytes, parsed. Its own function only so that the
/// `store_files` fuzz target can feed it any bytes without a file
/// (docs/fuzzing.md); [`read`] is its one caller here.
pub fn parse(b: &[u8]) -> Result<CheckRecord, serde_json::Error> {
    serde_json::from_slice(b)
}

/// Replaces the record atomically and durably.
pub fn write(path: &Path, rec: &CheckRecord) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut body = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    body.push(b'\n');
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What [`verify`] found wrong with a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// `unreadable`, `emptied`, `replaced` or `rolled_back`.
    pub kind: &'static str,
    /// What was found, for the log, the event and the refusal.
    pub detail: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.kind, self.detail)
    }
}

/// What the store itself says, read before anything else reads it.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub store_id: Option<String>,
    pub changes: u64,
    pub generation: u64,
    pub seq: u64,
    /// Whether the store holds any record besides its schema version.
    pub has_data: bool,
}

/// Compares the store with the record; `Ok` when it holds at least what
/// the record says was acknowledged.
pub fn verify(found: &Found, rec: Option<&CheckRecord>) -> Result<(), Damage> {
    let Some(rec) = rec else { return Ok(()) };
    let Some(id) = &found.store_id else {
        let kind = if found.has_data { "replaced" } else { "emptied" };
        let detail = if found.has_data {
            "the store has no identity: it is not the store this controller last used".into()
        } else {
            format!(
                "the store is empty, but {} acknowledged changes and events up to seq {} were recorded",
                rec.changes, rec.seq_floor
            )
        };
        return Err(Damage { kind, detail });
    };
    if *id != rec.store_id {
        return Err(Damage {
            kind: "replaced",
            // Both ids are read from disk: escaped and cut, as the detail is logged.
            detail: format!(
                "the store is {}, but this controller last used {}",
                crate::logtext::clip(id, 80),
                crate::logtext::clip(&rec.store_id, 80)
            ),
        });
    }
    if found.changes < rec.changes || found.seq < rec.seq_floor || found.generation < rec.generation {
        return Err(Damage {
            kind: "rolled_back",
            detail: format!(
                "the store holds {} changes, generation {} and events to seq {}; {} changes, generation {} and seq {} were recorded",
                found.changes, found.generation, found.seq, rec.changes, rec.generation, rec.seq_floor
            ),
        });
    }
    Ok(())
}

/// The record of an open store, kept current as the store changes.
#[derive(Debug)]
pub struct Guard {
    path: PathBuf,
    rec: Mutex<CheckRecord>,
    one: Mutex<()>,
}

impl Guard {
    /// A guard that writes `rec` (with `running` set) to `path` now.
    pub fn start(path: PathBuf, mut rec: CheckRecord, now_ms: i64) -> std::io::Result<Guard> {
        rec.version = 1;
        rec.running = true;
        rec.written_ms = now_ms;
        write(&path, &rec)?;
        Ok(Guard { path, rec: Mutex::new(rec), one: Mutex::new(()) })
    }

    fn update(&self, f: impl FnOnce(&mut CheckRecord)) -> std::io::Result<()> {
        let mut rec = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = rec.clone();
        f(&mut next);
        next.written_ms = chrono::Utc::now().timestamp_millis();
        if next == *rec {
            return Ok(());
        }
        write(&self.path, &next)?;
        *rec = next;
        Ok(())
    }

    /// A change of holders and keys is on disk: `changes` and `generation`
    /// are what the store now says.
    pub fn changed(&self, changes: u64, generation: u64) -> std::io::Result<()> {
        self.update(|r| {
            r.changes = r.changes.max(changes);
            r.generation = r.generation.max(generation);
        })
    }

    /// Events up to `floor` are on disk; numbers up to `reserved` may now be
    /// published.
    pub fn reserve(&self, floor: u64, reserved: u64) -> std::io::Result<()> {
        self.update(|r| {
            r.seq_floor = r.seq_floor.max(floor);
            r.seq_reserved = r.seq_reserved.max(reserved);
        })
    }

    /// A signed command's counter `counter` from `key_id` is on disk.
    pub fn signed(&self, key_id: &str, counter: u64) -> std::io::Result<()> {
        self.update(|r| {
            let c = r.counters.entry(key_id.to_string()).or_default();
            *c = (*c).max(counter);
        })
    }

    /// Held while one change is applied and recorded.
    pub fn serial(&self) -> std::sync::MutexGuard<'_, ()> {
        self.one.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The highest number that may have been published.
    pub fn reserved(&self) -> u64 {
        self.rec.lock().unwrap_or_else(|e| e.into_inner()).seq_reserved
    }

    /// A clean stop: every event up to `seq` is on disk, none above it was
    /// published, and the next start continues from `seq` without a gap.
    pub fn stopped(&self, seq: u64) -> std::io::Result<()> {
        let mut rec = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = rec.clone();
        next.running = false;
        next.seq_floor = seq;
        next.seq_reserved = next.seq_reserved.max(seq);
        next.written_ms = chrono::Utc::now().timestamp_millis();
        write(&self.path, &next)?;
        *rec = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> CheckRecord {
        CheckRecord {
            version: 1,
            store_id: "ab".into(),
            changes: 10,
            generation: 2,
            seq_floor: 50,
            seq_reserved: 1000,
            running: false,
            written_ms: 0,
            counters: BTreeMap::new(),
        }
    }

    fn found() -> Found {
        Found { store_id: Some("ab".into()), changes: 10, generation: 2, seq: 50, has_data: true }
    }

    #[test]
    fn a_store_is_checked_against_its_record() {
        assert_eq!(verify(&found(), None), Ok(()));
        assert_eq!(verify(&found(), Some(&rec())), Ok(()));
        // Newer than the record (a crash between the store's flush and the
        // record's write) is fine.
        assert_eq!(verify(&Found { changes: 11, seq: 70, ..found() }, Some(&rec())), Ok(()));
        let kind = |f: Found| verify(&f, Some(&rec())).unwrap_err().kind;
        assert_eq!(kind(Found::default()), "emptied");
        assert_eq!(kind(Found { store_id: None, ..found() }), "replaced");
        assert_eq!(kind(Found { store_id: Some("cd".into()), ..found() }), "replaced");
        assert_eq!(kind(Found { changes: 9, ..found() }), "rolled_back");
        assert_eq!(kind(Found { seq: 49, ..found() }), "rolled_back");
        assert_eq!(kind(Found { generation: 1, ..found() }), "rolled_back");
    }

    /// Found by the `store_files` fuzz target (docs/fuzzing.md): the store
    /// ids of a tampered store (`m/store_id`) or check record went into the
    /// damage's detail as they were, and the detail is logged at start
    /// (`store damaged; moving it aside`), so a newline in one forged a log
    /// line.
    #[test]
    fn a_tampered_store_id_cannot_forge_a_log_line() {
        let forged = "cd\n2026-12-03T01:00:00Z INFO access granted holder=admin\x1b[2K";
        let long = "e".repeat(70_000);
        for (f, r) in [
            (Found { store_id: Some(forged.into()), ..found() }, rec()),
            (found(), CheckRecord { store_id: forged.into(), ..rec() }),
            (Found { store_id: Some(long.clone()), ..found() }, CheckRecord { store_id: format!("{long}f"), ..rec() }),
        ] {
            let text = verify(&f, Some(&r)).unwrap_err().to_string();
            assert!(!text.chars().any(char::is_control), "{text}");
            assert!(text.len() < 400, "{} bytes", text.len());
        }
        let text = verify(&Found { store_id: Some(forged.into()), ..found() }, Some(&rec())).unwrap_err().to_string();
        assert!(text.contains(r"cd\n2026"), "{text}");
    }

    #[test]
    fn the_record_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert_eq!(read(&p), Ok(None));
        let g = Guard::start(p.clone(), rec(), 1).unwrap();
        assert!(read(&p).unwrap().unwrap().running);
        g.changed(12, 3).unwrap();
        g.reserve(60, 2000).unwrap();
        let r = read(&p).unwrap().unwrap();
        assert_eq!((r.changes, r.generation, r.seq_floor, r.seq_reserved), (12, 3, 60, 2000));
        g.stopped(75).unwrap();
        let r = read(&p).unwrap().unwrap();
        assert!(!r.running);
        assert_eq!((r.seq_floor, r.seq_reserved), (75, 2000));
        assert!(!dir.path().join(format!("{FILE}.tmp")).exists());
        // Counters only go up; a record from before signed commands has none.
        g.signed("portal-1", 7).unwrap();
        g.signed("portal-1", 5).unwrap();
        g.signed("portal-2", 1).unwrap();
        let r = read(&p).unwrap().unwrap();
        assert_eq!(r.counters, BTreeMap::from([("portal-1".into(), 7), ("portal-2".into(), 1)]));
        let old = r#"{"version":1,"store_id":"ab","changes":1,"generation":0,"seq_floor":0,"seq_reserved":0,"running":false,"written_ms":0}"#;
        std::fs::write(&p, old).unwrap();
        assert!(read(&p).unwrap().unwrap().counters.is_empty());
        std::fs::write(&p, b"{not json").unwrap();
        assert!(read(&p).is_err());
    }
}
