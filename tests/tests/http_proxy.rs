//! HTTP at L7 through the real sluice binary, against real peers: curl (HTTP/1.1 and
//! --http2-prior-knowledge), nginx (HTTP/1.1 and h2c upstream), wrk, grpcio client and
//! server, a websocket client, Python's http.server — and Envoy 1.40 on the same config file,
//! answering the same requests. Hostile clients are http_hostile.rs', what the connection
//! manager does to requests (paths, x-forwarded-for, header values) http_request_edits.rs',
//! retries http_retries.rs', draining http_drain.rs'.

use serde_json::{json, Value};
use sluice_integration::http::*;
use sluice_integration::xds::Envoy;
use sluice_integration::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn curl_over_http1_and_h2c_to_nginx_over_http1_and_h2c() {
    let nginx = Nginx::start();
    let vhosts = json!([{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/h2/"}, "route": {"cluster": "nginx_h2c", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "nginx_h1"}}]}]);
    let yaml = hcm_bootstrap(
        0,
        vhosts,
        json!({}),
        vec![
            cluster("nginx_h1", &[nginx.h1], false, json!({})),
            cluster("nginx_h2c", &[nginx.h2c], true, json!({})),
        ],
    );
    let s = Sluice::start(&yaml, &["--concurrency", "1"]);
    let front = s.listener("http");
    for client in [&[][..], &["--http2-prior-knowledge"][..]] {
        for (path, upstream_port, protocol) in [
            ("/a?x=1", nginx.h1, "HTTP/1.1"),
            ("/h2/b", nginx.h2c, "HTTP/2.0"),
        ] {
            let u = url(front, path);
            let (status, headers, body) = curl_full(&[client, &[u.as_str()]].concat());
            assert_eq!(status, 200, "{client:?} {path}");
            let uri = path.strip_prefix("/h2").unwrap_or(path);
            assert_eq!(
                body,
                format!("nginx {upstream_port} {uri} {front} {protocol}\n"),
                "{client:?} {path}"
            );
            assert_eq!(header(&headers, "server"), Some("envoy"));
            assert!(header(&headers, "x-envoy-upstream-service-time").is_some());
        }
    }
    // Keep-alive on both sides: 50 requests over one client connection, few upstream ones.
    let u = url(front, "/k");
    let urls: Vec<&str> = std::iter::repeat_n(u.as_str(), 50).collect();
    let out = curl(
        &[
            &["-o", "/dev/null", "-w", "%{http_code}%{num_connects}\n"],
            &urls[..],
        ]
        .concat(),
    );
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        lines.lines().filter(|l| l.starts_with("200")).count(),
        50,
        "{lines}"
    );
    assert_eq!(
        lines.lines().filter(|l| *l == "2001").count(),
        1,
        "one client connection: {lines}"
    );
    assert_eq!(
        s.stat("sluice_http_downstream_rq_2xx{stat_prefix=\"ingress\"}"),
        54
    );
    assert_eq!(
        s.stat("sluice_http_downstream_cx_http2_total{stat_prefix=\"ingress\"}"),
        2
    );
    assert_eq!(
        s.stat("sluice_cluster_upstream_cx_http2_total{cluster=\"nginx_h2c\"}"),
        1
    );
    assert!(s.stat("sluice_cluster_upstream_cx_http1_total{cluster=\"nginx_h1\"}") <= 3);
    assert_eq!(
        s.stat("sluice_cluster_upstream_rq_2xx{cluster=\"nginx_h1\"}"),
        52
    );
}

/// One config, run by sluice and by Envoy: routes, rewrites, redirects, direct responses,
/// header mutations, retries, timeouts and local replies give the same statuses, bodies,
/// headers and response flags.
#[test]
fn same_config_same_answers_as_envoy() {
    let (_up, up) = python_upstream();
    let dead = free_port();
    let vhosts = json!([
        {"name": "api", "domains": ["api.example.com"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "up"}}]},
        {"name": "all", "domains": ["*"],
         "response_headers_to_add": [{"header": {"key": "x-vh", "value": "yes"}}],
         "routes": [
            {"name": "direct", "match": {"path": "/direct"}, "direct_response": {"status": 418, "body": {"inline_string": "teapot\n"}}},
            {"match": {"prefix": "/old/"}, "redirect": {"prefix_rewrite": "/new/", "response_code": "FOUND"}},
            {"match": {"prefix": "/secure"}, "redirect": {"https_redirect": true}},
            {"match": {"prefix": "/v2/"}, "route": {"cluster": "up", "prefix_rewrite": "/headers/"}},
            {"match": {"safe_regex": {"regex": "/re/([a-z]+)/([0-9]+)"}}, "route": {"cluster": "up",
                "regex_rewrite": {"pattern": {"regex": "^/re/([a-z]+)/([0-9]+)$"}, "substitution": "/headers/\\2/\\1"}}},
            {"match": {"prefix": "/hdr", "headers": [{"name": "x-pick", "string_match": {"exact": "me"}}]},
             "route": {"cluster": "up", "host_rewrite_literal": "rewritten.example", "prefix_rewrite": "/headers"},
             "request_headers_to_add": [{"header": {"key": "x-added", "value": "route"}}],
             "request_headers_to_remove": ["x-drop"]},
            {"match": {"prefix": "/flaky/"}, "route": {"cluster": "up", "retry_policy": {"retry_on": "5xx", "num_retries": 3}}},
            {"match": {"prefix": "/noretry/"}, "route": {"cluster": "up", "prefix_rewrite": "/flaky/"}},
            {"match": {"prefix": "/slow/"}, "route": {"cluster": "up", "timeout": "0.3s"}},
            {"match": {"prefix": "/pertry/"}, "route": {"cluster": "up", "prefix_rewrite": "/slow/",
                "retry_policy": {"retry_on": "5xx", "num_retries": 1, "per_try_timeout": "0.2s"}}},
            {"match": {"prefix": "/dead"}, "route": {"cluster": "dead"}},
            {"match": {"prefix": "/byheader"}, "route": {"cluster_header": "x-cluster", "prefix_rewrite": "/"}},
            {"match": {"prefix": "/q", "query_parameters": [{"name": "v", "string_match": {"exact": "2"}}]}, "direct_response": {"status": 200, "body": {"inline_string": "v2\n"}}},
            {"match": {"prefix": "/status/"}, "route": {"cluster": "up"}}
        ]}
    ]);
    let log_format =
        "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\n";
    let config = |port: u16, log: &str| {
        hcm_bootstrap(
            port,
            vhosts.clone(),
            json!({"access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": log, "log_format": {"text_format_source": {"inline_string": log_format}}}}]}),
            vec![
                cluster("up", &[up], false, json!({})),
                cluster("dead", &[dead], false, json!({})),
            ],
        )
    };
    let dir = TempDir::new("envoy-compare");
    let (slog, elog) = (dir.join("sluice.log"), dir.join("envoy.log"));
    let s = Sluice::start(&config(0, slog.to_str().unwrap()), &["--concurrency", "1"]);
    let eport = free_port();
    let _e = Envoy::start(&config(eport, elog.to_str().unwrap()));
    // Envoy's admin address is written before its listeners are up.
    assert!(
        wait_until(Duration::from_secs(20), || is_listening(eport)),
        "Envoy never listened on {eport}"
    );
    let sa = s.listener("http");
    let ea: SocketAddr = format!("127.0.0.1:{eport}").parse().unwrap();
    // (path, extra curl args); the flaky keys differ per proxy so each sees fresh state.
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("/direct", vec![]),
        ("/old/page?x=1", vec![]),
        ("/secure/x", vec![]),
        ("/q?v=2", vec![]),
        ("/q?v=3", vec![]),
        ("/v2/a", vec![]),
        ("/re/abc/42", vec![]),
        ("/hdr", vec!["-H", "x-pick: me", "-H", "x-drop: 1"]),
        ("/hdr", vec![]),
        ("/flaky/K/2", vec![]),
        ("/noretry/N/1", vec![]),
        ("/slow/1000", vec![]),
        ("/pertry/1000", vec![]),
        ("/dead", vec![]),
        // Again at once: sluice's host is backing off after the failed connect, and the
        // request still gets Envoy's connect failure (503 UF), not "no healthy upstream".
        ("/dead", vec![]),
        ("/byheader/status/201", vec!["-H", "x-cluster: up"]),
        ("/byheader/x", vec!["-H", "x-cluster: nope"]),
        ("/status/503", vec![]),
        ("/", vec!["-H", "host: api.example.com"]),
    ];
    for (path, extra) in &cases {
        let mut answers = Vec::new();
        for (who, addr) in [("sluice", sa), ("envoy", ea)] {
            let p = path
                .replace("/K/", &format!("/{who}K/"))
                .replace("/N/", &format!("/{who}N/"));
            let u = url(addr, &p);
            let (status, headers, body) = curl_full(&[&extra[..], &[u.as_str()]].concat());
            let mut body = body;
            let echoed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if echoed.get("headers").is_some() {
                // The upstream echoes the request; keep what both proxies must agree on.
                let v = echoed;
                let h = &v["headers"];
                body = json!({"path": v["path"], "host": h["host"].as_str().map(|x| x.replace(&eport.to_string(), "PORT").replace(&sa.port().to_string(), "PORT")),
                    "x-added": h["x-added"], "x-drop": h["x-drop"], "xfp": h["x-forwarded-proto"],
                    "rid": h["x-request-id"].as_str().map(str::len), "orig": h["x-envoy-original-path"],
                    "timeout": h["x-envoy-expected-rq-timeout-ms"]}).to_string();
            }
            body = body
                .replace(&format!("/{who}K/"), "/K/")
                .replace(&format!("/{who}N/"), "/N/")
                .replace(&format!("/{who}"), "/");
            let location = header(&headers, "location").map(|l| {
                l.replace(&eport.to_string(), "PORT")
                    .replace(&sa.port().to_string(), "PORT")
            });
            answers.push((
                status,
                body,
                location,
                header(&headers, "x-vh").map(str::to_string),
                header(&headers, "content-type").map(str::to_string),
            ));
        }
        assert_eq!(
            answers[0], answers[1],
            "{path} {extra:?}: sluice (left) and Envoy (right) differ"
        );
    }
    // The access logs agree on statuses and response flags, request by request.
    let lines = |f: &std::path::Path, n: usize| -> Vec<String> {
        let mut got = Vec::new();
        wait_until(Duration::from_secs(10), || {
            got = std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(|l| l.replace("sluice", "").replace("envoy", ""))
                .collect();
            got.len() >= n
        });
        got
    };
    let sl = lines(&slog, cases.len());
    let el = lines(&elog, cases.len());
    assert_eq!(sl, el, "access logs differ");
    assert!(sl.iter().any(|l| l.starts_with("503 UF ")), "{sl:?}");
    assert!(sl.iter().any(|l| l.starts_with("504 UT ")), "{sl:?}");
    assert!(
        sl.iter().any(|l| l.starts_with("404 NR ")) || sl.iter().any(|l| l.starts_with("503 NC ")),
        "{sl:?}"
    );
    assert_eq!(
        s.stat("sluice_cluster_upstream_rq_retry{cluster=\"up\"}"),
        3
    ); // 2 on flaky, 1 per-try
    assert_eq!(
        s.stat("sluice_cluster_upstream_rq_per_try_timeout{cluster=\"up\"}"),
        2
    );
}
/// A websocket through an HTTP/1.1 upgrade: the handshake and every message echoed intact; a
/// route without the upgrade enabled refuses it with 403.
#[test]
fn websocket_echo_through_an_upgrade() {
    let (_up, up) = python_upstream();
    let vhosts = json!([{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/ws"}, "route": {"cluster": "up", "upgrade_configs": [{"upgrade_type": "websocket"}]}},
        {"match": {"prefix": "/"}, "route": {"cluster": "up"}}]}]);
    let (s, _e, envoy) = sluice_and_envoy(one_upstream(vhosts, json!({}), up));
    // The same from sluice as from Envoy 1.40 on the same file.
    for front in [s.listener("http"), envoy] {
        let out = python_peer("ws_client.py", &[&format!("ws://{front}/ws"), "20"]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(v, json!({"ok": 40, "bad": 0}), "through {front}");
        let r = raw_exchange(front, b"GET /other HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 403"), "through {front}: {r}");
    }
}

/// gRPC through sluice (HTTP/2 both sides): unary, 4 MB messages, server/client/bidi streaming,
/// deadlines and cancellation, and a no-route reply as a gRPC status — each ending as it does
/// through Envoy 1.40 on the same file.
#[test]
fn grpc_calls_through_sluice() {
    let (_server, port_of_grpc) = grpc_server();
    // SleepCapped's max stream duration is the client's grpc-timeout (3 s) capped at 0.3 s, so
    // the proxy's timer always fires first; the other calls take the client's deadline uncapped.
    let vhosts = json!([{"name": "all", "domains": ["*"], "routes": [
        {"match": {"path": "/echo.Echo/SleepCapped", "grpc": {}}, "route": {"cluster": "grpc", "timeout": "0s",
            "max_stream_duration": {"grpc_timeout_header_max": "0.3s"}}},
        {"match": {"prefix": "/echo.Echo/", "grpc": {}}, "route": {"cluster": "grpc", "timeout": "0s",
            "max_stream_duration": {"grpc_timeout_header_max": "0s"}}}]}]);
    let config = |port: u16| {
        hcm_bootstrap(
            port,
            vhosts.clone(),
            json!({}),
            vec![cluster("grpc", &[port_of_grpc], true, json!({}))],
        )
    };
    let (s, _e, envoy) = sluice_and_envoy(config);
    let run = |front: SocketAddr| -> Value {
        let out = python_peer("grpc_peer.py", &["client", &front.to_string()]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
    };
    let v = run(s.listener("http"));
    // Every case ends the same through Envoy 1.40 on the same file.
    assert_eq!(v, run(envoy), "sluice (left) and Envoy (right) differ");
    assert_eq!(v["unary"], "hello");
    assert_eq!(v["unary_4mb_ok"], true);
    assert_eq!(
        v["server_stream"],
        json!(["item 0", "item 1", "item 2", "item 3", "item 4"])
    );
    assert_eq!(v["client_stream"], "3 messages 60 bytes");
    assert_eq!(v["bidi"], json!(["cba", "olleh"]));
    // Envoy's max-duration timeout (408 DT) is DEADLINE_EXCEEDED to a gRPC client.
    assert_eq!(v["deadline"], "DEADLINE_EXCEEDED");
    assert_eq!(
        s.stat("sluice_http_downstream_rq_max_duration_reached{stat_prefix=\"ingress\"}"),
        1
    );
    assert_eq!(v["cancel"], "CANCELLED");
    // The cancelled call's reset reached sluice, which ended it upstream as well.
    assert!(s.stat("sluice_http_downstream_rq_rx_reset{stat_prefix=\"ingress\"}") >= 1);
    assert_eq!(v["unknown_service"], "UNIMPLEMENTED"); // Envoy's 404 NR as a gRPC status
}

/// max_stream_duration holds for the whole stream, not only until the response head: a
/// response still streaming when it runs out is cut off (HTTP/1.1: the connection closes
/// before the last chunk; HTTP/2: the stream is reset), as through Envoy 1.40 on the same file.
#[test]
fn max_stream_duration_cuts_off_a_response_still_streaming() {
    let (_up, up) = python_upstream();
    let vhosts = json!([{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/trickle/"}, "route": {"cluster": "up",
            "max_stream_duration": {"max_stream_duration": "0.5s"}}},
        {"match": {"prefix": "/free/"}, "route": {"cluster": "up", "prefix_rewrite": "/trickle/"}}]}]);
    let (s, _e, envoy) = sluice_and_envoy(one_upstream(vhosts, json!({}), up));
    for front in [s.listener("http"), envoy] {
        // 20 ticks 100 ms apart: about 5 of them before the 0.5 s run out.
        let started = Instant::now();
        let r = raw_exchange(front, b"GET /trickle/20/100 HTTP/1.1\r\nhost: a\r\n\r\n");
        let took = started.elapsed();
        assert!(r.starts_with("HTTP/1.1 200"), "through {front}: {r}");
        let ticks = r.matches("tick").count();
        assert!(
            (2..10).contains(&ticks),
            "through {front}: {ticks} ticks: {r}"
        );
        assert!(
            !r.ends_with("0\r\n\r\n"),
            "through {front}: ended cleanly: {r}"
        );
        assert!(
            took < Duration::from_secs(3),
            "through {front}: took {took:?}"
        );
        // HTTP/2: the stream is reset with NO_ERROR, as Envoy resets it (curl takes that
        // as the end of the body, so only the ticks and the time tell).
        let started = Instant::now();
        let out = curl(&["--http2-prior-knowledge", &url(front, "/trickle/20/100")]);
        let took = started.elapsed();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            (2..10).contains(&body.matches("tick").count()),
            "through {front}: {body}"
        );
        assert!(
            took < Duration::from_secs(3),
            "through {front}: took {took:?}"
        );
        // The same response on a route without a max duration streams to its end.
        let out = curl(&["--http2-prior-knowledge", &url(front, "/free/8/50")]);
        assert!(out.status.success(), "through {front}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).matches("tick").count(),
            8
        );
    }
    assert_eq!(
        s.stat("sluice_http_downstream_rq_max_duration_reached{stat_prefix=\"ingress\"}"),
        2
    );
}

#[test]
fn configs_sluice_cannot_honour_name_their_path() {
    let base = |hcm_extra: Value, vhosts: Value| {
        hcm_bootstrap(
            0,
            vhosts,
            hcm_extra,
            vec![cluster("up", &[1], false, json!({}))],
        )
    };
    let hcm = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    for (yaml, want) in [
        (
            base(json!({"http_filters": [{"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}}, {"name": "envoy.filters.http.router"}]}), all_to("up")),
            format!("{hcm}.http_filters[0]: unknown HTTP filter \"envoy.filters.http.cors\""),
        ),
        (
            base(json!({}), json!([{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "up", "retry_policy": {"retry_on": "5xx,whenever"}}}]}])),
            format!("{hcm}.route_config.virtual_hosts[0].routes[0].route.retry_policy.retry_on: retry_on \"whenever\" is not supported"),
        ),
        (
            base(json!({}), json!([{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "nope"}}]}])),
            format!("{hcm}.route_config.virtual_hosts[0].routes[0].route.cluster: unknown cluster \"nope\""),
        ),
    ] {
        Sluice::run_to_exit(&yaml, &[]).assert_fails_with(&want);
    }
    // An optional filter sluice lacks is skipped, as Envoy skips it.
    let yaml = base(
        json!({"http_filters": [{"name": "istio.stats", "is_optional": true, "typed_config": {"@type": "type.googleapis.com/stats.PluginConfig"}}, {"name": "envoy.filters.http.router"}]}),
        json!([{"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 204}}]}]),
    );
    let s = Sluice::start(&yaml, &[]);
    assert_eq!(curl_full(&[url(s.listener("http"), "/").as_str()]).0, 204);
}

/// `http_health_check` takes an endpoint that answers its path with the wrong status out of
/// rotation: nginx answers /503 with 503, the Python upstream with 200; `expected_statuses`
/// turns the verdicts round. Envoy 1.40 on the same file routes the same way.
#[test]
fn http_health_checks_pick_endpoints_by_status() {
    let nginx = Nginx::start();
    let (_up, up) = python_upstream();
    let hc = |expected: Value| {
        let mut h = json!({"timeout": "1s", "interval": "0.2s", "unhealthy_threshold": 1, "healthy_threshold": 1,
            "http_health_check": {"path": "/503"}});
        if !expected.is_null() {
            h["http_health_check"]["expected_statuses"] = expected;
        }
        json!({"health_checks": [h]})
    };
    let vhosts = json!([{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/want200"}, "route": {"cluster": "ok200"}},
        {"match": {"prefix": "/want503"}, "route": {"cluster": "ok503"}}]}]);
    let config = |port: u16| {
        hcm_bootstrap(
            port,
            vhosts.clone(),
            json!({}),
            vec![
                cluster("ok200", &[up, nginx.h1], false, hc(Value::Null)),
                cluster(
                    "ok503",
                    &[up, nginx.h1],
                    false,
                    hc(json!([{"start": 503, "end": 504}])),
                ),
            ],
        )
    };
    let (s, _e, envoy) = sluice_and_envoy(config);
    let healthy = |c: &str, port: u16| {
        s.stat(&format!(
            "sluice_host_healthy{{cluster=\"{c}\",address=\"127.0.0.1:{port}\"}}"
        ))
    };
    assert!(
        wait_until(Duration::from_secs(10), || healthy("ok200", up) == 1
            && healthy("ok200", nginx.h1) == 0
            && healthy("ok503", up) == 0
            && healthy("ok503", nginx.h1) == 1),
        "health verdicts: {}",
        s.get("/clusters").1
    );
    // Envoy 1.40 on the same file comes to the same verdicts: once its first checks are in,
    // both send every request to the host their check passes.
    let answers = |front: SocketAddr| -> Vec<String> {
        (0..10)
            .flat_map(|_| ["/want200", "/want503"])
            .map(|p| {
                let body = curl_full(&[url(front, p).as_str()]).2;
                body.split(' ').take(2).collect::<Vec<_>>().join(" ")
            })
            .collect()
    };
    let want: Vec<String> = (0..10)
        .flat_map(|_| [format!("upstream {up}"), format!("nginx {}", nginx.h1)])
        .collect();
    assert_eq!(answers(s.listener("http")), want);
    let mut through_envoy = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            through_envoy = answers(envoy);
            through_envoy == want
        }),
        "Envoy: {through_envoy:?}"
    );
}

/// wrk's keep-alive load through sluice to nginx: every response a 2xx, and sluice counts at
/// least as many answered requests as wrk (wrk stops with a few in flight).
#[test]
fn wrk_keep_alive_load_is_answered_in_full() {
    require_program("wrk");
    let nginx = Nginx::start();
    let yaml = hcm_bootstrap(
        0,
        all_to("nginx"),
        json!({}),
        vec![cluster("nginx", &[nginx.h1], false, json!({}))],
    );
    let s = Sluice::start(&yaml, &["--concurrency", "1"]);
    let front = s.listener("http");
    let out = Command::new("wrk")
        .args(["-t1", "-c20", "-d2s", &url(front, "/")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Non-2xx"), "{text}");
    assert!(!text.contains("Socket errors"), "{text}");
    let done: u64 = text
        .split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .find(|(_, next)| *next == "requests")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(done > 1000, "{text}");
    assert!(s.stat("sluice_http_downstream_rq_2xx{stat_prefix=\"ingress\"}") >= done);
    // wrk's 20 connections, and the one it opens first to check the target.
    let conns = s.stat("sluice_http_downstream_cx_total{stat_prefix=\"ingress\"}");
    assert!((20..=21).contains(&conns), "{conns} connections");
}

/// Expect: 100-continue as Envoy does it, side by side on one file: by default the proxy
/// answers `100 Continue` itself and the upstream never sees the Expect; with
/// proxy_100_continue the Expect goes upstream and the upstream's 100 is relayed — or none,
/// when the upstream sends none. Over HTTP/1.1 (raw bytes, the client waiting for the 100
/// before it sends its body) and over h2c (nghttp, the 100 as a HEADERS frame).
#[test]
fn expect_100_continue_matches_envoy() {
    let (_up, up) = python_upstream();
    let variants = [
        ("local", json!({})),
        ("proxied", json!({"proxy_100_continue": true})),
    ];
    let sbs = SideBySide::start(&variants, up);
    let h1 = |addr: SocketAddr, path: &str| -> (bool, u16, String) {
        let mut c = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        );
        c.write_all(head.as_bytes()).unwrap();
        // A client waits a while for the 100 (curl: 1 s) and then sends its body anyway.
        c.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut got = vec![0u8; 4096];
        let n = c.read(&mut got).unwrap_or(0);
        let mut text = got[..n].to_vec();
        c.write_all(b"hello").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.read_to_end(&mut text);
        let text = String::from_utf8_lossy(&text).into_owned();
        let interim = "HTTP/1.1 100 Continue\r\n\r\n";
        let relayed = text.starts_with(interim);
        let (status, _, body) = parse_response(text.strip_prefix(interim).unwrap_or(&text));
        (relayed, status, body)
    };
    let h2 = |addr: SocketAddr, path: &str, data: &std::path::Path| -> (bool, String) {
        let out = Command::new("nghttp")
            .args(["-v", "-H", "expect: 100-continue", "-d"])
            .arg(data)
            .arg(url(addr, path))
            .output()
            .expect("nghttp");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let body = text
            .lines()
            .find(|l| l.starts_with("expect="))
            .unwrap_or("");
        // The body has no newline of its own: nghttp's next frame line follows it.
        let body = body.split("[ ").next().unwrap_or("").to_string();
        (text.contains(":status: 100"), body)
    };
    let dir = TempDir::new("expect");
    let data = dir.path().join("body");
    std::fs::write(&data, "hello").unwrap();
    let expected_h1 = [
        ("local", "/expect", (true, 200, "expect=- body=hello")),
        ("local", "/no100/expect", (true, 200, "expect=- body=hello")),
        (
            "proxied",
            "/expect",
            (true, 200, "expect=100-continue body=hello"),
        ),
        (
            "proxied",
            "/no100/expect",
            (false, 200, "expect=100-continue body=hello"),
        ),
    ];
    std::thread::scope(|scope| {
        for (name, path, want) in expected_h1 {
            let i = variants.iter().position(|(n, _)| *n == name).unwrap();
            let (sa, ea) = sbs.pair(i, name);
            let (h1, h2, data) = (&h1, &h2, &data);
            scope.spawn(move || {
                let (mine, envoys) = (h1(sa, path), h1(ea, path));
                let want = (want.0, want.1, want.2.to_string());
                assert_eq!(envoys, want, "Envoy, HTTP/1.1, {name} {path}");
                assert_eq!(mine, want, "sluice, HTTP/1.1, {name} {path}");
                let (mine, envoys) = (h2(sa, path, data), h2(ea, path, data));
                assert_eq!(
                    mine, envoys,
                    "HTTP/2 {name} {path}: sluice (left), Envoy (right)"
                );
                assert_eq!(mine, (want.0, want.2), "sluice, HTTP/2, {name} {path}");
            });
        }
    });
}
