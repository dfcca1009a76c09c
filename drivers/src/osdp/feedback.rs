//! What an OSDP reader shows for each of its door's [`Feedback`] signals:
//! the pure mapping to OSDP's LED command (osdp_LED: a temporary setting that
//! runs for a time, then the permanent one) and buzzer command (osdp_BUZ).
//!
//! | signal | LED (temporary), then idle | buzzer |
//! | --- | --- | --- |
//! | grant | green, steady, for the door's unlock time | one 200 ms beep |
//! | deny | red, steady, 2 s | two 200 ms beeps |
//! | lockout | red flashing 500/500 ms until its end | one 1 s tone |
//! | enroll_open | amber / blue alternating 500/500 ms until the window closes | two 100 ms beeps |
//! | card_enrolled | green flashing 100/100 ms, 2 s | one 500 ms beep |
//! | card_refused | red / amber alternating 100/100 ms, 2 s | three 100 ms beeps |
//! | pin_needed | amber, steady, until the wait for the PIN ends | one 100 ms beep |
//! | off | back to idle at once | none |
//!
//! Idle (the permanent setting every command carries) is the LED off. A
//! state longer than OSDP's longest timer (6553.5 s) is shown again when the
//! timer runs out; a state shown again (a reader back online, a renewal)
//! shows what is left of it and stays silent.

use crate::contract::Feedback;
use libosdp::{OsdpCommandBuzzer, OsdpCommandLed, OsdpLedColor, OsdpLedParams};
use std::time::Duration;

/// The idle colour: the permanent setting, shown when no signal runs.
pub const IDLE: OsdpLedColor = OsdpLedColor::None;

/// The longest temporary LED setting OSDP carries: 65535 × 100 ms.
pub const MAX_TEMPORARY: Duration = Duration::from_millis(65_535 * 100);

/// How long a lockout with no known end (the daily cap, which ends at local
/// midnight or with `lockout.clear`) is shown.
pub const UNKNOWN_END: Duration = Duration::from_secs(600);

/// How long a deny, an enrolled card and a refused card are shown.
pub const SHORT: Duration = Duration::from_secs(2);

/// A temporary LED setting: `on` for `on_100ms`, then `off` for `off_100ms`,
/// repeated (steady when both colours are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Blink {
    on: OsdpLedColor,
    off: OsdpLedColor,
    on_100ms: u8,
    off_100ms: u8,
}

const fn steady(c: OsdpLedColor) -> Blink {
    Blink { on: c, off: c, on_100ms: 1, off_100ms: 0 }
}

const fn flash(on: OsdpLedColor, off: OsdpLedColor, on_100ms: u8, off_100ms: u8) -> Blink {
    Blink { on, off, on_100ms, off_100ms }
}

/// Beeps of the reader's default tone: `n` of `on_100ms`, `off_100ms` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Beeps {
    on_100ms: u8,
    off_100ms: u8,
    n: u8,
}

const fn beeps(n: u8, on_100ms: u8, off_100ms: u8) -> Beeps {
    Beeps { on_100ms, off_100ms, n }
}

/// What to send a reader for a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub led: OsdpCommandLed,
    /// Only when the signal is new and still running.
    pub buzzer: Option<OsdpCommandBuzzer>,
    /// The state outlasts the LED's timer: show it again after this.
    pub renew_after: Option<Duration>,
}

/// A signal's LED pattern, beeps, and how long it is shown: `since` is the
/// time since it was handed over, `now_ms` the wall clock (unix ms) now, for
/// the signals that carry their end.
fn plan(fb: &Feedback, since: Duration, now_ms: i64) -> (Blink, Duration, Option<Beeps>) {
    use OsdpLedColor::{Amber, Blue, Green, Red};
    let left = |total: Duration| total.saturating_sub(since);
    let until = |end_ms: i64| Duration::from_millis(end_ms.saturating_sub(now_ms).max(0) as u64);
    match fb {
        Feedback::Grant { unlock_ms, .. } => {
            (steady(Green), left(Duration::from_millis(*unlock_ms)), Some(beeps(1, 2, 0)))
        }
        Feedback::Deny { .. } => (steady(Red), left(SHORT), Some(beeps(2, 2, 1))),
        Feedback::Lockout { until_ms, .. } => {
            let length = until_ms.map(until).unwrap_or_else(|| left(UNKNOWN_END));
            (flash(Red, IDLE, 5, 5), length, Some(beeps(1, 10, 0)))
        }
        Feedback::EnrollOpen { until_ms, .. } => (flash(Amber, Blue, 5, 5), until(*until_ms), Some(beeps(2, 1, 1))),
        Feedback::CardEnrolled { .. } => (flash(Green, IDLE, 1, 1), left(SHORT), Some(beeps(1, 5, 0))),
        Feedback::CardRefused { .. } => (flash(Red, Amber, 1, 1), left(SHORT), Some(beeps(3, 1, 1))),
        Feedback::PinNeeded { until_ms, .. } => (steady(Amber), until(*until_ms), Some(beeps(1, 1, 0))),
        Feedback::Off { .. } => (steady(IDLE), Duration::ZERO, None),
    }
}

/// What reader shows `fb`, handed over `since` ago, now (`now_ms`, unix ms).
/// `first`: the signal is new; a signal shown again (the reader back
/// online, a renewal) stays silent. A signal whose time ran out shows idle.
pub fn show(fb: &Feedback, since: Duration, now_ms: i64, first: bool) -> Shown {
    let (blink, length, beeps) = plan(fb, since, now_ms);
    let idle =
        OsdpLedParams { control_code: 1, on_count: 1, off_count: 0, on_color: IDLE, off_color: IDLE, timer_count: 0 };
    let units = length.as_millis().div_ceil(100);
    let temporary = if units == 0 {
        // Cancel whatever runs: the permanent (idle) setting shows at once.
        OsdpLedParams { control_code: 1, ..OsdpLedParams::default() }
    } else {
        OsdpLedParams {
            control_code: 2,
            on_count: blink.on_100ms,
            off_count: blink.off_100ms,
            on_color: blink.on,
            off_color: blink.off,
            timer_count: units.min(u128::from(u16::MAX)) as u16,
        }
    };
    let buzzer = beeps.filter(|_| first && units > 0).map(|b| OsdpCommandBuzzer {
        reader: 0,
        control_code: 2,
        on_count: b.on_100ms,
        off_count: b.off_100ms,
        rep_count: b.n,
    });
    Shown {
        led: OsdpCommandLed { reader: 0, led_number: 0, temporary, permanent: idle },
        buzzer,
        renew_after: (length > MAX_TEMPORARY).then_some(MAX_TEMPORARY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OsdpLedColor::{Amber, Blue, Green, Red};

    const NOW: i64 = 1_795_622_400_000;

    fn door() -> String {
        "main".into()
    }

    fn every_signal() -> Vec<Feedback> {
        let until = NOW + 30_000;
        vec![
            Feedback::Grant { door: door(), unlock_ms: 3000 },
            Feedback::Deny { door: door(), reason: "unknown" },
            Feedback::Lockout { door: door(), until: None, until_ms: Some(until) },
            Feedback::EnrollOpen { door: door(), until: String::new(), until_ms: until },
            Feedback::CardEnrolled { door: door() },
            Feedback::CardRefused { door: door(), reason: "duplicate" },
            Feedback::PinNeeded { door: door(), until: String::new(), until_ms: until },
        ]
    }

    /// (on colour, off colour, on, off, timer) of the temporary setting.
    fn temp(s: &Shown) -> (OsdpLedColor, OsdpLedColor, u8, u8, u16) {
        let t = &s.led.temporary;
        (t.on_color, t.off_color, t.on_count, t.off_count, t.timer_count)
    }

    #[test]
    fn each_signal_has_its_own_light_and_sound_and_returns_to_idle() {
        let shown: Vec<Shown> = every_signal().iter().map(|f| show(f, Duration::ZERO, NOW, true)).collect();
        assert_eq!(temp(&shown[0]), (Green, Green, 1, 0, 30), "grant: green for the unlock time");
        assert_eq!(temp(&shown[1]), (Red, Red, 1, 0, 20), "deny: red 2 s");
        assert_eq!(temp(&shown[2]), (Red, IDLE, 5, 5, 300), "lockout: red flashing to its end");
        assert_eq!(temp(&shown[3]), (Amber, Blue, 5, 5, 300), "enrolment: amber/blue to the window's end");
        assert_eq!(temp(&shown[6]), (Amber, Amber, 1, 0, 300), "pin needed: amber while it waits");
        let grant = shown[0].buzzer.unwrap();
        assert_eq!((grant.control_code, grant.on_count, grant.rep_count), (2, 2, 1), "one short beep");
        assert_eq!(shown[1].buzzer.unwrap().rep_count, 2, "deny: two beeps");
        for (i, a) in shown.iter().enumerate() {
            assert_eq!(a.led.temporary.control_code, 2, "{i}: a temporary setting with its timer");
            assert_eq!((a.led.permanent.control_code, a.led.permanent.on_color), (1, IDLE), "{i}: then idle");
            assert!(a.buzzer.is_some_and(|b| b.rep_count > 0), "{i}: a bounded sound (0 repeats is forever)");
            for b in &shown[i + 1..] {
                assert!(temp(a).0 != temp(b).0 || temp(a).1 != temp(b).1 || temp(a).2 != temp(b).2, "{i}: same light");
                assert_ne!(a.buzzer, b.buzzer, "{i}: same sound");
            }
        }
    }

    #[test]
    fn shown_again_it_is_silent_and_only_what_is_left() {
        let lockout = &every_signal()[2];
        let again = show(lockout, Duration::from_secs(12), NOW + 12_000, false);
        assert_eq!(temp(&again), (Red, IDLE, 5, 5, 180));
        assert_eq!(again.buzzer, None);
        // A deny long over shows idle: the temporary setting is cancelled.
        let deny = show(&every_signal()[1], Duration::from_secs(5), NOW + 5000, true);
        assert_eq!((deny.led.temporary.control_code, deny.buzzer), (1, None));
        // Off cancels at once, without a sound.
        let off = show(&Feedback::Off { door: door() }, Duration::ZERO, NOW, true);
        assert_eq!((off.led.temporary.control_code, off.buzzer), (1, None));
    }

    #[test]
    fn a_lockout_longer_than_the_timer_is_renewed_and_one_without_an_end_is_bounded() {
        let day = Feedback::Lockout { door: door(), until: None, until_ms: Some(NOW + 86_400_000) };
        let s = show(&day, Duration::ZERO, NOW, true);
        assert_eq!(s.led.temporary.timer_count, u16::MAX);
        assert_eq!(s.renew_after, Some(MAX_TEMPORARY));
        let cap = Feedback::Lockout { door: door(), until: None, until_ms: None };
        let s = show(&cap, Duration::ZERO, NOW, true);
        assert_eq!((s.led.temporary.timer_count, s.renew_after), (6000, None));
    }
}
