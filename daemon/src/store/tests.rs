//! The store against a `BTreeMap` model under random batches, scans and
//! reopenings (sled's own habit).

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Batch(Vec<(u8, Option<u8>)>),
    Get(u8),
    Scan(u8),
    ScanAfter(u8, u8),
    Last(u8),
    Reopen,
}

fn key(k: u8) -> Vec<u8> {
    // Two prefixes so scans have something to separate.
    vec![if k.is_multiple_of(2) { b'x' } else { b'y' }, b'/', k / 2]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec((0u8..40, proptest::option::of(any::<u8>())), 1..6).prop_map(Op::Batch),
        2 => (0u8..40).prop_map(Op::Get),
        1 => (0u8..2).prop_map(Op::Scan),
        1 => (0u8..2, 0u8..20).prop_map(|(p, s)| Op::ScanAfter(p, s)),
        1 => (0u8..2).prop_map(Op::Last),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn behaves_like_a_btreemap(ops in proptest::collection::vec(arb_op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Batch(writes) => {
                    let mut b = Batch::default();
                    for (k, v) in writes {
                        match v {
                            Some(v) => { b.put(key(k), vec![v]); model.insert(key(k), vec![v]); }
                            None => { b.remove(key(k)); model.remove(&key(k)); }
                        }
                    }
                    store.apply(b).unwrap();
                }
                Op::Get(k) => prop_assert_eq!(store.get(&key(k)).unwrap(), model.get(&key(k)).cloned()),
                Op::Scan(p) => {
                    let prefix = [if p == 0 { b'x' } else { b'y' }, b'/'];
                    let got: Vec<_> = store.scan(&prefix).map(|r| r.unwrap()).collect();
                    let want: Vec<_> = model.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
                    prop_assert_eq!(got, want);
                }
                Op::ScanAfter(p, s) => {
                    let prefix = [if p == 0 { b'x' } else { b'y' }, b'/'];
                    let start = [prefix[0], b'/', s];
                    let got: Vec<_> = store.scan_after(&prefix, &start).map(|r| r.unwrap()).collect();
                    let want: Vec<_> = model.iter().filter(|(k, _)| k.starts_with(&prefix) && k.as_slice() > start.as_slice()).map(|(k, v)| (k.clone(), v.clone())).collect();
                    prop_assert_eq!(got, want);
                }
                Op::Last(p) => {
                    let prefix = [if p == 0 { b'x' } else { b'y' }, b'/'];
                    let want = model.iter().rev().find(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| (k.clone(), v.clone()));
                    prop_assert_eq!(store.last(&prefix).unwrap(), want);
                }
                Op::Reopen => {
                    drop(store);
                    store = Store::open(dir.path(), 1 << 20).unwrap();
                }
            }
        }
    }
}

#[test]
fn a_store_in_use_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let _held = Store::open(dir.path(), 1 << 20).unwrap();
    let err = Store::open(dir.path(), 1 << 20).err().unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn refuses_another_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let mut b = Batch::default();
        b.put(SCHEMA_KEY.to_vec(), b"999".to_vec());
        s.apply(b).unwrap();
    }
    let err = Store::open(dir.path(), 1 << 20).err().unwrap().to_string();
    assert!(err.contains("schema version 999"), "{err}");
}
