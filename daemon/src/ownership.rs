//! Who may change the files the daemon trusts.
//!
//! The device secret, the store and the admin socket are only as safe as
//! the folders they live in: a user who may write `data_dir` can pre-create
//! `device.key` and later recover PINs from the store offline; one who owns
//! the socket's folder can put their own socket there and receive the PINs
//! porterctl sends; a symlinked `device.key` would make the daemon chmod and
//! use someone else's file. So, at start:
//!
//! - a folder the daemon trusts ([`check_dir`]) is owned by the daemon's user
//!   or root, and no one else may write it. The socket's folder may instead
//!   be writable by all with the sticky bit (`/tmp`, mode 1777): there no one
//!   can remove or rename the daemon's socket, and porterctl checks the
//!   socket's owner ([`check_socket`]) before it sends anything.
//! - every folder above it, as the kernel resolves the path (each symbolic
//!   link followed, every folder looked in and every link on the way
//!   checked), is owned by root or the daemon's user and writable by no one
//!   else, unless it has the sticky bit (`/tmp`): whoever may write a folder
//!   above `data_dir` can rename `data_dir` away and put their own in its
//!   place. This is OpenSSH's StrictModes rule (`safe_path`), with the sticky
//!   exception that fs-mistrust (the Tor Project's crate, which does the
//!   walk) makes for the folders on the way.
//! - the secret file is opened without following a symlink and checked on
//!   the opened file ([`check_file`], `fstat`), never by its name.
//!
//! Each refusal names the path, what is wrong and the fix
//! (`chown porter:porter ...; chmod 0700 ...`). Root and the daemon's user
//! are trusted: they could change the daemon itself. The checks take the
//! daemon's user id (`me`), so that `porterctl doctor` and `porterd
//! check-config`, run by root, check for the user the service runs as.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a path is not safe to trust.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {problem}; another user could {risk}. Fix: {fix} (or choose a path only the daemon's user and root can write; docs/security.md, \"Files and folders\")")]
pub struct Unsafe {
    pub what: &'static str,
    pub path: String,
    pub problem: String,
    pub risk: &'static str,
    /// The commands that fix it.
    pub fix: String,
}

impl Unsafe {
    /// A refusal of `path` itself, fixed by giving it to the daemon's user
    /// with `mode`.
    pub fn of(place: &Place, path: &Path, problem: String, mode: &str) -> Unsafe {
        let p = path.display();
        Unsafe {
            what: place.what,
            path: p.to_string(),
            problem,
            risk: place.risk,
            fix: format!("chown porter:porter {p}; chmod {mode} {p}"),
        }
    }
}

/// A path the daemon trusts: its name in messages (the config key), what
/// another user who controlled it could do, and whether it may be a sticky
/// folder writable by all (as `/tmp`).
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub what: &'static str,
    pub risk: &'static str,
    pub sticky_ok: bool,
}

/// What a secret file others control gives them.
const SECRET_RISK: &str = "put a secret of their own there (or read it) and recover PINs from the store offline";
/// What an identity key others control gives them.
const IDENTITY_RISK: &str = "put a key of their own there (or read it) and sign as this controller";

pub const DATA_DIR: Place =
    Place { what: "data_dir", risk: "put their own store or device secret there", sticky_ok: false };
pub const SOCKET_DIR: Place = Place {
    what: "the admin socket's folder",
    risk: "stand in for the admin socket and receive what porterctl sends",
    sticky_ok: true,
};
pub const SECRET_DIR: Place = Place { what: "secret_file's folder", risk: SECRET_RISK, sticky_ok: true };
pub const SECRET_FILE: Place = Place { what: "secret_file", risk: SECRET_RISK, sticky_ok: false };
pub const IDENTITY_DIR: Place = Place { what: "identity_file's folder", risk: IDENTITY_RISK, sticky_ok: true };

/// The daemon's effective user id.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether `uid` is trusted by a process running as `me`: itself or root.
fn trusted(uid: u32, me: u32) -> bool {
    uid == me || uid == 0
}

/// What is wrong with an owner and mode, if anything: `sticky_ok` lets a
/// folder writable by all pass when its sticky bit is set.
fn problem(uid: u32, mode: u32, me: u32, sticky_ok: bool) -> Option<String> {
    if !trusted(uid, me) {
        return Some(format!("owned by uid {uid}, not by the daemon's user (uid {me}) or root"));
    }
    let writable = mode & 0o022 != 0;
    let sticky_world = sticky_ok && mode & 0o1000 != 0;
    if writable && !sticky_world {
        return Some(format!(
            "writable by {} (mode {:04o})",
            if mode & 0o002 != 0 { "every user" } else { "its group" },
            mode & 0o7777
        ));
    }
    None
}

/// Checks a folder the daemon trusts (following a symlink to it: the
/// folder itself is what counts) and every folder above it
/// ([`check_ancestors`]), for a daemon running as `me`. A missing folder
/// passes once the folders above it do: the daemon makes it, with its own
/// mode.
pub fn check_dir(place: &Place, dir: &Path, me: u32) -> Result<(), Unsafe> {
    check_ancestors(place, dir, me)?;
    let Ok(m) = std::fs::metadata(dir) else { return Ok(()) };
    match problem(m.uid(), m.mode(), me, place.sticky_ok) {
        None => Ok(()),
        Some(problem) => Err(Unsafe::of(place, dir, problem, "0700")),
    }
}

/// Checks the folders above `path` (and the links on the way to it) as the
/// kernel resolves it: each owned by root or `me`, writable by no one else
/// unless sticky. `path` itself is left to its own rule; a part of it that
/// is missing ends the walk (the daemon makes it).
pub fn check_ancestors(place: &Place, path: &Path, me: u32) -> Result<(), Unsafe> {
    let unsafe_at = |at: &Path, problem: String| {
        let a = at.display();
        // chown without -h would follow a link and give away its target.
        let fix = if std::fs::symlink_metadata(at).is_ok_and(|m| m.file_type().is_symlink()) {
            format!("chown -h root:root {a}, or replace the link with the folder it leads to")
        } else {
            format!("chown root:root {a}; chmod go-w {a}")
        };
        Unsafe { what: place.what, path: path.display().to_string(), problem, risk: place.risk, fix }
    };
    let mistrust = fs_mistrust::Mistrust::builder()
        .trust_user(me)
        .trust_no_group_id()
        // Never FS_MISTRUST_DISABLE_PERMISSIONS_CHECKS: the environment does
        // not turn these checks off.
        .ignore_environment()
        .build()
        .map_err(|e| unsafe_at(path, format!("cannot be checked: {e}")))?;
    let errors = match mistrust.verifier().permit_readable().permit_all_object_types().all_errors().check(path) {
        Ok(()) => return Ok(()),
        Err(fs_mistrust::Error::Multiple(v)) => v.into_iter().map(|e| *e).collect(),
        Err(e) => vec![e],
    };
    let itself = std::fs::canonicalize(path).ok();
    for e in errors {
        use fs_mistrust::Error as E;
        let at = match &e {
            E::NotFound(_) => continue,
            E::BadOwner(p, _) | E::BadPermission(p, ..) | E::BadType(p) | E::CouldNotInspect(p, _) => p.clone(),
            _ => return Err(unsafe_at(path, format!("cannot be checked: {e}"))),
        };
        if Some(&at) == itself.as_ref() {
            continue;
        }
        let meta = std::fs::symlink_metadata(&at);
        let link = meta.as_ref().is_ok_and(|m| m.file_type().is_symlink());
        let found = match (&e, &meta) {
            (E::BadType(_), _) => "not a folder".to_string(),
            (_, Ok(m)) => problem(m.uid(), m.mode(), me, true).unwrap_or_else(|| e.to_string()),
            (_, Err(err)) => format!("not to be examined ({err})"),
        };
        let kind = if link { "the symbolic link" } else { "the folder" };
        return Err(unsafe_at(&at, format!("{kind} {} on the way to it is {found}", at.display())));
    }
    Ok(())
}

/// Checks an opened file (its `fstat`, never its name): a regular file of
/// the daemon's user (`me`) or root that no one else may write.
pub fn check_file(place: &Place, path: &Path, f: &std::fs::File, me: u32) -> Result<(), Unsafe> {
    let err = |problem: String| Unsafe::of(place, path, problem, "0600");
    let m = f.metadata().map_err(|e| err(format!("cannot be examined: {e}")))?;
    if !m.file_type().is_file() {
        return Err(err("not a regular file".into()));
    }
    problem(m.uid(), m.mode(), me, false).map_or(Ok(()), |p| Err(err(p)))
}

/// porterctl's check of the admin socket before it sends anything: the
/// socket is owned by root or by `daemon_uid` (the owner of the socket's
/// folder, which the daemon checked at start), else someone else stands in
/// for the daemon.
pub fn check_socket(path: &Path) -> Result<(), String> {
    let m = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    use std::os::unix::fs::FileTypeExt;
    if !m.file_type().is_socket() {
        return Err(format!("{} is not a socket; refusing to send anything to it", path.display()));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let d = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // In a folder writable by others (sticky /tmp) the folder's owner says
    // nothing about the daemon: then only root's or our own socket is trusted.
    let shared = d.mode() & 0o022 != 0;
    let ok = m.uid() == 0 || m.uid() == euid() || (!shared && m.uid() == d.uid());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the admin socket {} is owned by uid {}, neither root nor the daemon's user (the owner of {}, uid {}){}: it may be another user's stand-in for porterd; refusing to send anything to it. Check who made it (ls -l {}) and restart porterd",
            path.display(),
            m.uid(),
            dir.display(),
            d.uid(),
            if shared { ", in a folder others may write" } else { "" },
            path.display()
        ))
    }
}

/// porterctl's check of the process it reached (`SO_PEERCRED`, from the
/// kernel: no race with a socket file swapped after [`check_socket`]): it
/// runs as root, as porterctl's own user, or as the socket file's owner.
pub fn check_peer(stream: &std::os::unix::net::UnixStream, path: &Path) -> Result<(), String> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| format!("cannot learn who serves {}: {e}", path.display()))?;
    let owner = std::fs::symlink_metadata(path).map(|m| m.uid()).ok();
    let uid = cred.uid();
    if uid == 0 || uid == euid() || Some(uid) == owner {
        Ok(())
    } else {
        Err(format!(
            "the process serving {} runs as uid {uid}, neither root nor the socket's owner: refusing to send anything to it",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_modes() {
        let me = 1000;
        assert!(problem(1000, 0o40700, me, false).is_none());
        assert!(problem(0, 0o40755, me, false).is_none(), "root's /etc/porter");
        assert!(problem(0, 0o40750, me, false).is_none(), "root:porter 0750");
        assert!(problem(65534, 0o40700, me, false).unwrap().contains("uid 65534"));
        assert!(problem(1000, 0o40777, me, false).unwrap().contains("every user"));
        assert!(problem(1000, 0o40770, me, false).unwrap().contains("its group"));
        assert!(problem(0, 0o41777, me, true).is_none(), "/tmp for the socket");
        assert!(problem(0, 0o41777, me, false).is_some(), "/tmp for data");
        assert!(problem(0, 0o41770, me, true).is_none(), "sticky, group-writable");
    }

    #[test]
    fn the_folders_above_are_walked_links_followed() {
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (up, me) = (dir.path().join("up"), euid());
        std::fs::create_dir_all(up.join("porter")).unwrap();
        let target = up.join("porter/data/not/made/yet");
        check_ancestors(&DATA_DIR, &target, me).unwrap();
        for (mode, ok) in [(0o777, false), (0o770, false), (0o1777, true), (0o755, true)] {
            set(&up, mode);
            let r = check_ancestors(&DATA_DIR, &target, me);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
            if let Err(e) = r {
                let text = e.to_string();
                assert!(text.contains(&format!("the folder {} on the way to it is writable", up.display())), "{text}");
                assert!(text.contains(&format!("chmod go-w {}", up.display())), "{text}");
            }
        }
        // The path itself is left to check_dir's own rule (sticky allowed for the socket's folder).
        set(&up, 0o1777);
        check_ancestors(&SOCKET_DIR, &up, me).unwrap();
        check_dir(&SOCKET_DIR, &up, me).unwrap();
        assert!(check_dir(&DATA_DIR, &up, me).is_err());
        // Through a link: the folders its target runs through count.
        set(&up, 0o777);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(up.join("porter"), &link).unwrap();
        assert!(check_ancestors(&DATA_DIR, &link.join("data"), me).is_err());
    }
}
