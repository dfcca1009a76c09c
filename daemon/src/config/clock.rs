//! `[clock]`: whether the wall clock is synchronised, and what to do while it
//! is not. The types live here, below the runtime, so that the config does
//! not import the runtime; `runtime::clock` re-exports them and adds
//! [`SyncSource::synchronized`].

use porter_drivers::settings::{ConfigErrors, Section};
use std::path::PathBuf;

/// Where the daemon learns whether the wall clock is synchronised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSource {
    /// The kernel's NTP state (`runtime::clock::system_clock_synchronized`).
    Kernel,
    /// Synchronised while this file exists (systemd-timesyncd creates
    /// `/run/systemd/timesync/synchronized` at its first synchronisation).
    File(PathBuf),
}

/// What to do with keys bound by time while the clock is not synchronised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsynchronized {
    /// Deny them (`clock_unsynchronized`), except staff and managers: fail-secure.
    Deny,
    /// Decide them on the clock as it is.
    Allow,
}

impl Unsynchronized {
    pub fn as_str(self) -> &'static str {
        match self {
            Unsynchronized::Deny => "deny",
            Unsynchronized::Allow => "allow",
        }
    }
}

/// `[clock]`.
#[derive(Debug, Clone)]
pub struct ClockConfig {
    pub unsynchronized: Unsynchronized,
    pub source: SyncSource,
}

impl ClockConfig {
    /// `[clock]` of `top`, or the defaults when it is left out.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let mut c = ClockConfig { unsynchronized: Unsynchronized::Deny, source: SyncSource::Kernel };
        if let Some(mut s) = top.opt_table("clock", errs) {
            match s.string_or("unsynchronized", "deny", errs).as_str() {
                "deny" => {}
                "allow" => c.unsynchronized = Unsynchronized::Allow,
                other => errs.push(
                    s.key_path("unsynchronized"),
                    format!("unknown policy `{other}`"),
                    Some("use \"deny\" (keys bound by time are refused while the clock is not synchronised) or \"allow\"".into()),
                ),
            }
            let hint = "name the file a time source keeps, such as \"/run/systemd/timesync/synchronized\", \
                        or leave sync_file out to ask the kernel";
            if let Some(p) = s.opt_path("sync_file", hint, errs) {
                c.source = SyncSource::File(p);
            }
            s.finish(errs);
        }
        c
    }
}
