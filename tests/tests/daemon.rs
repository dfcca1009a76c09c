//! The real porterd, driven through its console keypad and porterctl.

use porter_tests::{check_config, config_text, workspace_root, Daemon};
use std::path::PathBuf;

fn setup(unlock_ms: u64, seed: bool) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("porter.toml");
    std::fs::write(&cfg, config_text(dir.path(), unlock_ms, seed, "")).unwrap();
    let sock = dir.path().join("admin.sock");
    (dir, cfg, sock)
}

fn demo_pin(d: &Daemon) -> String {
    let (_, line) = d.out.wait_for(0, &["has PIN"]);
    line.split("has PIN ").nth(1).unwrap().trim_end_matches('.').to_string()
}

#[test]
fn demo_pin_opens_the_door_which_then_relocks() {
    let (_dir, cfg, sock) = setup(300, true);
    let mut d = Daemon::start(&cfg, &sock);
    let pin = demo_pin(&d);
    assert_eq!(pin.len(), 6, "{pin}");
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    let (g, _) = d.log.wait_for(mark, &["access granted", "door=main", "device=keypad1", "holder=\"courier-ups\""]);
    let (u, _) = d.log.wait_for(mark, &["lock unlocked", "device=lock1"]);
    let (l, _) = d.log.wait_for(u, &["lock locked", "device=lock1"]);
    assert!(g < l && u < l);
    // The PIN never reaches the log.
    assert!(!d.log.all().iter().any(|l| porter_tests::shows_pin(l, &pin)), "PIN logged");
    let (status, _) = d.stop();
    assert!(status.success());
}

/// The README's first command as a user runs it in an empty folder: the
/// printed PIN and `#` open the door, which relocks; porterctl over
/// ./data/admin.sock adds a courier whose generated PIN opens it too; Ctrl-C
/// (SIGINT) locks and stops. A second start shows no PIN again and says how
/// to get one.
#[test]
fn the_readme_demo_runs_in_an_empty_folder() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::demo(dir.path());
    let pin = demo_pin(&d);
    let (_, how) = d.out.wait_for(0, &["Type "]);
    assert!(how.contains(&format!("Type {pin}# and press Enter to open door `main`")), "{how}");
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access granted", "door=main", "holder=\"courier-ups\""]);
    let (u, _) = d.log.wait_for(mark, &["lock unlocked", "device=lock1"]);
    d.log.wait_for(u, &["lock locked", "device=lock1"]);

    let data = dir.path().join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("admin.sock")), 0o660, "the admin socket");
    assert_eq!(mode(&data.join("device.key")), 0o600, "the device secret");
    assert_eq!(mode(&data.join("identity.pem")), 0o600, "the identity key");
    assert_eq!(mode(&data), 0o750, "the data folder");

    let (code, v) = d.ctl("holder.put", &["holder=courier-fedex", "name=FedEx", "role=courier"]);
    assert_eq!(code, 0, "{v}");
    let (code, v) = d.ctl("pin.generate", &["holder=courier-fedex"]);
    assert_eq!(code, 0, "{v}");
    let fedex = v["result"]["pin"].as_str().unwrap().to_string();
    let mark = d.log.len();
    d.type_line(&format!("{fedex}#"));
    d.log.wait_for(mark, &["access granted", "holder=\"courier-fedex\""]);
    let (code, v) = d.ctl("holder.list", &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["result"]["holders"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(
        !porter_tests::shows_pin(&v.to_string(), &pin) && !porter_tests::shows_pin(&v.to_string(), &fedex),
        "holder.list shows a PIN: {v}"
    );
    assert!(
        !d.log.all().iter().any(|l| porter_tests::shows_pin(l, &pin) || porter_tests::shows_pin(l, &fedex)),
        "a PIN was logged"
    );

    let (status, log) = d.stop_with(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{status}");
    let (s, _) = log.wait_for(0, &["shutting down"]);
    log.wait_for(s, &["lock locked", "device=lock1"]);

    let d = Daemon::demo(dir.path());
    let (_, again) = d.out.wait_for(0, &["already has holders"]);
    assert!(!porter_tests::shows_pin(&again, &pin));
    d.out.wait_for(0, &["pin.generate holder=courier-ups"]);
    assert!(d.stop().0.success());
}

#[test]
fn porterctl_provisions_and_a_generated_pin_opens() {
    let (_dir, cfg, sock) = setup(200, false);
    let mut d = Daemon::start(&cfg, &sock);
    let (code, v) = d.ctl("holder.put", &["holder=courier-fedex", "name=FedEx", "role=courier"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["result"]["role"], "courier");
    let (code, v) = d.ctl("pin.generate", &["holder=courier-fedex"]);
    assert_eq!(code, 0, "{v}");
    let pin = v["result"]["pin"].as_str().unwrap().to_string();

    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access granted", "holder=\"courier-fedex\""]);

    // holder.get never shows the PIN.
    let (code, v) = d.ctl("holder.get", &["holder=courier-fedex"]);
    assert_eq!(code, 0);
    assert!(!porter_tests::shows_pin(&v.to_string(), &pin));
    assert_eq!(v["result"]["keys"]["pin"]["active"], true);

    // Customising to a PIN in use is refused as duplicate, with a non-zero exit.
    d.ctl("holder.put", &["holder=courier-dhl", "role=courier"]);
    let (code, v) = d.ctl("pin.set", &["holder=courier-dhl", &format!("pin={pin}")]);
    assert_eq!(code, 1);
    assert_eq!(v["error"]["code"], "duplicate", "{v}");

    // Deactivated: denied as inactive.
    assert_eq!(d.ctl("pin.deactivate", &["holder=courier-fedex"]).0, 0);
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access denied", "reason=\"inactive\""]);

    // A card and a QR code on the same console.
    assert_eq!(d.ctl("card.assign", &["holder=courier-dhl", "uid=04:A1:B2:C3"]).0, 0);
    let (_, v) = d.ctl("qr.generate", &["holder=courier-dhl"]);
    let token = v["result"]["token"].as_str().unwrap().to_string();
    let mark = d.log.len();
    d.type_line("card:04a1b2c3");
    d.log.wait_for(mark, &["access granted", "key=\"card\"", "holder=\"courier-dhl\""]);
    let mark = d.log.len();
    d.type_line(&format!("qr:{token}"));
    d.log.wait_for(mark, &["access granted", "key=\"qr\"", "holder=\"courier-dhl\""]);
    assert!(!d.log.all().iter().any(|l| l.contains(&token)), "QR token logged");

    // Errors: unknown op, bad arguments, unknown holder.
    let (code, v) = d.ctl("pin.frobnicate", &[]);
    assert_eq!((code, v["error"]["code"].as_str()), (1, Some("unsupported")));
    let (code, v) = d.ctl("holder.put", &["holder=x y", "role=courier"]);
    assert_eq!((code, v["error"]["code"].as_str()), (1, Some("invalid")));
    let (code, v) = d.ctl("pin.generate", &["holder=nobody"]);
    assert_eq!((code, v["error"]["code"].as_str()), (1, Some("not_found")));

    let (code, v) = d.ctl("state.get", &[]);
    assert_eq!(code, 0);
    assert_eq!(v["result"]["holders"], 2);
    assert_eq!(v["result"]["cards"], 1);
    let (code, v) = d.ctl("door.unlock", &["door=main", "ms=150"]);
    assert_eq!(code, 0, "{v}");
    assert!(d.stop().0.success());
}

/// `porterctl state.get | head -3`: a reader that stops reading gets the op
/// done and a quiet porterctl, not a panic and a backtrace on its terminal.
#[test]
fn porterctl_piped_into_a_reader_that_stops_does_not_panic() {
    let (_dir, cfg, sock) = setup(200, false);
    let _d = Daemon::start(&cfg, &sock);
    // A pipe whose reader is gone before porterctl starts: its first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(porter_tests::bin("porterctl"))
        .arg("--socket")
        .arg(&sock)
        .args(["holder.put", "holder=courier-dhl", "name=DHL", "role=courier"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The op was done all the same.
    let (code, v) = porter_tests::ctl(&sock, "holder.get", &["holder=courier-dhl"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["result"]["name"], "DHL");
}

#[test]
fn five_wrong_pins_engage_the_lockout_and_a_restart_keeps_it() {
    let (_dir, cfg, sock) = setup(200, true);
    let mut d = Daemon::start(&cfg, &sock);
    let pin = demo_pin(&d);
    let wrong = if pin == "502817" { "502818" } else { "502817" };
    let mark = d.log.len();
    for _ in 0..5 {
        d.type_line(&format!("{wrong}#"));
    }
    d.log.wait_for(mark, &["lockout engaged", "device=keypad1"]);
    // The right PIN is now refused too.
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access denied", "reason=\"locked_out\""]);
    assert!(d.stop().0.success());

    let mut d = Daemon::start(&cfg, &sock);
    d.log.wait_for(0, &["lockout restored", "device=keypad1"]);
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access denied", "reason=\"locked_out\""]);
    // state.get shows it too.
    let (code, v) = d.ctl("state.get", &[]);
    assert_eq!(code, 0, "{v}");
    let lockouts = &v["result"]["lockouts"];
    assert_eq!(lockouts.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(lockouts[0]["device"], "keypad1");
    assert_eq!(lockouts[0]["failures_today"], 5);
    assert!(lockouts[0]["until"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");

    let (code, v) = d.ctl("lockout.clear", &["device=keypad1"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["result"]["cleared"][0], "keypad1");
    assert_eq!(d.ctl("state.get", &[]).1["result"]["lockouts"], serde_json::json!([]));
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access granted"]);
    let (code, v) = d.ctl("lockout.clear", &["device=nope"]);
    assert_eq!((code, v["error"]["code"].as_str()), (1, Some("not_found")));
    assert!(d.stop().0.success());
}

#[test]
fn shutdown_relocks_an_open_door() {
    let (_dir, cfg, sock) = setup(600_000, true);
    let mut d = Daemon::start(&cfg, &sock);
    let pin = demo_pin(&d);
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    let (u, _) = d.log.wait_for(mark, &["lock unlocked"]);
    let (status, log) = d.stop();
    assert!(status.success());
    let (s, _) = log.wait_for(u, &["shutting down"]);
    log.wait_for(s, &["lock locked", "device=lock1"]);
}

#[test]
fn garbage_on_the_console_and_the_socket_loses_nothing() {
    let (_dir, cfg, sock) = setup(200, true);
    let mut d = Daemon::start(&cfg, &sock);
    let pin = demo_pin(&d);
    d.type_line("hello there");
    d.type_line("card:zz");
    d.log.wait_for(0, &["line not understood"]);
    // Raw garbage on the admin socket gets a typed error reply.
    {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(b"{not json\n[1,2]\n{\"id\":7,\"op\":\"holder.get\",\"args\":{\"holder\":5}}\n").unwrap();
        let mut r = BufReader::new(s);
        for want_id in [serde_json::Value::Null, serde_json::Value::Null, serde_json::json!(7)] {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["ok"], false, "{v}");
            assert_eq!(v["error"]["code"], "invalid", "{v}");
            assert_eq!(v["id"], want_id);
        }
    }
    // A line far over the console's limit, and bytes that are not UTF-8:
    // each counted as garbled, the console still reads.
    d.type_bytes(&vec![b'7'; 100_000]);
    d.type_bytes(b"\n\xff\xfe#\n");
    // (Warnings are rate-limited: the count shows in the next one.)
    let before = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(before, &["access granted"]);
    // An oversized admin command gets its typed reply, and the connection
    // still answers the next one.
    {
        use std::io::{BufRead, BufReader, Write};
        let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut big = vec![b'x'; 3 * 1024 * 1024];
            big.extend_from_slice(b"\n{\"id\":\"after\",\"op\":\"state.get\",\"args\":{}}\n");
            w.write_all(&big).unwrap();
        });
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["error"]["code"], "invalid", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("limit"), "{v}");
        line.clear();
        r.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!((v["id"].as_str(), v["ok"].as_bool()), (Some("after"), Some(true)), "{v}");
        writer.join().unwrap();
    }
    let mark = d.log.len();
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access granted"]);
    assert!(d.stop().0.success());
}

/// A start that fails after the config (here: the store holds keys but
/// the device secret is gone) still drives the lock locked before it exits.
/// A second porterd on a running one's admin socket is refused and leaves
/// that daemon's socket (and doors) alone.
#[test]
fn a_start_that_fails_still_locks_the_door_but_not_anothers() {
    let (dir, cfg, sock) = setup(200, true);
    let first = Daemon::start(&cfg, &sock);

    // Another data_dir, the same admin socket: refused, nothing driven.
    let run = |config: &std::path::Path, env: &[(&str, &str)]| {
        let out = std::process::Command::new(porter_tests::bin("porterd"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let other_data = dir.path().join("other");
    let (status, err) = run(&cfg, &[("PORTER_DATA_DIR", other_data.to_str().unwrap())]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("answered by another running porterd"), "{err}");
    assert!(!err.contains("lock locked"), "it drove the other daemon's lock: {err}");
    let (code, v) = first.ctl("state.get", &[]);
    assert_eq!((code, v["result"]["holders"].as_u64()), (0, Some(1)), "the first daemon's socket: {v}");
    // Its data_dir, another socket: refused at the store, nothing driven either.
    let other_sock = dir.path().join("other.sock");
    let (status, err) = run(&cfg, &[("PORTER_ADMIN__SOCKET", other_sock.to_str().unwrap())]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("in use by another process"), "{err}");
    assert!(!err.contains("lock locked"), "it drove the other daemon's lock: {err}");
    assert!(first.stop().0.success());
    assert!(!sock.exists(), "the socket is removed at exit");

    // The secret gone from under a store with keys: the start fails, locked.
    std::fs::remove_file(dir.path().join("data/device.key")).unwrap();
    let (status, err) = run(&cfg, &[]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("is missing, but the store was made with it"), "{err}");
    let locked = err.find("lock locked").expect("the lock driven locked");
    assert!(err[locked..].lines().next().unwrap().contains("device=lock1"), "{err}");
}

/// A store whose only trace of its secret is a tombstone (a deleted
/// holder's PIN) still refuses a new secret: a new one would let that PIN
/// be set again. And a secret replaced under a store is noticed.
#[test]
fn a_store_keeps_its_secret_even_with_no_keys_left() {
    let (dir, cfg, sock) = setup(200, false);
    let d = Daemon::start(&cfg, &sock);
    assert_eq!(d.ctl("holder.put", &["holder=h1", "role=courier"]).0, 0);
    assert_eq!(d.ctl("pin.generate", &["holder=h1"]).0, 0);
    assert_eq!(d.ctl("holder.delete", &["holder=h1"]).0, 0);
    assert_eq!(d.ctl("state.get", &[]).1["result"]["holders"], 0);
    assert!(d.stop().0.success());
    let key = dir.path().join("data/device.key");
    let start = || {
        let out = std::process::Command::new(porter_tests::bin("porterd")).arg("--config").arg(&cfg).output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let (status, err) = start();
    assert!(!status.success() && err.contains("is missing, but the store was made with it"), "{err}");
    assert!(!key.exists(), "a new secret was made");
    // Another secret in its place.
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (status, err) = start();
    assert!(!status.success() && err.contains("is not the secret this store's keys were made with"), "{err}");
    // The right one, given with too open a mode, is made private and starts.
    std::fs::write(&key, &original).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let d = Daemon::start(&cfg, &sock);
    d.log.wait_for(0, &["its mode is now 600"]);
    assert!(d.stop().0.success());
}

/// Started on an invalid config, porterd itself (not only check-config)
/// lists every error and exits 64 without creating its data folder.
#[test]
fn porterd_refuses_an_invalid_config_with_64() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = config_text(&data, 70, false, "\n[keys]\npin_length = 9\n").replace("site = \"test\"", "site = \"a b\"");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(porter_tests::bin("porterd")).arg("--config").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    for path in ["site:", "keys.pin_length:"] {
        assert!(err.contains(path), "missing {path} in:\n{err}");
    }
    assert!(!data.exists(), "an invalid config created {}", data.display());
}

#[test]
fn check_config_accepts_the_shipped_configs_and_names_every_error() {
    for entry in std::fs::read_dir(workspace_root().join("configs")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let (code, out, err) = check_config(&p);
            assert_eq!(code, 0, "{}: {out}{err}", p.display());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = config_text(dir.path(), 70, false, "\n[keys]\npin_length = 3\n")
        .replace("site = \"test\"", "site = \"a b\"\nsiet = 1");
    std::fs::write(&bad, text).unwrap();
    let (code, _, err) = check_config(&bad);
    assert_eq!(code, 64, "{err}");
    for path in ["site:", "siet:", "keys.pin_length:", "doors[0].unlock_ms:"] {
        assert!(err.contains(path), "missing {path} in:\n{err}");
    }
    let (code, _, err) = check_config(&dir.path().join("missing.toml"));
    assert_eq!(code, 64, "{err}");
}

/// Under systemd: `READY=1` on the notify socket once the lock is driven to
/// its safe state, `WATCHDOG=1` at half the watchdog interval while the
/// decision loop answers, `STOPPING=1` at shutdown.
#[test]
fn systemd_hears_ready_the_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let (dir, cfg, socket) = setup(200, false);
    let notify = dir.path().join("notify.sock");
    let server = UnixDatagram::bind(&notify).unwrap();
    server.set_read_timeout(Some(porter_tests::DEADLINE)).unwrap();
    let env = [("NOTIFY_SOCKET", notify.to_str().unwrap()), ("WATCHDOG_USEC", "400000")];
    let d = Daemon::start_with_env(&cfg, &socket, &env);
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = server.recv(&mut buf).expect("a message to the notify socket");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1"), "{ready}");
    let safe = d.log.all().iter().position(|l| l.contains("lock locked")).expect("the lock driven locked");
    let ready_at = d.log.all().iter().position(|l| l.contains("porterd ready")).unwrap();
    assert!(safe < ready_at, "READY before the lock was safe");
    for _ in 0..3 {
        assert_eq!(next(), "WATCHDOG=1");
    }
    let pid = nix::unistd::Pid::from_raw(d.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    loop {
        if next() == "STOPPING=1" {
            break;
        }
    }
    let (status, _) = d.stop();
    assert!(status.success());
}

/// Issue 11: every garbled console line was a warning, so a flood of them
/// filled the log (and the SD card under it). Warnings are rate-limited as
/// the serial drivers' are: at most one a second, with the running count.
#[test]
fn a_flood_of_garbled_console_lines_logs_a_warning_a_second() {
    let (_dir, cfg, sock) = setup(200, true);
    let mut d = Daemon::start(&cfg, &sock);
    let pin = demo_pin(&d);
    let mark = d.log.len();
    let started = std::time::Instant::now();
    d.type_bytes("garbage!\n".repeat(5000).as_bytes());
    // Lines are read in order: the grant after the flood means all of it was read.
    d.type_line(&format!("{pin}#"));
    d.log.wait_for(mark, &["access granted"]);
    let warned = d.log.all()[mark..].iter().filter(|l| l.contains("line not understood")).count();
    let allowed = started.elapsed().as_secs() as usize + 1;
    assert!((1..=allowed).contains(&warned), "{warned} warnings in {:?}", started.elapsed());
}
