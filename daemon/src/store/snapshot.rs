//! Snapshots: a copy of the store's holders and what refuses access, kept
//! beside it to restore from when the store is found damaged.
//!
//! A snapshot is one file in `data_dir/snapshots/`, named by the time it was
//! taken (`<unix ms>.snap`), written to a temporary name, synced and renamed
//! into place, so a power cut leaves the old set of snapshots or the new one.
//! It holds the generation of the last full sync, every holder record of the
//! live set, the tombstones of retired PINs, the devices' lockout states and
//! the spent uses of limited keys, each portal key's last command counter
//! (so a recovered store still refuses replays of older commands), and ends with a SHA-256 of all that came
//! before it: a damaged snapshot is skipped, never restored. The key index
//! is not copied: a restore derives it from the holder records.
//!
//! The newest `store.snapshots` files are kept (older ones are removed after
//! a new one is written). A snapshot holds keyed hashes, never a key.

use super::records::{self, Space};
use super::{Record, Store};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"PORTER-SNAPSHOT-1\n";
/// A snapshot larger than this is not written (and one found larger is not read).
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The prefixes of what refuses access, copied besides the holders.
const RESTRICTIVE: [&[u8]; 4] = [records::TOMBSTONE, records::LOCKOUT, records::USES, records::SIGNED_COUNTER];

/// The folder of snapshots in `data_dir`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// What a snapshot holds, in the store's own key layout (holders and
/// key-index entries of space `a`).
#[derive(Debug, Default)]
pub struct Contents {
    pub taken_ms: i64,
    pub generation: u64,
    /// `h/a/<id>` records.
    pub holders: Vec<Record>,
    /// `t/`, `l/`, `u/` and `s/` records.
    pub restrictive: Vec<Record>,
}

/// A snapshot file being written: every byte goes through the checksum,
/// and the size is bounded.
struct Out {
    w: std::io::BufWriter<std::fs::File>,
    sum: sha2::Sha256,
    n: u64,
}

impl Out {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.n += b.len() as u64;
        if self.n > MAX_BYTES {
            return Err(std::io::Error::other(format!("a snapshot would be over {MAX_BYTES} bytes")));
        }
        self.sum.update(b);
        self.w.write_all(b)
    }

    fn record(&mut self, k: &[u8], v: &[u8]) -> std::io::Result<()> {
        self.put(&(k.len() as u32).to_be_bytes())?;
        self.put(k)?;
        self.put(&(v.len() as u32).to_be_bytes())?;
        self.put(v)
    }
}

/// Streams the store's snapshot into `f` (a record at a time: a snapshot of
/// 100,000 holders is never held in memory whole).
fn stream(store: &Store, f: std::fs::File, now_ms: i64) -> std::io::Result<std::fs::File> {
    let live = records::active_space(store);
    let generation = store.counter(records::GENERATION).map_err(std::io::Error::other)?;
    let mut out = Out { w: std::io::BufWriter::new(f), sum: sha2::Sha256::new(), n: 0 };
    out.put(MAGIC)?;
    out.put(&now_ms.to_be_bytes())?;
    out.put(&generation.to_be_bytes())?;
    for r in store.scan(&live.holders()) {
        let (k, v) = r.map_err(std::io::Error::other)?;
        out.record(&records::prefixed(&Space::A.holders(), &k[live.holders().len()..]), &v)?;
    }
    for prefix in RESTRICTIVE {
        for r in store.scan(prefix) {
            let (k, v) = r.map_err(std::io::Error::other)?;
            out.record(&k, &v)?;
        }
    }
    let sum = out.sum.finalize();
    out.w.write_all(&sum)?;
    out.w.into_inner().map_err(|e| e.into_error())
}

/// Reads a snapshot file's bytes; `None` when its checksum or layout is
/// wrong, or it holds a key that no snapshot is written from. Public only so that the `store_files` fuzz target can feed it any
/// bytes (docs/fuzzing.md); [`newest`] is its one caller here.
pub fn decode(b: &[u8]) -> Option<Contents> {
    let (body, sum) = b.split_at_checked(b.len().checked_sub(32)?)?;
    if sha2::Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let mut rest = body.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = rest.split_at_checked(n)?;
        rest = b;
        Some(a)
    };
    let u64_of = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
    let taken_ms = u64_of(take(8)?) as i64;
    let generation = u64_of(take(8)?);
    let mut c = Contents { taken_ms, generation, ..Default::default() };
    let holders = Space::A.holders();
    while let Some(kl) = take(4) {
        let k = take(u32::from_be_bytes(kl.try_into().ok()?) as usize)?.to_vec();
        let vl = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
        let v = take(vl)?.to_vec();
        if k.starts_with(&holders) {
            c.holders.push((k, v));
        } else if RESTRICTIVE.iter().any(|p| k.starts_with(p)) {
            c.restrictive.push((k, v));
        } else {
            // Not what a snapshot is written from, and a restore would put
            // it into the store as it is: the file is not one we wrote.
            return None;
        }
    }
    Some(c)
}

/// Writes a snapshot of `store` into `dir` and keeps the newest `keep`.
pub fn write(store: &Store, dir: &Path, keep: u32, now_ms: i64) -> std::io::Result<PathBuf> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    // Named by a count that only grows, then the time: the newest is the
    // last written even if the clock was set back in between.
    let next = list(dir).first().and_then(|p| number(p)).map_or(1, |n| n + 1);
    let path = dir.join(format!("{next:010}-{now_ms:015}.snap"));
    let tmp = dir.join("snapshot.tmp");
    let result = (|| {
        let f = stream(store, std::fs::File::create(&tmp)?, now_ms)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let all = list(dir);
    for old in all.iter().skip(keep.max(1) as usize) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// A snapshot file's count (the part of its name before `-`).
fn number(p: &Path) -> Option<u64> {
    p.file_stem()?.to_str()?.split('-').next()?.parse().ok()
}

/// When a snapshot file was taken, unix ms (from its name).
pub fn taken_ms(p: &Path) -> Option<i64> {
    p.file_stem()?.to_str()?.rsplit('-').next()?.parse().ok()
}

/// The snapshot files in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "snap"));
    v.sort();
    v.reverse();
    v
}

/// The newest snapshot in `dir` that reads back whole, with its path.
/// Damaged ones are logged and skipped.
pub fn newest(dir: &Path) -> Option<(PathBuf, Contents)> {
    for p in list(dir) {
        let good = std::fs::metadata(&p).is_ok_and(|m| m.len() <= MAX_BYTES);
        match std::fs::read(&p).ok().filter(|_| good).and_then(|b| decode(&b)) {
            Some(c) => return Some((p, c)),
            None => tracing::error!(snapshot = %p.display(), "snapshot damaged; skipped"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Batch;

    /// A snapshot file holding `records`, with a valid checksum.
    fn file_of(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut b = [MAGIC, &5i64.to_be_bytes(), &7u64.to_be_bytes()].concat();
        for (k, v) in records {
            b.extend_from_slice(&(k.len() as u32).to_be_bytes());
            b.extend_from_slice(k);
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(v);
        }
        let sum = sha2::Sha256::digest(&b);
        b.extend_from_slice(&sum);
        b
    }

    /// Found by the `store_files` fuzz target (docs/fuzzing.md): a snapshot
    /// with a valid checksum (a SHA-256, which anyone can compute) was read
    /// whatever keys it held, and a restore puts what is not a holder into
    /// the store as it is: an empty key, `m/active`, a key index entry. Only
    /// what a snapshot is written from is read; anything else makes it
    /// damaged (skipped, as a flipped byte does).
    #[test]
    fn a_snapshot_with_a_key_no_snapshot_holds_is_damaged() {
        let good: &[(&[u8], &[u8])] = &[(b"h/a/ann", b"rec"), (b"t/0123456789abcdef", b"5"), (b"s/portal-a", b"9")];
        let c = decode(&file_of(good)).expect("a written snapshot reads");
        assert_eq!((c.holders.len(), c.restrictive.len()), (1, 2));
        for bad in [&b""[..], b"m/active", b"k/a/0123456789abcdef", b"h/b/ann", b"r/s:c-1", b"t"] {
            let records = [good, &[(bad, &b"x"[..])]].concat();
            assert!(decode(&file_of(&records)).is_none(), "{:?} read", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_snapshot_reads_back_and_a_damaged_one_is_skipped() {
        let store = Store::temporary().unwrap();
        let mut b = Batch::default();
        b.put(records::ACTIVE.to_vec(), b"b".to_vec());
        b.put(records::GENERATION.to_vec(), b"7".to_vec());
        b.put(records::prefixed(&Space::B.holders(), b"ann"), b"rec-ann".to_vec());
        b.put(records::prefixed(&Space::A.holders(), b"old"), b"stale".to_vec());
        b.put(records::prefixed(records::TOMBSTONE, &[1; 16]), b"5".to_vec());
        b.put(records::lockout_key("keypad1"), b"{}".to_vec());
        store.apply(b).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (i, ms) in [10, 20, 30, 40].into_iter().enumerate() {
            write(&store, dir.path(), 3, ms).unwrap();
            assert_eq!(list(dir.path()).len(), (i + 1).min(3));
        }
        let (p, c) = newest(dir.path()).unwrap();
        assert!(p.ends_with("0000000004-000000000000040.snap"), "{}", p.display());
        assert_eq!(taken_ms(&p), Some(40));
        assert_eq!((c.taken_ms, c.generation), (40, 7));
        assert_eq!(c.holders, vec![(records::prefixed(&Space::A.holders(), b"ann"), b"rec-ann".to_vec())]);
        assert_eq!(c.restrictive.len(), 2);
        // One flipped byte: the newest is skipped, the next one restored.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        assert_eq!(newest(dir.path()).unwrap().1.taken_ms, 30);
    }
}
