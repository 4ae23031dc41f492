//! What the connection manager does to a request on its way, side by side with Envoy 1.40 on
//! the same file: path normalisation (normalize_path, merge_slashes, escaped slashes), the
//! edge's x-forwarded-for and trusted hops, and header values with command operators.

use serde_json::{json, Value};
use sluice_integration::http::*;
use sluice_integration::*;
use std::net::SocketAddr;
use std::time::Duration;

/// normalize_path, merge_slashes and path_with_escaped_slashes_action: for each setting and
/// each tricky path (dot segments plain and escaped, escaped unreserved characters, backslashes,
/// escaped slashes, characters the canonical form escapes, a query left alone), sluice and
/// Envoy answer with the same status and location, and the upstream sees the same path.
#[test]
fn path_normalization_matches_envoy() {
    let (_up, up) = python_upstream();
    let variants = [
        ("none", json!({})),
        ("normalize", json!({"normalize_path": true})),
        (
            "merge",
            json!({"normalize_path": true, "merge_slashes": true}),
        ),
        (
            "reject",
            json!({"path_with_escaped_slashes_action": "REJECT_REQUEST"}),
        ),
        (
            "redirect",
            json!({"merge_slashes": true, "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT"}),
        ),
        (
            "forward",
            json!({"normalize_path": true, "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD"}),
        ),
    ];
    let sbs = SideBySide::start(&variants, up);
    let s = &sbs.sluice;
    let paths = [
        "/a/b/../c",
        "/a/./b",
        "/a//b",
        "/a/%2e%2E/b",
        "/a/.%2e/b/%2E",
        "/%61bc/%7e",
        "/a%2Fb",
        "/a/..%2fb",
        "/x/%5C..%5C..%5Cetc",
        "/a\\b",
        "/../x",
        "/a/b/..",
        "/a///b//?q=/../y//",
        "/a/%zz/%/%3a/%4%42/%%32e",
        "/a|b{c}^\"d\"",
        "/a$b&c(d)*e+f,g;h=i:j@k['!]",
        "/a#b",
        "/a/\u{e9}",
    ];
    let answer = |addr: SocketAddr, path: &str| -> String {
        let raw = raw_exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let (status, headers, body) = parse_response(&raw);
        let location = header(&headers, "location").unwrap_or("").to_string();
        // The upstream answers "upstream PORT PATH"; a local reply's body is compared whole.
        let seen = body.trim().rsplit(' ').next().unwrap_or("").to_string();
        format!("{status} location={location} path={seen}")
    };
    // Envoy holds a connection it answered locally open for a second (delayed_close_timeout):
    // the variants run side by side.
    std::thread::scope(|scope| {
        for (i, (name, _)) in variants.iter().enumerate() {
            let (sa, ea) = sbs.pair(i, name);
            let answer = &answer;
            scope.spawn(move || {
                for path in paths {
                    let (mine, envoys) = (answer(sa, path), answer(ea, path));
                    assert_eq!(
                        mine, envoys,
                        "{name} {path}: sluice (left) and Envoy (right) differ"
                    );
                }
            });
        }
    });
    // Both count what they refused and redirected alike (the fragment in every variant).
    let envoy_stat = |name: &str| -> u64 {
        let out = curl(&[&format!(
            "http://{}/stats?filter=^http\\.ingress\\.{name}$",
            sbs.envoy_proc.admin
        )]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.trim()
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {text}"))
    };
    for (name, n) in [
        (
            "downstream_rq_failed_path_normalization",
            3 + variants.len() as u64,
        ),
        ("downstream_rq_redirected_with_normalized_path", 3),
    ] {
        assert_eq!(
            s.stat(&format!("sluice_http_{name}{{stat_prefix=\"ingress\"}}")),
            n,
            "{name}"
        );
        assert_eq!(envoy_stat(name), n, "Envoy's {name}");
    }
}

/// use_remote_address, xff_num_trusted_hops and skip_xff_append: with each setting and each
/// x-forwarded-for a client may send (none, an external address, a chain, Envoy's own control
/// headers it must not pass on), the upstream sees the same x-* headers from sluice as from
/// Envoy, and the access logs name the same downstream address.
#[test]
fn forwarded_for_and_trusted_hops_match_envoy() {
    let (_up, up) = python_upstream();
    let variants = [
        ("plain", json!({})),
        ("edge", json!({"use_remote_address": true})),
        (
            "edge1",
            json!({"use_remote_address": true, "xff_num_trusted_hops": 1}),
        ),
        (
            "edge2",
            json!({"use_remote_address": true, "xff_num_trusted_hops": 2}),
        ),
        ("hops1", json!({"xff_num_trusted_hops": 1})),
        (
            "skip",
            json!({"use_remote_address": true, "skip_xff_append": true}),
        ),
    ];
    let dir = TempDir::new("xff-compare");
    let logged = |who: &str| -> Vec<(&str, Value)> {
        variants
            .iter()
            .map(|(name, extra)| {
                let mut extra = extra.clone();
                extra["access_log"] = json!([{"name": "envoy.access_loggers.file", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": dir.join(&format!("{who}.log")).to_str().unwrap(),
                    "log_format": {"text_format_source": {"inline_string":
                        format!("{name} %DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%\n")}}}}]);
                (*name, extra)
            })
            .collect()
    };
    let sbs = SideBySide::start_each(&logged("sluice"), &logged("envoy"), up);
    let cases: [&[&str]; 5] = [
        &[],
        &["-H", "x-forwarded-for: 203.0.113.7"],
        &["-H", "x-forwarded-for: 203.0.113.7, 10.0.0.2"],
        &["-H", "x-forwarded-for: not-an-address"],
        &[
            "-H",
            "x-envoy-retry-on: 5xx",
            "-H",
            "x-envoy-upstream-rq-timeout-ms: 5",
            "-H",
            "x-envoy-internal: true",
            "-H",
            "x-envoy-original-path: /x",
            "-H",
            "x-envoy-decorator-operation: op",
            "-H",
            "x-forwarded-for: 198.51.100.1",
        ],
    ];
    let seen = |addr: SocketAddr, extra: &[&str]| -> String {
        let (status, _, body) = curl_full(&[extra, &[url(addr, "/headers").as_str()]].concat());
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let mut x: Vec<String> = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("x-") && *k != "x-request-id")
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("")))
            .collect();
        x.sort();
        x.join("; ")
    };
    for (i, (name, _)) in variants.iter().enumerate() {
        let (sa, ea) = sbs.pair(i, name);
        for extra in cases {
            assert_eq!(
                seen(sa, extra),
                seen(ea, extra),
                "{name} {extra:?}: sluice (left) and Envoy (right) differ"
            );
        }
    }
    let n = variants.len() * cases.len();
    let lines = |who: &str| -> Vec<String> {
        let f = dir.join(&format!("{who}.log"));
        let mut got = Vec::new();
        wait_until(Duration::from_secs(10), || {
            got = std::fs::read_to_string(&f)
                .unwrap_or_default()
                .lines()
                // A connection's own port differs run to run; a port 0 (from XFF) does not.
                .map(|l| {
                    let mut w: Vec<String> = l.split(' ').map(str::to_string).collect();
                    if w[1].starts_with("127.0.0.1:") {
                        w[1] = "127.0.0.1:PORT".into();
                    }
                    w.join(" ")
                })
                .collect();
            got.len() >= n
        });
        got
    };
    let sl = lines("sluice");
    assert_eq!(sl, lines("envoy"), "access logs differ");
    assert!(
        sl.contains(&"edge1 203.0.113.7:0 127.0.0.1".to_string()),
        "{sl:?}"
    );
}

/// Command operators in header values (request_headers_to_add / response_headers_to_add at
/// route, virtual host and route configuration level): the upstream and the client see the
/// same values from sluice as from Envoy 1.40 on the same file; an operator with nothing to
/// say leaves the header out unless keep_empty_value; `%%` is a literal `%`.
#[test]
fn header_values_with_command_operators_match_envoy() {
    let (_up, up) = python_upstream();
    let add = |k: &str, v: &str| json!({"header": {"key": k, "value": v}});
    let vhosts = json!([{"name": "all", "domains": ["*"],
        "request_headers_to_add": [add("x-vh-client", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")],
        "routes": [{"name": "r1", "match": {"prefix": "/"}, "route": {"cluster": "up"},
            "request_headers_to_add": [
                add("x-method", "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%"),
                add("x-missing", "%REQ(x-nope)%"),
                {"header": {"key": "x-kept", "value": "%REQ(x-nope)%"}, "keep_empty_value": true},
                add("x-literal", "100%% sure"),
                add("x-alt", "%REQ(x-nope?user-agent):5%")],
            "response_headers_to_add": [
                add("x-route", "%ROUTE_NAME%"),
                add("x-up", "%UPSTREAM_HOST% %UPSTREAM_CLUSTER%"),
                add("x-resp-type", "%RESP(content-type)%"),
                add("x-req-back", "%REQ(x-in)%")]}]}]);
    let (s, _e, envoy) = sluice_and_envoy(one_upstream(vhosts, json!({}), up));
    let mut seen = Vec::new();
    for addr in [s.listener("http"), envoy] {
        let (status, headers, body) = curl_full(&[
            "-H",
            "x-in: hello",
            "-A",
            "curl-agent",
            url(addr, "/headers?q=1").as_str(),
        ]);
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let mut up_saw: Vec<String> = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                [
                    "x-vh-client",
                    "x-method",
                    "x-missing",
                    "x-kept",
                    "x-literal",
                    "x-alt",
                ]
                .contains(&k.as_str())
            })
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("")))
            .collect();
        up_saw.sort();
        let mut back: Vec<String> = headers
            .iter()
            .filter(|(k, _)| ["x-route", "x-up", "x-resp-type", "x-req-back"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        back.sort();
        seen.push((up_saw, back));
    }
    assert_eq!(seen[0], seen[1], "sluice (left) and Envoy (right) differ");
    let (up_saw, back) = &seen[0];
    assert!(
        up_saw.contains(&"x-method: GET /headers?q=1 HTTP/1.1".to_string()),
        "{up_saw:?}"
    );
    assert!(
        up_saw.contains(&"x-literal: 100% sure".to_string()),
        "{up_saw:?}"
    );
    assert!(
        up_saw.contains(&"x-kept: ".to_string()) || up_saw.contains(&"x-kept:".to_string()),
        "{up_saw:?}"
    );
    assert!(
        !up_saw.iter().any(|h| h.starts_with("x-missing")),
        "{up_saw:?}"
    );
    assert!(back.contains(&"x-route: r1".to_string()), "{back:?}");
}
