//! The real porterd with hardware drivers, each through its real protocol: a
//! serial QR scanner on a pty, a PC/SC reader through pcscd with a virtual
//! card, a USB relay board (LCUS) on a pty driving two doors, and a door
//! contact written as an `exec` driver.

use porter_tests::pty::Pty;
use porter_tests::vpcd::{Card, PcscLab, PORT_0};
use porter_tests::{config_head, lcus, Daemon, DEADLINE};
use std::io::Write;
use std::path::Path;

fn config(dir: &Path) -> String {
    let (d, head) = (dir.display(), config_head(dir));
    format!(
        r#"{head}
[[doors]]
id = "front"
lock = "relay-1"
unlock_ms = 400
contact = "front-contact"

[[doors]]
id = "back"
lock = "relay-2"
unlock_ms = 400

[[devices]]
id = "scanner"
kind = "serial_qr"
door = "front"
port = "{d}/scanner"
baud = 115200
terminator = "cr"

[[devices]]
id = "reader"
kind = "pcsc"
door = "back"
reader = "PCD 00 00"

[[devices]]
id = "relay-1"
kind = "serial_relay"
port = "{d}/relay"
channel = 1

[[devices]]
id = "relay-2"
kind = "serial_relay"
port = "{d}/relay"
channel = 2

[[devices]]
id = "front-contact"
kind = "exec"
command = "/bin/sh"
args = ["-c", "exec cat {d}/contact.fifo"]
"#
    )
}

#[test]
fn a_qr_code_and_a_card_open_their_own_doors_through_one_relay_board() {
    let _lab = PcscLab::acquire();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let mut scanner = Pty::open(&p.join("scanner"));
    let mut relay = Pty::open(&p.join("relay"));
    nix::unistd::mkfifo(&p.join("contact.fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::write(p.join("porter.toml"), config(p)).unwrap();
    let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));

    // Both locks are driven locked at start, through the one board.
    let mut start = relay.read_exact(8, DEADLINE);
    let first: Vec<u8> = start.drain(..4).collect();
    let mut seen = [first, start];
    seen.sort();
    assert_eq!(seen, [lcus(1, false), lcus(2, false)]);

    assert_eq!(d.ctl("holder.put", &["holder=courier-ups", "name=UPS", "role=courier"]).0, 0);
    let (code, r) = d.ctl("qr.generate", &["holder=courier-ups"]);
    assert_eq!(code, 0, "{r}");
    let token = r["result"]["token"].as_str().unwrap().to_string();
    assert_eq!(d.ctl("holder.put", &["holder=staff-ann", "name=Ann", "role=staff"]).0, 0);
    assert_eq!(d.ctl("card.assign", &["holder=staff-ann", "uid=04a1b2c3d4e5f6"]).0, 0);
    d.log.wait_for(0, &["device health", "device=scanner", "device.online"]);
    d.log.wait_for(0, &["device health", "device=reader", "device.online"]);

    // A QR code at the front scanner opens the front door (channel 1).
    let mark = d.log.len();
    scanner.write(format!("{token}\r").as_bytes());
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(1, true));
    d.log.wait_for(mark, &["access granted", "door=front", "device=scanner", "key=\"qr\""]);
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(1, false), "relocked after unlock_ms");
    assert!(!d.log.all().iter().any(|l| l.contains(&token)), "the token reached the log");

    // A card on the back reader opens the back door (channel 2).
    let card = Card::tap(PORT_0, &[0x04, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6]);
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(2, true));
    d.log.wait_for(mark, &["access granted", "door=back", "device=reader", "staff-ann"]);
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(2, false));
    card.remove();

    // An unknown QR code opens nothing; a garbled frame is dropped.
    let mark = d.log.len();
    scanner.write(b"not-a-token\r");
    d.log.wait_for(mark, &["access denied", "door=front", "reason=\"unknown\""]);

    // The door contact, an exec driver: the door opening while locked is forced.
    let mut contact = std::fs::OpenOptions::new().write(true).open(p.join("contact.fifo")).unwrap();
    writeln!(contact, "{{\"level\":false}}").unwrap();
    writeln!(contact, "{{\"level\":true}}").unwrap();
    d.log.wait_for(mark, &["door forced", "door=front"]);
    writeln!(contact, "{{\"level\":false}}").unwrap();
    d.log.wait_for(mark, &["door contact", "door=front", "door.closed"]);

    // Unplug the scanner: offline; plug it back in at the same name: online, reading.
    let mark = d.log.len();
    scanner.unplug();
    d.log.wait_for(mark, &["device health", "device=scanner", "device.offline"]);
    let mut scanner = Pty::open(&p.join("scanner"));
    d.log.wait_for(mark, &["device health", "device=scanner", "device.online"]);
    scanner.write(format!("{token}\r").as_bytes());
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(1, true));
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(1, false));

    // Shutdown drives both locks locked once more.
    let (status, _) = d.stop();
    assert!(status.success());
    let mut last = relay.read_exact(8, DEADLINE);
    let first: Vec<u8> = last.drain(..4).collect();
    let mut seen = [first, last];
    seen.sort();
    assert_eq!(seen, [lcus(1, false), lcus(2, false)]);
}

#[test]
fn a_flooding_device_does_not_stall_the_keypad_next_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let d = p.display();
    let mut keypad = Pty::open(&p.join("keypad"));
    let mut relay = Pty::open(&p.join("relay"));
    let head = config_head(p);
    let text = format!(
        r#"{head}
[[doors]]
id = "main"
lock = "relay"
unlock_ms = 100

[[devices]]
id = "keypad"
kind = "serial_keypad"
door = "main"
port = "{d}/keypad"

[[devices]]
id = "flood"
kind = "exec"
door = "main"
command = "/usr/bin/yes"
args = ["{{\"key\":\"1\"}}"]

[[devices]]
id = "relay"
kind = "serial_relay"
port = "{d}/relay"
"#
    );
    std::fs::write(p.join("porter.toml"), text).unwrap();
    let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));
    assert_eq!(relay.read_exact(4, DEADLINE), lcus(1, false));
    assert_eq!(d.ctl("holder.put", &["holder=staff-ann", "role=staff"]).0, 0);
    let (code, r) = d.ctl("pin.generate", &["holder=staff-ann"]);
    assert_eq!(code, 0, "{r}");
    let pin = r["result"]["pin"].as_str().unwrap().to_string();
    d.log.wait_for(0, &["device=flood", "device.online"]);
    d.log.wait_for(0, &["inputs a second: the rest is dropped"]);
    for _ in 0..5 {
        keypad.write(format!("{pin}#").as_bytes());
        assert_eq!(relay.read_exact(4, DEADLINE), lcus(1, true), "the keypad's grant did not reach the lock");
        assert_eq!(relay.read_exact(4, DEADLINE), lcus(1, false));
    }
    d.log.wait_for(0, &["access granted", "device=keypad"]);
}

#[test]
fn an_exec_lock_hears_locked_before_its_program_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (d, head) = (p.display(), config_head(p));
    let text = format!(
        r#"{head}
[[doors]]
id = "main"
lock = "strike"

[[devices]]
id = "strike"
kind = "exec"
command = "/bin/sh"
args = ["-c", "while read -r line; do echo \"$line\" >> {d}/lock.log; done"]
"#
    );
    std::fs::write(p.join("porter.toml"), text).unwrap();
    let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));
    let lines = || std::fs::read_to_string(p.join("lock.log")).unwrap_or_default();
    let wait = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + DEADLINE;
        while !pred(&lines()) {
            assert!(std::time::Instant::now() < deadline, "{what}; lock.log: {}", lines());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    wait("locked at start", &|l| l.lines().last() == Some(r#"{"lock":"locked"}"#));
    let (code, r) = d.ctl("door.unlock", &["door=main", "ms=600000"]);
    assert_eq!(code, 0, "{r}");
    wait("unlocked", &|l| l.lines().last() == Some(r#"{"lock":"unlocked"}"#));
    assert!(d.stop().0.success());
    assert_eq!(lines().lines().last(), Some(r#"{"lock":"locked"}"#), "the program was stopped before it heard locked");
}
