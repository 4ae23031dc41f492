//! Bolt peers for the tests: the real sofa-bolt-node server and client (tests/js, installed by
//! scripts/setup/deps.sh), and a raw client built on sluice's own codec for assertions on exact
//! bytes and status codes.

use crate::{Proc, TempDir};
use bytes::BytesMut;
use sluice::protocol::bolt::{Bolt, RequestSpec, PROTO_V1, PROTO_V2};
use sluice::protocol::xprotocol::{Codec, FrameHead};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const SERVICE: &str = "com.alipay.sofa.rpc.quickstart.HelloService:1.0";

/// tests/js, with its node_modules.
pub fn js_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        d.join("node_modules/sofa-bolt-node").is_dir(),
        "the npm test peers are not installed: run scripts/setup/deps.sh test"
    );
    d
}

/// A sofa-bolt-node server (tests/js/bolt_server.js) that logs each request it gets.
pub struct BoltServer {
    pub proc: Proc,
    pub port: u16,
    pub name: String,
    log: PathBuf,
    _dir: TempDir,
}

impl BoltServer {
    /// Starts it on `port` (0: any) and waits for its "listening" line.
    pub fn start(name: &str, port: u16, extra: &[&str]) -> BoltServer {
        let dir = TempDir::new("bolt-server");
        let log = dir.join("requests.log");
        std::fs::write(&log, "").unwrap();
        let mut cmd = Command::new("node");
        cmd.arg(js_dir().join("bolt_server.js"))
            .args(["--name", name, "--port", &port.to_string()])
            .arg("--count-file")
            .arg(&log)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc = Proc::spawn(cmd, "bolt_server.js");
        let out = proc.child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("bolt server {name} did not start: {line:?}"))
            .parse()
            .unwrap();
        BoltServer {
            proc,
            port,
            name: name.to_string(),
            log,
            _dir: dir,
        }
    }

    /// Requests (method names) this server has received, heartbeats excluded.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("heartbeat"))
            .map(|l| l.split(' ').next().unwrap_or("").to_string())
            .collect()
    }

    pub fn heartbeats(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("heartbeat"))
            .count()
    }

    pub fn kill(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }
}

/// bolt_client.js's answers, as (server:method, count), sorted.
pub fn answers(v: &serde_json::Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = v["answers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect();
    out.sort();
    out
}

/// Runs tests/js/bolt_client.js with `args` and returns its JSON summary.
pub fn bolt_client(port: u16, args: &[&str]) -> serde_json::Value {
    let out = Command::new("node")
        .arg(js_dir().join("bolt_client.js"))
        .args(["--port", &port.to_string()])
        .args(args)
        .output()
        .expect("run node bolt_client.js");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "bolt_client.js printed no summary ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The request body sofa-bolt-node wrote for `sayHello("peter")` (from the capture), with the
/// 8-character method name replaced: servers route on it, hang on "hang...", delay "slow...".
pub fn sofa_request_body(method8: &str) -> Vec<u8> {
    assert_eq!(
        method8.len(),
        8,
        "the captured body holds an 8-character method name"
    );
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../dataplane/testdata/bolt/bolt-v1-hexdump.txt"),
    )
    .unwrap();
    let hex: Vec<u8> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('<'))
        .flat_map(|l| {
            l.split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    // class 44 bytes and header map 62 bytes follow the 22-byte header.
    let mut body = hex[22 + 44 + 62..].to_vec();
    let at = body
        .windows(8)
        .position(|w| w == b"sayHello")
        .expect("method name in the captured body");
    body[at..at + 8].copy_from_slice(method8.as_bytes());
    body
}

pub const SOFA_REQUEST_CLASS: &[u8] = b"com.alipay.sofa.rpc.core.request.SofaRequest";

/// A Bolt request frame as a SOFARPC client writes it.
pub struct Call<'a> {
    pub id: u32,
    pub method8: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub timeout_ms: u32,
    pub v2_crc: bool,
    pub oneway: bool,
}

impl Default for Call<'_> {
    fn default() -> Self {
        Call {
            id: 1,
            method8: "sayHello",
            headers: &[("service", SERVICE)],
            timeout_ms: 3000,
            v2_crc: false,
            oneway: false,
        }
    }
}

impl Call<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let body = sofa_request_body(self.method8);
        let mut out = BytesMut::new();
        RequestSpec {
            proto: if self.v2_crc { PROTO_V2 } else { PROTO_V1 },
            ver1: 2,
            crc: self.v2_crc,
            oneway: self.oneway,
            request_id: self.id,
            timeout_ms: self.timeout_ms,
            class: SOFA_REQUEST_CLASS,
            headers: self.headers,
            content: &body,
        }
        .encode(&mut out);
        out.to_vec()
    }
}

/// A plain blocking Bolt connection for byte-exact checks.
pub struct RawBolt {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawBolt {
    pub fn connect(addr: SocketAddr) -> RawBolt {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawBolt {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next frame, or `None` when the connection closes or `timeout` passes first.
    pub fn recv_within(&mut self, timeout: Duration) -> Option<(FrameHead, Vec<u8>)> {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        loop {
            if let Some(h) = Bolt
                .decode(&self.buf, 1 << 24)
                .expect("sluice sent a bad frame")
            {
                let frame: Vec<u8> = self.buf.drain(..h.len).collect();
                return Some((h, frame));
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn recv(&mut self) -> (FrameHead, Vec<u8>) {
        self.recv_within(Duration::from_secs(10))
            .expect("a frame from sluice within 10 s")
    }

    /// Whether the peer closed the connection (EOF or reset) within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
            }
        }
    }
}

/// The answer string in a sofa-bolt-node response body ("<server>:<method>:peter"): a short
/// Hessian string, so the byte before it holds its length.
pub fn answer_of(frame: &[u8]) -> String {
    let Some(end) = frame
        .windows(6)
        .rposition(|w| w == b":peter")
        .map(|p| p + 6)
    else {
        return String::new();
    };
    (1..end.min(32))
        .map(|len| end - len)
        .find(|&start| start > 0 && usize::from(frame[start - 1]) == end - start)
        .map(|start| String::from_utf8_lossy(&frame[start..end]).into_owned())
        .unwrap_or_default()
}

/// A config with one rpc_proxy listener on an ephemeral port and the given YAML pieces.
pub fn rpc_config(proxy_extra: &str, virtual_hosts: &str, clusters: &str) -> String {
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: bolt
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: sluice.filters.network.rpc_proxy
        typed_config:
          "@type": type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy
          stat_prefix: bolt
{proxy_extra}
          route_config:
            name: local
            virtual_hosts:
{virtual_hosts}
  clusters:
{clusters}
"#
    )
}

/// A STATIC cluster of 127.0.0.1 endpoints: (port, metadata YAML map or "").
pub fn bolt_cluster(name: &str, extra: &str, endpoints: &[(u16, &str)]) -> String {
    let mut eps = String::new();
    for (port, md) in endpoints {
        eps.push_str(&format!(
            "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n"
        ));
        if !md.is_empty() {
            eps.push_str(&format!(
                "          metadata: {{filter_metadata: {{envoy.lb: {md}}}}}\n"
            ));
        }
    }
    format!(
        "  - name: {name}\n    connect_timeout: 1s\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n{eps}"
    )
}
