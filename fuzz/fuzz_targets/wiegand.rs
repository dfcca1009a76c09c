//! Wiegand bit frames, two ways. `decode` on the input's bits (one per byte,
//! its low bit), and the timed decoder on (gap, bit) pairs as the interrupt
//! threads report them. Round trips: 26-, 34- and 37-bit card frames and 4-
//! and 8-bit key frames built from the input decode to what was encoded.
//! A raw format built from the input (length and parity rules) decodes
//! without panic, with the built-in formats or with it.
//! Properties: no panic; a card has the format's UID length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_drivers::gpio::wiegand::{decode, decode_with, CardFormat, Frame, ParityRule, WiegandDecoder};
use porter_drivers::CardUid;
use porter_fuzz::wiegand_card;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let bits: Vec<bool> = data.iter().map(|b| b & 1 == 1).collect();
    if let Frame::Card(uid) = decode(&bits) {
        let want = match bits.len() {
            26 => 3,
            34 => 4,
            37 => 5,
            35 => 4,
            48 => 6,
            n => panic!("a card from {n} bits"),
        };
        assert_eq!(uid.as_bytes().len(), want);
    }

    // Timed: each byte is a bit (its low bit) after a gap of its other bits
    // in tens of microseconds, so noise, frame gaps and overlong bursts occur.
    let mut d = WiegandDecoder::new(Duration::from_millis(25));
    let mut at = Duration::ZERO;
    for b in data {
        at += Duration::from_micros(u64::from(b >> 1) * 50);
        if let Some(Frame::Card(uid)) = d.bit(at, b & 1 == 1) {
            assert!((3..=6).contains(&uid.as_bytes().len()));
        }
    }
    let _ = d.gap_elapsed(at + Duration::from_secs(1));

    // Round trips from the first 8 bytes.
    let mut word = [0u8; 8];
    let n = data.len().min(8);
    word[..n].copy_from_slice(&data[..n]);
    let v = u64::from_be_bytes(word);
    for (len, bytes, even_end, odd_start) in [(26, 3, 12, 13), (34, 4, 16, 17), (37, 5, 18, 18)] {
        let data = v & ((1u64 << (len - 2)) - 1);
        let want = &data.to_be_bytes()[8 - bytes..];
        let frame = wiegand_card(len, data, even_end, odd_start);
        assert_eq!(decode(&frame), Frame::Card(CardUid::from_bytes(want).unwrap()), "{len} bits");
    }
    // A raw format from the input: its length from the first byte, a
    // parity rule from each following 9 bytes (bit, mask, odd).
    if let Some((&len, rest)) = data.split_first() {
        let len = usize::from(len % 64) + 1;
        let rules: Vec<ParityRule> = rest
            .chunks_exact(10)
            .take(8)
            .map(|c| ParityRule {
                bit: c[0] % 64,
                over: u64::from_be_bytes(c[1..9].try_into().unwrap()),
                odd: c[9] & 1 == 1,
            })
            .collect();
        if let Some(f) = CardFormat::new(len, &rules) {
            if let Frame::Card(uid) = decode_with(&bits, Some(&f)) {
                assert!(!uid.as_bytes().is_empty() && uid.as_bytes().len() <= 8);
            }
        }
    }
    let code = (v % 12) as u8;
    let key = match code {
        0..=9 => char::from(b'0' + code),
        10 => '*',
        _ => '#',
    };
    let four: Vec<bool> = (0..4).rev().map(|i| (code >> i) & 1 == 1).collect();
    assert_eq!(decode(&four), Frame::Key(key));
    let byte = ((!code & 0x0f) << 4) | code;
    let eight: Vec<bool> = (0..8).rev().map(|i| (byte >> i) & 1 == 1).collect();
    assert_eq!(decode(&eight), Frame::Key(key));
});
