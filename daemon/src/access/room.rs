//! The room's waits: each door's enrolment window and its card waiting for
//! the holder's PIN (card plus PIN).
//!
//! Pure like [`super::decide`]: no I/O, no tokio, no clock reads. The caller
//! passes the monotonic time in (`runtime::decisions` converts tokio's
//! instant, so tests there can pause and advance it) and carries out what an
//! answer means (the door's feedback, the event). The tests below are the
//! flows as tables, without threads or sleeps.
//!
//! Still in `runtime::decisions`, to move here next: keypad entry, lockout
//! counting and the uses of limited keys (issue 12, step 1).

use super::{KeyKind, Reason, Role};
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

/// The waits of every door of a room.
#[derive(Debug, Clone)]
pub struct Room {
    windows: Vec<Option<Window>>,
    pending: Vec<Option<Pending>>,
    card_pin: CardPinPolicy,
}

impl Room {
    /// A room of `doors` doors with no window open and no card waiting.
    pub fn new(doors: usize, card_pin: CardPinPolicy) -> Room {
        Room { windows: vec![None; doors], pending: vec![None; doors], card_pin }
    }

    /// Opens `door`'s enrolment window for `holder` until `now + length`,
    /// replacing an open one.
    pub fn open_window(&mut self, door: usize, holder: String, length: Duration, now: Instant) {
        self.windows[door] = Some(Window { holder, until: now + length });
    }

    /// `door`'s open window.
    pub fn window(&self, door: usize) -> Option<&Window> {
        self.windows[door].as_ref()
    }

    /// A card at `door`: the holder of the window open there at `now`, which
    /// the card closes (it is assigned, not decided).
    pub fn take_window(&mut self, door: usize, now: Instant) -> Option<String> {
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
    pub fn expire_windows(&mut self, now: Instant) -> Vec<(usize, String)> {
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
    pub fn expire_pending(&mut self, now: Instant) -> Vec<(usize, Pending)> {
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
    pub fn card_plus_pin(
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
