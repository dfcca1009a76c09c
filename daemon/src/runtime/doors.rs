//! Doors: each door owns its lock output in one task. A grant opens the lock
//! for the unlock time; another grant while open extends it; then it relocks.
//! Locks are driven locked at start (before any input is read) and at
//! shutdown, whatever state they were in.
//!
//! With a door contact, the same task supervises the door: `door.opened` and
//! `door.closed` as the contact reports them, `door.forced` when the door
//! opens while the lock is locked (no grant, no exit request), and
//! `door.held_open` once the door has stood open for `held_open`. With
//! `relock_on_close` the lock relocks as soon as the door closes after an
//! opening. An exit button opens the door like a grant (`door.exit`).
//!
//! A lock output that fails (an unplugged relay board) is recorded once as
//! `door.lock_failed`; a failed command to lock is tried again, after 250 ms
//! doubling to 5 s, until it works (`door.lock_restored`).

use super::audit::{Audit, Draft};
use super::clock::Clock;
use super::feedback::{Cue, Signal};
use crate::event::Event;
use crate::provision::home_assistant::{DoorView, LockState};
use porter_drivers::Output;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorCmd {
    Unlock(Duration),
    /// The contact's level: `true` is open.
    Contact(bool),
    /// The exit button was pressed.
    Exit,
}

/// The sending side of a door, cloned into the decision loop and the admin.
#[derive(Clone)]
pub struct DoorHandle {
    pub id: String,
    pub unlock: Duration,
    tx: mpsc::Sender<DoorCmd>,
    indicators: Vec<mpsc::Sender<Cue>>,
    /// Every door's lock and contact as driven and seen (Home Assistant).
    pub views: tokio::sync::watch::Receiver<Vec<DoorView>>,
}

impl DoorHandle {
    /// Asks the door to open without waiting; false when its queue is full.
    pub fn open(&self, d: Duration) -> bool {
        self.send(DoorCmd::Unlock(d))
    }

    /// Hands the door a command without waiting; false when its queue is full.
    pub fn send(&self, cmd: DoorCmd) -> bool {
        self.tx.try_send(cmd).is_ok()
    }

    /// Plays `signal` on the door's LED and buzzer, if it has them, and
    /// hands it to its feedback devices with the input device (its index)
    /// whose input caused it. A full indicator queue drops the signal:
    /// feedback never holds anything up.
    pub fn signal(&self, signal: Signal, device: Option<usize>) {
        for i in &self.indicators {
            let _ = i.try_send(Cue { signal, device });
        }
    }
}

/// How a door behaves, from its `[[doors]]` entry.
#[derive(Debug, Clone)]
pub struct DoorSetup {
    pub id: String,
    pub unlock: Duration,
    pub held_open: Duration,
    pub relock_on_close: bool,
    /// The door's place in `[[doors]]` (its slot in [`DoorEvents::views`]).
    pub index: usize,
}

/// Where a door records what its contact saw, and shows its state.
#[derive(Clone)]
pub struct DoorEvents {
    pub audit: Audit,
    pub clock: Arc<dyn Clock>,
    /// Every door's view, one slot a door (Home Assistant's lock and door
    /// sensor read it).
    pub views: Arc<tokio::sync::watch::Sender<Vec<DoorView>>>,
}

impl DoorEvents {
    pub fn new(audit: Audit, clock: Arc<dyn Clock>, doors: usize) -> DoorEvents {
        DoorEvents { audit, clock, views: Arc::new(tokio::sync::watch::channel(vec![DoorView::default(); doors]).0) }
    }
}

/// The first wait before a failed command to lock is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between tries.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Makes a door: drives its lock locked now (unless `locked` says
/// [`lock_all`] just did, through this very output), returns the handle and
/// the task.
pub async fn start(
    setup: DoorSetup,
    out: Box<dyn Output>,
    locked: bool,
    indicators: Vec<mpsc::Sender<Cue>>,
    events: DoorEvents,
    cancel: CancellationToken,
) -> (DoorHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(32);
    let views = events.views.subscribe();
    let handle = DoorHandle { id: setup.id.clone(), unlock: setup.unlock, tx, indicators, views };
    let mut door =
        Door { setup, out, events, open_until: None, contact: None, held_since: None, retry: None, failing: false };
    if !locked {
        door.relock().await;
    }
    let task = tokio::spawn(door.run(rx, cancel));
    (handle, task)
}

/// A lock output opened and driven by [`lock_all`], and whether it took the
/// command.
pub type Driven = Option<(Box<dyn Output>, bool)>;

/// Drives every lock of `cfg` locked, first thing at start, before the store
/// is opened or anything else that can fail or panic runs: whatever a
/// crashed run left open is locked even if this start goes no further.
/// Returns each door's output (in door order) for [`start`] to keep, so the
/// lock is not commanded twice. An `exec` lock is not driven here: its
/// program starts with the doors.
pub async fn lock_all(cfg: &crate::config::Config) -> Vec<Driven> {
    let mut out = Vec::new();
    for d in &cfg.doors {
        let dev = &cfg.devices[d.lock];
        if dev.kind.descriptor().output_through_input {
            tracing::warn!(door = %d.id, device = %dev.id, "exec lock not driven before the store is opened: its program starts with the doors");
            out.push(None);
            continue;
        }
        let Some(mut o) = dev.kind.output_driver(&dev.id) else {
            out.push(None);
            continue;
        };
        let ok = match o.set(false).await {
            Ok(()) => {
                tracing::info!(door = %d.id, "lock driven locked before the store is opened");
                true
            }
            Err(e) => {
                tracing::error!(door = %d.id, error = %e, "lock output failed");
                false
            }
        };
        out.push(Some((o, ok)));
    }
    out
}

struct Door {
    setup: DoorSetup,
    out: Box<dyn Output>,
    events: DoorEvents,
    /// When the lock relocks; `None` while locked.
    open_until: Option<Instant>,
    /// The contact's last level (`true` open); `None` before its first report.
    contact: Option<bool>,
    /// While the door stands open and `door.held_open` is still to come.
    held_since: Option<Instant>,
    /// After a failed command to lock: when to try again, and the wait that
    /// led there (it doubles up to [`RETRY_MAX`]).
    retry: Option<(Instant, Duration)>,
    /// The output's last command failed (`door.lock_failed` was recorded).
    failing: bool,
}

impl Door {
    async fn run(mut self, mut rx: mpsc::Receiver<DoorCmd>, cancel: CancellationToken) {
        loop {
            let relock = sleep_until(self.open_until.or(self.retry.map(|(t, _)| t)));
            let held = sleep_until(self.held_since.map(|t| t + self.setup.held_open));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = relock => self.relock().await,
                _ = held => {
                    self.held_since = None;
                    tracing::warn!(door = %self.setup.id, held_open_s = self.setup.held_open.as_secs(), "door held open");
                    self.record(Event::DoorHeldOpen { door: self.setup.id.clone(), held_open_s: self.setup.held_open.as_secs() });
                }
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(DoorCmd::Unlock(d)) => self.unlock(d).await,
                    Some(DoorCmd::Exit) => {
                        tracing::info!(door = %self.setup.id, "exit button: door unlocked");
                        self.record(Event::DoorExit { door: self.setup.id.clone() });
                        self.unlock(self.setup.unlock).await;
                    }
                    Some(DoorCmd::Contact(open)) => self.contact(open).await,
                },
            }
        }
        // Shutdown: locked, whatever state the door was in.
        self.drive(false).await;
    }

    async fn unlock(&mut self, d: Duration) {
        let until = Instant::now() + d;
        if self.open_until.is_none() {
            self.retry = None;
            self.drive(true).await;
        }
        self.open_until = Some(self.open_until.map_or(until, |t| t.max(until)));
    }

    /// Drives the lock locked; if that fails, schedules the next try.
    async fn relock(&mut self) {
        self.open_until = None;
        self.retry = if self.drive(false).await {
            None
        } else {
            let wait = self.retry.map_or(RETRY_FIRST, |(_, w)| (w * 2).min(RETRY_MAX));
            Some((Instant::now() + wait, wait))
        };
    }

    /// Sets the lock output; true when it took the command. A failure is
    /// logged and recorded once until the output works again: a lock that
    /// cannot be driven must not stop the door task.
    async fn drive(&mut self, unlocked: bool) -> bool {
        let door = self.setup.id.clone();
        let result = self.out.set(unlocked).await;
        let lock = match (&result, unlocked) {
            (Ok(()), true) => LockState::Unlocked,
            (Ok(()), false) => LockState::Locked,
            (Err(_), _) => LockState::Jammed,
        };
        self.show(|v| v.lock = lock);
        match result {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(%door, unlocked, "lock output works again");
                    self.record(Event::DoorLockRestored { door });
                }
                true
            }
            Err(e) if self.failing => {
                tracing::debug!(%door, error = %e, unlocked, "lock output still failing");
                false
            }
            Err(e) => {
                tracing::error!(%door, error = %e, unlocked, "lock output failed");
                let want = if unlocked { "unlocked" } else { "locked" };
                // Until the event is queued, every failed try records it again.
                self.failing = self.record(Event::DoorLockFailed { door, lock: want, error: e.to_string() });
                false
            }
        }
    }

    /// Changes the door's view (for Home Assistant), telling watchers only
    /// of a real change.
    fn show(&self, change: impl FnOnce(&mut DoorView)) {
        let i = self.setup.index;
        self.events.views.send_if_modified(|v| {
            let Some(view) = v.get_mut(i) else { return false };
            let before = *view;
            change(view);
            before != *view
        });
    }

    async fn contact(&mut self, open: bool) {
        self.show(|v| v.contact = Some(open));
        let before = self.contact.replace(open);
        if before == Some(open) {
            return;
        }
        if open {
            // The first report after a start is the door's state, not an
            // opening; nor is an opening forced while a relock is failing
            // (the lock may still be open).
            let forced = before.is_some() && self.open_until.is_none() && self.retry.is_none();
            self.held_since = Some(Instant::now());
            self.record(Event::DoorOpened { door: self.setup.id.clone() });
            if forced {
                tracing::warn!(door = %self.setup.id, "door forced: opened while locked");
                self.record(Event::DoorForced { door: self.setup.id.clone() });
            }
        } else {
            self.held_since = None;
            if before.is_some() {
                self.record(Event::DoorClosed { door: self.setup.id.clone() });
            }
            if self.setup.relock_on_close && self.open_until.is_some() && before == Some(true) {
                tracing::info!(door = %self.setup.id, "door closed: relocked at once");
                self.relock().await;
            }
        }
    }

    /// Records an event; false when the audit queue was full.
    fn record(&self, event: Event) -> bool {
        if matches!(event, Event::DoorOpened { .. } | Event::DoorClosed { .. }) {
            tracing::info!(door = %self.setup.id, event = event.kind(), "door contact");
        }
        self.events.audit.record(Draft { ts_ms: self.events.clock.now_ms(), event })
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::audit;
    use crate::runtime::clock::SystemClock;
    use crate::store::Store;
    use porter_drivers::fake::FakeOutput;

    struct Rig {
        door: DoorHandle,
        task: tokio::task::JoinHandle<()>,
        lock: FakeOutput,
        cancel: CancellationToken,
        events: tokio::sync::broadcast::Receiver<Arc<audit::Event>>,
    }

    async fn rig(relock_on_close: bool) -> Rig {
        let (audit, _thread) = audit::start(Store::temporary().unwrap(), 10_000).unwrap();
        let events = audit.subscribe();
        let lock = FakeOutput::default();
        let cancel = CancellationToken::new();
        let setup = DoorSetup {
            id: "main".into(),
            unlock: Duration::from_secs(3),
            held_open: Duration::from_secs(60),
            relock_on_close,
            index: 0,
        };
        let ev = DoorEvents::new(audit, Arc::new(SystemClock), 1);
        let (door, task) = start(setup, Box::new(lock.clone()), false, Vec::new(), ev, cancel.clone()).await;
        Rig { door, task, lock, cancel, events }
    }

    /// The types of the events written so far, waiting (on the real clock:
    /// the writer is a thread) until there are `n`.
    async fn types(rx: &mut tokio::sync::broadcast::Receiver<Arc<audit::Event>>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.len() < n {
            match rx.try_recv() {
                Ok(e) => out.push(e.json["type"].as_str().unwrap().to_string()),
                Err(_) => {
                    assert!(std::time::Instant::now() < deadline, "only {out:?} within 10 s");
                    tokio::task::yield_now().await;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn opens_extends_relocks_and_locks_at_shutdown() {
        let r = rig(false).await;
        assert_eq!(r.lock.states(), [false]);
        assert!(r.door.open(Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(r.lock.states(), [false, true]);
        r.door.open(Duration::from_secs(3)); // extends to t=5s
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(r.lock.states(), [false, true], "still open at 4.5 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(r.lock.states(), [false, true, false], "relocked by 5.5 s");
        r.door.open(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(10)).await;
        r.cancel.cancel();
        r.task.await.unwrap();
        assert_eq!(r.lock.states(), [false, true, false, true, false]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_relock_is_tried_again_until_it_works() {
        let mut r = rig(false).await;
        let lock = |r: &Rig| r.door.views.borrow()[0].lock;
        assert_eq!(lock(&r), LockState::Locked);
        r.door.open(Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(lock(&r), LockState::Unlocked, "Home Assistant's lock shows the grant");
        // The relay board goes away just before the relock: 4 commands fail.
        r.lock.fail_next(4);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(r.lock.states(), [false, true], "the relock failed");
        assert_eq!(lock(&r), LockState::Jammed, "a lock that cannot be driven shows jammed");
        assert_eq!(types(&mut r.events, 1).await, ["door.lock_failed"]);
        // Tried again 0.25, 0.5, 1 and 2 s after each failure: at 3.25 s,
        // 3.75 s, 4.75 s (failing), then 6.75 s (working).
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(r.lock.attempts(), 6, "the first lock, the unlock and four failed tries");
        assert_eq!(r.lock.states(), [false, true]);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(r.lock.states(), [false, true, false], "locked on the fifth try");
        assert_eq!(lock(&r), LockState::Locked);
        assert_eq!(types(&mut r.events, 1).await, ["door.lock_restored"]);
        // Then no more tries.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(r.lock.attempts(), 7);
        r.cancel.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_contact_tells_opened_closed_forced_and_held_open() {
        let mut r = rig(false).await;
        // The first report is the door's state at start: closed, no event.
        r.door.send(DoorCmd::Contact(false));
        // A grant, then the door opens and closes: no alarm.
        r.door.open(Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(500)).await;
        r.door.send(DoorCmd::Contact(true));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(r.door.views.borrow()[0].contact, Some(true), "Home Assistant's door sensor: open");
        r.door.send(DoorCmd::Contact(false));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(r.door.views.borrow()[0].contact, Some(false));
        assert_eq!(types(&mut r.events, 2).await, ["door.opened", "door.closed"]);
        // Opened while locked: forced; left open: held open, once.
        r.door.send(DoorCmd::Contact(true));
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(types(&mut r.events, 3).await, ["door.opened", "door.forced", "door.held_open"]);
        tokio::time::sleep(Duration::from_secs(120)).await;
        r.door.send(DoorCmd::Contact(false));
        assert_eq!(types(&mut r.events, 1).await, ["door.closed"]);
        // The exit button opens the door: the opening that follows is not forced.
        r.door.send(DoorCmd::Exit);
        tokio::time::sleep(Duration::from_millis(100)).await;
        r.door.send(DoorCmd::Contact(true));
        assert_eq!(types(&mut r.events, 2).await, ["door.exit", "door.opened"]);
        assert_eq!(r.lock.states(), [false, true, false, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn relock_on_close_relocks_as_soon_as_the_door_closes() {
        let mut r = rig(true).await;
        r.door.send(DoorCmd::Contact(false));
        r.door.open(Duration::from_secs(30));
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.door.send(DoorCmd::Contact(true));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(r.lock.states(), [false, true]);
        r.door.send(DoorCmd::Contact(false));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(r.lock.states(), [false, true, false], "relocked at the close, not after 30 s");
        assert_eq!(types(&mut r.events, 2).await, ["door.opened", "door.closed"]);
    }
}
