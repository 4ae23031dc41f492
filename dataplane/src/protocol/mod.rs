//! Protocol layer: sans-IO codecs (bytes -> frames -> bytes).
//!
//! A codec never does IO: it is fed bytes and returns a frame head or "need more", and it edits
//! or builds frames in buffers. So codecs are unit-tested, fuzzed and benchmarked without
//! sockets, and run unchanged over every transport.
//!
//! `xprotocol` is the interface every multiplexed RPC codec implements, `registry` the list of
//! codecs and the protocol detection over a connection's first bytes. Adding a protocol means
//! one module implementing [`xprotocol::Codec`] and one line in [`registry::builtin`].

pub mod bolt;
pub mod crc32;
pub mod hessian;
pub mod http1;
pub mod registry;
pub mod xprotocol;
