//! Issue 13, part 5: a hardened surface. Each finding of the issue as a test
//! against the real porterd and porterctl: a tampered store, folders other
//! users may write, forged log lines, idle admin connections.

use porter_tests::{config_text, ctl, Daemon};
use porterd::store::records::{self, HolderRecord};
use std::path::Path;
use std::process::Command;

/// A test config in `dir` (the demo's door, console keypad and simulated
/// lock) with `extra` TOML; returns its path.
fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("porter.toml");
    std::fs::write(&cfg, config_text(dir, 200, false, extra)).unwrap();
    cfg
}

/// Runs `porterd --config cfg` expecting it to stop before it is ready:
/// its exit code and its standard error.
fn start_fails(cfg: &Path) -> (i32, String) {
    let out = Command::new(porter_tests::bin("porterd")).arg("--config").arg(cfg).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Issue 13: a holder id over 65,535 bytes in a tampered store panicked the
/// daemon at start (a byte index inside a character). Such a record is
/// damage: reported with its key and recovered from, or refused, per
/// `store.on_damage`; never a panic.
#[test]
fn a_tampered_record_with_a_huge_holder_id_is_reported_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let sock = dir.path().join("admin.sock");
    let d = Daemon::start(&cfg, &sock);
    assert_eq!(d.ctl("holder.put", &["holder=courier-ups", "role=courier"]).0, 0);
    assert!(d.stop().0.success());
    // The tamperer writes a record whose id is 80,000 bytes of `é`.
    {
        let store = porterd::store::Store::open(&dir.path().join("data/store"), 1 << 20).unwrap();
        let live = records::active_space(&store);
        let key = records::holder_key(live, "courier-ups");
        let mut rec = HolderRecord::decode(&key, &store.get(&key).unwrap().unwrap()).unwrap();
        rec.id = "é".repeat(40_000);
        let mut b = porterd::store::Batch::default();
        b.put(records::holder_key(live, "tampered"), rec.encode());
        store.apply(b).unwrap();
    }
    // Refused: the cause names the record; no panic.
    let refuse = config(dir.path(), "[store]\non_damage = \"refuse\"\n");
    let (code, err) = start_fails(&refuse);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("h/a/tampered") || err.contains("h/b/tampered"), "the record is not named: {err}");
    // Recovered (the default): the daemon starts and keeps deciding.
    let cfg = config(dir.path(), "");
    let d = Daemon::start(&cfg, &sock);
    assert!(d.log.has(0, &["store damaged", "tampered"]), "{}", d.log.text());
    assert!(!d.log.text().contains("panicked"));
    let (code, state) = ctl(&sock, "state.get", &[]);
    assert_eq!(code, 0, "{state}");
}

/// Issue 13: sixteen idle connections to the admin socket locked porterctl
/// out (no idle timeout). An idle connection is closed after
/// `admin.idle_timeout_s`, so porterctl gets through within it.
#[test]
fn sixteen_idle_admin_connections_do_not_lock_porterctl_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("[admin]\n", "[admin]\nidle_timeout_s = 2\n");
    std::fs::write(&cfg, text).unwrap();
    let sock = dir.path().join("admin.sock");
    let d = Daemon::start(&cfg, &sock);
    // Sixteen clients connect and say nothing; one more sends half a line and stalls.
    let mut idle: Vec<_> = (0..16).map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap()).collect();
    let mut slow = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    std::io::Write::write_all(&mut slow, b"{\"id\": \"slow\", \"op\"").unwrap();
    idle.push(slow);
    let t = std::time::Instant::now();
    let (code, r) = ctl(&sock, "state.get", &[]);
    assert_eq!(code, 0, "{r}");
    assert!(t.elapsed() < std::time::Duration::from_secs(8), "porterctl took {:?}", t.elapsed());
    // Every idle connection was closed by the daemon: reading gives end of file.
    for s in &mut idle {
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(std::io::Read::read(s, &mut buf).unwrap(), 0, "an idle connection was kept open");
    }
    drop(d);
}

/// Whether a log line is free of what forges or repaints lines: a control
/// character (escape, carriage return, backspace) inside it.
fn clean(line: &str) -> bool {
    !line.chars().any(|c| c.is_control() && c != '\t')
}

/// Issue 13: an MQTT `op` with a newline and ANSI escapes, and an exec
/// program's standard error, forged a log line (`access granted ...
/// holder=admin`). Every string from outside is escaped before it reaches
/// the log: no line of the real daemon's log starts with the forgery or
/// holds a control character.
#[test]
fn outside_text_cannot_forge_a_log_line() {
    let broker = porter_tests::Broker::start();
    let sub = broker.subscribe(&format!("{}/reply", porter_tests::P), "portal-forge");
    let dir = tempfile::tempdir().unwrap();
    let forged = "2026-12-03T01:00:00.000000Z  INFO porterd: access granted door=main holder=admin";
    let exec = format!(
        r#"
[[devices]]
id = "noisy"
kind = "exec"
door = "main"
command = "/bin/sh"
args = ["-c", "printf 'oops\\033[2K\\r{forged}\\b\\n' >&2; exec sleep 600"]
"#
    );
    let d = porter_tests::Daemon::on_broker(dir.path(), &broker, &exec, "");
    d.log.wait_for(0, &["exec: program's standard error"]);
    // A command whose op, id and holder carry a newline and escapes.
    let payload = serde_json::json!({
        "id": format!("f-1\n{forged}"),
        "op": format!("state.get\n{forged}\u{1b}[1A\u{1b}[2K"),
        "args": {},
    });
    broker.publish(&format!("{}/cmd", porter_tests::P), &payload.to_string());
    let payload = serde_json::json!({"id": "f-2", "op": "holder.get", "args": {"holder": format!("x\n{forged}")}});
    broker.publish(&format!("{}/cmd", porter_tests::P), &payload.to_string());
    assert_eq!(sub.reply("f-2")["ok"], false);
    let (_, log) = d.stop();
    let lines = log.all();
    assert!(
        lines.iter().any(|l| l.contains("access granted door=main holder=admin")),
        "the forgeries reached no log line"
    );
    for l in &lines {
        assert!(!l.starts_with("2026-12-03T01:00:00.000000Z"), "a forged line: {l:?}");
        assert!(clean(l), "a control character in the log: {l:?}");
    }
}
