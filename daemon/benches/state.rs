//! What `state.get` costs as retired PINs pile up: `KeyService::state` on a
//! store of 1,000 holders (each with a PIN) and 0, 10,000 and 100,000
//! tombstones of retired PINs, each within the retention period (held back).
//!
//! Run with `cargo bench -p porterd --bench state` (release profile; one run
//! at a time: it is timing the store). Each size gets its own store on disk in
//! a temporary folder, opened with the daemon's default cache (4 MiB), 3
//! untimed calls, then 30 timed ones; it prints p50, p90 and max in ms.

use porterd::access::{KeyHash, Role};
use porterd::provision::keys::{HolderSpec, KeyService};
use porterd::store::records;
use porterd::store::secret::KeyHasher;
use porterd::store::{Batch, Store};
use std::time::Instant;

const HOLDERS: usize = 1_000;
const CALLS: usize = 30;

fn main() {
    println!("state.get with {HOLDERS} holders, {CALLS} calls after 3 untimed; times in ms");
    for tombstones in [0usize, 10_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), 4 << 20).unwrap();
        let svc =
            KeyService::open(store.clone(), KeyHasher::new(b"bench-secret-0123"), vec!["main".into()], 6).unwrap();
        for i in 0..HOLDERS {
            let id = format!("holder-{i:05}");
            svc.holder_put(HolderSpec::new(&id, &id, Role::Courier)).unwrap();
            svc.pin_generate(&id).unwrap();
        }
        // Tombstones as pin.delete writes them: `t/` + keyed hash -> retirement time.
        let now = svc.now_ms().to_string();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for chunk in (0..tombstones).collect::<Vec<_>>().chunks(10_000) {
            let mut b = Batch::default();
            for _ in chunk {
                let mut h = [0u8; KeyHash::LEN];
                for byte in h.iter_mut() {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    *byte = rng as u8;
                }
                b.put(records::tombstone_key(&KeyHash(h)), now.clone().into_bytes());
            }
            store.apply(b).unwrap();
        }
        let free = svc.state().unwrap().pin_space_free;
        for _ in 0..3 {
            std::hint::black_box(svc.state().unwrap());
        }
        let mut ms: Vec<f64> = (0..CALLS)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(svc.state().unwrap());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        println!(
            "tombstones {tombstones:>7}: p50 {:8.3}  p90 {:8.3}  max {:8.3}   (pin_space_free {free})",
            at(0.5),
            at(0.9),
            at(1.0)
        );
    }
}
