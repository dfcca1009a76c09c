//! End-to-end MQTT figures: a real Mosquitto on a free port, the real
//! porterd (release build), and a portal stand-in made of one rumqttc v5
//! client (TCP_NODELAY on) that publishes commands QoS 1 with a Response
//! Topic and Correlation Data and waits for each reply.
//!
//! Run with `cargo bench -p porter-tests --bench mqtt` (a few minutes on two
//! cores). No criterion: every call is timed on its own, from the publish
//! call to the reply's arrival in the client's event loop, and the figures
//! are printed one line each, then the goals and whether they are met.
//!
//! Everything runs twice, each time with a fresh daemon and data folder:
//! A. against `porter_tests::Broker`, the end-to-end tests' broker
//!    (`set_tcp_nodelay true`, and persistence saved after every change, as
//!    docs/mqtt.md advises a site broker), fewer round trips;
//! B. against a plain Mosquitto with `set_tcp_nodelay true` and no
//!    persistence.
//!
//! (Until 2026-12-02 A was labelled "stock Mosquitto, Nagle on": it never
//! was; the test broker has set `set_tcp_nodelay` since the bench was
//! written. docs/performance.md's "stock" columns are this A.)
//!
//! 1. Command round trips on loopback, after a warm-up: `holder.put` of
//!    distinct holders alternating with `pin.generate` for them (each a
//!    flushed store batch), `state.get` for comparison (also with the command
//!    at QoS 0), and a plain echo through the broker (no daemon), the
//!    transport's floor.
//! 2. A full sync of 100,000 holders (each a distinct, non-trivial 6-digit
//!    PIN; every fourth a card): `sync.begin`, 100 x `sync.put` of 1000,
//!    `sync.commit`, one after another as a portal would; then the daemon's
//!    VmRSS and VmHWM from /proc/<pid>/status.
//! 3. The round trips again with the 100,000 holders live.
//! 4. For reference, a second full sync of the same holders with every PIN
//!    new: the live set's PINs become tombstones in the commit.
//!
//! `PORTER_BENCH_QUICK=1` (or `-- --quick`) runs fewer round trips and syncs
//! of 10,000 holders, for a smoke test.

use porter_tests::bench::{goal, pins, report};
use porter_tests::{config_text, Broker, Daemon};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const P: &str = "porter/test/room-1";
const REPLIES: &str = "bench/portal/replies";
const ECHO: &str = "bench/portal/echo";
const MIB: f64 = 1024.0 * 1024.0;

/// Goals.
const RT_P50_GOAL_MS: f64 = 5.0;
const SYNC_GOAL_S: f64 = 10.0;
const RSS_GOAL_MIB: f64 = 64.0;

/// Longest wait for one reply (a commit of 100,000 holders included).
const REPLY_DEADLINE: Duration = Duration::from_secs(120);

enum Msg {
    SubAck,
    Publish { topic: String, corr: Vec<u8>, payload: Vec<u8>, at: Instant },
    Error(String),
}

/// The portal stand-in.
struct Portal {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Msg>,
    next: u64,
    run: &'static str,
    /// QoS of the commands: 1, as the contract says; 0 only for a comparison.
    qos: QoS,
    /// Every PIN pin.generate returned (so a sync never reuses one, which
    /// may have become a tombstone).
    generated: std::collections::HashSet<String>,
}

impl Portal {
    async fn connect(port: u16) -> Portal {
        let mut o = MqttOptions::new("porter-bench-portal", "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(60));
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        o.set_network_options(net);
        // sync.put commands are ~100 KB; replies are small but allow room.
        o.set_max_packet_size(Some(4 << 20));
        let (client, mut el) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let m = match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => Msg::Publish {
                        at: Instant::now(),
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        corr: p.properties.and_then(|x| x.correlation_data).map(|b| b.to_vec()).unwrap_or_default(),
                        payload: p.payload.to_vec(),
                    },
                    Ok(Event::Incoming(Packet::SubAck(_))) => Msg::SubAck,
                    Ok(_) => continue,
                    Err(e) => Msg::Error(e.to_string()),
                };
                let fatal = matches!(m, Msg::Error(_));
                if tx.send(m).is_err() || fatal {
                    break;
                }
            }
        });
        let mut p = Portal { client, rx, next: 0, run: "b", qos: QoS::AtLeastOnce, generated: Default::default() };
        for t in [REPLIES, ECHO, &format!("{P}/status")] {
            p.client.subscribe(t, QoS::AtLeastOnce).await.unwrap();
            p.wait(|m| matches!(m, Msg::SubAck)).await;
        }
        p
    }

    /// The next message for which `pred` holds (others are dropped).
    async fn wait(&mut self, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = tokio::time::Instant::now() + REPLY_DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => panic!("bench client: no reply within {REPLY_DEADLINE:?}"),
                Ok(None) => panic!("bench client: event loop ended"),
                Ok(Some(Msg::Error(e))) => panic!("bench client: {e}"),
                Ok(Some(m)) if pred(&m) => return m,
                Ok(Some(_)) => {}
            }
        }
    }

    /// Waits for the daemon's retained online status: it subscribed to its
    /// command topics before publishing it, so commands reach it from now on.
    async fn wait_online(&mut self) {
        let status = format!("{P}/status");
        self.wait(|m| {
            matches!(m, Msg::Publish { topic, payload, .. } if *topic == status
                && serde_json::from_slice::<Value>(payload).is_ok_and(|v| v["state"] == "online"))
        })
        .await;
    }

    /// The command's body with a fresh id, and its correlation data.
    fn body(&mut self, op: &str, args: Value) -> (Vec<u8>, Vec<u8>) {
        self.next += 1;
        let n = self.next;
        let body = json!({"id": format!("{}-{n}", self.run), "op": op, "args": args});
        (serde_json::to_vec(&body).unwrap(), n.to_be_bytes().to_vec())
    }

    /// Publishes `body` to `topic` and waits for the message carrying `corr`
    /// on the reply or echo topic; returns the time from the publish call to
    /// its arrival, and the payload.
    async fn send(&mut self, topic: &str, body: Vec<u8>, corr: Vec<u8>) -> (Duration, Vec<u8>) {
        let props = PublishProperties {
            response_topic: Some(REPLIES.to_string()),
            correlation_data: Some(corr.clone().into()),
            ..Default::default()
        };
        let t0 = Instant::now();
        self.client.publish_with_properties(topic, self.qos, false, body, props).await.unwrap();
        match self.wait(|m| matches!(m, Msg::Publish { corr: c, .. } if *c == corr)).await {
            Msg::Publish { at, payload, .. } => (at.duration_since(t0), payload),
            _ => unreachable!(),
        }
    }

    /// Runs one command; returns the round trip and the reply, which must be ok.
    async fn call(&mut self, op: &str, args: Value) -> (Duration, Value) {
        let (body, corr) = self.body(op, args);
        self.call_body(op, body, corr).await
    }

    async fn call_body(&mut self, op: &str, body: Vec<u8>, corr: Vec<u8>) -> (Duration, Value) {
        let (d, payload) = self.send(&format!("{P}/cmd"), body, corr).await;
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["ok"], true, "{op} failed: {v}");
        (d, v)
    }

    /// A message to the echo topic and back through the broker, no daemon.
    async fn echo(&mut self) -> Duration {
        self.next += 1;
        let corr = self.next.to_be_bytes().to_vec();
        let body = json!({"id": "echo", "op": "state.get", "args": {}}).to_string().into_bytes();
        self.send(ECHO, body, corr).await.0
    }
}

/// Nearest-rank percentile of sorted `v`, in ms.
/// A field of /proc/<pid>/status in bytes (VmRSS, VmHWM, ...).
fn proc_kb(pid: u32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() * 1024.0
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

fn du(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn mem_line(what: &str, pid: u32, data: &Path) {
    println!(
        "{what:<44} VmRSS={:>6.1} MiB (anon {:.1}, file {:.1})  VmHWM={:>6.1} MiB  threads={}  data_dir={:.1} MiB",
        proc_kb(pid, "VmRSS") / MIB,
        proc_kb(pid, "RssAnon") / MIB,
        proc_kb(pid, "RssFile") / MIB,
        proc_kb(pid, "VmHWM") / MIB,
        threads(pid),
        du(data) as f64 / MIB
    );
}

/// `pairs` x (holder.put of a new holder, pin.generate for it), then
/// `gets` x state.get; prints each distribution; returns the write p50s.
async fn round_trips(portal: &mut Portal, tag: &str, prefix: &str, pairs: usize, gets: usize) -> (f64, f64, f64) {
    let (mut puts, mut gens, mut states) = (vec![], vec![], vec![]);
    for i in 0..pairs {
        let h = format!("{prefix}-{i:05}");
        puts.push(
            portal.call("holder.put", json!({"holder": h, "name": format!("Courier {i}"), "role": "courier"})).await.0,
        );
        let (d, r) = portal.call("pin.generate", json!({"holder": h})).await;
        portal.generated.insert(r["result"]["pin"].as_str().unwrap().to_string());
        gens.push(d);
    }
    for _ in 0..gets {
        states.push(portal.call("state.get", json!({})).await.0);
    }
    // The same state.get with the command at QoS 0 (no PUBACK from the
    // broker to the portal ahead of the reply): shows the broker's Nagle stall.
    let mut states0 = vec![];
    portal.qos = QoS::AtMostOnce;
    for _ in 0..gets / 2 {
        states0.push(portal.call("state.get", json!({})).await.0);
    }
    portal.qos = QoS::AtLeastOnce;
    let mut writes: Vec<Duration> = puts.iter().chain(&gens).copied().collect();
    let p_put = report(&format!("rt {tag} holder.put (flushed)"), &mut puts).0;
    let p_gen = report(&format!("rt {tag} pin.generate (flushed)"), &mut gens).0;
    let p_all = report(&format!("rt {tag} writes, both ops"), &mut writes).0;
    report(&format!("rt {tag} state.get"), &mut states);
    report(&format!("rt {tag} state.get, command at QoS 0"), &mut states0);
    (p_put, p_gen, p_all)
}

/// sync.begin, sync.put of 1000 holders at a time (built beforehand, so the
/// timing is the daemon's and the transport's), sync.commit, one after the
/// other as a portal does; prints the figures; returns the total in seconds,
/// and VmRSS and VmHWM right after the commit.
async fn sync(portal: &mut Portal, pid: u32, data: &Path, generation: u64, pins: &[String]) -> (f64, f64, f64) {
    let holders = pins.len();
    let mut bodies = Vec::new();
    let mut bytes = 0usize;
    for chunk in 0..holders / 1000 {
        let hs: Vec<Value> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| {
                let mut h = json!({"holder": format!("h{i:06}"), "name": format!("Holder {i}"), "role": "courier", "pin": pins[i]});
                if i % 4 == 0 {
                    // Distinct: 2654435761 is odd, so a bijection mod 2^48.
                    h["cards"] = json!([format!("04{:012x}", i as u64 * 2_654_435_761 % (1 << 48))]);
                }
                h
            })
            .collect();
        let b = portal.body("sync.put", json!({"holders": hs}));
        bytes += b.0.len();
        bodies.push(b);
    }
    let t0 = Instant::now();
    let (d_begin, _) = portal.call("sync.begin", json!({"generation": generation})).await;
    let mut puts = Vec::new();
    let mut rss_at = Vec::new();
    let mut staged = 0;
    for (i, (body, corr)) in bodies.into_iter().enumerate() {
        let (d, r) = portal.call_body("sync.put", body, corr).await;
        staged = r["result"]["staged"].as_u64().unwrap();
        puts.push(d);
        if (i + 1) % (holders / 1000 / 4).max(1) == 0 {
            rss_at.push((i + 1, proc_kb(pid, "VmRSS")));
        }
    }
    let puts_done = t0.elapsed();
    let (d_commit, r) = portal.call("sync.commit", json!({})).await;
    let total = t0.elapsed();
    let (rss, hwm) = (proc_kb(pid, "VmRSS"), proc_kb(pid, "VmHWM"));
    assert_eq!(staged as usize, holders);
    assert_eq!(r["result"]["holders"].as_u64(), Some(holders as u64), "{r}");
    assert_eq!(r["result"]["generation"].as_u64(), Some(generation), "{r}");
    println!(
        "sync payload: {} sync.put of 1000 holders, {:.1} MiB of JSON, {} PINs, {} cards",
        holders / 1000,
        bytes as f64 / MIB,
        r["result"]["pins"],
        r["result"]["cards"]
    );
    println!("{:<44} {:>9.3} ms", "sync.begin round trip", d_begin.as_secs_f64() * 1e3);
    report("sync.put round trip (1000 holders each)", &mut puts);
    println!("{:<44} {:>9.3} s", "sync.begin + all sync.put", puts_done.as_secs_f64());
    println!("{:<44} {:>9.3} s", "sync.commit round trip", d_commit.as_secs_f64());
    println!(
        "{:<44} {:>9.3} s  ({:.0} holders/s)",
        "sync total, begin publish to commit reply",
        total.as_secs_f64(),
        holders as f64 / total.as_secs_f64()
    );
    for (n, rss) in &rss_at {
        println!("{:<44} VmRSS={:>6.1} MiB", format!("mem after sync.put #{n}"), rss / MIB);
    }
    mem_line("mem right after sync.commit", pid, data);
    (total.as_secs_f64(), rss, hwm)
}

/// How much each scenario runs.
#[derive(Clone, Copy)]
struct Counts {
    echoes: usize,
    pairs: usize,
    gets: usize,
    holders: usize,
    pairs_after: usize,
}

/// What a scenario measured, for the goals.
struct Outcome {
    p_put: f64,
    p_gen: f64,
    q_put: f64,
    q_gen: f64,
    sync_s: f64,
    rss: f64,
    hwm: f64,
    sync2_s: f64,
    rss2: f64,
    hwm2: f64,
}

/// One fresh porterd on the broker at `port`, then phases 1 to 3.
fn scenario(label: &str, port: u16, c: Counts) -> Outcome {
    println!("=== {label} ===");
    let dir = tempfile::tempdir_in(porter_tests::workspace_root().join("target")).unwrap();
    let cfg = dir.path().join("porter.toml");
    let mqtt = format!("\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n");
    std::fs::write(&cfg, config_text(dir.path(), 200, false, &mqtt)).unwrap();
    let daemon = Daemon::start(&cfg, &dir.path().join("admin.sock"));
    daemon.log.wait_for(0, &["mqtt subscribed"]);
    let pid = daemon.id();
    let data = dir.path().join("data");
    println!("broker mqtt://127.0.0.1:{port}; porterd pid {pid}, data_dir {}", data.display());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let out = rt.block_on(async {
        let mut portal = Portal::connect(port).await;
        portal.wait_online().await;
        mem_line("mem at start", pid, &data);

        // Warm-up: connections, caches, the daemon's blocking pool, the disk.
        for i in 0..50 {
            portal.call("state.get", json!({})).await;
            portal.echo().await;
            let h = format!("warm-{i:03}");
            portal.call("holder.put", json!({"holder": h, "role": "courier"})).await;
            let (_, r) = portal.call("pin.generate", json!({"holder": h})).await;
            portal.generated.insert(r["result"]["pin"].as_str().unwrap().to_string());
        }

        println!("--- 1. command round trips, loopback, publish call to reply received ---");
        let mut echo: Vec<Duration> = Vec::with_capacity(c.echoes);
        for _ in 0..c.echoes {
            echo.push(portal.echo().await);
        }
        report("rt broker echo, no daemon (transport floor)", &mut echo);
        let (p_put, p_gen, _) = round_trips(&mut portal, "small store:", "rt", c.pairs, c.gets).await;
        mem_line("mem after round trips", pid, &data);

        let holders = c.holders;
        println!("--- 2. full sync of {holders} holders over the {} holders above ---", c.pairs + 50);
        let avoid = portal.generated.clone();
        let (sync_s, rss, hwm) = sync(&mut portal, pid, &data, 1_000_000, &pins(0, holders, &avoid)).await;
        std::thread::sleep(Duration::from_secs(2));
        mem_line("mem 2 s after sync.commit", pid, &data);

        println!("--- 3. round trips with {holders} holders live ---");
        let (q_put, q_gen, _) = round_trips(&mut portal, "big store:", "after", c.pairs_after, 5).await;
        mem_line("mem after round trips", pid, &data);

        println!(
            "--- 4. a second full sync: the same {holders} holders, every PIN new (the old ones become tombstones) ---"
        );
        let avoid = portal.generated.clone();
        let (sync2_s, rss2, hwm2) = sync(&mut portal, pid, &data, 2_000_000, &pins(holders, holders, &avoid)).await;
        Outcome { p_put, p_gen, q_put, q_gen, sync_s, rss, hwm, sync2_s, rss2, hwm2 }
    });
    drop(rt);
    let (status, _) = daemon.stop();
    assert!(status.success(), "porterd exit: {status}");
    out
}

fn goals(label: &str, holders: usize, o: &Outcome) -> bool {
    println!("--- goals, {label} ---");
    let mut met = true;
    met &= goal("round trip p50, holder.put, small store", o.p_put, "ms", RT_P50_GOAL_MS);
    met &= goal("round trip p50, pin.generate, small store", o.p_gen, "ms", RT_P50_GOAL_MS);
    met &= goal(&format!("round trip p50, holder.put, {holders} holders"), o.q_put, "ms", RT_P50_GOAL_MS);
    met &= goal(&format!("round trip p50, pin.generate, {holders} holders"), o.q_gen, "ms", RT_P50_GOAL_MS);
    met &= goal(&format!("sync of {holders}, begin publish to commit reply"), o.sync_s, "s", SYNC_GOAL_S);
    met &= goal("daemon VmRSS right after the sync", o.rss / MIB, "MiB", RSS_GOAL_MIB);
    met &= goal("daemon VmHWM (peak) through the sync", o.hwm / MIB, "MiB", RSS_GOAL_MIB);
    println!(
        "(not goals, for reference: a second sync, every PIN new: {:.2} s, then VmRSS {:.1} MiB, VmHWM {:.1} MiB)",
        o.sync2_s,
        o.rss2 / MIB,
        o.hwm2 / MIB
    );
    met
}

fn main() {
    let quick = std::env::var_os("PORTER_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick");
    let holders = if quick { 10_000 } else { 100_000 };
    // The test broker writes its persistence file after every change, so
    // it gets fewer round trips.
    let (test_broker, plain) = if quick {
        (
            Counts { echoes: 100, pairs: 50, gets: 50, holders, pairs_after: 20 },
            Counts { echoes: 200, pairs: 100, gets: 100, holders, pairs_after: 20 },
        )
    } else {
        (
            Counts { echoes: 200, pairs: 200, gets: 100, holders, pairs_after: 40 },
            Counts { echoes: 2000, pairs: 1000, gets: 1000, holders, pairs_after: 200 },
        )
    };

    // The release daemon: porter_tests::bin builds the profile of this
    // binary's folder, target/release under `cargo bench`.
    let porterd = porter_tests::bin("porterd");
    assert!(
        porterd.parent().and_then(Path::file_name).is_some_and(|f| f == "release"),
        "porterd resolved to {}, not a release build",
        porterd.display()
    );
    println!(
        "machine: {} CPUs, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                .split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string()))
            .unwrap_or_default()
    );
    println!("porterd: {}", porterd.display());

    let a_label = "A: porter_tests::Broker (tcp_nodelay, persistence saved after every change)";
    let a = {
        let broker = Broker::start();
        scenario(a_label, broker.port, test_broker)
    };
    let b_label = "B: plain mosquitto (tcp_nodelay, no persistence)";
    let b = {
        let broker = Broker::start_with("allow_anonymous true\nset_tcp_nodelay true\n");
        scenario(b_label, broker.port, plain)
    };
    let met_a = goals(a_label, holders, &a);
    let met_b = goals(b_label, holders, &b);
    if quick {
        println!("(quick run: {holders} holders; the goals are for 100000)");
    }
    println!("all goals: A {}, B {}", if met_a { "met" } else { "NOT met" }, if met_b { "met" } else { "NOT met" });
}
