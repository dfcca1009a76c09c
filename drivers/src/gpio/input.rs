//! `gpio_input`: a door contact or a request-to-exit button on one GPIO line,
//! debounced.
//!
//! It reports [`Input::Level`] (`true` = active) once when the line opens,
//! with the line's level then, and again on every debounced change. It knows
//! nothing of doors: the door that names this device as its contact or exit
//! button decides what active means (door open, button pressed).
//!
//! Debouncing: a change is reported only once the line has been quiet for
//! `debounce_ms`; bounces shorter than that are ignored, and a bounce that
//! returns to the reported level reports nothing. The level reported is the
//! line's level read at that moment, so a lost edge cannot leave the report
//! wrong. The core is [`Debouncer`], a pure state machine over edge times.

use crate::contract::{Input, InputDriver, InputSink};
use crate::error::{DriverError, ErrorKind};
use crate::gpio::{self, line_name, EdgeClock, GpioBackend, LineNo, Pull, Trigger, EDGE_QUEUE};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_DEBOUNCE_MS: u64 = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpioInputConfig {
    /// BCM line number.
    pub line: LineNo,
    pub pull: Pull,
    /// Active when low (a contact or button switching the line to ground).
    pub active_low: bool,
    pub debounce: Duration,
}

impl GpioInputConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let line = gpio::required_line(sec, "line", errs).unwrap_or(0);
        let pull = match sec.string_or("pull", "up", errs).as_str() {
            "up" => Pull::Up,
            "down" => Pull::Down,
            "none" => Pull::Off,
            other => {
                errs.push(
                    sec.key_path("pull"),
                    format!("unknown pull `{other}`"),
                    Some("use \"up\" (a switch to ground), \"down\" (a switch to 3.3 V) or \"none\" (an external resistor)".into()),
                );
                Pull::Up
            }
        };
        let active_low = sec.bool_or("active_low", true, errs);
        let debounce = Duration::from_millis(sec.u64_or("debounce_ms", DEFAULT_DEBOUNCE_MS, 0..=10_000, errs));
        GpioInputConfig { line, pull, active_low, debounce }
    }
}

/// The sans-IO debouncer. Times are on the edge time base.
#[derive(Debug, Clone)]
pub struct Debouncer {
    debounce: Duration,
    reported: bool,
    last_edge: Option<Duration>,
}

impl Debouncer {
    /// A debouncer whose reported level starts at `active`.
    pub fn new(active: bool, debounce: Duration) -> Self {
        Debouncer { debounce, reported: active, last_edge: None }
    }

    /// The level last reported.
    pub fn level(&self) -> bool {
        self.reported
    }

    /// The line moved at `at`: it must now stay quiet for the debounce time.
    pub fn edge(&mut self, at: Duration) {
        self.last_edge = Some(self.last_edge.map_or(at, |t| t.max(at)));
    }

    /// When to call [`settle`](Self::settle) if no edge comes first.
    pub fn deadline(&self) -> Option<Duration> {
        self.last_edge.map(|t| t + self.debounce)
    }

    /// At `now`, with the line's level `active`: the new level to report, if
    /// the line has been quiet long enough and differs from the last report.
    pub fn settle(&mut self, now: Duration, active: bool) -> Option<bool> {
        match self.deadline() {
            Some(d) if now >= d => {
                self.last_edge = None;
                (active != self.reported).then(|| {
                    self.reported = active;
                    active
                })
            }
            _ => None,
        }
    }
}

/// The `gpio_input` driver.
pub struct GpioInput {
    cfg: GpioInputConfig,
    id: String,
    backend: Arc<dyn GpioBackend>,
}

impl GpioInput {
    /// A driver on the Raspberry Pi's GPIO.
    pub fn new(cfg: GpioInputConfig, id: &str) -> Self {
        Self::with_backend(cfg, id, gpio::real())
    }

    pub fn with_backend(cfg: GpioInputConfig, id: &str, backend: Arc<dyn GpioBackend>) -> Self {
        GpioInput { cfg, id: id.to_string(), backend }
    }
}

#[async_trait]
impl InputDriver for GpioInput {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        let n = self.cfg.line;
        let (tx, mut rx) = gpio::edge_channel(EDGE_QUEUE);
        // Interrupts are set before the level is read, so no change between
        // the read and the first edge is missed.
        let line = self.backend.open_input(n, self.cfg.pull, Trigger::Both, tx)?;
        let active_low = self.cfg.active_low;
        let active = move |high: bool| high != active_low;
        sink.online();
        let mut deb = Debouncer::new(active(line.is_high()), self.cfg.debounce);
        tracing::info!(device = %self.id, line = n, active = deb.level(), "gpio_input: listening");
        sink.input(Input::Level(deb.level()));
        let mut clock = EdgeClock::default();
        loop {
            let edge = match deb.deadline() {
                Some(deadline) => tokio::select! {
                    e = rx.recv() => e,
                    _ = tokio::time::sleep_until(clock.instant_of(deadline)) => {
                        if let Some(level) = deb.settle(deadline, active(line.is_high())) {
                            tracing::debug!(device = %self.id, active = level, "gpio_input: level changed");
                            sink.input(Input::Level(level));
                        }
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(edge) = edge else {
                return Err(DriverError::new(
                    ErrorKind::Disconnected,
                    format!("{}: the GPIO line was closed", line_name(n)),
                ));
            };
            clock.saw(edge.at);
            deb.edge(edge.at);
        }
    }
}

/// `kind = "gpio_input"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "gpio_input",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: false, levels: true },
    drives_outputs: false,
    output_through_input: false,
    access: crate::kinds::Access::None,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(GpioInputConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for GpioInputConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        use crate::kinds::Claim;
        vec![Claim::GpioLine(self.line)]
    }

    fn input_driver(&self, id: &str) -> Option<Box<dyn crate::contract::InputDriver>> {
        Some(Box::new(GpioInput::new(self.clone(), id)))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn reports_a_change_only_after_it_is_stable() {
        let mut d = Debouncer::new(false, ms(50));
        assert_eq!(d.deadline(), None);
        d.edge(ms(100));
        d.edge(ms(101));
        d.edge(ms(103));
        assert_eq!(d.deadline(), Some(ms(153)));
        assert_eq!(d.settle(ms(152), true), None);
        assert_eq!(d.settle(ms(153), true), Some(true));
        assert_eq!(d.deadline(), None);
        // A bounce back to the reported level reports nothing.
        d.edge(ms(500));
        d.edge(ms(510));
        assert_eq!(d.settle(ms(560), true), None);
        assert!(d.level());
    }

    /// Model test: the debouncer, driven as the driver drives it, reports
    /// exactly the changes of a random bouncy signal that then held for the
    /// debounce time (the definition, computed independently).
    #[test]
    fn matches_the_definition_on_random_bouncy_signals() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let deb = 50_000u64; // us
        for _ in 0..300 {
            // Alternating levels; each edge 1 us to 120 ms after the last, odd
            // so no edge ever falls exactly on a deadline.
            let mut t = 0u64;
            let mut level = false;
            let mut changes = Vec::new();
            for _ in 0..rand(40) {
                t += 2 * rand(60_000) + 1;
                level = !level;
                changes.push((t, level));
            }
            // The definition: after the change at c_i, the level held for the
            // debounce time when the next change is later than c_i + debounce.
            let mut expected = Vec::new();
            let mut reported = false;
            for (i, &(c, l)) in changes.iter().enumerate() {
                let held = changes.get(i + 1).is_none_or(|&(next, _)| next > c + deb);
                if held && l != reported {
                    expected.push((c + deb, l));
                    reported = l;
                }
            }
            // The core as the driver runs it.
            let mut d = Debouncer::new(false, Duration::from_micros(deb));
            let mut got = Vec::new();
            let mut level_now = false;
            let us = Duration::from_micros;
            for &(c, l) in changes.iter().chain(std::iter::once(&(u64::MAX / 2, false))) {
                if let Some(dl) = d.deadline() {
                    if dl < us(c) {
                        if let Some(r) = d.settle(dl, level_now) {
                            got.push((dl.as_micros() as u64, r));
                        }
                    }
                }
                if c == u64::MAX / 2 {
                    break;
                }
                level_now = l;
                d.edge(us(c));
            }
            assert_eq!(got, expected, "signal {changes:?}");
        }
    }

    #[test]
    fn config_keys_and_defaults() {
        use serde_json::json;
        let parse = |v: serde_json::Value| {
            let (c, errs) = Section::read("devices[1]", &v, GpioInputConfig::parse);
            (c.expect("a table"), errs)
        };
        let (c, errs) = parse(json!({"line": 22}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(c, GpioInputConfig { line: 22, pull: Pull::Up, active_low: true, debounce: ms(50) });
        let (c, errs) = parse(json!({"line": 5, "pull": "none", "active_low": false, "debounce_ms": 0}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(c, GpioInputConfig { line: 5, pull: Pull::Off, active_low: false, debounce: ms(0) });
        let (_, errs) = parse(json!({"pull": "sideways", "debounce_ms": 20000}));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["devices[1].line", "devices[1].pull", "devices[1].debounce_ms"]);
    }
}
