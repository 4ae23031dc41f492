//! The hardware side of sluice's DPDK dataplane, as data: the EAL options, the ports with their
//! queues, descriptors, MTU and RSS, which lcore polls which queue, and the mempools
//! ([`model`]); the rules a valid layout follows ([`model::HwConfig::validate`]); the EAL
//! argument list it turns into ([`eal`]); and a check of the machine against it ([`check`]) that
//! says in plain words what is missing and how to fix it, changing nothing unless asked.
//!
//! The YAML is read by the dataplane's config reader (`sluice.io.dpdk`), which gives errors
//! their path; this crate holds no parser. With the `dpdk` feature, [`dpdk`] binds the system's
//! DPDK 22.11 (EAL, mempools, ports with RSS, bursts); [`rss`] computes the Toeplitz hash and
//! queue a NIC gives a flow, so connections can be opened on ports that come back to their core.

pub mod check;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod eal;
pub mod model;
pub mod rss;

pub use model::HwConfig;
