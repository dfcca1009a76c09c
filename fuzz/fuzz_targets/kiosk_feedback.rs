//! porter-kiosk's stdin: porterd's feedback lines (`feedback::parse`) cut by
//! `LineBuf`, then fed to the kiosk's state machine. Properties: no panic;
//! lines are bounded; whole and byte-by-byte cutting agree; feedback alone
//! never writes a key line, never shows a deny reason outside the safe four,
//! and never leaves an entry on a screen without a keypad.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use porter_kiosk::feedback::{parse, Cut, Line, LineBuf, MAX_LINE};
use porter_kiosk::screen::{Kiosk, Lang, Now, Settings, Zone, MAX_DIGITS};

fn cut(data: &[u8], bytewise: bool) -> Vec<Result<Vec<u8>, ()>> {
    let mut b = LineBuf::new();
    let mut out = Vec::new();
    let mut push = |bytes: &[u8]| {
        b.push(bytes, &mut |l| {
            out.push(match l {
                Cut::Line(l) => Ok(l.to_vec()),
                Cut::TooLong => Err(()),
            })
        })
    };
    if bytewise {
        data.iter().for_each(|x| push(std::slice::from_ref(x)));
    } else {
        push(data);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let lines = cut(data, false);
    assert_eq!(lines, cut(data, true));
    let mut k = Kiosk::new(Settings {
        device: "kiosk".into(),
        door: "main".into(),
        door_name: "main".into(),
        room: "Package room".into(),
        lang: Lang::En,
        zone: Zone::Named(chrono_tz::UTC),
        pin_length: 6,
        entry_timeout: Duration::from_secs(20),
    });
    let mut now = Now { at: Instant::now(), unix_ms: 1_795_622_400_000 };
    for line in lines {
        let Ok(line) = line else { continue };
        assert!(line.len() <= MAX_LINE + 1);
        if let Line::Feedback(f) = parse(&line) {
            assert!(k.feedback(&f, now).lines.is_empty());
            now = now.plus(700);
            assert!(k.tick(now).lines.is_empty());
            let v = k.view(now);
            assert!(v.entered <= MAX_DIGITS);
            let shown = serde_json::to_value(&v).unwrap();
            if let Some(r) = shown["reason"].as_str() {
                assert!(["outside_schedule", "wrong_door", "card_required", "pin_required"].contains(&r));
            }
        }
    }
});
