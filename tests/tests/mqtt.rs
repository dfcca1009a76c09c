//! The MQTT contract against a real Mosquitto on a free port, with a portal
//! stand-in made of mosquitto_pub and mosquitto_sub.

use porter_tests::{Broker, Daemon, P};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn start(broker: &Broker, keep_alive_s: u64) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = start_in(&dir, broker, keep_alive_s);
    (dir, d)
}

/// Starts porterd with its config and data in `dir` (again, after a kill).
fn start_in(dir: &tempfile::TempDir, broker: &Broker, keep_alive_s: u64) -> Daemon {
    Daemon::on_broker(dir.path(), broker, "", &format!("keep_alive_s = {keep_alive_s}\n"))
}

#[test]
fn a_portal_stand_in_provisions_and_watches_over_mqtt() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-1");
    let (_dir, mut d) = start(&broker, 5);
    let (online_at, status) = sub.wait_json(0, &format!("{P}/status"), "status online", |v| v["state"] == "online");
    for k in ["version", "generation", "holders", "pins", "qr", "cards", "outbox", "uptime_s"] {
        assert!(!status[k].is_null(), "status lacks {k}: {status}");
    }
    assert_eq!(status["devices"]["keypad1"], "online", "{status}");
    assert!(status["clock"]["synchronized"].is_boolean(), "{status}");
    // A connect attempt cut short would make the broker publish the Last Will.
    assert!(
        !sub.lines.all()[..online_at].iter().any(|l| l.contains("offline")),
        "a spurious offline before online: {:?}",
        sub.lines.all()
    );

    broker.command("c-1", "holder.put", json!({"holder": "courier-ups", "name": "UPS", "role": "courier"}));
    assert_eq!(sub.reply("c-1")["ok"], true);
    broker.command("c-2", "pin.generate", json!({"holder": "courier-ups"}));
    let r = sub.reply("c-2");
    let pin = r["result"]["pin"].as_str().unwrap().to_string();
    // The same id again: not applied twice, the same reply.
    let mark = sub.lines.len();
    broker.command("c-2", "pin.generate", json!({"holder": "courier-ups"}));
    let (_, again) = sub.wait_json(mark, &format!("{P}/reply"), "repeated reply", |v| v["id"] == "c-2");
    assert_eq!(again, r);
    assert_eq!(r["controller"], "room-1");
    d.log.wait_for(0, &["repeated command id"]);
    // Another command under that id gets an error, never the stored PIN.
    let mark = sub.lines.len();
    broker.command("c-2", "state.get", json!({}));
    let (_, reused) = sub.wait_json(mark, &format!("{P}/reply"), "reused id", |v| v["id"] == "c-2");
    assert_eq!(reused["error"]["code"], "invalid", "{reused}");
    assert!(!porter_tests::shows_pin(&reused.to_string(), &pin), "{reused}");

    broker.command("c-3", "holder.put", json!({"holder": "courier-dhl", "role": "courier"}));
    sub.reply("c-3");
    broker.command("c-4", "pin.set", json!({"holder": "courier-dhl", "pin": pin}));
    assert_eq!(sub.reply("c-4")["error"]["code"], "duplicate");
    broker.command("c-5", "qr.generate", json!({"holder": "courier-dhl"}));
    assert!(sub.reply("c-5")["result"]["token"].is_string());
    broker.command("c-6", "card.assign", json!({"holder": "courier-dhl", "uid": "04a1b2c3"}));
    assert_eq!(sub.reply("c-6")["ok"], true);
    broker.command("c-7", "pin.deactivate", json!({"holder": "courier-ups"}));
    assert_eq!(sub.reply("c-7")["ok"], true);
    broker.command("c-8", "pin.activate", json!({"holder": "courier-ups"}));
    assert_eq!(sub.reply("c-8")["ok"], true);
    broker.command("c-9", "holder.get", json!({"holder": "nobody"}));
    assert_eq!(sub.reply("c-9")["error"]["code"], "not_found");
    broker.command("c-10", "no.such.op", json!({}));
    assert_eq!(sub.reply("c-10")["error"]["code"], "unsupported");
    broker.command("c-11", "pin.generate", json!({"holder": 5}));
    assert_eq!(sub.reply("c-11")["error"]["code"], "invalid");

    // Malformed and oversized commands get typed replies and do not break the session.
    let mark = sub.lines.len();
    broker.publish(&format!("{P}/cmd"), "{not json");
    sub.wait_json(mark, &format!("{P}/reply"), "invalid reply", |v| {
        v["error"]["code"] == "invalid" && v["id"].is_null()
    });
    // Over the 1 MiB command limit, under the 2 MiB packet limit: a typed reply.
    let big = json!({"id": "c-big", "op": "state.get", "args": {"pad": "x".repeat(1_200_000)}}).to_string();
    broker.publish(&format!("{P}/cmd"), &big);
    let r = sub.reply("c-big");
    assert_eq!(r["error"]["code"], "invalid");
    assert!(r["error"]["message"].as_str().unwrap().contains("the limit is 1048576"), "{r}");
    broker.command("c-12", "state.get", json!({}));
    let st = sub.reply("c-12");
    assert_eq!((st["result"]["holders"].as_u64(), st["result"]["cards"].as_u64()), (Some(2), Some(1)));
    assert!(!d.log.has(0, &["mqtt disconnected"]), "the session dropped");

    // A decision at the door reaches the portal as an event.
    let mark = sub.lines.len();
    d.type_line(&format!("{pin}#"));
    let (_, e) = sub.wait_json(mark, &format!("{P}/events"), "access.granted", |v| v["type"] == "access.granted");
    assert_eq!(e["holder"], "courier-ups");
    assert!(e["seq"].as_u64().unwrap() >= 1);
    assert!(!porter_tests::shows_pin(&e.to_string(), &pin));
    d.type_line("card:04a1b2c3");
    sub.wait_json(mark, &format!("{P}/events"), "card grant", |v| v["type"] == "access.granted" && v["key"] == "card");

    // The fleet topic reaches this controller too.
    broker.publish("porter/test/all/cmd", &json!({"id": "f-1", "op": "state.get"}).to_string());
    assert_eq!(sub.reply("f-1")["ok"], true);

    // Clean shutdown: the status says offline.
    let mark = sub.lines.len();
    assert!(d.stop().0.success());
    sub.wait_json(mark, &format!("{P}/status"), "status offline", |v| v["state"] == "offline");
}

#[test]
fn replies_go_to_the_response_topic_with_the_correlation_data() {
    let broker = Broker::start();
    let (_dir, _d) = start(&broker, 5);
    let out = std::process::Command::new("mosquitto_rr")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-V", "mqttv5", "-q", "1"])
        .args(["-t", &format!("{P}/cmd"), "-e", "portal/replies/42", "-W", "10"])
        .args(["-m", &json!({"id": "rr-1", "op": "state.get"}).to_string()])
        .output()
        .expect("mosquitto_rr");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], "rr-1");
    assert_eq!(v["ok"], true);
}

#[test]
fn the_last_will_marks_a_killed_daemon_offline_within_one_and_a_half_keep_alives() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/status"), "portal-lw");
    let (_dir, d) = start(&broker, 5);
    sub.wait_json(0, &format!("{P}/status"), "status online", |v| v["state"] == "online");
    let mark = sub.lines.len();
    let killed = Instant::now();
    d.kill();
    sub.wait_json(mark, &format!("{P}/status"), "last will", |v| v == &json!({"state": "offline"}));
    let took = killed.elapsed();
    assert!(took <= Duration::from_millis(7_500 + 500), "the Last Will took {took:?}");
}

#[test]
fn events_reach_the_portal_across_broker_restarts() {
    let mut broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/events"), "portal-ev");
    let (_dir, d) = start(&broker, 5);
    // Events at about 10 per second (door.unlock through the admin socket
    // records door.unlocked), while the broker is stopped and started.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (sock, stop) = (d.socket.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (code, _) = porter_tests::ctl(&sock, "door.unlock", &["door=main", "ms=100"]);
                assert_eq!(code, 0);
                n += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            n
        })
    };
    // Ten restarts, every other one a SIGKILL of the broker.
    for round in 0..10 {
        std::thread::sleep(Duration::from_millis(600));
        broker.stop(round % 2 == 0);
        std::thread::sleep(Duration::from_millis(200 + 50 * round));
        broker.restart();
        d.log.wait(d.log.len().saturating_sub(50), "reconnect", |l| l.contains("mqtt connected"));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let produced = producer.join().unwrap();
    assert!(produced >= 20, "only {produced} events produced");
    // Every seq from 1 to the last produced arrives, duplicates allowed.
    let last = produced + 1; // device.online is seq 1
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: std::collections::BTreeSet<u64> = sub
            .lines
            .all()
            .iter()
            .filter_map(|l| l.split_once(' ').and_then(|(_, p)| serde_json::from_str::<Value>(p).ok()))
            .filter_map(|v| v["seq"].as_u64())
            .collect();
        let missing: Vec<u64> = (1..=last).filter(|s| !seen.contains(s)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "events never delivered: {missing:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_sync_cut_short_by_a_crash_leaves_the_old_set_in_force() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/reply"), "portal-sync");
    let dir = tempfile::tempdir().unwrap();
    let d = start_in(&dir, &broker, 5);
    broker.command("s-1", "holder.put", json!({"holder": "old", "role": "courier"}));
    sub.reply("s-1");
    broker.command("s-2", "pin.set", json!({"holder": "old", "pin": "483920"}));
    assert_eq!(sub.reply("s-2")["ok"], true);
    broker.command("s-3", "sync.begin", json!({"generation": 7}));
    assert_eq!(sub.reply("s-3")["ok"], true);
    let holders = json!([{"holder": "new", "role": "courier", "pin": "502817", "cards": ["04a1b2c3"]}]);
    broker.command("s-4", "sync.put", json!({"holders": holders}));
    assert_eq!(sub.reply("s-4")["result"]["staged"], 1);
    d.kill();

    let mut d = start_in(&dir, &broker, 5);
    let mark = d.log.len();
    d.type_line("483920#");
    d.log.wait_for(mark, &["access granted", "holder=\"old\""]);
    d.type_line("502817#");
    d.log.wait_for(mark, &["access denied", "reason=\"unknown\""]);

    // The portal starts the sync again and commits it.
    broker.command("s-5", "sync.begin", json!({"generation": 7}));
    assert_eq!(sub.reply("s-5")["ok"], true);
    broker.command("s-6", "sync.put", json!({"holders": holders}));
    assert_eq!(sub.reply("s-6")["ok"], true);
    broker.command("s-7", "sync.commit", json!({}));
    let r = sub.reply("s-7");
    assert_eq!((r["result"]["generation"].as_u64(), r["result"]["holders"].as_u64()), (Some(7), Some(1)), "{r}");
    let mark = d.log.len();
    d.type_line("502817#");
    d.log.wait_for(mark, &["access granted", "holder=\"new\""]);
    d.type_line("card:04a1b2c3");
    d.log.wait_for(mark, &["access granted", "key=\"card\""]);
    d.type_line("483920#");
    d.log.wait_for(mark, &["access denied", "reason=\"unknown\""]);
    broker.command("s-8", "sync.begin", json!({"generation": 7}));
    assert_eq!(sub.reply("s-8")["error"]["code"], "stale");
}

#[test]
fn commands_acknowledged_ok_survive_sigkill_at_random_points() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/reply"), "portal-kill");
    let dir = tempfile::tempdir().unwrap();
    let mut d = Some(start_in(&dir, &broker, 5));
    // 500 commands through one mosquitto_pub, one message per line.
    let lines: String =
        (0..500).map(|i| json!({"id": format!("k-{i}"), "op": "holder.put", "args": {"holder": format!("h{i:03}"), "role": "courier"}}).to_string() + "\n").collect();
    let port = broker.port.to_string();
    // mosquitto_pub -l may drop its last messages when its input closes, so
    // the input stays open until every command has been answered.
    let (finish, finished) = std::sync::mpsc::channel::<()>();
    let publisher = std::thread::spawn(move || {
        use std::io::Write;
        let mut c = std::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5", "-q", "1", "-t", &format!("{P}/cmd"), "-l"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        for chunk in lines.lines().collect::<Vec<_>>().chunks(50) {
            for l in chunk {
                writeln!(stdin, "{l}").unwrap();
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        let _ = finished.recv();
        drop(stdin);
        assert!(c.wait().unwrap().success());
    });
    // Kill the daemon whenever some more replies have arrived, then restart it.
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("seed {seed}");
    for _ in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target = sub.lines.len() + 20 + (seed % 60) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while sub.lines.len() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_micros(seed % 5000));
        d.take().unwrap().kill();
        d = Some(start_in(&dir, &broker, 5));
    }
    // Wait until every command has been answered at least once.
    let ok_ids = || -> std::collections::BTreeSet<String> {
        sub.lines
            .all()
            .iter()
            .filter_map(|l| l.split_once(' ').and_then(|(_, p)| serde_json::from_str::<Value>(p).ok()))
            .filter(|v| v["ok"] == true)
            .filter_map(|v| v["id"].as_str().map(String::from))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while ok_ids().len() < 500 {
        if Instant::now() > deadline {
            let ok = ok_ids();
            let missing: Vec<usize> = (0..500).filter(|i| !ok.contains(&format!("k-{i}"))).collect();
            panic!(
                "only {} of 500 commands answered; missing {missing:?}; daemon log:\n{}",
                ok.len(),
                d.as_ref().unwrap().log.all().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    finish.send(()).unwrap();
    publisher.join().unwrap();
    // Every command answered ok is in the store after all those kills.
    let d = d.unwrap();
    let (code, v) = d.ctl("holder.list", &["limit=1000"]);
    assert_eq!(code, 0, "{v}");
    let have: std::collections::BTreeSet<String> =
        v["result"]["holders"].as_array().unwrap().iter().map(|h| h["holder"].as_str().unwrap().to_string()).collect();
    for id in ok_ids() {
        let n: usize = id[2..].parse().unwrap();
        assert!(have.contains(&format!("h{n:03}")), "{id} was acknowledged ok but h{n:03} is missing");
    }
}

#[test]
fn porterctl_speaks_mqtt_as_the_portal_would() {
    let broker = Broker::start();
    let (dir, _d) = start(&broker, 5);
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(porter_tests::bin("porterctl"))
            .args(["--mqtt", &broker.url(), "--site", "test", "--controller", "room-1", "--timeout", "10"])
            .args(args)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, v, err) = ctl(&["holder.put", "holder=courier-usps", "name=USPS", "role=courier"]);
    assert_eq!(code, Some(0), "{v} {err}");
    let (code, v, _) = ctl(&["pin.generate", "holder=courier-usps"]);
    assert_eq!(code, Some(0));
    let pin = v["result"]["pin"].as_str().unwrap().to_string();
    let (code, v, _) = ctl(&["pin.set", "holder=courier-usps", &format!("pin={pin}")]);
    assert_eq!((code, v["ok"].as_bool()), (Some(0), Some(true)));
    let (code, v, _) = ctl(&["holder.get", "holder=nobody"]);
    assert_eq!((code, v["error"]["code"].as_str()), (Some(1), Some("not_found")));
    // --config supplies the site, controller and connection settings.
    let out = std::process::Command::new(porter_tests::bin("porterctl"))
        .arg("--config")
        .arg(dir.path().join("porter.toml"))
        .args(["--mqtt", &broker.url(), "state.get"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A controller that does not answer: a clear timeout, exit 2.
    let out = std::process::Command::new(porter_tests::bin("porterctl"))
        .args(["--mqtt", &broker.url(), "--site", "test", "--controller", "nobody", "--timeout", "1", "state.get"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no reply within 1 s"));
}

#[test]
fn enroll_start_assigns_the_next_card_at_the_door_and_reports_it() {
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/#"), "portal-enroll");
    let (_dir, mut d) = start(&broker, 5);
    broker.command("e-1", "holder.put", json!({"holder": "courier-fedex", "name": "FedEx", "role": "courier"}));
    sub.reply("e-1");
    broker.command("e-2", "holder.put", json!({"holder": "courier-dhl", "role": "courier"}));
    sub.reply("e-2");
    broker.command("e-3", "card.assign", json!({"holder": "courier-dhl", "uid": "0badcafe"}));
    sub.reply("e-3");

    // Errors a portal developer can act on.
    broker.command("e-4", "enroll.start", json!({"holder": "nobody", "door": "main"}));
    assert_eq!(sub.reply("e-4")["error"]["code"], "not_found");
    broker.command("e-5", "enroll.start", json!({"holder": "courier-fedex", "door": "back"}));
    let r = sub.reply("e-5");
    assert_eq!(r["error"]["code"], "not_found");
    assert!(r["error"]["message"].as_str().unwrap().contains("doors are: main"), "{r}");
    broker.command("e-6", "enroll.start", json!({"holder": "courier-fedex", "door": "main", "timeout_s": 1}));
    assert_eq!(sub.reply("e-6")["error"]["code"], "invalid");

    // The window: the next card at the door is assigned and opens nothing.
    let mark = sub.lines.len();
    broker.command("e-7", "enroll.start", json!({"holder": "courier-fedex", "door": "main", "timeout_s": 60}));
    let r = sub.reply("e-7");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!((r["result"]["door"].as_str(), r["result"]["timeout_s"].as_u64()), (Some("main"), Some(60)));
    sub.wait_json(mark, &format!("{P}/events"), "enroll.started", |v| v["type"] == "enroll.started");
    let sent = Instant::now();
    d.type_line("card:04:C0:FF:EE");
    let (_, e) = sub.wait_json(mark, &format!("{P}/events"), "card.enrolled", |v| v["type"] == "card.enrolled");
    // Only catches an event left for a periodic flush (tens of seconds); not a timing test.
    assert!(sent.elapsed() < Duration::from_secs(15), "card.enrolled took {:?}: waiting for a flush?", sent.elapsed());
    assert_eq!((e["holder"].as_str(), e["uid"].as_str()), (Some("courier-fedex"), Some("04c0ffee")), "{e}");
    assert_eq!((e["door"].as_str(), e["device"].as_str()), (Some("main"), Some("keypad1")));
    assert!(
        !sub.lines.all()[mark..].iter().any(|l| l.contains("access.")),
        "the enrolled card was also decided: {:?}",
        &sub.lines.all()[mark..]
    );
    broker.command("e-8", "holder.get", json!({"holder": "courier-fedex"}));
    assert_eq!(sub.reply("e-8")["result"]["keys"]["cards"].as_array().map(Vec::len), Some(1));

    // The window is closed: the same card now opens the door.
    d.type_line("card:04c0ffee");
    let (_, e) = sub.wait_json(mark, &format!("{P}/events"), "card grant", |v| v["type"] == "access.granted");
    assert_eq!(e["holder"], "courier-fedex");

    // A card already assigned to someone else is refused.
    broker.command("e-9", "enroll.start", json!({"holder": "courier-fedex", "door": "main"}));
    sub.reply("e-9");
    d.type_line("card:0badcafe");
    let (_, e) = sub.wait_json(mark, &format!("{P}/events"), "enroll.refused", |v| v["type"] == "enroll.refused");
    assert_eq!((e["reason"].as_str(), e["holder"].as_str()), (Some("duplicate"), Some("courier-fedex")), "{e}");
    broker.command("e-10", "holder.get", json!({"holder": "courier-fedex"}));
    assert_eq!(sub.reply("e-10")["result"]["keys"]["cards"].as_array().map(Vec::len), Some(1));

    // A window nobody uses closes by itself.
    broker.command("e-11", "enroll.start", json!({"holder": "courier-fedex", "door": "main", "timeout_s": 5}));
    sub.reply("e-11");
    let (_, e) = sub.wait_json(mark, &format!("{P}/events"), "enroll.expired", |v| v["type"] == "enroll.expired");
    assert_eq!(e["holder"], "courier-fedex");
    d.type_line("card:0a0b0c0d");
    let (_, e) = sub.wait_json(mark, &format!("{P}/events"), "unknown card", |v| v["reason"] == "unknown");
    assert_eq!(e["key"], "card");
}
