//! `wiegand`: a Wiegand card reader or keypad on two GPIO lines.
//!
//! Wiegand sends each bit as a short low pulse (about 50 us) on one of two
//! lines that idle high: a pulse on D0 is a 0, on D1 a 1, about 1-2 ms apart.
//! A frame ends when the lines stay quiet for `frame_gap_ms` (25 ms by
//! default). Frames understood:
//! - 26 bits (HID H10301): even parity bit, 8-bit facility, 16-bit card,
//!   odd parity bit. The first bit makes bits 1-13 even, the last makes bits
//!   14-26 odd. Reported as a 3-byte card UID (facility, card high, card low).
//! - 34 bits: even parity over the first 16 data bits, odd over the last 16;
//!   reported as the 4 data bytes.
//! - 37 bits (HID H10304): 16-bit facility and 19-bit card. Bit 1 makes bits
//!   1-19 even, bit 37 makes bits 19-37 odd (bit 19 counts in both, as in
//!   HID's definition). The 35 data bits are reported as 5 bytes, big-endian,
//!   the top 5 bits zero.
//! - 35 bits (HID Corporate 1000): 12-bit company ID, 20-bit card, three
//!   parity bits (bit 1 odd over the whole frame, bits 2 and 35 over two of
//!   every three bits). Reported as the 32 data bits, 4 bytes.
//! - 48 bits (HID Corporate 1000 48): 22-bit company ID, 23-bit card, parity
//!   as for 35 bits. Reported as the 45 data bits, 6 bytes, top 3 bits zero.
//! - a site's own format (`raw_bits`, `raw_parity`): any length up to 64 with
//!   up to 8 parity bits, each making itself and the bits it lists even or
//!   odd; tried before the built-in formats.
//! - 4 bits: one key, 0-9, 10 = `*`, 11 = `#` (keypads in "4-bit burst" mode).
//! - 8 bits: one key in the low nibble and its complement in the high nibble.
//!
//! Every card is reported the same way: its data bits (every bit that is no
//! parity bit), in the order sent, as a big-endian number in as few bytes as
//! hold it; facility code (company ID) first, then card number.
//!
//! Anything else is counted and dropped: a parity error, another length, a
//! key code above 11, or noise (two pulses closer than any reader sends them,
//! or edges lost to a full queue). Nothing a frame carries is ever logged: a
//! card UID only as its length, keys not at all.
//!
//! The decoder ([`WiegandDecoder`]) is a pure state machine over (timestamp,
//! bit) and "the gap elapsed"; [`Wiegand`] feeds it from the GPIO backend.

use crate::contract::{CardUid, Input, InputDriver, InputSink};
use crate::error::{DriverError, ErrorKind};
use crate::gpio::{self, line_name, EdgeClock, GpioBackend, LineNo, Pull, Trigger, EDGE_QUEUE};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bits kept per frame; the longest built-in frame is 48. Longer bursts are
/// counted to their end and dropped as a bad length.
pub const MAX_BITS: usize = 64;

/// Two bit pulses closer than this are noise: Wiegand's shortest pulse
/// interval is 200 us, so these cannot both be bits.
pub const MIN_BIT_INTERVAL: Duration = Duration::from_micros(100);

/// The default quiet time that ends a frame.
pub const DEFAULT_FRAME_GAP_MS: u64 = 25;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiegandConfig {
    /// BCM line of D0 (the "0" line, usually green).
    pub d0: LineNo,
    /// BCM line of D1 (the "1" line, usually white).
    pub d1: LineNo,
    /// Quiet time that ends a frame.
    pub frame_gap: Duration,
    /// A site's own card format (`raw_bits`, `raw_parity`), tried before the
    /// built-in ones.
    pub raw: Option<CardFormat>,
}

impl WiegandConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let d0 = gpio::required_line(sec, "d0", errs);
        let d1 = gpio::required_line(sec, "d1", errs);
        if let (Some(a), Some(b)) = (d0, d1) {
            if a == b {
                errs.push(
                    sec.key_path("d1"),
                    format!("d0 and d1 are both GPIO {a}"),
                    Some("wire D0 and D1 to two different GPIO lines".into()),
                );
            }
        }
        let gap = sec.u64_or("frame_gap_ms", DEFAULT_FRAME_GAP_MS, 3..=1000, errs);
        let raw = parse_raw(sec, errs);
        WiegandConfig { d0: d0.unwrap_or(0), d1: d1.unwrap_or(0), frame_gap: Duration::from_millis(gap), raw }
    }
}

const RAW_PARITY_HINT: &str = "write each parity bit as \"<bit> <even|odd> <bits>\", bits counted from 1: \
     \"1 even 2-13\" means bit 1 makes itself and bits 2 to 13 even; list bits as 2-13,15,17-20";

/// `raw_bits` and `raw_parity`: a card format of the site's own.
fn parse_raw(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Option<CardFormat> {
    let bits = sec.opt_u64("raw_bits", 2..=MAX_BITS as u64, errs);
    let specs = sec.opt_strings("raw_parity", errs);
    let Some(bits) = bits else {
        if specs.is_some() && !sec.has("raw_bits") {
            errs.push(
                sec.key_path("raw_parity"),
                "raw_parity without raw_bits",
                Some("set raw_bits to the frame's length in bits, such as 40".into()),
            );
        }
        return None;
    };
    let bits = bits as usize;
    let mut rules = Vec::new();
    let mut ok = true;
    for (i, spec) in specs.unwrap_or_default().iter().enumerate() {
        match parse_parity(spec, bits) {
            Ok(r) => rules.push(r),
            Err(why) => {
                ok = false;
                errs.push(format!("{}[{i}]", sec.key_path("raw_parity")), why, Some(RAW_PARITY_HINT.into()));
            }
        }
    }
    if !ok {
        return None;
    }
    let format = CardFormat::new(bits, &rules);
    if format.is_none() {
        errs.push(
            sec.key_path("raw_parity"),
            format!("at most {MAX_PARITY_RULES} parity bits, each on a bit of its own, leaving at least one data bit"),
            Some(RAW_PARITY_HINT.into()),
        );
    }
    format
}

/// One `raw_parity` entry, `"<bit> <even|odd> <bits>"`, for a frame of `len` bits.
fn parse_parity(spec: &str, len: usize) -> Result<ParityRule, String> {
    let bit_no = |t: &str| match t.trim().parse::<usize>() {
        Ok(b) if (1..=len).contains(&b) => Ok(b),
        _ => Err(format!("`{t}` is no bit of a {len}-bit frame (1 to {len})")),
    };
    let mut words = spec.split_whitespace();
    let (Some(bit), Some(kind), Some(list), None) = (words.next(), words.next(), words.next(), words.next()) else {
        return Err(format!("`{spec}` is not `<bit> <even|odd> <bits>`"));
    };
    let bit = bit_no(bit)?;
    let odd = match kind {
        "even" => false,
        "odd" => true,
        other => return Err(format!("`{other}` is neither even nor odd")),
    };
    let mut over = 0u64;
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (bit_no(a)?, bit_no(b)?);
        if a > b {
            return Err(format!("`{part}` runs backwards"));
        }
        over |= span(a, b);
    }
    Ok(ParityRule { bit: (bit - 1) as u8, over, odd })
}

/// What a finished frame was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Card(CardUid),
    Key(char),
    /// Dropped; the reason is counted.
    Rejected(Reject),
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A parity bit (or an 8-bit key's complement nibble) did not match.
    Parity { bits: usize },
    /// A length that is no format we know.
    Length { bits: usize },
    /// A 4- or 8-bit key code above 11.
    KeyCode,
    /// Pulses too close together, or edges lost.
    Noise { bits: usize },
}

/// One parity bit of a card format: the bit at `bit` (0-based, in the order
/// sent) makes itself and the bits of `over` even or odd. `over` is a mask
/// whose bit `i` is the frame's bit `i` (0-based); it may include `bit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParityRule {
    pub bit: u8,
    pub over: u64,
    pub odd: bool,
}

impl ParityRule {
    fn holds(&self, word: u64) -> bool {
        let ones = (word & (self.over | 1 << self.bit)).count_ones();
        (ones % 2 == 1) == self.odd
    }
}

/// The most parity bits a format may have.
pub const MAX_PARITY_RULES: usize = 8;

/// A card format: its length and parity bits. Every bit that is not a parity
/// bit is data; the data bits, in the order sent, are the card's UID,
/// big-endian, in as few bytes as hold them (facility code first, then card
/// number, for every format that has them). Fixed-size: decoding allocates
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardFormat {
    pub bits: u8,
    rules: [ParityRule; MAX_PARITY_RULES],
    n_rules: u8,
}

impl CardFormat {
    /// A format of `bits` bits (1 to [`MAX_BITS`]) with these parity bits (at
    /// most [`MAX_PARITY_RULES`], each inside the frame, no two on one bit,
    /// leaving at least one data bit); `None` otherwise.
    pub fn new(bits: usize, rules: &[ParityRule]) -> Option<Self> {
        let in_frame = |r: &ParityRule| usize::from(r.bit) < bits && (bits == 64 || r.over >> bits == 0);
        let parity_bits = rules.iter().fold(0u64, |m, r| m | 1 << r.bit);
        let ok = (1..=MAX_BITS).contains(&bits)
            && rules.len() <= MAX_PARITY_RULES
            && rules.iter().all(in_frame)
            && parity_bits.count_ones() as usize == rules.len()
            && rules.len() < bits;
        if !ok {
            return None;
        }
        let mut r = [ParityRule { bit: 0, over: 0, odd: false }; MAX_PARITY_RULES];
        r[..rules.len()].copy_from_slice(rules);
        Some(CardFormat { bits: bits as u8, rules: r, n_rules: rules.len() as u8 })
    }

    pub fn rules(&self) -> &[ParityRule] {
        &self.rules[..usize::from(self.n_rules)]
    }

    /// The frame's data bits as a card, or why not.
    pub fn decode(&self, bits: &[bool]) -> Frame {
        let n = bits.len();
        debug_assert_eq!(n, usize::from(self.bits));
        // Frame bit i at mask bit i.
        let word = bits.iter().enumerate().fold(0u64, |w, (i, b)| w | u64::from(*b) << i);
        if !self.rules().iter().all(|r| r.holds(word)) {
            return Frame::Rejected(Reject::Parity { bits: n });
        }
        let parity_bits = self.rules().iter().fold(0u64, |m, r| m | 1 << r.bit);
        let (value, count) = bits
            .iter()
            .enumerate()
            .filter(|(i, _)| parity_bits >> i & 1 == 0)
            .fold((0u64, 0usize), |(v, c), (_, b)| (v << 1 | u64::from(*b), c + 1));
        let bytes = count.div_ceil(8);
        match CardUid::from_bytes(&value.to_be_bytes()[8 - bytes..]) {
            Some(uid) => Frame::Card(uid),
            None => Frame::Rejected(Reject::Length { bits: n }),
        }
    }
}

/// A mask of the frame's bits `from..=to`, counted from 1 as format tables do.
const fn span(from: usize, to: usize) -> u64 {
    let mut m = 0u64;
    let mut i = from;
    while i <= to {
        m |= 1 << (i - 1);
        i += 1;
    }
    m
}

/// A mask of the bits `from..=to` (counted from 1) whose position modulo 3
/// is not `skip`: the interleaved parities of HID's Corporate 1000 formats.
const fn two_of_three(from: usize, to: usize, skip: usize) -> u64 {
    let mut m = 0u64;
    let mut i = from;
    while i <= to {
        if i % 3 != skip {
            m |= 1 << (i - 1);
        }
        i += 1;
    }
    m
}

const fn rule(bit: usize, over: u64, odd: bool) -> ParityRule {
    ParityRule { bit: (bit - 1) as u8, over, odd }
}

const fn format<const N: usize>(bits: u8, r: [ParityRule; N]) -> CardFormat {
    let mut rules = [ParityRule { bit: 0, over: 0, odd: false }; MAX_PARITY_RULES];
    let mut i = 0;
    while i < N {
        rules[i] = r[i];
        i += 1;
    }
    CardFormat { bits, rules, n_rules: N as u8 }
}

/// The card formats every `wiegand` reader understands, by length. Bit
/// numbers in the comments count from 1, as HID's format tables do.
pub const BUILT_IN: [CardFormat; 5] = [
    // H10301: bit 1 makes bits 1-13 even, bit 26 makes bits 14-26 odd.
    format(26, [rule(1, span(2, 13), false), rule(26, span(14, 25), true)]),
    // 34-bit (H10306): bit 1 makes bits 1-17 even, bit 34 bits 18-34 odd.
    format(34, [rule(1, span(2, 17), false), rule(34, span(18, 33), true)]),
    // HID Corporate 1000 35-bit: 12-bit company ID (bits 3-14), 20-bit card
    // (bits 15-34). Bit 2 makes itself and bits 3-34 whose number modulo 3
    // is 0 or 1 even; bit 35 makes itself and bits 2-34 whose number modulo
    // 3 is 0 or 2 odd; bit 1 makes the whole frame odd.
    format(
        35,
        [rule(2, two_of_three(3, 34, 2), false), rule(35, two_of_three(2, 34, 1), true), rule(1, span(1, 35), true)],
    ),
    // H10304: bit 1 makes bits 1-19 even, bit 37 bits 19-37 odd (bit 19
    // counts in both).
    format(37, [rule(1, span(2, 19), false), rule(37, span(19, 36), true)]),
    // HID Corporate 1000 48-bit: 22-bit company ID (bits 3-24), 23-bit card
    // (bits 25-47). Bit 2 makes itself and bits 4-47 whose number modulo 3
    // is 1 or 2 even; bit 48 makes itself and bits 3-47 whose number modulo
    // 3 is 0 or 1 odd; bit 1 makes the whole frame odd.
    format(
        48,
        [rule(2, two_of_three(4, 47, 0), false), rule(48, two_of_three(3, 47, 2), true), rule(1, span(1, 48), true)],
    ),
];

/// Decodes a whole frame of bits, in the order sent, with the built-in
/// formats only.
pub fn decode(bits: &[bool]) -> Frame {
    decode_with(bits, None)
}

/// Decodes a whole frame of bits, in the order sent. A `raw` format is tried
/// first: it wins over a built-in format of the same length.
pub fn decode_with(bits: &[bool], raw: Option<&CardFormat>) -> Frame {
    let n = bits.len();
    let value = |r: std::ops::RangeInclusive<usize>| bits[r].iter().fold(0u64, |v, b| (v << 1) | u64::from(*b));
    if let Some(f) = raw.into_iter().chain(BUILT_IN.iter()).find(|f| usize::from(f.bits) == n) {
        return f.decode(bits);
    }
    match n {
        4 => key(value(0..=3) as u8),
        8 => {
            let v = value(0..=7) as u8;
            if v >> 4 != !v & 0x0f {
                Frame::Rejected(Reject::Parity { bits: n })
            } else {
                key(v & 0x0f)
            }
        }
        _ => Frame::Rejected(Reject::Length { bits: n }),
    }
}

fn key(code: u8) -> Frame {
    match code {
        0..=9 => Frame::Key(char::from(b'0' + code)),
        10 => Frame::Key('*'),
        11 => Frame::Key('#'),
        _ => Frame::Rejected(Reject::KeyCode),
    }
}

/// The sans-IO frame assembler: bits in with their timestamps, frames out.
///
/// D0 and D1 are reported by separate interrupt threads, so two bits may
/// arrive out of order: bits are kept sorted by timestamp, not by arrival.
#[derive(Debug, Clone)]
pub struct WiegandDecoder {
    gap: Duration,
    bits: [(Duration, bool); MAX_BITS],
    kept: usize,
    /// Every bit of the frame, including those past [`MAX_BITS`].
    count: usize,
    last: Option<Duration>,
    noisy: bool,
    raw: Option<CardFormat>,
}

impl WiegandDecoder {
    pub fn new(gap: Duration) -> Self {
        WiegandDecoder {
            gap,
            bits: [(Duration::ZERO, false); MAX_BITS],
            kept: 0,
            count: 0,
            last: None,
            noisy: false,
            raw: None,
        }
    }

    /// This decoder, also understanding the site's own format `raw`.
    pub fn with_raw(mut self, raw: Option<CardFormat>) -> Self {
        self.raw = raw;
        self
    }

    /// A bit pulse at `at`. When the gap before it ended the previous frame,
    /// that frame is returned.
    pub fn bit(&mut self, at: Duration, one: bool) -> Option<Frame> {
        let done = match self.last {
            Some(last) if at >= last + self.gap => self.finish(),
            _ => None,
        };
        // Noise: a pulse too close to a neighbour in time (either line).
        let pos = self.bits[..self.kept].partition_point(|(t, _)| *t <= at);
        let near = |i: usize| {
            let t = self.bits[i].0;
            t.abs_diff(at) < MIN_BIT_INTERVAL
        };
        if (pos > 0 && near(pos - 1)) || (pos < self.kept && near(pos)) {
            self.noisy = true;
        }
        if self.kept < MAX_BITS {
            self.bits.copy_within(pos..self.kept, pos + 1);
            self.bits[pos] = (at, one);
            self.kept += 1;
        }
        self.count += 1;
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
        done
    }

    /// Marks the frame in progress (or the next, if none is) as damaged:
    /// edges were lost.
    pub fn poison(&mut self) {
        self.noisy = true;
    }

    /// When the frame in progress ends if no bit comes first.
    pub fn deadline(&self) -> Option<Duration> {
        self.last.map(|l| l + self.gap)
    }

    /// The frame in progress, if the lines have been quiet for the gap by `now`.
    pub fn gap_elapsed(&mut self, now: Duration) -> Option<Frame> {
        match self.deadline() {
            Some(d) if now >= d => self.finish(),
            _ => None,
        }
    }

    fn finish(&mut self) -> Option<Frame> {
        let (count, noisy) = (self.count, self.noisy);
        let mut bits = [false; MAX_BITS];
        for (b, (_, one)) in bits.iter_mut().zip(&self.bits[..self.kept]) {
            *b = *one;
        }
        let kept = self.kept;
        self.kept = 0;
        self.count = 0;
        self.noisy = false;
        self.last = None;
        if count == 0 {
            return None;
        }
        if noisy {
            return Some(Frame::Rejected(Reject::Noise { bits: count }));
        }
        if count > kept {
            return Some(Frame::Rejected(Reject::Length { bits: count }));
        }
        Some(decode_with(&bits[..kept], self.raw.as_ref()))
    }
}

/// What a Wiegand driver has seen, readable while it runs.
#[derive(Debug, Default)]
pub struct WiegandCounters {
    pub cards: AtomicU64,
    pub keys: AtomicU64,
    pub bad_parity: AtomicU64,
    pub bad_length: AtomicU64,
    pub bad_key: AtomicU64,
    pub noise: AtomicU64,
}

impl WiegandCounters {
    /// Every frame dropped, for whatever reason.
    pub fn dropped(&self) -> u64 {
        [&self.bad_parity, &self.bad_length, &self.bad_key, &self.noise].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The Wiegand driver.
pub struct Wiegand {
    cfg: WiegandConfig,
    id: String,
    backend: Arc<dyn GpioBackend>,
    counters: Arc<WiegandCounters>,
}

impl Wiegand {
    /// A driver on the Raspberry Pi's GPIO.
    pub fn new(cfg: WiegandConfig, id: &str) -> Self {
        Self::with_backend(cfg, id, gpio::real())
    }

    pub fn with_backend(cfg: WiegandConfig, id: &str, backend: Arc<dyn GpioBackend>) -> Self {
        Wiegand { cfg, id: id.to_string(), backend, counters: Arc::default() }
    }

    pub fn counters(&self) -> Arc<WiegandCounters> {
        self.counters.clone()
    }

    fn report(&self, sink: &InputSink, frame: Frame) {
        let c = &self.counters;
        let bump = |a: &AtomicU64| a.fetch_add(1, Ordering::Relaxed) + 1;
        match frame {
            Frame::Card(uid) => {
                bump(&c.cards);
                tracing::debug!(device = %self.id, uid_len = uid.as_bytes().len(), "wiegand: card");
                sink.input(Input::Card(uid));
            }
            Frame::Key(k) => {
                bump(&c.keys);
                sink.input(Input::Key(k));
            }
            Frame::Rejected(r) => {
                let (reason, bits, n) = match r {
                    Reject::Parity { bits } => ("bad parity", bits, bump(&c.bad_parity)),
                    Reject::Length { bits } => ("unknown frame length", bits, bump(&c.bad_length)),
                    Reject::KeyCode => ("key code out of range", 4, bump(&c.bad_key)),
                    Reject::Noise { bits } => ("noise on the lines", bits, bump(&c.noise)),
                };
                tracing::warn!(
                    device = %self.id,
                    bits,
                    count = n,
                    dropped = c.dropped(),
                    "wiegand: frame dropped: {reason}; check the wiring (D0/D1 swapped, shared ground, \
                     a 5 V to 3.3 V level shifter) and the reader's output format"
                );
            }
        }
    }
}

#[async_trait]
impl InputDriver for Wiegand {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        let (d0, d1) = (self.cfg.d0, self.cfg.d1);
        let (tx, mut rx) = gpio::edge_channel(EDGE_QUEUE);
        // Both lines are owned by this future: dropping it (shutdown, or a
        // restart) closes them and stops their interrupt threads.
        let _d0 = self.backend.open_input(d0, Pull::Up, Trigger::Falling, tx.clone())?;
        let _d1 = self.backend.open_input(d1, Pull::Up, Trigger::Falling, tx)?;
        sink.online();
        tracing::info!(device = %self.id, d0, d1, "wiegand: listening");
        let mut dec = WiegandDecoder::new(self.cfg.frame_gap).with_raw(self.cfg.raw);
        let mut clock = EdgeClock::default();
        let mut lost = rx.dropped();
        loop {
            let edge = match dec.deadline() {
                Some(deadline) => tokio::select! {
                    e = rx.recv() => e,
                    _ = tokio::time::sleep_until(clock.instant_of(deadline)) => {
                        if let Some(f) = dec.gap_elapsed(deadline) {
                            self.report(sink, f);
                        }
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(edge) = edge else {
                return Err(DriverError::new(
                    ErrorKind::Disconnected,
                    format!("{}/{}: the GPIO lines were closed", line_name(d0), line_name(d1)),
                ));
            };
            clock.saw(edge.at);
            if rx.dropped() != lost {
                lost = rx.dropped();
                dec.poison();
            }
            if let Some(f) = dec.bit(edge.at, edge.line == d1) {
                self.report(sink, f);
            }
        }
    }
}

/// `kind = "wiegand"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "wiegand",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: true, levels: false },
    drives_outputs: false,
    output_through_input: false,
    access: crate::kinds::Access::None,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(WiegandConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for WiegandConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        use crate::kinds::Claim;
        vec![Claim::GpioLine(self.d0), Claim::GpioLine(self.d1)]
    }

    fn input_driver(&self, id: &str) -> Option<Box<dyn crate::contract::InputDriver>> {
        Some(Box::new(Wiegand::new(self.clone(), id)))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(s: &str) -> Vec<bool> {
        s.chars().filter(|c| !c.is_whitespace()).map(|c| c == '1').collect()
    }

    fn uid(b: &[u8]) -> Frame {
        Frame::Card(CardUid::from_bytes(b).unwrap())
    }

    /// H10301 facility 1, card 1: the well-known raw value 0x2020002.
    #[test]
    fn decodes_a_known_26_bit_frame() {
        let f = bits("1 00000001 0000000000000001 0");
        assert_eq!(f.iter().fold(0u32, |v, b| (v << 1) | u32::from(*b)), 0x2020002);
        assert_eq!(decode(&f), uid(&[0x01, 0x00, 0x01]));
        // Facility 123 (0x7b), card 4567 (0x11d7): seven ones in bits 2-13
        // (even parity 1), five in bits 14-25 (odd parity 0).
        assert_eq!(decode(&bits("1 01111011 0001000111010111 0")), uid(&[0x7b, 0x11, 0xd7]));
    }

    #[test]
    fn decodes_known_34_and_37_bit_frames() {
        // 34: data 0x0001_0001: one 1 in the first 16 (even parity 1), one in
        // the last 16 (odd parity 0).
        assert_eq!(decode(&bits("1 0000000000000001 0000000000000001 0")), uid(&[0, 1, 0, 1]));
        // 37 (H10304): facility 1, card 1. Bits 2-19 hold one 1 (the
        // facility's), so the even parity is 1; bits 19-36 hold one (the
        // card's), so the odd parity is 0. Data 0b1 << 19 | 1 = 0x80001.
        assert_eq!(decode(&bits("1 0000000000000001 0000000000000000001 0")), uid(&[0, 0, 0x08, 0x00, 0x01]));
        // Bit 19 (the card's second bit) counts in both parities: set alone,
        // it makes bits 1-19 even with parity 1 and bits 19-37 odd with parity 0.
        assert_eq!(decode(&bits("1 0000000000000000 0100000000000000000 0")), uid(&[0, 0, 0x02, 0, 0]));
        // Bit 18 (the card's first) counts in the even parity only.
        assert_eq!(decode(&bits("1 0000000000000000 1000000000000000000 1")), uid(&[0, 0, 0x04, 0, 0]));
        assert_eq!(
            decode(&bits("0 0000000000000000 1000000000000000000 1")),
            Frame::Rejected(Reject::Parity { bits: 37 })
        );
    }

    /// The low `len` bits of `v`, most significant first, as sent.
    fn frame_of(v: u64, len: usize) -> Vec<bool> {
        (0..len).rev().map(|i| v >> i & 1 == 1).collect()
    }

    /// A reference encoder for Corporate 1000 35-bit, written as proxmark3's
    /// `Pack_C1k35s` (client/src/wiegand_formats.c) computes it, with its
    /// 32-bit masks, independently of the position lists in [`BUILT_IN`].
    fn c1k35_reference(company: u64, card: u64) -> u64 {
        let parity = |x: u64| x.count_ones() as u64 & 1;
        let mut bot = (card & 0xF_FFFF) << 1 | (company & 0x7FF) << 21;
        let mut mid = (company & 0x800) >> 11;
        mid |= parity(mid & 1 ^ bot & 0xB6DB_6DB6) << 1;
        bot |= 1 - parity(mid & 3 ^ bot & 0x6DB6_DB6C);
        mid |= (1 - parity(mid & 3 ^ bot & 0xFFFF_FFFF)) << 2;
        mid << 32 | bot
    }

    /// The same for Corporate 1000 48-bit (proxmark3's `Pack_C1k48s`).
    fn c1k48_reference(company: u64, card: u64) -> u64 {
        let parity = |x: u64| x.count_ones() as u64 & 1;
        let mut bot = (card & 0x7F_FFFF) << 1 | (company & 0xFF) << 24;
        let mut mid = (company & 0x3F_FF00) >> 8;
        mid |= parity(mid & 0x1B6D ^ bot & 0xB6DB_6DB6) << 14;
        bot |= 1 - parity(mid & 0x36DB ^ bot & 0x6DB6_DB6C);
        mid |= (1 - parity(mid & 0x7FFF ^ bot & 0xFFFF_FFFF)) << 15;
        mid << 32 | bot
    }

    /// Corporate 1000 35-bit, company 222, card 12345: 0x21bc06072 is what
    /// proxmark3's encoder gives (`wiegand encode -w C1k35s --fc 222 --cn
    /// 12345`). Reported as the 32 data bits: company << 20 | card.
    #[test]
    fn decodes_a_known_35_bit_corporate_1000_frame() {
        assert_eq!(c1k35_reference(222, 12345), 0x2_1bc0_6072);
        let f = frame_of(0x2_1bc0_6072, 35);
        let data = 222u32 << 20 | 12345;
        assert_eq!(decode(&f), uid(&data.to_be_bytes()));
        assert_eq!(data.to_be_bytes(), [0x0d, 0xe0, 0x30, 0x39]);
        // Each of the three parity bits, flipped alone, is caught.
        for i in [0, 1, 34] {
            let mut bad = f.clone();
            bad[i] = !bad[i];
            assert_eq!(decode(&bad), Frame::Rejected(Reject::Parity { bits: 35 }), "bit {i}");
        }
    }

    /// Corporate 1000 48-bit, company 118, card 1603: proxmark3's test suite
    /// clones the raw HID value 01400076000c86 and reads it back as "HID
    /// Corporate 1000 48-bit"; without its sentinel bit (bit 48), the frame
    /// is 0x400076000c86. Reported as the 45 data bits in 6 bytes, the top 3
    /// bits zero: company << 23 | card.
    #[test]
    fn decodes_a_known_48_bit_corporate_1000_frame() {
        assert_eq!(c1k48_reference(118, 1603), 0x4000_7600_0c86);
        let f = frame_of(0x4000_7600_0c86, 48);
        let data = 118u64 << 23 | 1603;
        assert_eq!(decode(&f), uid(&data.to_be_bytes()[2..]));
        assert_eq!(&data.to_be_bytes()[2..], [0x00, 0x00, 0x3b, 0x00, 0x06, 0x43]);
        for i in [0, 1, 47] {
            let mut bad = f.clone();
            bad[i] = !bad[i];
            assert_eq!(decode(&bad), Frame::Rejected(Reject::Parity { bits: 48 }), "bit {i}");
        }
    }

    /// Model test: random company and card numbers encoded by the reference
    /// encoders decode to company and card; any one flipped bit is caught.
    #[test]
    fn corporate_1000_round_trips_and_catches_every_single_bit_error() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let (company, card) = (rand() & 0xFFF, rand() & 0xF_FFFF);
            let f = frame_of(c1k35_reference(company, card), 35);
            assert_eq!(decode(&f), uid(&((company << 20 | card) as u32).to_be_bytes()));
            for i in 0..35 {
                let mut bad = f.clone();
                bad[i] = !bad[i];
                assert_eq!(decode(&bad), Frame::Rejected(Reject::Parity { bits: 35 }), "35 bit {i}");
            }
            let (company, card) = (rand() & 0x3F_FFFF, rand() & 0x7F_FFFF);
            let f = frame_of(c1k48_reference(company, card), 48);
            assert_eq!(decode(&f), uid(&(company << 23 | card).to_be_bytes()[2..]));
            for i in 0..48 {
                let mut bad = f.clone();
                bad[i] = !bad[i];
                assert_eq!(decode(&bad), Frame::Rejected(Reject::Parity { bits: 48 }), "48 bit {i}");
            }
        }
    }

    fn raw(bits: u64, parity: &[&str]) -> (Option<CardFormat>, ConfigErrors) {
        let v = serde_json::json!({"d0": 5, "d1": 6, "raw_bits": bits, "raw_parity": parity});
        let (c, errs) = Section::read("devices[0]", &v, WiegandConfig::parse);
        (c.and_then(|c| c.raw), errs)
    }

    /// A site's own 40-bit format: bit 1 makes bits 1-20 even, bit 40 makes
    /// bits 21-40 odd; the 38 bits between are the data.
    #[test]
    fn a_raw_format_decodes_its_data_bits_and_checks_its_parity() {
        let (f, errs) = raw(40, &["1 even 2-20", "40 odd 21-39"]);
        assert!(errs.is_empty(), "{errs}");
        let f = f.unwrap();
        let data = 0x2a_dead_beefu64; // 38 bits
        let ones = |m: u64| (data & m).count_ones();
        let first = ones(0x3f_fff8_0000) % 2 == 1; // data bits 1-19 (frame 2-20)
        let last = ones(0x7_ffff) % 2 == 0; // data bits 20-38 (frame 21-39)
        let v = u64::from(first) << 39 | data << 1 | u64::from(last);
        let bits = frame_of(v, 40);
        assert_eq!(decode_with(&bits, Some(&f)), uid(&data.to_be_bytes()[3..]));
        // Unknown to the built-in formats.
        assert_eq!(decode(&bits), Frame::Rejected(Reject::Length { bits: 40 }));
        for i in 0..40 {
            let mut bad = bits.clone();
            bad[i] = !bad[i];
            assert_eq!(decode_with(&bad, Some(&f)), Frame::Rejected(Reject::Parity { bits: 40 }), "bit {i}");
        }
        // Through the timed decoder, as the driver uses it.
        let mut dec = WiegandDecoder::new(Duration::from_millis(25)).with_raw(Some(f));
        feed(&mut dec, 0, &bits);
        assert_eq!(dec.gap_elapsed(us(1_000_000)), Some(uid(&data.to_be_bytes()[3..])));
    }

    /// A raw format of a built-in length replaces the built-in one; one with
    /// no parity takes every bit as data.
    #[test]
    fn a_raw_format_wins_over_a_built_in_one_of_its_length() {
        let (f, errs) = raw(26, &[]);
        assert!(errs.is_empty(), "{errs}");
        let bits = bits("0 00000001 0000000000000001 1"); // bad H10301 parity
        assert_eq!(decode(&bits), Frame::Rejected(Reject::Parity { bits: 26 }));
        assert_eq!(decode_with(&bits, f.as_ref()), uid(&[0x00, 0x02, 0x00, 0x03]));
    }

    #[test]
    fn raw_format_keys_are_checked() {
        let path = |errs: &ConfigErrors| errs.0.iter().map(|e| e.path.clone()).collect::<Vec<_>>();
        let (_, errs) = raw(40, &["1 even 2-41", "40 odd", "0 odd 1", "3 evn 4", "5 odd 9-6"]);
        assert_eq!(
            path(&errs),
            [
                "devices[0].raw_parity[0]",
                "devices[0].raw_parity[1]",
                "devices[0].raw_parity[2]",
                "devices[0].raw_parity[3]",
                "devices[0].raw_parity[4]"
            ]
        );
        assert!(errs.0[0].message.contains("`41` is no bit of a 40-bit frame"), "{errs}");
        assert!(errs.0[0].hint.as_deref().unwrap().contains("\"1 even 2-13\""), "{errs}");
        // Two parity bits on one bit.
        let (_, errs) = raw(40, &["1 even 2-20", "1 odd 21-39"]);
        assert_eq!(path(&errs), ["devices[0].raw_parity"]);
        // Out of range, and parity without a length.
        let (_, errs) = raw(65, &[]);
        assert_eq!(path(&errs), ["devices[0].raw_bits"]);
        let v = serde_json::json!({"d0": 5, "d1": 6, "raw_parity": ["1 even 2-3"]});
        let (_, errs) = Section::read("devices[0]", &v, WiegandConfig::parse);
        assert_eq!(path(&errs), ["devices[0].raw_parity"]);
    }

    #[test]
    fn decodes_keys_and_rejects_bad_ones() {
        assert_eq!(decode(&bits("0111")), Frame::Key('7'));
        assert_eq!(decode(&bits("1010")), Frame::Key('*'));
        assert_eq!(decode(&bits("1011")), Frame::Key('#'));
        assert_eq!(decode(&bits("1100")), Frame::Rejected(Reject::KeyCode));
        assert_eq!(decode(&bits("1010 0101")), Frame::Key('5'));
        assert_eq!(decode(&bits("0100 1011")), Frame::Key('#'));
        assert_eq!(decode(&bits("1011 0101")), Frame::Rejected(Reject::Parity { bits: 8 }));
        assert_eq!(decode(&bits("0011 1100")), Frame::Rejected(Reject::KeyCode));
        assert_eq!(decode(&bits("101")), Frame::Rejected(Reject::Length { bits: 3 }));
        assert_eq!(decode(&bits(&"0".repeat(32))), Frame::Rejected(Reject::Length { bits: 32 }));
    }

    /// A reference encoder, written from the format tables, not from decode().
    fn encode(len: usize, data: u64) -> Vec<bool> {
        let d = len - 2;
        let mut v: Vec<bool> = (0..len).map(|_| false).collect();
        for i in 0..d {
            v[1 + i] = (data >> (d - 1 - i)) & 1 == 1;
        }
        let (even, odd) = match len {
            26 => (1..=12, 13..=24),
            34 => (1..=16, 17..=32),
            37 => (1..=18, 18..=35),
            _ => unreachable!(),
        };
        let count = |r: std::ops::RangeInclusive<usize>| v[r].iter().filter(|b| **b).count();
        let (e, o) = (count(even), count(odd));
        v[0] = e % 2 == 1;
        v[len - 1] = o % 2 == 0;
        v
    }

    /// Model test: random data in every card length decodes to itself, and
    /// any one flipped bit is caught by parity.
    #[test]
    fn every_single_bit_error_is_caught() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (len, bytes) in [(26usize, 3usize), (34, 4), (37, 5)] {
            for _ in 0..200 {
                let data = rand() & ((1u64 << (len - 2)) - 1);
                let frame = encode(len, data);
                assert_eq!(decode(&frame), uid(&data.to_be_bytes()[8 - bytes..]), "len {len} data {data:#x}");
                for i in 0..len {
                    let mut bad = frame.clone();
                    bad[i] = !bad[i];
                    assert_eq!(decode(&bad), Frame::Rejected(Reject::Parity { bits: len }), "len {len} bit {i}");
                }
            }
        }
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn feed(dec: &mut WiegandDecoder, start: u64, frame: &[bool]) -> Vec<Frame> {
        frame.iter().enumerate().filter_map(|(i, b)| dec.bit(us(start + 2000 * i as u64), *b)).collect()
    }

    #[test]
    fn frames_end_at_the_gap() {
        let mut dec = WiegandDecoder::new(Duration::from_millis(25));
        assert_eq!(dec.deadline(), None);
        assert!(feed(&mut dec, 0, &bits("0111")).is_empty());
        let last = us(6000);
        assert_eq!(dec.deadline(), Some(last + Duration::from_millis(25)));
        assert_eq!(dec.gap_elapsed(last + Duration::from_millis(24)), None);
        // The next frame's first bit, after the gap, closes the first frame.
        let out = feed(&mut dec, 100_000, &bits("1011"));
        assert_eq!(out, [Frame::Key('7')]);
        assert_eq!(dec.gap_elapsed(us(200_000)), Some(Frame::Key('#')));
        assert_eq!(dec.deadline(), None);
        assert_eq!(dec.gap_elapsed(us(300_000)), None);
    }

    #[test]
    fn out_of_order_bits_are_sorted_by_time() {
        let mut dec = WiegandDecoder::new(Duration::from_millis(25));
        // 0111 with the D0 bit (sent first) arriving last.
        for (t, b) in [(2000, true), (4000, true), (6000, true), (0, false)] {
            assert_eq!(dec.bit(us(t), b), None);
        }
        assert_eq!(dec.gap_elapsed(us(40_000)), Some(Frame::Key('7')));
    }

    #[test]
    fn pulses_too_close_together_are_noise() {
        let mut dec = WiegandDecoder::new(Duration::from_millis(25));
        dec.bit(us(0), false);
        dec.bit(us(2000), true);
        dec.bit(us(2030), false); // both lines pulled at once
        dec.bit(us(4000), true);
        assert_eq!(dec.gap_elapsed(us(40_000)), Some(Frame::Rejected(Reject::Noise { bits: 4 })));
        // The decoder is clean again.
        feed(&mut dec, 100_000, &bits("0111"));
        assert_eq!(dec.gap_elapsed(us(200_000)), Some(Frame::Key('7')));
    }

    #[test]
    fn overlong_bursts_are_bounded_and_dropped() {
        let mut dec = WiegandDecoder::new(Duration::from_millis(25));
        let long = vec![true; 500];
        assert!(feed(&mut dec, 0, &long).is_empty());
        assert_eq!(dec.gap_elapsed(us(2_000_000)), Some(Frame::Rejected(Reject::Length { bits: 500 })));
    }

    #[test]
    fn lost_edges_poison_the_frame() {
        let mut dec = WiegandDecoder::new(Duration::from_millis(25));
        feed(&mut dec, 0, &bits("01"));
        dec.poison();
        feed(&mut dec, 4000, &bits("11"));
        assert_eq!(dec.gap_elapsed(us(100_000)), Some(Frame::Rejected(Reject::Noise { bits: 4 })));
    }

    #[test]
    fn config_keys_are_checked() {
        use serde_json::json;
        let parse = |v: serde_json::Value| {
            let (c, errs) = Section::read("devices[0]", &v, WiegandConfig::parse);
            (c.expect("a table"), errs)
        };
        let (c, errs) = parse(json!({"d0": 17, "d1": 27}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(c, WiegandConfig { d0: 17, d1: 27, frame_gap: Duration::from_millis(25), raw: None });
        let (_, errs) = parse(json!({"d0": 17, "d1": 17, "frame_gap_ms": 1}));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["devices[0].d1", "devices[0].frame_gap_ms"]);
        let (_, errs) = parse(json!({"d1": 65_536, "chip": 0}));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["devices[0].d0", "devices[0].d1", "devices[0].chip"]);
        assert!(errs.0[0].hint.as_deref().unwrap().contains("BCM"));
    }
}
