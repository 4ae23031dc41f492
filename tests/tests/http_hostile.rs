//! HTTP against hostile and careless clients, through the real sluice binary: request
//! smuggling and oversized heads refused as Envoy 1.40 refuses them (Envoy runs the same
//! config), slowloris held off by request_headers_timeout, 100 MB bodies and a reader that
//! stalls, 10,000 concurrent HTTP/2 streams (h2load), HTTP/2 floods and stalled request bodies
//! (hand-written frames with Python's h2).

use serde_json::{json, Value};
use sluice_integration::http::*;
use sluice_integration::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Request smuggling and oversized heads: refused with Envoy's status, and the connection
/// closed; the worker goes on serving.
#[test]
fn smuggling_and_oversized_heads_are_refused_as_envoy_refuses_them() {
    let (_up, up) = python_upstream();
    let (s, _e, envoy) = sluice_and_envoy(one_upstream(all_to("up"), json!({}), up));
    let sa = s.listener("http");
    let ea = envoy;
    let big = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(61 * 1024)
    );
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nhost: a\r\n{many}\r\n");
    let cases: Vec<(&str, String)> = vec![
        ("CL and TE", "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".into()),
        ("two CLs", "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde".into()),
        ("bad CL", "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4x\r\n\r\nabcd".into()),
        ("gzip TE", "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n".into()),
        ("bad chunk size", "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n".into()),
        ("space in name", "GET / HTTP/1.1\r\nhost: a\r\nbad name: v\r\n\r\n".into()),
        ("HTTP/1.0", "GET / HTTP/1.0\r\nhost: a\r\n\r\n".into()),
        ("HTTP/2.0 on h1", "GET / HTTP/2.0\r\nhost: a\r\n\r\n".into()),
        ("head over 60 KiB", big),
        ("101 headers", many),
    ];
    for (what, bytes) in &cases {
        let status = |addr| {
            let r = raw_exchange(addr, bytes.as_bytes());
            r.split_whitespace().nth(1).unwrap_or("none").to_string()
        };
        assert_eq!(
            status(sa),
            status(ea),
            "{what}: sluice (left) vs Envoy (right)"
        );
    }
    // Pipelined requests are answered in order on one connection, and the worker still serves.
    let r = raw_exchange(sa, b"GET /one HTTP/1.1\r\nhost: a\r\n\r\nGET /two HTTP/1.1\r\nhost: a\r\n\r\nGET /three HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    let order: Vec<&str> = r.lines().filter(|l| l.starts_with("upstream ")).collect();
    assert_eq!(
        order,
        [
            format!("upstream {up} /one"),
            format!("upstream {up} /two"),
            format!("upstream {up} /three")
        ]
    );
    assert!(s.stat("sluice_http_downstream_cx_protocol_error{stat_prefix=\"ingress\"}") >= 8);
}

/// A client that sends half a head and goes quiet gets 408 once request_headers_timeout passes;
/// one that is idle between requests is closed after idle_timeout.
#[test]
fn slowloris_is_held_off_by_request_headers_timeout() {
    let p = PythonFront::start(
        json!({"request_headers_timeout": "0.5s", "common_http_protocol_options": {"idle_timeout": "1s"}}),
        &[],
    );
    let (s, front) = (&p.sluice, p.front);
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(front).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: ")
                .unwrap();
            c
        })
        .collect();
    let start = Instant::now();
    // Meanwhile a well-behaved client is served.
    assert_eq!(curl_full(&[url(front, "/ok").as_str()]).0, 200);
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        s.stat("sluice_http_downstream_rq_header_timeout{stat_prefix=\"ingress\"}"),
        20
    );
    // Idle between requests: closed after idle_timeout with nothing written.
    let mut idle = TcpStream::connect(front).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    assert_eq!(idle.read_to_end(&mut buf).unwrap_or(0), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

/// 100 MB up and back down through an echo upstream, over HTTP/1.1 and HTTP/2, byte-identical.
#[test]
fn hundred_megabyte_bodies_both_ways_are_intact() {
    let p = PythonFront::start(json!({}), &[]);
    let (s, front) = (&p.sluice, p.front);
    let dir = TempDir::new("http-100mb");
    let file = dir.join("up");
    random_file(&file, 100 << 20, 3);
    for client in [&[][..], &["--http2-prior-knowledge"][..]] {
        let got = dir.join("down");
        let data = format!("@{}", file.display());
        let u = url(front, "/echo");
        let out = curl(
            &[
                client,
                &[
                    "--max-time",
                    "120",
                    "--data-binary",
                    &data,
                    "-H",
                    "content-type: application/octet-stream",
                    "-o",
                    got.to_str().unwrap(),
                    "-w",
                    "%{http_code}",
                    &u,
                ],
            ]
            .concat(),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "{client:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sha256(&got), sha256(&file), "{client:?}");
    }
    // A client that reads nothing of a 100 MB response: sluice holds a bounded amount.
    let rss_before = s.rss_kib();
    let mut c = TcpStream::connect(front).unwrap();
    c.write_all(b"GET /big/104857600 HTTP/1.1\r\nhost: a\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(3)); // let the upstream push what it can
    let grown = s.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "RSS grew by {grown} KiB under a stalled reader"
    );
    // Then it reads everything, intact in length.
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let mut text = Vec::new();
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n;
        text.extend_from_slice(&buf[..n.min(4096)]);
        if text.windows(5).any(|w| w == b"0\r\n\r\n") && total > 100 << 20 {
            break;
        }
    }
    assert!(total > 100 << 20, "read only {total} bytes");
}

/// 10,000 HTTP/2 streams open at once on one connection (h2load), all answered.
#[test]
fn ten_thousand_concurrent_http2_streams() {
    require_program("h2load");
    let nginx = Nginx::start();
    let yaml = hcm_bootstrap(
        0,
        all_to("nginx"),
        json!({}),
        vec![cluster("nginx", &[nginx.h2c], true, json!({}))],
    );
    let s = Sluice::start(&yaml, &["--concurrency", "1"]);
    let front = s.listener("http");
    let out = Command::new("h2load")
        .args(["-n", "10000", "-c", "1", "-m", "10000", &url(front, "/")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10000 succeeded"), "{text}");
    assert!(text.contains("status codes: 10000 2xx"), "{text}");
    assert_eq!(
        s.stat("sluice_http_downstream_rq_2xx{stat_prefix=\"ingress\"}"),
        10_000
    );
}

/// HTTP/2 floods close that one connection; everyone else is still served.
#[test]
fn http2_floods_close_one_connection_and_the_worker_serves_on() {
    let p = PythonFront::start(json!({}), &[]);
    let (s, front, up) = (&p.sluice, p.front, p.upstream);
    let port = front.port().to_string();
    for (kind, n) in [
        ("rapid-reset", "20000"),
        ("continuation", "100000"),
        ("settings", "100000"),
    ] {
        let out = python_peer("h2_flood.py", &["127.0.0.1", &port, kind, n]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{kind}: {}", String::from_utf8_lossy(&out.stderr)));
        assert!(v["goaway"] == true || v["closed"] == true, "{kind}: {v}");
        let (status, _, body) =
            curl_full(&["--http2-prior-knowledge", url(front, "/after").as_str()]);
        assert_eq!(
            (status, body.as_str()),
            (200, format!("upstream {up} /after\n").as_str()),
            "{kind}"
        );
    }
    assert!(s.stat("sluice_http_downstream_cx_protocol_error{stat_prefix=\"ingress\"}") >= 1);
    assert!(s.rss_kib() < 200 * 1024);
}

/// The same floods against sluice and Envoy 1.40 on the same file: both end a rapid-reset or
/// CONTINUATION flood's connection and answer the next client. A SETTINGS flood whose client
/// reads nothing is where they differ: Envoy ends a connection once more than 1,000 of its
/// control frames wait unsent (max_outbound_control_frames), which depends on how many
/// acknowledgements the kernel's socket buffers take (often all 100,000 here, and Envoy serves
/// on); sluice's guard counts the frames coming in (h2 acknowledges them without limit) and
/// always ends the connection past 1,000 a second. Envoy's outcome there is printed, not
/// asserted.
#[test]
fn http2_floods_are_ended_as_envoy_ends_them() {
    let (_up, up) = python_upstream();
    let (s, _e, envoy) = sluice_and_envoy(one_upstream(all_to("up"), json!({}), up));
    for (kind, n) in [
        ("rapid-reset", "20000"),
        ("continuation", "100000"),
        ("settings", "100000"),
    ] {
        for (who, front) in [("sluice", s.listener("http")), ("envoy", envoy)] {
            let port = front.port().to_string();
            let out = python_peer("h2_flood.py", &["127.0.0.1", &port, kind, n]);
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
                panic!("{who} {kind}: {}", String::from_utf8_lossy(&out.stderr))
            });
            eprintln!("{who} {kind}: {v}");
            let ended = v["goaway"] == true || v["closed"] == true;
            if (who, kind) != ("envoy", "settings") {
                assert!(ended, "{who} {kind}: {v}");
            }
            let (status, _, _) =
                curl_full(&["--http2-prior-knowledge", url(front, "/after").as_str()]);
            assert_eq!(status, 200, "{who} {kind}");
        }
    }
}

/// An HTTP/2 request body that stops arriving is ended by stream_idle_timeout: the stream is
/// reset, the idle timeout counted, and the connection's other streams are unaffected.
#[test]
fn a_stalled_http2_request_body_meets_the_stream_idle_timeout() {
    let p = PythonFront::start(json!({"stream_idle_timeout": "0.5s"}), &[]);
    let (s, front) = (&p.sluice, p.front);
    let t = Instant::now();
    let out = python_peer(
        "h2_flood.py",
        &["127.0.0.1", &front.port().to_string(), "stall-body", "10"],
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["reset"], true, "{v}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(s.stat("sluice_http_downstream_rq_idle_timeout{stat_prefix=\"ingress\"}") >= 1);
    let (status, _, _) = curl_full(&["--http2-prior-knowledge", url(front, "/after").as_str()]);
    assert_eq!(status, 200);
}

/// A request body that stops arriving before the upstream has answered: request_timeout and
/// stream_idle_timeout end it with Envoy's 408 ("request timeout", "stream timeout"), over
/// HTTP/1.1 and HTTP/2, the same from sluice as from Envoy 1.40 on the same settings.
#[test]
fn stalled_request_bodies_get_envoys_408_on_both_codecs() {
    let (_up, up) = python_upstream();
    let variants = [
        ("request", json!({"request_timeout": "1s"})),
        ("idle", json!({"stream_idle_timeout": "0.5s"})),
    ];
    let sbs = SideBySide::start(&variants, up);
    let h1 = |addr: SocketAddr| -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"POST /wait HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n0123456789")
            .unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let (status, _, body) = parse_response(&String::from_utf8_lossy(&out));
        format!("{status} {body}")
    };
    let h2 = |addr: SocketAddr| -> String {
        let out = python_peer(
            "h2_flood.py",
            &["127.0.0.1", &addr.port().to_string(), "stall-length", "10"],
        );
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        format!("{} {}", v["status"], v["body"].as_str().unwrap_or(""))
    };
    for (i, (name, _)) in variants.iter().enumerate() {
        let (sa, ea) = sbs.pair(i, name);
        let want = if *name == "request" {
            "408 request timeout"
        } else {
            "408 stream timeout"
        };
        for (codec, run) in [
            ("HTTP/1.1", &h1 as &dyn Fn(SocketAddr) -> String),
            ("HTTP/2", &h2),
        ] {
            let t = Instant::now();
            let (mine, envoys) = (run(sa), run(ea));
            assert_eq!(
                mine, envoys,
                "{name} over {codec}: sluice (left) and Envoy (right) differ"
            );
            assert_eq!(mine, want, "{name} over {codec}");
            assert!(
                t.elapsed() < Duration::from_secs(8),
                "{name} over {codec}: {:?}",
                t.elapsed()
            );
        }
    }
    let stat = |n: &str| {
        sbs.sluice
            .stat(&format!("sluice_http_{n}{{stat_prefix=\"ingress\"}}"))
    };
    assert_eq!(stat("downstream_rq_timeout"), 2);
    assert_eq!(stat("downstream_rq_idle_timeout"), 2);
}

/// Careless clients by the thousand, side by side with Envoy 1.40 on one file: 2,000 HTTP/1.1
/// keep-alive connections left idle after one exchange cost sluice one descriptor and a few
/// KiB each (the upstream connections are pooled), and a pipelining client that never reads
/// its answers is held back by TCP, costs bounded memory, and is closed by
/// stream_idle_timeout once nothing moves, while a good client is served; Envoy closes it too.
#[test]
fn idle_connections_and_readers_that_never_read_are_bounded() {
    let (_up, up) = python_upstream();
    let config = one_upstream(all_to("up"), json!({"stream_idle_timeout": "3s"}), up);
    let (s, _e, envoy) = sluice_and_envoy(config);
    let sa = s.listener("http");
    let pid = s.proc.pid();
    let fds = || sluice_integration::hostile::fd_count(pid);
    let exchange = |c: &mut TcpStream| {
        c.write_all(b"GET /idle HTTP/1.1\r\nhost: h\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("/idle") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the answer");
            got.extend_from_slice(&buf[..n]);
        }
    };
    sluice_integration::hostile::raise_own_fd_limit();
    let (fds0, rss0) = (fds(), s.rss_kib());
    let mut idle = Vec::new();
    for _ in 0..2000 {
        let mut c = TcpStream::connect(sa).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        exchange(&mut c);
        idle.push(c);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let per_fd = (fds() - fds0) as f64 / 2000.0;
    let per_kib = s.rss_kib().saturating_sub(rss0) as f64 / 2000.0;
    eprintln!("2000 idle HTTP/1.1 connections: {per_fd:.2} fds and {per_kib:.1} KiB each");
    assert!(
        per_fd <= 1.02,
        "{per_fd:.2} descriptors per idle connection"
    );
    assert!(per_kib <= 12.0, "{per_kib:.1} KiB per idle connection");
    let mut good = TcpStream::connect(sa).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    exchange(&mut good);
    drop(idle);
    // A reader that never reads, on both proxies.
    // Each answer is 256 KiB, so the unread answers fill the kernel's buffers soon.
    let unit = b"GET /big/262144 HTTP/1.1\r\nhost: h\r\n\r\n";
    for (who, addr) in [("sluice", sa), ("envoy", envoy)] {
        let rss0 = s.rss_kib();
        let attacker = TcpStream::connect(addr).unwrap();
        let (written, held) = sluice_integration::hostile::write_until_blocked(
            &attacker,
            unit,
            Duration::from_secs(1),
            256 << 20,
        );
        // Envoy may also close the connection while the writer is still at it.
        assert!(
            held || who == "envoy",
            "{who}: the writer was never held back ({written} bytes)"
        );
        if who == "sluice" {
            let rss = s.rss_kib();
            assert!(rss < rss0 + 32 * 1024, "RSS {rss0} -> {rss} KiB");
            exchange(&mut good);
        }
        let t0 = Instant::now();
        assert!(
            closed_without_reading(&attacker, Duration::from_secs(20)),
            "{who}: a reader that never reads was not closed"
        );
        eprintln!(
            "{who}: never-reading client held back after {} KiB, closed after {:?}",
            written >> 10,
            t0.elapsed()
        );
    }
    assert!(s.stat("sluice_http_downstream_rq_idle_timeout{stat_prefix=\"ingress\"}") >= 1);
}

/// Whether the peer closed or reset `s` within `timeout`, seen without reading from it (reading
/// would let a proxy held back by the unread answers go on).
fn closed_without_reading(s: &TcpStream, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut p = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, 100) };
        if n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            return true;
        }
    }
    false
}
