//! Issue 11, storage you can trust on an SD card: what reaches the store from
//! outside is bounded, against the real porterd and a real Mosquitto on a
//! free port.

use porter_tests::{config_text, Broker, Daemon, Subscriber};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const P: &str = "porter/test/room-1";

/// Starts porterd in `dir` against `broker`, with `extra` TOML appended.
fn start(dir: &tempfile::TempDir, broker: &Broker, extra: &str) -> Daemon {
    let cfg = dir.path().join("porter.toml");
    let mqtt = format!("{extra}\n[mqtt]\nurl = \"{}\"\nkeep_alive_s = 5\n", broker.url());
    std::fs::write(&cfg, config_text(dir.path(), 200, false, &mqtt)).unwrap();
    let d = Daemon::start(&cfg, &dir.path().join("admin.sock"));
    d.log.wait_for(0, &["mqtt subscribed"]);
    d
}

fn cmd(broker: &Broker, id: &str, op: &str, args: Value) {
    broker.publish(&format!("{P}/cmd"), &json!({"id": id, "op": op, "args": args}).to_string());
}

fn reply(sub: &Subscriber, id: &str) -> Value {
    sub.wait_json(0, &format!("{P}/reply"), &format!("reply {id}"), |v| v["id"] == id).1
}

/// The bytes of every file under `p`.
fn size_of(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| if e.path().is_dir() { size_of(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) })
        .sum()
}

/// Issue 11: 90 commands with a 1 MB id grew the store from 157 to 872 MB;
/// an id beyond 64 bits was rounded, so two different ids collided.
#[test]
fn oversized_and_rounded_ids_are_refused_and_the_store_does_not_grow() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/reply"), "portal-ids");
    let dir = tempfile::tempdir().unwrap();
    let d = start(&dir, &broker, "");
    cmd(&broker, "warm-up", "state.get", json!({}));
    reply(&sub, "warm-up");
    let store = dir.path().join("data");
    let before = size_of(&store);
    let refused = |from: usize, what: &str, part: &str| {
        sub.wait_json(from, &format!("{P}/reply"), what, |v| {
            v["id"].is_null() && v["error"]["message"].as_str().is_some_and(|m| m.contains(part))
        })
    };
    let mut mark = 0;
    for n in 0..12 {
        let id = format!("{n}-{}", "x".repeat(1_000_000));
        cmd(&broker, &id, "state.get", json!({}));
        let (i, r) = refused(mark, "the reply to a 1 MB id", "at most 128 bytes");
        assert_eq!(r["error"]["code"], "invalid", "{r}");
        mark = i + 1;
    }
    // Two ids beyond 64 bits that JSON would round to the same float: both
    // refused, neither taken for a repeat of the other.
    for (n, id) in ["1180591620717411303424", "1180591620717411303425"].into_iter().enumerate() {
        let op = if n == 0 { "state.get" } else { "holder.list" };
        broker.publish(&format!("{P}/cmd"), &format!(r#"{{"id": {id}, "op": "{op}"}}"#));
        let (i, r) = refused(mark, "the reply to a rounded id", "whole number");
        assert_eq!(r["error"]["code"], "invalid", "{r}");
        mark = i + 1;
    }
    // A 128-byte id and a 64-bit number are ids as before.
    let long = "y".repeat(128);
    cmd(&broker, &long, "state.get", json!({}));
    assert_eq!(reply(&sub, &long)["ok"], true);
    broker.publish(&format!("{P}/cmd"), r#"{"id": 18446744073709551615, "op": "state.get"}"#);
    let (_, r) = sub.wait_json(mark, &format!("{P}/reply"), "u64 id", |v| v["id"] == json!(u64::MAX));
    assert_eq!(r["ok"], true, "{r}");
    // Flushed: every reply is stored before it is sent.
    let grown = size_of(&store).saturating_sub(before);
    assert!(grown < 4 << 20, "the store grew by {grown} bytes for commands it refused");
    drop(d);
}
