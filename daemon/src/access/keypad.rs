//! Keypad entry: keys in, a submitted PIN out. Sans-IO: the caller passes the
//! time of each key.
//!
//! Digits collect into the entry; `#` submits it; `*` clears it; a pause
//! longer than `timeout` between two keys drops what was typed before. With
//! `submit_at_length`, an entry of exactly the PIN length submits by itself.
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
}

#[derive(Debug, Clone)]
pub struct KeypadEntry {
    entry: Entry,
    last_key: Option<Instant>,
    pub pin_length: usize,
    pub timeout: Duration,
    pub submit_at_length: bool,
}

impl KeypadEntry {
    pub fn new(pin_length: usize, timeout: Duration, submit_at_length: bool) -> Self {
        KeypadEntry { entry: Entry::empty(), last_key: None, pin_length, timeout, submit_at_length }
    }

    /// Feeds one key pressed at `now`.
    pub fn key(&mut self, key: char, now: Instant) -> KeyOutcome {
        if let Some(last) = self.last_key {
            if now.saturating_duration_since(last) > self.timeout {
                self.entry = Entry::empty();
            }
        }
        self.last_key = Some(now);
        match key {
            '*' => {
                self.entry = Entry::empty();
                KeyOutcome::Cleared
            }
            '#' => {
                let e = std::mem::replace(&mut self.entry, Entry::empty());
                if e.is_empty() {
                    KeyOutcome::EmptySubmit
                } else {
                    KeyOutcome::Submit(e)
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
                    return KeyOutcome::Submit(std::mem::replace(e, Entry::empty()));
                }
                KeyOutcome::Pending
            }
            _ => KeyOutcome::Pending,
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
