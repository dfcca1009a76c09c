use super::*;
use crate::access::{decide, schedule::LocalTime, Reason, Request};
use crate::provision::ErrorCode;
use crate::store::secret::KeyHasher;
use porter_drivers::CardUid;

fn svc() -> KeyService {
    KeyService::open(
        Store::temporary().unwrap(),
        KeyHasher::new(b"test-secret-0123"),
        vec!["main".into(), "back".into()],
        6,
    )
    .unwrap()
}

/// A key service over a store in `dir` (opened again by a second call).
fn open_at(dir: &std::path::Path) -> KeyService {
    KeyService::open(Store::open(dir, 1 << 20).unwrap(), KeyHasher::new(b"test-secret-0123"), vec!["main".into()], 6)
        .unwrap()
}

/// A clock that stands still until a test moves it.
struct TestClock(std::sync::atomic::AtomicI64);

impl TestClock {
    /// A clock at 2026-11-25T16:00:00Z.
    fn new() -> Arc<Self> {
        Arc::new(TestClock(1_795_622_400_000.into()))
    }
    fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// [`open_at`] reading the time from `clock`.
fn open_at_clock(dir: &std::path::Path, clock: &Arc<TestClock>) -> KeyService {
    open_at(dir).with_clock(clock.clone())
}

/// A typed result as the reply's JSON, as the portal reads it.
trait Json {
    fn json(&self) -> serde_json::Value;
}

impl<T: serde::Serialize> Json for T {
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap()
    }
}

fn spec(id: &str) -> HolderSpec {
    HolderSpec::new(id, &id.to_uppercase(), Role::Courier)
}

fn try_key(s: &KeyService, kind: KeyKind, value: impl AsRef<[u8]>) -> Option<Reason> {
    let snap = s.live().load_full();
    let r = Request {
        door: 0,
        device: 0,
        kind,
        key: s.hasher().hash(kind, value.as_ref()),
        now_ms: s.now_ms(),
        local: LocalTime { weekday: 0, minute: 600 },
        device_locked: false,
        clock_untrusted: false,
        spent: 0,
    };
    decide(&snap, &r).reason()
}

#[test]
fn trivial_pins() {
    for p in ["000000", "123456", "111111", "654321", "890123", "121212", "123123", "987654"] {
        assert!(is_trivial(p.as_bytes()), "{p}");
    }
    assert!(is_trivial(b"1212"));
    for p in ["483920", "102938", "112233", "5915", "59154"] {
        assert!(!is_trivial(p.as_bytes()), "{p}");
    }
}

#[test]
fn generated_pins_open_and_are_never_shown_again() {
    let s = svc();
    s.holder_put(spec("courier-ups")).unwrap();
    let pin = s.pin_generate("courier-ups").unwrap();
    assert_eq!(pin.len(), 6);
    assert!(!is_trivial(pin.as_bytes()));
    assert_eq!(try_key(&s, KeyKind::Pin, &pin), None);
    let view = s.holder_get("courier-ups").unwrap().json().to_string();
    assert!(!view.contains(&pin), "{view}");
    assert!(view.contains("\"pin\":{\"active\":true"), "{view}");

    s.pin_set_active("courier-ups", false).unwrap();
    assert_eq!(try_key(&s, KeyKind::Pin, &pin), Some(Reason::Inactive));
    s.pin_set_active("courier-ups", true).unwrap();
    assert_eq!(try_key(&s, KeyKind::Pin, &pin), None);
}

/// In a crowded PIN space (4 digits, a quarter of it live or tombstoned)
/// pin.generate redraws until it finds a PIN nobody has and nobody had.
#[test]
fn generate_redraws_pins_in_use_or_tombstoned() {
    let s = KeyService::open(Store::temporary().unwrap(), KeyHasher::new(b"test-secret-0123"), vec!["main".into()], 4)
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    // 500 PINs drawn for one holder: each replaced one becomes a tombstone.
    s.holder_put(spec("t")).unwrap();
    for _ in 0..500 {
        let pin = s.pin_generate("t").unwrap();
        assert!(seen.insert(pin.clone()), "{pin} drawn again after it was deleted");
    }
    // 2,000 holders with a PIN each, drawn from what is left.
    for i in 0..2000 {
        let id = format!("h{i}");
        s.holder_put(spec(&id)).unwrap();
        let pin = s.pin_generate(&id).unwrap();
        assert_eq!(pin.len(), 4);
        assert!(!is_trivial(pin.as_bytes()), "{pin}");
        assert!(seen.insert(pin.clone()), "{pin} is in use or tombstoned");
        assert_eq!(try_key(&s, KeyKind::Pin, &pin), None);
    }
}

/// A deactivated PIN set again with limits is a new key: active, counted afresh.
#[test]
fn a_pin_made_again_with_limits_is_active() {
    let s = svc();
    s.holder_put(spec("st-1")).unwrap();
    s.pin_set("st-1", "483920").unwrap();
    s.pin_set_active("st-1", false).unwrap();
    // The same PIN again without limits changes nothing: still off.
    s.pin_set("st-1", "483920").unwrap();
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), Some(Reason::Inactive));
    let limit = KeyLimit { uses: Some(2), expires_ms: None };
    s.pin_set_limited("st-1", "483920", Some(limit)).unwrap();
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), None);
    assert_eq!(s.holder_get("st-1").unwrap().json()["keys"]["pin"]["active"], true);
}

#[test]
fn pin_set_checks_duplicates_and_tombstones() {
    let s = svc();
    s.holder_put(spec("a")).unwrap();
    s.holder_put(spec("b")).unwrap();
    s.pin_set("a", "483920").unwrap();
    assert_eq!(s.pin_set("b", "483920").unwrap_err().code, ErrorCode::Duplicate);
    s.pin_set("a", "483920").unwrap(); // the same holder again: fine
    assert_eq!(s.pin_set("b", "123456").unwrap_err().code, ErrorCode::Invalid);
    assert_eq!(s.pin_set("b", "48392").unwrap_err().code, ErrorCode::Invalid);
    assert_eq!(s.pin_set("nobody", "502817").unwrap_err().code, ErrorCode::NotFound);

    // Replacing a PIN retires the old one for good.
    s.pin_set("a", "502817").unwrap();
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), Some(Reason::Unknown));
    assert_eq!(s.pin_set("b", "483920").unwrap_err().code, ErrorCode::Duplicate);
    s.pin_delete("a").unwrap();
    assert_eq!(s.pin_set("a", "502817").unwrap_err().code, ErrorCode::Duplicate);
    assert_eq!(s.pin_delete("a").unwrap_err().code, ErrorCode::NotFound);
}

#[test]
fn cards_and_qr() {
    let s = svc();
    s.holder_put(spec("a")).unwrap();
    s.holder_put(spec("b")).unwrap();
    let uid = CardUid::parse_hex("04a1b2c3").unwrap();
    s.card_assign("a", &uid).unwrap();
    s.card_assign("a", &uid).unwrap();
    assert_eq!(s.card_assign("b", &uid).unwrap_err().code, ErrorCode::Duplicate);
    assert_eq!(try_key(&s, KeyKind::Card, uid.as_bytes()), None);
    assert_eq!(s.card_set_active(&uid, false).unwrap(), "a");
    assert_eq!(try_key(&s, KeyKind::Card, uid.as_bytes()), Some(Reason::Inactive));
    let view = s.holder_get("a").unwrap().json();
    assert_eq!(view["keys"]["cards"][0]["hint"], "b2c3");
    assert_eq!(view["keys"]["cards"][0]["active"], false);
    s.card_delete(&uid).unwrap();
    assert_eq!(s.card_delete(&uid).unwrap_err().code, ErrorCode::NotFound);
    s.card_assign("b", &uid).unwrap();

    let token = s.qr_generate("a").unwrap();
    assert!(token.len() >= 22 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(try_key(&s, KeyKind::Qr, &token), None);
    let token2 = s.qr_generate("a").unwrap();
    assert_eq!(try_key(&s, KeyKind::Qr, &token), Some(Reason::Unknown));
    s.qr_set_active("a", false).unwrap();
    assert_eq!(try_key(&s, KeyKind::Qr, &token2), Some(Reason::Inactive));
    s.qr_delete("a").unwrap();
    assert_eq!(try_key(&s, KeyKind::Qr, &token2), Some(Reason::Unknown));
}

#[test]
fn holder_changes_reach_the_snapshot_and_delete_tombstones_the_pin() {
    let s = svc();
    s.holder_put(spec("a")).unwrap();
    s.pin_set("a", "483920").unwrap();
    s.holder_put(HolderSpec { enabled: false, ..spec("a") }).unwrap();
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), Some(Reason::HolderDisabled));
    s.holder_put(HolderSpec { doors: Some(vec!["back".into()]), ..spec("a") }).unwrap();
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), Some(Reason::WrongDoor));
    s.holder_delete("a").unwrap();
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), Some(Reason::Unknown));
    s.holder_put(spec("a")).unwrap();
    assert_eq!(s.pin_set("a", "483920").unwrap_err().code, ErrorCode::Duplicate);
    assert_eq!(s.state().unwrap().pins, 0);
}

#[test]
fn list_pages_and_state_counts() {
    let s = svc();
    for i in 0..25 {
        s.holder_put(HolderSpec {
            role: if i % 5 == 0 { Role::Staff } else { Role::Courier },
            ..spec(&format!("h{i:02}"))
        })
        .unwrap();
    }
    let p1 = s.holder_list(None, None, 10).unwrap().json();
    assert_eq!(p1["holders"].as_array().unwrap().len(), 10);
    assert_eq!(p1["next"], "h09");
    let p3 = s.holder_list(None, Some("h19"), 10).unwrap().json();
    assert_eq!(p3["holders"].as_array().unwrap().len(), 5);
    assert_eq!(p3["next"], serde_json::Value::Null);
    let staff = s.holder_list(Some(Role::Staff), None, 100).unwrap().json();
    assert_eq!(staff["holders"].as_array().unwrap().len(), 5);
    s.pin_generate("h03").unwrap();
    let st = s.state().unwrap();
    assert_eq!((st.holders, st.pins, st.qr, st.cards), (25, 1, 0, 0));
    assert_eq!(st.digest.len(), 64);
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let open = || open_at(dir.path());
    let pin = {
        let s = open();
        s.holder_put(spec("a")).unwrap();
        s.pin_generate("a").unwrap()
    };
    let s = open();
    assert_eq!(try_key(&s, KeyKind::Pin, &pin), None);
}

fn sync_holder(id: &str, pin: Option<&str>, card: Option<&str>) -> SyncHolder {
    SyncHolder {
        spec: spec(id),
        pin: pin.map(|p| (p.to_string(), true, None)),
        qr: None,
        cards: card.map(|c| vec![(CardUid::parse_hex(c).unwrap(), true)]).unwrap_or_default(),
    }
}

#[test]
fn a_full_sync_replaces_the_set_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let open = || open_at(dir.path());
    {
        let s = open();
        s.holder_put(spec("old")).unwrap();
        s.pin_set("old", "483920").unwrap();
        assert_eq!(s.sync_put(vec![]).unwrap_err().code, ErrorCode::Invalid, "no sync open");
        s.sync_begin(5).unwrap();
        s.sync_put(vec![sync_holder("new-1", Some("502817"), Some("04a1b2c3")), sync_holder("new-2", None, None)])
            .unwrap();
        // Staged only: the old set still decides, the new one does not yet.
        assert_eq!(try_key(&s, KeyKind::Pin, "483920"), None);
        assert_eq!(try_key(&s, KeyKind::Pin, "502817"), Some(Reason::Unknown));
        assert_eq!(s.state().unwrap().holders, 1);
        // The daemon dies here: nothing committed.
    }
    {
        let s = open();
        assert_eq!(try_key(&s, KeyKind::Pin, "483920"), None, "the old set is fully in force");
        assert_eq!(s.state().unwrap().generation, 0);
        // The sync can go on after the restart, and duplicates are refused.
        let dup = s.sync_put(vec![sync_holder("new-3", Some("502817"), None)]).unwrap_err();
        assert_eq!(dup.code, ErrorCode::Duplicate, "{dup:?}");
        let dup = s.sync_put(vec![sync_holder("x", None, Some("04a1b2c3"))]).unwrap_err();
        assert_eq!(dup.code, ErrorCode::Duplicate);
        let r = s.sync_commit().unwrap().json();
        assert_eq!(r["generation"], 5);
        assert_eq!(r["holders"], 2);
        assert_eq!(try_key(&s, KeyKind::Pin, "502817"), None);
        assert_eq!(try_key(&s, KeyKind::Card, [0x04, 0xa1, 0xb2, 0xc3]), None);
        assert_eq!(try_key(&s, KeyKind::Pin, "483920"), Some(Reason::Unknown));
        assert!(s.holder_get("old").is_err());
        // The dropped PIN is retired for good; older generations are stale.
        s.holder_put(spec("again")).unwrap();
        assert_eq!(s.pin_set("again", "483920").unwrap_err().code, ErrorCode::Duplicate);
        assert_eq!(s.sync_begin(5).unwrap_err().code, ErrorCode::Stale);
        assert_eq!(s.sync_commit().unwrap_err().code, ErrorCode::Invalid, "the sync is closed");
    }
    let s = open();
    assert_eq!(s.state().unwrap().generation, 5);
    assert_eq!(try_key(&s, KeyKind::Pin, "502817"), None, "the new set survives a restart");
    // A second sync stages in the other space and flips back.
    s.sync_begin(6).unwrap();
    s.sync_put(vec![sync_holder("only", Some("730194"), None)]).unwrap();
    s.sync_commit().unwrap();
    assert_eq!(s.state().unwrap().holders, 1);
    assert_eq!(try_key(&s, KeyKind::Pin, "730194"), None);
    assert_eq!(try_key(&s, KeyKind::Pin, "502817"), Some(Reason::Unknown));
}

#[test]
fn sync_put_refuses_a_holder_twice_and_trivial_pins() {
    let s = svc();
    s.sync_begin(1).unwrap();
    let e = s.sync_put(vec![sync_holder("a", Some("502817"), None), sync_holder("a", None, None)]).unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
    assert!(e.message.contains("listed twice"), "{e:?}");
    let e = s.sync_put(vec![sync_holder("b", Some("111111"), None)]).unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
    // Nothing of a refused message was staged.
    s.sync_put(vec![sync_holder("c", Some("502817"), None)]).unwrap();
    assert_eq!(s.sync_commit().unwrap().json()["holders"], 1);
}

/// The counts kept for the status document agree with a scan of the store
/// through every kind of change, a full sync and a reopen.
#[test]
fn kept_counts_agree_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let open = || open_at(dir.path());
    let agree = |s: &KeyService| {
        let (c, st) = (s.counts(), s.state().unwrap());
        assert_eq!((c.holders, c.pins, c.qr, c.cards), (st.holders, st.pins, st.qr, st.cards));
    };
    let s = open();
    for i in 0..6 {
        s.holder_put(spec(&format!("h{i}"))).unwrap();
    }
    s.pin_generate("h0").unwrap();
    s.pin_generate("h1").unwrap();
    s.qr_generate("h1").unwrap();
    s.card_assign("h2", &CardUid::parse_hex("04a1b2c3").unwrap()).unwrap();
    s.card_assign("h2", &CardUid::parse_hex("04a1b2c4").unwrap()).unwrap();
    agree(&s);
    s.pin_delete("h0").unwrap();
    s.qr_delete("h1").unwrap();
    s.card_delete(&CardUid::parse_hex("04a1b2c3").unwrap()).unwrap();
    s.holder_delete("h1").unwrap();
    s.holder_put(spec("h2")).unwrap();
    agree(&s);
    assert_eq!(s.counts(), Counts { holders: 5, pins: 0, qr: 0, cards: 1 });
    s.sync_begin(3).unwrap();
    s.sync_put(vec![sync_holder("x", Some("483920"), Some("0a0b0c0d")), sync_holder("y", None, None)]).unwrap();
    s.sync_commit().unwrap();
    agree(&s);
    assert_eq!(s.counts(), Counts { holders: 2, pins: 1, qr: 0, cards: 1 });
    drop(s);
    let s = open();
    agree(&s);
    assert_eq!(s.counts().holders, 2);
}

/// A store written by schema 1 (JSON holder records, 32-byte keyed hashes)
/// is migrated at open: its keys still open the door, its index still
/// refuses duplicates, its tombstones still refuse a deleted PIN, and a
/// card keeps the id the portal saw.
#[test]
fn a_schema_1_store_is_migrated_and_keeps_deciding() {
    use hmac::{Hmac, Mac};
    let full = |kind: KeyKind, v: &[u8]| -> [u8; 32] {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"test-secret-0123").unwrap();
        m.update(&[kind.tag()]);
        m.update(v);
        m.finalize().into_bytes().into()
    };
    let (pin, card, dead) =
        (full(KeyKind::Pin, b"483920"), full(KeyKind::Card, &[0x04, 0xa1, 0xb2, 0xc3]), full(KeyKind::Pin, b"502817"));
    let holder = serde_json::json!({
        "id": "courier-ups", "name": "UPS", "role": "courier", "doors": null,
        "valid_from_ms": null, "valid_until_ms": null,
        "schedule": [{"days": 127, "from": 0, "to": 0}], "enabled": true,
        "pin": {"hash": hex::encode(pin), "active": true, "created_ms": 1_764_000_000_000i64},
        "qr": null,
        "cards": [{"hash": hex::encode(card), "hint": "b2c3", "active": true, "created_ms": 1_764_000_000_001i64}],
        "created_ms": 1_764_000_000_000i64, "updated_ms": 1_764_000_000_002i64,
    });
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut b = Batch::default();
        b.put(b"m/schema".to_vec(), b"1".to_vec());
        b.put(b"h/a/courier-ups".to_vec(), serde_json::to_vec(&holder).unwrap());
        for h in [pin, card] {
            b.put([b"k/a/".as_slice(), &h].concat(), b"courier-ups".to_vec());
        }
        // Retired a day ago: within keys.pin_retention_days, so still held back.
        let retired = chrono::Utc::now().timestamp_millis() - 86_400_000;
        b.put([b"t/".as_slice(), &dead].concat(), retired.to_string().into_bytes());
        store.apply(b).unwrap();
    }
    let s = open_at(dir.path());
    assert_eq!(s.store().get(b"m/schema").unwrap().as_deref(), Some(b"3".as_slice()));
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), None);
    assert_eq!(try_key(&s, KeyKind::Card, [0x04, 0xa1, 0xb2, 0xc3]), None);
    assert_eq!(s.counts(), Counts { holders: 1, pins: 1, qr: 0, cards: 1 });
    let v = s.holder_get("courier-ups").unwrap().json();
    assert_eq!(v["keys"]["cards"][0]["id"], hex::encode(&card[..8]), "{v}");
    assert_eq!(v["schedule"][0]["days"].as_array().unwrap().len(), 7, "{v}");
    s.holder_put(spec("other")).unwrap();
    assert_eq!(s.pin_set("other", "483920").unwrap_err().code, ErrorCode::Duplicate);
    assert_eq!(s.pin_set("other", "502817").unwrap_err().code, ErrorCode::Duplicate);
    assert_eq!(
        s.card_assign("other", &CardUid::parse_hex("04a1b2c3").unwrap()).unwrap_err().code,
        ErrorCode::Duplicate
    );
    drop(s);
    // Opened again: already schema 3, nothing to migrate, the same answers.
    let s = open_at(dir.path());
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), None);
}

/// A store written by schema 2 (postcard holder records without key limits)
/// is migrated at open: its keys still open, unlimited.
#[test]
fn a_schema_2_store_is_migrated_and_keeps_deciding() {
    #[derive(serde::Serialize)]
    struct Key2 {
        hash: KeyHash,
        active: bool,
        created_ms: i64,
    }
    #[derive(serde::Serialize)]
    struct Holder2 {
        id: String,
        name: String,
        role: crate::access::Role,
        doors: Option<Vec<String>>,
        valid_from_ms: Option<i64>,
        valid_until_ms: Option<i64>,
        schedule: Vec<WindowRecord>,
        enabled: bool,
        pin: Option<Key2>,
        qr: Option<Key2>,
        cards: Vec<CardRecord>,
        created_ms: i64,
        updated_ms: i64,
    }
    let hasher = KeyHasher::new(b"test-secret-0123");
    let (pin, qr) = (hasher.hash(KeyKind::Pin, b"483920"), hasher.hash(KeyKind::Qr, b"tok-123"));
    let h = Holder2 {
        id: "res-12b".into(),
        name: "12B".into(),
        role: crate::access::Role::Resident,
        doors: None,
        valid_from_ms: None,
        valid_until_ms: None,
        schedule: vec![],
        enabled: true,
        pin: Some(Key2 { hash: pin, active: true, created_ms: 1_764_000_000_000 }),
        qr: Some(Key2 { hash: qr, active: false, created_ms: 1_764_000_000_001 }),
        cards: vec![],
        created_ms: 1_764_000_000_000,
        updated_ms: 1_764_000_000_002,
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut b = Batch::default();
        b.put(b"m/schema".to_vec(), b"2".to_vec());
        b.put(b"h/a/res-12b".to_vec(), postcard::to_allocvec(&h).unwrap());
        for k in [pin, qr] {
            b.put([b"k/a/".as_slice(), &k.0].concat(), b"res-12b".to_vec());
        }
        store.apply(b).unwrap();
    }
    let s = open_at(dir.path());
    assert_eq!(s.store().get(b"m/schema").unwrap().as_deref(), Some(b"3".as_slice()));
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), None);
    assert_eq!(try_key(&s, KeyKind::Qr, "tok-123"), Some(Reason::Inactive));
    let v = s.holder_get("res-12b").unwrap().json();
    assert_eq!(v["keys"]["pin"]["created"], "2025-11-24T16:00:00.000Z", "{v}");
    assert!(v["keys"]["pin"].get("uses").is_none(), "unlimited: {v}");
}

/// A limited key in a sync keeps its creation time across later syncs, so
/// its uses stay counted and its default expiry (a day after it was made)
/// does not move with each sync.
#[test]
fn a_limited_key_keeps_its_creation_across_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let s = open_at_clock(dir.path(), &clock);
    let once = Some(KeyLimit { uses: Some(1), expires_ms: None });
    let pin = |s: &KeyService| s.holder_get("res").unwrap().json()["keys"]["pin"].clone();
    let mut first = None;
    for generation in 1..=2 {
        s.sync_begin(generation).unwrap();
        s.sync_put(vec![SyncHolder { pin: Some(("483920".into(), true, once)), ..sync_holder("res", None, None) }])
            .unwrap();
        s.sync_commit().unwrap();
        let p = pin(&s);
        let created = chrono::DateTime::parse_from_rfc3339(p["created"].as_str().unwrap()).unwrap();
        let expires = chrono::DateTime::parse_from_rfc3339(p["expires"].as_str().unwrap()).unwrap();
        assert_eq!(expires - created, chrono::Duration::hours(24), "{p}");
        assert_eq!(p["uses"], 1);
        match &first {
            None => first = Some(p),
            Some(f) => assert_eq!(f["created"], p["created"], "the creation moved"),
        }
        clock.advance(60_000);
    }
    let snap = s.live().load_full();
    let l = snap.limit(&s.hasher().hash(KeyKind::Pin, b"483920")).copied().unwrap();
    assert_eq!(l.uses, Some(1));
}

/// After a restrictive recovery the live set is empty but the spent uses
/// are restored: the portal's full sync of the same one-time code keeps its
/// creation time, so the use spent before the damage still counts (review
/// of issue 11: the sync gave it a new creation time and a fresh use).
#[test]
fn a_spent_use_restored_by_a_recovery_survives_the_portals_sync() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let made = clock.now_ms() - 3_600_000;
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let h = KeyHasher::new(b"test-secret-0123").hash(KeyKind::Pin, b"483920");
        let mut b = Batch::default();
        b.put(records::uses_key(&h), records::Spent { created_ms: made, used: 1 }.encode());
        store.apply(b).unwrap();
    }
    let s = open_at_clock(dir.path(), &clock);
    let once = Some(KeyLimit { uses: Some(1), expires_ms: None });
    s.sync_begin(1).unwrap();
    s.sync_put(vec![SyncHolder { pin: Some(("483920".into(), true, once)), ..sync_holder("res", None, None) }])
        .unwrap();
    s.sync_commit().unwrap();
    let p = s.holder_get("res").unwrap().json()["keys"]["pin"].clone();
    assert_eq!(p["created"], records::rfc3339(made), "{p}");
}

/// Limits synced onto a PIN the live set has unlimited make a new key: its
/// default expiry counts from now, not from when the PIN was first made.
#[test]
fn limits_synced_onto_an_unlimited_pin_count_from_now() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let s = open_at_clock(dir.path(), &clock);
    s.sync_begin(1).unwrap();
    s.sync_put(vec![sync_holder("res", Some("483920"), None)]).unwrap();
    s.sync_commit().unwrap();
    let first = s.holder_get("res").unwrap().json()["keys"]["pin"]["created"].as_str().unwrap().to_string();
    clock.advance(3_600_000);
    s.sync_begin(2).unwrap();
    let once = Some(KeyLimit { uses: Some(1), expires_ms: None });
    s.sync_put(vec![SyncHolder { pin: Some(("483920".into(), true, once)), ..sync_holder("res", None, None) }])
        .unwrap();
    s.sync_commit().unwrap();
    let p = s.holder_get("res").unwrap().json()["keys"]["pin"].clone();
    assert_ne!(p["created"].as_str().unwrap(), first, "{p}");
    assert_eq!(p["created"], records::rfc3339(clock.now_ms()), "made again now: {p}");
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), None, "not expired at once");
}

// ---- issue 11: the staged set of a sync is bounded and expires ----

/// Waits (with a deadline) until `cond` holds.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn staging_is_empty(s: &KeyService) -> bool {
    !staging::has_records(s.store(), s.space().other()).unwrap()
}

/// `n` holders, each with a card, numbered from `from`.
fn carded(from: usize, n: usize) -> Vec<SyncHolder> {
    (from..from + n).map(|i| sync_holder(&format!("h{i}"), None, Some(&format!("{i:08x}")))).collect()
}

#[test]
fn a_staged_sync_is_bounded_in_holders_and_bytes_and_nothing_live_is_lost() {
    let s = svc().with_sync_limits(SyncLimits { holders: 3, ..Default::default() });
    s.holder_put(spec("live")).unwrap();
    s.pin_set("live", "483920").unwrap();
    s.sync_begin(1).unwrap();
    s.sync_put(carded(0, 2)).unwrap();
    let e = s.sync_put(carded(2, 2)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
    assert!(e.message.contains("would stage 4 holders; a sync holds at most 3"), "{}", e.message);
    // Sent again, a staged holder replaces its copy: no new holder.
    assert_eq!(s.sync_put(carded(1, 2)).unwrap().json()["staged"], 3);
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), None, "the live set is untouched");
    assert_eq!(s.sync_commit().unwrap().json()["holders"], 3);

    let s = svc().with_sync_limits(SyncLimits { bytes: 1000, ..Default::default() });
    s.sync_begin(1).unwrap();
    s.sync_put(carded(0, 5)).unwrap();
    let e = s.sync_put(carded(5, 20)).unwrap_err();
    assert!(e.message.contains("bytes of records; a sync holds at most 1000"), "{}", e.message);
    assert_eq!(s.sync_put(vec![]).unwrap().json()["staged"], 5, "the refused message staged nothing");
}

#[test]
fn an_idle_staged_sync_expires_is_cleared_and_says_so() {
    let idle = std::time::Duration::from_millis(300);
    let s = svc().with_sync_idle(idle);
    s.holder_put(spec("live")).unwrap();
    s.pin_set("live", "483920").unwrap();
    s.sync_begin(1).unwrap();
    s.sync_put(carded(0, 10)).unwrap();
    // Nobody sends anything: the janitor drops the staged set by itself.
    wait_until("the idle staged set is cleared", || staging_is_empty(&s));
    for e in [s.sync_put(carded(10, 1)).unwrap_err(), s.sync_commit().unwrap_err()] {
        assert_eq!(e.code, ErrorCode::Stale, "{e:?}");
        assert!(e.message.contains("without a sync.put; send sync.begin again"), "{}", e.message);
    }
    assert_eq!(try_key(&s, KeyKind::Pin, "483920"), None, "the live set is untouched");
    assert_eq!(s.state().unwrap().generation, 0);
    // A new sync works, and is not dropped while puts keep coming.
    s.sync_begin(1).unwrap();
    s.sync_put(carded(0, 1)).unwrap();
    assert_eq!(s.sync_commit().unwrap().json()["holders"], 1);
}

/// Issue 11: clearing 200,000 staged holders at the next sync.begin took
/// 76 s, during which no command was handled.
#[test]
fn sync_begin_returns_before_a_large_staged_set_is_cleared_and_sees_none_of_it() {
    let s = svc();
    s.holder_put(spec("live")).unwrap();
    s.sync_begin(1).unwrap();
    for i in 0..20 {
        s.sync_put(carded(i * 1000, 1000)).unwrap();
    }
    s.sync_put(vec![sync_holder("h-pin", Some("502817"), None)]).unwrap();
    s.sync_begin(2).unwrap();
    assert!(!staging_is_empty(&s), "sync.begin cleared 40,000 records before it returned");
    // Other commands run meanwhile, and the new sync sees no leftover: a
    // card and a PIN of the abandoned set are no duplicates, and an
    // abandoned holder sent again counts as new.
    s.holder_put(spec("other")).unwrap();
    let r = s.sync_put(vec![sync_holder("h7", None, Some("00000001")), sync_holder("x", Some("502817"), None)]);
    assert_eq!(r.unwrap().json()["staged"], 2);
    let r = s.sync_commit().unwrap().json();
    assert_eq!((r["holders"].as_u64(), r["generation"].as_u64()), (Some(2), Some(2)), "{r}");
    assert_eq!(try_key(&s, KeyKind::Card, [0, 0, 0, 1]), None);
    assert_eq!(try_key(&s, KeyKind::Card, [0, 0, 0, 2]), Some(Reason::Unknown), "a leftover went live");
    assert!(s.holder_get("h3").is_err());
    // The old live set is cleared in the background after the commit.
    wait_until("the old live set is cleared", || staging_is_empty(&s));
}

/// A restart while leftovers were being cleared beside an open sync: what
/// the sync wrote is no longer known, so it is dropped with `stale`, and the
/// clear goes on.
#[test]
fn a_sync_staged_beside_leftovers_is_dropped_by_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open_at(dir.path());
        s.sync_begin(1).unwrap();
        s.sync_put(carded(0, 3000)).unwrap();
        s.sync_begin(2).unwrap();
        s.sync_put(carded(0, 1)).unwrap();
    }
    // The "crash" came while the clear was running: the janitor may have
    // finished by the time the service let go of the store, so its marker is
    // put back, as a power cut would have left it.
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut b = crate::store::Batch::default();
        b.put(super::staging::DIRTY.to_vec(), b"1".to_vec());
        store.apply(b).unwrap();
    }
    let s = open_at(dir.path());
    let e = s.sync_put(carded(1, 1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Stale, "{e:?}");
    assert!(e.message.contains("restarted"), "{}", e.message);
    wait_until("the leftovers are cleared", || staging_is_empty(&s));
    s.sync_begin(2).unwrap();
    assert_eq!(s.sync_put(carded(5, 1)).unwrap().json()["staged"], 1);
}

// ---- issue 11: a portal restores "a deleted PIN is never used again" ----

fn strings(pins: &[&str]) -> Vec<String> {
    pins.iter().map(|p| p.to_string()).collect()
}

/// Whether any key or value of the store shows `pin` as a number of its own.
fn store_shows(s: &KeyService, pin: &str) -> bool {
    s.store().export().map(Result::unwrap).any(|(k, v)| {
        [k.as_ref(), v.as_ref()]
            .iter()
            .any(|b| String::from_utf8_lossy(b).split(|c: char| !c.is_ascii_digit()).any(|n| n == pin))
    })
}

#[test]
fn retired_pins_become_tombstones_at_the_commit_and_are_refused_like_deleted_ones() {
    let s = svc();
    s.sync_begin(1).unwrap();
    let r = s
        .sync_put_retiring(vec![sync_holder("a", Some("502817"), None)], strings(&["604728", "730194"]))
        .unwrap()
        .json();
    assert_eq!((r["staged"].as_u64(), r["retired"].as_u64()), (Some(1), Some(2)), "{r}");
    // Staged only: nothing is retired before the commit.
    let hash = |p: &str| s.hasher().hash(KeyKind::Pin, p.as_bytes());
    assert!(!s.is_tombstoned(&hash("604728")).unwrap());
    // A PIN sent again counts once; a message may carry `retired` alone.
    let r = s.sync_put_retiring(vec![], strings(&["604728", "815062", "815062"])).unwrap().json();
    assert_eq!((r["staged"].as_u64(), r["retired"].as_u64()), (Some(1), Some(3)), "{r}");
    assert_eq!(s.sync_put(vec![]).unwrap().json()["retired"], 3);
    for p in ["604728", "730194", "815062"] {
        assert!(!store_shows(&s, p), "{p} is stored in plaintext");
    }
    let r = s.sync_commit().unwrap().json();
    assert_eq!((r["holders"].as_u64(), r["retired"].as_u64()), (Some(1), Some(3)), "{r}");
    for p in ["604728", "730194", "815062"] {
        assert!(s.is_tombstoned(&hash(p)).unwrap(), "{p}");
        assert!(!store_shows(&s, p), "{p} is stored in plaintext");
    }
    // pin.set of a retired PIN gets exactly the refusal of a deleted PIN.
    s.pin_delete("a").unwrap();
    let deleted = s.pin_set("a", "502817").unwrap_err();
    let retired = s.pin_set("a", "604728").unwrap_err();
    assert_eq!(retired, deleted);
    assert_eq!(retired.code, ErrorCode::Duplicate);
    // The next sync refuses them as holders' PINs, as it does a deleted one.
    s.sync_begin(2).unwrap();
    let e = s.sync_put(vec![sync_holder("b", Some("730194"), None)]).unwrap_err();
    assert_eq!(e.code, ErrorCode::Duplicate, "{e:?}");
    // A sync without `retired` reports none.
    assert_eq!(s.sync_commit().unwrap().json()["retired"], 0);
}

#[test]
fn pin_generate_never_draws_a_retired_pin() {
    let s = KeyService::open(Store::temporary().unwrap(), KeyHasher::new(b"test-secret-0123"), vec!["main".into()], 4)
        .unwrap();
    // Every four-digit PIN but 30 retired: pin.generate must find those 30.
    let all: Vec<String> = (0..10_000).map(|i| format!("{i:04}")).filter(|p| !is_trivial(p.as_bytes())).collect();
    let (free, retired) = all.split_at(30);
    s.sync_begin(1).unwrap();
    s.sync_put(vec![sync_holder("t", None, None)]).unwrap();
    for chunk in retired.chunks(5000) {
        s.sync_put_retiring(vec![], chunk.to_vec()).unwrap();
    }
    assert_eq!(s.sync_commit().unwrap().json()["retired"].as_u64(), Some(retired.len() as u64));
    for _ in 0..20 {
        let pin = s.pin_generate("t").unwrap();
        assert!(free.contains(&pin), "{pin} was retired");
    }
}

#[test]
fn a_retired_pin_that_a_staged_holder_has_is_refused_naming_the_holder() {
    let s = svc();
    s.sync_begin(1).unwrap();
    // In one message.
    let e = s.sync_put_retiring(vec![sync_holder("a", Some("502817"), None)], strings(&["502817"])).unwrap_err();
    assert_eq!(e.code, ErrorCode::Duplicate, "{e:?}");
    assert!(e.message.contains("`a`") && !e.message.contains("502817"), "{}", e.message);
    let r = s.sync_put(vec![]).unwrap().json();
    assert_eq!((r["staged"].as_u64(), r["retired"].as_u64()), (Some(0), Some(0)), "nothing of it was staged: {r}");
    // A holder staged before, then its PIN retired.
    s.sync_put(vec![sync_holder("a", Some("502817"), None)]).unwrap();
    let e = s.sync_put_retiring(vec![], strings(&["604728", "502817"])).unwrap_err();
    assert_eq!(e.code, ErrorCode::Duplicate, "{e:?}");
    assert!(e.message.contains("`a`") && e.message.contains("retired[1]"), "{}", e.message);
    assert!(!e.message.contains("502817"), "{}", e.message);
    // A PIN retired before, then given to a holder.
    s.sync_put_retiring(vec![], strings(&["604728"])).unwrap();
    let e = s.sync_put(vec![sync_holder("b", Some("604728"), None)]).unwrap_err();
    assert_eq!(e.code, ErrorCode::Duplicate, "{e:?}");
    assert!(e.message.contains("`b`") && !e.message.contains("604728"), "{}", e.message);
    // The holder sent again without that PIN: its old PIN can be retired.
    let r = s.sync_put_retiring(vec![sync_holder("a", Some("730194"), None)], strings(&["502817"])).unwrap().json();
    assert_eq!((r["staged"].as_u64(), r["retired"].as_u64()), (Some(1), Some(2)), "{r}");
    // A PIN of the live set that the new set drops may be retired too, and
    // a PIN already retired is no error.
    s.sync_commit().unwrap();
    s.holder_put(spec("live")).unwrap();
    s.pin_set("live", "815062").unwrap();
    s.sync_begin(2).unwrap();
    let r = s
        .sync_put_retiring(vec![sync_holder("a", Some("730194"), None)], strings(&["815062", "604728"]))
        .unwrap()
        .json();
    assert_eq!(r["retired"], 2);
    assert_eq!(s.sync_commit().unwrap().json()["retired"], 2);
    assert_eq!(try_key(&s, KeyKind::Pin, "730194"), None);
    assert_eq!(try_key(&s, KeyKind::Pin, "815062"), Some(Reason::Unknown));
}

#[test]
fn a_sync_cut_short_retires_nothing_and_a_restart_keeps_what_was_staged() {
    let dir = tempfile::tempdir().unwrap();
    let hash = |s: &KeyService, p: &str| s.hasher().hash(KeyKind::Pin, p.as_bytes());
    {
        let s = open_at(dir.path());
        s.sync_begin(1).unwrap();
        s.sync_put_retiring(vec![], strings(&["604728"])).unwrap();
    }
    {
        // The controller restarted: the sync is still open, nothing retired yet.
        let s = open_at(dir.path());
        assert!(!s.is_tombstoned(&hash(&s, "604728")).unwrap());
        assert_eq!(s.sync_commit().unwrap().json()["retired"], 1);
        assert!(s.is_tombstoned(&hash(&s, "604728")).unwrap());
    }
    let s = open_at(dir.path());
    assert!(s.is_tombstoned(&hash(&s, "604728")).unwrap(), "a tombstone survives a restart");
    // A sync replaced by sync.begin, or expired, retires none of its PINs.
    s.sync_begin(2).unwrap();
    s.sync_put_retiring(vec![], strings(&["730194"])).unwrap();
    s.sync_begin(3).unwrap();
    assert_eq!(s.sync_put(vec![]).unwrap().json()["retired"], 0, "the new sync sees none of the old one's");
    wait_until("the abandoned sync's PINs are cleared", || staging_is_empty(&s));
    assert_eq!(s.sync_commit().unwrap().json()["retired"], 0);
    assert!(!s.is_tombstoned(&hash(&s, "730194")).unwrap());
    let s = s.with_sync_idle(std::time::Duration::from_millis(200));
    s.sync_begin(4).unwrap();
    s.sync_put_retiring(vec![], strings(&["730194"])).unwrap();
    wait_until("the idle sync's PINs are cleared", || staging_is_empty(&s));
    assert_eq!(s.sync_commit().unwrap_err().code, ErrorCode::Stale);
    assert!(!s.is_tombstoned(&hash(&s, "730194")).unwrap());
}

#[test]
fn retired_pins_are_bounded_per_sync_and_counted_in_its_bytes() {
    let s = svc().with_sync_limits(SyncLimits { retired: 3, ..Default::default() });
    s.sync_begin(1).unwrap();
    s.sync_put_retiring(vec![], strings(&["604728", "730194"])).unwrap();
    let e = s.sync_put_retiring(vec![], strings(&["815062", "502817"])).unwrap_err();
    assert_eq!(e.code, ErrorCode::Invalid);
    assert!(e.message.contains("would retire 4 PINs; a sync retires at most 3"), "{}", e.message);
    assert!(!e.message.contains("815062") && !e.message.contains("502817"), "{}", e.message);
    assert_eq!(s.sync_put(vec![]).unwrap().json()["retired"], 2, "the refused message retired nothing");
    assert_eq!(s.sync_commit().unwrap().json()["retired"], 2);

    let s = svc().with_sync_limits(SyncLimits { bytes: 100, ..Default::default() });
    s.sync_begin(1).unwrap();
    s.sync_put_retiring(vec![], strings(&["604728"])).unwrap();
    let e = s.sync_put_retiring(vec![], strings(&["730194", "815062", "502817"])).unwrap_err();
    assert!(e.message.contains("bytes of records; a sync holds at most 100"), "{}", e.message);
}

#[test]
fn a_retired_pin_of_the_wrong_form_is_invalid_without_echoing_it() {
    let s = svc();
    s.sync_begin(1).unwrap();
    for bad in ["60472", "6047281", "60472x", ""] {
        let e = s.sync_put_retiring(vec![], strings(&["604728", bad])).unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid, "{bad}: {e:?}");
        assert!(e.message.contains("`retired[1]`: a PIN is exactly 6 digits"), "{}", e.message);
        assert!(bad.is_empty() || !e.message.contains(bad), "{}", e.message);
    }
    assert_eq!(s.sync_put(vec![]).unwrap().json()["retired"], 0);
}

/// Issue 13: tombstones never expired, so pin.generate at about 240 a
/// second retired the 6-digit space for good in about 70 minutes. A retired
/// PIN is held back for `keys.pin_retention_days` (never handed to anyone
/// within it), then may be drawn or set again; state.get shows the free
/// share of the space.
#[test]
fn a_retired_pin_is_held_back_for_the_retention_period_then_free_again() {
    const DAY: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let s = open_at_clock(dir.path(), &clock).with_pin_retention(Duration::from_millis(30 * DAY as u64));
    s.holder_put(spec("a")).unwrap();
    s.holder_put(spec("b")).unwrap();
    s.pin_set("a", "483920").unwrap();
    let full = s.state().unwrap().json()["pin_space_free"].as_f64().unwrap();
    s.pin_delete("a").unwrap();
    // Within the period: refused as before, and the share counts it.
    clock.advance(29 * DAY);
    assert_eq!(s.pin_set("b", "483920").unwrap_err().code, ErrorCode::Duplicate);
    assert_eq!(s.state().unwrap().json()["pin_space_free"].as_f64().unwrap(), full);
    // After it: free for anyone, and retired afresh when it leaves again.
    clock.advance(2 * DAY);
    assert!(s.state().unwrap().json()["pin_space_free"].as_f64().unwrap() > full);
    s.pin_set("b", "483920").unwrap();
    s.pin_delete("b").unwrap();
    clock.advance(29 * DAY);
    assert_eq!(s.pin_set("a", "483920").unwrap_err().code, ErrorCode::Duplicate);
}

#[test]
fn the_pin_space_counts_the_trivial_pins_out() {
    for len in 4..=6 {
        let trivial = (0..10u64.pow(len as u32)).filter(|n| is_trivial(format!("{n:0len$}").as_bytes())).count() as u64;
        assert_eq!(pin_space(len), 10u64.pow(len as u32) - trivial, "{len} digits");
    }
}
