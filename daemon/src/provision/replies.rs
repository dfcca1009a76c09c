//! Idempotency by command id: a command whose id was seen before is not
//! applied again; its stored reply is sent again.
//!
//! Replies are kept on disk (the newest [`DISK`]). A reply that carries a
//! secret (a new PIN or QR token) is kept whole only in memory (the newest
//! [`MEMORY`] of those, as JSON text): on disk its secret is replaced by
//! `null` with `"redacted": true`, because PINs and tokens are never stored
//! in plaintext. So a repeat after a restart says the key was made but cannot
//! show it again; the portal then generates a new one under a new id. Every
//! other reply is the same on disk as in memory, so only the disk keeps it.
//!
//! Each reply is kept with the keyed digest of its command (op and
//! arguments): a command that reuses an id for something else gets an error,
//! never the stored reply, which may hold another command's PIN.
//!
//! A reply holding a secret is also kept with the portal key that signed its
//! command (none for an unsigned one): a repeat signed by another key, or
//! unsigned, gets [`Seen::Withheld`], never the secret.

use crate::store::{Batch, Store};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Replies with a PIN or QR token kept whole in memory.
pub const MEMORY: usize = 4096;
/// Replies kept (redacted) on disk.
pub const DISK: u64 = 50_000;

const REPLY: &[u8] = b"r/";
const REPLY_ORDER: &[u8] = b"q/";
const REPLY_SEQ: &[u8] = crate::store::records::REPLY_SEQ;

pub struct Replies {
    store: Store,
    /// By id: the command's digest and the reply as JSON text; and the ids
    /// oldest first.
    mem: Mutex<(HashMap<String, Kept>, VecDeque<String>)>,
    seq: Mutex<u64>,
}

/// A command's digest, its reply as JSON text, and the key that signed it.
type Kept = (String, String, Option<String>);

/// What a command's id found.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Not seen before: apply the command.
    New,
    /// The same command again: send this reply again.
    Repeat(Value),
    /// Another command under an id seen before.
    Reused,
    /// The same command, but its stored reply holds a secret made for a
    /// request signed by another key (or unsigned): not sent.
    Withheld,
}

/// The id as a key: `s:` + text or `n:` + number; `None` for no id.
pub fn id_key(id: &Value) -> Option<String> {
    match id {
        Value::String(s) if !s.is_empty() => Some(format!("s:{s}")),
        Value::Number(n) => Some(format!("n:{n}")),
        _ => None,
    }
}

/// The reply as stored on disk: secrets replaced by null.
pub fn redact(reply: &Value) -> Value {
    let mut r = reply.clone();
    if let Some(result) = r.get_mut("result").and_then(Value::as_object_mut) {
        let mut redacted = false;
        for k in ["pin", "token"] {
            if let Some(v) = result.get_mut(k) {
                *v = Value::Null;
                redacted = true;
            }
        }
        if redacted {
            result.insert("redacted".into(), Value::Bool(true));
        }
    }
    r
}

impl Replies {
    pub fn new(store: Store) -> Self {
        let seq = store.counter(REPLY_SEQ).unwrap_or(0);
        Replies { store, mem: Mutex::new((HashMap::new(), VecDeque::new())), seq: Mutex::new(seq) }
    }

    /// What the id `key` of a command whose digest is `digest` (hex),
    /// signed by `signer`, found. A reply stored before digests were kept
    /// counts as the same command.
    pub fn get(&self, key: &str, digest: &str, signer: Option<&str>) -> Seen {
        let found = match self.mem.lock().ok().and_then(|m| m.0.get(key).cloned()) {
            Some((d, _, made_by)) if d == digest && made_by.as_deref() != signer => return Seen::Withheld,
            Some((d, text, _)) => serde_json::from_str(&text).ok().map(|reply| (Some(d), reply)),
            None => {
                let mut k = REPLY.to_vec();
                k.extend_from_slice(key.as_bytes());
                self.store.get(&k).ok().flatten().and_then(|v| serde_json::from_slice::<Value>(&v).ok()).map(
                    |v| match (v.get("digest").and_then(Value::as_str), v.get("reply")) {
                        (Some(d), Some(reply)) => (Some(d.to_string()), reply.clone()),
                        _ => (None, v),
                    },
                )
            }
        };
        match found {
            None => Seen::New,
            Some((Some(d), _)) if d != digest => Seen::Reused,
            Some((_, reply)) => Seen::Repeat(reply),
        }
    }

    /// Remembers the reply to the command with this id, on disk before it
    /// returns (so a repeat after a crash is not applied twice). `internal`
    /// errors are not remembered: they are transient, and a retry with the
    /// same id must be able to succeed.
    pub fn put(&self, key: &str, digest: &str, reply: &Value, signer: Option<&str>) {
        if reply["error"]["code"] == "internal" {
            return;
        }
        let redacted = redact(reply);
        if redacted != *reply {
            if let Ok(mut m) = self.mem.lock() {
                if m.0
                    .insert(key.to_string(), (digest.to_string(), reply.to_string(), signer.map(str::to_string)))
                    .is_none()
                {
                    m.1.push_back(key.to_string());
                }
                while m.1.len() > MEMORY {
                    if let Some(old) = m.1.pop_front() {
                        m.0.remove(&old);
                    }
                }
            }
        }
        let Ok(mut seq) = self.seq.lock() else { return };
        *seq += 1;
        let mut b = Batch::default();
        let mut k = REPLY.to_vec();
        k.extend_from_slice(key.as_bytes());
        let stored = serde_json::json!({"digest": digest, "reply": redacted});
        b.put(k.clone(), serde_json::to_vec(&stored).unwrap_or_default());
        let mut order = REPLY_ORDER.to_vec();
        order.extend_from_slice(&seq.to_be_bytes());
        b.put(order, k);
        if *seq > DISK {
            let mut old = REPLY_ORDER.to_vec();
            old.extend_from_slice(&(*seq - DISK).to_be_bytes());
            if let Ok(Some(old_key)) = self.store.get(&old) {
                b.remove(old_key);
            }
            b.remove(old);
        }
        b.put(REPLY_SEQ.to_vec(), seq.to_string().into_bytes());
        if let Err(e) = self.store.apply(b) {
            tracing::error!(error = %e, "storing a reply failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeats_are_answered_from_memory_then_disk_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let reply = json!({"id": "c-1", "ok": true, "result": {"pin": "483920"}});
        let plain = json!({"id": "c-2", "ok": true, "result": {"holder": "h1"}});
        {
            let r = Replies::new(Store::open(dir.path(), 1 << 20).unwrap());
            assert_eq!(r.get("s:c-1", "d1", None), Seen::New);
            r.put("s:c-1", "d1", &reply, None);
            r.put("s:c-2", "d2", &plain, None);
            assert_eq!(r.get("s:c-1", "d1", None), Seen::Repeat(reply.clone()));
            assert_eq!(r.get("s:c-2", "d2", None), Seen::Repeat(plain.clone()));
            // Another command under the id of a pin.generate gets no PIN.
            assert_eq!(r.get("s:c-1", "other", None), Seen::Reused);
            // Only the reply with a secret is held in memory.
            assert_eq!(r.mem.lock().unwrap().1.len(), 1);
            r.store.flush().unwrap();
        }
        let r = Replies::new(Store::open(dir.path(), 1 << 20).unwrap());
        let Seen::Repeat(again) = r.get("s:c-1", "d1", None) else { panic!("not kept") };
        assert_eq!(again["result"]["pin"], Value::Null);
        assert_eq!(again["result"]["redacted"], true);
        assert!(!again.to_string().contains("483920"));
        assert_eq!(r.get("s:c-2", "d2", None), Seen::Repeat(plain.clone()));
        assert_eq!(r.get("s:c-2", "other", None), Seen::Reused);
        // A reply stored before digests were kept is sent again as it is.
        r.store
            .apply({
                let mut b = Batch::default();
                b.put(b"r/s:old".to_vec(), serde_json::to_vec(&plain).unwrap());
                b
            })
            .unwrap();
        assert_eq!(r.get("s:old", "any", None), Seen::Repeat(plain.clone()));
        assert_eq!(id_key(&json!(7)).as_deref(), Some("n:7"));
    }

    #[test]
    fn a_secret_is_sent_again_only_to_the_key_that_made_it() {
        let r = Replies::new(Store::temporary().unwrap());
        let reply = json!({"id": "c-1", "ok": true, "result": {"pin": "483920"}});
        r.put("s:c-1", "d1", &reply, Some("portal-a"));
        assert_eq!(r.get("s:c-1", "d1", Some("portal-a")), Seen::Repeat(reply.clone()));
        assert_eq!(r.get("s:c-1", "d1", Some("portal-b")), Seen::Withheld);
        assert_eq!(r.get("s:c-1", "d1", None), Seen::Withheld);
        // A reply without a secret goes to any key.
        let plain = json!({"id": "c-2", "ok": true, "result": {"holder": "h1"}});
        r.put("s:c-2", "d2", &plain, Some("portal-a"));
        assert_eq!(r.get("s:c-2", "d2", Some("portal-b")), Seen::Repeat(plain));
        assert_eq!(id_key(&json!(null)), None);
    }
}
