//! Each kind against a literal of the JSON the daemon published before the
//! typed [`Event`] (fields without `seq` and `ts`, which the writer adds).

use super::*;

fn s(v: &str) -> String {
    v.to_string()
}

fn storage(reserve: &'static str) -> Storage {
    Storage { free_mb: 120, total_mb: 14_000, low_mb: 256, reserve }
}

/// Ann's card at `reader1`, then her PIN at `keypad1`.
fn card_plus_pin() -> Presented {
    Presented {
        door: s("main"),
        device: s("keypad1"),
        key: "card+pin",
        holder: Some(s("staff-ann")),
        card_device: Some(s("reader1")),
    }
}

/// One or more samples of every kind, each with the JSON it must give.
fn samples() -> Vec<(Event, &'static str)> {
    vec![
        (
            Event::AccessGranted {
                presented: Presented {
                    door: s("main"),
                    device: s("keypad1"),
                    key: "pin",
                    holder: Some(s("courier-ups")),
                    card_device: None,
                },
                lock: None,
                uses_left: None,
            },
            r#"{"device":"keypad1","door":"main","holder":"courier-ups","key":"pin","type":"access.granted"}"#,
        ),
        (
            Event::AccessGranted { presented: card_plus_pin(), lock: Some("not_driven"), uses_left: Some(0) },
            r#"{"card_device":"reader1","device":"keypad1","door":"main","holder":"staff-ann","key":"card+pin","lock":"not_driven","type":"access.granted","uses_left":0}"#,
        ),
        (
            Event::AccessDenied {
                presented: Presented {
                    door: s("main"),
                    device: s("keypad1"),
                    key: "pin",
                    holder: None,
                    card_device: None,
                },
                reason: "unknown",
            },
            r#"{"device":"keypad1","door":"main","holder":null,"key":"pin","reason":"unknown","type":"access.denied"}"#,
        ),
        (
            Event::AccessDenied { presented: card_plus_pin(), reason: "outside_schedule" },
            r#"{"card_device":"reader1","device":"keypad1","door":"main","holder":"staff-ann","key":"card+pin","reason":"outside_schedule","type":"access.denied"}"#,
        ),
        (
            Event::LockoutEngaged {
                door: s("main"),
                device: s("keypad1"),
                why: "consecutive_failures",
                until: Some(s("2026-11-25T16:01:00.000Z")),
                failures_today: 5,
            },
            r#"{"device":"keypad1","door":"main","failures_today":5,"type":"lockout.engaged","until":"2026-11-25T16:01:00.000Z","why":"consecutive_failures"}"#,
        ),
        (
            Event::LockoutEngaged {
                door: s("main"),
                device: s("keypad1"),
                why: "daily_cap",
                until: None,
                failures_today: 20,
            },
            r#"{"device":"keypad1","door":"main","failures_today":20,"type":"lockout.engaged","until":null,"why":"daily_cap"}"#,
        ),
        (Event::LockoutCleared { device: s("keypad1") }, r#"{"device":"keypad1","type":"lockout.cleared"}"#),
        (
            Event::DoorUnlocked { door: s("main"), ms: 2000, by: "command" },
            r#"{"by":"command","door":"main","ms":2000,"type":"door.unlocked"}"#,
        ),
        (
            Event::DoorLockFailed { door: s("main"), lock: "locked", error: s("/dev/x: disconnected") },
            r#"{"door":"main","error":"/dev/x: disconnected","lock":"locked","type":"door.lock_failed"}"#,
        ),
        (Event::DoorLockRestored { door: s("main") }, r#"{"door":"main","type":"door.lock_restored"}"#),
        (Event::DoorOpened { door: s("main") }, r#"{"door":"main","type":"door.opened"}"#),
        (Event::DoorClosed { door: s("main") }, r#"{"door":"main","type":"door.closed"}"#),
        (Event::DoorForced { door: s("main") }, r#"{"door":"main","type":"door.forced"}"#),
        (
            Event::DoorHeldOpen { door: s("main"), held_open_s: 60 },
            r#"{"door":"main","held_open_s":60,"type":"door.held_open"}"#,
        ),
        (Event::DoorExit { door: s("main") }, r#"{"door":"main","type":"door.exit"}"#),
        (
            Event::EnrollStarted {
                door: s("main"),
                holder: s("staff-ann"),
                until: s("2026-11-25T16:01:00.000Z"),
                via: "command",
                device: None,
            },
            r#"{"door":"main","holder":"staff-ann","type":"enroll.started","until":"2026-11-25T16:01:00.000Z","via":"command"}"#,
        ),
        (
            Event::EnrollStarted {
                door: s("main"),
                holder: s("staff-ann"),
                until: s("2026-11-25T16:01:00.000Z"),
                via: "keypad",
                device: Some(s("keypad1")),
            },
            r#"{"device":"keypad1","door":"main","holder":"staff-ann","type":"enroll.started","until":"2026-11-25T16:01:00.000Z","via":"keypad"}"#,
        ),
        (
            Event::CardEnrolled { door: s("main"), device: s("reader1"), holder: s("staff-ann"), uid: s("04a1b2") },
            r#"{"device":"reader1","door":"main","holder":"staff-ann","type":"card.enrolled","uid":"04a1b2"}"#,
        ),
        (
            Event::EnrollRefused {
                door: s("main"),
                device: s("reader1"),
                holder: s("staff-ann"),
                uid: s("04a1b2"),
                reason: "duplicate",
                message: s("card in use"),
            },
            r#"{"device":"reader1","door":"main","holder":"staff-ann","message":"card in use","reason":"duplicate","type":"enroll.refused","uid":"04a1b2"}"#,
        ),
        (
            Event::EnrollExpired { door: s("main"), holder: s("staff-ann") },
            r#"{"door":"main","holder":"staff-ann","type":"enroll.expired"}"#,
        ),
        (
            Event::EnrollDenied { door: s("main"), device: s("keypad1"), key: "pin", holder: None, reason: "unknown" },
            r#"{"device":"keypad1","door":"main","holder":null,"key":"pin","reason":"unknown","type":"enroll.denied"}"#,
        ),
        (Event::ClockSynchronized { policy: "deny" }, r#"{"policy":"deny","type":"clock.synchronized"}"#),
        (Event::ClockUnsynchronized { policy: "allow" }, r#"{"policy":"allow","type":"clock.unsynchronized"}"#),
        (Event::ClockJumped { by_ms: -3_600_000 }, r#"{"by_ms":-3600000,"type":"clock.jumped"}"#),
        (Event::DeviceOnline { device: s("keypad1") }, r#"{"device":"keypad1","type":"device.online"}"#),
        (
            Event::DeviceOffline { device: s("keypad1"), error: s("gone"), error_kind: "disconnected" },
            r#"{"device":"keypad1","error":"gone","error_kind":"disconnected","type":"device.offline"}"#,
        ),
        (
            Event::DeviceTamper { device: s("reader-a"), door: Some(s("main")), active: true },
            r#"{"active":true,"device":"reader-a","door":"main","type":"device.tamper"}"#,
        ),
        (
            Event::DeviceTamper { device: s("reader-a"), door: None, active: false },
            r#"{"active":false,"device":"reader-a","type":"device.tamper"}"#,
        ),
        (
            Event::DevicePower { device: s("reader-a"), door: Some(s("main")), active: false },
            r#"{"active":false,"device":"reader-a","door":"main","type":"device.power"}"#,
        ),
        (
            Event::AuditGap {
                after: 41,
                reason: "unclean_shutdown",
                since: Some(Some(s("2026-11-25T16:01:00.000Z"))),
                dropped: None,
            },
            r#"{"after":41,"reason":"unclean_shutdown","since":"2026-11-25T16:01:00.000Z","type":"audit.gap"}"#,
        ),
        (
            Event::AuditGap { after: 41, reason: "unclean_shutdown", since: Some(None), dropped: None },
            r#"{"after":41,"reason":"unclean_shutdown","since":null,"type":"audit.gap"}"#,
        ),
        (
            Event::AuditGap { after: 41, reason: "queue_full", since: None, dropped: Some(3) },
            r#"{"after":41,"dropped":3,"reason":"queue_full","type":"audit.gap"}"#,
        ),
        (
            Event::StoreRecovered {
                damage: "unreadable",
                detail: s("bad page"),
                moved_to: s("/var/lib/porter/store.damaged"),
                snapshot: Some(RecoveredSnapshot {
                    file: s("/s/1.snap"),
                    taken: s("2026-11-25T16:01:00.000Z"),
                    generation: 7,
                }),
                restore: "restrictive",
                restored: Restored { holders: 3, tombstones: 1, lockouts: 2, uses: 0 },
                recorded: Some(Recorded { changes: 9, generation: 7, seq: 40 }),
                missing: "changes since the snapshot, until the portal's full sync",
            },
            r#"{"damage":"unreadable","detail":"bad page","missing":"changes since the snapshot, until the portal's full sync","moved_to":"/var/lib/porter/store.damaged","recorded":{"changes":9,"generation":7,"seq":40},"restore":"restrictive","restored":{"holders":3,"lockouts":2,"tombstones":1,"uses":0},"snapshot":{"file":"/s/1.snap","generation":7,"taken":"2026-11-25T16:01:00.000Z"},"type":"store.recovered"}"#,
        ),
        (
            Event::StoreRecovered {
                damage: "emptied",
                detail: s("no holders"),
                moved_to: s("/d"),
                snapshot: None,
                restore: "all",
                restored: Restored { holders: 0, tombstones: 0, lockouts: 0, uses: 0 },
                recorded: None,
                missing: "everything",
            },
            r#"{"damage":"emptied","detail":"no holders","missing":"everything","moved_to":"/d","recorded":null,"restore":"all","restored":{"holders":0,"lockouts":0,"tombstones":0,"uses":0},"snapshot":null,"type":"store.recovered"}"#,
        ),
        (
            Event::CommandRefused { code: "stale", reason: "replay", key: Some("portal-1".into()), fleet: false },
            r#"{"code":"stale","fleet":false,"key":"portal-1","reason":"replay","type":"command.refused"}"#,
        ),
        (
            Event::StorageLow(storage("released")),
            r#"{"free_mb":120,"low_mb":256,"reserve":"released","total_mb":14000,"type":"storage.low"}"#,
        ),
        (
            Event::StorageOk(storage("held")),
            r#"{"free_mb":120,"low_mb":256,"reserve":"held","total_mb":14000,"type":"storage.ok"}"#,
        ),
    ]
}

#[test]
fn every_kind_serialises_as_it_did_before_the_type() {
    for (e, want) in samples() {
        let got = serde_json::Value::Object(e.to_json()).to_string();
        assert_eq!(got, want, "{}", e.kind());
        assert_eq!(e.to_json()["type"], e.kind());
    }
}

#[test]
fn the_samples_cover_every_kind() {
    let mut seen: Vec<&str> = samples().iter().map(|(e, _)| e.kind()).collect();
    seen.dedup();
    assert_eq!(seen, KINDS);
}

/// docs/ops.md gives each event kind a `###` heading under "## Events"
/// (several kinds may share one): exactly the kinds of [`Event`].
#[test]
fn the_docs_list_exactly_the_kinds() {
    let doc = include_str!("../../../docs/ops.md");
    let section = doc.split("\n## Events\n").nth(1).expect("docs/ops.md has an Events section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut documented: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("### "))
        .flat_map(|l| l.split('`').skip(1).step_by(2))
        // The op that reads events back, not an event.
        .filter(|k| !k.starts_with("events.get"))
        .collect();
    documented.sort_unstable();
    let mut kinds = KINDS.to_vec();
    kinds.sort_unstable();
    assert_eq!(documented, kinds);
}
