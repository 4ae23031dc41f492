//! xDS peers for the tests: the third-party ADS server (tests/xds/ads_server.py, on PyPI's
//! envoy-data-plane and grpclib), Envoy 1.40 as a second client of it, and the bootstraps and
//! resources both are given.

use crate::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

fn venv_python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python");
    assert!(
        p.exists(),
        "the Python test peers are not installed: run scripts/setup/deps.sh test"
    );
    p
}

/// The ADS server, on ports that stay the same across a restart.
pub struct AdsServer {
    proc: Proc,
    pub port: u16,
    pub control_port: u16,
}

impl AdsServer {
    pub fn start() -> AdsServer {
        AdsServer::start_on(0, 0)
    }

    fn start_on(port: u16, control_port: u16) -> AdsServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("xds/ads_server.py");
        let mut cmd = Command::new(venv_python());
        cmd.arg(script)
            .args(["--port", &port.to_string()])
            .args(["--control-port", &control_port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc = Proc::spawn(cmd, "ads_server.py");
        let mut line = String::new();
        BufReader::new(proc.child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(&"xds"), Some(port), Some(&"control"), Some(control)) =
            (words.first(), words.get(1), words.get(2), words.get(3))
        else {
            panic!("ads_server.py did not start: {line:?}");
        };
        AdsServer {
            proc,
            port: port.parse().unwrap(),
            control_port: control.parse().unwrap(),
        }
    }

    /// Kills the server and starts a new one (with nothing in it) on the same ports.
    pub fn restart(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        *self = AdsServer::start_on(self.port, self.control_port);
    }

    fn command(&self, cmd: Value) -> Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.control_port)).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["ok"], true, "ads_server.py refused {cmd}: {answer}");
        answer
    }

    /// Sets the snapshot of `node` ("*": every node without its own).
    pub fn set(&self, node: &str, version: &str, resources: &Value) {
        self.command(
            json!({"cmd": "set", "node": node, "version": version, "resources": resources}),
        );
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Value> {
        let answer = self.command(json!({"cmd": "requests"}));
        answer["requests"].as_array().cloned().unwrap_or_default()
    }

    /// The requests of `node` that carried an error_detail (NACKs).
    pub fn nacks(&self, node: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["node"] == node && r["error_detail"].is_string())
            .collect()
    }
}

/// The `node` and `dynamic_resources` sections both proxies read, and the static cluster that
/// names the server; `api_type` is GRPC or DELTA_GRPC.
pub fn xds_sections(node: &str, api_type: &str, server_port: u16, envoy: bool) -> String {
    // Envoy needs to be told its gRPC upstream speaks HTTP/2; sluice's reader has no HTTP
    // upstream options (sluice-control talks gRPC itself).
    let h2 = if envoy {
        "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {http2_protocol_options: {}}\n"
    } else {
        ""
    };
    format!(
        "node: {{id: {node}, cluster: tests}}\n\
dynamic_resources:\n  ads_config:\n    api_type: {api_type}\n    transport_api_version: V3\n    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]\n  lds_config: {{ads: {{}}, resource_api_version: V3}}\n  cds_config: {{ads: {{}}, resource_api_version: V3}}\n\
static_resources:\n  clusters:\n  - name: xds\n    type: STATIC\n    connect_timeout: 1s\n{h2}    load_assignment:\n      cluster_name: xds\n      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {server_port}}}}}}}}}]}}]\n"
    )
}

/// sluice as an xDS client: the dataplane with its control socket, and sluice-control.
pub struct SluiceXds {
    pub sluice: Sluice,
    pub control: Proc,
    pub socket: PathBuf,
    control_log: PathBuf,
    _socket_dir: TempDir,
}

impl SluiceXds {
    pub fn start(node: &str, api_type: &str, server_port: u16) -> SluiceXds {
        let yaml = format!(
            "admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n{}",
            xds_sections(node, api_type, server_port, false)
        );
        let dir = TempDir::new("xds-socket");
        let socket = dir.join("control.sock");
        let sluice = Sluice::start(&yaml, &["--control-socket", socket.to_str().unwrap()]);
        let control_log = sluice.dir.join("control.log");
        let control = SluiceXds::spawn_control(&sluice, &socket, &control_log);
        SluiceXds {
            sluice,
            control,
            socket,
            control_log,
            _socket_dir: dir,
        }
    }

    fn spawn_control(sluice: &Sluice, socket: &Path, log: &Path) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(bin_dir().join("sluice-control"));
        cmd.arg("xds")
            .arg("-c")
            .arg(sluice.config_path())
            .arg("--dataplane")
            .arg(socket)
            .stdout(Stdio::null())
            .stderr(log);
        Proc::spawn(cmd, "sluice-control")
    }

    /// Kills the control process and starts another.
    pub fn restart_control(&mut self) {
        let _ = self.control.child.kill();
        let _ = self.control.child.wait();
        self.control = SluiceXds::spawn_control(&self.sluice, &self.socket, &self.control_log);
    }

    pub fn control_log(&self) -> String {
        std::fs::read_to_string(&self.control_log).unwrap_or_default()
    }

    /// The xDS status the dataplane shows in /config_dump.
    pub fn dynamic(&self) -> Value {
        let (_, body) = self.sluice.get("/config_dump");
        let dump: Value = serde_json::from_str(&body).unwrap();
        dump["dynamic_resources"].clone()
    }

    /// Waits until the first sync is whole, nothing warms, and every type's accepted
    /// version_info is `version` (those with resources).
    pub fn wait_version(&self, version: &str) {
        let ok = wait_until(Duration::from_secs(20), || {
            let d = self.dynamic();
            let types = d["types"].as_object().cloned().unwrap_or_default();
            let warming = d["resources"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .flat_map(|l| l.as_array().cloned().unwrap_or_default())
                .any(|r| r["state"] != "active");
            d["initialized"] == true
                && !warming
                && !types.is_empty()
                && types
                    .iter()
                    .filter(|(_, t)| t["acks"].as_u64().unwrap_or(0) > 0)
                    .all(|(_, t)| t["version_info"] == version)
                && types.values().any(|t| t["version_info"] == version)
        });
        assert!(
            ok,
            "sluice did not reach version {version}: {}\ncontrol log:\n{}",
            self.dynamic(),
            self.control_log()
        );
    }

    /// The names (sorted) of the dynamic resources of a type ("cds", "eds", "lds", "rds"),
    /// each with its state.
    pub fn resources(&self, short: &str) -> Vec<(String, String)> {
        let d = self.dynamic();
        let mut out: Vec<(String, String)> = d["resources"][short]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// Envoy 1.40 on a bootstrap, with its admin address file as the readiness signal.
pub struct Envoy {
    pub proc: Proc,
    pub admin: std::net::SocketAddr,
    _dir: TempDir,
}

impl Envoy {
    pub fn start(yaml: &str) -> Envoy {
        Envoy::start_with(yaml, &[])
    }

    /// As `start`, with more command-line arguments (`--drain-time-s`, ...).
    pub fn start_with(yaml: &str, args: &[&str]) -> Envoy {
        let dir = TempDir::new("envoy");
        let file = dir.join("envoy.yaml");
        std::fs::write(&file, yaml).unwrap();
        let addr_file = dir.join("admin.addr");
        let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&file)
            .args(["--concurrency", "1", "--use-dynamic-base-id"])
            .args(args)
            .arg("--admin-address-path")
            .arg(&addr_file)
            .stdout(Stdio::null())
            .stderr(log);
        let mut proc = Proc::spawn(cmd, "envoy");
        let up = wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&addr_file).is_ok_and(|s| s.contains(':'))
                || proc.child.try_wait().unwrap().is_some()
        });
        let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
        assert!(up, "envoy did not come up:\n{log}");
        let admin = std::fs::read_to_string(&addr_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Envoy {
            proc,
            admin,
            _dir: dir,
        }
    }

    pub fn config_dump(&self) -> Value {
        let (status, body) = http_get(self.admin, "/config_dump?include_eds");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The dynamic resources Envoy uses, as (type, name, version_info), sorted. Envoy reports no
    /// version for endpoints: theirs is `endpoint_ports`.
    pub fn dynamic(&self) -> Vec<(String, String, String)> {
        let dump = self.config_dump();
        let mut out = Vec::new();
        for config in dump["configs"].as_array().unwrap() {
            let t = config["@type"].as_str().unwrap_or("");
            let (short, list, inner) = if t.ends_with("ClustersConfigDump") {
                ("cds", "dynamic_active_clusters", "cluster")
            } else if t.ends_with("ListenersConfigDump") {
                ("lds", "dynamic_listeners", "active_state")
            } else if t.ends_with("RoutesConfigDump") {
                ("rds", "dynamic_route_configs", "route_config")
            } else if t.ends_with("EndpointsConfigDump") {
                ("eds", "dynamic_endpoint_configs", "endpoint_config")
            } else {
                continue;
            };
            for item in config[list].as_array().into_iter().flatten() {
                let (name, version) = match short {
                    "lds" => (
                        item["name"].as_str(),
                        item["active_state"]["version_info"].as_str(),
                    ),
                    "eds" => {
                        let ports = endpoint_ports(&item[inner]);
                        if let Some(n) = item[inner]["cluster_name"].as_str() {
                            out.push((short.to_string(), n.to_string(), ports));
                        }
                        continue;
                    }
                    _ => (item[inner]["name"].as_str(), item["version_info"].as_str()),
                };
                if let (Some(n), Some(v)) = (name, version) {
                    out.push((short.to_string(), n.to_string(), v.to_string()));
                }
            }
        }
        out.sort();
        out
    }

    pub fn listener_port(&self, name: &str) -> Option<u16> {
        let (_, body) = http_get(self.admin, "/listeners");
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}::")))
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
    }
}

/// The ports of a ClusterLoadAssignment's endpoints, "p1,p2" (sorted).
pub fn endpoint_ports(cla: &Value) -> String {
    let mut ports: Vec<u64> = cla["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["lb_endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| {
            e.pointer("/endpoint/address/socket_address/port_value")?
                .as_u64()
        })
        .collect();
    ports.sort();
    ports
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads what a server sends on connect until it closes.
pub fn read_all(port: u16) -> String {
    try_read_all(port).unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"))
}

fn try_read_all(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut out);
    Ok(out.trim().to_string())
}

/// Waits until a connection to `port` reads `want` (a proxy may still be warming, or not yet
/// listen on the port at all).
pub fn eventually_reads(port: u16, want: &str) {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        last = try_read_all(port).unwrap_or_else(|e| format!("(connect: {e})"));
        last == want
    });
    assert!(ok, "port {port} reads {last:?}, not {want:?}");
}

/// A tcp_proxy listener.
pub fn tcp_listener(name: &str, port: u16, cluster: &str) -> Value {
    json!({"name": name,
           "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
           "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy",
             "typed_config": {"@type": TCP_PROXY, "stat_prefix": name, "cluster": cluster}}]}]})
}

/// An EDS cluster (endpoints over ADS).
pub fn eds_cluster(name: &str) -> Value {
    json!({"name": name, "type": "EDS", "connect_timeout": "1s",
           "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}})
}

/// A ClusterLoadAssignment with endpoints on 127.0.0.1.
pub fn assignment(name: &str, ports: &[u16]) -> Value {
    let endpoints: Vec<Value> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}))
        .collect();
    json!({"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]})
}
