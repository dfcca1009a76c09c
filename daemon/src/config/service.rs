//! The service's own small sections: `[audit]`, `[admin]` and `[demo]`.

use porter_drivers::settings::{ConfigErrors, Section};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub retain: u64,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub socket: PathBuf,
    /// How long a connection may wait between commands, and take to send
    /// one command line or read one reply, before it is closed.
    pub idle_timeout: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub seed: bool,
}

impl AuditConfig {
    /// `[audit]` of `top`, or the defaults.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let mut s = top.opt_table("audit", errs);
        let r = s.as_mut().map(|s| s.u64_or("retain", 100_000, 1000..=10_000_000, errs)).unwrap_or(100_000);
        if let Some(s) = s {
            s.finish(errs);
        }
        AuditConfig { retain: r }
    }
}

impl AdminConfig {
    /// `[admin]` of `top`, or the default socket.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let mut s = top.opt_table("admin", errs);
        let default = "/run/porter/admin.sock";
        let hint = format!("set socket = \"{default}\", or leave socket out for that default");
        let p = s.as_mut().and_then(|s| s.opt_path("socket", &hint, errs)).unwrap_or_else(|| default.into());
        let idle = s.as_mut().map(|s| s.u64_or("idle_timeout_s", 5, 1..=300, errs)).unwrap_or(5);
        if let Some(s) = s {
            s.finish(errs);
        }
        AdminConfig { socket: p, idle_timeout: std::time::Duration::from_secs(idle) }
    }
}

impl DemoConfig {
    /// `[demo]` of `top`; no seeding unless asked.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let mut s = top.opt_table("demo", errs);
        let seed = s.as_mut().map(|s| s.bool_or("seed", false, errs)).unwrap_or(false);
        if let Some(s) = s {
            s.finish(errs);
        }
        DemoConfig { seed }
    }
}
