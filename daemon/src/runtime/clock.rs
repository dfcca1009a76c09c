//! The wall clock, injectable, and its conversion to the site's local time;
//! whether it can be trusted, and a watch over it.

use super::audit::{Audit, Draft};
use crate::event::Event;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use crate::time::{Clock, SystemClock};

/// Whether the kernel holds the system clock as synchronised: NTP daemons
/// (systemd-timesyncd, chrony, ntpd) report through `adjtimex`, so this is
/// the system's own NTP state whichever of them runs. `None` when it cannot
/// be read.
#[allow(unsafe_code)]
pub fn system_clock_synchronized() -> Option<bool> {
    // From <linux/timex.h>; libc exports them for musl only.
    const STA_UNSYNC: i32 = 0x0040;
    const TIME_ERROR: i32 = 5;
    // SAFETY: with `modes == 0` adjtimex only reads the kernel's NTP state
    // into the zeroed struct we own; no pointer outlives the call.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(state != TIME_ERROR && tx.status & STA_UNSYNC == 0)
}

pub use crate::config::clock::{SyncSource, Unsynchronized};

impl SyncSource {
    /// Whether the clock is synchronised now; `None` when it cannot be told.
    pub fn synchronized(&self) -> Option<bool> {
        match self {
            SyncSource::Kernel => system_clock_synchronized(),
            SyncSource::File(p) => Some(p.exists()),
        }
    }
}

/// Whether the clock is synchronised, as last seen by [`watch`]: shared with
/// the decision loop and the status document.
#[derive(Debug, Default)]
pub struct Trust(AtomicU8);

impl Trust {
    const UNKNOWN: u8 = 0;
    const SYNCED: u8 = 1;
    const UNSYNCED: u8 = 2;

    /// A state seen now from `source`.
    pub fn new(source: &SyncSource) -> Self {
        let t = Trust::default();
        t.set(source.synchronized());
        t
    }
    fn set(&self, s: Option<bool>) {
        let v = match s {
            None => Self::UNKNOWN,
            Some(true) => Self::SYNCED,
            Some(false) => Self::UNSYNCED,
        };
        self.0.store(v, Ordering::Relaxed);
    }
    /// `None` when the state cannot be read.
    pub fn synchronized(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            Self::SYNCED => Some(true),
            Self::UNSYNCED => Some(false),
            _ => None,
        }
    }
    /// Whether decisions must treat the clock as untrusted under `policy`:
    /// not known to be synchronised, and the policy denies.
    pub fn untrusted(&self, policy: Unsynchronized) -> bool {
        policy == Unsynchronized::Deny && self.0.load(Ordering::Relaxed) != Self::SYNCED
    }
}

/// How often [`watch`] looks at the clock.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);
/// A wall-clock step larger than this between two looks is a jump.
pub const JUMP_MS: i64 = 2_000;

/// What the watch tells the decision loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// The synchronisation changed (`None`: it cannot be read).
    Trust(Option<bool>),
    /// The wall clock stepped by this many ms against the monotonic clock.
    Jumped(i64),
}

/// Watches the clock until `cancel`: records `clock.synchronized` and
/// `clock.unsynchronized` when the state changes (and the state at start
/// when it is not synchronised), and `clock.jumped` when the wall clock
/// steps against the monotonic clock. Each change and step is also told to
/// `news`, so that decisions follow the trust, and what runs on wall-clock
/// time (lockouts) keeps its real length.
pub async fn watch(
    source: SyncSource,
    policy: Unsynchronized,
    trust: Arc<Trust>,
    clock: Arc<dyn Clock>,
    audit: Audit,
    news: impl Fn(News) + Send + 'static,
    cancel: CancellationToken,
) {
    let record = |state: Option<bool>| {
        let policy_name = policy.as_str();
        let event = if state == Some(true) {
            tracing::info!("system clock synchronised");
            Event::ClockSynchronized { policy: policy_name }
        } else {
            // `sync_state`: `unsynchronized`, or `unknown` when the state
            // cannot be read (adjtimex refused, say): both count as not synchronised.
            tracing::warn!(
                policy = policy.as_str(),
                sync_state = if state.is_none() { "unknown" } else { "unsynchronized" },
                "system clock not synchronised: keys bound by time (schedules, validity dates) of couriers and residents are {}",
                if policy == Unsynchronized::Deny { "denied (clock_unsynchronized) until it is" } else { "decided on it as it is" }
            );
            Event::ClockUnsynchronized { policy: policy_name }
        };
        audit.record(Draft { ts_ms: clock.now_ms(), event });
    };
    let mut last = trust.synchronized();
    if last != Some(true) {
        record(last);
    }
    let (mut wall, mut mono) = (clock.now_ms(), tokio::time::Instant::now());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let state = source.synchronized();
        trust.set(state);
        if state != last {
            record(state);
            news(News::Trust(state));
            last = state;
        }
        let (w, m) = (clock.now_ms(), tokio::time::Instant::now());
        let step = (w - wall) - m.duration_since(mono).as_millis() as i64;
        if step.abs() > JUMP_MS {
            tracing::warn!(by_ms = step, "the wall clock jumped");
            audit.record(Draft { ts_ms: w, event: Event::ClockJumped { by_ms: step } });
            news(News::Jumped(step));
        }
        (wall, mono) = (w, m);
    }
}

pub use crate::access::schedule::local;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    struct SetClock(AtomicI64);
    impl Clock for SetClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_reports_sync_changes_and_jumps() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("synced");
        let source = SyncSource::File(flag.clone());
        let store = crate::store::Store::temporary().unwrap();
        let (audit, _thread) = super::super::audit::start(store, 10_000).unwrap();
        let mut events = audit.subscribe();
        let trust = Arc::new(Trust::new(&source));
        assert!(trust.untrusted(Unsynchronized::Deny) && !trust.untrusted(Unsynchronized::Allow));
        let clock = Arc::new(SetClock(AtomicI64::new(1_000_000)));
        let (tx, mut jumps) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(watch(
            source,
            Unsynchronized::Deny,
            trust.clone(),
            clock.clone(),
            audit,
            move |n| tx.send(n).unwrap(),
            cancel.clone(),
        ));
        let mut next = async || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match events.try_recv() {
                    Ok(e) => return e.json.clone(),
                    Err(_) => {
                        assert!(std::time::Instant::now() < deadline, "no event within 10 s");
                        // The writer is a real thread: let it run.
                        std::thread::sleep(Duration::from_millis(1));
                        tokio::task::yield_now().await;
                    }
                }
            }
        };
        assert_eq!(next().await["type"], "clock.unsynchronized");
        // Two seconds on both clocks: no jump. Then the flag appears.
        std::fs::write(&flag, "").unwrap();
        clock.0.fetch_add(2_000, Ordering::SeqCst);
        tokio::time::sleep(WATCH_EVERY + Duration::from_millis(1)).await;
        assert_eq!(next().await["type"], "clock.synchronized");
        assert!(!trust.untrusted(Unsynchronized::Deny));
        assert_eq!(jumps.try_recv().ok(), Some(News::Trust(Some(true))));
        assert!(jumps.try_recv().is_err());
        // An hour's step forward of the wall clock within two seconds.
        clock.0.fetch_add(3_600_000 + 2_000, Ordering::SeqCst);
        tokio::time::sleep(WATCH_EVERY).await;
        let e = next().await;
        assert_eq!((e["type"].as_str(), e["by_ms"].as_i64()), (Some("clock.jumped"), Some(3_600_000)), "{e}");
        assert_eq!(jumps.recv().await, Some(News::Jumped(3_600_000)));
        cancel.cancel();
        task.await.unwrap();
    }

    #[test]
    fn the_kernel_ntp_state_can_be_read() {
        // Synchronised or not depends on the machine; that it is readable does not.
        assert!(system_clock_synchronized().is_some());
    }

    #[test]
    fn local_time_follows_daylight_saving() {
        use crate::access::schedule::LocalTime;
        let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
        // 2026-03-08 06:30Z is 01:30 EST; an hour later it is 03:30 EDT.
        let before = chrono::DateTime::parse_from_rfc3339("2026-03-08T06:30:00Z").unwrap().timestamp_millis();
        assert_eq!(local(tz, before).0, LocalTime { weekday: 6, minute: 90 });
        assert_eq!(local(tz, before + 3_600_000).0, LocalTime { weekday: 6, minute: 210 });
        assert_eq!(local(chrono_tz::UTC, 0).0, LocalTime { weekday: 3, minute: 0 });
    }
}
