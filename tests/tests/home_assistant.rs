//! Home Assistant MQTT discovery on a real Mosquitto: the retained configs
//! of every entity, checked against Home Assistant's documented discovery
//! schema (written here from its MQTT integration docs: lock, binary_sensor,
//! sensor, event) and by Home Assistant's own code (PyPI `homeassistant`
//! 2024.3.3: its discovery topic matcher, abbreviations, the platforms'
//! DISCOVERY_SCHEMA and PLATFORM_SCHEMA_MODERN, its template engine on the
//! real status; tests/peers/ha_discovery.py); the lock's and the door's
//! states as the door really is, JAMMED while the lock's relay board is
//! gone; the access event; availability through the Last Will; the unlock
//! command refused without the permission and momentary with it; removal
//! when turned off.

use porter_tests::pty::Pty;
use porter_tests::{config_head, workspace_root, Broker, Daemon, Subscriber, P};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

/// Keys Home Assistant documents for every MQTT entity.
const COMMON: &[&str] = &[
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "default_entity_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "platform",
    "qos",
    "unique_id",
    "value_template",
];

/// Per platform: the documented keys beyond [`COMMON`] and the required ones.
fn platform(component: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match component {
        "lock" => (
            &[
                "code_format",
                "command_template",
                "command_topic",
                "optimistic",
                "payload_lock",
                "payload_open",
                "payload_reset",
                "payload_unlock",
                "retain",
                "state_jammed",
                "state_locked",
                "state_locking",
                "state_open",
                "state_opening",
                "state_topic",
                "state_unlocked",
                "state_unlocking",
            ],
            &["command_topic"],
        ),
        "binary_sensor" => (
            &["device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on", "state_topic"],
            &["state_topic"],
        ),
        "sensor" => (
            &[
                "device_class",
                "expire_after",
                "force_update",
                "last_reset_value_template",
                "options",
                "state_class",
                "state_topic",
                "suggested_display_precision",
                "unit_of_measurement",
            ],
            &["state_topic"],
        ),
        "event" => (&["device_class", "event_types", "state_topic"], &["state_topic", "event_types"]),
        other => panic!("unexpected component {other}"),
    }
}

/// Checks one discovery message as Home Assistant's schema would, as its
/// docs describe it; returns the problems.
fn schema_problems(topic: &str, c: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let parts: Vec<&str> = topic.split('/').collect();
    // <discovery_prefix>/<component>/[<node_id>/]<object_id>/config
    let ok_id = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if parts.len() != 5 || parts[4] != "config" || !ok_id(parts[2]) || !ok_id(parts[3]) {
        bad.push(format!("{topic}: not <prefix>/<component>/<node_id>/<object_id>/config with [a-zA-Z0-9_-] ids"));
        return bad;
    }
    let (extra, required) = platform(parts[1]);
    let Some(m) = c.as_object() else { return vec![format!("{topic}: not a JSON object")] };
    for k in m.keys() {
        if !COMMON.contains(&k.as_str()) && !extra.contains(&k.as_str()) {
            bad.push(format!("{topic}: key {k} is not in Home Assistant's {} schema", parts[1]));
        }
    }
    for r in required.iter().chain(&["unique_id", "device"]) {
        if !m.contains_key(*r) {
            bad.push(format!("{topic}: lacks {r}"));
        }
    }
    let dev = &c["device"];
    let dev_keys = [
        "identifiers",
        "connections",
        "name",
        "manufacturer",
        "model",
        "model_id",
        "sw_version",
        "hw_version",
        "serial_number",
        "configuration_url",
        "suggested_area",
        "via_device",
    ];
    for k in dev.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        if !dev_keys.contains(&k.as_str()) {
            bad.push(format!("{topic}: device key {k} unknown"));
        }
    }
    if !dev["identifiers"].is_array() {
        bad.push(format!("{topic}: device.identifiers must be a list"));
    }
    if let Some(o) = c.get("origin") {
        if !o["name"].is_string() {
            bad.push(format!("{topic}: origin.name is required"));
        }
    }
    if let Some(a) = c.get("availability") {
        for e in a.as_array().into_iter().flatten() {
            if !e["topic"].is_string() {
                bad.push(format!("{topic}: availability entry without topic"));
            }
        }
    }
    if let Some(q) = c.get("qos") {
        if !matches!(q.as_u64(), Some(0..=2)) {
            bad.push(format!("{topic}: qos must be 0, 1 or 2"));
        }
    }
    let dc = c["device_class"].as_str();
    match (parts[1], dc) {
        ("binary_sensor", Some(d)) if !["door", "connectivity", "problem", "lock", "opening"].contains(&d) => {
            bad.push(format!("{topic}: device_class {d}"))
        }
        ("sensor", Some("duration"))
            if !["d", "h", "min", "s", "ms"].contains(&c["unit_of_measurement"].as_str().unwrap_or("")) =>
        {
            bad.push(format!("{topic}: a duration's unit must be d, h, min, s or ms"))
        }
        _ => {}
    }
    if let Some(cat) = c["entity_category"].as_str() {
        if !["config", "diagnostic"].contains(&cat) {
            bad.push(format!("{topic}: entity_category {cat}"));
        }
    }
    if parts[1] == "event"
        && !c["event_types"].as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string))
    {
        bad.push(format!("{topic}: event_types must be a non-empty list of strings"));
    }
    bad
}

/// Home Assistant's own code on `configs` (`mosquitto_sub -v` lines), with
/// `states` (topic, payload) for its templates: the peer's exit status and
/// its verdicts, by topic.
fn home_assistant_judges(
    dir: &Path,
    configs: &str,
    states: &[(&str, &str)],
) -> (Option<i32>, std::collections::BTreeMap<String, Value>) {
    let root = workspace_root();
    let pydeps = root.join("target/pydeps-ha");
    assert!(
        pydeps.join("homeassistant-2024.3.3.dist-info").exists(),
        "homeassistant 2024.3.3 is not in {}: run scripts/install-test-deps.sh",
        pydeps.display()
    );
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(root.join("tests/peers/ha_discovery.py")).env("PYTHONPATH", &pydeps);
    for (i, (topic, payload)) in states.iter().enumerate() {
        let f = dir.join(format!("state-{i}.json"));
        std::fs::write(&f, payload).unwrap();
        cmd.arg("--state").arg(format!("{topic}={}", f.display()));
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(configs.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let verdicts = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("{e}: {l}\n{}", String::from_utf8_lossy(&out.stderr)))
        })
        .map(|v| (v["topic"].as_str().unwrap().to_string(), v))
        .collect();
    // 0: every config taken, 1: some refused (each with Home Assistant's
    // error on stdout); anything else (2: no config read, a traceback) is
    // the peer's own failure.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "ha_discovery.py: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), verdicts)
}

fn config(dir: &Path, broker: &Broker, ha: &str) -> std::path::PathBuf {
    let d = dir.display();
    let text = format!(
        r#"{head}
[[doors]]
id = "main"
lock = "lock1"
unlock_ms = 400
contact = "main-contact"

[[doors]]
id = "back"
lock = "lock2"
unlock_ms = 400

[[devices]]
id = "keypad1"
kind = "console"
door = "main"

[[devices]]
id = "lock1"
kind = "sim_lock"

[[devices]]
id = "lock2"
kind = "sim_lock"

[[devices]]
id = "main-contact"
kind = "exec"
command = "/bin/sh"
args = ["-c", "exec cat {d}/contact.fifo"]

[mqtt]
url = "{url}"

[home_assistant]
{ha}
"#,
        head = config_head(dir),
        url = broker.url(),
    );
    let p = dir.join("porter.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn start(dir: &Path, broker: &Broker, ha: &str) -> Daemon {
    let cfg = config(dir, broker, ha);
    let d = Daemon::start(&cfg, &dir.join("admin.sock"));
    d.log.wait_for(0, &["mqtt subscribed"]);
    d
}

/// Waits for a message on `topic` with exactly `payload` after line `from`
/// (`mosquitto_sub -v` lines); returns its line index.
fn wait_plain(sub: &Subscriber, from: usize, topic: &str, payload: &str) -> usize {
    let want = format!("{topic} {payload}");
    sub.lines.wait(from, &want, |l| l == want).0
}

const ENABLED: &str = "enabled = true\nunlock_doors = [\"main\"]\n";

#[test]
fn home_assistant_sees_the_doors_contacts_and_access_events_and_they_go_when_turned_off() {
    let broker = Broker::start();
    let ha = broker.subscribe_with(&["homeassistant/#"], "ha-discovery", &["-v"]);
    let sub = broker.subscribe(&format!("{P}/#"), "ha-states");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    nix::unistd::mkfifo(&p.join("contact.fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut d = start(p, &broker, ENABLED);
    let mut contact = std::fs::OpenOptions::new().write(true).open(p.join("contact.fifo")).unwrap();

    // Configs: per door a lock and an access event, the contact where one
    // is wired, and the controller's diagnostics; all retained.
    let node = "porter_test_room-1";
    let expected: Vec<String> = [
        "lock/{n}/main_lock",
        "binary_sensor/{n}/main_door",
        "event/{n}/main_access",
        "lock/{n}/back_lock",
        "event/{n}/back_access",
        "binary_sensor/{n}/online",
        "binary_sensor/{n}/clock_synchronized",
        "sensor/{n}/outbox",
        "sensor/{n}/devices_offline",
        "sensor/{n}/decision_latency_p99",
    ]
    .iter()
    .map(|t| format!("homeassistant/{}/config", t.replace("{n}", node)))
    .collect();
    let mut configs = std::collections::BTreeMap::new();
    for t in &expected {
        let (_, line) = ha.lines.wait(0, t, |l| l.starts_with(&format!("{t} {{")));
        configs.insert(t.clone(), serde_json::from_str::<Value>(line.split_once(' ').unwrap().1).unwrap());
    }
    assert!(!ha.lines.all().iter().any(|l| l.contains("back_door")), "no door sensor without a contact");
    let problems: Vec<String> = configs.iter().flat_map(|(t, c)| schema_problems(t, c)).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let lock = &configs[&expected[0]];
    assert_eq!(lock["state_topic"], format!("{P}/ha/main/lock"));
    assert_eq!(lock["command_topic"], format!("{P}/ha/main/set"));
    assert_eq!(
        lock["availability"][0]["topic"],
        format!("{P}/status"),
        "availability is the status, whose Last Will says offline"
    );
    assert_eq!(lock["device"]["identifiers"], json!([node]));
    assert_eq!(configs[&expected[1]]["device_class"], "door");
    assert_eq!(configs[&expected[2]]["event_types"], json!(["granted", "denied"]));
    // One device for the controller.
    let ids: std::collections::BTreeSet<String> =
        configs.values().map(|c| c["device"]["identifiers"].to_string()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // Retained: a Home Assistant that connects later gets them.
    let out = broker
        .tool("mosquitto_sub", &[])
        .args(["-t", "homeassistant/#", "-v", "--retained-only", "-W", "3"])
        .output()
        .unwrap();
    let retained = String::from_utf8_lossy(&out.stdout);
    for t in &expected {
        assert!(retained.lines().any(|l| l.starts_with(&format!("{t} {{"))), "{t} not retained: {retained}");
    }

    // Home Assistant's own code takes every retained config, and its
    // template engine reads the diagnostics from the real retained status.
    let out = broker
        .tool("mosquitto_sub", &[])
        .args(["-t", &format!("{P}/status"), "--retained-only", "-C", "1", "-W", "5"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(status.starts_with('{'), "no retained status: {status}");
    let status_topic = format!("{P}/status");
    let (code, verdicts) = home_assistant_judges(p, &retained, &[(&status_topic, &status)]);
    for t in &expected {
        assert_eq!(verdicts.get(t).map(|v| &v["ok"]), Some(&json!(true)), "Home Assistant on {t}: {verdicts:#?}");
    }
    assert_eq!(code, Some(0), "{verdicts:#?}");
    let rendered = |object: &str, what: &str| {
        verdicts[&format!("homeassistant/{object}/config")]["rendered"][what].as_str().unwrap_or("").to_string()
    };
    assert_eq!(rendered(&format!("lock/{node}/main_lock"), "availability"), "online");
    assert_eq!(rendered(&format!("binary_sensor/{node}/online"), "value"), "online");
    assert!(["ON", "OFF"].contains(&rendered(&format!("binary_sensor/{node}/clock_synchronized"), "value").as_str()));
    assert_eq!(rendered(&format!("sensor/{node}/devices_offline"), "value"), "0", "{status}");
    for s in ["outbox", "decision_latency_p99"] {
        let v = rendered(&format!("sensor/{node}/{s}"), "value");
        assert!(v.parse::<f64>().is_ok(), "{s}: Home Assistant renders {v:?} from {status}");
    }
    // The check can fail: Home Assistant's own error for a lock without
    // its command topic and with a key it does not know.
    let mut broken = configs[&expected[0]].clone();
    broken.as_object_mut().unwrap().remove("command_topic");
    let (code, verdicts) = home_assistant_judges(p, &format!("{} {broken}\n", expected[0]), &[]);
    assert_eq!(code, Some(1));
    assert!(verdicts[&expected[0]]["error"]
        .as_str()
        .unwrap()
        .contains("required key not provided @ data['command_topic']"));
    let mut broken = configs[&expected[0]].clone();
    broken["state_jamed"] = json!("JAMMED");
    let (code, verdicts) = home_assistant_judges(p, &format!("{} {broken}\n", expected[0]), &[]);
    assert_eq!(code, Some(1));
    assert!(
        verdicts[&expected[0]]["error"].as_str().unwrap().contains("extra keys not allowed @ data['state_jamed']"),
        "{verdicts:#?}"
    );

    // States: locked at start; a grant unlocks, then relocks; an access event each.
    let base = wait_plain(&sub, 0, &format!("{P}/ha/main/lock"), "LOCKED");
    wait_plain(&sub, 0, &format!("{P}/ha/back/lock"), "LOCKED");
    assert_eq!(broker.call(&sub, "h-1", "holder.put", json!({"holder": "courier-ups", "role": "courier"}))["ok"], true);
    assert_eq!(broker.call(&sub, "h-2", "pin.set", json!({"holder": "courier-ups", "pin": "483920"}))["ok"], true);
    let mark = sub.lines.len().max(base);
    d.type_line("483920#");
    let (_, granted) =
        sub.wait_json(mark, &format!("{P}/ha/main/access"), "access event", |v| v["event_type"] == "granted");
    assert_eq!(granted["holder"], "courier-ups", "{granted}");
    let unlocked = wait_plain(&sub, mark, &format!("{P}/ha/main/lock"), "UNLOCKED");
    wait_plain(&sub, unlocked + 1, &format!("{P}/ha/main/lock"), "LOCKED");
    let mark = sub.lines.len();
    d.type_line("111111#");
    let (_, denied) =
        sub.wait_json(mark, &format!("{P}/ha/main/access"), "deny event", |v| v["event_type"] == "denied");
    assert!(denied["reason"].is_string(), "{denied}");
    // What Home Assistant reads (the portal's own pin.set on P/cmd aside).
    let ha_topics: Vec<String> = sub.lines.all().into_iter().filter(|l| l.starts_with(&format!("{P}/ha/"))).collect();
    let everything = ha_topics.join("\n") + &ha.lines.text();
    assert!(!porter_tests::shows_pin(&everything, "483920") && !porter_tests::shows_pin(&everything, "111111"));
    assert!(!everything.contains("\"key\""), "no key field reaches Home Assistant's access events");

    // The contact: open, closed.
    let mark = sub.lines.len();
    writeln!(contact, "{{\"level\":false}}").unwrap();
    let off = wait_plain(&sub, mark, &format!("{P}/ha/main/contact"), "OFF");
    writeln!(contact, "{{\"level\":true}}").unwrap();
    let on = wait_plain(&sub, off + 1, &format!("{P}/ha/main/contact"), "ON");
    writeln!(contact, "{{\"level\":false}}").unwrap();
    wait_plain(&sub, on + 1, &format!("{P}/ha/main/contact"), "OFF");

    // Commands: the back door is not in unlock_doors, refused and logged;
    // the main door is, a momentary unlock recorded by home_assistant.
    let mark = sub.lines.len();
    let log_mark = d.log.len();
    broker.publish(&format!("{P}/ha/back/set"), "OPEN");
    d.log.wait_for(log_mark, &["home assistant command refused", "by=\"home_assistant\""]);
    broker.publish(&format!("{P}/ha/main/set"), "UNLOCK");
    let unlocked = wait_plain(&sub, mark, &format!("{P}/ha/main/lock"), "UNLOCKED");
    wait_plain(&sub, unlocked + 1, &format!("{P}/ha/main/lock"), "LOCKED");
    sub.wait_json(mark, &format!("{P}/events"), "door.unlocked by home_assistant", |v| {
        v["type"] == "door.unlocked" && v["by"] == "home_assistant" && v["door"] == "main"
    });
    assert!(
        !sub.lines.all()[mark..].iter().any(|l| l == &format!("{P}/ha/back/lock UNLOCKED")),
        "the back door opened without the permission"
    );

    // Availability: killed, the Last Will says offline.
    let mark = sub.lines.len();
    d.kill();
    sub.wait_json(mark, &format!("{P}/status"), "last will", |v| v == &json!({"state": "offline"}));

    // Turned off and restarted: every config emptied (Home Assistant removes the entities).
    let mark = ha.lines.len();
    let _d = start(p, &broker, "enabled = false\n");
    for t in &expected {
        ha.lines.wait(mark, &format!("{t} emptied"), |l| {
            l == format!("{t} ").as_str() || l == t.as_str() || l == format!("{t} (null)").as_str()
        });
    }
    let out = broker
        .tool("mosquitto_sub", &[])
        .args(["-t", "homeassistant/#", "-v", "--retained-only", "-W", "3"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "configs still retained: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(contact);
}

/// A lock whose relay board is gone shows JAMMED, and LOCKED again once the
/// board is back and takes the relock.
#[test]
fn a_lock_that_cannot_be_driven_shows_jammed_until_it_locks_again() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "ha-jammed");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let relay = Pty::open(&p.join("relay"));
    let text = format!(
        r#"{head}
[[doors]]
id = "main"
lock = "relay-lock"
unlock_ms = 400

[[devices]]
id = "keypad1"
kind = "console"
door = "main"

[[devices]]
id = "relay-lock"
kind = "serial_relay"
port = "{d}/relay"
channel = 1

[mqtt]
url = "{url}"

[home_assistant]
{ENABLED}
"#,
        head = config_head(p),
        d = p.display(),
        url = broker.url(),
    );
    std::fs::write(p.join("porter.toml"), text).unwrap();
    let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));
    d.log.wait_for(0, &["mqtt subscribed"]);
    let lock_topic = format!("{P}/ha/main/lock");
    wait_plain(&sub, 0, &lock_topic, "LOCKED");

    // The board is unplugged; Home Assistant asks for an unlock.
    relay.unplug();
    let mark = sub.lines.len();
    broker.publish(&format!("{P}/ha/main/set"), "UNLOCK");
    let jammed = wait_plain(&sub, mark, &lock_topic, "JAMMED");
    sub.wait_json(mark, &format!("{P}/events"), "door.lock_failed", |v| {
        v["type"] == "door.lock_failed" && v["door"] == "main"
    });
    assert!(
        !sub.lines.all()[mark..jammed].iter().any(|l| l == &format!("{lock_topic} UNLOCKED")),
        "an unlock that did not reach the lock was shown as unlocked"
    );

    // The board comes back: the relock is tried again until it takes.
    let mut relay = Pty::open(&p.join("relay"));
    let locked = wait_plain(&sub, jammed + 1, &lock_topic, "LOCKED");
    sub.wait_json(mark, &format!("{P}/events"), "door.lock_restored", |v| {
        v["type"] == "door.lock_restored" && v["door"] == "main"
    });
    assert_eq!(relay.read_exact(4, porter_tests::DEADLINE).len(), 4, "the relock reached the board");
    assert!(
        !sub.lines.all()[jammed..locked].iter().any(|l| l == &format!("{lock_topic} UNLOCKED")),
        "JAMMED went to LOCKED directly"
    );
}
