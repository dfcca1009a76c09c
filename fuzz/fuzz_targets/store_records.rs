//! Store records as a corrupt or tampered store holds them: the input is a
//! stored value for each decoder of `store::records` (a holder, a limited
//! key's uses). A decoded holder is loaded as the key service loads it at
//! start (its profile and keys into a snapshot table) and looked up.
//! Round trips: a decoded record encodes back to a value that decodes to it,
//! under its own id's key too.
//! Properties: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porterd::access::Snapshot;
use porterd::store::records::{HolderRecord, Spent};

fuzz_target!(|data: &[u8]| {
    if let Some(s) = Spent::decode(data) {
        assert_eq!(Spent::decode(&s.encode()), Some(s));
    }
    // Under `h/`, a key naming no id: the record's own id is not compared.
    let Ok(rec) = HolderRecord::decode(b"h/", data) else { return };
    // Under its own id's key, as the store keeps it, the record reads the same.
    let key = [b"h/a/".as_slice(), rec.id.as_bytes()].concat();
    assert_eq!(HolderRecord::decode(&key, data).unwrap(), rec);
    assert_eq!(HolderRecord::decode(&key, &rec.encode()).unwrap(), rec);
    let doors = ["front".to_string(), "back".to_string()];
    let keys = rec.keys();
    let mut table = Snapshot::builder(keys.len(), 1);
    let row = table.profile(&rec.profile(&doors));
    for &(h, kind, active) in &keys {
        table.key(h, row, kind, active);
    }
    let snap = table.finish();
    for (h, _, _) in &keys {
        let found = snap.get(h).expect("a key loaded is found");
        assert_eq!(found.holder.id, rec.id);
    }
});
