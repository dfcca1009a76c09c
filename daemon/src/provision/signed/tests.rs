use super::*;
use ed25519_dalek::SigningKey;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

const CMD: &str = "porter/oak-street/room-1/cmd";
const ALL: &str = "porter/oak-street/all/cmd";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

struct Fixture {
    guard: Guard,
    trusted: Arc<AtomicBool>,
    now: Arc<AtomicI64>,
}

fn fixture(require: bool, store: Store) -> Fixture {
    let keys = vec![
        PortalKey { id: "portal-a".into(), key: key(1).verifying_key().to_bytes() },
        PortalKey { id: "portal-b".into(), key: key(2).verifying_key().to_bytes() },
    ];
    let trusted = Arc::new(AtomicBool::new(true));
    let now = Arc::new(AtomicI64::new(1_800_000_000_000));
    let (t, n) = (trusted.clone(), now.clone());
    let guard = Guard::new(
        &keys,
        require,
        (CMD, ALL),
        store,
        Arc::new(move || t.load(Ordering::Relaxed)),
        Arc::new(move || n.load(Ordering::Relaxed)),
    );
    Fixture { guard, trusted, now }
}

fn signed(k: &SigningKey, id: &str, topic: &str, counter: u64, expires: Option<u64>, cmd: &[u8]) -> Incoming {
    let sig = sign(k, topic, id, counter, expires, cmd);
    extract(Bytes::copy_from_slice(cmd), &properties(id, counter, expires, &sig))
}

const DOOR: &[u8] = br#"{"id":"c-1","op":"door.unlock","args":{"door":"main"}}"#;

fn refused(r: Result<Admitted, Refusal>) -> (ErrorCode, &'static str) {
    let e = r.expect_err("admitted");
    (e.code, e.reason)
}

#[test]
fn a_valid_signature_is_admitted_once_and_its_replay_is_stale() {
    let f = fixture(true, Store::temporary().unwrap());
    let a = f.guard.admit(CMD.as_bytes(), signed(&key(1), "portal-a", CMD, 5, None, DOOR)).unwrap();
    assert_eq!((a.command.as_ref(), a.signer.as_deref(), a.fleet), (DOOR, Some("portal-a"), false));
    assert_eq!(
        refused(f.guard.admit(CMD.as_bytes(), signed(&key(1), "portal-a", CMD, 5, None, DOOR))),
        (ErrorCode::Stale, "replay")
    );
    assert_eq!(
        refused(f.guard.admit(CMD.as_bytes(), signed(&key(1), "portal-a", CMD, 4, None, DOOR))),
        (ErrorCode::Stale, "replay")
    );
    // Each key has its own counter.
    assert!(f.guard.admit(CMD.as_bytes(), signed(&key(2), "portal-b", CMD, 1, None, DOOR)).is_ok());
    assert!(f.guard.admit(CMD.as_bytes(), signed(&key(1), "portal-a", CMD, 6, None, DOOR)).is_ok());
    assert_eq!(f.guard.last("portal-a").unwrap(), Some(6));
}

#[test]
fn unsigned_unknown_wrong_and_retargeted_are_unauthorized() {
    let f = fixture(true, Store::temporary().unwrap());
    let g = &f.guard;
    let u = ErrorCode::Unauthorized;
    assert_eq!(refused(g.admit(CMD.as_bytes(), extract(Bytes::from_static(DOOR), &[]))), (u, "unsigned"));
    assert_eq!(refused(g.admit(CMD.as_bytes(), signed(&key(3), "portal-c", CMD, 1, None, DOOR))), (u, "unknown_key"));
    // Key b's signature under key a's id.
    assert_eq!(refused(g.admit(CMD.as_bytes(), signed(&key(2), "portal-a", CMD, 1, None, DOOR))), (u, "bad_signature"));
    // Other bytes than were signed.
    let sig = sign(&key(1), CMD, "portal-a", 1, None, DOOR);
    let tampered = extract(
        Bytes::from_static(br#"{"id":"c-1","op":"door.unlock","args":{"door":"back"}}"#),
        &properties("portal-a", 1, None, &sig),
    );
    assert_eq!(refused(g.admit(CMD.as_bytes(), tampered)), (u, "bad_signature"));
    // A counter other than the one signed.
    let bumped = extract(Bytes::from_static(DOOR), &properties("portal-a", 2, None, &sig));
    assert_eq!(refused(g.admit(CMD.as_bytes(), bumped)), (u, "bad_signature"));
    // Signed for the fleet, sent to the controller, and the other way round.
    assert_eq!(refused(g.admit(CMD.as_bytes(), signed(&key(1), "portal-a", ALL, 1, None, DOOR))), (u, "wrong_topic"));
    assert_eq!(refused(g.admit(ALL.as_bytes(), signed(&key(1), "portal-a", CMD, 1, None, DOOR))), (u, "wrong_topic"));
    // Signed for another controller.
    assert_eq!(
        refused(g.admit(CMD.as_bytes(), signed(&key(1), "portal-a", "porter/oak-street/room-2/cmd", 1, None, DOOR))),
        (u, "bad_signature")
    );
    let bad = extract(Bytes::from_static(DOOR), &[("porter-key".into(), "portal-a".into())]);
    assert_eq!(refused(g.admit(CMD.as_bytes(), bad)), (u, "malformed_signature"));
    // None of these moved the counter.
    assert_eq!(g.last("portal-a").unwrap(), None);
}

#[test]
fn without_require_signed_unsigned_passes_but_a_bad_signature_does_not() {
    let f = fixture(false, Store::temporary().unwrap());
    let a = f.guard.admit(CMD.as_bytes(), extract(Bytes::from_static(DOOR), &[])).unwrap();
    assert_eq!(a.signer, None);
    assert!(f.guard.admit(CMD.as_bytes(), signed(&key(2), "portal-a", CMD, 1, None, DOOR)).is_err());
}

#[test]
fn expiry_is_checked_only_with_a_trusted_clock() {
    let f = fixture(true, Store::temporary().unwrap());
    let now = f.now.load(Ordering::Relaxed) as u64;
    assert!(f.guard.admit(CMD.as_bytes(), signed(&key(1), "portal-a", CMD, 1, Some(now + 1000), DOOR)).is_ok());
    assert_eq!(
        refused(f.guard.admit(CMD.as_bytes(), signed(&key(1), "portal-a", CMD, 2, Some(now - 1), DOOR))),
        (ErrorCode::Stale, "expired")
    );
    f.trusted.store(false, Ordering::Relaxed);
    assert!(f.guard.admit(CMD.as_bytes(), signed(&key(1), "portal-a", CMD, 3, Some(now - 1), DOOR)).is_ok());
}

#[test]
fn the_counter_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let f = fixture(true, Store::open(dir.path(), 1 << 20).unwrap());
        f.guard.admit(CMD.as_bytes(), signed(&key(1), "portal-a", CMD, 9, None, DOOR)).unwrap();
    }
    let f = fixture(true, Store::open(dir.path(), 1 << 20).unwrap());
    assert_eq!(
        refused(f.guard.admit(CMD.as_bytes(), signed(&key(1), "portal-a", CMD, 9, None, DOOR))),
        (ErrorCode::Stale, "replay")
    );
}

#[test]
fn the_envelope_carries_the_exact_bytes() {
    use base64::Engine as _;
    let f = fixture(true, Store::temporary().unwrap());
    let sig = sign(&key(1), CMD, "portal-a", 3, Some(1_900_000_000_000), DOOR);
    let env = serde_json::json!({
        "signed": {"key": "portal-a", "counter": 3, "expires": 1_900_000_000_000u64, "sig": sig},
        "command": base64::engine::general_purpose::STANDARD.encode(DOOR),
    });
    let a = f.guard.admit(CMD.as_bytes(), extract(Bytes::from(env.to_string()), &[])).unwrap();
    assert_eq!(a.command.as_ref(), DOOR);
    // A command whose first key is not "signed" is a plain command.
    assert_eq!(extract(Bytes::from_static(DOOR), &[]), Incoming::Unsigned(Bytes::from_static(DOOR)));
    let broken = extract(Bytes::from_static(br#"{"signed": 1}"#), &[]);
    assert!(matches!(broken, Incoming::Malformed(_)));
}

#[test]
fn secrets_are_found_in_every_op_that_carries_them() {
    let m = |v: serde_json::Value| v.as_object().unwrap().clone();
    assert!(holds_secret("pin.generate", &m(serde_json::json!({"holder": "h"}))));
    assert!(holds_secret("pin.set", &m(serde_json::json!({"holder": "h", "pin": "123456"}))));
    assert!(holds_secret("qr.generate", &m(serde_json::json!({"holder": "h"}))));
    assert!(holds_secret("sync.put", &m(serde_json::json!({"holders": [{"holder": "h", "pin": "123456"}]}))));
    assert!(holds_secret("sync.put", &m(serde_json::json!({"retired": ["123456"]}))));
    assert!(!holds_secret("sync.put", &m(serde_json::json!({"holders": [{"holder": "h", "role": "courier"}]}))));
    assert!(!holds_secret("door.unlock", &m(serde_json::json!({"door": "main"}))));
    assert!(!holds_secret("holder.put", &m(serde_json::json!({"holder": "h", "role": "courier"}))));
}

/// docs/mqtt.md's test vectors, computed again: the docs cannot drift.
#[test]
fn the_documented_test_vectors_hold() {
    let doc = include_str!("../../../../docs/mqtt.md");
    let k = SigningKey::from_bytes(&hex::decode(VECTOR_SECRET).unwrap().try_into().unwrap());
    let m = message(VECTOR_TOPIC, "portal-2026", 42, Some(1_800_000_000_000), VECTOR_COMMAND.as_bytes());
    let sig = sign(&k, VECTOR_TOPIC, "portal-2026", 42, Some(1_800_000_000_000), VECTOR_COMMAND.as_bytes());
    println!("public {}\nmessage {}\nsig {sig}", hex::encode(k.verifying_key().to_bytes()), hex::encode(&m));
    for (what, value) in [
        ("secret", VECTOR_SECRET.to_string()),
        ("public key", hex::encode(k.verifying_key().to_bytes())),
        ("message hex", hex::encode(&m)),
        ("signature", sig.clone()),
    ] {
        assert!(doc.contains(&value), "docs/mqtt.md lacks the test vector's {what}: {value}");
    }
}

const VECTOR_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const VECTOR_TOPIC: &str = "porter/oak-street/room-1/cmd";
const VECTOR_COMMAND: &str = r#"{"id":"c-1842","op":"door.unlock","args":{"door":"main"}}"#;
