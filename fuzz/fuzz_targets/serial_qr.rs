//! `serial_qr` frames. The first byte picks the terminator and the lengths of
//! the prefix and suffix, the second `max_length`; the affixes follow, then
//! the stream. Properties: no panic; the same events in one read or byte by
//! byte; no payload is empty or longer than `max_length`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_drivers::serial::qr::{QrFramer, SerialQrConfig, Terminator};
use porter_drivers::serial::{Decoded, PortSettings};
use porter_drivers::Input;
use porter_fuzz::{push_bytewise, push_whole};
use tokio::time::Instant;

fuzz_target!(|data: &[u8]| {
    let [mode, max, rest @ ..] = data else { return };
    let terminator = [Terminator::Cr, Terminator::Lf, Terminator::CrLf][usize::from(mode % 3)];
    let (p, s) = (usize::from((mode >> 2) & 3), usize::from((mode >> 4) & 3));
    if rest.len() < p + s {
        return;
    }
    // An affix is text without the terminator (the config refuses others).
    let affix =
        |b: &[u8]| -> String { b.iter().map(|c| char::from(c & 0x7f)).filter(|c| !matches!(c, '\r' | '\n')).collect() };
    let config = SerialQrConfig {
        serial: PortSettings::new("fuzz"),
        terminator,
        prefix: affix(&rest[..p]),
        suffix: affix(&rest[p..p + s]),
        max_length: 1 + usize::from(*max) * 4,
    };
    let stream = &rest[p + s..];
    let now = Instant::now();
    let whole = push_whole(&mut QrFramer::new(&config), stream, now);
    assert_eq!(whole, push_bytewise(&mut QrFramer::new(&config), stream, now));
    for e in whole {
        if let Decoded::Input(i) = e {
            let Input::Qr(q) = i else { panic!("a QR scanner reported {i:?}") };
            assert!(!q.is_empty() && q.len() <= config.max_length, "payload of {} bytes", q.len());
        }
    }
});
