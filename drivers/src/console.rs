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
    if let Some(uid) = line.strip_prefix("card:") {
        return match CardUid::parse_hex(uid) {
            Some(uid) => Line::Inputs(vec![Input::Card(uid)]),
            None => Line::Garbled,
        };
    }
    if let Some(text) = line.strip_prefix("qr:") {
        return if text.is_empty() { Line::Garbled } else { Line::Inputs(vec![Input::Qr(text.to_string())]) };
    }
    let keys: Vec<char> = line.chars().filter(|c| !c.is_whitespace()).collect();
    if keys.iter().all(|c| c.is_ascii_digit() || *c == '*' || *c == '#') {
        Line::Inputs(keys.into_iter().map(Input::Key).collect())
    } else {
        Line::Garbled
    }
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
            use std::io::BufRead;
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            let mut buf = String::new();
            loop {
                buf.clear();
                match lock.read_line(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = if buf.len() > MAX_LINE { String::from("\u{0}") } else { buf.clone() };
                        if tx.blocking_send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Mutex::new(spawned.ok().map(|_| rx))
    })
}

/// The console driver.
#[derive(Default)]
pub struct Console {
    rx: Option<mpsc::Receiver<String>>,
    garbled: u64,
}

impl Console {
    pub fn new() -> Self {
        Console::default()
    }
}

#[async_trait]
impl InputDriver for Console {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        if self.rx.is_none() {
            self.rx =
                stdin_lines().lock().map_err(|_| DriverError::new(ErrorKind::Other, "stdin reader poisoned"))?.take();
        }
        let Some(rx) = self.rx.as_mut() else {
            return Err(DriverError::new(ErrorKind::Other, "standard input is already read by another console device"));
        };
        sink.online();
        while let Some(line) = rx.recv().await {
            match parse_line(&line) {
                Line::Inputs(inputs) => inputs.into_iter().for_each(|i| sink.input(i)),
                Line::Blank => {}
                Line::Garbled => {
                    self.garbled += 1;
                    tracing::warn!(
                        garbled = self.garbled,
                        "console: line not understood; expected keys (0-9 * #), card:<hex uid> or qr:<text>"
                    );
                }
            }
        }
        tracing::info!("console: standard input closed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_line("   "), Line::Blank);
        assert_eq!(parse_line("hello"), Line::Garbled);
        assert_eq!(parse_line("card:xyz"), Line::Garbled);
        assert_eq!(parse_line("card:abc"), Line::Garbled);
        assert_eq!(parse_line("qr:"), Line::Garbled);
    }
}
