//! The connection manager's config (typed_config, route configuration included) arrives from
//! files and from xDS servers: any JSON must be accepted or refused with an error, never panic;
//! and what is accepted must route, rewrite and redirect any request without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use sluice::proxy::http::config::HcmConfig;
use sluice::proxy::http::message::RequestHead;
use sluice::proxy::http::rewrite::{redirect_location, rewritten_path};
use sluice::proxy::http::route_config::Action;
use sluice::proxy::http::router::RouteTable;

fn requests() -> Vec<RequestHead> {
    let mk = |host: &str, path: &str, hs: &[(&str, &str)]| {
        let mut h = sluice::proxy::http::fields::Fields::new();
        for (k, v) in hs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        RequestHead {
            method: http::Method::GET,
            scheme: "http",
            authority: host.into(),
            path: path.into(),
            version: http::Version::HTTP_11,
            headers: h,
            continue_to: None,
        }
    };
    vec![
        mk("example.com", "/", &[]),
        mk(
            "API.example.com:8080",
            "/v1/items/3?x=1&y=%20",
            &[("x-a", "1"), ("content-type", "application/grpc")],
        ),
        mk("", "*", &[]),
        mk("[::1]:80", "/é/ü?q=é", &[("x-a", "b"), ("x-a", "c")]),
        mk("h", "/a//b/../c", &[("cookie", "a=1; b=2")]),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(typed) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut typed = typed;
    if let Some(m) = typed.as_object_mut() {
        m.insert("@type".into(), json!(sluice::proxy::http::config::HCM_TYPE));
    }
    let cluster =
        |n: &str| json!({"name": n, "load_assignment": {"cluster_name": n, "endpoints": []}});
    let doc = json!({"static_resources": {
        "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": typed}]}]}],
        "clusters": [cluster("a"), cluster("b")]}});
    let Ok(b) = sluice::config::bootstrap::parse_bootstrap(&doc) else {
        return;
    };
    let Some(hcm) = b.listeners[0].filter.as_any().downcast_ref::<HcmConfig>() else {
        return;
    };
    let table = RouteTable::new(hcm.route_config.clone());
    for req in requests() {
        if let Some((_, route)) = table.route(&req) {
            match &route.action {
                Action::Forward(f) => {
                    let _ = rewritten_path(&req.path, f, route);
                }
                Action::Redirect(r) => {
                    let _ = redirect_location(r, &req, route);
                }
                Action::Direct { .. } => {}
            }
        }
    }
});
