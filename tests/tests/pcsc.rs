//! The `pcsc` driver through the real stack: pcsc-lite's client library, a
//! real pcscd with vsmartcard-vpcd's virtual readers, and a card emulator
//! speaking vpcd's protocol (porter_tests::vpcd). Every scenario holds the
//! PcscLab lock, so they run one after another, and apart from any other
//! test binary that uses pcscd.
//!
//! Waits are on conditions with deadlines: a report arriving, the card
//! seeing a command, pcscd polling the card a number of times (a window of
//! reader time used to show that something does NOT happen).

use porter_drivers::pcsc::{Pcsc, PcscConfig, PcscStats, ReaderPattern};
use porter_drivers::{supervise, Backoff, CardUid, DeviceReport, Ended, ErrorKind, Health, Input, InputSink, Report};
use porter_drivers::{DriverError, InputDriver};
use porter_tests::vpcd::{Card, PcscLab, PORT_0, PORT_1, READER_0, READER_1};
use porter_tests::DEADLINE;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const UID_A: [u8; 4] = [0x04, 0xA1, 0xB2, 0xC3];
const UID_B: [u8; 7] = [0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66];
const UID_C: [u8; 10] = [0x08, 1, 2, 3, 4, 5, 6, 7, 8, 9];
/// How long cancelling may take. A stop that only worked through the
/// thread's 1 s wait timeout (a lost cancel) would miss it.
const STOP_DEADLINE: Duration = Duration::from_millis(300);

fn config(reader: Option<&str>) -> PcscConfig {
    PcscConfig { reader: reader.map(|r| ReaderPattern::new(r).unwrap()) }
}

/// A supervised pcsc device and what it reports.
struct Device {
    id: &'static str,
    rx: mpsc::Receiver<DeviceReport>,
    stats: PcscStats,
    cancel: CancellationToken,
    task: Option<JoinHandle<Ended>>,
}

impl Device {
    fn start(id: &'static str, reader: Option<&str>) -> Device {
        let driver = Pcsc::new(id, config(reader));
        let stats = driver.stats();
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervise(
            id,
            Box::new(driver),
            InputSink::new(0, tx),
            cancel.clone(),
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        ));
        Device { id, rx, stats, cancel, task: Some(task) }
    }

    async fn next(&mut self, what: &str) -> Report {
        match tokio::time::timeout(DEADLINE, self.rx.recv()).await {
            Ok(Some(r)) => r.report,
            Ok(None) => panic!("{}: reports ended while waiting for {what}", self.id),
            Err(_) => panic!("{}: timed out waiting for {what}", self.id),
        }
    }

    async fn expect_online(&mut self) {
        let r = self.next("online").await;
        assert_eq!(r, Report::Health(Health::Online), "{}", self.id);
    }

    async fn expect_offline(&mut self) -> DriverError {
        match self.next("offline").await {
            Report::Health(Health::Offline(e)) => e,
            other => panic!("{}: expected offline, got {other:?}", self.id),
        }
    }

    /// The next report is the card `uid`.
    async fn expect_card(&mut self, uid: &[u8]) {
        let r = self.next("a card").await;
        assert_eq!(r, Report::Input(Input::Card(CardUid::from_bytes(uid).unwrap())), "{}", self.id);
    }

    fn expect_quiet(&mut self) {
        if let Ok(r) = self.rx.try_recv() {
            panic!("{}: unexpected report {:?}", self.id, r.report);
        }
    }

    /// Cancels the supervisor; asserts it and the thread end promptly.
    async fn stop(mut self) {
        let t0 = Instant::now();
        self.cancel.cancel();
        let ended = tokio::time::timeout(DEADLINE, self.task.take().unwrap()).await.expect("supervise ends").unwrap();
        assert_eq!(ended, Ended::Cancelled);
        assert!(t0.elapsed() < STOP_DEADLINE, "{}: cancelling took {:?}", self.id, t0.elapsed());
        wait_thread_gone(self.id).await;
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The kernel's name of a driver thread (15 bytes at most).
fn comm(id: &str) -> String {
    let mut n = format!("pcsc-{id}");
    n.truncate(15);
    n
}

/// This process's threads named after device `id`, with their CPU time in
/// clock ticks (user + system).
fn driver_threads(id: &str) -> Vec<u64> {
    let want = comm(id);
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.trim_end() != want {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the 1st, utime the
        // 12th, stime the 13th.
        let rest: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.push(ticks(11) + ticks(12));
    }
    out
}

/// Waits (briefly: the run's guard joins the thread before the future's drop
/// returns, so this only covers the kernel's bookkeeping) until no thread of
/// device `id` is left.
async fn wait_thread_gone(id: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !driver_threads(id).is_empty() {
        assert!(Instant::now() < deadline, "thread {} still runs after its driver was dropped", comm(id));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `cond` holds, up to DEADLINE.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The default reader is the first listed; a tap is read once, however long
/// the card is held; a new tap (of another card, or the same one again) is
/// read again; the thread sleeps while it waits.
#[tokio::test]
async fn each_tap_is_read_once_on_the_first_reader() {
    let _lab = PcscLab::acquire();
    let mut dev = Device::start("tap", None);
    dev.expect_online().await;
    // Another PC/SC client on the same reader: its connections change the
    // reader's state (in use) while the card is held, which is no new tap.
    let mut peer = Device::start("tap-peer", Some(READER_0));
    peer.expect_online().await;

    // A card on the second reader is not ours: pcscd sees it, we must not.
    let other = Card::tap(PORT_1, &[0xEE; 4]);
    other.wait_inserted();

    let a = Card::tap(PORT_0, &UID_A);
    dev.expect_card(&UID_A).await;
    peer.expect_card(&UID_A).await;
    let get_uid = vec![0xFF, 0xCA, 0x00, 0x00, 0x00];
    assert_eq!(a.wait("both read the UID", |l| l.uid_reads() >= 2).apdus, [get_uid.clone(), get_uid]);

    // Held until pcscd powered the idle card down (pcsc-lite 1.9 does after
    // a few seconds; or 12 presence polls, about 5 s, for a build that does
    // not), and 4 polls more: no second read, and the waiting thread burns
    // next to no CPU.
    let cpu_before: u64 = driver_threads("tap").iter().sum();
    let polls = a.log().polls();
    a.wait("pcscd powers the idle card down", |l| {
        l.controls.iter().rposition(|c| *c == 0) > l.controls.iter().rposition(|c| *c == 1) || l.polls() >= polls + 12
    });
    a.wait_polls(4);
    assert_eq!(a.uid_reads(), 2, "a held card is read once by each client");
    dev.expect_quiet();
    peer.expect_quiet();
    peer.stop().await;
    let cpu: u64 = driver_threads("tap").iter().sum::<u64>() - cpu_before;
    assert!(cpu <= 10, "the pcsc thread used {cpu} ticks of CPU while a card was held");

    // Another card after removal is read; so is the first one tapped again.
    a.remove();
    let b = Card::tap(PORT_0, &UID_B);
    dev.expect_card(&UID_B).await;
    b.remove();
    let a = Card::tap(PORT_0, &UID_A);
    dev.expect_card(&UID_A).await;
    a.remove();
    let c = Card::tap(PORT_0, &UID_C);
    dev.expect_card(&UID_C).await;
    c.remove();

    assert_eq!(other.uid_reads(), 0, "the second reader was never read");
    assert_eq!(dev.stats.reads(), 4);
    assert_eq!(dev.stats.unreadable(), 0);
    dev.expect_quiet();
    dev.stop().await;
}

/// `reader` picks a reader by a case-insensitive substring or a glob; taps on
/// other readers are not reported.
#[tokio::test]
async fn the_reader_pattern_picks_the_reader() {
    let _lab = PcscLab::acquire();
    for (id, pattern) in [("sel-sub", "pcd 00 01"), ("sel-glob", "VIRTUAL*01")] {
        let mut dev = Device::start(id, Some(pattern));
        dev.expect_online().await;
        let first = Card::tap(PORT_0, &UID_A);
        first.wait_inserted();
        let second = Card::tap(PORT_1, &UID_B);
        // The tap on the first reader came first; only the second is ours.
        dev.expect_card(&UID_B).await;
        first.wait_polls(2);
        assert_eq!(first.uid_reads(), 0, "{pattern}: {READER_0} must not be read");
        dev.expect_quiet();
        second.remove();
        first.remove();
        dev.stop().await;
    }
}

/// A refused GET DATA, an empty UID or an over-long one is counted and
/// dropped; the driver keeps reading.
#[tokio::test]
async fn unreadable_taps_are_counted_and_dropped() {
    let _lab = PcscLab::acquire();
    let mut dev = Device::start("unread", None);
    dev.expect_online().await;
    let mut long = vec![0x42; 11];
    long.extend([0x90, 0x00]);
    for (n, reply) in [vec![0x6A, 0x81], vec![0x90, 0x00], long, vec![0x90]].into_iter().enumerate() {
        let card = Card::tap_answering(PORT_0, &reply);
        let stats = dev.stats.clone();
        wait_until(&format!("unreadable tap {} counted", n + 1), || stats.unreadable() == n as u64 + 1).await;
        assert_eq!(card.uid_reads(), 1);
        card.remove();
    }
    let good = Card::tap(PORT_0, &UID_A);
    dev.expect_card(&UID_A).await;
    good.remove();
    assert_eq!(dev.stats.unreadable(), 4);
    dev.stop().await;
}

/// No matching reader: offline (not found), naming the readers there are;
/// the thread waits without spinning and cancels promptly.
#[tokio::test]
async fn a_missing_reader_is_reported_with_the_readers_there_are() {
    let _lab = PcscLab::acquire();
    let mut dev = Device::start("miss", Some("ACR122"));
    let e = dev.expect_offline().await;
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.message.contains("`ACR122`"), "{e}");
    let hint = e.hint.clone().unwrap();
    assert!(hint.contains(READER_0) && hint.contains(READER_1), "{e}");

    let cpu_before: u64 = driver_threads("miss").iter().sum();
    let card = Card::tap(PORT_0, &UID_A);
    card.wait_inserted();
    card.wait_polls(6);
    let cpu: u64 = driver_threads("miss").iter().sum::<u64>() - cpu_before;
    assert!(cpu <= 10, "the pcsc thread used {cpu} ticks of CPU while waiting for its reader");
    assert_eq!(card.uid_reads(), 0);
    dev.expect_quiet();
    dev.stop().await;
}

/// pcscd crashing (SIGKILL, with a card on a reader) or stopping (SIGTERM):
/// the device goes offline, comes back online with pcscd, and reads the next
/// tap. A device started while pcscd is down says pcscd is not running.
#[tokio::test]
async fn pcscd_restarts_are_survived() {
    let mut lab = PcscLab::acquire();
    let mut dev = Device::start("restart", None);
    dev.expect_online().await;
    let a = Card::tap(PORT_0, &UID_A);
    dev.expect_card(&UID_A).await;
    a.remove();

    // A crash while a card sits on the other reader.
    let held = Card::tap(PORT_1, &[0x77; 4]);
    held.wait_inserted();
    lab.kill_pcscd();
    let e = dev.expect_offline().await;
    assert_eq!(e.kind, ErrorKind::Disconnected, "{e}");
    assert!(e.message.contains("pcscd went away"), "{e}");
    held.wait("the connection closes with pcscd", |l| l.closed);

    // pcscd is down: a fresh device cannot even reach it.
    let mut late = Device::start("late", None);
    let e = late.expect_offline().await;
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.message.contains("pcscd is not running"), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("polkit"), "{e}");

    lab.start_pcscd();
    dev.expect_online().await;
    late.expect_online().await;
    late.stop().await;
    let b = Card::tap(PORT_0, &UID_B);
    dev.expect_card(&UID_B).await;
    b.remove();

    // A clean stop, then a start.
    lab.stop_pcscd();
    let e = dev.expect_offline().await;
    assert_eq!(e.kind, ErrorKind::Disconnected, "{e}");
    lab.start_pcscd();
    dev.expect_online().await;
    let c = Card::tap(PORT_0, &UID_C);
    dev.expect_card(&UID_C).await;
    c.remove();
    dev.expect_quiet();
    dev.stop().await;
}

/// Dropping the run future ends and joins the thread at once, whatever the
/// thread is doing: waiting for a card, waiting for its reader, or still
/// starting (the cancel that arrives before the wait begins must not be lost).
#[tokio::test]
async fn dropping_the_driver_ends_its_thread() {
    let _lab = PcscLab::acquire();

    async fn run_then_abort(id: &'static str, reader: Option<&str>, after: impl std::future::Future<Output = ()>) {
        let mut driver = Pcsc::new(id, config(reader));
        let (tx, _rx) = mpsc::channel(64);
        let sink = InputSink::new(0, tx);
        let task = tokio::spawn(async move { driver.run(&sink).await });
        after.await;
        let t0 = Instant::now();
        task.abort();
        let r = task.await;
        assert!(r.unwrap_err().is_cancelled(), "{id}: the run should have been cancelled");
        assert!(t0.elapsed() < STOP_DEADLINE, "{id}: dropping the run took {:?}", t0.elapsed());
        wait_thread_gone(id).await;
    }

    // Waiting for a card (online first).
    {
        let mut driver = Pcsc::new("drop-wait", config(None));
        let (tx, mut rx) = mpsc::channel(64);
        let sink = InputSink::new(0, tx);
        let task = tokio::spawn(async move { driver.run(&sink).await });
        let r = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap();
        assert_eq!(r.report, Report::Health(Health::Online));
        assert_eq!(driver_threads("drop-wait").len(), 1, "one named thread per run");
        let t0 = Instant::now();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(t0.elapsed() < STOP_DEADLINE, "dropping the run took {:?}", t0.elapsed());
        wait_thread_gone("drop-wait").await;
    }

    // Waiting for its reader to appear (only the hot-plug pseudo-reader).
    {
        let mut driver = Pcsc::new("drop-miss", config(Some("no such reader")));
        let (tx, mut rx) = mpsc::channel(64);
        let sink = InputSink::new(0, tx);
        let task = tokio::spawn(async move { driver.run(&sink).await });
        let r = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap();
        assert!(matches!(r.report, Report::Health(Health::Offline(ref e)) if e.kind == ErrorKind::NotFound));
        let t0 = Instant::now();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(t0.elapsed() < STOP_DEADLINE, "dropping the run took {:?}", t0.elapsed());
        wait_thread_gone("drop-miss").await;
    }

    // Dropped at every moment of its start: establishing the context,
    // listing readers, entering its first waits.
    for i in 0..25u64 {
        run_then_abort("drop-race", None, tokio::time::sleep(Duration::from_micros(i * 400))).await;
    }

    // Through the supervisor's cancellation, while a card is held.
    let mut dev = Device::start("drop-sup", None);
    dev.expect_online().await;
    let card = Card::tap(PORT_0, &UID_A);
    dev.expect_card(&UID_A).await;
    dev.stop().await;
    card.remove();
}
