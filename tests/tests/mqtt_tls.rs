//! TLS, mutual TLS and username/password against a real Mosquitto, through
//! the real porterd.
//!
//! Each test makes its certificates at run time with the `openssl` command
//! line (`porter_tests::tls::Pki`: a private CA, a server certificate for
//! 127.0.0.1 and localhost, client certificates), starts its own broker with the listener it needs,
//! and talks to porterd like a portal would: mosquitto_sub and mosquitto_pub
//! with the same kind of credentials. A refused daemon is watched for a few
//! seconds: it must never say "mqtt connected", the broker must show why it
//! was refused (more than once: the daemon keeps retrying), and the daemon
//! must still decide at its door. Each broker's contract watcher connects
//! with the portal's kind of credentials, so the messages are checked against
//! docs/asyncapi.yaml as everywhere else.

use porter_tests::tls::Pki;
use porter_tests::{config_text, open_dir, Broker, Daemon, DEADLINE, P};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a refused porterd is watched for a connection that must not happen.
const REFUSED_FOR: Duration = Duration::from_secs(3);

/// Starts porterd (demo seeding on, so its console has a PIN) with the given
/// `[mqtt]` keys; waits until it is ready, not until it connects.
fn porterd(mqtt: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::with_mqtt(dir.path(), true, "", &format!("keep_alive_s = 5\n{mqtt}"));
    (dir, d)
}

fn q(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// The demo PIN opens the door: the daemon is up and deciding.
fn still_decides(d: &mut Daemon) {
    let (_, line) = d.out.wait_for(0, &["has PIN"]);
    let pin = line.split("has PIN ").nth(1).unwrap().trim_end_matches('.').to_string();
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access granted", "holder=\"courier-ups\""]);
}

/// porterd is refused by `broker` for `reason` (a mosquitto log line, seen
/// from line `from` on): it keeps retrying, never connects within
/// [`REFUSED_FOR`], and goes on deciding at its door; it then stops cleanly.
fn assert_refused(broker: &Broker, from: usize, mut d: Daemon, reason: &[&str]) {
    let not_connected = |d: &Daemon| {
        assert!(!d.log.has(0, &["mqtt connected"]), "porterd connected; broker log:\n{}", broker.log.text());
    };
    // The first refusal, for that reason (and not a connection instead).
    let deadline = Instant::now() + DEADLINE;
    while !broker.log.has(from, reason) {
        not_connected(&d);
        assert!(Instant::now() < deadline, "mosquitto never logged {reason:?}; log:\n{}", broker.log.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Then a few seconds of retries, none of which connects.
    let until = Instant::now() + REFUSED_FOR;
    while Instant::now() < until {
        not_connected(&d);
        std::thread::sleep(Duration::from_millis(50));
    }
    not_connected(&d);
    let n = broker.log.count(from, reason);
    assert!(n >= 2, "porterd tried {n} time(s) in {REFUSED_FOR:?}, not retrying; broker log:\n{}", broker.log.text());
    still_decides(&mut d);
    assert!(d.stop().0.success(), "porterd did not stop cleanly");
}

/// The portal's side over an authenticated connection: status online, a
/// command and its reply, and the door's decision as an event.
fn round_trip(broker: &Broker, auth: &[String], d: &mut Daemon) {
    let sub = broker.subscribe_as(auth);
    // The retained status: the subscription is live.
    sub.wait_json(0, &format!("{P}/status"), "status online", |v| v["state"] == "online");
    broker.command_as(auth, "t-1", "holder.put", json!({"holder": "courier-dhl", "role": "courier"}));
    assert_eq!(sub.wait_json(0, &format!("{P}/reply"), "reply t-1", |v| v["id"] == "t-1").1["ok"], true);
    broker.command_as(auth, "t-2", "pin.generate", json!({"holder": "courier-dhl"}));
    let r = sub.wait_json(0, &format!("{P}/reply"), "reply t-2", |v| v["id"] == "t-2").1;
    let pin = r["result"]["pin"].as_str().unwrap_or_else(|| panic!("no PIN in {r}")).to_string();
    d.type_line(&format!("{pin}#"));
    let e = sub
        .wait_json(0, &format!("{P}/events"), "access.granted", |v| {
            v["type"] == "access.granted" && v["holder"] == "courier-dhl"
        })
        .1;
    assert_eq!(e["key"], "pin");
}

/// A broker whose one listener takes TLS only, configured by `lines` after
/// the listener (certificates, who may connect). The contract watcher and
/// the client tools connect with `identity` (`--cafile`, `--cert`/`--key`,
/// or `-u`/`-P`), so every message of these tests is checked against
/// docs/asyncapi.yaml too.
fn broker_as(lines: &str, tls: bool, identity: Vec<String>) -> Broker {
    let lines = lines.to_string();
    Broker::start_conf(open_dir(), move |port| format!("listener {port} 127.0.0.1\n{lines}"), tls, identity)
}

/// A TLS broker with our CA and server certificate, open to anonymous clients.
fn tls_broker(pki: &Pki) -> Broker {
    broker_as(&format!("{}allow_anonymous true\n", pki.listener_tls()), true, pki.client_args(None))
}

#[test]
fn mqtts_with_the_ca_file_connects_and_carries_commands_replies_and_events() {
    let pki = Pki::new();
    let broker = tls_broker(&pki);
    let (_dir, mut d) =
        porterd(&format!("url = \"mqtts://127.0.0.1:{}\"\nca_file = {}\n", broker.port, q(&pki.path("ca.crt"))));
    d.log.wait_for(0, &["mqtt subscribed"]);
    broker.log.wait_for(0, &["New client connected", "as porter-test-room-1"]);
    round_trip(&broker, &pki.client_args(None), &mut d);
    assert!(!d.log.has(0, &["mqtt disconnected"]), "the session dropped");
    assert!(d.stop().0.success());
}

#[test]
fn mqtts_with_an_unrelated_ca_file_is_refused_and_the_daemon_keeps_deciding() {
    let pki = Pki::new();
    pki.ca("other-ca", "Somebody Else's CA");
    let broker = tls_broker(&pki);
    let (_dir, d) =
        porterd(&format!("url = \"mqtts://127.0.0.1:{}\"\nca_file = {}\n", broker.port, q(&pki.path("other-ca.crt"))));
    // rustls rejects the server's chain and says so: alert unknown_ca.
    assert_refused(&broker, 0, d, &["alert unknown ca"]);
}

#[test]
fn mqtts_without_a_ca_file_does_not_trust_a_private_ca() {
    // No ca_file: the system's roots, which do not hold the test CA.
    let pki = Pki::new();
    let broker = tls_broker(&pki);
    let (_dir, d) = porterd(&format!("url = \"mqtts://127.0.0.1:{}\"\n", broker.port));
    assert_refused(&broker, 0, d, &["alert unknown ca"]);
}

/// A broker requiring a client certificate from our CA, whose CN becomes the
/// MQTT username; anonymous clients are refused.
/// The contract watcher connects with a certificate of its own.
fn mtls_broker(pki: &Pki) -> Broker {
    pki.client("ca", "contract-watcher", "contract-watcher", false);
    broker_as(
        &format!(
            "{}require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n",
            pki.listener_tls()
        ),
        true,
        pki.client_args(Some("contract-watcher")),
    )
}

#[test]
fn mutual_tls_with_a_client_certificate_connects_under_its_identity() {
    let pki = Pki::new();
    // porterd's key: RSA in PKCS#1 form; the portal's: P-256 in PKCS#8.
    pki.client("ca", "porterd", "porterd-room-1", true);
    pki.client("ca", "portal", "portal", false);
    let broker = mtls_broker(&pki);
    let (_dir, mut d) = porterd(&format!(
        "url = \"mqtts://127.0.0.1:{}\"\nca_file = {}\ncert_file = {}\nkey_file = {}\n",
        broker.port,
        q(&pki.path("ca.crt")),
        q(&pki.path("porterd.crt")),
        q(&pki.path("porterd.key"))
    ));
    d.log.wait_for(0, &["mqtt subscribed"]);
    // The broker knows the daemon by its certificate.
    broker.log.wait_for(0, &["New client connected", "as porter-test-room-1", "u'porterd-room-1'"]);
    round_trip(&broker, &pki.client_args(Some("portal")), &mut d);
    assert!(d.stop().0.success());
}

#[test]
fn mutual_tls_without_a_client_certificate_is_refused() {
    let pki = Pki::new();
    let broker = mtls_broker(&pki);
    let (_dir, d) =
        porterd(&format!("url = \"mqtts://127.0.0.1:{}\"\nca_file = {}\n", broker.port, q(&pki.path("ca.crt"))));
    assert_refused(&broker, 0, d, &["peer did not return a certificate"]);
}

#[test]
fn mutual_tls_with_a_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    pki.ca("other-ca", "Somebody Else's CA");
    pki.client("other-ca", "stranger", "porterd-room-1", false);
    let broker = mtls_broker(&pki);
    let (_dir, d) = porterd(&format!(
        "url = \"mqtts://127.0.0.1:{}\"\nca_file = {}\ncert_file = {}\nkey_file = {}\n",
        broker.port,
        q(&pki.path("ca.crt")),
        q(&pki.path("stranger.crt")),
        q(&pki.path("stranger.key"))
    ));
    assert_refused(&broker, 0, d, &["certificate verify failed"]);
}

/// A plain broker that refuses anonymous clients and knows `porter` /
/// `s3cret` and `portal` / `portal-pw`.
fn password_broker() -> Broker {
    let dir = open_dir();
    let pw = dir.path().join("passwd");
    for (i, (user, pass)) in [("porter", "s3cret"), ("portal", "portal-pw")].into_iter().enumerate() {
        let mut c = Command::new("mosquitto_passwd");
        c.arg("-b");
        if i == 0 {
            c.arg("-c");
        }
        let out = c.arg(&pw).args([user, pass]).output().expect("running mosquitto_passwd (apt-get install mosquitto)");
        assert!(out.status.success(), "mosquitto_passwd: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let lines = format!("allow_anonymous false\npassword_file {}\n", pw.display());
    // The contract watcher connects as the portal.
    Broker::start_conf(dir, move |port| format!("listener {port} 127.0.0.1\n{lines}"), false, portal_password())
}

fn portal_password() -> Vec<String> {
    ["-u", "portal", "-P", "portal-pw"].map(String::from).to_vec()
}

/// porterd with username `porter` and a password file holding `password`
/// and a trailing newline, on `broker`.
fn porterd_with_password(broker: &Broker, password: &str) -> (tempfile::TempDir, Daemon, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("mqtt.password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (dir, d) = porterd(&format!(
        "url = \"mqtt://127.0.0.1:{}\"\nusername = \"porter\"\npassword_file = {}\n",
        broker.port,
        q(&pw)
    ));
    (dir, d, secrets)
}

#[test]
fn username_and_password_file_connect() {
    let broker = password_broker();
    let (_dir, mut d, _secrets) = porterd_with_password(&broker, "s3cret");
    d.log.wait_for(0, &["mqtt subscribed"]);
    broker.log.wait_for(0, &["New client connected", "as porter-test-room-1", "u'porter'"]);
    round_trip(&broker, &portal_password(), &mut d);
    assert!(d.stop().0.success());
}

#[test]
fn a_wrong_password_is_refused_and_the_daemon_keeps_deciding() {
    let broker = password_broker();
    let (_dir, d, _secrets) = porterd_with_password(&broker, "s3cret-not");
    assert_refused(&broker, 0, d, &["disconnected, not authorised"]);
}

/// `porterctl doctor` tells refused credentials from a broker it reaches.
#[test]
fn doctor_says_whether_the_broker_takes_the_credentials() {
    let broker = password_broker();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("porter.toml");
    for (password, code, says) in
        [("wrong", 1, "refused the connection"), ("s3cret", 0, "takes this controller's credentials")]
    {
        let pw = dir.path().join("mqtt.password");
        std::fs::write(&pw, format!("{password}\n")).unwrap();
        let mqtt = format!(
            "\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nusername = \"porter\"\npassword_file = {}\n",
            broker.port,
            q(&pw)
        );
        std::fs::write(&cfg, config_text(dir.path(), 200, false, &mqtt)).unwrap();
        let (got, out) = porter_tests::doctor(&cfg, "root");
        assert!(out.contains(says), "{out}");
        assert_eq!(got, code, "{out}");
        assert!(!out.contains(password), "the password reached the output: {out}");
    }
}
