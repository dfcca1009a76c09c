//! The package room's own flows, end to end: the real daemon with a console
//! keypad and card reader, provisioned and watched over a real Mosquitto.

use porter_tests::{config_text, Broker, Daemon, Subscriber, P};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn start(broker: &Broker, extra: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::on_broker(dir.path(), broker, extra, "");
    (dir, d)
}

/// The first event from line `from` on with type `kind`.
fn event(sub: &Subscriber, from: usize, kind: &str) -> (usize, Value) {
    sub.wait_json(from, &format!("{P}/events"), kind, |v| v["type"] == kind)
}

#[test]
fn a_courier_enrolls_a_card_at_the_keypad_and_opens_with_it() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-flows");
    let (_dir, mut d) = start(&broker, "");
    let ok = |r: Value| {
        assert_eq!(r["ok"], true, "{r}");
        r
    };
    ok(broker.call(&sub, "f-1", "holder.put", json!({"holder": "courier-ups", "name": "UPS", "role": "courier"})));
    let pin = ok(broker.call(&sub, "f-2", "pin.generate", json!({"holder": "courier-ups"})))["result"]["pin"]
        .as_str()
        .unwrap()
        .to_string();
    ok(broker.call(&sub, "f-3", "holder.put", json!({"holder": "courier-dhl", "role": "courier"})));
    ok(broker.call(&sub, "f-4", "card.assign", json!({"holder": "courier-dhl", "uid": "0badcafe"})));
    ok(broker.call(&sub, "f-5", "holder.put", json!({"holder": "res-12b", "role": "resident"})));
    let res_pin = ok(broker.call(&sub, "f-6", "pin.generate", json!({"holder": "res-12b"})))["result"]["pin"]
        .as_str()
        .unwrap()
        .to_string();

    // The courier types the enrolment sequence and their PIN: a window opens
    // at the door, the lock stays shut.
    let mark = sub.lines.len();
    let log_mark = d.log.len();
    d.type_line(&format!("**{pin}#"));
    let (_, e) = event(&sub, mark, "enroll.started");
    assert_eq!(
        (e["holder"].as_str(), e["door"].as_str(), e["via"].as_str(), e["device"].as_str()),
        (Some("courier-ups"), Some("main"), Some("keypad"), Some("keypad1")),
        "{e}"
    );
    // A new card, tapped: the portal hears of it at once. Not a timing test
    // (a loaded machine delays any delivery): the bound only catches an event
    // left for a periodic flush, which would take tens of seconds.
    let tapped = Instant::now();
    d.type_line("card:04:C0:FF:EE");
    let (_, e) = event(&sub, mark, "card.enrolled");
    let took = tapped.elapsed();
    assert!(took < Duration::from_secs(15), "card.enrolled took {took:?}: waiting for a flush?");
    assert_eq!((e["holder"].as_str(), e["uid"].as_str()), (Some("courier-ups"), Some("04c0ffee")), "{e}");
    assert!(
        !sub.lines.all()[mark..].iter().any(|l| l.contains("access.")),
        "the PIN or the card was decided: {:?}",
        &sub.lines.all()[mark..]
    );
    assert!(!d.log.has(log_mark, &["unlocked"]), "the lock opened during enrolment");
    let keys = ok(broker.call(&sub, "f-7", "holder.get", json!({"holder": "courier-ups"})));
    assert_eq!(keys["result"]["keys"]["cards"][0]["hint"], "ffee", "{keys}");

    // From now on the card opens the door.
    d.type_line("card:04c0ffee");
    let (at, e) = event(&sub, mark, "access.granted");
    assert_eq!((e["holder"].as_str(), e["key"].as_str()), (Some("courier-ups"), Some("card")), "{e}");

    // A card someone else holds is refused, and stays theirs.
    d.type_line(&format!("**{pin}#"));
    let (at, _) = event(&sub, at + 1, "enroll.started");
    d.type_line("card:0badcafe");
    let (at, e) = event(&sub, at, "enroll.refused");
    assert_eq!((e["reason"].as_str(), e["holder"].as_str()), (Some("duplicate"), Some("courier-ups")), "{e}");

    // A resident's PIN opens no window (residents do not enroll by default);
    // a wrong PIN is refused as unknown. Neither opens the door.
    d.type_line(&format!("**{res_pin}#"));
    let (at, e) = event(&sub, at, "enroll.denied");
    assert_eq!((e["reason"].as_str(), e["holder"].as_str()), (Some("role_not_allowed"), Some("res-12b")), "{e}");
    let wrong = if pin == "502817" { "502818" } else { "502817" };
    d.type_line(&format!("**{wrong}#"));
    let (at, e) = event(&sub, at + 1, "enroll.denied");
    assert_eq!((e["reason"].as_str(), e["holder"].as_str()), ("unknown".into(), None), "{e}");
    assert!(!sub.lines.all()[at..]
        .iter()
        .any(|l| porter_tests::shows_pin(l, &pin) || porter_tests::shows_pin(l, &res_pin)));

    // The PIN itself still opens the door as usual.
    d.type_line(&format!("{pin}#"));
    let (_, e) = event(&sub, at, "access.granted");
    assert_eq!((e["holder"].as_str(), e["key"].as_str()), (Some("courier-ups"), Some("pin")), "{e}");
    let (_, log) = d.stop();
    assert!(
        !log.all().iter().any(|l| porter_tests::shows_pin(l, &pin) || porter_tests::shows_pin(l, &res_pin)),
        "a PIN reached the log"
    );
}

/// The issue's "done when", on real protocols: a serial keypad on a pty, the
/// virtual PC/SC reader through pcscd, an LCUS relay board on a pty, and the
/// portal on a real broker.
#[test]
fn a_courier_with_only_a_pin_enrolls_a_card_on_the_pcsc_reader_and_opens_the_door_with_it() {
    use porter_tests::pty::Pty;
    use porter_tests::vpcd::{Card, PcscLab, PORT_0};
    use porter_tests::{config_head, DEADLINE};
    let lcus = |on: bool| porter_tests::lcus(1, on);

    let _lab = PcscLab::acquire();
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-done-when");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let mut keypad = Pty::open(&p.join("keypad"));
    let mut relay = Pty::open(&p.join("relay"));
    let config = format!(
        r#"{head}
[[doors]]
id = "main"
lock = "relay"
unlock_ms = 300

[[devices]]
id = "keypad"
kind = "serial_keypad"
door = "main"
port = "{d}/keypad"

[[devices]]
id = "reader"
kind = "pcsc"
door = "main"
reader = "PCD 00 00"

[[devices]]
id = "relay"
kind = "serial_relay"
port = "{d}/relay"
channel = 1

[mqtt]
url = "{url}"
"#,
        head = config_head(p),
        d = p.display(),
        url = broker.url()
    );
    std::fs::write(p.join("porter.toml"), config).unwrap();
    let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));
    d.log.wait_for(0, &["mqtt subscribed"]);
    d.log.wait_for(0, &["device health", "device=reader", "device.online"]);
    d.log.wait_for(0, &["device health", "device=keypad", "device.online"]);
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(false), "locked at start");

    // The portal created the courier account with a PIN only.
    broker.call(&sub, "d-1", "holder.put", json!({"holder": "courier-fedex", "name": "FedEx", "role": "courier"}));
    let pin = broker.call(&sub, "d-2", "pin.generate", json!({"holder": "courier-fedex"}))["result"]["pin"]
        .as_str()
        .unwrap()
        .to_string();

    // At the room: * * PIN # on the keypad, then a new card on the reader.
    let mark = sub.lines.len();
    keypad.write(format!("**{pin}#").as_bytes());
    event(&sub, mark, "enroll.started");
    let tapped = Instant::now();
    let card = Card::tap(PORT_0, &[0x04, 0x5e, 0x11, 0x22, 0x33, 0x44, 0x80]);
    let (_, e) = event(&sub, mark, "card.enrolled");
    let took = tapped.elapsed();
    // Only catches an event left for a periodic flush (tens of seconds); not a timing test.
    assert!(took < Duration::from_secs(15), "the portal saw the new card after {took:?}: waiting for a flush?");
    assert_eq!((e["holder"].as_str(), e["uid"].as_str()), (Some("courier-fedex"), Some("045e1122334480")), "{e}");
    assert_eq!(e["device"], "reader");
    assert!(!relay.readable(Duration::from_millis(300)), "the lock moved during enrolment");
    card.remove();

    // From then on the card opens the door.
    let card = Card::tap(PORT_0, &[0x04, 0x5e, 0x11, 0x22, 0x33, 0x44, 0x80]);
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(true));
    let (_, e) = event(&sub, mark, "access.granted");
    assert_eq!(
        (e["holder"].as_str(), e["key"].as_str(), e["device"].as_str()),
        (Some("courier-fedex"), Some("card"), Some("reader"))
    );
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(false));
    card.remove();
    let (status, log) = d.stop();
    assert!(status.success());
    assert!(!log.all().iter().any(|l| porter_tests::shows_pin(l, &pin)), "the PIN reached the log");
}

/// A courier under the role's default window (07:00-21:00 in the site's time
/// zone), with the daemon's wall clock set by libfaketime: denied with
/// `outside_schedule` before it, granted inside it, and the same UTC hour
/// falls on either side of 07:00 across the spring daylight-saving change.
#[test]
fn a_courier_outside_the_courier_window_is_denied_and_inside_it_granted() {
    use porter_tests::faketime_env;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("porter.toml");
    // The clock counts as synchronised (this test is about the schedule).
    std::fs::write(dir.path().join("synced"), "").unwrap();
    let extra = format!(
        "\n[roles.courier]\nschedule = [{{ days = \"daily\", from = \"07:00\", to = \"21:00\" }}]\n\
         [clock]\nsync_file = \"{}/synced\"\n",
        dir.path().display()
    );
    let text = config_text(dir.path(), 200, false, &extra);
    let text = text.replacen("site = \"test\"", "site = \"test\"\ntimezone = \"America/New_York\"", 1);
    std::fs::write(&cfg, text).unwrap();
    let socket = dir.path().join("admin.sock");
    let start_at = |at: &str| {
        let env = faketime_env(at);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Daemon::start_with_env(&cfg, &socket, &env)
    };
    let ok = |(code, r): (i32, Value)| {
        assert_eq!(code, 0, "{r}");
        r
    };

    // Saturday 2026-03-07, 11:30 UTC: 06:30 EST, half an hour early.
    let mut d = start_at("2026-03-07 11:30:00");
    ok(d.ctl("holder.put", &["holder=courier-ups", "name=UPS", "role=courier"]));
    ok(d.ctl(
        "holder.put",
        &["holder=courier-24h", "role=courier", r#"schedule:=[{"days":"daily","from":"00:00","to":"24:00"}]"#],
    ));
    ok(d.ctl("holder.put", &["holder=mgr", "role=manager"]));
    let pin = |d: &Daemon, h: &str| {
        ok(d.ctl("pin.generate", &[&format!("holder={h}")]))["result"]["pin"].as_str().unwrap().to_string()
    };
    let (ups, all_day, mgr) = (pin(&d, "courier-ups"), pin(&d, "courier-24h"), pin(&d, "mgr"));
    let mark = d.log.len();
    d.type_line(&format!("{ups}#"));
    d.log.wait_for(mark, &["access denied", "holder=\"courier-ups\"", "reason=\"outside_schedule\""]);
    // A courier with a schedule of their own, and a manager (no role default), are let in.
    d.type_line(&format!("{all_day}#"));
    d.log.wait_for(mark, &["access granted", "holder=\"courier-24h\""]);
    d.type_line(&format!("{mgr}#"));
    d.log.wait_for(mark, &["access granted", "holder=\"mgr\""]);
    let (status, log) = d.stop();
    assert!(status.success());
    assert!(log.all().iter().any(|l| l.starts_with("2026-03-07T11:30")), "the clock was not set: {:?}", log.all());

    // Sunday 2026-03-08, the same 11:30 UTC: 07:30 EDT, the clocks having gone
    // forward an hour at 02:00. The same PIN is let in.
    let mut d = start_at("2026-03-08 11:30:00");
    let mark = d.log.len();
    d.type_line(&format!("{ups}#"));
    d.log.wait_for(mark, &["access granted", "holder=\"courier-ups\""]);
    d.stop();

    // 21:00 EDT is the end of the window.
    let mut d = start_at("2026-03-09 01:00:00");
    let mark = d.log.len();
    d.type_line(&format!("{ups}#"));
    d.log.wait_for(mark, &["access denied", "holder=\"courier-ups\"", "reason=\"outside_schedule\""]);
    d.stop();
}

/// Both clock policies. While the clock is not synchronised (here: the
/// configured sync file is absent), keys bound by time are denied under the
/// default policy, except staff and managers, and allowed under `allow`; keys
/// with no time bounds are not affected. The daemon notices the clock
/// becoming synchronised while it runs.
#[test]
fn keys_bound_by_time_follow_the_clock_policy_while_the_clock_is_unsynchronised() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("porter.toml");
    let synced = dir.path().join("synced");
    let write = |policy: &str| {
        let extra = format!(
            "\n[roles.courier]\nschedule = [{{ days = \"daily\", from = \"00:00\", to = \"24:00\" }}]\n\
             [clock]\nsync_file = \"{}\"\n{policy}",
            synced.display()
        );
        std::fs::write(&cfg, config_text(dir.path(), 200, false, &extra)).unwrap();
    };
    let ok = |(code, r): (i32, Value)| {
        assert_eq!(code, 0, "{r}");
        r
    };
    write("");
    let mut d = Daemon::start(&cfg, &dir.path().join("admin.sock"));
    d.log.wait_for(0, &["system clock not synchronised", "policy=\"deny\""]);
    ok(d.ctl("holder.put", &["holder=courier-ups", "role=courier"]));
    ok(d.ctl("holder.put", &["holder=courier-open", "role=courier", r#"schedule:=[]"#]));
    ok(d.ctl("holder.put", &["holder=res-12b", "role=resident", "valid_until=2099-01-01T00:00:00Z"]));
    ok(d.ctl(
        "holder.put",
        &["holder=staff-ann", "role=staff", r#"schedule:=[{"days":"daily","from":"00:00","to":"24:00"}]"#],
    ));
    ok(d.ctl("holder.put", &["holder=res-4c", "role=resident"]));
    let pin = |d: &Daemon, h: &str| {
        ok(d.ctl("pin.generate", &[&format!("holder={h}")]))["result"]["pin"].as_str().unwrap().to_string()
    };
    let pins: Vec<String> =
        ["courier-ups", "courier-open", "res-12b", "staff-ann", "res-4c"].iter().map(|h| pin(&d, h)).collect();
    let outcome = |d: &mut Daemon, holder: &str, pin: &str| {
        let mark = d.log.len();
        d.type_line(&format!("{pin}#"));
        let (_, line) = d.log.wait_for(mark, &["access ", &format!("holder=\"{holder}\"")]);
        if line.contains("access granted") {
            "granted".to_string()
        } else {
            line.split("reason=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
        }
    };
    // courier-open has no schedule of their own: the role's (time-bound) applies.
    assert_eq!(outcome(&mut d, "courier-ups", &pins[0]), "clock_unsynchronized");
    assert_eq!(outcome(&mut d, "courier-open", &pins[1]), "clock_unsynchronized");
    assert_eq!(outcome(&mut d, "res-12b", &pins[2]), "clock_unsynchronized");
    assert_eq!(outcome(&mut d, "staff-ann", &pins[3]), "granted");
    // A resident with no time bounds at all is not affected.
    assert_eq!(outcome(&mut d, "res-4c", &pins[4]), "granted");

    // The clock becomes synchronised: noticed, and the same keys open.
    let mark = d.log.len();
    std::fs::write(&synced, "").unwrap();
    d.log.wait_for(mark, &["system clock synchronised"]);
    assert_eq!(outcome(&mut d, "courier-ups", &pins[0]), "granted");
    assert_eq!(outcome(&mut d, "res-12b", &pins[2]), "granted");
    d.stop();

    // Policy allow, clock not synchronised: decided on the clock as it is.
    std::fs::remove_file(&synced).unwrap();
    write("unsynchronized = \"allow\"\n");
    let mut d = Daemon::start(&cfg, &dir.path().join("admin.sock"));
    d.log.wait_for(0, &["system clock not synchronised", "policy=\"allow\""]);
    assert_eq!(outcome(&mut d, "courier-ups", &pins[0]), "granted");
    assert_eq!(outcome(&mut d, "res-12b", &pins[2]), "granted");
    d.stop();
}

/// A resident's one-time QR code, made over MQTT, shown to two scanners at
/// the same moment: it opens once; the other scan, and any later one, is
/// `expired`, after a restart too.
#[test]
fn a_one_time_code_presented_twice_at_once_opens_once() {
    use porter_tests::config_head;
    use porter_tests::pty::Pty;
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-one-time");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let mut a = Pty::open(&p.join("scanner-a"));
    let mut b = Pty::open(&p.join("scanner-b"));
    let scanner = |id: &str| {
        format!(
            "\n[[devices]]\nid = \"{id}\"\nkind = \"serial_qr\"\ndoor = \"main\"\nport = \"{}/{id}\"\nterminator = \"cr\"\n",
            p.display()
        )
    };
    let config = format!(
        "{head}\n[[doors]]\nid = \"main\"\nlock = \"lock1\"\nunlock_ms = 200\n\n[[devices]]\nid = \"lock1\"\nkind = \"sim_lock\"\n{a}{b}\n[mqtt]\nurl = \"{url}\"\n\n[clock]\nsync_file = \"{d}/synced\"\n",
        head = config_head(p),
        a = scanner("scanner-a"),
        b = scanner("scanner-b"),
        url = broker.url(),
        d = p.display()
    );
    // The code expires (a day by default): it needs a synchronised clock.
    std::fs::write(p.join("synced"), "").unwrap();
    std::fs::write(p.join("porter.toml"), config).unwrap();
    let start = || {
        let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));
        d.log.wait_for(0, &["mqtt subscribed"]);
        d.log.wait_for(0, &["device health", "device=scanner-a", "device.online"]);
        d.log.wait_for(0, &["device health", "device=scanner-b", "device.online"]);
        d
    };
    let d = start();
    broker.call(&sub, "o-1", "holder.put", json!({"holder": "res-12b", "role": "resident"}));
    let r = broker.call(&sub, "o-2", "qr.generate", json!({"holder": "res-12b", "uses": 1}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["uses"], 1, "{r}");
    assert!(r["result"]["expires"].is_string(), "a day by default: {r}");
    let token = r["result"]["token"].as_str().unwrap().to_string();
    let r = broker.call(&sub, "o-3", "qr.generate", json!({"holder": "res-12b", "uses": 0}));
    assert_eq!(r["error"]["code"], "invalid", "{r}");
    let r = broker.call(&sub, "o-4", "holder.get", json!({"holder": "res-12b"}));
    assert_eq!(r["result"]["keys"]["qr"]["uses_left"], 1, "{r}");
    assert_eq!(r["result"]["keys"]["qr"]["expired"], false, "{r}");

    // Both scanners read the code at once.
    let mark = sub.lines.len();
    let frame = format!("{token}\r");
    let (fa, fb) = (frame.clone(), frame.clone());
    std::thread::scope(|s| {
        s.spawn(|| a.write(fa.as_bytes()));
        s.spawn(|| b.write(fb.as_bytes()));
    });
    let (_, granted) = event(&sub, mark, "access.granted");
    let (_, denied) = event(&sub, mark, "access.denied");
    assert_eq!((granted["holder"].as_str(), granted["uses_left"].as_u64()), (Some("res-12b"), Some(0)), "{granted}");
    assert_eq!((denied["holder"].as_str(), denied["reason"].as_str()), (Some("res-12b"), Some("expired")), "{denied}");
    assert_ne!(granted["device"], denied["device"], "one per scanner");
    let r = broker.call(&sub, "o-5", "holder.get", json!({"holder": "res-12b"}));
    assert_eq!(r["result"]["keys"]["qr"]["uses_left"], 0, "{r}");
    assert_eq!(
        (r["result"]["keys"]["qr"]["active"].as_bool(), r["result"]["keys"]["qr"]["expired"].as_bool()),
        (Some(true), Some(true)),
        "{r}"
    );
    let (status, log) = d.stop();
    assert!(status.success());
    assert_eq!(log.all().iter().filter(|l| l.contains("access granted")).count(), 1);
    assert!(!log.all().iter().any(|l| l.contains(&token)), "the token reached the log");

    // After a restart the code is still used up.
    let d = start();
    let mark = sub.lines.len();
    a.write(frame.as_bytes());
    let (_, e) = event(&sub, mark, "access.denied");
    assert_eq!(e["reason"], "expired", "{e}");
    d.stop();
}

/// Card plus PIN at a door, through the real daemon: the card, then its
/// holder's PIN, opens; a PIN alone does not; a card with no PIN after it
/// times out as `pin_required`.
#[test]
fn card_plus_pin_opens_only_with_both() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-card-pin");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("porter.toml");
    let extra = format!("\n[keypad]\npin_after_card_s = 2\n\n[mqtt]\nurl = \"{}\"\n", broker.url());
    let text = config_text(dir.path(), 200, false, &extra).replacen(
        "unlock_ms = 200",
        "unlock_ms = 200\ncard_plus_pin = true",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let mut d = Daemon::start(&cfg, &dir.path().join("admin.sock"));
    d.log.wait_for(0, &["mqtt subscribed"]);
    broker.call(&sub, "p-1", "holder.put", json!({"holder": "staff-ann", "role": "staff"}));
    let pin = broker.call(&sub, "p-2", "pin.generate", json!({"holder": "staff-ann"}))["result"]["pin"]
        .as_str()
        .unwrap()
        .to_string();
    broker.call(&sub, "p-3", "card.assign", json!({"holder": "staff-ann", "uid": "04a1b2c3"}));

    let mark = sub.lines.len();
    d.type_line(&format!("{pin}#"));
    let (at, e) = event(&sub, mark, "access.denied");
    assert_eq!(e["reason"], "card_required", "{e}");
    d.type_line("card:04a1b2c3");
    d.log.wait_for(0, &["card accepted; waiting for the holder's PIN", "staff-ann"]);
    d.type_line(&format!("{pin}#"));
    let (at, e) = event(&sub, at, "access.granted");
    assert_eq!((e["holder"].as_str(), e["key"].as_str()), (Some("staff-ann"), Some("card+pin")), "{e}");
    d.type_line("card:04a1b2c3");
    let (_, e) = event(&sub, at, "access.denied");
    assert_eq!((e["reason"].as_str(), e["key"].as_str()), (Some("pin_required"), Some("card")), "{e}");
    let (_, log) = d.stop();
    assert!(!log.all().iter().any(|l| porter_tests::shows_pin(l, &pin)));
}

/// Door supervision through the real daemon, the contact and the exit button
/// being `exec` drivers fed through FIFOs: a forced door, an exit, a door
/// held open, and a relock as soon as the door closes, each an event the
/// portal sees.
#[test]
fn a_forced_door_and_a_held_open_door_raise_their_events() {
    use porter_tests::config_head;
    use std::io::Write;
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-doors");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for f in ["contact.fifo", "button.fifo"] {
        nix::unistd::mkfifo(&p.join(f), nix::sys::stat::Mode::S_IRWXU).unwrap();
    }
    let config = format!(
        r#"{head}
[[doors]]
id = "main"
lock = "lock1"
unlock_ms = 30000
contact = "contact"
exit_button = "button"
held_open_s = 1
relock_on_close = true

[[devices]]
id = "lock1"
kind = "sim_lock"

[[devices]]
id = "contact"
kind = "exec"
command = "/bin/sh"
args = ["-c", "exec cat {d}/contact.fifo"]

[[devices]]
id = "button"
kind = "exec"
command = "/bin/sh"
args = ["-c", "exec cat {d}/button.fifo"]

[mqtt]
url = "{url}"
"#,
        head = config_head(p),
        d = p.display(),
        url = broker.url()
    );
    std::fs::write(p.join("porter.toml"), config).unwrap();
    let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));
    d.log.wait_for(0, &["mqtt subscribed"]);
    let mut contact = std::fs::OpenOptions::new().write(true).open(p.join("contact.fifo")).unwrap();
    let mut button = std::fs::OpenOptions::new().write(true).open(p.join("button.fifo")).unwrap();
    let level = |f: &mut std::fs::File, on: bool| writeln!(f, "{{\"level\":{on}}}").unwrap();

    // Opened while locked, with no grant and no exit: forced.
    let mark = sub.lines.len();
    level(&mut contact, false);
    level(&mut contact, true);
    let (at, _) = event(&sub, mark, "door.forced");
    level(&mut contact, false);
    let (at, _) = event(&sub, at, "door.closed");

    // The exit button unlocks; the door opens (no alarm), stands open past
    // held_open_s, and relocks the moment it closes, long before unlock_ms.
    let log_mark = d.log.len();
    level(&mut button, true);
    level(&mut button, false);
    let (at, _) = event(&sub, at, "door.exit");
    d.log.wait_for(log_mark, &["lock unlocked"]);
    level(&mut contact, true);
    let (at, _) = event(&sub, at, "door.opened");
    let (at, e) = event(&sub, at, "door.held_open");
    assert_eq!(e["held_open_s"], 1, "{e}");
    let relock_mark = d.log.len();
    level(&mut contact, false);
    event(&sub, at, "door.closed");
    d.log.wait_for(relock_mark, &["lock locked"]);
    let forced: Vec<String> = sub.lines.all()[mark..].iter().filter(|l| l.contains("door.forced")).cloned().collect();
    assert_eq!(forced.len(), 1, "only the first opening was forced: {forced:?}");
    drop((contact, button));
    d.stop();
}
