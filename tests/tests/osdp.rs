//! The `osdp` kind through the real protocol: porterd as the OSDP control
//! panel on one end of a socat pty pair, and on the other end libosdp's own
//! peripheral-device mode from PyPI (`libosdp` 3.2.9, installed into
//! target/pydeps by scripts/install-test-deps.sh), driven by
//! tests/peers/osdp_reader.py. Each wait is for the thing itself, with a
//! deadline.

use porter_tests::peers::{frame_hex, write_key, Peer, Wire};
use porter_tests::{config_text, Broker, Daemon, Lines, P};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KEY: &str = "8c4a1f0e33d2b6a7955e0c1d2f3a4b5c";

/// `dir/name`, holding `key` (mode 0600) unless `None` (install mode makes it).
fn key_file(dir: &Path, name: &str, key: Option<&str>) -> PathBuf {
    let p = dir.join(name);
    if let Some(k) = key {
        write_key(&p, k);
    }
    p
}

fn reader_toml(id: &str, port: &Path, address: u8, extra: &str) -> String {
    reader_at("main", id, port, address, extra)
}

fn reader_at(door: &str, id: &str, port: &Path, address: u8, extra: &str) -> String {
    format!(
        "\n[[devices]]\nid = \"{id}\"\nkind = \"osdp\"\ndoor = \"{door}\"\nport = \"{}\"\naddress = {address}\n{extra}\n",
        port.display()
    )
}

fn start(dir: &Path, devices: &str) -> Daemon {
    let cfg = dir.join("porter.toml");
    std::fs::write(&cfg, config_text(dir, 300, false, devices)).unwrap();
    Daemon::start(&cfg, &dir.join("admin.sock"))
}

#[test]
fn cards_and_keys_from_two_secure_readers_on_one_bus_open_the_door() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let wire = Wire::new(p, "rs485");
    let (a, b) = (key_file(p, "a.key", Some(KEY)), key_file(p, "b.key", Some(KEY)));
    let mut reader = Peer::osdp_reader(&wire, &["--address", "0", "--address", "1", "--scbk", KEY]);
    let devices = reader_toml("reader-a", &wire.near, 0, &format!("key_file = \"{}\"", a.display()))
        + &reader_toml("reader-b", &wire.near, 1, &format!("key_file = \"{}\"", b.display()));
    let d = start(p, &devices);
    d.log.wait_for(0, &["device health", "device=reader-a", "device.online"]);
    d.log.wait_for(0, &["device health", "device=reader-b", "device.online"]);
    // Online means on the secure channel, as the reader sees it too.
    reader.out.wait_for(0, &["\"state\"", "\"pd\": 0", "\"sc\": true"]);
    reader.out.wait_for(0, &["\"state\"", "\"pd\": 1", "\"sc\": true"]);

    // A 26-bit card (facility 1, card 1) reports the UID the `wiegand` kind
    // reports for it: 01 00 01.
    assert_eq!(d.ctl("holder.put", &["holder=staff-ann", "name=Ann", "role=staff"]).0, 0);
    assert_eq!(d.ctl("card.assign", &["holder=staff-ann", "uid=010001"]).0, 0);
    let mark = d.log.len();
    reader.say(&format!("@1 card {} 26", frame_hex(0x202_0002, 26)));
    d.log.wait_for(mark, &["access granted", "device=reader-b", "staff-ann"]);
    d.log.wait_for(mark, &["lock unlocked", "device=lock1"]);

    // A courier's PIN on the reader's keypad, like any keypad.
    assert_eq!(d.ctl("holder.put", &["holder=courier-ups", "name=UPS", "role=courier"]).0, 0);
    let (code, v) = d.ctl("pin.generate", &["holder=courier-ups"]);
    assert_eq!(code, 0, "{v}");
    let pin = v["result"]["pin"].as_str().unwrap().to_string();
    let mark = d.log.len();
    reader.say(&format!("@0 keys {pin}#"));
    d.log.wait_for(mark, &["access granted", "device=reader-a", "courier-ups"]);
    assert!(!porter_tests::shows_pin(&d.log.text(), &pin), "the PIN reached the log");

    // An unknown card is denied at its own reader.
    let mark = d.log.len();
    reader.say(&format!("@0 card {} 26", frame_hex(0x202_0004, 26)));
    d.log.wait_for(mark, &["access denied", "device=reader-a"]);

    // Tamper reaches the log with the reader's id.
    let mark = d.log.len();
    reader.say("@1 tamper 1");
    d.log.wait_for(mark, &["osdp: reader tamper", "device=reader-b", "tamper=true"]);
    assert!(!d.log.text().contains(KEY), "the key reached the log");

    // The readers stop answering: both go offline; back, both online and
    // reading again (within a second or so of the reader's start).
    let mark = d.log.len();
    reader.stop();
    d.log.wait_for(mark, &["device health", "device=reader-a", "device.offline"]);
    d.log.wait_for(mark, &["device health", "device=reader-b", "device.offline"]);
    let mark = d.log.len();
    let back = Instant::now();
    let mut reader = Peer::osdp_reader(&wire, &["--address", "0", "--address", "1", "--scbk", KEY]);
    d.log.wait_for(mark, &["device health", "device=reader-a", "device.online"]);
    d.log.wait_for(mark, &["device health", "device=reader-b", "device.online"]);
    assert!(back.elapsed() < Duration::from_secs(5), "back after {:?}: libosdp's 300 s back-off?", back.elapsed());
    let mark = d.log.len();
    reader.say(&format!("@0 card {} 26", frame_hex(0x202_0002, 26)));
    d.log.wait_for(mark, &["access granted", "device=reader-a", "staff-ann"]);
    let (status, _) = d.stop();
    assert!(status.success());
}

#[test]
fn a_reader_offering_only_plain_text_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let wire = Wire::new(p, "rs485");
    let key = key_file(p, "a.key", Some(KEY));
    let _reader = Peer::osdp_reader(&wire, &["--address", "0", "--scbk", KEY, "--plain"]);
    let d = start(p, &reader_toml("reader-a", &wire.near, 0, &format!("key_file = \"{}\"", key.display())));
    d.log.wait_for(0, &["device health", "device=reader-a", "device.offline"]);
    let (_, line) = d.log.wait_for(0, &["osdp: reader offline", "device=reader-a"]);
    assert!(line.contains("does not answer on a secure channel"), "{line}");
    assert!(!d.log.has(0, &["device=reader-a", "device.online"]), "a plain-text reader came online");
    drop(d);
    drop(_reader);
    drop(wire);

    // The control: the same reader, with the secure channel turned off, is
    // heard; so the refusal above is the enforcement, not a broken wire.
    let wire = Wire::new(p, "rs485");
    let _reader = Peer::osdp_reader(&wire, &["--address", "0", "--plain"]);
    let d = start(p, &reader_toml("reader-a", &wire.near, 0, "secure = false"));
    d.log.wait_for(0, &["device health", "device=reader-a", "device.online"]);
}

#[test]
fn install_mode_pairs_a_new_reader_with_a_key_it_then_insists_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let wire = Wire::new(p, "rs485");
    let key = key_file(p, "front.key", None);
    // A reader out of its box: no key (it answers on the install key SCBK-D).
    let reader = Peer::osdp_reader(&wire, &["--address", "0"]);
    let toml = reader_toml("reader-a", &wire.near, 0, &format!("key_file = \"{}\"\ninstall = true", key.display()));
    let d = start(p, &toml);
    d.log.wait_for(0, &["device health", "device=reader-a", "device.online"]);
    // The key file was made, 0600, and the reader was sent that key.
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let sent = std::fs::read_to_string(&key).unwrap().trim().to_string();
    assert_eq!(sent.len(), 32);
    let (_, keyset) = reader.out.wait_for(0, &["\"command\"", &sent]);
    assert!(
        keyset.contains("\"command\": 5") || keyset.contains("KEYSET") || keyset.contains("'command': 5"),
        "{keyset}"
    );
    assert!(!d.log.text().contains(&sent), "the key reached the log");
    d.log.wait_for(0, &["remove `install = true`"]);
    drop(d);
    reader.stop();

    // Installed: without install mode, the reader restarted with the key it
    // was given comes online; one still on the install key does not.
    let toml = reader_toml("reader-a", &wire.near, 0, &format!("key_file = \"{}\"", key.display()));
    let reader = Peer::osdp_reader(&wire, &["--address", "0", "--scbk", &sent]);
    let d = start(p, &toml);
    d.log.wait_for(0, &["device health", "device=reader-a", "device.online"]);
    drop(d);
    reader.stop();
    let _reader = Peer::osdp_reader(&wire, &["--address", "0"]);
    let d = start(p, &toml);
    d.log.wait_for(0, &["device health", "device=reader-a", "device.offline"]);
    assert!(!d.log.has(0, &["device=reader-a", "device.online"]));
}

/// The commands the control panel sent reader `pd` from line `from` on, as
/// the reader printed them.
fn commands(out: &Lines, from: usize, pd: u8) -> Vec<serde_json::Value> {
    out.all()
        .iter()
        .skip(from)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["ev"] == "command" && v["pd"] == pd)
        .map(|v| v["cmd"].clone())
        .collect()
}

/// Waits for a command to reader `pd` for which `pred` holds; its line's
/// index and the command.
fn wait_command(
    out: &Lines,
    from: usize,
    pd: u8,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> (usize, serde_json::Value) {
    let (i, line) = out.wait(from, what, |l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["ev"] == "command" && v["pd"] == pd && pred(&v["cmd"]))
    });
    (i, serde_json::from_str::<serde_json::Value>(&line).unwrap()["cmd"].clone())
}

// OSDP's LED colours and command codes, as libosdp's reader prints them.
const LED: u64 = 2;
const BUZZER: u64 = 3;
const RED: u64 = 1;
const GREEN: u64 = 2;
const AMBER: u64 = 3;
const BLUE: u64 = 4;

/// An LED command's temporary setting: (on colour, off colour, on, off) in
/// OSDP's units (100 ms), and its timer.
fn led(cmd: &serde_json::Value) -> Option<((u64, u64, u64, u64), u64)> {
    (cmd["command"] == LED && cmd["control_code"] == 2).then(|| {
        let n = |k: &str| cmd[k].as_u64().unwrap();
        ((n("on_color"), n("off_color"), n("on_count"), n("off_count")), n("timer_count"))
    })
}

/// A buzzer command's (on, off, repeats).
fn buzzer(cmd: &serde_json::Value) -> Option<(u64, u64, u64)> {
    (cmd["command"] == BUZZER && cmd["control_code"] == 2).then(|| {
        let n = |k: &str| cmd[k].as_u64().unwrap();
        (n("on_count"), n("off_count"), n("rep_count"))
    })
}

const STEADY_GREEN: (u64, u64, u64, u64) = (GREEN, GREEN, 1, 0);
const STEADY_RED: (u64, u64, u64, u64) = (RED, RED, 1, 0);
const RED_FLASHING: (u64, u64, u64, u64) = (RED, 0, 5, 5);

fn assign_card(d: &Daemon) {
    assert_eq!(d.ctl("holder.put", &["holder=staff-ann", "name=Ann", "role=staff"]).0, 0);
    assert_eq!(d.ctl("card.assign", &["holder=staff-ann", "uid=010001"]).0, 0);
}

#[test]
fn a_reader_shows_grant_deny_and_lockout_and_the_lockout_again_when_back_online() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let wire = Wire::new(p, "rs485");
    let a = key_file(p, "a.key", Some(KEY));
    let mut reader = Peer::osdp_reader(&wire, &["--address", "0", "--scbk", KEY]);
    // No `feedback` list: a reader shows its own door's feedback.
    let devices = reader_toml("reader-a", &wire.near, 0, &format!("key_file = \"{}\"", a.display()))
        + "\n[lockout]\nbase_s = 120\n";
    let d = start(p, &devices);
    d.log.wait_for(0, &["device health", "device=reader-a", "device.online"]);
    assign_card(&d);

    // A grant: green, steady, for the door's unlock time (300 ms), and one
    // short beep.
    let mark = reader.out.len();
    reader.say(&format!("card {} 26", frame_hex(0x202_0002, 26)));
    let (_, cmd) = wait_command(&reader.out, mark, 0, "the grant's LED", |c| led(c).is_some());
    assert_eq!(led(&cmd), Some((STEADY_GREEN, 3)), "{cmd}");
    let (_, cmd) = wait_command(&reader.out, mark, 0, "the grant's beep", |c| buzzer(c).is_some());
    assert_eq!(buzzer(&cmd), Some((2, 0, 1)), "{cmd}");

    // An unknown card: red for 2 s and two beeps.
    let mark = reader.out.len();
    reader.say(&format!("card {} 26", frame_hex(0x202_0004, 26)));
    let (_, cmd) = wait_command(&reader.out, mark, 0, "the deny's LED", |c| led(c).is_some());
    assert_eq!(led(&cmd), Some((STEADY_RED, 20)), "{cmd}");
    let (_, cmd) = wait_command(&reader.out, mark, 0, "the deny's beeps", |c| buzzer(c).is_some());
    assert_eq!(buzzer(&cmd), Some((2, 1, 2)), "{cmd}");

    // Five wrong PINs on its keypad: locked out, red flashing to the end of
    // the lockout (120 s) and a long tone.
    let mark = reader.out.len();
    for _ in 0..5 {
        reader.say("keys 000001#");
    }
    d.log.wait_for(0, &["lockout engaged", "device=reader-a"]);
    let (_, cmd) =
        wait_command(&reader.out, mark, 0, "the lockout's LED", |c| led(c).is_some_and(|l| l.0 == RED_FLASHING));
    let (_, timer) = led(&cmd).unwrap();
    assert!((1000..=1200).contains(&timer), "the lockout's end, in 100 ms: {cmd}");
    wait_command(&reader.out, mark, 0, "the lockout's tone", |c| buzzer(c) == Some((10, 0, 1)));

    // The reader goes away and comes back while the lockout runs: it shows
    // the lockout again, for what is left of it.
    let mark = d.log.len();
    reader.stop();
    d.log.wait_for(mark, &["device health", "device=reader-a", "device.offline"]);
    let reader = Peer::osdp_reader(&wire, &["--address", "0", "--scbk", KEY]);
    d.log.wait_for(mark, &["device health", "device=reader-a", "device.online"]);
    let (_, cmd) = wait_command(&reader.out, 0, 0, "the lockout shown again", |c| led(c).is_some());
    let (pattern, left) = led(&cmd).unwrap();
    assert_eq!(pattern, RED_FLASHING, "{cmd}");
    assert!(left < timer && left > 200, "what is left of the lockout: {left} of {timer}");
}

#[test]
fn two_readers_on_one_bus_at_two_doors_each_show_only_their_doors_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let wire = Wire::new(p, "rs485");
    let (a, b) = (key_file(p, "a.key", Some(KEY)), key_file(p, "b.key", Some(KEY)));
    let mut reader = Peer::osdp_reader(&wire, &["--address", "0", "--address", "1", "--scbk", KEY]);
    let devices = reader_at("main", "reader-a", &wire.near, 0, &format!("key_file = \"{}\"", a.display()))
        + &reader_at("side", "reader-b", &wire.near, 1, &format!("key_file = \"{}\"", b.display()))
        + "\n[[doors]]\nid = \"side\"\nlock = \"lock2\"\nunlock_ms = 700\n\n[[devices]]\nid = \"lock2\"\nkind = \"sim_lock\"\n";
    let d = start(p, &devices);
    d.log.wait_for(0, &["device health", "device=reader-a", "device.online"]);
    d.log.wait_for(0, &["device health", "device=reader-b", "device.online"]);
    assign_card(&d);

    // Granted at the side door: reader-b shows green for the side door's
    // 700 ms; then denied at the main door: reader-a shows red.
    let mark = reader.out.len();
    reader.say(&format!("@1 card {} 26", frame_hex(0x202_0002, 26)));
    let (_, cmd) = wait_command(&reader.out, mark, 1, "reader-b's grant", |c| led(c).is_some());
    assert_eq!(led(&cmd), Some((STEADY_GREEN, 7)), "{cmd}");
    reader.say(&format!("@0 card {} 26", frame_hex(0x202_0004, 26)));
    let (last, cmd) = wait_command(&reader.out, mark, 0, "reader-a's deny", |c| led(c).is_some());
    assert_eq!(led(&cmd), Some((STEADY_RED, 20)), "{cmd}");
    wait_command(&reader.out, mark, 0, "reader-a's beeps", |c| buzzer(c).is_some());
    wait_command(&reader.out, mark, 1, "reader-b's beep", |c| buzzer(c).is_some());

    // Each reader got its own door's signal and nothing else.
    let lights = |pd| commands(&reader.out, mark, pd).iter().filter_map(led).map(|l| l.0).collect::<Vec<_>>();
    assert_eq!(lights(0), [STEADY_RED], "reader-a");
    assert_eq!(lights(1), [STEADY_GREEN], "reader-b");
    let sounds = |pd| commands(&reader.out, mark, pd).iter().filter_map(buzzer).collect::<Vec<_>>();
    assert_eq!(sounds(0), [(2, 1, 2)], "reader-a");
    assert_eq!(sounds(1), [(2, 0, 1)], "reader-b");
    assert!(last > mark);
    let _ = (AMBER, BLUE);
}

#[test]
fn tamper_and_power_reports_are_events_on_mqtt_and_the_admin_socket_and_access_goes_on() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "tamper-events");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let wire = Wire::new(p, "rs485");
    let a = key_file(p, "a.key", Some(KEY));
    let mut reader = Peer::osdp_reader(&wire, &["--address", "0", "--scbk", KEY]);
    let devices = reader_toml("reader-a", &wire.near, 0, &format!("key_file = \"{}\"", a.display()));
    let d = Daemon::on_broker(p, &broker, &devices, "");
    d.log.wait_for(0, &["device health", "device=reader-a", "device.online"]);
    assign_card(&d);
    let events = format!("{P}/events");

    // The reader's case is opened: one event, with its door.
    let from = sub.lines.len();
    reader.say("tamper 1");
    let (_, e) = sub.wait_json(from, &events, "device.tamper active", |v| v["type"] == "device.tamper");
    assert_eq!((&e["device"], &e["door"], &e["active"]), (&"reader-a".into(), &"main".into(), &true.into()), "{e}");

    // Access is decided through it.
    let mark = d.log.len();
    reader.say(&format!("card {} 26", frame_hex(0x202_0002, 26)));
    d.log.wait_for(mark, &["access granted", "device=reader-a", "staff-ann"]);

    // Closed again: active false. Its power fails: device.power.
    let from = sub.lines.len();
    reader.say("tamper 0");
    let (_, e) = sub.wait_json(from, &events, "device.tamper cleared", |v| v["type"] == "device.tamper");
    assert_eq!(e["active"], false, "{e}");
    reader.say("power 1");
    let (_, e) = sub.wait_json(from, &events, "device.power", |v| v["type"] == "device.power");
    assert_eq!((&e["device"], &e["active"]), (&"reader-a".into(), &true.into()), "{e}");

    // The admin socket's events have them too, once per change, in order.
    let (code, v) = d.ctl("events.get", &["after=0", "limit=1000"]);
    assert_eq!(code, 0, "{v}");
    let seen: Vec<(String, bool)> = v["result"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_str().is_some_and(|t| t == "device.tamper" || t == "device.power"))
        .map(|e| (e["type"].as_str().unwrap().to_string(), e["active"].as_bool().unwrap()))
        .collect();
    let want = [("device.tamper", true), ("device.tamper", false), ("device.power", true)];
    assert_eq!(seen, want.map(|(t, a)| (t.to_string(), a)), "{v}");
}

/// The index of the first line at or after `from` with every one of `parts`,
/// waited for until `deadline`; `None` when it did not come by then.
fn line_by(log: &Lines, from: usize, deadline: Instant, parts: &[&str]) -> Option<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    log.wait_within(from, left, |l| parts.iter().all(|p| l.contains(p))).map(|(i, _)| i)
}

/// Points `link` (the adapter's udev symlink) at the pty behind `wire`'s
/// control-panel end: the adapter plugged in.
fn plug(wire: &Wire, link: &Path) {
    std::os::unix::fs::symlink(std::fs::read_link(&wire.near).unwrap(), link).unwrap();
}

/// The bus's USB RS-485 adapter unplugged (its udev link removed, both ends
/// of its tty hung up) and plugged back: both readers go offline at once,
/// and are back on their secure channels within 2 s of the path's return.
#[test]
fn a_bus_adapter_unplugged_and_plugged_back_has_its_readers_online_within_2s_of_its_path() {
    const BACK_WITHIN: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for sub in ["by-id", "w1", "w2"] {
        std::fs::create_dir(p.join(sub)).unwrap();
    }
    let link = p.join("by-id/usb-rs485");
    let wire = Wire::new(&p.join("w1"), "rs485");
    plug(&wire, &link);
    let args = ["--address", "0", "--address", "1", "--scbk", KEY];
    let reader = Peer::osdp_reader(&wire, &args);
    let (a, b) = (key_file(p, "a.key", Some(KEY)), key_file(p, "b.key", Some(KEY)));
    let devices = reader_toml("reader-a", &link, 0, &format!("key_file = \"{}\"", a.display()))
        + &reader_toml("reader-b", &link, 1, &format!("key_file = \"{}\"", b.display()));
    let d = start(p, &devices);
    d.log.wait_for(0, &["device health", "device=reader-a", "device.online"]);
    d.log.wait_for(0, &["device health", "device=reader-b", "device.online"]);
    assign_card(&d);

    // Unplugged: both readers offline within 2 s (libosdp alone would wait
    // out its 8 s of unanswered polls).
    let mark = d.log.len();
    let gone = Instant::now();
    std::fs::remove_file(&link).unwrap();
    drop(wire);
    reader.stop();
    for id in ["device=reader-a", "device=reader-b"] {
        let off = line_by(&d.log, mark, gone + BACK_WITHIN, &["device health", id, "device.offline"]);
        assert!(off.is_some(), "{id} not offline within {BACK_WITHIN:?}:\n{}", d.log.all()[mark..].join("\n"));
    }
    d.log.wait_for(mark, &["device failed; its path is away", "\"reader-a\""]);
    d.log.wait_for(mark, &["device failed; its path is away", "\"reader-b\""]);

    // Plugged back: the reader is up on the new wire before its path
    // appears, so the bound is the daemon's alone.
    let wire = Wire::new(&p.join("w2"), "rs485");
    let mut reader = Peer::osdp_reader(&wire, &args);
    let from = d.log.len();
    let back = Instant::now();
    plug(&wire, &link);
    for id in ["device=reader-a", "device=reader-b"] {
        let on = line_by(&d.log, from, back + BACK_WITHIN, &["device health", id, "device.online"]);
        assert!(
            on.is_some(),
            "{id} not online within {BACK_WITHIN:?} of its path's return:\n{}",
            d.log.all()[from..].join("\n")
        );
    }
    eprintln!("both readers online {:?} after the path's return", back.elapsed());
    // While it was away (a new wire and reader took about a second) nothing
    // retried: one failure each, one loss of the bus.
    for id in ["\"reader-a\"", "\"reader-b\""] {
        assert_eq!(d.log.count(mark, &["device failed", id]), 1, "{}", d.log.all()[mark..].join("\n"));
    }
    assert_eq!(d.log.count(mark, &["osdp: the bus's port is gone"]), 1, "{}", d.log.all()[mark..].join("\n"));
    // On their secure channels, as the readers see it too.
    reader.out.wait_for(0, &["\"state\"", "\"pd\": 0", "\"sc\": true"]);
    reader.out.wait_for(0, &["\"state\"", "\"pd\": 1", "\"sc\": true"]);
    let mark = d.log.len();
    reader.say(&format!("@0 card {} 26", frame_hex(0x202_0002, 26)));
    d.log.wait_for(mark, &["access granted", "device=reader-a", "staff-ann"]);
    d.log.wait_for(mark, &["lock unlocked", "device=lock1"]);
}
