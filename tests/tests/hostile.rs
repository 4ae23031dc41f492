//! The hostile-client suite: what careless and malicious clients and upstreams do to sluice,
//! run against every listener type (`hostile::ALL`: the TCP proxy and the Bolt rpc_proxy; each
//! later protocol adds itself there). Each attack asserts bounded memory (RSS of the real
//! process), that the attacking connections are closed or held back, the counters that name
//! what happened, and that a well-behaved client beside the attack keeps being served.
//!
//! Peers: sofa-bolt-node (Bolt upstream), a Node echo server (TCP upstream, and one that never
//! reads), a socket that never finishes a handshake; the attackers are raw sockets.

use bytes::BytesMut;
use sluice::protocol::bolt::{status, Bolt, RequestSpec, PROTO_V1};
use sluice::protocol::xprotocol::Codec;
use sluice_integration::bolt::*;
use sluice_integration::hostile::*;
use sluice_integration::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const MIB: u64 = 1024;

/// A running suite: sluice on [`suite_config`] with its upstreams.
struct Bench {
    s: Sluice,
    echo: Vec<Proc>,
    echo_ports: Vec<u16>,
    _stuck: Proc,
    _blackhole: Blackhole,
    bolt: Vec<BoltServer>,
}

impl Bench {
    /// `upstreams` servers behind each of the `echo` and `bolt` clusters.
    fn start(extra: Extra<'_>, upstreams: usize) -> Bench {
        Bench::start_with(extra, upstreams, &[], None)
    }

    /// As `start`, with sluice's command-line `args` and its descriptor limit.
    fn start_with(extra: Extra<'_>, upstreams: usize, args: &[&str], nofile: Option<u64>) -> Bench {
        raise_own_fd_limit();
        let (echo, echo_ports): (Vec<Proc>, Vec<u16>) =
            (0..upstreams).map(|_| node_echo(0, false)).unzip();
        let (stuck, stuck_port) = node_echo(0, true);
        let blackhole = Blackhole::new();
        let bolt: Vec<BoltServer> = (0..upstreams)
            .map(|i| BoltServer::start(&format!("s{i}"), 0, &[]))
            .collect();
        let ports = Upstreams {
            echo: echo_ports.clone(),
            stuck: stuck_port,
            blackhole: blackhole.port,
            bolt: bolt.iter().map(|b| b.port).collect(),
        };
        let s = Sluice::start_with_fd_limit(&suite_config(&ports, &extra), args, nofile);
        Bench {
            s,
            echo,
            echo_ports,
            _stuck: stuck,
            _blackhole: blackhole,
            bolt,
        }
    }

    fn addr(&self, kind: Kind) -> std::net::SocketAddr {
        self.s.listener(kind.listener())
    }

    fn rpc(&self, metric: &str) -> u64 {
        self.s
            .stat(&format!("sluice_rpc_{metric}{{stat_prefix=\"bolt\"}}"))
    }

    /// The well-behaved client's rate alone, to compare the rate beside an attack with.
    fn baseline(&self, kind: Kind) -> Tally {
        let t = GoodClient::measure(kind, self.addr(kind), Duration::from_millis(700));
        assert!(t.ok > 0 && t.failed == 0, "{kind:?} baseline: {t:?}");
        t
    }
}

/// The well-behaved client beside an attack: every exchange answered, and at a fair share of its
/// rate alone (the machine has two cores for sluice, the attack, the peers and this client).
fn assert_served(kind: Kind, during: Tally, alone: Tally) {
    assert!(
        during.failed == 0 && during.ok > 0,
        "{kind:?}: the well-behaved client failed beside the attack: {during:?}"
    );
    assert!(
        during.rate() >= alone.rate() * 0.1,
        "{kind:?}: the well-behaved client's rate fell from {:.0}/s to {:.0}/s",
        alone.rate(),
        during.rate()
    );
}

fn heartbeat(id: u64) -> Vec<u8> {
    let mut b = BytesMut::new();
    Bolt.heartbeat(id, &mut b);
    b.to_vec()
}

fn oneway(service: &str) -> Vec<u8> {
    let pad = "o".repeat(700);
    Call {
        oneway: true,
        headers: &[("service", service), ("pad", &pad)],
        ..Default::default()
    }
    .encode()
}

/// A client that writes and never reads: sluice stops reading it once the answers waiting for
/// it reach the buffer limit (TCP then holds the writer back), its memory stays bounded, and the
/// idle timeout closes it once nothing moves.
#[test]
fn readers_that_never_read_are_held_back_then_closed() {
    let b = Bench::start(
        Extra {
            rpc: "          idle_timeout: 3s\n",
            tcp: "          idle_timeout: 3s\n",
            listener: "    per_connection_buffer_limit_bytes: 262144\n",
        },
        1,
    );
    let mut attacks: Vec<(Kind, &str, Vec<u8>)> =
        ALL.iter().map(|&k| (k, "requests", k.request(7))).collect();
    attacks.push((Kind::RpcBolt, "heartbeats", heartbeat(9)));
    for (kind, what, unit) in attacks {
        let alone = b.baseline(kind);
        let rss0 = b.s.rss_kib();
        let paused0 = b.rpc("downstream_flow_control_paused_reading_total");
        let good = GoodClient::start(kind, b.addr(kind));
        let attacker = TcpStream::connect(b.addr(kind)).unwrap();
        let (written, held) =
            write_until_blocked(&attacker, &unit, Duration::from_secs(1), 512 << 20);
        let rss = b.s.rss_kib();
        let during = good.finish();
        assert!(
            held,
            "{kind:?} {what}: the writer was never held back ({} MiB sent)",
            written >> 20
        );
        assert!(
            rss < rss0 + 48 * MIB,
            "{kind:?} {what}: RSS grew from {rss0} to {rss} KiB after {} MiB of unread traffic",
            written >> 20
        );
        assert_served(kind, during, alone);
        if kind == Kind::RpcBolt {
            assert!(b.rpc("downstream_flow_control_paused_reading_total") > paused0);
        }
        // Nothing moves any more: the idle timeout ends the connection.
        assert!(
            closed_within(&attacker, Duration::from_secs(15)),
            "{kind:?} {what}: the stalled reader was not closed"
        );
        eprintln!(
            "{kind:?} {what}: held back after {} KiB, RSS {rss0} -> {rss} KiB, good client {:.0}/s (alone {:.0}/s)",
            written >> 10,
            during.rate(),
            alone.rate()
        );
    }
    assert!(b.rpc("downstream_cx_idle_timeout") >= 2);
    assert!(b.s.stat("sluice_tcp_idle_timeout{stat_prefix=\"tcp\"}") >= 1);
}

/// A client that reads, but slowly: it gets every answer (the echo byte for byte, each Bolt
/// answer a success) while sluice holds back its requests instead of buffering their answers.
#[test]
fn slow_readers_get_every_answer_with_bounded_memory() {
    let b = Bench::start(
        Extra {
            listener: "    per_connection_buffer_limit_bytes: 262144\n",
            ..Default::default()
        },
        1,
    );
    for kind in ALL {
        // Enough answer bytes to fill the kernel's socket buffers several times over (a Bolt
        // answer is about 150 bytes, an echo 1 KiB).
        let n_requests: u32 = match kind {
            Kind::TcpProxy => 4000,
            Kind::RpcBolt => 40_000,
        };
        let rss0 = b.s.rss_kib();
        let paused0 = b.rpc("downstream_flow_control_paused_reading_total");
        let conn = TcpStream::connect(b.addr(kind)).unwrap();
        let mut w = conn.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut sent = Vec::new();
            for id in 1..=n_requests {
                let r = kind.request(id);
                w.write_all(&r).unwrap();
                sent.extend_from_slice(&r);
            }
            sent
        });
        // About 2 MB/s: 16 KiB every 8 ms.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut r = &conn;
        r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut peak = rss0;
        let want = n_requests as usize * kind.request(1).len();
        let mut answers = 0u32;
        while answers < n_requests {
            let n = std::io::Read::read(&mut r, &mut buf).unwrap();
            assert!(n > 0, "{kind:?}: closed after {answers} answers");
            got.extend_from_slice(&buf[..n]);
            match kind {
                Kind::TcpProxy => answers = (got.len() / kind.request(1).len()) as u32,
                Kind::RpcBolt => {
                    while let Some(h) = Bolt.decode(&got, 1 << 24).unwrap() {
                        answers += 1;
                        assert_eq!(h.status, status::SUCCESS);
                        got.drain(..h.len);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(8));
            if answers.is_multiple_of(256) {
                peak = peak.max(b.s.rss_kib());
            }
        }
        let sent = writer.join().unwrap();
        if kind == Kind::TcpProxy {
            assert_eq!(got.len(), want);
            assert!(got == sent, "the echo came back changed");
        }
        assert!(peak < rss0 + 32 * MIB, "{kind:?}: RSS {rss0} -> {peak} KiB");
        if kind == Kind::RpcBolt {
            assert!(b.rpc("downstream_flow_control_paused_reading_total") > paused0);
        }
        eprintln!(
            "{kind:?}: slow reader got all {n_requests} answers; RSS {rss0} -> peak {peak} KiB"
        );
    }
}

/// Oneway requests to an upstream that stopped reading: the upstream connection's buffer is
/// bounded, the client is held back, and requests to other upstreams are still served.
#[test]
fn oneway_floods_to_an_upstream_that_stopped_reading_hold_the_sender_back() {
    let b = Bench::start(Extra::default(), 1);
    let kind = Kind::RpcBolt;
    let alone = b.baseline(kind);
    let rss0 = b.s.rss_kib();
    let good = GoodClient::start(kind, b.addr(kind));
    let attacker = TcpStream::connect(b.addr(kind)).unwrap();
    let (written, held) = write_until_blocked(
        &attacker,
        &oneway("suite.Stuck:1.0"),
        Duration::from_secs(1),
        512 << 20,
    );
    let rss = b.s.rss_kib();
    let during = good.finish();
    assert!(held, "never held back ({} MiB sent)", written >> 20);
    assert!(rss < rss0 + 48 * MIB, "RSS {rss0} -> {rss} KiB");
    assert_served(kind, during, alone);
    assert!(
        b.s.stat("sluice_cluster_upstream_flow_control_backed_up_total{cluster=\"stuck\"}") >= 1
    );
    assert!(b.rpc("downstream_flow_control_paused_reading_total") >= 1);
    eprintln!(
        "oneway to a stuck upstream: held back after {} KiB, RSS {rss0} -> {rss} KiB",
        written >> 10
    );
}

/// Connections that send part of a frame and go silent are closed at the frame timeout, and
/// cost little while they wait: 2,000 with half a header, then 20 with all but the last bytes of
/// a frame just under max_frame_bytes.
#[test]
fn stalled_frames_are_closed_at_the_frame_timeout_and_cost_little_meanwhile() {
    let b = Bench::start(
        Extra {
            rpc: "          frame_timeout: 2s\n",
            ..Default::default()
        },
        1,
    );
    let kind = Kind::RpcBolt;
    let addr = b.addr(kind);
    let alone = b.baseline(kind);
    // Half a header each.
    let rss0 = b.s.rss_kib();
    let half = kind.partial_frame().unwrap();
    let good = GoodClient::start(kind, addr);
    let stalled: Vec<TcpStream> = (0..2000)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&half).unwrap();
            s
        })
        .collect();
    assert!(wait_until(Duration::from_secs(10), || b
        .rpc("downstream_cx_active")
        >= 2000));
    let rss = b.s.rss_kib();
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || b
            .rpc("downstream_cx_frame_timeout")
            >= 2000),
        "frame timeouts: {}",
        b.rpc("downstream_cx_frame_timeout")
    );
    let took = started.elapsed();
    assert_served(kind, good.finish(), alone);
    assert!(
        rss < rss0 + 24 * MIB,
        "2000 half headers: RSS {rss0} -> {rss} KiB"
    );
    for s in &stalled {
        assert!(closed_within(s, Duration::from_secs(5)));
    }
    eprintln!(
        "2000 half headers: RSS {rss0} -> {rss} KiB ({} B each), all closed {took:?} after they were open",
        (rss - rss0) * 1024 / 2000
    );
    drop(stalled);

    // All but the last 100 bytes of a frame just under the 1 MiB limit.
    let content = vec![b'c'; 1_000_000];
    let mut big = BytesMut::new();
    RequestSpec {
        proto: PROTO_V1,
        ver1: 2,
        crc: false,
        oneway: false,
        request_id: 5,
        timeout_ms: 3000,
        class: SOFA_REQUEST_CLASS,
        headers: &[("service", "suite.Echo:1.0")],
        content: &content,
    }
    .encode(&mut big);
    let before = b.rpc("downstream_cx_frame_timeout");
    let rss0 = b.s.rss_kib();
    let near: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&big[..big.len() - 100]).unwrap();
            s
        })
        .collect();
    // Give sluice the time to read what sits in its sockets (each holds ~1 MB of frame).
    wait_until(Duration::from_secs(3), || b.s.rss_kib() > rss0 + 16 * MIB);
    let rss = b.s.rss_kib();
    assert!(wait_until(Duration::from_secs(15), || b
        .rpc("downstream_cx_frame_timeout")
        >= before + 20));
    for s in &near {
        assert!(closed_within(s, Duration::from_secs(5)));
    }
    assert!(
        rss < rss0 + 20 * 3 * MIB,
        "20 near-limit frames: RSS {rss0} -> {rss} KiB"
    );
    drop(near);
    // Their buffers are handed back once they are gone.
    let after = b.s.rss_kib();
    eprintln!("20 near-limit frames: RSS {rss0} -> {rss} KiB while stalled, {after} KiB after");
    assert!(
        after < rss0 + 8 * MIB,
        "RSS after the near-limit frames were closed: {after} KiB (before {rss0} KiB)"
    );
}

/// Garbage and cut-short frames close their own connection only, with the protocol error
/// counted; what was accepted before them is still answered. The TCP proxy carries any bytes.
#[test]
fn garbage_and_truncated_frames_close_only_their_connection() {
    let b = Bench::start(Extra::default(), 1);
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for kind in ALL {
        let addr = b.addr(kind);
        let alone = b.baseline(kind);
        let good = GoodClient::start(kind, addr);
        match kind {
            Kind::TcpProxy => {
                assert_eq!(roundtrip(addr, &garbage).unwrap(), garbage);
            }
            Kind::RpcBolt => {
                let errors0 = b.rpc("downstream_cx_protocol_error");
                // A good request, then garbage: the request is answered, then the close.
                let mut raw = RawBolt::connect(addr);
                let mut bytes = kind.request(41);
                bytes.extend_from_slice(&[0x01, 0x01, 0x00, 0x01, 0x01]);
                bytes.extend_from_slice(&[0xff; 17]);
                bytes.extend_from_slice(&garbage);
                raw.send(&bytes);
                let (head, _) = raw.recv();
                assert_eq!((head.request_id, head.status), (41, status::SUCCESS));
                assert!(raw.closed_within(Duration::from_secs(5)));
                // A frame cut short by the client's FIN.
                let req = kind.request(42);
                let out = roundtrip(addr, &req[..req.len() / 2]).unwrap();
                assert!(out.is_empty());
                // Unknown first bytes, no passthrough: closed.
                let out = roundtrip(addr, &garbage[1..]).unwrap_or_default();
                assert!(out.is_empty());
                assert!(wait_until(Duration::from_secs(5), || b
                    .rpc("downstream_cx_protocol_error")
                    >= errors0 + 2));
                assert!(b.rpc("downstream_cx_unknown_protocol") >= 1);
            }
        }
        assert_served(kind, good.finish(), alone);
    }
}

/// 5,000 idle connections per listener type: each costs two descriptors at most (a spliced TCP
/// connection holds no pipe while idle; Bolt connections share upstream connections) and a few
/// KiB, and a well-behaved client is still served beside them.
#[test]
fn five_thousand_idle_connections_cost_two_descriptors_and_a_few_kib_each() {
    let b = Bench::start(Extra::default(), 1);
    let pid = b.s.proc.pid();
    for kind in ALL {
        let addr = b.addr(kind);
        let alone = b.baseline(kind);
        let fds0 = fd_count(pid);
        let rss0 = b.s.rss_kib();
        let mut idle = Vec::new();
        for i in 0..5000u32 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // One exchange each, so every connection is proxied (upstream connected, buffers
            // used once), then silence.
            let msg = kind.request(i + 1);
            s.write_all(&msg).unwrap();
            let mut got = 0usize;
            let mut buf = [0u8; 4096];
            while got == 0 || (kind == Kind::TcpProxy && got < msg.len()) {
                got += std::io::Read::read(&mut s, &mut buf).unwrap();
            }
            idle.push(s);
        }
        // Buffers of quiet connections are handed back after a second.
        std::thread::sleep(Duration::from_millis(1500));
        let fds = fd_count(pid);
        let rss = b.s.rss_kib();
        let during = GoodClient::measure(kind, addr, Duration::from_millis(700));
        let per_fds = (fds - fds0) as f64 / 5000.0;
        let per_kib = (rss.saturating_sub(rss0)) as f64 / 5000.0;
        eprintln!("{kind:?}: 5000 idle connections: {per_fds:.2} fds and {per_kib:.1} KiB each; good client {:.0}/s (alone {:.0}/s)", during.rate(), alone.rate());
        let fd_bound = if kind == Kind::TcpProxy { 2.0 } else { 1.0 };
        assert!(
            per_fds <= fd_bound + 0.02,
            "{kind:?}: {per_fds:.2} descriptors per idle connection"
        );
        assert!(
            per_kib <= 12.0,
            "{kind:?}: {per_kib:.1} KiB per idle connection"
        );
        assert_served(kind, during, alone);
        drop(idle);
        assert!(
            wait_until(Duration::from_secs(10), || fd_count(pid) <= fds0 + 40),
            "{kind:?}: descriptors after the close: {} (before {fds0})",
            fd_count(pid)
        );
    }
}

/// 50,000 short connections (25,000 per listener type, four clients each): every one served,
/// and nothing left behind — no descriptors, no active connections, bounded memory.
#[test]
fn fifty_thousand_short_connections_leave_nothing_behind() {
    let b = Bench::start(Extra::default(), 1);
    let pid = b.s.proc.pid();
    let fds0 = fd_count(pid);
    let rss0 = b.s.rss_kib();
    let started = Instant::now();
    let workers: Vec<_> = ALL
        .iter()
        .flat_map(|&kind| {
            let addr = b.addr(kind);
            (0..4).map(move |t| {
                std::thread::spawn(move || {
                    let mut failed = 0;
                    for i in 0..6250u32 {
                        let msg = kind.request(t * 10_000 + i + 1);
                        let ok = match kind {
                            Kind::TcpProxy => roundtrip(addr, &msg).is_ok_and(|r| r == msg),
                            Kind::RpcBolt => {
                                let mut raw = RawBolt::connect(addr);
                                raw.send(&msg);
                                raw.recv_within(Duration::from_secs(5))
                                    .is_some_and(|(h, _)| h.status == status::SUCCESS)
                            }
                        };
                        if !ok {
                            failed += 1;
                        }
                    }
                    failed
                })
            })
        })
        .collect();
    let failed: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let took = started.elapsed();
    assert_eq!(failed, 0, "short connections that failed");
    for kind in ALL {
        let l = kind.listener();
        assert!(
            b.s.stat(&format!(
                "sluice_listener_downstream_cx_total{{listener=\"{l}\"}}"
            )) >= 25_000
        );
        assert!(wait_until(Duration::from_secs(10), || b.s.stat(&format!(
            "sluice_listener_downstream_cx_active{{listener=\"{l}\"}}"
        )) == 0));
    }
    assert!(wait_until(Duration::from_secs(10), || fd_count(pid) <= fds0 + 40));
    let rss = b.s.rss_kib();
    assert!(rss < rss0 + 32 * MIB, "RSS {rss0} -> {rss} KiB");
    eprintln!("50000 short connections in {took:?}; RSS {rss0} -> {rss} KiB");
}

/// With the descriptor limit used up by idle connections, accepts fail and are counted and
/// paced (no spinning), the admin endpoint still answers, and service resumes once the idle
/// connections go.
#[test]
fn running_out_of_descriptors_keeps_admin_answering_and_recovers() {
    let b = Bench::start_with(Extra::default(), 1, &["--concurrency", "1"], Some(256));
    let pid = b.s.proc.pid();
    for kind in ALL {
        let addr = b.addr(kind);
        let mut hogs = Vec::new();
        for _ in 0..300 {
            if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                hogs.push(c);
            }
        }
        let errors = format!(
            "sluice_listener_downstream_cx_accept_errors{{listener=\"{}\"}}",
            kind.listener()
        );
        assert!(
            wait_until(Duration::from_secs(10), || b.s.stat(&errors) > 0),
            "{kind:?}: no accept errors counted; fds in use: {}",
            fd_count(pid)
        );
        let cpu0 = cpu_ticks(pid);
        let t0 = Instant::now();
        for _ in 0..10 {
            let (code, body) = try_http_get(b.s.admin, "/stats/prometheus").unwrap_or_else(|e| {
                let log = b.s.log();
                panic!(
                    "{kind:?}: admin did not answer while out of descriptors: {e}; {} fds in \
                     use\nlog tail:\n{}",
                    fd_count(pid),
                    &log[log.len().saturating_sub(4000)..]
                )
            });
            assert_eq!(code, 200);
            assert!(body.contains("sluice_listener_downstream_cx_accept_errors"));
            std::thread::sleep(Duration::from_millis(200));
        }
        let cpu = cpu_ticks(pid) - cpu0;
        let ticks_per_s = 100.0;
        let share = cpu as f64 / ticks_per_s / t0.elapsed().as_secs_f64();
        assert!(
            share < 0.3,
            "{kind:?}: sluice used {:.0}% of a core while out of descriptors",
            share * 100.0
        );
        eprintln!(
            "{kind:?}: out of descriptors: {} accept errors, {:.0}% CPU, admin answered",
            b.s.stat(&errors),
            share * 100.0
        );
        drop(hogs);
        // Both listener types serve again once the descriptors are free.
        for other in ALL {
            let addr = b.addr(other);
            let mut last = None;
            let resumed = wait_until(Duration::from_secs(15), || {
                let t = GoodClient::measure(other, addr, Duration::from_millis(100));
                let good = t.ok > 0 && t.failed == 0;
                last = Some(t);
                good
            });
            if !resumed {
                let (_, stats) = b.s.get("/stats/prometheus");
                let log = b.s.log();
                panic!(
                    "{other:?}: service did not resume after {kind:?}'s descriptors were freed; \
                     last try {last:?}, {} fds in use\nstats:\n{stats}\nlog tail:\n{}",
                    fd_count(pid),
                    &log[log.len().saturating_sub(4000)..]
                );
            }
        }
    }
}

/// One of two upstream hosts dies: connects to it are paced (a handful, not one per request or
/// connection), its share goes to the survivor meanwhile, and it is used again once it is back.
/// The client opens a new connection for every exchange, so each one is a chance to pick the
/// dead host.
#[test]
fn a_dead_upstream_is_reconnected_with_backoff_while_the_other_takes_its_share() {
    let mut b = Bench::start(Extra::default(), 2);
    for kind in ALL {
        let addr = b.addr(kind);
        let (cluster, dead_port) = match kind {
            Kind::TcpProxy => ("echo", b.echo_ports[0]),
            Kind::RpcBolt => ("bolt", b.bolt[0].port),
        };
        let alone = GoodClient::start_fresh(kind, addr).finish();
        let dead = format!(
            "sluice_host_cx_total{{cluster=\"{cluster}\",address=\"127.0.0.1:{dead_port}\"}}"
        );
        match kind {
            Kind::TcpProxy => drop(b.echo.remove(0)),
            Kind::RpcBolt => b.bolt[0].kill(),
        }
        let attempts0 = b.s.stat(&dead);
        let c = GoodClient::start_fresh(kind, addr);
        std::thread::sleep(Duration::from_secs(3));
        let outage = c.finish();
        let attempts = b.s.stat(&dead) - attempts0;
        eprintln!(
            "{kind:?}: dead host: {attempts} connect attempts in 3 s; client {outage:?} (alone {:.0}/s)",
            alone.rate()
        );
        assert!(
            attempts <= 30,
            "{kind:?}: {attempts} connect attempts to a dead host in 3 s"
        );
        let total = outage.ok + outage.failed;
        assert!(
            outage.failed * 100 <= total * 2 && outage.ok > 0,
            "{kind:?}: {} of {total} exchanges failed while one host of two was down",
            outage.failed
        );
        // Back on the same port: used again within the longest backoff.
        let used = b.s.stat(&format!(
            "sluice_host_cx_connect_fail{{cluster=\"{cluster}\",address=\"127.0.0.1:{dead_port}\"}}"
        ));
        match kind {
            Kind::TcpProxy => b.echo.push(node_echo(dead_port, false).0),
            Kind::RpcBolt => b.bolt[0] = BoltServer::start("s0", dead_port, &[]),
        }
        let c = GoodClient::start_fresh(kind, addr);
        let cx_before = b.s.stat(&dead);
        assert!(
            wait_until(Duration::from_secs(12), || {
                b.s.stat(&dead) > cx_before
                && b.s.stat(&format!(
                    "sluice_host_cx_connect_fail{{cluster=\"{cluster}\",address=\"127.0.0.1:{dead_port}\"}}"
                )) == used
            }),
            "{kind:?}: the host that came back was not connected to again"
        );
        assert_served(kind, c.finish(), alone);
    }
}

/// An upstream that never completes the handshake: a Bolt request's own deadline answers it
/// (TIMEOUT at its deadline, not CONNECTION_CLOSED at the connect timeout), connect timeouts
/// are counted for both listener types, and a TCP client meanwhile fails at once.
#[test]
fn blackholed_upstreams_answer_at_the_requests_deadline_and_count_connect_timeouts() {
    let b = Bench::start(Extra::default(), 1);
    let addr = b.addr(Kind::RpcBolt);
    let alone = b.baseline(Kind::RpcBolt);
    let good = GoodClient::start(Kind::RpcBolt, addr);
    let mut raw = RawBolt::connect(addr);
    let sent = Instant::now();
    for (id, ms) in [(1u32, 300u32), (2, 500)] {
        raw.send(
            &Call {
                id,
                timeout_ms: ms,
                headers: &[("service", "suite.Blackhole:1.0")],
                ..Default::default()
            }
            .encode(),
        );
    }
    for (id, ms) in [(1u64, 300u128), (2, 500)] {
        let (head, _) = raw.recv();
        let at = sent.elapsed().as_millis();
        assert_eq!((head.request_id, head.status), (id, status::TIMEOUT));
        assert!(
            at >= ms && at < ms + 400,
            "request {id} answered at {at} ms (deadline {ms} ms)"
        );
    }
    assert!(wait_until(Duration::from_secs(5), || b.s.stat(
        "sluice_cluster_upstream_cx_connect_timeout{cluster=\"blackhole\"}"
    ) >= 1));
    assert_served(Kind::RpcBolt, good.finish(), alone);

    // The TCP proxy to the same blackhole.
    let hole = Blackhole::new();
    let mut cfg = front_to(hole.port);
    cfg = cfg.replace("connect_timeout: 1s", "connect_timeout: 0.5s");
    let t = Sluice::start(&cfg, &["--concurrency", "1"]);
    let front = t.listener("front");
    let c = TcpStream::connect(front).unwrap();
    let started = Instant::now();
    assert!(closed_within(&c, Duration::from_secs(5)));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        t.stat("sluice_cluster_upstream_cx_connect_timeout{cluster=\"up\"}"),
        1
    );
    // Right after, the host is backing off: the next client is turned away at once.
    let c = TcpStream::connect(front).unwrap();
    let started = Instant::now();
    assert!(closed_within(&c, Duration::from_secs(5)));
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        t.stat("sluice_cluster_upstream_cx_total{cluster=\"up\"}"),
        1
    );
    assert!(t.stat("sluice_cluster_upstream_cx_none_healthy{cluster=\"up\"}") >= 1);
}

/// An upstream that floods heartbeats and reads nothing: sluice's acks to it stop queueing at
/// the connection's limit (counted), its memory stays bounded, and other traffic is served.
#[test]
fn an_upstream_flooding_heartbeats_it_never_reads_the_acks_of_is_bounded() {
    let b = Bench::start(Extra::default(), 1);
    let flood = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let flood_port = flood.local_addr().unwrap().port();
    let flooder = std::thread::spawn(move || {
        let (s, _) = flood.accept().unwrap();
        let hb = heartbeat(77);
        // 32 MiB of heartbeats (1.6 million) as fast as sluice takes them; nothing is read.
        let (sent, _) = write_until_blocked(&s, &hb, Duration::from_secs(2), 32 << 20);
        (s, sent)
    });
    let routes = "            - name: all\n              services: [\"*\"]\n              routes: [{route: {cluster: flood}}]\n";
    let cluster = bolt_cluster("flood", "", &[(flood_port, "")]);
    let s = Sluice::start(
        &rpc_config(
            "          upstream: {heartbeat_interval: 0s}\n",
            routes,
            &cluster,
        ),
        &[],
    );
    let rss0 = s.rss_kib();
    // One request opens the pool's connection to the flooder.
    let mut raw = RawBolt::connect(s.listener("bolt"));
    raw.send(
        &Call {
            timeout_ms: 500,
            ..Default::default()
        }
        .encode(),
    );
    let (head, _) = raw.recv();
    assert_eq!(head.status, status::TIMEOUT);
    let (_conn, sent) = flooder.join().unwrap();
    let rss = s.rss_kib();
    assert!(
        s.stat("sluice_cluster_upstream_heartbeat_ack_dropped{cluster=\"flood\"}") > 0,
        "no ack was dropped after {} MiB of heartbeats",
        sent >> 20
    );
    assert!(rss < rss0 + 32 * MIB, "RSS {rss0} -> {rss} KiB");
    // The rest of the suite's listeners are unaffected.
    let t = GoodClient::measure(
        Kind::RpcBolt,
        b.addr(Kind::RpcBolt),
        Duration::from_millis(500),
    );
    assert!(t.ok > 0 && t.failed == 0, "{t:?}");
    eprintln!(
        "heartbeat flood: {} MiB sent, RSS {rss0} -> {rss} KiB",
        sent >> 20
    );
}
