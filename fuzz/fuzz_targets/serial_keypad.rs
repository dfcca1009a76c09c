//! `serial_keypad` bytes. Properties: no panic; the same events whether the
//! bytes come in one read or one byte per read; only keypad keys come out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_drivers::serial::keypad::KeypadDecoder;
use porter_drivers::serial::Decoded;
use porter_drivers::Input;
use porter_fuzz::{push_bytewise, push_whole};
use tokio::time::Instant;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let whole = push_whole(&mut KeypadDecoder, data, now);
    assert_eq!(whole, push_bytewise(&mut KeypadDecoder, data, now));
    for e in whole {
        if let Decoded::Input(i) = e {
            assert!(matches!(i, Input::Key(c) if c.is_ascii_digit() || c == '*' || c == '#'), "{i:?}");
        }
    }
});
