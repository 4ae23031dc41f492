//! Kernel fallback: when the stack owns the wire (a DPDK port, or a TAP standing in for one),
//! the host kernel reaches the network through a second TAP that carries the same addresses and
//! MAC. Frames the stack does not serve and the rules here select — ICMP, ssh, any TCP port
//! without a listener or connection, UDP — are handed to that TAP, ARP and NDP are copied to it
//! (both sides need them), and whatever the kernel sends on it goes out on the wire unchanged.

use crate::device::PacketDevice;
use std::ops::RangeInclusive;

/// What a rule selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP and ICMPv6 other than neighbour discovery.
    Icmp,
    /// ARP and NDP: not chosen by rules, since the kernel always gets a copy (it must resolve
    /// its neighbours to answer anything) while the stack keeps answering them too.
    Neighbor,
    /// Any other IP protocol or ethertype.
    Other,
    Any,
}

impl Protocol {
    pub fn from_name(name: &str) -> Option<Protocol> {
        Some(match name {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "other" => Protocol::Other,
            "any" => Protocol::Any,
            _ => return None,
        })
    }

    /// Whether rules for this protocol may name ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::Any)
    }
}

/// One rule: a protocol and, for TCP and UDP, destination port ranges (none: every port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub protocol: Protocol,
    pub ports: Vec<RangeInclusive<u16>>,
}

/// The rules choosing what the kernel gets; a frame goes there if any rule matches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules(pub Vec<Rule>);

impl Rules {
    /// Everything the stack does not serve itself.
    pub fn everything() -> Rules {
        Rules(vec![Rule {
            protocol: Protocol::Any,
            ports: Vec::new(),
        }])
    }

    /// Whether a frame of `protocol` to destination port `port` (TCP, UDP) goes to the kernel.
    /// A frame without a port (a later IP fragment) matches only rules without ports.
    pub fn wants(&self, protocol: Protocol, port: Option<u16>) -> bool {
        self.0.iter().any(|r| {
            (r.protocol == Protocol::Any || r.protocol == protocol)
                && (r.ports.is_empty()
                    || port.is_some_and(|p| r.ports.iter().any(|x| x.contains(&p))))
        })
    }

    /// Whether `frame` goes to the kernel, by its headers alone.
    pub fn wants_frame(&self, frame: &[u8]) -> bool {
        let (protocol, port) = what(frame);
        self.wants(protocol, port)
    }
}

/// The protocol of an Ethernet frame and, for TCP and UDP, its destination port. Reads only
/// fixed header fields, each bounds-checked: the frame is untrusted.
pub fn what(frame: &[u8]) -> (Protocol, Option<u16>) {
    const ARP: [u8; 2] = [0x08, 0x06];
    const IPV4: [u8; 2] = [0x08, 0x00];
    const IPV6: [u8; 2] = [0x86, 0xdd];
    let (proto, l4) = match frame.get(12..14) {
        Some(t) if t == ARP => return (Protocol::Neighbor, None),
        Some(t) if t == IPV4 => {
            let Some(&vihl) = frame.get(14) else {
                return (Protocol::Other, None);
            };
            let ihl = (vihl & 0x0f) as usize * 4;
            let frag_offset = frame
                .get(20..22)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) & 0x1fff);
            let proto = frame.get(23).copied().unwrap_or(0);
            // Later fragments carry no transport header.
            let l4 = (frag_offset == 0).then_some(14 + ihl);
            (proto, l4)
        }
        Some(t) if t == IPV6 => (frame.get(20).copied().unwrap_or(0), Some(54)),
        _ => return (Protocol::Other, None),
    };
    let port = |at: Option<usize>| {
        at.and_then(|at| frame.get(at + 2..at + 4))
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    match proto {
        6 => (Protocol::Tcp, port(l4)),
        17 => (Protocol::Udp, port(l4)),
        1 => (Protocol::Icmp, None),
        58 => {
            // NDP: router/neighbour solicitation and advertisement, redirect (133..=137).
            let ndp = l4
                .and_then(|at| frame.get(at))
                .is_some_and(|t| (133..=137).contains(t));
            let p = if ndp {
                Protocol::Neighbor
            } else {
                Protocol::Icmp
            };
            (p, None)
        }
        _ => (Protocol::Other, None),
    }
}

/// The kernel's side of the stack: its TAP and the rules for what goes there.
pub struct KernelPath {
    pub(crate) device: Box<dyn PacketDevice>,
    pub(crate) rules: Rules,
    pub(crate) buf: Vec<u8>,
    /// The device failed to receive (the TAP was removed): it is left alone from then on.
    pub(crate) failed: bool,
}

impl KernelPath {
    pub fn new(device: Box<dyn PacketDevice>, rules: Rules) -> KernelPath {
        KernelPath {
            device,
            rules,
            buf: vec![0; crate::DeviceCaps::MAX_RX_FRAME],
            failed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&frag.to_be_bytes());
        f.extend_from_slice(&[64, proto, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn frames_are_told_apart_by_protocol_and_port() {
        let ssh = ipv4(6, 0, &[0x30, 0x39, 0, 22]);
        assert_eq!(what(&ssh), (Protocol::Tcp, Some(22)));
        assert_eq!(
            what(&ipv4(17, 0, &[0, 53, 0x1f, 0x90])),
            (Protocol::Udp, Some(8080))
        );
        assert_eq!(what(&ipv4(1, 0, &[8, 0])), (Protocol::Icmp, None));
        // A later fragment has no ports.
        assert_eq!(what(&ipv4(17, 185, &[0, 53, 0, 53])), (Protocol::Udp, None));
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        assert_eq!(what(&arp), (Protocol::Neighbor, None));
        let mut v6 = vec![0u8; 12];
        v6.extend_from_slice(&[0x86, 0xdd]);
        v6.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 58, 255]);
        v6.extend_from_slice(&[0; 32]);
        let mut ns = v6.clone();
        ns.push(135);
        assert_eq!(what(&ns), (Protocol::Neighbor, None));
        v6.push(128);
        assert_eq!(what(&v6), (Protocol::Icmp, None));
        // Truncated and foreign frames never panic.
        for n in 0..ssh.len() {
            let _ = what(&ssh[..n]);
        }
        assert_eq!(what(&[0u8; 14]), (Protocol::Other, None));
    }

    #[test]
    fn rules_select_by_protocol_and_port_range() {
        let rules = Rules(vec![
            Rule {
                protocol: Protocol::Tcp,
                ports: vec![22..=22, 8000..=8100],
            },
            Rule {
                protocol: Protocol::Icmp,
                ports: vec![],
            },
        ]);
        assert!(rules.wants(Protocol::Tcp, Some(22)));
        assert!(rules.wants(Protocol::Tcp, Some(8050)));
        assert!(!rules.wants(Protocol::Tcp, Some(8101)));
        assert!(!rules.wants(Protocol::Tcp, None));
        assert!(rules.wants(Protocol::Icmp, None));
        assert!(!rules.wants(Protocol::Udp, Some(22)));
        assert!(!rules.wants(Protocol::Neighbor, None));
        let all = Rules::everything();
        assert!(all.wants(Protocol::Udp, None) && all.wants(Protocol::Other, None));
    }
}
