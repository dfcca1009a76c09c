//! Provisioning: the key operations, the command schema, and the admin socket.
//!
//! - [`keys`]: [`keys::KeyService`], the one library API for every change.
//! - [`command`]: parsing commands, dispatching ops, building replies.
//! - [`admin`]: the local Unix socket `porterctl` talks to.
//! - [`mqtt`]: the MQTT session: commands, replies, events, status.
//! - [`replies`]: idempotency by command id.
//! - [`error`]: the contract's error codes.

pub mod admin;
pub mod command;
pub mod error;
pub mod keys;
pub mod mqtt;
pub mod replies;

pub use command::{Command, Control};
pub use error::{ErrorCode, OpError};
pub use keys::KeyService;
