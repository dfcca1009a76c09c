//! Hot-plug as an installer tries it: a device's udev symlink goes away and
//! comes back (a USB cable wiggled), and the real porterd must read the device
//! again within 2 s of its path's return, whatever happened before; while the
//! path is away the daemon must not poll for it.
//!
//! A serial device is a pty pair behind a symlink ([`Pty`]); unplugging it
//! removes the symlink and closes both ends, as the kernel hangs up a USB
//! adapter's tty and udev removes its `/dev/serial/by-id` link. No evdev node
//! can be made on these machines (no uinput), so the `hid` test shows the
//! daemon trying the path within 2 s of its creation, where the open itself
//! then fails on a node that is not an evdev device.

use porter_tests::pty::Pty;
use porter_tests::{config_head, Daemon, Lines};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The bound the issue sets: from the path's return to the device read again.
const BACK_WITHIN: Duration = Duration::from_secs(2);

fn keypad_config(dir: &Path) -> String {
    let (d, head) = (dir.display(), config_head(dir));
    format!(
        r#"{head}
[[doors]]
id = "main"
lock = "lock1"
unlock_ms = 100

[[devices]]
id = "keypad"
kind = "serial_keypad"
door = "main"
port = "{d}/by-id/usb-keypad"

[[devices]]
id = "lock1"
kind = "sim_lock"
"#
    )
}

/// A PIN for a staff holder, through the admin socket.
fn staff_pin(d: &Daemon) -> String {
    assert_eq!(d.ctl("holder.put", &["holder=staff-ann", "role=staff"]).0, 0);
    let (code, r) = d.ctl("pin.generate", &["holder=staff-ann"]);
    assert_eq!(code, 0, "{r}");
    r["result"]["pin"].as_str().unwrap().to_string()
}

/// The index of the first line at or after `from` with every one of `parts`,
/// waited for until `deadline`; `None` when it did not come by then.
fn line_by(log: &Lines, from: usize, deadline: Instant, parts: &[&str]) -> Option<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    log.wait_within(from, left, |l| parts.iter().all(|p| l.contains(p))).map(|(i, _)| i)
}

/// The process's CPU time (user and system, in clock ticks) and its
/// voluntary context switches over all its threads (each a wait that ended:
/// a timer, a wakeup; preemption by other load is not counted), from /proc.
fn cpu_and_switches(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(status) = std::fs::read_to_string(task.unwrap().path().join("status")) else { continue };
        for l in status.lines().filter(|l| l.starts_with("voluntary_ctxt_switches:")) {
            switches += l.split_whitespace().last().unwrap().parse::<u64>().unwrap();
        }
    }
    (ticks, switches)
}

/// porterd in `p` with a pty keypad behind `p/by-id/usb-keypad`, online,
/// and a staff PIN: the link, the keypad, the daemon and the PIN.
fn keypad_online(p: &Path) -> (PathBuf, Pty, Daemon, String) {
    std::fs::create_dir(p.join("by-id")).unwrap();
    let link = p.join("by-id/usb-keypad");
    std::fs::write(p.join("porter.toml"), keypad_config(p)).unwrap();
    let keypad = Pty::open(&link);
    let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));
    let pin = staff_pin(&d);
    d.log.wait_for(0, &["device health", "device=keypad", "device.online"]);
    (link, keypad, d, pin)
}

/// The issue's measurement: 50 unplugs and replugs in about 11 s, then the
/// keypad back for good. Before the fix the reopen delay had grown to 30 s
/// and the keypad came back about 25 s after the last replug.
#[test]
fn a_serial_keypad_flapped_50_times_is_back_within_2s_of_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // udev removes /dev/serial/by-id with the last serial device: so does this test.
    let (link, keypad, d, pin) = keypad_online(p);
    keypad.unplug();

    // 50 flaps, 110 ms plugged and 110 ms away each: the installer's 11 s.
    let started = Instant::now();
    for i in 0..50 {
        std::thread::sleep(Duration::from_millis(110));
        if i % 10 == 9 {
            // Sometimes the whole folder goes, as the last by-id link does.
            std::fs::remove_dir(p.join("by-id")).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            std::fs::create_dir(p.join("by-id")).unwrap();
        }
        let flap = Pty::open(&link);
        std::thread::sleep(Duration::from_millis(110));
        flap.unplug();
    }
    eprintln!("50 flaps took {:?}", started.elapsed());
    std::thread::sleep(Duration::from_millis(110));

    let from = d.log.len();
    let back = Instant::now();
    let mut keypad = Pty::open(&link);
    let deadline = back + BACK_WITHIN;
    let online = line_by(&d.log, from, deadline, &["device health", "device=keypad", "device.online"]);
    let took = back.elapsed();
    assert!(
        online.is_some(),
        "the keypad was not online within {BACK_WITHIN:?} of its path's return; log since:\n{}",
        d.log.all()[from..].join("\n")
    );
    eprintln!("online {took:?} after the path came back");
    keypad.write(format!("{pin}#").as_bytes());
    let granted = line_by(&d.log, from, deadline, &["access granted", "device=keypad"]);
    assert!(
        granted.is_some(),
        "the key typed did not reach a decision within {BACK_WITHIN:?} of the path's return ({:?})",
        back.elapsed()
    );
}

/// A device whose path is away is waited for, not polled: no retries in the
/// log, no CPU time, and no more context switches than the same daemon makes
/// idle with the device plugged in (its store's threads and timers), over 3 s
/// each. Then the path comes back and the keypad works within 2 s.
#[test]
fn a_keypad_away_costs_no_cpu_and_is_opened_when_its_path_appears() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (link, keypad, d, pin) = keypad_online(p);

    let window = Duration::from_secs(3);
    let (ticks0, switches0) = cpu_and_switches(d.id());
    std::thread::sleep(window);
    let (ticks1, switches1) = cpu_and_switches(d.id());
    let (plugged_ticks, plugged_switches) = (ticks1 - ticks0, switches1 - switches0);

    // Unplugged, and the by-id folder gone with it, as udev does for the last device.
    let unplugged = d.log.len();
    keypad.unplug();
    std::fs::remove_dir(p.join("by-id")).unwrap();
    d.log.wait_for(unplugged, &["device failed", "device=\"keypad\""]);
    let from = d.log.len();
    // The unplug's own aftermath (the device.offline event written and
    // synced, the status's change noticed) is not the waiting: the window
    // starts once it is recorded, and a second later.
    d.log.wait_for(unplugged, &["device health", "device=keypad", "device.offline"]);
    std::thread::sleep(Duration::from_secs(1));
    let (ticks0, switches0) = cpu_and_switches(d.id());
    std::thread::sleep(window);
    let (ticks1, switches1) = cpu_and_switches(d.id());
    let (away_ticks, away_switches) = (ticks1 - ticks0, switches1 - switches0);
    let retries = d.log.count(from, &["device failed", "device=\"keypad\""]);
    eprintln!(
        "3 s plugged in and idle: {plugged_ticks} ticks, {plugged_switches} context switches; \
         3 s away: {away_ticks} ticks, {away_switches} context switches, {retries} retries"
    );
    // Before the fix: retries at 200, 400, 800 and 1600 ms.
    assert_eq!(retries, 0, "the daemon retried a path that is not there:\n{}", d.log.text());
    // Relative to the same daemon idle: its own timers are not the device's.
    assert!(
        away_ticks <= plugged_ticks + 3,
        "{away_ticks} ticks (10 ms each) of CPU in 3 s while the device was away, {plugged_ticks} plugged in"
    );
    // A loop polling the path every 100 ms would add 30 switches or more.
    assert!(
        away_switches <= plugged_switches + 15,
        "{away_switches} context switches in 3 s away, {plugged_switches} plugged in and idle"
    );

    std::fs::create_dir(p.join("by-id")).unwrap();
    let back = Instant::now();
    let mut keypad = Pty::open(&link);
    let deadline = back + BACK_WITHIN;
    assert!(
        line_by(&d.log, from, deadline, &["device health", "device=keypad", "device.online"]).is_some(),
        "not online within {BACK_WITHIN:?} of the path's creation:\n{}",
        d.log.all()[from..].join("\n")
    );
    keypad.write(format!("{pin}#").as_bytes());
    assert!(line_by(&d.log, from, deadline, &["access granted", "device=keypad"]).is_some());
}

/// A path that is there but cannot be opened keeps the backoff: it is not
/// retried in a loop.
#[test]
fn a_path_that_exists_but_fails_keeps_its_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join("by-id")).unwrap();
    // A regular file: it opens, but it is no tty, so every open fails.
    std::fs::write(p.join("by-id/usb-keypad"), "").unwrap();
    std::fs::write(p.join("porter.toml"), keypad_config(p)).unwrap();
    let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));
    d.log.wait_for(0, &["device failed", "device=\"keypad\""]);
    let from = d.log.len();
    std::thread::sleep(Duration::from_secs(4));
    // 200, 400, 800, 1600 ms (each up to 25% more): at most 4 retries in 4 s.
    let retries = d.log.count(from, &["device failed", "device=\"keypad\""]);
    assert!((1..=4).contains(&retries), "{retries} retries in 4 s:\n{}", d.log.text());
}

fn hid_config(dir: &Path) -> String {
    let (d, head) = (dir.display(), config_head(dir));
    format!(
        r#"{head}
[[doors]]
id = "main"
lock = "lock1"
unlock_ms = 100

[[devices]]
id = "scanner"
kind = "hid"
door = "main"
mode = "qr"
path = "{d}/input/by-id/usb-scanner-event-kbd"

[[devices]]
id = "lock1"
kind = "sim_lock"
"#
    )
}

/// A `hid` device waits for its path like a serial one: after a long absence
/// (the backoff would have grown past 3 s), the daemon tries the node within
/// 2 s of its creation. The node here is a pty, which the open then finds is
/// no evdev device: that error, logged, shows the attempt.
#[test]
fn a_hid_device_is_tried_within_2s_of_its_path_appearing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("porter.toml"), hid_config(p)).unwrap();
    let d = Daemon::start(&p.join("porter.toml"), &p.join("admin.sock"));
    d.log.wait_for(0, &["device failed", "device=\"scanner\"", "no such device"]);
    let (ticks0, _) = cpu_and_switches(d.id());
    let from = d.log.len();
    // 200 + 400 + 800 + 1600 ms: without a watch the next try would be 3 s or more away.
    std::thread::sleep(Duration::from_secs(4));
    let (ticks1, _) = cpu_and_switches(d.id());
    assert_eq!(d.log.count(from, &["device failed", "device=\"scanner\""]), 0, "{}", d.log.text());
    assert!(ticks1 - ticks0 <= 5, "{} ticks of CPU in 4 s while the device was away", ticks1 - ticks0);

    std::fs::create_dir_all(p.join("input/by-id")).unwrap();
    let back = Instant::now();
    let _node = Pty::open(&p.join("input/by-id/usb-scanner-event-kbd"));
    let tried = line_by(
        &d.log,
        from,
        back + BACK_WITHIN,
        &["device failed", "device=\"scanner\"", "not an evdev input device"],
    );
    assert!(
        tried.is_some(),
        "not tried within {BACK_WITHIN:?} of the path's creation:\n{}",
        d.log.all()[from..].join("\n")
    );
}
