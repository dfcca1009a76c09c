//! PC/SC without hardware: a contactless card for vsmartcard-vpcd, and the
//! machine's pcscd.
//!
//! Debian's `vsmartcard-vpcd` gives pcscd two virtual readers,
//! [`READER_0`] and [`READER_1`], that wait for a card on TCP
//! 127.0.0.1:[`PORT_0`] and :[`PORT_1`]. Connecting is a tap; closing the
//! socket takes the card away. The card side speaks a tiny protocol: every
//! message is a 2-byte big-endian length and a payload; a 1-byte payload from
//! the reader is a control (0 power off, 1 power on, 2 reset, 4 send the ATR),
//! a longer one an APDU to answer. [`Card`] answers `FF CA ...` (GET DATA UID)
//! with its UID and `90 00`, and every other APDU with `6D 00`.
//!
//! pcscd and the two ports are machine-wide, so whoever uses them holds a
//! [`PcscLab`]: an exclusive lock on [`LOCK_FILE`] (`flock`, so it serialises
//! the tests of one process as well as other test binaries) and a pcscd that
//! lists both virtual readers. When no pcscd answers, the lab starts one
//! (`pcscd --foreground`, which needs root, as CI runs the tests), logging to
//! a temporary file, and stops it when the lab is dropped; a pcscd that was
//! already running is used as it is and left running. [`PcscLab::kill_pcscd`]
//! and [`PcscLab::start_pcscd`] play a pcscd crash and restart; after a
//! restart the lab owns the new pcscd.
//!
//! ```no_run
//! use porter_tests::vpcd::{Card, PcscLab, PORT_0};
//! let lab = PcscLab::acquire();
//! let card = Card::tap(PORT_0, &[0x04, 0xA1, 0xB2, 0xC3]);
//! card.wait_inserted(); // pcscd saw it
//! // ... the driver under test reports the UID ...
//! card.remove();
//! drop(lab);
//! ```

use crate::DEADLINE;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first virtual reader and the port its card connects to.
pub const READER_0: &str = "Virtual PCD 00 00";
pub const PORT_0: u16 = 35963;
/// The second virtual reader and its port.
pub const READER_1: &str = "Virtual PCD 00 01";
pub const PORT_1: u16 = 35964;
/// The lock every user of pcscd and vpcd holds (see [`PcscLab`]).
pub const LOCK_FILE: &str = "/tmp/porter-pcsc.lock";
/// A typical ATR of a contactless card as a PC/SC reader presents it
/// (PC/SC part 3 ATR for a MIFARE Classic 1K).
pub const ATR: [u8; 20] = [
    0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x6A,
];
/// The answer to an APDU the card does not know (INS not supported).
pub const NOT_SUPPORTED: [u8; 2] = [0x6D, 0x00];

const PID_FILE: &str = "/run/pcscd/pcscd.pid";
const SOCKET_FILE: &str = "/run/pcscd/pcscd.comm";

/// What a card saw from the reader.
#[derive(Debug, Clone, Default)]
pub struct CardLog {
    /// Control bytes in order (0 power off, 1 power on, 2 reset, 4 ATR).
    pub controls: Vec<u8>,
    /// APDUs in order.
    pub apdus: Vec<Vec<u8>>,
    /// The reader closed the connection (pcscd stopped) or the card was removed.
    pub closed: bool,
}

impl CardLog {
    /// How many times the card was asked for its UID (`FF CA`).
    pub fn uid_reads(&self) -> usize {
        self.apdus.iter().filter(|a| a.starts_with(&[0xFF, 0xCA])).count()
    }

    /// How many times pcscd powered the card on; the first one means pcscd
    /// noticed the card.
    pub fn power_ons(&self) -> usize {
        self.controls.iter().filter(|c| **c == 1).count()
    }

    /// How many times vpcd asked for the ATR: it does so at every presence
    /// poll (about every 400 ms while pcscd watches the reader), so this
    /// counts time passing as pcscd sees it.
    pub fn polls(&self) -> usize {
        self.controls.iter().filter(|c| **c == 4).count()
    }
}

type SharedLog = Arc<(Mutex<CardLog>, Condvar)>;

/// A card on a virtual reader: answering in its own thread until removed.
pub struct Card {
    stream: TcpStream,
    log: SharedLog,
    thread: Option<JoinHandle<()>>,
}

impl Card {
    /// Taps a card with `uid` on the reader of `port`: GET DATA UID answers
    /// `uid` and `90 00`. Waits (up to [`DEADLINE`]) for vpcd to listen.
    pub fn tap(port: u16, uid: &[u8]) -> Card {
        let mut reply = uid.to_vec();
        reply.extend([0x90, 0x00]);
        Card::tap_answering(port, &reply)
    }

    /// Taps a card that answers GET DATA UID with exactly `reply` (to play
    /// a card or reader that refuses it, or answers garbage).
    pub fn tap_answering(port: u16, reply: &[u8]) -> Card {
        let deadline = Instant::now() + DEADLINE;
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "vpcd does not listen on port {port}: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        stream.set_nodelay(true).unwrap();
        let log: SharedLog = Arc::default();
        let (reader, l, reply) = (stream.try_clone().unwrap(), log.clone(), reply.to_vec());
        let thread = std::thread::Builder::new()
            .name(format!("vpcd-card-{port}"))
            .spawn(move || answer(reader, &l, &reply))
            .unwrap();
        Card { stream, log, thread: Some(thread) }
    }

    /// What the card saw so far.
    pub fn log(&self) -> CardLog {
        self.log.0.lock().unwrap().clone()
    }

    /// How many times the card was asked for its UID.
    pub fn uid_reads(&self) -> usize {
        self.log().uid_reads()
    }

    /// Waits until `pred` holds for the card's log; panics after
    /// [`DEADLINE`] naming `what`.
    pub fn wait(&self, what: &str, pred: impl Fn(&CardLog) -> bool) -> CardLog {
        let (m, cv) = &*self.log;
        let deadline = Instant::now() + DEADLINE;
        let mut g = m.lock().unwrap();
        loop {
            if pred(&g) {
                return g.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for the card: {what}; it saw {:?}", *g);
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Waits until pcscd noticed the card (powered it on).
    pub fn wait_inserted(&self) -> CardLog {
        self.wait("pcscd powers the card on", |l| l.power_ons() > 0)
    }

    /// Waits until pcscd has polled the card `n` more times: a window of
    /// reader time (about 400 ms a poll) measured by the reader itself.
    pub fn wait_polls(&self, n: usize) -> CardLog {
        let from = self.log().polls();
        self.wait(&format!("{n} more presence polls"), |l| l.polls() >= from + n)
    }

    /// Takes the card away: closes the connection and ends its thread.
    pub fn remove(mut self) {
        self.close();
    }

    fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        self.close();
    }
}

/// The card's side of the vpcd protocol, until the connection ends.
fn answer(mut s: TcpStream, log: &SharedLog, get_uid_reply: &[u8]) {
    let (m, cv) = &**log;
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            break;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if s.read_exact(&mut msg).is_err() {
            break;
        }
        let reply: Option<&[u8]> = match msg.as_slice() {
            [] => None,
            [control] => {
                m.lock().unwrap().controls.push(*control);
                (*control == 4).then_some(&ATR[..])
            }
            apdu => {
                m.lock().unwrap().apdus.push(apdu.to_vec());
                Some(if apdu.starts_with(&[0xFF, 0xCA]) { get_uid_reply } else { &NOT_SUPPORTED[..] })
            }
        };
        cv.notify_all();
        if let Some(r) = reply {
            let mut out = (r.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(r);
            if s.write_all(&out).is_err() {
                break;
            }
        }
    }
    m.lock().unwrap().closed = true;
    cv.notify_all();
}

/// Exclusive use of the machine's pcscd and the vpcd readers (see the module
/// documentation). Do not acquire a second one in the same thread: it waits
/// for the first.
pub struct PcscLab {
    _lock: Flock<File>,
    /// The pcscd this lab started, if any.
    pcscd: Option<Child>,
    dir: tempfile::TempDir,
    starts: u32,
}

impl PcscLab {
    /// Takes the lock (waiting up to ten minutes for other users) and makes
    /// sure a pcscd lists both virtual readers, starting one when none
    /// answers.
    pub fn acquire() -> PcscLab {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o666)
            .open(LOCK_FILE)
            .unwrap_or_else(|e| panic!("opening {LOCK_FILE}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut file = file;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                    assert!(Instant::now() < deadline, "{LOCK_FILE} stayed locked for ten minutes");
                    file = f;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, e)) => panic!("locking {LOCK_FILE}: {e}"),
            }
        };
        let mut lab = PcscLab { _lock: lock, pcscd: None, dir: tempfile::tempdir().unwrap(), starts: 0 };
        if !lab.has_vpcd_readers() {
            if running_pcscd().is_some() {
                // A pcscd that answers without the virtual readers, or one
                // left hung: replace it with ours.
                lab.kill_pcscd();
            }
            lab.start_pcscd();
        }
        lab
    }

    /// The readers pcscd lists now (empty when it does not answer).
    pub fn readers(&self) -> Vec<String> {
        porter_drivers::pcsc::reader_names().unwrap_or_default()
    }

    fn has_vpcd_readers(&self) -> bool {
        let r = self.readers();
        r.iter().any(|n| n == READER_0) && r.iter().any(|n| n == READER_1)
    }

    /// Starts pcscd (ours) and waits until it lists both virtual readers.
    /// Panics when a pcscd is already running.
    pub fn start_pcscd(&mut self) {
        assert!(self.pcscd.is_none(), "pcscd already started by this lab");
        if let Some(pid) = running_pcscd() {
            panic!("another pcscd (pid {pid}) is running");
        }
        // pcscd refuses to start while its pid file names a process that
        // kill(pid, 0) finds, which includes a killed pcscd left a zombie (a
        // container whose init does not reap): remove such stale files.
        let _ = std::fs::remove_file(PID_FILE);
        let _ = std::fs::remove_file(SOCKET_FILE);
        self.starts += 1;
        let log = self.dir.path().join(format!("pcscd-{}.log", self.starts));
        let out = File::create(&log).unwrap();
        let child = Command::new(pcscd_bin())
            .arg("--foreground")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting pcscd (apt-get install pcscd vsmartcard-vpcd): {e}"));
        self.pcscd = Some(child);
        let deadline = Instant::now() + DEADLINE;
        while !self.has_vpcd_readers() {
            if let Some(status) = self.pcscd.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "pcscd exited ({status}) before listing the virtual readers (it needs root to start); \
                     its log:\n{}",
                    self.pcscd_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "pcscd did not list {READER_0} and {READER_1} (is vsmartcard-vpcd installed?); readers: {:?}; \
                 its log:\n{}",
                self.readers(),
                self.pcscd_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills pcscd with SIGKILL (a crash: its socket and pid files stay
    /// behind) and waits until it is gone.
    pub fn kill_pcscd(&mut self) {
        self.signal_pcscd(Signal::SIGKILL);
    }

    /// Stops pcscd with SIGTERM (a clean stop) and waits until it is gone.
    pub fn stop_pcscd(&mut self) {
        self.signal_pcscd(Signal::SIGTERM);
    }

    /// Stops pcscd (SIGTERM) and starts a new one.
    pub fn restart_pcscd(&mut self) {
        self.stop_pcscd();
        self.start_pcscd();
    }

    fn signal_pcscd(&mut self, sig: Signal) {
        if let Some(mut child) = self.pcscd.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), sig);
            let deadline = Instant::now() + DEADLINE;
            while child.try_wait().unwrap().is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        } else if let Some(pid) = running_pcscd() {
            let _ = kill(pid, sig);
            let deadline = Instant::now() + DEADLINE;
            while alive(pid) {
                assert!(Instant::now() < deadline, "pcscd (pid {pid}) did not end after {sig}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// What the pcscd this lab started last has logged (errors only).
    pub fn pcscd_log(&self) -> String {
        let p = self.dir.path().join(format!("pcscd-{}.log", self.starts));
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// Whether the running pcscd was started by this lab.
    pub fn owns_pcscd(&self) -> bool {
        self.pcscd.is_some()
    }

    /// The folder of this lab's pcscd logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PcscLab {
    fn drop(&mut self) {
        // Only the pcscd this lab started; the lock goes with the struct.
        if self.pcscd.is_some() {
            self.stop_pcscd();
        }
    }
}

fn pcscd_bin() -> PathBuf {
    for p in ["/usr/sbin/pcscd", "/usr/bin/pcscd"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("pcscd")
}

/// The pid in pcscd's pid file when that process is alive.
fn running_pcscd() -> Option<Pid> {
    let text = std::fs::read_to_string(PID_FILE).ok()?;
    let pid: i32 = text.trim_matches(|c: char| c.is_whitespace() || c == '\0').parse().ok()?;
    let pid = Pid::from_raw(pid);
    // A stale pid file (pcscd killed) may name a pid reused since.
    let is_pcscd = std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "pcscd");
    (is_pcscd && alive(pid)).then_some(pid)
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}
