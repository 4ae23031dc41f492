//! HTTP retries through the real sluice binary: the previous_hosts predicate with
//! host_selection_retry_max_attempts, and request bodies that stream held for a retry, side by
//! side with Envoy 1.40 on the same file.

use serde_json::{json, Value};
use sluice_integration::http::*;
use sluice_integration::*;

/// The previous_hosts retry predicate with host_selection_retry_max_attempts: of two hosts
/// picked at random, one answers 503 (nginx) and one 200 (Python); every request that lands on
/// the first is retried, and with enough reselections the retry never goes back to it, so all
/// 60 succeed. Without the predicate about a quarter would fail (a 503 twice): the test can.
#[test]
fn retries_avoid_the_host_that_failed() {
    let nginx = Nginx::start();
    let (_up, up) = python_upstream();
    let route = |predicate: bool| {
        let mut retry = json!({"retry_on": "5xx", "num_retries": 1,
            "retry_back_off": {"base_interval": "0.001s"}});
        if predicate {
            retry["retry_host_predicate"] =
                json!([{"name": "envoy.retry_host_predicates.previous_hosts"}]);
            retry["host_selection_retry_max_attempts"] = json!(30);
        }
        json!({"retry_policy": retry, "cluster": "both", "prefix_rewrite": "/"})
    };
    let vhosts = json!([{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/avoid/"}, "route": route(true)},
        {"match": {"prefix": "/plain/"}, "route": route(false)}]}]);
    let yaml = hcm_bootstrap(
        0,
        vhosts,
        json!({}),
        vec![cluster(
            "both",
            &[nginx.h1, up],
            false,
            json!({"lb_policy": "RANDOM"}),
        )],
    );
    let s = Sluice::start(&yaml, &["--concurrency", "1"]);
    let front = s.listener("http");
    let ok = |prefix: &str| {
        (0..60)
            .filter(|_| curl_full(&[url(front, &format!("{prefix}503")).as_str()]).0 == 200)
            .count()
    };
    assert_eq!(ok("/avoid/"), 60);
    let plain = ok("/plain/");
    assert!(
        plain < 60,
        "without the predicate some retries should land on the 503 host again"
    );
    assert!(s.stat("sluice_cluster_upstream_rq_retry{cluster=\"both\"}") >= 20);
}

/// Request bodies that stream (gRPC unary and client-streaming calls, an HTTP/1.1 POST after
/// 100-continue, an HTTP/2 POST) are held for retries up to the buffer limit, as Envoy's
/// router holds them: the retried upstream gets the whole body again (sha256), with the same
/// answers from sluice as from Envoy 1.40 on the same file; a body over the limit streams on
/// and is not retried, in both.
#[test]
fn streamed_request_bodies_are_retried_like_envoy() {
    let (_server, gport) = grpc_server();
    let (_up, up) = python_upstream();
    let vhosts = json!([{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/echo.Echo/"}, "route": {"cluster": "grpc",
            "retry_policy": {"retry_on": "unavailable", "num_retries": 1}}},
        {"match": {"prefix": "/flaky/"}, "route": {"cluster": "up",
            "retry_policy": {"retry_on": "5xx", "num_retries": 1}}}]}]);
    let config = |port: u16| {
        hcm_bootstrap(
            port,
            vhosts.clone(),
            json!({}),
            vec![
                cluster("grpc", &[gport], true, json!({})),
                cluster("up", &[up], false, json!({})),
            ],
        )
    };
    let (s, _e, envoy) = sluice_and_envoy(config);
    let dir = TempDir::new("retry-bodies");
    let body = dir.join("body");
    std::fs::write(
        &body,
        (0..300_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let big = dir.join("big");
    std::fs::write(&big, vec![7u8; 3 << 20]).unwrap();
    let at = |f: &std::path::Path| format!("@{}", f.display());
    let mut answers = Vec::new();
    for (who, addr) in [("s", s.listener("http")), ("e", envoy)] {
        let out = python_peer(
            "grpc_peer.py",
            &["retry", &addr.to_string(), &format!("k{who}")],
        );
        let grpc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        let post = |extra: &[&str], file: &std::path::Path, key: &str| {
            let u = url(addr, &format!("/flaky/{who}{key}/1"));
            let (status, _, text) =
                curl_full(&[extra, &["--data-binary", &at(file), u.as_str()]].concat());
            format!("{status} {}", text.trim())
        };
        answers.push((
            grpc,
            post(&["-H", "expect: 100-continue"], &body, "h1"),
            post(&["--http2-prior-knowledge"], &body, "h2"),
            post(&[], &big, "big"),
        ));
    }
    assert_eq!(
        answers[0], answers[1],
        "sluice (left) and Envoy (right) differ"
    );
    let (grpc, h1, h2, big) = &answers[0];
    assert_eq!(grpc["unary"], "recovered KEY-u");
    assert_eq!(grpc["client_stream"], "3 messages 300004 bytes");
    let sha = "recovered 1 300000 ";
    assert!(
        h1.starts_with(&format!("200 {sha}")) && h1 == h2,
        "{h1} / {h2}"
    );
    assert_eq!(big, "503 flaky");
    assert_eq!(
        s.stat("sluice_cluster_upstream_rq_retry{cluster=\"grpc\"}"),
        2
    );
    assert_eq!(
        s.stat("sluice_cluster_upstream_rq_retry{cluster=\"up\"}"),
        2
    );
}
