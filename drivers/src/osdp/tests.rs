use super::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn parse(v: serde_json::Value) -> (OsdpConfig, ConfigErrors) {
    let (c, errs) = Section::read("devices[0]", &v, OsdpConfig::parse);
    (c.expect("a table"), errs)
}

/// Bits as a Wiegand reader sends them, packed MSB first as OSDP carries them.
fn pack(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        if *b {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

fn bits_of(value: u64, n: usize) -> Vec<bool> {
    (0..n).rev().map(|i| value >> i & 1 == 1).collect()
}

#[test]
fn a_26_bit_card_reports_the_uid_the_wiegand_kind_reports() {
    // H10301 facility 1, card 1: the well-known raw value 0x2020002.
    let bits = bits_of(0x202_0002, 26);
    let want = match wiegand::decode(&bits) {
        Frame::Card(uid) => uid,
        other => panic!("{other:?}"),
    };
    assert_eq!(want.as_bytes(), [0x01, 0x00, 0x01]);
    for format in [OsdpCardFormats::Wiegand, OsdpCardFormats::Unspecified] {
        assert_eq!(card_input(format, 26, &pack(&bits)), Some(Input::Card(want)), "{format:?}");
    }
}

#[test]
fn a_wiegand_read_with_a_bad_parity_or_length_is_dropped() {
    let mut bits = bits_of(0x202_0002, 26);
    bits[25] = !bits[25];
    assert_eq!(card_input(OsdpCardFormats::Wiegand, 26, &pack(&bits)), None);
    assert_eq!(card_input(OsdpCardFormats::Wiegand, 27, &pack(&bits_of(1, 27))), None);
    // More bits claimed than sent, none, or past any Wiegand frame.
    assert_eq!(card_input(OsdpCardFormats::Wiegand, 26, &[0xff]), None);
    assert_eq!(card_input(OsdpCardFormats::Unspecified, 0, &[0xff]), None);
    assert_eq!(card_input(OsdpCardFormats::Wiegand, 65, &[0xff; 9]), None);
}

#[test]
fn a_raw_read_of_whole_bytes_is_the_card_serial_number() {
    let uid = [0x04, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6];
    assert_eq!(
        card_input(OsdpCardFormats::Unspecified, 56, &uid),
        Some(Input::Card(CardUid::from_bytes(&uid).unwrap()))
    );
    // Longer than any UID: dropped.
    assert_eq!(card_input(OsdpCardFormats::Unspecified, 88, &[1; 11]), None);
}

#[test]
fn keypad_bytes_are_keys_in_both_spellings_of_star_and_hash() {
    let keys: Vec<_> = b"0129*#\x7f\x0d".iter().filter_map(|b| key_input(*b)).collect();
    let want: Vec<_> = "0129*#*#".chars().map(Input::Key).collect();
    assert_eq!(keys, want);
    assert_eq!(key_input(b'A'), None);
    assert_eq!(key_input(0), None);
}

#[test]
fn a_reader_needs_a_port_an_address_and_a_key_file() {
    let (c, errs) = parse(json!({"port": "/dev/ttyUSB0", "address": 3, "key_file": "/etc/porter/osdp/a.key"}));
    assert!(errs.is_empty(), "{errs}");
    assert_eq!((c.baud, c.address, c.secure, c.install), (115_200, 3, true, false));
    let (_, errs) = parse(json!({"port": "ttyUSB0", "baud": 14400}));
    let text = errs.to_string();
    for want in ["devices[0].port", "devices[0].baud", "devices[0].address", "devices[0].key_file"] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let (_, errs) = parse(json!({"port": "/dev/x", "address": 127, "secure": false, "install": true}));
    let text = errs.to_string();
    assert!(text.contains("devices[0].address") && text.contains("devices[0].install"), "{text}");
    let (c, errs) = parse(json!({"port": "/dev/x", "address": 0, "secure": false}));
    assert!(errs.is_empty(), "{errs}");
    assert!(c.key_file.is_none());
}

#[test]
fn readers_on_one_port_share_its_baud_and_not_an_address() {
    let k = |v: serde_json::Value| {
        let mut errs = ConfigErrors::default();
        let mut sec = Section::new("d", &v, &mut errs).unwrap();
        crate::kinds::KindConfig::parse(v["kind"].as_str().unwrap(), &mut sec, &mut errs).unwrap()
    };
    let a = k(json!({"kind": "osdp", "port": "/dev/rs485", "address": 0, "key_file": "/k/a"}));
    let b = k(json!({"kind": "osdp", "port": "/dev/rs485", "address": 1, "key_file": "/k/b", "baud": 9600}));
    let c = k(json!({"kind": "osdp", "port": "/dev/rs485", "address": 0, "key_file": "/k/c"}));
    let relay = k(json!({"kind": "serial_relay", "port": "/dev/rs485", "channel": 1}));
    let devices = [
        ("devices[0]".to_string(), &a),
        ("devices[1]".into(), &b),
        ("devices[2]".into(), &c),
        ("devices[3]".into(), &relay),
    ];
    let mut errs = ConfigErrors::default();
    crate::kinds::check_claims(&devices, &mut errs);
    let text = errs.to_string();
    assert!(text.contains("devices[1].baud"), "{text}");
    assert!(text.contains("devices[2]: /dev/rs485@0 is already used by devices[0]"), "{text}");
    assert!(text.contains("devices[0].port: /dev/rs485 is also used by devices[3]"), "{text}");
    // Two readers with their own addresses on one bus are fine.
    let mut errs = ConfigErrors::default();
    crate::kinds::check_claims(&devices[..1], &mut errs);
    assert!(errs.is_empty(), "{errs}");
}

#[test]
fn a_reader_key_is_read_checked_and_created_only_in_install_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("front.key");
    let e = load_key(&path, false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.hint.unwrap().contains("install = true"));

    let key = load_key(&path, true).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(load_key(&path, false).unwrap(), key, "read back as written");
    assert_eq!(load_key(&path, true).unwrap(), key, "install mode keeps an existing key");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(load_key(&path, false).unwrap_err().kind, ErrorKind::PermissionDenied);

    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "0011223344556677xx99aabbccddeeff\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = load_key(&bad, false).unwrap_err();
    assert!(e.message.contains("not 32 hex digits") && !e.message.contains("0011"), "{}", e.message);
}

/// The bus thread wakes when the next poll is due (51 ms after the last
/// input), not up to a TICK later, and then looks every millisecond until
/// libosdp's own clock lets the poll go; with nothing heard, or the poll
/// long overdue (no reader answering), it waits a TICK.
#[test]
fn the_bus_wakes_when_the_next_poll_is_due() {
    let t = Instant::now();
    let ms = Duration::from_millis;
    assert_eq!(next_wait(None, t), TICK);
    assert_eq!(next_wait(Some(t), t), TICK);
    assert_eq!(next_wait(Some(t), t + ms(48)), ms(3));
    assert_eq!(next_wait(Some(t), t + ms(50)), ms(1));
    // Due: a millisecond at a time for a TICK, until the poll's reply.
    assert_eq!(next_wait(Some(t), t + ms(51)), ms(1));
    assert_eq!(next_wait(Some(t), t + ms(55)), ms(1));
    assert_eq!(next_wait(Some(t), t + ms(56)), TICK);
    assert_eq!(next_wait(Some(t), t + ms(80)), TICK);
}
