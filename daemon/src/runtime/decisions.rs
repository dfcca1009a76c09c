//! The decision loop: one task that owns every input device's keypad entry
//! and lockout state, turns what devices report into requests, decides, opens
//! doors, and only then logs and records.
//!
//! Nothing on the path from a report to the door command waits: the snapshot
//! is an `arc-swap` load, the door command a `try_send`. Logging, the audit
//! write and lockout persistence follow the door command.

use super::audit::{Audit, Draft};
use super::clock::{self, Clock};
use super::doors::{DoorCmd, DoorHandle};
use super::enroll::EnrollJob;
use super::feedback::Signal;
use crate::access::keypad::{KeyOutcome, KeypadEntry};
use crate::access::lockout::{Engaged, LockoutPolicy, LockoutState};
use crate::access::room::{CardPin, CardPinPolicy, Count, EnrolmentPin, Grant, Room, Seat, Used};
use crate::access::Role;
use crate::access::{decide, KeyHash, KeyKind, Reason, Request, Snapshot};
use crate::config::Purpose;
use crate::event::{Event, Presented};
use crate::store::records;
use crate::store::secret::KeyHasher;
use arc_swap::ArcSwap;
use porter_drivers::{DeviceReport, Health, Input, Report};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Requests from the admin side to the loop.
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
    /// The input devices locked out now (`state.get`), as JSON objects.
    Lockouts { reply: oneshot::Sender<Vec<Value>> },
    /// The wall clock stepped by `by_ms` against the monotonic clock: each
    /// running lockout moves with it, so it lasts as long as it would have.
    ClockJumped { by_ms: i64 },
}

/// The devices a `lockout.clear` cleared, and the wait for their persistence.
pub type Cleared = Vec<(String, oneshot::Receiver<()>)>;

/// Per-device state, as the runtime builds it; the loop keeps the keypad
/// entry and lockout in its [`Room`] and the rest in a [`Device`].
pub struct DeviceState {
    pub id: String,
    pub door: Option<u8>,
    /// Credentials, or the door's contact or exit button.
    pub purpose: Purpose,
    pub keypad: KeypadEntry,
    pub lockout: LockoutState,
}

/// An input device as the loop names and wires it.
pub struct Device {
    pub id: String,
    pub door: Option<u8>,
    /// Credentials, or the door's contact or exit button.
    pub purpose: Purpose,
}

/// The room's policy, as configured.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lockout: LockoutPolicy,
    pub tz: chrono_tz::Tz,
    /// The roles whose PIN opens an enrolment window at a keypad.
    pub enroll_roles: Vec<Role>,
    /// How long a window stays open unless `enroll.start` says otherwise.
    pub enroll_window: Duration,
    pub unsynchronized: clock::Unsynchronized,
    pub card_pin: CardPinPolicy,
}

impl Settings {
    pub fn from_config(cfg: &crate::config::Config) -> Settings {
        Settings {
            lockout: cfg.lockout,
            tz: cfg.timezone,
            enroll_roles: cfg.enroll.roles.clone(),
            enroll_window: cfg.enroll.window,
            unsynchronized: cfg.clock.unsynchronized,
            card_pin: CardPinPolicy {
                doors: cfg.doors.iter().map(|d| d.card_plus_pin).collect(),
                roles: cfg.card_plus_pin_roles.clone(),
                pin_after_card: cfg.keypad.pin_after_card,
            },
        }
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
    pub trust: Arc<clock::Trust>,
    /// The grants each limited key has given ([`load_uses`]).
    pub uses: std::collections::HashMap<KeyHash, records::Spent>,
}

pub struct DecisionLoop {
    pub live: Arc<ArcSwap<Snapshot>>,
    pub hasher: KeyHasher,
    pub devices: Vec<Device>,
    pub doors: Vec<DoorHandle>,
    pub tz: chrono_tz::Tz,
    pub clock: Arc<dyn Clock>,
    pub audit: Audit,
    /// Each input device's health, for the status document.
    pub health: HealthMap,
    /// Each door's enrolment window and card waiting for its PIN; each
    /// device's keypad entry and lockout.
    pub room: Room,
    /// Where a card caught by an enrolment window goes to be assigned.
    pub enroller: mpsc::Sender<EnrollJob>,
    /// The roles whose PIN opens an enrolment window at a keypad.
    pub enroll_roles: Vec<crate::access::Role>,
    /// How long a window stays open unless `enroll.start` says otherwise.
    pub enroll_window: Duration,
    /// Whether the wall clock is synchronised, and what to do when it is not.
    pub trust: Arc<clock::Trust>,
    pub unsynchronized: clock::Unsynchronized,
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

/// A key decided at `device` whose lock has its command (or not, for a
/// limited key, whose use must be on disk first): what is left to do.
struct Decided<'a> {
    device: usize,
    door: u8,
    key: KeyHash,
    /// `pin`, `qr`, `card` or `card+pin`.
    key_name: &'static str,
    holder: Option<&'a str>,
    /// Card plus PIN: the reader the card was presented at.
    card_device: Option<usize>,
    reason: Option<Reason>,
    /// The door took its command.
    opened: bool,
    /// A limited key's grant: its uses spent with this one.
    use_of: Option<Used>,
    /// The uses a limited key has in all.
    uses: Option<u32>,
}

impl DecisionLoop {
    /// A loop with no enrolment window open and no card waiting.
    pub fn new(p: Parts, s: Settings) -> DecisionLoop {
        let (devices, seats) = p
            .devices
            .into_iter()
            .map(|d| {
                let seat = Seat { keypad: d.keypad, lockout: d.lockout };
                (Device { id: d.id, door: d.door, purpose: d.purpose }, seat)
            })
            .unzip();
        let uses = p.uses.into_iter().map(|(k, s)| (k, Used { created_ms: s.created_ms, used: s.used })).collect();
        DecisionLoop {
            room: Room::with_devices(p.doors.len(), s.card_pin, seats, s.lockout).with_uses(uses),
            live: p.live,
            hasher: p.hasher,
            devices,
            doors: p.doors,
            tz: s.tz,
            clock: p.clock,
            audit: p.audit,
            health: p.health,
            enroller: p.enroller,
            enroll_roles: s.enroll_roles,
            enroll_window: s.enroll_window,
            trust: p.trust,
            unsynchronized: s.unsynchronized,
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
                _ = close => {
                    self.close_windows(Instant::now());
                    self.close_pending(Instant::now());
                }
                _ = cancel.cancelled() => break,
            }
        }
        while let Ok(r) = reports.try_recv() {
            self.report(r);
        }
    }

    fn control(&mut self, c: ControlMsg) {
        match c {
            ControlMsg::ClearLockout { device, reply } => {
                let mut cleared = Vec::new();
                for (i, d) in self.devices.iter().enumerate() {
                    if d.door.is_none() || device.as_deref().is_some_and(|x| x != d.id) {
                        continue;
                    }
                    let state = self.room.clear_lockout(i);
                    cleared.push((d.id.clone(), self.audit.lockout_durable(&d.id, state)));
                }
                if let (Some(dev), true) = (&device, cleared.is_empty()) {
                    let _ = reply.send(Err(format!("no input device `{dev}`")));
                    return;
                }
                let now = self.clock.now_ms();
                for (id, _) in &cleared {
                    tracing::info!(device = %id, "lockout cleared");
                    self.audit.record(Draft { ts_ms: now, event: Event::LockoutCleared { device: id.clone() } });
                }
                let _ = reply.send(Ok(cleared));
            }
            ControlMsg::Enroll { holder, door, window, reply } => {
                let Some(i) = self.doors.iter().position(|d| d.id == door) else {
                    let ids: Vec<&str> = self.doors.iter().map(|d| d.id.as_str()).collect();
                    let _ = reply.send(Err(format!("no door `{door}`; doors are: {}", ids.join(", "))));
                    return;
                };
                let window = window.unwrap_or(self.enroll_window);
                let until_ms = self.open_window(i, holder, window, "command", None);
                let _ = reply.send(Ok((until_ms, window)));
            }
            ControlMsg::Ping { reply } => {
                let _ = reply.send(());
            }
            ControlMsg::Lockouts { reply } => {
                let now = self.clock.now_ms();
                let (_, today) = clock::local(self.tz, now);
                let room = &self.room;
                let locked = self.devices.iter().enumerate().filter(|(i, _)| room.is_locked(*i, now, today));
                let _ = reply.send(
                    locked
                        .map(|(i, d)| {
                            let l = room.lockout(i);
                            let until = (l.locked_until_ms > now).then(|| records::rfc3339(l.locked_until_ms));
                            json!({
                                "device": d.id,
                                "until": until,
                                "failures_today": if today <= l.day { l.day_failures } else { 0 },
                            })
                        })
                        .collect(),
                );
            }
            ControlMsg::ClockJumped { by_ms } => {
                let now = self.clock.now_ms();
                let (_, today) = clock::local(self.tz, now);
                for (i, state) in self.room.clock_jumped(now, by_ms, today) {
                    self.audit.lockout(&self.devices[i].id, state);
                }
            }
        }
    }

    /// Opens door `i`'s enrolment window for `holder`, replacing an open one,
    /// and records `enroll.started` (`via` the command or the keypad
    /// `device`); returns its end in unix ms.
    fn open_window(
        &mut self,
        i: usize,
        holder: String,
        window: Duration,
        via: &'static str,
        device: Option<String>,
    ) -> i64 {
        let door = &self.doors[i].id;
        let now_ms = self.clock.now_ms();
        let until_ms = now_ms + window.as_millis() as i64;
        tracing::info!(door = %door, holder = %holder, window_s = window.as_secs(), "enrolment window open");
        let event = Event::EnrollStarted {
            door: door.clone(),
            holder: holder.clone(),
            until: records::rfc3339(until_ms),
            via,
            device,
        };
        self.audit.record(Draft { ts_ms: now_ms, event });
        self.room.open_window(i, holder, window, Instant::now().into_std());
        self.doors[i].signal(Signal::EnrollOpen(window));
        until_ms
    }

    /// Closes every window whose time is up, recording `enroll.expired`.
    fn close_windows(&mut self, now: Instant) {
        for (i, holder) in self.room.expire_windows(now.into_std()) {
            self.doors[i].signal(Signal::Off);
            let door = &self.doors[i].id;
            tracing::info!(door = %door, holder = %holder, "enrolment window closed: no card presented");
            let event = Event::EnrollExpired { door: door.clone(), holder };
            self.audit.record(Draft { ts_ms: self.clock.now_ms(), event });
        }
    }

    /// Ends every card's wait for a PIN whose time is up: `access.denied`
    /// with `pin_required` (not a failure: the card was right).
    fn close_pending(&mut self, now: Instant) {
        for (i, p) in self.room.expire_pending(now.into_std()) {
            let (door, device) = (&self.doors[i], &self.devices[p.device].id);
            door.signal(Signal::Deny);
            tracing::info!(door = %door.id, device = %device, key = "card", holder = %p.holder, reason = "pin_required", "access denied");
            let presented = Presented {
                door: door.id.clone(),
                device: device.clone(),
                key: "card",
                holder: Some(p.holder),
                card_device: None,
            };
            let event = Event::AccessDenied { presented, reason: Reason::PinRequired.as_str() };
            self.audit.record(Draft { ts_ms: self.clock.now_ms(), event });
        }
    }

    fn report(&mut self, r: DeviceReport) {
        let Some(dev) = self.devices.get(r.device) else { return };
        match r.report {
            Report::Health(h) => {
                let now = self.clock.now_ms();
                let device = dev.id.clone();
                let event = match &h {
                    Health::Online => Event::DeviceOnline { device },
                    Health::Offline(e) => {
                        Event::DeviceOffline { device, error: e.to_string(), error_kind: e.kind.as_str() }
                    }
                };
                tracing::info!(device = %dev.id, event = event.kind(), "device health");
                if let Ok(mut m) = self.health.lock() {
                    m.insert(dev.id.clone(), if matches!(h, Health::Online) { "online" } else { "offline" });
                }
                self.audit.record(Draft { ts_ms: now, event });
            }
            Report::Input(input) => self.input(r.device, input),
        }
    }

    fn input(&mut self, device: usize, input: Input) {
        match input {
            Input::Key(k) => {
                // An over-long entry hashes as empty, which is never a PIN.
                match self.room.key(device, k, Instant::now().into_std()) {
                    KeyOutcome::Submit(entry) => self.present(device, KeyKind::Pin, entry.digits().unwrap_or(b"")),
                    KeyOutcome::Enroll(entry) => self.enroll_pin(device, entry.digits().unwrap_or(b"")),
                    _ => {}
                }
            }
            Input::Card(uid) => {
                // A card at a door with an open enrolment window is assigned,
                // not decided: it opens nothing and counts for no lockout.
                let door = self.devices[device].door.map(usize::from);
                let window = door.and_then(|d| self.room.take_window(d, Instant::now().into_std()));
                match (door, window) {
                    (Some(d), Some(holder)) => {
                        let job = EnrollJob {
                            holder,
                            uid,
                            door: self.doors[d].id.clone(),
                            device: self.devices[device].id.clone(),
                        };
                        if self.enroller.try_send(job).is_err() {
                            tracing::error!(door = %self.doors[d].id, "enrolment queue full: card not enrolled");
                        }
                    }
                    _ => self.present(device, KeyKind::Card, uid.as_bytes()),
                }
            }
            Input::Qr(text) => self.present(device, KeyKind::Qr, text.as_bytes()),
            Input::Level(active) => {
                let dev = &self.devices[device];
                let Some(door) = dev.door.map(usize::from) else { return };
                let cmd = match (dev.purpose, active) {
                    (Purpose::Contact, open) => DoorCmd::Contact(open),
                    (Purpose::ExitButton, true) => DoorCmd::Exit,
                    (Purpose::ExitButton, false) => return,
                    (Purpose::Credentials, _) => {
                        tracing::debug!(device = %dev.id, "a level from a device that reads keys: ignored");
                        return;
                    }
                };
                if !self.doors[door].send(cmd) {
                    tracing::error!(door = %self.doors[door].id, "door command queue full: contact or button dropped");
                }
            }
        }
    }

    /// Decides one presented key at `device` and acts on it.
    pub fn present(&mut self, device: usize, kind: KeyKind, value: &[u8]) {
        // A card whose wait ran out is settled before anything else is decided.
        let mono = Instant::now();
        self.close_pending(mono);
        let snap = self.live.load();
        let Some((req, limit, day)) = self.request(&snap, device, kind, value) else { return };
        let (now_ms, door, key, spent) = (req.now_ms, req.door, req.key, req.spent);
        let decision = decide(&snap, &req);
        let door_i = door as usize;
        let holder = decision.holder().map(|h| h.id);
        let mut reason = decision.reason();
        let mut key_name = kind.as_str();
        let mut card_device = None;
        // Card plus PIN, at this door or for this holder's role: a card waits
        // for its holder's PIN; a PIN opens only after its holder's card.
        let who = decision.holder().map(|h| (h.id, h.role));
        match self.room.card_plus_pin(door_i, device, kind, who, reason, mono.into_std()) {
            CardPin::NotRequired => {}
            CardPin::Wait(wait) => {
                tracing::info!(door = %self.doors[door_i].id, device = %self.devices[device].id, holder = holder.unwrap_or(""), "card accepted; waiting for the holder's PIN");
                self.doors[door_i].signal(Signal::PinNeeded(wait));
                return;
            }
            CardPin::Completed { card_device: c } => {
                key_name = "card+pin";
                card_device = Some(c);
            }
            CardPin::Refused(r) => reason = Some(r),
        }
        let door_h = &self.doors[door_i];
        // A limited key's use counts at once; its door opens only once the
        // use is on disk (`record_decision`).
        let use_of = match reason.is_none().then(|| self.room.grant(key, limit, spent)) {
            Some(Grant::PersistUseThenUnlock(u)) => Some(u),
            Some(Grant::UnlockNow) | None => None,
        };
        let opened = reason.is_none() && use_of.is_none() && door_h.open(door_h.unlock);
        match reason {
            None if use_of.is_none() => door_h.signal(Signal::Grant),
            Some(Reason::LockedOut) => door_h.signal(Signal::Lockout),
            // A limited grant's feedback comes with its lock; a failure's
            // once its count is on disk (`count`).
            _ => {}
        }

        // The lock has its command; everything below may take its time.
        let uses = limit.and_then(|l| l.uses);
        let d = Decided { device, door, key, key_name, holder, card_device, reason, opened, use_of, uses };
        self.record_decision(d, now_ms, day);
    }

    /// Counts a decided key towards its device's lockout, logs it and
    /// records its event; a limited key's grant opens its door once its use
    /// is on disk.
    fn record_decision(&mut self, d: Decided<'_>, now_ms: i64, day: i32) {
        let Decided { device, door, key, key_name, holder, card_device, reason, opened, use_of, uses } = d;
        let door_i = door as usize;
        let engaged = self.count(device, door_i, reason, now_ms, day);
        let dev = &self.devices[device];
        let door_id = &self.doors[door_i].id;
        let presented = Presented {
            door: door_id.clone(),
            device: dev.id.clone(),
            key: key_name,
            holder: holder.map(String::from),
            card_device: card_device.map(|c| self.devices[c].id.clone()),
        };
        match reason {
            None => {
                tracing::info!(door = %door_id, device = %dev.id, key = key_name, holder = holder.unwrap_or(""), "access granted");
                let lock = (!opened && use_of.is_none()).then(|| {
                    tracing::error!(door = %door_id, "door command queue full: the lock was not opened");
                    "not_driven"
                });
                let uses_left = match (use_of, uses) {
                    (Some(s), Some(u)) => Some(u.saturating_sub(s.used)),
                    _ => None,
                };
                let event = Event::AccessGranted { presented, lock, uses_left };
                let d = Draft { ts_ms: now_ms, event };
                match use_of {
                    Some(u) => {
                        let door_h = self.doors[door_i].clone();
                        let decided = std::time::Instant::now();
                        let open = Box::new(move || open_when_durable(&door_h, decided));
                        let s = records::Spent { created_ms: u.created_ms, used: u.used };
                        if !self.audit.record_use(d, key, s, open) {
                            // Not persisted, so not used: the door stays locked.
                            self.room.unspend(key, u);
                            self.doors[door_i].signal(Signal::Deny);
                        }
                    }
                    None => {
                        self.audit.record(d);
                    }
                }
            }
            Some(reason) => {
                tracing::info!(door = %door_id, device = %dev.id, key = key_name, holder = holder.unwrap_or(""), reason = reason.as_str(), "access denied");
                let event = Event::AccessDenied { presented, reason: reason.as_str() };
                self.audit.record(Draft { ts_ms: now_ms, event });
            }
        }
        if let Some(e) = engaged {
            self.engaged(device, door, e, now_ms);
        }
    }

    /// An enrolment PIN (`*` `*` PIN `#`) at `device`: decided like a PIN
    /// (schedule, validity, door, lockout), but a grant opens the door's
    /// enrolment window for the holder instead of the lock, and only for the
    /// roles that may enroll. A wrong PIN counts towards the lockout.
    pub fn enroll_pin(&mut self, device: usize, pin: &[u8]) {
        self.close_pending(Instant::now());
        let snap = self.live.load();
        // A used-up limited PIN opens no window either (and a window uses none).
        let Some((req, limit, day)) = self.request(&snap, device, KeyKind::Pin, pin) else { return };
        let (now_ms, door) = (req.now_ms, req.door);
        let decision = decide(&snap, &req);
        let holder = decision.holder().map(|h| (h.id.to_string(), h.role));
        let denied = decision.reason();
        let pin = EnrolmentPin::decided(denied, holder.as_ref().map(|h| h.1), limit.is_some(), &self.enroll_roles);
        let reason = pin.refused;
        drop(snap);
        let engaged = if pin.counts { self.count(device, door as usize, denied, now_ms, day) } else { None };
        let (door_i, dev_id) = (door as usize, self.devices[device].id.clone());
        match (reason, holder) {
            (None, Some((id, _))) => {
                self.open_window(door_i, id, self.enroll_window, "keypad", Some(dev_id));
            }
            (reason, holder) => {
                let reason = reason.unwrap_or("unknown");
                let holder = holder.map(|(id, _)| id);
                let door_h = &self.doors[door_i];
                // A failure's feedback plays once its count is on disk (`count`).
                match denied {
                    Some(crate::access::Reason::LockedOut) => door_h.signal(Signal::Lockout),
                    None => door_h.signal(Signal::Deny),
                    Some(_) => {}
                }
                tracing::info!(door = %door_h.id, device = %dev_id, holder = holder.as_deref().unwrap_or(""), reason, "enrolment refused at the keypad");
                let event = Event::EnrollDenied { door: door_h.id.clone(), device: dev_id, key: "pin", holder, reason };
                self.audit.record(Draft { ts_ms: now_ms, event });
            }
        }
        if let Some(e) = engaged {
            self.engaged(device, door, e, now_ms);
        }
    }

    /// The request for `value` presented at `device` now, with the key's
    /// limit and the local day (for the lockout); `None` for a device of no
    /// door. A locked-out device's key is not hashed.
    fn request(
        &self,
        snap: &Snapshot,
        device: usize,
        kind: KeyKind,
        value: &[u8],
    ) -> Option<(Request, Option<crate::access::Limit>, i32)> {
        let now_ms = self.clock.now_ms();
        let (local, day) = clock::local(self.tz, now_ms);
        let dev = &self.devices[device];
        let door = dev.door?;
        let locked = self.room.is_locked(device, now_ms, day);
        let key = if locked { KeyHash([0; KeyHash::LEN]) } else { self.hasher.hash(kind, value) };
        let limit = snap.limit(&key).copied();
        let req = Request {
            door,
            device: device as u16,
            kind,
            key,
            now_ms,
            local,
            device_locked: locked,
            clock_untrusted: self.trust.untrusted(self.unsynchronized),
            spent: limit.map_or(0, |l| self.room.spent(&key, l.created_ms)),
        };
        Some((req, limit, day))
    }

    /// Counts a decision at `device` towards its lockout (`denied` is the
    /// reason of a deny): a grant resets it, a refusal other than the lockout
    /// itself counts as a failure. Returns a lockout this engaged.
    ///
    /// A failure's deny feedback at `door` (and the lockout's, when one
    /// engaged) plays only once the new count is on disk: a guesser who
    /// cuts the power after each try learns nothing the count did not keep.
    fn count(
        &mut self,
        device: usize,
        door: usize,
        denied: Option<crate::access::Reason>,
        now_ms: i64,
        day: i32,
    ) -> Option<Engaged> {
        let id = &self.devices[device].id;
        match self.room.count(device, denied, now_ms, day) {
            Count::Unchanged => None,
            Count::Persist(state) => {
                self.audit.lockout(id, state);
                None
            }
            Count::PersistThenDeny { state, engaged } => {
                let door_h = self.doors[door].clone();
                let feedback = Box::new(move || {
                    door_h.signal(Signal::Deny);
                    if engaged.is_some() {
                        door_h.signal(Signal::Lockout);
                    }
                });
                self.audit.lockout_then(id, state, feedback);
                engaged
            }
        }
    }

    /// Signals and records a lockout that just engaged at `device`.
    fn engaged(&self, device: usize, door: u8, e: Engaged, now_ms: i64) {
        let dev = &self.devices[device];
        let lockout = self.room.lockout(device);
        let door_h = &self.doors[door as usize];
        let until = match e {
            Engaged::Until(t) => Some(records::rfc3339(t)),
            Engaged::DailyCap => None,
        };
        let why = match e {
            Engaged::Until(_) => "consecutive_failures",
            Engaged::DailyCap => "daily_cap",
        };
        let until_text = until.as_deref().unwrap_or("the end of the local day");
        tracing::warn!(device = %dev.id, why, until = %until_text, consecutive = lockout.consecutive, failures_today = lockout.day_failures, "lockout engaged");
        let event = Event::LockoutEngaged {
            door: door_h.id.clone(),
            device: dev.id.clone(),
            why,
            until,
            failures_today: lockout.day_failures,
        };
        self.audit.record(Draft { ts_ms: now_ms, event });
    }
}

/// The longest a limited key's grant waits for its use to be on disk
/// before its door opens; later (a failing disk) it does not open, since the
/// person has most likely walked away or tried again.
pub const DURABLE_GRANT_WAIT: Duration = Duration::from_secs(5);

/// Opens `door` for a limited key's grant whose use is now on disk (run by
/// the audit writer, on its thread).
fn open_when_durable(door: &DoorHandle, decided: std::time::Instant) {
    let waited = decided.elapsed();
    if waited > DURABLE_GRANT_WAIT {
        tracing::error!(door = %door.id, waited_ms = waited.as_millis() as u64, "a limited key's use was written too late: the lock was not opened");
        door.signal(Signal::Deny);
        return;
    }
    if door.open(door.unlock) {
        door.signal(Signal::Grant);
    } else {
        tracing::error!(door = %door.id, "door command queue full: the lock was not opened");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::keys::{HolderSpec, KeyService};
    use crate::runtime::{audit, doors};
    use crate::store::Store;
    use porter_drivers::fake::FakeOutput;
    use porter_drivers::CardUid;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    struct FixedClock(AtomicI64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    struct Rig {
        svc: KeyService,
        lp: DecisionLoop,
        lock: FakeOutput,
        events: tokio::sync::broadcast::Receiver<Arc<audit::Event>>,
        clock: Arc<FixedClock>,
        store: Store,
        jobs: mpsc::Receiver<EnrollJob>,
    }

    async fn rig() -> Rig {
        rig_with(chrono_tz::UTC, Default::default()).await
    }

    async fn rig_with(tz: chrono_tz::Tz, roles: crate::access::RoleSchedules) -> Rig {
        let store = Store::temporary().unwrap();
        let hasher = KeyHasher::new(b"decision-loop-test");
        let svc = KeyService::open_with_roles(store.clone(), hasher.clone(), vec!["main".into()], 6, roles).unwrap();
        let lock = FakeOutput::default();
        let (audit, _thread) = audit::start(store.clone(), 10_000).unwrap();
        let setup = doors::DoorSetup {
            id: "main".into(),
            unlock: Duration::from_secs(2),
            held_open: Duration::from_secs(60),
            relock_on_close: false,
        };
        let ev = doors::DoorEvents { audit: audit.clone(), clock: Arc::new(super::clock::SystemClock) };
        let (door, _task) =
            doors::start(setup, Box::new(lock.clone()), false, Vec::new(), ev, CancellationToken::new()).await;
        let events = audit.subscribe();
        // 2026-11-25 is a Wednesday; noon UTC.
        let clock = Arc::new(FixedClock(AtomicI64::new(1_795_608_000_000)));
        let (enroller, jobs) = mpsc::channel(4);
        let parts = Parts {
            live: svc.live(),
            hasher,
            devices: vec![DeviceState {
                id: "keypad1".into(),
                door: Some(0),
                purpose: Purpose::Credentials,
                keypad: KeypadEntry::new(6, Duration::from_secs(5), false),
                lockout: LockoutState::default(),
            }],
            doors: vec![door],
            clock: clock.clone(),
            audit,
            health: HealthMap::default(),
            enroller,
            trust: Arc::new(clock::Trust::new(&clock::SyncSource::File("/".into()))),
            uses: Default::default(),
        };
        let settings = Settings {
            lockout: LockoutPolicy::default(),
            tz,
            enroll_roles: vec![crate::access::Role::Courier, crate::access::Role::Staff],
            enroll_window: Duration::from_secs(30),
            unsynchronized: clock::Unsynchronized::Deny,
            card_pin: card_pin(vec![false], Vec::new()),
        };
        let lp = DecisionLoop::new(parts, settings);
        Rig { svc, lp, lock, events, clock, store, jobs }
    }

    /// Card plus PIN at these doors and for these roles; a PIN awaited 10 s.
    fn card_pin(doors: Vec<bool>, roles: Vec<crate::access::Role>) -> CardPinPolicy {
        CardPinPolicy { doors, roles, pin_after_card: Duration::from_secs(10) }
    }

    fn keys(lp: &mut DecisionLoop, s: &str) {
        for c in s.chars() {
            lp.report(DeviceReport { device: 0, report: Report::Input(Input::Key(c)) });
        }
    }

    /// The next durable event. The writer is a real thread, so this waits on
    /// the real clock (a paused tokio clock would time out at once).
    async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<Arc<audit::Event>>) -> Value {
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

    fn spec(id: &str) -> HolderSpec {
        HolderSpec::new(id, id, crate::access::Role::Courier)
    }

    #[tokio::test]
    async fn a_pin_opens_the_door_and_is_recorded_without_the_secret() {
        let mut r = rig().await;
        r.svc.holder_put(spec("courier-ups")).unwrap();
        let pin = r.svc.pin_generate("courier-ups").unwrap();
        keys(&mut r.lp, &format!("{pin}#"));
        let e = next_event(&mut r.events).await;
        assert_eq!(e["type"], "access.granted");
        assert_eq!(e["holder"], "courier-ups");
        assert_eq!(e["door"], "main");
        assert_eq!(e["device"], "keypad1");
        assert_eq!(e["key"], "pin");
        assert_eq!(e["ts"], "2026-11-25T12:00:00.000Z");
        assert!(!e.to_string().contains(&pin));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while r.lock.states().len() < 2 && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(r.lock.states()[..2], [false, true]);

        let uid = CardUid::parse_hex("04a1b2c3").unwrap();
        r.lp.report(DeviceReport { device: 0, report: Report::Input(Input::Card(uid)) });
        let e = next_event(&mut r.events).await;
        assert_eq!(
            (e["type"].as_str(), e["reason"].as_str(), e["key"].as_str()),
            (Some("access.denied"), Some("unknown"), Some("card"))
        );
        assert!(e["seq"].as_u64().unwrap() > 1);
    }

    #[tokio::test]
    async fn lockout_engages_is_recorded_and_persisted_and_clears() {
        let mut r = rig().await;
        r.svc.holder_put(spec("a")).unwrap();
        let pin = r.svc.pin_generate("a").unwrap();
        let wrong = if pin == "502817" { "502818" } else { "502817" };
        for _ in 0..5 {
            keys(&mut r.lp, &format!("{wrong}#"));
        }
        let mut types = Vec::new();
        for _ in 0..6 {
            types.push(next_event(&mut r.events).await["type"].as_str().unwrap().to_string());
        }
        assert_eq!(
            types,
            ["access.denied", "access.denied", "access.denied", "access.denied", "access.denied", "lockout.engaged"]
        );
        keys(&mut r.lp, &format!("{pin}#"));
        assert_eq!(next_event(&mut r.events).await["reason"], "locked_out");
        // Persisted: a new loop over the same store starts locked out.
        let saved = load_lockouts(&r.store, &["keypad1".to_string()]);
        assert!(saved[0].is_locked(&LockoutPolicy::default(), r.clock.now_ms(), saved[0].day));
        // 30 s later the keypad takes entries again, and a success resets it.
        r.clock.0.fetch_add(30_000, Ordering::SeqCst);
        keys(&mut r.lp, &format!("{pin}#"));
        assert_eq!(next_event(&mut r.events).await["type"], "access.granted");
        assert_eq!(r.lp.room.lockout(0).consecutive, 0);
        // An operator clear.
        for _ in 0..5 {
            keys(&mut r.lp, &format!("{wrong}#"));
        }
        let (tx, rx) = oneshot::channel();
        r.lp.control(ControlMsg::ClearLockout { device: None, reply: tx });
        let cleared = rx.await.unwrap().unwrap();
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0].0, "keypad1");
        // Cleared for today too: the daily count is gone, not only the timer.
        let (_, today) = clock::local(r.lp.tz, r.clock.now_ms());
        assert!(!r.lp.room.is_locked(0, r.clock.now_ms(), today));
        assert_eq!(r.lp.room.lockout(0).day_failures, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_between_keys_drops_the_entry() {
        let mut r = rig().await;
        r.svc.holder_put(spec("a")).unwrap();
        let pin = r.svc.pin_generate("a").unwrap();
        keys(&mut r.lp, &pin[..3]);
        tokio::time::advance(Duration::from_secs(6)).await;
        keys(&mut r.lp, &format!("{}#", &pin[3..]));
        let e = next_event(&mut r.events).await;
        assert_eq!(e["reason"], "unknown", "the first three digits were dropped");
        keys(&mut r.lp, &pin[..3]);
        tokio::time::advance(Duration::from_secs(4)).await;
        keys(&mut r.lp, &format!("{}#", &pin[3..]));
        assert_eq!(next_event(&mut r.events).await["type"], "access.granted");
    }

    #[tokio::test]
    async fn an_enrolment_pin_opens_a_window_not_the_door() {
        let mut r = rig().await;
        r.svc.holder_put(spec("courier-ups")).unwrap();
        let pin = r.svc.pin_generate("courier-ups").unwrap();
        keys(&mut r.lp, &format!("**{pin}#"));
        let e = next_event(&mut r.events).await;
        assert_eq!(e["type"], "enroll.started", "{e}");
        assert_eq!(
            (e["holder"].as_str(), e["via"].as_str(), e["device"].as_str()),
            (Some("courier-ups"), Some("keypad"), Some("keypad1"))
        );
        assert_eq!(e["until"], "2026-11-25T12:00:30.000Z");
        assert!(!e.to_string().contains(&pin));
        assert_eq!(r.lock.states(), [false], "the lock was driven");
        // The next card at the door goes to the enroller, not to a decision.
        let uid = CardUid::parse_hex("04a1b2c3").unwrap();
        r.lp.report(DeviceReport { device: 0, report: Report::Input(Input::Card(uid)) });
        let job = r.jobs.try_recv().expect("an enrolment job");
        assert_eq!((job.holder.as_str(), job.uid, job.door.as_str()), ("courier-ups", uid, "main"));
        assert!(r.lp.room.window(0).is_none());
        // The card after that is decided as usual.
        r.lp.report(DeviceReport { device: 0, report: Report::Input(Input::Card(uid)) });
        assert_eq!(next_event(&mut r.events).await["type"], "access.denied");
        assert!(r.jobs.try_recv().is_err());
    }

    #[tokio::test]
    async fn enrolment_at_the_keypad_is_for_the_configured_roles_and_counts_failures() {
        let mut r = rig().await;
        r.svc.holder_put(HolderSpec::new("res-12b", "12B", crate::access::Role::Resident)).unwrap();
        let pin = r.svc.pin_generate("res-12b").unwrap();
        keys(&mut r.lp, &format!("**{pin}#"));
        let e = next_event(&mut r.events).await;
        assert_eq!(
            (e["type"].as_str(), e["reason"].as_str(), e["holder"].as_str()),
            (Some("enroll.denied"), Some("role_not_allowed"), Some("res-12b")),
            "{e}"
        );
        assert!(r.lp.room.window(0).is_none());
        assert_eq!(r.lp.room.lockout(0).consecutive, 0, "a right PIN is no failure");
        // Wrong enrolment PINs count towards the keypad's lockout.
        let wrong = if pin == "502817" { "502818" } else { "502817" };
        for _ in 0..5 {
            keys(&mut r.lp, &format!("**{wrong}#"));
        }
        let mut seen = Vec::new();
        for _ in 0..6 {
            let e = next_event(&mut r.events).await;
            seen.push(format!("{} {}", e["type"].as_str().unwrap(), e["reason"].as_str().unwrap_or("")));
        }
        assert_eq!(seen[..5], ["enroll.denied unknown"; 5]);
        assert_eq!(seen[5], "lockout.engaged ");
        // Locked out: even a right PIN of an allowed role opens no window.
        r.svc.holder_put(spec("courier-dhl")).unwrap();
        let pin = r.svc.pin_generate("courier-dhl").unwrap();
        keys(&mut r.lp, &format!("**{pin}#"));
        assert_eq!(next_event(&mut r.events).await["reason"], "locked_out");
        assert!(r.lp.room.window(0).is_none());
        assert_eq!(r.lock.states(), [false]);
    }

    #[tokio::test]
    async fn a_role_schedule_applies_in_local_time_across_daylight_saving() {
        use crate::access::schedule::Window;
        use crate::access::Role;
        let mut roles = crate::access::RoleSchedules::default();
        roles[Role::Courier.index()] = vec![Window { days: 0x7f, from: 7 * 60, to: 21 * 60 }];
        let mut r = rig_with("America/New_York".parse().unwrap(), roles).await;
        r.svc.holder_put(spec("courier-ups")).unwrap();
        let pin = r.svc.pin_generate("courier-ups").unwrap();
        // A manager has no role schedule; a courier with their own schedule
        // keeps it (here: nights only).
        r.svc.holder_put(HolderSpec::new("mgr", "M", Role::Manager)).unwrap();
        let mgr_pin = r.svc.pin_generate("mgr").unwrap();
        let mut night = spec("courier-night");
        night.schedule = vec![crate::store::records::WindowRecord { days: 0x7f, from: 22 * 60, to: 6 * 60 }];
        r.svc.holder_put(night).unwrap();
        let night_pin = r.svc.pin_generate("courier-night").unwrap();
        let at = |r: &Rig, rfc: &str| {
            r.clock.0.store(chrono::DateTime::parse_from_rfc3339(rfc).unwrap().timestamp_millis(), Ordering::SeqCst)
        };
        let outcome = async |r: &mut Rig, pin: &str| {
            keys(&mut r.lp, &format!("{pin}#"));
            let e = next_event(&mut r.events).await;
            e["reason"].as_str().unwrap_or("granted").to_string()
        };
        // Saturday 2026-03-07 11:30Z is 06:30 EST: before the courier window.
        at(&r, "2026-03-07T11:30:00Z");
        assert_eq!(outcome(&mut r, &pin).await, "outside_schedule");
        assert_eq!(outcome(&mut r, &mgr_pin).await, "granted");
        // Sunday 2026-03-08 11:30Z, the same UTC time a day later, is 07:30
        // EDT: the clocks went forward at 02:00 that night. Inside.
        at(&r, "2026-03-08T11:30:00Z");
        assert_eq!(outcome(&mut r, &pin).await, "granted");
        assert_eq!(outcome(&mut r, &night_pin).await, "outside_schedule");
        // 20:59 EDT in, 21:00 EDT out (01:00Z the next day).
        at(&r, "2026-03-09T00:59:00Z");
        assert_eq!(outcome(&mut r, &pin).await, "granted");
        at(&r, "2026-03-09T01:00:00Z");
        assert_eq!(outcome(&mut r, &pin).await, "outside_schedule");
        assert_eq!(outcome(&mut r, &night_pin).await, "outside_schedule", "21:00 is before the night window");
        // In autumn, 2026-11-01 11:30Z is 06:30 EST again (the clocks went back at 02:00).
        at(&r, "2026-11-01T11:30:00Z");
        assert_eq!(outcome(&mut r, &pin).await, "outside_schedule");
        at(&r, "2026-11-01T03:30:00Z");
        assert_eq!(outcome(&mut r, &night_pin).await, "granted", "23:30 EDT on Saturday night");
    }

    #[tokio::test]
    async fn a_running_lockout_keeps_its_length_when_the_clock_jumps() {
        let mut r = rig().await;
        for _ in 0..5 {
            keys(&mut r.lp, "502817#");
        }
        assert!(r.lp.room.is_locked(0, r.clock.now_ms(), r.lp.room.lockout(0).day));
        // The wall clock steps an hour forward: the 30 s lockout moves with it.
        r.clock.0.fetch_add(3_600_000, Ordering::SeqCst);
        r.lp.control(ControlMsg::ClockJumped { by_ms: 3_600_000 });
        let (now, day) = (r.clock.now_ms(), r.lp.room.lockout(0).day);
        assert!(r.lp.room.is_locked(0, now, day));
        assert!(!r.lp.room.is_locked(0, now + 30_000, day));
        // A year forward (NTP's first correction of a boot-time clock): the
        // lockout moves, but never past the longest lockout from now.
        r.clock.0.fetch_add(365 * 86_400_000, Ordering::SeqCst);
        r.lp.control(ControlMsg::ClockJumped { by_ms: 365 * 86_400_000 });
        let now = r.clock.now_ms();
        assert!(r.lp.room.lockout(0).locked_until_ms <= now + r.lp.room.lockout_policy().max_ms as i64);
        r.clock.0.fetch_sub(365 * 86_400_000, Ordering::SeqCst);
        r.lp.control(ControlMsg::ClockJumped { by_ms: -365 * 86_400_000 });
        // An hour back: likewise, it does not grow by an hour.
        r.clock.0.fetch_sub(3_600_000, Ordering::SeqCst);
        r.lp.control(ControlMsg::ClockJumped { by_ms: -3_600_000 });
        let now = r.clock.now_ms();
        assert!(r.lp.room.is_locked(0, now, day));
        assert!(!r.lp.room.is_locked(0, now + 30_000, day));
    }

    #[tokio::test]
    async fn a_one_time_code_opens_once_and_its_use_survives_a_restart() {
        use crate::store::records::KeyLimit;
        let mut r = rig().await;
        r.svc.holder_put(HolderSpec::new("res-12b", "12B", crate::access::Role::Resident)).unwrap();
        let once = Some(KeyLimit { uses: Some(1), expires_ms: None });
        let (pin, limit) = r.svc.pin_generate_limited("res-12b", once).unwrap();
        let created = r.svc.holder_get("res-12b").unwrap().keys.pin.unwrap().created;
        let created = chrono::DateTime::parse_from_rfc3339(&created).unwrap().timestamp_millis();
        assert_eq!(limit.unwrap().expires_ms, Some(created + 24 * 3600 * 1000), "a day by default");
        assert_eq!(r.svc.holder_get("res-12b").unwrap().keys.pin.and_then(|p| p.limit?.uses_left), Some(1));
        // Use the real clock's now: the key was made just now.
        r.clock.0.store(created + 1_000, Ordering::SeqCst);
        keys(&mut r.lp, &format!("{pin}#"));
        let e = next_event(&mut r.events).await;
        assert_eq!((e["type"].as_str(), e["uses_left"].as_u64()), (Some("access.granted"), Some(0)), "{e}");
        keys(&mut r.lp, &format!("{pin}#"));
        let e = next_event(&mut r.events).await;
        assert_eq!((e["type"].as_str(), e["reason"].as_str()), (Some("access.denied"), Some("expired")), "{e}");
        assert_eq!(
            r.svc.holder_get("res-12b").unwrap().keys.pin.and_then(|p| p.limit?.uses_left),
            Some(0),
            "persisted"
        );
        // A loop started on the same store knows the code is used up.
        assert_eq!(
            load_uses(&r.store).get(&r.svc.hasher().hash(KeyKind::Pin, pin.as_bytes())).map(|s| s.used),
            Some(1)
        );

        // A QR token good for two uses, expiring in a minute.
        let limit = Some(KeyLimit { uses: Some(2), expires_ms: Some(created + 60_000) });
        let (token, _) = r.svc.qr_generate_limited("res-12b", limit).unwrap();
        let qr = |r: &mut Rig| r.lp.report(DeviceReport { device: 0, report: Report::Input(Input::Qr(token.clone())) });
        qr(&mut r);
        assert_eq!(next_event(&mut r.events).await["uses_left"], 1);
        // Past its expiry it is expired although a use is left.
        r.clock.0.store(created + 60_000, Ordering::SeqCst);
        qr(&mut r);
        assert_eq!(next_event(&mut r.events).await["reason"], "expired");
        r.clock.0.store(created + 59_000, Ordering::SeqCst);
        qr(&mut r);
        assert_eq!(next_event(&mut r.events).await["uses_left"], 0);
        qr(&mut r);
        assert_eq!(next_event(&mut r.events).await["reason"], "expired");

        // The same PIN made again as a one-time code counts afresh.
        std::thread::sleep(Duration::from_millis(2));
        r.svc.pin_set_limited("res-12b", &pin, once).unwrap();
        keys(&mut r.lp, &format!("{pin}#"));
        assert_eq!(next_event(&mut r.events).await["type"], "access.granted");
        keys(&mut r.lp, &format!("{pin}#"));
        assert_eq!(next_event(&mut r.events).await["reason"], "expired");

        // A limited courier PIN opens no enrolment window: the card would outlast it.
        r.svc.holder_put(spec("courier-temp")).unwrap();
        let (temp, _) = r.svc.pin_generate_limited("courier-temp", once).unwrap();
        keys(&mut r.lp, &format!("**{temp}#"));
        let e = next_event(&mut r.events).await;
        assert_eq!((e["type"].as_str(), e["reason"].as_str()), (Some("enroll.denied"), Some("limited_key")), "{e}");
        // Nor does it reset the keypad's failure count, as a grant would.
        keys(&mut r.lp, "000001#");
        assert_eq!(next_event(&mut r.events).await["reason"], "unknown");
        let before = r.lp.room.lockout(0).consecutive;
        assert!(before > 0);
        keys(&mut r.lp, &format!("**{temp}#"));
        assert_eq!(next_event(&mut r.events).await["reason"], "limited_key");
        assert_eq!(r.lp.room.lockout(0).consecutive, before);
    }

    #[tokio::test]
    async fn card_plus_pin_at_a_door_and_for_a_role() {
        let mut r = rig().await;
        r.svc.holder_put(spec("courier-ups")).unwrap();
        let pin = r.svc.pin_generate("courier-ups").unwrap();
        r.svc.card_assign("courier-ups", &CardUid::parse_hex("04a1b2c3").unwrap()).unwrap();
        r.svc.holder_put(spec("courier-dhl")).unwrap();
        let other_pin = r.svc.pin_generate("courier-dhl").unwrap();
        let card = |r: &mut Rig| {
            let uid = CardUid::parse_hex("04a1b2c3").unwrap();
            r.lp.report(DeviceReport { device: 0, report: Report::Input(Input::Card(uid)) })
        };
        r.lp.room.set_card_pin(card_pin(vec![true], Vec::new()));
        // The card alone opens nothing and says nothing yet; its holder's PIN then opens.
        card(&mut r);
        assert!(r.lp.room.pending(0).is_some());
        keys(&mut r.lp, &format!("{pin}#"));
        let e = next_event(&mut r.events).await;
        assert_eq!(
            (e["type"].as_str(), e["key"].as_str(), e["card_device"].as_str()),
            (Some("access.granted"), Some("card+pin"), Some("keypad1")),
            "{e}"
        );
        // A PIN alone is refused.
        keys(&mut r.lp, &format!("{pin}#"));
        assert_eq!(next_event(&mut r.events).await["reason"], "card_required");
        // Another holder's PIN after the card, or a wrong one, is refused and ends the wait.
        card(&mut r);
        keys(&mut r.lp, &format!("{other_pin}#"));
        let e = next_event(&mut r.events).await;
        assert_eq!((e["reason"].as_str(), e["holder"].as_str()), (Some("pin_mismatch"), Some("courier-dhl")), "{e}");
        assert!(r.lp.room.pending(0).is_none());
        card(&mut r);
        keys(&mut r.lp, "502817#");
        assert_eq!(next_event(&mut r.events).await["reason"], "unknown");
        assert!(r.lp.room.pending(0).is_none(), "a wrong PIN ends the wait too");
        // No PIN in time.
        card(&mut r);
        r.lp.close_pending(Instant::now() + Duration::from_secs(11));
        let e = next_event(&mut r.events).await;
        assert_eq!(
            (e["reason"].as_str(), e["key"].as_str(), e["holder"].as_str()),
            (Some("pin_required"), Some("card"), Some("courier-ups")),
            "{e}"
        );

        // For a role, at a door that does not want it: couriers only.
        r.lp.room.set_card_pin(card_pin(vec![false], vec![crate::access::Role::Courier]));
        keys(&mut r.lp, &format!("{pin}#"));
        assert_eq!(next_event(&mut r.events).await["reason"], "card_required");
        r.svc.holder_put(HolderSpec::new("staff-ann", "Ann", crate::access::Role::Staff)).unwrap();
        let staff_pin = r.svc.pin_generate("staff-ann").unwrap();
        keys(&mut r.lp, &format!("{staff_pin}#"));
        assert_eq!(next_event(&mut r.events).await["type"], "access.granted");
        card(&mut r);
        keys(&mut r.lp, &format!("{pin}#"));
        assert_eq!(next_event(&mut r.events).await["key"], "card+pin");
    }
}
