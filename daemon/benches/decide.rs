//! Latency of the access decision with 100,000 holders.
//!
//! Run with `cargo bench -p porterd --bench decide` (release profile). No
//! criterion: every call is timed on its own with `std::time::Instant`, and
//! the distribution (p50, p99, p99.9, max, mean) is printed, one line per
//! measurement. The timer's own cost (an empty timed region) is printed
//! first; every other figure includes it once.
//!
//! The hot-loop measurements run interleaved in rounds, each round after an
//! untimed warm-up. Then `decide()` and a `HashMap` lookup are timed with
//! cold caches: 64 MiB is read before each call, as after a quiet spell at
//! the door.
//!
//! `PORTER_BENCH_QUICK=1` (or `-- --quick`) runs 100,000 requests instead of
//! 1,000,000, for a smoke test.

use arc_swap::ArcSwap;
use porterd::access::schedule::{LocalTime, Window};
use porterd::access::{
    decide, DoorSet, Holder, KeyEntry, KeyHash, KeyHasherBuilder, KeyKind, Profile, Reason, Request, Role, Snapshot,
};
use porterd::store::secret::KeyHasher;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const HOLDERS: usize = 100_000;
/// Share of requests that present a key in the snapshot, in percent.
const KNOWN_PERCENT: u64 = 90;
/// Calls made untimed before each timed run, to warm caches and branch predictors.
const WARMUP: usize = 10_000;
/// 2026-06-01T12:00:00Z, the `now` of every request.
const NOW_MS: i64 = 1_780_315_200_000;
const DAY_MS: i64 = 86_400_000;

/// splitmix64: a small deterministic generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The `i`th distinct six-digit PIN (9973 is coprime to 10^6, so this is a
/// permutation of 000000..=999999).
fn pin(i: usize) -> [u8; 6] {
    let n = (i as u64 * 9973 + 12_345) % 1_000_000;
    let s = format!("{n:06}");
    s.as_bytes().try_into().unwrap()
}

fn holder(i: usize, rng: &mut Rng) -> Holder {
    let role = Role::ALL[i % 4];
    // A realistic spread: most holders unrestricted, some with door masks,
    // schedules and validity dates, a few disabled.
    let doors = if rng.below(4) == 0 { DoorSet::Mask(1 << rng.below(4)) } else { DoorSet::All };
    let schedule = match rng.below(5) {
        0 => vec![Window { days: 0x1f, from: 7 * 60, to: 21 * 60 }],
        1 => vec![Window { days: 0x1f, from: 6 * 60, to: 9 * 60 }, Window { days: 0x60, from: 22 * 60, to: 6 * 60 }],
        _ => Vec::new(),
    };
    let (valid_from_ms, valid_until_ms) = match rng.below(10) {
        0 => (Some(NOW_MS - 30 * DAY_MS), Some(NOW_MS + 30 * DAY_MS)),
        1 => (None, Some(NOW_MS - DAY_MS)),
        2 => (Some(NOW_MS + DAY_MS), None),
        _ => (None, None),
    };
    Holder::new(&Profile {
        id: format!("holder-{i:06}"),
        role,
        enabled: rng.below(50) != 0,
        doors,
        valid_from_ms,
        valid_until_ms,
        schedule,
    })
}

struct Fixture {
    snap: Snapshot,
    /// Every key in the snapshot with its kind.
    known: Vec<(KeyHash, KeyKind)>,
    /// Keys not in the snapshot (hashes of unassigned PINs).
    unknown: Vec<KeyHash>,
}

fn build(hasher: &KeyHasher, rng: &mut Rng) -> Fixture {
    let mut snap = Snapshot::default();
    let mut known = Vec::with_capacity(HOLDERS * 2);
    for i in 0..HOLDERS {
        let h = Arc::new(holder(i, rng));
        let mut add = |key: KeyHash, kind: KeyKind, active: bool| {
            snap.insert(key, KeyEntry::new(h.clone(), kind, active));
            known.push((key, kind));
        };
        add(hasher.hash(KeyKind::Pin, &pin(i)), KeyKind::Pin, rng.below(100) != 0);
        if rng.below(10) < 3 {
            add(hasher.hash(KeyKind::Qr, format!("qr-token-{i:08}").as_bytes()), KeyKind::Qr, true);
        }
        if rng.below(10) < 2 {
            for c in 0..=rng.below(2) {
                let uid = [0x04, (i >> 16) as u8, (i >> 8) as u8, i as u8, c as u8, 0x80, 0x11];
                add(hasher.hash(KeyKind::Card, &uid), KeyKind::Card, true);
            }
        }
    }
    // PINs HOLDERS.. are never assigned, so their hashes are unknown keys.
    let unknown = (HOLDERS..HOLDERS + 10_000).map(|i| hasher.hash(KeyKind::Pin, &pin(i))).collect();
    // As after a start or a sync: everything in the flat map.
    snap.compact();
    Fixture { snap, known, unknown }
}

/// `n` requests: `KNOWN_PERCENT` of them known keys drawn uniformly, the rest
/// unknown PINs; random door 0..4, weekday and minute; one in 200 from a
/// locked-out device.
fn requests(f: &Fixture, n: usize, rng: &mut Rng) -> Vec<Request> {
    (0..n)
        .map(|_| {
            let (key, kind) = if rng.below(100) < KNOWN_PERCENT {
                f.known[rng.below(f.known.len() as u64) as usize]
            } else {
                (f.unknown[rng.below(f.unknown.len() as u64) as usize], KeyKind::Pin)
            };
            Request {
                door: rng.below(4) as u8,
                device: rng.below(8) as u16,
                kind,
                key,
                now_ms: NOW_MS,
                local: LocalTime { weekday: rng.below(7) as u8, minute: rng.below(1440) as u16 },
                device_locked: rng.below(200) == 0,
                clock_untrusted: false,
                spent: 0,
            }
        })
        .collect()
}

/// Times `op` on each item of `items` into `out`, after a warm-up over the
/// first `WARMUP` items.
fn time_each<T>(items: &[T], out: &mut Vec<u64>, mut op: impl FnMut(&T)) {
    for it in items.iter().take(WARMUP) {
        op(it);
    }
    for it in items {
        let t0 = Instant::now();
        op(it);
        out.push(t0.elapsed().as_nanos() as u64);
    }
}

/// Reads `buf` through, pushing everything else out of the caches and TLBs.
fn evict(buf: &[u64]) -> u64 {
    buf.iter().step_by(8).fold(0, |a, &x| a.wrapping_add(x))
}

struct Stats {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

fn stats(mut v: Vec<u64>) -> Stats {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
    Stats { p50: at(0.50), p99: at(0.99), p999: at(0.999), max: *v.last().unwrap(), mean }
}

fn report(name: &str, n: usize, s: &Stats) {
    println!(
        "{name:<44} n={n:<8} p50={:>6} ns  p99={:>6} ns  p99.9={:>6} ns  max={:>8} ns  mean={:>7.1} ns",
        s.p50, s.p99, s.p999, s.max, s.mean
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var_os("PORTER_BENCH_QUICK").is_some();
    let n = if quick { 100_000 } else { 1_000_000 };
    let mut rng = Rng(0x5eed_0f90_27e4);
    let hasher = KeyHasher::new(b"bench-device-secret-32-bytes-ok!");

    let t = Instant::now();
    let f = build(&hasher, &mut rng);
    println!(
        "setup: {} holders, {} keys in the snapshot, built in {:.2} s; {} requests, {}% known keys",
        HOLDERS,
        f.snap.len(),
        t.elapsed().as_secs_f64(),
        n,
        KNOWN_PERCENT
    );
    let reqs = requests(&f, n, &mut rng);
    // Granted, then one slot per reason (decide() gives the first nine).
    let mut outcomes = [0usize; 1 + Reason::PinRequired as usize + 1];
    for r in &reqs {
        outcomes[decide(&f.snap, r).reason().map_or(0, |x| x as usize + 1)] += 1;
    }
    let pct = |i: usize| 100.0 * outcomes[i] as f64 / n as f64;
    println!(
        "outcomes: granted {:.1}%, unknown {:.1}%, inactive {:.1}%, holder_disabled {:.1}%, not_yet_valid {:.1}%, \
         expired {:.1}%, outside_schedule {:.1}%, wrong_door {:.1}%, locked_out {:.1}%",
        pct(0),
        pct(1),
        pct(2),
        pct(3),
        pct(4),
        pct(5),
        pct(6),
        pct(7),
        pct(8)
    );
    let pins: Vec<[u8; 6]> = (0..n).map(|_| pin(rng.below(1_000_000) as usize)).collect();
    let live = ArcSwap::from_pointee(f.snap.clone());
    // The same keys in a plain HashMap, with the snapshot's hasher and with SipHash.
    let mut pass: HashMap<KeyHash, u32, KeyHasherBuilder> = HashMap::default();
    let mut sip: HashMap<KeyHash, u32> = HashMap::new();
    for (i, (k, _)) in f.known.iter().enumerate() {
        pass.insert(*k, i as u32);
        sip.insert(*k, i as u32);
    }

    // The measurements run interleaved, ROUNDS rounds of n / ROUNDS calls
    // each, the order rotating every round, so that drifting background load
    // and allocation-order effects fall on all of them alike.
    const NAMES: [&str; 7] = [
        "timer overhead (empty timed region)",
        "decide()",
        "Snapshot::get() only (table + overlay)",
        "ArcSwap::load() + decide()",
        "HashMap<KeyHash,u32> get, KeyHasherBuilder",
        "HashMap<KeyHash,u32> get, SipHash (default)",
        "KeyHasher::hash(Pin, 6 digits)",
    ];
    const ROUNDS: usize = 8;
    let mut samples: Vec<Vec<u64>> = NAMES.iter().map(|_| Vec::with_capacity(n)).collect();
    let chunk = n / ROUNDS;
    for round in 0..ROUNDS {
        let rs = &reqs[round * chunk..(round + 1) * chunk];
        let ps = &pins[round * chunk..(round + 1) * chunk];
        for j in 0..NAMES.len() {
            let m = (j + round) % NAMES.len();
            let out = &mut samples[m];
            match m {
                0 => time_each(rs, out, |_| {}),
                1 => time_each(rs, out, |r| {
                    black_box(decide(black_box(&f.snap), black_box(r)));
                }),
                2 => time_each(rs, out, |r| {
                    black_box(black_box(&f.snap).get(black_box(&r.key)));
                }),
                3 => time_each(rs, out, |r| {
                    let snap = live.load();
                    black_box(decide(black_box(&snap), black_box(r)));
                }),
                4 => time_each(rs, out, |r| {
                    black_box(black_box(&pass).get(black_box(&r.key)));
                }),
                5 => time_each(rs, out, |r| {
                    black_box(black_box(&sip).get(black_box(&r.key)));
                }),
                _ => time_each(ps, out, |p| {
                    black_box(hasher.hash(KeyKind::Pin, black_box(p)));
                }),
            }
        }
    }
    let st: Vec<Stats> = samples.into_iter().map(stats).collect();
    for (name, s) in NAMES.iter().zip(&st) {
        report(name, chunk * ROUNDS, s);
    }
    let (d, hp, hs) = (&st[1], &st[4], &st[5]);

    // A door event after a quiet spell finds nothing of the snapshot cached:
    // stream 64 MiB (twice the L3 of the machine measured) before each call.
    let cold_n = if quick { 200 } else { 1_000 };
    let buf: Vec<u64> = (0..64 * 1024 * 1024 / 8).map(|i| i as u64).collect();
    let cold = |op: &dyn Fn(&Request)| {
        let mut out = Vec::with_capacity(cold_n);
        for r in reqs.iter().take(cold_n) {
            let r = *r;
            black_box(evict(&buf));
            let t0 = Instant::now();
            op(&r);
            out.push(t0.elapsed().as_nanos() as u64);
        }
        stats(out)
    };
    let dc = cold(&|r| {
        black_box(decide(black_box(&f.snap), black_box(r)));
    });
    report("decide(), cold caches (64 MiB read before)", cold_n, &dc);
    let hc = cold(&|r| {
        black_box(black_box(&pass).get(black_box(&r.key)));
    });
    report("HashMap get (KeyHasherBuilder), cold caches", cold_n, &hc);

    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    println!(
        "ratio decide/HashMap (KeyHasherBuilder): p50 {:.2}x  p99 {:.2}x  mean {:.2}x",
        ratio(d.p50, hp.p50),
        ratio(d.p99, hp.p99),
        d.mean / hp.mean
    );
    println!(
        "ratio decide/HashMap (SipHash):          p50 {:.2}x  p99 {:.2}x  mean {:.2}x",
        ratio(d.p50, hs.p50),
        ratio(d.p99, hs.p99),
        d.mean / hs.mean
    );
    println!(
        "ratio decide/HashMap, cold caches:       p50 {:.2}x  p99 {:.2}x  mean {:.2}x",
        ratio(dc.p50, hc.p50),
        ratio(dc.p99, hc.p99),
        dc.mean / hc.mean
    );
    println!(
        "goal decide() p99 < 2000 ns with {HOLDERS} holders (this benchmark's loop): {} (p99 = {} ns, timer included)",
        if d.p99 < 2000 { "met" } else { "NOT met" },
        d.p99,
    );
    println!(
        "cold caches (no goal; a door after a quiet spell): decide() p99 = {} ns, a bare HashMap lookup p99 = {} ns",
        dc.p99, hc.p99
    );
}
