//! Signed commands (issue 13, docs/mqtt.md "Signed commands") end to end:
//! a real Mosquitto configured as docs/mqtt.md recommends (mutual TLS,
//! `use_identity_as_username`, its ACL file with the portal and a block per
//! controller: `porter_tests::tls::Site`), porterd as a process with
//! `require_signed = true` connecting with its own certificate, and portals
//! that sign with ed25519-dalek (here, from the documented format, not
//! porterd's code), Python's `cryptography`, openssl and porterctl.
//! Commands go out through `mosquitto_pub` with the portal's certificate
//! (MQTT 5 user properties, and MQTT 3.1.1 for the envelope): the identity
//! the ACL lets publish commands, which is all a leaked portal credential
//! gives an attacker.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use porter_tests::tls::Site;
use porter_tests::{Broker, Daemon, Subscriber, P};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const FLEET: &str = "porter/test/all/cmd";
const ROOM2: &str = "porter/test/room-2";
/// The portal's reply prefix for room-1, which the documented ACL lets
/// room-1 write (docs/mqtt.md, "ACLs").
const REPLIES: &str = "portal/replies/test/room-1";

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

/// porterd as room-1 on `site` (its own certificate) with `require_signed
/// = true`, `pins` pinned, and a clock it trusts (so expiry is checked),
/// once subscribed.
fn daemon(dir: &Path, site: &Site, pins: &str) -> Daemon {
    let synced = dir.join("synchronized");
    std::fs::write(&synced, "").unwrap();
    let extra = format!("[clock]\nsync_file = \"{}\"\n", synced.display());
    Daemon::on_broker(dir, site, &extra, &format!("require_signed = true\n{}{pins}", site.porterd_lines("room-1")))
}

/// [`daemon`] as room-2, beside room-1 on the same broker.
fn room2(dir: &Path, site: &Site, pins: &str) -> Daemon {
    let mqtt = format!("url = \"{}\"\nrequire_signed = true\n{}{pins}", site.url(), site.porterd_lines("room-2"));
    let cfg = porter_tests::mqtt_config(dir, false, "", &mqtt);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replacen("controller = \"room-1\"", "controller = \"room-2\"", 1)).unwrap();
    let d = Daemon::start(&cfg, &dir.join("admin.sock"));
    d.log.wait_for(0, &["mqtt subscribed"]);
    d
}

/// The door.unlocked events of every command sent so far. Events are
/// published in the order they were recorded, and a command's door.unlocked
/// is recorded before its reply: so once the refusal of an unsigned marker
/// sent now has arrived, so has every earlier door.unlocked.
fn unlocks(broker: &Broker, sub: &Subscriber) -> usize {
    unlocks_at(broker, sub, P)
}

/// [`unlocks`] of the controller whose topics start with `prefix`.
fn unlocks_at(broker: &Broker, sub: &Subscriber, prefix: &str) -> usize {
    let events = format!("{prefix}/events ");
    let markers = |from| sub.lines.count(from, &[&events, "\"reason\":\"unsigned\""]);
    let before = markers(0);
    publish(broker, &format!("{prefix}/cmd"), &command("marker", "state.get", json!({})), &[], None);
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
        .filter_map(|l| l.strip_prefix(&events))
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
    let broker = Site::start();
    let sub = broker.subscribe("porter/test/#", "portal-refusals");
    let (dir, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut portal = Portal::new(1, "portal-1");
    let d = daemon(dir.path(), &broker, &portal.pin());
    let _room2 = room2(dir2.path(), &broker, &portal.pin());
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
    // topic, sent to room-2 (which refuses it) and to the fleet topic
    // (which both refuse).
    let c = open("r-1");
    refused("r-1", &c, &cmd_topic, &portal.sign(&format!("{ROOM2}/cmd"), &c, None), "unauthorized");
    let c = open("r-3");
    let mark = sub.lines.len();
    publish(&broker, &format!("{ROOM2}/cmd"), &c, &portal.sign(&cmd_topic, &c, None), None);
    assert_eq!(code(&reply_on(&sub, mark, &format!("{ROOM2}/reply"), "r-3")), "unauthorized");
    let c = open("r-2");
    let mark = sub.lines.len();
    refused("r-2", &c, FLEET, &portal.sign(&cmd_topic, &c, None), "unauthorized");
    assert_eq!(code(&reply_on(&sub, mark, &format!("{ROOM2}/reply"), "r-2")), "unauthorized");
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
    // Room-2 was sent nothing valid: its door never opened.
    assert_eq!(unlocks_at(&broker, &sub, ROOM2), 0, "{}", sub.lines.text());
}

#[test]
fn a_replayed_pin_generate_with_another_response_topic_gets_no_pin() {
    let broker = Site::start();
    let sub = broker.subscribe_with(&[&format!("{P}/#"), "portal/replies/#"], "portal-pins", &["-v"]);
    let (mine, attacker, other_portal) =
        (format!("{REPLIES}/portal"), format!("{REPLIES}/attacker"), format!("{REPLIES}/portal-2"));
    let dir = tempfile::tempdir().unwrap();
    let mut portal = Portal::new(1, "portal-1");
    let mut other = Portal::new(2, "portal-2");
    let _d = daemon(dir.path(), &broker, &format!("{}{}", portal.pin(), other.pin()));
    let t = format!("{P}/cmd");
    let put = command("h-1", "holder.put", json!({"holder": "courier-ups", "name": "UPS", "role": "courier"}));
    let mark = sub.lines.len();
    publish(&broker, &t, &put, &portal.sign(&t, &put, None), Some(mine.as_str()));
    assert_ok(&reply_on(&sub, mark, &mine, "h-1"));

    let gen = command("g-1", "pin.generate", json!({"holder": "courier-ups"}));
    let props = portal.sign(&t, &gen, None);
    let mark = sub.lines.len();
    publish(&broker, &t, &gen, &props, Some(mine.as_str()));
    let first = reply_on(&sub, mark, &mine, "g-1");
    let pin = first["result"]["pin"].as_str().expect("a PIN").to_string();

    // The attacker re-sends the captured command, signature and all, or
    // without it, asking for the reply on a topic of their own.
    for p in [props.clone(), vec![]] {
        let mark = sub.lines.len();
        publish(&broker, &t, &gen, &p, Some(attacker.as_str()));
        let r = reply_on(&sub, mark, &attacker, "g-1");
        assert!(matches!(code(&r), "stale" | "unauthorized"), "{r}");
        assert!(!porter_tests::shows_pin(&r.to_string(), &pin), "the PIN reached the attacker: {r}");
    }
    // Another pinned key asking again under the id: the PIN is withheld.
    let mark = sub.lines.len();
    publish(&broker, &t, &gen, &other.sign(&t, &gen, None), Some(other_portal.as_str()));
    let r = reply_on(&sub, mark, &other_portal, "g-1");
    assert_eq!(code(&r), "forbidden", "{r}");
    assert!(!porter_tests::shows_pin(&r.to_string(), &pin));
    // The portal that made it, re-signing its retry: the stored reply.
    let mark = sub.lines.len();
    publish(&broker, &t, &gen, &portal.sign(&t, &gen, None), Some(mine.as_str()));
    assert_eq!(reply_on(&sub, mark, &mine, "g-1"), first);
}

#[test]
fn a_restart_keeps_the_replay_guard() {
    let broker = Site::start();
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
    let broker = Site::start();
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
    let broker = Site::start();
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
    let broker = Site::start();
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
        .args(["--mqtt", &broker.url(), "--site", "test", "--controller", "room-1"])
        .args(broker.pki.porterctl_args("portal"))
        .arg("--sign-key")
        .arg(&key)
        .args(["--key-id", "portal-py", "door.unlock", "door=main", "ms=100"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "porterctl: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
    // Unsigned, porterctl is refused.
    let out = Command::new(porter_tests::bin("porterctl"))
        .args(["--mqtt", &broker.url(), "--site", "test", "--controller", "room-1"])
        .args(broker.pki.porterctl_args("portal"))
        .args(["door.unlock", "door=main"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unauthorized"));
}

/// MQTT 3.1.1 has no user properties: the envelope carries the signature
/// (mosquitto_pub -V mqttv311).
#[test]
fn an_mqtt_311_client_signs_with_the_envelope() {
    let broker = Site::start();
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
        let mut c = broker.tool_v("mosquitto_pub", "mqttv311", &[]);
        c.args(["-t", &t, "-s"]);
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

/// The issue's "Done when": an identity the documented ACL lets publish on
/// the command topic (the portal's own certificate, leaked) but without a
/// pinned signing key changes nothing and opens nothing. Every op that
/// changes a key or opens a door is sent unsigned, then signed with the
/// attacker's own key under the pinned key's id, then in the MQTT 3.1.1
/// envelope: each refused with `unauthorized`; state.get (over the admin
/// socket) is what it was, the portal's PIN still opens the door, the
/// attacker's does not, no door.unlocked event. A controller's identity
/// (room-2's certificate) is refused by the broker itself on room-1's
/// command topic.
#[test]
fn a_leaked_portal_credential_without_the_key_changes_nothing_and_opens_nothing() {
    let broker = Site::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-leaked");
    let dir = tempfile::tempdir().unwrap();
    let mut portal = Portal::new(1, "portal-1");
    let mut d = daemon(dir.path(), &broker, &portal.pin());
    let t = format!("{P}/cmd");

    // The real portal: a courier with a PIN.
    let put = command("h-1", "holder.put", json!({"holder": "courier-ups", "name": "UPS", "role": "courier"}));
    let mark = sub.lines.len();
    publish(&broker, &t, &put, &portal.sign(&t, &put, None), None);
    assert_ok(&reply_on(&sub, mark, &format!("{P}/reply"), "h-1"));
    let gen = command("g-1", "pin.generate", json!({"holder": "courier-ups"}));
    let mark = sub.lines.len();
    publish(&broker, &t, &gen, &portal.sign(&t, &gen, None), None);
    let pin = reply_on(&sub, mark, &format!("{P}/reply"), "g-1")["result"]["pin"].as_str().unwrap().to_string();
    let (c, before) = d.ctl("state.get", &[]);
    assert_eq!(c, 0, "{before}");

    // The attacker: the portal's certificate (the broker's default
    // identity here), no pinned key.
    let attacker_pin = if pin == "731946" { "731947" } else { "731946" };
    let attacks = [
        ("holder.put", json!({"holder": "mallory", "name": "M", "role": "manager"})),
        ("pin.set", json!({"holder": "mallory", "pin": attacker_pin})),
        ("pin.set", json!({"holder": "courier-ups", "pin": attacker_pin})),
        ("pin.generate", json!({"holder": "courier-ups"})),
        ("qr.generate", json!({"holder": "courier-ups"})),
        ("card.assign", json!({"holder": "courier-ups", "uid": "04a1b2c3"})),
        ("pin.deactivate", json!({"holder": "courier-ups"})),
        ("pin.delete", json!({"holder": "courier-ups"})),
        ("holder.delete", json!({"holder": "courier-ups"})),
        ("enroll.start", json!({"holder": "courier-ups", "door": "main"})),
        ("lockout.clear", json!({})),
        ("sync.begin", json!({"generation": 99})),
        ("sync.put", json!({"holders": [{"holder": "mallory", "role": "manager", "pin": attacker_pin}]})),
        ("sync.commit", json!({})),
        ("door.unlock", json!({"door": "main", "ms": 100})),
    ];
    let attacker = Portal::new(66, "portal-1");
    for (n, (op, args)) in attacks.iter().enumerate() {
        for (how, signed) in [("u", false), ("f", true)] {
            let id = format!("{how}-{n}");
            let cmd = command(&id, op, args.clone());
            let props = if signed { attacker.sign_at(&t, &cmd, 1 << 40, None) } else { vec![] };
            let mark = sub.lines.len();
            publish(&broker, &t, &cmd, &props, None);
            let r = reply_on(&sub, mark, &format!("{P}/reply"), &id);
            assert_eq!(code(&r), "unauthorized", "{op} ({id}): {r}");
        }
    }
    // The MQTT 3.1.1 envelope, signed with the attacker's key.
    let cmd = command("v-1", "door.unlock", json!({"door": "main", "ms": 100}));
    let props = attacker.sign_at(&t, &cmd, 1 << 41, None);
    let sig = &props.iter().find(|(k, _)| k == "porter-sig").unwrap().1;
    let envelope =
        json!({"signed": {"key": "portal-1", "counter": 1u64 << 41, "sig": sig}, "command": b64(cmd.as_bytes())});
    let mark = sub.lines.len();
    let mut c = broker.tool_v("mosquitto_pub", "mqttv311", &[]);
    c.args(["-t", &t, "-s"]);
    send(c, &envelope.to_string());
    // (The envelope's refusal replies with "id": null; the event says why.)
    sub.wait_json(mark, &format!("{P}/events"), "the envelope refused", |v| {
        v["type"] == "command.refused" && v["reason"] == "bad_signature"
    });

    // A controller's own identity may not even publish there: the broker
    // refuses it (docs/mqtt.md's ACL), and nothing reaches room-1.
    let out = broker
        .tool("mosquitto_pub", &broker.auth("porter-test-room-2"))
        .args(["-t", &t, "-m", &command("c-1", "door.unlock", json!({"door": "main"}))])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Not authorized"), "{out:?}");

    // Nothing changed, nothing opened.
    assert_eq!(unlocks(&broker, &sub), 0, "{}", sub.lines.text());
    assert!(!sub.lines.has(0, &["\"id\":\"c-1\""]), "room-2's command reached room-1");
    let (c, after) = d.ctl("state.get", &[]);
    assert_eq!(c, 0, "{after}");
    assert_eq!(after["result"], before["result"], "the attacker changed the store");
    let mark = d.log.len();
    d.type_line(&format!("{attacker_pin}#"));
    d.log.wait_for(mark, &["access denied", "reason=\"unknown\""]);
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access granted", "holder=\"courier-ups\""]);
    assert!(!porter_tests::shows_pin(&d.log.text(), attacker_pin), "a refused PIN reached the log");
    // The real portal still can.
    unlock(&broker, &sub, &mut portal, "d-1");
    assert_eq!(unlocks(&broker, &sub), 1);
}
