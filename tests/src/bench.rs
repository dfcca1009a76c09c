//! What the benchmark binaries share: percentiles, one report line per
//! distribution, goals, and distinct non-trivial PINs for large syncs.

use std::time::Duration;

/// The `p`th percentile of sorted `v`, in ms.
pub fn pct(v: &[Duration], p: f64) -> f64 {
    let i = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1e3
}

/// Sorts `v` and prints one distribution line; returns (p50, p99) in ms.
pub fn report(what: &str, v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1e3;
    println!(
        "{what:<44} n={:<5} p50={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms  mean={:>7.3} ms",
        v.len(),
        pct(v, 50.0),
        pct(v, 99.0),
        v[v.len() - 1].as_secs_f64() * 1e3,
        mean
    );
    (pct(v, 50.0), pct(v, 99.0))
}

/// Prints whether `value` is under `limit`; returns that.
pub fn goal(what: &str, value: f64, unit: &str, limit: f64) -> bool {
    let met = value < limit;
    println!("goal: {what:<52} {value:>9.3} {unit} < {limit} {unit}: {}", if met { "MET" } else { "MISSED" });
    met
}

/// Distinct 6-digit PINs, none trivial: i -> (i * 7919 + 104_729) mod 10^6 is
/// a bijection on 0..10^6 (7919 is prime to 10); after the first `skip` of
/// the sequence, `n` not in `avoid`.
pub fn pins(skip: usize, n: usize, avoid: &std::collections::HashSet<String>) -> Vec<String> {
    let v: Vec<String> = (0u64..1_000_000)
        .map(|i| format!("{:06}", (i * 7919 + 104_729) % 1_000_000))
        .filter(|p| !porterd::provision::keys::is_trivial(p.as_bytes()))
        .skip(skip)
        .filter(|p| !avoid.contains(p))
        .take(n)
        .collect();
    assert_eq!(v.len(), n, "not enough PINs");
    v
}
