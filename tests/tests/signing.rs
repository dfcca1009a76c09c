//! Signed commands (issue 13, docs/mqtt.md "Signed commands") end to end:
//! a real Mosquitto, porterd as a process with `require_signed = true`, and
//! portals that sign with ed25519-dalek (here, from the documented format,
//! not porterd's code), Python's `cryptography`, openssl and porterctl.
//! Commands go out through `mosquitto_pub` (MQTT 5 user properties, and
//! MQTT 3.1.1 for the envelope).

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use porter_tests::{Broker, Daemon, Subscriber, P};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const FLEET: &str = "porter/test/all/cmd";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A portal key and its counter.
struct Portal {
    key: SigningKey,
    id: &'static str,
    counter: u64,
}

impl Portal {
    fn new(seed: u8, id: &'static str) -> Portal {
        Portal { key: SigningKey::from_bytes(&[seed; 32]), id, counter: 0 }
    }

    /// The `[[mqtt.portal_keys]]` entry pinning this key.
    fn pin(&self) -> String {
        format!(
            "[[mqtt.portal_keys]]\nid = \"{}\"\npublic_key = \"{}\"\n",
            self.id,
            b64(self.key.verifying_key().as_bytes())
        )
    }

    /// The user properties signing `cmd` for `topic` with the next counter.
    fn sign(&mut self, topic: &str, cmd: &str, expires: Option<u64>) -> Vec<(String, String)> {
        self.counter += 1;
        self.sign_at(topic, cmd, self.counter, expires)
    }

    /// As docs/mqtt.md says: tag, topic, key id, counter, expiry, one per
    /// line, then the command's bytes.
    fn sign_at(&self, topic: &str, cmd: &str, counter: u64, expires: Option<u64>) -> Vec<(String, String)> {
        let e = expires.map(|e| e.to_string()).unwrap_or_default();
        let msg = format!("porter-cmd-v1\n{topic}\n{}\n{counter}\n{e}\n{cmd}", self.id);
        let sig = b64(&self.key.sign(msg.as_bytes()).to_bytes());
        let mut p = vec![("porter-key".into(), self.id.to_string()), ("porter-counter".into(), counter.to_string())];
        if let Some(e) = expires {
            p.push(("porter-expires".into(), e.to_string()));
        }
        p.push(("porter-sig".into(), sig));
        p
    }
}

/// Publishes `payload` on `topic` with `mosquitto_pub -V mqttv5`, with user
/// properties and an optional Response Topic.
fn publish(broker: &Broker, topic: &str, payload: &str, props: &[(String, String)], response: Option<&str>) {
    let mut c = broker.tool("mosquitto_pub", &[]);
    c.args(["-t", topic, "-s"]);
    for (k, v) in props {
        c.args(["-D", "publish", "user-property", k, v]);
    }
    if let Some(r) = response {
        c.args(["-D", "publish", "response-topic", r]);
    }
    send(c, payload);
}

fn send(mut c: Command, payload: &str) {
    let out = c
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            ch.stdin.take().unwrap().write_all(payload.as_bytes())?;
            ch.wait_with_output()
        })
        .expect("mosquitto_pub");
    assert!(out.status.success(), "mosquitto_pub failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn command(id: &str, op: &str, args: Value) -> String {
    json!({"id": id, "op": op, "args": args}).to_string()
}

/// Waits for the reply to `id` on `topic` among messages after `mark`.
fn reply_on(sub: &Subscriber, mark: usize, topic: &str, id: &str) -> Value {
    sub.wait_json(mark, topic, &format!("reply {id}"), |v| v["id"] == id).1
}

fn assert_ok(v: &Value) {
    assert_eq!(v["ok"], true, "{v}");
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("(ok)")
}

/// porterd with `require_signed = true`, `pins` pinned, and a clock it
/// trusts (so expiry is checked), once subscribed.
fn daemon(dir: &Path, broker: &Broker, pins: &str) -> Daemon {
    let synced = dir.join("synchronized");
    std::fs::write(&synced, "").unwrap();
    let extra = format!("[clock]\nsync_file = \"{}\"\n", synced.display());
    Daemon::on_broker(dir, broker, &extra, &format!("require_signed = true\n{pins}"))
}

/// The door.unlocked events of every command sent so far. Events are
/// published in the order they were recorded, and a command's door.unlocked
/// is recorded before its reply: so once the refusal of an unsigned marker
/// sent now has arrived, so has every earlier door.unlocked.
fn unlocks(broker: &Broker, sub: &Subscriber) -> usize {
    let markers = |from| sub.lines.count(from, &[&format!("{P}/events "), "\"reason\":\"unsigned\""]);
    let before = markers(0);
    publish(broker, &format!("{P}/cmd"), &command("marker", "state.get", json!({})), &[], None);
    let deadline = std::time::Instant::now() + porter_tests::DEADLINE;
    while markers(0) == before {
        assert!(std::time::Instant::now() < deadline, "the marker's refusal never came:\n{}", sub.lines.text());
        sub.lines.wait_within(sub.lines.len(), std::time::Duration::from_millis(200), |_| true);
    }
    // Distinct by seq: events are delivered at least once (a restart sends
    // the last confirmed ones again).
    let seqs: std::collections::BTreeSet<u64> = sub
        .lines
        .all()
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("{P}/events ")))
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|e| e["type"] == "door.unlocked")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    seqs.len()
}

/// A signed door.unlock, applied.
fn unlock(broker: &Broker, sub: &Subscriber, portal: &mut Portal, id: &str) {
    let mark = sub.lines.len();
    let cmd = command(id, "door.unlock", json!({"door": "main", "ms": 100}));
    publish(broker, &format!("{P}/cmd"), &cmd, &portal.sign(&format!("{P}/cmd"), &cmd, None), None);
    assert_ok(&reply_on(sub, mark, &format!("{P}/reply"), id));
}

#[test]
fn unsigned_forged_unknown_replayed_retargeted_and_expired_commands_change_nothing() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-refusals");
    let dir = tempfile::tempdir().unwrap();
    let mut portal = Portal::new(1, "portal-1");
    let d = daemon(dir.path(), &broker, &portal.pin());
    let cmd_topic = format!("{P}/cmd");
    let refused = |id: &str, cmd: &str, topic: &str, props: &[(String, String)], want: &str| {
        let mark = sub.lines.len();
        publish(&broker, topic, cmd, props, None);
        let r = reply_on(&sub, mark, &format!("{P}/reply"), id);
        assert_eq!(code(&r), want, "{id}: {r}");
    };
    let open = |id: &str| command(id, "door.unlock", json!({"door": "main", "ms": 100}));

    refused("u-1", &open("u-1"), &cmd_topic, &[], "unauthorized");
    let forger = Portal::new(9, "portal-1");
    refused("f-1", &open("f-1"), &cmd_topic, &forger.sign_at(&cmd_topic, &open("f-1"), 100, None), "unauthorized");
    let stranger = Portal::new(8, "portal-9");
    refused("k-1", &open("k-1"), &cmd_topic, &stranger.sign_at(&cmd_topic, &open("k-1"), 1, None), "unauthorized");

    // A valid command opens the door once.
    let captured = open("d-1");
    let props = portal.sign(&cmd_topic, &captured, None);
    let mark = sub.lines.len();
    publish(&broker, &cmd_topic, &captured, &props, None);
    assert_ok(&reply_on(&sub, mark, &format!("{P}/reply"), "d-1"));
    // The same bytes again: stale. Under new ids (the issue's attack, which
    // opened the door three times): the signature no longer matches.
    refused("d-1", &captured, &cmd_topic, &props, "stale");
    for id in ["d-2", "d-3", "d-4"] {
        refused(id, &open(id), &cmd_topic, &props, "unauthorized");
    }
    // Re-targeted: signed for room-2, sent to room-1; signed for room-1's
    // topic, sent to the fleet topic.
    let c = open("r-1");
    refused("r-1", &c, &cmd_topic, &portal.sign("porter/test/room-2/cmd", &c, None), "unauthorized");
    let c = open("r-2");
    refused("r-2", &c, FLEET, &portal.sign(&cmd_topic, &c, None), "unauthorized");
    // Expired a second ago, by a clock the daemon trusts.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let c = open("e-1");
    refused("e-1", &c, &cmd_topic, &portal.sign(&cmd_topic, &c, Some(now - 1000)), "stale");
    // Not yet expired: applied.
    let c = open("e-2");
    let mark = sub.lines.len();
    publish(&broker, &cmd_topic, &c, &portal.sign(&cmd_topic, &c, Some(now + 600_000)), None);
    assert_ok(&reply_on(&sub, mark, &format!("{P}/reply"), "e-2"));

    unlock(&broker, &sub, &mut portal, "d-9");
    assert_eq!(unlocks(&broker, &sub), 3, "only the three valid commands opened the door:\n{}", sub.lines.text());
    // Every refusal was recorded (and the marker's) and logged.
    let refusals = sub.lines.count(0, &[&format!("{P}/events "), "\"command.refused\""]);
    // (No restart here: each event arrived once.)
    assert_eq!(refusals, 10 + 1, "{}", sub.lines.text());
    assert!(d.log.has(0, &["command refused", "reason=\"replay\""]) || d.log.has(0, &["command refused", "replay"]));
    // A refused id is not stored as its reply: d-2, signed properly now, is applied.
    unlock(&broker, &sub, &mut portal, "d-2");
    assert_eq!(unlocks(&broker, &sub), 4);
}

#[test]
fn a_replayed_pin_generate_with_another_response_topic_gets_no_pin() {
    let broker = Broker::start();
    let sub = broker.subscribe("#", "portal-pins");
    let dir = tempfile::tempdir().unwrap();
    let mut portal = Portal::new(1, "portal-1");
    let mut other = Portal::new(2, "portal-2");
    let _d = daemon(dir.path(), &broker, &format!("{}{}", portal.pin(), other.pin()));
    let t = format!("{P}/cmd");
    let put = command("h-1", "holder.put", json!({"holder": "courier-ups", "name": "UPS", "role": "courier"}));
    let mark = sub.lines.len();
    publish(&broker, &t, &put, &portal.sign(&t, &put, None), Some("portal/reply"));
    assert_ok(&reply_on(&sub, mark, "portal/reply", "h-1"));

    let gen = command("g-1", "pin.generate", json!({"holder": "courier-ups"}));
    let props = portal.sign(&t, &gen, None);
    let mark = sub.lines.len();
    publish(&broker, &t, &gen, &props, Some("portal/reply"));
    let first = reply_on(&sub, mark, "portal/reply", "g-1");
    let pin = first["result"]["pin"].as_str().expect("a PIN").to_string();

    // The attacker re-sends the captured command, signature and all, or
    // without it, asking for the reply on a topic of their own.
    for p in [props.clone(), vec![]] {
        let mark = sub.lines.len();
        publish(&broker, &t, &gen, &p, Some("attacker/reply"));
        let r = reply_on(&sub, mark, "attacker/reply", "g-1");
        assert!(matches!(code(&r), "stale" | "unauthorized"), "{r}");
        assert!(!porter_tests::shows_pin(&r.to_string(), &pin), "the PIN reached the attacker: {r}");
    }
    // Another pinned key asking again under the id: the PIN is withheld.
    let mark = sub.lines.len();
    publish(&broker, &t, &gen, &other.sign(&t, &gen, None), Some("portal2/reply"));
    let r = reply_on(&sub, mark, "portal2/reply", "g-1");
    assert_eq!(code(&r), "forbidden", "{r}");
    assert!(!porter_tests::shows_pin(&r.to_string(), &pin));
    // The portal that made it, re-signing its retry: the stored reply.
    let mark = sub.lines.len();
    publish(&broker, &t, &gen, &portal.sign(&t, &gen, None), Some("portal/reply"));
    assert_eq!(reply_on(&sub, mark, "portal/reply", "g-1"), first);
}

#[test]
fn a_restart_keeps_the_replay_guard() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-restart");
    let dir = tempfile::tempdir().unwrap();
    let mut portal = Portal::new(1, "portal-1");
    let t = format!("{P}/cmd");
    let cmd = command("x-1", "door.unlock", json!({"door": "main", "ms": 100}));
    let props = portal.sign(&t, &cmd, None);
    {
        let d = daemon(dir.path(), &broker, &portal.pin());
        let mark = sub.lines.len();
        publish(&broker, &t, &cmd, &props, None);
        assert_ok(&reply_on(&sub, mark, &format!("{P}/reply"), "x-1"));
        d.stop();
    }
    let _d = daemon(dir.path(), &broker, &portal.pin());
    let mark = sub.lines.len();
    publish(&broker, &t, &cmd, &props, None);
    assert_eq!(code(&reply_on(&sub, mark, &format!("{P}/reply"), "x-1")), "stale");
    unlock(&broker, &sub, &mut portal, "x-2");
    assert_eq!(unlocks(&broker, &sub), 2);
}

/// The replay guard outlives the store: a store lost to the SD card (here
/// deleted, with no snapshot to restore) is recovered, and the counters
/// kept in its check record still refuse a command accepted before.
#[test]
fn a_lost_store_keeps_the_replay_guard() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-lost-store");
    let dir = tempfile::tempdir().unwrap();
    let mut portal = Portal::new(1, "portal-1");
    let t = format!("{P}/cmd");
    let cmd = command("l-1", "door.unlock", json!({"door": "main", "ms": 100}));
    let props = portal.sign(&t, &cmd, None);
    {
        let d = daemon(dir.path(), &broker, &portal.pin());
        let mark = sub.lines.len();
        publish(&broker, &t, &cmd, &props, None);
        assert_ok(&reply_on(&sub, mark, &format!("{P}/reply"), "l-1"));
        assert!(d.stop().0.success());
    }
    std::fs::remove_dir_all(dir.path().join("data/store")).unwrap();
    let d = daemon(dir.path(), &broker, &portal.pin());
    assert!(d.log.has(0, &["store recovered"]), "{}", d.log.text());
    let mark = sub.lines.len();
    publish(&broker, &t, &cmd, &props, None);
    assert_eq!(code(&reply_on(&sub, mark, &format!("{P}/reply"), "l-1")), "stale", "a replay after the recovery");
    assert!(d.log.has(0, &["command counter restored from the store's check record"]), "{}", d.log.text());
    unlock(&broker, &sub, &mut portal, "l-2");
    assert_eq!(unlocks(&broker, &sub), 2, "the replay opened the door");
}

#[test]
fn the_fleet_topic_refuses_secrets_and_takes_the_rest() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-fleet");
    let dir = tempfile::tempdir().unwrap();
    let mut portal = Portal::new(1, "portal-1");
    let _d = daemon(dir.path(), &broker, &portal.pin());
    for (id, op, args) in [
        ("s-1", "pin.set", json!({"holder": "h1", "pin": "483920"})),
        ("s-2", "pin.generate", json!({"holder": "h1"})),
        ("s-3", "qr.generate", json!({"holder": "h1"})),
        ("s-4", "sync.put", json!({"holders": [{"holder": "h1", "role": "courier", "pin": "483920"}]})),
    ] {
        let c = command(id, op, args);
        let mark = sub.lines.len();
        publish(&broker, FLEET, &c, &portal.sign(FLEET, &c, None), None);
        let r = reply_on(&sub, mark, &format!("{P}/reply"), id);
        assert_eq!(code(&r), "forbidden", "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("own topic"), "{r}");
    }
    let c = command("s-5", "door.unlock", json!({"door": "main", "ms": 100}));
    let mark = sub.lines.len();
    publish(&broker, FLEET, &c, &portal.sign(FLEET, &c, None), None);
    assert_ok(&reply_on(&sub, mark, &format!("{P}/reply"), "s-5"));
}

/// A portal written in Python with the `cryptography` package (installed by
/// scripts/install-test-deps.sh) signs from a PEM key file that openssl made.
#[test]
fn a_python_portal_and_porterctl_sign_with_an_openssl_key() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-py");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("portal.pem");
    let ok = Command::new("openssl").args(["genpkey", "-algorithm", "ed25519", "-out"]).arg(&key).status().unwrap();
    assert!(ok.success());
    let public = Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&key).output().unwrap();
    let public = String::from_utf8(public.stdout).unwrap();
    let pins = format!("[[mqtt.portal_keys]]\nid = \"portal-py\"\npublic_key = '''\n{public}'''\n");
    let _d = daemon(dir.path(), &broker, &pins);

    let t = format!("{P}/cmd");
    let cmd = command("py-1", "door.unlock", json!({"door": "main", "ms": 100}));
    let script = r#"
import base64, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
key = load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
topic, key_id, counter, command = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5].encode()
message = b"porter-cmd-v1\n" + topic.encode() + b"\n" + key_id.encode() + b"\n" + str(counter).encode() + b"\n" + b"\n" + command
print(base64.b64encode(key.sign(message)).decode())
"#;
    let out =
        Command::new("python3").arg("-c").arg(script).arg(&key).args([&t, "portal-py", "7", &cmd]).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    let sig = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let props: Vec<(String, String)> =
        [("porter-key", "portal-py"), ("porter-counter", "7"), ("porter-sig", sig.as_str())]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let mark = sub.lines.len();
    publish(&broker, &t, &cmd, &props, None);
    assert_ok(&reply_on(&sub, mark, &format!("{P}/reply"), "py-1"));

    // porterctl, with the same key file; its counter (the wall clock in
    // ms) is far above the Python portal's 7.
    let out = Command::new(porter_tests::bin("porterctl"))
        .args(["--mqtt", &broker.url(), "--site", "test", "--controller", "room-1", "--sign-key"])
        .arg(&key)
        .args(["--key-id", "portal-py", "door.unlock", "door=main", "ms=100"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "porterctl: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
    // Unsigned, porterctl is refused.
    let out = Command::new(porter_tests::bin("porterctl"))
        .args(["--mqtt", &broker.url(), "--site", "test", "--controller", "room-1", "door.unlock", "door=main"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unauthorized"));
}

/// MQTT 3.1.1 has no user properties: the envelope carries the signature
/// (mosquitto_pub -V mqttv311).
#[test]
fn an_mqtt_311_client_signs_with_the_envelope() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-311");
    let dir = tempfile::tempdir().unwrap();
    let mut portal = Portal::new(1, "portal-1");
    let _d = daemon(dir.path(), &broker, &portal.pin());
    let t = format!("{P}/cmd");
    let envelope = |portal: &mut Portal, id: &str| {
        let cmd = command(id, "door.unlock", json!({"door": "main", "ms": 100}));
        let props = portal.sign(&t, &cmd, None);
        let get = |k: &str| props.iter().find(|(n, _)| n == k).unwrap().1.clone();
        json!({
            "signed": {"key": portal.id, "counter": portal.counter, "sig": get("porter-sig")},
            "command": b64(cmd.as_bytes()),
        })
        .to_string()
    };
    let publish311 = |payload: &str| {
        let mut c = Command::new("mosquitto_pub");
        c.args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-V", "mqttv311", "-q", "1", "-t", &t, "-s"]);
        send(c, payload);
    };
    let env = envelope(&mut portal, "v4-1");
    let mark = sub.lines.len();
    publish311(&env);
    assert_ok(&reply_on(&sub, mark, &format!("{P}/reply"), "v4-1"));
    // The same envelope again: stale (its id is inside the envelope, so
    // the refusal's reply has none; the event says why).
    let mark = sub.lines.len();
    publish311(&env);
    sub.wait_json(mark, &format!("{P}/events"), "command.refused", |v| {
        v["type"] == "command.refused" && v["reason"] == "replay"
    });
    unlock(&broker, &sub, &mut portal, "v4-2");
    assert_eq!(unlocks(&broker, &sub), 2);
}
