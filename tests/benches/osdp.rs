//! From the last card bit or key of an OSDP reader to the relay command on
//! the wire: the real porterd (release build) as the OSDP control panel of an
//! `osdp` reader on a pty pair, with the secure channel on (its key in a 0600
//! key file, docs/drivers.md), an LCUS `serial_relay` board on another pty as
//! door `main`'s lock, and the door's contact as an `exec` driver (`cat` of a
//! FIFO), with `relock_on_close = true`, as in tests/benches/drivers.rs.
//!
//! The reader is libosdp's own peripheral-device mode (the `libosdp` crate,
//! =0.2.2 as the drivers use, its `PeripheralDevice`), run in this process
//! on the pty's master side, so the time a card or key is handed to it is
//! taken here. What is timed, for each decision: from the call that hands
//! the reader its card read (a 26-bit Wiegand frame of an enrolled card) or
//! the last key of a PIN (`#`; the PIN's first six keys were handed over
//! before and have reached porterd, which the bench knows by the reader's
//! second reply after them), to the relay's "on" command read on the relay's
//! pty. OSDP is polled: a reader reports a card in its reply to the control
//! panel's next poll, so the figure includes the wait for that poll.
//! libosdp's control panel polls a reader once more than 50 ms
//! (`OSDP_PD_POLL_TIMEOUT_MS`, libosdp 3.2.7) have passed since its last
//! reply, on a millisecond clock and only when it is refreshed: the bench
//! prints the interval between polls as the reader sees them. Cards and keys
//! are handed over at evenly spread moments within that interval (a
//! low-discrepancy sequence over the measured period), as a person arrives
//! at any moment of it. So the wait for the poll alone is spread over 0 to
//! one poll interval, and the goal "p99 under one poll interval plus 1 ms"
//! means: the 50 ms of libosdp's poll interval plus 1 ms, 51 ms, of which
//! about 50 ms is the wait. As libosdp polls only once *more* than 50 ms
//! have passed on its millisecond clock, and only at a refresh, a control
//! panel's polls come at least 51 ms apart, so that goal is judged only where
//! the OSDP floor (below) meets it; the bench also judges porterd's p99
//! against the floor's own poll interval (its median, measured in the same
//! run) plus 1 ms, and prints the part after the poll reaches the reader
//! (its reply, porterd's decision, the relay command), the part porterd is
//! responsible for, with the same goals as the serial path: at most 1.5
//! times the floor's p99, and under 1 ms where the floor allows it.
//!
//! The floors, interleaved with porterd's decisions, under the same load:
//! - the OSDP floor: a bare libosdp control panel (this binary run again as
//!   a separate process, `--floor-osdp`) on its own pty pair, refreshed
//!   every millisecond or as soon as the reader answers, with the same key
//!   and the secure channel, which writes the relay's "on" command on another
//!   pty the moment it hears a card or a `#`, and does nothing else; a second
//!   reader in this process plays the card and keys to it in step with the
//!   first (two threads, one decision each at a time, a barrier between);
//! - the pty floor of tests/benches/drivers.rs (two pty pairs, no OSDP).
//!
//! Run with `cargo bench -p porter-tests --bench osdp`: 2,000 card and 2,000
//! key decisions (about 8 min). `-- --quick` (or `PORTER_BENCH_QUICK=1`)
//! makes 100 of each. `PORTER_BENCH_PORTERD=/path/to/porterd` runs another
//! build of porterd.

use libosdp::{
    Channel, ChannelError, ControlPanelBuilder, OsdpEvent, OsdpEventCardRead, OsdpEventKeyPress, OsdpFlag, PdCapEntity,
    PdCapability, PdInfoBuilder, PeripheralDevice,
};
use porter_tests::bench::{self, floor_goals, goal, pct, report, Admin, Floor, RELAY_ON};
use porter_tests::config_head;
use porter_tests::pty::Pty;
use serde_json::json;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The bench's secure channel key (SCBK), a bench-only value.
const KEY: &str = "3f8a61c2d94e07b5a1c3e5f7092b4d6e";
const PIN: &str = "583921";
/// A 26-bit H10301 frame, facility 1 and card 1 with its parity bits: the
/// card UID `010001` (docs/drivers.md, `osdp`).
const CARD_FRAME: u64 = 0x202_0002;
const CARD_UID: &str = "010001";
/// libosdp's poll interval (`OSDP_PD_POLL_TIMEOUT_MS`).
const POLL_MS: f64 = 50.0;
/// The goal: p99 under one poll interval plus 1 ms.
const GOAL_MS: f64 = POLL_MS + 1.0;
const WAIT: Duration = Duration::from_secs(30);
/// A card or key whose relay command has not come this long after it was
/// handed over is lost (libosdp's panel retries an unanswered poll after
/// 200 ms plus 800 ms; a report in a reply it never took is gone).
const LOST: Duration = Duration::from_secs(3);
/// The OSDP floor's longest wait between two refreshes.
const FLOOR_TICK: Duration = Duration::from_millis(1);
/// Reads closer together than this are one packet.
const BURST: Duration = Duration::from_millis(2);

/// What a reader's channel saw: when each packet from the control panel
/// began to arrive and whether it was a command (bounded), how many replies
/// the reader wrote, and how many commands (LED, buzzer) it took.
#[derive(Default)]
struct Seen {
    arrivals: VecDeque<Arrival>,
    last_read: Option<Instant>,
    replies: u64,
    last_reply: Option<Instant>,
    commands: u64,
}

/// A packet from the control panel: a poll (osdp_POLL), or a command (any
/// other: the reader's command callback ran while it was handled).
#[derive(Clone, Copy)]
struct Arrival {
    at: Instant,
    command: bool,
}

/// libosdp's transport over a pty: non-blocking reads and writes of one open
/// file (a pty master for a reader, a slave for the floor's control panel).
struct PtyChannel {
    file: File,
    seen: Arc<(Mutex<Seen>, Condvar)>,
}

impl Channel for PtyChannel {
    fn get_id(&self) -> i32 {
        0
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        match self.file.read(buf) {
            Ok(0) => Err(ChannelError::WouldBlock),
            Ok(n) => {
                let now = Instant::now();
                let mut s = self.seen.0.lock().unwrap();
                if s.last_read.is_none_or(|t| now - t > BURST) {
                    if s.arrivals.len() == 4096 {
                        s.arrivals.pop_front();
                    }
                    s.arrivals.push_back(Arrival { at: now, command: false });
                }
                s.last_read = Some(now);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Err(ChannelError::WouldBlock)
            }
            Err(_) => Err(ChannelError::TransportError),
        }
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, ChannelError> {
        match self.file.write(buf) {
            Ok(n) => {
                if n > 0 {
                    let (m, cv) = &*self.seen;
                    let mut s = m.lock().unwrap();
                    s.replies += 1;
                    s.last_reply = Some(Instant::now());
                    cv.notify_all();
                }
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(_) => Err(ChannelError::TransportError),
        }
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
}

fn set_nonblocking(f: &File) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    let flags = OFlag::from_bits_truncate(fcntl(f.as_raw_fd(), FcntlArg::F_GETFL).expect("F_GETFL"));
    fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("F_SETFL");
}

/// Waits until `f` has input or `max` passed.
fn wait_input(f: &File, max: Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::try_from(max.as_millis() as i32).unwrap_or(PollTimeout::MAX));
}

fn key_bytes() -> [u8; 16] {
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&KEY[2 * i..2 * i + 2], 16).unwrap();
    }
    k
}

/// libosdp's peripheral device (a reader at address 0 with a keypad, on its
/// secure channel) on a pty's master side, refreshed by a thread of its own
/// as soon as the control panel's bytes arrive (and every 5 ms).
struct Reader {
    pd: Arc<Mutex<PeripheralDevice>>,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(bus: &Pty) -> Reader {
        let file = bus.master_clone();
        set_nonblocking(&file);
        let poll_on = file.try_clone().unwrap();
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let info = PdInfoBuilder::new()
            .name("bench-reader")
            .and_then(|b| b.address(0))
            .and_then(|b| b.baud_rate(115_200))
            .expect("PD info")
            .flag(OsdpFlag::EnforceSecure)
            .capability(PdCapability::CommunicationSecurity(PdCapEntity::new(1, 1)))
            .capability(PdCapability::CardDataFormat(PdCapEntity::new(1, 1)))
            .capability(PdCapability::LedControl(PdCapEntity::new(1, 1)))
            .capability(PdCapability::AudibleOutput(PdCapEntity::new(1, 1)))
            .secure_channel_key(key_bytes());
        let mut pd = PeripheralDevice::new(info, Box::new(PtyChannel { file, seen: seen.clone() })).expect("PD");
        // Commands (LED, buzzer) are acknowledged and counted; the packet
        // being handled (the last to arrive) was a command, not a poll.
        let counted = seen.clone();
        pd.set_command_callback(move |_| {
            let (m, cv) = &*counted;
            let mut s = m.lock().unwrap();
            s.commands += 1;
            if let Some(a) = s.arrivals.back_mut() {
                a.command = true;
            }
            cv.notify_all();
            0
        });
        let pd = Arc::new(Mutex::new(pd));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (pd, stop) = (pd.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-pd".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        pd.lock().unwrap().refresh();
                        wait_input(&poll_on, Duration::from_millis(5));
                    }
                })
                .unwrap()
        };
        Reader { pd, seen, stop, thread: Some(thread) }
    }

    /// Waits until the reader is online on its secure channel.
    fn wait_secure(&self, what: &str) {
        let end = Instant::now() + WAIT;
        loop {
            {
                let pd = self.pd.lock().unwrap();
                if pd.is_online() && pd.is_sc_active() {
                    return;
                }
            }
            assert!(Instant::now() < end, "{what}: the reader did not come online on its secure channel");
            // Polled: libosdp reports no change of state to a PD.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Hands the reader an event; returns the moment it was handed over.
    fn notify(&self, ev: OsdpEvent) -> Instant {
        let t0 = Instant::now();
        self.pd.lock().unwrap().notify_event(ev).expect("notify_event");
        t0
    }

    fn card(&self) -> Instant {
        let bytes = (CARD_FRAME << 6) as u32; // 26 bits, left-aligned in 4 bytes
        let read = OsdpEventCardRead::new_wiegand(26, bytes.to_be_bytes().to_vec()).unwrap();
        self.notify(OsdpEvent::CardRead(read))
    }

    fn keys(&self, keys: &[u8]) -> Instant {
        self.notify(OsdpEvent::KeyPress(OsdpEventKeyPress::new(keys.to_vec())))
    }

    fn replies(&self) -> u64 {
        self.seen.0.lock().unwrap().replies
    }

    /// Waits until the reader has written `n` replies in all.
    fn wait_replies(&self, n: u64) {
        let (m, cv) = &*self.seen;
        let end = Instant::now() + WAIT;
        let mut s = m.lock().unwrap();
        while s.replies < n {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the reader's reply {n} did not come");
            s = cv.wait_timeout(s, left).unwrap().0;
        }
    }

    /// When the first poll at or after `t` reached the reader.
    fn poll_after(&self, t: Instant) -> Option<Instant> {
        self.seen.0.lock().unwrap().arrivals.iter().find(|a| !a.command && a.at >= t).map(|a| a.at)
    }

    /// The intervals between two polls in a row from the control panel, as
    /// the reader saw them (of the last 4,096 packets; a command between two
    /// polls leaves them out).
    fn poll_intervals(&self) -> Vec<Duration> {
        let s = self.seen.0.lock().unwrap();
        s.arrivals
            .iter()
            .zip(s.arrivals.iter().skip(1))
            .filter(|(a, b)| !a.command && !b.command)
            .map(|(a, b)| b.at - a.at)
            .collect()
    }

    fn commands(&self) -> u64 {
        self.seen.0.lock().unwrap().commands
    }

    /// Waits until the reader has taken `n` commands in all, then for the
    /// next poll after the last of them: the reader is back in its poll
    /// cycle, as it is when the next person arrives.
    fn wait_commands_then_poll(&self, n: u64) {
        let (m, cv) = &*self.seen;
        let end = Instant::now() + WAIT;
        let mut s = m.lock().unwrap();
        loop {
            if s.commands >= n {
                let last_cmd = s.arrivals.iter().rev().find(|a| a.command).map(|a| a.at);
                // A poll after the last command, already answered (so its
                // command callback would have run, had it been a command).
                let polled = s.arrivals.back().is_some_and(|a| {
                    !a.command && last_cmd.is_none_or(|c| a.at > c) && s.last_reply.is_some_and(|r| r > a.at)
                });
                if polled {
                    return;
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the reader's command {n} (the grant's feedback) and a poll after it did not come"
            );
            s = cv.wait_timeout(s, left.min(Duration::from_millis(5))).unwrap().0;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One side of the comparison: a reader, the relay its control panel
/// drives, and (for porterd) the door contact that relocks the door.
struct Rig {
    reader: Reader,
    relay: Pty,
    contact: Option<File>,
    /// The poll period the hand-over moments are spread over.
    period: Duration,
    /// From the hand-over to the relay command.
    total: Vec<Duration>,
    /// Cards and keys apart.
    cards: Vec<Duration>,
    keys: Vec<Duration>,
    /// From the hand-over to the poll reaching the reader.
    wait: Vec<Duration>,
    /// From the poll reaching the reader to the relay command.
    after: Vec<Duration>,
    /// Cards and keys whose relay command did not come within [`LOST`].
    lost: usize,
    /// The commands (LED, buzzer) a grant's feedback sends the reader: 2,
    /// or 0 for the floor and for porterd with `feedback = false`.
    feedback_cmds: u64,
    /// Whether the next card or key waits for the previous grant's feedback
    /// to reach the reader (a person arriving later); when not, it is
    /// handed over while that feedback may still be on its way, and timed
    /// into `back_to_back` only.
    paced: bool,
    back_to_back: Vec<Duration>,
    /// porterd's log, to show what it made of a lost decision.
    log: Option<porter_tests::Lines>,
}

impl Rig {
    fn new(
        reader: Reader,
        relay: Pty,
        contact: Option<File>,
        log: Option<porter_tests::Lines>,
        feedback_cmds: u64,
    ) -> Rig {
        Rig {
            reader,
            relay,
            contact,
            period: Duration::from_millis(52),
            total: vec![],
            cards: vec![],
            keys: vec![],
            wait: vec![],
            after: vec![],
            lost: 0,
            log,
            feedback_cmds,
            paced: true,
            back_to_back: vec![],
        }
    }

    /// Waits for `phase` of the poll period (0 to 1) of the poll cycle, as
    /// counted from the last packet the reader received (plus whole
    /// periods, to a moment still ahead): the moment a card is presented.
    fn at_phase(&self, phase: f64) {
        let now = Instant::now();
        let last = self.reader.seen.0.lock().unwrap().arrivals.back().map_or(now, |a| a.at);
        let mut at = last + self.period.mul_f64(phase);
        while at < now {
            at += self.period;
        }
        std::thread::sleep(at - now);
    }

    /// One timed span: `t0` (the hand-over) to the relay's "on" command.
    /// A decision whose command does not come within [`LOST`] is counted
    /// as lost (and what porterd logged meanwhile is shown), not timed.
    fn timed(&mut self, t0: Instant, cmds: u64, card: bool, mark: usize) {
        if !self.relay.readable(LOST) {
            self.lost += 1;
            let what = if card { "card" } else { "PIN" };
            eprintln!("osdp bench: a {what} brought no relay command within {LOST:?}");
            if let Some(log) = &self.log {
                for l in log.all().iter().skip(mark) {
                    eprintln!("  porterd: {l}");
                }
            }
            // Clear a half-entered PIN, and take a late command if one comes.
            self.reader.keys(b"*");
            if !self.relay.readable(LOST) {
                return;
            }
        }
        let on = self.relay.read_exact(4, WAIT);
        let end = Instant::now();
        assert_eq!(on, RELAY_ON, "expected the relay's on command");
        let took = end - t0;
        if self.paced {
            self.total.push(took);
            if card { &mut self.cards } else { &mut self.keys }.push(took);
            let poll = self.reader.poll_after(t0).expect("no poll reached the reader after the hand-over");
            self.wait.push(poll - t0);
            self.after.push(end.saturating_duration_since(poll));
        } else {
            self.back_to_back.push(took);
        }
        if let Some(contact) = self.contact.as_mut() {
            // Open and close the door: relock_on_close relocks at once.
            contact.write_all(b"{\"level\":true}\n{\"level\":false}\n").unwrap();
            assert_eq!(self.relay.read_exact(4, WAIT), [0xA0, 1, 0, 0xA1], "expected the relay's off command");
        }
        if self.paced && self.feedback_cmds > 0 {
            self.reader.wait_commands_then_poll(cmds + self.feedback_cmds);
        }
    }

    /// A card at `phase` of the poll period, then a PIN whose last key
    /// comes at `phase2`.
    fn decide(&mut self, phase: f64, phase2: f64) {
        let mark = self.log.as_ref().map_or(0, |l| l.len());
        self.at_phase(phase);
        let cmds = self.reader.commands();
        let t0 = self.reader.card();
        self.timed(t0, cmds, true, mark);
        // The PIN's first keys, then its `#` once they reached the panel:
        // the reader's second reply after them shows the panel took the
        // first (it sends nothing else before the reply is handled).
        let mark = self.log.as_ref().map_or(0, |l| l.len());
        let n = self.reader.replies();
        self.reader.keys(PIN.as_bytes());
        self.reader.wait_replies(n + 2);
        self.at_phase(phase2);
        let cmds = self.reader.commands();
        let t0 = self.reader.keys(b"#");
        self.timed(t0, cmds, false, mark);
    }
}

fn config(dir: &Path, key_file: &Path, feedback: bool) -> String {
    let d = dir.display();
    format!(
        r#"{}{}
[[devices]]
id = "reader"
kind = "osdp"
door = "main"
port = "{d}/rs485"
address = 0
key_file = "{}"
feedback = {feedback}
"#,
        config_head(dir),
        bench::door_config(dir),
        key_file.display()
    )
}

/// Runs the OSDP floor when this process was started as one
/// (`BENCH --floor-osdp BUS RELAY`); returns when it was not.
fn osdp_floor_main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == "--floor-osdp") else { return };
    let (bus, mut relay) = (bench::open_port(&args[i + 1]), bench::open_port(&args[i + 2]));
    set_nonblocking(&bus);
    let poll_on = bus.try_clone().unwrap();
    let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
    let info = PdInfoBuilder::new()
        .name("floor")
        .and_then(|b| b.address(0))
        .and_then(|b| b.baud_rate(115_200))
        .expect("PD info")
        .flag(OsdpFlag::EnforceSecure)
        .secure_channel_key(key_bytes());
    let mut cp = ControlPanelBuilder::new()
        .add_channel(Box::new(PtyChannel { file: bus, seen }), vec![info])
        .build()
        .expect("control panel");
    cp.set_event_callback(move |_, ev| {
        let unlock = match ev {
            OsdpEvent::CardRead(_) => true,
            OsdpEvent::KeyPress(k) => k.data.iter().any(|&b| b == b'#' || b == 0x0d),
            _ => false,
        };
        if unlock && relay.write_all(&RELAY_ON).is_err() {
            std::process::exit(0);
        }
        0
    });
    loop {
        cp.refresh();
        wait_input(&poll_on, FLOOR_TICK);
    }
}

fn main() {
    bench::floor_main();
    osdp_floor_main();
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var_os("PORTER_BENCH_QUICK").is_some();
    let n = if quick { 100 } else { 2_000 };
    // `--no-feedback`: the reader without its LED and buzzer (the input
    // path alone).
    let feedback =
        !(std::env::args().any(|a| a == "--no-feedback") || std::env::var_os("PORTER_BENCH_NO_FEEDBACK").is_some());
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let key_file = p.join("reader.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // porterd's side: the reader (powered before porterd starts), the relay,
    // the contact.
    let bus = Pty::open(&p.join("rs485"));
    let reader = Reader::start(&bus);
    let mut relay = Pty::open(&p.join("relay"));
    nix::unistd::mkfifo(&p.join("contact.fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::write(p.join("porter.toml"), config(p, &key_file, feedback)).unwrap();
    let socket = p.join("admin.sock");
    let d = bench::start_porterd(&p.join("porter.toml"), &socket);
    assert_eq!(relay.read_exact(4, WAIT), [0xA0, 1, 0, 0xA1], "locked at start");
    let mut contact = std::fs::OpenOptions::new().write(true).open(p.join("contact.fifo")).unwrap();
    contact.write_all(b"{\"level\":false}\n").unwrap();
    for dev in ["reader", "contact"] {
        d.log.wait_for(0, &["device health", &format!("device={dev} "), "device.online"]);
    }
    reader.wait_secure("porterd's reader");
    eprintln!("osdp bench: porterd's reader online after {:.1} s", started.elapsed().as_secs_f64());

    // The OSDP floor's side.
    let floor_bus = Pty::open(&p.join("floor-rs485"));
    let floor_reader = Reader::start(&floor_bus);
    let floor_relay = Pty::open(&p.join("floor-osdp-relay"));
    let mut floor_cp = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--floor-osdp")
        .arg(&floor_bus.link)
        .arg(&floor_relay.link)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("the OSDP floor program");
    floor_reader.wait_secure("the OSDP floor's reader");
    eprintln!("osdp bench: the floor's reader online after {:.1} s", started.elapsed().as_secs_f64());
    let mut pty_floor = Floor::start(p);

    let mut admin = Admin::connect(&socket);
    admin.call("holder.put", json!({"holder": "bench-card", "role": "staff"}));
    admin.call("card.assign", json!({"holder": "bench-card", "uid": CARD_UID}));
    admin.call("holder.put", json!({"holder": "bench-pin", "role": "staff"}));
    admin.call("pin.set", json!({"holder": "bench-pin", "pin": PIN}));
    drop(admin);

    println!(
        "porterd osdp bench: {n} card and {n} key decisions, one reader on a secure channel, its feedback {}",
        if feedback { "on (LED and buzzer)" } else { "off" }
    );
    bench::print_machine(&bench::porterd_binary());
    let mut rig = Rig::new(reader, relay, Some(contact), Some(d.log.clone()), if feedback { 2 } else { 0 });
    let mut floor = Rig::new(floor_reader, floor_relay, None, None, 0);
    // Warm-up, untimed: a few decisions each; then the poll period each
    // control panel keeps, over which the hand-over moments are spread.
    for i in 0..5 {
        rig.decide(i as f64 / 5.0, 0.5);
        floor.decide(i as f64 / 5.0, 0.5);
        pty_floor.round_trip(PIN.as_bytes(), b"#");
    }
    for r in [&mut rig, &mut floor] {
        let mut v = r.reader.poll_intervals();
        v.sort();
        r.period = v[v.len() / 2];
        for w in [&mut r.total, &mut r.cards, &mut r.keys, &mut r.wait, &mut r.after] {
            w.clear();
        }
    }
    let floor_period = floor.period;
    let mut pty = Vec::with_capacity(2 * n);
    eprintln!("osdp bench: warmed up after {:.1} s", started.elapsed().as_secs_f64());

    // The two sides in step, one decision each at a time (each starts when
    // the other has finished its last); the pty floor's round trips between
    // porterd's decisions. A side that fails drops its end of the channels,
    // so the other stops too instead of waiting for it.
    // Hand-over moments: the golden-ratio sequence, evenly spread over 0..1.
    let phase = |i: usize| (i as f64 * 0.618_033_988_75).fract();
    let (go, go_rx) = std::sync::mpsc::channel::<usize>();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let floor_side = &mut floor;
    std::thread::scope(|s| {
        s.spawn(move || {
            while let Ok(i) = go_rx.recv() {
                floor_side.decide(phase(2 * i + 1), phase(2 * i));
                if done_tx.send(()).is_err() {
                    break;
                }
            }
        });
        for i in 0..n {
            go.send(i).expect("the floor's side stopped");
            rig.decide(phase(2 * i), phase(2 * i + 1));
            pty.push(pty_floor.round_trip(PIN.as_bytes(), b"#"));
            pty.push(pty_floor.round_trip(PIN.as_bytes(), b"#"));
            done.recv().expect("the floor's side stopped");
        }
        drop(go);
    });
    // Back to back: cards handed over at once after the previous grant, its
    // LED and buzzer commands possibly still on their way (libosdp's panel
    // polls a reader 50 ms after its last reply, an ACK included).
    rig.paced = false;
    for i in 0..(n / 10).max(20) {
        let mark = rig.log.as_ref().map_or(0, |l| l.len());
        rig.at_phase(phase(i));
        let t0 = rig.reader.card();
        rig.timed(t0, 0, true, mark);
    }
    bench::print_load("load at the end");
    eprintln!("osdp bench: measured after {:.1} s", started.elapsed().as_secs_f64());

    println!("--- poll intervals as the reader sees them (libosdp: a poll once {POLL_MS} ms passed since the last reply) ---");
    for (who, r) in [("porterd", &rig), ("floor  ", &floor)] {
        let mut v = r.reader.poll_intervals();
        report(&format!("{who}: interval between polls"), &mut v);
    }
    println!("--- hand-over to relay command ---");
    let (all, floor_all) = bench::compare("card or last key -> relay command", &mut rig.total, &mut floor.total);
    bench::compare("card -> relay command", &mut rig.cards, &mut floor.cards);
    bench::compare("last key (#) -> relay command", &mut rig.keys, &mut floor.keys);
    println!("--- the two parts: the wait for the poll, then the reply to the relay command ---");
    bench::compare("hand-over -> poll at the reader", &mut rig.wait, &mut floor.wait);
    let (after, floor_after) = bench::compare("poll at the reader -> relay command", &mut rig.after, &mut floor.after);
    let (_, pty99) = report("pty floor: last byte -> relay command", &mut pty);
    println!("--- back to back: a card at once after the previous grant (its feedback may be on its way; no goal) ---");
    report("porterd: card -> relay command, back to back", &mut rig.back_to_back);
    println!("(the pty floor's two hops are the hops of the reader's reply to the relay; p99 {pty99:.3} ms)");

    drop(d);
    let _ = floor_cp.kill();
    let _ = floor_cp.wait();
    // The issue's goal, p99 under libosdp's 50 ms poll interval plus 1 ms,
    // judged where the floor allows it: libosdp polls once more than 50 ms
    // passed on its millisecond clock, so even the floor's polls come about
    // 52 ms apart. Hence also the goal against the interval a control panel
    // refreshed every millisecond keeps (the floor's, measured here).
    let lost = rig.lost == 0 && floor.lost == 0;
    println!(
        "goal: {:<52} porterd {} of {}, floor {}: {}",
        "no card or key lost",
        rig.lost,
        2 * n,
        floor.lost,
        if lost { "MET" } else { "MISSED" }
    );
    let mut met = lost;
    met &= floor_goals("card or key -> relay, against the OSDP floor", all, floor_all, GOAL_MS);
    let kept = ((floor_period.as_secs_f64() * 1e3 + 1.0) * 1e3).round() / 1e3;
    met &= goal(&format!("p99 < the floor's poll interval ({:.3} ms) + 1 ms", kept - 1.0), all, "ms", kept);
    met &= floor_goals("poll at the reader -> relay, against the OSDP floor", after, floor_after, 1.0);
    println!(
        "(for reference: p50 card or key -> relay {:.3} ms, floor {:.3} ms)",
        pct(&rig.total, 50.0),
        pct(&floor.total, 50.0)
    );
    if !met {
        std::process::exit(1);
    }
}
