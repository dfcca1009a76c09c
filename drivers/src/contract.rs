//! The device contract: what a driver reports and how outputs are driven.
//!
//! An input driver turns a device's bytes into [`Input`]s and hands them to its
//! [`InputSink`]; the daemon's decision loop reads them all from one bounded
//! channel. An output driver ([`Output`]) sets one line on or off: for a lock,
//! on means unlocked. Drivers know nothing of holders, doors or policy.

use crate::error::DriverError;
use async_trait::async_trait;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The longest card UID we accept, in bytes (ISO 14443 triple-size UIDs are 10).
pub const MAX_UID_LEN: usize = 10;

/// A card UID, fixed-size so it moves without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardUid {
    bytes: [u8; MAX_UID_LEN],
    len: u8,
}

impl CardUid {
    /// A UID from raw bytes; `None` when empty or longer than [`MAX_UID_LEN`].
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.is_empty() || b.len() > MAX_UID_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_UID_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Some(CardUid { bytes, len: b.len() as u8 })
    }

    /// A UID from hex text; colons, dashes and spaces between bytes are allowed.
    pub fn parse_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; MAX_UID_LEN];
        let mut n = 0usize;
        let mut hi: Option<u8> = None;
        for c in s.trim().chars() {
            if matches!(c, ':' | '-' | ' ') {
                continue;
            }
            let d = c.to_digit(16)? as u8;
            match hi.take() {
                None => hi = Some(d),
                Some(h) => {
                    if n == MAX_UID_LEN {
                        return None;
                    }
                    out[n] = (h << 4) | d;
                    n += 1;
                }
            }
        }
        if hi.is_some() {
            return None;
        }
        Self::from_bytes(&out[..n])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Lower-case hex, the canonical text form.
    pub fn to_hex(&self) -> String {
        self.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for CardUid {
    // A UID is an identifier, not a secret, but keep it out of debug dumps anyway.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardUid(<{} bytes>)", self.len)
    }
}

/// One thing an input device saw.
#[derive(Clone, PartialEq, Eq)]
pub enum Input {
    /// A keypad key: `0`-`9`, `*` or `#`.
    Key(char),
    /// A card was presented.
    Card(CardUid),
    /// A QR or barcode payload was scanned.
    Qr(String),
    /// A digital input's debounced level changed: `true` is active (a door
    /// contact reporting the door open, an exit button pressed). What the
    /// level means is the daemon's business: the door that names this device
    /// as its `contact` or `exit_button` decides.
    Level(bool),
}

impl fmt::Debug for Input {
    // Never print a key press or a QR payload: together they are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Key(_) => write!(f, "Key(<redacted>)"),
            Input::Card(c) => write!(f, "Card({c:?})"),
            Input::Qr(q) => write!(f, "Qr(<{} bytes>)", q.len()),
            Input::Level(on) => write!(f, "Level({on})"),
        }
    }
}

/// A device's health as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Online,
    Offline(DriverError),
}

/// A condition a device reports about itself, beside what it reads: its
/// case opened (tamper), its power failing. Reported on change, through
/// [`InputSink::condition`]; the daemon records each change as an event
/// (`device.tamper`, `device.power`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The device's case or mounting was opened or pried off.
    Tamper,
    /// The device's power supply failed (it runs on a backup, or is about to
    /// stop).
    Power,
}

impl Condition {
    fn bit(self) -> u8 {
        match self {
            Condition::Tamper => 1,
            Condition::Power => 2,
        }
    }
}

/// What reaches the decision loop from a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Input(Input),
    Health(Health),
    /// A [`Condition`] began (`true`) or ended (`false`).
    Condition(Condition, bool),
}

/// A report tagged with the index of the device (its place in `[[devices]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReport {
    pub device: usize,
    pub report: Report,
    /// When the driver handed it over (a key's last byte or a card read):
    /// the start of the decision latency the status reports.
    pub at: std::time::Instant,
}

/// Where an input driver sends what it reads. Cheap to clone.
#[derive(Clone)]
pub struct InputSink {
    device: usize,
    tx: mpsc::Sender<DeviceReport>,
    /// [`UNKNOWN`], [`ONLINE`] or [`OFFLINE`]: health is reported on change.
    health: Arc<AtomicU8>,
    dropped: Arc<AtomicU64>,
    /// One bit a [`Condition`], set while it is active: conditions are
    /// reported on change.
    conditions: Arc<AtomicU8>,
    /// This device's inputs in the current one-second window, and the
    /// window's start (ms since `EPOCH`), for the per-device cap.
    window: Arc<(AtomicU64, AtomicU64)>,
}

/// The most inputs one device may hand the decision loop in a second: more
/// than a 9600-baud keypad can send (960 bytes a second), far more than a
/// person types or a scanner reads. A device past this is broken or attacked,
/// and the cap keeps it from filling the queue that every device shares.
pub const MAX_INPUTS_PER_SECOND: u64 = 1000;

fn ms_since_start() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

const UNKNOWN: u8 = 0;
const ONLINE: u8 = 1;
const OFFLINE: u8 = 2;

impl InputSink {
    pub fn new(device: usize, tx: mpsc::Sender<DeviceReport>) -> Self {
        InputSink {
            device,
            tx,
            health: Arc::new(AtomicU8::new(UNKNOWN)),
            dropped: Arc::default(),
            conditions: Arc::default(),
            window: Arc::default(),
        }
    }

    pub fn device(&self) -> usize {
        self.device
    }

    /// Hands an input to the decision loop without waiting. When the loop is
    /// that far behind, or this device has sent more than
    /// [`MAX_INPUTS_PER_SECOND`] this second, the input is dropped and
    /// counted: a flooding device must not stall the others.
    pub fn input(&self, input: Input) {
        let now = ms_since_start();
        let (start, count) = &*self.window;
        if now.saturating_sub(start.load(Ordering::Relaxed)) >= 1000 {
            start.store(now, Ordering::Relaxed);
            count.store(0, Ordering::Relaxed);
        }
        if count.fetch_add(1, Ordering::Relaxed) >= MAX_INPUTS_PER_SECOND {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(10_000) {
                tracing::warn!(
                    device_index = self.device,
                    dropped = n,
                    "a device sends more than {MAX_INPUTS_PER_SECOND} inputs a second: the rest is dropped"
                );
            }
            return;
        }
        self.send(Report::Input(input));
    }

    /// Marks the device online (reported once per transition).
    pub fn online(&self) {
        if self.health.swap(ONLINE, Ordering::SeqCst) != ONLINE {
            self.send(Report::Health(Health::Online));
        }
    }

    /// Marks the device offline (reported once per transition, including a
    /// device that fails before it was ever online).
    pub fn offline(&self, err: DriverError) {
        if self.health.swap(OFFLINE, Ordering::SeqCst) != OFFLINE {
            self.send(Report::Health(Health::Offline(err)));
        }
    }

    /// Reports that `condition` began or ended, once per change. Every
    /// condition starts inactive: a device whose first status says all is
    /// well reports nothing. A driver may call it on every status it reads.
    pub fn condition(&self, condition: Condition, active: bool) {
        let bit = condition.bit();
        let before = if active {
            self.conditions.fetch_or(bit, Ordering::SeqCst)
        } else {
            self.conditions.fetch_and(!bit, Ordering::SeqCst)
        };
        if (before & bit != 0) != active {
            self.send(Report::Condition(condition, active));
        }
    }

    /// Inputs dropped because the decision loop was full or the device over
    /// its cap.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, report: Report) {
        if self.tx.try_send(DeviceReport { device: self.device, report, at: std::time::Instant::now() }).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An input device. `run` opens it and reads until it fails or ends.
#[async_trait]
pub trait InputDriver: Send {
    /// Reads the device, reporting through `sink`, and calls `sink.online()`
    /// once open. `Err` means "restart me after a backoff"; `Ok(())` means the
    /// source ended for good (standard input closed) and is not restarted.
    /// The future is dropped at shutdown, so it must be cancel-safe.
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError>;

    /// The path `run` opens (a device node or its udev symlink), for a driver
    /// that opens one. The supervisor then follows it ([`crate::hotplug`]):
    /// after a failure it waits for the path instead of retrying while the
    /// path is away, and reopens the device at once when the path comes back,
    /// whatever the backoff had grown to. `None` (the default): plain backoff.
    fn watch_path(&self) -> Option<&std::path::Path> {
        None
    }
}

/// An output line: a lock relay, an LED, a buzzer. For a lock, `on` is unlocked.
#[async_trait]
pub trait Output: Send {
    async fn set(&mut self, on: bool) -> Result<(), DriverError>;
}

/// What a door tells the person at it, as a device that shows or sounds it
/// receives it (`exec` with `feedback = true`; an OSDP reader's LEDs and
/// buzzer). Its JSON form is one object with a `feedback` tag and the door,
/// and the details below; a field may be added, none renamed:
///
/// `{"feedback":"deny","door":"main","reason":"unknown","device":"kiosk"}`
///
/// `device` (added by the line, [`Feedback::json_line`]) is the id of the
/// input device whose input caused the signal; absent when none did (a
/// window opened by `enroll.start`, a window closing, a card's wait for its
/// PIN running out).
///
/// A deny's `reason` is the word of the `access.denied` (or `enroll.denied`)
/// event. `unknown`, `inactive`, `expired`, `not_yet_valid` and
/// `holder_disabled` tell a guesser whether a PIN exists: a display at the
/// door must show them alike (docs/drivers.md, "Feedback for devices").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "feedback", rename_all = "snake_case")]
pub enum Feedback {
    /// The door opens, for its `unlock_ms`.
    Grant { door: String, unlock_ms: u64 },
    /// A key was refused, with the event's reason word.
    Deny { door: String, reason: &'static str },
    /// The input device is locked out until then (RFC 3339 and unix ms);
    /// both `null` for the daily cap, which ends with the local day.
    Lockout { door: String, until: Option<String>, until_ms: Option<i64> },
    /// An enrolment window is open until then: the next card is assigned.
    EnrollOpen { door: String, until: String, until_ms: i64 },
    /// The card presented in the window was assigned.
    CardEnrolled { door: String },
    /// The card presented in the window was not assigned, with the
    /// `enroll.refused` event's reason word (`duplicate`: another holder's).
    CardRefused { door: String, reason: &'static str },
    /// A card was accepted; its holder's PIN is awaited until then.
    PinNeeded { door: String, until: String, until_ms: i64 },
    /// Whatever is shown ends (an enrolment window closed unused).
    Off { door: String },
}

impl Feedback {
    /// The JSON line a program receives, newline included, with the `device`
    /// whose input caused it (the field left out when none did). Never
    /// longer than a few hundred bytes (ids are short), so a pipe takes it
    /// whole or not at all.
    pub fn json_line(&self, device: Option<&str>) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            feedback: &'a Feedback,
            #[serde(skip_serializing_if = "Option::is_none")]
            device: Option<&'a str>,
        }
        let mut s = serde_json::to_string(&Line { feedback: self, device }).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// A device that receives a door's [`Feedback`], with the id of the input
/// device whose input caused it (`None` when none did). `feedback` is called
/// from the door's feedback task and must never wait: a receiver that cannot
/// take it now drops it and counts it.
pub trait FeedbackReceiver: Send {
    fn feedback(&mut self, fb: &Feedback, device: Option<&str>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_device_is_capped_per_second() {
        let (tx, mut rx) = mpsc::channel(4000);
        let sink = InputSink::new(0, tx);
        for _ in 0..2500 {
            sink.input(Input::Key('1'));
        }
        let got = std::iter::from_fn(|| rx.try_recv().ok()).count() as u64;
        // 1000 a second; a window boundary inside the loop may let one more batch in.
        assert!((MAX_INPUTS_PER_SECOND..=2 * MAX_INPUTS_PER_SECOND).contains(&got), "{got}");
        assert_eq!(sink.dropped(), 2500 - got);
    }

    #[test]
    fn a_condition_is_reported_once_per_change_and_each_on_its_own() {
        let (tx, mut rx) = mpsc::channel(16);
        let sink = InputSink::new(2, tx);
        for (c, active) in [
            (Condition::Tamper, false),
            (Condition::Tamper, false),
            (Condition::Tamper, true),
            (Condition::Tamper, true),
            (Condition::Power, true),
            (Condition::Tamper, false),
            (Condition::Power, true),
        ] {
            sink.clone().condition(c, active);
        }
        let got: Vec<Report> = std::iter::from_fn(|| rx.try_recv().ok()).map(|r| r.report).collect();
        let want = [
            Report::Condition(Condition::Tamper, true),
            Report::Condition(Condition::Power, true),
            Report::Condition(Condition::Tamper, false),
        ];
        assert_eq!(got, want);
    }
}
