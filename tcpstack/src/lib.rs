//! sluice's userspace IP/TCP stack, on smoltcp.
//!
//! - [`device`]: the packet-device seam (TAP, pcap, in-memory pair here; DPDK ports in `hwconfig`).
//! - [`stack`]: one smoltcp interface and a flow table of one-socket sets, so per-packet work does
//!   not grow with the number of connections; listeners with real backlogs; timers in a heap.
//! - [`socket`] and [`driver`]: tokio `AsyncRead`/`AsyncWrite` streams and the task that runs a
//!   stack, so the dataplane's layers run on it unchanged.
//! - [`pcap`]: recording any device to a pcap file, and reading captures for replay.
//! - [`impair`]: loss and delay in front of any device, where the kernel has no netem.
//! - [`fallback`]: the host kernel's TAP, which gets what the stack does not serve.

pub mod buffers;
pub mod classify;
pub mod device;
#[cfg(feature = "dpdk")]
pub mod dpdk_port;
pub mod driver;
pub mod fallback;
pub mod impair;
pub mod memory;
pub mod pcap;
pub mod sim;
pub mod socket;
pub mod stack;
pub mod stats;
pub mod tap;
mod timers;

pub use device::{DeviceCaps, PacketDevice};
pub use smoltcp::time::Instant;
pub use stack::{Congestion, FlowRef, Stack, StackConfig, StackError, TcpTuning};
