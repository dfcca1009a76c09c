//! The device secret and the keyed hash built on it.
//!
//! PINs, QR tokens and card UIDs are stored and looked up only as
//! HMAC-SHA256(secret, kind tag || value). A six-digit PIN space is too small
//! for a slow KDF to help, and a slow KDF would break the latency budget; a
//! keyed hash makes a stolen data folder useless without the secret file,
//! gives O(1) lookups and lets duplicate checks run without plaintext.

pub use crate::access::hasher::KeyHasher;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// The length of a generated secret, in bytes.
pub const SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret_file {path}: {source}; {hint}")]
    Io { path: String, source: std::io::Error, hint: &'static str },
    #[error("secret_file {path} holds {len} bytes, not a Porter secret (at least 16): restore it from a backup; with an empty store, deleting it makes a new one")]
    TooShort { path: String, len: usize },
    #[error("secret_file {path} is missing, but the store was made with it (it holds keys, tombstones or the secret's check value): restore the file from a backup, or move data_dir aside to start with an empty store")]
    Missing { path: String },
    #[error("secret_file {path} has mode {mode:o}: users other than its owner may read it; chmod 600 {path} (and chown it to the daemon's user)")]
    Loose { path: String, mode: u32 },
    #[error(transparent)]
    Unsafe(#[from] crate::ownership::Unsafe),
    #[error("secret_file {path} is not the secret this store's keys were made with: restore the right file from a backup, or move data_dir aside to start with an empty store")]
    Mismatch { path: String },
}

/// Opens `path` for reading without following a symlink (`O_NOFOLLOW`).
fn open_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// A secret file found: the opened file (for its mode) and its bytes.
pub type Found = (std::fs::File, Zeroizing<Vec<u8>>);

/// The secret file as a daemon running as `me` finds it, changing nothing:
/// its folder and the folders above checked, the file opened without
/// following a link, checked on the opened file and read; `Ok(None)` when
/// it is not there (the daemon makes it at its first start). `porterctl
/// doctor` and `check-config` call this; so does the daemon's start.
pub fn inspect(path: &Path, me: u32) -> Result<Option<Found>, SecretError> {
    use crate::ownership::{check_dir, check_file, Unsafe, SECRET_DIR, SECRET_FILE};
    let io = |source, hint| SecretError::Io { path: path.display().to_string(), source, hint };
    let folder = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    check_dir(&SECRET_DIR, folder, me)?;
    match open_nofollow(path) {
        Ok(f) => {
            // Checked on the opened file: a symlink is never followed, and
            // the file read is the file checked.
            check_file(&SECRET_FILE, path, &f, me)?;
            let mut bytes = Zeroizing::new(Vec::new());
            std::io::Read::read_to_end(&mut &f, &mut bytes).map_err(|e| io(e, "check the disk"))?;
            if bytes.len() < 16 {
                return Err(SecretError::TooShort { path: path.display().to_string(), len: bytes.len() });
            }
            Ok(Some((f, bytes)))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(Unsafe::of(
            &SECRET_FILE,
            path,
            "a symbolic link; the daemon never follows one to its secret".into(),
            "0600",
        )
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e, "make it readable by the porter user (mode 0600, owned by porter)")),
    }
}

/// Reads the secret at `path`, creating it (mode 0600, 32 random bytes, its
/// folder 0700 when that is made too) when absent and `may_create`. A file
/// that users other than its owner may read is set to 0600, or refused when
/// the daemon may not change its mode.
pub fn load_or_create(path: &Path, may_create: bool) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let io = |source, hint| SecretError::Io { path: path.display().to_string(), source, hint };
    match inspect(path, crate::ownership::euid())? {
        Some((f, bytes)) => {
            let mode = f.metadata().map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            if mode & 0o077 != 0 {
                // Tightened where the daemon may (its own file, through the
                // opened file: never a symlink's target); refused where not.
                if f.set_permissions(std::fs::Permissions::from_mode(0o600)).is_err() {
                    return Err(SecretError::Loose { path: path.display().to_string(), mode });
                }
                tracing::warn!(path = %path.display(), was = format!("{mode:o}"), "secret_file was readable by others; its mode is now 600");
            }
            Ok(bytes)
        }
        None if !may_create => Err(SecretError::Missing { path: path.display().to_string() }),
        None => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| io(e, "create its folder or fix secret_file"))?;
            }
            let mut secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
            getrandom::fill(&mut secret)
                .map_err(|e| io(std::io::Error::other(e.to_string()), "the system has no random source"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io(e, "make its folder writable by the porter user"))?;
            f.write_all(&secret).and_then(|_| f.sync_all()).map_err(|e| io(e, "check the disk"))?;
            // The new name too, so a power cut cannot lose the file but keep the keys made with it.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(e, "check the disk"))?;
            }
            tracing::info!(path = %path.display(), "created a new device secret");
            Ok(secret)
        }
    }
}

/// Checks that the secret is the one the store's keys were made with, by the
/// check value the store keeps; a store without one (new, or from before
/// the check) is given it.
pub fn check(store: &super::Store, hasher: &KeyHasher, path: &Path) -> Result<(), SecretError> {
    use super::records::SECRET_CHECK;
    let want = hasher.check_value();
    let io = |e: super::StoreError| SecretError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
        hint: "the store could not be read or written",
    };
    match store.get(SECRET_CHECK).map_err(io)? {
        Some(v) if v == want => Ok(()),
        Some(_) => Err(SecretError::Mismatch { path: path.display().to_string() }),
        None => {
            let mut b = super::Batch::default();
            b.put(SECRET_CHECK.to_vec(), want.to_vec());
            store.apply(b).map_err(io)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::KeyKind;

    #[test]
    fn creates_a_private_secret_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/device.key");
        assert!(matches!(load_or_create(&p, false), Err(SecretError::Missing { .. })));
        let a = load_or_create(&p, true).unwrap();
        assert_eq!(a.len(), SECRET_LEN);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create(&p, false).unwrap(), a);
    }

    #[test]
    fn a_replaced_secret_is_noticed() {
        let store = super::super::Store::temporary().unwrap();
        let (a, b) = (KeyHasher::new(b"0123456789abcdef"), KeyHasher::new(b"another-secret!!"));
        let p = Path::new("device.key");
        check(&store, &a, p).unwrap();
        check(&store, &a, p).unwrap();
        assert!(matches!(check(&store, &b, p), Err(SecretError::Mismatch { .. })));
    }

    #[test]
    fn a_secret_others_may_read_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("device.key");
        let a = load_or_create(&p, true).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(load_or_create(&p, false).unwrap(), a);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn kinds_are_domain_separated() {
        let h = KeyHasher::new(b"0123456789abcdef");
        assert_ne!(h.hash(KeyKind::Pin, b"1234"), h.hash(KeyKind::Qr, b"1234"));
        assert_eq!(h.hash(KeyKind::Pin, b"1234"), h.hash(KeyKind::Pin, b"1234"));
        assert_ne!(h.hash(KeyKind::Pin, b"1234"), KeyHasher::new(b"another-secret!!").hash(KeyKind::Pin, b"1234"));
    }
}
