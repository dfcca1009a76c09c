//! The wall clock, injectable, and its conversion to the site's local time.

use crate::access::schedule::LocalTime;
use chrono::{Datelike, Timelike};

/// Where the runtime reads the time of day. Tests inject their own.
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

/// The local weekday and minute of `ms` in `tz`, and the local day number
/// (days since 0001-01-01) that the daily lockout cap counts by. `chrono-tz`
/// applies daylight-saving rules, so 02:30 on a spring-forward night never
/// occurs and 01:30 on a fall-back night occurs twice, as on the wall.
pub fn local(tz: chrono_tz::Tz, ms: i64) -> (LocalTime, i32) {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().with_timezone(&tz);
    let lt =
        LocalTime { weekday: t.weekday().num_days_from_monday() as u8, minute: (t.hour() * 60 + t.minute()) as u16 };
    (lt, t.date_naive().num_days_from_ce())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_ntp_state_can_be_read() {
        // Synchronised or not depends on the machine; that it is readable does not.
        assert!(system_clock_synchronized().is_some());
    }

    #[test]
    fn local_time_follows_daylight_saving() {
        let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
        // 2026-03-08 06:30Z is 01:30 EST; an hour later it is 03:30 EDT.
        let before = chrono::DateTime::parse_from_rfc3339("2026-03-08T06:30:00Z").unwrap().timestamp_millis();
        assert_eq!(local(tz, before).0, LocalTime { weekday: 6, minute: 90 });
        assert_eq!(local(tz, before + 3_600_000).0, LocalTime { weekday: 6, minute: 210 });
        assert_eq!(local(chrono_tz::UTC, 0).0, LocalTime { weekday: 3, minute: 0 });
    }
}
