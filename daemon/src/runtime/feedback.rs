//! Feedback at the door: an LED and a buzzer, each an output line, play a
//! pattern for each thing a person at the door needs to tell apart.
//!
//! | signal | LED | buzzer |
//! | --- | --- | --- |
//! | grant | on 2 s | one 200 ms beep |
//! | deny | 3 blinks of 100 ms | 3 beeps of 100 ms |
//! | lockout | 10 fast blinks of 50 ms | one 1 s tone |
//! | enrolment window open | slow blink, 500 ms on / 500 ms off, until it closes | 2 beeps of 100 ms |
//! | card enrolled | on 1 s, off, on 1 s | a rising pair: 100 ms, then 400 ms |
//! | card refused at enrolment | 5 blinks of 100 ms | one 600 ms tone, then 3 beeps |
//! | card accepted, PIN needed | fast blink, 250 ms on / 250 ms off, while it waits | 1 beep of 50 ms |
//!
//! Each output has its own task, so a pattern never holds up the lock or the
//! decision loop; a new signal cuts the running pattern short. The line is
//! left off after every pattern and at shutdown.
//!
//! A door's `feedback` devices (an `exec` program with `feedback = true`)
//! receive each signal with its details as a [`Feedback`] instead, from one
//! task per door ([`start_receivers`]) that never waits on them.

use porter_drivers::{Feedback, FeedbackReceiver, Output};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::access::room::Signal;

/// A signal at a door and the input device whose input caused it (its index
/// in `[[devices]]`; `None` when none did). LEDs and buzzers play the
/// signal alone; feedback devices are told the device's id too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cue {
    pub signal: Signal,
    pub device: Option<usize>,
}

/// Which line a pattern is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Led,
    Buzzer,
}

/// The steps of `signal` on `line`: each is a level held for a time.
pub fn pattern(signal: Signal, line: Line) -> Vec<(bool, Duration)> {
    let ms = Duration::from_millis;
    let blinks = |n: usize, on: u64, off: u64| -> Vec<(bool, Duration)> {
        (0..n).flat_map(|_| [(true, ms(on)), (false, ms(off))]).collect()
    };
    match (signal, line) {
        (Signal::Grant, Line::Led) => vec![(true, ms(2000))],
        (Signal::Grant, Line::Buzzer) => vec![(true, ms(200))],
        (Signal::Deny { .. }, _) => blinks(3, 100, 100),
        (Signal::Lockout { .. }, Line::Led) => blinks(10, 50, 50),
        (Signal::Lockout { .. }, Line::Buzzer) => vec![(true, ms(1000))],
        (Signal::EnrollOpen { length: d, .. }, Line::Led) => blinks((d.as_millis() / 1000).max(1) as usize, 500, 500),
        (Signal::EnrollOpen { .. }, Line::Buzzer) => blinks(2, 100, 100),
        (Signal::Enrolled, Line::Led) => vec![(true, ms(1000)), (false, ms(200)), (true, ms(1000))],
        (Signal::Enrolled, Line::Buzzer) => vec![(true, ms(100)), (false, ms(100)), (true, ms(400))],
        (Signal::Refused { .. }, Line::Led) => blinks(5, 100, 100),
        (Signal::Refused { .. }, Line::Buzzer) => {
            let mut p = vec![(true, ms(600)), (false, ms(200))];
            p.extend(blinks(3, 100, 100));
            p
        }
        (Signal::PinNeeded { wait: d, .. }, Line::Led) => blinks((d.as_millis() / 500).max(1) as usize, 250, 250),
        (Signal::PinNeeded { .. }, Line::Buzzer) => vec![(true, ms(50))],
        (Signal::Off, _) => Vec::new(),
    }
}

/// Starts the task that plays patterns on `out`; the line starts off.
pub fn start(
    name: String,
    line: Line,
    mut out: Box<dyn Output>,
    cancel: CancellationToken,
) -> (mpsc::Sender<Cue>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Cue>(8);
    let task = tokio::spawn(async move {
        set(&name, out.as_mut(), false).await;
        let mut next: Option<Signal> = None;
        'outer: loop {
            let signal = match next.take() {
                Some(s) => s,
                None => tokio::select! {
                    _ = cancel.cancelled() => break,
                    s = rx.recv() => match s { Some(c) => c.signal, None => break },
                },
            };
            for (level, hold) in pattern(signal, line) {
                set(&name, out.as_mut(), level).await;
                tokio::select! {
                    _ = cancel.cancelled() => break 'outer,
                    s = rx.recv() => match s {
                        Some(c) => { next = Some(c.signal); break; }
                        None => break 'outer,
                    },
                    _ = tokio::time::sleep(hold) => {}
                }
            }
            set(&name, out.as_mut(), false).await;
        }
        set(&name, out.as_mut(), false).await;
    });
    (tx, task)
}

/// `signal` at `door` (which unlocks for `unlock`), as a device receives it.
pub fn feedback(door: &str, unlock: Duration, signal: Signal) -> Feedback {
    use crate::time::rfc3339;
    let door = door.to_string();
    match signal {
        Signal::Grant => Feedback::Grant { door, unlock_ms: unlock.as_millis() as u64 },
        Signal::Deny { reason } => Feedback::Deny { door, reason },
        Signal::Lockout { until_ms } => Feedback::Lockout { door, until: until_ms.map(rfc3339), until_ms },
        Signal::EnrollOpen { until_ms, .. } => Feedback::EnrollOpen { door, until: rfc3339(until_ms), until_ms },
        Signal::Enrolled => Feedback::CardEnrolled { door },
        Signal::Refused { reason } => Feedback::CardRefused { door, reason },
        Signal::PinNeeded { until_ms, .. } => Feedback::PinNeeded { door, until: rfc3339(until_ms), until_ms },
        Signal::Off => Feedback::Off { door },
    }
}

/// How many signals wait for a door's feedback devices; more are dropped
/// (the door handle's `signal` never waits).
pub const RECEIVER_QUEUE: usize = 32;

/// Starts the task that hands `door`'s signals to its feedback devices,
/// each with the id (from `devices`, the ids of `[[devices]]` in order) of
/// the input device that caused it. Each receiver takes a signal without
/// waiting (dropping and counting what it cannot take), so one stuck device
/// delays neither the others nor the door.
pub fn start_receivers(
    door: String,
    unlock: Duration,
    devices: Vec<String>,
    mut receivers: Vec<Box<dyn FeedbackReceiver>>,
    cancel: CancellationToken,
) -> (mpsc::Sender<Cue>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Cue>(RECEIVER_QUEUE);
    let task = tokio::spawn(async move {
        loop {
            let cue = tokio::select! {
                _ = cancel.cancelled() => break,
                c = rx.recv() => match c { Some(c) => c, None => break },
            };
            let fb = feedback(&door, unlock, cue.signal);
            let device = cue.device.and_then(|i| devices.get(i)).map(String::as_str);
            for r in receivers.iter_mut() {
                r.feedback(&fb, device);
            }
        }
    });
    (tx, task)
}

async fn set(name: &str, out: &mut dyn Output, on: bool) {
    if let Err(e) = out.set(on).await {
        tracing::warn!(device = name, error = %e, "feedback output failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use porter_drivers::fake::FakeOutput;

    #[test]
    fn every_signal_has_its_own_pattern_on_each_line() {
        let signals = [
            Signal::Grant,
            Signal::Deny { reason: "unknown" },
            Signal::Lockout { until_ms: Some(1) },
            Signal::EnrollOpen { length: Duration::from_secs(30), until_ms: 1 },
            Signal::Enrolled,
            Signal::Refused { reason: "duplicate" },
            Signal::PinNeeded { wait: Duration::from_secs(10), until_ms: 1 },
        ];
        for line in [Line::Led, Line::Buzzer] {
            let ps: Vec<_> = signals.iter().map(|s| pattern(*s, line)).collect();
            for (i, a) in ps.iter().enumerate() {
                assert!(!a.is_empty());
                for b in &ps[i + 1..] {
                    assert_ne!(a, b, "{line:?}: two signals share a pattern");
                }
            }
        }
        let window: Duration = pattern(Signal::EnrollOpen { length: Duration::from_secs(30), until_ms: 1 }, Line::Led)
            .iter()
            .map(|s| s.1)
            .sum();
        assert_eq!(window, Duration::from_secs(30), "the LED blinks for the whole window");
    }

    #[tokio::test(start_paused = true)]
    async fn plays_a_pattern_and_a_new_signal_cuts_it_short() {
        let fake = FakeOutput::default();
        let cancel = CancellationToken::new();
        let (tx, task) = start("led1".into(), Line::Led, Box::new(fake.clone()), cancel.clone());
        let cue = |signal| Cue { signal, device: None };
        tx.send(cue(Signal::Deny { reason: "unknown" })).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fake.states(), [false, true, false, true, false, true, false, false]);
        tx.send(cue(Signal::EnrollOpen { length: Duration::from_secs(30), until_ms: 1 })).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        tx.send(cue(Signal::Off)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Off cut the blinking short after two blinks and left the line off.
        assert_eq!(fake.states()[8..], [true, false, true, false, false]);
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(fake.states().last(), Some(&false));
    }

    #[test]
    fn each_signal_reaches_a_device_with_its_details() {
        let at = 1_795_626_600_000;
        let line = |s| feedback("main", Duration::from_millis(3000), s).json_line(None);
        assert_eq!(line(Signal::Grant), "{\"feedback\":\"grant\",\"door\":\"main\",\"unlock_ms\":3000}\n");
        assert_eq!(
            line(Signal::Deny { reason: "expired" }),
            "{\"feedback\":\"deny\",\"door\":\"main\",\"reason\":\"expired\"}\n"
        );
        assert_eq!(
            line(Signal::Lockout { until_ms: Some(at) }),
            "{\"feedback\":\"lockout\",\"door\":\"main\",\"until\":\"2026-11-25T17:10:00.000Z\",\"until_ms\":1795626600000}\n"
        );
        assert_eq!(
            line(Signal::Lockout { until_ms: None }),
            "{\"feedback\":\"lockout\",\"door\":\"main\",\"until\":null,\"until_ms\":null}\n"
        );
        let open = Signal::EnrollOpen { length: Duration::from_secs(30), until_ms: at };
        assert_eq!(
            line(open),
            "{\"feedback\":\"enroll_open\",\"door\":\"main\",\"until\":\"2026-11-25T17:10:00.000Z\",\"until_ms\":1795626600000}\n"
        );
        assert_eq!(line(Signal::Enrolled), "{\"feedback\":\"card_enrolled\",\"door\":\"main\"}\n");
        assert_eq!(
            line(Signal::Refused { reason: "duplicate" }),
            "{\"feedback\":\"card_refused\",\"door\":\"main\",\"reason\":\"duplicate\"}\n"
        );
        let pin = Signal::PinNeeded { wait: Duration::from_secs(10), until_ms: at };
        assert!(line(pin).starts_with("{\"feedback\":\"pin_needed\",\"door\":\"main\",\"until\":"));
        assert_eq!(line(Signal::Off), "{\"feedback\":\"off\",\"door\":\"main\"}\n");
        // The input device whose input caused it, when one did: last.
        assert_eq!(
            feedback("main", Duration::from_millis(3000), Signal::Grant).json_line(Some("kiosk")),
            "{\"feedback\":\"grant\",\"door\":\"main\",\"unlock_ms\":3000,\"device\":\"kiosk\"}\n"
        );
    }
}
