//! The device secret and the keyed hash built on it.
//!
//! PINs, QR tokens and card UIDs are stored and looked up only as
//! HMAC-SHA256(secret, kind tag || value). A six-digit PIN space is too small
//! for a slow KDF to help, and a slow KDF would break the latency budget; a
//! keyed hash makes a stolen data folder useless without the secret file,
//! gives O(1) lookups and lets duplicate checks run without plaintext.

use crate::access::{KeyHash, KeyKind};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// The length of a generated secret, in bytes.
pub const SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret_file {path}: {source}; {hint}")]
    Io { path: String, source: std::io::Error, hint: &'static str },
    #[error("secret_file {path} holds {len} bytes, not a Porter secret (at least 16): restore it from a backup; with an empty store, deleting it makes a new one")]
    TooShort { path: String, len: usize },
    #[error("secret_file {path} is missing, but the store holds keys made with it: restore the file from a backup, or move data_dir aside to start with an empty store")]
    Missing { path: String },
}

/// Reads the secret at `path`, creating it (mode 0600, 32 random bytes) when
/// absent and `may_create`. Warns when its mode lets others read it.
pub fn load_or_create(path: &Path, may_create: bool) -> Result<Vec<u8>, SecretError> {
    let io = |source, hint| SecretError::Io { path: path.display().to_string(), source, hint };
    match std::fs::read(path) {
        Ok(bytes) => {
            if bytes.len() < 16 {
                return Err(SecretError::TooShort { path: path.display().to_string(), len: bytes.len() });
            }
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "secret_file is readable by group or others; chmod 600 it");
                }
            }
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !may_create => {
            Err(SecretError::Missing { path: path.display().to_string() })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| io(e, "create its folder or fix secret_file"))?;
            }
            let mut secret = vec![0u8; SECRET_LEN];
            getrandom::fill(&mut secret)
                .map_err(|e| io(std::io::Error::other(e.to_string()), "the system has no random source"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io(e, "make its folder writable by the porter user"))?;
            f.write_all(&secret).and_then(|_| f.sync_all()).map_err(|e| io(e, "check the disk"))?;
            tracing::info!(path = %path.display(), "created a new device secret");
            Ok(secret)
        }
        Err(e) => Err(io(e, "make it readable by the porter user (mode 0600, owned by porter)")),
    }
}

/// The keyed hash, pre-keyed once so each hash costs two SHA-256 blocks.
#[derive(Clone)]
pub struct KeyHasher {
    mac: HmacSha256,
}

impl KeyHasher {
    pub fn new(secret: &[u8]) -> Self {
        KeyHasher { mac: HmacSha256::new_from_slice(secret).expect("HMAC takes any key length") }
    }

    /// The lookup key of `value` presented as `kind`: HMAC-SHA256 over the
    /// kind's tag and the value, its first 16 bytes.
    pub fn hash(&self, kind: KeyKind, value: &[u8]) -> KeyHash {
        let mut m = self.mac.clone();
        m.update(&[kind.tag()]);
        m.update(value);
        let mut h = [0u8; KeyHash::LEN];
        h.copy_from_slice(&m.finalize().into_bytes()[..KeyHash::LEN]);
        KeyHash(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn kinds_are_domain_separated() {
        let h = KeyHasher::new(b"0123456789abcdef");
        assert_ne!(h.hash(KeyKind::Pin, b"1234"), h.hash(KeyKind::Qr, b"1234"));
        assert_eq!(h.hash(KeyKind::Pin, b"1234"), h.hash(KeyKind::Pin, b"1234"));
        assert_ne!(h.hash(KeyKind::Pin, b"1234"), KeyHasher::new(b"another-secret!!").hash(KeyKind::Pin, b"1234"));
    }
}
