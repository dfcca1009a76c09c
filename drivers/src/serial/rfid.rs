//! `serial_rfid`: serial RFID readers.
//!
//! Two families are understood (`format`):
//! - `rdm6300`: the RDM6300/EM4100 125 kHz frame, 14 bytes: STX (0x02), ten
//!   ASCII hex digits (5 data bytes: a version byte and the 4-byte tag number),
//!   two ASCII hex digits of checksum (the XOR of the 5 data bytes), ETX
//!   (0x03). The UID reported is the 5 data bytes. A bad checksum, a short or
//!   long frame, or bytes outside a frame are counted and dropped, and the
//!   decoder resynchronises on the next STX.
//! - `hex_lines` / `decimal_lines`: one UID per line (CR, LF or CRLF). A hex
//!   line gives its bytes (`04A1B2C3`, separators `:`, `-` and spaces and a
//!   `0x` prefix allowed); a decimal line gives the number as big-endian bytes
//!   of minimal length (`12345678` is `BC 61 4E`; `0` is one zero byte).
//!
//! Readers repeat a frame while a card is held (an RDM6300 does so
//! continuously), so a read of the same UID less than `repeat_window_ms`
//! after the previous read of it is dropped. The window slides: a card held
//! on the reader is reported once, and again only after it was away for the
//! window.

use crate::contract::{CardUid, Input, InputDriver, InputSink, MAX_UID_LEN};
use crate::error::DriverError;
use crate::serial::{read_loop, Decoded, Decoder, PortSettings, SerialStats};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use std::time::Duration;
use tokio::time::Instant;

/// The repeat window when `repeat_window_ms` is not set.
pub const DEFAULT_REPEAT_WINDOW_MS: u64 = 1000;
/// The longest UID line accepted; longer lines are dropped as over-long.
pub const MAX_LINE: usize = 64;

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
/// Hex digits between STX and ETX in an RDM6300 frame.
const RDM_DIGITS: usize = 12;

/// Which frames the reader sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RfidFormat {
    Rdm6300,
    HexLines,
    DecimalLines,
}

/// The `serial_rfid` kind's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialRfidConfig {
    pub serial: PortSettings,
    /// `format`: "rdm6300" (default), "hex_lines" or "decimal_lines".
    pub format: RfidFormat,
    /// `repeat_window_ms`: repeats of one UID closer than this count once
    /// (default 1000; 0 reports every read).
    pub repeat_window_ms: u64,
}

impl SerialRfidConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let serial = PortSettings::parse(sec, errs);
        let format = match sec.string_or("format", "rdm6300", errs).as_str() {
            "rdm6300" => RfidFormat::Rdm6300,
            "hex_lines" => RfidFormat::HexLines,
            "decimal_lines" => RfidFormat::DecimalLines,
            other => {
                errs.push(
                    sec.key_path("format"),
                    format!("unknown format `{other}`"),
                    Some("use \"rdm6300\" (STX ... ETX frames), \"hex_lines\" or \"decimal_lines\"".into()),
                );
                RfidFormat::Rdm6300
            }
        };
        let repeat_window_ms = sec.u64_or("repeat_window_ms", DEFAULT_REPEAT_WINDOW_MS, 0..=60_000, errs);
        SerialRfidConfig { serial, format, repeat_window_ms }
    }
}

/// Turns reader bytes into card reads, in bounded memory.
#[derive(Debug)]
pub struct RfidDecoder {
    format: RfidFormat,
    window: Duration,
    /// The last UID read and when, for the repeat window.
    last: Option<(CardUid, Instant)>,
    /// The frame or line so far.
    buf: [u8; MAX_LINE],
    len: usize,
    /// rdm6300: inside STX ... ETX.
    in_frame: bool,
    /// rdm6300: in a run of stray bytes, already counted once.
    /// lines: the line outgrew `MAX_LINE` and is being dropped.
    skipping: bool,
}

impl RfidDecoder {
    pub fn new(format: RfidFormat, repeat_window: Duration) -> Self {
        RfidDecoder {
            format,
            window: repeat_window,
            last: None,
            buf: [0; MAX_LINE],
            len: 0,
            in_frame: false,
            skipping: false,
        }
    }

    fn card(&mut self, uid: CardUid, now: Instant, out: &mut dyn FnMut(Decoded)) {
        let repeat =
            matches!(self.last, Some((last, at)) if last == uid && now.saturating_duration_since(at) < self.window);
        self.last = Some((uid, now));
        out(if repeat { Decoded::Repeat } else { Decoded::Input(Input::Card(uid)) });
    }

    fn rdm6300(&mut self, b: u8, now: Instant, out: &mut dyn FnMut(Decoded)) {
        match b {
            STX => {
                if self.in_frame {
                    out(Decoded::Garbled("frame cut short"));
                }
                self.in_frame = true;
                self.skipping = false;
                self.len = 0;
            }
            ETX if self.in_frame => {
                self.in_frame = false;
                match (self.len == RDM_DIGITS).then(|| rdm6300_uid(&self.buf[..RDM_DIGITS])) {
                    Some(Ok(uid)) => self.card(uid, now, out),
                    Some(Err(reason)) => out(Decoded::Garbled(reason)),
                    None => out(Decoded::Garbled("frame of the wrong length")),
                }
            }
            _ if self.in_frame => {
                if self.len == RDM_DIGITS {
                    out(Decoded::Garbled("frame of the wrong length"));
                    self.in_frame = false;
                    self.skipping = true;
                } else {
                    self.buf[self.len] = b;
                    self.len += 1;
                }
            }
            // Some readers end frames with a line ending: harmless.
            b'\r' | b'\n' => {}
            _ => {
                if !self.skipping {
                    self.skipping = true;
                    out(Decoded::Garbled("bytes outside a frame"));
                }
            }
        }
    }

    fn line_byte(&mut self, b: u8, now: Instant, out: &mut dyn FnMut(Decoded)) {
        if b == b'\r' || b == b'\n' {
            let line = &self.buf[..self.len];
            let parsed = if std::mem::take(&mut self.skipping) {
                Some(Err(None))
            } else if line.iter().all(u8::is_ascii_whitespace) {
                None
            } else if self.format == RfidFormat::HexLines {
                Some(hex_line_uid(line).map_err(Some))
            } else {
                Some(decimal_line_uid(line).map_err(Some))
            };
            self.len = 0;
            match parsed {
                None => {}
                Some(Ok(uid)) => self.card(uid, now, out),
                Some(Err(Some(reason))) => out(Decoded::Garbled(reason)),
                Some(Err(None)) => out(Decoded::Overlong),
            }
        } else if !self.skipping {
            if self.len == MAX_LINE {
                self.skipping = true;
                self.len = 0;
            } else {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }
}

impl Decoder for RfidDecoder {
    fn reset(&mut self) {
        self.len = 0;
        self.in_frame = false;
        self.skipping = false;
    }

    fn push(&mut self, bytes: &[u8], now: Instant, out: &mut dyn FnMut(Decoded)) {
        for &b in bytes {
            match self.format {
                RfidFormat::Rdm6300 => self.rdm6300(b, now, out),
                RfidFormat::HexLines | RfidFormat::DecimalLines => self.line_byte(b, now, out),
            }
        }
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}

/// The 5 data bytes of an RDM6300 frame's 12 hex digits, checksum verified.
pub fn rdm6300_uid(digits: &[u8]) -> Result<CardUid, &'static str> {
    if digits.len() != RDM_DIGITS {
        return Err("frame of the wrong length");
    }
    let mut bytes = [0u8; RDM_DIGITS / 2];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let (Some(hi), Some(lo)) = (hex_digit(pair[0]), hex_digit(pair[1])) else {
            return Err("frame holds a non-hex digit");
        };
        bytes[i] = (hi << 4) | lo;
    }
    let (data, check) = bytes.split_at(5);
    if data.iter().fold(0, |x, b| x ^ b) != check[0] {
        return Err("bad checksum");
    }
    CardUid::from_bytes(data).ok_or("frame of the wrong length")
}

/// A hex UID line: `04A1B2C3`, `04:a1:b2:c3`, `0x04A1B2C3`.
pub fn hex_line_uid(line: &[u8]) -> Result<CardUid, &'static str> {
    let s = std::str::from_utf8(line).map_err(|_| "line is not hex")?.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    CardUid::parse_hex(s).ok_or("line is not a hex UID of 1 to 10 bytes")
}

/// A decimal UID line, as big-endian bytes of minimal length.
pub fn decimal_line_uid(line: &[u8]) -> Result<CardUid, &'static str> {
    let s = std::str::from_utf8(line).map_err(|_| "line is not decimal")?.trim();
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err("line is not a decimal number");
    }
    let digits = s.trim_start_matches('0');
    // 10 bytes hold at most 25 decimal digits; longer cannot be a UID (and
    // would overflow u128 past 39).
    if digits.len() > 25 {
        return Err("decimal UID longer than 10 bytes");
    }
    let n: u128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| "line is not a decimal number")? };
    let be = n.to_be_bytes();
    let first = be.iter().position(|&b| b != 0).unwrap_or(be.len() - 1);
    if be.len() - first > MAX_UID_LEN {
        return Err("decimal UID longer than 10 bytes");
    }
    CardUid::from_bytes(&be[first..]).ok_or("decimal UID longer than 10 bytes")
}

/// The `serial_rfid` driver.
pub struct SerialRfid {
    id: String,
    config: SerialRfidConfig,
    decoder: RfidDecoder,
    stats: SerialStats,
}

impl SerialRfid {
    /// A reader driver; `id` names the device in logs.
    pub fn new(id: &str, config: SerialRfidConfig) -> Self {
        let decoder = RfidDecoder::new(config.format, Duration::from_millis(config.repeat_window_ms));
        SerialRfid { id: id.to_string(), config, decoder, stats: SerialStats::default() }
    }

    /// Counters of dropped frames and repeats, live while the driver runs.
    pub fn stats(&self) -> SerialStats {
        self.stats.clone()
    }
}

#[async_trait]
impl InputDriver for SerialRfid {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        read_loop("serial_rfid", &self.id, &self.config.serial, &mut self.decoder, &self.stats, sink).await
    }

    fn watch_path(&self) -> Option<&std::path::Path> {
        Some(std::path::Path::new(&self.config.serial.port))
    }
}

/// `kind = "serial_rfid"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "serial_rfid",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: true, levels: false },
    drives_outputs: false,
    output_through_input: false,
    access: crate::kinds::Access::ReadWrite,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(SerialRfidConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for SerialRfidConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        use crate::kinds::Claim;
        vec![Claim::Node(self.serial.port.clone())]
    }

    fn input_driver(&self, id: &str) -> Option<Box<dyn crate::contract::InputDriver>> {
        Some(Box::new(SerialRfid::new(id, self.clone())))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card(hex: &str) -> Decoded {
        Decoded::Input(Input::Card(CardUid::parse_hex(hex).unwrap()))
    }

    /// A well-formed RDM6300 frame for 5 data bytes.
    fn frame(data: [u8; 5]) -> Vec<u8> {
        let check = data.iter().fold(0, |x, b| x ^ b);
        let mut f = vec![STX];
        for b in data.iter().chain([check].iter()) {
            f.extend(format!("{b:02X}").bytes());
        }
        f.push(ETX);
        f
    }

    fn decode(d: &mut RfidDecoder, bytes: &[u8], now: Instant) -> Vec<Decoded> {
        let mut out = Vec::new();
        for b in bytes {
            d.push(std::slice::from_ref(b), now, &mut |e| out.push(e));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn rdm6300_frames_checksums_and_resync() {
        let good = frame([0x1A, 0x00, 0x3B, 0x9C, 0x4E]);
        assert_eq!(good.len(), 14);
        let mut bad = good.clone();
        bad[11] = b'0'; // checksum digit changed
        let mut d = RfidDecoder::new(RfidFormat::Rdm6300, Duration::ZERO);
        let now = Instant::now();
        let mut input = b"\x00\xffnoise".to_vec();
        input.extend(&bad);
        input.extend(&good[..6]); // cut short by the next STX
        input.extend(&frame([1, 2, 3, 4, 5]));
        input.extend(b"\x02ZZ0000000000\x03\x0212\x03\r\n");
        input.extend(b"\x02AAAAAAAAAAAAAAAAAAAA\x03");
        input.extend(&good);
        assert_eq!(
            decode(&mut d, &input, now),
            [
                Decoded::Garbled("bytes outside a frame"),
                Decoded::Garbled("bad checksum"),
                Decoded::Garbled("frame cut short"),
                card("0102030405"),
                Decoded::Garbled("frame holds a non-hex digit"),
                Decoded::Garbled("frame of the wrong length"),
                Decoded::Garbled("frame of the wrong length"),
                card("1a003b9c4e"),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_repeat_window_slides() {
        let f = frame([0x1A, 0x00, 0x3B, 0x9C, 0x4E]);
        let other = frame([0, 0, 0, 0, 7]);
        let mut d = RfidDecoder::new(RfidFormat::Rdm6300, Duration::from_millis(1000));
        let t = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(decode(&mut d, &f, t), [card("1a003b9c4e")]);
        assert_eq!(decode(&mut d, &f, t + ms(900)), [Decoded::Repeat]);
        // Held: 900 ms after the last read is still within the window.
        assert_eq!(decode(&mut d, &f, t + ms(1800)), [Decoded::Repeat]);
        assert_eq!(decode(&mut d, &f, t + ms(2800)), [card("1a003b9c4e")]);
        // Another card ends the run; the first is new again.
        assert_eq!(decode(&mut d, &other, t + ms(2900)), [card("0000000007")]);
        assert_eq!(decode(&mut d, &f, t + ms(3000)), [card("1a003b9c4e")]);
    }

    #[tokio::test(start_paused = true)]
    async fn hex_and_decimal_lines() {
        let now = Instant::now();
        let mut d = RfidDecoder::new(RfidFormat::HexLines, Duration::ZERO);
        assert_eq!(
            decode(&mut d, b"04A1B2C3\r\n\r\n04:a1:b2:c4\n0x0A\rxyz\r123\r", now),
            [
                card("04a1b2c3"),
                card("04a1b2c4"),
                card("0a"),
                Decoded::Garbled("line is not a hex UID of 1 to 10 bytes"),
                Decoded::Garbled("line is not a hex UID of 1 to 10 bytes"),
            ]
        );
        let mut long = vec![b'A'; 1000];
        long.extend(b"\nBEEF\n");
        assert_eq!(decode(&mut d, &long, now), [Decoded::Overlong, card("beef")]);

        let mut d = RfidDecoder::new(RfidFormat::DecimalLines, Duration::ZERO);
        assert_eq!(
            decode(
                &mut d,
                b"0012345678\r\n0\n4294967295\n12a\n1208925819614629174706175\n1208925819614629174706176\n",
                now
            ),
            [
                card("bc614e"),
                card("00"),
                card("ffffffff"),
                Decoded::Garbled("line is not a decimal number"),
                card("ffffffffffffffffffff"),
                Decoded::Garbled("decimal UID longer than 10 bytes"),
            ]
        );
    }

    #[test]
    fn parses_keys() {
        let v = json!({"port": "/dev/r", "format": "decimal_lines", "repeat_window_ms": 0});
        let mut errs = ConfigErrors::default();
        let mut sec = Section::new("d", &v, &mut errs).unwrap();
        let c = SerialRfidConfig::parse(&mut sec, &mut errs);
        assert!(errs.is_empty(), "{errs}");
        assert_eq!((c.format, c.repeat_window_ms), (RfidFormat::DecimalLines, 0));

        let v = json!({"port": "/dev/r", "format": "wiegand", "repeat_window_ms": -1});
        let mut errs = ConfigErrors::default();
        let mut sec = Section::new("d", &v, &mut errs).unwrap();
        let c = SerialRfidConfig::parse(&mut sec, &mut errs);
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["d.format", "d.repeat_window_ms"]);
        assert_eq!((c.format, c.repeat_window_ms), (RfidFormat::Rdm6300, DEFAULT_REPEAT_WINDOW_MS));
    }
}
