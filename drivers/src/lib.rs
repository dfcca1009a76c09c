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
//! - the serial kinds [`serial_keypad`], [`serial_qr`], [`serial_rfid`] and
//!   [`serial_relay`], with what they share in [`serial`].
//! - [`hid`] (evdev scanners and keypads) and [`exec`] (a program the
//!   daemon runs, speaking JSON lines).
//! - the GPIO kinds [`wiegand`], [`gpio_input`] and [`gpio_relay`], on the
//!   small GPIO trait in [`gpio`] (rppal on a Raspberry Pi, a fake in tests).
//! - [`fake`]: test doubles.
//!
//! Drivers know nothing of holders, doors or policy: they turn bytes into
//! inputs and set lines on and off.

pub mod console;
pub mod contract;
pub mod error;
pub mod exec;
pub mod fake;
pub mod gpio;
pub mod hid;
pub mod kinds;
pub mod lines;
#[cfg(feature = "pcsc")]
pub mod pcsc;
pub mod serial;
pub mod settings;
pub mod sim_lock;
pub mod supervise;

// The kinds' old paths, from before they were grouped by family.
pub use gpio::input as gpio_input;
pub use gpio::relay as gpio_relay;
pub use gpio::wiegand;
pub use serial::keypad as serial_keypad;
pub use serial::qr as serial_qr;
pub use serial::relay as serial_relay;
pub use serial::rfid as serial_rfid;

pub use contract::{CardUid, DeviceReport, Health, Input, InputDriver, InputSink, Output, Report};
pub use error::{DriverError, ErrorKind};
pub use kinds::{Access, Check, Claim, Descriptor, DeviceKind, KindConfig, Reports, Role, KINDS, REGISTRY};
pub use settings::{ConfigError, ConfigErrors, Section};
pub use supervise::{supervise, Backoff, Ended};
