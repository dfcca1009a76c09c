//! `serial_qr`: a QR or barcode scanner in serial (USB CDC) mode.
//!
//! The scanner sends each scan as one frame ended by a terminator (`cr`, `lf`
//! or `crlf`). The driver strips a configured prefix and suffix and reports
//! the payload as [`Input::Qr`] the moment the terminator arrives. Framing is
//! bounded: a frame that grows past its limit is discarded up to its
//! terminator, counted, and the next frame is read normally, so a noisy line
//! cannot grow memory. Empty frames are ignored; a frame that lacks the
//! configured prefix or suffix, or is not UTF-8, is counted as garbled.

use crate::contract::{Input, InputDriver, InputSink};
use crate::error::DriverError;
use crate::serial::{read_loop, Decoded, Decoder, PortSettings, SerialStats};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use tokio::time::Instant;

/// The longest payload when `max_length` is not set.
pub const DEFAULT_MAX_LENGTH: usize = 512;
/// The largest `max_length` accepted (a QR code holds at most 7089 digits).
pub const MAX_MAX_LENGTH: usize = 8192;
/// The longest `prefix` or `suffix`, in bytes.
pub const MAX_AFFIX: usize = 32;

/// What ends a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminator {
    /// Carriage return, `\r` (most scanners' factory default in serial mode).
    Cr,
    /// Line feed, `\n`.
    Lf,
    /// `\r\n`; a lone `\r` inside a frame is payload.
    CrLf,
}

/// The `serial_qr` kind's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialQrConfig {
    pub serial: PortSettings,
    /// `terminator`: "cr" (default), "lf" or "crlf".
    pub terminator: Terminator,
    /// `prefix`: stripped from every frame (default none).
    pub prefix: String,
    /// `suffix`: stripped from every frame (default none).
    pub suffix: String,
    /// `max_length`: the longest payload in bytes, after stripping (default 512).
    pub max_length: usize,
}

impl SerialQrConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let serial = PortSettings::parse(sec, errs);
        let terminator = match sec.string_or("terminator", "cr", errs).as_str() {
            "cr" => Terminator::Cr,
            "lf" => Terminator::Lf,
            "crlf" => Terminator::CrLf,
            other => {
                errs.push(
                    sec.key_path("terminator"),
                    format!("unknown terminator `{other}`"),
                    Some("use \"cr\", \"lf\" or \"crlf\", as set in the scanner's suffix settings".into()),
                );
                Terminator::Cr
            }
        };
        let affix = |key: &'static str, sec: &mut Section<'_>, errs: &mut ConfigErrors| {
            let s = sec.string_or(key, "", errs);
            if s.len() > MAX_AFFIX {
                errs.push(
                    sec.key_path(key),
                    format!("{} bytes is too long", s.len()),
                    Some(format!("use at most {MAX_AFFIX} bytes")),
                );
            }
            let clash = match terminator {
                Terminator::Cr => s.contains('\r'),
                Terminator::Lf => s.contains('\n'),
                Terminator::CrLf => s.contains("\r\n"),
            };
            if clash {
                errs.push(
                    sec.key_path(key),
                    "contains the terminator, so no frame could carry it",
                    Some("remove the line ending from it, or choose another `terminator`".into()),
                );
            }
            s
        };
        let prefix = affix("prefix", sec, errs);
        let suffix = affix("suffix", sec, errs);
        let max_length = sec.u64_or("max_length", DEFAULT_MAX_LENGTH as u64, 1..=MAX_MAX_LENGTH as u64, errs) as usize;
        SerialQrConfig { serial, terminator, prefix, suffix, max_length }
    }
}

/// Splits a byte stream into scan payloads, in bounded memory.
#[derive(Debug)]
pub struct QrFramer {
    terminator: Terminator,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    /// The frame so far, never longer than `cap`.
    buf: Vec<u8>,
    cap: usize,
    /// The current frame outgrew `cap`: drop bytes up to its terminator.
    discarding: bool,
    /// `crlf` only: the last byte was a `\r` not yet known to be payload.
    pending_cr: bool,
}

impl QrFramer {
    pub fn new(config: &SerialQrConfig) -> Self {
        let prefix = config.prefix.as_bytes().to_vec();
        let suffix = config.suffix.as_bytes().to_vec();
        let cap = config.max_length + prefix.len() + suffix.len();
        QrFramer {
            terminator: config.terminator,
            prefix,
            suffix,
            buf: Vec::with_capacity(cap),
            cap,
            discarding: false,
            pending_cr: false,
        }
    }

    fn byte(&mut self, b: u8) {
        if self.discarding {
            return;
        }
        if self.buf.len() == self.cap {
            self.buf.clear();
            self.discarding = true;
        } else {
            self.buf.push(b);
        }
    }

    fn end_frame(&mut self, out: &mut dyn FnMut(Decoded)) {
        if std::mem::take(&mut self.discarding) {
            self.buf.clear();
            out(Decoded::Overlong);
            return;
        }
        if self.buf.is_empty() {
            return;
        }
        let event = self.payload();
        self.buf.clear();
        if let Some(event) = event {
            out(event);
        }
    }

    /// The event for the complete frame in `buf`; `None` for an empty payload.
    fn payload(&self) -> Option<Decoded> {
        let Some(rest) = self.buf.strip_prefix(self.prefix.as_slice()) else {
            return Some(Decoded::Garbled("frame lacks the configured prefix"));
        };
        let Some(payload) = rest.strip_suffix(self.suffix.as_slice()) else {
            return Some(Decoded::Garbled("frame lacks the configured suffix"));
        };
        // `cap` bounds the frame, so with both affixes found the payload is
        // at most `max_length` long.
        if payload.is_empty() {
            return None;
        }
        match std::str::from_utf8(payload) {
            Ok(s) => Some(Decoded::Input(Input::Qr(s.to_string()))),
            Err(_) => Some(Decoded::Garbled("frame is not UTF-8")),
        }
    }
}

impl Decoder for QrFramer {
    fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
        self.pending_cr = false;
    }

    fn push(&mut self, bytes: &[u8], _now: Instant, out: &mut dyn FnMut(Decoded)) {
        for &b in bytes {
            match self.terminator {
                Terminator::Cr if b == b'\r' => self.end_frame(out),
                Terminator::Lf if b == b'\n' => self.end_frame(out),
                Terminator::Cr | Terminator::Lf => self.byte(b),
                Terminator::CrLf => {
                    if std::mem::take(&mut self.pending_cr) {
                        if b == b'\n' {
                            self.end_frame(out);
                            continue;
                        }
                        self.byte(b'\r');
                    }
                    if b == b'\r' {
                        self.pending_cr = true;
                    } else {
                        self.byte(b);
                    }
                }
            }
        }
    }
}

/// The `serial_qr` driver.
pub struct SerialQr {
    id: String,
    config: SerialQrConfig,
    framer: QrFramer,
    stats: SerialStats,
}

impl SerialQr {
    /// A scanner driver; `id` names the device in logs.
    pub fn new(id: &str, config: SerialQrConfig) -> Self {
        let framer = QrFramer::new(&config);
        SerialQr { id: id.to_string(), config, framer, stats: SerialStats::default() }
    }

    /// Counters of dropped frames, live while the driver runs.
    pub fn stats(&self) -> SerialStats {
        self.stats.clone()
    }
}

#[async_trait]
impl InputDriver for SerialQr {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        read_loop("serial_qr", &self.id, &self.config.serial, &mut self.framer, &self.stats, sink).await
    }

    fn watch_path(&self) -> Option<&std::path::Path> {
        Some(std::path::Path::new(&self.config.serial.port))
    }
}

/// `kind = "serial_qr"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "serial_qr",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: true, levels: false },
    drives_outputs: false,
    output_through_input: false,
    access: crate::kinds::Access::ReadWrite,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(SerialQrConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for SerialQrConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        use crate::kinds::Claim;
        vec![Claim::Node(self.serial.port.clone())]
    }

    fn input_driver(&self, id: &str) -> Option<Box<dyn crate::contract::InputDriver>> {
        Some(Box::new(SerialQr::new(id, self.clone())))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(terminator: Terminator, prefix: &str, suffix: &str, max_length: usize) -> SerialQrConfig {
        SerialQrConfig {
            serial: PortSettings::new("/dev/null"),
            terminator,
            prefix: prefix.into(),
            suffix: suffix.into(),
            max_length,
        }
    }

    /// Feeds `bytes` one at a time (the worst split) and all at once; both
    /// must give the same events.
    fn frames(c: &SerialQrConfig, bytes: &[u8]) -> Vec<Decoded> {
        let now = Instant::now();
        let mut whole = Vec::new();
        QrFramer::new(c).push(bytes, now, &mut |d| whole.push(d));
        let mut split = Vec::new();
        let mut f = QrFramer::new(c);
        for b in bytes {
            f.push(std::slice::from_ref(b), now, &mut |d| split.push(d));
        }
        assert_eq!(whole, split);
        whole
    }

    fn qr(s: &str) -> Decoded {
        Decoded::Input(Input::Qr(s.into()))
    }

    #[tokio::test(start_paused = true)]
    async fn each_terminator() {
        assert_eq!(frames(&config(Terminator::Cr, "", "", 64), b"ab\rcd\r\r"), [qr("ab"), qr("cd")]);
        assert_eq!(frames(&config(Terminator::Lf, "", "", 64), b"ab\ncd\n"), [qr("ab"), qr("cd")]);
        assert_eq!(
            frames(&config(Terminator::CrLf, "", "", 64), b"ab\r\nc\rd\r\n\r\n\r\r\n"),
            [qr("ab"), qr("c\rd"), qr("\r")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn strips_prefix_and_suffix_and_drops_frames_without_them() {
        let c = config(Terminator::Cr, "\u{2}]Q1", "\u{3}", 64);
        assert_eq!(
            frames(&c, b"\x02]Q1TOKEN-1\x03\rTOKEN-2\x03\r\x02]Q1\x03\r"),
            [qr("TOKEN-1"), Decoded::Garbled("frame lacks the configured prefix")]
        );
        assert_eq!(frames(&c, b"\x02]Q1x\r"), [Decoded::Garbled("frame lacks the configured suffix")]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overlong_frame_is_dropped_and_the_next_read() {
        let c = config(Terminator::CrLf, "P", "S", 4);
        let mut input = b"P1234S\r\nP12345S\r\n".to_vec();
        input.extend(vec![b'x'; 10_000]);
        input.extend(b"\r\nPabS\r\n12345\r\n");
        assert_eq!(
            frames(&c, &input),
            [
                qr("1234"),
                Decoded::Overlong,
                Decoded::Overlong,
                qr("ab"),
                Decoded::Garbled("frame lacks the configured prefix")
            ]
        );
        // The buffer never grew past its cap.
        let mut f = QrFramer::new(&c);
        f.push(&[b'y'; 100_000], Instant::now(), &mut |_| {});
        assert!(f.buf.capacity() < 64, "{}", f.buf.capacity());
    }

    #[tokio::test(start_paused = true)]
    async fn non_utf8_is_garbled() {
        assert_eq!(
            frames(&config(Terminator::Cr, "", "", 64), b"\xff\xfe\r"),
            [Decoded::Garbled("frame is not UTF-8")]
        );
    }

    #[test]
    fn parses_keys_and_rejects_a_prefix_holding_the_terminator() {
        let v = json!({"port": "/dev/q", "terminator": "lf", "prefix": "A\n", "suffix": "Z", "max_length": 99});
        let mut errs = ConfigErrors::default();
        let mut sec = Section::new("devices[1]", &v, &mut errs).unwrap();
        let c = SerialQrConfig::parse(&mut sec, &mut errs);
        sec.finish(&mut errs);
        assert_eq!(c.terminator, Terminator::Lf);
        assert_eq!((c.suffix.as_str(), c.max_length), ("Z", 99));
        assert_eq!(errs.len(), 1, "{errs}");
        assert_eq!(errs.0[0].path, "devices[1].prefix");

        let v = json!({"port": "/dev/q", "terminator": "tab", "max_length": 0});
        let mut errs = ConfigErrors::default();
        let mut sec = Section::new("d", &v, &mut errs).unwrap();
        let c = SerialQrConfig::parse(&mut sec, &mut errs);
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["d.terminator", "d.max_length"]);
        assert_eq!((c.terminator, c.max_length), (Terminator::Cr, DEFAULT_MAX_LENGTH));
    }
}
