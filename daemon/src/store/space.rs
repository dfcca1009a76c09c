//! Space on the disk of `data_dir`: how much is free, and a reserve.
//!
//! The reserve is a file, `data_dir/reserve`, of `store.reserve_mb` written
//! out in full (so its blocks are really taken). When a write finds the disk
//! full, the store releases it (deletes the file) and reopens, so the audit
//! log and commands go on in the space it held; a start on a full disk
//! releases it before the store is opened. Once free space is back above the
//! low mark plus the reserve's size, it is made again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The reserve file's name in `data_dir`.
pub const FILE: &str = "reserve";

/// Free and total bytes of the filesystem that holds `path`.
pub fn free(path: &Path) -> std::io::Result<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = s.fragment_size() as u64;
    Ok((s.blocks_available() as u64 * unit, s.blocks() as u64 * unit))
}

/// The reserve of one data folder.
#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
    bytes: u64,
    /// Whether the file is in place (as far as this process knows).
    held: AtomicBool,
}

impl Reserve {
    /// The reserve of `data_dir`, `bytes` large (0: none).
    pub fn new(data_dir: &Path, bytes: u64) -> Reserve {
        let path = data_dir.join(FILE);
        let held = std::fs::metadata(&path).is_ok_and(|m| m.len() >= bytes);
        Reserve { path, bytes, held: AtomicBool::new(held) }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the reserve is in place.
    pub fn held(&self) -> bool {
        self.bytes > 0 && self.held.load(Ordering::SeqCst)
    }

    /// Makes the reserve file (if it is not there) and syncs it. A disk too
    /// full for it leaves none, and says so.
    pub fn make(&self) -> std::io::Result<()> {
        if self.bytes == 0 || self.held() {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            let chunk = vec![0u8; 1 << 20];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        match result {
            Ok(()) => {
                self.held.store(true, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Deletes the reserve file; true when it was there.
    pub fn release(&self) -> bool {
        let was = self.held.swap(false, Ordering::SeqCst);
        let removed = std::fs::remove_file(&self.path).is_ok();
        was || removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_is_made_whole_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reserve::new(dir.path(), 3 << 20);
        assert!(!r.held());
        r.make().unwrap();
        assert!(r.held());
        assert_eq!(std::fs::metadata(dir.path().join(FILE)).unwrap().len(), 3 << 20);
        // Another process start sees it in place.
        assert!(Reserve::new(dir.path(), 3 << 20).held());
        assert!(r.release());
        assert!(!r.held() && !dir.path().join(FILE).exists());
        assert!(!r.release());
        let (free, total) = free(dir.path()).unwrap();
        assert!(free > 0 && total >= free);
    }
}
