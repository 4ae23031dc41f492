//! Stream layer: one exchange between a downstream and an upstream.
//!
//! For the L4 TCP proxy an exchange is the whole connection pair, moved by [`pump`]. For
//! multiplexed RPC protocols it is one request and its response: [`exchange`] (correlation and
//! the one answer every request gets), [`upstream`] (multiplexed upstream connections with id
//! rewriting, deadlines and heartbeats, pooled per host), [`framed`] (frames cut from a byte
//! stream without copying), [`outbox`] (batched, bounded writes) and [`conn_clock`] (a
//! downstream connection's idle and frame timeouts).

pub mod conn_clock;
pub mod deadlines;
pub mod exchange;
pub mod framed;
pub mod outbox;
pub mod pump;
pub mod signal;
pub mod upstream;

pub use pump::{pump, Direction, Observer, Outcome, PumpOptions, Side};
