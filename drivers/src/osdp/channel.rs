//! libosdp's transport over a serial path: an RS-485 adapter, or in tests one
//! end of a socat pty pair.
//!
//! libosdp owns the channel (it is boxed into the C context) and calls it from
//! `ControlPanel::refresh()` on the bus thread, so every call returns at once:
//! the path is opened `O_NONBLOCK` and EAGAIN is `ChannelError::WouldBlock`.
//!
//! Three traps this shape avoids (found in the research prototype):
//! - libosdp treats a failed or short write as a packet build error and puts
//!   the reader offline. A device that vanished must look like a silent bus:
//!   `write` swallows the bytes while it is away, and the control panel's own
//!   reply timeout marks the readers offline.
//! - libosdp never learns that the transport died (a read error is "no
//!   data"), so the channel records the loss in [`PortState`]; the bus
//!   thread then fails the bus's readers and their supervisors wait for the
//!   path (hot-plug, see `run_bus`). A channel whose port is lost while its
//!   panel still runs tries the path again at most every [`REOPEN_EVERY`].
//! - `flush()` is called before every send "to drop stale input": it discards
//!   pending input (TCIFLUSH); it is not an output drain.

use libosdp::{Channel, ChannelError};
use nix::fcntl::OFlag;
use nix::sys::termios::{self, BaudRate, FlushArg, SetArg};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a missing path is tried again.
pub const REOPEN_EVERY: Duration = Duration::from_millis(200);

/// The baud rates OSDP names (IEC 60839-11-5: 9600 to 230400).
pub const BAUDS: [u32; 6] = [9600, 19200, 38400, 57600, 115200, 230400];

fn baud_rate(n: u32) -> BaudRate {
    match n {
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        230400 => BaudRate::B230400,
        _ => BaudRate::B115200,
    }
}

/// What the bus thread and the channel share: a duplicate of the open port,
/// so the thread can poll(2) it for input instead of sleeping blindly, and
/// the last open error, for the readers' offline reports.
#[derive(Debug, Default)]
pub struct PortState {
    pub poll: Option<File>,
    pub error: Option<crate::error::DriverError>,
}

pub struct SerialChannel {
    path: String,
    baud: u32,
    file: Option<File>,
    last_try: Option<Instant>,
    state: Arc<Mutex<PortState>>,
}

impl SerialChannel {
    pub fn new(path: &str, baud: u32, state: Arc<Mutex<PortState>>) -> Self {
        let mut ch = SerialChannel { path: path.to_string(), baud, file: None, last_try: None, state };
        ch.try_open();
        ch
    }

    fn try_open(&mut self) {
        self.last_try = Some(Instant::now());
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
            .open(&self.path);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                state.error = Some(crate::error::DriverError::io(&self.path, &e));
                return;
            }
        };
        // Raw 8N1 at the configured rate, as OSDP wants.
        if let Ok(mut t) = termios::tcgetattr(file.as_fd()) {
            termios::cfmakeraw(&mut t);
            let _ = termios::cfsetspeed(&mut t, baud_rate(self.baud));
            let _ = termios::tcsetattr(file.as_fd(), SetArg::TCSANOW, &t);
        }
        state.poll = file.try_clone().ok();
        state.error = None;
        tracing::debug!(port = %self.path, "osdp: port opened");
        self.file = Some(file);
    }

    fn lost(&mut self, why: &std::io::Error) {
        if self.file.take().is_some() {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.poll = None;
            // A port that was open and fails (EIO, ENODEV, end of file) was
            // unplugged or hung up: a disconnect, whatever errno says.
            let mut err = crate::error::DriverError::io(&self.path, why);
            if err.kind == crate::error::ErrorKind::Other {
                err.kind = crate::error::ErrorKind::Disconnected;
            }
            state.error = Some(err);
            tracing::debug!(port = %self.path, error = %why, "osdp: port lost");
        }
    }

    fn file(&mut self) -> Option<&mut File> {
        if self.file.is_none() && self.last_try.is_none_or(|t| t.elapsed() >= REOPEN_EVERY) {
            self.try_open();
        }
        self.file.as_mut()
    }
}

impl Channel for SerialChannel {
    fn get_id(&self) -> i32 {
        0
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let Some(f) = self.file() else { return Err(ChannelError::WouldBlock) };
        match f.read(buf) {
            Ok(0) => {
                self.lost(&std::io::Error::from(ErrorKind::UnexpectedEof));
                Err(ChannelError::WouldBlock)
            }
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Err(ChannelError::WouldBlock)
            }
            Err(e) => {
                // A pty whose other side closed reads EIO; an unplugged USB
                // adapter EIO or ENODEV.
                self.lost(&e);
                Err(ChannelError::WouldBlock)
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, ChannelError> {
        let Some(f) = self.file() else { return Ok(buf.len()) };
        match f.write(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(e) => {
                self.lost(&e);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        if let Some(f) = self.file.as_ref() {
            let _ = termios::tcflush(f.as_fd(), FlushArg::TCIFLUSH);
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), ChannelError> {
        self.file = None;
        self.state.lock().unwrap_or_else(|p| p.into_inner()).poll = None;
        Ok(())
    }
}

/// Waits until the port has input or `max` passed (rounded up to whole
/// milliseconds); sleeps `max` when the port is away or hung up (a hung-up
/// pty polls ready forever). Whether input came.
pub fn wait_readable(state: &Mutex<PortState>, max: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let guard = state.lock().unwrap_or_else(|p| p.into_inner());
    let Some(f) = guard.poll.as_ref() else {
        drop(guard);
        std::thread::sleep(max);
        return false;
    };
    let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::from(max.as_micros().div_ceil(1000).min(u128::from(u16::MAX)) as u16);
    let ready = matches!(poll(&mut fds, ms), Ok(n) if n > 0);
    let hung = ready
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL));
    drop(guard);
    if hung {
        std::thread::sleep(max);
    }
    ready && !hung
}
