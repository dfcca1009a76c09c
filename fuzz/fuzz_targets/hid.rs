//! HID key codes: kernel `input_event`s as bytes, read by `RawEvents` and fed
//! to the decoder (the first byte picks the mode and `max_length`).
//! Properties: no panic; a keypad reports only keypad keys; a QR payload is
//! never empty nor longer than `max_length`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_drivers::hid::{Decoder, EventSource, HidMode, RawEvents, Step};
use porter_drivers::Input;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    let hid_mode = if mode & 1 == 0 { HidMode::Qr } else { HidMode::Keypad };
    let max_length = 1 + usize::from(mode >> 1);
    let mut decoder = Decoder::new(hid_mode, max_length);
    let mut events = RawEvents::new(rest);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        // A byte slice never makes a read wait: every poll is ready.
        let Poll::Ready(next) = pin!(events.next_raw()).as_mut().poll(&mut cx) else {
            panic!("a read from a byte slice waited")
        };
        let Ok(ev) = next else { break };
        match decoder.feed(ev) {
            Some(Step::Input(Input::Key(c))) => {
                assert_eq!(hid_mode, HidMode::Keypad);
                assert!(c.is_ascii_digit() || c == '*' || c == '#', "key {c:?}");
            }
            Some(Step::Input(Input::Qr(q))) => {
                assert_eq!(hid_mode, HidMode::Qr);
                assert!(!q.is_empty() && q.chars().count() <= max_length, "payload of {} chars", q.chars().count());
            }
            Some(Step::Input(i)) => panic!("a HID device reported {i:?}"),
            _ => {}
        }
    }
});
