//! `gpio_relay`: a lock relay, an indicator LED or a buzzer on one GPIO line.
//!
//! `set(true)` drives the active level (high, or low with `active_low`); for
//! a lock, on is unlocked. The safe state is the inactive level, and it is
//! driven explicitly:
//! - at open: the line becomes an output already at the inactive level (the
//!   driver opens it when built, or at the next `set` if that failed);
//! - at stop: the daemon sets every lock locked on shutdown, and dropping the
//!   driver drives the inactive level once more before letting go.
//!
//! After that the line stays an output at the inactive level, also after the
//! process exits: rppal would otherwise return it to its previous mode
//! (usually input) on drop and leave the relay's input floating, so the
//! backend turns that off (`set_reset_on_drop(false)`). A crash or power loss
//! can still leave the line anywhere: wire locks fail-secure or fail-safe as
//! the site requires, with a pull resistor that holds the relay inactive
//! while the Pi boots.

use crate::contract::Output;
use crate::error::DriverError;
use crate::gpio::{self, GpioBackend, LineNo, OutputLine};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpioRelayConfig {
    /// BCM line number.
    pub line: LineNo,
    /// Active (on, unlocked) when low, as many relay boards are.
    pub active_low: bool,
}

impl GpioRelayConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let line = gpio::required_line(sec, "line", errs).unwrap_or(0);
        let active_low = sec.bool_or("active_low", false, errs);
        GpioRelayConfig { line, active_low }
    }
}

/// The `gpio_relay` driver.
pub struct GpioRelay {
    cfg: GpioRelayConfig,
    id: String,
    backend: Arc<dyn GpioBackend>,
    out: Option<Box<dyn OutputLine>>,
}

impl GpioRelay {
    /// A relay on the Raspberry Pi's GPIO, opened now at its safe level.
    pub fn new(cfg: GpioRelayConfig, id: &str) -> Self {
        Self::with_backend(cfg, id, gpio::real())
    }

    /// A relay on `backend`, opened now at its safe level. A failure to open
    /// is logged and tried again at the next `set`.
    pub fn with_backend(cfg: GpioRelayConfig, id: &str, backend: Arc<dyn GpioBackend>) -> Self {
        let mut r = GpioRelay { cfg, id: id.to_string(), backend, out: None };
        if let Err(e) = r.open() {
            tracing::warn!(device = %r.id, error = %e, "gpio_relay: cannot open the line yet; retrying at the next set");
        }
        r
    }

    /// The line level for `on`.
    fn level(&self, on: bool) -> bool {
        on != self.cfg.active_low
    }

    /// Opens the line, if not open, driving the inactive (safe) level.
    pub fn open(&mut self) -> Result<(), DriverError> {
        if self.out.is_none() {
            self.out = Some(self.backend.open_output(self.cfg.line, self.level(false))?);
            tracing::info!(device = %self.id, line = self.cfg.line, "gpio_relay: line open, inactive");
        }
        Ok(())
    }
}

#[async_trait]
impl Output for GpioRelay {
    async fn set(&mut self, on: bool) -> Result<(), DriverError> {
        self.open()?;
        let high = self.level(on);
        let out = self.out.as_mut().expect("opened above");
        if let Err(e) = out.write(high) {
            // Reopen at the next set, which drives the safe level first.
            self.out = None;
            return Err(e);
        }
        tracing::debug!(device = %self.id, on, "gpio_relay: set");
        Ok(())
    }
}

impl Drop for GpioRelay {
    fn drop(&mut self) {
        let safe = self.level(false);
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.write(safe) {
                tracing::error!(device = %self.id, error = %e, "gpio_relay: cannot drive the safe level at stop");
            }
        }
    }
}

/// `kind = "gpio_relay"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "gpio_relay",
    role: crate::kinds::Role::Output,
    reports: crate::kinds::Reports { keys: false, levels: false },
    drives_outputs: true,
    output_through_input: false,
    access: crate::kinds::Access::None,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(GpioRelayConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for GpioRelayConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        use crate::kinds::Claim;
        vec![Claim::GpioLine(self.line)]
    }

    fn output_driver(&self, id: &str) -> Option<Box<dyn crate::contract::Output>> {
        Some(Box::new(GpioRelay::new(self.clone(), id)))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_and_defaults() {
        use serde_json::json;
        let parse = |v: serde_json::Value| {
            let (c, errs) = Section::read("devices[2]", &v, GpioRelayConfig::parse);
            (c.expect("a table"), errs)
        };
        let (c, errs) = parse(json!({"line": 18}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(c, GpioRelayConfig { line: 18, active_low: false });
        // A board with one large chip (Allwinner) numbers its lines past 53.
        let (c, errs) = parse(json!({"line": 227}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(c.line, 227);
        let (c, errs) = parse(json!({"line": "26", "active_low": true}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(c, GpioRelayConfig { line: 26, active_low: true });
        let (_, errs) = parse(json!({"line": 65_536, "active_low": "yes", "pull": "up"}));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["devices[2].line", "devices[2].active_low", "devices[2].pull"]);
    }
}
