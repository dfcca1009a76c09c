//! The room: each door's enrolment window and its card waiting for the
//! holder's PIN (card plus PIN), each input device's keypad entry and
//! lockout count, the uses limited keys have given, and whether the clock
//! can be trusted.
//!
//! Pure like [`super::decide`]: no I/O, no tokio, no clock reads. The caller
//! passes the time in ([`At`]) and carries out what the room answers: a list
//! of typed [`Effect`]s, given one by one to a [`Sink`] in the order they
//! must happen (`runtime::decisions` carries each out as it comes; tests
//! collect them). [`Room::input`] takes what a device reported,
//! [`Room::control`] an operator's or the clock's word, [`Room::tick`] the
//! passing of time. The flows are in `flows.rs`, the vocabulary in
//! `effect.rs`, the tables that test them in `tests.rs`.
//!
//! Where storage must come before what a person sees, the effect says so:
//! a failure's count is an [`Effect::PersistLockout`] whose deny feedback
//! ([`Then::Deny`]) plays only once the state is on disk; a limited key's
//! grant is an [`Effect::PersistUseThenUnlock`]. A key of unlimited uses
//! drives its lock first ([`Effect::Unlock`]), before anything is written.

mod effect;
mod flows;

pub use effect::{Answer, At, Control, DoorInput, Effect, Input, LockedOut, Purpose, Signal, Sink, Then};

use super::keypad::{KeyOutcome, KeypadEntry};
use super::lockout::{Engaged, LockoutPolicy, LockoutState};
use super::{KeyHash, KeyKind, Limit, Reason, Role};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// An open enrolment window at a door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub holder: String,
    pub until: Instant,
}

/// A card accepted at a door that wants its holder's PIN next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub holder: String,
    /// The reader the card was presented at.
    pub device: usize,
    pub until: Instant,
}

/// Which doors and roles want card plus PIN, and how long a PIN is awaited.
#[derive(Debug, Clone, Default)]
pub struct CardPinPolicy {
    /// Per door: card plus PIN there for everyone.
    pub doors: Vec<bool>,
    /// Card plus PIN for these roles at every door.
    pub roles: Vec<Role>,
    pub pin_after_card: Duration,
}

/// What card plus PIN makes of a decided key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardPin {
    /// Not wanted here: the decision stands.
    NotRequired,
    /// A right card: the door waits this long for the holder's PIN; nothing
    /// opens yet.
    Wait(Duration),
    /// The holder's PIN after their card at `card_device`: a grant, `card+pin`.
    Completed { card_device: usize },
    /// Refused although the key was right.
    Refused(Reason),
}

/// What a decision at a device does to its lockout count: the state to
/// persist, and in which order with the person's feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Nothing changed (a grant with no failures counted, or a refusal by the
    /// lockout itself): nothing to write.
    Unchanged,
    /// A grant reset the consecutive count: write the state (no feedback
    /// waits on it).
    Persist(LockoutState),
    /// A failure: write the state, and only once it is on disk play the deny
    /// feedback (and the lockout's, when one engaged), so a guesser who cuts
    /// the power after each try learns nothing the count did not keep.
    PersistThenDeny { state: LockoutState, engaged: Option<Engaged> },
}

/// What an enrolment PIN (`*` `*` PIN `#`) comes to once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrolmentPin {
    /// Why no window opens (`enroll.denied`'s reason); `None`: it opens.
    pub refused: Option<&'static str>,
    /// Whether it counts towards the keypad's lockout: a right PIN refused
    /// for enrolment (`role_not_allowed`, `limited_key`) is neither a
    /// failure nor a success, so it must not reset the count.
    pub counts: bool,
}

impl EnrolmentPin {
    /// An enrolment PIN decided with `denied` (a refusal's reason) for a
    /// holder of `role` (`None`: no holder), `limited` when the key is: a
    /// grant opens a window only for the `roles` that may enroll, and never
    /// for a limited key (a one-time or expiring PIN must not leave a
    /// lasting card behind).
    pub fn decided(denied: Option<Reason>, role: Option<Role>, limited: bool, roles: &[Role]) -> EnrolmentPin {
        let refused = match (denied, role) {
            (Some(r), _) => Some(r.as_str()),
            (None, Some(role)) if !roles.contains(&role) => Some("role_not_allowed"),
            (None, _) if limited => Some("limited_key"),
            (None, _) => None,
        };
        EnrolmentPin { refused, counts: refused.is_none() || denied.is_some() }
    }
}

/// The grants a limited key made at `created_ms` has given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    pub created_ms: i64,
    pub used: u32,
}

/// How a granted key reaches its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A key of unlimited uses: drive the lock now, before anything is
    /// written (the sub-millisecond path).
    UnlockNow,
    /// A limited key: its use counts at once (two presentations of a
    /// one-time code, even at the same moment on two devices, are decided
    /// one after the other), and its lock is driven only once this is on
    /// disk, so a power cut can never give a use the store does not know of.
    /// Not written: [`Room::unspend`] it; the door stays locked.
    PersistUseThenUnlock(Used),
}

/// The state of one input device: its keypad entry and its lockout.
#[derive(Debug, Clone)]
pub struct Seat {
    pub keypad: KeypadEntry,
    pub lockout: LockoutState,
}

/// An input device as the room names and wires it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    pub id: String,
    /// Its door; `None` for a device of no door (it decides nothing).
    pub door: Option<usize>,
    pub purpose: Purpose,
}

/// Who may open an enrolment window at a keypad, and for how long.
#[derive(Debug, Clone)]
pub struct EnrolPolicy {
    /// The roles whose PIN opens an enrolment window at a keypad.
    pub roles: Vec<Role>,
    /// How long a window stays open unless `enroll.start` says otherwise.
    pub window: Duration,
}

/// The room's policy, as configured.
#[derive(Debug, Clone)]
pub struct Policy {
    pub lockout: LockoutPolicy,
    pub card_pin: CardPinPolicy,
    /// The site's time zone: schedules and the daily lockout cap are local.
    pub tz: chrono_tz::Tz,
    pub enroll: EnrolPolicy,
    /// `clock.unsynchronized = "deny"`: keys bound by time are denied while
    /// the clock is not known to be synchronised.
    pub deny_unsynchronized: bool,
}

/// The waits of every door of a room and the state of its input devices.
#[derive(Debug, Clone)]
pub struct Room {
    doors: Vec<String>,
    stations: Vec<Station>,
    windows: Vec<Option<Window>>,
    pending: Vec<Option<Pending>>,
    card_pin: CardPinPolicy,
    seats: Vec<Seat>,
    lockout: LockoutPolicy,
    uses: HashMap<KeyHash, Used>,
    tz: chrono_tz::Tz,
    enroll: EnrolPolicy,
    deny_unsynchronized: bool,
    /// The clock's synchronisation as last told ([`Control::ClockTrust`]).
    synchronized: Option<bool>,
}

impl Room {
    /// A room of these doors (by id) and input devices (each with its
    /// keypad entry and lockout state, as loaded), no window open and no card
    /// waiting, the clock not known to be synchronised.
    pub fn new(doors: Vec<String>, devices: Vec<(Station, Seat)>, policy: Policy) -> Room {
        let n = doors.len();
        let (stations, seats) = devices.into_iter().unzip();
        Room {
            doors,
            stations,
            windows: vec![None; n],
            pending: vec![None; n],
            card_pin: policy.card_pin,
            seats,
            lockout: policy.lockout,
            uses: HashMap::new(),
            tz: policy.tz,
            enroll: policy.enroll,
            deny_unsynchronized: policy.deny_unsynchronized,
            synchronized: None,
        }
    }

    /// The room with the clock's synchronisation as seen at start.
    pub fn with_clock(mut self, synchronized: Option<bool>) -> Room {
        self.synchronized = synchronized;
        self
    }

    /// The input devices.
    pub fn stations(&self) -> &[Station] {
        &self.stations
    }

    /// The doors' ids.
    pub fn doors(&self) -> &[String] {
        &self.doors
    }

    /// The room with the uses limited keys have given (as loaded from disk).
    pub fn with_uses(mut self, uses: HashMap<KeyHash, Used>) -> Room {
        self.uses = uses;
        self
    }

    /// The grants the limited key `key` made at `created_ms` has given.
    pub fn spent(&self, key: &KeyHash, created_ms: i64) -> u32 {
        self.uses.get(key).filter(|u| u.created_ms == created_ms).map_or(0, |u| u.used)
    }

    /// A grant of `key` (with its `limit`, and `spent` uses before this
    /// one): a limited key's use is counted now.
    fn grant(&mut self, key: KeyHash, limit: Option<Limit>, spent: u32) -> Grant {
        match limit {
            Some(l) if l.uses.is_some() => {
                let u = Used { created_ms: l.created_ms, used: spent + 1 };
                self.uses.insert(key, u);
                Grant::PersistUseThenUnlock(u)
            }
            _ => Grant::UnlockNow,
        }
    }

    /// A limited key's use that could not be written: not persisted, so not
    /// used.
    pub fn unspend(&mut self, key: KeyHash, used: Used) {
        self.uses.insert(key, Used { used: used.used.saturating_sub(1), ..used });
    }

    /// Replaces the card-plus-PIN policy (a test's door wants it after all).
    pub fn set_card_pin(&mut self, card_pin: CardPinPolicy) {
        self.card_pin = card_pin;
    }

    /// The lockout policy the devices are counted under.
    pub fn lockout_policy(&self) -> &LockoutPolicy {
        &self.lockout
    }

    /// `device`'s lockout state.
    pub fn lockout(&self, device: usize) -> &LockoutState {
        &self.seats[device].lockout
    }

    /// A key pressed at `device`'s keypad at `now`.
    fn key(&mut self, device: usize, key: char, now: Instant) -> KeyOutcome {
        self.seats[device].keypad.key(key, tokio::time::Instant::from_std(now))
    }

    /// Whether `device` refuses entries at `now_ms` on local day `day`.
    fn is_locked(&self, device: usize, now_ms: i64, day: i32) -> bool {
        self.seats[device].lockout.is_locked(&self.lockout, now_ms, day)
    }

    /// Counts a decision at `device` (`denied` is a refusal's reason) at
    /// `now_ms` on local day `day`: a grant resets the consecutive count, a
    /// refusal other than the lockout itself counts as a failure.
    fn count(&mut self, device: usize, denied: Option<Reason>, now_ms: i64, day: i32) -> Count {
        let s = &mut self.seats[device].lockout;
        match denied {
            None if s.consecutive > 0 => {
                s.success();
                Count::Persist(*s)
            }
            None | Some(Reason::LockedOut) => Count::Unchanged,
            Some(_) => {
                let engaged = s.failure(&self.lockout, now_ms, day);
                Count::PersistThenDeny { state: *s, engaged }
            }
        }
    }

    /// An operator's `lockout.clear` of `device`: the state to persist.
    fn clear_lockout(&mut self, device: usize) -> LockoutState {
        let s = &mut self.seats[device].lockout;
        s.clear();
        *s
    }

    /// The wall clock stepped by `by_ms` and now reads `now_ms`, local day
    /// `today`: each device's day moves back to today if it was ahead, and
    /// each running lockout moves with the clock (so it lasts as long as it
    /// would have), but never past the longest lockout from now (a lockout
    /// restored on a boot-time clock must not grow by the whole correction).
    /// Returns each changed device's state to persist, once per change.
    fn rebase_lockouts(&mut self, now_ms: i64, by_ms: i64, today: i32) -> Vec<(usize, LockoutState)> {
        let mut changed = Vec::new();
        for (i, seat) in self.seats.iter_mut().enumerate() {
            let s = &mut seat.lockout;
            if s.day > today {
                s.rebase(today);
                changed.push((i, *s));
            }
            // `now_ms - by_ms` is the old clock's now: a lockout running then moves.
            if s.locked_until_ms > now_ms.saturating_sub(by_ms) {
                let cap = now_ms.saturating_add(self.lockout.max_ms as i64);
                s.locked_until_ms = s.locked_until_ms.saturating_add(by_ms).min(cap);
                changed.push((i, *s));
            }
        }
        changed
    }

    /// Opens `door`'s enrolment window for `holder` until `now + length`,
    /// replacing an open one.
    fn open_window(&mut self, door: usize, holder: String, length: Duration, now: Instant) {
        self.windows[door] = Some(Window { holder, until: now + length });
    }

    /// `door`'s open window.
    pub fn window(&self, door: usize) -> Option<&Window> {
        self.windows[door].as_ref()
    }

    /// A card at `door`: the holder of the window open there at `now`, which
    /// the card closes (it is assigned, not decided).
    fn take_window(&mut self, door: usize, now: Instant) -> Option<String> {
        self.windows[door].take_if(|w| w.until > now).map(|w| w.holder)
    }

    /// The card waiting at `door` for its PIN.
    pub fn pending(&self, door: usize) -> Option<&Pending> {
        self.pending[door].as_ref()
    }

    /// When the next window or wait runs out.
    pub fn next_deadline(&self) -> Option<Instant> {
        let windows = self.windows.iter().flatten().map(|w| w.until);
        windows.chain(self.pending.iter().flatten().map(|p| p.until)).min()
    }

    /// Closes the windows whose time is up at `now`: each door and holder.
    fn expire_windows(&mut self, now: Instant) -> Vec<(usize, String)> {
        let mut closed = Vec::new();
        for (door, w) in self.windows.iter_mut().enumerate() {
            if let Some(w) = w.take_if(|w| w.until <= now) {
                closed.push((door, w.holder));
            }
        }
        closed
    }

    /// Ends the cards' waits whose time is up at `now`: each door and card.
    /// Nothing allocates when none ended (the decision path calls this first).
    fn expire_pending(&mut self, now: Instant) -> Vec<(usize, Pending)> {
        let mut ended = Vec::new();
        for (door, p) in self.pending.iter_mut().enumerate() {
            if let Some(p) = p.take_if(|p| p.until <= now) {
                ended.push((door, p));
            }
        }
        ended
    }

    /// Card plus PIN for a key of `kind` presented at `device` of `door` and
    /// decided for `holder` (with its role) with `reason` (`None`: granted).
    /// A right card at a door or for a role that wants it waits for the PIN;
    /// the holder's PIN then completes it; another key is refused. A refused
    /// PIN (other than a locked-out keypad's) ends the card's wait.
    fn card_plus_pin(
        &mut self,
        door: usize,
        device: usize,
        kind: KeyKind,
        holder: Option<(&str, Role)>,
        reason: Option<Reason>,
        now: Instant,
    ) -> CardPin {
        let Some((holder, role)) = holder.filter(|_| reason.is_none()) else {
            if kind == KeyKind::Pin && reason != Some(Reason::LockedOut) {
                self.pending[door] = None;
            }
            return CardPin::NotRequired;
        };
        if !(self.card_pin.doors[door] || self.card_pin.roles.contains(&role)) {
            return CardPin::NotRequired;
        }
        match kind {
            KeyKind::Card => {
                let wait = self.card_pin.pin_after_card;
                self.pending[door] = Some(Pending { holder: holder.to_string(), device, until: now + wait });
                CardPin::Wait(wait)
            }
            KeyKind::Pin => match self.pending[door].take() {
                Some(p) if p.until > now && p.holder == holder => CardPin::Completed { card_device: p.device },
                Some(p) if p.until > now => CardPin::Refused(Reason::PinMismatch),
                _ => CardPin::Refused(Reason::CardRequired),
            },
            KeyKind::Qr => CardPin::Refused(Reason::CardRequired),
        }
    }
}

#[cfg(test)]
mod tests;
