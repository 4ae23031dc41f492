//! Handing freed memory back to the kernel after a config change.

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
