//! Hot-plug: wait for a device's path without polling.
//!
//! A USB device unplugged takes its node (`/dev/ttyUSB0`, `/dev/input/event3`)
//! and its udev symlinks (`/dev/serial/by-id/...`, `/dev/input/by-id/...`)
//! with it; plugged back, udev makes them again, and removes or makes the
//! `by-id` folder itself with the first or last device of its kind. A
//! [`PathWatch`] follows one configured path with inotify: it watches the
//! deepest folder on the path that exists, and looks again (deeper or
//! shallower) on each change, so it sees the path come back whichever folders
//! came and went. The supervisor ([`crate::supervise`]) uses it to reopen a
//! device as soon as its path is back, instead of after a backoff that may have
//! grown to 30 s, and to sleep without waking while the path is away.
//!
//! The watch sees events only for the path's own name (and the folders above
//! it): other devices coming and going in `/dev` are read and ignored.

use futures_core::Stream;
use inotify::{EventStream, Inotify, WatchDescriptor, WatchMask};
use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// What a folder on the path is watched for: its entries made, removed,
/// renamed or given new permissions (udev sets a node's group after making
/// it), and the folder itself going away.
fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// One inotify instance following one path. Dropping it closes the instance
/// (and with it every watch).
#[derive(Debug)]
pub struct PathWatch {
    path: PathBuf,
    events: EventStream<Vec<u8>>,
    /// The folder watched, its identity (device and inode: a folder removed
    /// and made again at the same place is another folder) and its watch.
    watched: Option<Watched>,
}

#[derive(Debug)]
struct Watched {
    dir: PathBuf,
    id: (u64, u64),
    wd: WatchDescriptor,
}

/// A folder's device and inode, or `None` when it is gone.
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether `path` can be opened now: it exists, and a symlink on it leads
/// somewhere.
pub fn present(path: &Path) -> bool {
    path.exists()
}

impl PathWatch {
    /// Starts following `path` (absolute). Fails only when the kernel refuses
    /// an inotify instance (`fs.inotify.max_user_instances` reached).
    pub fn new(path: &Path) -> io::Result<PathWatch> {
        let events = Inotify::init()?.into_event_stream(vec![0; 4096])?;
        let mut w = PathWatch { path: path.to_path_buf(), events, watched: None };
        w.aim()?;
        Ok(w)
    }

    /// The path followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path is there now (see [`present`]).
    pub fn present(&self) -> bool {
        present(&self.path)
    }

    /// Points the watch at the deepest folder on the path that exists now.
    /// Anything made between two aims is seen by the caller checking
    /// [`PathWatch::present`] after aiming.
    pub fn aim(&mut self) -> io::Result<()> {
        let mut dir = self.path.parent().unwrap_or(Path::new("/"));
        while !dir.is_dir() {
            match dir.parent() {
                Some(up) => dir = up,
                None => break,
            }
        }
        let (dir, id) = (dir.to_path_buf(), identity(dir));
        if self.watched.as_ref().is_some_and(|w| w.dir == dir && Some(w.id) == id) {
            return Ok(());
        }
        self.unwatch();
        let wd = self.events.watches().add(&dir, mask())?;
        // Made between the look and the watch: the caller's presence check
        // after aiming covers it, and the next aim sees the new identity.
        self.watched = Some(Watched { dir, id: id.unwrap_or_default(), wd });
        Ok(())
    }

    fn unwatch(&mut self) {
        if let Some(w) = self.watched.take() {
            // Fails when the folder is gone, which removed the watch already.
            let _ = self.events.watches().remove(w.wd);
        }
    }

    /// The name under the watched folder that leads to the path.
    fn next_name(&self) -> Option<&OsStr> {
        let dir = &self.watched.as_ref()?.dir;
        match self.path.strip_prefix(dir).ok()?.components().next()? {
            Component::Normal(name) => Some(name),
            _ => None,
        }
    }

    /// Reads every queued event without waiting for more; returns whether one
    /// touched the path (its name, a folder above it, or a lost event queue).
    pub async fn drain(&mut self) -> io::Result<bool> {
        // The stream reads only once tokio's reactor has seen the descriptor
        // readable; a yield lets the reactor look (tokio polls its driver
        // before it resumes a yielded task), so every event the kernel queued
        // before this call is read.
        tokio::task::yield_now().await;
        let mut touched = false;
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(ev) = self.poll_touched(&mut cx) {
            touched |= ev?;
        }
        Ok(touched)
    }

    /// The next event, and whether it touched the path.
    fn poll_touched(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        use inotify::EventMask as M;
        let ev = match Pin::new(&mut self.events).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(Err(io::Error::other("the inotify instance closed"))),
            Poll::Ready(Some(ev)) => ev?,
        };
        let ours = self.watched.as_ref().is_some_and(|w| w.wd == ev.wd);
        if ours && ev.mask.intersects(M::DELETE_SELF | M::MOVE_SELF | M::IGNORED) {
            // The folder went (or moved away): the next aim looks again.
            self.unwatch();
            return Poll::Ready(Ok(true));
        }
        Poll::Ready(Ok(
            ev.mask.intersects(M::Q_OVERFLOW) || (ours && ev.name.is_some() && ev.name.as_deref() == self.next_name())
        ))
    }

    /// Waits until something touches the path (see [`PathWatch::drain`]),
    /// without waking for anything else. Cancel-safe.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            if std::future::poll_fn(|cx| self.poll_touched(cx)).await? {
                return Ok(());
            }
        }
    }

    /// Waits until the path is there, following it down (or up) as folders
    /// are made and removed. Returns at once when it is there already.
    /// Cancel-safe.
    pub async fn appeared(&mut self) -> io::Result<()> {
        loop {
            self.aim()?;
            if self.present() {
                return Ok(());
            }
            self.changed().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DEADLINE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn follows_the_path_down_as_its_folders_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial/by-id/usb-keypad");
        let mut w = PathWatch::new(&path).unwrap();
        assert!(!w.present());
        let waiting = tokio::spawn(async move {
            w.appeared().await.unwrap();
            w
        });
        let root = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir(root.join("serial")).unwrap();
            std::fs::create_dir(root.join("serial/by-id")).unwrap();
            std::fs::write(root.join("serial/by-id/usb-keypad"), "").unwrap();
        })
        .await
        .unwrap();
        let w = tokio::time::timeout(DEADLINE, waiting).await.expect("appeared in time").unwrap();
        assert!(w.present());
    }

    #[tokio::test]
    async fn ignores_other_names_and_sees_its_own_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usb-keypad");
        std::fs::write(&path, "").unwrap();
        let mut w = PathWatch::new(&path).unwrap();
        std::fs::write(dir.path().join("usb-other"), "").unwrap();
        std::fs::remove_file(dir.path().join("usb-other")).unwrap();
        assert!(!w.drain().await.unwrap(), "another device's name touched the watch");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        assert!(w.drain().await.unwrap(), "the path replaced was not seen");
        assert!(!w.drain().await.unwrap(), "drained twice");
    }

    #[tokio::test]
    async fn a_folder_removed_and_made_again_is_watched_anew() {
        let dir = tempfile::tempdir().unwrap();
        let by_id = dir.path().join("by-id");
        std::fs::create_dir(&by_id).unwrap();
        let path = by_id.join("usb-keypad");
        let mut w = PathWatch::new(&path).unwrap();
        // Gone and back before the watch read a thing: the old watch is dead.
        std::fs::remove_dir(&by_id).unwrap();
        std::fs::create_dir(&by_id).unwrap();
        w.aim().unwrap();
        assert!(!w.present());
        let waiting = tokio::spawn(async move { w.appeared().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&path, "").unwrap();
        tokio::time::timeout(DEADLINE, waiting).await.expect("appeared in time").unwrap().unwrap();
    }

    #[tokio::test]
    async fn sees_the_folder_above_it_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("by-id")).unwrap();
        let path = dir.path().join("by-id/usb-keypad");
        let mut w = PathWatch::new(&path).unwrap();
        std::fs::remove_dir(dir.path().join("by-id")).unwrap();
        tokio::time::timeout(DEADLINE, w.changed()).await.expect("the folder's removal seen").unwrap();
        // Aimed again, now at the folder above, it still sees the path come back.
        std::fs::create_dir(dir.path().join("by-id")).unwrap();
        std::fs::write(&path, "").unwrap();
        tokio::time::timeout(DEADLINE, w.appeared()).await.expect("appeared in time").unwrap();
    }
}
