//! The room's flows: an input from start to its effects, an operator's
//! control, time passing and the clock's news. Each pushes its effects to
//! the caller's [`Sink`] in the order they must be carried out.

use super::effect::{Answer, At, Control, DoorInput, Effect, Input, LockedOut, Purpose, Signal, Sink, Then};
use super::{CardPin, Count, EnrolmentPin, Grant, Room};
use crate::access::hasher::KeyHasher;
use crate::access::keypad::KeyOutcome;
use crate::access::lockout::Engaged;
use crate::access::schedule::local;
use crate::access::{decide, KeyHash, KeyKind, Limit, Reason, Request, Snapshot};
use crate::event::{Event, Presented};
use crate::time::rfc3339;
use std::time::Duration;

/// A key decided at a device, with the door's command given (or not): what
/// is left to record.
struct Decided<'a> {
    device: usize,
    door: usize,
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
    use_of: Option<super::Used>,
    limit: Option<Limit>,
}

impl Room {
    /// What `device` reported at `at`, decided against `snap` with keys
    /// hashed by `hasher`; its effects go to `out` in order. On a grant of a
    /// key of unlimited uses the first effect is [`Effect::Unlock`], and
    /// nothing before it allocates.
    pub fn input(
        &mut self,
        at: At,
        device: usize,
        input: Input<'_>,
        snap: &Snapshot,
        hasher: &KeyHasher,
        out: &mut impl Sink,
    ) {
        let Some(station) = self.stations.get(device) else { return };
        let (door, purpose) = (station.door, station.purpose);
        match input {
            Input::Key(k) => match self.key(device, k, at.mono) {
                // An over-long entry hashes as empty, which is never a PIN.
                KeyOutcome::Submit(e) => {
                    self.present(at, device, KeyKind::Pin, e.digits().unwrap_or(b""), snap, hasher, out)
                }
                KeyOutcome::Enroll(e) => self.enrolment_pin(at, device, e.digits().unwrap_or(b""), snap, hasher, out),
                _ => {}
            },
            Input::Card(uid) => {
                // A card at a door with an open enrolment window is assigned,
                // not decided: it opens nothing and counts for no lockout.
                match door.and_then(|d| self.take_window(d, at.mono).map(|h| (d, h))) {
                    Some((door, holder)) => {
                        out.effect(Effect::Enrol { door, device, holder });
                    }
                    None => self.present(at, device, KeyKind::Card, uid, snap, hasher, out),
                }
            }
            Input::Qr(text) => self.present(at, device, KeyKind::Qr, text, snap, hasher, out),
            Input::Level(active) => {
                let Some(door) = door else { return };
                let input = match (purpose, active) {
                    (Purpose::Contact, open) => DoorInput::Contact(open),
                    (Purpose::ExitButton, true) => DoorInput::Exit,
                    // A release of the button, or a level from a reader: nothing.
                    (Purpose::ExitButton, false) | (Purpose::Credentials, _) => return,
                };
                out.effect(Effect::Door { door, input });
            }
        }
    }

    /// An operator's or the clock's word at `at`; its effects go to `out`.
    pub fn control(&mut self, at: At, control: Control, out: &mut impl Sink) -> Result<Answer, String> {
        match control {
            Control::ClearLockout { device } => {
                let mut cleared = Vec::new();
                for i in 0..self.stations.len() {
                    let s = &self.stations[i];
                    if s.door.is_none() || device.as_deref().is_some_and(|x| x != s.id) {
                        continue;
                    }
                    let state = self.clear_lockout(i);
                    out.effect(Effect::PersistLockout { device: i, state, then: Then::Confirm });
                    cleared.push(self.stations[i].id.clone());
                }
                if let (Some(dev), true) = (&device, cleared.is_empty()) {
                    return Err(format!("no input device `{dev}`"));
                }
                for id in &cleared {
                    out.effect(Effect::Record(Event::LockoutCleared { device: id.clone() }));
                }
                Ok(Answer::Cleared(cleared))
            }
            Control::Enroll { holder, door, window } => {
                let Some(i) = self.doors.iter().position(|d| *d == door) else {
                    return Err(format!("no door `{door}`; doors are: {}", self.doors.join(", ")));
                };
                let length = window.unwrap_or(self.enroll.window);
                let until_ms = self.open_window_at(at, i, holder, length, "command", None, out);
                Ok(Answer::WindowOpen { until_ms, length })
            }
            Control::ClockTrust(synchronized) => {
                self.synchronized = synchronized;
                Ok(Answer::Done)
            }
            Control::ClockJumped { by_ms } => {
                let (_, today) = local(self.tz, at.ms);
                for (device, state) in self.rebase_lockouts(at.ms, by_ms, today) {
                    out.effect(Effect::PersistLockout { device, state, then: Then::Nothing });
                }
                Ok(Answer::Done)
            }
        }
    }

    /// Time passed to `at`: closes the enrolment windows and ends the cards'
    /// waits whose time is up.
    pub fn tick(&mut self, at: At, out: &mut impl Sink) {
        for (door, holder) in self.expire_windows(at.mono) {
            out.effect(Effect::Signal { door, signal: Signal::Off, device: None });
            out.effect(Effect::Record(Event::EnrollExpired { door: self.doors[door].clone(), holder }));
        }
        self.end_waits(at, out);
    }

    /// The input devices locked out at `at` (`state.get`).
    pub fn lockouts(&self, at: At) -> Vec<LockedOut> {
        let (_, today) = local(self.tz, at.ms);
        (0..self.stations.len())
            .filter(|i| self.is_locked(*i, at.ms, today))
            .map(|i| {
                let l = self.lockout(i);
                LockedOut {
                    device: self.stations[i].id.clone(),
                    until_ms: (l.locked_until_ms > at.ms).then_some(l.locked_until_ms),
                    failures_today: if today <= l.day { l.day_failures } else { 0 },
                }
            })
            .collect()
    }

    /// Ends every card's wait for a PIN whose time is up: `access.denied`
    /// with `pin_required` (not a failure: the card was right). Allocates
    /// nothing when none ended.
    fn end_waits(&mut self, at: At, out: &mut impl Sink) {
        for (door, p) in self.expire_pending(at.mono) {
            out.effect(Effect::Signal {
                door,
                signal: Signal::Deny { reason: Reason::PinRequired.as_str() },
                device: None,
            });
            let presented = Presented {
                door: self.doors[door].clone(),
                device: self.stations[p.device].id.clone(),
                key: "card",
                holder: Some(p.holder),
                card_device: None,
            };
            out.effect(Effect::Record(Event::AccessDenied { presented, reason: Reason::PinRequired.as_str() }));
        }
    }

    /// The request for `value` presented at `device` at `at`, with the key's
    /// limit and the local day (for the lockout); `None` for a device of no
    /// door. A locked-out device's key is not hashed.
    fn request(
        &self,
        at: At,
        snap: &Snapshot,
        hasher: &KeyHasher,
        device: usize,
        kind: KeyKind,
        value: &[u8],
    ) -> Option<(Request, Option<Limit>, i32)> {
        let door = self.stations[device].door?;
        let (local, day) = local(self.tz, at.ms);
        let locked = self.is_locked(device, at.ms, day);
        let key = if locked { KeyHash([0; KeyHash::LEN]) } else { hasher.hash(kind, value) };
        let limit = snap.limit(&key).copied();
        let req = Request {
            door: door as u8,
            device: device as u16,
            kind,
            key,
            now_ms: at.ms,
            local,
            device_locked: locked,
            clock_untrusted: self.deny_unsynchronized && self.synchronized != Some(true),
            spent: limit.map_or(0, |l| self.spent(&key, l.created_ms)),
        };
        Some((req, limit, day))
    }

    /// Decides one presented key at `device`: the lock's command first, then
    /// the count, the event and any lockout it engaged.
    #[allow(clippy::too_many_arguments)]
    fn present(
        &mut self,
        at: At,
        device: usize,
        kind: KeyKind,
        value: &[u8],
        snap: &Snapshot,
        hasher: &KeyHasher,
        out: &mut impl Sink,
    ) {
        // A card whose wait ran out is settled before anything else is decided.
        self.end_waits(at, out);
        let Some((req, limit, day)) = self.request(at, snap, hasher, device, kind, value) else { return };
        let decision = decide(snap, &req);
        let door = req.door as usize;
        let holder = decision.holder().map(|h| h.id);
        let mut reason = decision.reason();
        let (mut key_name, mut card_device) = (kind.as_str(), None);
        // Card plus PIN, at this door or for this holder's role: a card waits
        // for its holder's PIN; a PIN opens only after its holder's card.
        let who = decision.holder().map(|h| (h.id, h.role));
        match self.card_plus_pin(door, device, kind, who, reason, at.mono) {
            CardPin::NotRequired => {}
            CardPin::Wait(wait) => {
                out.effect(Effect::AwaitPin { door, device, holder: holder.unwrap_or("").to_string(), wait });
                return;
            }
            CardPin::Completed { card_device: c } => (key_name, card_device) = ("card+pin", Some(c)),
            CardPin::Refused(r) => reason = Some(r),
        }
        // A limited key's use counts at once; its door opens only once the
        // use is on disk (`Effect::PersistUseThenUnlock`).
        let use_of = match reason.is_none().then(|| self.grant(req.key, limit, req.spent)) {
            Some(Grant::PersistUseThenUnlock(u)) => Some(u),
            Some(Grant::UnlockNow) | None => None,
        };
        let opened = reason.is_none() && use_of.is_none() && out.effect(Effect::Unlock { door });
        match reason {
            None if use_of.is_none() => {
                out.effect(Effect::Signal { door, signal: Signal::Grant, device: Some(device) });
            }
            Some(Reason::LockedOut) => {
                let until_ms = self.lockout_end(device, at.ms);
                out.effect(Effect::Signal { door, signal: Signal::Lockout { until_ms }, device: Some(device) });
            }
            // A limited grant's feedback comes with its lock; a failure's
            // once its count is on disk.
            _ => {}
        }
        // The lock has its command; everything below may take its time.
        let d = Decided { device, door, key: req.key, key_name, holder, card_device, reason, opened, use_of, limit };
        self.record_decision(at, d, day, out);
    }

    /// Counts a decided key towards its device's lockout and records its
    /// event (a limited grant's with its use, before its lock).
    fn record_decision(&mut self, at: At, d: Decided<'_>, day: i32, out: &mut impl Sink) {
        let Decided { device, door, key, key_name, holder, card_device, reason, opened, use_of, limit } = d;
        let engaged = self.count_at(device, door, reason, at.ms, day, out);
        let presented = Presented {
            door: self.doors[door].clone(),
            device: self.stations[device].id.clone(),
            key: key_name,
            holder: holder.map(String::from),
            card_device: card_device.map(|c| self.stations[c].id.clone()),
        };
        match (reason, use_of) {
            (None, Some(used)) => {
                let uses_left = limit.and_then(|l| l.uses).map(|u| u.saturating_sub(used.used));
                let event = Event::AccessGranted { presented, lock: None, uses_left };
                out.effect(Effect::PersistUseThenUnlock { door, device, key, used, event });
            }
            (None, None) => {
                let lock = (!opened).then_some("not_driven");
                out.effect(Effect::Record(Event::AccessGranted { presented, lock, uses_left: None }));
            }
            (Some(reason), _) => {
                out.effect(Effect::Record(Event::AccessDenied { presented, reason: reason.as_str() }));
            }
        }
        if let Some(e) = engaged {
            self.engaged(device, door, e, out);
        }
    }

    /// An enrolment PIN (`*` `*` PIN `#`) at `device`: decided like a PIN
    /// (schedule, validity, door, lockout), but a grant opens the door's
    /// enrolment window for the holder instead of the lock, and only for the
    /// roles that may enroll. A wrong PIN counts towards the lockout.
    fn enrolment_pin(
        &mut self,
        at: At,
        device: usize,
        pin: &[u8],
        snap: &Snapshot,
        hasher: &KeyHasher,
        out: &mut impl Sink,
    ) {
        self.end_waits(at, out);
        // A used-up limited PIN opens no window either (and a window uses none).
        let Some((req, limit, day)) = self.request(at, snap, hasher, device, KeyKind::Pin, pin) else { return };
        let door = req.door as usize;
        let decision = decide(snap, &req);
        let holder = decision.holder().map(|h| (h.id.to_string(), h.role));
        let denied = decision.reason();
        let pin = EnrolmentPin::decided(denied, holder.as_ref().map(|h| h.1), limit.is_some(), &self.enroll.roles);
        let engaged = if pin.counts { self.count_at(device, door, denied, at.ms, day, out) } else { None };
        let dev_id = self.stations[device].id.clone();
        match (pin.refused, holder) {
            (None, Some((id, _))) => {
                self.open_window_at(at, door, id, self.enroll.window, "keypad", Some(device), out);
            }
            (reason, holder) => {
                // A failure's feedback plays once its count is on disk.
                let signal = match denied {
                    Some(Reason::LockedOut) => Some(Signal::Lockout { until_ms: self.lockout_end(device, at.ms) }),
                    None => Some(Signal::Deny { reason: reason.unwrap_or("unknown") }),
                    Some(_) => None,
                };
                if let Some(signal) = signal {
                    out.effect(Effect::Signal { door, signal, device: Some(device) });
                }
                let event = Event::EnrollDenied {
                    door: self.doors[door].clone(),
                    device: dev_id,
                    key: "pin",
                    holder: holder.map(|(id, _)| id),
                    reason: reason.unwrap_or("unknown"),
                };
                out.effect(Effect::Record(event));
            }
        }
        if let Some(e) = engaged {
            self.engaged(device, door, e, out);
        }
    }

    /// Opens `door`'s enrolment window for `holder` for `length` from `at`,
    /// replacing an open one (`via` the command or the keypad `device`);
    /// returns its end in unix ms.
    #[allow(clippy::too_many_arguments)]
    fn open_window_at(
        &mut self,
        at: At,
        door: usize,
        holder: String,
        length: Duration,
        via: &'static str,
        device: Option<usize>,
        out: &mut impl Sink,
    ) -> i64 {
        let until_ms = at.ms + length.as_millis() as i64;
        let event = Event::EnrollStarted {
            door: self.doors[door].clone(),
            holder: holder.clone(),
            until: rfc3339(until_ms),
            via,
            device: device.map(|d| self.stations[d].id.clone()),
        };
        out.effect(Effect::Record(event));
        self.open_window(door, holder, length, at.mono);
        out.effect(Effect::Signal { door, signal: Signal::EnrollOpen { length, until_ms }, device });
        until_ms
    }

    /// Counts a decision at `device` of `door` towards its lockout, as the
    /// effect that persists it; returns a lockout this engaged.
    fn count_at(
        &mut self,
        device: usize,
        door: usize,
        denied: Option<Reason>,
        now_ms: i64,
        day: i32,
        out: &mut impl Sink,
    ) -> Option<Engaged> {
        match self.count(device, denied, now_ms, day) {
            Count::Unchanged => None,
            Count::Persist(state) => {
                out.effect(Effect::PersistLockout { device, state, then: Then::Nothing });
                None
            }
            Count::PersistThenDeny { state, engaged } => {
                let lockout = engaged.map(|e| Signal::Lockout {
                    until_ms: match e {
                        Engaged::Until(t) => Some(t),
                        Engaged::DailyCap => None,
                    },
                });
                let reason = denied.map_or(Reason::Unknown.as_str(), Reason::as_str);
                let then = Then::Deny { door, reason, lockout };
                out.effect(Effect::PersistLockout { device, state, then });
                engaged
            }
        }
    }

    /// When `device`'s running lockout ends (unix ms); `None` when it is
    /// the daily cap's, which ends with the local day.
    fn lockout_end(&self, device: usize, now_ms: i64) -> Option<i64> {
        let until = self.lockout(device).locked_until_ms;
        (until > now_ms).then_some(until)
    }

    /// Records a lockout that just engaged at `device`.
    fn engaged(&self, device: usize, door: usize, e: Engaged, out: &mut impl Sink) {
        let (until, why) = match e {
            Engaged::Until(t) => (Some(rfc3339(t)), "consecutive_failures"),
            Engaged::DailyCap => (None, "daily_cap"),
        };
        let event = Event::LockoutEngaged {
            door: self.doors[door].clone(),
            device: self.stations[device].id.clone(),
            why,
            until,
            failures_today: self.lockout(device).day_failures,
        };
        out.effect(Effect::Record(event));
    }
}
