//! Card UIDs: `CardUid::parse_hex` on text (MQTT `uid` arguments, exec
//! lines, hex reader lines) and `from_bytes` on raw bytes (PC/SC, Wiegand).
//! Round trips: `parse_hex(to_hex(uid)) == uid`, and the bytes survive.
//! Properties: no panic; a UID holds 1 to 10 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_drivers::contract::MAX_UID_LEN;
use porter_drivers::CardUid;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(uid) = CardUid::parse_hex(s) {
            let n = uid.as_bytes().len();
            assert!((1..=MAX_UID_LEN).contains(&n));
            assert_eq!(CardUid::parse_hex(&uid.to_hex()), Some(uid));
        }
    }
    match CardUid::from_bytes(data) {
        Some(uid) => {
            assert_eq!(uid.as_bytes(), data);
            assert_eq!(CardUid::parse_hex(&uid.to_hex()), Some(uid));
        }
        None => assert!(data.is_empty() || data.len() > MAX_UID_LEN),
    }
});
