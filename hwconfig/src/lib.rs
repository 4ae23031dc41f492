//! The hardware side of sluice (DPDK EAL options, ports, queues, RSS, lcores, hugepages, and a
//! machine check that says what is missing): not implemented yet. The crate is empty on purpose
//! so nothing pretends to work before the DPDK dataplane exists.
