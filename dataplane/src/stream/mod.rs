//! Stream layer: one exchange between a downstream and an upstream. For the L4 TCP proxy an
//! exchange is the whole connection pair, moved by [`pump`]; request/response streams (Bolt,
//! HTTP) arrive with their codecs.

pub mod pump;

pub use pump::{pump, Direction, Observer, Outcome, PumpOptions, Side};
