//! The `hid` driver fed recorded evdev event sequences through its read path.
//!
//! The fixtures are `evtest` logs (tests/fixtures/hid-*.evtest) of a
//! keyboard-mode barcode scanner and two keypads, in the order the kernel's
//! hid-input reports USB keyboard reports: an `EV_MSC`/`MSC_SCAN` before each
//! `EV_KEY`, Shift in the key's report or in a report of its own, autorepeat,
//! LED events, `SYN_REPORT` after each report. A test turns a log into the
//! kernel's `struct input_event` bytes, writes them into a pipe in odd-sized
//! pieces, and lets `Hid::pump` (what `Hid::run` does once the device is open)
//! read the other end. These machines have no /dev/input or /dev/uinput.

use porter_drivers::hid::{Hid, HidConfig, HidMode, RawEvents};
use porter_drivers::{DeviceReport, ErrorKind, Input, InputDriver, InputSink, Report};
use std::ffi::c_long;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// What the scanner fixture's two labels say.
const SCAN_1: &str = "porter:v1:Kx7-Qm2_Zp9+aB/4=";
const SCAN_2: &str = "https://p.example/t/RZ8Q~e\"3x";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses an evtest log into (seconds, microseconds, type, code, value).
fn parse_evtest(log: &str) -> Vec<(i64, i64, u16, u16, i32)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix("Event: time ") else { continue };
        let (time, rest) = rest.split_once(", ").unwrap();
        let (sec, usec) = time.split_once('.').unwrap();
        let (sec, usec) = (sec.parse().unwrap(), usec.parse().unwrap());
        if rest.contains("SYN_REPORT") {
            out.push((sec, usec, 0, 0, 0));
            continue;
        }
        if rest.contains("SYN_DROPPED") {
            out.push((sec, usec, 0, 3, 0));
            continue;
        }
        // "type 4 (EV_MSC), code 4 (MSC_SCAN), value 70004"
        let num = |field: &str| {
            let at = rest.find(field).unwrap() + field.len();
            rest[at..].split([' ', ',']).next().unwrap().to_string()
        };
        let ty: u16 = num("type ").parse().unwrap();
        let code: u16 = num("code ").parse().unwrap();
        let value = num("value ");
        // evtest prints scan codes in hex.
        let value =
            if ty == 4 && code == 4 { i32::from_str_radix(&value, 16).unwrap() } else { value.parse().unwrap() };
        out.push((sec, usec, ty, code, value));
    }
    out
}

/// The kernel's `struct input_event` in native layout: `struct timeval`
/// (two `long`s), `__u16 type`, `__u16 code`, `__s32 value`.
fn encode(events: &[(i64, i64, u16, u16, i32)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &(sec, usec, ty, code, value) in events {
        bytes.extend_from_slice(&(sec as c_long).to_ne_bytes());
        bytes.extend_from_slice(&(usec as c_long).to_ne_bytes());
        bytes.extend_from_slice(&ty.to_ne_bytes());
        bytes.extend_from_slice(&code.to_ne_bytes());
        bytes.extend_from_slice(&value.to_ne_bytes());
    }
    bytes
}

struct Played {
    reports: Vec<Report>,
    error_kind: ErrorKind,
    hid: Hid,
}

/// Writes the recording into a pipe in pieces of 1 to 61 bytes, closes it,
/// and lets the driver read until the end; returns what it reported.
async fn play(cfg: HidConfig, events: &[(i64, i64, u16, u16, i32)]) -> Played {
    let bytes = encode(events);
    let (mut tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
    let writer = tokio::spawn(async move {
        let mut at = 0;
        let mut step = 1;
        while at < bytes.len() {
            let end = (at + step).min(bytes.len());
            tx.write_all(&bytes[at..end]).await.unwrap();
            at = end;
            step = step % 61 + 7;
        }
        // Dropping the write end is the device going away.
    });
    let (sink_tx, mut sink_rx) = mpsc::channel::<DeviceReport>(1024);
    let sink = InputSink::new(4, sink_tx);
    let mut hid = Hid::new("test-hid", cfg);
    let err = timeout(Duration::from_secs(20), hid.pump(&mut RawEvents::new(rx), &sink))
        .await
        .expect("the driver did not see the end of the stream");
    writer.await.unwrap();
    let mut reports = Vec::new();
    while let Ok(r) = sink_rx.try_recv() {
        assert_eq!(r.device, 4);
        reports.push(r.report);
    }
    Played { reports, error_kind: err.kind, hid }
}

fn qr_config(max_length: usize) -> HidConfig {
    HidConfig { path: "/dev/input/by-id/usb-test-event-kbd".into(), mode: HidMode::Qr, max_length, grab: true }
}

fn keypad_config() -> HidConfig {
    HidConfig {
        path: "/dev/input/by-id/usb-keypad-event-kbd".into(),
        mode: HidMode::Keypad,
        max_length: 512,
        grab: true,
    }
}

fn keys(s: &str) -> Vec<Report> {
    s.chars().map(|c| Report::Input(Input::Key(c))).collect()
}

#[tokio::test]
async fn scanner_recording_gives_both_labels() {
    let events = parse_evtest(&fixture("hid-scanner.evtest"));
    assert!(events.len() > 400, "the fixture holds two scans");
    let p = play(qr_config(512), &events).await;
    assert_eq!(p.reports, [Report::Input(Input::Qr(SCAN_1.into())), Report::Input(Input::Qr(SCAN_2.into()))]);
    // The end of the stream is the device unplugged: the supervisor reopens it.
    assert_eq!(p.error_kind, ErrorKind::Disconnected);
    assert_eq!(p.hid.stats(), Default::default());
}

#[tokio::test]
async fn a_scan_over_max_length_is_dropped_and_counted() {
    assert!(SCAN_2.len() > SCAN_1.len());
    let events = parse_evtest(&fixture("hid-scanner.evtest"));
    let p = play(qr_config(SCAN_1.len()), &events).await;
    assert_eq!(p.reports, [Report::Input(Input::Qr(SCAN_1.into()))]);
    assert_eq!(p.hid.stats().overlong, 1);
}

#[tokio::test]
async fn lost_events_spoil_the_scan_they_fall_in() {
    let mut events = parse_evtest(&fixture("hid-scanner.evtest"));
    // The kernel's buffer overflowing in the middle of the first scan: it
    // drops events and says so with SYN_DROPPED. Drop 30 events and put the
    // marker in their place.
    let at = events.len() / 4;
    let t = events[at];
    events.splice(at..at + 30, [(t.0, t.1, 0, 3, 0)]);
    let p = play(qr_config(512), &events).await;
    assert_eq!(p.reports, [Report::Input(Input::Qr(SCAN_2.into()))]);
    assert_eq!(p.hid.stats().events_lost, 1);
    assert_eq!(p.hid.stats().damaged, 1);
}

#[tokio::test]
async fn keypad_recording_gives_one_key_per_press() {
    let events = parse_evtest(&fixture("hid-keypad.evtest"));
    let p = play(keypad_config(), &events).await;
    // KP8 autorepeats five times: still one 8. The keypad dot is not a key.
    assert_eq!(p.reports, keys("4839*0#"));
    assert_eq!(p.hid.stats().unknown_keys, 1);
    assert_eq!(p.error_kind, ErrorKind::Disconnected);
}

#[tokio::test]
async fn keyboard_style_keypad_uses_shift_for_star_and_hash() {
    let events = parse_evtest(&fixture("hid-keypad-3x4.evtest"));
    let p = play(keypad_config(), &events).await;
    assert_eq!(p.reports, keys("1590*#"));
    assert_eq!(p.hid.stats(), Default::default());
}

#[tokio::test]
async fn the_same_scanner_read_as_a_keypad_gives_only_digits() {
    // A scanner configured as a keypad by mistake: digits pass, letters are
    // counted, nothing else gets through.
    let events = parse_evtest(&fixture("hid-scanner.evtest"));
    let p = play(keypad_config(), &events).await;
    let digits_and_enters: String = SCAN_1
        .chars()
        .filter(char::is_ascii_digit)
        .chain(['#'])
        .chain(SCAN_2.chars().filter(char::is_ascii_digit).chain(['#']))
        .collect();
    assert_eq!(p.reports, keys(&digits_and_enters));
    let others = SCAN_1.chars().chain(SCAN_2.chars()).filter(|c| !c.is_ascii_digit()).count();
    assert_eq!(p.hid.stats().unknown_keys, others as u64);
}

async fn run_once(path: &str) -> (porter_drivers::DriverError, usize) {
    let (tx, mut rx) = mpsc::channel::<DeviceReport>(16);
    let mut hid = Hid::new("test-hid", HidConfig { path: path.into(), ..qr_config(512) });
    let err = timeout(Duration::from_secs(10), hid.run(&InputSink::new(0, tx))).await.unwrap().unwrap_err();
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    (err, n)
}

#[tokio::test]
async fn opening_a_missing_device_fails_without_going_online() {
    let (err, reports) = run_once("/dev/input/by-id/usb-nothing-here-event-kbd").await;
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(reports, 0);
}

#[tokio::test]
async fn opening_something_that_is_not_an_input_device_says_so() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let (err, reports) = run_once(file.path().to_str().unwrap()).await;
    assert!(err.message.contains("not an evdev input device"), "{err}");
    assert!(err.hint.as_deref().unwrap().contains("/dev/input/by-id"));
    assert_eq!(reports, 0);
}
