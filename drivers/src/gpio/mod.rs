//! GPIO behind a small trait, so the GPIO kinds (`wiegand`, `gpio_input`,
//! `gpio_relay`) are tested without a board and rppal can be replaced.
//!
//! A [`GpioBackend`] opens input lines, whose level changes arrive as
//! timestamped [`Edge`]s on a bounded [`EdgeReceiver`], and output lines,
//! which are set high or low. Three backends:
//! - [`cdev::CdevGpio`] (the default, `[gpio] backend = "cdev"`): the kernel's
//!   GPIO character device through gpiocdev. Every board with a kernel GPIO
//!   driver, the Raspberry Pi 5 included.
//! - [`RppalGpio`] (`backend = "rppal"`): a Raspberry Pi, through rppal 0.22.
//!   Its maintainer retired it in July 2025, so it gets no new boards: it
//!   refuses a board it does not recognise, and this machine, CI and any
//!   non-Pi computer are such boards.
//! - [`fake::FakeGpio`]: for tests. It plays recorded edge timings and records
//!   output writes. It is built with the crate (integration tests use it), but
//!   no configuration key selects it.
//!
//! Which one the kinds get: [`GpioSettings`] is read from the config's
//! `[gpio]` table by the daemon, which hands it to [`select`] once at start,
//! before any GPIO driver is built; [`real`] then builds that backend. The
//! choice is the process's, as the GPIO chip is the machine's: one daemon,
//! one backend.
//!
//! Time: an edge carries the kernel's timestamp (CLOCK_MONOTONIC, from the
//! GPIO character device, with either backend), which is exact even when the
//! event reaches us late. The drivers' decoding cores work on those timestamps only;
//! [`EdgeClock`] turns a deadline on that time base into a tokio `Instant` to
//! sleep until.

use crate::error::{DriverError, ErrorKind};
use crate::settings::{ConfigErrors, Section};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub mod cdev;
pub mod input;
pub mod relay;
pub mod wiegand;

/// Edges queued between a backend and a driver. A Wiegand frame is at most a
/// few dozen edges and a bouncing contact a few dozen more; past this the
/// driver is stuck, and edges are dropped and counted.
pub const EDGE_QUEUE: usize = 256;

/// A line's number: its offset on the GPIO chip (on a Raspberry Pi, the BCM
/// GPIO number).
pub type LineNo = u32;

/// The highest line number accepted in a configuration. The kernel numbers a
/// chip's lines from 0 up to its size, which the chip says (`gpioinfo`):
/// 54 on a Raspberry Pi 5's RP1 (the 40-pin header carries 0-27), some
/// hundred on single-chip boards such as Allwinner's. A line past the chip's
/// end is refused when it is opened, naming the line and the chip.
pub const MAX_LINE: u64 = 65_535;

/// The highest line the `rppal` backend knows: BCM GPIO 0-53.
pub const RPPAL_MAX_LINE: LineNo = 53;

/// The built-in bias resistor of an input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    Up,
    Down,
    Off,
}

/// Which level changes of an input line are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Rising,
    Falling,
    Both,
}

impl Trigger {
    /// Whether a change to `high` is reported under this trigger.
    pub fn matches(self, high: bool) -> bool {
        match self {
            Trigger::Rising => high,
            Trigger::Falling => !high,
            Trigger::Both => true,
        }
    }
}

/// One level change of an input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The BCM line number.
    pub line: LineNo,
    /// When it happened, on the backend's monotonic time base.
    pub at: Duration,
    /// The level after the change: `true` is high (a rising edge).
    pub high: bool,
}

/// The sending half of an edge queue; backends hold it for each open input.
/// Sending never blocks (backends send from interrupt threads): a full queue
/// drops the edge and counts it.
#[derive(Debug, Clone)]
pub struct EdgeSender {
    tx: mpsc::Sender<Edge>,
    dropped: Arc<AtomicU64>,
}

impl EdgeSender {
    pub fn send(&self, edge: Edge) {
        if self.tx.try_send(edge).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The receiving half of an edge queue; the driver reads it.
#[derive(Debug)]
pub struct EdgeReceiver {
    rx: mpsc::Receiver<Edge>,
    dropped: Arc<AtomicU64>,
}

impl EdgeReceiver {
    /// The next edge; `None` once every sender is gone (the lines were closed
    /// under the driver). Cancel-safe.
    pub async fn recv(&mut self) -> Option<Edge> {
        self.rx.recv().await
    }

    /// Edges lost so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A bounded edge queue of `capacity` edges. Several input lines may share
/// one (Wiegand's D0 and D1), each with a clone of the sender.
pub fn edge_channel(capacity: usize) -> (EdgeSender, EdgeReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (EdgeSender { tx, dropped: dropped.clone() }, EdgeReceiver { rx, dropped })
}

/// An open input line. Dropping it stops its edges and releases the line.
pub trait InputLine: Send {
    /// The line's level now: `true` is high.
    fn is_high(&self) -> bool;
}

/// An open output line.
///
/// Dropping it leaves the line driven at its last level (it does not go back
/// to an input): a relay line must never float. The owner drives its safe
/// level before letting go.
pub trait OutputLine: Send {
    fn write(&mut self, high: bool) -> Result<(), DriverError>;
}

/// Where GPIO lines come from.
pub trait GpioBackend: Send + Sync {
    /// Opens `line` as an input with `pull`, sending its `trigger` edges to
    /// `edges` until the returned line is dropped.
    fn open_input(
        &self,
        line: LineNo,
        pull: Pull,
        trigger: Trigger,
        edges: EdgeSender,
    ) -> Result<Box<dyn InputLine>, DriverError>;

    /// Opens `line` as an output driven at `high` from the first instant.
    fn open_output(&self, line: LineNo, high: bool) -> Result<Box<dyn OutputLine>, DriverError>;
}

/// Which GPIO backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The kernel's GPIO character device (gpiocdev).
    #[default]
    Cdev,
    /// rppal 0.22, on a Raspberry Pi it knows.
    Rppal,
}

/// The config's `[gpio]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpioSettings {
    pub backend: Backend,
    /// The chip the lines are on (`cdev` only).
    pub chip: Option<String>,
}

impl GpioSettings {
    /// Reads `[gpio]`'s keys from `sec` (the table itself; absent, the
    /// defaults).
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let backend = match sec.string_or("backend", "cdev", errs).as_str() {
            "cdev" => Backend::Cdev,
            "rppal" => Backend::Rppal,
            other => {
                errs.push(
                    sec.key_path("backend"),
                    format!("unknown GPIO backend `{other}`"),
                    Some(
                        "use \"cdev\" (the kernel's GPIO character device: every board, the Pi 5 included) or \
                         \"rppal\" (a Raspberry Pi that rppal 0.22 knows)"
                            .into(),
                    ),
                );
                Backend::Cdev
            }
        };
        let chip = sec.opt_string("chip", errs);
        if let Some(c) = &chip {
            if c.is_empty() || c.contains(char::is_whitespace) {
                errs.push(
                    sec.key_path("chip"),
                    format!("`{c}` is no GPIO chip"),
                    Some("a path (\"/dev/gpiochip0\"), a name (\"gpiochip0\") or a label (\"pinctrl-rp1\"), as `gpiodetect` shows them; or leave it out".into()),
                );
            }
            if backend == Backend::Rppal {
                errs.push(
                    sec.key_path("chip"),
                    "chip is for backend = \"cdev\"",
                    Some("rppal finds the Raspberry Pi's chip itself: remove chip, or set backend = \"cdev\"".into()),
                );
            }
        }
        GpioSettings { backend, chip }
    }

    /// The chip a `cdev` backend opens.
    pub fn chip_sel(&self) -> cdev::ChipSel {
        match &self.chip {
            None => cdev::ChipSel::Auto,
            Some(c) if c == "auto" => cdev::ChipSel::Auto,
            Some(c) => cdev::ChipSel::Named(c.clone()),
        }
    }

    /// The backend these settings name.
    pub fn backend(&self) -> Arc<dyn GpioBackend> {
        match self.backend {
            Backend::Cdev => Arc::new(cdev::CdevGpio::new(self.chip_sel())),
            Backend::Rppal => Arc::new(RppalGpio),
        }
    }
}

/// The settings [`real`] builds from; `None` until the daemon selects.
static SELECTED: std::sync::RwLock<Option<GpioSettings>> = std::sync::RwLock::new(None);

/// Selects the backend the GPIO kinds get from now on (the daemon calls it
/// once at start, before it builds any driver).
pub fn select(settings: &GpioSettings) {
    *SELECTED.write().unwrap_or_else(|e| e.into_inner()) = Some(settings.clone());
}

/// The settings selected, or the defaults (`cdev`, chip auto).
pub fn selected() -> GpioSettings {
    SELECTED.read().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()
}

/// The backend the kinds registry uses: the one [`select`]ed.
pub fn real() -> Arc<dyn GpioBackend> {
    selected().backend()
}

/// Maps deadlines on the edge time base to tokio instants, anchored at the
/// last edge received. The edge was received a little after its timestamp, so
/// a mapped deadline is never early: a debounce or a frame gap waits at least
/// as long as asked.
#[derive(Debug, Default)]
pub struct EdgeClock {
    anchor: Option<(Duration, Instant)>,
}

impl EdgeClock {
    /// Notes that the edge stamped `at` was received now.
    pub fn saw(&mut self, at: Duration) {
        self.anchor = Some((at, Instant::now()));
    }

    /// The instant at which the edge clock reads `t`.
    pub fn instant_of(&self, t: Duration) -> Instant {
        match self.anchor {
            None => Instant::now(),
            Some((a, i)) if t >= a => i + (t - a),
            Some((a, i)) => i.checked_sub(a - t).unwrap_or(i),
        }
    }
}

/// A required BCM line number; errors (missing, out of range) go to `errs`.
pub fn required_line(sec: &mut Section<'_>, key: &'static str, errs: &mut ConfigErrors) -> Option<LineNo> {
    let v = sec.opt_u64(key, 0..=MAX_LINE, errs);
    if v.is_none() && !sec.has(key) {
        errs.push(
            sec.key_path(key),
            "missing required key",
            Some(format!("set `{key}` to the BCM GPIO number (not the header pin number) it is wired to, such as 17")),
        );
    }
    v.map(|n| n as LineNo)
}

/// The name of a line in messages and claims: `gpio17`.
pub fn line_name(line: LineNo) -> String {
    format!("gpio{line}")
}

// ---------------------------------------------------------------------------
// rppal

/// The Raspberry Pi backend. Each open input has rppal's interrupt thread
/// (one per line, started by `set_async_interrupt`), which calls back with
/// every edge; rppal stops and joins that thread when the line is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct RppalGpio;

/// Maps an rppal error on `line` to a driver error that says how to fix it.
pub fn rppal_error(line: LineNo, e: rppal::gpio::Error) -> DriverError {
    use rppal::gpio::Error as E;
    let name = line_name(line);
    match e {
        E::UnknownModel => DriverError::new(
            ErrorKind::Other,
            format!("{name}: this board is not a Raspberry Pi that rppal 0.22 knows"),
        )
        .with_hint(
            "GPIO kinds (wiegand, gpio_input, gpio_relay) run only on a Raspberry Pi that rppal 0.22 supports \
             (up to the Pi 5 and its compute modules, on Raspberry Pi OS or a distribution that has \
             /proc/device-tree); elsewhere use a USB or serial device kind (serial_relay, serial_rfid, \
             serial_keypad, hid, pcsc)",
        ),
        E::PermissionDenied(path) => {
            DriverError::new(ErrorKind::PermissionDenied, format!("{name}: {path}: permission denied")).with_hint(
                "add the daemon's user to the `gpio` group, which owns /dev/gpiomem (/dev/gpiomem0 on a \
                 Pi 5) and /dev/gpiochip* on Raspberry Pi OS, or install Porter's udev rules (udev/60-porter.rules), \
                 then restart porterd",
            )
        }
        E::PinUsed(_) => DriverError::new(ErrorKind::Other, format!("{name} is already in use by this process"))
            .with_hint("each GPIO line may belong to one device only"),
        E::PinNotAvailable(_) => DriverError::new(ErrorKind::NotFound, format!("{name} does not exist on this board"))
            .with_hint("use a BCM GPIO number (GPIO17 is header pin 11), not a physical header pin number"),
        E::Io(io) => DriverError::io(&format!("{name} (/dev/gpiochip*)"), &io),
        E::ThreadPanic => DriverError::new(ErrorKind::Other, format!("{name}: rppal's interrupt thread panicked")),
    }
}

struct RppalInput {
    pin: rppal::gpio::InputPin,
}

impl InputLine for RppalInput {
    fn is_high(&self) -> bool {
        self.pin.is_high()
    }
}

struct RppalOutput {
    pin: rppal::gpio::OutputPin,
}

impl OutputLine for RppalOutput {
    fn write(&mut self, high: bool) -> Result<(), DriverError> {
        if high {
            self.pin.set_high();
        } else {
            self.pin.set_low();
        }
        Ok(())
    }
}

/// `line` of rppal's one chip: BCM GPIO 0-53, else a clear error.
fn rppal_pin(line: LineNo) -> Result<rppal::gpio::Pin, DriverError> {
    let bcm = u8::try_from(line).ok().filter(|&l| LineNo::from(l) <= RPPAL_MAX_LINE).ok_or_else(|| {
        DriverError::new(ErrorKind::NotFound, format!("{}: the rppal backend knows BCM GPIO 0-{RPPAL_MAX_LINE} only", line_name(line)))
            .with_hint("a Raspberry Pi's lines are BCM GPIO numbers (GPIO17 is header pin 11); on another board use [gpio] backend = \"cdev\"")
    })?;
    rppal::gpio::Gpio::new().and_then(|g| g.get(bcm)).map_err(|e| rppal_error(line, e))
}

impl GpioBackend for RppalGpio {
    fn open_input(
        &self,
        line: LineNo,
        pull: Pull,
        trigger: Trigger,
        edges: EdgeSender,
    ) -> Result<Box<dyn InputLine>, DriverError> {
        use rppal::gpio::Trigger as T;
        let pin = rppal_pin(line)?;
        let mut pin = match pull {
            Pull::Up => pin.into_input_pullup(),
            Pull::Down => pin.into_input_pulldown(),
            Pull::Off => pin.into_input(),
        };
        let t = match trigger {
            Trigger::Rising => T::RisingEdge,
            Trigger::Falling => T::FallingEdge,
            Trigger::Both => T::Both,
        };
        // The callback runs on rppal's interrupt thread: it must not block.
        pin.set_async_interrupt(t, None, move |ev: rppal::gpio::Event| {
            edges.send(Edge { line, at: ev.timestamp, high: ev.trigger == T::RisingEdge });
        })
        .map_err(|e| rppal_error(line, e))?;
        Ok(Box::new(RppalInput { pin }))
    }

    fn open_output(&self, line: LineNo, high: bool) -> Result<Box<dyn OutputLine>, DriverError> {
        let pin = rppal_pin(line)?;
        // into_output_low/high write the level before switching the mode, so
        // the line never shows the other level, even for a microsecond.
        let mut pin = if high { pin.into_output_high() } else { pin.into_output_low() };
        // By default rppal puts the line back into its previous mode (usually
        // input) on drop, which leaves a relay input floating. Keep it driven
        // at the level its owner last set (gpio_relay sets the safe level
        // before it lets go); the line stays driven after the process exits.
        pin.set_reset_on_drop(false);
        Ok(Box::new(RppalOutput { pin }))
    }
}

// ---------------------------------------------------------------------------
// fake

/// A GPIO backend for tests: inputs play recorded edge timings, outputs record
/// every write. Never selected by configuration.
pub mod fake {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// The fake's time base starts here, as a board's does some time after boot.
    pub const BOOT_OFFSET: Duration = Duration::from_secs(1000);

    struct InputReg {
        id: u64,
        trigger: Trigger,
        edges: EdgeSender,
    }

    #[derive(Default)]
    struct Line {
        high: bool,
        input: Option<InputReg>,
        output_open: bool,
    }

    #[derive(Default)]
    struct State {
        lines: BTreeMap<LineNo, Line>,
        writes: Vec<(LineNo, bool)>,
        fail_next: BTreeMap<LineNo, DriverError>,
        next_id: u64,
    }

    /// A fake GPIO chip. Clones share the chip.
    #[derive(Clone)]
    pub struct FakeGpio {
        state: Arc<Mutex<State>>,
        t0: Instant,
    }

    impl Default for FakeGpio {
        fn default() -> Self {
            Self::new()
        }
    }

    impl FakeGpio {
        pub fn new() -> Self {
            FakeGpio { state: Arc::default(), t0: Instant::now() }
        }

        /// This fake as the `Arc<dyn GpioBackend>` drivers take.
        pub fn backend(&self) -> Arc<dyn GpioBackend> {
            Arc::new(self.clone())
        }

        /// Sets a line's level without an edge (as it was when the driver
        /// opened it). Lines never set start at their pull's level.
        pub fn set_level(&self, line: LineNo, high: bool) {
            self.state.lock().unwrap().lines.entry(line).or_default().high = high;
        }

        /// The line's level now, if it was ever set or opened.
        pub fn level(&self, line: LineNo) -> Option<bool> {
            self.state.lock().unwrap().lines.get(&line).map(|l| l.high)
        }

        /// Makes the next open of `line` fail with `err`.
        pub fn fail_next_open(&self, line: LineNo, err: DriverError) {
            self.state.lock().unwrap().fail_next.insert(line, err);
        }

        /// Every output write so far, in order: (line, high). Opening an
        /// output records its initial level as a write.
        pub fn writes(&self) -> Vec<(LineNo, bool)> {
            self.state.lock().unwrap().writes.clone()
        }

        /// Whether a driver holds `line` as an input now.
        pub fn input_open(&self, line: LineNo) -> bool {
            self.state.lock().unwrap().lines.get(&line).is_some_and(|l| l.input.is_some())
        }

        /// Whether `line` is an output (it stays one after its owner drops it,
        /// as rppal's lines do with `set_reset_on_drop(false)`).
        pub fn output_open(&self, line: LineNo) -> bool {
            self.state.lock().unwrap().lines.get(&line).is_some_and(|l| l.output_open)
        }

        /// Plays recorded edge timings: each `(offset_us, line, high)` sets
        /// `line` to `high` at `offset_us` microseconds after the call, on
        /// tokio's clock (use paused time for exact timings). An entry that
        /// does not change the line's level is no edge and is skipped, as on
        /// a real line. Edges go to the line's input, if open and triggered.
        pub async fn play(&self, edges: &[(u64, LineNo, bool)]) {
            let start = Instant::now();
            for &(offset_us, line, high) in edges {
                let when = start + Duration::from_micros(offset_us);
                tokio::time::sleep_until(when).await;
                let mut st = self.state.lock().unwrap();
                let l = st.lines.entry(line).or_default();
                if l.high == high {
                    continue;
                }
                l.high = high;
                if let Some(reg) = &l.input {
                    if reg.trigger.matches(high) {
                        reg.edges.send(Edge { line, at: BOOT_OFFSET + (when - self.t0), high });
                    }
                }
            }
        }

        /// Closes every input's edge stream under its driver, as if the chip
        /// went away; the lines become free to open again.
        pub fn unplug(&self) {
            for l in self.state.lock().unwrap().lines.values_mut() {
                l.input = None;
            }
        }
    }

    struct FakeInput {
        state: Arc<Mutex<State>>,
        line: LineNo,
        id: u64,
    }

    impl InputLine for FakeInput {
        fn is_high(&self) -> bool {
            self.state.lock().unwrap().lines.get(&self.line).is_some_and(|l| l.high)
        }
    }

    impl Drop for FakeInput {
        fn drop(&mut self) {
            if let Ok(mut st) = self.state.lock() {
                if let Some(l) = st.lines.get_mut(&self.line) {
                    if l.input.as_ref().is_some_and(|r| r.id == self.id) {
                        l.input = None;
                    }
                }
            }
        }
    }

    struct FakeOutput {
        state: Arc<Mutex<State>>,
        line: LineNo,
    }

    impl OutputLine for FakeOutput {
        fn write(&mut self, high: bool) -> Result<(), DriverError> {
            let mut st = self.state.lock().unwrap();
            st.lines.entry(self.line).or_default().high = high;
            st.writes.push((self.line, high));
            Ok(())
        }
    }

    impl GpioBackend for FakeGpio {
        fn open_input(
            &self,
            line: LineNo,
            pull: Pull,
            trigger: Trigger,
            edges: EdgeSender,
        ) -> Result<Box<dyn InputLine>, DriverError> {
            let mut st = self.state.lock().unwrap();
            if let Some(e) = st.fail_next.remove(&line) {
                return Err(e);
            }
            st.next_id += 1;
            let id = st.next_id;
            let l = st.lines.entry(line).or_insert_with(|| Line { high: pull == Pull::Up, ..Line::default() });
            if l.input.is_some() || l.output_open {
                return Err(DriverError::new(ErrorKind::Other, format!("{} is already in use", line_name(line))));
            }
            l.input = Some(InputReg { id, trigger, edges });
            Ok(Box::new(FakeInput { state: self.state.clone(), line, id }))
        }

        fn open_output(&self, line: LineNo, high: bool) -> Result<Box<dyn OutputLine>, DriverError> {
            let mut st = self.state.lock().unwrap();
            if let Some(e) = st.fail_next.remove(&line) {
                return Err(e);
            }
            let l = st.lines.entry(line).or_default();
            if l.input.is_some() {
                return Err(DriverError::new(ErrorKind::Other, format!("{} is already in use", line_name(line))));
            }
            l.output_open = true;
            l.high = high;
            st.writes.push((line, high));
            Ok(Box::new(FakeOutput { state: self.state.clone(), line }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rppal_errors_name_their_fix() {
        let e = rppal_error(17, rppal::gpio::Error::UnknownModel);
        assert!(e.message.contains("gpio17") && e.message.contains("not a Raspberry Pi"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("serial_relay"), "{e}");

        let e = rppal_error(4, rppal::gpio::Error::PermissionDenied("/dev/gpiomem".into()));
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e.message.contains("/dev/gpiomem"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("`gpio` group"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("udev rule"), "{e}");

        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = rppal_error(4, rppal::gpio::Error::Io(io));
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e.hint.as_deref().unwrap().contains("gpio"), "{e}");

        let e = rppal_error(60, rppal::gpio::Error::PinNotAvailable(60));
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.hint.as_deref().unwrap().contains("BCM"), "{e}");
    }

    /// rppal knows BCM GPIO 0-53: a larger line (fine for cdev on a board
    /// with a large chip) is refused before rppal is asked, on any machine.
    #[test]
    fn rppal_refuses_lines_past_bcm_53_with_the_cdev_hint() {
        for line in [54, 227, 65_535] {
            let Err(e) = RppalGpio.open_output(line, false) else { panic!("line {line} opened") };
            assert_eq!(e.kind, ErrorKind::NotFound);
            assert!(e.message.contains(&format!("gpio{line}")) && e.message.contains("0-53"), "{e}");
            assert!(e.hint.as_deref().unwrap().contains("backend = \"cdev\""), "{e}");
        }
    }

    /// On this machine (no Raspberry Pi) rppal refuses: the backend must say
    /// so as a clear error, not panic.
    #[test]
    fn rppal_backend_fails_cleanly_off_a_pi() {
        if std::path::Path::new("/dev/gpiomem").exists() {
            return; // a real Pi: nothing to check here
        }
        let (tx, _rx) = edge_channel(4);
        let e = RppalGpio.open_input(17, Pull::Up, Trigger::Both, tx).err().expect("no GPIO here");
        assert!(e.message.contains("gpio17"), "{e}");
        let e = RppalGpio.open_output(18, false).err().expect("no GPIO here");
        assert!(e.message.contains("gpio18"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn fake_plays_only_real_transitions_with_exact_timestamps() {
        let gpio = fake::FakeGpio::new();
        let (tx, mut rx) = edge_channel(16);
        let line = gpio.open_input(5, Pull::Up, Trigger::Falling, tx).unwrap();
        assert!(line.is_high());
        // 5 falls at 100 us, a repeated low is no edge, rises at 150 us, falls at 2100 us.
        gpio.play(&[(100, 5, false), (120, 5, false), (150, 5, true), (2100, 5, false), (2150, 5, true)]).await;
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert!(!a.high && !b.high);
        assert_eq!(b.at - a.at, Duration::from_micros(2000));
        assert!(rx.rx.try_recv().is_err(), "rising edges are not triggered");
        assert!(line.is_high());
        drop(line);
        assert!(!gpio.input_open(5));
        assert_eq!(rx.recv().await, None, "a closed line ends its stream");
    }

    #[test]
    fn a_full_edge_queue_counts_what_it_drops() {
        let (tx, rx) = edge_channel(2);
        for i in 0..5 {
            tx.send(Edge { line: 1, at: Duration::from_micros(i), high: false });
        }
        assert_eq!(rx.dropped(), 3);
    }
}
