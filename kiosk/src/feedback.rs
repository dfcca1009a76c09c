//! porterd's lines on stdin (docs/drivers.md "Feedback for devices"), parsed
//! leniently: unknown fields and unknown feedback kinds are ignored, lock lines
//! (`{"lock":...}`) are ignored, and anything else is garbled (counted by the
//! caller, never echoed). [`LineBuf`] cuts the byte stream into lines of at
//! most [`MAX_LINE`] bytes.

use serde_json::{Map, Value};

/// The longest line kept, in bytes (without its line break); porterd's own
/// lines are far shorter. A longer line is dropped whole and counted garbled.
pub const MAX_LINE: usize = 4096;

/// Ids (door, device) and reason words longer than this are garbled: porterd's
/// ids are short, and nothing unbounded is kept from outside.
pub const MAX_WORD: usize = 128;

/// One feedback signal for a door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub door: String,
    /// The input device whose input caused it; `None` when none did (or an
    /// older porterd that does not say).
    pub device: Option<String>,
    pub kind: Kind,
}

/// What happened, with the details the screens use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Grant {
        unlock_ms: u64,
    },
    Deny {
        reason: String,
    },
    /// `until_ms` is `None` for the daily cap (it ends with the local day).
    Lockout {
        until_ms: Option<i64>,
    },
    EnrollOpen {
        until_ms: Option<i64>,
    },
    CardEnrolled,
    CardRefused {
        reason: String,
    },
    PinNeeded {
        until_ms: Option<i64>,
    },
    Off,
}

/// What one line was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Feedback(Feedback),
    /// A lock line, a blank line, or a feedback kind this program does not know.
    Ignored,
    /// Not JSON, not an object, or a known kind with bad fields.
    Garbled,
}

/// Parses one line (without its line break).
pub fn parse(line: &[u8]) -> Line {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Line::Ignored;
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(line) else {
        return Line::Garbled;
    };
    match obj.get("feedback") {
        None if obj.contains_key("lock") => Line::Ignored,
        Some(Value::String(kind)) => match parse_feedback(kind, &obj) {
            Some(Some(f)) => Line::Feedback(f),
            Some(None) => Line::Ignored,
            None => Line::Garbled,
        },
        _ => Line::Garbled,
    }
}

/// `None`: garbled; `Some(None)`: a kind not known here.
fn parse_feedback(kind: &str, obj: &Map<String, Value>) -> Option<Option<Feedback>> {
    let door = word(obj.get("door")?)?;
    let device = match obj.get("device") {
        None | Some(Value::Null) => None,
        Some(v) => Some(word(v)?),
    };
    let kind = match kind {
        "grant" => Kind::Grant { unlock_ms: obj.get("unlock_ms")?.as_u64()? },
        "deny" => Kind::Deny { reason: word(obj.get("reason")?)? },
        "lockout" => Kind::Lockout { until_ms: until_ms(obj)? },
        "enroll_open" => Kind::EnrollOpen { until_ms: until_ms(obj)? },
        "card_enrolled" => Kind::CardEnrolled,
        "card_refused" => Kind::CardRefused {
            reason: match obj.get("reason") {
                None | Some(Value::Null) => String::new(),
                Some(v) => word(v)?,
            },
        },
        "pin_needed" => Kind::PinNeeded { until_ms: until_ms(obj)? },
        "off" => Kind::Off,
        _ => return Some(None),
    };
    Some(Some(Feedback { door, device, kind }))
}

fn word(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    (!s.is_empty() && s.len() <= MAX_WORD).then(|| s.to_owned())
}

/// `until_ms`: absent or null is `None` (the daily cap); otherwise an integer.
fn until_ms(obj: &Map<String, Value>) -> Option<Option<i64>> {
    match obj.get("until_ms") {
        None | Some(Value::Null) => Some(None),
        Some(v) => Some(Some(v.as_i64()?)),
    }
}

/// One line cut from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut<'a> {
    /// A line, without its `\n` or `\r\n`.
    Line(&'a [u8]),
    /// A line longer than [`MAX_LINE`], dropped whole.
    TooLong,
}

/// Cuts a byte stream into lines of at most [`MAX_LINE`] bytes. A longer line
/// is dropped whole (up to its line break) and reported as [`Cut::TooLong`].
#[derive(Debug, Default)]
pub struct LineBuf {
    buf: Vec<u8>,
    overlong: bool,
}

impl LineBuf {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`; `out` gets each complete line (without `\n` or `\r\n`).
    pub fn push(&mut self, bytes: &[u8], out: &mut dyn FnMut(Cut<'_>)) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let (body, ends) = match chunk.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (chunk, false),
            };
            if !self.overlong {
                if self.buf.len() + body.len() > MAX_LINE + usize::from(body.ends_with(b"\r")) {
                    self.overlong = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(body);
                }
            }
            if ends {
                if self.overlong {
                    out(Cut::TooLong);
                } else {
                    let line = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
                    out(Cut::Line(line));
                }
                self.buf.clear();
                self.overlong = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(line: &str) -> Feedback {
        match parse(line.as_bytes()) {
            Line::Feedback(f) => f,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_kind_of_the_docs() {
        let f = fb(r#"{"feedback":"grant","door":"main","unlock_ms":3000,"device":"kiosk"}"#);
        assert_eq!(
            f,
            Feedback { door: "main".into(), device: Some("kiosk".into()), kind: Kind::Grant { unlock_ms: 3000 } }
        );
        let f = fb(r#"{"feedback":"deny","door":"main","reason":"unknown","device":"kiosk"}"#);
        assert_eq!(f.kind, Kind::Deny { reason: "unknown".into() });
        let f =
            fb(r#"{"feedback":"lockout","door":"main","until":"2026-11-25T16:01:00.000Z","until_ms":1795622460000}"#);
        assert_eq!((f.kind, f.device), (Kind::Lockout { until_ms: Some(1795622460000) }, None));
        let f = fb(r#"{"feedback":"lockout","door":"main","until":null,"until_ms":null,"device":"kiosk"}"#);
        assert_eq!(f.kind, Kind::Lockout { until_ms: None });
        let f = fb(r#"{"feedback":"enroll_open","door":"main","until":"x","until_ms":5}"#);
        assert_eq!(f.kind, Kind::EnrollOpen { until_ms: Some(5) });
        assert_eq!(fb(r#"{"feedback":"card_enrolled","door":"main","device":"reader"}"#).kind, Kind::CardEnrolled);
        let f = fb(r#"{"feedback":"card_refused","door":"main","reason":"duplicate","device":"reader"}"#);
        assert_eq!(f.kind, Kind::CardRefused { reason: "duplicate".into() });
        let f = fb(r#"{"feedback":"pin_needed","door":"main","until":"x","until_ms":7,"device":"reader"}"#);
        assert_eq!(f.kind, Kind::PinNeeded { until_ms: Some(7) });
        assert_eq!(fb(r#"{"feedback":"off","door":"main"}"#).kind, Kind::Off);
    }

    #[test]
    fn lenient_where_the_contract_lets_fields_be_added() {
        let f = fb(r#"{"feedback":"grant","door":"main","unlock_ms":3000,"new_field":[1,2]}"#);
        assert_eq!(f.kind, Kind::Grant { unlock_ms: 3000 });
        assert_eq!(parse(br#"{"feedback":"chime","door":"main"}"#), Line::Ignored);
        assert_eq!(parse(br#"{"lock":"locked"}"#), Line::Ignored);
        assert_eq!(parse(b"  "), Line::Ignored);
    }

    #[test]
    fn garbled_lines() {
        for line in [
            &b"not json"[..],
            b"[1]",
            b"{}",
            br#"{"feedback":"grant","door":"main"}"#,
            br#"{"feedback":"grant","door":"main","unlock_ms":-1}"#,
            br#"{"feedback":"deny","door":"main"}"#,
            br#"{"feedback":"grant","unlock_ms":1}"#,
            br#"{"feedback":"off","door":""}"#,
            br#"{"feedback":"off","door":"main","device":7}"#,
            br#"{"feedback":"lockout","door":"main","until_ms":"soon"}"#,
            br#"{"feedback":7,"door":"main"}"#,
            b"\xff\xfe",
        ] {
            assert_eq!(parse(line), Line::Garbled, "{}", String::from_utf8_lossy(line));
        }
        let long = format!(r#"{{"feedback":"off","door":"{}"}}"#, "d".repeat(MAX_WORD + 1));
        assert_eq!(parse(long.as_bytes()), Line::Garbled);
    }

    fn lines(chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, ()>> {
        let mut b = LineBuf::new();
        let mut out = Vec::new();
        for c in chunks {
            b.push(c, &mut |l| {
                out.push(match l {
                    Cut::Line(l) => Ok(l.to_vec()),
                    Cut::TooLong => Err(()),
                })
            });
        }
        out
    }

    #[test]
    fn line_buf_splits_joins_and_bounds() {
        assert_eq!(lines(&[b"ab\ncd", b"e\r\n", b"\n"]), vec![Ok(b"ab".to_vec()), Ok(b"cde".to_vec()), Ok(vec![])]);
        let max = vec![b'x'; MAX_LINE];
        assert_eq!(lines(&[&max, b"\r\n"]), vec![Ok(max.clone())]);
        let over = vec![b'x'; MAX_LINE + 1];
        assert_eq!(lines(&[&over[..10], &over[10..], b"\nok\n"]), vec![Err(()), Ok(b"ok".to_vec())]);
        // An unfinished line is not a line.
        assert_eq!(lines(&[b"partial"]), vec![]);
    }
}
