//! The L4 TCP proxy, driven by real peers (socat, curl, iperf3) through the real sluice binary.

use sluice_integration::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MB: usize = 1024 * 1024;

fn single(upstream: u16, tail: &str) -> Sluice {
    let yaml = front_to(upstream) + tail;
    Sluice::start(&yaml, &["--concurrency", "2"])
}

/// 100 MB each way at the same time, through socat on both ends; both directions arrive
/// byte-identical and the byte counters match.
fn hundred_mb_each_way(tail: &str) {
    let dir = TempDir::new("100mb");
    let (a, b) = (dir.join("a"), dir.join("b"));
    random_file(&a, 100 * MB, 1);
    random_file(&b, 100 * MB, 2);
    let (recv_a, recv_b) = (dir.join("recv_a"), dir.join("recv_b"));
    let port = free_port();
    let mut server = socat_server(
        port,
        &[
            "-t",
            "60",
            &format!("TCP-LISTEN:{port},reuseaddr,bind=127.0.0.1"),
            &format!("OPEN:{}!!CREATE:{}", b.display(), recv_a.display()),
        ],
    );
    let sluice = single(port, tail);
    let front = sluice.listener("front");
    let client = run_to_exit(
        Command::new("socat")
            .args(["-t", "60"])
            .arg(format!("OPEN:{}!!CREATE:{}", a.display(), recv_b.display()))
            .arg(format!("TCP:{front}")),
    );
    assert!(client.status.success(), "client socat: {}", client.stderr);
    assert!(
        server
            .wait_timeout(Duration::from_secs(60))
            .is_some_and(|s| s.success()),
        "server socat failed"
    );
    assert_eq!(sha256(&a), sha256(&recv_a), "client -> server bytes differ");
    assert_eq!(sha256(&b), sha256(&recv_b), "server -> client bytes differ");
    let total = (100 * MB) as u64;
    assert_eq!(
        sluice.stat("sluice_tcp_downstream_cx_rx_bytes_total{stat_prefix=\"front\"}"),
        total
    );
    assert_eq!(
        sluice.stat("sluice_tcp_downstream_cx_tx_bytes_total{stat_prefix=\"front\"}"),
        total
    );
    assert_eq!(
        sluice.stat("sluice_cluster_upstream_cx_rx_bytes_total{cluster=\"up\"}"),
        total
    );
    assert_eq!(
        sluice.stat("sluice_cluster_upstream_cx_tx_bytes_total{cluster=\"up\"}"),
        total
    );
    assert!(wait_until(Duration::from_secs(5), || sluice
        .stat("sluice_cluster_upstream_cx_active{cluster=\"up\"}")
        == 0));
}

#[test]
fn hundred_mb_each_way_splice_path() {
    hundred_mb_each_way("");
}

#[test]
fn hundred_mb_each_way_copy_path() {
    hundred_mb_each_way("sluice:\n  io: {splice: false}\n");
}

/// The client half-closes; the upstream sees EOF (wc prints the count only then) and still
/// answers on the other direction.
#[test]
fn half_close_leaves_the_other_direction_open() {
    for tail in ["", "sluice:\n  io: {splice: false}\n"] {
        let (_server, port) = forking_server("SYSTEM:wc -c");
        let sluice = single(port, tail);
        let reply = roundtrip(sluice.listener("front"), &[b'x'; 12345]).unwrap();
        assert_eq!(String::from_utf8_lossy(&reply).trim(), "12345", "{tail}");
    }
}

/// Clients that never read, an upstream that never stops writing: sluice must stop reading the
/// upstream (its byte counter stops) and its memory must stay flat.
fn stalled_readers_bounded(tail: &str) {
    let (_server, port) = forking_server("OPEN:/dev/zero");
    let sluice = single(port, tail);
    let front = sluice.listener("front");
    let rss_before = sluice.rss_kib();
    const CONNS: u64 = 20;
    let clients: Vec<TcpStream> = (0..CONNS)
        .map(|_| TcpStream::connect(front).unwrap())
        .collect();
    let rx = || sluice.stat("sluice_cluster_upstream_cx_rx_bytes_total{cluster=\"up\"}");
    // Wait until the counter holds still for half a second: backpressure reached the upstream.
    let mut last = (rx(), Instant::now());
    let settled = wait_until(Duration::from_secs(30), || {
        let now = rx();
        if now != last.0 {
            last = (now, Instant::now());
        }
        now > 0 && last.1.elapsed() > Duration::from_millis(500)
    });
    assert!(
        settled,
        "sluice kept reading from the upstream while nobody read downstream"
    );
    let moved = rx();
    // Per connection: what fits in the client's receive buffer and sluice's send buffer (the
    // kernel's autotuning maxima, ~6 MiB + 4 MiB by default) plus sluice's own pipe or buffer.
    assert!(
        moved <= CONNS * 12 * MB as u64,
        "{moved} bytes moved for {CONNS} stalled connections"
    );
    let grown = sluice.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 16 * 1024,
        "sluice's RSS grew by {grown} KiB for {CONNS} stalled connections"
    );
    drop(clients);
}

#[test]
fn stalled_reader_keeps_memory_bounded_splice_path() {
    stalled_readers_bounded("");
}

#[test]
fn stalled_reader_keeps_memory_bounded_copy_path() {
    stalled_readers_bounded("sluice:\n  io: {splice: false}\n");
}

#[test]
fn failed_connect_moves_on_to_the_next_endpoint() {
    let dead = free_port();
    let (_echo, live) = echo_server();
    let yaml = bootstrap(
        &[("front", 0, "up")],
        &[("up", "ROUND_ROBIN", &[(dead, 1), (live, 1)])],
        "",
        "",
    );
    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    let front = sluice.listener("front");
    for i in 0..6 {
        let msg = format!("hello {i}");
        assert_eq!(roundtrip(front, msg.as_bytes()).unwrap(), msg.as_bytes());
    }
    let dead_fail = sluice.stat(&format!(
        "sluice_host_cx_connect_fail{{cluster=\"up\",address=\"127.0.0.1:{dead}\"}}"
    ));
    assert!(dead_fail >= 1, "the dead endpoint was never tried");
    assert_eq!(
        sluice.stat("sluice_cluster_upstream_cx_connect_fail{cluster=\"up\"}"),
        dead_fail
    );
    assert_eq!(
        sluice.stat(&format!(
            "sluice_host_cx_total{{cluster=\"up\",address=\"127.0.0.1:{live}\"}}"
        )),
        6
    );
    assert_eq!(
        sluice.stat("sluice_tcp_upstream_connect_attempts_exceeded{stat_prefix=\"front\"}"),
        0
    );
}

#[test]
fn all_endpoints_down_closes_the_downstream_promptly_and_counts() {
    let (d1, d2) = (free_port(), free_port());
    let yaml = bootstrap(
        &[("front", 0, "up")],
        &[("up", "RANDOM", &[(d1, 1), (d2, 1)])],
        "",
        "",
    );
    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    let mut s = TcpStream::connect(sluice.listener("front")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("got {n} bytes from a proxy with no upstream"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("downstream was not closed promptly: {e}"),
    }
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "closing took {:?}",
        t0.elapsed()
    );
    assert!(wait_until(Duration::from_secs(5), || sluice.stat(
        "sluice_tcp_upstream_connect_attempts_exceeded{stat_prefix=\"front\"}"
    ) == 1));
    // Both endpoints were tried once before giving up.
    assert_eq!(
        sluice.stat("sluice_cluster_upstream_cx_connect_fail{cluster=\"up\"}"),
        2
    );
    assert!(
        sluice
            .log()
            .contains("upstream connect failed on every attempt"),
        "{}",
        sluice.log()
    );
}

#[test]
fn connect_timeout_is_enforced_and_counted() {
    // A listener with a full accept queue drops SYNs, so a connect to it hangs.
    let full = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a socket we own, shrinking its backlog.
    assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
    let port = full.local_addr().unwrap().port();
    let _filler = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let yaml = front_to(port).replace("connect_timeout: 1s", "connect_timeout: 0.3s");
    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    let mut s = TcpStream::connect(sluice.listener("front")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 1];
    let _ = s.read(&mut buf);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || sluice.stat(
        "sluice_cluster_upstream_cx_connect_timeout{cluster=\"up\"}"
    ) == 1));
}

#[test]
fn idle_timeout_closes_and_counts() {
    let (_echo, port) = echo_server();
    let yaml = bootstrap(
        &[("front", 0, "up")],
        &[("up", "ROUND_ROBIN", &[(port, 1)])],
        "          idle_timeout: 0.4s\n",
        "",
    );
    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    let mut s = TcpStream::connect(sluice.listener("front")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Traffic keeps it alive...
    for _ in 0..3 {
        s.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...silence ends it.
    let t0 = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(wait_until(Duration::from_secs(5), || sluice
        .stat("sluice_tcp_idle_timeout{stat_prefix=\"front\"}")
        == 1));
}

#[test]
fn curl_fetches_through_sluice() {
    require_program("curl");
    let dir = TempDir::new("www");
    random_file(&dir.join("blob"), 3 * MB, 9);
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--directory",
    ])
    .arg(dir.path())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _web = Proc::spawn(cmd, "python http.server");
    assert!(wait_until(Duration::from_secs(10), || is_listening(port)));
    let sluice = single(port, "");
    let out = dir.join("fetched");
    let r = run_to_exit(
        Command::new("curl")
            .args(["-sS", "-o"])
            .arg(&out)
            .args(["-w", "%{http_code}"])
            .arg(format!("http://{}/blob", sluice.listener("front"))),
    );
    assert_eq!(r.stdout, "200", "curl: {}", r.stderr);
    assert_eq!(sha256(&out), sha256(&dir.join("blob")));
}

#[test]
fn iperf3_runs_through_sluice_and_bytes_are_counted() {
    require_program("iperf3");
    let port = free_port();
    let mut cmd = Command::new("iperf3");
    cmd.args(["-s", "-p", &port.to_string(), "-B", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = Proc::spawn(cmd, "iperf3 server");
    assert!(wait_until(Duration::from_secs(10), || is_listening(port)));
    let sluice = single(port, "");
    let front = sluice.listener("front");
    let r = run_to_exit(Command::new("iperf3").args([
        "-c",
        "127.0.0.1",
        "-p",
        &front.port().to_string(),
        "-t",
        "1",
        "-J",
    ]));
    assert!(r.status.success(), "iperf3: {}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let sent = v["end"]["sum_sent"]["bytes"].as_u64().unwrap();
    let received = v["end"]["sum_received"]["bytes"].as_u64().unwrap();
    assert!(received > 10 * MB as u64, "only {received} bytes");
    // sluice forwarded at least what the server received and at most what the client sent (the
    // server discards what is in flight when the test ends), plus the control connection's bytes.
    let counted = sluice.stat("sluice_tcp_downstream_cx_rx_bytes_total{stat_prefix=\"front\"}");
    assert!(
        counted >= received && counted <= sent + 64 * 1024,
        "counted {counted}, iperf3 sent {sent}, received {received}"
    );
    assert_eq!(
        sluice.stat("sluice_listener_downstream_cx_total{listener=\"front\"}"),
        2
    );
}

/// Smooth weighted round robin on one worker is exact: 3:1 weights give 6 and 2 of 8.
#[test]
fn weighted_round_robin_follows_weights() {
    let (_a, pa) = reply_server("A");
    let (_b, pb) = reply_server("B");
    let yaml = bootstrap(
        &[("front", 0, "up")],
        &[("up", "ROUND_ROBIN", &[(pa, 3), (pb, 1)])],
        "",
        "",
    );
    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    let front = sluice.listener("front");
    let replies: Vec<String> = (0..8)
        .map(|_| {
            String::from_utf8(roundtrip(front, b"").unwrap())
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(
        replies.iter().filter(|r| *r == "A").count(),
        6,
        "{replies:?}"
    );
    assert_eq!(
        replies.iter().filter(|r| *r == "B").count(),
        2,
        "{replies:?}"
    );
}

#[test]
fn weighted_clusters_split_connections() {
    let (_a, pa) = reply_server("A");
    let (_b, pb) = reply_server("B");
    let yaml = bootstrap(&[("front", 0, "ca")], &[("ca", "ROUND_ROBIN", &[(pa, 1)]), ("cb", "ROUND_ROBIN", &[(pb, 1)])], "", "")
        .replace("          cluster: ca\n", "          weighted_clusters:\n            clusters: [{name: ca, weight: 1}, {name: cb, weight: 0}]\n");
    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    let front = sluice.listener("front");
    for _ in 0..5 {
        assert_eq!(roundtrip(front, b"").unwrap(), b"A\n");
    }
    assert_eq!(
        sluice.stat("sluice_cluster_upstream_cx_total{cluster=\"cb\"}"),
        0
    );
}

fn hold(front: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(front).unwrap();
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    s
}

/// Host A carries 5 open connections when host B joins (by reload): least-request sends the next
/// 5 connections all to B, where round robin would alternate.
#[test]
fn least_request_prefers_the_idle_endpoint() {
    let (_a, pa) = echo_server();
    let (_b, pb) = echo_server();
    let one = bootstrap(
        &[("front", 0, "up")],
        &[("up", "LEAST_REQUEST", &[(pa, 1)])],
        "",
        "",
    );
    let two = bootstrap(
        &[("front", 0, "up")],
        &[("up", "LEAST_REQUEST", &[(pa, 1), (pb, 1)])],
        "",
        "",
    );
    let sluice = Sluice::start(&one, &["--concurrency", "1"]);
    let front = sluice.listener("front");
    let mut held: Vec<TcpStream> = (0..5).map(|_| hold(front)).collect();
    sluice.reload(&two, true);
    held.extend((0..5).map(|_| hold(front)));
    let active = |p: u16| {
        sluice.stat(&format!(
            "sluice_host_cx_active{{cluster=\"up\",address=\"127.0.0.1:{p}\"}}"
        ))
    };
    assert_eq!((active(pa), active(pb)), (5, 5));
    drop(held);
}

#[test]
fn workers_share_the_listener_through_reuseport() {
    let (_echo, port) = echo_server();
    let sluice = single(port, "");
    let front = sluice.listener("front");
    let conns: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(front).unwrap())
        .collect();
    assert!(wait_until(Duration::from_secs(10), || sluice.stat(
        "sluice_listener_downstream_cx_active{listener=\"front\"}"
    ) == 64));
    let w0 = sluice.stat("sluice_worker_downstream_cx_total{worker=\"0\"}");
    let w1 = sluice.stat("sluice_worker_downstream_cx_total{worker=\"1\"}");
    assert_eq!(w0 + w1, 64);
    assert!(
        w0 > 0 && w1 > 0,
        "one worker took every connection: {w0}/{w1}"
    );
    for c in conns {
        c.shutdown(Shutdown::Both).unwrap();
    }
    assert!(wait_until(Duration::from_secs(10), || sluice.stat(
        "sluice_listener_downstream_cx_active{listener=\"front\"}"
    ) == 0));
}

#[test]
fn strict_dns_cluster_resolves_names() {
    let (_echo, port) = echo_server();
    let yaml = front_to(port)
        .replace(
            "type: STATIC",
            "type: STRICT_DNS\n    dns_lookup_family: V4_ONLY\n    dns_refresh_rate: 0.5s",
        )
        .replace(
            "address: 127.0.0.1, port_value: ",
            "address: localhost, port_value: ",
        );
    // Only the endpoint's address became a name (the listener keeps its IP, Envoy's rule).
    let yaml = yaml.replacen(
        "address: localhost, port_value: 0",
        "address: 127.0.0.1, port_value: 0",
        2,
    );
    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    assert_eq!(roundtrip(sluice.listener("front"), b"dns").unwrap(), b"dns");
    let (_, clusters) = sluice.get("/clusters");
    assert!(
        clusters.contains(&format!("up::127.0.0.1:{port}::cx_total::1")),
        "{clusters}"
    );
}
