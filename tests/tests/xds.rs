//! sluice-control's xDS client against an ADS server sluice did not write (tests/xds/ads_server.py
//! on PyPI's envoy-data-plane and grpclib), with Envoy 1.40 driven by the same server in the same
//! test: both end with the same clusters, endpoints, listeners and routes at the same versions.
//! Cases: initial sync, an endpoint change under traffic (held connections survive), a broken
//! resource (NACK with the reason, the old config serves on), server restart (resync), control
//! process restart (the dataplane serves on), delta add and remove.

use serde_json::{json, Value};
use sluice_integration::bolt::{answers, bolt_client, BoltServer};
use sluice_integration::xds::*;
use sluice_integration::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn held_echo(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn echo_on(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// The listener sluice serves Bolt on: its rpc_proxy filter (as a TypedStruct: it has no
/// compiled proto) takes its routes over RDS.
fn sluice_rpc_listener(port: u16) -> Value {
    json!({"name": "rpc", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "sluice.filters.network.rpc_proxy", "typed_config": {
            "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
            "type_url": "type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy",
            "value": {"stat_prefix": "rpc", "protocols": ["bolt"],
                      "rds": {"route_config_name": "rpc_routes", "config_source": {"ads": {}}}}}}]}]})
}

/// Envoy's listener of the same name takes the same route configuration through its HTTP
/// connection manager (Envoy has no Bolt filter).
fn envoy_rpc_listener(port: u16) -> Value {
    json!({"name": "rpc", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "rpc",
            "rds": {"route_config_name": "rpc_routes", "config_source": {"ads": {}, "resource_api_version": "V3"}},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})
}

fn rpc_routes() -> Value {
    json!({"name": "rpc_routes", "virtual_hosts": [{"name": "hello", "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "hello", "timeout": "3s"}}]}]})
}

/// The names and versions sluice reports, in the form `Envoy::dynamic` gives Envoy's.
/// For endpoints, whose version Envoy does not report, both give the endpoints' ports: sluice's
/// from the clusters it serves (where EDS has been laid in).
fn sluice_dynamic(s: &SluiceXds) -> Vec<(String, String, String)> {
    let d = s.dynamic();
    let (_, dump) = s.sluice.get("/config_dump");
    let dump: Value = serde_json::from_str(&dump).unwrap();
    let served = dump["configs"][0]["bootstrap"]["static_resources"]["clusters"].clone();
    let served_ports = |name: &str| {
        let cluster = served
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_default();
        endpoint_ports(&cluster["load_assignment"])
    };
    let mut out = Vec::new();
    for short in ["cds", "eds", "lds", "rds"] {
        for r in d["resources"][short].as_array().into_iter().flatten() {
            assert_eq!(r["state"], "active", "{r}");
            let version = match short {
                "eds" => served_ports(r["name"].as_str().unwrap()),
                _ => r["version_info"].as_str().unwrap().to_string(),
            };
            out.push((
                short.to_string(),
                r["name"].as_str().unwrap().to_string(),
                version,
            ));
        }
    }
    out.sort();
    out
}

fn wait_envoy(envoy: &Envoy, want: &[(String, String, String)]) {
    let ok = wait_until(Duration::from_secs(20), || envoy.dynamic() == want);
    assert!(
        ok,
        "Envoy has {:?}, sluice {:?}\n{}",
        envoy.dynamic(),
        want,
        envoy.config_dump()
    );
}

#[test]
fn sotw_sluice_and_envoy_sync_update_nack_and_resync() {
    let mut ads = AdsServer::start();
    let (_echo, echo_port) = echo_server();
    let (_second, second_port) = reply_server("second");
    let bolt = BoltServer::start("a", 0, &[]);
    let (s_front, e_front, s_rpc, e_rpc) = (free_port(), free_port(), free_port(), free_port());
    let resources = |front: u16, rpc: Value, web: u16, extra_listener: Option<Value>| {
        let mut listeners = vec![tcp_listener("front", front, "web"), rpc];
        listeners.extend(extra_listener);
        json!({
            "clusters": [eds_cluster("web"), eds_cluster("hello")],
            "endpoints": [assignment("web", &[web]), assignment("hello", &[bolt.port])],
            "listeners": listeners,
            "routes": [rpc_routes()],
        })
    };
    let set_both = |ads: &AdsServer, version: &str, web: u16, extra: Option<Value>| {
        ads.set(
            "sluice-1",
            version,
            &resources(s_front, sluice_rpc_listener(s_rpc), web, extra.clone()),
        );
        ads.set(
            "envoy-1",
            version,
            &resources(e_front, envoy_rpc_listener(e_rpc), web, extra),
        );
    };
    set_both(&ads, "v1", echo_port, None);
    let mut sluice = SluiceXds::start("sluice-1", "GRPC", ads.port);
    let envoy = Envoy::start(&format!(
        "admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n{}",
        xds_sections("envoy-1", "GRPC", ads.port, true)
    ));

    // Initial sync: the same resources at the same versions in both.
    sluice.wait_version("v1");
    let want = sluice_dynamic(&sluice);
    let names: Vec<(&str, &str)> = want
        .iter()
        .map(|(t, n, _)| (t.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("cds", "hello"),
            ("cds", "web"),
            ("eds", "hello"),
            ("eds", "web"),
            ("lds", "front"),
            ("lds", "rpc"),
            ("rds", "rpc_routes")
        ]
    );
    assert!(
        want.iter().all(|(t, _, v)| v == "v1" || t == "eds"),
        "{want:?}"
    );
    wait_envoy(&envoy, &want);
    assert_eq!(sluice.sluice.stat("sluice_xds_connected"), 1);
    assert_eq!(sluice.sluice.stat("sluice_xds_acks_total{type=\"rds\"}"), 1);

    // Traffic through both, and Bolt through sluice's routes from RDS.
    let mut held = held_echo(s_front);
    let mut held_envoy = held_echo(e_front);
    assert_eq!(echo_on(&mut held, b"one\n"), b"one\n");
    assert_eq!(echo_on(&mut held_envoy, b"one\n"), b"one\n");
    let r = bolt_client(s_rpc, &["--count", "5"]);
    assert_eq!(answers(&r), [("a:sayHello".into(), 5)], "{r}");

    // An endpoint change under traffic: new connections go to the new endpoint, the held ones
    // carry on.
    set_both(&ads, "v2", second_port, None);
    sluice.wait_version("v2");
    wait_envoy(&envoy, &sluice_dynamic(&sluice));
    assert_eq!(read_all(s_front), "second");
    eventually_reads(e_front, "second");
    assert_eq!(echo_on(&mut held, b"two\n"), b"two\n");
    assert_eq!(echo_on(&mut held_envoy, b"two\n"), b"two\n");
    let listeners_version = sluice.sluice.stat("sluice_server_config_version");

    // A broken resource: both NACK it with a reason; the old config serves on.
    let broken = tcp_listener("broken", 1, "web");
    let mut broken = broken;
    broken["address"]["socket_address"]["address"] = json!("999.1.1.1");
    set_both(&ads, "v3", echo_port, Some(broken));
    let nacked = wait_until(Duration::from_secs(20), || {
        !ads.nacks("sluice-1").is_empty() && !ads.nacks("envoy-1").is_empty()
    });
    assert!(nacked, "requests: {:?}", ads.requests());
    let nack = &ads.nacks("sluice-1")[0];
    let reason = nack["error_detail"].as_str().unwrap();
    assert!(
        reason.contains("listener \"broken\"") && reason.contains("999.1.1.1"),
        "{nack}"
    );
    assert_eq!(
        nack["version_info"], "v2",
        "a NACK names the version still in use: {nack}"
    );
    assert_eq!(
        nack["type"],
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    assert_eq!(
        sluice.sluice.stat("sluice_xds_nacks_total{type=\"lds\"}"),
        1
    );
    let d = sluice.dynamic();
    assert_eq!(d["types"]["lds"]["version_info"], "v2");
    assert!(d["types"]["lds"]["last_rejected"]["error"]
        .as_str()
        .unwrap()
        .contains("broken"));
    // (CDS and EDS of v3 are fine and accepted: web goes back to the echo server.)
    let ok = wait_until(Duration::from_secs(10), || read_all(s_front).is_empty());
    assert!(
        ok,
        "web should be the echo server again (it answers nothing unasked)"
    );
    assert_eq!(echo_on(&mut held, b"three\n"), b"three\n");
    assert!(sluice.sluice.stat("sluice_server_config_version") > listeners_version);

    // The server restarts (empty, then given v4): sluice and Envoy reconnect and resync; the
    // dataplane serves all along.
    ads.restart();
    let mut during = held_echo(s_front);
    assert_eq!(echo_on(&mut during, b"down\n"), b"down\n");
    set_both(&ads, "v4", second_port, None);
    sluice.wait_version("v4");
    wait_envoy(&envoy, &sluice_dynamic(&sluice));
    assert_eq!(sluice.sluice.stat("sluice_xds_connects_total"), 2);
    assert!(sluice.sluice.stat("sluice_xds_disconnects_total") >= 1);
    // Its first requests on the new stream say which versions it has.
    let first_cds = ads
        .requests()
        .into_iter()
        .find(|r| r["node"] == "sluice-1" && r["type"].as_str().unwrap().ends_with("Cluster"))
        .unwrap();
    assert_eq!(first_cds["version_info"], "v3", "{first_cds}");
    assert_eq!(first_cds["nonce"], "", "{first_cds}");
    assert_eq!(read_all(s_front), "second");
    assert_eq!(echo_on(&mut held, b"four\n"), b"four\n");

    // The control process dies: the dataplane serves on; another one resyncs without a gap.
    let before = sluice.sluice.stat("sluice_server_config_version");
    sluice.restart_control();
    assert_eq!(read_all(s_front), "second");
    let ok = wait_until(Duration::from_secs(20), || {
        sluice.sluice.stat("sluice_xds_connects_total") == 1
            && sluice.sluice.stat("sluice_xds_initialized") == 1
    });
    assert!(ok, "{}", sluice.control_log());
    assert_eq!(sluice.dynamic()["types"]["cds"]["version_info"], "v4");
    assert!(sluice.sluice.stat("sluice_server_config_version") >= before);
    assert_eq!(echo_on(&mut held, b"five\n"), b"five\n");
    let r = bolt_client(s_rpc, &["--count", "3"]);
    assert_eq!(answers(&r), [("a:sayHello".into(), 3)], "{r}");
}

#[test]
fn delta_adds_removes_and_resubscribes_with_what_it_has() {
    let mut ads = AdsServer::start();
    let (_echo, echo_port) = echo_server();
    let (_first, first_port) = reply_server("first");
    let (_extra, extra_port) = reply_server("extra");
    let (s_front, e_front, s_second, e_second) =
        (free_port(), free_port(), free_port(), free_port());
    let resources = |front: u16, second: Option<u16>, web: u16| {
        let mut clusters = vec![eds_cluster("web")];
        let mut endpoints = vec![assignment("web", &[web])];
        let mut listeners = vec![tcp_listener("front", front, "web")];
        if let Some(port) = second {
            clusters.push(eds_cluster("extra"));
            endpoints.push(assignment("extra", &[extra_port]));
            listeners.push(tcp_listener("second", port, "extra"));
        }
        json!({"clusters": clusters, "endpoints": endpoints, "listeners": listeners})
    };
    let set_both = |ads: &AdsServer, version: &str, second: bool, web: u16| {
        ads.set(
            "sluice-d",
            version,
            &resources(s_front, second.then_some(s_second), web),
        );
        ads.set(
            "envoy-d",
            version,
            &resources(e_front, second.then_some(e_second), web),
        );
    };
    set_both(&ads, "v1", false, first_port);
    let sluice = SluiceXds::start("sluice-d", "DELTA_GRPC", ads.port);
    let envoy = Envoy::start(&format!(
        "admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n{}",
        xds_sections("envoy-d", "DELTA_GRPC", ads.port, true)
    ));
    sluice.wait_version("v1");
    assert_eq!(read_all(s_front), "first");
    let names = |list: Vec<(String, String)>| list.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(sluice.resources("lds")), ["front"]);
    let ok = wait_until(Duration::from_secs(20), || {
        envoy.listener_port("front") == Some(e_front)
    });
    assert!(ok);

    // Delta add: a listener and its cluster.
    set_both(&ads, "v2", true, first_port);
    sluice.wait_version("v2");
    assert_eq!(names(sluice.resources("lds")), ["front", "second"]);
    assert_eq!(names(sluice.resources("cds")), ["extra", "web"]);
    assert_eq!(read_all(s_second), "extra");
    eventually_reads(e_second, "extra");
    // Unchanged resources are not sent again, and keep their versions.
    let front_version = |s: &SluiceXds| {
        s.dynamic()["resources"]["lds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "front")
            .unwrap()["version_info"]
            .clone()
    };
    let v_front = front_version(&sluice);

    // Delta remove: the listener stops listening, its cluster goes; an endpoint change too.
    set_both(&ads, "v3", false, echo_port);
    sluice.wait_version("v3");
    assert_eq!(names(sluice.resources("lds")), ["front"]);
    assert_eq!(names(sluice.resources("cds")), ["web"]);
    assert_eq!(names(sluice.resources("eds")), ["web"]);
    let ok = wait_until(Duration::from_secs(10), || !is_listening(s_second));
    assert!(ok, "the removed listener still listens");
    let ok = wait_until(Duration::from_secs(20), || {
        envoy.listener_port("second").is_none()
    });
    assert!(ok);
    let mut held = held_echo(s_front);
    assert_eq!(echo_on(&mut held, b"delta\n"), b"delta\n");
    assert_eq!(front_version(&sluice), v_front);
    let removed_sent = ads.requests().iter().any(|r| {
        r["node"] == "sluice-d"
            && r["unsubscribe"]
                .as_array()
                .is_some_and(|u| u.iter().any(|n| n == "extra"))
    });
    assert!(
        removed_sent,
        "sluice should unsubscribe from the removed cluster's endpoints"
    );

    // A broken cluster: NACKed with the reason by both; everything else serves on.
    let mut bad = resources(s_front, None, echo_port);
    bad["clusters"].as_array_mut().unwrap().push(json!({"name": "bad", "connect_timeout": "1s",
        "lb_policy": "RING_HASH", "ring_hash_lb_config": {"minimum_ring_size": 4096, "maximum_ring_size": 16}}));
    ads.set("sluice-d", "v4", &bad);
    let nacked = wait_until(Duration::from_secs(20), || {
        !ads.nacks("sluice-d").is_empty()
    });
    assert!(nacked);
    let reason = ads.nacks("sluice-d")[0]["error_detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("cluster \"bad\"") && reason.contains("ring"),
        "{reason}"
    );
    assert_eq!(names(sluice.resources("cds")), ["web"]);
    assert_eq!(echo_on(&mut held, b"still\n"), b"still\n");

    // The server restarts: the first delta requests carry what sluice has, at which version.
    ads.restart();
    ads.set("sluice-d", "v5", &resources(s_front, None, first_port));
    // Only the endpoints changed, so only they are sent: the listener and cluster keep v3.
    let ok = wait_until(Duration::from_secs(20), || {
        sluice.dynamic()["types"]["eds"]["version_info"] == "v5"
    });
    assert!(ok, "{}", sluice.dynamic());
    assert_eq!(sluice.dynamic()["types"]["lds"]["version_info"], "v3");
    let first_lds = ads
        .requests()
        .into_iter()
        .find(|r| r["node"] == "sluice-d" && r["type"].as_str().unwrap().ends_with("Listener"))
        .unwrap();
    assert!(
        first_lds["initial_versions"]["front"].is_string(),
        "{first_lds}"
    );
    assert_eq!(read_all(s_front), "first");
    assert_eq!(echo_on(&mut held, b"after\n"), b"after\n");
}

/// The xDS example's resources (`scripts/run-example.sh xds`), served by the ADS server, reach
/// the dataplane through sluice-control and carry traffic.
#[test]
fn the_example_resources_carry_traffic() {
    let ads = AdsServer::start();
    let (_upstream, upstream) = reply_server("from-the-example-upstream");
    let front = free_port();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/xds-resources.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("10000", &front.to_string())
        .replace("8080", &upstream.to_string());
    ads.set("*", "1", &serde_json::from_str(&text).unwrap());
    let s = SluiceXds::start("example", "GRPC", ads.port);
    s.wait_version("1");
    eventually_reads(front, "from-the-example-upstream");
}

#[test]
fn control_config_mistakes_are_named() {
    let dir = TempDir::new("control-config");
    let file = dir.join("bootstrap.yaml");
    std::fs::write(&file, "node: {id: a}\nstatic_resources: {}\n").unwrap();
    let r = run_to_exit(
        std::process::Command::new(bin_dir().join("sluice-control"))
            .arg("xds")
            .arg("-c")
            .arg(&file)
            .arg("--dataplane")
            .arg(dir.join("none.sock")),
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(
        r.stderr.contains("dynamic_resources: required"),
        "{}",
        r.stderr
    );
}

/// An HTTP connection manager listener whose routes come over RDS, as a control plane sends
/// them: sluice-control inlines the RouteConfiguration, the listener serves it, and a new
/// version of the routes is served without the listener changing.
#[test]
fn http_listener_with_rds_routes_serves_and_follows_route_updates() {
    let ads = AdsServer::start();
    let (_up, up) = sluice_integration::http::python_upstream();
    let front = free_port();
    let listener = json!({"name": "http", "address": {"socket_address": {"address": "127.0.0.1", "port_value": front}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "http",
            "rds": {"route_config_name": "web_routes", "config_source": {"ads": {}, "resource_api_version": "V3"}},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]});
    let routes = |text: &str| {
        json!({"name": "web_routes", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"path": "/direct"}, "direct_response": {"status": 200, "body": {"inline_string": text}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "web"}}]}]})
    };
    let resources = |text: &str| {
        json!({
        "clusters": [eds_cluster("web")], "endpoints": [assignment("web", &[up])],
        "listeners": [listener.clone()], "routes": [routes(text)]})
    };
    ads.set("*", "1", &resources("first\n"));
    let s = SluiceXds::start("http-rds", "GRPC", ads.port);
    s.wait_version("1");
    let get = |path: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                &format!("http://127.0.0.1:{front}{path}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get("/direct"), "first\n");
    assert_eq!(get("/x"), format!("upstream {up} /x\n"));
    ads.set("*", "2", &resources("second\n"));
    s.wait_version("2");
    assert!(
        wait_until(Duration::from_secs(10), || get("/direct") == "second\n"),
        "the new routes never served"
    );
}
