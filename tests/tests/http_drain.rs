//! Draining HTTP connections through the real sluice binary, side by side with Envoy 1.40
//! where Envoy has the same behaviour: `/drain_listeners` (immediate and gradual), HTTP/1.1
//! responses that close their connection, and HTTP/2's two GOAWAYs drain_timeout apart.

use serde_json::{json, Value};
use sluice_integration::http::*;
use sluice_integration::xds::Envoy;
use sluice_integration::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn admin_post(s: &Sluice, path: &str) -> String {
    let out = curl(&["-X", "POST", &format!("http://{}{path}", s.admin)]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One keep-alive request on `c`; (status, whether the answer said `connection: close`).
fn keep_alive_get(c: &mut TcpStream, path: &str) -> (u16, bool) {
    c.write_all(format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut byte).unwrap();
        assert!(n > 0, "closed before a response");
        buf.extend_from_slice(&byte[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (status, headers, body) = parse_response(&text);
    // Read the rest of the body, so the next exchange starts clean.
    let len: usize = header(&headers, "content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut left = len.saturating_sub(body.len());
    while left > 0 {
        let n = c.read(&mut byte[..left.min(4096)]).unwrap();
        assert!(n > 0, "closed in the middle of a body");
        left -= n;
    }
    (status, header(&headers, "connection") == Some("close"))
}

/// `/drain_listeners?graceful` with `--drain-strategy immediate`: /ready says DRAINING,
/// responses carry `connection: close`,
/// HTTP/2 connections get GOAWAY, new connections are still taken until the drain time has
/// passed, then the listener closes. Without `graceful` it closes at once while an
/// established connection still gets its answer.
#[test]
fn drain_listeners_asks_connections_to_close_then_stops_accepting() {
    let p = PythonFront::start(
        json!({}),
        &["--drain-time-s", "6", "--drain-strategy", "immediate"],
    );
    let (s, front) = (&p.sluice, p.front);
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(keep_alive_get(&mut c, "/before"), (200, false));
    let mut h2 = Command::new(venv_python());
    h2.arg(testdata("h2_flood.py"))
        .args(["127.0.0.1", &front.port().to_string(), "settings", "1"])
        .stdout(Stdio::piped());
    let h2 = h2.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300)); // let the HTTP/2 client connect first
    assert_eq!(admin_post(s, "/drain_listeners?graceful"), "OK\n");
    assert_eq!(s.get("/ready"), (503, "DRAINING\n".to_string()));
    let t = Instant::now();
    assert_eq!(keep_alive_get(&mut c, "/during"), (200, true));
    // Still accepting during the drain time, each answer the connection's last.
    let (status, headers, _) = curl_full(&[url(front, "/new").as_str()]);
    assert_eq!(
        (status, header(&headers, "connection")),
        (200, Some("close"))
    );
    let v: Value = serde_json::from_slice(&h2.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(v["goaway"], true, "{v}");
    assert!(
        wait_until(Duration::from_secs(20), || TcpStream::connect(front)
            .is_err()),
        "the listener never closed"
    );
    assert!(
        t.elapsed() >= Duration::from_secs(5),
        "closed after {:?}",
        t.elapsed()
    );
    assert!(s.stat("sluice_http_downstream_cx_drain_close{stat_prefix=\"ingress\"}") >= 3);

    let p = PythonFront::start(json!({}), &[]);
    let (s, front) = (&p.sluice, p.front);
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(admin_post(s, "/drain_listeners"), "OK\n");
    assert!(
        wait_until(Duration::from_secs(5), || TcpStream::connect(front)
            .is_err()),
        "the listener never closed"
    );
    assert_eq!(keep_alive_get(&mut c, "/established"), (200, true));
}
/// `--drain-strategy gradual`, Envoy's default, side by side with Envoy 1.40 on the same file
/// and flags: during a graceful drain of 4 s each HTTP/1.1 response is its connection's last
/// with a chance that grows with the time gone — a few in the first second, most in the last —
/// and the listener closes when the drain time is over.
#[test]
fn gradual_drain_asks_connections_to_close_over_the_drain_time() {
    let (_up, up) = python_upstream();
    let flags = ["--drain-time-s", "4"];
    let yaml = one_upstream(all_to("up"), json!({}), up);
    let s = Sluice::start(&yaml(0), &[&["--concurrency", "1"][..], &flags].concat());
    let port = free_port();
    let e = Envoy::start_with(&yaml(port), &flags);
    assert!(wait_until(Duration::from_secs(20), || is_listening(port)));
    let envoy_front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for (who, front, admin) in [
        ("sluice", s.listener("http"), s.admin),
        ("envoy", envoy_front, e.admin),
    ] {
        let mut c = TcpStream::connect(front).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(keep_alive_get(&mut c, "/before"), (200, false), "{who}");
        let out = curl(&[
            "-sS",
            "-X",
            "POST",
            &format!("http://{admin}/drain_listeners?graceful"),
        ]);
        assert!(out.status.success(), "{who}: {out:?}");
        let t = Instant::now();
        // (closes, answers) in the drain's first second and in its last.
        let (mut first, mut last) = ((0u32, 0u32), (0u32, 0u32));
        while t.elapsed() < Duration::from_millis(3900) {
            let at = t.elapsed();
            let (status, closed) = keep_alive_get(&mut c, "/during");
            assert_eq!(status, 200, "{who}");
            let bucket = if at < Duration::from_secs(1) {
                Some(&mut first)
            } else if at >= Duration::from_secs(3) {
                Some(&mut last)
            } else {
                None
            };
            if let Some(b) = bucket {
                b.0 += u32::from(closed);
                b.1 += 1;
            }
            if closed {
                c = TcpStream::connect(front).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            }
        }
        eprintln!("{who}: closes in the first second {first:?}, in the last {last:?}");
        assert!(
            first.1 >= 20 && last.1 >= 20,
            "{who}: too few answers: {first:?} {last:?}"
        );
        assert!(
            first.0 * 2 < first.1,
            "{who}: most answers closed at the drain's start: {first:?}"
        );
        assert!(
            last.0 * 2 > last.1,
            "{who}: most answers kept alive at the drain's end: {last:?}"
        );
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(front)
                .is_err()),
            "{who}: the listener never closed"
        );
    }
}

/// A draining HTTP/2 connection gets Envoy's drain_timeout between its two GOAWAYs, side by
/// side with Envoy 1.40 on the same file: after idle_timeout the first GOAWAY (last stream
/// 2^31-1); a stream the client opens after it is still served; the final GOAWAY (naming the
/// last stream taken) comes drain_timeout later, then the connection closes — also for a
/// client that never acknowledges the PING h2 sends with its first GOAWAY.
#[test]
fn a_draining_http2_connection_gets_drain_timeout_between_its_goaways() {
    let (_up, up) = python_upstream();
    let hcm =
        json!({"drain_timeout": "1.5s", "common_http_protocol_options": {"idle_timeout": "1s"}});
    let (s, _e, envoy) = sluice_and_envoy(one_upstream(all_to("up"), hcm, up));
    let fronts = [("sluice", s.listener("http")), ("envoy", envoy)];
    let runs: Vec<(&str, &str, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = fronts
            .iter()
            .flat_map(|&(who, front)| ["ack", "silent"].map(move |mode| (who, front, mode)))
            .map(|(who, front, mode)| {
                scope.spawn(move || {
                    let port = front.port().to_string();
                    let out = python_peer("h2_drain.py", &["127.0.0.1", &port, mode]);
                    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
                        panic!("{who} {mode}: {}", String::from_utf8_lossy(&out.stderr))
                    });
                    (who, mode, v)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (who, mode, v) in &runs {
        eprintln!("{who} {mode}: {v}");
        let g = v["goaways"].as_array().unwrap();
        assert_eq!(g.len(), 2, "{who} {mode}: {v}");
        assert_eq!(g[0][1], 2147483647u32, "{who} {mode}: {v}");
        let (last, statuses) = if *mode == "ack" {
            (3, json!({"1": 200, "3": 200}))
        } else {
            (1, json!({"1": 200}))
        };
        assert_eq!(g[1][1], last, "{who} {mode}: {v}");
        assert_eq!(v["statuses"], statuses, "{who} {mode}: {v}");
        let gap = g[1][0].as_f64().unwrap();
        assert!((1.3..2.5).contains(&gap), "{who} {mode}: {v}");
        let closed = v["closed"].as_f64().unwrap_or(99.0);
        // (Envoy waits up to delayed_close_timeout, 1 s, for the client to close first.)
        assert!(closed >= gap && closed < gap + 1.5, "{who} {mode}: {v}");
    }
    assert_eq!(
        s.stat("sluice_http_downstream_cx_idle_timeout{stat_prefix=\"ingress\"}"),
        2
    );
    // The client's PING acknowledgement, hidden from h2 on purpose, is not logged as odd.
    assert!(!s.log().contains("PING ack"), "{}", s.log());
}
