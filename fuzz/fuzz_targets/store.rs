//! A corrupt or tampered store as the daemon reads it at start and while it
//! serves commands: the input is a list of records written into a temporary
//! store, under the prefixes the daemon keeps (holders and the key index of
//! both spaces, tombstones, lockout states, spent uses, portal keys'
//! counters, stored replies, the open sync, the counters of `m/`). Then
//! everything that decodes them runs: `Store::found`, `KeyService::open`
//! (the live snapshot, the staged sync), `state.get`, `holder.list`,
//! `holder.get`, `pin.generate` (tombstones), a `sync.put` and
//! `sync.commit` (the open sync's state), the stored replies
//! (`Replies::get`), the lockout states (`load_lockouts`, then the lockout
//! state machine) and the replay guard's counters (`Guard::last`).
//!
//! Each record is: a byte picking the prefix (modulo the list below), a
//! byte of key length and that many bytes of key after the prefix, two
//! bytes (little endian) of value length and the value. Property: no
//! panic: a corrupt store gives errors, and the daemon keeps answering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porterd::access::hasher::KeyHasher;
use porterd::access::lockout::LockoutPolicy;
use porterd::provision::replies::Replies;
use porterd::provision::signed::Guard;
use porterd::provision::KeyService;
use porterd::store::{Batch, Store};
use std::sync::Arc;

/// The prefixes of the daemon's records (`store::records`; the replies'
/// `r/` and `q/` are `provision::replies`' own).
fn prefixes() -> Vec<Vec<u8>> {
    use porterd::store::records::*;
    let mut p = vec![Space::A.holders(), Space::B.holders(), Space::A.keys(), Space::B.keys()];
    p.extend([b"x/a/".to_vec(), b"x/b/".to_vec(), b"r/s:".to_vec(), b"q/".to_vec()]);
    p.extend(
        [TOMBSTONE, LOCKOUT, USES, SIGNED_COUNTER, AUDIT, ACTIVE, SYNC, SYNC_CLEAR, GENERATION, SEQ]
            .into_iter()
            .chain([REPLY_SEQ, CHANGES, STORE_ID, NEEDS_SYNC])
            .map(<[u8]>::to_vec),
    );
    p
}

fn records(mut data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let prefixes = prefixes();
    let mut out = Vec::new();
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = data.split_at_checked(n.min(data.len()))?;
        data = b;
        Some(a)
    };
    while let Some(&[p, kl]) = take(2).and_then(|b| <&[u8; 2]>::try_from(b).ok()) {
        let prefix = &prefixes[usize::from(p) % prefixes.len()];
        let key = [prefix.as_slice(), take(usize::from(kl)).unwrap_or_default()].concat();
        let vl = take(2).and_then(|b| <[u8; 2]>::try_from(b).ok()).map_or(0, u16::from_le_bytes);
        let value = take(usize::from(vl)).unwrap_or_default().to_vec();
        out.push((key, value));
    }
    out
}

fn after<'a>(recs: &'a [(Vec<u8>, Vec<u8>)], prefix: &'a [u8]) -> impl Iterator<Item = String> + 'a {
    recs.iter().filter_map(move |(k, _)| k.strip_prefix(prefix)).map(|k| String::from_utf8_lossy(k).into_owned())
}

fuzz_target!(|data: &[u8]| {
    let recs = records(data);
    let store = Store::temporary().expect("a temporary store");
    let mut b = Batch::default();
    for (k, v) in &recs {
        b.put(k.clone(), v.clone());
    }
    store.apply(b).expect("records written");
    let _ = store.found();

    if let Ok(svc) = KeyService::open(store.clone(), KeyHasher::new(b"fuzz-secret-0123"), vec!["main".into()], 6) {
        let _ = svc.state();
        let _ = svc.counts();
        let _ = svc.holder_list(None, None, 50);
        for id in after(&recs, b"h/").map(|k| k.get(2..).unwrap_or_default().to_string()).take(8) {
            let _ = svc.holder_get(&id);
            let _ = svc.pin_generate(&id);
        }
        let _ = svc.sync_put(Vec::new());
        let _ = svc.sync_commit();
        let _ = svc.state();
    }

    let replies = Replies::new(store.clone());
    for key in after(&recs, b"r/").take(8) {
        let _ = replies.get(&key, "digest", None);
        let _ = replies.get(&key, "digest", Some("portal-a"));
    }

    let devices: Vec<String> = after(&recs, b"l/").take(8).collect();
    let p = LockoutPolicy::default();
    for mut s in porterd::runtime::decisions::load_lockouts(&store, &devices) {
        for (now, day) in [(0, 0), (i64::MAX, i32::MAX), (i64::MIN, i32::MIN), (1_800_000_000_000, 20_833)] {
            let _ = s.is_locked(&p, now, day);
            let _ = s.failure(&p, now, day);
            s.rebase(day);
            s.success();
        }
        s.clear();
    }

    let ids: Vec<String> = after(&recs, b"s/").take(8).collect();
    let keys: Vec<porterd::config::PortalKey> =
        ids.iter().map(|id| porterd::config::PortalKey { id: id.clone(), key: [0; 32] }).collect();
    let guard = Guard::new(&keys, true, ("c", "a"), store, Arc::new(|| true), Arc::new(|| 0));
    for id in &ids {
        let _ = guard.last(id);
    }
});
