//! sluice in DPDK mode (feature `dpdk`, the binary built with it): DPDK's EAL on ordinary
//! memory, its net_tap virtual device as the port, the userspace stack polled on an lcore, and
//! the Linux kernel's TCP in a namespace on the other side of the TAP with real programs as
//! clients and servers: curl, socat, iperf3, ping, sofa-bolt-node. Needs root.
#![cfg(feature = "dpdk")]

use sluice_integration::netns::*;
use sluice_integration::*;

macro_rules! need_root {
    ($name:literal) => {
        if !privileged($name) {
            return;
        }
    };
}

/// Backing off when idle keeps two polling sluices of parallel tests from starving each other
/// on a 2-core machine; one test below polls without pause.
const BACKOFF: &str = "      idle: {policy: backoff, max_sleep: 0.0002s}\n";

#[test]
fn curl_socat_iperf3_and_ping_through_dpdk_net_tap() {
    need_root!("curl_socat_iperf3_and_ping_through_dpdk_net_tap");
    let t = TapSluice::start(
        |iface| {
            proxy_config(
                dpdk_section(iface, "      idle: {policy: poll}\n"),
                &[
                    ("web", 8080, "web"),
                    ("echo", 8081, "echo"),
                    ("iperf", 8082, "iperf"),
                ],
                &[("web", &[9080]), ("echo", &[9081]), ("iperf", &[9082])],
            )
        },
        &[],
    );
    web_echo_iperf3_and_ping_through(&t);

    let s = &t.sluice;
    assert!(s.stat("sluice_stack_rx_tcp_segments") > 1000);
    assert_eq!(s.stat("sluice_stack_rx_drop_bad_checksum"), 0);
    assert!(s.stat("sluice_tcp_downstream_cx_total{stat_prefix=\"web\"}") >= 1);
    assert!(s
        .log()
        .contains("userspace TCP/IP stack running on a DPDK queue"));
}

#[test]
fn bolt_rpc_through_dpdk_net_tap() {
    need_root!("bolt_rpc_through_dpdk_net_tap");
    let t = TapSluice::start(
        |iface| dpdk_section(iface, BACKOFF) + &bolt_proxy_resources(),
        &[],
    );
    bolt_rpc_through_the_stack(&t);
}

/// HTTP/1.1 and h2c through the connection manager on a DPDK queue (net_tap).
#[test]
fn http_through_dpdk_net_tap() {
    need_root!("http_through_dpdk_net_tap");
    let t = TapSluice::start(
        |iface| dpdk_section(iface, BACKOFF) + &http_proxy_resources(),
        &[],
    );
    http_through_the_stack(&t);
}

/// `dpdk_section` moved to the fallback tests' subnet, with the `fallback:` lines, the port's
/// MAC set (so `sluice-control fallback up` can give the TAP the same one) and `port_extra`
/// lines in the port.
fn fallback_dpdk_section(wire: &str, fallback: &str, port_extra: &str) -> String {
    use sluice_integration::fallback::{NET, STACK};
    dpdk_section(wire, &format!("{BACKOFF}{fallback}"))
        .replace(STACK_IP, STACK)
        .replace(NS_IP, NET)
        .replace("fd99::", "fd97::")
        .replace(
            "        gateways:",
            &format!("{port_extra}        mac: \"02:00:00:00:97:02\"\n        gateways:"),
        )
}

/// DPDK owns the port; the host kernel behind the fallback TAP still gets ping and an
/// ssh-style session on the stack's address (frames go to it without a virtio-net header, so
/// any partial checksum is completed on the way).
#[test]
fn kernel_fallback_through_a_dpdk_port() {
    need_root!("kernel_fallback_through_a_dpdk_port");
    sluice_integration::fallback::ping_and_a_session_reach_the_kernel(
        |wire, fallback| fallback_dpdk_section(wire, fallback, ""),
        1,
    );
}

/// The same with two workers, each polling a queue of the port and attached to a queue of the
/// fallback TAP: the kernel's traffic goes in through whichever worker the port hands a frame
/// to, and out through whichever worker's TAP queue the kernel picks.
#[test]
fn kernel_fallback_with_two_workers() {
    need_root!("kernel_fallback_with_two_workers");
    sluice_integration::fallback::ping_and_a_session_reach_the_kernel(
        |wire, fallback| {
            fallback_dpdk_section(
                wire,
                fallback,
                "        rx_queues: 2\n        tx_queues: 2\n",
            )
            .replace(
                "queues: [{lcore: 1, port: wire, queue: 0}]",
                "queues: [{lcore: 0, port: wire, queue: 0}, {lcore: 1, port: wire, queue: 1}]",
            )
        },
        2,
    );
}

/// Bad EAL or port settings end start-up with an error naming the setting, never a DPDK abort.
#[test]
fn bad_eal_and_port_settings_are_named_errors() {
    need_root!("bad_eal_and_port_settings_are_named_errors");
    let iface = unique("sld");
    let good = dpdk_section(&iface, BACKOFF) + &proxy_config(String::new(), &[], &[]);
    let cases = [
        (
            good.replace("net_tap0", "net_nosuch0"),
            "sluice.io.dpdk.eal: DPDK EAL initialisation failed",
        ),
        (
            good.replace("device: net_tap0", "device: net_tap7"),
            "sluice.io.dpdk.ports[0].device: \"net_tap7\" is neither a PCI address nor a vdev of eal.vdevs",
        ),
        (
            good.replace("mbufs: 4095", "mbufs: 1048575"),
            "sluice.io.dpdk.mempool (worker 0, lcore 1): mempool sluice-w0 (1048575 mbufs",
        ),
        (
            good.replace("lcores: [0, 1]", "lcores: [0, 1, 77]"),
            "sluice.io.dpdk.eal.lcores: CPU 77 is not available to this process",
        ),
    ];
    for (yaml, want) in cases {
        Sluice::run_to_exit(&yaml, &[]).assert_fails_with(want);
    }
    // `--io dpdk` on a config without the layout. (A build without DPDK says that it has none:
    // checked in the config unit tests, which run in both builds.)
    Sluice::run_to_exit(&proxy_config(String::new(), &[], &[]), &["--io", "dpdk"])
        .assert_fails_with("sluice.io.backend dpdk needs a sluice.io.dpdk section");
}

/// Two queues, two workers, two stacks. The peer (`dpdkpeer`, a DPDK process on the other end of
/// a net_memif link) steers every frame it sends as a NIC's RSS would: Toeplitz over the TCP
/// flow with the symmetric key, through a round-robin table. Each connection it opens is proxied
/// by whichever worker RSS chose, to the peer's echo service; the upstream connection's replies
/// only reach that same worker if sluice picked its source port to hash there. A segment on the
/// wrong core would find no connection (counted, and answered with RST): none may.
#[test]
fn two_queues_keep_every_flow_on_its_core() {
    need_root!("two_queues_keep_every_flow_on_its_core");
    let dir = TempDir::new("dpdk-memif");
    let sock = dir.join("memif.sock");
    let yaml = format!(
        "sluice:\n  io:\n    backend: dpdk\n    dpdk:\n      eal: {{lcores: [0, 1], no_huge_mb: 512, in_memory: true, vdevs: [\"net_memif0,role=server,socket={sock}\"]}}\n      ports:\n      - name: wire\n        device: net_memif0\n        rx_queues: 2\n        tx_queues: 2\n        addresses: [\"10.88.0.2/24\"]\n      queues: [{{lcore: 0, port: wire, queue: 0}}, {{lcore: 1, port: wire, queue: 1}}]\n{BACKOFF}",
        sock = sock.display()
    ) + &proxy_config(String::new(), &[("front", 8000, "peer")], &[("peer", &[9000])])
        .replace("address: 0.0.0.0", "address: 10.88.0.2")
        .replace(&format!("address: {NS_IP}"), "address: 10.88.0.1");
    let sluice = Sluice::start(&yaml, &[]);
    let peer = bin_dir().join("dpdkpeer");
    assert!(
        peer.exists(),
        "{} is missing: build with --features sluice-benchtools/dpdk",
        peer.display()
    );
    let out = run_to_exit(std::process::Command::new(peer).args([
        "--vdev",
        &format!("net_memif0,role=client,socket={}", sock.display()),
        "--queues",
        "2",
        "--lcore",
        "1",
        "--address",
        "10.88.0.1/24",
        "--target",
        "10.88.0.2:8000",
        "--echo-port",
        "9000",
        "--connections",
        "64",
        "--bytes",
        "2000000",
        "--timeout",
        "30",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("dpdkpeer: {e}; stderr:\n{}", out.stderr));
    assert_eq!(v["ok"], 64, "{v}\nsluice log:\n{}", sluice.log());
    // 2 MB each way per connection closes and reopens the receive windows many times, with
    // frames lost at full TX rings on the way: with scaled (rounded) windows, connections
    // between two smoltcp ends used to wedge here for good.
    assert_eq!(v["bytes"], 128_000_000, "{v}");
    for w in 0..2 {
        let stat = |m: &str| sluice.stat(&format!("sluice_stack_worker_{m}{{worker=\"{w}\"}}"));
        // Both queues carried flows (downstream and upstream), and no segment ever reached a
        // stack that did not own its connection.
        assert!(
            stat("flows_created") >= 20,
            "worker {w}: {}",
            stat("flows_created")
        );
        assert!(stat("rx_tcp_segments") > 500, "worker {w}");
        assert_eq!(stat("rx_unknown_flow"), 0, "worker {w}");
        assert_eq!(stat("connect_failed"), 0, "worker {w}");
    }
    // Both directions of the proxied flows: every connection opened was an upstream too.
    assert_eq!(sluice.stat("sluice_stack_flows_created"), 128);
    assert!(
        sluice.log().contains("rss_hardware=false"),
        "{}",
        sluice.log()
    );
}

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SLUICE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT: ([u8; 4], u16) = ([10, 66, 0, 1], 40000);
const SERVER: ([u8; 4], u16) = ([10, 66, 0, 2], 12200);
const CLIENT_ISN: u32 = 1_000_000;

/// Runs DPDK-mode sluice on a net_pcap port reading `input` and writing what it sends to a pcap,
/// until a frame it sent satisfies `done`; returns those frames.
fn replay_through_net_pcap(
    dir: &TempDir,
    tag: &str,
    input: &[Vec<u8>],
    done: impl Fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    use sluice_tcpstack::pcap::{read_frames, PcapSink};
    let rx = dir.join(&format!("{tag}-in.pcap"));
    let tx = dir.join(&format!("{tag}-out.pcap"));
    let mut sink = PcapSink::create(&rx).unwrap();
    for (i, f) in input.iter().enumerate() {
        sink.write(sluice_tcpstack::Instant::from_millis(i as i64), f)
            .unwrap();
    }
    sink.flush().unwrap();
    drop(sink);
    let yaml = format!(
        "sluice:\n  io:\n    backend: dpdk\n    tcp: {{fixed_seed: 7}}\n    dpdk:\n      eal: {{lcores: [0, 1], no_huge_mb: 256, in_memory: true, vdevs: [\"net_pcap0,rx_pcap={rx},tx_pcap={tx}\"]}}\n      ports:\n      - name: wire\n        device: net_pcap0\n        addresses: [\"10.66.0.2/24\"]\n        mac: \"02:00:00:00:00:02\"\n      queues: [{{lcore: 1, port: wire, queue: 0}}]\n{BACKOFF}admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\nstatic_resources:\n  listeners:\n  - name: rpc\n    address: {{socket_address: {{address: 10.66.0.2, port_value: 12200}}}}\n    filter_chains:\n    - filters:\n      - name: sluice.filters.network.rpc_proxy\n        typed_config:\n          \"@type\": type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy\n          stat_prefix: rpc\n          route_config:\n            virtual_hosts:\n            - name: only\n              services: [\"only.this.Service:1.0\"]\n              routes:\n              - route: {{cluster: c}}\n  clusters:\n  - name: c\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: c\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 10.66.0.9, port_value: 1}}}}}}\n",
        rx = rx.display(),
        tx = tx.display()
    );
    let sluice = Sluice::start(&yaml, &[]);
    let mut frames = Vec::new();
    let finished = wait_until(std::time::Duration::from_secs(20), || {
        // net_pcap flushes its dump after every burst; a half-written last record is retried.
        frames = read_frames(&tx)
            .map(|v| v.into_iter().map(|f| f.data).collect())
            .unwrap_or_default();
        frames.iter().any(|f| done(f))
    });
    let summary: Vec<_> = frames
        .iter()
        .map(|f| sluice_integration::frames::tcp_fields(f).map(|(s, a, fl, p)| (s, a, fl, p.len())))
        .collect();
    assert!(
        finished,
        "sluice never sent the frame awaited; it sent {summary:?}; log:\n{}",
        sluice.log()
    );
    frames
}

fn client_segment(seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    sluice_integration::frames::Segment {
        src_mac: CLIENT_MAC,
        dst_mac: SLUICE_MAC,
        src: CLIENT,
        dst: SERVER,
        seq,
        ack,
        flags,
        window: 64000,
        payload,
    }
    .frame()
}

/// A capture replayed through the whole dataplane: DPDK's net_pcap port reads a client's frames
/// (ARP, a TCP handshake, a Bolt request for a service no route serves, FIN) and writes sluice's
/// answers to a pcap. The answers are compared with the committed golden capture (ARP reply and
/// SYN-ACK byte for byte, the byte stream sluice sent, where its FIN sits); SLUICE_BLESS=1
/// rewrites it. The stack's seed is fixed (`sluice.io.tcp.fixed_seed`) so sequence numbers
/// replay; a first run with the handshake alone learns sluice's initial sequence number.
#[test]
fn a_capture_replayed_through_net_pcap_gives_the_golden_answers() {
    use sluice_integration::frames::*;
    need_root!("a_capture_replayed_through_net_pcap_gives_the_golden_answers");
    let dir = TempDir::new("dpdk-pcap");
    let arp = arp_request(CLIENT_MAC, CLIENT.0, SERVER.0);
    let syn = client_segment(CLIENT_ISN, 0, SYN, &[]);
    let is_syn_ack =
        |f: &[u8]| tcp_fields(f).is_some_and(|(_, _, fl, _)| fl & (SYN | ACK) == SYN | ACK);
    let first = replay_through_net_pcap(&dir, "handshake", &[arp.clone(), syn.clone()], is_syn_ack);
    let syn_ack = first.iter().find(|f| is_syn_ack(f)).unwrap().clone();
    let (isn, ack, _, _) = tcp_fields(&syn_ack).unwrap();
    assert_eq!(ack, CLIENT_ISN + 1, "SYN-ACK acknowledges the client's SYN");

    let request = sluice_integration::bolt::Call {
        id: 1,
        headers: &[("service", sluice_integration::bolt::SERVICE)],
        ..Default::default()
    }
    .encode();
    let c = CLIENT_ISN + 1;
    let input = vec![
        arp,
        syn,
        client_segment(c, isn + 1, ACK, &[]),
        client_segment(c, isn + 1, PSH | ACK, &request),
        client_segment(c + request.len() as u32, isn + 1, FIN | ACK, &[]),
    ];
    let sent_fin = |f: &[u8]| tcp_fields(f).is_some_and(|(_, _, fl, _)| fl & FIN != 0);
    let out = replay_through_net_pcap(&dir, "exchange", &input, sent_fin);

    // What a reader checks against the golden capture: the ARP reply and the SYN-ACK exactly,
    // the bytes sluice sent (retransmissions folded), and the sequence number of its FIN.
    let view = |frames: &[Vec<u8>]| {
        let arp_reply = frames.iter().find(|f| f[12..14] == [0x08, 0x06]).cloned();
        let syn_ack = frames.iter().find(|f| is_syn_ack(f)).cloned();
        let mut stream: Vec<(u32, Vec<u8>)> = frames
            .iter()
            .filter_map(|f| tcp_fields(f))
            .filter(|(_, _, _, p)| !p.is_empty())
            .map(|(seq, _, _, p)| (seq, p.to_vec()))
            .collect();
        stream.sort();
        stream.dedup();
        let bytes: Vec<u8> = stream.into_iter().flat_map(|(_, p)| p).collect();
        let fin = frames
            .iter()
            .filter_map(|f| tcp_fields(f))
            .find(|(_, _, fl, _)| fl & FIN != 0)
            // A FIN's own sequence number comes after the data its segment carries.
            .map(|(seq, _, _, p)| seq + p.len() as u32);
        (arp_reply, syn_ack, bytes, fin)
    };
    let got = view(&out);
    let (head, _) = {
        use sluice::protocol::xprotocol::Codec;
        let h = sluice::protocol::bolt::Bolt
            .decode(&got.2, 1 << 20)
            .unwrap()
            .expect("a whole Bolt frame");
        (h, ())
    };
    assert_eq!(head.request_id, 1);
    assert_eq!(head.status, sluice::protocol::bolt::status::NO_PROCESSOR);
    assert_eq!(
        got.3,
        Some(isn + 1 + got.2.len() as u32),
        "FIN right after the answer"
    );

    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/dpdk_replay/answers.pcap");
    if std::env::var("SLUICE_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::copy(dir.join("exchange-out.pcap"), &golden).unwrap();
    }
    let want: Vec<Vec<u8>> = sluice_tcpstack::pcap::read_frames(&golden)
        .expect("the golden capture (SLUICE_BLESS=1 writes it)")
        .into_iter()
        .map(|f| f.data)
        .collect();
    assert_eq!(
        got,
        view(&want),
        "sluice's answers differ from {}",
        golden.display()
    );
}
