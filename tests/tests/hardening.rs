//! Issue 13, part 5: a hardened surface. Each finding of the issue as a test
//! against the real porterd and porterctl: a tampered store, folders other
//! users may write, forged log lines, idle admin connections.

use porter_tests::{config_text, ctl, start_fails, Daemon};
use porterd::store::records::{self, HolderRecord};
use std::path::Path;

/// A test config in `dir` (the demo's door, console keypad and simulated
/// lock) with `extra` TOML; returns its path.
fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("porter.toml");
    std::fs::write(&cfg, config_text(dir, 200, false, extra)).unwrap();
    cfg
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

/// uid 65534 (`nobody`): "another user" for a test run as root, as CI runs.
const NOBODY: u32 = 65534;

fn chown_nobody(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// The start is refused, before the store opens, with the cause and the fix.
fn refused(cfg: &Path, parts: &[&str]) {
    let (code, err) = start_fails(cfg);
    assert_eq!(code, 1, "{err}");
    for p in parts.iter().chain(&["Fix: chown porter:porter", "; chmod 0"]) {
        assert!(err.contains(p), "`{p}` not in: {err}");
    }
}

/// Issue 13: data_dir, secret_file and the admin socket's folder somewhere
/// other users can write were used without a check. Each is refused at
/// start with the cause and the fix; the test layouts (a temporary folder,
/// a sticky world-writable socket folder as /tmp is) still start.
#[test]
fn folders_and_a_secret_other_users_control_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "");
    // A data_dir writable by every user, then one owned by another user.
    std::fs::create_dir(&data).unwrap();
    set_mode(&data, 0o777);
    refused(&cfg, &["data_dir", "writable by every user (mode 0777)"]);
    set_mode(&data, 0o700);
    chown_nobody(&data);
    refused(&cfg, &["data_dir", "owned by uid 65534"]);
    std::os::unix::fs::chown(&data, Some(0), Some(0)).unwrap();
    // A device.key another user made before the first start.
    let key = data.join("device.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    set_mode(&key, 0o600);
    chown_nobody(&key);
    refused(&cfg, &["secret_file", "owned by uid 65534", "recover PINs"]);
    // A symlinked device.key: refused, and its target's mode left alone.
    std::fs::remove_file(&key).unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::write(&theirs, [9u8; 32]).unwrap();
    set_mode(&theirs, 0o644);
    std::os::unix::fs::symlink(&theirs, &key).unwrap();
    refused(&cfg, &["secret_file", "symbolic link"]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&theirs).unwrap().permissions().mode() & 0o777, 0o644, "the target was chmodded");
    std::fs::remove_file(&key).unwrap();
    // The admin socket's folder owned by another user.
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    chown_nobody(&run);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let moved = text.replace(&format!("{}/admin.sock", dir.path().display()), &format!("{}/admin.sock", run.display()));
    std::fs::write(&cfg, &moved).unwrap();
    refused(&cfg, &["the admin socket's folder", "owned by uid 65534", "stand in for the admin socket"]);
    // The same folder sticky and writable by all (as /tmp) is accepted.
    std::os::unix::fs::chown(&run, Some(0), Some(0)).unwrap();
    set_mode(&run, 0o1777);
    let d = Daemon::start(&cfg, &run.join("admin.sock"));
    assert_eq!(d.ctl("state.get", &[]).0, 0);
    assert!(d.stop().0.success());
}

/// Issue 13: porterctl sent its command to whatever answered on the socket
/// path. It now checks the socket's owner (root or the daemon's user) and
/// the serving process first, and refuses, sending nothing, otherwise.
#[test]
fn porterctl_refuses_a_socket_another_user_owns() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("admin.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    chown_nobody(&sock);
    listener.set_nonblocking(true).unwrap();
    let (code, out) = ctl(&sock, "pin.set", &["holder=courier-ups", "pin=483920"]);
    assert_ne!(code, 0, "{out}");
    let text = out.to_string();
    assert!(text.contains("owned by uid 65534") && text.contains("refusing to send"), "{text}");
    // Nothing reached the stand-in: no connection was even made.
    assert!(listener.accept().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock));
}

/// Issue 13: deleted PINs were never reused, so generation exhausted the
/// space for good. The policy is a retention period
/// (`keys.pin_retention_days`, bounded below so a deleted PIN is not handed
/// on soon after), and `state.get` shows the free share. Through the real
/// daemon: a retired PIN still counts as taken; the bounds are checked.
#[test]
fn state_get_shows_the_free_pin_space_and_retention_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[keys]\npin_retention_days = 10\n");
    let (code, out, err) = porter_tests::check_config(&cfg);
    assert_eq!(code, 64, "{out}{err}");
    assert!(format!("{out}{err}").contains("keys.pin_retention_days"), "{out}{err}");
    let cfg = config(dir.path(), "[keys]\npin_retention_days = 30\n");
    let sock = dir.path().join("admin.sock");
    let d = Daemon::start(&cfg, &sock);
    let free = |d: &Daemon| {
        let (code, r) = d.ctl("state.get", &[]);
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["result"]["pin_space"], 998_890, "{r}");
        r["result"]["pin_space_free"].as_u64().unwrap()
    };
    let all = free(&d);
    assert_eq!(all, 998_890);
    assert_eq!(d.ctl("holder.put", &["holder=courier-ups", "role=courier"]).0, 0);
    assert_eq!(d.ctl("pin.generate", &["holder=courier-ups"]).0, 0);
    assert_eq!(free(&d), all - 1);
    assert_eq!(d.ctl("pin.delete", &["holder=courier-ups"]).0, 0);
    assert_eq!(free(&d), all - 1, "a PIN retired within the period is not free");
}

/// `config_text` for `dir` with data_dir, secret_file, identity_file and the
/// admin socket moved: each `(key, path)` replaces the test layout's line.
fn config_at(dir: &Path, moved: &[(&str, &Path)]) -> std::path::PathBuf {
    let cfg = config(dir, "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    for (key, path) in moved {
        let line = text.lines().find(|l| l.starts_with(&format!("{key} ="))).map(str::to_string);
        let new = format!("{key} = \"{}\"", path.display());
        text = match line {
            Some(l) => text.replace(&l, &new),
            None => format!("{new}\n{text}"),
        };
    }
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Issue 13, what was left: the folders above data_dir (and above
/// secret_file, identity_file and the admin socket) were not checked, so a
/// user who could write /var/lib, or any folder above, could swap data_dir
/// for their own. Each folder on the way, as the kernel resolves the path
/// (links followed), is root's or the daemon's user's and no one else's to
/// write, unless sticky as /tmp is (OpenSSH's StrictModes rule). Refused at
/// start with the folder and the fix; nothing is made in such a place.
#[test]
fn folders_above_the_daemons_paths_that_others_may_write_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let data = shared.join("porter/data");
    let cfg = config_at(dir.path(), &[("data_dir", &data), ("secret_file", &dir.path().join("device.key"))]);
    let fix = format!("Fix: chown root:root {s}; chmod go-w {s}", s = shared.display());
    // A folder above data_dir writable by every user.
    set_mode(&shared, 0o777);
    let (code, err) = start_fails(&cfg);
    assert_eq!(code, 1, "{err}");
    for part in [
        &format!("data_dir {}", data.display()),
        &format!("the folder {} on the way to it is writable by every user (mode 0777)", shared.display()),
        &fix,
    ] {
        assert!(err.contains(part.as_str()), "`{part}` not in: {err}");
    }
    assert!(!shared.join("porter").exists(), "data_dir was made in a folder others may write");
    // fs-mistrust's environment switch does not turn the checks off, and
    // check-config refuses the same.
    let out = std::process::Command::new(porter_tests::bin("porterd"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .env("FS_MISTRUST_DISABLE_PERMISSIONS_CHECKS", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains(&fix), "{err}");
    // Writable by its group only: refused too.
    set_mode(&shared, 0o775);
    let (code, err) = start_fails(&cfg);
    assert!(code == 1 && err.contains("writable by its group (mode 0775)"), "{err}");
    // Owned by another user, mode 0755: refused.
    set_mode(&shared, 0o755);
    chown_nobody(&shared);
    let (code, err) = start_fails(&cfg);
    assert!(
        code == 1 && err.contains(&format!("the folder {} on the way to it is owned by uid 65534", shared.display())),
        "{err}"
    );
    // Reached through a link: the link sits in a safe folder, but the
    // folder it leads through is another user's. The walk follows it.
    std::os::unix::fs::chown(&shared, Some(0), Some(0)).unwrap();
    set_mode(&shared, 0o777);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(shared.join("porter"), &link).unwrap();
    let cfg =
        config_at(dir.path(), &[("data_dir", &link.join("data")), ("secret_file", &dir.path().join("device.key"))]);
    let (code, err) = start_fails(&cfg);
    assert!(code == 1 && err.contains(&fix), "{err}");
    // A link another user owns, on the way: refused.
    let theirs = dir.path().join("theirs");
    std::os::unix::fs::symlink(dir.path(), &theirs).unwrap();
    std::os::unix::fs::lchown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let cfg =
        config_at(dir.path(), &[("data_dir", &theirs.join("data2")), ("secret_file", &dir.path().join("device.key"))]);
    let (code, err) = start_fails(&cfg);
    assert!(
        code == 1
            && err.contains(&format!("the symbolic link {} on the way to it is owned by uid 65534", theirs.display())),
        "{err}"
    );
    assert!(err.contains(&format!("Fix: chown -h root:root {}", theirs.display())), "{err}");
    // secret_file and the admin socket below a folder others may write.
    let safe = |moved: &[(&str, &Path)]| {
        let mut m = vec![("data_dir", dir.path().join("data"))];
        m.extend(moved.iter().map(|(k, p)| (*k, p.to_path_buf())));
        let m: Vec<(&str, &Path)> = m.iter().map(|(k, p)| (*k, p.as_path())).collect();
        config_at(dir.path(), &m)
    };
    let cfg = safe(&[("secret_file", &shared.join("keys/device.key"))]);
    let (code, err) = start_fails(&cfg);
    assert!(code == 1 && err.contains("secret_file's folder") && err.contains(&fix), "{err}");
    assert!(!shared.join("keys").exists(), "the secret was made in a folder others may write");
    let sock = shared.join("run/admin.sock");
    let cfg = safe(&[("secret_file", &dir.path().join("device.key")), ("socket", &sock)]);
    let (code, err) = start_fails(&cfg);
    assert!(code == 1 && err.contains("the admin socket's folder") && err.contains(&fix), "{err}");
    // identity_file below it: the daemon runs (no MQTT), says why, and makes no key there.
    let id = shared.join("id/identity.pem");
    let cfg = safe(&[("secret_file", &dir.path().join("device.key")), ("identity_file", &id)]);
    let sock = dir.path().join("admin.sock");
    let d = Daemon::start(&cfg, &sock);
    assert!(
        d.log.has(0, &["identity_file's folder", "on the way to it is writable by every user"]),
        "{}",
        d.log.text()
    );
    assert!(!shared.join("id").exists(), "the identity key was made in a folder others may write");
    let (code, r) = d.ctl("identity", &[]);
    assert_ne!(code, 0, "{r}");
    assert!(d.stop().0.success());
    // A sticky folder of root's, as /tmp, is on the way of every test: accepted.
    set_mode(&shared, 0o1777);
    let cfg = config_at(dir.path(), &[("data_dir", &data), ("secret_file", &dir.path().join("device.key"))]);
    let d = Daemon::start(&cfg, &sock);
    assert_eq!(d.ctl("state.get", &[]).0, 0);
    assert!(d.stop().0.success());
}
