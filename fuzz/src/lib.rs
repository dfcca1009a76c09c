//! What the fuzz targets share: feeding a sans-IO decoder whole and byte by
//! byte (a frame may span any number of reads, so both must agree), and the
//! encoders of formats whose crate has only a decoder.

use porter_drivers::serial::{Decoded, Decoder};
use tokio::time::Instant;

/// Feeds `bytes` to `d` in one push and returns what it decoded.
pub fn push_whole(d: &mut dyn Decoder, bytes: &[u8], now: Instant) -> Vec<Decoded> {
    let mut out = Vec::new();
    d.push(bytes, now, &mut |e| out.push(e));
    out
}

/// Feeds `bytes` to `d` one byte per push, as a slow port delivers them.
pub fn push_bytewise(d: &mut dyn Decoder, bytes: &[u8], now: Instant) -> Vec<Decoded> {
    let mut out = Vec::new();
    for b in bytes {
        d.push(std::slice::from_ref(b), now, &mut |e| out.push(e));
    }
    out
}

/// A Wiegand card frame of `n` bits (26, 34 or 37) carrying `data` (the
/// frame's `n - 2` data bits, most significant first), with its leading even
/// and trailing odd parity bits over the ranges the format defines: `even`
/// ends at bit `even_end`, `odd` starts at bit `odd_start`.
pub fn wiegand_card(n: usize, data: u64, even_end: usize, odd_start: usize) -> Vec<bool> {
    let mut bits = vec![false; n];
    for i in 0..n - 2 {
        bits[1 + i] = (data >> (n - 3 - i)) & 1 == 1;
    }
    let ones = |bits: &[bool]| bits.iter().filter(|b| **b).count();
    bits[0] = ones(&bits[1..=even_end]) % 2 == 1;
    bits[n - 1] = ones(&bits[odd_start..=n - 2]) % 2 == 0;
    bits
}
