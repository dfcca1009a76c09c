//! The audit log and the event bus.
//!
//! Every decision and happening becomes an [`Event`] with a `seq` that only
//! grows. One named writer thread owns the sequence: it takes drafts from a
//! bounded channel, writes a group of them (and any lockout states) in one
//! batch, flushes once, and only then publishes them on the broadcast bus that
//! MQTT publishes from. The log keeps the newest `audit.retain` events.
//! Events never hold a PIN, a QR token or a secret: drafts are typed
//! [`crate::event::Event`]s of holder ids, device ids and reasons only.

use crate::access::lockout::LockoutState;
use crate::event;
use crate::store::records;
use crate::store::{Batch, Store};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Drafts waiting for the writer; beyond this they are counted and dropped.
pub const QUEUE: usize = 8192;
/// Most drafts written per flush.
const GROUP: usize = 512;
/// After a failed write, the wait before the same batch is tried again;
/// it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// An event before it has a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub ts_ms: i64,
    pub event: event::Event,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub json: Value,
}

/// What to do once a write is on disk (open a door, play feedback, answer
/// a waiting op).
pub type After = Box<dyn FnOnce() + Send>;

enum Msg {
    Event(Draft),
    /// Lockout states are waiting in [`Lockouts`].
    Wake,
    /// What to do once everything queued before this is on disk.
    Written(After),
    /// An event, and the uses a limited key has given with it: written in
    /// the same batch, then `After` runs (the door opens).
    EventUse(Draft, crate::access::KeyHash, records::Spent, After),
}

/// Lockout states waiting for the writer, the newest per device, and who to
/// tell once they are on disk. They wait here rather than in the queue: a
/// queue filled by a flood of entries must not lose the lockout state that
/// the flood engaged.
#[derive(Default)]
struct Lockouts {
    states: HashMap<String, LockoutState>,
    waiting: Vec<After>,
}

/// The sending side, cloned wherever events are produced.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Msg>,
    bus: broadcast::Sender<Arc<Event>>,
    dropped: Arc<AtomicU64>,
    lockouts: Arc<Mutex<Lockouts>>,
}

impl Audit {
    /// Queues an event without waiting; false when the queue was full and
    /// the event was dropped (and counted).
    pub fn record(&self, d: Draft) -> bool {
        if self.tx.try_send(Msg::Event(d)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(dropped = n, "audit queue full: event dropped");
            return false;
        }
        true
    }

    /// Hands a device's lockout state to the writer for its next batch
    /// (a newer state for the same device replaces one not yet written).
    pub fn lockout(&self, device: &str, s: LockoutState) {
        self.put_lockout(device, s, None);
    }

    /// [`Audit::lockout`]; the receiver completes once the state is on disk
    /// (and errs only if the writer has stopped).
    pub fn lockout_durable(&self, device: &str, s: LockoutState) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        self.put_lockout(
            device,
            s,
            Some(Box::new(move || {
                let _ = done.send(());
            })),
        );
        rx
    }

    /// [`Audit::lockout`], then `then` once the state is on disk (a failure's
    /// deny feedback: a guesser who cuts the power on seeing it learns nothing
    /// the count did not keep).
    pub fn lockout_then(&self, device: &str, s: LockoutState, then: After) {
        self.put_lockout(device, s, Some(then));
    }

    fn put_lockout(&self, device: &str, s: LockoutState, done: Option<After>) {
        let mut l = self.lockouts.lock().unwrap_or_else(|e| e.into_inner());
        l.states.insert(device.to_string(), s);
        l.waiting.extend(done);
        drop(l);
        // A full queue means the writer has a round ahead of it, which takes
        // the states anyway: no wake-up is lost.
        let _ = self.tx.try_send(Msg::Wake);
    }

    /// Queues the grant of a limited key with its uses spent, to be written
    /// in one batch: the count is durable exactly when the event is, and
    /// `then` (which opens the door) runs only after that. False when the
    /// queue was full: then nothing is written and `then` never runs.
    pub fn record_use(&self, d: Draft, h: crate::access::KeyHash, spent: records::Spent, then: After) -> bool {
        if self.tx.try_send(Msg::EventUse(d, h, spent, then)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                dropped = n,
                "audit queue full: a limited key's grant refused (its use could not be persisted)"
            );
            return false;
        }
        true
    }

    /// Waits until every event queued before the call is on disk. It blocks
    /// the thread: call it from a test or a blocking thread, not a task.
    pub fn wait_written(&self) {
        let (done, rx) = oneshot::channel();
        if self
            .tx
            .blocking_send(Msg::Written(Box::new(move || {
                let _ = done.send(());
            })))
            .is_ok()
        {
            let _ = rx.blocking_recv();
        }
    }

    /// Events as they become durable.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.bus.subscribe()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the writer thread. It ends, after writing everything queued, when
/// every [`Audit`] clone is dropped; join the handle to wait for that.
pub fn start(store: Store, retain: u64) -> std::io::Result<(Audit, std::thread::JoinHandle<()>)> {
    let (audit, rx) = channel();
    Ok((audit.clone(), spawn_writer(store, retain, rx, &audit)?))
}

/// The sending side and the writer's queue, before the writer runs.
fn channel() -> (Audit, mpsc::Receiver<Msg>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (bus, _) = broadcast::channel(1024);
    (Audit { tx, bus, dropped: Arc::default(), lockouts: Arc::default() }, rx)
}

fn spawn_writer(
    store: Store,
    retain: u64,
    rx: mpsc::Receiver<Msg>,
    audit: &Audit,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (lockouts, bus, dropped) = (audit.lockouts.clone(), audit.bus.clone(), audit.dropped.clone());
    let last = store.counter(records::SEQ).unwrap_or(0);
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || Writer { store, lockouts, bus, dropped, seq: last, retain, reported: 0 }.run(rx))
}

/// The writer thread's state: the next numbers, and what it has reported.
struct Writer {
    store: Store,
    lockouts: Arc<Mutex<Lockouts>>,
    bus: broadcast::Sender<Arc<Event>>,
    dropped: Arc<AtomicU64>,
    /// The last number given.
    seq: u64,
    retain: u64,
    /// Drops already reported as an `audit.gap`.
    reported: u64,
}

/// One group of messages as it is written: one store batch, the events it
/// publishes once written, and what waits for it to be durable.
#[derive(Default)]
struct Group {
    batch: Batch,
    events: Vec<Event>,
    waiting: Vec<After>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        // Writing events to the store (sled's page work, the fsyncs) may
        // wait; on a two-core controller it must not take a core from the
        // drivers and the decision loop at the moment a key is presented.
        // The queue holds QUEUE events meanwhile.
        crate::priority::lower_this_thread();
        while let Some(first) = rx.blocking_recv() {
            let mut msgs = vec![first];
            while msgs.len() < GROUP {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            self.write_group(msgs);
        }
    }

    /// Numbers and writes `msgs` (with the lockout states waiting) in one
    /// durable batch, then publishes the events and runs what waited.
    fn write_group(&mut self, msgs: Vec<Msg>) {
        let mut g = Group::default();
        let Lockouts { states, waiting } =
            std::mem::take(&mut *self.lockouts.lock().unwrap_or_else(|e| e.into_inner()));
        g.waiting = waiting;
        for (device, s) in states {
            g.batch.put(records::lockout_key(&device), serde_json::to_vec(&s).unwrap_or_default());
        }
        let before = self.seq;
        // Events dropped because the queue was full: a gap in what the
        // log holds, said where it happened.
        let lost = self.dropped.load(Ordering::Relaxed);
        if lost > self.reported {
            let gap = event::Event::AuditGap {
                after: before,
                reason: "queue_full",
                since: None,
                dropped: Some(lost - self.reported),
            };
            self.push(Draft { ts_ms: chrono::Utc::now().timestamp_millis(), event: gap }, &mut g);
            self.reported = lost;
        }
        for m in msgs {
            match m {
                Msg::Event(d) => self.push(d, &mut g),
                Msg::EventUse(d, h, spent, then) => {
                    self.push(d, &mut g);
                    g.batch.put(records::uses_key(&h), spent.encode());
                    g.waiting.push(then);
                }
                Msg::Wake => {}
                Msg::Written(done) => g.waiting.push(done),
            }
        }
        g.batch.put(records::SEQ.to_vec(), self.seq.to_string().into_bytes());
        self.write_durably(before, &g.batch);
        for e in g.events {
            let _ = self.bus.send(Arc::new(e));
        }
        for w in g.waiting {
            w();
        }
    }

    /// Numbers event `d` and adds it to the group (the oldest beyond
    /// `retain` leaves the log in the same batch).
    fn push(&mut self, d: Draft, g: &mut Group) {
        self.seq += 1;
        let seq = self.seq;
        // The object's keys are sorted (serde_json's `Map`): the line reads
        // the same whichever order they are inserted in.
        let mut obj = d.event.to_json();
        obj.insert("seq".into(), seq.into());
        obj.insert("ts".into(), records::rfc3339(d.ts_ms).into());
        let json = Value::Object(obj);
        g.batch.put(records::audit_key(seq), serde_json::to_vec(&json).unwrap_or_default());
        if seq > self.retain {
            g.batch.remove(records::audit_key(seq - self.retain));
        }
        g.events.push(Event { seq, json });
    }

    /// Writes `batch` (numbers above `floor`) until it is written. A write
    /// that fails (a full or failing disk) is tried again, the same batch
    /// with the same seqs: nothing it holds is lost, and meanwhile the queue
    /// fills and drops (counted). Numbers are published only below what the
    /// check record has reserved, a block at a time, so no restart can hand
    /// one out again.
    fn write_durably(&self, floor: u64, batch: &Batch) {
        let (store, seq) = (&self.store, self.seq);
        let reserve = || -> Result<(), String> {
            match store.guard() {
                Some(g) if g.reserved() < seq => {
                    let hi = seq + crate::store::check::SEQ_BLOCK;
                    let mut r = g.reserve(floor, hi);
                    // A full disk gives up the reserve for the record first.
                    if r.as_ref().is_err_and(crate::store::is_no_space) && store.make_room() {
                        r = g.reserve(floor, hi);
                    }
                    r.map_err(|e| format!("seq reservation: {e}"))
                }
                _ => Ok(()),
            }
        };
        let mut wait = RETRY_FIRST;
        while let Err(e) = reserve().and_then(|()| store.apply(batch.clone()).map_err(|e| e.to_string())) {
            tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "audit log write failed");
            std::thread::sleep(wait);
            wait = (wait * 2).min(RETRY_MAX);
        }
    }
}

/// Reads the stored events with `seq > after`, oldest first, at most `limit`.
pub fn read(store: &Store, after: u64, limit: usize) -> Vec<Value> {
    store
        .scan_after(records::AUDIT, &records::audit_key(after))
        .filter_map(|r| r.ok())
        .take(limit)
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft { ts_ms: 0, event: event::Event::DoorOpened { door: "main".into() } }
    }

    /// A queue full of events does not lose a lockout state: it is written
    /// with the writer's next batch, the newest per device.
    #[test]
    fn a_full_queue_keeps_the_lockout_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        // The queue filled before the writer runs: every wake-up is refused.
        let (audit, rx) = channel();
        while audit.dropped() == 0 {
            audit.record(draft());
        }
        let engaged = LockoutState { consecutive: 5, locked_until_ms: 1_000, ..Default::default() };
        audit.lockout("keypad1", LockoutState { consecutive: 4, ..Default::default() });
        let done = audit.lockout_durable("keypad1", engaged);
        let thread = spawn_writer(store.clone(), 100_000, rx, &audit).unwrap();
        done.blocking_recv().expect("written");
        let stored = store.get(&records::lockout_key("keypad1")).unwrap().expect("a stored state");
        assert_eq!(serde_json::from_slice::<LockoutState>(&stored).unwrap(), engaged);
        drop(audit);
        thread.join().unwrap();
    }

    #[test]
    fn sequences_survive_restarts_and_old_events_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..2u64 {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            let (audit, thread) = start(store.clone(), 1000).unwrap();
            let mut sub = audit.subscribe();
            for _ in 0..700 {
                audit.record(draft());
            }
            drop(audit);
            thread.join().unwrap();
            let mut last = 0;
            while let Ok(e) = sub.try_recv() {
                assert_eq!(e.seq, last.max(round * 700) + 1);
                last = e.seq;
            }
            assert_eq!(last, (round + 1) * 700);
            let all = read(&store, 0, usize::MAX);
            assert_eq!(all.len(), if round == 0 { 700 } else { 1000 });
            assert_eq!(all.last().unwrap()["seq"], (round + 1) * 700);
        }
    }
}
