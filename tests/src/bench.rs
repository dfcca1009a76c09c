//! What the benchmark binaries share: percentiles, one report line per
//! distribution, goals, distinct non-trivial PINs for large syncs, the admin
//! socket, the machine's description, and the floor: a bare round trip
//! through two pty pairs by a program that does nothing else ([`Floor`]),
//! measured beside porterd under the same load.

use std::time::Duration;

/// The `p`th percentile of sorted `v`, in ms.
pub fn pct(v: &[Duration], p: f64) -> f64 {
    let i = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1e3
}

/// Sorts `v` and prints one distribution line; returns (p50, p99) in ms.
pub fn report(what: &str, v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1e3;
    println!(
        "{what:<44} n={:<5} p50={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms  mean={:>7.3} ms",
        v.len(),
        pct(v, 50.0),
        pct(v, 99.0),
        v[v.len() - 1].as_secs_f64() * 1e3,
        mean
    );
    (pct(v, 50.0), pct(v, 99.0))
}

/// Prints whether `value` is under `limit`; returns that.
pub fn goal(what: &str, value: f64, unit: &str, limit: f64) -> bool {
    let met = value < limit;
    println!("goal: {what:<52} {value:>9.3} {unit} < {limit} {unit}: {}", if met { "MET" } else { "MISSED" });
    met
}

/// Distinct 6-digit PINs, none trivial: i -> (i * 7919 + 104_729) mod 10^6 is
/// a bijection on 0..10^6 (7919 is prime to 10); after the first `skip` of
/// the sequence, `n` not in `avoid`.
pub fn pins(skip: usize, n: usize, avoid: &std::collections::HashSet<String>) -> Vec<String> {
    let v: Vec<String> = (0u64..1_000_000)
        .map(|i| format!("{:06}", (i * 7919 + 104_729) % 1_000_000))
        .filter(|p| !porterd::provision::keys::is_trivial(p.as_bytes()))
        .skip(skip)
        .filter(|p| !avoid.contains(p))
        .take(n)
        .collect();
    assert_eq!(v.len(), n, "not enough PINs");
    v
}

/// The porterd binary a benchmark runs: `PORTER_BENCH_PORTERD` when set (an
/// older build, for a before/after comparison), else this workspace's own
/// release build.
pub fn porterd_binary() -> std::path::PathBuf {
    match std::env::var_os("PORTER_BENCH_PORTERD") {
        Some(p) => std::path::PathBuf::from(p),
        None => crate::bin("porterd"),
    }
}

/// Starts [`porterd_binary`] on `config` and waits until it is ready.
pub fn start_porterd(config: &std::path::Path, socket: &std::path::Path) -> crate::Daemon {
    crate::Daemon::start_binary(&porterd_binary(), config, socket)
}

/// What docs/performance.md records beside a benchmark's figures: the
/// date, the machine, the load on it, and which porterd ran.
pub fn print_machine(porterd: &std::path::Path) {
    let first = |path: &str, key: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| {
                t.lines().find(|l| l.starts_with(key)).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_default()
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("date {date}; cpu {}; {cpus} cpus; kernel {}", first("/proc/cpuinfo", "model name"), kernel.trim());
    println!("porterd {}", porterd.display());
    print_load("load at start");
}

/// Prints the load averages (1, 5, 15 min): a figure taken under load says so.
pub fn print_load(what: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let three: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("{what}: load average {}", three.join(" "));
}

/// porterd's distribution and the floor's, taken interleaved: one line each
/// and their ratios. Returns (porterd p99, floor p99) in ms.
pub fn compare(what: &str, porterd: &mut [Duration], floor: &mut [Duration]) -> (f64, f64) {
    let (p50, p99) = report(&format!("porterd: {what}"), porterd);
    let (f50, f99) = report(&format!("floor:   {what}"), floor);
    println!("ratio porterd/floor: {what}: p50 {:.2}x  p99 {:.2}x", p50 / f50, p99 / f99);
    (p99, f99)
}

/// The floor goals for one run: porterd's p99 at most `RATIO_GOAL` times
/// the floor's, and under `abs_ms` wherever the floor itself is (when the
/// floor's p99 is over it, no program could meet it on this machine: the
/// line says so and that goal is not judged). Returns whether the goals
/// judged were met.
pub fn floor_goals(what: &str, porterd_p99: f64, floor_p99: f64, abs_ms: f64) -> bool {
    let ratio = porterd_p99 / floor_p99;
    let met = ratio <= RATIO_GOAL;
    println!(
        "goal: {:<52} {ratio:>9.2} x <= {RATIO_GOAL} x: {}",
        format!("p99 / floor's p99, {what}"),
        if met { "MET" } else { "MISSED" }
    );
    if floor_p99 < abs_ms {
        met & goal(&format!("p99, {what} (the floor's p99 is {floor_p99:.3} ms)"), porterd_p99, "ms", abs_ms)
    } else {
        println!(
            "goal: {:<52} not judged: the floor's own p99 is {floor_p99:.3} ms on this machine",
            format!("p99 < {abs_ms} ms, {what}")
        );
        met
    }
}

/// The floor goal: porterd's p99 at most this many times the floor's.
pub const RATIO_GOAL: f64 = 1.5;

/// One admin-socket connection: a JSON line out, a JSON line back.
pub struct Admin {
    w: std::os::unix::net::UnixStream,
    r: std::io::BufReader<std::os::unix::net::UnixStream>,
}

impl Admin {
    pub fn connect(path: &std::path::Path) -> Admin {
        let w = std::os::unix::net::UnixStream::connect(path).expect("admin socket");
        let r = std::io::BufReader::new(w.try_clone().unwrap());
        Admin { w, r }
    }

    /// Sends one command; panics unless its reply is `ok`.
    pub fn call(&mut self, op: &str, args: serde_json::Value) -> serde_json::Value {
        self.send(op, &line(op, args))
    }

    /// Sends a command line made beforehand.
    pub fn send(&mut self, op: &str, line: &str) -> serde_json::Value {
        use std::io::{BufRead, Write};
        self.w.write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        self.r.read_line(&mut reply).unwrap();
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["ok"], true, "{op}: {v}");
        v
    }
}

/// One command as an admin-socket line.
pub fn line(op: &str, args: serde_json::Value) -> String {
    let mut line = serde_json::json!({"id": "bench", "op": op, "args": args}).to_string();
    line.push('\n');
    line
}

/// The LCUS relay board's "on" command for channel 1: what porterd writes to
/// unlock, and what the floor program writes in its place.
pub const RELAY_ON: [u8; 4] = [0xA0, 1, 1, 0xA2];

/// The floor: a bare round trip through two pty pairs by a program that does
/// nothing else, the same hops as a key to the relay without porterd. The
/// bench writes on pair A's master; the floor, a separate process (this very
/// benchmark binary, run again with `--floor`, so the scheduler sees two
/// processes as it does with porterd), reads A's slave side and, at the last
/// byte (`#` or CR), writes [`RELAY_ON`] on pair B's slave side; the bench
/// reads it on B's master.
pub struct Floor {
    child: std::process::Child,
    input: crate::pty::Pty,
    relay: crate::pty::Pty,
}

impl Floor {
    /// Starts the floor program on two new pty pairs in `dir` and waits
    /// for its first round trip.
    pub fn start(dir: &std::path::Path) -> Floor {
        let input = crate::pty::Pty::open(&dir.join("floor-input"));
        let relay = crate::pty::Pty::open(&dir.join("floor-relay"));
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--floor")
            .arg(&input.link)
            .arg(&relay.link)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("the floor program");
        let mut f = Floor { child, input, relay };
        // Ready once it answers: the first round trip, untimed.
        f.input.write(b"#");
        assert_eq!(f.relay.read_exact(4, crate::DEADLINE), RELAY_ON, "the floor program's first answer");
        f
    }

    /// One round trip: `body` first, then the clock and `last`; returns the
    /// time from `last` written to the relay command read.
    pub fn round_trip(&mut self, body: &[u8], last: &[u8]) -> Duration {
        self.input.write(body);
        let t0 = std::time::Instant::now();
        self.input.write(last);
        let on = self.relay.read_exact(4, crate::DEADLINE);
        let took = t0.elapsed();
        assert_eq!(on, RELAY_ON, "the floor's relay command");
        took
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the floor program when this process was started as one
/// (`BENCH --floor INPUT RELAY`): call first thing in a benchmark's `main`.
/// Returns when it was not.
pub fn floor_main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == "--floor") else { return };
    let (input, relay) = (&args[i + 1], &args[i + 2]);
    std::process::exit(run_floor(input, relay));
}

/// Opens a pty's slave side for reading and writing, as porterd opens its
/// devices (not as the controlling terminal); a floor program's ports.
pub fn open_port(p: &str) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(p)
        .unwrap_or_else(|e| panic!("floor: {p}: {e}"))
}

/// The benches' door: `main`, locked by an LCUS board on the pty `relay`
/// in `dir`, its contact an `exec` driver reading `contact.fifo` there, and
/// relocked as soon as it closes; the lockout's threshold out of the way.
/// What comes before (the config's head) and the readers are the bench's.
pub fn door_config(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        r#"
[lockout]
threshold = 100

[[doors]]
id = "main"
lock = "relay"
unlock_ms = 60000
contact = "contact"
relock_on_close = true

[[devices]]
id = "relay"
kind = "serial_relay"
port = "{d}/relay"

[[devices]]
id = "contact"
kind = "exec"
command = "/bin/sh"
args = ["-c", "exec cat {d}/contact.fifo"]
"#
    )
}

fn run_floor(input: &str, relay: &str) -> i32 {
    use std::io::{Read, Write};
    let (mut input, mut relay) = (open_port(input), open_port(relay));
    let mut buf = [0u8; 256];
    loop {
        // Blocking: the floor does nothing but wait for the byte and answer.
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => return 0, // the bench closed its side
            Ok(n) => n,
        };
        if buf[..n].iter().any(|&b| b == b'#' || b == b'\r') && relay.write_all(&RELAY_ON).is_err() {
            return 0;
        }
    }
}
