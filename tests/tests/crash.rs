//! Kill a process applying key operations with SIGKILL at random points, 50
//! times; after each kill, reopen the store and check that every operation the
//! process reported done is there (and that the store opens at all), and that
//! the PIN of every holder whose delete was reported stays a tombstone.

use porter_drivers::CardUid;
use porter_tests::bin;
use porterd::access::{decide, schedule::LocalTime, KeyKind, Request, Role};
use porterd::provision::keys::{HolderSpec, KeyService};
use porterd::store::{recover, secret};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Default, Debug)]
struct Expect {
    exists: bool,
    pin: Option<String>,
    card: Option<String>,
}

fn seed() -> u64 {
    std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    })
}

#[test]
fn acknowledged_operations_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = seed();
    eprintln!("CRASH_SEED={rng}");
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut expect: BTreeMap<String, Expect> = BTreeMap::new();
    // PINs of deleted holders: never to be set again.
    let mut tombstones: Vec<String> = Vec::new();
    let mut start = 0u64;
    let mut total_lines = 0usize;
    for round in 0..50 {
        let mut child = Command::new(bin("crash_writer"))
            .arg(dir.path())
            .arg(start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a random number of reported operations (1..=60), so every
        // round kills mid-stream, at a random point of some operation.
        let target = 1 + (next() % 60) as usize;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        // Wait until the writer has reported `target` operations, then kill
        // it a random few hundred microseconds into what follows.
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while lines.len() < target {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(e) => panic!("round {round}: the writer stopped reporting: {e:?}"),
            }
        }
        std::thread::sleep(Duration::from_micros(next() % 3000));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        total_lines += lines.len();
        for l in &lines {
            let parts: Vec<&str> = l.split(' ').collect();
            let e = expect.entry(parts[1].to_string()).or_default();
            match parts[0] {
                "holder" => e.exists = true,
                "pin" => e.pin = Some(parts[2].to_string()),
                "card" => e.card = Some(parts[2].to_string()),
                "delete" => {
                    tombstones.extend(e.pin.take());
                    *e = Expect::default();
                }
                other => panic!("unknown line {other}"),
            }
        }
        // The operation in flight at the kill may or may not have landed;
        // only a delete changes what was reported, so forget that holder.
        if let Some(last) = lines.last() {
            let parts: Vec<&str> = last.split(' ').collect();
            let n: u64 = parts[1][1..].parse().unwrap();
            if parts[0] == "card" && n % 7 == 3 {
                expect.remove(parts[1]);
            }
        }
        start += 1000;

        let key = secret::load_or_create(&dir.path().join("device.key"), false).unwrap();
        // Checked against its record as porterd checks it: a SIGKILL is not
        // damage (the record is written only after the store's flush).
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let opened = recover::open(dir.path(), 4 << 20, recover::OnDamage::Refuse, recover::Restore::Restrictive, now)
            .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        assert!(opened.recovery.is_none());
        let store = opened.store;
        let svc = KeyService::open(store, secret::KeyHasher::new(&key), vec!["main".into()], 6).unwrap();
        let snap = svc.live().load_full();
        svc.holder_put(HolderSpec::new("probe", "probe", Role::Courier)).unwrap();
        for pin in &tombstones {
            let r = svc.pin_set("probe", pin).map_err(|e| e.code.as_str());
            assert_eq!(r, Err("duplicate"), "round {round}: a deleted holder's PIN could be set again");
        }
        for (id, e) in &expect {
            let got = svc.holder_get(id);
            assert_eq!(got.is_ok(), e.exists, "round {round}: holder {id}: {got:?}");
            let try_key = |kind, v: &[u8]| {
                let r = Request {
                    door: 0,
                    device: 0,
                    kind,
                    key: svc.hasher().hash(kind, v),
                    now_ms: 0,
                    local: LocalTime { weekday: 0, minute: 0 },
                    device_locked: false,
                    clock_untrusted: false,
                    spent: 0,
                };
                decide(&snap, &r).is_grant()
            };
            if let Some(pin) = &e.pin {
                assert!(try_key(KeyKind::Pin, pin.as_bytes()), "round {round}: {id}'s acknowledged PIN is lost");
            }
            if let Some(uid) = &e.card {
                let uid = CardUid::parse_hex(uid).unwrap();
                assert!(try_key(KeyKind::Card, uid.as_bytes()), "round {round}: {id}'s acknowledged card is lost");
            }
        }
    }
    assert!(total_lines >= 50, "the writer reported only {total_lines} operations in 50 rounds");
}
