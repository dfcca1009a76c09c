//! The keypad state machine (`KeypadEntry`). The first byte sets the PIN
//! length and `submit_at_length`; each following byte is a key (any
//! character, as a driver could pass one on) after a pause of its top bits.
//! Properties: no panic; the entry never holds more than `MAX_ENTRY` digits;
//! a submitted entry holds digits only and at most `MAX_ENTRY` of them; with
//! `submit_at_length`, a PIN never grows past the PIN length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porterd::access::keypad::{KeyOutcome, KeypadEntry, MAX_ENTRY};
use std::time::Duration;
use tokio::time::Instant;

const KEYS: &[u8] = b"0123456789*#ab \n\0";

fuzz_target!(|data: &[u8]| {
    let [mode, keys @ ..] = data else { return };
    let pin_length = usize::from(mode % 12);
    let submit_at_length = mode & 0x80 != 0;
    let mut k = KeypadEntry::new(pin_length, Duration::from_secs(5), submit_at_length);
    let mut now = Instant::now();
    for b in keys {
        now += Duration::from_millis(u64::from(b >> 5) * 1_000);
        let key = char::from(KEYS[usize::from(b & 0x1f) % KEYS.len()]);
        let outcome = k.key(key, now);
        assert!(k.pending() <= MAX_ENTRY, "{} keys held", k.pending());
        if let KeyOutcome::Submit(e) | KeyOutcome::Enroll(e) = outcome {
            if let Some(d) = e.digits() {
                assert!(!d.is_empty() && d.len() <= MAX_ENTRY && d.iter().all(u8::is_ascii_digit));
                if submit_at_length && pin_length > 0 {
                    assert!(d.len() <= pin_length, "{} digits with a PIN length of {pin_length}", d.len());
                }
            }
        }
    }
});
