//! Pseudo-terminal pairs that stand in for serial devices: the daemon opens
//! the slave side through a symlink, as it would a udev name, and the test
//! plays the keypad, scanner or relay board on the master side.

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One pty pair with a symlink to its slave side.
pub struct Pty {
    master: File,
    /// Held open so the master never reads EIO while the daemon reopens.
    _slave: OwnedFd,
    pub link: PathBuf,
}

impl Pty {
    /// Opens a raw pty pair and points `link` at its slave side (replacing
    /// an old link, as udev does when a device comes back).
    pub fn open(link: &Path) -> Pty {
        let p = openpty(None, None).expect("openpty");
        // openpty's descriptors are inherited by children: a porterd started
        // later would hold the master open, and an unplug would never show.
        for fd in [&p.master, &p.slave] {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("FD_CLOEXEC");
        }
        // Raw: no echo, no line editing, no CR/LF translation, on both ends'
        // line discipline (the slave's settings govern the pair).
        let mut t = tcgetattr(&p.slave).expect("tcgetattr");
        cfmakeraw(&mut t);
        tcsetattr(&p.slave, SetArg::TCSANOW, &t).expect("tcsetattr");
        let name = nix::unistd::ttyname(p.slave.as_fd()).expect("ttyname");
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&name, link).expect("symlink");
        Pty { master: File::from(p.master), _slave: p.slave, link: link.to_path_buf() }
    }

    /// Writes `bytes` as the device would send them.
    pub fn write(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("pty write");
    }

    /// Reads exactly `n` bytes the daemon wrote, or panics at `timeout`.
    pub fn read_exact(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        let mut buf = [0u8; 256];
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "only {out:02x?} of {n} bytes within {timeout:?}");
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(left.as_millis().min(1000) as i32).unwrap_or(PollTimeout::MAX);
            if poll(&mut fds, ms).expect("poll") == 0 {
                continue;
            }
            let want = (n - out.len()).min(buf.len());
            let got = self.master.read(&mut buf[..want]).expect("pty read");
            out.extend_from_slice(&buf[..got]);
        }
        out
    }

    /// A second handle on the master side, for a peer that does its own
    /// I/O on it (an OSDP reader's channel in the benchmarks). It shares the
    /// open file: flags set on it (O_NONBLOCK) apply to [`Pty::write`] and
    /// [`Pty::read_exact`] too.
    pub fn master_clone(&self) -> File {
        // try_clone duplicates with F_DUPFD_CLOEXEC: not inherited by porterd.
        self.master.try_clone().expect("dup of the pty master")
    }

    /// Whether anything is waiting to be read within `wait`.
    pub fn readable(&self, wait: Duration) -> bool {
        let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        poll(&mut fds, ms).expect("poll") > 0
    }

    /// Unplugs the device: both ends close and the link goes away.
    pub fn unplug(self) {
        let _ = std::fs::remove_file(&self.link);
    }
}
