//! Keypad entry: keys in, a submitted PIN out. Sans-IO: the caller passes the
//! time of each key.
//!
//! Digits collect into the entry; `#` submits it; `*` clears it; a pause
//! longer than `timeout` between two keys drops what was typed before. With
//! `submit_at_length`, an entry of exactly the PIN length submits by itself.
//! Two `*` in a row start an enrolment entry instead: `*` `*` PIN `#` asks
//! for a card enrolment window for the PIN's holder (the PIN opens nothing).
//! The entry is a fixed array: typing cannot grow memory.

use std::time::Duration;
use tokio::time::Instant;

/// The most keys kept; a longer entry is remembered as too long and fails.
pub const MAX_ENTRY: usize = 16;

/// A typed PIN, fixed-size.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    digits: [u8; MAX_ENTRY],
    len: u8,
    overflow: bool,
}

impl Entry {
    pub const fn empty() -> Self {
        Entry { digits: [0; MAX_ENTRY], len: 0, overflow: false }
    }
    /// The typed digits as ASCII; `None` when more than [`MAX_ENTRY`] were typed.
    pub fn digits(&self) -> Option<&[u8]> {
        (!self.overflow).then(|| &self.digits[..self.len as usize])
    }
    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0 && !self.overflow
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entry(<{} digits>)", self.len)
    }
}

/// What one key press produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Nothing to do yet.
    Pending,
    /// An entry was submitted.
    Submit(Entry),
    /// `*` cleared the entry.
    Cleared,
    /// `#` with nothing typed.
    EmptySubmit,
    /// A second `*` in a row: what follows is an enrolment PIN.
    EnrollArmed,
    /// An enrolment PIN was submitted (`*` `*` PIN `#`).
    Enroll(Entry),
}

#[derive(Debug, Clone)]
pub struct KeypadEntry {
    entry: Entry,
    last_key: Option<Instant>,
    /// The previous key was `*`.
    after_star: bool,
    /// The entry is an enrolment PIN.
    enrolling: bool,
    pub pin_length: usize,
    pub timeout: Duration,
    pub submit_at_length: bool,
}

impl KeypadEntry {
    pub fn new(pin_length: usize, timeout: Duration, submit_at_length: bool) -> Self {
        KeypadEntry {
            entry: Entry::empty(),
            last_key: None,
            after_star: false,
            enrolling: false,
            pin_length,
            timeout,
            submit_at_length,
        }
    }

    /// Feeds one key pressed at `now`.
    pub fn key(&mut self, key: char, now: Instant) -> KeyOutcome {
        if let Some(last) = self.last_key {
            if now.saturating_duration_since(last) > self.timeout {
                self.entry = Entry::empty();
                self.after_star = false;
                self.enrolling = false;
            }
        }
        self.last_key = Some(now);
        let after_star = std::mem::replace(&mut self.after_star, key == '*');
        match key {
            '*' => {
                self.entry = Entry::empty();
                self.enrolling = after_star;
                if after_star {
                    KeyOutcome::EnrollArmed
                } else {
                    KeyOutcome::Cleared
                }
            }
            '#' => {
                let e = std::mem::replace(&mut self.entry, Entry::empty());
                let enrolling = std::mem::replace(&mut self.enrolling, false);
                match (e.is_empty(), enrolling) {
                    (true, _) => KeyOutcome::EmptySubmit,
                    (false, true) => KeyOutcome::Enroll(e),
                    (false, false) => KeyOutcome::Submit(e),
                }
            }
            d if d.is_ascii_digit() => {
                let e = &mut self.entry;
                if (e.len as usize) < MAX_ENTRY {
                    e.digits[e.len as usize] = d as u8;
                    e.len += 1;
                } else {
                    e.overflow = true;
                }
                if self.submit_at_length && !e.overflow && e.len as usize == self.pin_length {
                    let e = std::mem::replace(e, Entry::empty());
                    return if std::mem::replace(&mut self.enrolling, false) {
                        KeyOutcome::Enroll(e)
                    } else {
                        KeyOutcome::Submit(e)
                    };
                }
                KeyOutcome::Pending
            }
            _ => {
                self.after_star = after_star;
                KeyOutcome::Pending
            }
        }
    }

    /// Whether keys are waiting (for a display or a test).
    pub fn pending(&self) -> usize {
        self.entry.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(k: &mut KeypadEntry, keys: &str, start: Instant, step: Duration) -> Vec<KeyOutcome> {
        keys.chars().enumerate().map(|(i, c)| k.key(c, start + step * i as u32)).collect()
    }

    fn submitted(o: &KeyOutcome) -> Option<Vec<u8>> {
        match o {
            KeyOutcome::Submit(e) => Some(e.digits().map(|d| d.to_vec()).unwrap_or_default()),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hash_submits_star_clears() {
        let mut k = KeypadEntry::new(6, Duration::from_secs(5), false);
        let now = Instant::now();
        let out = typed(&mut k, "12*483920#", now, Duration::from_millis(300));
        assert_eq!(out[2], KeyOutcome::Cleared);
        assert_eq!(submitted(out.last().unwrap()), Some(b"483920".to_vec()));
        assert_eq!(k.key('#', now + Duration::from_secs(4)), KeyOutcome::EmptySubmit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_drops_the_entry() {
        let mut k = KeypadEntry::new(6, Duration::from_secs(5), false);
        let t0 = Instant::now();
        k.key('9', t0);
        k.key('9', t0 + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(7)).await;
        let t1 = Instant::now();
        let out = typed(&mut k, "123456#", t1, Duration::from_millis(100));
        assert_eq!(submitted(out.last().unwrap()), Some(b"123456".to_vec()));
        // Exactly at the timeout the entry is kept; just past it, it is not.
        k.key('1', t1 + Duration::from_secs(10));
        assert_eq!(submitted(&k.key('#', t1 + Duration::from_secs(15))), Some(b"1".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn submit_at_length() {
        let mut k = KeypadEntry::new(6, Duration::from_secs(5), true);
        let out = typed(&mut k, "483920", Instant::now(), Duration::from_millis(100));
        assert_eq!(submitted(out.last().unwrap()), Some(b"483920".to_vec()));
        assert_eq!(k.pending(), 0);
    }

    fn enrolled(o: &KeyOutcome) -> Option<Vec<u8>> {
        match o {
            KeyOutcome::Enroll(e) => Some(e.digits().map(|d| d.to_vec()).unwrap_or_default()),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_stars_start_an_enrolment_entry() {
        let step = Duration::from_millis(200);
        let mut k = KeypadEntry::new(6, Duration::from_secs(5), false);
        let out = typed(&mut k, "**483920#", Instant::now(), step);
        assert_eq!(out[..2], [KeyOutcome::Cleared, KeyOutcome::EnrollArmed]);
        assert_eq!(enrolled(out.last().unwrap()), Some(b"483920".to_vec()));
        // The mode ends with its entry: the next PIN is an ordinary one.
        let out = typed(&mut k, "483920#", Instant::now() + step * 10, step);
        assert_eq!(submitted(out.last().unwrap()), Some(b"483920".to_vec()));
        // A star between digits clears them; a star after digits then a
        // second star still arms (two stars in a row, whatever came before).
        let out = typed(&mut k, "12**483920#", Instant::now() + step * 20, step);
        assert_eq!(enrolled(out.last().unwrap()), Some(b"483920".to_vec()));
        // Star, digit, star is no enrolment.
        let out = typed(&mut k, "*1*483920#", Instant::now() + step * 40, step);
        assert_eq!(submitted(out.last().unwrap()), Some(b"483920".to_vec()));
        // With submit_at_length the enrolment PIN submits at its length too.
        let mut k = KeypadEntry::new(6, Duration::from_secs(5), true);
        let out = typed(&mut k, "**483920", Instant::now(), step);
        assert_eq!(enrolled(out.last().unwrap()), Some(b"483920".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_ends_an_enrolment_entry() {
        let mut k = KeypadEntry::new(6, Duration::from_secs(5), false);
        let t0 = Instant::now();
        typed(&mut k, "**48", t0, Duration::from_millis(100));
        let out = typed(&mut k, "483920#", t0 + Duration::from_secs(10), Duration::from_millis(100));
        assert_eq!(submitted(out.last().unwrap()), Some(b"483920".to_vec()));
        // A pause between the two stars: no enrolment either.
        k.key('*', t0 + Duration::from_secs(20));
        let out = typed(&mut k, "*483920#", t0 + Duration::from_secs(30), Duration::from_millis(100));
        assert_eq!(submitted(out.last().unwrap()), Some(b"483920".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn overflow_never_matches_and_never_grows() {
        let mut k = KeypadEntry::new(6, Duration::from_secs(5), false);
        let out = typed(&mut k, "12345678901234567890#", Instant::now(), Duration::from_millis(10));
        match out.last().unwrap() {
            KeyOutcome::Submit(e) => assert_eq!(e.digits(), None),
            o => panic!("{o:?}"),
        }
    }
}
