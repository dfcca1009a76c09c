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

use porter_drivers::Output;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::access::room::Signal;

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
        (Signal::Deny, _) => blinks(3, 100, 100),
        (Signal::Lockout, Line::Led) => blinks(10, 50, 50),
        (Signal::Lockout, Line::Buzzer) => vec![(true, ms(1000))],
        (Signal::EnrollOpen(d), Line::Led) => blinks((d.as_millis() / 1000).max(1) as usize, 500, 500),
        (Signal::EnrollOpen(_), Line::Buzzer) => blinks(2, 100, 100),
        (Signal::Enrolled, Line::Led) => vec![(true, ms(1000)), (false, ms(200)), (true, ms(1000))],
        (Signal::Enrolled, Line::Buzzer) => vec![(true, ms(100)), (false, ms(100)), (true, ms(400))],
        (Signal::Refused, Line::Led) => blinks(5, 100, 100),
        (Signal::Refused, Line::Buzzer) => {
            let mut p = vec![(true, ms(600)), (false, ms(200))];
            p.extend(blinks(3, 100, 100));
            p
        }
        (Signal::PinNeeded(d), Line::Led) => blinks((d.as_millis() / 500).max(1) as usize, 250, 250),
        (Signal::PinNeeded(_), Line::Buzzer) => vec![(true, ms(50))],
        (Signal::Off, _) => Vec::new(),
    }
}

/// Starts the task that plays patterns on `out`; the line starts off.
pub fn start(
    name: String,
    line: Line,
    mut out: Box<dyn Output>,
    cancel: CancellationToken,
) -> (mpsc::Sender<Signal>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Signal>(8);
    let task = tokio::spawn(async move {
        set(&name, out.as_mut(), false).await;
        let mut next: Option<Signal> = None;
        'outer: loop {
            let signal = match next.take() {
                Some(s) => s,
                None => tokio::select! {
                    _ = cancel.cancelled() => break,
                    s = rx.recv() => match s { Some(s) => s, None => break },
                },
            };
            for (level, hold) in pattern(signal, line) {
                set(&name, out.as_mut(), level).await;
                tokio::select! {
                    _ = cancel.cancelled() => break 'outer,
                    s = rx.recv() => match s {
                        Some(s) => { next = Some(s); break; }
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
            Signal::Deny,
            Signal::Lockout,
            Signal::EnrollOpen(Duration::from_secs(30)),
            Signal::Enrolled,
            Signal::Refused,
            Signal::PinNeeded(Duration::from_secs(10)),
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
        let window: Duration =
            pattern(Signal::EnrollOpen(Duration::from_secs(30)), Line::Led).iter().map(|s| s.1).sum();
        assert_eq!(window, Duration::from_secs(30), "the LED blinks for the whole window");
    }

    #[tokio::test(start_paused = true)]
    async fn plays_a_pattern_and_a_new_signal_cuts_it_short() {
        let fake = FakeOutput::default();
        let cancel = CancellationToken::new();
        let (tx, task) = start("led1".into(), Line::Led, Box::new(fake.clone()), cancel.clone());
        tx.send(Signal::Deny).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fake.states(), [false, true, false, true, false, true, false, false]);
        tx.send(Signal::EnrollOpen(Duration::from_secs(30))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        tx.send(Signal::Off).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Off cut the blinking short after two blinks and left the line off.
        assert_eq!(fake.states()[8..], [true, false, true, false, false]);
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(fake.states().last(), Some(&false));
    }
}
