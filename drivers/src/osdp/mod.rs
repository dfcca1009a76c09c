//! `osdp`: OSDP readers (IEC 60839-11-5) on an RS-485 bus, with Porter as the
//! control panel, through the `libosdp` crate (libosdp's C core).
//!
//! Each reader is one `[[devices]]` entry with `kind = "osdp"`, its `door`, the
//! bus's `port` and `baud`, and its `address` on the bus. Readers that name
//! the same port share one bus: one control panel, one thread, one open port
//! (as relay channels share their board's port). Each reader reports to its
//! own door: cards, keypad keys, its tamper switch and power status (as
//! [`Condition`]s, on change), and its health (online once it answers on a
//! secure channel, offline when it stops answering or the bus's port goes).
//!
//! The secure channel is on by default: each reader has its own key (SCBK,
//! 16 bytes) in `key_file`, kept like the device secret (0600, never in the
//! config, never logged). A reader that offers only plain text, or holds
//! another key, is refused. `install = true` pairs a new reader once: the
//! control panel accepts the reader's default install key (SCBK-D) and sends
//! it the key from `key_file` (created if absent) with KEYSET, then insists on
//! it; the installer then removes `install = true` (docs/drivers.md).
//!
//! Threading: libosdp's `ControlPanel` is `Send` but not `Sync`, needs
//! `refresh()` at least every 50 ms and calls back inside it, so one named
//! thread per bus owns it ([`Bus`]); it polls the port for input for at most
//! 5 ms between refreshes. The readers' async drivers only attach their sink
//! to the bus and wait; dropping the last one stops and joins the thread.
//!
//! Feedback: a reader takes its door's feedback (grant, deny, lockout, ...)
//! on its own LED and buzzer ([`feedback`] maps each signal to OSDP's LED and
//! buzzer commands). The door's feedback task hands a signal over without
//! waiting: it replaces the reader's latest in a lock-free slot
//! ([`OsdpFeedback`]), and the bus thread sends the latest when it next
//! runs, only while the reader is online; a reader that comes back online is
//! sent what is left of its latest signal again (libosdp keeps only 4
//! commands a reader, and forgets them when it goes offline).
//!
//! Layout: [`channel`] is the serial transport libosdp drives; [`card_input`]
//! and [`key_input`] are the pure mapping from OSDP's reports to inputs;
//! [`feedback`] the pure mapping from signals to LED and buzzer commands.

pub mod channel;
pub mod feedback;

use crate::contract::{CardUid, Condition, Feedback, FeedbackReceiver, Input, InputDriver, InputSink};
use crate::error::{DriverError, ErrorKind};
use crate::gpio::wiegand::{self, Frame};
use crate::settings::{ConfigErrors, Section};
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use channel::{wait_readable, PortState, SerialChannel, BAUDS};
use libosdp::{ControlPanel, ControlPanelBuilder, OsdpCardFormats, OsdpCommand, OsdpEvent, OsdpFlag, PdInfoBuilder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// OSDP's usual rate for readers sold today; 9600 is the spec's default.
pub const DEFAULT_BAUD: u64 = 115_200;

/// A reader that has not come online this long after the bus started is
/// reported offline (the spec's offline time is 8 s).
pub const NO_ANSWER_AFTER: Duration = Duration::from_secs(10);

/// The longest the bus thread waits for input between two refreshes.
const TICK: Duration = Duration::from_millis(5);

/// libosdp's control panel polls a reader once more than this has passed
/// since its last reply (`OSDP_PD_POLL_TIMEOUT_MS`, 50 ms in libosdp 3.2).
/// The bus thread wakes for it, so that a poll (and the card or key it
/// fetches) does not wait for the next [`TICK`].
const POLL_DUE: Duration = Duration::from_millis(51);

/// How long the bus thread may wait for input: up to the next poll due
/// after the last input (`last_rx`), at most a [`TICK`]; then, for a
/// [`TICK`] after that moment, a millisecond at a time. libosdp decides on
/// its own millisecond clock, from when it handled the reply (a little
/// after its first bytes were readable), so the poll may go out only at
/// the next refresh or the one after: a [`TICK`] then would delay it (and
/// the card it fetches) by up to 5 ms.
fn next_wait(last_rx: Option<Instant>, now: Instant) -> Duration {
    let Some(due) = last_rx.map(|t| t + POLL_DUE) else { return TICK };
    if now < due {
        (due - now).min(TICK)
    } else if now < due + TICK {
        POLL_STEP
    } else {
        TICK
    }
}

/// The bus thread's step while a poll is due.
const POLL_STEP: Duration = Duration::from_millis(1);

/// The `osdp` kind's keys: one reader on a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdpConfig {
    /// The bus's serial port (an RS-485 adapter), shared by its readers.
    pub port: String,
    pub baud: u32,
    /// The reader's address on the bus, 0 to 126.
    pub address: u8,
    /// Whether the secure channel is required (the default).
    pub secure: bool,
    /// The reader's secure channel key (32 hex digits, mode 0600).
    pub key_file: Option<PathBuf>,
    /// Pair the reader: send it the key from `key_file` once.
    pub install: bool,
    /// Whether the reader shows its own door's feedback on its LED and
    /// buzzer (the default); a door may name it in `feedback` besides.
    pub feedback: bool,
}

impl OsdpConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let port = sec
            .string("port", "set `port` to the RS-485 adapter's path, best /dev/serial/by-id/usb-...", errs)
            .unwrap_or_default();
        if !port.is_empty() && !port.starts_with('/') {
            errs.push(
                sec.key_path("port"),
                format!("`{}` is not an absolute path", crate::logtext::escape(&port)),
                Some("use the full device path, such as /dev/ttyUSB0 or /dev/serial/by-id/usb-...".into()),
            );
        }
        let baud = sec.u64_or("baud", DEFAULT_BAUD, 9600..=230_400, errs) as u32;
        if !BAUDS.contains(&baud) {
            errs.push(
                sec.key_path("baud"),
                format!("{baud} is no OSDP baud rate"),
                Some("use 9600, 19200, 38400, 57600, 115200 or 230400, as set on the reader".into()),
            );
        }
        let address = sec.opt_u64("address", 0..=126, errs);
        if address.is_none() && !sec.has("address") {
            errs.push(
                sec.key_path("address"),
                "missing `address`",
                Some("set the reader's OSDP address on the bus, 0 to 126 (its DIP switches or setup card)".into()),
            );
        }
        let secure = sec.bool_or("secure", true, errs);
        let key_file = sec.opt_path("key_file", "an absolute path, such as /var/lib/porter/osdp-front.key", errs);
        let install = sec.bool_or("install", false, errs);
        let feedback = sec.bool_or("feedback", true, errs);
        if secure && key_file.is_none() {
            errs.push(
                sec.key_path("key_file"),
                "missing `key_file`: the secure channel needs the reader's key",
                Some("set key_file = \"/var/lib/porter/osdp-<reader>.key\" and pair the reader once with install = true (docs/drivers.md)".into()),
            );
        }
        if !secure && install {
            errs.push(
                sec.key_path("install"),
                "`install` pairs a key, but `secure = false`",
                Some("remove `secure = false`: pairing sets the secure channel key".into()),
            );
        }
        OsdpConfig { port, baud, address: address.unwrap_or(0) as u8, secure, key_file, install, feedback }
    }
}

/// The input a card read reports, or `None` when it is dropped. `bits` valid
/// bits of `data`, most significant first, as the reader sent them.
///
/// A Wiegand-format read, or any read whose length is not whole bytes, is a
/// Wiegand frame with its parity bits: it is decoded as the `wiegand` kind
/// decodes it, so a card reports the same UID on either kind (26-bit H10301
/// as facility and card, 3 bytes; 34 and 37 bits likewise). A raw read of
/// whole bytes (a reader sending a card's serial number) reports those bytes.
pub fn card_input(format: OsdpCardFormats, bits: usize, data: &[u8]) -> Option<Input> {
    if bits == 0 || bits > data.len() * 8 {
        return None;
    }
    if format == OsdpCardFormats::Unspecified && bits.is_multiple_of(8) {
        return CardUid::from_bytes(&data[..bits / 8]).map(Input::Card);
    }
    if bits > wiegand::MAX_BITS {
        return None;
    }
    let mut frame = [false; wiegand::MAX_BITS];
    for (i, b) in frame.iter_mut().take(bits).enumerate() {
        *b = data[i / 8] & (0x80 >> (i % 8)) != 0;
    }
    match wiegand::decode(&frame[..bits]) {
        Frame::Card(uid) => Some(Input::Card(uid)),
        _ => None,
    }
}

/// The key a keypad byte is: ASCII digits, `*` and `#`, and the codes the
/// OSDP spec gives those two (0x7F and 0x0D).
pub fn key_input(byte: u8) -> Option<Input> {
    match byte {
        b'0'..=b'9' | b'*' | b'#' => Some(Input::Key(char::from(byte))),
        0x7f => Some(Input::Key('*')),
        0x0d => Some(Input::Key('#')),
        _ => None,
    }
}

/// Reads a reader's key: 32 hex digits (a trailing newline allowed) in a
/// file no one but its owner may read. With `create`, a missing file is made
/// with a fresh random key, mode 0600, as `secret_file` is.
pub fn load_key(path: &Path, create: bool) -> Result<[u8; 16], DriverError> {
    use std::io::Read;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut key = [0u8; 16];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut key))
                .map_err(|e| DriverError::io("/dev/urandom", &e))?;
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| DriverError::io(&shown, &e))?;
            std::io::Write::write_all(&mut f, format!("{hex}\n").as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| DriverError::io(&shown, &e))?;
            tracing::info!(key_file = %shown, "osdp: a new reader key was created");
            return Ok(key);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DriverError::new(ErrorKind::NotFound, format!("the reader key {shown} does not exist"))
                .with_hint("pair the reader once with install = true, which creates it (docs/drivers.md)"))
        }
        Err(e) => return Err(DriverError::io(&shown, &e)),
    };
    let mode = std::fs::metadata(path).map_err(|e| DriverError::io(&shown, &e))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(DriverError::new(
            ErrorKind::PermissionDenied,
            format!("the reader key {shown} may be read by others (mode {:o})", mode & 0o777),
        )
        .with_hint(format!("chmod 600 {shown}")));
    }
    let t = text.trim();
    let mut key = [0u8; 16];
    let ok = t.len() == 32
        && key
            .iter_mut()
            .enumerate()
            .all(|(i, b)| u8::from_str_radix(t.get(2 * i..2 * i + 2).unwrap_or("x"), 16).map(|v| *b = v).is_ok());
    if !ok {
        // Never the file's text: it is a key, or close to one.
        return Err(DriverError::new(ErrorKind::Other, format!("the reader key {shown} is not 32 hex digits"))
            .with_hint("write the reader's 16-byte secure channel key as 32 hex digits, or pair again"));
    }
    Ok(key)
}

/// A reader attached to its bus while its driver runs.
struct Member {
    /// Unique per attachment, to detach the right one.
    token: u64,
    id: String,
    address: u8,
    key: Option<[u8; 16]>,
    secure: bool,
    install: bool,
    sink: InputSink,
    fatal: watch::Sender<Option<DriverError>>,
}

/// A feedback signal as the door's task handed it over.
struct Handed {
    fb: Feedback,
    at: Instant,
}

/// A reader's latest feedback signal: the door's task replaces it, the bus
/// thread reads it (never cleared: it is shown again when the reader comes
/// back online, for what is left of it).
type Slot = ArcSwapOption<Handed>;

/// What a bus's thread and its readers' drivers share.
struct Shared {
    port: String,
    baud: u32,
    members: Mutex<Vec<Member>>,
    /// Each address's feedback slot, made by the first who asks (the
    /// feedback receiver at start, or the bus thread).
    slots: Mutex<HashMap<u8, Arc<Slot>>>,
    /// Bumped on every attach and detach: the thread rebuilds the control
    /// panel for the new set of readers.
    generation: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn slot(&self, address: u8) -> Arc<Slot> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(address).or_default().clone()
    }
}

/// One RS-485 bus: its thread, started by the first reader that runs.
pub struct Bus {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            // The loop checks `stop` at least every few ms, or parks.
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Process-wide: port -> its bus. Weak, so a bus stops once no reader uses it.
fn registry() -> &'static Mutex<HashMap<String, Weak<Bus>>> {
    static BUSES: OnceLock<Mutex<HashMap<String, Weak<Bus>>>> = OnceLock::new();
    BUSES.get_or_init(Default::default)
}

fn bus(port: &str, baud: u32) -> Arc<Bus> {
    let mut buses = registry().lock().unwrap_or_else(|p| p.into_inner());
    buses.retain(|_, w| w.strong_count() > 0);
    if let Some(b) = buses.get(port).and_then(Weak::upgrade) {
        return b;
    }
    let shared = Arc::new(Shared {
        port: port.to_string(),
        baud,
        members: Mutex::new(Vec::new()),
        slots: Mutex::new(HashMap::new()),
        generation: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let b = Arc::new(Bus { shared, thread: Mutex::new(None) });
    buses.insert(port.to_string(), Arc::downgrade(&b));
    b
}

impl Bus {
    /// The feedback slot of the reader at `address`.
    fn slot(&self, address: u8) -> Arc<Slot> {
        self.shared.slot(address)
    }

    fn attach(&self, m: Member) -> Result<(), DriverError> {
        self.shared.members.lock().unwrap_or_else(|p| p.into_inner()).push(m);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let mut t = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_none() {
            let shared = self.shared.clone();
            let name =
                format!("osdp-{}", Path::new(&shared.port).file_name().and_then(|n| n.to_str()).unwrap_or("bus"));
            let handle = std::thread::Builder::new()
                .name(name.chars().take(15).collect())
                .spawn(move || run_bus(&shared))
                .map_err(|e| DriverError::new(ErrorKind::Other, format!("cannot start the OSDP bus thread: {e}")))?;
            *t = Some(handle);
        }
        if let Some(t) = t.as_ref() {
            t.thread().unpark();
        }
        Ok(())
    }

    fn detach(&self, token: u64) {
        self.shared.members.lock().unwrap_or_else(|p| p.into_inner()).retain(|m| m.token != token);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            t.thread().unpark();
        }
    }
}

/// A reader as the bus thread tracks it, by its index in the control panel.
struct Tracked {
    id: String,
    address: u8,
    secure: bool,
    install: bool,
    sink: InputSink,
    /// `None` until first known.
    online: Option<bool>,
    /// Tamper and power as last reported, to log changes only.
    status: [u8; 2],
    slot: Arc<Slot>,
    /// The signal last taken from the slot (shown, or owed).
    seen: Option<Arc<Handed>>,
    /// A send of `seen` is owed; `true` when it is new (it sounds).
    owed: Option<bool>,
    /// When `seen` is to be shown again (its state outlasts the LED timer).
    renew_at: Option<Instant>,
}

/// The control panel for the readers attached now, and how to reach them.
struct Panel {
    cp: ControlPanel,
    readers: Vec<Tracked>,
    events: std::sync::mpsc::Receiver<(i32, OsdpEvent)>,
    port: Arc<Mutex<PortState>>,
    built: Instant,
}

fn build_panel(shared: &Shared) -> Option<Panel> {
    let all = shared.members.lock().unwrap_or_else(|p| p.into_inner());
    // Readers already failed (the port went) are on their way out: their
    // drivers detach, and attach again when the port's path is back.
    let members: Vec<&Member> = all.iter().filter(|m| m.fatal.borrow().is_none()).collect();
    if members.is_empty() {
        return None;
    }
    let port = Arc::new(Mutex::new(PortState::default()));
    let channel = SerialChannel::new(&shared.port, shared.baud, port.clone());
    let mut infos = Vec::new();
    for m in members.iter() {
        let mut b = match PdInfoBuilder::new()
            .name(&m.id)
            .and_then(|b| b.address(i32::from(m.address)))
            .and_then(|b| b.baud_rate(shared.baud as i32))
        {
            Ok(b) => b,
            Err(e) => {
                let _ = m.fatal.send(Some(DriverError::new(ErrorKind::Other, format!("osdp: {e}"))));
                continue;
            }
        };
        if let Some(k) = m.key {
            b = b.secure_channel_key(k);
        }
        // Install mode pairs through the default key (SCBK-D), which
        // EnforceSecure forbids: it is turned on once the reader has our key.
        if m.secure && !m.install {
            b = b.flag(OsdpFlag::EnforceSecure);
        }
        infos.push(b);
    }
    let cp = ControlPanelBuilder::new().add_channel(Box::new(channel), infos).build();
    let mut cp = match cp {
        Ok(cp) => cp,
        Err(e) => {
            for m in members.iter() {
                let _ =
                    m.fatal.send(Some(DriverError::new(ErrorKind::Other, format!("osdp: cannot set up the bus: {e}"))));
            }
            return None;
        }
    };
    let (tx, events) = std::sync::mpsc::channel();
    // Runs inside refresh(), on this thread: hand the event over, decide after.
    cp.set_event_callback(move |pd, ev| {
        let _ = tx.send((pd, ev));
        0
    });
    let readers = members
        .iter()
        .map(|m| Tracked {
            id: m.id.clone(),
            address: m.address,
            secure: m.secure,
            install: m.install,
            sink: m.sink.clone(),
            online: None,
            status: [0, 0],
            slot: shared.slot(m.address),
            // A signal from before this panel is shown again once online.
            seen: shared.slot(m.address).load_full(),
            owed: None,
            renew_at: None,
        })
        .collect();
    Some(Panel { cp, readers, events, port, built: Instant::now() })
}

/// The bus thread: rebuild the panel when readers come or go, refresh it,
/// hand events to the readers' sinks, report each reader's health.
///
/// Hot-plug: when the port cannot be opened or is lost (an RS-485 adapter
/// unplugged reads EIO or end of file), the whole bus is down: every reader
/// attached is failed with the port's error and the panel (with the port)
/// is dropped. Each reader's driver then returns that error, and its
/// supervisor waits for the port's path with inotify ([`crate::hotplug`]);
/// when the path is back the drivers attach again and a fresh panel opens
/// the port and sets up every secure channel anew. While no panel runs the
/// thread sleeps until a reader attaches or detaches.
fn run_bus(shared: &Shared) {
    let mut built_gen = None;
    let mut panel: Option<Panel> = None;
    let mut last_rx = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let gen = shared.generation.load(Ordering::SeqCst);
        if built_gen != Some(gen) {
            // Drop the old panel first: it owns the open port.
            drop(panel.take());
            panel = build_panel(shared);
            built_gen = Some(gen);
        }
        let Some(p) = panel.as_mut() else {
            // Woken by attach, detach and stop; the timeout is a safety net.
            std::thread::park_timeout(Duration::from_secs(5));
            continue;
        };
        if let Some(err) = port_down(p) {
            tracing::warn!(port = %shared.port, error = %err, "osdp: the bus's port is gone: its readers are offline until it is back");
            for m in shared.members.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                m.fatal.send_replace(Some(err.clone()));
            }
            panel = None;
            continue;
        }
        p.cp.refresh();
        deliver(p);
        health(p);
        show_feedback(p);
        if wait_readable(&p.port, next_wait(last_rx, Instant::now())) {
            last_rx = Some(Instant::now());
        }
    }
}

/// The port's error when it is not open: never opened, or lost.
fn port_down(p: &Panel) -> Option<DriverError> {
    let state = p.port.lock().unwrap_or_else(|e| e.into_inner());
    state.poll.is_none().then(|| state.error.clone()).flatten()
}

/// Whether reader `i` may be heard: online, and on its secure channel
/// when it must be (a session on the install key does not count).
fn trusted(cp: &ControlPanel, i: usize, secure: bool) -> bool {
    cp.is_online(i as i32) && (!secure || cp.is_sc_active(i as i32))
}

fn deliver(p: &mut Panel) {
    while let Ok((pd, ev)) = p.events.try_recv() {
        let i = pd as usize;
        let Some(r) = p.readers.get_mut(i) else { continue };
        if !trusted(&p.cp, i, r.secure) {
            tracing::warn!(device = %r.id, address = r.address, "osdp: a report outside the secure channel was dropped");
            continue;
        }
        match ev {
            OsdpEvent::CardRead(c) => match card_input(c.format, c.nr_bits, &c.data) {
                Some(input) => r.sink.input(input),
                // The bits are a card number: only their count is logged.
                None => {
                    tracing::warn!(device = %r.id, bits = c.nr_bits, "osdp: a card read in no known format was dropped")
                }
            },
            OsdpEvent::KeyPress(k) => {
                let mut bad = 0usize;
                for &b in &k.data {
                    match key_input(b) {
                        Some(input) => r.sink.input(input),
                        None => bad += 1,
                    }
                }
                if bad > 0 {
                    tracing::warn!(device = %r.id, dropped = bad, "osdp: keypad bytes that are no key were dropped");
                }
            }
            OsdpEvent::Status(s) if s.type_ == libosdp::OsdpStatusReportType::Local => {
                let now = [s.report[0], if s.nr_entries > 1 { s.report[1] } else { 0 }];
                if now[0] != r.status[0] {
                    tracing::warn!(device = %r.id, address = r.address, tamper = now[0] != 0, "osdp: reader tamper");
                }
                if now[1] != r.status[1] {
                    tracing::warn!(device = %r.id, address = r.address, power_failure = now[1] != 0, "osdp: reader power");
                }
                r.status = now;
                // The sink reports each change once, across panels too.
                r.sink.condition(Condition::Tamper, now[0] != 0);
                r.sink.condition(Condition::Power, now[1] != 0);
            }
            _ => {}
        }
    }
}

fn health(p: &mut Panel) {
    for i in 0..p.readers.len() {
        let good = trusted(&p.cp, i, p.readers[i].secure);
        let r = &mut p.readers[i];
        if good && r.online != Some(true) {
            r.online = Some(true);
            let sc = p.cp.is_sc_active(i as i32);
            tracing::info!(device = %r.id, address = r.address, secure_channel = sc, "osdp: reader online");
            if r.install && sc {
                // Paired: from now on the reader must use this key.
                p.cp.set_flag(i as i32, OsdpFlag::EnforceSecure, true);
                tracing::warn!(device = %r.id, address = r.address, "osdp: the reader holds its key now; remove `install = true` from its config");
            }
            r.sink.online();
            // What it showed was lost with it: show what is left again.
            if r.seen.is_some() && r.owed.is_none() {
                r.owed = Some(false);
            }
        } else if !good && (r.online == Some(true) || (r.online.is_none() && p.built.elapsed() >= NO_ANSWER_AFTER)) {
            r.online = Some(false);
            let port_error = p.port.lock().unwrap_or_else(|e| e.into_inner()).error.clone();
            let err = port_error.unwrap_or_else(|| {
                let why = if p.cp.is_online(i as i32) {
                    "answers in plain text only: refused, the secure channel is required"
                } else if r.secure {
                    "does not answer on a secure channel (not powered, wrong address or baud, another key, not paired, or plain text only)"
                } else {
                    "does not answer (not powered, wrong address or baud)"
                };
                DriverError::new(ErrorKind::Disconnected, format!("the OSDP reader at address {} {why}", r.address))
            });
            tracing::warn!(device = %r.id, address = r.address, error = %err, "osdp: reader offline");
            r.sink.offline(err);
        }
    }
}

/// Takes each reader's newest feedback signal, and sends what is owed to
/// the readers that are online: the LED command, then the buzzer's. A
/// command libosdp cannot queue now (its pool of 4 is full) is tried again
/// on the next turn.
fn show_feedback(p: &mut Panel) {
    let now = Instant::now();
    for i in 0..p.readers.len() {
        let online = trusted(&p.cp, i, p.readers[i].secure);
        let r = &mut p.readers[i];
        let latest = r.slot.load_full();
        if latest.as_ref().map(Arc::as_ptr) != r.seen.as_ref().map(Arc::as_ptr) {
            r.seen = latest;
            r.owed = Some(true);
            r.renew_at = None;
        }
        if r.renew_at.is_some_and(|t| now >= t) && r.owed.is_none() {
            r.owed = Some(false);
        }
        let (Some(first), Some(h), true) = (r.owed, r.seen.as_ref(), online) else { continue };
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let shown = feedback::show(&h.fb, now.duration_since(h.at), wall_ms, first);
        if p.cp.send_command(i as i32, OsdpCommand::Led(shown.led.clone())).is_err() {
            continue;
        }
        if let Some(b) = shown.buzzer {
            if p.cp.send_command(i as i32, OsdpCommand::Buzzer(b)).is_err() {
                tracing::debug!(device = %r.id, "osdp: the buzzer command found libosdp's queue full: silent");
            }
        }
        r.owed = None;
        r.renew_at = shown.renew_after.map(|d| now + d);
    }
}

/// An OSDP reader's feedback receiver: hands each signal to the reader's
/// slot on its bus, replacing the one before, without waiting (one atomic
/// pointer swap); the bus thread sends it.
pub struct OsdpFeedback {
    slot: Arc<Slot>,
    /// Keeps the bus, and with it the slot, for the driver to find.
    _bus: Arc<Bus>,
}

impl FeedbackReceiver for OsdpFeedback {
    /// The input device does not change what a reader's LEDs and buzzer show.
    fn feedback(&mut self, fb: &Feedback, _device: Option<&str>) {
        self.slot.store(Some(Arc::new(Handed { fb: fb.clone(), at: Instant::now() })));
    }
}

/// The `osdp` driver: one reader, attached to its bus while it runs.
pub struct Osdp {
    id: String,
    config: OsdpConfig,
    bus: Arc<Bus>,
}

impl Osdp {
    /// A reader's driver; `id` names the device in logs. Readers built for
    /// the same port share its bus.
    pub fn new(id: &str, config: OsdpConfig) -> Self {
        let bus = bus(&config.port, config.baud);
        Osdp { id: id.to_string(), config, bus }
    }
}

/// Detaches the reader when its driver stops or is cancelled.
struct Attached<'a>(&'a Bus, u64);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.0.detach(self.1);
    }
}

#[async_trait]
impl InputDriver for Osdp {
    /// The bus's port: while it is away its readers wait for it, and they
    /// attach again as soon as it is back (see [`run_bus`]).
    fn watch_path(&self) -> Option<&Path> {
        Some(Path::new(&self.config.port))
    }

    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        static TOKENS: AtomicU64 = AtomicU64::new(0);
        let key = match (&self.config.key_file, self.config.secure) {
            (Some(path), true) => {
                let (path, create) = (path.clone(), self.config.install);
                let key = tokio::task::spawn_blocking(move || load_key(&path, create))
                    .await
                    .map_err(|e| DriverError::new(ErrorKind::Other, e.to_string()))??;
                Some(key)
            }
            _ => None,
        };
        let (fatal, mut failed) = watch::channel(None);
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        self.bus.attach(Member {
            token,
            id: self.id.clone(),
            address: self.config.address,
            key,
            secure: self.config.secure,
            install: self.config.install,
            sink: sink.clone(),
            fatal,
        })?;
        let _attached = Attached(&self.bus, token);
        loop {
            if let Some(e) = failed.borrow_and_update().clone() {
                return Err(e);
            }
            if failed.changed().await.is_err() {
                return Err(DriverError::new(ErrorKind::Other, "the OSDP bus stopped"));
            }
        }
    }
}

/// Readers on one port share its bus: they must agree on its baud rate and
/// each have their own address; no other kind may use the port.
fn cross_check(devices: &[(String, &crate::kinds::KindConfig)], errs: &mut ConfigErrors) {
    let readers: Vec<(&String, &OsdpConfig)> = devices
        .iter()
        .filter_map(|(path, k)| Some((path, k.downcast_ref::<OsdpConfig>()?)))
        .filter(|(_, c)| !c.port.is_empty())
        .collect();
    for (n, (path, c)) in readers.iter().enumerate() {
        if let Some((first, f)) = readers[..n].iter().find(|(_, f)| f.port == c.port && f.baud != c.baud) {
            errs.push(
                format!("{path}.baud"),
                format!("{} runs at {} baud for {first}", c.port, f.baud),
                Some("readers on one bus share its baud rate: set the same on each".into()),
            );
        }
        let port = crate::kinds::Claim::Node(c.port.clone());
        if let Some((other, _)) = devices.iter().find(|(_, k)| {
            k.claims().iter().any(|cl| {
                cl == &port || matches!(cl, crate::kinds::Claim::RelayChannel { port: p, .. } if p == &c.port)
            })
        }) {
            errs.push(
                format!("{path}.port"),
                format!("{} is also used by {other}", c.port),
                Some("an OSDP bus needs its own serial port".into()),
            );
        }
    }
}

/// `kind = "osdp"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "osdp",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: true, levels: false },
    drives_outputs: false,
    output_through_input: false,
    access: crate::kinds::Access::ReadWrite,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(OsdpConfig::parse(sec, errs))),
    cross_check: Some(cross_check),
};

impl crate::kinds::DeviceKind for OsdpConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        vec![crate::kinds::Claim::BusAddress { port: self.port.clone(), address: self.address }]
    }

    fn input_driver(&self, id: &str) -> Option<Box<dyn InputDriver>> {
        Some(Box::new(Osdp::new(id, self.clone())))
    }

    fn takes_feedback(&self) -> bool {
        true
    }

    fn feedback_at_own_door(&self) -> bool {
        self.feedback
    }

    fn feedback_receiver(&self, _id: &str) -> Option<Box<dyn FeedbackReceiver>> {
        let bus = bus(&self.port, self.baud);
        Some(Box::new(OsdpFeedback { slot: bus.slot(self.address), _bus: bus }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests;
