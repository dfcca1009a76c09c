//! The injectable wall clock, at the bottom of the crate: the key service
//! and the runtime read the time through it, and tests inject their own.
//! (`runtime::clock` re-exports it, beside the local time and the clock's
//! trust.)

/// Where the daemon reads the time of day. Tests inject their own.
pub trait Clock: Send + Sync {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}
