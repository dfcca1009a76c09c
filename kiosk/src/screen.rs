//! The kiosk's state machine, sans-IO: porterd's feedback, the page's touches
//! and the passing of time go in ([`Kiosk::feedback`], [`Kiosk::touch`],
//! [`Kiosk::tick`], [`Kiosk::stdin_closed`]); key lines for stdout come out,
//! and [`Kiosk::view`] says what the page shows. The time is passed in as a
//! [`Now`]: a monotonic instant for timers, the wall clock for porterd's
//! `until_ms`.
//!
//! The typed digits live here only (never in the browser), in a zeroized
//! buffer, and leave in one key line when OK is touched.

use std::time::{Duration, Instant};

use chrono::{DateTime, Local, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::feedback::{Feedback, Kind};

/// The most digits kept in an entry.
pub const MAX_DIGITS: usize = 12;
/// How long `checking` waits for porterd's answer.
pub const CHECKING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a result (not accepted, card assigned, ...) stays up.
pub const RESULT_TIME: Duration = Duration::from_secs(5);

/// How long `present_card` outlasts the window's end when porterd's "off" does
/// not come.
pub const PRESENT_GRACE: Duration = Duration::from_secs(2);

/// The moment a step happens.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    /// Unix time in ms (porterd's `until_ms` are on this clock).
    pub unix_ms: i64,
}

impl Now {
    pub fn system() -> Self {
        Self { at: Instant::now(), unix_ms: Utc::now().timestamp_millis() }
    }

    /// `ms` later, on both clocks.
    pub fn plus(self, ms: u64) -> Self {
        Self { at: self.at + Duration::from_millis(ms), unix_ms: self.unix_ms + ms as i64 }
    }
}

/// The screen ids (also the page's `main[data-screen]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Screen {
    Idle,
    Pin,
    Checking,
    DoorOpen,
    NotAccepted,
    Lockout,
    AssignPin,
    PresentCard,
    CardAssigned,
    CardTaken,
    Timeout,
    PinNeeded,
    Offline,
}

impl Screen {
    /// The screens with a keypad whose digits go into the entry.
    fn takes_digits(self) -> bool {
        matches!(self, Screen::Idle | Screen::Pin | Screen::AssignPin | Screen::PinNeeded)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    En,
    Es,
}

/// The deny reasons that are safe to show apart: the person at the screen
/// knows them already. Every other reason is shown as a plain refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShownReason {
    OutsideSchedule,
    WrongDoor,
    CardRequired,
    PinRequired,
}

impl ShownReason {
    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "outside_schedule" => Some(Self::OutsideSchedule),
            "wrong_door" => Some(Self::WrongDoor),
            "card_required" => Some(Self::CardRequired),
            "pin_required" => Some(Self::PinRequired),
            _ => None,
        }
    }
}

/// A touch on the page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "touch", rename_all = "snake_case", deny_unknown_fields)]
pub enum Touch {
    Digit { digit: char },
    Back,
    Ok,
    Cancel,
    Assign,
    Lang { lang: Lang },
}

/// The zone that a lockout's "try again at HH:MM" is told in.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

impl Zone {
    fn hh_mm(self, unix_ms: i64) -> String {
        let Some(t) = DateTime::<Utc>::from_timestamp_millis(unix_ms) else { return "--:--".into() };
        match self {
            Zone::Local => t.with_timezone(&Local).format("%H:%M").to_string(),
            Zone::Named(tz) => t.with_timezone(&tz).format("%H:%M").to_string(),
        }
    }

    /// The start of the next local day after `unix_ms` (the daily cap's end).
    fn next_midnight_ms(self, unix_ms: i64) -> i64 {
        fn next<Z: TimeZone>(z: &Z, unix_ms: i64) -> Option<i64> {
            let now = DateTime::<Utc>::from_timestamp_millis(unix_ms)?.with_timezone(z);
            let day = now.date_naive().succ_opt()?;
            let t = z.from_local_datetime(&day.and_time(NaiveTime::MIN)).earliest()?;
            Some(t.timestamp_millis())
        }
        let fallback = unix_ms + 24 * 3600 * 1000;
        match self {
            Zone::Local => next(&Local, unix_ms).unwrap_or(fallback),
            Zone::Named(tz) => next(&tz, unix_ms).unwrap_or(fallback),
        }
    }
}

/// What the kiosk is set up with (from its arguments).
#[derive(Debug, Clone)]
pub struct Settings {
    pub device: String,
    pub door: String,
    pub door_name: String,
    pub room: String,
    pub lang: Lang,
    pub zone: Zone,
    pub pin_length: usize,
    pub entry_timeout: Duration,
}

/// What the page shows: `{"view": ...}` on the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    pub screen: Screen,
    pub lang: Lang,
    pub room: String,
    pub door: String,
    pub entered: usize,
    pub pin_length: usize,
    pub reason: Option<ShownReason>,
    pub until: Option<String>,
    pub remaining_ms: Option<u64>,
}

impl View {
    /// The WebSocket frame, with `remaining_ms` counted down by `elapsed`
    /// (the time since the view was made).
    pub fn frame(&self, elapsed: Duration) -> String {
        let mut v = self.clone();
        v.remaining_ms = v.remaining_ms.map(|ms| ms.saturating_sub(elapsed.as_millis() as u64));
        serde_json::json!({ "view": v }).to_string()
    }
}

/// What a step produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Lines for stdout (with no line break), in order. They hold digits:
    /// zeroized when dropped.
    pub lines: Vec<Zeroizing<String>>,
    /// The view changed: send it to the page.
    pub changed: bool,
}

/// The state machine.
#[derive(Debug)]
pub struct Kiosk {
    set: Settings,
    screen: Screen,
    lang: Lang,
    entry: Zeroizing<String>,
    reason: Option<ShownReason>,
    until: Option<String>,
    /// When the current screen ends by itself (or the entry is cleared).
    deadline: Option<Instant>,
    /// Shown as `remaining_ms` when set: the end of a countdown.
    countdown: Option<Instant>,
    /// A limit on the entry's deadline that touches do not extend (porterd's
    /// wait for a card's PIN).
    limit: Option<Instant>,
    garbled: u64,
}

impl Kiosk {
    pub fn new(set: Settings) -> Self {
        let lang = set.lang;
        Self {
            set,
            screen: Screen::Idle,
            lang,
            entry: Zeroizing::new(String::with_capacity(MAX_DIGITS)),
            reason: None,
            until: None,
            deadline: None,
            countdown: None,
            limit: None,
            garbled: 0,
        }
    }

    pub fn screen(&self) -> Screen {
        self.screen
    }

    /// Garbled lines seen so far.
    pub fn garbled(&self) -> u64 {
        self.garbled
    }

    /// When [`Kiosk::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn view(&self, now: Now) -> View {
        View {
            screen: self.screen,
            lang: self.lang,
            room: self.set.room.clone(),
            door: self.set.door_name.clone(),
            entered: self.entry.len(),
            pin_length: self.set.pin_length,
            reason: self.reason,
            until: self.until.clone(),
            remaining_ms: self.countdown.map(|end| end.saturating_duration_since(now.at).as_millis() as u64),
        }
    }

    /// Counts a garbled stdin line.
    pub fn garbled_line(&mut self) {
        self.garbled += 1;
    }

    /// Leaves for `screen`, clearing what the last one showed.
    fn go(&mut self, screen: Screen, deadline: Option<Instant>) -> Step {
        self.entry.zeroize();
        if screen == Screen::Idle {
            self.lang = self.set.lang;
        }
        self.screen = screen;
        self.reason = None;
        self.until = None;
        self.deadline = deadline;
        self.countdown = None;
        self.limit = None;
        Step { lines: Vec::new(), changed: true }
    }

    fn idle(&mut self) -> Step {
        self.go(Screen::Idle, None)
    }

    /// The monotonic instant of a wall-clock `until_ms` (now, if past).
    fn at_wall(now: Now, until_ms: i64) -> Instant {
        now.at + Duration::from_millis(until_ms.saturating_sub(now.unix_ms).max(0) as u64)
    }

    /// porterd's signal `f`.
    pub fn feedback(&mut self, f: &Feedback, now: Now) -> Step {
        if self.screen == Screen::Offline || f.door != self.set.door {
            return Step::default();
        }
        let ours = f.device.as_deref().is_none_or(|d| d == self.set.device);
        if !ours && !matches!(self.screen, Screen::Idle | Screen::PresentCard) {
            return Step::default();
        }
        let result = Some(now.at + RESULT_TIME);
        match &f.kind {
            Kind::Grant { unlock_ms } => {
                let end = now.at + Duration::from_millis(*unlock_ms);
                let step = self.go(Screen::DoorOpen, Some(end));
                self.countdown = Some(end);
                step
            }
            Kind::Deny { reason } => {
                let step = self.go(Screen::NotAccepted, result);
                self.reason = ShownReason::from_word(reason);
                step
            }
            // Another device's lockout is never shown: it would tell the
            // person at the screen about someone else's tries.
            Kind::Lockout { .. } if !ours => Step::default(),
            Kind::Lockout { until_ms } => {
                let (until, end_ms) = match until_ms {
                    Some(ms) => (self.set.zone.hh_mm(*ms), *ms),
                    None => ("tomorrow".to_owned(), self.set.zone.next_midnight_ms(now.unix_ms)),
                };
                let end = Self::at_wall(now, end_ms);
                let step = self.go(Screen::Lockout, Some(end));
                self.until = Some(until);
                self.countdown = Some(end);
                step
            }
            Kind::EnrollOpen { until_ms } => {
                // porterd says "off" when the window closes; the screen's own
                // end waits a little longer, so a card presented at the last
                // moment is still shown as assigned.
                let end = until_ms.map(|ms| Self::at_wall(now, ms));
                let step = self.go(Screen::PresentCard, end.map(|e| e + PRESENT_GRACE));
                self.countdown = end;
                step
            }
            Kind::CardEnrolled => self.go(Screen::CardAssigned, result),
            Kind::CardRefused { reason } if reason == "duplicate" => self.go(Screen::CardTaken, result),
            Kind::CardRefused { .. } => self.go(Screen::NotAccepted, result),
            Kind::PinNeeded { until_ms } => {
                let mut step = self.go(Screen::PinNeeded, None);
                self.limit = until_ms.map(|ms| Self::at_wall(now, ms));
                self.deadline = Some(self.entry_deadline(now));
                step.changed = true;
                step
            }
            Kind::Off if self.screen == Screen::PresentCard => self.go(Screen::Timeout, result),
            Kind::Off => Step::default(),
        }
    }

    /// A touch on the page.
    pub fn touch(&mut self, t: &Touch, now: Now) -> Step {
        match (self.screen, t) {
            (Screen::Offline, _) => Step::default(),
            (_, Touch::Lang { lang }) => {
                let changed = self.lang != *lang;
                self.lang = *lang;
                if self.screen == Screen::Idle {
                    // Back to the configured language when no one touches.
                    self.deadline = (self.lang != self.set.lang).then(|| now.at + self.set.entry_timeout);
                } else if self.screen.takes_digits() {
                    self.deadline = Some(self.entry_deadline(now));
                }
                Step { lines: Vec::new(), changed }
            }
            (Screen::Idle, Touch::Assign) => self.go(Screen::AssignPin, Some(now.at + self.set.entry_timeout)),
            (s, Touch::Digit { digit }) if s.takes_digits() => {
                if !digit.is_ascii_digit() || self.entry.len() >= MAX_DIGITS {
                    return Step::default();
                }
                if s == Screen::Idle {
                    self.screen = Screen::Pin;
                }
                self.entry.push(*digit);
                self.deadline = Some(self.entry_deadline(now));
                Step { lines: Vec::new(), changed: true }
            }
            (Screen::Pin | Screen::AssignPin | Screen::PinNeeded, Touch::Back) => {
                if self.entry.pop().is_none() {
                    return Step::default();
                }
                if self.screen == Screen::Pin && self.entry.is_empty() {
                    return self.idle();
                }
                self.deadline = Some(self.entry_deadline(now));
                Step { lines: Vec::new(), changed: true }
            }
            (Screen::Pin | Screen::AssignPin | Screen::PinNeeded | Screen::PresentCard, Touch::Cancel) => self.idle(),
            (s @ (Screen::Pin | Screen::AssignPin | Screen::PinNeeded), Touch::Ok) => {
                if self.entry.len() < self.set.pin_length {
                    return Step::default();
                }
                // "*0*" resets porterd's keypad state without arming enrolment;
                // "*0**" arms it.
                let prefix = if s == Screen::AssignPin { "*0**" } else { "*0*" };
                let mut line = Zeroizing::new(String::with_capacity(32));
                line.push_str(r#"{"key":""#);
                line.push_str(prefix);
                line.push_str(&self.entry);
                line.push_str(r##"#"}"##);
                let mut step = self.go(Screen::Checking, Some(now.at + CHECKING_TIMEOUT));
                step.lines.push(line);
                step
            }
            _ => Step::default(),
        }
    }

    fn entry_deadline(&self, now: Now) -> Instant {
        let typed = now.at + self.set.entry_timeout;
        // A card's wait for its PIN ends when porterd's does, if sooner.
        self.limit.map_or(typed, |end| end.min(typed))
    }

    /// The time passed: ends the screens whose time is up.
    pub fn tick(&mut self, now: Now) -> Step {
        match self.deadline {
            Some(d) if d <= now.at => {}
            _ => return Step::default(),
        }
        match self.screen {
            Screen::Idle => {
                self.deadline = None;
                let changed = self.lang != self.set.lang;
                self.lang = self.set.lang;
                Step { lines: Vec::new(), changed }
            }
            Screen::Offline => Step::default(),
            Screen::PresentCard => self.go(Screen::Timeout, Some(now.at + RESULT_TIME)),
            _ => self.idle(),
        }
    }

    /// porterd is gone: out of service for good.
    pub fn stdin_closed(&mut self) -> Step {
        if self.screen == Screen::Offline {
            return Step::default();
        }
        self.go(Screen::Offline, None)
    }
}
