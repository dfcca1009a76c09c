//! The decision loop: a thin adapter around the pure [`Room`]. It owns the
//! room, turns what devices report into the room's inputs, and carries out
//! the room's effects as they come, in order: the lock first, then the
//! writes, the feedback that waits on them, the log lines and the events.
//! Once a door is unlocked, the answer's feedback, log lines and events are
//! held back until the loop has yielded once: the door's task and its
//! lock's driver, woken on this worker, then put the command on the wire
//! before a log line is written or the audit writer is woken (which, on a
//! small machine, would take the CPU from them: docs/performance.md).
//!
//! Nothing on the path from a report to the door command waits: the snapshot
//! is an `arc-swap` load, the door command a `try_send`. What the room's
//! answers mean is in `access::room`; this file only knows how each effect
//! reaches its door, the audit writer or the enroller.

use super::audit::{Audit, Draft};
use super::clock::{self, Clock};
use super::doors::{DoorCmd, DoorHandle};
use super::enroll::EnrollJob;
use crate::access::keypad::KeypadEntry;
use crate::access::lockout::LockoutState;
use crate::access::room::{
    self, Answer, At, CardPinPolicy, Control, DoorInput, Effect, EnrolPolicy, LockedOut, Policy, Room, Seat, Signal,
    Sink, Station, Then, Used,
};
use crate::access::{KeyHash, Snapshot};
use crate::config::Purpose;
use crate::event::Event;
use crate::store::records;
use crate::store::secret::KeyHasher;
use arc_swap::ArcSwap;
use porter_drivers::{CardUid, Condition, DeviceReport, Health, Input, Report};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Requests from the admin side and the clock's watch to the loop.
pub enum ControlMsg {
    /// Clears the lockout of one device (or all); replies with the devices
    /// cleared and, for each, a receiver that completes once it is on disk.
    ClearLockout { device: Option<String>, reply: oneshot::Sender<Result<Cleared, String>> },
    /// Opens `door`'s enrolment window for `holder` (replaces an open one)
    /// for `window` or the configured time; replies with the window's end in
    /// unix ms and its length.
    Enroll {
        holder: String,
        door: String,
        window: Option<Duration>,
        reply: oneshot::Sender<Result<(i64, Duration), String>>,
    },
    /// The watchdog's question: is the loop taking messages?
    Ping { reply: oneshot::Sender<()> },
    /// The input devices locked out now (`state.get`).
    Lockouts { reply: oneshot::Sender<Vec<LockedOut>> },
    /// The clock's watch saw its synchronisation change (`None`: unreadable).
    ClockTrust(Option<bool>),
    /// The wall clock stepped by `by_ms` against the monotonic clock: each
    /// running lockout moves with it, so it lasts as long as it would have.
    ClockJumped { by_ms: i64 },
}

/// The devices a `lockout.clear` cleared, and the wait for their persistence.
pub type Cleared = Vec<(String, oneshot::Receiver<()>)>;

/// Per-device state, as the runtime builds it; the loop's [`Room`] keeps it.
pub struct DeviceState {
    pub id: String,
    pub door: Option<u8>,
    /// Credentials, or the door's contact or exit button.
    pub purpose: Purpose,
    pub keypad: KeypadEntry,
    pub lockout: LockoutState,
}

/// The room's policy from the config.
pub fn policy(cfg: &crate::config::Config) -> Policy {
    Policy {
        lockout: cfg.lockout,
        card_pin: CardPinPolicy {
            doors: cfg.doors.iter().map(|d| d.card_plus_pin).collect(),
            roles: cfg.card_plus_pin_roles.clone(),
            pin_after_card: cfg.keypad.pin_after_card,
        },
        tz: cfg.timezone,
        enroll: EnrolPolicy { roles: cfg.enroll.roles.clone(), window: cfg.enroll.window },
        deny_unsynchronized: cfg.clock.unsynchronized == clock::Unsynchronized::Deny,
    }
}

/// What the loop works with: the live keys, the devices and doors, and
/// where its results go.
pub struct Parts {
    pub live: Arc<ArcSwap<Snapshot>>,
    pub hasher: KeyHasher,
    pub devices: Vec<DeviceState>,
    pub doors: Vec<DoorHandle>,
    pub clock: Arc<dyn Clock>,
    pub audit: Audit,
    pub health: HealthMap,
    pub enroller: mpsc::Sender<EnrollJob>,
    /// The clock's synchronisation as seen at start; the watch tells the
    /// loop of changes ([`ControlMsg::ClockTrust`]).
    pub synchronized: Option<bool>,
    /// The grants each limited key has given ([`load_uses`]).
    pub uses: std::collections::HashMap<KeyHash, records::Spent>,
    /// Where grants' latencies are recorded, for the status document.
    pub latency: Arc<super::latency::Latency>,
}

/// Where the room's effects go: the doors, the audit writer, the enroller.
struct Outlets {
    doors: Vec<DoorHandle>,
    /// The input devices' ids, by index.
    devices: Vec<String>,
    audit: Audit,
    enroller: mpsc::Sender<EnrollJob>,
    latency: Arc<super::latency::Latency>,
}

/// The feedback and events of an answer that unlocked a door, carried out
/// once the door's command has gone out, and their timestamp.
#[derive(Default)]
struct Deferred {
    ts_ms: i64,
    effects: Vec<Effect>,
}

impl Deferred {
    /// Keeps what an answer held back (only one that unlocked a door holds
    /// anything back), for [`DecisionLoop::carry_deferred`] after the yield;
    /// an empty one only keeps its buffer when there is none yet.
    fn hold(&mut self, ts_ms: i64, effects: Vec<Effect>) {
        if !effects.is_empty() || self.effects.capacity() == 0 {
            *self = Deferred { ts_ms, effects };
        }
    }
}

pub struct DecisionLoop {
    live: Arc<ArcSwap<Snapshot>>,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    /// Each input device's health, for the status document.
    health: HealthMap,
    /// The room's state and policy.
    room: Room,
    out: Outlets,
    /// Kept between answers, so that its buffer is reused.
    deferred: Deferred,
}

/// Device id to `online`, `offline` or `unknown`.
pub type HealthMap = Arc<std::sync::Mutex<std::collections::BTreeMap<String, &'static str>>>;

/// Loads the uses spent of limited keys.
pub fn load_uses(store: &crate::store::Store) -> std::collections::HashMap<KeyHash, records::Spent> {
    store
        .scan(records::USES)
        .filter_map(|r| r.ok())
        .filter_map(|(k, v)| {
            let h: [u8; KeyHash::LEN] = k.get(records::USES.len()..)?.try_into().ok()?;
            Some((KeyHash(h), records::Spent::decode(&v)?))
        })
        .collect()
}

/// Loads each device's persisted lockout state.
pub fn load_lockouts(store: &crate::store::Store, ids: &[String]) -> Vec<LockoutState> {
    ids.iter()
        .map(|id| {
            store
                .get(&records::lockout_key(id))
                .ok()
                .flatten()
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default()
        })
        .collect()
}

impl DecisionLoop {
    /// A loop with no enrolment window open and no card waiting.
    pub fn new(p: Parts, policy: Policy) -> DecisionLoop {
        let ids = p.devices.iter().map(|d| d.id.clone()).collect();
        let devices = p
            .devices
            .into_iter()
            .map(|d| {
                let station = Station { id: d.id, door: d.door.map(usize::from), purpose: d.purpose };
                (station, Seat { keypad: d.keypad, lockout: d.lockout })
            })
            .collect();
        let uses = p.uses.into_iter().map(|(k, s)| (k, Used { created_ms: s.created_ms, used: s.used })).collect();
        let doors = p.doors.iter().map(|d| d.id.clone()).collect();
        let room = Room::new(doors, devices, policy).with_uses(uses).with_clock(p.synchronized);
        DecisionLoop {
            live: p.live,
            hasher: p.hasher,
            clock: p.clock,
            health: p.health,
            room,
            out: Outlets { doors: p.doors, devices: ids, audit: p.audit, enroller: p.enroller, latency: p.latency },
            deferred: Deferred::default(),
        }
    }

    /// Runs until `cancel` fires, then handles what is already queued.
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<DeviceReport>,
        mut control: mpsc::Receiver<ControlMsg>,
        cancel: CancellationToken,
    ) {
        loop {
            let next_close = self.room.next_deadline().map(Instant::from_std);
            let close = async {
                match next_close {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(r) = reports.recv() => self.report(r),
                Some(c) = control.recv() => self.control(c),
                _ = close => self.tick(),
                _ = cancel.cancelled() => break,
            }
            if !self.deferred.effects.is_empty() {
                // The door's command first (its task and its driver's were
                // woken on this worker and run now), then the rest.
                tokio::task::yield_now().await;
                self.carry_deferred();
            }
        }
        while let Ok(r) = reports.try_recv() {
            self.report(r);
            self.carry_deferred();
        }
    }

    /// Carries out what an answer that unlocked a door held back.
    fn carry_deferred(&mut self) {
        let mut effects = std::mem::take(&mut self.deferred.effects);
        let mut carry = Carry::new(&self.out, self.deferred.ts_ms, None, None, Vec::new());
        for e in effects.drain(..) {
            carry.effect(e);
        }
        self.deferred.effects = effects;
    }

    /// Now on both clocks (tokio's monotonic one, so tests can pause it).
    fn at(&self) -> At {
        At { mono: Instant::now().into_std(), ms: self.clock.now_ms() }
    }

    /// Closes the windows and ends the waits whose time is up.
    fn tick(&mut self) {
        let at = self.at();
        let mut carry = Carry::new(&self.out, at.ms, None, None, Vec::new());
        self.room.tick(at, &mut carry);
        self.deferred.hold(at.ms, carry.deferred);
    }

    fn control(&mut self, c: ControlMsg) {
        let at = self.at();
        let mut carry = Carry::new(&self.out, at.ms, None, None, Vec::new());
        match c {
            ControlMsg::ClearLockout { device, reply } => {
                let r = self.room.control(at, Control::ClearLockout { device }, &mut carry);
                let _ = reply.send(r.map(|_| std::mem::take(&mut carry.confirms)));
            }
            ControlMsg::Enroll { holder, door, window, reply } => {
                let r = self.room.control(at, Control::Enroll { holder, door, window }, &mut carry);
                let _ = reply.send(r.map(|a| match a {
                    Answer::WindowOpen { until_ms, length } => (until_ms, length),
                    _ => unreachable!("enroll.start answers with its window"),
                }));
            }
            ControlMsg::Ping { reply } => {
                let _ = reply.send(());
            }
            ControlMsg::Lockouts { reply } => {
                let _ = reply.send(self.room.lockouts(at));
            }
            ControlMsg::ClockTrust(s) => {
                let _ = self.room.control(at, Control::ClockTrust(s), &mut carry);
            }
            ControlMsg::ClockJumped { by_ms } => {
                let _ = self.room.control(at, Control::ClockJumped { by_ms }, &mut carry);
            }
        }
        self.deferred.hold(at.ms, carry.deferred);
    }

    fn report(&mut self, r: DeviceReport) {
        let Some(id) = self.out.devices.get(r.device) else { return };
        let input = match &r.report {
            Report::Health(h) => {
                let device = id.clone();
                let event = match h {
                    Health::Online => Event::DeviceOnline { device },
                    Health::Offline(e) => {
                        Event::DeviceOffline { device, error: e.to_string(), error_kind: e.kind.as_str() }
                    }
                };
                tracing::info!(device = %id, event = event.kind(), "device health");
                if let Ok(mut m) = self.health.lock() {
                    m.insert(id.clone(), if matches!(h, Health::Online) { "online" } else { "offline" });
                }
                self.out.audit.record(Draft { ts_ms: self.clock.now_ms(), event });
                return;
            }
            Report::Condition(c, active) => {
                let (device, active) = (id.clone(), *active);
                let door =
                    self.room.stations().get(r.device).and_then(|s| s.door).and_then(|d| self.room.doors().get(d));
                let door = door.cloned();
                let event = match c {
                    Condition::Tamper => Event::DeviceTamper { device, door, active },
                    Condition::Power => Event::DevicePower { device, door, active },
                };
                tracing::warn!(device = %id, event = event.kind(), active, "device condition");
                self.out.audit.record(Draft { ts_ms: self.clock.now_ms(), event });
                return;
            }
            Report::Input(Input::Key(k)) => room::Input::Key(*k),
            Report::Input(Input::Card(uid)) => room::Input::Card(uid.as_bytes()),
            Report::Input(Input::Qr(text)) => room::Input::Qr(text.as_bytes()),
            Report::Input(Input::Level(active)) => room::Input::Level(*active),
        };
        let card = match &r.report {
            Report::Input(Input::Card(uid)) => Some(uid),
            _ => None,
        };
        if matches!(input, room::Input::Level(_)) && self.room.stations()[r.device].purpose == Purpose::Credentials {
            tracing::debug!(device = %id, "a level from a device that reads keys: ignored");
        }
        let at = self.at();
        let snap = self.live.load();
        let buffer = std::mem::take(&mut self.deferred.effects);
        let mut carry = Carry::new(&self.out, at.ms, card, Some(r.at), buffer);
        self.room.input(at, r.device, input, &snap, &self.hasher, &mut carry);
        self.deferred.hold(at.ms, std::mem::take(&mut carry.deferred));
        // Uses that could not be written are not used.
        for (key, used) in std::mem::take(&mut carry.unspent) {
            self.room.unspend(key, used);
        }
    }
}

/// Carries out the room's effects for one answer, as they come.
struct Carry<'a> {
    out: &'a Outlets,
    /// The answer's time, the events' timestamp.
    ts_ms: i64,
    /// The card presented, for an [`Effect::Enrol`].
    card: Option<&'a CardUid>,
    /// Limited keys' uses that could not be written, to give back to the room.
    unspent: Vec<(KeyHash, Used)>,
    /// `lockout.clear`'s waits for its writes.
    confirms: Cleared,
    /// When the input being answered reached the loop's queue (its driver's
    /// hand-over), for the grant's latency; `None` for a control message.
    arrived: Option<std::time::Instant>,
    /// Whether this answer unlocked a door: its feedback and events after
    /// that are held back in `deferred` (see the module's header).
    unlocked: bool,
    deferred: Vec<Effect>,
}

impl<'a> Carry<'a> {
    /// `deferred` is an empty buffer to reuse.
    fn new(
        out: &'a Outlets,
        ts_ms: i64,
        card: Option<&'a CardUid>,
        arrived: Option<std::time::Instant>,
        deferred: Vec<Effect>,
    ) -> Carry<'a> {
        Carry { out, ts_ms, card, unspent: Vec::new(), confirms: Vec::new(), arrived, unlocked: false, deferred }
    }
}

impl Carry<'_> {
    /// A limited key's grant: its use is written first, and the door opens
    /// once it is on disk (or stays locked if it cannot be written).
    fn persist_use_then_unlock(&mut self, door: usize, device: usize, key: KeyHash, used: Used, event: Event) -> bool {
        let out = self.out;
        log(&event);
        let door_h = out.doors[door].clone();
        let decided = std::time::Instant::now();
        let (latency, arrived) = (out.latency.clone(), self.arrived);
        let open = Box::new(move || {
            if open_when_durable(&door_h, device, decided) {
                if let Some(arrived) = arrived {
                    latency.record(arrived);
                }
            }
        });
        let spent = records::Spent { created_ms: used.created_ms, used: used.used };
        let written = out.audit.record_use(Draft { ts_ms: self.ts_ms, event }, key, spent, open);
        if !written {
            // Not persisted, so not used: the door stays locked.
            self.unspent.push((key, used));
            out.doors[door].signal(Signal::Deny { reason: NOT_RECORDED }, Some(device));
        }
        written
    }
}

impl Sink for Carry<'_> {
    fn effect(&mut self, effect: Effect) -> bool {
        let out = self.out;
        match effect {
            e @ (Effect::Signal { .. } | Effect::Record(_)) if self.unlocked => {
                self.deferred.push(e);
                true
            }
            Effect::Unlock { door } => {
                let d = &out.doors[door];
                let opened = d.open(d.unlock);
                self.unlocked |= opened;
                if let Some(arrived) = self.arrived.filter(|_| opened) {
                    out.latency.record(arrived);
                }
                if !opened {
                    tracing::error!(door = %d.id, "door command queue full: the lock was not opened");
                }
                opened
            }
            Effect::Signal { door, signal, device } => {
                out.doors[door].signal(signal, device);
                true
            }
            Effect::Record(event) => {
                log(&event);
                out.audit.record(Draft { ts_ms: self.ts_ms, event });
                true
            }
            Effect::PersistUseThenUnlock { door, device, key, used, event } => {
                self.persist_use_then_unlock(door, device, key, used, event)
            }
            Effect::PersistLockout { device, state, then } => {
                let id = &out.devices[device];
                match then {
                    Then::Nothing => out.audit.lockout(id, state),
                    Then::Deny { door, reason, lockout } => {
                        let door_h = out.doors[door].clone();
                        let feedback = Box::new(move || {
                            door_h.signal(Signal::Deny { reason }, Some(device));
                            if let Some(lockout) = lockout {
                                door_h.signal(lockout, Some(device));
                            }
                        });
                        out.audit.lockout_then(id, state, feedback);
                    }
                    Then::Confirm => self.confirms.push((id.clone(), out.audit.lockout_durable(id, state))),
                }
                true
            }
            Effect::AwaitPin { door, device, holder, wait } => {
                let (door, id) = (&out.doors[door], &out.devices[device]);
                tracing::info!(door = %door.id, device = %id, holder = holder.as_str(), "card accepted; waiting for the holder's PIN");
                let until_ms = self.ts_ms.saturating_add(wait.as_millis() as i64);
                door.signal(Signal::PinNeeded { wait, until_ms }, Some(device));
                true
            }
            Effect::Enrol { door, device, holder } => {
                let Some(uid) = self.card.take() else { return false };
                let job = EnrollJob {
                    holder,
                    uid: *uid,
                    door: out.doors[door].id.clone(),
                    device: out.devices[device].clone(),
                };
                let sent = out.enroller.try_send(job).is_ok();
                if !sent {
                    tracing::error!(door = %out.doors[door].id, "enrolment queue full: card not enrolled");
                }
                sent
            }
            Effect::Door { door, input } => {
                let cmd = match input {
                    DoorInput::Contact(open) => DoorCmd::Contact(open),
                    DoorInput::Exit => DoorCmd::Exit,
                };
                let sent = out.doors[door].send(cmd);
                if !sent {
                    tracing::error!(door = %out.doors[door].id, "door command queue full: contact or button dropped");
                }
                sent
            }
        }
    }
}

/// The log line of a room's event (the event itself goes to the audit log).
fn log(event: &Event) {
    match event {
        Event::AccessGranted { presented: p, .. } => {
            let holder = p.holder.as_deref().unwrap_or("");
            tracing::info!(door = %p.door, device = %p.device, key = p.key, holder, "access granted");
        }
        Event::AccessDenied { presented: p, reason } => {
            let holder = p.holder.as_deref().unwrap_or("");
            tracing::info!(door = %p.door, device = %p.device, key = p.key, holder, reason, "access denied");
        }
        Event::EnrollStarted { door, holder, until, via, .. } => {
            tracing::info!(door = %door, holder = %holder, until = %until, via, "enrolment window open");
        }
        Event::EnrollExpired { door, holder } => {
            tracing::info!(door = %door, holder = %holder, "enrolment window closed: no card presented");
        }
        Event::EnrollDenied { door, device, holder, reason, .. } => {
            let holder = holder.as_deref().unwrap_or("");
            tracing::info!(door = %door, device = %device, holder, reason, "enrolment refused at the keypad");
        }
        Event::LockoutEngaged { device, why, until, failures_today, .. } => {
            let until = until.as_deref().unwrap_or("the end of the local day");
            tracing::warn!(device = %device, why, until = %until, failures_today, "lockout engaged");
        }
        Event::LockoutCleared { device } => tracing::info!(device = %device, "lockout cleared"),
        _ => {}
    }
}

/// The deny's reason word when a limited key's grant could not be written
/// (in time): no event carries it, since none could be recorded.
pub const NOT_RECORDED: &str = "not_recorded";

/// The longest a limited key's grant waits for its use to be on disk
/// before its door opens; later (a failing disk) it does not open, since the
/// person has most likely walked away or tried again.
pub const DURABLE_GRANT_WAIT: Duration = Duration::from_secs(5);

/// Opens `door` for a limited key's grant at `device` whose use is now on
/// disk (run by the audit writer, on its thread); true when the lock was
/// told to open.
fn open_when_durable(door: &DoorHandle, device: usize, decided: std::time::Instant) -> bool {
    let waited = decided.elapsed();
    if waited > DURABLE_GRANT_WAIT {
        tracing::error!(door = %door.id, waited_ms = waited.as_millis() as u64, "a limited key's use was written too late: the lock was not opened");
        door.signal(Signal::Deny { reason: NOT_RECORDED }, Some(device));
        return false;
    }
    if door.open(door.unlock) {
        door.signal(Signal::Grant, Some(device));
        true
    } else {
        tracing::error!(door = %door.id, "door command queue full: the lock was not opened");
        false
    }
}
#[cfg(test)]
mod tests {
    //! The adapter: each kind of effect reaches the real door task, audit
    //! writer, store and enroller. What the room decides is tested as tables
    //! in `access::room`.

    use super::*;
    use crate::access::lockout::LockoutPolicy;
    use crate::access::room::EnrolPolicy;
    use crate::access::{KeyKind, Role};
    use crate::provision::keys::{HolderSpec, KeyService};
    use crate::runtime::{audit, doors};
    use crate::store::records::KeyLimit;
    use crate::store::Store;
    use porter_drivers::fake::FakeOutput;

    struct FixedClock(i64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            self.0
        }
    }

    /// The next durable event. The writer is a real thread, so this waits on
    /// the real clock, for the event it is sent, not for time to pass.
    async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<Arc<audit::Event>>) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match rx.try_recv() {
                Ok(e) => return e.json.clone(),
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                    assert!(std::time::Instant::now() < deadline, "no event within 10 s");
                    tokio::task::yield_now().await;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Waits until the fake lock has seen `n` states.
    async fn lock_states(lock: &FakeOutput, n: usize) -> Vec<bool> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lock.states().len() < n {
            assert!(std::time::Instant::now() < deadline, "the lock saw {:?}", lock.states());
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(1));
        }
        lock.states()
    }

    #[tokio::test]
    async fn effects_reach_the_lock_the_audit_log_the_store_and_the_enroller() {
        let store = Store::temporary().unwrap();
        let hasher = KeyHasher::new(b"decision-loop-test");
        let svc = KeyService::open(store.clone(), hasher.clone(), vec!["main".into()], 6).unwrap();
        let (audit, _thread) = audit::start(store.clone(), 10_000).unwrap();
        let lock = FakeOutput::default();
        let setup = doors::DoorSetup {
            id: "main".into(),
            unlock: Duration::from_secs(2),
            held_open: Duration::from_secs(60),
            relock_on_close: false,
            index: 0,
        };
        let ev = doors::DoorEvents::new(audit.clone(), Arc::new(clock::SystemClock), 1);
        let (door, _task) =
            doors::start(setup, Box::new(lock.clone()), false, Vec::new(), ev, CancellationToken::new()).await;
        let mut events = audit.subscribe();
        let now = chrono::Utc::now().timestamp_millis();
        let (enroller, mut jobs) = mpsc::channel(4);
        let device = DeviceState {
            id: "keypad1".into(),
            door: Some(0),
            purpose: Purpose::Credentials,
            keypad: KeypadEntry::new(6, Duration::from_secs(5), false),
            lockout: LockoutState::default(),
        };
        let parts = Parts {
            live: svc.live(),
            hasher,
            devices: vec![device],
            doors: vec![door],
            clock: Arc::new(FixedClock(now)),
            audit,
            health: HealthMap::default(),
            enroller,
            synchronized: Some(true),
            uses: Default::default(),
            latency: Default::default(),
        };
        let policy = Policy {
            lockout: LockoutPolicy::default(),
            card_pin: CardPinPolicy { doors: vec![false], roles: Vec::new(), pin_after_card: Duration::from_secs(10) },
            tz: chrono_tz::UTC,
            enroll: EnrolPolicy { roles: vec![Role::Courier], window: Duration::from_secs(30) },
            deny_unsynchronized: true,
        };
        let mut lp = DecisionLoop::new(parts, policy);
        let keys = |lp: &mut DecisionLoop, s: &str| {
            for c in s.chars() {
                lp.report(DeviceReport {
                    device: 0,
                    report: Report::Input(Input::Key(c)),
                    at: std::time::Instant::now(),
                });
                // What run() does after each report.
                lp.carry_deferred();
            }
        };
        svc.holder_put(HolderSpec::new("courier-ups", "UPS", Role::Courier)).unwrap();
        let pin = svc.pin_generate("courier-ups").unwrap();

        // PersistUseThenUnlock: a one-time code's use is in the store once
        // its lock opens.
        let once = Some(KeyLimit { uses: Some(1), expires_ms: None });
        svc.holder_put(HolderSpec::new("res-12b", "12B", Role::Resident)).unwrap();
        let (code, _) = svc.pin_generate_limited("res-12b", once).unwrap();
        keys(&mut lp, &format!("{code}#"));
        let e = next_event(&mut events).await;
        assert_eq!((e["uses_left"].as_u64(), e["ts"].as_str()), (Some(0), Some(&*records::rfc3339(now))), "{e}");
        assert_eq!(lock_states(&lock, 2).await[..2], [false, true]);
        let used = load_uses(&store);
        assert_eq!(used.get(&svc.hasher().hash(KeyKind::Pin, code.as_bytes())).map(|s| s.used), Some(1));

        // Unlock and Record: the door took the command (no `lock: not_driven`).
        // The grant's event and feedback wait until the loop has yielded
        // (the door's command goes out first): held back after the report.
        keys(&mut lp, &pin);
        lp.report(DeviceReport { device: 0, report: Report::Input(Input::Key('#')), at: std::time::Instant::now() });
        let held = &lp.deferred.effects;
        assert!(held.iter().any(|e| matches!(e, Effect::Record(Event::AccessGranted { .. }))), "held back: the event");
        assert!(held.iter().any(|e| matches!(e, Effect::Signal { signal: Signal::Grant, .. })), "and the feedback");
        assert!(events.try_recv().is_err(), "no event before the loop yielded");
        lp.carry_deferred();
        let e = next_event(&mut events).await;
        assert_eq!((e["type"].as_str(), e.get("lock")), (Some("access.granted"), None), "{e}");

        // PersistLockout then Deny: the count is in the store.
        let wrong = if pin == "502817" { "502818" } else { "502817" };
        keys(&mut lp, &format!("{wrong}#"));
        assert_eq!(next_event(&mut events).await["reason"], "unknown");
        let saved = load_lockouts(&store, &["keypad1".to_string()]);
        assert_eq!(saved[0].consecutive, 1);
        // Confirm: `lockout.clear` answers with waits that end once written.
        let (tx, rx) = oneshot::channel();
        lp.control(ControlMsg::ClearLockout { device: None, reply: tx });
        let cleared = rx.await.unwrap().unwrap();
        assert_eq!(cleared.len(), 1);
        let (id, written) = cleared.into_iter().next().unwrap();
        assert_eq!(id, "keypad1");
        written.await.unwrap();
        assert_eq!(load_lockouts(&store, &[id])[0].consecutive, 0);
        assert_eq!(next_event(&mut events).await["type"], "lockout.cleared");

        // Enrol: the card caught by the window reaches the enroller with its UID.
        keys(&mut lp, &format!("**{pin}#"));
        assert_eq!(next_event(&mut events).await["type"], "enroll.started");
        let uid = CardUid::parse_hex("04a1b2c3").unwrap();
        lp.report(DeviceReport { device: 0, report: Report::Input(Input::Card(uid)), at: std::time::Instant::now() });
        lp.carry_deferred();
        let job = jobs.try_recv().unwrap();
        assert_eq!((job.holder.as_str(), job.uid, job.door.as_str()), ("courier-ups", uid, "main"));

        // Lockouts: `state.get`'s list is the room's, as JSON.
        for _ in 0..5 {
            keys(&mut lp, &format!("{wrong}#"));
        }
        let (tx, rx) = oneshot::channel();
        lp.control(ControlMsg::Lockouts { reply: tx });
        let locked = rx.await.unwrap();
        assert_eq!(
            (locked.len(), locked[0].device.as_str(), locked[0].failures_today),
            (1, "keypad1", 5),
            "{locked:?}"
        );
    }
}
