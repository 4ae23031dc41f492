//! SOFARPC over Bolt through sluice's rpc_proxy, against the real sofa-bolt-node server and
//! client and the real sofa-rpc-node provider and consumer (tests/js), plus a raw client on
//! sluice's own codec where exact status codes and bytes are asserted.

use sluice::protocol::bolt::{status, Bolt};
use sluice::protocol::xprotocol::{Codec, FrameKind};
use sluice_integration::bolt::*;
use sluice_integration::*;
use std::time::{Duration, Instant};

fn vhost(services: &str, routes: &str) -> String {
    format!("            - name: vh\n              services: [{services}]\n              routes:\n{routes}")
}

fn route_all(cluster: &str) -> String {
    vhost(
        "\"*\"",
        &format!("              - route: {{cluster: {cluster}}}\n"),
    )
}

#[test]
fn requests_route_by_service_and_method_in_v1_and_v2_with_crc() {
    let a = BoltServer::start("a", 0, &[]);
    let b = BoltServer::start("b", 0, &[]);
    let c = BoltServer::start("c", 0, &[]);
    let hosts = format!(
        "{}{}",
        vhost(
            &format!("\"{SERVICE}\""),
            "              - match: {method: {exact: sayHello}}\n                route: {cluster: a}\n              - match: {method: {prefix: say}}\n                route: {cluster: b}\n"
        ),
        vhost("\"com.other.*\"", "              - route: {cluster: c}\n")
    );
    let clusters = [
        bolt_cluster("a", "", &[(a.port, "")]),
        bolt_cluster("b", "", &[(b.port, "")]),
        bolt_cluster("c", "", &[(c.port, "")]),
    ]
    .concat();
    let s = Sluice::start(&rpc_config("", &hosts, &clusters), &[]);
    let port = s.listener("bolt").port();
    for version in [&[][..], &["--v2"][..], &["--v2", "--crc"][..]] {
        let mut args = vec!["--count", "20", "--concurrency", "4"];
        args.extend_from_slice(version);
        let r = bolt_client(port, &args);
        assert_eq!(answers(&r), [("a:sayHello".into(), 20)], "{version:?}: {r}");
        assert_eq!(r["mismatched"], 0, "{r}");
        let mut args = vec!["--count", "20", "--method", "sayBye"];
        args.extend_from_slice(version);
        let r = bolt_client(port, &args);
        assert_eq!(answers(&r), [("b:sayBye".into(), 20)], "{version:?}: {r}");
        let mut args = vec!["--count", "20", "--service", "com.other.Svc:1.0"];
        args.extend_from_slice(version);
        let r = bolt_client(port, &args);
        assert_eq!(answers(&r), [("c:sayHello".into(), 20)], "{version:?}: {r}");
    }
    assert_eq!(a.requests().len(), 60);
    assert_eq!(b.requests().len(), 60);
    assert_eq!(c.requests().len(), 60);
    assert_eq!(
        s.stat("sluice_rpc_downstream_rs_total{stat_prefix=\"bolt\"}"),
        180
    );

    // Byte level: a v2 frame with CRC comes back as v2 with a CRC that checks (decode verifies
    // it) and the client's own request id, not the upstream one.
    let mut raw = RawBolt::connect(s.listener("bolt"));
    raw.send(
        &Call {
            id: 77,
            v2_crc: true,
            ..Default::default()
        }
        .encode(),
    );
    let (head, frame) = raw.recv();
    assert_eq!(
        (head.kind, head.request_id, head.status),
        (FrameKind::Response, 77, 0)
    );
    assert_eq!(
        (frame[0], frame[1], frame[11]),
        (2, 2, 1),
        "v2, ver1 2, CRC switch on"
    );
    assert_eq!(answer_of(&frame), "a:sayHello:peter");
}

#[test]
fn ten_thousand_requests_in_flight_over_a_hundred_connections_all_answered_correctly() {
    let servers: Vec<BoltServer> = (0..3)
        .map(|i| BoltServer::start(&format!("s{i}"), 0, &[]))
        .collect();
    let eps: Vec<(u16, &str)> = servers.iter().map(|s| (s.port, "")).collect();
    let s = Sluice::start(
        &rpc_config("", &route_all("all"), &bolt_cluster("all", "", &eps)),
        &[],
    );
    let r = bolt_client(
        s.listener("bolt").port(),
        &[
            "--count",
            "10000",
            "--connections",
            "100",
            "--concurrency",
            "100",
            "--timeout",
            "20000",
        ],
    );
    assert_eq!(r["ok"], 10000, "{r}");
    assert_eq!(r["mismatched"], 0, "{r}");
    assert_eq!(r["errors"].as_object().unwrap().len(), 0, "{r}");
    let per: Vec<usize> = servers.iter().map(|s| s.requests().len()).collect();
    assert_eq!(per.iter().sum::<usize>(), 10000, "{per:?}");
    assert!(
        per.iter().all(|&n| n > 2000),
        "round robin spreads: {per:?}"
    );
    assert_eq!(
        s.stat("sluice_rpc_downstream_rq_active{stat_prefix=\"bolt\"}"),
        0
    );
}

#[test]
fn subsets_pick_endpoints_by_metadata_with_fallback() {
    let v1 = BoltServer::start("v1", 0, &[]);
    let v2 = BoltServer::start("v2", 0, &[]);
    let subset = "    lb_subset_config:\n      fallback_policy: DEFAULT_SUBSET\n      default_subset: {version: v1}\n      subset_selectors: [{keys: [version]}]\n";
    let cluster = bolt_cluster(
        "svc",
        subset,
        &[(v1.port, "{version: v1}"), (v2.port, "{version: v2}")],
    );
    let routes = vhost(
        "\"*\"",
        "              - match: {method: {exact: sayHello}}\n                route: {cluster: svc, metadata_match: {filter_metadata: {envoy.lb: {version: v2}}}}\n              - match: {method: {exact: sayOld}}\n                route: {cluster: svc, metadata_match: {filter_metadata: {envoy.lb: {version: v9}}}}\n              - route: {cluster: svc}\n",
    );
    let s = Sluice::start(&rpc_config("", &routes, &cluster), &[]);
    let port = s.listener("bolt").port();
    let r = bolt_client(port, &["--count", "20"]);
    assert_eq!(answers(&r), [("v2:sayHello".into(), 20)], "{r}");
    // No endpoint has version v9: the default subset (v1) takes it.
    let r = bolt_client(port, &["--count", "20", "--method", "sayOld"]);
    assert_eq!(answers(&r), [("v1:sayOld".into(), 20)], "{r}");
    // No metadata_match: both.
    let r = bolt_client(port, &["--count", "20", "--method", "sayAny"]);
    assert_eq!(
        answers(&r),
        [("v1:sayAny".into(), 10), ("v2:sayAny".into(), 10)],
        "{r}"
    );
}

#[test]
fn a_killed_server_fails_its_requests_with_connection_closed_and_survivors_take_new_ones() {
    let mut a = BoltServer::start("a", 0, &[]);
    let b = BoltServer::start("b", 0, &[]);
    let routes = vhost(
        "\"*\"",
        "              - route: {cluster: ab, retry_policy: {num_retries: 1, retry_on: connect-failure}}\n",
    );
    let s = Sluice::start(
        &rpc_config(
            "",
            &routes,
            &bolt_cluster("ab", "", &[(a.port, ""), (b.port, "")]),
        ),
        &[],
    );
    let addr = s.listener("bolt");
    let mut raw = RawBolt::connect(addr);
    // Ten requests that the servers never answer: five on each server.
    for id in 1..=10 {
        raw.send(
            &Call {
                id,
                method8: "hangHang",
                timeout_ms: 5000,
                ..Default::default()
            }
            .encode(),
        );
    }
    assert!(wait_until(Duration::from_secs(10), || a.requests().len()
        == 5
        && b.requests().len() == 5));
    let killed = Instant::now();
    a.kill();
    let mut closed = Vec::new();
    for _ in 0..5 {
        let (head, _) = raw.recv();
        assert_eq!(head.kind, FrameKind::Response);
        assert_eq!(
            head.status,
            status::CONNECTION_CLOSED,
            "request {}",
            head.request_id
        );
        closed.push(head.request_id);
    }
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "failed fast, not at the deadline"
    );
    closed.sort();
    closed.dedup();
    assert_eq!(
        closed.len(),
        5,
        "each in-flight request failed once: {closed:?}"
    );
    assert_eq!(
        s.stat("sluice_cluster_upstream_rq_connection_closed{cluster=\"ab\"}"),
        5
    );
    // New requests all reach b: a connect to a fails and is retried on b.
    let r = bolt_client(addr.port(), &["--count", "20"]);
    assert_eq!(answers(&r), [("b:sayHello".into(), 20)], "{r}");
    // The five still hanging on b end at their deadline with TIMEOUT, nothing else.
    for _ in 0..5 {
        let (head, _) = raw.recv();
        assert_eq!(head.status, status::TIMEOUT);
        assert!(!closed.contains(&head.request_id));
    }
}

#[test]
fn deadlines_answer_timeout_and_late_responses_are_dropped() {
    let slow = BoltServer::start("slow", 0, &["--slow-ms", "700"]);
    let s = Sluice::start(
        &rpc_config(
            "",
            &route_all("slow"),
            &bolt_cluster("slow", "", &[(slow.port, "")]),
        ),
        &[],
    );
    let mut raw = RawBolt::connect(s.listener("bolt"));
    let sent = Instant::now();
    raw.send(
        &Call {
            id: 5,
            method8: "slowSlow",
            timeout_ms: 200,
            ..Default::default()
        }
        .encode(),
    );
    let (head, frame) = raw.recv();
    let took = sent.elapsed();
    assert_eq!((head.request_id, head.status), (5, status::TIMEOUT));
    assert_eq!(frame.len(), 20, "a bare v1 response header");
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(600),
        "{took:?}"
    );
    // The late answer reaches sluice and is dropped; the next request gets its own answer.
    assert!(wait_until(Duration::from_secs(5), || s
        .stat("sluice_rpc_upstream_rs_late{stat_prefix=\"bolt\"}")
        == 1));
    raw.send(
        &Call {
            id: 6,
            method8: "sayHello",
            ..Default::default()
        }
        .encode(),
    );
    let (head, frame) = raw.recv();
    assert_eq!((head.request_id, head.status), (6, 0));
    assert_eq!(answer_of(&frame), "slow:sayHello:peter");
    assert_eq!(
        s.stat("sluice_cluster_upstream_rq_timeout{cluster=\"slow\"}"),
        1
    );
    // The real client sees the timeout as an error too, and no hang.
    let r = bolt_client(
        s.listener("bolt").port(),
        &["--count", "3", "--method", "slowSlow", "--timeout", "200"],
    );
    assert_eq!(r["ok"], 0, "{r}");
    assert_eq!(
        r["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        3,
        "{r}"
    );
}

#[test]
fn a_per_try_timeout_retries_on_another_host() {
    let a = BoltServer::start("a", 0, &["--slow-ms", "2000"]);
    let b = BoltServer::start("b", 0, &["--slow-ms", "10"]);
    let routes = vhost(
        "\"*\"",
        "              - route: {cluster: ab, timeout: 3s, retry_policy: {num_retries: 1, per_try_timeout: 0.3s, retry_on: per-try-timeout}}\n",
    );
    let s = Sluice::start(
        &rpc_config(
            "",
            &routes,
            &bolt_cluster("ab", "", &[(a.port, ""), (b.port, "")]),
        ),
        &[],
    );
    let r = bolt_client(
        s.listener("bolt").port(),
        &["--count", "6", "--method", "slowSlow"],
    );
    assert_eq!(answers(&r), [("b:slowSlow".into(), 6)], "{r}");
    // Every try that went to a timed out after 0.3 s and was retried on b.
    let on_a = a.requests().len() as u64;
    assert!(on_a >= 1, "round robin sends first tries to a too");
    assert_eq!(
        s.stat("sluice_cluster_upstream_rq_retry{cluster=\"ab\"}"),
        on_a
    );
    assert_eq!(
        s.stat("sluice_cluster_upstream_rq_timeout{cluster=\"ab\"}"),
        on_a
    );
}

#[test]
fn heartbeats_are_answered_downstream_and_sent_upstream_and_a_silent_upstream_is_closed() {
    let good = BoltServer::start("good", 0, &[]);
    let mute = BoltServer::start("mute", 0, &["--no-heartbeat"]);
    let extra = "          upstream: {heartbeat_interval: 0.2s, heartbeat_timeout: 0.3s}\n";
    let hosts = format!(
        "{}{}",
        vhost("\"good\"", "              - route: {cluster: good}\n"),
        vhost("\"mute\"", "              - route: {cluster: mute}\n")
    );
    let clusters = [
        bolt_cluster("good", "", &[(good.port, "")]),
        bolt_cluster("mute", "", &[(mute.port, "")]),
    ]
    .concat();
    let s = Sluice::start(&rpc_config(extra, &hosts, &clusters), &[]);
    let addr = s.listener("bolt");
    // Downstream: sluice answers a client's heartbeat itself.
    let mut raw = RawBolt::connect(addr);
    let mut hb = bytes::BytesMut::new();
    Bolt.heartbeat(99, &mut hb);
    raw.send(&hb);
    let (head, _) = raw.recv();
    assert_eq!(
        (head.kind, head.request_id, head.status),
        (FrameKind::HeartbeatAck, 99, 0)
    );
    assert_eq!(
        s.stat("sluice_rpc_downstream_heartbeat{stat_prefix=\"bolt\"}"),
        1
    );
    assert_eq!(
        good.heartbeats(),
        0,
        "a downstream heartbeat is not forwarded"
    );
    // Upstream: open a connection to each server, then leave them idle.
    for svc in ["good", "mute"] {
        raw.send(
            &Call {
                id: 1,
                headers: &[("service", svc)],
                ..Default::default()
            }
            .encode(),
        );
        assert_eq!(raw.recv().0.status, 0);
    }
    assert!(
        wait_until(Duration::from_secs(5), || good.heartbeats() >= 2),
        "idle upstream gets heartbeats"
    );
    assert!(wait_until(Duration::from_secs(5), || s.stat(
        "sluice_cluster_upstream_cx_heartbeat_failure{cluster=\"mute\"}"
    ) >= 1));
    assert_eq!(
        s.stat("sluice_cluster_upstream_cx_heartbeat_failure{cluster=\"good\"}"),
        0
    );
    assert!(wait_until(Duration::from_secs(5), || s
        .stat("sluice_cluster_upstream_cx_active{cluster=\"mute\"}")
        == 0));
    assert_eq!(
        s.stat("sluice_cluster_upstream_cx_active{cluster=\"good\"}"),
        1
    );
    // A new request to the mute server opens a new connection and works.
    raw.send(
        &Call {
            id: 2,
            headers: &[("service", "mute")],
            ..Default::default()
        }
        .encode(),
    );
    let (head, frame) = raw.recv();
    assert_eq!((head.request_id, head.status), (2, 0));
    assert_eq!(answer_of(&frame), "mute:sayHello:peter");
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let a = BoltServer::start("a", 0, &[]);
    let extra = "          max_frame_bytes: 4096\n";
    let s = Sluice::start(
        &rpc_config(
            extra,
            &route_all("a"),
            &bolt_cluster("a", "", &[(a.port, "")]),
        ),
        &[],
    );
    let addr = s.listener("bolt");
    let mut healthy = RawBolt::connect(addr);
    let good = Call::default().encode();
    let mut bad_crc = Call {
        v2_crc: true,
        ..Default::default()
    }
    .encode();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0xff;
    let mut too_long = good.clone();
    too_long[18..22].copy_from_slice(&100_000u32.to_be_bytes()); // content length
    let mut bad_type = good.clone();
    bad_type[1] = 9;
    let cases: [(&str, Vec<u8>, bool); 4] = [
        ("bad CRC", bad_crc, false),
        ("over max_frame_bytes", too_long, false),
        ("unknown Bolt type", bad_type, false),
        ("truncated", good[..good.len() / 2].to_vec(), true),
    ];
    for (i, (what, bytes, then_close)) in cases.into_iter().enumerate() {
        let mut conn = RawBolt::connect(addr);
        // A good request first: what was accepted before the bad frame is answered.
        conn.send(&good);
        assert_eq!(conn.recv().0.status, 0, "{what}");
        conn.send(&bytes);
        if then_close {
            conn.stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        assert!(
            conn.closed_within(Duration::from_secs(5)),
            "{what}: sluice closes the connection"
        );
        assert!(
            wait_until(Duration::from_secs(5), || s.stat(
                "sluice_rpc_downstream_cx_protocol_error{stat_prefix=\"bolt\"}"
            ) == i as u64 + 1),
            "{what}"
        );
        // The worker keeps serving its other connections.
        healthy.send(
            &Call {
                id: 100 + i as u32,
                ..Default::default()
            }
            .encode(),
        );
        let (head, _) = healthy.recv();
        assert_eq!(
            (head.request_id, head.status),
            (100 + i as u64, 0),
            "{what}"
        );
    }
    // Not Bolt at all, and no passthrough cluster: closed, counted.
    let mut http = RawBolt::connect(addr);
    http.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(http.closed_within(Duration::from_secs(5)));
    assert!(wait_until(Duration::from_secs(5), || s.stat(
        "sluice_rpc_downstream_cx_unknown_protocol{stat_prefix=\"bolt\"}"
    ) == 1));
    let log = s.log();
    assert!(log.contains("CRC32 mismatch"), "{log}");
    assert!(log.contains("exceeds the limit of 4096 bytes"), "{log}");
}

#[test]
fn health_checks_take_endpoints_out_and_bring_them_back() {
    let a = BoltServer::start("a", 0, &[]);
    // Accepts connections and requests but never answers heartbeats: Bolt checks fail it.
    let mute = BoltServer::start("mute", 0, &["--no-heartbeat"]);
    let mut c = BoltServer::start("c", 0, &[]);
    let bolt_hc = "    health_checks:\n    - {timeout: 0.2s, interval: 0.1s, unhealthy_threshold: 2, healthy_threshold: 2, custom_health_check: {name: sluice.health_checkers.bolt}}\n";
    let tcp_hc = "    health_checks:\n    - {timeout: 0.2s, interval: 0.1s, interval_jitter: 0.05s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {}}\n";
    let hosts = format!(
        "{}{}",
        vhost("\"bolt\"", "              - route: {cluster: hb}\n"),
        vhost("\"tcp\"", "              - route: {cluster: tcp}\n")
    );
    let clusters = [
        bolt_cluster("hb", bolt_hc, &[(a.port, ""), (mute.port, "")]),
        bolt_cluster("tcp", tcp_hc, &[(a.port, ""), (c.port, "")]),
    ]
    .concat();
    let s = Sluice::start(&rpc_config("", &hosts, &clusters), &[]);
    let port = s.listener("bolt").port();
    let mute_flag = format!(
        "hb::127.0.0.1:{}::health_flags::/failed_active_hc",
        mute.port
    );
    assert!(
        wait_until(Duration::from_secs(5), || s
            .get("/clusters")
            .1
            .contains(&mute_flag)),
        "{}",
        s.get("/clusters").1
    );
    assert!(s
        .get("/clusters")
        .1
        .contains(&format!("hb::127.0.0.1:{}::health_flags::healthy", a.port)));
    assert_eq!(
        s.stat(&format!(
            "sluice_host_healthy{{cluster=\"hb\",address=\"127.0.0.1:{}\"}}",
            mute.port
        )),
        0
    );
    assert!(
        s.stat(&format!(
            "sluice_host_health_check_failures_total{{cluster=\"hb\",address=\"127.0.0.1:{}\"}}",
            mute.port
        )) >= 1
    );
    let r = bolt_client(port, &["--count", "30", "--service", "bolt"]);
    assert_eq!(answers(&r), [("a:sayHello".into(), 30)], "{r}");
    assert!(
        mute.requests().is_empty(),
        "an unhealthy endpoint gets no requests"
    );

    // TCP checks: kill c, it goes out; start it again on its port, it comes back.
    let c_port = c.port;
    let c_flag = |f: &str| format!("tcp::127.0.0.1:{c_port}::health_flags::{f}");
    assert!(wait_until(Duration::from_secs(5), || s
        .get("/clusters")
        .1
        .contains(&c_flag("healthy"))));
    c.kill();
    assert!(wait_until(Duration::from_secs(5), || s
        .get("/clusters")
        .1
        .contains(&c_flag("/failed_active_hc"))));
    let r = bolt_client(port, &["--count", "20", "--service", "tcp"]);
    assert_eq!(answers(&r), [("a:sayHello".into(), 20)], "{r}");
    let c2 = BoltServer::start("c2", c_port, &[]);
    assert!(wait_until(Duration::from_secs(5), || s
        .get("/clusters")
        .1
        .contains(&c_flag("healthy"))));
    let r = bolt_client(port, &["--count", "20", "--service", "tcp"]);
    assert_eq!(
        answers(&r),
        [("a:sayHello".into(), 10), ("c2:sayHello".into(), 10)],
        "{r}"
    );
    assert_eq!(c2.requests().len(), 10);
}

#[test]
fn hash_policies_keep_a_key_on_one_host() {
    let servers: Vec<BoltServer> = (0..3)
        .map(|i| BoltServer::start(&format!("h{i}"), 0, &[]))
        .collect();
    let eps: Vec<(u16, &str)> = servers.iter().map(|s| (s.port, "")).collect();
    for policy in ["RING_HASH", "MAGLEV"] {
        let routes = vhost(
            "\"*\"",
            "              - route: {cluster: h, hash_policy: [{header: {header_name: uid}}]}\n",
        );
        let cluster = bolt_cluster("h", &format!("    lb_policy: {policy}\n"), &eps);
        let s = Sluice::start(&rpc_config("", &routes, &cluster), &[]);
        let mut raw = RawBolt::connect(s.listener("bolt"));
        let mut owner_of = std::collections::HashMap::new();
        for round in 0..3 {
            for user in 0..12 {
                let uid = format!("user-{user}");
                raw.send(
                    &Call {
                        id: round * 100 + user,
                        headers: &[("service", SERVICE), ("uid", &uid)],
                        ..Default::default()
                    }
                    .encode(),
                );
                let (head, frame) = raw.recv();
                assert_eq!(head.status, 0);
                let server = answer_of(&frame).split(':').next().unwrap().to_string();
                let first = owner_of.entry(uid.clone()).or_insert(server.clone());
                assert_eq!(*first, server, "{policy}: {uid} moved");
            }
        }
        let distinct: std::collections::HashSet<_> = owner_of.values().collect();
        assert!(
            distinct.len() >= 2,
            "{policy}: 12 keys over 3 hosts: {owner_of:?}"
        );
    }
}

#[test]
fn no_route_gets_no_processor_and_oneway_requests_get_no_answer() {
    let a = BoltServer::start("a", 0, &[]);
    let routes = vhost(
        &format!("\"{SERVICE}\""),
        "              - route: {cluster: a}\n",
    );
    let s = Sluice::start(
        &rpc_config("", &routes, &bolt_cluster("a", "", &[(a.port, "")])),
        &[],
    );
    let mut raw = RawBolt::connect(s.listener("bolt"));
    raw.send(
        &Call {
            id: 3,
            headers: &[("service", "com.nobody.Here:1.0")],
            ..Default::default()
        }
        .encode(),
    );
    let (head, _) = raw.recv();
    assert_eq!((head.request_id, head.status), (3, status::NO_PROCESSOR));
    raw.send(
        &Call {
            id: 4,
            oneway: true,
            ..Default::default()
        }
        .encode(),
    );
    assert!(wait_until(Duration::from_secs(5), || a.requests().len() == 1));
    // The next answer is for the next request: the oneway one got none.
    raw.send(
        &Call {
            id: 5,
            ..Default::default()
        }
        .encode(),
    );
    let (head, _) = raw.recv();
    assert_eq!((head.request_id, head.status), (5, 0));
    assert_eq!(
        s.stat("sluice_rpc_downstream_rq_oneway{stat_prefix=\"bolt\"}"),
        1
    );
    assert_eq!(
        s.stat("sluice_rpc_downstream_rq_no_route{stat_prefix=\"bolt\"}"),
        1
    );
}

#[test]
fn unknown_protocols_pass_through_to_the_passthrough_cluster() {
    require_program("python3");
    let (_web, web_port) =
        forking_server("SYSTEM:'read l; printf \"HTTP/1.0 200 OK\\r\\n\\r\\npassed through\"'");
    let a = BoltServer::start("a", 0, &[]);
    let extra = "          passthrough_cluster: web\n";
    let clusters = [
        bolt_cluster("a", "", &[(a.port, "")]),
        bolt_cluster("web", "", &[(web_port, "")]),
    ]
    .concat();
    let s = Sluice::start(&rpc_config(extra, &route_all("a"), &clusters), &[]);
    let addr = s.listener("bolt");
    let reply = roundtrip(addr, b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(
        String::from_utf8_lossy(&reply).ends_with("passed through"),
        "{reply:?}"
    );
    assert_eq!(
        s.stat("sluice_rpc_downstream_cx_passthrough{stat_prefix=\"bolt\"}"),
        1
    );
    // Bolt on the same listener still goes to the Bolt cluster.
    let r = bolt_client(addr.port(), &["--count", "5"]);
    assert_eq!(answers(&r), [("a:sayHello".into(), 5)], "{r}");
}

#[test]
fn sofa_rpc_node_consumer_reaches_providers_through_sluice() {
    let mut providers = Vec::new();
    let mut eps = Vec::new();
    for name in ["p1", "p2"] {
        let port = free_port();
        let mut cmd = std::process::Command::new("node");
        cmd.arg(js_dir().join("rpc_provider.js"))
            .args(["--port", &port.to_string(), "--name", name])
            .stdout(std::process::Stdio::piped());
        let mut p = Proc::spawn(cmd, "rpc_provider.js");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(p.child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), format!("listening {port}"));
        providers.push(p);
        eps.push((port, ""));
    }
    let routes = vhost(
        "\"com.nodejs.test.TestService:1.0\"",
        "              - route: {cluster: providers}\n",
    );
    let s = Sluice::start(
        &rpc_config("", &routes, &bolt_cluster("providers", "", &eps)),
        &[],
    );
    let out = std::process::Command::new("node")
        .arg(js_dir().join("rpc_consumer.js"))
        .args(["--host", &s.listener("bolt").to_string(), "--count", "20"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["sums_ok"], 20, "{v}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 0, "{v}");
    // Round robin over the two providers, request by request on the consumer's one connection.
    assert_eq!(v["who"], serde_json::json!({"p1": 10, "p2": 10}), "{v}");
}
