//! A door's feedback reaching an `exec` program as JSON lines on its
//! standard input, each naming the input device that caused it (none for a
//! window opened over MQTT), while the real porterd decides keys and cards
//! typed on its console: the display program is the shell loop docs/drivers.md shows
//! an installer, and a stuck program that never reads shows that feedback
//! cannot hold up a grant.

use porter_tests::{config_head, Broker, Daemon, DEADLINE, P};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const PIN: &str = "483920";

/// A door `main` with a console keypad and a sim_lock, whose feedback goes to
/// the exec device `screen` running `script` through /bin/sh.
fn config(dir: &Path, door: &str, unlock_ms: u64, script: &str, extra: &str) -> String {
    let head = config_head(dir);
    format!(
        r#"{head}
[lockout]
threshold = 3
base_s = 60

[[doors]]
id = "{door}"
lock = "lock1"
unlock_ms = {unlock_ms}
feedback = ["screen"]

[[devices]]
id = "keypad1"
kind = "console"
door = "{door}"

[[devices]]
id = "lock1"
kind = "sim_lock"

[[devices]]
id = "screen"
kind = "exec"
command = "/bin/sh"
args = ["-c", {script:?}]
feedback = true
{extra}
"#
    )
}

fn start(dir: &Path, text: &str) -> Daemon {
    std::fs::write(dir.join("porter.toml"), text).unwrap();
    let d = Daemon::start(&dir.join("porter.toml"), &dir.join("admin.sock"));
    d.log.wait_for(0, &["exec: program started", "device=screen"]);
    let (code, v) = d.ctl("holder.put", &["holder=courier-ups", "name=UPS", "role=courier"]);
    assert_eq!(code, 0, "{v}");
    let (code, v) = d.ctl("pin.set", &["holder=courier-ups", &format!("pin={PIN}")]);
    assert_eq!(code, 0, "{v}");
    d
}

/// The feedback lines the display program recorded, each parsed.
struct Recorded<'a>(&'a Path);

impl Recorded<'_> {
    fn all(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.0).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    /// Waits for line `n` (from 0) and returns it.
    fn nth(&self, n: usize) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let all = self.all();
            if let Some(v) = all.get(n) {
                return v.clone();
            }
            assert!(Instant::now() < deadline, "no feedback line {n}; got {all:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn a_display_program_receives_each_signal_with_its_details() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let broker = Broker::start();
    let sub = broker.subscribe(&format!("{P}/reply"), "portal-feedback");
    let log = p.join("feedback.log");
    let script = format!("while read -r line; do printf '%s\\n' \"$line\" >> {}; done", log.display());
    let mqtt = format!("\n[mqtt]\nurl = \"{}\"\n", broker.url());
    let mut d = start(p, &config(p, "main", 300, &script, &mqtt));
    d.log.wait_for(0, &["mqtt subscribed"]);
    let fb = Recorded(&log);

    // Each signal caused by a key or card names the device it was typed or
    // presented at: here the console, `keypad1`.
    d.type_line(&format!("{PIN}#"));
    assert_eq!(fb.nth(0), json!({"feedback": "grant", "door": "main", "unlock_ms": 300, "device": "keypad1"}));
    d.log.wait_for(0, &["lock unlocked", "device=lock1"]);

    // Wrong PINs: a deny with the event's reason each, and the third engages
    // the lockout, whose end is the lockout.engaged event's.
    for _ in 0..3 {
        d.type_line("000001#");
    }
    for n in 1..=3 {
        assert_eq!(fb.nth(n), json!({"feedback": "deny", "door": "main", "reason": "unknown", "device": "keypad1"}));
    }
    let lockout = fb.nth(4);
    let (_, engaged) = d.log.wait_for(0, &["lockout engaged", "device=keypad1"]);
    assert_eq!((&lockout["feedback"], &lockout["device"]), (&json!("lockout"), &json!("keypad1")), "{lockout}");
    let until = lockout["until"].as_str().expect("a timed lockout has its end");
    assert!(engaged.contains(until), "the feedback's end {until} is not the event's: {engaged}");
    let until_ms = lockout["until_ms"].as_i64().unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((until_ms - now_ms - 60_000).abs() < 10_000, "until_ms {until_ms} is not a minute from now");
    // A key at the locked-out keypad: the lockout again, with the same end.
    d.type_line(&format!("{PIN}#"));
    assert_eq!(fb.nth(5), lockout);
    let (code, v) = d.ctl("lockout.clear", &["device=keypad1"]);
    assert_eq!(code, 0, "{v}");

    // The window opened at the keypad (`**`, the PIN, `#`) is the keypad's;
    // the card presented in it is enrolled, at the device it was read by.
    d.type_line(&format!("**{PIN}#"));
    let open = fb.nth(6);
    assert_eq!((&open["feedback"], &open["device"]), (&json!("enroll_open"), &json!("keypad1")), "{open}");
    assert!(open["until_ms"].as_i64().unwrap() > now_ms, "{open}");
    d.type_line("card:04a1b2c3");
    assert_eq!(fb.nth(7), json!({"feedback": "card_enrolled", "door": "main", "device": "keypad1"}));

    // A window opened by enroll.start over MQTT: no device's input caused
    // it, so its line has no `device` (not a null); its end is the reply's.
    let v =
        broker.call(&sub, "fb-1", "enroll.start", json!({"holder": "courier-ups", "door": "main", "timeout_s": 60}));
    assert_eq!(v["ok"], true, "{v}");
    let open = fb.nth(8);
    assert_eq!(open["feedback"], "enroll_open");
    assert!(open.get("device").is_none(), "{open}");
    assert_eq!(open["until"], v["result"]["until"], "{v}");
    assert!(open["until_ms"].as_i64().unwrap() > now_ms + 50_000, "{open}");
    d.type_line("card:04d4e5f6");
    assert_eq!(fb.nth(9), json!({"feedback": "card_enrolled", "door": "main", "device": "keypad1"}));

    // The same card in another holder's window (porterctl this time) is
    // refused: another's.
    d.ctl("holder.put", &["holder=courier-dhl", "name=DHL", "role=courier"]);
    let (code, v) = d.ctl("enroll.start", &["holder=courier-dhl", "door=main", "timeout_s=60"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(fb.nth(10)["feedback"], "enroll_open");
    assert!(fb.nth(10).get("device").is_none(), "{}", fb.nth(10));
    d.type_line("card:04a1b2c3");
    assert_eq!(
        fb.nth(11),
        json!({"feedback": "card_refused", "door": "main", "reason": "duplicate", "device": "keypad1"})
    );

    // Nothing else came, and no line shows a PIN.
    assert_eq!(fb.all().len(), 12, "{:?}", fb.all());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(PIN) && !text.contains("000001"), "{text}");
    assert!(d.stop().0.success());
}

#[test]
fn a_program_that_never_reads_its_feedback_does_not_delay_a_grant() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // The program shrinks its standard input's pipe to one page (so a few
    // dozen lines fill it), says so on its standard error and never reads.
    let stuck = "exec python3 -c 'import fcntl, sys, time\nfcntl.fcntl(0, 1031, 4096)\nprint(\"stuck\", file=sys.stderr, flush=True)\ntime.sleep(3600)'";
    // A long door id makes each line longer, so fewer fill the pipe.
    let door = "main-entrance-beside-the-package-room";
    let mut d = start(p, &config(p, door, 300, stuck, ""));
    d.log.wait_for(0, &["exec: program's standard error", "stuck"]);

    // Grants, many more than the pipe holds (the lock opens once and its
    // time is extended).
    let mark = d.log.len();
    d.type_line(&format!("{PIN}#").repeat(120));
    d.log.wait_for(mark, &["exec: feedback line dropped", "device=screen"]);
    let (u, _) = d.log.wait_for(mark, &["lock unlocked", "device=lock1"]);
    d.log.wait_for(u, &["lock locked", "device=lock1"]);

    // With the pipe full, the next grant still drives the lock at once: a
    // feedback line waiting for room would hold it up for seconds.
    let mark = d.log.len();
    let typed = Instant::now();
    d.type_line(&format!("{PIN}#"));
    let unlocked = d
        .log
        .wait_within(mark, Duration::from_millis(1500), |l| l.contains("lock unlocked") && l.contains("device=lock1"));
    assert!(unlocked.is_some(), "no lock command within 1.5 s of the grant ({:?})", typed.elapsed());
    d.log.wait_for(mark, &["access granted", "holder=\"courier-ups\""]);
    assert!(d.stop().0.success());
}
