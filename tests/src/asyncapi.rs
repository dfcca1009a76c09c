//! Every MQTT message the end-to-end tests see, checked against its schema
//! in docs/asyncapi.yaml.
//!
//! Each [`Broker`](crate::Broker) starts a watcher: a `mosquitto_sub` on
//! `#` with the broker's default identity, in place before the broker is
//! handed to the test. Whatever crosses the broker under `porter/` (commands
//! from any client, replies, events, status, the Home Assistant states and
//! commands under `P/ha/`), the Home Assistant discovery configs (under any
//! prefix, node id `porter_...`) and any reply on a command's Response Topic
//! is checked here, so a new test cannot skip the check:
//!
//! - a command is matched against its op's schema. A test may send a bad
//!   command on purpose, so a refused command does not fail by itself; but
//!   if Porter then answers it with `ok: true`, the schema refuses what
//!   Porter accepts, and that fails the test;
//! - a reply against the reply schema of its command's op (by broker and
//!   id), else against the generic reply;
//! - an event against its type's schema; the status against the status
//!   document or the Last Will;
//! - a Home Assistant config, lock or contact state or access event against
//!   its channel's schemas (a zero-length retained message, which removes
//!   one, is `HaRemoved`); a lock command from Home Assistant is checked but,
//!   as a refused command, does not fail by itself.
//!
//! A violation fails the test that saw it: at its next wait on a
//! [`Subscriber`](crate::Subscriber), or when its broker is dropped. The
//! message names the topic, the payload, the schema and the path in it.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// docs/asyncapi.yaml, loaded once, and a validator per schema name.
pub struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The contract of this workspace's docs/asyncapi.yaml.
pub fn contract() -> &'static Contract {
    static C: OnceLock<Contract> = OnceLock::new();
    C.get_or_init(|| {
        let path = crate::workspace_root().join("docs/asyncapi.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Contract { doc, validators: Mutex::default() }
    })
}

impl Contract {
    /// The document as JSON.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// Whether `components/schemas/name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.doc["components"]["schemas"].get(name).is_some()
    }

    /// Checks `payload` against `components/schemas/name`: on failure, each
    /// error with its place in the payload and in the schema.
    pub fn check(&self, name: &str, payload: &Value) -> Result<(), String> {
        let v = self.validator(name);
        let errors: Vec<String> = v
            .iter_errors(payload)
            .map(|e| format!("at {} (schema {}): {e}", e.instance_path(), e.schema_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n  "))
        }
    }

    /// The validator of one schema: the whole document with a `$ref` to it
    /// at its root (AsyncAPI's schema format is JSON Schema draft 7, where
    /// a `$ref` beside other keys is all that counts).
    fn validator(&self, name: &str) -> Arc<jsonschema::Validator> {
        let mut cache = self.validators.lock().unwrap();
        if let Some(v) = cache.get(name) {
            return v.clone();
        }
        assert!(self.has(name), "docs/asyncapi.yaml has no schema {name}");
        let mut root = self.doc.clone();
        root["$ref"] = Value::String(format!("#/components/schemas/{name}"));
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .build(&root)
            .unwrap_or_else(|e| panic!("docs/asyncapi.yaml: schema {name} does not compile: {e}"));
        let v = Arc::new(v);
        cache.insert(name.to_string(), v.clone());
        v
    }
}

/// The schema name of an op's or an event type's messages:
/// `pin.generate` -> `PinGenerate`, `door.held_open` -> `DoorHeldOpen`.
pub fn schema_name(dotted: &str) -> String {
    dotted
        .split(['.', '_'])
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

/// What one broker's watcher has seen.
#[derive(Default)]
struct Seen {
    /// Command id (as JSON text) to the ops sent with it and whether the
    /// schema took each.
    commands: HashMap<String, Vec<(String, bool)>>,
    /// Topics named as a command's Response Topic.
    response_topics: Vec<String>,
    /// Messages that broke the contract, not yet reported.
    violations: Vec<String>,
    /// How many messages were checked.
    checked: usize,
    /// Payloads a test forges on purpose (an impostor's reply): not
    /// Porter's, so not checked.
    forged: Vec<Vec<u8>>,
}

fn seen() -> &'static Mutex<HashMap<u16, Seen>> {
    static S: OnceLock<Mutex<HashMap<u16, Seen>>> = OnceLock::new();
    S.get_or_init(Mutex::default)
}

/// Tells the watcher of the broker on `port` that a test is about to
/// publish `payload` as an impostor would, off the contract on purpose
/// (tests/tests/identity.rs): that message is not checked.
pub fn forged(port: u16, payload: &str) {
    seen().lock().unwrap().entry(port).or_default().forged.push(payload.as_bytes().to_vec());
}

/// Checks one message that crossed the broker on `port`.
pub fn observe(port: u16, topic: &str, response_topic: &str, payload: &[u8]) {
    let mut all = seen().lock().unwrap();
    let s = all.entry(port).or_default();
    if s.forged.iter().any(|f| f == payload) {
        return;
    }
    if let Some(ha) = home_assistant(topic) {
        return check_home_assistant(s, topic, &ha, payload);
    }
    let is_reply =
        topic.starts_with("porter/") && topic.ends_with("/reply") || s.response_topics.iter().any(|t| t == topic);
    let kind = if is_reply {
        "reply"
    } else if !topic.starts_with("porter/") {
        return;
    } else if topic.ends_with("/cmd") {
        "command"
    } else if topic.ends_with("/events") {
        "event"
    } else if topic.ends_with("/status") {
        "status"
    } else {
        return; // the harness's probes (`_probe`), and topics Porter does not use
    };
    let text = String::from_utf8_lossy(payload);
    let json: Result<Value, _> = serde_json::from_slice(payload);
    let c = contract();
    match kind {
        "command" => {
            if !response_topic.is_empty() {
                s.response_topics.push(response_topic.to_string());
            }
            let Ok(v) = json else { return }; // not JSON: refused as `invalid`, tested elsewhere
            let (schema, op) = if v.get("signed").is_some() && v.get("command").is_some() {
                ("SignedEnvelope".to_string(), None)
            } else {
                match v["op"].as_str() {
                    Some(op) if c.has(&format!("{}Command", schema_name(op))) => {
                        (format!("{}Command", schema_name(op)), Some(op.to_string()))
                    }
                    _ => ("Command".to_string(), None),
                }
            };
            let ok = c.check(&schema, &v).is_ok();
            if let Some(id) = v.get("id") {
                s.commands.entry(id.to_string()).or_default().push((op.unwrap_or_default(), ok));
            }
        }
        "reply" => {
            let Ok(v) = json else {
                return s.violations.push(format!("reply on {topic} is not JSON: {text}"));
            };
            let sent = s.commands.get(&v["id"].to_string()).cloned().unwrap_or_default();
            if v["ok"] == true && !sent.is_empty() && sent.iter().all(|(_, ok)| !ok) {
                s.violations.push(format!(
                    "Porter accepted command {} (reply {text}) that docs/asyncapi.yaml refuses",
                    v["id"]
                ));
            }
            let schemas: Vec<String> = sent
                .iter()
                .filter(|(op, _)| !op.is_empty())
                .map(|(op, _)| format!("{}Reply", schema_name(op)))
                .chain(std::iter::once("Reply".to_string()))
                .collect();
            // A repeated id is answered with the first command's reply:
            // any op sent with that id will do; the generic reply always.
            let results: Vec<_> = schemas.iter().map(|n| (n, c.check(n, &v))).collect();
            let specific: Vec<_> = results.iter().filter(|(n, _)| *n != "Reply").collect();
            let failed = if specific.is_empty() {
                results.iter().find(|(_, r)| r.is_err())
            } else if specific.iter().all(|(_, r)| r.is_err()) {
                specific.last().copied()
            } else {
                results.iter().find(|(n, r)| *n == "Reply" && r.is_err())
            };
            if let Some((n, Err(e))) = failed {
                // A oneOf says only that no branch matched: name what in
                // the result is wrong.
                let detail = n
                    .strip_suffix("Reply")
                    .filter(|_| v["ok"] == true)
                    .and_then(|op| c.check(&format!("{op}Result"), &v["result"]).err())
                    .map(|d| format!("\n  in `result`: {d}"))
                    .unwrap_or_default();
                s.violations.push(format!("reply on {topic} does not match schema {n}: {text}\n  {e}{detail}"));
            }
        }
        _ => {
            let Ok(v) = json else {
                return s.violations.push(format!("{kind} on {topic} is not JSON: {text}"));
            };
            let schema = if kind == "status" {
                "StatusDocument".to_string()
            } else {
                match v["type"].as_str().map(|t| format!("{}Event", schema_name(t))) {
                    Some(n) if c.has(&n) => n,
                    _ => "Event".to_string(),
                }
            };
            if let Err(e) = c.check(&schema, &v) {
                s.violations.push(format!("{kind} on {topic} does not match schema {schema}: {text}\n  {e}"));
            }
        }
    }
    s.checked += 1;
}

/// A Home Assistant topic (docs/asyncapi.yaml's `ha...` channels): the
/// schemas its payload may match, whether it is JSON (else plain text,
/// checked as a JSON string), and whether Home Assistant sends it.
struct HaTopic {
    schemas: &'static [&'static str],
    json: bool,
    inbound: bool,
}

/// Which Home Assistant channel `topic` is on, if any:
/// `{discovery_prefix}/{component}/{node_id}/{object_id}/config` (the node
/// id `porter_...`), or `porter/{site}/{controller}/ha/{door}/{leaf}`. A
/// zero-length payload (a removal) is allowed where the channel has
/// `HaRemoved`.
fn home_assistant(topic: &str) -> Option<HaTopic> {
    let seg: Vec<&str> = topic.split('/').collect();
    let n = seg.len();
    let t = |schemas, json, inbound| Some(HaTopic { schemas, json, inbound });
    if n == 6 && seg[0] == "porter" && seg[3] == "ha" {
        return match seg[5] {
            "lock" => t(&["HaLockState", "HaRemoved"], false, false),
            "contact" => t(&["HaContactState", "HaRemoved"], false, false),
            "access" => t(&["HaAccessEvent"], true, false),
            "set" => t(&["HaLockCommand"], false, true),
            _ => t(&[], false, false),
        };
    }
    if n >= 4 && seg[n - 1] == "config" && seg[n - 3].starts_with("porter_") {
        return match seg[n - 4] {
            "lock" => t(&["HaLockConfig", "HaRemoved"], true, false),
            "binary_sensor" => t(&["HaBinarySensorConfig", "HaRemoved"], true, false),
            "event" => t(&["HaEventConfig", "HaRemoved"], true, false),
            "sensor" => t(&["HaSensorConfig", "HaRemoved"], true, false),
            _ => t(&[], true, false),
        };
    }
    None
}

/// Checks a message on a Home Assistant topic. What Home Assistant sends
/// (a lock command) may be off the contract on purpose and is refused by
/// porterd: counted, not a violation. Porter's own messages must match one
/// of the topic's schemas.
fn check_home_assistant(s: &mut Seen, topic: &str, ha: &HaTopic, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    s.checked += 1;
    if ha.schemas.is_empty() {
        return s.violations.push(format!(
            "{topic} is under Porter's Home Assistant topics but on no channel of docs/asyncapi.yaml: {text}"
        ));
    }
    let value = if payload.is_empty() || !ha.json {
        Ok(Value::String(text.to_string()))
    } else {
        serde_json::from_slice::<Value>(payload).map_err(|e| e.to_string())
    };
    let c = contract();
    let errors: Vec<String> = match &value {
        Err(e) => vec![format!("not JSON: {e}")],
        Ok(v) => {
            let mut errors = Vec::new();
            for n in ha.schemas {
                match c.check(n, v) {
                    Ok(()) => return,
                    Err(e) => errors.push(format!("schema {n}: {e}")),
                }
            }
            errors
        }
    };
    if ha.inbound {
        return;
    }
    s.violations.push(format!(
        "Home Assistant message on {topic} matches no schema of docs/asyncapi.yaml ({}): {text}\n  {}",
        ha.schemas.join(", "),
        errors.join("\n  ")
    ));
}

/// Fails the calling test with every violation seen on the broker on `port`
/// so far (each reported once).
pub fn assert_clean(port: u16) {
    let violations = {
        let mut all = seen().lock().unwrap();
        all.get_mut(&port).map(|s| std::mem::take(&mut s.violations)).unwrap_or_default()
    };
    if !violations.is_empty() && !std::thread::panicking() {
        panic!("MQTT messages that do not match docs/asyncapi.yaml:\n{}", violations.join("\n"));
    }
}

/// How many messages the watcher of the broker on `port` has checked.
pub fn checked(port: u16) -> usize {
    seen().lock().unwrap().get(&port).map_or(0, |s| s.checked)
}

/// How long the watcher may take to subscribe: a local broker's SUBACK
/// comes within milliseconds, even on a loaded machine within a second.
const WATCH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The `mosquitto_sub -F` format of the watcher: topic, response topic and
/// the payload in hex, so a payload with a newline stays one line.
const FORMAT: &str = "W|%t|%R|%x";

/// Starts the watcher of `broker`, which must be running, and returns once
/// its subscription is in place (its SUBACK, shown by `-d`); `None` (said
/// on standard error) when the broker refuses its default identity (a
/// broker of passwords whose test gives each client its own): that test's
/// messages go unchecked.
pub(crate) fn watch(broker: &crate::Broker) -> Option<Child> {
    let port = broker.port;
    // Line-buffered (stdbuf): `-d`'s SUBACK line would otherwise wait in
    // a pipe's buffer.
    let tool = broker.tool("mosquitto_sub", &[]);
    let mut child = Command::new("stdbuf")
        .arg("-oL")
        .arg(tool.get_program())
        .args(tool.get_args())
        .args(["-d", "-c", "-i", &format!("porter-contract-{port}"), "-x", "3600", "-t", "#", "-F", FORMAT])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning mosquitto_sub (apt-get install mosquitto-clients)");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.contains("received SUBACK") {
                let _ = tx.send(());
            }
            let Some(rest) = line.strip_prefix("W|") else { continue };
            let mut parts = rest.rsplitn(3, '|');
            let (Some(hex), Some(rt), Some(topic)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let payload: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                .collect();
            if let Some(p) = payload {
                observe(port, topic, rt, &p);
            }
        }
    });
    let deadline = Instant::now() + WATCH_WAIT;
    loop {
        if rx.recv_timeout(std::time::Duration::from_millis(50)).is_ok() {
            return Some(child);
        }
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            eprintln!("the contract watcher (mosquitto_sub) could not subscribe ({st}): {err}; messages unchecked");
            return None;
        }
        if Instant::now() > deadline {
            // A listener its default identity cannot reach (a TLS listener
            // started with `start_with`, whose tests pass their own
            // certificates): that broker's messages go unchecked.
            eprintln!("the contract watcher (mosquitto_sub) could not subscribe in {WATCH_WAIT:?}; messages unchecked");
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
    }
}
