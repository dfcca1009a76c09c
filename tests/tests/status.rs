//! The retained status is current: republished within the debounce after
//! any change of what it reports (not only at the minute's refresh), and it
//! carries the decision latency the controller measures on itself.
//! A real Mosquitto on a free port, porterd as a process, mosquitto_sub as
//! the portal.

use porter_tests::{Broker, Daemon, Subscriber, P};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The daemon's bound: a change is looked for every 250 ms and published at
/// most once a second (docs/mqtt.md, "Status"), so within 1.25 s; the rest
/// is room for a loaded machine. The minute's refresh is far beyond it.
const WITHIN: Duration = Duration::from_millis(2500);

/// Waits for a status after line `from` that satisfies `pred`, at most
/// [`WITHIN`] from `since`; returns it.
fn status_within(sub: &Subscriber, from: usize, since: Instant, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let topic = format!("{P}/status");
    let left = WITHIN.saturating_sub(since.elapsed());
    let found = sub.lines.wait_within(from, left, |l| {
        l.split_once(' ').is_some_and(|(t, p)| t == topic && serde_json::from_str(p).is_ok_and(|v: Value| pred(&v)))
    });
    let Some((_, line)) = found else {
        panic!("no status with {what} within {WITHIN:?}; statuses seen: {:?}", statuses(sub));
    };
    serde_json::from_str(line.split_once(' ').unwrap().1).unwrap()
}

fn statuses(sub: &Subscriber) -> Vec<String> {
    sub.lines.all().into_iter().filter(|l| l.starts_with(&format!("{P}/status "))).collect()
}

/// The retained status as a portal connecting now reads it.
fn retained(broker: &Broker) -> Value {
    let out = broker
        .tool("mosquitto_sub", &[])
        .args(["-t", &format!("{P}/status"), "-C", "1", "-W", "10"])
        .stderr(Stdio::piped())
        .output()
        .expect("mosquitto_sub");
    assert!(out.status.success(), "no retained status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_status_is_republished_within_the_debounce_after_a_key_change_and_a_sync() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-status");
    let dir = tempfile::tempdir().unwrap();
    let _d = Daemon::on_broker(dir.path(), &broker, "", "");
    let (_, first) = sub.wait_json(0, &format!("{P}/status"), "status online", |v| v["state"] == "online");
    let holders = first["holders"].as_u64().unwrap();

    // holder.put: the reply says it is on disk; the status follows.
    let mark = sub.lines.len();
    let r = broker.call(&sub, "s-1", "holder.put", json!({"holder": "courier-ups", "role": "courier"}));
    let at = Instant::now();
    assert_eq!(r["ok"], true, "{r}");
    let s = status_within(&sub, mark, at, "holders + 1", |v| v["holders"].as_u64() == Some(holders + 1));
    assert_eq!(s["state"], "online");
    assert_eq!(retained(&broker)["holders"], holders + 1, "the retained status itself is current");

    // pin.generate: the pin count.
    let mark = sub.lines.len();
    let r = broker.call(&sub, "s-2", "pin.generate", json!({"holder": "courier-ups"}));
    let at = Instant::now();
    assert_eq!(r["ok"], true, "{r}");
    let pins = first["pins"].as_u64().unwrap() + 1;
    status_within(&sub, mark, at, "pins + 1", |v| v["pins"].as_u64() == Some(pins));

    // A full sync: the generation and every count are the synced set's.
    broker.call(&sub, "s-3", "sync.begin", json!({"generation": 42}));
    let set = json!({"holders": [
        {"holder": "h1", "role": "courier"}, {"holder": "h2", "role": "staff"}, {"holder": "h3", "role": "resident"}
    ]});
    assert_eq!(broker.call(&sub, "s-4", "sync.put", set)["ok"], true);
    let mark = sub.lines.len();
    let r = broker.call(&sub, "s-5", "sync.commit", json!({}));
    let at = Instant::now();
    assert_eq!(r["ok"], true, "{r}");
    let s = status_within(&sub, mark, at, "generation 42", |v| v["generation"] == 42);
    assert_eq!((s["holders"].as_u64(), s["pins"].as_u64()), (Some(3), Some(0)), "{s}");
    let r = retained(&broker);
    assert_eq!((r["generation"].as_u64(), r["holders"].as_u64()), (Some(42), Some(3)), "{r}");
}

#[test]
fn the_status_reports_the_decision_latency_of_recent_grants() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-latency");
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::on_broker(dir.path(), &broker, "", "");
    let (_, first) = sub.wait_json(0, &format!("{P}/status"), "status online", |v| v["state"] == "online");
    let l = &first["decision_latency"];
    assert_eq!(l["grants"], 0, "{first}");
    assert!(l["p50_us"].is_null() && l["p99_us"].is_null() && l["max_us"].is_null(), "{first}");
    assert_eq!(l["window_s"], 900, "{first}");

    broker.call(&sub, "l-1", "holder.put", json!({"holder": "courier-ups", "role": "courier"}));
    broker.call(&sub, "l-2", "pin.set", json!({"holder": "courier-ups", "pin": "483920"}));
    let started = Instant::now();
    for _ in 0..5 {
        let mark = d.log.len();
        d.type_line("483920#");
        d.log.wait_for(mark, &["access granted"]);
    }
    let took = started.elapsed();
    let at = Instant::now();
    let s = status_within(&sub, 0, at, "5 grants measured", |v| v["decision_latency"]["grants"] == 5);
    let l = &s["decision_latency"];
    let (p50, p99, max) = (l["p50_us"].as_u64().unwrap(), l["p99_us"].as_u64().unwrap(), l["max_us"].as_u64().unwrap());
    assert!(p50 <= p99 && p99 <= max, "{l}");
    // Plausible: more than nothing, and less than the whole typing loop took
    // (each grant was decided well inside it).
    assert!(p50 > 0, "{l}");
    assert!((max as u128) < took.as_micros(), "worst {max} µs, but the five grants took {took:?}: {l}");
}
