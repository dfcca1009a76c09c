//! Serial peers that no one here wrote, on a socat pty pair: libosdp's own
//! OSDP reader (PyPI `libosdp`) and pymodbus's Modbus RTU server (PyPI
//! `pymodbus`), each driven by a small script in tests/peers/ and installed
//! into target/pydeps by scripts/install-test-deps.sh.

use crate::{workspace_root, Lines, DEADLINE};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A socat pty pair: porterd opens `near`, the peer `far`. Killed on drop.
pub struct Wire {
    socat: Child,
    pub near: PathBuf,
    pub far: PathBuf,
}

impl Wire {
    /// The pair as `dir/<name>` (porterd's end) and `dir/<name>-peer`.
    pub fn new(dir: &Path, name: &str) -> Wire {
        let (near, far) = (dir.join(name), dir.join(format!("{name}-peer")));
        let socat = Command::new("socat")
            .args([format!("pty,raw,echo=0,link={}", near.display()), format!("pty,raw,echo=0,link={}", far.display())])
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (scripts/install-test-deps.sh installs it)");
        let end = Instant::now() + DEADLINE;
        while !(near.exists() && far.exists()) {
            assert!(Instant::now() < end, "socat's links did not appear");
            std::thread::sleep(Duration::from_millis(10));
        }
        Wire { socat, near, far }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        let _ = self.socat.kill();
        let _ = self.socat.wait();
    }
}

/// A peer script from tests/peers/ on the far end of a [`Wire`]: its stdin
/// takes commands, its stdout is JSON lines (`{"ev": ...}`), the first
/// `ready`. Killed on drop.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    pub out: Lines,
}

impl Peer {
    /// `tests/peers/<script> <wire.far> <args>`, with `dist` (a PyPI
    /// package's dist-info folder) checked in target/pydeps first.
    pub fn start(script: &str, dist: &str, wire: &Wire, args: &[&str]) -> Peer {
        let root = workspace_root();
        let pydeps = root.join("target/pydeps");
        assert!(pydeps.join(dist).exists(), "{dist} is not in {}: run scripts/install-test-deps.sh", pydeps.display());
        let mut child = Command::new("python3")
            .arg(root.join("tests/peers").join(script))
            .arg(&wire.far)
            .args(args)
            .env("PYTHONPATH", &pydeps)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let (out, _) = Lines::follow_to_end(child.stdout.take().unwrap(), "peer");
        out.wait_for(0, &["\"ready\""]);
        Peer { child, stdin, out }
    }

    /// libosdp's reader (tests/peers/osdp_reader.py).
    pub fn osdp_reader(wire: &Wire, args: &[&str]) -> Peer {
        Peer::start("osdp_reader.py", "libosdp-3.2.9.dist-info", wire, args)
    }

    /// pymodbus's relay board (tests/peers/modbus_relay.py).
    pub fn modbus_relay(wire: &Wire, args: &[&str]) -> Peer {
        Peer::start("modbus_relay.py", "pymodbus-3.16.1.dist-info", wire, args)
    }

    /// One line to the peer's stdin, then waits for its `submitted` (the
    /// OSDP reader's protocol: `card HEX BITS`, `keys 12#`, `tamper 1`, each
    /// optionally after `@ADDRESS`).
    pub fn say(&mut self, line: &str) {
        let mark = self.out.len();
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        self.out.wait_for(mark, &["\"submitted\""]);
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Wiegand frame's `bits` as an OSDP reader sends them: left-aligned hex.
pub fn frame_hex(value: u64, bits: u32) -> String {
    let bytes = bits.div_ceil(8);
    let v = value << (bytes * 8 - bits);
    format!("{v:0width$x}", width = bytes as usize * 2)
}

/// A 26-bit H10301 frame (even parity over the first 12 data bits, odd over
/// the last 12) for `facility` and `card`, as [`frame_hex`] takes it.
pub fn h10301(facility: u8, card: u16) -> u64 {
    let data = (u64::from(facility) << 16) | u64::from(card);
    let even = (data >> 12).count_ones() % 2;
    let odd = 1 - (data & 0xfff).count_ones() % 2;
    (u64::from(even) << 25) | (data << 1) | u64::from(odd)
}

/// A secure channel key file (mode 0600) at `path`.
pub fn write_key(path: &Path, key: &str) {
    std::fs::write(path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
