//! Porter's device layer: the contract every driver meets, the supervisor
//! that keeps drivers running, and the drivers themselves.
//!
//! Layout:
//! - [`contract`]: what inputs report ([`Input`], [`Health`]) and how outputs
//!   are driven ([`Output`]).
//! - [`supervise`]: restart with capped, jittered backoff; cancel at shutdown.
//! - [`settings`]: reading a config table with every error and its key path;
//!   each kind parses its own keys with it.
//! - [`kinds`]: the registry from `kind = "..."` to config and driver.
//! - one module per kind: [`console`], [`sim_lock`].
//! - [`fake`]: test doubles.
//!
//! Drivers know nothing of holders, doors or policy: they turn bytes into
//! inputs and set lines on and off.

pub mod console;
pub mod contract;
pub mod error;
pub mod fake;
pub mod kinds;
pub mod settings;
pub mod sim_lock;
pub mod supervise;

pub use contract::{CardUid, DeviceReport, Health, Input, InputDriver, InputSink, Output, Report};
pub use error::{DriverError, ErrorKind};
pub use kinds::{Claim, KindConfig, Role, KINDS};
pub use settings::{ConfigError, ConfigErrors, Section};
pub use supervise::{supervise, Backoff, Ended};
