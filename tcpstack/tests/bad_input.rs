//! Hostile and broken frames: each is dropped (or answered with RST where TCP says so) and
//! counted under its reason, and the stack keeps serving.

mod common;

use sluice_tcpstack::sim::QueueDevice;
use sluice_tcpstack::stack::ListenerId;
use sluice_tcpstack::{Instant, Stack};
use smoltcp::wire::{EthernetFrame, IpAddress, Ipv4Packet, TcpPacket};
use std::task::Waker;

/// The server of the replay scenarios (10.0.0.2, listening on 7), with checksums verified.
fn server() -> (Stack<QueueDevice>, ListenerId) {
    let mut s = Stack::new(
        &common::config(2),
        QueueDevice::new(1500),
        Instant::from_millis(0),
    )
    .unwrap();
    let l = s.listen("10.0.0.2:7".parse().unwrap()).unwrap();
    (s, l)
}

fn first_tcp(frames: &[Vec<u8>], pick: impl Fn(&TcpPacket<&[u8]>) -> bool) -> Vec<u8> {
    frames
        .iter()
        .find(|f| {
            let eth = EthernetFrame::new_checked(f.as_slice()).unwrap();
            Ipv4Packet::new_checked(eth.payload())
                .ok()
                .filter(|ip| ip.next_header() == smoltcp::wire::IpProtocol::Tcp)
                .and_then(|ip| TcpPacket::new_checked(ip.payload()).ok().map(|t| pick(&t)))
                .unwrap_or(false)
        })
        .cloned()
        .expect("capture has such a segment")
}

/// Edits the TCP header of an IPv4 frame and fixes both checksums.
fn edit_tcp(frame: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut f = frame.to_vec();
    let (src, dst) = {
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        )
    };
    let ihl = (f[14] & 0x0f) as usize * 4;
    edit(&mut f[14 + ihl..]);
    let mut tcp = TcpPacket::new_unchecked(&mut f[14 + ihl..]);
    tcp.fill_checksum(&src, &dst);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.fill_checksum();
    f
}

fn sent(s: &mut Stack<QueueDevice>) -> Vec<Vec<u8>> {
    std::mem::take(&mut s.device_mut().sent)
}

#[test]
fn malformed_frames_are_dropped_and_counted_by_reason() {
    let frames = common::golden_input();
    let syn = first_tcp(&frames, |t| t.syn() && !t.ack());
    let (mut s, _) = server();
    let st = s.stats();
    let at = Instant::from_millis(1);

    s.receive_frame(at, &syn[..10]);
    assert_eq!(st.rx_drop_truncated.get(), 1);
    s.receive_frame(at, &syn[..30]);
    assert_eq!(st.rx_drop_bad_ip_header.get(), 1);

    let mut bad_sum = syn.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0xff;
    s.receive_frame(at, &bad_sum);
    assert_eq!(st.rx_drop_bad_checksum.get(), 1);

    // An MSS option of length 7 (it must be 4), with checksums that are right.
    let bogus = edit_tcp(&syn, |tcp| {
        assert_eq!(tcp[20], 2, "the SYN starts with an MSS option");
        tcp[21] = 7;
    });
    s.receive_frame(at, &bogus);
    assert_eq!(st.rx_drop_bad_tcp_header.get(), 1);

    let mut frag = syn.clone();
    frag[20] |= 0x20; // more fragments
    Ipv4Packet::new_unchecked(&mut frag[14..]).fill_checksum();
    s.receive_frame(at, &frag);
    assert_eq!(st.rx_drop_fragment.get(), 1);

    let mut other = syn.clone();
    other[12..14].copy_from_slice(&[0x88, 0xb5]);
    s.receive_frame(at, &other);
    assert_eq!(st.rx_drop_unknown_ethertype.get(), 1);

    assert!(sent(&mut s).is_empty(), "a dropped frame was answered");
    assert_eq!(s.flow_count(), 0, "a dropped frame created state");
    // Still serving: the intact SYN opens a connection.
    s.receive_frame(at, &syn);
    assert_eq!(s.flow_count(), 1);
}

#[test]
fn segments_for_unknown_flows_get_rst_and_never_create_state() {
    let frames = common::golden_input();
    let ack = first_tcp(&frames, |t| t.ack() && !t.syn() && t.payload().is_empty());
    let (mut s, _) = server();
    // The peer's ARP request (the capture's first frame) teaches the stack its link address.
    s.receive_frame(Instant::from_millis(1), &frames[0]);
    sent(&mut s);
    s.receive_frame(Instant::from_millis(1), &ack);
    let out = sent(&mut s);
    let rst = out.iter().filter_map(|f| {
        let ip = Ipv4Packet::new_checked(&f[14..]).ok()?;
        TcpPacket::new_checked(ip.payload()).ok().map(|t| t.rst())
    });
    assert_eq!(
        rst.collect::<Vec<_>>(),
        vec![true],
        "expected exactly one RST"
    );
    assert_eq!(s.stats().rx_unknown_flow.get(), 1);
    assert_eq!(s.flow_count(), 0);
    // An unknown RST gets nothing back.
    let rst_in = edit_tcp(&ack, |tcp| tcp[13] = 0x04);
    s.receive_frame(Instant::from_millis(2), &rst_in);
    assert!(sent(&mut s).is_empty());
}

#[test]
fn out_of_window_data_is_not_delivered() {
    let frames = common::golden_input();
    let (mut s, l) = server();
    // Replay up to and including the handshake's final ACK.
    let mut i = 0;
    let mut conn = None;
    while conn.is_none() {
        s.receive_frame(Instant::from_millis(i as i64 + 1), &frames[i]);
        conn = s.accept(l, Waker::noop());
        i += 1;
    }
    let (flow, _) = conn.unwrap();
    let data = first_tcp(&frames[i..], |t| !t.payload().is_empty());
    let far = edit_tcp(&data, |tcp| {
        let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap()).wrapping_add(10_000_000);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    });
    sent(&mut s);
    s.receive_frame(Instant::from_millis(50), &far);
    let queued = s.inspect(flow, |sock| sock.recv_queue()).unwrap();
    assert_eq!(queued, 0, "out-of-window bytes were accepted");
    // The in-window original still is.
    s.receive_frame(Instant::from_millis(51), &data);
    assert!(s.inspect(flow, |sock| sock.recv_queue()).unwrap() > 0);
}

#[test]
fn a_syn_flood_is_bounded_by_the_half_open_cap() {
    let frames = common::golden_input();
    let syn = first_tcp(&frames, |t| t.syn() && !t.ack());
    let mut config = common::config(2);
    config.tcp.max_half_open = 100;
    let mut s = Stack::new(&config, QueueDevice::new(1500), Instant::from_millis(0)).unwrap();
    s.listen("10.0.0.2:7".parse().unwrap()).unwrap();
    // 1,000 SYNs from different ports, none completing the handshake.
    for port in 0..1000u16 {
        let f = edit_tcp(&syn, |tcp| {
            tcp[0..2].copy_from_slice(&(20_000 + port).to_be_bytes())
        });
        s.receive_frame(Instant::from_millis(1), &f);
    }
    assert_eq!(s.flow_count(), 100);
    assert_eq!(s.stats().flows_half_open.get(), 100);
    assert_eq!(s.stats().syn_dropped_half_open_full.get(), 900);
    // Unanswered SYN-ACKs give up after their retries; the slots come back.
    for sec in 1..=120 {
        s.advance(Instant::from_secs(sec));
    }
    assert_eq!(s.flow_count(), 0, "half-open connections were never reaped");
    assert_eq!(s.stats().flows_half_open.get(), 0);
}

#[test]
fn a_listener_replaced_at_once_does_not_inherit_its_predecessors_handshakes() {
    let frames = common::golden_input();
    let syn = first_tcp(&frames, |t| t.syn() && !t.ack());
    let mut config = common::config(2);
    config.tcp.max_half_open = 1;
    let mut s = Stack::new(&config, QueueDevice::new(1500), Instant::from_millis(0)).unwrap();
    let old = s.listen("10.0.0.2:7".parse().unwrap()).unwrap();
    s.receive_frame(Instant::from_millis(1), &syn);
    assert_eq!(s.stats().flows_half_open.get(), 1);
    // A reload: the old listener goes and a new one takes its place before the stack runs.
    s.unlisten(old);
    let new = s.listen("10.0.0.2:7".parse().unwrap()).unwrap();
    s.advance(Instant::from_millis(2));
    assert_eq!(s.flow_count(), 0, "the aborted handshake was not removed");
    assert_eq!(s.stats().flows_half_open.get(), 0);
    // The new listener has its whole half-open allowance (1): a fresh SYN is taken.
    let again = edit_tcp(&syn, |tcp| {
        tcp[0..2].copy_from_slice(&40_000u16.to_be_bytes())
    });
    s.receive_frame(Instant::from_millis(3), &again);
    assert_eq!(s.flow_count(), 1);
    assert_eq!(s.stats().syn_dropped_half_open_full.get(), 0);
    let _ = new;
}
