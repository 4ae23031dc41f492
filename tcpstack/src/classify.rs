//! Ingress classification: the few header reads that find a TCP segment's flow before smoltcp
//! sees it, and the checks that reject malformed frames with a reason that can be counted.
//! smoltcp drops bad frames silently; doing the checks here first is what lets the stack count
//! them, and lets smoltcp skip verifying checksums a second time.

use smoltcp::wire::{
    ArpPacket, EthernetFrame, EthernetProtocol, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv6Packet, TcpPacket,
};

/// A TCP endpoint pair as seen from this stack: `local` is the packet's destination.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    pub local: (IpAddress, u16),
    pub remote: (IpAddress, u16),
}

/// The control bits the flow table acts on.
#[derive(Clone, Copy, Debug)]
pub struct TcpHead {
    pub key: FlowKey,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    /// Sequence number just past this segment (its data, SYN and FIN counted).
    pub seq_end: u32,
    pub seq: u32,
    pub fin: bool,
    /// Where the IP header, the TCP header and the TCP payload start in the frame.
    pub ip_at: usize,
    pub tcp_at: usize,
    pub payload_at: usize,
}

/// Why a frame was dropped before any socket saw it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DropReason {
    Truncated,
    BadIpHeader,
    BadChecksum,
    BadTcpHeader,
    Fragment,
    UnknownEthertype,
}

/// What a received frame is.
#[derive(Debug)]
pub enum Class {
    Tcp(TcpHead),
    /// Neighbour resolution (ARP, NDP): may unblock connections waiting for a link address.
    Neighbor,
    /// Anything else smoltcp handles on its own (ICMP echo, unknown protocols it answers or drops).
    Other,
    Drop(DropReason),
}

/// Classifies an Ethernet frame. `verify` says whether checksums still need checking.
pub fn classify(frame: &[u8], verify: bool) -> Class {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Class::Drop(DropReason::Truncated);
    };
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => ipv4(eth.payload(), verify),
        EthernetProtocol::Ipv6 => ipv6(eth.payload(), verify),
        EthernetProtocol::Arp => match ArpPacket::new_checked(eth.payload()) {
            Ok(_) => Class::Neighbor,
            Err(_) => Class::Drop(DropReason::Truncated),
        },
        _ => Class::Drop(DropReason::UnknownEthertype),
    }
}

fn ipv4(bytes: &[u8], verify: bool) -> Class {
    let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
        return Class::Drop(DropReason::BadIpHeader);
    };
    if ip.version() != 4 {
        return Class::Drop(DropReason::BadIpHeader);
    }
    if verify && !ip.verify_checksum() {
        return Class::Drop(DropReason::BadChecksum);
    }
    // Linux TCP sets DF and never fragments; reassembly buffers are a memory attack surface a
    // proxy does not need, so fragments are dropped and counted.
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Class::Drop(DropReason::Fragment);
    }
    if ip.next_header() != IpProtocol::Tcp {
        return Class::Other;
    }
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    tcp(
        ip.payload(),
        src,
        dst,
        verify,
        ETHERNET + ip.header_len() as usize,
    )
}

const ETHERNET: usize = 14;

fn ipv6(bytes: &[u8], verify: bool) -> Class {
    let Ok(ip) = Ipv6Packet::new_checked(bytes) else {
        return Class::Drop(DropReason::BadIpHeader);
    };
    if ip.version() != 6 {
        return Class::Drop(DropReason::BadIpHeader);
    }
    let (src, dst) = (
        IpAddress::Ipv6(ip.src_addr()),
        IpAddress::Ipv6(ip.dst_addr()),
    );
    match ip.next_header() {
        IpProtocol::Tcp => tcp(ip.payload(), src, dst, verify, ETHERNET + 40),
        IpProtocol::Icmpv6 => {
            let Ok(icmp) = Icmpv6Packet::new_checked(ip.payload()) else {
                return Class::Drop(DropReason::Truncated);
            };
            if verify && !icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()) {
                return Class::Drop(DropReason::BadChecksum);
            }
            let caps = smoltcp::phy::ChecksumCapabilities::ignored();
            match Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp, &caps) {
                Ok(Icmpv6Repr::Ndisc(_)) => Class::Neighbor,
                Ok(_) => Class::Other,
                Err(_) => Class::Drop(DropReason::BadIpHeader),
            }
        }
        _ => Class::Other,
    }
}

/// `at`: where the TCP header starts in the frame.
fn tcp(bytes: &[u8], src: IpAddress, dst: IpAddress, verify: bool, at: usize) -> Class {
    let Ok(seg) = TcpPacket::new_checked(bytes) else {
        return Class::Drop(DropReason::BadTcpHeader);
    };
    if verify && !seg.verify_checksum(&src, &dst) {
        return Class::Drop(DropReason::BadChecksum);
    }
    // Options are parsed in full so a segment with bogus ones is counted here rather than
    // silently ignored further down.
    let mut options = seg.options();
    while !options.is_empty() {
        match smoltcp::wire::TcpOption::parse(options) {
            Ok((rest, _)) => options = rest,
            Err(_) => return Class::Drop(DropReason::BadTcpHeader),
        }
    }
    if seg.src_port() == 0 || seg.dst_port() == 0 {
        return Class::Drop(DropReason::BadTcpHeader);
    }
    Class::Tcp(TcpHead {
        key: FlowKey {
            local: (dst, seg.dst_port()),
            remote: (src, seg.src_port()),
        },
        syn: seg.syn(),
        ack: seg.ack(),
        rst: seg.rst(),
        seq_end: (seg.seq_number().0 as u32)
            .wrapping_add(seg.payload().len() as u32 + seg.syn() as u32 + seg.fin() as u32),
        seq: seg.seq_number().0 as u32,
        fin: seg.fin(),
        ip_at: ETHERNET,
        tcp_at: at,
        payload_at: at + seg.header_len() as usize,
    })
}
