//! Porter's device layer: the contract every driver meets, the supervisor
//! that keeps drivers running, and the drivers themselves.
//!
//! Layout:
//! - [`contract`]: what inputs report ([`Input`], [`Health`], [`Condition`]) and how outputs
//!   are driven ([`Output`]), and the door's feedback a device may receive
//!   ([`Feedback`], [`FeedbackReceiver`]).
//! - [`supervise`]: restart with capped, jittered backoff; cancel at shutdown.
//! - [`hotplug`]: wait for a device's path with inotify, so a device plugged
//!   back is reopened at once and an absent one costs nothing.
//! - [`settings`]: reading a config table with every error and its key path;
//!   each kind parses its own keys with it.
//! - [`kinds`]: the registry, one line per kind. Each kind describes itself
//!   in its module: a [`Descriptor`] (role, what it reports, the access its
//!   nodes need, its key parser) and [`DeviceKind`] on its config (typed
//!   [`Claim`]s, doctor [`Check`]s, its drivers).
//! - one module per kind: [`console`], [`sim_lock`].
//! - the serial kinds in [`serial`]: [`serial::keypad`], [`serial::qr`],
//!   [`serial::rfid`] and [`serial::relay`], beside the port code they share.
//! - [`hid`] (evdev scanners and keypads) and [`exec`] (a program the
//!   daemon runs, speaking JSON lines).
//! - [`osdp`]: OSDP readers on an RS-485 bus, Porter as the control panel
//!   (libosdp), one bus thread per port shared by its readers.
//! - the GPIO kinds in [`gpio`]: [`gpio::wiegand`], [`gpio::input`] and
//!   [`gpio::relay`], on the small GPIO trait there (the kernel's character
//!   device in [`gpio::cdev`], the default; rppal on a Raspberry Pi; a fake
//!   in tests).
//! - the old paths of the serial and GPIO kinds (`serial_relay`,
//!   `gpio_input`, ...) stay as re-exports.
//! - [`logtext`]: text from outside escaped for a log line (one helper
//!   for both crates).
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
pub mod hotplug;
pub mod kinds;
pub mod lines;
pub mod logtext;
#[cfg(feature = "osdp")]
pub mod osdp;
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

pub use contract::{
    CardUid, Condition, DeviceReport, Feedback, FeedbackReceiver, Health, Input, InputDriver, InputSink, Output, Report,
};
pub use error::{DriverError, ErrorKind};
pub use kinds::{Access, Check, Claim, Descriptor, DeviceKind, KindConfig, Reports, Role, KINDS, REGISTRY};
pub use settings::{ConfigError, ConfigErrors, Section};
pub use supervise::{supervise, Backoff, Ended};
