//! Brute-force lockout of one input device. Sans-IO: the caller passes the
//! wall-clock time (unix ms, since the state outlives restarts) and the local
//! day number (for the daily cap).
//!
//! After `threshold` consecutive failures the device is locked for `base`,
//! doubling with each further failure up to `max`; both counts start over
//! with each new local day (a clock set back does not start them over: see
//! [`LockoutState::rebase`]). Independently, after
//! `daily_cap` failures in one local day the device refuses entries until the
//! day ends or an operator clears it: this also stops an insider who resets
//! the consecutive count with their own valid PIN between guesses.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub threshold: u32,
    pub base_ms: u64,
    pub max_ms: u64,
    pub daily_cap: u32,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy { threshold: 5, base_ms: 30_000, max_ms: 3_600_000, daily_cap: 20 }
    }
}

/// Why a device is locked, as reported in `lockout.engaged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engaged {
    /// Locked until this time (unix ms).
    Until(i64),
    /// The daily cap was reached: locked until the local day ends or cleared.
    DailyCap,
}

/// The persisted lockout state of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutState {
    pub consecutive: u32,
    pub locked_until_ms: i64,
    pub day: i32,
    pub day_failures: u32,
}

impl LockoutState {
    /// Whether entries at this device are refused now. A day before the
    /// recorded one (the clock set back across midnight) counts as the same
    /// day: only a later day lifts the daily cap.
    pub fn is_locked(&self, p: &LockoutPolicy, now_ms: i64, day: i32) -> bool {
        now_ms < self.locked_until_ms || (day <= self.day && self.day_failures >= p.daily_cap)
    }

    /// Records a failed attempt; returns what engaged, if anything.
    pub fn failure(&mut self, p: &LockoutPolicy, now_ms: i64, day: i32) -> Option<Engaged> {
        // Only a later day: a clock set back must not start the counts over;
        // its day becomes the state's, the counts carried over.
        if day < self.day {
            self.day = day;
        }
        if day > self.day {
            // A new local day starts both counts over, so a keypad left with
            // a long lockout after an attack does not punish tomorrow's first
            // typo with an hour's wait.
            self.day = day;
            self.day_failures = 0;
            self.consecutive = 0;
        }
        self.day_failures = self.day_failures.saturating_add(1);
        self.consecutive = self.consecutive.saturating_add(1);
        if self.day_failures >= p.daily_cap {
            return Some(Engaged::DailyCap);
        }
        if self.consecutive >= p.threshold {
            let doublings = (self.consecutive - p.threshold).min(40);
            let ms = p.base_ms.saturating_mul(1u64 << doublings).min(p.max_ms);
            self.locked_until_ms = now_ms.saturating_add(ms as i64);
            return Some(Engaged::Until(self.locked_until_ms));
        }
        None
    }

    /// A granted attempt resets the consecutive count (not the daily one).
    pub fn success(&mut self) {
        self.consecutive = 0;
    }

    /// The clock now says `today`, before the state's day (set back, or the
    /// state was written while the clock ran ahead): the counts carry over
    /// to today, so neither a clock set back lifts a daily cap nor a day
    /// recorded in the future keeps one beyond the next midnight. Called at
    /// start and after a clock step.
    pub fn rebase(&mut self, today: i32) {
        self.day = self.day.min(today);
    }

    /// An operator's `lockout.clear`.
    pub fn clear(&mut self) {
        *self = LockoutState { day: self.day, ..LockoutState::default() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progressive_lockout_doubles_to_the_cap() {
        let p = LockoutPolicy { daily_cap: 1000, ..Default::default() };
        let mut s = LockoutState::default();
        let mut now = 1_000_000i64;
        for _ in 0..4 {
            assert_eq!(s.failure(&p, now, 1), None);
        }
        let mut waits = Vec::new();
        for _ in 0..10 {
            match s.failure(&p, now, 1) {
                Some(Engaged::Until(t)) => {
                    assert!(s.is_locked(&p, t - 1, 1));
                    assert!(!s.is_locked(&p, t, 1));
                    waits.push((t - now) / 1000);
                    now = t;
                }
                o => panic!("{o:?}"),
            }
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
    }

    #[test]
    fn success_resets_consecutive_but_not_the_daily_cap() {
        let p = LockoutPolicy::default();
        let mut s = LockoutState::default();
        for i in 1..=19 {
            assert_eq!(s.failure(&p, 0, 7), None, "failure {i}");
            if i % 4 == 0 {
                s.success();
            }
        }
        assert_eq!(s.failure(&p, 0, 7), Some(Engaged::DailyCap));
        assert!(s.is_locked(&p, i64::MAX - 1, 7));
        // A new day lifts the daily cap.
        assert!(!s.is_locked(&p, 0, 8));
        // A new day starts the consecutive count over too.
        assert_eq!(s.failure(&p, 0, 8), None);
        assert_eq!((s.day_failures, s.consecutive), (1, 1));
    }

    #[test]
    fn a_clock_set_back_across_midnight_keeps_the_daily_cap() {
        let p = LockoutPolicy { threshold: 100, ..LockoutPolicy::default() };
        let mut s = LockoutState::default();
        for _ in 0..p.daily_cap {
            s.failure(&p, 0, 10);
        }
        assert!(s.is_locked(&p, 0, 10));
        // Two days back: still the capped day, and failures count on.
        assert!(s.is_locked(&p, 0, 8));
        s.failure(&p, 0, 8);
        // The failure on the earlier day carried the state back to it...
        assert_eq!((s.day, s.day_failures), (8, p.daily_cap + 1));
        // ...so the next day lifts it.
        assert!(!s.is_locked(&p, 0, 9));
        assert_eq!(s.failure(&p, 0, 9), None);
        assert_eq!((s.day, s.day_failures), (9, 1));
    }

    #[test]
    fn a_day_recorded_while_the_clock_ran_ahead_does_not_stick() {
        let p = LockoutPolicy { threshold: 100, ..LockoutPolicy::default() };
        let mut s = LockoutState::default();
        // Capped on day 1000 (a clock far ahead), then the clock is right: day 10.
        for _ in 0..p.daily_cap {
            s.failure(&p, 0, 1000);
        }
        s.rebase(10);
        assert!(s.is_locked(&p, 0, 10), "the day's count carries over to today");
        assert!(!s.is_locked(&p, 0, 11), "and ends at the next midnight");
        // Typos spread over the following days never add up to the cap.
        for day in 11..31 {
            assert_eq!(s.failure(&p, 0, day), None, "day {day}");
            assert!(!s.is_locked(&p, 0, day));
        }
    }

    #[test]
    fn clear_unlocks() {
        let p = LockoutPolicy::default();
        let mut s = LockoutState::default();
        for _ in 0..5 {
            s.failure(&p, 0, 1);
        }
        assert!(s.is_locked(&p, 1, 1));
        s.clear();
        assert!(!s.is_locked(&p, 1, 1));
        assert_eq!(s.failure(&p, 1, 1), None);
    }
}
