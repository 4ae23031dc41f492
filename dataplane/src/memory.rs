//! Handing freed memory back to the kernel after a config change, and what the process holds.

/// Parsing a large config (or an xDS update) makes short-lived trees many times its size;
/// glibc keeps what they leave in its arenas, and a proxy that took ten thousand clusters once
/// would otherwise hold that peak for good. Called after each config change, never on the data
/// path.
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The process's resident set size in bytes (0 if /proc cannot say).
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}
