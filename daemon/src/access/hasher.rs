//! The keyed hash under the device secret: the only form in which PINs, QR
//! tokens and card UIDs are kept or looked up ([`super::KeyHash`]). The
//! secret itself (its file, its check) is the store's: `store::secret`.

use super::{KeyHash, KeyKind};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

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
        KeyHash(self.tagged(kind.tag(), value))
    }

    /// A keyed digest of a command's text (its op and arguments, which may
    /// hold a PIN), to tell a repeat from another command under the same id.
    pub fn command_digest(&self, text: &[u8]) -> [u8; KeyHash::LEN] {
        self.tagged(b'd', text)
    }

    /// A value that only this secret gives, kept in the store to notice a
    /// secret file replaced under it.
    pub fn check_value(&self) -> [u8; KeyHash::LEN] {
        self.tagged(b'v', b"porter device secret check")
    }

    /// HMAC-SHA256 over `tag` and `value`, its first 16 bytes. The tags keep
    /// the uses apart: `p`, `q`, `c` for keys, `d` and `v` above.
    fn tagged(&self, tag: u8, value: &[u8]) -> [u8; KeyHash::LEN] {
        let mut m = self.mac.clone();
        m.update(&[tag]);
        m.update(value);
        let mut h = [0u8; KeyHash::LEN];
        h.copy_from_slice(&m.finalize().into_bytes()[..KeyHash::LEN]);
        h
    }
}
