//! The controller's identity: an Ed25519 key pair, made at first start and
//! kept in `identity_file` like the device secret (mode 0600, owned by the
//! daemon's user), with which the controller signs what it publishes
//! (`provision::seal`).
//!
//! The file is PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), what
//! `openssl genpkey -algorithm ed25519` writes, so openssl reads it too.
//! `porterctl keygen` writes a portal's key pair in the same format
//! ([`write_new`]). A file that a user other than the owner may read or
//! write, that belongs to another user, that is a symbolic link or that
//! does not hold an Ed25519 key is refused with what to do; it is never
//! changed or replaced, since portals pin the public key.

use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::Digest;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// The controller's key pair. Its `Debug` shows the public key only.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("public_key", &self.public_key()).finish_non_exhaustive()
    }
}

/// The public half as shown in the status document and by `identity`
/// (fields in name order, as the status document's keys are).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublicIdentity {
    /// Always `ed25519`.
    pub algorithm: &'static str,
    /// The first 8 bytes of SHA-256 of the raw public key, in hex: the
    /// `porter-key-id` user property of every signed message.
    pub key_id: String,
    /// The raw 32-byte public key, standard base64 with padding (44 characters):
    /// the form a portal pins.
    pub public_key: String,
    /// The same key as a PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`),
    /// for `openssl pkeyutl -verify -pubin`.
    pub public_key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{key} {path}: {source}; {hint}")]
    Io { key: &'static str, path: String, source: std::io::Error, hint: &'static str },
    #[error("{key} {path} is a symbolic link: the key file must be a regular file; replace the link with the file it points to (mode 0600, owned by the daemon's user)")]
    Symlink { key: &'static str, path: String },
    #[error(
        "{key} {path} is not a regular file: point {key} at a file, or remove what is there to have a new key made"
    )]
    NotAFile { key: &'static str, path: String },
    #[error("{key} {path} has mode {mode:o}: users other than its owner may read or change it; chmod 600 {path}")]
    Loose { key: &'static str, path: String, mode: u32 },
    #[error("{key} {path} belongs to user id {owner}, not to the daemon's user (id {me}); chown it to the daemon's user (porter), mode 0600")]
    Owner { key: &'static str, path: String, owner: u32, me: u32 },
    #[error("{key} {path} does not hold an Ed25519 private key in PKCS#8 PEM ({detail}); restore it from a backup (portals pin its public key), or move it aside to have a new key made and pin the new public key in the portal")]
    Damaged { key: &'static str, path: String, detail: String },
    #[error("{path} exists: refusing to overwrite a key; choose another file name or move the old one aside")]
    Exists { path: String },
    #[error(transparent)]
    Unsafe(#[from] crate::ownership::Unsafe),
}

impl Identity {
    /// A key pair from the system's random source.
    pub fn generate() -> Result<Identity, std::io::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Identity { key: SigningKey::from_bytes(&seed) })
    }

    /// The key pair of a 32-byte seed (tests and test vectors).
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        Identity { key: SigningKey::from_bytes(seed) }
    }

    /// The key pair held in PKCS#8 PEM text.
    pub fn from_pem(pem: &str) -> Result<Identity, String> {
        SigningKey::from_pkcs8_pem(pem).map(|key| Identity { key }).map_err(|e| e.to_string())
    }

    /// The private key as PKCS#8 v1 PEM, the seed alone, as `openssl genpkey
    /// -algorithm ed25519` writes it. (ed25519-dalek's own `to_pkcs8_pem`
    /// writes v2, with the public key too, which OpenSSL 3.0 cannot read.)
    pub fn to_pem(&self) -> Result<Zeroizing<String>, String> {
        let mut v1 = KeypairBytes { secret_key: self.key.to_bytes(), public_key: None };
        let pem = v1.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string());
        zeroize::Zeroize::zeroize(&mut v1.secret_key);
        pem
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The raw public key in standard base64 (the form portals pin).
    pub fn public_key(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.verifying_key().as_bytes())
    }

    /// The key id: the first 8 bytes of SHA-256 of the raw public key, hex.
    pub fn key_id(&self) -> String {
        key_id(&self.verifying_key())
    }

    /// The public half, in every form it is shown in.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            algorithm: "ed25519",
            public_key: self.public_key(),
            key_id: self.key_id(),
            public_key_pem: self.verifying_key().to_public_key_pem(LineEnding::LF).unwrap_or_default(),
        }
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The key id of `key`: the first 8 bytes of SHA-256 of its raw bytes, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8])
}

/// Reads the controller's identity from `path`, making a new key pair there
/// when the file is absent (its folder made 0700 when missing too). `key`
/// names the config key in errors. A folder that another user may write,
/// or one above it, is refused before anything is read or made there.
pub fn load_or_create(key: &'static str, path: &Path) -> Result<Identity, IdentityError> {
    match inspect(key, path, crate::ownership::euid())? {
        Some(id) => Ok(id),
        None => {
            let id = Identity::generate().map_err(|e| io(key, path, e, "the system has no random source"))?;
            write_new(key, path, &id)?;
            tracing::info!(path = %path.display(), public_key = %id.public_key(), key_id = %id.key_id(), "created the controller's identity key");
            Ok(id)
        }
    }
}

/// The identity file as a daemon running as `me` finds it, changing
/// nothing: its folder and the folders above checked
/// ([`crate::ownership::check_dir`]), then the file read as [`load_as`]
/// reads it; `Ok(None)` when it is not there (made at the first start).
/// `porterctl doctor` and `check-config` call this; so does the start.
pub fn inspect(key: &'static str, path: &Path, me: u32) -> Result<Option<Identity>, IdentityError> {
    let folder = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::ownership::check_dir(&crate::ownership::IDENTITY_DIR, folder, me)?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(key, path, e, "make its folder readable by the porter user")),
        Ok(_) => load_as(key, path, me).map(Some),
    }
}

/// Reads a key file, refusing one that is a link, open to other users, owned
/// by another user or damaged.
pub fn load(key: &'static str, path: &Path) -> Result<Identity, IdentityError> {
    load_as(key, path, crate::ownership::euid())
}

/// [`load`] for a process running as `me` (the owner the file must have).
pub fn load_as(key: &'static str, path: &Path, me: u32) -> Result<Identity, IdentityError> {
    let p = || path.display().to_string();
    let meta = std::fs::symlink_metadata(path).map_err(|e| io(key, path, e, "check the path"))?;
    if meta.file_type().is_symlink() {
        return Err(IdentityError::Symlink { key, path: p() });
    }
    if !meta.is_file() {
        return Err(IdentityError::NotAFile { key, path: p() });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Loose { key, path: p(), mode });
    }
    if meta.uid() != me {
        return Err(IdentityError::Owner { key, path: p(), owner: meta.uid(), me });
    }
    // O_NOFOLLOW: a link swapped in after the check is not followed either.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| io(key, path, e, "make it readable by the porter user (mode 0600, owned by porter)"))?;
    let mut text = Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut f, &mut text).map_err(|e| IdentityError::Damaged {
        key,
        path: p(),
        detail: e.to_string(),
    })?;
    Identity::from_pem(&text).map_err(|detail| IdentityError::Damaged { key, path: p(), detail })
}

/// Writes `id`'s private key to `path` as PKCS#8 PEM, mode 0600, refusing a
/// path that exists. The file appears whole or not at all (a temporary file,
/// synced, then linked into place), and its folder is synced.
pub fn write_new(key: &'static str, path: &Path, id: &Identity) -> Result<(), IdentityError> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(IdentityError::Exists { path: path.display().to_string() });
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(key, path, e, "create its folder, or point the key file elsewhere"))?;
    let pem = id.to_pem().map_err(|e| io(key, path, std::io::Error::other(e), "report this as a bug"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
        // A link, unlike a rename, fails when the name is taken meanwhile.
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(IdentityError::Exists { path: path.display().to_string() })
        }
        Err(e) => return Err(io(key, path, e, "make its folder writable by the porter user")),
        Ok(()) => {}
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(key, path, e, "check the disk"))
}

fn io(key: &'static str, path: &Path, source: std::io::Error, hint: &'static str) -> IdentityError {
    IdentityError::Io { key, path: path.display().to_string(), source, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "identity_file";

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/identity.pem");
        let a = load_or_create(KEY, &p).unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&p).unwrap();
        // PKCS#8 v1 (version 0, no public key), as openssl genpkey writes it.
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"), "{text}");
        let b = load_or_create(KEY, &p).unwrap();
        assert_eq!(a.public(), b.public());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "the file is not rewritten");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        let other = load_or_create(KEY, &dir.path().join("other.pem")).unwrap();
        assert_ne!(a.public_key(), other.public_key());
    }

    #[test]
    fn a_key_file_others_may_read_is_refused_not_changed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.pem");
        load_or_create(KEY, &p).unwrap();
        for m in [0o640, 0o604, 0o620, 0o660] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
            let e = load_or_create(KEY, &p).unwrap_err();
            assert!(matches!(e, IdentityError::Loose { .. }), "{e}");
            assert!(e.to_string().contains(&format!("chmod 600 {}", p.display())), "{e}");
            assert_eq!(mode(&p), m, "the mode is left for the operator to fix");
        }
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("someone-elses.pem");
        load_or_create(KEY, &target).unwrap();
        let before = std::fs::read(&target).unwrap();
        let link = dir.path().join("identity.pem");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = load_or_create(KEY, &link).unwrap_err();
        assert!(matches!(e, IdentityError::Symlink { .. }), "{e}");
        // A dangling link is refused too, not written through.
        let dangling = dir.path().join("dangling.pem");
        std::os::unix::fs::symlink(dir.path().join("nowhere.pem"), &dangling).unwrap();
        assert!(matches!(load_or_create(KEY, &dangling).unwrap_err(), IdentityError::Symlink { .. }));
        assert!(!dir.path().join("nowhere.pem").exists());
        assert_eq!(std::fs::read(&target).unwrap(), before);
    }

    #[test]
    fn a_damaged_key_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.pem");
        let good = {
            load_or_create(KEY, &p).unwrap();
            std::fs::read_to_string(&p).unwrap()
        };
        let cut = &good[..good.len() / 2];
        let not_ed25519 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        for text in ["", "garbage", cut, not_ed25519] {
            std::fs::remove_file(&p).unwrap();
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&p).unwrap();
            std::fs::write(&p, text).unwrap();
            let e = load_or_create(KEY, &p).unwrap_err();
            assert!(matches!(e, IdentityError::Damaged { .. }), "{text:?}: {e}");
            assert!(e.to_string().contains("restore it from a backup"), "{e}");
            assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "a damaged file is not replaced");
        }
    }

    #[test]
    fn a_key_file_of_another_user_is_refused() {
        // Only root can give a file away; elsewhere this case cannot be made.
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.pem");
        load_or_create(KEY, &p).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let e = load_or_create(KEY, &p).unwrap_err();
        assert!(matches!(e, IdentityError::Owner { owner: 65534, .. }), "{e}");
    }

    #[test]
    fn write_new_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("portal.pem");
        let a = Identity::generate().unwrap();
        write_new("--out", &p, &a).unwrap();
        let before = std::fs::read(&p).unwrap();
        let e = write_new("--out", &p, &Identity::generate().unwrap()).unwrap_err();
        assert!(matches!(e, IdentityError::Exists { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), before);
        assert_eq!(load("--out", &p).unwrap().public(), a.public());
    }

    #[test]
    fn the_debug_form_shows_no_private_key() {
        let id = Identity::from_seed(&[7; 32]);
        let shown = format!("{id:?}");
        assert!(shown.contains(&id.public_key()), "{shown}");
        assert!(!shown.contains(&hex::encode([7u8; 32])), "{shown}");
        assert!(!shown.contains("07, 07") && !shown.contains("7, 7"), "{shown}");
    }

    #[test]
    fn a_pkcs8_v2_file_with_the_public_key_is_read_too() {
        let id = Identity::from_seed(&[3; 32]);
        let v2 = id.key.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(v2.contains("MFECAQEw"), "{}", v2.as_str());
        assert_eq!(Identity::from_pem(&v2).unwrap().public(), id.public());
        assert_eq!(Identity::from_pem(&id.to_pem().unwrap()).unwrap().public(), id.public());
    }

    #[test]
    fn forms_of_the_public_key() {
        let id = Identity::from_seed(&[1; 32]);
        let p = id.public();
        assert_eq!(p.public_key.len(), 44);
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&p.public_key).unwrap().len(), 32);
        assert_eq!(p.key_id.len(), 16);
        assert!(p.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        // The PEM's last 32 bytes of DER are the raw key.
        let der: String = p.public_key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(der).unwrap();
        assert_eq!(&der[der.len() - 32..], id.verifying_key().as_bytes());
    }
}
