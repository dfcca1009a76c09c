//! Helpers for end-to-end tests: the real `porterd` and `porterctl` binaries
//! run as processes in a temporary folder, driven through standard input and
//! the admin socket, observed through their logs.
//!
//! Waits are on conditions with deadlines (a line appearing in the log), never
//! fixed sleeps.

pub mod asyncapi;
pub mod bench;
pub mod kiosk;
pub mod peers;
pub mod pty;
pub mod tls;
pub mod vpcd;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

/// How long any single expected thing may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The folder holding the workspace's built binaries.
pub fn bin_dir() -> PathBuf {
    // target/<profile>/deps/<test binary> -> target/<profile>
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// The path of a workspace binary. The first call per test process runs
/// `cargo build -p porterd --bins --features pcsc,osdp` (a no-op when up to date), so a test never
/// runs a stale daemon after `cargo test -p porter-tests`.
pub fn bin(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        // With PC/SC and OSDP, as the tests' own build of the library has them.
        cmd.args(["build", "--quiet", "-p", "porterd", "--bins", "--features", "pcsc,osdp"]);
        if bin_dir().file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "cargo build -p porterd --bins failed");
    });
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} not found", p.display());
    p
}

/// Log lines collected from a child's stream, with a condition variable so
/// tests can wait for one to appear.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    fn follow(stream: impl std::io::Read + Send + 'static, echo: &'static str) -> Lines {
        Lines::follow_to_end(stream, echo).0
    }

    /// Collects the lines of `stream` (a child's output or error), each
    /// echoed on the test's standard error under `echo` when TEST_ECHO is
    /// set; the thread reading them ends at the stream's end (join it to
    /// have every line of a child that exited).
    pub fn follow_to_end(
        stream: impl std::io::Read + Send + 'static,
        echo: &'static str,
    ) -> (Lines, std::thread::JoinHandle<()>) {
        let lines = Lines::default();
        let reader = lines.follow_into(stream, echo);
        (lines, reader)
    }

    /// Adds the lines of another stream (a restarted child's, or its
    /// standard error beside its output) to these.
    fn follow_into(
        &self,
        stream: impl std::io::Read + Send + 'static,
        echo: &'static str,
    ) -> std::thread::JoinHandle<()> {
        let l = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("TEST_ECHO").is_some() {
                    eprintln!("[{echo}] {line}");
                }
                let (m, cv) = &*l.0;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
        })
    }

    /// Every line so far, as one text.
    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    /// How many lines at or after `from` contain every one of `parts`.
    pub fn count(&self, from: usize, parts: &[&str]) -> usize {
        self.all().iter().skip(from).filter(|l| parts.iter().all(|p| l.contains(p))).count()
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.0 .0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the first line at or after index `from` for which `pred`
    /// holds; returns its index and text.
    pub fn wait(&self, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> (usize, String) {
        match self.wait_within(from, DEADLINE, pred) {
            Some(found) => found,
            None => panic!("timed out waiting for {what}; log so far:\n{}", self.all().join("\n")),
        }
    }

    /// Like [`Lines::wait`], but gives up after `limit` with `None`.
    pub fn wait_within(&self, from: usize, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<(usize, String)> {
        let (m, cv) = &*self.0;
        let deadline = Instant::now() + limit;
        let mut g = m.lock().unwrap();
        loop {
            if let Some((i, l)) = g.iter().enumerate().skip(from).find(|(_, l)| pred(l)) {
                return Some((i, l.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Waits for a line containing every one of `parts`, at or after `from`.
    pub fn wait_for(&self, from: usize, parts: &[&str]) -> (usize, String) {
        self.wait(from, &format!("{parts:?}"), |l| parts.iter().all(|p| l.contains(p)))
    }

    /// Whether any line at or after `from` contains every one of `parts`.
    pub fn has(&self, from: usize, parts: &[&str]) -> bool {
        self.all().iter().skip(from).any(|l| parts.iter().all(|p| l.contains(p)))
    }
}

/// A config like the demo's, in `dir`, with the given extra TOML appended.
pub fn config_text(dir: &Path, unlock_ms: u64, seed: bool, extra: &str) -> String {
    format!(
        r#"{head}
[demo]
seed = {seed}

[[doors]]
id = "main"
lock = "lock1"
unlock_ms = {unlock_ms}

[[devices]]
id = "keypad1"
kind = "console"
door = "main"

[[devices]]
id = "lock1"
kind = "sim_lock"
{extra}
"#,
        head = config_head(dir),
    )
}

/// The top of a test config: site `test`, controller `room-1`, the data,
/// secret and admin socket under `dir`.
pub fn config_head(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"site = "test"
controller = "room-1"
data_dir = "{d}/data"
secret_file = "{d}/data/device.key"

[admin]
socket = "{d}/admin.sock"
"#
    )
}

/// The environment that starts a process with its wall clock at `at` (UTC,
/// `YYYY-MM-DD HH:MM:SS`), ticking from there, through libfaketime (Debian's
/// `faketime` package). The monotonic clock is left alone, so timers behave.
pub fn faketime_env(at: &str) -> Vec<(&'static str, String)> {
    let lib = std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime.so.1 not found: install the faketime package (scripts/install-test-deps.sh does)");
    vec![
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME", format!("@{at}")),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ("TZ", "UTC".into()),
    ]
}

/// Whether `text` shows the PIN `pin` as a number of its own: a timestamp's
/// digits or a millisecond count that merely contain the same six digits
/// do not count, nor does a decimal fraction (a log line's timestamp ends in
/// six digits of microseconds: `17:01:02.583921Z`).
pub fn shows_pin(text: &str, pin: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let fraction = start >= 2 && b[start - 1] == b'.' && b[start - 2].is_ascii_digit();
        if !fraction && &text[start..i] == pin {
            return true;
        }
    }
    false
}

/// A running porterd.
pub struct Daemon {
    child: Child,
    stdin: Option<ChildStdin>,
    pub log: Lines,
    pub out: Lines,
    pub config: PathBuf,
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts porterd on `config` and waits until it says it is ready.
    pub fn start(config: &Path, socket: &Path) -> Daemon {
        Self::start_with_env(config, socket, &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_with_env(config: &Path, socket: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(bin("porterd"));
        cmd.arg("--config").arg(config).envs(env.iter().copied());
        Self::spawn(cmd, config, socket)
    }

    /// [`Daemon::start`] with another build of porterd (a benchmark that
    /// compares an older build with this one).
    pub fn start_binary(binary: &Path, config: &Path, socket: &Path) -> Daemon {
        let mut cmd = Command::new(binary);
        cmd.arg("--config").arg(config);
        Self::spawn(cmd, config, socket)
    }

    /// porterd on [`mqtt_config`] in `dir`, started and ready (it may not
    /// have reached its broker yet).
    pub fn with_mqtt(dir: &Path, seed: bool, extra: &str, mqtt: &str) -> Daemon {
        Daemon::start(&mqtt_config(dir, seed, extra, mqtt), &dir.join("admin.sock"))
    }

    /// porterd in `dir` on `broker` (`url`, then the `mqtt` lines of its
    /// `[mqtt]` section; `extra` TOML before it), once it has subscribed to
    /// its command topics.
    pub fn on_broker(dir: &Path, broker: &Broker, extra: &str, mqtt: &str) -> Daemon {
        let d = Daemon::with_mqtt(dir, false, extra, &format!("url = \"{}\"\n{mqtt}", broker.url()));
        d.log.wait_for(0, &["mqtt subscribed"]);
        d
    }

    /// `porterd --demo`, the README's first command, run in `dir` as a user
    /// runs it in a checkout: the embedded demo config, data in `dir/data`.
    pub fn demo(dir: &Path) -> Daemon {
        let mut cmd = Command::new(bin("porterd"));
        cmd.arg("--demo").current_dir(dir);
        Self::spawn(cmd, &dir.join("(embedded demo config)"), &dir.join("data/admin.sock"))
    }

    fn spawn(mut cmd: Command, config: &Path, socket: &Path) -> Daemon {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning porterd");
        let log = Lines::follow(child.stderr.take().unwrap(), "porterd");
        let out = Lines::follow(child.stdout.take().unwrap(), "stdout");
        let stdin = child.stdin.take();
        let d = Daemon { child, stdin, log, out, config: config.to_path_buf(), socket: socket.to_path_buf() };
        d.log.wait_for(0, &["porterd ready"]);
        d
    }

    /// Writes raw bytes to the console, as a misbehaving terminal or device might.
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        let s = self.stdin.as_mut().expect("stdin open");
        s.write_all(bytes).expect("writing to porterd");
        s.flush().unwrap();
    }

    /// Types a line on the console keypad.
    pub fn type_line(&mut self, line: &str) {
        let s = self.stdin.as_mut().expect("stdin open");
        writeln!(s, "{line}").expect("writing to porterd");
        s.flush().unwrap();
    }

    /// Runs `porterctl --socket ... OP ARGS`; returns its exit code and reply.
    pub fn ctl(&self, op: &str, args: &[&str]) -> (i32, Value) {
        ctl(&self.socket, op, args)
    }

    /// Sends SIGKILL and waits for the exit.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(self) -> (ExitStatus, Lines) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends `signal` (SIGTERM as systemd does, SIGINT as Ctrl-C does) and
    /// waits for the exit.
    pub fn stop_with(mut self, signal: nix::sys::signal::Signal) -> (ExitStatus, Lines) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signalling porterd");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if !status.success() {
                    eprintln!("porterd exited with {status} after {signal}; its log:\n{}", self.log.all().join("\n"));
                }
                return (status, self.log.clone());
            }
            assert!(Instant::now() < deadline, "porterd did not stop after {signal}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs porterctl against `socket`.
pub fn ctl(socket: &Path, op: &str, args: &[&str]) -> (i32, Value) {
    let out = Command::new(bin("porterctl"))
        .arg("--socket")
        .arg(socket)
        .arg(op)
        .args(args)
        .output()
        .expect("running porterctl");
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        Value::String(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    });
    (code, v)
}

/// Runs `porterctl --config FILE doctor user=USER`: its exit code and output.
pub fn doctor(config: &Path, user: &str) -> (i32, String) {
    let out = Command::new(bin("porterctl"))
        .arg("--config")
        .arg(config)
        .arg("doctor")
        .arg(format!("user={user}"))
        .output()
        .expect("porterctl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Runs `porterd --config cfg` expecting it to stop before it is ready:
/// its exit code and its standard error.
/// A daemon still running after [`DEADLINE`] (it started)
/// is stopped and reported as exit code -1.
pub fn start_fails(cfg: &Path) -> (i32, String) {
    let mut child = Command::new(bin("porterd"))
        .arg("--config")
        .arg(cfg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let deadline = std::time::Instant::now() + DEADLINE;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            break -1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (code, reader.join().unwrap())
}

/// Runs `porterd check-config --config FILE`.
pub fn check_config(config: &Path) -> (i32, String, String) {
    let out = Command::new(bin("porterd")).arg("check-config").arg("--config").arg(config).output().expect("porterd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The LCUS relay board's command for `channel`: A0, channel, state, checksum.
pub fn lcus(channel: u8, on: bool) -> Vec<u8> {
    let state = u8::from(on);
    vec![0xA0, channel, state, 0xA0u8.wrapping_add(channel).wrapping_add(state)]
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The topic prefix of every test config (`site = "test"`, `controller = "room-1"`).
pub const P: &str = "porter/test/room-1";

/// A real Mosquitto broker on a free port, with its own config and folder,
/// for one test. Its log (standard error, mosquitto's default) is collected
/// in [`Broker::log`].
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Its whole config file.
    conf: String,
    /// Whether its listener takes TLS only (`mqtts://`).
    tls: bool,
    /// The credentials its client tools use when given none (`--cafile`,
    /// `--cert`, `--key`; `-u`, `-P`): none for an anonymous broker.
    identity: Vec<String>,
    /// Everything it logged, across restarts.
    pub log: Lines,
    /// Checks every message against docs/asyncapi.yaml ([`asyncapi`]).
    watcher: Option<Child>,
}

impl Broker {
    /// The broker most tests use: anonymous clients allowed, persistence
    /// after every change (`autosave_on_changes`), so a SIGKILL loses no
    /// message it acknowledged, and replies without Nagle's delay
    /// (`set_tcp_nodelay`, else each waits ~40 ms for a delayed ACK): what a
    /// site broker needs too (see docs/mqtt.md).
    pub fn start() -> Broker {
        let dir = open_dir();
        let lines = format!(
            "allow_anonymous true\npersistence true\npersistence_location {}/\nautosave_on_changes true\nautosave_interval 1\nset_tcp_nodelay true\n",
            dir.path().display()
        );
        Broker::start_in(dir, &lines)
    }

    /// A broker whose config is `listener PORT 127.0.0.1` followed by
    /// `lines` (TLS, passwords, a stock config ...), in a folder of its own.
    pub fn start_with(lines: &str) -> Broker {
        Broker::start_in(open_dir(), lines)
    }

    /// [`Broker::start_with`] in `dir`, which may hold files the config names
    /// (see [`open_dir`]).
    pub fn start_in(dir: tempfile::TempDir, lines: &str) -> Broker {
        Broker::start_conf(dir, |port| format!("listener {port} 127.0.0.1\n{lines}"), false, Vec::new())
    }

    /// A broker in `dir` whose whole config file is `conf(port)` (the port
    /// is a free one); `tls`: its listener takes only `mqtts://`;
    /// `identity`: the credentials its client tools use by default (see
    /// [`Broker::tool`]).
    pub fn start_conf(
        dir: tempfile::TempDir,
        conf: impl FnOnce(u16) -> String,
        tls: bool,
        identity: Vec<String>,
    ) -> Broker {
        let port = free_port();
        let conf = conf(port);
        let mut b = Broker { child: None, port, dir, conf, tls, identity, log: Lines::default(), watcher: None };
        b.restart();
        b.watcher = asyncapi::watch(&b);
        b
    }

    /// (Re)starts the broker on the same port and waits until it says it
    /// runs (its listeners are open by then); a broker that exits first
    /// fails the test with its config and log.
    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(&conf, &self.conf).unwrap();
        let mut child = Command::new(mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning mosquitto (apt-get install mosquitto)");
        let from = self.log.len();
        self.log.follow_into(child.stderr.take().unwrap(), "mosquitto");
        let deadline = Instant::now() + DEADLINE;
        while self
            .log
            .wait_within(from, Duration::from_millis(20), |l| l.contains("mosquitto version") && l.contains("running"))
            .is_none()
        {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "mosquitto exited ({st}); config:\n{}\nlog:\n{}",
                    std::fs::read_to_string(&conf).unwrap(),
                    self.log.text()
                );
            }
            assert!(Instant::now() < deadline, "mosquitto did not start; log:\n{}", self.log.text());
        }
        self.child = Some(child);
    }

    /// Stops the broker: SIGTERM (graceful) or SIGKILL.
    pub fn stop(&mut self, graceful: bool) {
        if let Some(mut c) = self.child.take() {
            let sig = if graceful { nix::sys::signal::Signal::SIGTERM } else { nix::sys::signal::Signal::SIGKILL };
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The credentials client tools use here when given none: empty for an
    /// anonymous broker, the portal's certificate for
    /// [`tls::Site`](crate::tls::Site).
    pub fn identity(&self) -> &[String] {
        &self.identity
    }

    /// A mosquitto client tool (`mosquitto_pub`, `mosquitto_sub`,
    /// `mosquitto_rr`) pointed at this broker, MQTT v5, QoS 1, with the
    /// given credentials (`-u`/`-P`, `--cafile`, `--cert`/`--key`); with
    /// none, the broker's default [`Broker::identity`].
    pub fn tool(&self, name: &str, auth: &[String]) -> Command {
        self.tool_v(name, "mqttv5", auth)
    }

    /// [`Broker::tool`] speaking MQTT `version` (`mqttv5`, `mqttv311`).
    pub fn tool_v(&self, name: &str, version: &str, auth: &[String]) -> Command {
        let mut c = Command::new(name);
        let auth = if auth.is_empty() { &self.identity } else { auth };
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-V", version, "-q", "1"]).args(auth);
        c
    }

    /// `mosquitto_sub -v` on `topic`, its lines collected. The subscriber
    /// keeps a persistent session (`-c -i id`) so it misses nothing across
    /// broker restarts.
    pub fn subscribe(&self, topic: &str, id: &str) -> Subscriber {
        self.subscribe_with(&[topic], id, &["-v"])
    }

    /// `mosquitto_sub` on `topics` with `args` (`-v`, or `-F` with a format
    /// whose lines show the topic and the payload as text or as hex, `%x`),
    /// its lines collected, once its subscription is in place.
    pub fn subscribe_with(&self, topics: &[&str], id: &str, args: &[&str]) -> Subscriber {
        let topic = topics[0];
        let mut child = self
            .tool("mosquitto_sub", &[])
            .args(["-c", "-i", id, "-x", "3600"])
            .args(args)
            .args(topics.iter().flat_map(|t| ["-t", t]))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning mosquitto_sub (apt-get install mosquitto-clients)");
        let lines = Lines::follow(child.stdout.take().unwrap(), "sub");
        // mosquitto_sub says nothing when its subscription is in place, and a
        // message published before that is not delivered to it: publish a
        // probe on a topic the filter matches until it arrives.
        let probe_topic = topic.replace(['#', '+'], "_probe");
        let deadline = Instant::now() + DEADLINE;
        for n in 0.. {
            let probe = format!("{{\"probe\":\"{id}-{n}\"}}");
            // Not Porter's: the contract watcher leaves it alone.
            asyncapi::forged(self.port, &probe);
            self.publish(&probe_topic, &probe);
            let (seen, hex) =
                (format!("{probe_topic} {probe}"), probe.bytes().map(|b| format!("{b:02x}")).collect::<String>());
            let arrived = |l: &str| l == seen || (l.starts_with(&probe_topic) && l.contains(&hex));
            if lines.wait_within(0, Duration::from_millis(250), arrived).is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "mosquitto_sub never subscribed to {topic}");
        }
        Subscriber { child, lines, port: self.port }
    }

    /// `mosquitto_sub -v` on `P/#` with the given credentials, its standard
    /// output and error collected (a refused subscriber says why). No probe:
    /// for a broker that takes only authenticated publishers, a test waits
    /// for the retained status instead.
    pub fn subscribe_as(&self, auth: &[String]) -> Subscriber {
        let mut child = self
            .tool("mosquitto_sub", auth)
            .args(["-v", "-t", &format!("{P}/#")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning mosquitto_sub (apt-get install mosquitto-clients)");
        let lines = Lines::follow(child.stdout.take().unwrap(), "sub");
        lines.follow_into(child.stderr.take().unwrap(), "sub");
        Subscriber { child, lines, port: self.port }
    }

    /// Publishes one QoS 1 message with `mosquitto_pub`.
    pub fn publish(&self, topic: &str, payload: &str) {
        self.publish_as(&[], topic, payload);
    }

    /// [`Broker::publish`] with the given credentials.
    pub fn publish_as(&self, auth: &[String], topic: &str, payload: &str) {
        let out = self
            .tool("mosquitto_pub", auth)
            .args(["-t", topic, "-s"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                // -s: the message from standard input, so it may be large.
                c.stdin.take().unwrap().write_all(payload.as_bytes())?;
                c.wait_with_output()
            })
            .expect("mosquitto_pub");
        assert!(out.status.success(), "mosquitto_pub failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Sends one command to porterd on `P/cmd`, as the broker's default
    /// identity (anonymous, or the portal's certificate).
    pub fn command(&self, id: &str, op: &str, args: Value) {
        self.command_as(&[], id, op, args);
    }

    /// Sends command `id` and waits for its reply on `sub`, among the
    /// messages that arrive after it was sent (so an id sent again gets
    /// its new reply).
    pub fn call(&self, sub: &Subscriber, id: &str, op: &str, args: Value) -> Value {
        let mark = sub.lines.len();
        self.command(id, op, args);
        sub.wait_json(mark, &format!("{P}/reply"), &format!("reply {id}"), |v| v["id"] == id).1
    }

    /// [`Broker::command`] with the given credentials.
    pub fn command_as(&self, auth: &[String], id: &str, op: &str, args: Value) {
        self.publish_as(auth, &format!("{P}/cmd"), &serde_json::json!({"id": id, "op": op, "args": args}).to_string());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop(false);
        if let Some(mut w) = self.watcher.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        asyncapi::assert_clean(self.port);
    }
}

/// A temporary folder that mosquitto, which drops from root to its own user,
/// can write to and read the files in (make them readable, too). Sticky, as
/// `/tmp` is: no one removes or renames another's file in it, so porterd
/// accepts it as its admin socket's folder (docs/security.md).
pub fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    dir
}

fn mosquitto() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

/// `dir/porter.toml` for a porterd on MQTT: [`config_text`] (the demo's
/// door, console keypad and simulated lock; `seed` as there) with `extra`
/// TOML, then an `[mqtt]` section of `mqtt` lines. Returns its path.
pub fn mqtt_config(dir: &Path, seed: bool, extra: &str, mqtt: &str) -> PathBuf {
    let cfg = dir.join("porter.toml");
    std::fs::write(&cfg, config_text(dir, 200, seed, &format!("{extra}\n[mqtt]\n{mqtt}"))).unwrap();
    cfg
}

/// A running `mosquitto_sub`.
pub struct Subscriber {
    child: Child,
    pub lines: Lines,
    /// Its broker's port: its waits report the broker's contract
    /// violations ([`asyncapi::assert_clean`]).
    port: u16,
}

impl Subscriber {
    /// Waits for porterd's reply to command `id` on `P/reply`.
    pub fn reply(&self, id: &str) -> Value {
        self.wait_json(0, &format!("{P}/reply"), &format!("reply {id}"), |v| v["id"] == id).1
    }

    /// Waits for a message on `topic` whose JSON satisfies `pred`; returns it.
    pub fn wait_json(&self, from: usize, topic: &str, what: &str, pred: impl Fn(&Value) -> bool) -> (usize, Value) {
        asyncapi::assert_clean(self.port);
        let (i, line) = self.lines.wait(from, what, |l| {
            l.split_once(' ').is_some_and(|(t, p)| t == topic && serde_json::from_str(p).is_ok_and(|v| pred(&v)))
        });
        (i, serde_json::from_str(line.split_once(' ').unwrap().1).unwrap())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod shows_pin_tests {
    use super::shows_pin;

    #[test]
    fn a_timestamps_microseconds_are_not_a_pin() {
        assert!(!shows_pin("2026-12-03T17:01:02.583921Z  INFO access granted", "583921"));
        assert!(shows_pin("keys=583921 typed", "583921"));
        assert!(shows_pin("\"583921\"", "583921"));
        assert!(shows_pin("583921", "583921"));
        assert!(!shows_pin("1795622583921", "583921"));
    }
}
