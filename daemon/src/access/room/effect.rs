//! What the room is told and what it answers: the time, an input, an
//! operator's control, and the typed effects the caller carries out in
//! order.

use super::Used;
use crate::access::lockout::LockoutState;
use crate::access::KeyHash;
use crate::event::Event;
use std::time::{Duration, Instant};

/// Now, on both clocks: the monotonic one that windows and waits run on, and
/// the wall clock (unix ms) that keys' validity, schedules, lockouts and
/// events are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub mono: Instant,
    pub ms: i64,
}

/// What an input device reported, as the room reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A key pressed at a keypad.
    Key(char),
    /// A card's UID (its text form, as it is hashed).
    Card(&'a [u8]),
    /// A QR code's text.
    Qr(&'a [u8]),
    /// A level input went active (`true`) or inactive.
    Level(bool),
}

/// What an input device is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Reads keys, cards or QR codes for its door.
    Credentials,
    /// The door's contact: active means open.
    Contact,
    /// The door's request-to-exit button: active means pressed.
    ExitButton,
}

/// A feedback signal at a door (`runtime::feedback` plays it on LEDs and
/// buzzers and hands it, with its details, to the devices in the door's
/// `feedback` list). `Copy` and allocation-free: the grant's comes right
/// after the lock's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Grant,
    /// A key refused; `reason` is the event's reason word (`not_recorded`
    /// for a limited key's grant whose use could not be written).
    Deny {
        reason: &'static str,
    },
    /// The input device is locked out until this unix ms; `None` for the
    /// daily cap (until the end of the local day).
    Lockout {
        until_ms: Option<i64>,
    },
    /// An enrolment window is open for `length`, until `until_ms`.
    EnrollOpen {
        length: Duration,
        until_ms: i64,
    },
    Enrolled,
    /// The card presented in the window was not assigned; `reason` is the
    /// `enroll.refused` event's.
    Refused {
        reason: &'static str,
    },
    /// A card was accepted at a door that wants its holder's PIN too; the
    /// PIN is awaited for `wait`, until `until_ms`.
    PinNeeded {
        wait: Duration,
        until_ms: i64,
    },
    /// Stop any pattern (an enrolment window closed).
    Off,
}

/// A door's own input, passed to its door task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorInput {
    /// The contact: `true` is open.
    Contact(bool),
    /// The request-to-exit button was pressed.
    Exit,
}

/// What follows a lockout state once it is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Nothing waits on it.
    Nothing,
    /// A failure's feedback at `door`: deny with its reason word, and the
    /// lockout's (with its end) when one engaged. Played only once the count
    /// is on disk, so a guesser who cuts the power after each try learns
    /// nothing the count did not keep.
    Deny { door: usize, reason: &'static str, lockout: Option<Signal> },
    /// An operator waits for it (`lockout.clear` answers once it is written).
    Confirm,
}

/// One thing the room wants done, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Drive `door`'s lock open now, before anything is written (a key of
    /// unlimited uses: the sub-millisecond path). The sink answers whether
    /// the door took the command; the grant's event says `not_driven` if not.
    Unlock { door: usize },
    /// Play a feedback pattern at `door`, caused by `device`'s input (the
    /// device's index; `None` when no device's input caused it: a window
    /// opened by a command, a window or a card's wait running out).
    Signal { door: usize, signal: Signal, device: Option<usize> },
    /// Record an event (the audit log, the outbox, the portal).
    Record(Event),
    /// Write a limited key's use together with its grant's event, and only
    /// once both are on disk drive `door`'s lock and play the grant: a power
    /// cut can never give a use the store does not know of. When it cannot
    /// be written, the caller gives the use back ([`super::Room::unspend`])
    /// and plays deny; the door stays locked.
    PersistUseThenUnlock { door: usize, device: usize, key: KeyHash, used: Used, event: Event },
    /// Write `device`'s lockout state, then do `then` (a deny's feedback is
    /// `device`'s).
    PersistLockout { device: usize, state: LockoutState, then: Then },
    /// A right card at `door` waits for `holder`'s PIN for `wait`: play the
    /// PIN-needed pattern (nothing opens yet).
    AwaitPin { door: usize, device: usize, holder: String, wait: Duration },
    /// A card presented at `device` during `door`'s enrolment window: assign
    /// it to `holder` (the caller has the card's UID).
    Enrol { door: usize, device: usize, holder: String },
    /// Pass a contact or exit button to `door`'s task.
    Door { door: usize, input: DoorInput },
}

/// Where the room's effects go, one at a time in order: the decision loop
/// carries each out as it comes (so the lock is driven before the rest of
/// an answer is even built), a test collects them in a `Vec`.
pub trait Sink {
    /// Takes `effect`; returns whether it was carried out (an [`Effect::Unlock`]
    /// whose door took no command: `false`).
    fn effect(&mut self, effect: Effect) -> bool;
}

impl Sink for Vec<Effect> {
    fn effect(&mut self, effect: Effect) -> bool {
        self.push(effect);
        true
    }
}

/// An operator's or the system's word to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `lockout.clear`: one input device's lockout, or every one's.
    ClearLockout { device: Option<String> },
    /// `enroll.start`: opens `door`'s window for `holder` (replacing an open
    /// one) for `window` or the configured time.
    Enroll { holder: String, door: String, window: Option<Duration> },
    /// The clock's synchronisation as the watch last saw it (`None`: it
    /// cannot be read).
    ClockTrust(Option<bool>),
    /// The wall clock stepped by `by_ms` against the monotonic clock: each
    /// running lockout moves with it, so it lasts as long as it would have.
    ClockJumped { by_ms: i64 },
}

/// The room's answer to a [`Control`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The devices cleared (each with an [`Effect::PersistLockout`] to confirm).
    Cleared(Vec<String>),
    /// The window is open until this unix ms, for this long.
    WindowOpen {
        until_ms: i64,
        length: Duration,
    },
    Done,
}

/// An input device locked out now (`state.get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedOut {
    pub device: String,
    /// When a consecutive-failure lockout ends; `None` for the daily cap.
    pub until_ms: Option<i64>,
    pub failures_today: u32,
}
