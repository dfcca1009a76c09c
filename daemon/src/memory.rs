//! How porterd uses the C library's allocator: one arena, and giving memory
//! back after a large piece of work.
//!
//! A full sync of 100,000 holders parses, hashes and stages several hundred
//! megabytes of short-lived allocations on the provisioning threads, next to
//! the long-lived ones (the store's pages, the new decision index). glibc's
//! malloc keeps the freed memory in each thread's arena for reuse; after a
//! sync most of it would stay resident for nothing. [`trim`] hands every
//! whole free page of every arena back to the kernel (docs/performance.md).

/// Returns free heap pages to the kernel (glibc's `malloc_trim(0)`, which
/// walks every arena); a no-op where the C library is not glibc. It takes a
/// few milliseconds: call it after a sync commit, not on a hot path.
#[allow(unsafe_code)]
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free memory inside the
        // allocator; it is thread-safe and leaves allocations untouched.
        unsafe { libc::malloc_trim(0) };
    }
}

/// Limits malloc to one arena. Call it first thing in `main`, before any
/// thread starts; a no-op where the C library is not glibc.
///
/// glibc gives each thread that allocates under contention an arena of its
/// own, and a freed chunk goes back only to its own arena: the allocations of
/// a sync, spread over the blocking pool's and MQTT's threads, left each
/// arena holding what it once held (a 100,000-holder sync over MQTT ended at
/// 75 MiB with the default arenas, 53 MiB with one; docs/performance.md). The
/// decision path does not allocate, so one arena costs it nothing.
#[allow(unsafe_code)]
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; it is called
        // before any other thread exists, and M_ARENA_MAX takes any
        // positive value.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}
