//! The files kept beside the store, as a tampered or failing disk holds
//! them: a snapshot (`store::snapshot::decode`) and the check record
//! (`store::check::parse`, then `check::verify` against what the store says).
//!
//! The first byte picks what the rest is:
//! - bit 0 clear: a check record's bytes, then after the first 0xFF byte the
//!   store's own `m/store_id` value (any bytes, as a tampered store holds
//!   them). Properties: a parsed record written out parses to itself; the
//!   damage that `verify` reports (it reaches the log) holds no control
//!   character.
//! - bit 0 set: a snapshot file; with bit 1 set the target appends the
//!   SHA-256 trailer so that the fuzzer gets past the checksum. Properties:
//!   without a matching trailer nothing is read; what is read sorts holders
//!   (`h/a/`) from the rest, and the rest is only what a snapshot is written
//!   from (tombstones, lockout states, spent uses, portal keys' counters).
#![no_main]

use libfuzzer_sys::fuzz_target;
use porterd::store::check::{self, CheckRecord, Found};
use porterd::store::records::{self, Space};
use porterd::store::snapshot;
use sha2::Digest;

fn check_record(flags: u8, data: &[u8]) {
    let (rec, id) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(rec) = check::parse(rec) else { return };
    let again: CheckRecord = check::parse(&serde_json::to_vec(&rec).unwrap()).expect("a written record parses");
    assert_eq!(again, rec);
    let n = u64::from(flags >> 2);
    let found = Found {
        store_id: id.map(|b| String::from_utf8_lossy(b).into_owned()),
        changes: n,
        generation: n,
        seq: n,
        has_data: flags & 2 != 0,
    };
    if let Err(d) = check::verify(&found, Some(&rec)) {
        let text = d.to_string();
        assert!(!text.chars().any(char::is_control), "the damage reaches the log with a control character: {text:?}");
    }
}

fn snapshot_file(flags: u8, data: &[u8]) {
    let mut file = data.to_vec();
    if flags & 2 != 0 {
        file.extend_from_slice(&sha2::Sha256::digest(data));
    }
    let Some(c) = snapshot::decode(&file) else { return };
    let (body, sum) = file.split_at(file.len() - 32);
    assert_eq!(sha2::Sha256::digest(body).as_slice(), sum, "read without a matching checksum");
    let holders = Space::A.holders();
    assert!(c.holders.iter().all(|(k, _)| k.starts_with(&holders)));
    // The rest only under the prefixes a snapshot is written from: a restore
    // puts them into the store as they are.
    let written = [records::TOMBSTONE, records::LOCKOUT, records::USES, records::SIGNED_COUNTER];
    for (k, _) in &c.restrictive {
        assert!(written.iter().any(|p| k.starts_with(p)), "a snapshot restores {:?}", String::from_utf8_lossy(k));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    if flags & 1 == 0 {
        check_record(flags, rest);
    } else {
        snapshot_file(flags, rest);
    }
});
