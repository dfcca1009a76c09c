//! The serial kinds through their real protocols over pseudo-terminal pairs.
//!
//! Each test opens a pty pair and gives the driver a symlink to the slave (as
//! udev's `/dev/serial/by-id/...` names are), then plays the keypad, scanner,
//! reader or relay board on the master side. An unplug is the symlink
//! removed and the master closed; a replug is a new pty behind the same
//! symlink. Every wait has a deadline; nothing sleeps before an assertion.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use porter_drivers::contract::{CardUid, Health, Input, InputDriver, InputSink, Output, Report};
use porter_drivers::error::ErrorKind;
use porter_drivers::fake::Reports;
use porter_drivers::serial::{PortSettings, SerialStats};
use porter_drivers::serial_keypad::{SerialKeypad, SerialKeypadConfig};
use porter_drivers::serial_qr::{SerialQr, SerialQrConfig, Terminator};
use porter_drivers::serial_relay::{RelayProtocol, SerialRelay, SerialRelayConfig};
use porter_drivers::serial_rfid::{RfidFormat, SerialRfid, SerialRfidConfig};
use porter_drivers::supervise::{supervise, Backoff};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

/// How long any expected event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(5);

/// The device end of a pty pair: the test writes what the device would send
/// and reads what the driver sent it.
struct Pty {
    /// The master, for writing and (a dup of it) for reading. tokio's pipe
    /// types drive any pollable fd, a pty master included, without unsafe.
    tx: pipe::Sender,
    rx: tokio::sync::Mutex<pipe::Receiver>,
    /// Held so the pty stays configured until the device is "unplugged".
    _slave: OwnedFd,
    slave_path: PathBuf,
}

impl Pty {
    fn open() -> Pty {
        let pair = openpty(None, None).expect("openpty");
        // Raw from the start, as a real UART is; the driver sets raw again.
        let mut t = tcgetattr(&pair.slave).unwrap();
        cfmakeraw(&mut t);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &t).unwrap();
        let slave_path = nix::unistd::ttyname(&pair.slave).unwrap();
        // The pipe types expect a non-blocking fd; the dup shares the flag.
        fcntl(pair.master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        let rx = pipe::Receiver::from_owned_fd_unchecked(pair.master.try_clone().unwrap()).unwrap();
        let tx = pipe::Sender::from_owned_fd_unchecked(pair.master).unwrap();
        Pty { tx, rx: tokio::sync::Mutex::new(rx), _slave: pair.slave, slave_path }
    }

    /// Opens a pty and points `link` at its slave, replacing an old link.
    fn plug(link: &Path) -> Pty {
        let pty = Pty::open();
        let tmp = link.with_extension("new");
        std::os::unix::fs::symlink(&pty.slave_path, &tmp).unwrap();
        std::fs::rename(&tmp, link).unwrap();
        pty
    }

    /// Removes the link (udev does on unplug) and closes the pty.
    fn unplug(self, link: &Path) {
        std::fs::remove_file(link).unwrap();
        drop(self);
    }

    async fn write(&self, bytes: &[u8]) {
        let mut rest = bytes;
        timeout(DEADLINE, async {
            while !rest.is_empty() {
                self.tx.writable().await.unwrap();
                match self.tx.try_write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("write to the pty master: {e}"),
                }
            }
        })
        .await
        .expect("write timed out");
    }

    /// Reads exactly `n` bytes the driver wrote, within the deadline.
    async fn read(&self, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        let mut rx = self.rx.lock().await;
        timeout(DEADLINE, rx.read_exact(&mut out))
            .await
            .unwrap_or_else(|_| panic!("the driver did not write {n} bytes in time"))
            .unwrap();
        out
    }
}

/// A temporary folder with a symlink path in it, as udev would provide.
fn link_dir() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("serial-by-id-test");
    (dir, link)
}

fn settings(link: &Path) -> PortSettings {
    PortSettings::new(link.to_str().unwrap())
}

/// A driver running under the supervisor, as the daemon runs it.
struct Running {
    reports: Reports,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
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
    fn start(driver: Box<dyn InputDriver>) -> Running {
        let (sink, reports) = Reports::channel(7, 256, DEADLINE);
        let cancel = CancellationToken::new();
        let backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                supervise("test", driver, sink, cancel, backoff).await;
            }
        });
        Running { reports, cancel, task }
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

fn key(c: char) -> Input {
    Input::Key(c)
}

fn qr(s: &str) -> Input {
    Input::Qr(s.into())
}

fn card(hex: &str) -> Input {
    Input::Card(CardUid::parse_hex(hex).unwrap())
}

fn keypad(link: &Path) -> (Box<dyn InputDriver>, SerialStats) {
    let d = SerialKeypad::new("keypad", SerialKeypadConfig { serial: settings(link) });
    let stats = d.stats();
    (Box::new(d), stats)
}

#[tokio::test]
async fn keypad_keys_with_and_without_line_endings_and_a_garbled_byte() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (driver, stats) = keypad(&link);
    let mut run = Running::start(driver);
    run.online().await;

    pty.write(b"12").await;
    assert_eq!(run.input().await, key('1'));
    assert_eq!(run.input().await, key('2'));
    pty.write(b"3\r\n*\n#\r").await;
    for c in ['3', '*', '#'] {
        assert_eq!(run.input().await, key(c));
    }
    pty.write(b"4x5").await;
    assert_eq!(run.input().await, key('4'));
    assert_eq!(run.input().await, key('5'));
    assert_eq!(stats.garbled(), 1);
    run.silent_for(Duration::from_millis(50)).await;
    run.stop().await;
}

/// The budget is well under a millisecond from the last byte to the report;
/// on a shared test machine we check the median stays far from the tens of
/// milliseconds a timeout-based read or line buffering would cost.
#[tokio::test]
async fn keypad_reports_each_key_as_its_byte_arrives() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (driver, _) = keypad(&link);
    let mut run = Running::start(driver);
    run.online().await;
    let mut lat = Vec::new();
    for i in 0..30u8 {
        let c = char::from(b'0' + i % 10);
        pty.write(&[c as u8]).await;
        let t = Instant::now();
        assert_eq!(run.input().await, key(c));
        lat.push(t.elapsed());
    }
    lat.sort();
    let median = lat[lat.len() / 2];
    eprintln!("keypad latency: median {median:?}, max {:?}", lat[lat.len() - 1]);
    assert!(median < Duration::from_millis(20), "median {median:?}");
    run.stop().await;
}

fn qr_driver(
    link: &Path,
    terminator: Terminator,
    prefix: &str,
    suffix: &str,
    max: usize,
) -> (Box<dyn InputDriver>, SerialStats) {
    let d = SerialQr::new(
        "scanner",
        SerialQrConfig {
            serial: settings(link),
            terminator,
            prefix: prefix.into(),
            suffix: suffix.into(),
            max_length: max,
        },
    );
    let stats = d.stats();
    (Box::new(d), stats)
}

#[tokio::test]
async fn qr_each_terminator() {
    for (terminator, frames, expect) in [
        (Terminator::Cr, &b"TOKEN-CR\r\rsecond\r"[..], ["TOKEN-CR", "second"]),
        (Terminator::Lf, &b"TOKEN-LF\n\nsecond\n"[..], ["TOKEN-LF", "second"]),
        (Terminator::CrLf, &b"TOKEN\rCRLF\r\n\r\nsecond\r\n"[..], ["TOKEN\rCRLF", "second"]),
    ] {
        let (_dir, link) = link_dir();
        let pty = Pty::plug(&link);
        let (driver, stats) = qr_driver(&link, terminator, "", "", 512);
        let mut run = Running::start(driver);
        run.online().await;
        pty.write(frames).await;
        for e in expect {
            assert_eq!(run.input().await, qr(e), "{terminator:?}");
        }
        run.silent_for(Duration::from_millis(30)).await;
        assert_eq!((stats.garbled(), stats.overlong()), (0, 0));
        run.stop().await;
    }
}

#[tokio::test]
async fn qr_prefix_and_suffix_are_stripped() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (driver, stats) = qr_driver(&link, Terminator::Cr, "]Q1", "\u{3}", 512);
    let mut run = Running::start(driver);
    run.online().await;
    pty.write(b"]Q1PKG-4471-XY\x03\r").await;
    assert_eq!(run.input().await, qr("PKG-4471-XY"));
    // Without its prefix a frame is dropped and counted; the next one reads.
    pty.write(b"PKG-1\x03\r]Q1PKG-2\x03\r").await;
    assert_eq!(run.input().await, qr("PKG-2"));
    assert_eq!(stats.garbled(), 1);
    run.stop().await;
}

#[tokio::test]
async fn qr_an_overlong_frame_is_dropped_and_the_next_one_read() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (driver, stats) = qr_driver(&link, Terminator::Cr, "", "", 16);
    let mut run = Running::start(driver);
    run.online().await;
    let mut noise = vec![b'A'; 10_000];
    noise.extend(b"\r0123456789abcdef\r");
    pty.write(&noise).await;
    assert_eq!(run.input().await, qr("0123456789abcdef"));
    assert_eq!(stats.overlong(), 1);
    run.stop().await;
}

#[tokio::test]
async fn qr_a_frame_split_over_several_writes() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (driver, _) = qr_driver(&link, Terminator::CrLf, "", "", 512);
    let mut run = Running::start(driver);
    run.online().await;
    // Each pause lets the driver read the chunk on its own; nothing may be
    // reported before the terminator's last byte.
    for chunk in [&b"PKG-"[..], b"0042", b"\r"] {
        pty.write(chunk).await;
        run.silent_for(Duration::from_millis(40)).await;
    }
    pty.write(b"\n").await;
    assert_eq!(run.input().await, qr("PKG-0042"));
    run.stop().await;
}

/// An RDM6300 frame: STX, 10 hex digits of data, 2 of XOR checksum, ETX.
fn rdm6300(data: [u8; 5]) -> Vec<u8> {
    let check = data.iter().fold(0, |x, b| x ^ b);
    let mut f = vec![0x02];
    for b in data.iter().chain([check].iter()) {
        f.extend(format!("{b:02X}").bytes());
    }
    f.push(0x03);
    f
}

fn rfid_driver(link: &Path, format: RfidFormat, window_ms: u64) -> (Box<dyn InputDriver>, SerialStats) {
    let d = SerialRfid::new("reader", SerialRfidConfig { serial: settings(link), format, repeat_window_ms: window_ms });
    let stats = d.stats();
    (Box::new(d), stats)
}

#[tokio::test]
async fn rfid_rdm6300_checksum_and_repeat_window() {
    // Long enough that a loaded test machine still writes the repeats
    // within it.
    let window = Duration::from_millis(1000);
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (driver, stats) = rfid_driver(&link, RfidFormat::Rdm6300, window.as_millis() as u64);
    let mut run = Running::start(driver);
    run.online().await;

    let a = rdm6300([0x1A, 0x00, 0x3B, 0x9C, 0x4E]);
    let b = rdm6300([0x05, 0x00, 0x12, 0x34, 0x56]);
    // Known frame from the RDM6300 datasheet's layout: checksum F3.
    assert_eq!(a, b"\x021A003B9C4EF3\x03");
    let mut bad = a.clone();
    bad[12] = b'4'; // checksum F4
    pty.write(&bad).await;
    pty.write(&a).await;
    assert_eq!(run.input().await, card("1a003b9c4e"));
    assert_eq!(stats.garbled(), 1);

    // The reader repeats while the card is held: dropped. A different card
    // after the repeats proves they were dropped, not late.
    pty.write(&[a.clone(), a.clone(), b.clone()].concat()).await;
    assert_eq!(run.input().await, card("0500123456"));
    assert_eq!(stats.repeats(), 2);
    // Another card ended the run: the first one counts again.
    pty.write(&a).await;
    assert_eq!(run.input().await, card("1a003b9c4e"));

    // After the window, the same card counts again, once.
    tokio::time::sleep(window + Duration::from_millis(100)).await; // the card is away
    pty.write(&[a.clone(), a.clone(), b.clone()].concat()).await;
    assert_eq!(run.input().await, card("1a003b9c4e"));
    assert_eq!(run.input().await, card("0500123456"));
    assert_eq!(stats.repeats(), 3);
    run.stop().await;
}

#[tokio::test]
async fn rfid_hex_and_decimal_lines() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (driver, stats) = rfid_driver(&link, RfidFormat::HexLines, 1000);
    let mut run = Running::start(driver);
    run.online().await;
    pty.write(b"04A1B2C3D4E580\r\nnot-hex\r\n04:a1:b2:c3\n").await;
    assert_eq!(run.input().await, card("04a1b2c3d4e580"));
    assert_eq!(run.input().await, card("04a1b2c3"));
    assert_eq!(stats.garbled(), 1);
    run.stop().await;

    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (driver, _) = rfid_driver(&link, RfidFormat::DecimalLines, 1000);
    let mut run = Running::start(driver);
    run.online().await;
    pty.write(b"0012345678\r\n4294967295\r\n").await;
    assert_eq!(run.input().await, card("bc614e"));
    assert_eq!(run.input().await, card("ffffffff"));
    run.stop().await;
}

#[tokio::test]
async fn unplug_reports_offline_and_a_replug_at_the_same_link_reads_again() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (driver, _) = keypad(&link);
    let mut run = Running::start(driver);
    run.online().await;
    pty.write(b"1").await;
    assert_eq!(run.input().await, key('1'));

    pty.unplug(&link);
    match run.next().await {
        Report::Health(Health::Offline(e)) => assert_eq!(e.kind, ErrorKind::Disconnected, "{e}"),
        other => panic!("expected offline, got {other:?}"),
    }

    let pty = Pty::plug(&link);
    run.online().await;
    pty.write(b"2").await;
    assert_eq!(run.input().await, key('2'));
    run.stop().await;
}

#[tokio::test]
async fn the_driver_returns_disconnected_when_the_master_closes() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let (mut driver, _) = keypad(&link);
    let (tx, mut rx) = mpsc::channel(16);
    let sink = InputSink::new(0, tx);
    let run = tokio::spawn(async move { driver.run(&sink).await });
    assert_eq!(timeout(DEADLINE, rx.recv()).await.unwrap().unwrap().report, Report::Health(Health::Online));
    pty.unplug(&link);
    let e = timeout(DEADLINE, run).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Disconnected, "{e}");
}

fn relay(link: &Path, protocol: RelayProtocol, channel: u32) -> SerialRelay {
    SerialRelay::new(
        &format!("relay{channel}"),
        SerialRelayConfig { serial: settings(link), protocol, channel, address: 1 },
    )
}

#[tokio::test]
async fn relay_lcus_two_channels_share_one_port() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    // Each would fail to open the port exclusively if they did not share it.
    let mut ch1 = relay(&link, RelayProtocol::Lcus, 1);
    let mut ch2 = relay(&link, RelayProtocol::Lcus, 2);
    ch1.set(true).await.unwrap();
    assert_eq!(pty.read(4).await, [0xA0, 0x01, 0x01, 0xA2]);
    let busy = settings(&link).open().expect_err("the port is open exclusively");
    assert!(busy.message.contains("port busy"), "{busy}");
    ch2.set(true).await.unwrap();
    assert_eq!(pty.read(4).await, [0xA0, 0x02, 0x01, 0xA3]);
    ch1.set(false).await.unwrap();
    assert_eq!(pty.read(4).await, [0xA0, 0x01, 0x00, 0xA1]);
    ch2.set(false).await.unwrap();
    assert_eq!(pty.read(4).await, [0xA0, 0x02, 0x00, 0xA2]);
}

#[tokio::test]
async fn relay_reopens_after_the_board_was_replugged() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let mut ch = relay(&link, RelayProtocol::Lcus, 3);
    ch.set(true).await.unwrap();
    assert_eq!(pty.read(4).await, [0xA0, 0x03, 0x01, 0xA4]);
    pty.unplug(&link);
    let e = ch.set(false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Disconnected, "{e}");
    // Still unplugged: the reopen finds nothing.
    let e = ch.set(false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let pty = Pty::plug(&link);
    ch.set(false).await.unwrap();
    assert_eq!(pty.read(4).await, [0xA0, 0x03, 0x00, 0xA3]);
}

/// Plays a Modbus board: reads the 8-byte request and writes `reply(request)`.
async fn modbus_exchange(
    pty: &Pty,
    relay: SerialRelay,
    on: bool,
    reply: impl Fn(&[u8]) -> Vec<u8>,
) -> (Vec<u8>, SerialRelay, Result<(), porter_drivers::DriverError>, Duration) {
    let started = Instant::now();
    let task = tokio::spawn(async move {
        let mut relay = relay;
        let r = relay.set(on).await;
        (relay, r)
    });
    let request = pty.read(8).await;
    pty.write(&reply(&request)).await;
    let (relay, result) = timeout(DEADLINE, task).await.unwrap().unwrap();
    (request, relay, result, started.elapsed())
}

#[tokio::test]
async fn relay_modbus_write_coil_and_its_echo() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let ch = relay(&link, RelayProtocol::Modbus, 1);

    let (req, ch, result, _) = modbus_exchange(&pty, ch, true, |r| r.to_vec()).await;
    assert_eq!(req, [0x01, 0x05, 0x00, 0x00, 0xFF, 0x00, 0x8C, 0x3A]);
    result.unwrap();

    let (req, ch, result, _) = modbus_exchange(&pty, ch, false, |r| r.to_vec()).await;
    assert_eq!(req, [0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0xCD, 0xCA]);
    result.unwrap();

    // A wrong echo is a protocol error.
    let (_, ch, result, _) = modbus_exchange(&pty, ch, true, |r| {
        let mut r = r.to_vec();
        r[4] = 0x00;
        r
    })
    .await;
    assert_eq!(result.unwrap_err().kind, ErrorKind::Protocol);

    // An exception reply (illegal data address) is a protocol error naming it.
    let (_, ch, result, _) = modbus_exchange(&pty, ch, true, |_| vec![0x01, 0x85, 0x02, 0xC3, 0x51]).await;
    let e = result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert!(e.message.contains("exception 2"), "{e}");

    // No reply: a protocol error, and the caller is not held for long.
    let (_, mut ch, result, took) = modbus_exchange(&pty, ch, true, |_| Vec::new()).await;
    assert_eq!(result.unwrap_err().kind, ErrorKind::Protocol);
    assert!(took < Duration::from_millis(400), "took {took:?}");

    // The next command reopens the port and works.
    let task = tokio::spawn(async move { ch.set(true).await });
    let req = pty.read(8).await;
    assert_eq!(req, [0x01, 0x05, 0x00, 0x00, 0xFF, 0x00, 0x8C, 0x3A]);
    pty.write(&req).await;
    timeout(DEADLINE, task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn relay_modbus_second_coil_on_another_slave() {
    let (_dir, link) = link_dir();
    let pty = Pty::plug(&link);
    let ch = SerialRelay::new(
        "relay",
        SerialRelayConfig { serial: settings(&link), protocol: RelayProtocol::Modbus, channel: 2, address: 3 },
    );
    let (req, _, result, _) = modbus_exchange(&pty, ch, true, |r| r.to_vec()).await;
    // Slave 3, coil 1 (channel 2), on; CRC computed independently.
    assert_eq!(req, [0x03, 0x05, 0x00, 0x01, 0xFF, 0x00, 0xDC, 0x18]);
    result.unwrap();
}

#[tokio::test]
async fn relays_sharing_a_port_with_different_framing_fail() {
    let (_dir, link) = link_dir();
    let _pty = Pty::plug(&link);
    let _ch1 = relay(&link, RelayProtocol::Lcus, 1);
    let mut serial = settings(&link);
    serial.baud = 115200;
    let mut ch2 =
        SerialRelay::new("relay2", SerialRelayConfig { serial, protocol: RelayProtocol::Lcus, channel: 2, address: 1 });
    let e = ch2.set(true).await.unwrap_err();
    assert!(e.message.contains("another baud or framing"), "{e}");
}
