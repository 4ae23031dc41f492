//! Helpers for the HTTP tests: the Python upstream (tests/testdata/http_upstream.py), nginx as
//! an HTTP/1.1 and h2c upstream, connection-manager configs built as JSON (which sluice and
//! Envoy both read as YAML), curl and the venv's Python peers (grpcio, h2, websockets).

use crate::{envoy_bin, free_port, is_listening, require_program, wait_until, Proc, TempDir};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// The Python of the virtualenv scripts/setup/deps.sh made (it has grpcio, h2, websockets).
pub fn venv_python() -> PathBuf {
    envoy_bin().parent().unwrap().join("python")
}

/// tests/testdata/http_upstream.py on a free port of `address`.
pub fn python_upstream() -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(testdata("http_upstream.py"))
        .arg(port.to_string())
        .stdout(Stdio::null());
    let p = Proc::spawn(cmd, "http_upstream.py");
    assert!(
        wait_until(Duration::from_secs(10), || is_listening(port)),
        "http_upstream.py did not listen on {port}"
    );
    (p, port)
}

/// nginx answering `nginx <port> <uri> <host>` on an HTTP/1.1 port and an h2c port.
pub struct Nginx {
    pub proc: Proc,
    pub h1: u16,
    pub h2c: u16,
    _dir: TempDir,
}

impl Nginx {
    pub fn start() -> Nginx {
        require_program("nginx");
        let dir = TempDir::new("nginx");
        let (h1, h2c) = (free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  keepalive_requests 100000;\n  server {{\n    listen 127.0.0.1:{h1};\n    listen 127.0.0.1:{h2c} http2;\n    location / {{ default_type text/plain; return 200 \"nginx $server_port $request_uri $http_host $server_protocol\\n\"; }}\n    location /503 {{ return 503; }}\n  }}\n}}\n"
        );
        let file = dir.join("nginx.conf");
        std::fs::write(&file, conf).unwrap();
        let mut cmd = Command::new("nginx");
        cmd.arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn(cmd, "nginx");
        assert!(
            wait_until(Duration::from_secs(10), || is_listening(h1)
                && is_listening(h2c)),
            "nginx did not come up: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        Nginx {
            proc,
            h1,
            h2c,
            _dir: dir,
        }
    }
}

/// A STATIC cluster on 127.0.0.1 `ports`; `http2`: its upstream speaks h2c.
pub fn cluster(name: &str, ports: &[u16], http2: bool, extra: Value) -> Value {
    let mut c = json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": ports.iter().map(|p| json!(
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}})).collect::<Vec<_>>()}]}
    });
    if http2 {
        c["typed_extension_protocol_options"] = json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}});
    }
    merge(&mut c, extra);
    c
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), extra) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

/// A bootstrap with one connection manager listener `http` on `port` (0: any) with
/// `virtual_hosts`, its other fields from `hcm_extra`, and `clusters`.
pub fn hcm_bootstrap(
    port: u16,
    virtual_hosts: Value,
    hcm_extra: Value,
    clusters: Vec<Value>,
) -> String {
    let mut hcm = json!({
        "@type": HCM_TYPE, "stat_prefix": "ingress",
        "route_config": {"name": "local", "virtual_hosts": virtual_hosts},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}]
    });
    merge(&mut hcm, hcm_extra);
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "http", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
            "clusters": clusters
        }
    })
    .to_string()
}

/// The bootstrap, for the listener's port, of one connection manager (`virtual_hosts`,
/// `hcm_extra`) in front of one HTTP/1.1 upstream: cluster `up` on port `up`.
pub fn one_upstream(virtual_hosts: Value, hcm_extra: Value, up: u16) -> impl Fn(u16) -> String {
    move |port| {
        hcm_bootstrap(
            port,
            virtual_hosts.clone(),
            hcm_extra.clone(),
            vec![cluster("up", &[up], false, json!({}))],
        )
    }
}

/// tests/testdata/grpc_peer.py serving echo.Echo on a free port, listening: (process, port).
pub fn grpc_server() -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new(venv_python());
    cmd.arg(testdata("grpc_peer.py"))
        .args(["server", &port.to_string()])
        .stdout(Stdio::null());
    let p = Proc::spawn(cmd, "grpc_peer.py server");
    assert!(
        wait_until(Duration::from_secs(20), || is_listening(port)),
        "grpc server did not listen"
    );
    (p, port)
}

/// sluice (one worker) on `config(0)` and Envoy 1.40 on `config(port)` for a free port, both
/// listening: for the same file answered by both. Returns Envoy's address too.
pub fn sluice_and_envoy(
    config: impl Fn(u16) -> String,
) -> (crate::Sluice, crate::xds::Envoy, SocketAddr) {
    let s = crate::Sluice::start(&config(0), &["--concurrency", "1"]);
    let port = free_port();
    let e = crate::xds::Envoy::start(&config(port));
    // Envoy's admin address is written before its listeners are up.
    assert!(
        wait_until(Duration::from_secs(20), || is_listening(port)),
        "Envoy never listened on {port}"
    );
    (s, e, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A bootstrap with one connection manager listener per `(name, hcm_extra)` of `variants`,
/// each sending everything to cluster `up` on `ports[i]` (0: any), for side-by-side runs of
/// several settings in one sluice and one Envoy.
pub fn hcm_variants_bootstrap(variants: &[(&str, Value)], ports: &[u16], up: u16) -> String {
    let mut listeners = Vec::new();
    for ((name, extra), port) in variants.iter().zip(ports) {
        let one: Value =
            serde_json::from_str(&hcm_bootstrap(*port, all_to("up"), extra.clone(), vec![]))
                .unwrap();
        let mut l = one["static_resources"]["listeners"][0].clone();
        l["name"] = json!(name);
        listeners.push(l);
    }
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": [cluster("up", &[up], false, json!({}))]}
    })
    .to_string()
}

/// sluice and Envoy each running `hcm_variants_bootstrap(variants)`, Envoy's listeners up; the
/// Envoy address of variant `i` is `envoy[i]`.
pub struct SideBySide {
    pub sluice: crate::Sluice,
    pub envoy_proc: crate::xds::Envoy,
    pub envoy: Vec<SocketAddr>,
}

impl SideBySide {
    pub fn start(variants: &[(&str, Value)], up: u16) -> SideBySide {
        SideBySide::start_each(variants, variants, up)
    }

    /// As `start`, with settings that differ by proxy (an access log's path).
    pub fn start_each(
        for_sluice: &[(&str, Value)],
        for_envoy: &[(&str, Value)],
        up: u16,
    ) -> SideBySide {
        let sluice = crate::Sluice::start(
            &hcm_variants_bootstrap(for_sluice, &vec![0; for_sluice.len()], up),
            &["--concurrency", "1"],
        );
        let ports: Vec<u16> = for_envoy.iter().map(|_| crate::free_port()).collect();
        let envoy_proc = crate::xds::Envoy::start(&hcm_variants_bootstrap(for_envoy, &ports, up));
        for p in &ports {
            assert!(
                crate::wait_until(Duration::from_secs(20), || crate::is_listening(*p)),
                "Envoy never listened on {p}"
            );
        }
        SideBySide {
            sluice,
            envoy_proc,
            envoy: ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
        }
    }

    /// (sluice's, Envoy's) address of variant `i` named `name`.
    pub fn pair(&self, i: usize, name: &str) -> (SocketAddr, SocketAddr) {
        (self.sluice.listener(name), self.envoy[i])
    }
}

/// curl with `args`; fails the test if curl cannot run.
pub fn curl(args: &[&str]) -> Output {
    require_program("curl");
    Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl")
}

/// (status, headers lower-cased, body) of one request made with curl.
pub fn curl_full(args: &[&str]) -> (u16, Vec<(String, String)>, String) {
    let out = curl(&[&["-i"], args].concat());
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_response(&String::from_utf8_lossy(&out.stdout))
}

/// Splits curl -i output (the last response, after any 100 Continue).
pub fn parse_response(text: &str) -> (u16, Vec<(String, String)>, String) {
    let mut rest = text;
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status == 100 {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        return (status, headers, body.to_string());
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sends raw bytes on a new connection and reads until the server closes (or 5 s pass).
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs one of tests/testdata's Python peers with the venv's Python.
pub fn python_peer(script: &str, args: &[&str]) -> Output {
    Command::new(venv_python())
        .arg(testdata(script))
        .args(args)
        .output()
        .expect("run a Python peer")
}

/// A route configuration sending everything to `cluster`.
pub fn all_to(cluster: &str) -> Value {
    json!([{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}])
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// sluice (one worker) with one connection manager sending everything to a fresh
/// tests/testdata/http_upstream.py; `hcm_extra` adds connection-manager fields.
pub struct PythonFront {
    pub sluice: crate::Sluice,
    pub front: SocketAddr,
    pub upstream: u16,
    _upstream: Proc,
}

impl PythonFront {
    pub fn start(hcm_extra: Value, args: &[&str]) -> PythonFront {
        let (proc, upstream) = python_upstream();
        let yaml = one_upstream(all_to("up"), hcm_extra, upstream)(0);
        let sluice = crate::Sluice::start(&yaml, &[&["--concurrency", "1"][..], args].concat());
        let front = sluice.listener("http");
        PythonFront {
            sluice,
            front,
            upstream,
            _upstream: proc,
        }
    }
}
