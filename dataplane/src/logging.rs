//! Logging with `tracing`: the level comes from `-l LEVEL` (Envoy's flag and level names), else
//! RUST_LOG, else info.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Maps Envoy's level names onto tracing's.
pub fn level_filter(level: &str) -> Result<&'static str, String> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "critical" => "error",
        "off" => "off",
        other => {
            return Err(format!(
                "unknown log level \"{other}\" (expected trace, debug, info, warning, error, critical or off)"
            ))
        }
    })
}

/// The filter for `level` (tracing's name). At info and warn, h2's warning about a PING
/// acknowledgement it did not expect is left out: sluice hides each draining client's answer
/// to h2's shutdown PING on purpose (proxy::http::h2_guard), so it would be logged for every
/// drained HTTP/2 connection. At debug and trace it shows, with the rest.
fn filter(level: &str) -> EnvFilter {
    match level {
        "info" | "warn" => EnvFilter::new(format!("{level},h2::proto::ping_pong=error")),
        _ => EnvFilter::new(level),
    }
}

/// Changes the level of a running process (admin's `/logging?level=`).
type SetLevel = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static SET_LEVEL: std::sync::OnceLock<SetLevel> = std::sync::OnceLock::new();

pub fn init(level: Option<&str>) -> Result<(), String> {
    let filter = match level {
        Some(l) => filter(level_filter(l)?),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| filter("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    let _ = SET_LEVEL.set(Box::new(move |f| {
        handle.reload(f).map_err(|e| e.to_string())
    }));
    Ok(())
}

/// Sets every logger to `level` (Envoy's names), as `-l` would have at start.
pub fn set_level(level: &str) -> Result<&'static str, String> {
    let name = level_filter(level)?;
    let set = SET_LEVEL
        .get()
        .ok_or("logging was not set up through sluice::logging::init")?;
    set(filter(name))?;
    Ok(name)
}
