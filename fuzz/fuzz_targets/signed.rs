//! Signed commands (`provision::signed`): the MQTT 5 user properties and the
//! MQTT 3.1.1 envelope read by `extract`, then the `Guard`'s check with
//! `require_signed` on, over a temporary store with one pinned portal key.
//!
//! The first byte picks what the rest is:
//! - even: what an attacker sends, who has no pinned key: after it, the
//!   command payload and user properties separated by 0xFF bytes (payload,
//!   then name, value, name, value ...), sent to the controller's or the
//!   fleet's topic (bit 1). Property: it is never admitted, and its refusal
//!   is `unauthorized` with an error reply.
//! - odd: the rest is a command's bytes, which the target signs with the
//!   pinned key (in properties or an envelope: bit 1; for the controller's
//!   or the fleet's topic: bit 2; with an expiry in the future: bit 3) and a
//!   counter above the last. Properties: admitted once with those exact
//!   bytes, then `stale` as a replay; the same signature with one bit of
//!   the command or signature flipped, re-targeted to the other topic, or
//!   made by an unpinned key under the pinned key's id, is `unauthorized`;
//!   an expired one is `stale` and does not use the counter up.
#![no_main]

use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use porterd::config::PortalKey;
use porterd::provision::signed::{self, Guard, Incoming};
use porterd::provision::ErrorCode;
use porterd::store::Store;
use std::sync::{Arc, OnceLock};

const CMD: &str = "porter/oak-street/room-1/cmd";
const ALL: &str = "porter/oak-street/all/cmd";
const KEY_ID: &str = "portal-a";
const NOW_MS: i64 = 1_800_000_000_000;

fn pinned() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let keys = [PortalKey { id: KEY_ID.into(), key: pinned().verifying_key().to_bytes() }];
        let store = Store::temporary().expect("a temporary store");
        Guard::new(&keys, true, (CMD, ALL), store, Arc::new(|| true), Arc::new(|| NOW_MS))
    })
}

fn refused_with(r: Result<signed::Admitted, signed::Refusal>, code: ErrorCode, command: &[u8], what: &str) {
    let e = match r {
        Ok(a) => panic!("{what} was admitted: {a:?}"),
        Err(e) => e,
    };
    assert_eq!(e.code, code, "{what}: {e:?}");
    let reply = e.reply(command);
    assert_eq!(reply["ok"], false, "{what}: {reply}");
    assert_eq!(reply["error"]["code"], code.as_str(), "{what}: {reply}");
}

/// What an attacker without a pinned key sends.
fn forged(flags: u8, data: &[u8]) {
    let mut parts = data.split(|b| *b == 0xFF);
    let payload = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut props = Vec::new();
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        props.push((text(k), text(v)));
    }
    let incoming = signed::extract(payload.clone(), &props);
    let topic = if flags & 2 == 0 { CMD } else { ALL };
    refused_with(guard().admit(topic.as_bytes(), incoming), ErrorCode::Unauthorized, &payload, "a forged command");
}

/// Signed as the portal signs, in properties or in the envelope.
fn incoming(key: &SigningKey, topic: &str, counter: u64, expires: Option<u64>, cmd: &[u8], envelope: bool) -> Incoming {
    let sig = signed::sign(key, topic, KEY_ID, counter, expires, cmd);
    if envelope {
        let mut seal = serde_json::json!({"key": KEY_ID, "counter": counter, "sig": sig});
        if let Some(e) = expires {
            seal["expires"] = e.into();
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(cmd);
        let env = serde_json::json!({"signed": seal, "command": b64});
        signed::extract(Bytes::from(serde_json::to_vec(&env).unwrap()), &[])
    } else {
        signed::extract(Bytes::copy_from_slice(cmd), &signed::properties(KEY_ID, counter, expires, &sig))
    }
}

fn valid(flags: u8, cmd: &[u8]) {
    let g = guard();
    let envelope = flags & 2 != 0;
    let (topic, other) = if flags & 4 == 0 { (CMD, ALL) } else { (ALL, CMD) };
    let step = u64::from(cmd.first().copied().unwrap_or(0)) + 1;
    let Some(counter) = g.last(KEY_ID).expect("the counter reads").unwrap_or(0).checked_add(step) else { return };
    let expires = (flags & 8 != 0).then(|| NOW_MS as u64 + 1 + u64::from(flags >> 4) * 1000);
    let signed_as =
        |key: &SigningKey, topic: &str, counter, expires| incoming(key, topic, counter, expires, cmd, envelope);

    // Tampered first: none of these may use the counter up.
    let stranger = SigningKey::from_bytes(&[8; 32]);
    refused_with(
        g.admit(topic.as_bytes(), signed_as(&stranger, topic, counter, expires)),
        ErrorCode::Unauthorized,
        cmd,
        "an unpinned key's signature",
    );
    refused_with(
        g.admit(topic.as_bytes(), signed_as(&pinned(), other, counter, expires)),
        ErrorCode::Unauthorized,
        cmd,
        "a re-targeted command",
    );
    if let Incoming::Signed(mut seal, command) = signed_as(&pinned(), topic, counter, expires) {
        let bit = usize::from(flags) % 512;
        seal.sig[bit / 8] ^= 1 << (bit % 8);
        refused_with(
            g.admit(topic.as_bytes(), Incoming::Signed(seal, command)),
            ErrorCode::Unauthorized,
            cmd,
            "a flipped signature",
        );
    } else {
        panic!("a signed command is read as signed");
    }
    if !cmd.is_empty() {
        let mut changed = cmd.to_vec();
        let i = usize::from(flags) % changed.len();
        changed[i] ^= 1;
        let Incoming::Signed(seal, _) = signed_as(&pinned(), topic, counter, expires) else { unreachable!() };
        refused_with(
            g.admit(topic.as_bytes(), Incoming::Signed(seal, Bytes::from(changed))),
            ErrorCode::Unauthorized,
            cmd,
            "a changed command",
        );
    }
    let expired = Some(NOW_MS as u64 - 1 - u64::from(flags));
    refused_with(
        g.admit(topic.as_bytes(), signed_as(&pinned(), topic, counter, expired)),
        ErrorCode::Stale,
        cmd,
        "an expired command",
    );

    let a =
        g.admit(topic.as_bytes(), signed_as(&pinned(), topic, counter, expires)).expect("a valid command is admitted");
    assert_eq!(a.command.as_ref(), cmd);
    assert_eq!(a.signer.as_deref(), Some(KEY_ID));
    assert_eq!(a.fleet, topic == ALL);
    assert_eq!(g.last(KEY_ID).unwrap(), Some(counter));
    refused_with(
        g.admit(topic.as_bytes(), signed_as(&pinned(), topic, counter, expires)),
        ErrorCode::Stale,
        cmd,
        "a replay",
    );
    refused_with(
        g.admit(topic.as_bytes(), signed_as(&pinned(), topic, counter - 1, expires)),
        ErrorCode::Stale,
        cmd,
        "an older counter",
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    if flags & 1 == 0 {
        forged(flags, rest);
    } else {
        valid(flags, rest);
    }
});
