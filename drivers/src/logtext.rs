//! Text from outside, made safe for a log line.
//!
//! Anything that did not come from the daemon itself (an MQTT `op` or id,
//! an error text that echoes input, an exec program's standard error, a
//! device's report, a store key) may hold a newline, a carriage return or an
//! ANSI escape sequence; written as it is, it can forge a whole log line
//! (`access granted ... holder=admin`) or repaint a terminal. Every such
//! string goes through [`escape`] (or [`clip`]) before it reaches a tracing
//! field or message: control characters, and the quote and backslash
//! that would make an escaped text ambiguous, are written as Rust escapes
//! (`\n`, `\u{1b}`), as [`str::escape_debug`] does; printable text,
//! including non-ASCII letters, is kept.

use std::fmt;

/// `s` with every control character escaped, for a log line.
pub fn escape(s: &str) -> Escaped<'_> {
    Escaped(s)
}

/// [`escape`]d text, written when displayed (no allocation of its own).
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.escape_debug(), f)
    }
}

/// [`escape`]d and cut to at most `max` characters of its escaped form,
/// with how long the original was when cut: for texts of any length (a
/// tampered store key, a program's error output).
pub fn clip(s: &str, max: usize) -> String {
    let escaped = s.escape_debug().to_string();
    match escaped.char_indices().nth(max) {
        None => escaped,
        Some((at, _)) => format!("{}… ({} bytes)", &escaped[..at], s.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_ansi_escapes_cannot_start_a_line() {
        let forged = "state.get\n2026-12-03T01:00:00Z INFO access granted holder=admin\x1b[2K\r";
        let out = escape(forged).to_string();
        assert!(!out.chars().any(|c| c.is_control()), "{out}");
        assert!(out.contains(r"\n2026") && out.contains(r"\u{1b}[2K\r"), "{out}");
        assert_eq!(escape("courier-ups é").to_string(), "courier-ups é");
    }

    #[test]
    fn clip_cuts_on_a_character_and_says_how_long_it_was() {
        let long = "é".repeat(40_000);
        let out = clip(&long, 80);
        assert!(out.starts_with(&"é".repeat(80)) && out.ends_with("… (80000 bytes)"), "{out}");
        assert_eq!(clip("a\nb", 80), r"a\nb");
    }
}
