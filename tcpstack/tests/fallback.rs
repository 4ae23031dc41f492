//! Kernel fallback in the stack: what the stack does not serve reaches the kernel's device
//! byte for byte, what it serves never does, rules narrow the kernel's share, and what the
//! kernel sends goes out on the wire unchanged.

mod common;

use sluice_tcpstack::device::VnetHeader;
use sluice_tcpstack::fallback::{KernelPath, Protocol, Rule, Rules};
use sluice_tcpstack::sim::QueueDevice;
use sluice_tcpstack::{DeviceCaps, Instant, PacketDevice, Stack};
use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpPacket};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

/// The kernel's TAP as the test sees it: what the stack gave it, and what it will "send".
#[derive(Clone, Default)]
struct KernelTap {
    got: Rc<RefCell<Vec<Vec<u8>>>>,
    sends: Rc<RefCell<VecDeque<Vec<u8>>>>,
}

impl PacketDevice for KernelTap {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            ip_mtu: 1500,
            rx_checksum_verified: false,
            tx_checksum_offload: false,
        }
    }
    fn recv(&mut self, _: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.sends.borrow_mut().pop_front().map(|f| {
            buf[..f.len()].copy_from_slice(&f);
            f.len()
        }))
    }
    fn send(&mut self, _: Instant, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let mut f = vec![0; len];
        fill(&mut f);
        self.got.borrow_mut().push(f);
        Ok(())
    }
}

/// The replay scenarios' server (10.0.0.2, a listener on port 7) with a kernel path.
fn server(rules: Rules) -> (Stack<QueueDevice>, KernelTap) {
    let mut s = Stack::new(
        &common::config(2),
        QueueDevice::new(1500),
        Instant::from_millis(0),
    )
    .unwrap();
    s.listen("10.0.0.2:7".parse().unwrap()).unwrap();
    let kernel = KernelTap::default();
    s.set_kernel_path(KernelPath::new(Box::new(kernel.clone()), rules));
    (s, kernel)
}

fn syn() -> Vec<u8> {
    common::golden_input()
        .into_iter()
        .find(|f| {
            let eth = EthernetFrame::new_checked(f.as_slice()).unwrap();
            Ipv4Packet::new_checked(eth.payload())
                .ok()
                .and_then(|ip| TcpPacket::new_checked(ip.payload()).ok().map(|t| t.syn()))
                .unwrap_or(false)
        })
        .expect("the capture has a SYN")
}

/// `frame` (IPv4 TCP) sent to destination port `port`, checksums fixed.
fn to_port(frame: &[u8], port: u16) -> Vec<u8> {
    let mut f = frame.to_vec();
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
    let mut tcp = TcpPacket::new_unchecked(&mut f[34..]);
    tcp.set_dst_port(port);
    tcp.fill_checksum(&src, &dst);
    f
}

/// An ICMP echo request made from `frame`'s Ethernet and IP headers.
fn echo_request(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..34].to_vec();
    let mut icmp = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g'];
    let sum = !fold(
        icmp.chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
            .sum(),
    );
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&icmp);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_next_header(smoltcp::wire::IpProtocol::Icmp);
    ip.set_total_len(20 + 12);
    ip.fill_checksum();
    f
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn is_rst(frame: &[u8]) -> bool {
    TcpPacket::new_checked(&frame[34..]).is_ok_and(|t| t.rst())
}

#[test]
fn unserved_frames_reach_the_kernel_unchanged_and_served_ones_do_not() {
    let (mut s, kernel) = server(Rules::everything());
    let st = s.stats();
    let at = Instant::from_millis(1);
    let input = common::golden_input();
    let arp = input[0].clone();
    assert_eq!(&arp[12..14], &[0x08, 0x06], "the capture starts with ARP");

    // ARP: the stack answers, and the kernel gets a copy.
    s.receive_frame(at, &arp);
    assert_eq!(*kernel.got.borrow(), vec![arp.clone()]);
    let replies = std::mem::take(&mut s.device_mut().sent);
    assert_eq!(replies.len(), 1, "the stack still answers ARP");

    // A SYN for the listener: served by the stack, the kernel sees nothing.
    let syn = syn();
    s.receive_frame(at, &syn);
    assert_eq!(kernel.got.borrow().len(), 1);
    assert!(!s.device_mut().sent.is_empty(), "no SYN-ACK");
    s.device_mut().sent.clear();

    // A SYN for port 22 (no listener): the kernel's, byte for byte; no RST from the stack.
    let ssh = to_port(&syn, 22);
    s.receive_frame(at, &ssh);
    assert_eq!(kernel.got.borrow().last(), Some(&ssh));
    assert!(
        s.device().sent.is_empty(),
        "the stack answered: {:?}",
        s.device().sent
    );
    assert_eq!(st.rx_unknown_flow.get(), 0);

    // ICMP echo: the kernel answers it, not the stack.
    let ping = echo_request(&syn);
    s.receive_frame(at, &ping);
    assert_eq!(kernel.got.borrow().last(), Some(&ping));
    assert!(s.device().sent.is_empty());
    assert_eq!(st.fallback_to_kernel.get(), 3);

    // What the kernel sends goes to the wire unchanged.
    let reply = echo_request(&ssh);
    kernel.sends.borrow_mut().push_back(reply.clone());
    assert!(s.poll_kernel(at));
    assert_eq!(s.device().sent, vec![reply]);
    assert_eq!(st.fallback_from_kernel.get(), 1);
    assert!(!s.poll_kernel(at), "nothing more to move");
}

#[test]
fn rules_keep_what_they_do_not_name_from_the_kernel() {
    let rules = Rules(vec![Rule {
        protocol: Protocol::Tcp,
        ports: vec![22..=22],
    }]);
    let (mut s, kernel) = server(rules);
    let st = s.stats();
    let at = Instant::from_millis(1);
    // The client's ARP first, so the stack can answer it at all.
    s.receive_frame(at, &common::golden_input()[0]);
    s.device_mut().sent.clear();
    let syn = syn();
    s.receive_frame(at, &to_port(&syn, 22));
    assert_eq!(kernel.got.borrow().len(), 2, "the ARP copy and the SYN");
    // Port 23 is not the kernel's: the stack resets it, as it would without a fallback.
    s.receive_frame(at, &to_port(&syn, 23));
    assert_eq!(kernel.got.borrow().len(), 2);
    assert!(s.device().sent.iter().any(|f| is_rst(f)));
    assert_eq!(st.rx_unknown_flow.get(), 1);
    // ICMP is not named either: the stack answers the echo itself.
    s.device_mut().sent.clear();
    s.receive_frame(at, &echo_request(&syn));
    assert_eq!(kernel.got.borrow().len(), 2);
    assert_eq!(s.device().sent.len(), 1, "the stack's echo reply");
}

#[test]
fn a_partial_checksum_is_completed_for_a_device_without_offload() {
    let syn = syn();
    // What a kernel hands over with checksum offload: the pseudo-header sum in the field.
    let ip = Ipv4Packet::new_checked(&syn[14..]).unwrap();
    let tcp_len = (ip.total_len() - 20) as u32;
    let pseudo = syn[26..34]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum::<u32>()
        + 6
        + tcp_len;
    let mut partial = syn.clone();
    partial[50..52].copy_from_slice(&fold(pseudo).to_be_bytes());
    assert_ne!(partial, syn);
    let mut dev = QueueDevice::new(1500);
    let hdr = VnetHeader::partial_checksum(34, 16);
    dev.send_frame(Instant::from_millis(0), &partial, Some(&hdr))
        .unwrap();
    assert_eq!(dev.sent, vec![syn]);
}
