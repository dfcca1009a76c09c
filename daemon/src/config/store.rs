//! `[store]`: the sled store's cache, its recovery policy, snapshots and the
//! disk-space reserve (docs/ops.md).

use porter_drivers::settings::{ConfigErrors, Section};

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub cache_capacity: u64,
    /// What a start does with a store found damaged (docs/ops.md).
    pub on_damage: crate::store::recover::OnDamage,
    /// What a recovery restores from the newest snapshot.
    pub restore: crate::store::recover::Restore,
    /// How many snapshots to keep (0: none are written).
    pub snapshots: u32,
    /// The reserve held back in `data_dir` for a full disk, in bytes.
    pub reserve: u64,
    /// Below this many free bytes on data_dir's disk, `storage.low`.
    pub low_space: u64,
    /// How long an open full sync waits for its next `sync.put` before its
    /// staged set is dropped (`sync_idle_s`).
    pub sync_idle: std::time::Duration,
}

impl StoreConfig {
    /// `[store]` of `top`, or the defaults when it is left out.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let s = top.opt_table("store", errs);
        use crate::store::recover::{OnDamage, Restore};
        let mut c = StoreConfig {
            cache_capacity: 4 * 1024 * 1024,
            on_damage: OnDamage::Recover,
            restore: Restore::Restrictive,
            snapshots: 3,
            sync_idle: std::time::Duration::from_secs(600),
            reserve: 16 << 20,
            low_space: 64 << 20,
        };
        if let Some(mut s) = s {
            c.cache_capacity = s.u64_or("cache_capacity_mb", 4, 1..=4096, errs) * 1024 * 1024;
            match s.string_or("on_damage", "recover", errs).as_str() {
                "recover" => {}
                "refuse" => c.on_damage = OnDamage::Refuse,
                other => errs.push(
                    s.key_path("on_damage"),
                    format!("unknown policy `{other}`"),
                    Some("use \"recover\" (move a damaged store aside and start from the newest snapshot) or \"refuse\" (do not start)".into()),
                ),
            }
            match s.string_or("restore", "restrictive", errs).as_str() {
                "restrictive" => {}
                "all" => c.restore = Restore::All,
                other => errs.push(
                    s.key_path("restore"),
                    format!("unknown choice `{other}`"),
                    Some("use \"restrictive\" (only what refuses: retired PINs, lockouts, spent uses) or \"all\" (holders and keys too)".into()),
                ),
            }
            c.snapshots = s.u64_or("snapshots", 3, 0..=10, errs) as u32;
            c.reserve = s.u64_or("reserve_mb", 16, 0..=4096, errs) << 20;
            c.low_space = s.u64_or("low_space_mb", 64, 1..=1_000_000, errs) << 20;
            c.sync_idle = std::time::Duration::from_secs(s.u64_or("sync_idle_s", 600, 1..=86400, errs));
            s.finish(errs);
        }
        c
    }
}
