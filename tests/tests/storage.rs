//! Issue 11, storage you can trust on an SD card: what reaches the store from
//! outside is bounded, against the real porterd and a real Mosquitto on a
//! free port.

use porter_tests::{shows_pin, Broker, Daemon, P};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Starts porterd in `dir` against `broker`, with `extra` TOML appended.
fn start(dir: &tempfile::TempDir, broker: &Broker, extra: &str) -> Daemon {
    Daemon::on_broker(dir.path(), broker, extra, "keep_alive_s = 5\n")
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
    broker.command("warm-up", "state.get", json!({}));
    sub.reply("warm-up");
    // The sled folder only: the space reserve beside it (data/reserve, a
    // fixed 16 MiB) is written in the background after start and would
    // count as growth if it were still being written here.
    let store = dir.path().join("data").join("store");
    let before = size_of(&store);
    let refused = |from: usize, what: &str, part: &str| {
        sub.wait_json(from, &format!("{P}/reply"), what, |v| {
            v["id"].is_null() && v["error"]["message"].as_str().is_some_and(|m| m.contains(part))
        })
    };
    let mut mark = 0;
    for n in 0..12 {
        let id = format!("{n}-{}", "x".repeat(1_000_000));
        broker.command(&id, "state.get", json!({}));
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
    broker.command(&long, "state.get", json!({}));
    assert_eq!(sub.reply(&long)["ok"], true);
    broker.publish(&format!("{P}/cmd"), r#"{"id": 18446744073709551615, "op": "state.get"}"#);
    let (_, r) = sub.wait_json(mark, &format!("{P}/reply"), "u64 id", |v| v["id"] == json!(u64::MAX));
    assert_eq!(r["ok"], true, "{r}");
    // Flushed: every reply is stored before it is sent.
    let grown = size_of(&store).saturating_sub(before);
    assert!(grown < 4 << 20, "the store grew by {grown} bytes for commands it refused");
    drop(d);
}

/// `n` holders with a card each, numbered from `from`, as `sync.put` takes them.
fn carded(from: usize, n: usize) -> Value {
    let hs: Vec<Value> = (from..from + n)
        .map(|i| json!({"holder": format!("h{i}"), "role": "resident", "cards": [format!("{i:08x}")]}))
        .collect();
    json!({ "holders": hs })
}

/// Issue 11: a staged sync that was never committed stayed on disk for good.
#[test]
fn an_abandoned_sync_expires_and_the_portal_is_told_to_begin_again() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/reply"), "portal-idle");
    let dir = tempfile::tempdir().unwrap();
    let d = start(&dir, &broker, "[store]\nsync_idle_s = 2\n");
    broker.command("a-1", "holder.put", json!({"holder": "live", "role": "staff"}));
    assert_eq!(sub.reply("a-1")["ok"], true);
    broker.command("a-2", "sync.begin", json!({"generation": 1}));
    assert_eq!(sub.reply("a-2")["ok"], true);
    broker.command("a-3", "sync.put", carded(0, 10));
    assert_eq!(sub.reply("a-3")["result"]["staged"], 10);
    // The portal goes away; the controller drops the staged set by itself.
    let (i, _) = d.log.wait_for(0, &["staged set expired"]);
    d.log.wait_for(i, &["staged set cleared"]);
    for (id, op, args) in [("a-4", "sync.put", carded(10, 1)), ("a-5", "sync.commit", json!({}))] {
        broker.command(id, op, args);
        let r = sub.reply(id);
        assert_eq!(r["error"]["code"], "stale", "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("send sync.begin again"), "{r}");
    }
    broker.command("a-6", "state.get", json!({}));
    let r = sub.reply("a-6");
    assert_eq!((r["result"]["generation"].as_u64(), r["result"]["holders"].as_u64()), (Some(0), Some(1)), "{r}");
    // Begun again, the sync goes through.
    broker.command("a-7", "sync.begin", json!({"generation": 1}));
    assert_eq!(sub.reply("a-7")["ok"], true);
    broker.command("a-8", "sync.put", carded(0, 3));
    assert_eq!(sub.reply("a-8")["result"]["staged"], 3);
    broker.command("a-9", "sync.commit", json!({}));
    assert_eq!(sub.reply("a-9")["result"]["holders"], 3);
}

/// Issue 11: clearing 200,000 staged holders at the next sync.begin took
/// 76 s, during which no MQTT command was handled.
#[test]
fn clearing_a_large_staged_set_does_not_hold_up_the_next_command() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/reply"), "portal-clear");
    let dir = tempfile::tempdir().unwrap();
    let d = start(&dir, &broker, "");
    broker.command("b-0", "sync.begin", json!({"generation": 1}));
    assert_eq!(sub.reply("b-0")["ok"], true);
    for n in 0..20 {
        let id = format!("b-put-{n}");
        broker.command(&id, "sync.put", carded(n * 1000, 1000));
        assert_eq!(sub.reply(&id)["ok"], true);
    }
    // Abandoned: the portal begins again, and asks for the state at once.
    let mark = d.log.len();
    let sent = Instant::now();
    broker.command("b-1", "sync.begin", json!({"generation": 2}));
    broker.command("b-2", "state.get", json!({}));
    assert_eq!(sub.reply("b-1")["ok"], true);
    assert_eq!(sub.reply("b-2")["result"]["holders"], 0);
    let answered = sent.elapsed();
    let (got, _) = d.log.wait_for(mark, &["mqtt command", "op=state.get"]);
    let (cleared, line) = d.log.wait_for(mark, &["staged set cleared"]);
    assert!(got < cleared, "state.get waited for the clear ({answered:?}): {line}");
    // The new sync sees nothing of the old one.
    broker.command("b-3", "sync.put", carded(5, 2));
    assert_eq!(sub.reply("b-3")["result"]["staged"], 2);
    broker.command("b-4", "sync.commit", json!({}));
    assert_eq!(sub.reply("b-4")["result"]["holders"], 2);
}

/// Replies to reads are not kept for idempotency: 40 pages of 500 holders
/// (about 40 KB each) would otherwise stay on disk, one per id, up to
/// 50,000 of them. A repeated id reads again.
#[test]
fn replies_to_reads_are_not_kept_on_disk() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/reply"), "portal-reads");
    let dir = tempfile::tempdir().unwrap();
    let _d = start(&dir, &broker, "");
    broker.command("r-1", "sync.begin", json!({"generation": 1}));
    assert_eq!(sub.reply("r-1")["ok"], true);
    broker.command("r-2", "sync.put", carded(0, 500));
    assert_eq!(sub.reply("r-2")["ok"], true);
    broker.command("r-3", "sync.commit", json!({}));
    assert_eq!(sub.reply("r-3")["result"]["holders"], 500);
    // The sled folder only: the space reserve beside it (data/reserve, a
    // fixed 16 MiB) is written in the background after start and would
    // count as growth if it were still being written here.
    let store = dir.path().join("data").join("store");
    let before = size_of(&store);
    let mut page_bytes = 0;
    for n in 0..40 {
        let id = format!("list-{n}");
        let from = sub.lines.len();
        broker.command(&id, "holder.list", json!({"limit": 500}));
        let (_, r) = sub.wait_json(from, &format!("{P}/reply"), "a page", |v| v["id"] == id.as_str());
        assert_eq!(r["result"]["holders"].as_array().map(Vec::len), Some(500), "{r}");
        page_bytes = r.to_string().len();
    }
    let grown = size_of(&store).saturating_sub(before);
    assert!(grown < 40 * page_bytes as u64 / 4, "the store grew by {grown} bytes for 40 reads of {page_bytes} bytes");
    // The same id again is read again: a holder added since shows.
    let from = sub.lines.len();
    broker.command("r-4", "holder.put", json!({"holder": "later", "role": "staff"}));
    assert_eq!(sub.wait_json(from, &format!("{P}/reply"), "r-4", |v| v["id"] == "r-4").1["ok"], true);
    let from = sub.lines.len();
    broker.command("list-0", "holder.get", json!({"holder": "later"}));
    let (_, r) = sub.wait_json(from, &format!("{P}/reply"), "list-0 again", |v| v["id"] == "list-0");
    assert_eq!(r["ok"], true, "{r}");
}

/// Every file under `p`, in every folder.
fn files_under(p: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(p)
        .unwrap()
        .filter_map(Result::ok)
        .flat_map(|e| if e.path().is_dir() { files_under(&e.path()) } else { vec![e.path()] })
        .collect()
}

/// Issue 11: a store lost without a snapshot forgot its tombstones, so a
/// deleted PIN could be set again. The portal's full sync carries the PINs it
/// retired; they are refused as a deleted PIN is, and shown nowhere.
#[test]
fn a_full_sync_brings_back_retired_pins_after_a_lost_store_and_never_shows_them() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/reply"), "portal-retired");
    let dir = tempfile::tempdir().unwrap();
    let (old, also, live, fresh) = ("604728", "730194", "502817", "913604");
    let d = start(&dir, &broker, "");
    // A courier's PIN is deleted: a tombstone.
    broker.command("t-1", "holder.put", json!({"holder": "courier-old", "role": "courier"}));
    assert_eq!(sub.reply("t-1")["ok"], true);
    broker.command("t-2", "pin.set", json!({"holder": "courier-old", "pin": old}));
    assert_eq!(sub.reply("t-2")["ok"], true);
    broker.command("t-3", "pin.delete", json!({"holder": "courier-old"}));
    assert_eq!(sub.reply("t-3")["ok"], true);
    assert!(d.stop().0.success());
    // The store and its snapshots are lost: the tombstone with them.
    std::fs::remove_dir_all(dir.path().join("data/store")).unwrap();
    let snapshots = dir.path().join("data/snapshots");
    if snapshots.exists() {
        std::fs::remove_dir_all(snapshots).unwrap();
    }
    let d = start(&dir, &broker, "");
    assert!(d.log.has(0, &["store recovered"]), "the lost store was not noticed");
    // The portal's full sync, with the PINs it retired.
    broker.command("t-4", "sync.begin", json!({"generation": 1}));
    assert_eq!(sub.reply("t-4")["ok"], true);
    let holders = json!([{"holder": "courier-ups", "role": "courier", "pin": live}]);
    broker.command("t-5", "sync.put", json!({"holders": holders, "retired": [old, also]}));
    let r = sub.reply("t-5");
    assert_eq!((r["result"]["staged"].as_u64(), r["result"]["retired"].as_u64()), (Some(1), Some(2)), "{r}");
    // A holder's PIN cannot be retired: the error names the holder.
    broker.command("t-6", "sync.put", json!({"retired": [live]}));
    let r = sub.reply("t-6");
    assert_eq!(r["error"]["code"], "duplicate", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("`courier-ups`"), "{r}");
    let mark = d.log.len();
    broker.command("t-7", "sync.commit", json!({}));
    let r = sub.reply("t-7");
    assert_eq!((r["result"]["holders"].as_u64(), r["result"]["retired"].as_u64()), (Some(1), Some(2)), "{r}");
    d.log.wait_for(mark, &["snapshot written", "generation=1"]);
    // A PIN deleted now, to compare the refusals with.
    broker.command("t-8", "holder.put", json!({"holder": "staff-ann", "role": "staff"}));
    assert_eq!(sub.reply("t-8")["ok"], true);
    broker.command("t-9", "pin.set", json!({"holder": "staff-ann", "pin": fresh}));
    assert_eq!(sub.reply("t-9")["ok"], true);
    broker.command("t-10", "pin.delete", json!({"holder": "staff-ann"}));
    assert_eq!(sub.reply("t-10")["ok"], true);
    broker.command("t-11", "pin.set", json!({"holder": "staff-ann", "pin": fresh}));
    let deleted = sub.reply("t-11")["error"].clone();
    assert_eq!(deleted["code"], "duplicate", "{deleted}");
    for (n, pin) in [old, also].into_iter().enumerate() {
        let id = format!("t-set-{n}");
        broker.command(&id, "pin.set", json!({"holder": "staff-ann", "pin": pin}));
        assert_eq!(sub.reply(&id)["error"], deleted, "over MQTT");
        let (code, r) = d.ctl("pin.set", &["holder=staff-ann", &format!("pin={pin}")]);
        assert_ne!(code, 0);
        assert_eq!(r["error"], deleted, "over the admin socket");
    }
    // Nowhere in plaintext: not in a reply, a log line, or a file of data_dir.
    let (status, log) = d.stop();
    assert!(status.success());
    for pin in [old, also] {
        assert!(!sub.lines.all().iter().any(|l| shows_pin(l, pin)), "{pin} in a reply");
        assert!(!log.all().iter().any(|l| shows_pin(l, pin)), "{pin} in the log");
        for f in files_under(&dir.path().join("data")) {
            let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
            assert!(!shows_pin(&text, pin), "{pin} in {}", f.display());
        }
    }
}
