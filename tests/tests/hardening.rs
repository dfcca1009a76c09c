//! Issue 13, part 5: a hardened surface. Each finding of the issue as a test
//! against the real porterd and porterctl: a tampered store, folders other
//! users may write, forged log lines, idle admin connections.

use porter_tests::{config_text, ctl, Daemon};
use porterd::store::records::{self, HolderRecord};
use std::path::Path;
use std::process::Command;

/// A test config in `dir` (the demo's door, console keypad and simulated
/// lock) with `extra` TOML; returns its path.
fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("porter.toml");
    std::fs::write(&cfg, config_text(dir, 200, false, extra)).unwrap();
    cfg
}

/// Runs `porterd --config cfg` expecting it to stop before it is ready:
/// its exit code and its standard error.
fn start_fails(cfg: &Path) -> (i32, String) {
    let out = Command::new(porter_tests::bin("porterd")).arg("--config").arg(cfg).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Issue 13: a holder id over 65,535 bytes in a tampered store panicked the
/// daemon at start (a byte index inside a character). Such a record is
/// damage: reported with its key and recovered from, or refused, per
/// `store.on_damage`; never a panic.
#[test]
fn a_tampered_record_with_a_huge_holder_id_is_reported_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let sock = dir.path().join("admin.sock");
    let d = Daemon::start(&cfg, &sock);
    assert_eq!(d.ctl("holder.put", &["holder=courier-ups", "role=courier"]).0, 0);
    assert!(d.stop().0.success());
    // The tamperer writes a record whose id is 80,000 bytes of `é`.
    {
        let store = porterd::store::Store::open(&dir.path().join("data/store"), 1 << 20).unwrap();
        let live = records::active_space(&store);
        let key = records::holder_key(live, "courier-ups");
        let mut rec = HolderRecord::decode(&key, &store.get(&key).unwrap().unwrap()).unwrap();
        rec.id = "é".repeat(40_000);
        let mut b = porterd::store::Batch::default();
        b.put(records::holder_key(live, "tampered"), rec.encode());
        store.apply(b).unwrap();
    }
    // Refused: the cause names the record; no panic.
    let refuse = config(dir.path(), "[store]\non_damage = \"refuse\"\n");
    let (code, err) = start_fails(&refuse);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("h/a/tampered") || err.contains("h/b/tampered"), "the record is not named: {err}");
    // Recovered (the default): the daemon starts and keeps deciding.
    let cfg = config(dir.path(), "");
    let d = Daemon::start(&cfg, &sock);
    assert!(d.log.has(0, &["store damaged", "tampered"]), "{}", d.log.text());
    assert!(!d.log.text().contains("panicked"));
    let (code, state) = ctl(&sock, "state.get", &[]);
    assert_eq!(code, 0, "{state}");
}
