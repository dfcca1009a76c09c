//! What the serial kinds share: the port keys, opening a port, reading it, and
//! counting what was dropped.
//!
//! Every serial kind takes the same keys for its line: `port` (a path, best a
//! stable udev symlink such as `/dev/serial/by-id/...`), `baud`, `data_bits`,
//! `parity`, `stop_bits` and `flow_control`. Input kinds run [`read_loop`] with
//! a sans-IO [`Decoder`] that turns bytes into [`Decoded`] events; the loop
//! reports each input as soon as the byte that completes it is read (no
//! read timeouts, no line buffering in the kernel: the port is raw), and ends
//! with a `Disconnected` error on end of file or a read error, which is how an
//! unplugged USB adapter shows up. The supervisor then reopens the path.
//!
//! Ports are opened through tokio-serial (`open_native_async`), which opens
//! exclusively (`TIOCEXCL` and `flock`), puts the line in raw mode and applies
//! the framing. A pseudo-terminal accepts and ignores baud and framing, so the
//! same code runs against the ptys the tests use.

use crate::contract::{Input, InputSink};
use crate::error::{DriverError, ErrorKind};
use crate::settings::{ConfigErrors, Section};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_serial::{DataBits, FlowControl, Parity, SerialPort, SerialPortBuilderExt, SerialStream, StopBits};

pub mod keypad;
pub mod qr;
pub mod relay;
pub mod rfid;

/// The baud rate when `baud` is not set.
pub const DEFAULT_BAUD: u32 = 9600;

/// How many bytes one read takes at most; a frame may span several reads.
const READ_CHUNK: usize = 256;

/// At most one warning per device this often; the counters keep the totals.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// A serial line: its path and framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSettings {
    /// The device path as configured (a udev symlink is followed at open).
    pub port: String,
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
    pub flow_control: FlowControl,
}

impl PortSettings {
    /// `port` at 9600 baud, 8N1, no flow control.
    pub fn new(port: impl Into<String>) -> Self {
        PortSettings {
            port: port.into(),
            baud: DEFAULT_BAUD,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        }
    }

    /// Reads the common serial keys; every bad value is pushed to `errs`.
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let port = sec
            .string("port", "set `port` to the device path, best a stable name such as /dev/serial/by-id/usb-...", errs)
            .unwrap_or_default();
        if !port.is_empty() && !port.starts_with('/') {
            errs.push(
                sec.key_path("port"),
                format!("`{port}` is not an absolute path"),
                Some("use the full device path, such as /dev/ttyUSB0 or /dev/serial/by-id/usb-...".into()),
            );
        }
        let baud = sec.u64_or("baud", u64::from(DEFAULT_BAUD), 50..=4_000_000, errs) as u32;
        let data_bits = match sec.u64_or("data_bits", 8, 5..=8, errs) {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            _ => DataBits::Eight,
        };
        let parity = match sec.string_or("parity", "none", errs).as_str() {
            "none" => Parity::None,
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            other => {
                errs.push(
                    sec.key_path("parity"),
                    format!("unknown parity `{other}`"),
                    Some("use \"none\", \"even\" or \"odd\"".into()),
                );
                Parity::None
            }
        };
        let stop_bits = match sec.u64_or("stop_bits", 1, 1..=2, errs) {
            2 => StopBits::Two,
            _ => StopBits::One,
        };
        let flow_control = match sec.string_or("flow_control", "none", errs).as_str() {
            "none" => FlowControl::None,
            "software" => FlowControl::Software,
            "hardware" => FlowControl::Hardware,
            other => {
                errs.push(
                    sec.key_path("flow_control"),
                    format!("unknown flow control `{other}`"),
                    Some("use \"none\", \"software\" (XON/XOFF) or \"hardware\" (RTS/CTS)".into()),
                );
                FlowControl::None
            }
        };
        PortSettings { port, baud, data_bits, parity, stop_bits, flow_control }
    }

    /// Whether `other` drives the line the same way (the path aside).
    pub fn same_framing(&self, other: &PortSettings) -> bool {
        self.baud == other.baud
            && self.data_bits == other.data_bits
            && self.parity == other.parity
            && self.stop_bits == other.stop_bits
            && self.flow_control == other.flow_control
    }

    /// Opens the port exclusively, raw, with this framing, and drops whatever
    /// the line received before it was opened (power-up noise, stale keys).
    pub fn open(&self) -> Result<SerialStream, DriverError> {
        let stream = tokio_serial::new(&self.port, self.baud)
            .data_bits(self.data_bits)
            .parity(self.parity)
            .stop_bits(self.stop_bits)
            .flow_control(self.flow_control)
            .open_native_async()
            .map_err(|e| open_error(&self.port, &e))?;
        // Best effort: a pty or an odd adapter may not support flushing.
        let _ = stream.clear(tokio_serial::ClearBuffer::Input);
        Ok(stream)
    }
}

/// Maps tokio-serial's open error onto the driver's error kinds.
fn open_error(path: &str, e: &tokio_serial::Error) -> DriverError {
    use tokio_serial::ErrorKind as K;
    match e.kind {
        K::Io(kind) => DriverError::io(path, &std::io::Error::new(kind, e.description.clone())),
        // serialport reports both a held TIOCEXCL and a held flock as NoDevice.
        K::NoDevice => DriverError::new(ErrorKind::Other, format!("{path}: port busy ({})", e.description)).with_hint(
            "another program holds the port open (ModemManager, a serial console, a second porterd, \
             or another [[devices]] entry naming the same port): stop it or remove the duplicate",
        ),
        K::InvalidInput => DriverError::new(ErrorKind::Other, format!("{path}: {}", e.description))
            .with_hint("check `baud`, `data_bits`, `parity`, `stop_bits` and `flow_control`"),
        K::Unknown => DriverError::new(ErrorKind::Other, format!("{path}: {}", e.description)),
    }
}

/// End of file or a read error on an open port: the device is gone.
pub(crate) fn disconnected(path: &str, what: &str) -> DriverError {
    DriverError::new(ErrorKind::Disconnected, format!("{path}: {what}"))
        .with_hint("check the cable; Porter reopens the port when the device is back")
}

/// What a decoder made of some bytes. Never carries a payload into a log:
/// the reasons are fixed strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete input, to report now.
    Input(Input),
    /// A frame or bytes that could not be understood, dropped.
    Garbled(&'static str),
    /// A frame longer than allowed, dropped up to its terminator.
    Overlong,
    /// A card read again within the repeat window, dropped.
    Repeat,
}

/// A sans-IO byte decoder: bytes in, events out, no I/O and no clock of its own.
pub trait Decoder: Send {
    /// Forgets any partial frame (the port was reopened).
    fn reset(&mut self);
    /// Decodes `bytes` read at `now`, emitting events in order.
    fn push(&mut self, bytes: &[u8], now: Instant, out: &mut dyn FnMut(Decoded));
}

/// Counters of what a serial driver dropped. Cheap to clone; every clone sees
/// the same counts, so a test or the daemon can read them while it runs.
#[derive(Debug, Clone, Default)]
pub struct SerialStats {
    inner: Arc<StatsInner>,
}

#[derive(Debug, Default)]
struct StatsInner {
    garbled: AtomicU64,
    overlong: AtomicU64,
    repeats: AtomicU64,
}

impl SerialStats {
    /// Frames or bytes dropped as not understood.
    pub fn garbled(&self) -> u64 {
        self.inner.garbled.load(Ordering::Relaxed)
    }
    /// Frames dropped for being too long.
    pub fn overlong(&self) -> u64 {
        self.inner.overlong.load(Ordering::Relaxed)
    }
    /// Card reads dropped as repeats within the window.
    pub fn repeats(&self) -> u64 {
        self.inner.repeats.load(Ordering::Relaxed)
    }
}

/// Opens `settings`, reports online, and feeds every read to `decoder` until
/// the port fails. Never returns `Ok`: a serial device does not end for good.
/// Cancel-safe: dropping the future closes the port and loses at most a
/// partial frame.
pub(crate) async fn read_loop(
    kind: &'static str,
    device: &str,
    settings: &PortSettings,
    decoder: &mut dyn Decoder,
    stats: &SerialStats,
    sink: &InputSink,
) -> Result<(), DriverError> {
    let mut stream = settings.open()?;
    decoder.reset();
    sink.online();
    tracing::info!(device, kind, port = %settings.port, baud = settings.baud, "serial port open");
    let mut buf = [0u8; READ_CHUNK];
    let mut last_warn: Option<Instant> = None;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => return Err(disconnected(&settings.port, "end of file")),
            Ok(n) => n,
            Err(e) => return Err(disconnected(&settings.port, &e.to_string())),
        };
        let now = Instant::now();
        decoder.push(&buf[..n], now, &mut |ev| match ev {
            Decoded::Input(input) => sink.input(input),
            Decoded::Repeat => {
                let repeats = stats.inner.repeats.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(device, kind, repeats, "repeated read within the window dropped");
            }
            Decoded::Garbled(reason) => {
                let garbled = stats.inner.garbled.fetch_add(1, Ordering::Relaxed) + 1;
                if should_warn(&mut last_warn, now) {
                    tracing::warn!(device, kind, garbled, reason, "garbled input dropped");
                }
            }
            Decoded::Overlong => {
                let overlong = stats.inner.overlong.fetch_add(1, Ordering::Relaxed) + 1;
                if should_warn(&mut last_warn, now) {
                    tracing::warn!(device, kind, overlong, "over-long frame dropped");
                }
            }
        });
    }
}

/// Rate limit for warnings: a noisy device must not flood the log (at most
/// one warning a second; the counters keep the totals).
pub(crate) fn should_warn(last: &mut Option<Instant>, now: Instant) -> bool {
    match last {
        Some(t) if now.saturating_duration_since(*t) < WARN_EVERY => false,
        _ => {
            *last = Some(now);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> (PortSettings, ConfigErrors) {
        let (c, errs) = Section::read("devices[0]", &v, PortSettings::parse);
        (c.expect("a table"), errs)
    }

    #[test]
    fn defaults_are_9600_8n1() {
        let (s, errs) = parse(json!({"port": "/dev/ttyUSB0"}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(s, PortSettings::new("/dev/ttyUSB0"));
    }

    #[test]
    fn reads_every_key() {
        let (s, errs) = parse(json!({"port": "/dev/x", "baud": 115200, "data_bits": 7, "parity": "even",
            "stop_bits": 2, "flow_control": "hardware"}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(
            s,
            PortSettings {
                port: "/dev/x".into(),
                baud: 115200,
                data_bits: DataBits::Seven,
                parity: Parity::Even,
                stop_bits: StopBits::Two,
                flow_control: FlowControl::Hardware,
            }
        );
    }

    #[test]
    fn reports_every_bad_key_with_its_path() {
        let (_, errs) = parse(json!({"port": "ttyUSB0", "baud": 0, "data_bits": 9, "parity": "mark",
            "stop_bits": 3, "flow_control": "rts", "bauds": 1}));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "devices[0].port",
                "devices[0].baud",
                "devices[0].data_bits",
                "devices[0].parity",
                "devices[0].stop_bits",
                "devices[0].flow_control",
                "devices[0].bauds",
            ]
        );
        assert!(errs.0.iter().all(|e| e.hint.is_some()), "{errs}");
        let (_, errs) = parse(json!({}));
        assert_eq!(errs.0[0].path, "devices[0].port");
        assert_eq!(errs.0[0].message, "missing required key");
    }

    #[tokio::test]
    async fn a_missing_port_is_not_found() {
        let e = PortSettings::new("/dev/serial/by-id/porter-test-no-such-device").open().unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn warnings_are_rate_limited() {
        let mut last = None;
        let t = Instant::now();
        assert!(should_warn(&mut last, t));
        assert!(!should_warn(&mut last, t + Duration::from_millis(999)));
        assert!(should_warn(&mut last, t + Duration::from_millis(1000)));
    }
}
