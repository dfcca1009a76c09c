//! Table tests of `decide`, and a property test against a naive reference.

use super::schedule::{LocalTime, Window};
use super::*;
use proptest::prelude::*;

fn kh(n: u8) -> KeyHash {
    KeyHash([n; KeyHash::LEN])
}

fn holder(id: &str) -> Profile {
    Profile {
        id: id.into(),
        role: Role::Courier,
        enabled: true,
        doors: DoorSet::All,
        valid_from_ms: None,
        valid_until_ms: None,
        schedule: vec![],
    }
}

/// A snapshot of `entries`; the first `flat` of them folded into the flat
/// map, the rest left in the overlay, so both paths are exercised.
fn snap_split(entries: Vec<(KeyHash, Profile, KeyKind, bool)>, flat: usize) -> Snapshot {
    let mut s = Snapshot::default();
    for (i, (k, h, kind, active)) in entries.into_iter().enumerate() {
        if i == flat {
            s.compact();
        }
        s.insert(k, KeyEntry::new(Arc::new(Holder::new(&h)), kind, active));
    }
    s
}

fn snap(entries: Vec<(KeyHash, Profile, KeyKind, bool)>) -> Snapshot {
    let n = entries.len();
    snap_split(entries, n / 2)
}

fn req(key: KeyHash, kind: KeyKind) -> Request {
    Request {
        door: 0,
        device: 0,
        kind,
        key,
        now_ms: 1_000_000,
        local: LocalTime { weekday: 2, minute: 12 * 60 },
        device_locked: false,
        clock_untrusted: false,
        spent: 0,
    }
}

#[test]
fn table() {
    let weekday_mornings = vec![Window { days: 0x1f, from: 7 * 60, to: 11 * 60 }];
    let s = snap(vec![
        (kh(1), holder("ok"), KeyKind::Pin, true),
        (kh(2), holder("inactive"), KeyKind::Pin, false),
        (kh(3), Profile { enabled: false, ..holder("disabled") }, KeyKind::Pin, true),
        (kh(4), Profile { valid_from_ms: Some(2_000_000), ..holder("future") }, KeyKind::Pin, true),
        (kh(5), Profile { valid_until_ms: Some(1_000_000), ..holder("past") }, KeyKind::Pin, true),
        (kh(6), Profile { doors: DoorSet::Mask(0b10), ..holder("door1") }, KeyKind::Card, true),
        (kh(7), Profile { schedule: weekday_mornings, ..holder("mornings") }, KeyKind::Qr, true),
        (kh(8), Profile { valid_until_ms: Some(1_000_001), ..holder("last-ms") }, KeyKind::Pin, true),
    ]);
    let cases: Vec<(Request, Option<Reason>)> = vec![
        (req(kh(1), KeyKind::Pin), None),
        (Request { device_locked: true, ..req(kh(1), KeyKind::Pin) }, Some(Reason::LockedOut)),
        (req(kh(99), KeyKind::Pin), Some(Reason::Unknown)),
        (req(kh(2), KeyKind::Pin), Some(Reason::Inactive)),
        (req(kh(3), KeyKind::Pin), Some(Reason::HolderDisabled)),
        (req(kh(4), KeyKind::Pin), Some(Reason::NotYetValid)),
        (req(kh(5), KeyKind::Pin), Some(Reason::Expired)),
        (req(kh(8), KeyKind::Pin), None),
        (req(kh(6), KeyKind::Card), Some(Reason::WrongDoor)),
        (Request { door: 1, ..req(kh(6), KeyKind::Card) }, None),
        (req(kh(7), KeyKind::Qr), Some(Reason::OutsideSchedule)),
        (Request { local: LocalTime { weekday: 0, minute: 7 * 60 }, ..req(kh(7), KeyKind::Qr) }, None),
        (
            Request { local: LocalTime { weekday: 5, minute: 8 * 60 }, ..req(kh(7), KeyKind::Qr) },
            Some(Reason::OutsideSchedule),
        ),
        (req(kh(1), KeyKind::Card), Some(Reason::Unknown)),
    ];
    for (i, (r, want)) in cases.iter().enumerate() {
        let d = decide(&s, r);
        assert_eq!(d.reason(), *want, "case {i}");
        if want.is_none() {
            assert!(d.is_grant());
        }
        if let Some(Reason::Inactive | Reason::Expired) = want {
            assert!(d.holder().is_some(), "case {i} names its holder");
        }
    }
}

/// The spec written a second way: collect every failing check, then report
/// the one of highest priority.
fn reference(entries: &[(KeyHash, Profile, KeyKind, bool)], r: &Request) -> Option<Reason> {
    if r.device_locked {
        return Some(Reason::LockedOut);
    }
    let Some((_, h, kind, active)) = entries.iter().rev().find(|(k, ..)| *k == r.key) else {
        return Some(Reason::Unknown);
    };
    if *kind != r.kind {
        return Some(Reason::Unknown);
    }
    // Equal priorities keep the order pushed (a stable sort).
    let mut failing = vec![];
    if !active {
        failing.push((0, Reason::Inactive));
    }
    if !h.enabled {
        failing.push((1, Reason::HolderDisabled));
    }
    let time_bound = h.valid_from_ms.is_some() || h.valid_until_ms.is_some() || !h.schedule.is_empty();
    if r.clock_untrusted && time_bound && [Role::Courier, Role::Resident].contains(&h.role) {
        failing.push((2, Reason::ClockUnsynchronized));
    }
    if let Some(f) = h.valid_from_ms {
        if r.now_ms < f {
            failing.push((2, Reason::NotYetValid));
        }
    }
    if let Some(u) = h.valid_until_ms {
        if r.now_ms >= u {
            failing.push((3, Reason::Expired));
        }
    }
    let door_ok = match h.doors {
        DoorSet::All => true,
        DoorSet::Mask(m) => (m >> r.door) & 1 == 1,
    };
    if !door_ok {
        failing.push((4, Reason::WrongDoor));
    }
    // Minute-of-week arithmetic instead of the window's own logic.
    let now = r.local.weekday as u32 * 1440 + r.local.minute as u32;
    let in_window = |w: &Window| {
        (0..7u32).filter(|d| w.days >> d & 1 == 1).any(|d| {
            let start = d * 1440 + w.from as u32;
            let len = if w.to > w.from { (w.to - w.from) as u32 } else { 1440 - w.from as u32 + w.to as u32 };
            let rel = (now + 7 * 1440 - start) % (7 * 1440);
            rel < len
        })
    };
    if !h.schedule.is_empty() && !h.schedule.iter().any(in_window) {
        failing.push((5, Reason::OutsideSchedule));
    }
    failing.sort_by_key(|f| f.0);
    failing.first().map(|f| f.1)
}

fn arb_kind() -> impl Strategy<Value = KeyKind> {
    prop_oneof![Just(KeyKind::Pin), Just(KeyKind::Qr), Just(KeyKind::Card)]
}

fn arb_holder() -> impl Strategy<Value = Profile> {
    (
        any::<bool>(),
        prop_oneof![Just(DoorSet::All), (0u64..16).prop_map(DoorSet::Mask)],
        proptest::option::of(0i64..200),
        proptest::option::of(0i64..200),
        proptest::collection::vec(
            (1u8..128, 0u16..1440, 1u16..1441).prop_map(|(days, from, to)| Window { days, from, to }),
            0..3,
        ),
        proptest::sample::select(Role::ALL.to_vec()),
    )
        .prop_map(|(enabled, doors, vf, vu, schedule, role)| Profile {
            id: "h".into(),
            role,
            enabled,
            doors,
            valid_from_ms: vf,
            valid_until_ms: vu,
            schedule,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn matches_the_reference(
        entries in proptest::collection::vec((0u8..8, arb_holder(), arb_kind(), any::<bool>()), 0..8),
        key in 0u8..10,
        kind in arb_kind(),
        door in 0u8..4,
        now_ms in 0i64..200,
        weekday in 0u8..7,
        minute in 0u16..1440,
        locked in proptest::bool::weighted(0.1),
        untrusted in proptest::bool::weighted(0.2),
        flat in 0usize..9,
    ) {
        let entries: Vec<_> = entries.into_iter().map(|(k, h, kd, a)| (kh(k), h, kd, a)).collect();
        let s = snap_split(entries.clone(), flat);
        let r = Request {
            door,
            device: 0,
            kind,
            key: kh(key),
            now_ms,
            local: LocalTime { weekday, minute },
            device_locked: locked,
            clock_untrusted: untrusted,
            spent: 0,
        };
        prop_assert_eq!(decide(&s, &r).reason(), reference(&entries, &r));
    }
}

proptest! {
    /// The snapshot's overlay and compaction against a plain map.
    #[test]
    fn snapshot_behaves_like_a_map(ops in proptest::collection::vec((0u8..3, 0u8..24), 1..200)) {
        let mut s = Snapshot::default();
        let mut model = std::collections::HashMap::new();
        for (op, k) in ops {
            match op {
                0 => {
                    s.insert(kh(k), KeyEntry::new(Arc::new(Holder::new(&holder(&k.to_string()))), KeyKind::Pin, true));
                    model.insert(k, ());
                }
                1 => {
                    s.remove(&kh(k));
                    model.remove(&k);
                }
                _ => s.compact(),
            }
            prop_assert_eq!(s.len(), model.len());
            for probe in 0u8..24 {
                let got = s.get(&kh(probe)).map(|e| e.holder.id.to_string());
                prop_assert_eq!(got, model.get(&probe).map(|_| probe.to_string()));
            }
        }
    }
}

proptest! {
    /// The table built in one go against a plain map: keys whose leading
    /// bytes collide (one directory bucket holding several), absent keys
    /// next to present ones, a key added twice, holders shared by keys.
    #[test]
    fn the_table_finds_what_was_added(
        keys in proptest::collection::vec((0u8..4, any::<[u8; 8]>(), 0u8..6, any::<bool>()), 0..300),
        probes in proptest::collection::vec((0u8..4, any::<[u8; 8]>()), 0..50),
        hint in 0usize..400,
    ) {
        let key = |lead: u8, rest: [u8; 8]| {
            let mut k = [lead.wrapping_mul(64); KeyHash::LEN];
            k[8..].copy_from_slice(&rest);
            KeyHash(k)
        };
        // The hint is only room made beforehand: too small or too large,
        // the table is the same.
        let mut b = Snapshot::builder(hint, 6);
        let rows: Vec<u32> = (0..6).map(|i| b.profile(&Profile { id: format!("h{i}"), ..holder("x") })).collect();
        // Of a key added twice the greatest (holder, active) stays.
        let mut model: std::collections::HashMap<KeyHash, (u8, bool)> = std::collections::HashMap::new();
        for (lead, rest, h, active) in &keys {
            b.key(key(*lead, *rest), rows[*h as usize], KeyKind::Card, *active);
            let e = model.entry(key(*lead, *rest)).or_insert((*h, *active));
            *e = (*e).max((*h, *active));
        }
        let model: std::collections::HashMap<KeyHash, (String, bool)> =
            model.into_iter().map(|(k, (h, a))| (k, (format!("h{h}"), a))).collect();
        let s = b.finish();
        prop_assert_eq!(s.len(), model.len());
        for (k, (id, active)) in &model {
            let f = s.get(k).unwrap();
            prop_assert_eq!((f.holder.id, f.active), (id.as_str(), *active));
        }
        for (lead, rest) in probes {
            let k = key(lead, rest);
            prop_assert_eq!(s.get(&k).map(|f| f.holder.id.to_string()), model.get(&k).map(|m| m.0.clone()));
        }
    }
}
