//! The stack's counters. One thread writes them (the one running the stack); any thread may read
//! them for /stats, so they are atomics written with plain load+store.

use crate::classify::DropReason;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1)
    }
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    pub fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

macro_rules! stack_stats {
    ($($name:ident: $help:literal,)*) => {
        #[derive(Default)]
        pub struct StackStats {
            $(#[doc = $help] pub $name: Counter,)*
        }

        impl StackStats {
            /// (name, help, value) of every counter, for exporting.
            pub fn each(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $help, self.$name.get()),)*]
            }
        }
    };
}

stack_stats! {
    rx_frames: "frames received",
    rx_coalesced_frames: "frames larger than the MTU: TCP segments the device coalesced",
    tx_frames: "frames sent",
    tx_errors: "frames the device refused to send",
    rx_tcp_segments: "TCP segments delivered to a connection",
    rx_unknown_flow: "TCP segments for no connection and no listener (answered with RST unless RST)",
    rx_drop_truncated: "frames dropped: shorter than their headers say",
    rx_drop_bad_ip_header: "frames dropped: malformed IP header",
    rx_drop_bad_checksum: "frames dropped: IP, TCP or ICMPv6 checksum wrong",
    rx_drop_bad_tcp_header: "frames dropped: malformed TCP header or options",
    rx_drop_fragment: "frames dropped: IP fragments",
    rx_drop_unknown_ethertype: "frames dropped: neither IPv4, IPv6 nor ARP",
    syn_dropped_half_open_full: "SYNs dropped because the listener's half-open queue was full",
    syn_dropped_flow_limit: "SYNs dropped because the stack holds its maximum of connections",
    accept_queue_overflow: "handshakes completed with a full accept queue (reset)",
    flows_active: "connections in the flow table, any state",
    flows_half_open: "passive connections not yet established",
    flows_created: "connections created (passive and active)",
    connect_failed: "active opens refused or timed out",
    fallback_to_kernel: "frames passed to the host kernel's fallback TAP (not served by the stack, or ARP/NDP copies)",
    fallback_from_kernel: "frames the host kernel sent through its fallback TAP to the wire",
    fallback_errors: "frames lost between the wire and the kernel's fallback TAP (a full queue, a device error)",
}

impl StackStats {
    pub fn dropped(&self, reason: DropReason) {
        match reason {
            DropReason::Truncated => self.rx_drop_truncated.inc(),
            DropReason::BadIpHeader => self.rx_drop_bad_ip_header.inc(),
            DropReason::BadChecksum => self.rx_drop_bad_checksum.inc(),
            DropReason::BadTcpHeader => self.rx_drop_bad_tcp_header.inc(),
            DropReason::Fragment => self.rx_drop_fragment.inc(),
            DropReason::UnknownEthertype => self.rx_drop_unknown_ethertype.inc(),
        }
    }
}
