//! sluice's userspace IP/TCP stack: not implemented yet.
//!
//! This crate will hold the smoltcp-based stack, its packet devices (TAP, pcap, in-memory pair,
//! DPDK ports) and the flow table that hands each packet to its own connection. It plugs into
//! the dataplane through `sluice::io::ByteStream`, the transport seam the protocol, stream and
//! proxy layers already use. Nothing here pretends to work yet: the crate is empty on purpose.
