//! porterd: the access-control daemon of a package room.
//!
//! Layout:
//! - [`access`]: the decision core, keypad entry and lockout. Pure and
//!   synchronous: no I/O, no tokio tasks, no allocation on the decision path.
//! - [`store`]: sled behind a narrow interface, keyed hashes, records.
//! - [`provision`]: the key operations (one library API for the admin socket
//!   and MQTT), the command and reply schema, the admin socket.
//! - [`runtime`]: wiring: devices, the decision loop, doors, the audit writer,
//!   shutdown.
//! - [`audit`]: the audit log and the event bus: one writer thread numbers,
//!   stores and publishes events. Below `runtime` and `provision`, which both
//!   use it.
//! - [`event`]: every event the daemon records, one typed variant per kind.
//! - [`config`]: raw TOML and environment to a validated [`config::Config`].
//! - [`priority`]: lowering the priority of background threads.
//! - [`ownership`]: owner and mode checks of the folders and files the
//!   daemon trusts (data_dir, secret_file, the admin socket); below all.
//! - [`memory`]: the allocator: one arena, freed memory given back after a sync.
//! - [`time`]: the injectable wall clock (`Clock`), below everything that reads the time.

pub mod access;
pub mod audit;
pub mod config;
pub mod doctor;
pub mod event;
pub mod memory;
pub mod ownership;
/// Text from outside escaped for a log line: the drivers' helper, one for both crates.
pub use porter_drivers::logtext;
pub mod priority;
pub mod provision;
pub mod runtime;
pub mod store;
pub mod time;
