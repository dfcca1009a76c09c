//! docs/asyncapi.yaml: valid by the AsyncAPI CLI (npm `@asyncapi/cli`, which
//! scripts/install-test-deps.sh installs under target/asyncapi), complete
//! (every op, error code and event type of the daemon), precise (its schemas
//! refuse what porterd's own parser refuses), and the watcher that checks
//! every message of the end-to-end tests against it (src/asyncapi.rs) both
//! passes Porter's real messages and fails a test on a bad one.

use porter_tests::asyncapi::{checked, contract, schema_name};
use porter_tests::{workspace_root, Broker, Daemon, DEADLINE};
use porterd::provision::command::{self, Op, ParseContext, OPS};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Instant;

const P: &str = "porter/test/room-1";

/// `asyncapi validate` passes the document with no error and no warning. Its
/// one information-level note, that AsyncAPI 3.1 exists, is accepted: the
/// contract is written against 3.0, which code generators read.
#[test]
fn the_asyncapi_cli_validates_the_document_without_errors_or_warnings() {
    let root = workspace_root();
    let cli = root.join("target/asyncapi/node_modules/.bin/asyncapi");
    assert!(cli.exists(), "{} is missing: run scripts/install-test-deps.sh", cli.display());
    let tmp = tempfile::tempdir().unwrap();
    // The CLI's usage metrics off (no network here, and none wanted).
    let metrics = tmp.path().join("analytics.json");
    std::fs::write(&metrics, r#"{"analyticsEnabled":"false","infoMessageShown":"true","userID":"porter-tests"}"#)
        .unwrap();
    let out = Command::new(&cli)
        .args(["validate", "docs/asyncapi.yaml", "--fail-severity", "warn"])
        .current_dir(&root)
        .env("ASYNCAPI_METRICS_CONFIG_PATH", &metrics)
        .env("HOME", tmp.path())
        .output()
        .expect("running asyncapi");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "asyncapi validate failed:\n{text}");
    assert!(text.contains("(0 errors, 0 warnings"), "asyncapi validate reported problems:\n{text}");
    let note = |l: &str| l.split_whitespace().nth(1).is_some_and(|w| w == "information" || w == "hint");
    for line in text.lines().filter(|l| note(l)) {
        assert!(line.contains("asyncapi-latest-version"), "an unexpected note:\n{text}");
    }
}

/// Every op has its command and reply message, every event type and error
/// code is in the document.
#[test]
fn every_op_event_type_and_error_code_is_in_the_document() {
    let c = contract();
    let doc = c.doc();
    for op in OPS {
        let n = schema_name(op);
        for m in [format!("{n}Command"), format!("{n}Reply")] {
            assert!(c.has(&m), "no schema {m} for op {op}");
            assert!(doc["components"]["messages"].get(&m).is_some(), "no message {m} for op {op}");
        }
        assert!(doc["operations"].get(format!("send{n}")).is_some(), "no operation for {op}");
        assert_eq!(doc["components"]["schemas"][format!("{n}Command")]["properties"]["op"]["const"], *op);
    }
    for kind in porterd::event::KINDS {
        let n = format!("{}Event", schema_name(kind));
        assert!(c.has(&n), "no schema for event {kind}");
        assert!(doc["channels"]["events"]["messages"].get(&n).is_some(), "event {kind} not on the events channel");
    }
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    let codes: Vec<&str> = codes.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    use porterd::provision::error::ErrorCode as E;
    let all =
        [E::Invalid, E::NotFound, E::Duplicate, E::Forbidden, E::Unauthorized, E::Stale, E::Unsupported, E::Internal];
    assert_eq!(codes, all.map(|e| e.as_str()));
    for ch in [
        "commands",
        "fleetCommands",
        "replies",
        "events",
        "status",
        "haLockConfig",
        "haBinarySensorConfig",
        "haEventConfig",
        "haSensorConfig",
        "haLockState",
        "haLockCommand",
        "haContactState",
        "haAccess",
    ] {
        assert!(doc["channels"].get(ch).is_some(), "no channel {ch}");
    }
    let will = &doc["servers"]["broker"]["bindings"]["mqtt"]["lastWill"];
    assert_eq!((will["retain"].as_bool(), will["message"].as_str()), (Some(true), Some(r#"{"state":"offline"}"#)));
}

/// Whether porterd's own parser takes `cmd` (the envelope and the op's
/// arguments; what needs the store, such as a PIN in use, is not asked).
/// `pin.set`'s PIN is checked when applied, against `keys.pin_length`:
/// the schema takes 4 to 8 digits, the lengths that key may have, and the
/// watcher's test sends a short one to a real daemon.
fn porter_takes(cmd: &Value) -> bool {
    let Ok(c) = command::parse(cmd.to_string().as_bytes()) else { return false };
    let cx = ParseContext { now_ms: 1_795_622_400_000, pin_length: 6 };
    let pin_ok = |p: &str| (4..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if let (Ok(Op::PinSet { pin, .. }), true) = (Op::parse(&c.op, &c.args, cx), c.op == "pin.set") {
        return pin_ok(&pin);
    }
    Op::parse(&c.op, &c.args, cx).is_ok()
}

/// Commands Porter takes and refuses, each through the schema and through
/// porterd's parser: the two agree. Bounds the schema cannot know (a trivial
/// PIN, an expiry in the past, `pin_length` other than 4 to 8) are left out.
#[test]
fn the_schemas_refuse_what_porter_refuses() {
    let c = contract();
    let cases = [
        // Taken.
        json!({"id": "c-1", "op": "pin.generate", "args": {"holder": "courier-ups"}}),
        json!({"id": 7, "op": "state.get"}),
        json!({"id": "c-2", "op": "state.get", "args": null}),
        json!({"id": "c-3", "op": "holder.put", "args": {"holder": "h.1_a-b", "role": "courier", "doors": ["main"],
            "schedule": [{"days": ["mon", "weekdays"], "from": "07:00", "to": "21:00"}], "valid_from": "2026-11-25T16:00:00Z", "enabled": "true"}}),
        json!({"id": "c-4", "op": "holder.put", "args": {"holder": "h2", "role": "staff", "doors": "*", "name": null}}),
        json!({"id": "c-5", "op": "pin.set", "args": {"holder": "h1", "pin": "583920", "uses": "3"}}),
        json!({"id": "c-6", "op": "card.assign", "args": {"holder": "h1", "uid": "04:A1:B2:C3"}}),
        json!({"id": "c-7", "op": "door.unlock", "args": {"door": "main", "ms": 600000}}),
        json!({"id": "c-8", "op": "holder.list", "args": {"limit": "1000", "role": "resident"}}),
        json!({"id": "c-9", "op": "sync.put", "args": {"retired": ["604728"]}}),
        json!({"id": "c-10", "op": "sync.put", "args": {"holders": [{"holder": "h1", "role": "courier", "pin": {"pin": "583920", "active": false},
            "qr": "abcdefghijklmnop", "cards": ["04a1b2c3", {"uid": "0102", "active": true}]}]}}),
        json!({"id": "c-11", "op": "enroll.start", "args": {"holder": "h1", "door": "main", "timeout_s": 5}}),
        json!({"id": "c-12", "op": "events.get", "args": {"after": 10, "limit": 1}}),
        json!({"id": "c-13", "op": "qr.generate", "args": {"holder": "h1", "expires_in_s": 60}}),
        json!({"id": "c-14", "op": "lockout.clear", "args": {}}),
        json!({"id": "c-15", "op": "sync.begin", "args": {"generation": "42"}}),
        // Refused.
        json!({"id": "c-20", "op": "state.get", "extra": 1}),
        json!({"id": "c-21", "op": "pin.generate", "args": {"holder": "h1", "colour": "red"}}),
        json!({"id": "c-22", "op": "pin.set", "args": {"holder": "h1", "pin": "123"}}),
        json!({"id": "c-23", "op": "pin.set", "args": {"holder": "h1", "pin": "12345a"}}),
        json!({"id": "c-24", "op": "pin.generate", "args": {"holder": "bad id!"}}),
        json!({"id": "c-25", "op": "pin.generate", "args": {"holder": "x".repeat(65)}}),
        json!({"id": "c-26", "op": "pin.generate", "args": {}}),
        json!({"id": "c-27", "op": "card.assign", "args": {"holder": "h1", "uid": "04a1b2c"}}),
        json!({"id": "c-28", "op": "card.assign", "args": {"holder": "h1", "uid": "0102030405060708090a0b"}}),
        json!({"id": "c-29", "op": "door.unlock", "args": {"door": "main", "ms": 99}}),
        json!({"id": "c-30", "op": "holder.put", "args": {"holder": "h1", "role": "janitor"}}),
        json!({"id": "c-31", "op": "holder.put", "args": {"holder": "h1", "role": "staff", "name": "n".repeat(129)}}),
        json!({"id": "c-32", "op": "holder.put", "args": {"holder": "h1", "role": "staff", "schedule": [{"from": "7:00", "to": "21:00"}]}}),
        json!({"id": "c-33", "op": "holder.list", "args": {"limit": 0}}),
        json!({"id": "c-34", "op": "no.such"}),
        json!({"id": 1.5, "op": "state.get"}),
        json!({"id": "x".repeat(129), "op": "state.get"}),
        json!({"op": "state.get"}),
        json!({"id": "c-35", "op": "sync.put", "args": {}}),
        json!({"id": "c-36", "op": "sync.put", "args": {"holders": [{"holder": "h1", "role": "courier", "qr": "short"}]}}),
        json!({"id": "c-37", "op": "sync.put", "args": {"retired": ["604728123"]}}),
        json!({"id": "c-38", "op": "enroll.start", "args": {"holder": "h1", "door": "main", "timeout_s": 601}}),
        json!({"id": "c-39", "op": "pin.generate", "args": {"holder": "h1", "uses": 1001}}),
        json!({"id": "c-40", "op": "qr.generate", "args": {"holder": "h1", "expires_in_s": 59}}),
        json!({"id": "c-41", "op": "state.get", "args": {"x": 1}}),
        json!({"id": "c-42", "op": "holder.put", "args": {"holder": "h1", "role": "staff", "valid_from": "yesterday"}}),
        json!({"id": "c-43", "op": "holder.get", "args": {"holder": "h1", "pin": "583920"}}),
    ];
    let mut refused = 0;
    for cmd in &cases {
        let name = match cmd["op"].as_str() {
            Some(op) if c.has(&format!("{}Command", schema_name(op))) => format!("{}Command", schema_name(op)),
            _ => "Command".into(),
        };
        let schema = c.check(&name, cmd);
        let porter = porter_takes(cmd);
        assert_eq!(schema.is_ok(), porter, "schema {name} and porterd disagree on {cmd}: schema says {schema:?}");
        refused += usize::from(!porter);
        // The generic Command schema agrees with the op's own.
        assert_eq!(c.check("Command", cmd).is_ok(), porter, "Command and porterd disagree on {cmd}");
    }
    assert!(refused >= 20, "too few refused samples: {refused}");
    // An error names the message's place and the schema's.
    let e = c.check("PinSetCommand", &cases[18]).unwrap_err();
    assert!(e.contains("/args/pin") && e.contains("pattern"), "{e}");
}

/// Outbound messages: samples Porter sends pass; a reply, event or status
/// that breaks the contract (a missing field, an unknown code, a PIN in an
/// event) does not.
#[test]
fn the_schemas_refuse_replies_events_and_status_porter_never_sends() {
    let c = contract();
    let ok = c.check(
        "PinGenerateReply",
        &json!({"id": "c-1", "controller": "room-1", "ok": true, "result": {"pin": "483920"}}),
    );
    assert_eq!(ok, Ok(()));
    let err =
        json!({"id": null, "controller": "room-1", "ok": false, "error": {"code": "invalid", "message": "not JSON"}});
    assert_eq!(c.check("Reply", &err), Ok(()));
    assert_eq!(c.check("HolderGetReply", &err), Ok(()));
    for bad in [
        json!({"id": "c-1", "ok": true, "result": {}}),
        json!({"id": "c-1", "ok": true, "result": {"pin": "48a392"}}),
        json!({"id": "c-1", "ok": false, "error": {"code": "nope", "message": "x"}}),
        json!({"id": "c-1", "ok": false, "error": {"message": "x"}}),
    ] {
        assert!(c.check("PinGenerateReply", &bad).is_err(), "{bad}");
    }
    let denied = json!({"seq": 1042, "ts": "2026-11-25T16:00:00.123Z", "type": "access.denied", "door": "main",
        "device": "keypad1", "key": "pin", "holder": null, "reason": "unknown"});
    assert_eq!(c.check("AccessDeniedEvent", &denied), Ok(()));
    assert_eq!(c.check("Event", &denied), Ok(()));
    let mut with_pin = denied.clone();
    with_pin["pin"] = json!("483920");
    let mut no_seq = denied.clone();
    no_seq.as_object_mut().unwrap().remove("seq");
    let mut bad_key = denied.clone();
    bad_key["key"] = json!("retina");
    for bad in [with_pin, no_seq, bad_key] {
        assert!(c.check("AccessDeniedEvent", &bad).is_err(), "{bad}");
        assert!(c.check("Event", &bad).is_err(), "{bad}");
    }
    // The status as porterd builds it (provision/status.rs's pinned bytes),
    // online and at a clean shutdown; the same without a field it always
    // has, or with latency figures that cannot be, is refused.
    let status = json!({"cards":4,"clock":{"synchronized":null,"unsynchronized":"deny"},
        "decision_latency":{"grants":2,"max_us":900,"p50_us":400,"p99_us":900,"window_s":900},
        "devices":{"keypad1":"online","lock1":"unknown"},"generation":7,"holders":3,
        "identity":{"algorithm":"ed25519","key_id":"34750f98bd59fcfc","public_key":"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=",
            "public_key_pem":"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAiojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=\n-----END PUBLIC KEY-----\n"},
        "outbox":2,"pins":3,"qr":1,"state":"online","storage":{"free_mb":512,"low":false},"store":"ok","uptime_s":61,"version":"0.1.0"});
    assert_eq!(c.check("StatusDocument", &status), Ok(()));
    let mut idle = status.clone();
    idle["decision_latency"] = json!({"grants": 0, "max_us": null, "p50_us": null, "p99_us": null, "window_s": 900});
    idle["state"] = json!("offline");
    assert_eq!(c.check("StatusDocument", &idle), Ok(()));
    let mut bad = Vec::new();
    for field in ["decision_latency", "storage", "store", "identity", "clock"] {
        let mut s = status.clone();
        s.as_object_mut().unwrap().remove(field);
        bad.push(s);
    }
    for (field, v) in [
        ("decision_latency", json!({"grants": 0, "max_us": 5, "p50_us": null, "p99_us": null, "window_s": 900})),
        ("decision_latency", json!({"grants": 3, "max_us": null, "p50_us": null, "p99_us": null, "window_s": 900})),
        ("decision_latency", json!({"grants": 3, "max_us": 9, "p50_us": 4, "window_s": 900})),
        ("store", json!("broken")),
        ("devices", json!({"keypad1": "sleeping"})),
    ] {
        let mut s = status.clone();
        s[field] = v;
        bad.push(s);
    }
    for b in &bad {
        assert!(c.check("StatusDocument", b).is_err(), "{b}");
    }
    let mut unlocked = json!({"seq": 9, "ts": "2026-11-25T16:00:00Z", "type": "door.unlocked", "door": "main", "ms": 400, "by": "home_assistant"});
    assert_eq!(c.check("DoorUnlockedEvent", &unlocked), Ok(()));
    unlocked["by"] = json!("somebody");
    assert!(c.check("DoorUnlockedEvent", &unlocked).is_err());
    assert_eq!(c.check("StatusDocument", &json!({"state": "offline"})), Ok(()));
    assert!(c.check("StatusDocument", &json!({"state": "asleep"})).is_err());
    assert!(c.check("StatusDocument", &json!({"state": "online"})).is_err(), "an online status has every field");
}

/// The watcher checks Porter's real messages (commands, replies, events,
/// status) and passes them; a message off the contract published on the
/// broker fails the test that sees it, naming the message and the schema.
#[test]
fn the_watcher_checks_every_message_and_fails_on_one_off_the_contract() {
    let dir = porter_tests::open_dir();
    let broker = Broker::start();
    let d = Daemon::on_broker(dir.path(), &broker, "", "");
    let sub = broker.subscribe(&format!("{P}/#"), "portal-contract");
    sub.wait_json(0, &format!("{P}/status"), "status", |v| v["state"] == "online");
    let r = broker.call(&sub, "c-1", "holder.put", json!({"holder": "h1", "role": "courier"}));
    assert_eq!(r["ok"], true, "{r}");
    let r = broker.call(&sub, "c-2", "pin.generate", json!({"holder": "h1"}));
    assert_eq!(r["ok"], true, "{r}");
    let r = broker.call(&sub, "c-3", "pin.set", json!({"holder": "h1", "pin": "12"}));
    assert_eq!(r["error"]["code"], "invalid", "{r}");
    let r = broker.call(&sub, "c-4", "door.unlock", json!({"door": "main"}));
    assert_eq!(r["ok"], true, "{r}");
    sub.wait_json(0, &format!("{P}/events"), "door.unlocked", |v| v["type"] == "door.unlocked");
    // Status, four commands, four replies and an event at least.
    let deadline = Instant::now() + DEADLINE;
    while checked(broker.port) < 10 {
        assert!(Instant::now() < deadline, "the watcher checked only {} messages", checked(broker.port));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    porter_tests::asyncapi::assert_clean(broker.port);
    // A forged event without its fields, from the test itself.
    broker.publish(&format!("{P}/events"), r#"{"seq":1,"ts":"2026-11-25T16:00:00Z","type":"door.opened"}"#);
    let failed = loop {
        match std::panic::catch_unwind(|| porter_tests::asyncapi::assert_clean(broker.port)) {
            Err(p) => break p,
            Ok(()) => assert!(Instant::now() < deadline, "the watcher never refused the forged event"),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let text = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("DoorOpenedEvent") && text.contains("door") && text.contains("/events"), "{text}");
    // A Home Assistant state and a discovery config Porter would never send.
    for (topic, payload, schema) in [
        (format!("{P}/ha/main/lock"), "OPENED", "HaLockState"),
        (
            "homeassistant/lock/porter_test_room-1/main_lock/config".to_string(),
            r#"{"name":"main lock"}"#,
            "HaLockConfig",
        ),
    ] {
        broker.publish(&topic, payload);
        let failed = loop {
            match std::panic::catch_unwind(|| porter_tests::asyncapi::assert_clean(broker.port)) {
                Err(p) => break p,
                Ok(()) => assert!(Instant::now() < deadline, "the watcher never refused {topic} {payload}"),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let text = failed.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(text.contains(schema) && text.contains(&topic), "{text}");
    }
    // Home Assistant's own command, off the contract, is refused by porterd, not a violation.
    broker.publish(&format!("{P}/ha/main/set"), "PLEASE");
    drop(d);
}

/// Home Assistant: the configs porterd's discovery builds (the daemon's own
/// code, for a door with a contact and one without) each pass their
/// component's schema; the states, commands and access events as docs/mqtt.md
/// gives them pass, and what Porter never sends is refused.
#[test]
fn the_home_assistant_schemas_take_porters_discovery_and_refuse_the_rest() {
    use porterd::provision::home_assistant::{Discovery, HaDoor};
    let c = contract();
    let cfg = porterd::config::HomeAssistantConfig {
        enabled: true,
        discovery_prefix: "homeassistant".into(),
        unlock_doors: vec!["main".into()],
    };
    let doors =
        vec![HaDoor { id: "main".into(), has_contact: true }, HaDoor { id: "back.door".into(), has_contact: false }];
    let d = Discovery::new(cfg, "oak-street", "room-1", doors);
    let configs = d.configs();
    assert!(configs.len() >= 8, "{configs:?}");
    for (topic, payload) in &configs {
        let component = topic.split('/').nth(1).unwrap();
        let schema = match component {
            "lock" => "HaLockConfig",
            "binary_sensor" => "HaBinarySensorConfig",
            "event" => "HaEventConfig",
            "sensor" => "HaSensorConfig",
            other => panic!("{topic}: a component docs/asyncapi.yaml has no channel for: {other}"),
        };
        assert_eq!(c.check(schema, payload), Ok(()), "{topic}: {payload}");
        // What Home Assistant relies on, taken away, is refused.
        for key in ["state_topic", "device", "unique_id"] {
            if payload.get(key).is_some() {
                let mut p = payload.clone();
                p.as_object_mut().unwrap().remove(key);
                assert!(c.check(schema, &p).is_err(), "{topic} without {key}");
            }
        }
        let mut p = payload.clone();
        p["qos"] = json!(0);
        assert!(c.check(schema, &p).is_err(), "{topic} with QoS 0");
    }
    let lock = &configs.iter().find(|(t, _)| t.contains("/lock/")).unwrap().1;
    let mut p = lock.clone();
    p["state_jammed"] = json!("STUCK");
    assert!(c.check("HaLockConfig", &p).is_err());
    // Every entity's availability is the status (whose Last Will says offline), but "online"'s.
    for (t, p) in &configs {
        let online = t.ends_with("/online/config");
        assert_eq!(p.get("availability").is_none(), online, "{t}");
    }
    for (schema, ok, bad) in [
        ("HaLockState", &["LOCKED", "UNLOCKED", "JAMMED"][..], &["locked", "OPEN", "LOCKED\n"][..]),
        ("HaContactState", &["ON", "OFF"], &["on", "OPEN", "true"]),
        ("HaLockCommand", &["UNLOCK", "OPEN", "LOCK"], &["unlock", "{\"op\":\"door.unlock\"}"]),
        ("HaRemoved", &[""], &[" ", "OFF"]),
    ] {
        for p in ok {
            assert_eq!(c.check(schema, &json!(p)), Ok(()), "{schema}: {p:?}");
        }
        for p in bad {
            assert!(c.check(schema, &json!(p)).is_err(), "{schema} took {p:?}");
        }
    }
    let denied = json!({"type": "access.denied", "door": "main", "device": "keypad1", "key": "pin",
        "holder": null, "reason": "unknown", "seq": 3});
    let granted = json!({"type": "access.granted", "door": "main", "device": "keypad1", "key": "pin",
        "holder": "courier-ups", "seq": 4});
    for ev in [&denied, &granted] {
        let (_, p) = d.access(ev).unwrap();
        assert_eq!(c.check("HaAccessEvent", &p), Ok(()), "{p}");
        let mut with_key = p.clone();
        with_key["key"] = json!("pin");
        assert!(c.check("HaAccessEvent", &with_key).is_err(), "{with_key}");
    }
    for bad in [
        json!({"event_type": "granted", "holder": "h1", "reason": "unknown", "device": "k"}),
        json!({"event_type": "denied", "holder": null, "reason": null, "device": "k"}),
        json!({"event_type": "opened", "holder": null, "reason": null, "device": "k"}),
        json!({"event_type": "denied", "holder": null, "reason": "unknown", "device": "k", "pin": "483920"}),
    ] {
        assert!(c.check("HaAccessEvent", &bad).is_err(), "{bad}");
    }
}
