//! The controller's identity (issue 13, part 2) through the real daemon and
//! a real Mosquitto: the key in the status document and from `porterctl
//! identity`; a reply, an event, the status and the Last Will, as a portal
//! receives them (mosquitto_sub), verified by openssl against that key; a
//! tampered payload or another topic refused by openssl; the key kept across
//! a restart; `porterctl keygen`'s key read by openssl.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use porter_tests::tls::Site;
use porter_tests::{Broker, Daemon, Subscriber, P};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Each message on one line: topic, retain flag, payload in hex,
/// correlation data, user properties (`key:value`, space separated).
const FORMAT: &str = "%t|%r|%x|%D|%P";

/// A message as mosquitto_sub printed it.
#[derive(Debug, Clone)]
struct Received {
    topic: String,
    payload: Vec<u8>,
    correlation: Vec<u8>,
    properties: Vec<(String, String)>,
}

impl Received {
    fn parse(line: &str) -> Option<Received> {
        let mut f = line.splitn(5, '|');
        let topic = f.next()?.to_string();
        let _retained = f.next()?;
        let payload = unhex(f.next()?)?;
        let correlation = f.next()?.as_bytes().to_vec();
        let properties = f
            .next()
            .unwrap_or("")
            .split(' ')
            .filter_map(|p| p.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Received { topic, payload, correlation, properties })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }

    fn property(&self, key: &str) -> Option<&str> {
        self.properties.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

fn b64(s: &str) -> Vec<u8> {
    // Decoded by coreutils' base64, not by the daemon's own code.
    let out = Command::new("sh").arg("-c").arg(format!("printf %s '{s}' | base64 -d")).output().unwrap();
    assert!(out.status.success(), "base64 -d {s}");
    out.stdout
}

/// The signed message as docs/mqtt.md spells it out, built here on its own.
fn documented_message(topic: &str, correlation: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = b"porter-controller-signature-v1\n".to_vec();
    m.extend(format!("{}:{topic}\n{}:", topic.len(), correlation.len()).bytes());
    m.extend(correlation);
    m.push(b'\n');
    m.extend(payload);
    m
}

/// Whether openssl verifies `sig` over `message` with the PEM public key.
fn openssl_verifies(public_pem: &str, message: &[u8], sig: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (key, msg, sigf) = (dir.path().join("controller.pub"), dir.path().join("msg.bin"), dir.path().join("sig.bin"));
    std::fs::write(&key, public_pem).unwrap();
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&sigf, sig).unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(&key)
        .arg("-rawin")
        .arg("-in")
        .arg(&msg)
        .arg("-sigfile")
        .arg(&sigf)
        .output()
        .expect("openssl (apt-get install openssl)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.success(), said.contains("Signature Verified Successfully"), "{said}");
    out.status.success()
}

/// Whether `r` verifies with openssl as published on `topic`.
fn verifies_on(public_pem: &str, r: &Received, topic: &str, payload: &[u8]) -> bool {
    let sig = b64(r.property("porter-sig").unwrap_or_else(|| panic!("unsigned: {r:?}")));
    assert_eq!(sig.len(), 64, "{r:?}");
    openssl_verifies(public_pem, &documented_message(topic, &r.correlation, payload), &sig)
}

/// The raw public key openssl finds in `pem`, as base64.
fn openssl_raw_key(pem_file: &Path, private: bool) -> String {
    let script = format!(
        "openssl pkey {} -in '{}' -pubout -outform DER | tail -c 32 | base64",
        if private { "" } else { "-pubin" },
        pem_file.display()
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn wait(sub: &Subscriber, from: usize, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
    let (_, line) = sub.lines.wait(from, what, |l| Received::parse(l).is_some_and(|r| pred(&r)));
    Received::parse(&line).unwrap()
}

#[test]
fn replies_events_status_and_the_last_will_verify_with_openssl_and_the_key_survives_a_restart() {
    let broker = Broker::start();
    let sub = broker.subscribe_with(&[&format!("{P}/#"), "portal/replies/#"], "portal-identity", &["-F", FORMAT]);
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::on_broker(dir.path(), &broker, "", "");

    // The status document shows the key; porterctl identity says the same.
    let status =
        wait(&sub, 0, "the online status", |r| r.topic == format!("{P}/status") && r.json()["state"] == "online");
    let identity = status.json()["identity"].clone();
    let (code, reply) = d.ctl("identity", &[]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(reply["result"], identity, "{reply}");
    assert_eq!(identity["algorithm"], "ed25519");
    let key_b64 = identity["public_key"].as_str().unwrap().to_string();
    let pem = identity["public_key_pem"].as_str().unwrap().to_string();
    let pem_file = dir.path().join("controller.pub");
    std::fs::write(&pem_file, &pem).unwrap();
    assert_eq!(openssl_raw_key(&pem_file, false), key_b64, "the PEM and the raw key are one key");
    assert_eq!(status.property("porter-key-id"), identity["key_id"].as_str());

    // The status verifies; the same bytes on another topic, or changed, do not.
    let status_topic = format!("{P}/status");
    assert!(verifies_on(&pem, &status, &status_topic, &status.payload));
    assert!(!verifies_on(&pem, &status, "porter/test/room-2/status", &status.payload));
    let mut tampered = status.payload.clone();
    let at = tampered.windows(6).position(|w| w == b"online").unwrap();
    tampered[at..at + 6].copy_from_slice(b"onlinE");
    assert!(!verifies_on(&pem, &status, &status_topic, &tampered));

    // A reply to a request with its own response topic and correlation data.
    let mark = sub.lines.len();
    let out = broker
        .tool("mosquitto_pub", &[])
        .args([
            "-t",
            &format!("{P}/cmd"),
            "-m",
            r#"{"id":"c-id-1","op":"holder.put","args":{"holder":"h1","role":"courier"}}"#,
        ])
        .args(["-D", "publish", "response-topic", "portal/replies/7"])
        .args(["-D", "publish", "correlation-data", "corr-42"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reply = wait(&sub, mark, "the reply", |r| r.topic == "portal/replies/7");
    assert_eq!(reply.json()["ok"], true, "{:?}", reply.json());
    assert_eq!(reply.correlation, b"corr-42");
    assert!(verifies_on(&pem, &reply, "portal/replies/7", &reply.payload));
    // The signature covers the correlation data: with another, it fails.
    let other = Received { correlation: b"corr-43".to_vec(), ..reply.clone() };
    assert!(!verifies_on(&pem, &other, "portal/replies/7", &reply.payload));
    let flipped: Vec<u8> = reply.payload.iter().map(|&b| if b == b'h' { b'H' } else { b }).collect();
    assert!(!verifies_on(&pem, &reply, "portal/replies/7", &flipped));

    // An event: a wrong PIN at the keypad.
    let mark = sub.lines.len();
    d.type_line("000001#");
    let event =
        wait(&sub, mark, "access.denied", |r| r.topic == format!("{P}/events") && r.json()["type"] == "access.denied");
    assert!(verifies_on(&pem, &event, &format!("{P}/events"), &event.payload));
    assert!(!verifies_on(&pem, &event, &format!("{P}/status"), &event.payload));

    // The Last Will, published by the broker when the daemon dies: signed too.
    let key_file = dir.path().join("data/identity.pem");
    let file_before = std::fs::read(&key_file).unwrap();
    let mark = sub.lines.len();
    d.kill();
    let will = wait(&sub, mark, "the Last Will", |r| r.topic == status_topic && r.payload == br#"{"state":"offline"}"#);
    assert!(verifies_on(&pem, &will, &status_topic, &will.payload), "{will:?}");

    // A restart keeps the key: the same file, the same key in the status.
    let mark = sub.lines.len();
    let d = Daemon::on_broker(dir.path(), &broker, "", "");
    let again =
        wait(&sub, mark, "the status after the restart", |r| r.topic == status_topic && r.json()["state"] == "online");
    assert_eq!(again.json()["identity"], identity);
    assert!(verifies_on(&pem, &again, &status_topic, &again.payload));
    assert_eq!(std::fs::read(&key_file).unwrap(), file_before);
    // The private key file is the daemon's alone, and openssl reads it.
    let meta = std::fs::metadata(&key_file).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
    assert_eq!(openssl_raw_key(&key_file, true), key_b64);
    // Nothing the daemon logged shows the private key.
    let private_pem = String::from_utf8(file_before).unwrap();
    let body: String = private_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let (_, log) = d.stop();
    assert!(!log.text().contains(&body));
}

/// A key file that cannot be used keeps the controller off the broker
/// (nothing goes out unsigned) but not from deciding access: the error says
/// what to do, `porterctl identity` repeats it, and the file is left as it was.
#[test]
fn a_loose_or_damaged_identity_file_keeps_mqtt_off_and_the_room_deciding() {
    let broker = Broker::start();
    for (what, mode, want) in
        [("loose", 0o644, "chmod 600"), ("damaged", 0o600, "does not hold an Ed25519 private key")]
    {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let key = data.join("identity.pem");
        std::fs::write(&key, "not a key").unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        let cfg = porter_tests::mqtt_config(dir.path(), false, "", &format!("url = \"{}\"\n", broker.url()));
        let mut d = Daemon::start(&cfg, &dir.path().join("admin.sock"));
        d.log.wait_for(0, &["the controller's identity key cannot be used", want, "MQTT cannot start"]);
        let (code, reply) = d.ctl("identity", &[]);
        assert_eq!(code, 1, "{what}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains(want), "{what}: {reply}");
        // The room decides access all the same.
        let (code, r) = d.ctl("holder.put", &["holder=courier-ups", "name=UPS", "role=courier"]);
        assert_eq!(code, 0, "{r}");
        let (code, r) = d.ctl("pin.set", &["holder=courier-ups", "pin=583920"]);
        assert_eq!(code, 0, "{r}");
        let mark = d.log.len();
        d.type_line("583920#");
        d.log.wait_for(mark, &["access granted", "holder=\"courier-ups\""]);
        assert!(!d.log.has(0, &["mqtt connected"]), "{what}: connected unsigned");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "not a key", "{what}: the key file was changed");
        let m = std::fs::metadata(&key).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777, mode, "{what}");
    }
}

#[test]
fn porterctl_keygen_writes_a_key_openssl_reads_and_prints_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("portal.pem");
    let run =
        || Command::new(porter_tests::bin("porterctl")).arg("keygen").arg("--out").arg(&out_file).output().unwrap();
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let printed = String::from_utf8(first.stdout).unwrap().trim().to_string();
    assert_eq!(openssl_raw_key(&out_file, true), printed);
    let meta = std::fs::metadata(&out_file).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
    // openssl signs with it and the printed key verifies (as a portal would sign).
    let msg = dir.path().join("m.bin");
    std::fs::write(&msg, b"a portal's bytes").unwrap();
    let sig = dir.path().join("s.bin");
    let st = Command::new("openssl")
        .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
        .arg(&out_file)
        .arg("-in")
        .arg(&msg)
        .arg("-out")
        .arg(&sig)
        .status()
        .unwrap();
    assert!(st.success());
    let pub_pem = dir.path().join("portal.pub");
    let st =
        Command::new("openssl").args(["pkey", "-in"]).arg(&out_file).args(["-pubout", "-out"]).arg(&pub_pem).status();
    assert!(st.unwrap().success());
    assert!(openssl_verifies(
        &std::fs::read_to_string(&pub_pem).unwrap(),
        b"a portal's bytes",
        &std::fs::read(&sig).unwrap()
    ));
    // Never over an existing key.
    let before = std::fs::read(&out_file).unwrap();
    let second = run();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(&out_file).unwrap(), before);
}

/// The code block of docs/mqtt.md that follows `marker`.
fn docs_block(marker: &str, lang: &str) -> String {
    let docs = std::fs::read_to_string(porter_tests::workspace_root().join("docs/mqtt.md")).unwrap();
    let after = docs.split(marker).nth(1).unwrap_or_else(|| panic!("docs/mqtt.md has no {marker:?}"));
    let block = after.split(&format!("```{lang}\n")).nth(1).unwrap();
    block.split("\n```").next().unwrap().to_string()
}

/// docs/mqtt.md's two worked examples, as a portal developer copies them:
/// the shell one (openssl) and the Python one (`cryptography`), each given
/// a reply and an event received from the running daemon instead of the
/// test vector, verify them; with a byte of the payload changed they do not.
#[test]
fn the_worked_examples_in_mqtt_md_verify_what_the_daemon_publishes() {
    let broker = Broker::start();
    let sub = broker.subscribe_with(&[&format!("{P}/#"), "portal/replies/#"], "portal-docs", &["-F", FORMAT]);
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::on_broker(dir.path(), &broker, "", "");
    let status =
        wait(&sub, 0, "the online status", |r| r.topic == format!("{P}/status") && r.json()["state"] == "online");
    let key = status.json()["identity"]["public_key"].as_str().unwrap().to_string();
    let mark = sub.lines.len();
    let out = broker
        .tool("mosquitto_pub", &[])
        .args(["-t", &format!("{P}/cmd"), "-m", r#"{"id":"c-docs","op":"state.get","args":{}}"#])
        .args(["-D", "publish", "response-topic", "portal/replies/test/room-1"])
        .args(["-D", "publish", "correlation-data", "req-docs-1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let reply = wait(&sub, mark, "the reply", |r| r.topic == "portal/replies/test/room-1");
    let mark = sub.lines.len();
    d.type_line("000002#");
    let event =
        wait(&sub, mark, "an event", |r| r.topic == format!("{P}/events") && r.json()["type"] == "access.denied");

    let shell = docs_block("**Verifying in a shell with openssl**", "sh");
    let python = docs_block("**Verifying in Python**", "python");
    let definitions = python.split("\nkey = \"").next().unwrap();
    for r in [&reply, &event] {
        let mut tampered = r.payload.clone();
        let last = tampered.len() - 2;
        tampered[last] ^= 0x01;
        for (payload, want) in [(&r.payload, true), (&tampered, false)] {
            // The shell example, its inputs set to what was received.
            let work = tempfile::tempdir().unwrap();
            std::fs::write(work.path().join("payload.bin"), payload).unwrap();
            let body: String = shell
                .lines()
                .filter(|l| !["key=", "topic=", "corr=", "sig=", "printf '%s' '{"].iter().any(|p| l.starts_with(p)))
                .map(|l| format!("{l}\n"))
                .collect();
            let script = format!(
                "key='{key}'\ntopic='{}'\ncorr='{}'\nsig='{}'\n{body}",
                r.topic,
                String::from_utf8(r.correlation.clone()).unwrap(),
                r.property("porter-sig").unwrap()
            );
            let out = Command::new("sh").arg("-c").arg(&script).current_dir(work.path()).output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout).to_string();
            assert_eq!(out.status.success(), want, "shell example on {}: {said}", r.topic);
            assert_eq!(said.contains("Signature Verified Successfully"), want, "{said}");

            // The Python example's functions, given the same.
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            let call = format!(
                "{definitions}\nprint(from_controller({key:?}, {:?}, bytes.fromhex({:?}), bytes.fromhex({:?}), {}))\n",
                r.topic,
                hex(&r.correlation),
                hex(payload),
                serde_json::to_string(&r.properties).unwrap().replace('[', "(").replace(']', ")")
            );
            let out = Command::new("python3").arg("-c").arg(&call).output().expect("python3");
            let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(said, if want { "True" } else { "False" }, "python example on {}", r.topic);
        }
    }
}

/// porterctl --mqtt run as a child: its standard output and error
/// collected as they come.
struct Ctl {
    child: std::process::Child,
    out: porter_tests::Lines,
    err: porter_tests::Lines,
    readers: [std::thread::JoinHandle<()>; 2],
}

impl Ctl {
    fn start(site: &Site, extra: &[&str], op: &[&str]) -> Ctl {
        let mut child = Command::new(porter_tests::bin("porterctl"))
            .args(["--mqtt", &site.url(), "--site", "test", "--controller", "room-1"])
            .args(site.pki.porterctl_args("portal"))
            .args(extra)
            .args(op)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (out, out_reader) = porter_tests::Lines::follow_to_end(child.stdout.take().unwrap(), "porterctl");
        let (err, err_reader) = porter_tests::Lines::follow_to_end(child.stderr.take().unwrap(), "porterctl!");
        Ctl { child, out, err, readers: [out_reader, err_reader] }
    }

    /// Waits for the exit: its code, all of its standard output and error.
    fn finish(mut self) -> (i32, String, String) {
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        for r in self.readers {
            r.join().unwrap();
        }
        (code, self.out.text(), self.err.text())
    }
}

/// The impostor: someone with the portal's leaked credential, which the
/// documented ACL lets read `P/cmd` and write `porterctl/#`. It watches the
/// command topic and answers the command porterctl sent on its Response
/// Topic with its Correlation Data, before the controller does.
fn forge_reply(site: &Site, watch: &Subscriber, mark: usize, signer: Option<&SigningKey>) {
    // Lines: topic, then Response Topic|Correlation Data|payload in hex.
    let fields = |l: &str| {
        let (_, rest) = l.split_once(' ')?;
        let mut f = rest.splitn(3, '|');
        Some((f.next()?.to_string(), f.next()?.to_string(), unhex(f.next()?)?))
    };
    let (_, line) = watch.lines.wait(mark, "porterctl's command", |l| {
        fields(l).is_some_and(|(r, _, p)| r.starts_with("porterctl/") && p.windows(10).any(|w| w == b"\"id\":\"ctl-"))
    });
    let (response, correlation, payload) = fields(&line).unwrap();
    let (response, correlation) = (response.as_str(), correlation.as_str());
    let id = serde_json::from_slice::<Value>(&payload).unwrap()["id"].clone();
    let forged =
        serde_json::json!({"controller": "room-1", "id": id, "ok": true, "result": {"forged": true}}).to_string();
    // Off the contract on purpose: not checked against docs/asyncapi.yaml.
    porter_tests::asyncapi::forged(site.port, &forged);
    let mut c = site.tool("mosquitto_pub", &[]);
    c.args(["-t", response, "-m", &forged, "-D", "publish", "correlation-data", correlation]);
    if let Some(key) = signer {
        // Signed as the docs say, with the impostor's own key.
        let sig = key.sign(&documented_message(response, correlation.as_bytes(), forged.as_bytes()));
        let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
        c.args(["-D", "publish", "user-property", "porter-sig", &sig]);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `porterctl --mqtt --controller-key` (issue 13): the reply must carry the
/// pinned controller's signature. Through the documented broker (mutual
/// TLS, ACLs), porterctl as the portal: pinned as base64 or as a PEM file a
/// genuine reply is printed; unpinned, it is printed with one warning that
/// it was not verified; pinned to another key, the genuine reply is
/// refused. The impostor (the test, with the portal's leaked credential)
/// answers porterctl's command while porterd is stopped (SIGSTOP): an
/// unsigned reply and one signed with another key are ignored, not
/// printed; with no genuine reply porterctl exits 3; once porterd runs
/// again (SIGCONT) its genuine reply is the one printed.
#[test]
fn porterctl_verifies_the_controllers_signature_on_the_reply() {
    let site = Site::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::on_broker(dir.path(), &site, "", &site.porterd_lines("room-1"));
    let (code, id) = d.ctl("identity", &[]);
    assert_eq!(code, 0, "{id}");
    let key = id["result"]["public_key"].as_str().unwrap().to_string();
    let pem = dir.path().join("room-1.pub");
    std::fs::write(&pem, id["result"]["public_key_pem"].as_str().unwrap()).unwrap();
    let pem = pem.display().to_string();

    // Pinned (base64, or a PEM file): the reply verifies, no warning.
    for pinned in [&key, &pem] {
        let (code, out, err) = Ctl::start(&site, &["--controller-key", pinned], &["state.get"]).finish();
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("\"generation\""), "{out}");
        assert!(!err.contains("not verified"), "{err}");
    }
    // Unpinned: printed, with one warning that says how to pin.
    let (code, out, err) = Ctl::start(&site, &[], &["state.get"]).finish();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"generation\""), "{out}");
    assert_eq!(err.matches("not verified").count(), 1, "{err}");
    assert!(err.contains("--controller-key"), "{err}");
    // Pinned to another controller's key: the genuine reply is refused.
    let other =
        base64::engine::general_purpose::STANDARD.encode(SigningKey::from_bytes(&[7; 32]).verifying_key().as_bytes());
    let (code, out, err) = Ctl::start(&site, &["--controller-key", &other, "--timeout", "2"], &["state.get"]).finish();
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.trim().is_empty(), "printed an unverified reply: {out}");
    assert!(err.contains("did not verify"), "{err}");
    // A pinned key that is not a key: a clear error before anything is sent.
    let (code, _, err) = Ctl::start(&site, &["--controller-key", "not-a-key"], &["state.get"]).finish();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--controller-key"), "{err}");

    // The impostor, while the controller cannot answer.
    let watch = site.subscribe_with(&[&format!("{P}/cmd")], "impostor", &["-F", "%t %R|%D|%x"]);
    let pid = nix::unistd::Pid::from_raw(d.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let impostor_key = SigningKey::from_bytes(&[9; 32]);
    // With no genuine reply: exit 3, nothing printed.
    let mark = watch.lines.len();
    let ctl = Ctl::start(&site, &["--controller-key", &key, "--timeout", "3"], &["door.unlock", "door=main"]);
    forge_reply(&site, &watch, mark, None);
    let (code, out, err) = ctl.finish();
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.trim().is_empty(), "printed a forged reply: {out}");
    assert!(err.contains("did not verify"), "{err}");
    assert!(!err.contains("forged"), "the forged payload reached the terminal: {err}");
    // Forged twice (unsigned, then signed by another key), then the
    // controller answers: its reply is the one printed.
    let mark = watch.lines.len();
    let ctl = Ctl::start(&site, &["--controller-key", &key], &["state.get"]);
    forge_reply(&site, &watch, mark, None);
    let (first, _) = ctl.err.wait_for(0, &["ignored a reply"]);
    forge_reply(&site, &watch, mark, Some(&impostor_key));
    ctl.err.wait_for(first + 1, &["ignored a reply"]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let (code, out, err) = ctl.finish();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"generation\"") && !out.contains("forged"), "{out}");
    assert_eq!(err.matches("ignored a reply").count(), 2, "{err}");
}
