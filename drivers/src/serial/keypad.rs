//! `serial_keypad`: a keypad on a serial line that sends one ASCII character
//! per key (`0`-`9`, `*`, `#`), with or without line endings.
//!
//! Each key is reported the moment its byte arrives. CR and LF are ignored, so
//! keypads that end every key (or every entry) with a line ending work
//! unchanged; any other byte is counted as garbled and dropped.

use crate::contract::{Input, InputDriver, InputSink};
use crate::error::DriverError;
use crate::serial::{read_loop, Decoded, Decoder, PortSettings, SerialStats};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use tokio::time::Instant;

/// The `serial_keypad` kind's keys: only the common serial ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialKeypadConfig {
    pub serial: PortSettings,
}

impl SerialKeypadConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        SerialKeypadConfig { serial: PortSettings::parse(sec, errs) }
    }
}

/// One byte, one key.
#[derive(Debug, Default)]
pub struct KeypadDecoder;

impl Decoder for KeypadDecoder {
    fn reset(&mut self) {}

    fn push(&mut self, bytes: &[u8], _now: Instant, out: &mut dyn FnMut(Decoded)) {
        for &b in bytes {
            match b {
                b'0'..=b'9' | b'*' | b'#' => out(Decoded::Input(Input::Key(char::from(b)))),
                b'\r' | b'\n' => {}
                _ => out(Decoded::Garbled("not a key (expected 0-9, * or #)")),
            }
        }
    }
}

/// The `serial_keypad` driver.
pub struct SerialKeypad {
    id: String,
    config: SerialKeypadConfig,
    decoder: KeypadDecoder,
    stats: SerialStats,
}

impl SerialKeypad {
    /// A keypad driver; `id` names the device in logs.
    pub fn new(id: &str, config: SerialKeypadConfig) -> Self {
        SerialKeypad { id: id.to_string(), config, decoder: KeypadDecoder, stats: SerialStats::default() }
    }

    /// Counters of dropped bytes, live while the driver runs.
    pub fn stats(&self) -> SerialStats {
        self.stats.clone()
    }
}

#[async_trait]
impl InputDriver for SerialKeypad {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        read_loop("serial_keypad", &self.id, &self.config.serial, &mut self.decoder, &self.stats, sink).await
    }

    fn watch_path(&self) -> Option<&std::path::Path> {
        Some(std::path::Path::new(&self.config.serial.port))
    }
}

/// `kind = "serial_keypad"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "serial_keypad",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: true, levels: false },
    drives_outputs: false,
    output_through_input: false,
    access: crate::kinds::Access::ReadWrite,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(SerialKeypadConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for SerialKeypadConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        use crate::kinds::Claim;
        vec![Claim::Node(self.serial.port.clone())]
    }

    fn input_driver(&self, id: &str) -> Option<Box<dyn crate::contract::InputDriver>> {
        Some(Box::new(SerialKeypad::new(id, self.clone())))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keys_line_endings_and_garbage() {
        let mut got = Vec::new();
        KeypadDecoder.push(b"12\r\n*#x9\n", Instant::now(), &mut |d| got.push(d));
        let key = |c| Decoded::Input(Input::Key(c));
        assert_eq!(
            got,
            [key('1'), key('2'), key('*'), key('#'), Decoded::Garbled("not a key (expected 0-9, * or #)"), key('9')]
        );
    }
}
