//! `hid`: USB HID keyboard-mode QR scanners and USB keypads, read through
//! evdev and grabbed exclusively so they cannot type into a console.
//!
//! The kernel reports a keyboard as `(type, code, value)` events: `EV_KEY`
//! with value 1 (press), 2 (autorepeat) or 0 (release), `EV_MSC` scan codes,
//! and `EV_SYN` reports. [`Decoder`] turns those into [`Input`]s with the US
//! layout and is sans-IO: it is tested with recorded event sequences. The I/O
//! shell is thin: [`Hid::run`] opens and grabs the device and hands its event
//! stream to [`Hid::pump`], which any [`EventSource`] can feed, including
//! [`RawEvents`] over a byte stream of the kernel's `struct input_event`s (a
//! pipe, or a capture made with `cat /dev/input/by-id/...-event-kbd`).
//!
//! Modes:
//! - `qr`: characters collect until Enter and are reported as one
//!   [`Input::Qr`]; frames longer than `max_length` are dropped and counted.
//! - `keypad`: each of `0`-`9`, `*` and `#` is one [`Input::Key`]; Enter is `#`.
//!
//! Letters take their case from Shift only; Caps Lock, Num Lock and Scroll
//! Lock are ignored. Autorepeat is ignored: a held key is one key.

use crate::contract::{Input, InputDriver, InputSink};
use crate::error::{DriverError, ErrorKind};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use evdev::{EventType, KeyCode, SynchronizationCode};
use std::future::Future;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The default longest QR payload, in characters.
pub const DEFAULT_MAX_LENGTH: usize = 512;
/// The largest `max_length` accepted.
pub const MAX_MAX_LENGTH: u64 = 16384;

use libc::{EBUSY, EINVAL, ENODEV, ENOTTY};

/// What the device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HidMode {
    /// A keyboard-mode scanner: one payload per Enter.
    Qr,
    /// A keypad: one key per press.
    Keypad,
}

/// The `hid` kind's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HidConfig {
    /// The evdev node, best a stable `/dev/input/by-id/...-event-kbd` path.
    pub path: String,
    pub mode: HidMode,
    /// `qr` only: the longest payload, in characters.
    pub max_length: usize,
    /// Take the device exclusively (EVIOCGRAB) so it cannot type into a console.
    pub grab: bool,
}

impl HidConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let path = sec
            .string("path", "set path to the device's stable name, such as /dev/input/by-id/usb-...-event-kbd", errs)
            .unwrap_or_default();
        if !path.is_empty() && !path.starts_with('/') {
            errs.push(
                sec.key_path("path"),
                format!("`{path}` is not an absolute path"),
                Some("use the full path, such as /dev/input/by-id/usb-...-event-kbd".into()),
            );
        }
        let hint = || Some("use mode = \"qr\" for a scanner or mode = \"keypad\" for a keypad".to_string());
        let mode = match sec.opt_string("mode", errs).as_deref() {
            Some("qr") => HidMode::Qr,
            Some("keypad") => HidMode::Keypad,
            Some(m) => {
                errs.push(sec.key_path("mode"), format!("unknown mode `{m}`"), hint());
                HidMode::Qr
            }
            None => {
                if !sec.has("mode") {
                    errs.push(sec.key_path("mode"), "missing required key", hint());
                }
                HidMode::Qr
            }
        };
        let max_length = match sec.opt_u64("max_length", 1..=MAX_MAX_LENGTH, errs) {
            Some(_) if mode == HidMode::Keypad => {
                errs.push(
                    sec.key_path("max_length"),
                    "max_length applies to mode = \"qr\" only",
                    Some("remove max_length, or set mode = \"qr\"".into()),
                );
                DEFAULT_MAX_LENGTH
            }
            Some(n) => n as usize,
            None => DEFAULT_MAX_LENGTH,
        };
        let grab = sec.bool_or("grab", true, errs);
        HidConfig { path, mode, max_length, grab }
    }
}

/// One kernel input event without its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent {
    /// `EV_*`, such as 1 for `EV_KEY`.
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

/// What one event did, when it did something worth reporting or counting.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Input(Input),
    /// A key with no meaning in this mode (or pressed with Ctrl, Alt or Meta):
    /// dropped. In `qr` mode it also spoils the frame it falls in.
    UnknownKey,
    /// A `qr` frame longer than `max_length` ended: dropped.
    Overlong,
    /// A `qr` frame ended that lost a key (an unknown key or lost events): dropped.
    Damaged,
    /// The kernel's buffer overflowed (`SYN_DROPPED`): events were lost.
    EventsLost,
}

/// Ctrl, Alt and Meta, left and right, as bits.
fn modifier_bit(key: KeyCode) -> Option<u8> {
    Some(match key {
        KeyCode::KEY_LEFTCTRL => 1,
        KeyCode::KEY_RIGHTCTRL => 2,
        KeyCode::KEY_LEFTALT => 4,
        KeyCode::KEY_RIGHTALT => 8,
        KeyCode::KEY_LEFTMETA => 16,
        KeyCode::KEY_RIGHTMETA => 32,
        _ => return None,
    })
}

/// The US layout: key, character, character with Shift.
const US_LAYOUT: &[(KeyCode, char, char)] = &[
    (KeyCode::KEY_1, '1', '!'),
    (KeyCode::KEY_2, '2', '@'),
    (KeyCode::KEY_3, '3', '#'),
    (KeyCode::KEY_4, '4', '$'),
    (KeyCode::KEY_5, '5', '%'),
    (KeyCode::KEY_6, '6', '^'),
    (KeyCode::KEY_7, '7', '&'),
    (KeyCode::KEY_8, '8', '*'),
    (KeyCode::KEY_9, '9', '('),
    (KeyCode::KEY_0, '0', ')'),
    (KeyCode::KEY_MINUS, '-', '_'),
    (KeyCode::KEY_EQUAL, '=', '+'),
    (KeyCode::KEY_LEFTBRACE, '[', '{'),
    (KeyCode::KEY_RIGHTBRACE, ']', '}'),
    (KeyCode::KEY_BACKSLASH, '\\', '|'),
    (KeyCode::KEY_SEMICOLON, ';', ':'),
    (KeyCode::KEY_APOSTROPHE, '\'', '"'),
    (KeyCode::KEY_GRAVE, '`', '~'),
    (KeyCode::KEY_COMMA, ',', '<'),
    (KeyCode::KEY_DOT, '.', '>'),
    (KeyCode::KEY_SLASH, '/', '?'),
    (KeyCode::KEY_SPACE, ' ', ' '),
    (KeyCode::KEY_A, 'a', 'A'),
    (KeyCode::KEY_B, 'b', 'B'),
    (KeyCode::KEY_C, 'c', 'C'),
    (KeyCode::KEY_D, 'd', 'D'),
    (KeyCode::KEY_E, 'e', 'E'),
    (KeyCode::KEY_F, 'f', 'F'),
    (KeyCode::KEY_G, 'g', 'G'),
    (KeyCode::KEY_H, 'h', 'H'),
    (KeyCode::KEY_I, 'i', 'I'),
    (KeyCode::KEY_J, 'j', 'J'),
    (KeyCode::KEY_K, 'k', 'K'),
    (KeyCode::KEY_L, 'l', 'L'),
    (KeyCode::KEY_M, 'm', 'M'),
    (KeyCode::KEY_N, 'n', 'N'),
    (KeyCode::KEY_O, 'o', 'O'),
    (KeyCode::KEY_P, 'p', 'P'),
    (KeyCode::KEY_Q, 'q', 'Q'),
    (KeyCode::KEY_R, 'r', 'R'),
    (KeyCode::KEY_S, 's', 'S'),
    (KeyCode::KEY_T, 't', 'T'),
    (KeyCode::KEY_U, 'u', 'U'),
    (KeyCode::KEY_V, 'v', 'V'),
    (KeyCode::KEY_W, 'w', 'W'),
    (KeyCode::KEY_X, 'x', 'X'),
    (KeyCode::KEY_Y, 'y', 'Y'),
    (KeyCode::KEY_Z, 'z', 'Z'),
    // The numeric keypad, read as if Num Lock were on (scanners that use it
    // for digits assume so); Shift does not change it.
    (KeyCode::KEY_KP0, '0', '0'),
    (KeyCode::KEY_KP1, '1', '1'),
    (KeyCode::KEY_KP2, '2', '2'),
    (KeyCode::KEY_KP3, '3', '3'),
    (KeyCode::KEY_KP4, '4', '4'),
    (KeyCode::KEY_KP5, '5', '5'),
    (KeyCode::KEY_KP6, '6', '6'),
    (KeyCode::KEY_KP7, '7', '7'),
    (KeyCode::KEY_KP8, '8', '8'),
    (KeyCode::KEY_KP9, '9', '9'),
    (KeyCode::KEY_KPASTERISK, '*', '*'),
    (KeyCode::KEY_KPMINUS, '-', '-'),
    (KeyCode::KEY_KPPLUS, '+', '+'),
    (KeyCode::KEY_KPSLASH, '/', '/'),
    (KeyCode::KEY_KPDOT, '.', '.'),
];

/// The character a key types in the US layout.
pub fn us_char(key: KeyCode, shift: bool) -> Option<char> {
    US_LAYOUT.iter().find(|(k, _, _)| *k == key).map(|&(_, plain, shifted)| if shift { shifted } else { plain })
}

/// The keypad key a key stands for: digits (top row, numeric keypad, phone
/// keys), `*` (Shift+8, keypad `*`), `#` (Shift+3, Enter, keypad Enter).
pub fn keypad_char(key: KeyCode, shift: bool) -> Option<char> {
    match key {
        KeyCode::KEY_3 if shift => Some('#'),
        KeyCode::KEY_8 if shift => Some('*'),
        KeyCode::KEY_ENTER | KeyCode::KEY_KPENTER | KeyCode::KEY_NUMERIC_POUND => Some('#'),
        KeyCode::KEY_KPASTERISK | KeyCode::KEY_NUMERIC_STAR => Some('*'),
        k if (KeyCode::KEY_NUMERIC_0.0..=KeyCode::KEY_NUMERIC_9.0).contains(&k.0) => {
            char::from_digit(u32::from(k.0 - KeyCode::KEY_NUMERIC_0.0), 10)
        }
        k => match us_char(k, shift) {
            Some(c) if c.is_ascii_digit() => Some(c),
            _ => None,
        },
    }
}

/// Turns key events into inputs. Sans-IO: feed it events, act on the steps.
#[derive(Debug)]
pub struct Decoder {
    mode: HidMode,
    max_length: usize,
    left_shift: bool,
    right_shift: bool,
    /// Ctrl/Alt/Meta held, as [`modifier_bit`]s.
    modifiers: u8,
    /// After `SYN_DROPPED`, everything up to the next `SYN_REPORT` is stale.
    skipping: bool,
    frame: String,
    overlong: bool,
    damaged: bool,
}

impl Decoder {
    pub fn new(mode: HidMode, max_length: usize) -> Self {
        Decoder {
            mode,
            max_length,
            left_shift: false,
            right_shift: false,
            modifiers: 0,
            skipping: false,
            frame: String::new(),
            overlong: false,
            damaged: false,
        }
    }

    /// Takes one event; returns what it did, if anything.
    pub fn feed(&mut self, ev: RawEvent) -> Option<Step> {
        match EventType(ev.kind) {
            EventType::SYNCHRONIZATION => {
                if ev.code == SynchronizationCode::SYN_DROPPED.0 {
                    // Key releases may be among the lost events: forget the
                    // modifiers (a scanner releases Shift after every key) and
                    // spoil the frame, which may have lost characters.
                    self.skipping = true;
                    self.left_shift = false;
                    self.right_shift = false;
                    self.modifiers = 0;
                    self.damaged = self.mode == HidMode::Qr;
                    return Some(Step::EventsLost);
                }
                if ev.code == SynchronizationCode::SYN_REPORT.0 {
                    self.skipping = false;
                }
                None
            }
            EventType::KEY if !self.skipping => self.key(KeyCode(ev.code), ev.value),
            _ => None,
        }
    }

    fn key(&mut self, key: KeyCode, value: i32) -> Option<Step> {
        let pressed = match value {
            1 => true,
            0 => false,
            // 2 is autorepeat: a held key counts once.
            _ => return None,
        };
        match key {
            KeyCode::KEY_LEFTSHIFT => self.left_shift = pressed,
            KeyCode::KEY_RIGHTSHIFT => self.right_shift = pressed,
            KeyCode::KEY_CAPSLOCK | KeyCode::KEY_NUMLOCK | KeyCode::KEY_SCROLLLOCK => {}
            k => match modifier_bit(k) {
                Some(bit) if pressed => self.modifiers |= bit,
                Some(bit) => self.modifiers &= !bit,
                None if pressed => return self.press(k),
                None => {}
            },
        }
        None
    }

    fn press(&mut self, key: KeyCode) -> Option<Step> {
        let shift = self.left_shift || self.right_shift;
        let plain = self.modifiers == 0;
        match self.mode {
            HidMode::Keypad => match keypad_char(key, shift).filter(|_| plain) {
                Some(c) => Some(Step::Input(Input::Key(c))),
                None => Some(Step::UnknownKey),
            },
            HidMode::Qr => {
                if matches!(key, KeyCode::KEY_ENTER | KeyCode::KEY_KPENTER) {
                    return self.end_frame();
                }
                match us_char(key, shift).filter(|_| plain) {
                    Some(c) if self.frame.len() < self.max_length => {
                        self.frame.push(c);
                        None
                    }
                    Some(_) => {
                        self.overlong = true;
                        None
                    }
                    None => {
                        self.damaged = true;
                        Some(Step::UnknownKey)
                    }
                }
            }
        }
    }

    fn end_frame(&mut self) -> Option<Step> {
        let frame = std::mem::take(&mut self.frame);
        let (overlong, damaged) = (self.overlong, self.damaged);
        self.overlong = false;
        self.damaged = false;
        if overlong {
            Some(Step::Overlong)
        } else if damaged {
            Some(Step::Damaged)
        } else if frame.is_empty() {
            None
        } else {
            Some(Step::Input(Input::Qr(frame)))
        }
    }
}

/// Anything that yields kernel input events.
pub trait EventSource: Send {
    /// The next event. An error ends the read.
    fn next_raw(&mut self) -> impl Future<Output = io::Result<RawEvent>> + Send;
}

impl EventSource for evdev::raw_stream::EventStream {
    async fn next_raw(&mut self) -> io::Result<RawEvent> {
        let ev = self.next_event().await?;
        Ok(RawEvent { kind: ev.event_type().0, code: ev.code(), value: ev.value() })
    }
}

/// The size of the kernel's `struct input_event`: a `timeval` of two `long`s,
/// then `__u16 type`, `__u16 code`, `__s32 value` (24 bytes on 64-bit targets,
/// 16 on 32-bit ones).
pub const INPUT_EVENT_SIZE: usize = 2 * std::mem::size_of::<std::ffi::c_long>() + 8;

/// Kernel `struct input_event`s, in native byte order, read from any byte
/// stream: a pipe, a file, a capture of an evdev node. End of stream is an
/// `UnexpectedEof` error; a partial event at the end is discarded.
pub struct RawEvents<R> {
    reader: R,
    buf: [u8; 64 * INPUT_EVENT_SIZE],
    start: usize,
    end: usize,
}

impl<R: AsyncRead + Unpin + Send> RawEvents<R> {
    pub fn new(reader: R) -> Self {
        RawEvents { reader, buf: [0; 64 * INPUT_EVENT_SIZE], start: 0, end: 0 }
    }
}

impl<R: AsyncRead + Unpin + Send> EventSource for RawEvents<R> {
    // Cancel-safe: bytes read stay in `buf` until a whole event is there.
    async fn next_raw(&mut self) -> io::Result<RawEvent> {
        loop {
            if self.end - self.start >= INPUT_EVENT_SIZE {
                let at = self.start + INPUT_EVENT_SIZE - 8;
                let b = &self.buf[at..at + 8];
                self.start += INPUT_EVENT_SIZE;
                return Ok(RawEvent {
                    kind: u16::from_ne_bytes([b[0], b[1]]),
                    code: u16::from_ne_bytes([b[2], b[3]]),
                    value: i32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
                });
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = self.reader.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of the event stream"));
            }
            self.end += n;
        }
    }
}

/// Drops and failures so far, kept across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HidStats {
    pub unknown_keys: u64,
    pub overlong: u64,
    pub damaged: u64,
    pub events_lost: u64,
}

/// The `hid` driver.
pub struct Hid {
    id: String,
    cfg: HidConfig,
    stats: HidStats,
}

impl Hid {
    pub fn new(id: &str, cfg: HidConfig) -> Self {
        Hid { id: id.to_string(), cfg, stats: HidStats::default() }
    }

    pub fn stats(&self) -> HidStats {
        self.stats
    }

    fn open(&self) -> Result<evdev::raw_stream::EventStream, DriverError> {
        let path = self.cfg.path.as_str();
        let mut dev = evdev::raw_stream::RawDevice::open(path).map_err(|e| open_error(path, &e))?;
        if self.cfg.grab {
            dev.grab().map_err(|e| match e.raw_os_error() {
                Some(EBUSY) => DriverError::new(ErrorKind::Other, format!("{path}: another program has grabbed it"))
                    .with_hint("stop the program that holds it (another porterd, a kiosk, `evtest --grab`)"),
                _ => DriverError::io(path, &e),
            })?;
        }
        tracing::info!(
            device = %self.id,
            path,
            name = dev.name().unwrap_or("?"),
            grabbed = self.cfg.grab,
            "hid: device open"
        );
        dev.into_event_stream().map_err(|e| DriverError::io(path, &e))
    }

    /// Reads events from `source` until it fails, reporting what they mean;
    /// returns the failure. [`Hid::run`] calls it with the opened device.
    pub async fn pump<S: EventSource>(&mut self, source: &mut S, sink: &InputSink) -> DriverError {
        let mut decoder = Decoder::new(self.cfg.mode, self.cfg.max_length);
        loop {
            let ev = match source.next_raw().await {
                Ok(ev) => ev,
                Err(e) => return read_error(&self.cfg.path, &e),
            };
            let Some(step) = decoder.feed(ev) else { continue };
            let (id, s) = (&self.id, &mut self.stats);
            match step {
                Step::Input(input) => sink.input(input),
                Step::UnknownKey => {
                    s.unknown_keys += 1;
                    tracing::warn!(
                        device = %id,
                        unknown_keys = s.unknown_keys,
                        "hid: key with no meaning here (not in the US layout, or with Ctrl/Alt/Meta); dropped"
                    );
                }
                Step::Overlong => {
                    s.overlong += 1;
                    tracing::warn!(
                        device = %id,
                        overlong = s.overlong,
                        max_length = self.cfg.max_length,
                        "hid: scan longer than max_length; dropped"
                    );
                }
                Step::Damaged => {
                    s.damaged += 1;
                    tracing::warn!(device = %id, damaged = s.damaged, "hid: scan lost a key; dropped");
                }
                Step::EventsLost => {
                    s.events_lost += 1;
                    tracing::warn!(
                        device = %id,
                        events_lost = s.events_lost,
                        "hid: kernel event buffer overflowed; events lost"
                    );
                }
            }
        }
    }
}

fn open_error(path: &str, e: &io::Error) -> DriverError {
    match e.raw_os_error() {
        _ if e.kind() == io::ErrorKind::PermissionDenied => {
            DriverError::new(ErrorKind::PermissionDenied, format!("{path}: permission denied")).with_hint(
                "add the `porter` user to the `input` group, or give it the device with a udev rule (the template in Porter's udev/60-porter.rules)",
            )
        }
        Some(ENOTTY) | Some(EINVAL) => DriverError::new(ErrorKind::Other, format!("{path}: not an evdev input device"))
            .with_hint("use the event node, such as /dev/input/by-id/usb-...-event-kbd (see `ls -l /dev/input/by-id`)"),
        _ => DriverError::io(path, e),
    }
}

fn read_error(path: &str, e: &io::Error) -> DriverError {
    if e.raw_os_error() == Some(ENODEV) || e.kind() == io::ErrorKind::UnexpectedEof {
        DriverError::new(ErrorKind::Disconnected, format!("{path}: device gone"))
    } else {
        DriverError::io(path, e)
    }
}

#[async_trait]
impl InputDriver for Hid {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        let mut stream = self.open()?;
        sink.online();
        Err(self.pump(&mut stream, sink).await)
    }

    fn watch_path(&self) -> Option<&std::path::Path> {
        Some(std::path::Path::new(&self.cfg.path))
    }
}

/// `kind = "hid"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "hid",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: true, levels: false },
    drives_outputs: false,
    output_through_input: false,
    access: crate::kinds::Access::Read,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(HidConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for HidConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        use crate::kinds::Claim;
        vec![Claim::Node(self.path.clone())]
    }

    fn input_driver(&self, id: &str) -> Option<Box<dyn crate::contract::InputDriver>> {
        Some(Box::new(Hid::new(id, self.clone())))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: u16 = 1;

    fn press(d: &mut Decoder, key: KeyCode) -> Vec<Step> {
        [(KEY, key.0, 1), (0, 0, 0), (KEY, key.0, 0), (0, 0, 0)]
            .into_iter()
            .filter_map(|(kind, code, value)| d.feed(RawEvent { kind, code, value }))
            .collect()
    }

    fn key(d: &mut Decoder, key: KeyCode, value: i32) -> Option<Step> {
        d.feed(RawEvent { kind: KEY, code: key.0, value })
    }

    fn parse(v: serde_json::Value) -> (HidConfig, ConfigErrors) {
        let (c, errs) = Section::read("devices[0]", &v, HidConfig::parse);
        (c.expect("a table"), errs)
    }

    #[test]
    fn config_defaults_and_errors() {
        let (c, errs) = parse(json!({"path": "/dev/input/by-id/usb-scanner-event-kbd", "mode": "qr"}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(
            c,
            HidConfig {
                path: "/dev/input/by-id/usb-scanner-event-kbd".into(),
                mode: HidMode::Qr,
                max_length: 512,
                grab: true
            }
        );
        let (c, errs) = parse(json!({"path": "/dev/input/event3", "mode": "keypad", "grab": false}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!((c.mode, c.grab), (HidMode::Keypad, false));

        let (_, errs) = parse(json!({"path": "event3", "mode": "scanner", "max_length": 0, "grb": true}));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["devices[0].path", "devices[0].mode", "devices[0].max_length", "devices[0].grb"]);
        assert!(errs.0[1].hint.as_deref().unwrap().contains("mode = \"keypad\""));

        let (_, errs) = parse(json!({"path": "/dev/input/event3", "mode": "keypad", "max_length": 9}));
        assert_eq!(errs.len(), 1);
        assert!(errs.0[0].message.contains("qr"));
        let (_, errs) = parse(json!({}));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["devices[0].path", "devices[0].mode"]);
    }

    #[test]
    fn layout_table_has_each_key_once() {
        for (i, (k, _, _)) in US_LAYOUT.iter().enumerate() {
            assert!(US_LAYOUT[i + 1..].iter().all(|(o, _, _)| o != k), "{k:?} twice");
        }
        // Every printable ASCII character can be typed.
        for c in ' '..='~' {
            assert!(US_LAYOUT.iter().any(|&(_, p, s)| p == c || s == c), "{c:?} cannot be typed");
        }
    }

    #[test]
    fn qr_shift_applies_while_held_on_either_side() {
        let mut d = Decoder::new(HidMode::Qr, 64);
        assert_eq!(key(&mut d, KeyCode::KEY_LEFTSHIFT, 1), None);
        press(&mut d, KeyCode::KEY_A);
        press(&mut d, KeyCode::KEY_SLASH);
        key(&mut d, KeyCode::KEY_LEFTSHIFT, 0);
        press(&mut d, KeyCode::KEY_A);
        key(&mut d, KeyCode::KEY_RIGHTSHIFT, 1);
        press(&mut d, KeyCode::KEY_APOSTROPHE);
        key(&mut d, KeyCode::KEY_RIGHTSHIFT, 0);
        press(&mut d, KeyCode::KEY_KP5);
        // Caps Lock is ignored.
        press(&mut d, KeyCode::KEY_CAPSLOCK);
        press(&mut d, KeyCode::KEY_B);
        assert_eq!(press(&mut d, KeyCode::KEY_KPENTER), [Step::Input(Input::Qr("A?a\"5b".into()))]);
    }

    #[test]
    fn qr_ignores_autorepeat_and_an_empty_enter() {
        let mut d = Decoder::new(HidMode::Qr, 64);
        assert!(press(&mut d, KeyCode::KEY_ENTER).is_empty());
        key(&mut d, KeyCode::KEY_X, 1);
        key(&mut d, KeyCode::KEY_X, 2);
        key(&mut d, KeyCode::KEY_X, 2);
        key(&mut d, KeyCode::KEY_X, 0);
        assert_eq!(press(&mut d, KeyCode::KEY_ENTER), [Step::Input(Input::Qr("x".into()))]);
    }

    #[test]
    fn qr_overlong_frame_is_dropped_and_the_next_one_reads() {
        let mut d = Decoder::new(HidMode::Qr, 3);
        for k in [KeyCode::KEY_1, KeyCode::KEY_2, KeyCode::KEY_3] {
            press(&mut d, k);
        }
        assert_eq!(press(&mut d, KeyCode::KEY_ENTER), [Step::Input(Input::Qr("123".into()))]);
        for k in [KeyCode::KEY_1, KeyCode::KEY_2, KeyCode::KEY_3, KeyCode::KEY_4] {
            press(&mut d, k);
        }
        assert_eq!(press(&mut d, KeyCode::KEY_ENTER), [Step::Overlong]);
        press(&mut d, KeyCode::KEY_9);
        assert_eq!(press(&mut d, KeyCode::KEY_ENTER), [Step::Input(Input::Qr("9".into()))]);
    }

    #[test]
    fn qr_unknown_key_or_ctrl_spoils_the_frame() {
        let mut d = Decoder::new(HidMode::Qr, 64);
        press(&mut d, KeyCode::KEY_A);
        assert_eq!(press(&mut d, KeyCode::KEY_TAB), [Step::UnknownKey]);
        press(&mut d, KeyCode::KEY_B);
        assert_eq!(press(&mut d, KeyCode::KEY_ENTER), [Step::Damaged]);
        key(&mut d, KeyCode::KEY_RIGHTCTRL, 1);
        assert_eq!(press(&mut d, KeyCode::KEY_RIGHTBRACE), [Step::UnknownKey]);
        key(&mut d, KeyCode::KEY_RIGHTCTRL, 0);
        assert_eq!(press(&mut d, KeyCode::KEY_ENTER), [Step::Damaged]);
        press(&mut d, KeyCode::KEY_C);
        assert_eq!(press(&mut d, KeyCode::KEY_ENTER), [Step::Input(Input::Qr("c".into()))]);
    }

    #[test]
    fn syn_dropped_skips_to_the_next_report_and_spoils_the_frame() {
        let mut d = Decoder::new(HidMode::Qr, 64);
        key(&mut d, KeyCode::KEY_LEFTSHIFT, 1);
        press(&mut d, KeyCode::KEY_A);
        assert_eq!(d.feed(RawEvent { kind: 0, code: 3, value: 0 }), Some(Step::EventsLost));
        // Stale until SYN_REPORT.
        assert_eq!(key(&mut d, KeyCode::KEY_ENTER, 1), None);
        d.feed(RawEvent { kind: 0, code: 0, value: 0 });
        press(&mut d, KeyCode::KEY_B);
        assert_eq!(press(&mut d, KeyCode::KEY_ENTER), [Step::Damaged]);
        // Shift was forgotten with the lost events.
        press(&mut d, KeyCode::KEY_B);
        assert_eq!(press(&mut d, KeyCode::KEY_ENTER), [Step::Input(Input::Qr("b".into()))]);
    }

    #[test]
    fn keypad_keys() {
        let mut d = Decoder::new(HidMode::Keypad, 0);
        let mut got = Vec::new();
        for k in [KeyCode::KEY_1, KeyCode::KEY_KP0, KeyCode::KEY_KPASTERISK, KeyCode::KEY_ENTER, KeyCode::KEY_KPENTER] {
            got.extend(press(&mut d, k));
        }
        key(&mut d, KeyCode::KEY_LEFTSHIFT, 1);
        got.extend(press(&mut d, KeyCode::KEY_3));
        got.extend(press(&mut d, KeyCode::KEY_8));
        got.extend(press(&mut d, KeyCode::KEY_KP7));
        got.extend(press(&mut d, KeyCode::KEY_1)); // Shift+1 is `!`: unknown
        key(&mut d, KeyCode::KEY_LEFTSHIFT, 0);
        got.extend(press(&mut d, KeyCode::KEY_NUMERIC_9));
        got.extend(press(&mut d, KeyCode::KEY_NUMERIC_POUND));
        got.extend(press(&mut d, KeyCode::KEY_A));
        key(&mut d, KeyCode::KEY_LEFTALT, 1);
        got.extend(press(&mut d, KeyCode::KEY_5));
        let k = |c| Step::Input(Input::Key(c));
        assert_eq!(
            got,
            [
                k('1'),
                k('0'),
                k('*'),
                k('#'),
                k('#'),
                k('#'),
                k('*'),
                k('7'),
                Step::UnknownKey,
                k('9'),
                k('#'),
                Step::UnknownKey,
                Step::UnknownKey
            ]
        );
    }

    #[test]
    fn open_errors_name_their_fix() {
        let e = open_error("/dev/input/event9", &io::Error::from_raw_os_error(13));
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e.hint.unwrap().contains("`input` group"));
        let e = open_error("/dev/input/event9", &io::Error::from_raw_os_error(2));
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = read_error("/dev/input/event9", &io::Error::from_raw_os_error(ENODEV));
        assert_eq!(e.kind, ErrorKind::Disconnected);
    }
}
