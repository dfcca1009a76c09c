//! Thread priority for background work.
//!
//! On a two-core controller the drivers and the decision loop, on the async
//! workers at normal priority, must keep the cores when work that may wait
//! (provisioning, a sync, the audit writer's flushes) runs. Those threads
//! lower themselves here. It sits below [`crate::audit`] and
//! [`crate::provision`] so both can use it without importing each other.

/// How much lower than the decision path background work runs (a `nice` value).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`], once.
/// For threads whose work may wait: provisioning, the audit writer.
#[allow(unsafe_code)]
pub fn lower_this_thread() {
    thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if !LOWERED.with(|l| l.replace(true)) {
        // SAFETY: setpriority only changes scheduling; on Linux, PRIO_PROCESS
        // with who = 0 names the calling thread alone.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower a provisioning thread's priority");
        }
    }
}
