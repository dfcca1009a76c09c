//! The decision latency the controller measures on itself: from the moment a
//! driver handed over a key's last byte or a card (the report's `at`) to the
//! moment the door's lock command is issued, for every grant.
//!
//! Cheap on the decision path: recording is one `fetch_add` and one atomic
//! store into a fixed ring of [`WINDOW`] slots, no lock and no allocation.
//! The status document reads the ring (off the path, at most a few times a
//! second), sorts a copy and reports p50, p99 and the worst of the grants of
//! the last [`WINDOW_S`] seconds among the last [`WINDOW`] grants.

use crate::provision::status::LatencyFigures as Figures;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Grants kept, at most.
pub const WINDOW: usize = 1024;
/// Grants older than this are left out of the figures.
pub const WINDOW_S: u64 = 15 * 60;

/// A ring of the last [`WINDOW`] measurements. Each slot packs the second
/// it was taken (since `start`, plus one so that 0 means empty) in the high
/// 32 bits and the latency in microseconds (capped) in the low 32.
pub struct Latency {
    start: Instant,
    next: AtomicUsize,
    slots: [AtomicU64; WINDOW],
}

impl Default for Latency {
    fn default() -> Self {
        Latency { start: Instant::now(), next: AtomicUsize::new(0), slots: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl Latency {
    /// Records a grant whose input arrived at `arrived`, now. No allocation.
    pub fn record(&self, arrived: Instant) {
        let now = Instant::now();
        let us = now.saturating_duration_since(arrived).as_micros().min(u32::MAX as u128) as u64;
        let sec = now.saturating_duration_since(self.start).as_secs().min(u32::MAX as u64 - 1) + 1;
        let i = self.next.fetch_add(1, Relaxed) % WINDOW;
        self.slots[i].store((sec << 32) | us, Relaxed);
    }

    /// The figures over the window, as of now.
    pub fn figures(&self) -> Figures {
        self.figures_at(self.start.elapsed())
    }

    fn figures_at(&self, since_start: Duration) -> Figures {
        let now = since_start.as_secs() + 1;
        let mut v: Vec<u64> = self
            .slots
            .iter()
            .map(|s| s.load(Relaxed))
            .filter(|&s| s != 0 && now.saturating_sub(s >> 32) <= WINDOW_S)
            .map(|s| s & u32::MAX as u64)
            .collect();
        v.sort_unstable();
        // Nearest rank: the smallest value with at least p% at or below it.
        let rank = |p: u64| v.get(((v.len() as u64 * p).div_ceil(100)).saturating_sub(1) as usize).copied();
        Figures {
            grants: v.len() as u64,
            max_us: v.last().copied(),
            p50_us: rank(50),
            p99_us: rank(99),
            window_s: WINDOW_S,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_nearest_rank_percentiles_of_the_recent_grants() {
        let l = Latency::default();
        assert_eq!(l.figures().grants, 0);
        assert_eq!(l.figures().p50_us, None);
        // 1..=100 µs, stored directly (record() measures real time).
        for us in 1..=100u64 {
            let i = l.next.fetch_add(1, Relaxed);
            l.slots[i].store((1 << 32) | us, Relaxed);
        }
        let f = l.figures_at(Duration::ZERO);
        assert_eq!((f.grants, f.p50_us, f.p99_us, f.max_us), (100, Some(50), Some(99), Some(100)));
        // 16 minutes later they are out of the window.
        assert_eq!(l.figures_at(Duration::from_secs(16 * 60)).grants, 0);
    }

    #[test]
    fn the_ring_keeps_the_last_window_of_grants() {
        let l = Latency::default();
        let long_ago = Instant::now();
        for _ in 0..WINDOW + 10 {
            l.record(long_ago);
        }
        let f = l.figures();
        assert_eq!(f.grants, WINDOW as u64);
        assert!(f.p50_us.unwrap() <= f.p99_us.unwrap() && f.p99_us <= f.max_us);
    }
}
