//! The GPIO kinds (`wiegand`, `gpio_input`, `gpio_relay`) through the GPIO
//! fake: inputs are driven by edge timings as a reader or a bouncing contact
//! produces them (Wiegand pulses of about 50 us, 1-2 ms apart; contact
//! bounces of tens to hundreds of microseconds), outputs are checked against
//! the writes the fake recorded. Time is tokio's paused clock, so every
//! timing is exact and no test sleeps: each waits for a report with a
//! deadline.

use porter_drivers::fake::Reports;
use porter_drivers::gpio::fake::FakeGpio;
use porter_drivers::gpio::{LineNo, Pull};
use porter_drivers::gpio_input::{GpioInput, GpioInputConfig};
use porter_drivers::gpio_relay::{GpioRelay, GpioRelayConfig};
use porter_drivers::wiegand::{Wiegand, WiegandConfig, WiegandCounters};
use porter_drivers::{
    CardUid, Claim, ConfigErrors, DriverError, ErrorKind, Health, Input, InputDriver, InputSink, KindConfig, Output,
    Report, Role, Section,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

const D0: LineNo = 17;
const D1: LineNo = 27;
const DEADLINE: Duration = Duration::from_secs(5);

/// A small deterministic jitter source, so pulse timings vary as a real
/// reader's do.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % (max + 1)
    }
}

/// The edges of a Wiegand burst starting at `start_us`: each bit a low pulse
/// of 40-60 us on D0 (0) or D1 (1), bits 1.5-2.5 ms apart.
fn burst(start_us: u64, bits: &str, j: &mut Jitter) -> Vec<(u64, LineNo, bool)> {
    let mut t = start_us;
    let mut out = Vec::new();
    for b in bits.chars().filter(|c| !c.is_whitespace()) {
        let line = if b == '1' { D1 } else { D0 };
        out.push((t, line, false));
        out.push((t + 40 + j.next(20), line, true));
        t += 1500 + j.next(1000);
    }
    out
}

/// Bursts one after the other, `gap_ms` apart (start to start).
fn bursts(frames: &[&str], gap_ms: u64) -> Vec<(u64, LineNo, bool)> {
    let mut j = Jitter(0x1234_5678_9abc_def1);
    frames.iter().enumerate().flat_map(|(i, f)| burst(i as u64 * gap_ms * 1000, f, &mut j)).collect()
}

fn uid(b: &[u8]) -> Input {
    Input::Card(CardUid::from_bytes(b).unwrap())
}

struct Running {
    reports: Reports,
    task: JoinHandle<Result<(), DriverError>>,
}

impl std::ops::Deref for Running {
    type Target = Reports;
    fn deref(&self) -> &Reports {
        &self.reports
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Reports {
        &mut self.reports
    }
}

impl Running {
    fn start(mut driver: impl InputDriver + 'static) -> Self {
        let (sink, reports) = Reports::channel(0, 64, DEADLINE);
        let task = tokio::spawn(async move { driver.run(&sink).await });
        Running { reports, task }
    }

    /// Nothing more was reported (call once the driver is idle).
    fn quiet(&mut self) {
        if let Some(r) = self.reports.try_next() {
            panic!("unexpected report {r:?}");
        }
    }
}

fn wiegand(fake: &FakeGpio) -> (Wiegand, Arc<WiegandCounters>) {
    let cfg = WiegandConfig { d0: D0, d1: D1, frame_gap: Duration::from_millis(25), raw: None };
    let w = Wiegand::with_backend(cfg, "reader", fake.backend());
    let c = w.counters();
    (w, c)
}

fn n(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

// 26-bit H10301, facility 123 (0x7b), card 4567 (0x11d7).
const CARD26: &str = "1 01111011 0001000111010111 0";
// 34-bit, data 0xdeadbeef: 0xdead has 11 ones (even parity 1), 0xbeef 13
// (odd parity 0).
const CARD34: &str = "1 1101111010101101 1011111011101111 0";
// 37-bit H10304, facility 4660 (0x1234), card 300000 (0x493e0). Bits 2-19
// (facility, then the card's top two bits 10) hold 6 ones: even parity 0.
// Bits 19-36 (the card's bits from its second: 001001001111100000) hold 7:
// odd parity 0.
const CARD37: &str = "0 0001001000110100 1001001001111100000 0";

#[tokio::test(start_paused = true)]
async fn wiegand_reads_26_34_and_37_bit_cards() {
    let fake = FakeGpio::new();
    let (w, counters) = wiegand(&fake);
    let mut r = Running::start(w);
    r.online().await;
    assert!(fake.input_open(D0) && fake.input_open(D1));
    fake.play(&bursts(&[CARD26, CARD34, CARD37], 200)).await;
    assert_eq!(r.input().await, uid(&[0x7b, 0x11, 0xd7]));
    assert_eq!(r.input().await, uid(&[0xde, 0xad, 0xbe, 0xef]));
    // 0x1234 << 19 | 0x493e0 = 0x91a4_93e0
    assert_eq!(r.input().await, uid(&[0x00, 0x91, 0xa4, 0x93, 0xe0]));
    r.quiet();
    assert_eq!(n(&counters.cards), 3);
    assert_eq!(counters.dropped(), 0);
}

// HID Corporate 1000 35-bit, company 222, card 12345 (0x21bc06072, as
// proxmark3's C1k35s encoder gives it), and 48-bit, company 118, card 1603
// (0x400076000c86, from proxmark3's test suite).
const CARD35: &str = "01 000011011110 00000011000000111001 0";
const CARD48: &str = "01 0000000000000001110110 00000000000011001000011 0";

#[tokio::test(start_paused = true)]
async fn wiegand_reads_corporate_1000_35_and_48_bit_cards_and_drops_bad_parity() {
    assert_eq!(u64::from_str_radix(&CARD35.replace(' ', ""), 2), Ok(0x2_1bc0_6072));
    assert_eq!(u64::from_str_radix(&CARD48.replace(' ', ""), 2), Ok(0x4000_7600_0c86));
    let fake = FakeGpio::new();
    let (w, counters) = wiegand(&fake);
    let mut r = Running::start(w);
    r.online().await;
    let mut bad35: Vec<char> = CARD35.replace(' ', "").chars().collect();
    bad35[20] = if bad35[20] == '1' { '0' } else { '1' };
    let bad35: String = bad35.into_iter().collect();
    fake.play(&bursts(&[CARD35, &bad35, CARD48], 300)).await;
    // 222 << 20 | 12345; 118 << 23 | 1603 in 6 bytes.
    assert_eq!(r.input().await, uid(&[0x0d, 0xe0, 0x30, 0x39]));
    assert_eq!(r.input().await, uid(&[0x00, 0x00, 0x3b, 0x00, 0x06, 0x43]));
    r.quiet();
    assert_eq!((n(&counters.cards), n(&counters.bad_parity)), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn wiegand_reads_a_raw_format_from_its_config() {
    let (k, errs) = kind(
        "wiegand",
        serde_json::json!({"d0": D0, "d1": D1, "raw_bits": 12, "raw_parity": ["1 even 2-6", "12 odd 7-11"]}),
    );
    assert!(errs.is_empty(), "{errs}");
    let cfg = k.unwrap().downcast_ref::<WiegandConfig>().unwrap().clone();
    let fake = FakeGpio::new();
    let w = Wiegand::with_backend(cfg, "reader", fake.backend());
    let counters = w.counters();
    let mut r = Running::start(w);
    r.online().await;
    // Data 1011001110: bits 2-6 hold 3 ones (even parity 1), bits 7-11
    // hold 3 (odd parity 0). The same with the last parity wrong.
    fake.play(&bursts(&["1 10110 01110 0", "1 10110 01110 1", CARD26], 300)).await;
    assert_eq!(r.input().await, uid(&[0b10, 0b1100_1110]));
    // The built-in formats still read.
    assert_eq!(r.input().await, uid(&[0x7b, 0x11, 0xd7]));
    r.quiet();
    assert_eq!((n(&counters.cards), n(&counters.bad_parity)), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn wiegand_reports_a_card_one_gap_after_its_last_bit() {
    let fake = FakeGpio::new();
    let (w, _) = wiegand(&fake);
    let mut r = Running::start(w);
    r.online().await;
    let edges = bursts(&[CARD26], 0);
    let last_pulse = edges[edges.len() - 2].0;
    let start = Instant::now();
    fake.play(&edges).await;
    assert_eq!(r.input().await, uid(&[0x7b, 0x11, 0xd7]));
    let took = start.elapsed();
    let due = Duration::from_micros(last_pulse) + Duration::from_millis(25);
    assert!(took >= due && took < due + Duration::from_millis(1), "reported after {took:?}, due {due:?}");
}

#[tokio::test(start_paused = true)]
async fn wiegand_reads_4_and_8_bit_keys() {
    let fake = FakeGpio::new();
    let (w, counters) = wiegand(&fake);
    let mut r = Running::start(w);
    r.online().await;
    // 4-bit: 1, 9, *, #; 8-bit: 0, 5, #.
    let keys = ["0001", "1001", "1010", "1011", "1111 0000", "1010 0101", "0100 1011"];
    fake.play(&bursts(&keys, 300)).await;
    let mut got = Vec::new();
    for _ in 0..keys.len() {
        match r.input().await {
            Input::Key(k) => got.push(k),
            other => panic!("expected a key, got {other:?}"),
        }
    }
    assert_eq!(got, ['1', '9', '*', '#', '0', '5', '#']);
    r.quiet();
    assert_eq!(n(&counters.keys), 7);
}

#[tokio::test(start_paused = true)]
async fn wiegand_counts_and_drops_bad_parity() {
    let fake = FakeGpio::new();
    let (w, counters) = wiegand(&fake);
    let mut r = Running::start(w);
    r.online().await;
    let flip = |s: &str, i: usize| -> String {
        let mut b: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
        b[i] = if b[i] == '1' { '0' } else { '1' };
        b.into_iter().collect()
    };
    let bad26 = flip(CARD26, 5);
    let bad37 = flip(CARD37, 18); // the bit both parities cover
    let bad_key = "1011 0101"; // high nibble is not the low one's complement
    fake.play(&bursts(&[&bad26, &bad37, bad_key, CARD34], 200)).await;
    // Only the good frame arrives, after the three bad ones were dropped.
    assert_eq!(r.input().await, uid(&[0xde, 0xad, 0xbe, 0xef]));
    r.quiet();
    assert_eq!(n(&counters.bad_parity), 3);
    assert_eq!(n(&counters.cards), 1);
}

#[tokio::test(start_paused = true)]
async fn wiegand_drops_frames_split_or_garbled_by_noise() {
    let fake = FakeGpio::new();
    let (w, counters) = wiegand(&fake);
    let mut r = Running::start(w);
    r.online().await;
    let mut edges = Vec::new();
    let mut j = Jitter(7);
    // 1. A glitch on D1 between two bits adds a 27th bit.
    edges.extend(burst(0, CARD26, &mut j));
    let mid = (edges[10].0 + edges[12].0) / 2; // between the 6th and 7th bits
    edges.push((mid, D1, false));
    edges.push((mid + 5, D1, true));
    edges.sort_by_key(|e| e.0);
    // 2. A frame cut by a 40 ms pause (longer than the gap) after 13 bits:
    // two fragments of 13 bits.
    let bits: String = CARD26.chars().filter(|c| !c.is_whitespace()).collect();
    edges.extend(burst(200_000, &bits[..13], &mut j));
    edges.extend(burst(270_000, &bits[13..], &mut j));
    // 3. A common-mode spike pulls D0 and D1 low together mid-frame.
    let mut third = burst(400_000, CARD34, &mut j);
    let t = third[20].0 + 700;
    third.extend([(t, D0, false), (t + 30, D1, false), (t + 60, D0, true), (t + 60, D1, true)]);
    third.sort_by_key(|e| e.0);
    edges.extend(third);
    // 4. Then a clean frame.
    edges.extend(burst(600_000, CARD37, &mut j));
    fake.play(&edges).await;
    assert_eq!(r.input().await, uid(&[0x00, 0x91, 0xa4, 0x93, 0xe0]));
    r.quiet();
    assert_eq!(n(&counters.bad_length), 3, "the 27-bit frame and the two fragments");
    assert_eq!(n(&counters.noise), 1, "the spike on both lines");
    assert_eq!(n(&counters.bad_parity), 0);
    assert_eq!(n(&counters.cards), 1);
}

#[tokio::test(start_paused = true)]
async fn wiegand_fails_when_its_lines_go_and_reopens_them() {
    let fake = FakeGpio::new();
    let (mut w, _) = wiegand(&fake);
    let (tx, mut rx) = mpsc::channel(16);
    let sink = InputSink::new(0, tx);
    let err = {
        let run = w.run(&sink);
        tokio::pin!(run);
        // Unplug once the lines are open.
        tokio::select! {
            r = &mut run => panic!("ended early: {r:?}"),
            _ = async { while !fake.input_open(D1) { tokio::task::yield_now().await } } => {}
        }
        fake.unplug();
        timeout(DEADLINE, run).await.expect("the driver did not notice").unwrap_err()
    };
    assert_eq!(err.kind, ErrorKind::Disconnected);
    assert!(err.message.contains("gpio17/gpio27"), "{err}");
    assert!(!fake.input_open(D0) && !fake.input_open(D1), "lines released");
    assert_eq!(rx.recv().await.unwrap().report, Report::Health(Health::Online));

    // A restart opens them again and reads.
    let mut r = Running::start(w);
    r.online().await;
    fake.play(&bursts(&["0111"], 0)).await;
    assert_eq!(r.input().await, Input::Key('7'));
}

#[tokio::test(start_paused = true)]
async fn an_open_error_fails_the_run_before_online() {
    let fake = FakeGpio::new();
    let denied = DriverError::new(ErrorKind::PermissionDenied, "gpio27: /dev/gpiochip0: permission denied");
    fake.fail_next_open(D1, denied.clone());
    let (w, _) = wiegand(&fake);
    let mut r = Running::start(w);
    let res = timeout(DEADLINE, &mut r.task).await.unwrap().unwrap();
    assert_eq!(res, Err(denied));
    assert!(r.try_next().is_none(), "never online");
    assert!(!fake.input_open(D0), "D0 released again");
}

// ---------------------------------------------------------------------------
// gpio_input

const CONTACT: LineNo = 22;

fn contact(fake: &FakeGpio, active_low: bool, pull: Pull) -> GpioInput {
    let cfg = GpioInputConfig { line: CONTACT, pull, active_low, debounce: Duration::from_millis(50) };
    GpioInput::with_backend(cfg, "contact", fake.backend())
}

/// A switch closing to `to` as a real one does: a few bounces over 2 ms.
fn bouncy(start_us: u64, to: bool) -> Vec<(u64, LineNo, bool)> {
    [(0, to), (300, !to), (700, to), (1500, !to), (2100, to)]
        .into_iter()
        .map(|(t, l)| (start_us + t, CONTACT, l))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn gpio_input_reports_its_level_at_start_and_debounced_changes() {
    let fake = FakeGpio::new();
    let mut r = Running::start(contact(&fake, true, Pull::Up));
    r.online().await;
    // Pulled up, nothing closed: inactive.
    assert_eq!(r.input().await, Input::Level(false));

    let start = Instant::now();
    let mut edges = bouncy(0, false); // the button closes to ground
    edges.extend(bouncy(400_000, true)); // and opens 400 ms later
    let play = fake.play(&edges);
    tokio::pin!(play);
    let first = tokio::select! {
        i = r.input() => i,
        _ = &mut play => r.input().await,
    };
    assert_eq!(first, Input::Level(true));
    let at = start.elapsed();
    // Reported 50 ms after the last bounce, not before, not much after.
    assert!(at >= Duration::from_micros(52_100) && at < Duration::from_micros(53_100), "pressed reported at {at:?}");
    play.await;
    assert_eq!(r.input().await, Input::Level(false));
    let at = start.elapsed();
    assert!(at >= Duration::from_micros(452_100) && at < Duration::from_micros(453_100), "released at {at:?}");
    r.quiet();
}

#[tokio::test(start_paused = true)]
async fn gpio_input_ignores_glitches_shorter_than_the_debounce() {
    let fake = FakeGpio::new();
    let mut r = Running::start(contact(&fake, true, Pull::Up));
    r.online().await;
    assert_eq!(r.input().await, Input::Level(false));
    let start = Instant::now();
    // Glitches: 5 ms and 40 ms low, and a chattering burst, each back high.
    let mut edges =
        vec![(0, CONTACT, false), (5_000, CONTACT, true), (100_000, CONTACT, false), (140_000, CONTACT, true)];
    for i in 0..20u64 {
        edges.push((300_000 + i * 4000, CONTACT, i % 2 == 1));
    }
    edges.push((380_000, CONTACT, true));
    // Then a real press at 600 ms.
    edges.extend(bouncy(600_000, false));
    fake.play(&edges).await;
    assert_eq!(r.input().await, Input::Level(true));
    let at = start.elapsed();
    assert!(at >= Duration::from_micros(652_100), "only the real press is reported, at {at:?}");
    r.quiet();
}

#[tokio::test(start_paused = true)]
async fn gpio_input_active_high_with_pull_down() {
    let fake = FakeGpio::new();
    fake.set_level(CONTACT, true); // a sensor already driving the line high
    let mut r = Running::start(contact(&fake, false, Pull::Down));
    r.online().await;
    assert_eq!(r.input().await, Input::Level(true));
    fake.play(&[(1_000, CONTACT, false)]).await;
    assert_eq!(r.input().await, Input::Level(false));
    fake.unplug();
    let err = timeout(DEADLINE, &mut r.task).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Disconnected);
    assert!(err.message.contains("gpio22"), "{err}");
}

// ---------------------------------------------------------------------------
// gpio_relay

const RELAY: LineNo = 18;

#[tokio::test]
async fn gpio_relay_drives_its_safe_level_at_open_and_at_stop() {
    let fake = FakeGpio::new();
    let mut relay = GpioRelay::with_backend(GpioRelayConfig { line: RELAY, active_low: false }, "lock", fake.backend());
    assert_eq!(fake.writes(), [(RELAY, false)], "opened inactive");
    relay.set(true).await.unwrap();
    relay.set(false).await.unwrap();
    relay.set(true).await.unwrap();
    drop(relay);
    assert_eq!(fake.writes(), [(RELAY, false), (RELAY, true), (RELAY, false), (RELAY, true), (RELAY, false)]);
    assert!(fake.output_open(RELAY), "the line stays driven, not floating");
    assert_eq!(fake.level(RELAY), Some(false));
}

#[tokio::test]
async fn gpio_relay_active_low_inverts_the_line() {
    let fake = FakeGpio::new();
    let mut relay = GpioRelay::with_backend(GpioRelayConfig { line: RELAY, active_low: true }, "lock", fake.backend());
    relay.set(true).await.unwrap();
    drop(relay);
    assert_eq!(fake.writes(), [(RELAY, true), (RELAY, false), (RELAY, true)]);
}

#[tokio::test]
async fn gpio_relay_retries_a_failed_open_at_the_next_set() {
    let fake = FakeGpio::new();
    let denied = DriverError::new(ErrorKind::PermissionDenied, "gpio18: /dev/gpiomem: permission denied");
    fake.fail_next_open(RELAY, denied.clone());
    let mut relay = GpioRelay::with_backend(GpioRelayConfig { line: RELAY, active_low: true }, "lock", fake.backend());
    assert!(fake.writes().is_empty());
    fake.fail_next_open(RELAY, denied.clone());
    assert_eq!(relay.set(false).await, Err(denied));
    relay.set(true).await.unwrap();
    // Opened at the safe level first, then driven active.
    assert_eq!(fake.writes(), [(RELAY, true), (RELAY, false)]);
}

// ---------------------------------------------------------------------------
// registration

fn kind(kind: &str, v: serde_json::Value) -> (Option<KindConfig>, ConfigErrors) {
    let mut errs = ConfigErrors::default();
    let mut sec = Section::new("devices[0]", &v, &mut errs).unwrap();
    let k = KindConfig::parse(kind, &mut sec, &mut errs);
    sec.finish(&mut errs);
    (k, errs)
}

#[test]
fn gpio_kinds_are_registered_with_their_claims() {
    let (k, errs) = kind("wiegand", serde_json::json!({"d0": 17, "d1": 27, "frame_gap_ms": 30}));
    assert!(errs.is_empty(), "{errs}");
    let k = k.unwrap();
    assert_eq!((k.kind(), k.role()), ("wiegand", Role::Input));
    assert_eq!(k.claims(), [Claim::GpioLine(17), Claim::GpioLine(27)]);
    assert!(k.input_driver("w").is_some() && k.output_driver("w").is_none());

    let (k, errs) = kind("gpio_input", serde_json::json!({"line": 22, "pull": "up"}));
    assert!(errs.is_empty(), "{errs}");
    let k = k.unwrap();
    assert_eq!((k.kind(), k.role()), ("gpio_input", Role::Input));
    assert_eq!(k.claims(), [Claim::GpioLine(22)]);

    let (k, errs) = kind("gpio_relay", serde_json::json!({"line": 18, "active_low": true}));
    assert!(errs.is_empty(), "{errs}");
    let k = k.unwrap();
    assert_eq!((k.kind(), k.role()), ("gpio_relay", Role::Output));
    assert_eq!(k.claims(), [Claim::GpioLine(18)]);
    assert!(k.input_driver("r").is_none());
    // Without a GPIO chip the selected backend cannot open the line; the
    // output still builds, and its first set says why it cannot drive the
    // line: the default (cdev) that there is no chip, rppal that this is no
    // Pi it knows. (The only test of this binary that uses the selection.)
    let no_chip =
        std::fs::read_dir("/dev").unwrap().flatten().all(|e| !e.file_name().to_string_lossy().starts_with("gpiochip"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    if no_chip {
        let mut out = k.output_driver("r").unwrap();
        let err = rt.block_on(out.set(false)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
        assert!(err.message.contains("no GPIO chip on this machine"), "{err}");
    }
    if !std::path::Path::new("/dev/gpiomem").exists() {
        use porter_drivers::gpio::{select, Backend, GpioSettings};
        select(&GpioSettings { backend: Backend::Rppal, chip: None });
        let mut out = k.output_driver("r").unwrap();
        let err = rt.block_on(out.set(false)).unwrap_err();
        select(&GpioSettings::default());
        assert!(err.message.contains("not a Raspberry Pi"), "{err}");
    }

    let (_, errs) = kind("gpio_relay", serde_json::json!({"line": 18, "backend": "fake"}));
    assert_eq!(errs.0.len(), 1, "no key selects the fake: {errs}");
    assert_eq!(errs.0[0].path, "devices[0].backend");
}
