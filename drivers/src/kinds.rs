//! The registry of device kinds: parsing each kind's keys, what it claims,
//! and building the driver.
//!
//! A new kind adds a variant here, a module with its config and driver, a
//! section in docs/drivers.md, and a test through its real protocol.

use crate::console::{Console, ConsoleConfig};
use crate::contract::{InputDriver, Output};
use crate::settings::{ConfigErrors, Section};
use crate::sim_lock::{SimLock, SimLockConfig};

/// Every kind this build knows, as written in `kind = "..."`.
pub const KINDS: &[&str] = &["console", "sim_lock"];

/// Whether a device reads credentials or drives a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

/// An exclusive resource a device needs; two devices may not claim the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Claim {
    Stdin,
    Path(String),
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Stdin => f.write_str("standard input"),
            Claim::Path(p) => f.write_str(p),
        }
    }
}

/// A device's validated, kind-specific configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindConfig {
    Console(ConsoleConfig),
    SimLock(SimLockConfig),
}

impl KindConfig {
    /// Parses the kind's own keys from `sec`; unknown kinds are reported with
    /// the list of known ones.
    pub fn parse(kind: &str, sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Option<Self> {
        match kind {
            "console" => Some(KindConfig::Console(ConsoleConfig::parse(sec, errs))),
            "sim_lock" => Some(KindConfig::SimLock(SimLockConfig::parse(sec, errs))),
            other => {
                errs.push(
                    sec.key_path("kind"),
                    format!("unknown device kind `{other}`"),
                    Some(format!("use one of: {}", KINDS.join(", "))),
                );
                None
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            KindConfig::Console(_) => "console",
            KindConfig::SimLock(_) => "sim_lock",
        }
    }

    pub fn role(&self) -> Role {
        match self {
            KindConfig::Console(_) => Role::Input,
            KindConfig::SimLock(_) => Role::Output,
        }
    }

    /// What this device holds exclusively.
    pub fn claims(&self) -> Vec<Claim> {
        match self {
            KindConfig::Console(_) => vec![Claim::Stdin],
            KindConfig::SimLock(_) => vec![],
        }
    }

    /// The input driver, for input kinds; `id` is the device's id, for logs.
    pub fn input_driver(&self, id: &str) -> Option<Box<dyn InputDriver>> {
        let _ = id;
        match self {
            KindConfig::Console(_) => Some(Box::new(Console::new())),
            KindConfig::SimLock(_) => None,
        }
    }

    /// The output driver, for output kinds; `id` is the device's id, for logs.
    pub fn output_driver(&self, id: &str) -> Option<Box<dyn Output>> {
        match self {
            KindConfig::SimLock(_) => Some(Box::new(SimLock::new(id))),
            KindConfig::Console(_) => None,
        }
    }
}
