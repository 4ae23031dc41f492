//! sluice's dataplane: the four layers (IO, protocol, stream, proxy), the Envoy-format config
//! model, the per-core workers with their config swap, stats and the admin API.

pub mod admin;
pub mod config;
pub mod control_status;
pub mod drain;
pub mod error;
pub mod event_loop;
pub mod fasthash;
pub mod io;
pub mod logging;
pub mod memory;
pub mod protocol;
pub mod proxy;
pub mod push;
pub mod route;
pub mod runtime;
pub mod snapshot;
pub mod stats;
pub mod stats_text;
pub mod stream;
