//! Supervision: run an input driver, restart it with capped, jittered backoff
//! when it fails, stop it when told; reopen a device whose path comes back at
//! once ([`crate::hotplug`]).

use crate::contract::{InputDriver, InputSink};
use crate::error::{DriverError, ErrorKind};
use crate::hotplug::PathWatch;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Restart delays: doubling from `initial` up to `max`, with up to 25% jitter
/// so a room full of readers that lost power together do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    current: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        Backoff { initial, max, current: initial, seed }
    }

    /// The next delay; grows until `max`.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: jitter need not be cryptographic.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter_ms = (base.as_millis() as u64 / 4).max(1);
        base + Duration::from_millis(self.seed % jitter_ms)
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
    }
}

/// How a supervised driver ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was requested.
    Cancelled,
    /// The driver's source ended for good.
    Finished,
}

/// How a wait between two runs ended.
enum Waited {
    Cancelled,
    /// The backoff delay ran out.
    Elapsed,
    /// The device's path came back or changed: a device (re)plugged.
    PathBack,
}

/// Runs `driver` until `cancel` fires or the driver finishes, restarting it
/// after each failure. A run that lasted longer than the backoff cap resets
/// the backoff, so a device that fails once a day restarts quickly.
///
/// A driver that names the path it opens ([`InputDriver::watch_path`]) is
/// followed with inotify ([`PathWatch`]): while its path is away the
/// supervisor sleeps until it is back (no retries, no timer), and when the
/// path comes back or is replaced (a device plugged in) the backoff is reset
/// and the driver run at once. A path that is there but fails keeps the
/// backoff.
pub async fn supervise(
    name: &str,
    mut driver: Box<dyn InputDriver>,
    sink: InputSink,
    cancel: CancellationToken,
    mut backoff: Backoff,
) -> Ended {
    let mut watch = driver.watch_path().and_then(|path| match PathWatch::new(path) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(device = name, path = %path.display(), error = %e,
                "cannot watch the device's path (inotify); a device plugged back waits out the backoff");
            None
        }
    });
    loop {
        if let Some(w) = watch.as_mut() {
            // What happened to the path before this open does not matter: the
            // open sees it as it is now.
            if w.aim().is_err() || w.drain().await.is_err() {
                watch = None;
            }
        }
        let started = Instant::now();
        let result = tokio::select! {
            _ = cancel.cancelled() => return Ended::Cancelled,
            r = driver.run(&sink) => r,
        };
        match result {
            Ok(()) => {
                tracing::info!(device = name, "device input ended");
                sink.offline(DriverError::new(ErrorKind::Disconnected, "the device's input ended for good"));
                return Ended::Finished;
            }
            Err(e) => {
                if started.elapsed() > backoff.max {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                match watch.as_ref().filter(|w| !w.present()) {
                    Some(w) => tracing::warn!(device = name, error = %e, waiting_for = %w.path().display(),
                        "device failed; its path is away: reopening when it is back"),
                    None => {
                        tracing::warn!(device = name, error = %e, retry_ms = delay.as_millis() as u64, "device failed")
                    }
                }
                sink.offline(e);
                match wait(name, &mut watch, delay, &cancel).await {
                    Waited::Cancelled => return Ended::Cancelled,
                    Waited::Elapsed => {}
                    Waited::PathBack => backoff.reset(),
                }
            }
        }
    }
}

/// Waits between two runs: `delay`, cut short when the watched path changes;
/// only for the path while it is away. An inotify failure drops the watch
/// (with a warning) and falls back to the plain delay.
async fn wait(name: &str, watch: &mut Option<PathWatch>, delay: Duration, cancel: &CancellationToken) -> Waited {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    if let Some(w) = watch.as_mut() {
        match watch_wait(w, &mut sleep, cancel).await {
            Ok(waited) => return waited,
            Err(e) => {
                tracing::warn!(device = name, path = %w.path().display(), error = %e,
                    "watching the device's path failed; retrying with backoff only");
                *watch = None;
            }
        }
    }
    tokio::select! {
        _ = cancel.cancelled() => Waited::Cancelled,
        _ = &mut sleep => Waited::Elapsed,
    }
}

async fn watch_wait(
    w: &mut PathWatch,
    sleep: &mut std::pin::Pin<&mut tokio::time::Sleep>,
    cancel: &CancellationToken,
) -> std::io::Result<Waited> {
    // A path replaced while the driver ran (unplugged and plugged back
    // before the read failed) is a new device already.
    let mut touched = w.drain().await?;
    loop {
        w.aim()?;
        if !w.present() {
            // A symlink whose target is missing: the target's folder is not
            // watched, so the delay still applies.
            let dangling = w.path().symlink_metadata().is_ok();
            return Ok(tokio::select! {
                _ = cancel.cancelled() => Waited::Cancelled,
                r = w.appeared() => { r?; Waited::PathBack }
                _ = sleep.as_mut(), if dangling => Waited::Elapsed,
            });
        }
        if touched {
            return Ok(Waited::PathBack);
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(Waited::Cancelled),
            _ = sleep.as_mut() => return Ok(Waited::Elapsed),
            r = w.changed() => { r?; touched = true; }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{DeviceReport, Health, Report};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tokio::sync::mpsc;

    struct Flaky {
        runs: Arc<AtomicU32>,
        fail_times: u32,
    }

    #[async_trait]
    impl InputDriver for Flaky {
        async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
            let n = self.runs.fetch_add(1, Ordering::SeqCst);
            sink.online();
            if n < self.fail_times {
                Err(DriverError::new(ErrorKind::Disconnected, "gone"))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let d: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        for (got, base) in d.iter().zip([100u128, 200, 400, 800, 800, 800]) {
            assert!(*got >= base && *got < base + base / 4 + 1, "{got} vs {base}");
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(126));
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_a_failing_driver_and_reports_health_transitions() {
        let runs = Arc::new(AtomicU32::new(0));
        let (tx, mut rx) = mpsc::channel::<DeviceReport>(16);
        let sink = InputSink::new(3, tx);
        let ended = supervise(
            "flaky",
            Box::new(Flaky { runs: runs.clone(), fail_times: 3 }),
            sink,
            CancellationToken::new(),
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        )
        .await;
        assert_eq!(ended, Ended::Finished);
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        let mut health = Vec::new();
        while let Ok(r) = rx.try_recv() {
            assert_eq!(r.device, 3);
            if let Report::Health(h) = r.report {
                health.push(matches!(h, Health::Online));
            }
        }
        assert_eq!(health, [true, false, true, false, true, false, true, false]);
    }

    struct NeverOpens;

    #[async_trait]
    impl InputDriver for NeverOpens {
        async fn run(&mut self, _sink: &InputSink) -> Result<(), DriverError> {
            Err(DriverError::new(ErrorKind::NotFound, "/dev/ttyUSB9: no such device"))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_that_never_opens_is_reported_offline_once() {
        let (tx, mut rx) = mpsc::channel::<DeviceReport>(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervise(
            "missing",
            Box::new(NeverOpens),
            InputSink::new(0, tx),
            cancel.clone(),
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        cancel.cancel();
        task.await.unwrap();
        let reports: Vec<Report> = std::iter::from_fn(|| rx.try_recv().ok()).map(|r| r.report).collect();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(matches!(&reports[0], Report::Health(Health::Offline(e)) if e.kind == ErrorKind::NotFound));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_the_backoff_wait() {
        let (tx, _rx) = mpsc::channel::<DeviceReport>(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervise(
            "flaky",
            Box::new(Flaky { runs: Arc::default(), fail_times: u32::MAX }),
            InputSink::new(0, tx),
            cancel.clone(),
            Backoff::new(Duration::from_secs(10), Duration::from_secs(10)),
        ));
        tokio::task::yield_now().await;
        cancel.cancel();
        assert_eq!(task.await.unwrap(), Ended::Cancelled);
    }

    /// Fails while its path is missing or while `fail` is set, ends for good
    /// otherwise; counts its runs.
    struct OnPath {
        path: std::path::PathBuf,
        runs: Arc<AtomicU32>,
        fail: bool,
    }

    #[async_trait]
    impl InputDriver for OnPath {
        async fn run(&mut self, _sink: &InputSink) -> Result<(), DriverError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if !self.path.exists() {
                return Err(DriverError::new(ErrorKind::NotFound, "no such device"));
            }
            if self.fail {
                return Err(DriverError::new(ErrorKind::Other, "not a tty"));
            }
            Ok(())
        }

        fn watch_path(&self) -> Option<&std::path::Path> {
            Some(&self.path)
        }
    }

    fn on_path(
        path: &std::path::Path,
        fail: bool,
        backoff: Backoff,
    ) -> (tokio::task::JoinHandle<Ended>, Arc<AtomicU32>, CancellationToken) {
        let runs = Arc::new(AtomicU32::new(0));
        let (tx, rx) = mpsc::channel::<DeviceReport>(1024);
        std::mem::forget(rx);
        let cancel = CancellationToken::new();
        let driver = OnPath { path: path.to_path_buf(), runs: runs.clone(), fail };
        let task = tokio::spawn(supervise("dev", Box::new(driver), InputSink::new(0, tx), cancel.clone(), backoff));
        (task, runs, cancel)
    }

    // Real time: the watch is inotify, read through tokio's reactor.
    #[tokio::test]
    async fn a_missing_path_is_waited_for_and_run_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("by-id/dev");
        // A 20 ms backoff would retry about 25 times in the 500 ms below.
        let (task, runs, _cancel) =
            on_path(&path, false, Backoff::new(Duration::from_millis(20), Duration::from_millis(20)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "retried a path that is not there");
        std::fs::create_dir(dir.path().join("by-id")).unwrap();
        std::fs::write(&path, "").unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(2), task).await.expect("run when the path appeared");
        assert_eq!(ended.unwrap(), Ended::Finished);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_path_replaced_during_a_long_backoff_is_run_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev");
        std::fs::write(&path, "").unwrap();
        let (task, runs, cancel) = on_path(&path, true, Backoff::new(Duration::from_secs(30), Duration::from_secs(30)));
        while runs.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // Unplugged and plugged back: the 30 s delay is cut short.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        let t = Instant::now();
        while runs.load(Ordering::SeqCst) < 2 {
            assert!(t.elapsed() < Duration::from_secs(2), "not rerun within 2 s of the replug");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        assert_eq!(task.await.unwrap(), Ended::Cancelled);
    }

    #[tokio::test]
    async fn a_path_that_is_there_but_fails_keeps_its_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev");
        std::fs::write(&path, "").unwrap();
        // 100, 200, 400, 400 ms (up to 25% more): runs at 0, 0.1, 0.3, 0.7 s.
        let (task, runs, cancel) =
            on_path(&path, true, Backoff::new(Duration::from_millis(100), Duration::from_millis(400)));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let n = runs.load(Ordering::SeqCst);
        assert!((3..=5).contains(&n), "{n} runs in 1 s");
        cancel.cancel();
        assert_eq!(task.await.unwrap(), Ended::Cancelled);
    }
}
