//! `serial_rfid` frames in each format (the first byte picks it, and the
//! repeat window). Properties: no panic; the same events in one read or byte
//! by byte; and a well-formed RDM6300 frame built from the next 5 bytes
//! decodes to exactly that card (the round trip through the encoder).
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_drivers::serial::rfid::{RfidDecoder, RfidFormat};
use porter_drivers::serial::Decoded;
use porter_drivers::{CardUid, Input};
use porter_fuzz::{push_bytewise, push_whole};
use std::time::Duration;
use tokio::time::Instant;

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    let format = [RfidFormat::Rdm6300, RfidFormat::HexLines, RfidFormat::DecimalLines][usize::from(mode % 3)];
    let window = if mode & 4 == 0 { Duration::ZERO } else { Duration::from_secs(1) };
    let now = Instant::now();
    let whole = push_whole(&mut RfidDecoder::new(format, window), rest, now);
    assert_eq!(whole, push_bytewise(&mut RfidDecoder::new(format, window), rest, now));
    for e in &whole {
        if let Decoded::Input(i) = e {
            assert!(matches!(i, Input::Card(_)), "an RFID reader reported {i:?}");
        }
    }
    if let Some(uid) = rest.get(..5) {
        let check = uid.iter().fold(0, |x, b| x ^ b);
        let mut frame = vec![0x02];
        for b in uid.iter().chain([check].iter()) {
            frame.extend(format!("{b:02X}").bytes());
        }
        frame.push(0x03);
        let got = push_whole(&mut RfidDecoder::new(RfidFormat::Rdm6300, Duration::ZERO), &frame, now);
        assert_eq!(got, vec![Decoded::Input(Input::Card(CardUid::from_bytes(uid).unwrap()))]);
    }
});
