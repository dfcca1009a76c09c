//! A line from an `exec` program (`parse_line`). Properties: no panic; what
//! it reports is bounded (keys up to the per-line limit, the offline reason's
//! text up to its limit) and well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_drivers::exec::{parse_line, Line, MAX_ERROR_TEXT, MAX_KEYS_PER_LINE};
use porter_drivers::Input;

fuzz_target!(|data: &[u8]| {
    match parse_line(data) {
        Line::Inputs(inputs) => {
            assert!(!inputs.is_empty() && inputs.len() <= MAX_KEYS_PER_LINE);
            for i in &inputs {
                match i {
                    Input::Key(c) => assert!(c.is_ascii_digit() || *c == '*' || *c == '#'),
                    Input::Qr(q) => assert!(!q.is_empty()),
                    Input::Card(_) | Input::Level(_) => assert_eq!(inputs.len(), 1),
                }
            }
        }
        Line::Offline(why) => {
            let fixed = "the program reported its device offline: ".chars().count();
            assert!(why.chars().count() <= fixed + MAX_ERROR_TEXT, "an offline reason of {} chars", why.len());
        }
        Line::Online | Line::Blank | Line::Garbled => {}
    }
});
