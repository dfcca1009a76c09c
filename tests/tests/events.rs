//! `events.get` through the real daemon: over a real Mosquitto on a free
//! port, as a portal that missed events would fetch them, and through
//! porterctl (the admin socket and `--mqtt`).

use porter_tests::{Broker, Daemon, Subscriber, P};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn start(broker: &Broker) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    // The smallest log allowed, so that a test can overrun it.
    let d = Daemon::on_broker(dir.path(), broker, "\n[audit]\nretain = 1000\n", "keep_alive_s = 5\n");
    (dir, d)
}

fn oldest_now(r: &Value) -> Value {
    r["result"]["events"][0]["seq"].clone()
}

fn seqs(r: &Value) -> Vec<u64> {
    r["result"]["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// Presents unknown cards until the log holds at least `n` events, in
/// rounds that each wait for their last event (a round stays below the
/// report queue's 1,024).
fn make_events(d: &mut Daemon, sub: &Subscriber, n: u64) {
    let mut last = 0;
    while last < n {
        // Paced below the daemon's cap of 1,000 inputs a second per device
        // (past it inputs are dropped, and the events this waits for never
        // come), and waited for from this round's first line.
        let started = std::time::Instant::now();
        let from = sub.lines.len();
        for _ in 0..200 {
            d.type_line("card:0a0b0c0d");
        }
        let want = last + 150;
        let (_, e) = sub.wait_json(from, &format!("{P}/events"), &format!("event seq >= {want}"), |v| {
            v["seq"].as_u64().is_some_and(|s| s >= want)
        });
        last = e["seq"].as_u64().unwrap().max(want);
        if let Some(rest) = std::time::Duration::from_millis(300).checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

#[test]
fn a_portal_fetches_missed_events_page_by_page_and_sees_what_was_pruned() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-events");
    let (_dir, mut d) = start(&broker);

    // A PIN typed at the door: its grant is an event, and no reply shows it.
    let r = broker.call(&sub, "c-1", "holder.put", json!({"holder": "courier-ups", "role": "courier"}));
    assert_eq!(r["ok"], true, "{r}");
    let pin = broker.call(&sub, "c-2", "pin.generate", json!({"holder": "courier-ups"}))["result"]["pin"]
        .as_str()
        .unwrap()
        .to_string();
    d.type_line(&format!("{pin}#"));
    sub.wait_json(0, &format!("{P}/events"), "access.granted", |v| v["type"] == "access.granted");

    // Nothing pruned yet: the log starts at 1. The grant is there, without
    // the PIN.
    let r = broker.call(&sub, "g-1", "events.get", json!({"after": 0, "limit": 5}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["oldest"], 1, "{r}");
    assert_eq!(seqs(&r)[0], 1);
    let events = r["result"]["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "access.granted" && e["holder"] == "courier-ups"), "{r}");
    assert!(!porter_tests::shows_pin(&r.to_string(), &pin), "{r}");

    // More than the log keeps (retain = 1000): the oldest are pruned.
    make_events(&mut d, &sub, 1300);
    let r = broker.call(&sub, "g-2", "events.get", json!({"after": 0, "limit": 1000}));
    let res = &r["result"];
    let (oldest, newest) = (res["oldest"].as_u64().unwrap(), res["newest"].as_u64().unwrap());
    assert!(newest >= 1300 && oldest > 1 && newest - oldest < 1000, "{res}");
    // The reply starts at the oldest kept, is cut by bytes before 1,000
    // events, and says that more remain.
    let got = seqs(&r);
    assert_eq!(got[0], oldest);
    assert!(got.len() < 1000, "{} events", got.len());
    assert!(res["events"].to_string().len() <= 64 * 1024, "{} bytes", res["events"].to_string().len());
    assert!(r.to_string().len() < 70 * 1024);
    assert_eq!((res["more"].clone(), res["next_after"].clone()), (json!(true), json!(got.last().unwrap())));

    // Page on with next_after until nothing remains: every kept seq once, in
    // order, each event exactly as published on P/events.
    let mut fetched: BTreeMap<u64, Value> = BTreeMap::new();
    let mut page = r;
    for n in 3.. {
        for e in page["result"]["events"].as_array().unwrap() {
            assert!(fetched.insert(e["seq"].as_u64().unwrap(), e.clone()).is_none(), "a seq twice");
        }
        if page["result"]["more"] == false {
            break;
        }
        let after = page["result"]["next_after"].clone();
        page = broker.call(&sub, &format!("g-{n}"), "events.get", json!({"after": after, "limit": 1000}));
        assert_eq!(page["ok"], true, "{page}");
    }
    let last = *fetched.keys().last().unwrap();
    assert!(last >= newest);
    assert_eq!(fetched.keys().copied().collect::<Vec<_>>(), (oldest..=last).collect::<Vec<_>>());
    let published: BTreeMap<u64, Value> = sub
        .lines
        .all()
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("{P}/events ")))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .map(|e| (e["seq"].as_u64().unwrap(), e))
        .collect();
    for (seq, e) in &fetched {
        if let Some(p) = published.get(seq) {
            assert_eq!(p, e, "seq {seq}");
        }
    }
    // Past the newest: nothing, and the same `after` back.
    let r = broker.call(&sub, "g-end", "events.get", json!({"after": last, "limit": 10}));
    assert_eq!(
        (seqs(&r).len(), r["result"]["next_after"].clone(), r["result"]["more"].clone()),
        (0, json!(last), json!(false))
    );

    // The same id again runs again (its reply is not stored: it reads the
    // log), so it now starts at the oldest event kept.
    let again = broker.call(&sub, "g-1", "events.get", json!({"after": 0, "limit": 5}));
    assert_eq!(again["result"]["oldest"], oldest_now(&again));
    assert!(seqs(&again)[0] > 1, "{again}");

    // Bad arguments are `invalid`.
    for (i, args) in [
        json!({"limit": 0}),
        json!({"limit": 1001}),
        json!({"limit": -1}),
        json!({"limit": 1.5}),
        json!({"limit": "ten"}),
        json!({"after": -1}),
        json!({"after": 2.5}),
        json!({"after": "x"}),
        json!({"limit": 1e30}),
        json!({"since": 3}),
    ]
    .into_iter()
    .enumerate()
    {
        let r = broker.call(&sub, &format!("bad-{i}"), "events.get", args.clone());
        assert_eq!(r["error"]["code"], "invalid", "{args}: {r}");
    }
    assert!(!d.log.has(0, &["mqtt disconnected"]), "the session dropped");
}

#[test]
fn porterctl_fetches_events_over_the_socket_and_over_mqtt() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-ctl");
    let (dir, mut d) = start(&broker);
    for _ in 0..10 {
        d.type_line("card:0a0b0c0d");
    }
    sub.wait_json(0, &format!("{P}/events"), "event 10", |v| v["seq"].as_u64() >= Some(10));

    let (code, v) = d.ctl("events.get", &["after=3", "limit=4"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(seqs(&v), vec![4, 5, 6, 7]);
    assert_eq!((v["result"]["next_after"].clone(), v["result"]["more"].clone()), (json!(7), json!(true)));
    assert_eq!(v["result"]["oldest"], 1);
    let (code, v) = d.ctl("events.get", &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(seqs(&v)[0], 1);
    for bad in ["limit=0", "limit=1001", "limit=abc", "after=-3", "limit=2.5"] {
        let (code, v) = d.ctl("events.get", &[bad]);
        assert_eq!((code, v["error"]["code"].as_str()), (1, Some("invalid")), "{bad}: {v}");
    }

    let out = std::process::Command::new(porter_tests::bin("porterctl"))
        .arg("--config")
        .arg(dir.path().join("porter.toml"))
        .args(["--mqtt", &broker.url(), "events.get", "after=8", "limit=2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["controller"].as_str(), seqs(&v)), (Some("room-1"), vec![9, 10]));
}
