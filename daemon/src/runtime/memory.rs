//! How the process uses memory.
//!
//! glibc's malloc gives each thread that allocates under contention an arena
//! of its own, and a freed chunk goes back only to its own arena. In porterd
//! the allocations of a sync (command payloads, records, store pages) spread
//! over the blocking pool's threads, each arena keeps what it once held, and
//! after a 100,000-holder sync the process held 17 MiB more with the default
//! arenas than with one (73 against 90 MiB, docs/performance.md). The
//! decision path does not allocate, so one arena costs it nothing; the other
//! threads are provisioning, drivers and MQTT, none of which allocates at a
//! rate where the arena's lock would matter.

/// Limits malloc to one arena. Call it first thing in `main`, before any
/// thread starts; a no-op where the C library is not glibc.
#[allow(unsafe_code)]
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; it is called
        // before any other thread exists, and M_ARENA_MAX takes any
        // positive value.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        debug_assert_eq!(ok, 1, "mallopt(M_ARENA_MAX) refused");
    }
}
