//! Helper threads, each with an event loop of its own.

/// Runs the future `make` builds on a named thread of its own, in a single-threaded event loop
/// (tokio current_thread + LocalSet): the shape of every helper thread (admin, health checks).
/// The future is built on that thread, so it may hold `!Send` state.
pub fn spawn<F, Fut>(name: &str, make: F) -> std::io::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let thread = name.to_string();
    std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("{thread} cannot start its event loop: {e}");
                    return;
                }
            };
            tokio::task::LocalSet::new().block_on(&rt, make());
        })?;
    Ok(())
}
