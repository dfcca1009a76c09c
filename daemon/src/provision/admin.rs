//! The local admin socket: one JSON command per line in, one JSON reply per
//! line out. `porterctl` is its client. Mode 0660, so only root and the
//! `porter` group reach it.
//!
//! At most [`MAX_CONNECTIONS`] connections are served at once, so each is
//! held to deadlines (`admin.idle_timeout_s`): the next command line must
//! have arrived whole, and each reply been taken, within that time, or the
//! connection is closed. Idle or stalled clients thus free their slot, and
//! porterctl gets through within the timeout however many there are.

use super::command::{self, Control, MAX_COMMAND_BYTES};
use super::keys::KeyService;
use porter_drivers::lines::{Frame, LineReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connections served at once; more wait.
const MAX_CONNECTIONS: usize = 16;

/// A bound admin socket: the listener, its path, and which file it is (so
/// that it is removed at exit only if it is still ours).
pub struct Bound {
    listener: UnixListener,
    path: PathBuf,
    file: (u64, u64),
}

/// Whether a process listens on the socket at `path`: another porterd
/// serving it. A stale socket file (nobody listening) is not. A listener
/// whose backlog is full counts, and the check never waits more than a
/// second.
pub async fn answered(path: &Path) -> bool {
    match tokio::time::timeout(std::time::Duration::from_secs(1), UnixStream::connect(path)).await {
        Ok(Ok(_)) | Err(_) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// Binds the socket at `path`, replacing a stale one, with mode 0660.
pub fn bind(path: &Path) -> std::io::Result<Bound> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A folder made here is the daemon's user's and group's only.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o750).create(dir)?;
    }
    // Bind under a temporary name, set the mode, then rename into place, so
    // the socket is never reachable with the umask's looser mode.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))?;
    std::fs::rename(&tmp, path)?;
    let file = identity(path).ok_or_else(|| std::io::Error::other("the socket vanished after binding"))?;
    Ok(Bound { listener: l, path: path.to_path_buf(), file })
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Serves the socket until `cancel` fires; then removes it, unless another
/// process has put its own socket at that path meanwhile.
pub async fn serve(
    Bound { listener, path, file }: Bound,
    svc: Arc<KeyService>,
    ctl: Arc<dyn Control>,
    idle: Duration,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket: accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let (svc, ctl, cancel) = (svc.clone(), ctl.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = connection(stream, svc, ctl, idle) => if let Err(e) = r {
                    tracing::debug!(error = %e, "admin connection ended");
                },
            }
            drop(permit);
        });
    }
    if identity(&path) == Some(file) {
        let _ = std::fs::remove_file(&path);
    }
}

async fn connection(
    stream: UnixStream,
    svc: Arc<KeyService>,
    ctl: Arc<dyn Control>,
    idle: Duration,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    // Bounded: a line longer than the limit is answered and skipped, never held whole.
    let mut lines = LineReader::new(r, MAX_COMMAND_BYTES);
    let expired = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} within {idle:?}"));
    loop {
        // The whole next line within the deadline: an idle client and one
        // that sends a byte at a time are closed alike.
        let frame = match tokio::time::timeout(idle, lines.next()).await {
            Err(_) => return Err(expired("no command")),
            Ok(r) => match r? {
                Some(f) => f,
                None => return Ok(()),
            },
        };
        let reply = match frame {
            Frame::TooLong => command::too_long_reply(),
            // Parsing and executing both run on a blocking thread: a large
            // sync.put takes milliseconds to parse, and the async workers
            // also carry the device drivers' reads.
            Frame::Line(line) => {
                let (svc, ctl) = (svc.clone(), ctl.clone());
                crate::provision::background(move || match command::parse(line.trim_ascii()) {
                    Err(reply) => reply,
                    Ok(cmd) => command::execute(&svc, ctl.as_ref(), &cmd),
                })
                .await
                .unwrap_or_else(
                    |e| serde_json::json!({"ok": false, "error": {"code": "internal", "message": e.to_string()}}),
                )
            }
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
        out.push(b'\n');
        // A client that does not read its reply is closed, too.
        tokio::time::timeout(idle, w.write_all(&out)).await.map_err(|_| expired("reply not taken"))??;
    }
}
