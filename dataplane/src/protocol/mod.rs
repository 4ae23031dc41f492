//! Protocol layer: sans-IO codecs (bytes -> frames -> bytes).
//!
//! The L4 TCP proxy moves opaque bytes and needs no codec, so this layer is empty in this
//! version: the Bolt codec and the X-Protocol framework (multiplexed RPC codecs, protocol
//! detection) are the next piece of work and live here. The rule they follow: a codec never does
//! IO; it is fed bytes and returns frames or "need more", so it can be unit-tested, fuzzed and
//! benchmarked without sockets, and runs unchanged over every transport.
