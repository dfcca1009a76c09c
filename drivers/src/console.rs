//! `console`: a keypad, card reader and QR scanner on standard input, for the
//! demo and for tests that drive the real daemon.
//!
//! Each line is one of: keypad keys (`0`-`9`, `*`, `#`, in any number, such as
//! `483920#`), `card:<hex uid>`, or `qr:<text>`. Blank lines are ignored; a
//! line that is none of these is counted and dropped with a warning.

use crate::contract::{CardUid, Input, InputDriver, InputSink};
use crate::error::{DriverError, ErrorKind};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use std::sync::{Mutex, OnceLock};
use tokio::sync::mpsc;

/// The longest console line we accept; longer lines are dropped.
pub const MAX_LINE: usize = 4096;

/// The `console` kind has no keys of its own beyond the common ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig;

impl ConsoleConfig {
    pub fn parse(_sec: &mut Section<'_>, _errs: &mut ConfigErrors) -> Self {
        ConsoleConfig
    }
}

/// One parsed console line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Inputs(Vec<Input>),
    Blank,
    Garbled,
}

/// Parses one console line.
pub fn parse_line(line: &str) -> Line {
    let line = line.trim();
    if line.is_empty() {
        return Line::Blank;
    }
    if let Some(uid) = strip_prefix_ci(line, "card:") {
        return match CardUid::parse_hex(uid) {
            Some(uid) => Line::Inputs(vec![Input::Card(uid)]),
            None => Line::Garbled,
        };
    }
    if let Some(text) = strip_prefix_ci(line, "qr:") {
        return if text.is_empty() { Line::Garbled } else { Line::Inputs(vec![Input::Qr(text.to_string())]) };
    }
    let keys: Vec<char> = line.chars().filter(|c| !c.is_whitespace()).collect();
    if keys.iter().all(|c| c.is_ascii_digit() || *c == '*' || *c == '#') {
        Line::Inputs(keys.into_iter().map(Input::Key).collect())
    } else {
        Line::Garbled
    }
}

/// `line` without `prefix`, which may be in any case (`CARD:04A1`).
fn strip_prefix_ci<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &line[prefix.len()..])
}

/// Standard input is one per process and its blocking read cannot be
/// cancelled, so one named thread reads it for the whole process and feeds a
/// channel; a restarted console driver picks the same channel up again. The
/// thread is not joined: it may sit in `read` until the process exits.
fn stdin_lines() -> &'static Mutex<Option<mpsc::Receiver<String>>> {
    static LINES: OnceLock<Mutex<Option<mpsc::Receiver<String>>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<String>(64);
        let spawned = std::thread::Builder::new().name("console-stdin".into()).spawn(move || {
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            let mut buf = Vec::new();
            // A line too long or not UTF-8 goes on as "\0", which parses as garbled.
            while let Ok(Some(fits)) = next_line(&mut lock, &mut buf) {
                let line = String::from_utf8(std::mem::take(&mut buf))
                    .ok()
                    .filter(|_| fits)
                    .unwrap_or_else(|| String::from("\u{0}"));
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        Mutex::new(spawned.ok().map(|_| rx))
    })
}

/// Reads one line into `buf`, keeping at most [`MAX_LINE`] bytes of it:
/// `Some(true)` for a line that fits, `Some(false)` for a longer one (read to
/// its end a bounded piece at a time, never held whole), `None` at the end of
/// the input.
fn next_line(r: &mut impl std::io::BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    use std::io::{BufRead, Read};
    buf.clear();
    if r.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', buf)? == 0 {
        return Ok(None);
    }
    if buf.len() <= MAX_LINE || buf.ends_with(b"\n") {
        return Ok(Some(true));
    }
    loop {
        buf.clear();
        let n = r.by_ref().take(MAX_LINE as u64).read_until(b'\n', buf)?;
        if n == 0 || buf.ends_with(b"\n") {
            buf.clear();
            return Ok(Some(false));
        }
    }
}

/// The console driver.
#[derive(Default)]
pub struct Console {
    rx: Option<mpsc::Receiver<String>>,
    garbled: u64,
    /// When the last warning was logged: at most one a second, as for the
    /// serial devices (`serial::should_warn`); `garbled` keeps the total.
    last_warn: Option<tokio::time::Instant>,
    /// Warnings logged, for the tests.
    warned: u64,
}

impl Console {
    pub fn new() -> Self {
        Console::default()
    }
}

impl Console {
    /// Counts a garbled line, and warns unless a warning went out less than a
    /// second ago: a flood of garbage must not flood the log.
    fn garbled(&mut self) {
        self.garbled += 1;
        if crate::serial::should_warn(&mut self.last_warn, tokio::time::Instant::now()) {
            self.warned += 1;
            tracing::warn!(
                garbled = self.garbled,
                "console: line not understood; expected keys (0-9 * #), card:<hex uid> or qr:<text>"
            );
        }
    }
}

#[async_trait]
impl InputDriver for Console {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        if self.rx.is_none() {
            self.rx =
                stdin_lines().lock().map_err(|_| DriverError::new(ErrorKind::Other, "stdin reader poisoned"))?.take();
        }
        if self.rx.is_none() {
            return Err(DriverError::new(ErrorKind::Other, "standard input is already read by another console device"));
        }
        sink.online();
        while let Some(line) = self.rx.as_mut().expect("checked above").recv().await {
            match parse_line(&line) {
                Line::Inputs(inputs) => inputs.into_iter().for_each(|i| sink.input(i)),
                Line::Blank => {}
                Line::Garbled => self.garbled(),
            }
        }
        tracing::info!("console: standard input closed");
        Ok(())
    }
}

/// `kind = "console"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "console",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: true, levels: false },
    drives_outputs: false,
    output_through_input: false,
    access: crate::kinds::Access::None,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(ConsoleConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for ConsoleConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        use crate::kinds::Claim;
        vec![Claim::Stdin]
    }

    fn input_driver(&self, _id: &str) -> Option<Box<dyn crate::contract::InputDriver>> {
        Some(Box::new(Console::new()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: a flood of garbled lines logged one warning each.
    #[tokio::test(start_paused = true)]
    async fn a_flood_of_garbled_lines_warns_once_a_second() {
        let (tx, rx) = mpsc::channel(16);
        let mut c = Console { rx: Some(rx), ..Console::default() };
        let (sink, _reports) = crate::fake::Reports::channel(0, 16, std::time::Duration::from_secs(5));
        let run = tokio::spawn(async move {
            c.run(&sink).await.unwrap();
            c
        });
        for _ in 0..1000 {
            tx.send("garbage!".into()).await.unwrap();
        }
        tokio::time::advance(std::time::Duration::from_millis(1000)).await;
        for _ in 0..1000 {
            tx.send("more garbage".into()).await.unwrap();
        }
        drop(tx);
        let c = run.await.unwrap();
        assert_eq!((c.garbled, c.warned), (2000, 2));
    }

    #[test]
    fn parses_keys_cards_and_qr() {
        assert_eq!(
            parse_line("12 3#\n"),
            Line::Inputs(vec![Input::Key('1'), Input::Key('2'), Input::Key('3'), Input::Key('#')])
        );
        assert_eq!(
            parse_line("card:04:A1:b2:c3"),
            Line::Inputs(vec![Input::Card(CardUid::parse_hex("04a1b2c3").unwrap())])
        );
        assert_eq!(parse_line("qr:abc"), Line::Inputs(vec![Input::Qr("abc".into())]));
        // The prefixes in any case; a QR code's text as it is.
        assert_eq!(
            parse_line("CARD:04A1B2C3"),
            Line::Inputs(vec![Input::Card(CardUid::parse_hex("04a1b2c3").unwrap())])
        );
        assert_eq!(parse_line("QR:AbC"), Line::Inputs(vec![Input::Qr("AbC".into())]));
        assert_eq!(parse_line("   "), Line::Blank);
        assert_eq!(parse_line("hello"), Line::Garbled);
        assert_eq!(parse_line("card:xyz"), Line::Garbled);
        assert_eq!(parse_line("card:abc"), Line::Garbled);
        assert_eq!(parse_line("qr:"), Line::Garbled);
    }

    #[test]
    fn a_long_line_is_skipped_in_bounded_pieces_and_the_next_one_read() {
        let mut input = vec![b'1'; 3 * MAX_LINE + 7];
        input.extend_from_slice(b"\n123#\n");
        input.extend_from_slice(&[b'2'; MAX_LINE]);
        input.extend_from_slice(b"\nlast");
        // A reader that hands out small pieces, as a pipe does.
        let mut r = std::io::BufReader::with_capacity(512, input.as_slice());
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(false));
        assert!(buf.capacity() <= 2 * MAX_LINE + 2, "held {} bytes", buf.capacity());
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(true));
        assert_eq!(buf, b"123#\n");
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(true), "exactly MAX_LINE fits");
        assert_eq!(buf.len(), MAX_LINE + 1);
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), Some(true));
        assert_eq!(buf, b"last");
        assert_eq!(next_line(&mut r, &mut buf).unwrap(), None);
    }
}
