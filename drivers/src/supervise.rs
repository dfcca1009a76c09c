//! Supervision: run an input driver, restart it with capped, jittered backoff
//! when it fails, stop it when told.

use crate::contract::{InputDriver, InputSink};
use crate::error::{DriverError, ErrorKind};
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

/// Runs `driver` until `cancel` fires or the driver finishes, restarting it
/// after each failure. A run that lasted longer than the backoff cap resets
/// the backoff, so a device that fails once a day restarts quickly.
pub async fn supervise(
    name: &str,
    mut driver: Box<dyn InputDriver>,
    sink: InputSink,
    cancel: CancellationToken,
    mut backoff: Backoff,
) -> Ended {
    loop {
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
                tracing::warn!(device = name, error = %e, retry_ms = delay.as_millis() as u64, "device failed");
                sink.offline(e);
                tokio::select! {
                    _ = cancel.cancelled() => return Ended::Cancelled,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
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
}
