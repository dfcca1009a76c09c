//! The decision core's settings: `[keys]`, `[keypad]`, `[lockout]` and
//! `[roles.<role>]` (schedules and card plus PIN).

use crate::access::lockout::LockoutPolicy;
use crate::access::{Role, RoleSchedules};
use porter_drivers::settings::{ConfigErrors, Section};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub pin_length: usize,
    /// How long a retired PIN is held back from everyone (`pin_retention_days`).
    pub pin_retention: Duration,
}

#[derive(Debug, Clone)]
pub struct KeypadConfig {
    pub entry_timeout: Duration,
    pub submit_at_length: bool,
    /// Card plus PIN: how long the PIN is awaited after the card.
    pub pin_after_card: Duration,
}

/// `[roles.<role>]`: each role's default schedule, and the roles whose cards
/// open only with their PIN.
#[derive(Debug, Clone, Default)]
pub(crate) struct RolesConfig {
    pub schedules: RoleSchedules,
    pub card_plus_pin: Vec<Role>,
}

impl KeysConfig {
    /// `[keys]` of `top`, or the defaults.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let mut s = top.opt_table("keys", errs);
        let n = s.as_mut().map(|s| s.u64_or("pin_length", 6, 4..=8, errs)).unwrap_or(6);
        let days = s.as_mut().map(|s| s.u64_or("pin_retention_days", 365, 30..=36_500, errs)).unwrap_or(365);
        if let Some(s) = s {
            s.finish(errs);
        }
        KeysConfig { pin_length: n as usize, pin_retention: Duration::from_secs(days * 86_400) }
    }
}

impl KeypadConfig {
    /// `[keypad]` of `top`, or the defaults.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let mut s = top.opt_table("keypad", errs);
        let (t, sal, pac) = match s.as_mut() {
            Some(s) => (
                s.u64_or("entry_timeout_ms", 5000, 500..=60_000, errs),
                s.bool_or("submit_at_length", false, errs),
                s.u64_or("pin_after_card_s", 10, 2..=60, errs),
            ),
            None => (5000, false, 10),
        };
        if let Some(s) = s {
            s.finish(errs);
        }
        KeypadConfig {
            entry_timeout: Duration::from_millis(t),
            submit_at_length: sal,
            pin_after_card: Duration::from_secs(pac),
        }
    }
}

/// `[lockout]` of `top`, or the default policy.
pub(crate) fn lockout(top: &mut Section<'_>, errs: &mut ConfigErrors) -> LockoutPolicy {
    let d = LockoutPolicy::default();
    let mut s = top.opt_table("lockout", errs);
    let p = match s.as_mut() {
        Some(s) => LockoutPolicy {
            threshold: s.u64_or("threshold", d.threshold.into(), 1..=100, errs) as u32,
            base_ms: s.u64_or("base_s", d.base_ms / 1000, 1..=86_400, errs) * 1000,
            max_ms: s.u64_or("max_s", d.max_ms / 1000, 1..=86_400, errs) * 1000,
            daily_cap: s.u64_or("daily_cap", d.daily_cap.into(), 1..=100_000, errs) as u32,
        },
        None => d,
    };
    if let Some(s) = s {
        if p.max_ms < p.base_ms {
            errs.push(s.key_path("max_s"), "max_s is shorter than base_s", Some("make max_s at least base_s".into()));
        }
        s.finish(errs);
    }
    p
}

impl RolesConfig {
    /// `[roles]` of `top`: each `[roles.<role>]` in [`Role::ALL`]'s order.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let mut card_plus_pin_roles = Vec::new();
        let mut out: RoleSchedules = Default::default();
        if let Some(mut s) = top.opt_table("roles", errs) {
            for role in Role::ALL {
                let Some(mut r) = s.opt_table(role.as_str(), errs) else { continue };
                if r.bool_or("card_plus_pin", false, errs) {
                    card_plus_pin_roles.push(role);
                }
                out[role.index()] = schedule(&mut r, errs);
                r.finish(errs);
            }
            s.finish(errs);
        }
        RolesConfig { schedules: out, card_plus_pin: card_plus_pin_roles }
    }
}

/// `schedule = [{ days = "daily", from = "07:00", to = "21:00" }, ...]` of a
/// `[roles.<role>]`, with every error of every window.
fn schedule(role: &mut Section<'_>, errs: &mut ConfigErrors) -> Vec<crate::access::schedule::Window> {
    use crate::access::schedule::{parse_days, parse_hhmm, Window, MAX_WINDOWS};
    let example = "schedule = [{ days = \"daily\", from = \"07:00\", to = \"21:00\" }]";
    let windows = role.tables("schedule", errs);
    if windows.len() > MAX_WINDOWS {
        errs.push(
            role.key_path("schedule"),
            format!("{} windows; a schedule holds at most {MAX_WINDOWS}", windows.len()),
            Some("join windows that share their times: days takes a list, such as days = [\"mon\", \"tue\"]".into()),
        );
    }
    let mut out = Vec::new();
    for mut w in windows {
        let days = match w.opt_names("days", errs) {
            None => Some(0x7f),
            Some(names) => {
                let mut mask = Some(0u8);
                for n in &names {
                    match parse_days(n) {
                        Some(d) => mask = mask.map(|m| m | d),
                        None => {
                            errs.push(
                                w.key_path("days"),
                                format!("unknown day {n:?}"),
                                Some("use mon, tue, wed, thu, fri, sat, sun, daily, weekdays or weekends, or a list of them".into()),
                            );
                            mask = None;
                        }
                    }
                }
                if mask == Some(0) {
                    errs.push(w.key_path("days"), "no day given", Some(format!("name at least one day: {example}")));
                    mask = None;
                }
                mask
            }
        };
        let mut time = |key: &'static str| {
            let t = w.string(key, &format!("a window has both from and to: {example}"), errs)?;
            let m = parse_hhmm(&t);
            if m.is_none() {
                errs.push(
                    w.key_path(key),
                    format!("{t:?} is not a time"),
                    Some(format!("write HH:MM from 00:00 to 24:00, such as {key} = \"07:00\"")),
                );
            }
            m
        };
        let (from, to) = (time("from"), time("to"));
        if from.is_some() && from == to {
            errs.push(
                w.key_path("to"),
                "the window is empty: from and to are the same time",
                Some("a to at or before from runs past midnight; from = \"00:00\", to = \"24:00\" is all day".into()),
            );
        }
        if let (Some(days), Some(from), Some(to)) = (days, from, to) {
            out.push(Window { days, from, to });
        }
        w.finish(errs);
    }
    out
}
