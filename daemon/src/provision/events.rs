//! `events.get {after, limit}`: events read back from the audit log, for a
//! portal that saw a gap in `seq` or lost its own session.
//!
//! A reply is bounded twice: by `limit` events (at most [`LIMIT_MAX`]) and by
//! [`REPLY_BYTES`] of event JSON, so that it stays far below the packet
//! limits on the way (the 1 MiB that `porterctl --mqtt` accepts, the
//! daemon's own `mqtt.max_packet_kb` of 2 MiB by default). It says whether
//! more remain and which events the log still holds, so the portal knows
//! when the ones it asks for have been pruned (`audit.retain`).
//!
//! Events never hold a PIN, a QR token or a secret (see `crate::audit`);
//! this returns them exactly as they were published.

use super::error::OpError;
use crate::audit;
use crate::store::{records, Store};
use serde_json::Value;

/// The op's name.
pub const OP: &str = "events.get";
/// Events per reply when `limit` is not given.
pub const LIMIT_DEFAULT: u64 = 100;
/// The largest `limit`.
pub const LIMIT_MAX: u64 = 1000;
/// Event JSON per reply, at most (each event's bytes plus a comma). One
/// event is always returned when there is one: an event is a few hundred
/// bytes.
pub const REPLY_BYTES: usize = 64 * 1024;

/// The events with `seq > after`, oldest first: at most `limit` of them and
/// at most [`REPLY_BYTES`] of JSON.
///
/// Result: `{events, next_after, more, oldest, newest}`: `next_after` is the
/// `after` for the next call (the last event's `seq`, else `after`); `more`
/// is true when events after `next_after` remain; `oldest` is the oldest
/// `seq` the log holds (`null` when it holds none): events before it were
/// pruned; `newest` is the last `seq` numbered (0 before any event).
pub fn get(store: &Store, after: u64, limit: u64) -> Result<Page, OpError> {
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(OpError::invalid(format!("`limit` must be from 1 to {LIMIT_MAX}")));
    }
    // The newest first: every event read below was numbered by then, so
    // `newest` is never below the events of the reply.
    let newest = store.counter(records::SEQ)?;
    // One more than asked for tells whether more remain.
    let mut read = audit::read(store, after, limit as usize + 1);
    // The array's JSON: its brackets, then each event and a comma but the last.
    let mut bytes = 1;
    let mut keep = 0;
    for e in &read {
        bytes += serde_json::to_string(e).map_or(0, |s| s.len()) + 1;
        if keep == limit as usize || (keep > 0 && bytes > REPLY_BYTES) {
            break;
        }
        keep += 1;
    }
    let more = read.len() > keep;
    read.truncate(keep);
    let next_after = read.last().and_then(|e| e["seq"].as_u64()).unwrap_or(after);
    let oldest = match store.scan(records::AUDIT).next().transpose()? {
        Some((k, _)) => k.get(records::AUDIT.len()..).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes),
        None => None,
    };
    Ok(Page { events: read, next_after, more, oldest, newest })
}

/// `events.get`'s result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page {
    /// Each event as the audit log holds it (with its `seq` and `ts`).
    pub events: Vec<Value>,
    /// The `after` for the next call.
    pub next_after: u64,
    /// Events after `next_after` remain.
    pub more: bool,
    /// The oldest `seq` the log holds; `None` when it holds none.
    pub oldest: Option<u64>,
    /// The last `seq` numbered (0 before any event).
    pub newest: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `events.get`'s reply as it goes on the wire.
    fn get(store: &Store, after: u64, limit: u64) -> Result<Value, OpError> {
        super::get(store, after, limit).map(|p| serde_json::to_value(p).unwrap())
    }
    use crate::audit::Draft;
    use crate::event::Event;

    fn log(retain: u64, n: usize, field: &str) -> Store {
        let store = Store::temporary().unwrap();
        let (a, thread) = audit::start(store.clone(), retain).unwrap();
        for _ in 0..n {
            let event = Event::DoorUnlocked { door: field.to_string(), ms: 2000, by: "command" };
            a.record(Draft { ts_ms: 0, event });
        }
        drop(a);
        thread.join().unwrap();
        store
    }

    fn seqs(v: &Value) -> Vec<u64> {
        v["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    }

    #[test]
    fn pages_through_the_log_and_says_what_remains() {
        let store = log(100_000, 250, "main");
        let v = get(&store, 0, 100).unwrap();
        assert_eq!(seqs(&v), (1..=100).collect::<Vec<_>>());
        assert_eq!((v["next_after"].clone(), v["more"].clone()), (json!(100), json!(true)));
        assert_eq!((v["oldest"].clone(), v["newest"].clone()), (json!(1), json!(250)));
        let v = get(&store, 200, 100).unwrap();
        assert_eq!(seqs(&v), (201..=250).collect::<Vec<_>>());
        assert_eq!((v["next_after"].clone(), v["more"].clone()), (json!(250), json!(false)));
        // Exactly the rest: no more.
        assert_eq!(get(&store, 240, 10).unwrap()["more"], false);
        // Nothing after the newest: the same `after` back.
        let v = get(&store, 250, 5).unwrap();
        assert_eq!((seqs(&v), v["next_after"].clone(), v["more"].clone()), (vec![], json!(250), json!(false)));
        let empty = Store::temporary().unwrap();
        let v = get(&empty, 0, 5).unwrap();
        assert_eq!(
            (v["oldest"].clone(), v["newest"].clone(), v["more"].clone()),
            (json!(null), json!(0), json!(false))
        );
        for bad in [0, LIMIT_MAX + 1] {
            assert!(get(&store, 0, bad).unwrap_err().message.contains("`limit` must be from 1 to 1000"));
        }
    }

    #[test]
    fn pruned_events_show_in_oldest_and_the_reply_starts_there() {
        let store = log(1000, 1500, "main");
        let v = get(&store, 10, 5).unwrap();
        assert_eq!((v["oldest"].clone(), v["newest"].clone()), (json!(501), json!(1500)));
        assert_eq!(seqs(&v), (501..=505).collect::<Vec<_>>());
    }

    #[test]
    fn a_reply_stays_within_its_byte_bound() {
        // Events of about 1 KiB: fewer than `limit` fit.
        let store = log(100_000, 200, &"d".repeat(900));
        let v = get(&store, 0, LIMIT_MAX).unwrap();
        let n = seqs(&v).len();
        assert!((50..100).contains(&n), "{n}");
        assert!(v["events"].to_string().len() <= REPLY_BYTES, "{}", v["events"].to_string().len());
        assert_eq!((v["more"].clone(), v["next_after"].clone()), (json!(true), json!(n)));
    }
}
