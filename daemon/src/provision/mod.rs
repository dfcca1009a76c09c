//! Provisioning: the key operations, the command schema, and the admin socket.
//!
//! - [`keys`]: [`keys::KeyService`], the one library API for every change.
//! - [`command`]: parsing commands, dispatching ops, building replies.
//! - [`admin`]: the local Unix socket `porterctl` talks to.
//! - [`mqtt`]: the MQTT session: commands, replies, events, status.
//! - [`replies`]: idempotency by command id.
//! - [`seal`]: the controller's signature on every reply, event and status it publishes.
//! - [`signed`]: signed commands: the portal keys, the replay guard.
//! - [`events`]: `events.get`, events read back from the audit log.
//! - [`error`]: the contract's error codes.

pub mod admin;
pub mod command;
pub mod error;
pub mod events;
pub mod home_assistant;
pub mod keys;
pub mod mqtt;
pub mod replies;
pub mod seal;
pub mod signed;
pub mod status;

pub use command::{Command, Control};
pub use error::{ErrorCode, OpError};
pub use keys::KeyService;

// Lives below provision so the audit log can lower its writer too.
pub use crate::priority::{lower_this_thread, BACKGROUND_NICE};

/// Runs provisioning work (parsing a command, a key operation, a sync with
/// its HMACs and store flushes) on tokio's blocking pool, on a thread whose
/// CPU priority is lowered: on a two-core controller a 100,000-holder sync
/// must yield the cores to the drivers and the decision loop, which run on
/// the async workers at normal priority. A pool thread keeps its lowered
/// priority for later blocking work, which is all background work too.
pub async fn background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        lower_this_thread();
        f()
    })
    .await
}
