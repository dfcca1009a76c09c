//! The store's size on disk under churn (sled has reports of disk growth
//! under churn): a day's work over and over, on one store, with a page
//! cache as small as a Raspberry Pi's. Each round re-syncs the same 500
//! holders four times (a full replace: every record rewritten in the other
//! space), toggles and replaces keys, adds and deletes holders with cards,
//! and writes 4,000 events into an audit log that keeps 1,000. After a
//! warm-up the size must stop growing: what churn frees is reused.

use porter_drivers::CardUid;
use porterd::access::Role;
use porterd::event::{Event, Presented};
use porterd::provision::keys::{is_trivial, HolderSpec, KeyService, SyncHolder};
use porterd::runtime::audit::{self, Draft};
use porterd::store::{secret::KeyHasher, Store};
use std::path::Path;

const HOLDERS: usize = 500;
/// Rounds by default; `CHURN_ROUNDS=N` for a longer run.
const ROUNDS: usize = 21;

fn holders() -> Vec<SyncHolder> {
    // Distinct six-digit PINs: a fixed stride through the space, the trivial ones left out.
    let mut pins =
        (0..).map(|j: usize| format!("{:06}", (100_003 + j * 7_919) % 1_000_000)).filter(|p| !is_trivial(p.as_bytes()));
    (0..HOLDERS)
        .map(|i| SyncHolder {
            spec: HolderSpec::new(&format!("h{i}"), &format!("Holder {i}"), Role::Resident),
            pin: pins.next().map(|p| (p, true, None)),
            qr: None,
            cards: vec![(CardUid::parse_hex(&format!("{:08x}", 0x5000_0000 + i)).unwrap(), true)],
        })
        .collect()
}

/// Bytes the store's files take on disk (blocks, not lengths: sparse files
/// count for what they hold).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { disk_bytes(&e.path()) } else { m.blocks() * 512 };
    }
    total
}

#[test]
fn the_store_stops_growing_under_churn() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 4 << 20).unwrap();
    let svc = KeyService::open(store.clone(), KeyHasher::new(b"churn-test-secret"), vec!["main".into()], 6).unwrap();
    let (audit, writer) = audit::start(store.clone(), 1_000).unwrap();
    let set = holders();
    let rounds = std::env::var("CHURN_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(ROUNDS).max(6);
    let mut sizes = Vec::new();
    for round in 0..rounds {
        for sync in 0..4 {
            svc.sync_begin(round as u64 * 4 + sync + 1).unwrap();
            for chunk in set.chunks(250) {
                svc.sync_put(chunk.to_vec()).unwrap();
            }
            svc.sync_commit().unwrap();
        }
        for i in (0..HOLDERS).step_by(10) {
            let id = format!("h{i}");
            svc.pin_set_active(&id, false).unwrap();
            svc.pin_set_active(&id, true).unwrap();
            svc.qr_generate(&id).unwrap();
        }
        for i in 0..50 {
            let id = format!("temp-{round}-{i}");
            svc.holder_put(HolderSpec::new(&id, "Temp", Role::Courier)).unwrap();
            svc.card_assign(&id, &CardUid::parse_hex(&format!("{:08x}", 0x7000_0000 + i)).unwrap()).unwrap();
            svc.holder_delete(&id).unwrap();
        }
        for i in 0..4_000 {
            let presented = Presented {
                door: "main".into(),
                device: "keypad1".into(),
                key: "pin",
                holder: Some(format!("h{i}")),
                card_device: None,
            };
            let event = Event::AccessGranted { presented, lock: None, uses_left: None };
            audit.record(Draft { ts_ms: 1_700_000_000_000 + i, event });
        }
        audit.wait_written();
        assert_eq!(audit.dropped(), 0, "events were dropped: the sizes would be low");
        store.flush().unwrap();
        sizes.push(disk_bytes(dir.path()));
    }
    drop(audit);
    writer.join().unwrap();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!("size per round, MiB: {:?}", sizes.iter().map(|&b| (mib(b) * 10.0).round() / 10.0).collect::<Vec<_>>());
    // After a warm-up of a third of the rounds, the last third is no larger
    // than the middle third, but for the swing of sled's segment cleaning
    // (0.5 MiB here, flat at 2.5-3.0 MiB over 60 rounds). Every round writes
    // about 1 MiB: a store that kept any good part of it would grow past that.
    let third = rounds / 3;
    let middle = *sizes[third..2 * third].iter().max().unwrap();
    let last = *sizes[2 * third..].iter().max().unwrap();
    assert!(
        last <= middle + (1 << 20),
        "the store keeps growing under churn: {:.1} MiB in the middle rounds, {:.1} MiB in the last",
        mib(middle),
        mib(last)
    );
}
