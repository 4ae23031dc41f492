//! TAP-mode topologies for tests: sluice runs in the test's network namespace with its stack
//! behind a TAP device; the TAP is moved into a fresh namespace where the Linux kernel's own TCP
//! (curl, socat, iperf3, node, ...) talks to the stack. Everything stays inside that namespace.
//!
//! These need root (TAP devices, namespaces). Without it a test skips with a printed reason,
//! unless SLUICE_REQUIRE_PRIVILEGED=1 (CI), where it fails.

use crate::bolt::js_dir;
use crate::{wait_until, Proc, Sluice};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The namespace side of the TAP and the stack's side.
pub const NS_IP: &str = "10.99.0.1";
pub const STACK_IP: &str = "10.99.0.2";
pub const NS_IP6: &str = "fd99::1";
pub const STACK_IP6: &str = "fd99::2";

/// Whether this process may create TAP devices and namespaces. Prints why not, or panics when
/// privileged tests are required.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tun = std::path::Path::new("/dev/net/tun").exists();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if root && tun && ip {
        return true;
    }
    let why = format!(
        "{test} needs root, /dev/net/tun and iproute2 (root: {root}, /dev/net/tun: {tun}, ip: {ip})"
    );
    if std::env::var("SLUICE_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{why}; SLUICE_REQUIRE_PRIVILEGED=1 says it must run here");
    }
    eprintln!("skipping: {why}");
    false
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// A network namespace, deleted (with everything in it) on drop.
pub struct Netns {
    pub name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, short enough for an interface (15 bytes).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}{n}", std::process::id() % 0xfffff)
}

impl Netns {
    pub fn create() -> Netns {
        let name = unique("slns");
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// A command that runs `program` inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a command in the namespace to completion and returns its output; panics on failure.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        run(self.cmd(program).args(args).stdin(Stdio::null()))
    }

    /// Moves the TAP device `tap` here and gives this side its addresses.
    pub fn adopt_tap(&self, tap: &str) {
        self.adopt_tap_as(tap, &[&format!("{NS_IP}/24"), &format!("{NS_IP6}/64")]);
    }

    /// Moves the TAP device `tap` here and gives this side the addresses `cidrs`.
    pub fn adopt_tap_as(&self, tap: &str, cidrs: &[&str]) {
        ip(&["link", "set", tap, "netns", &self.name]);
        let ns = self.name.as_str();
        for cidr in cidrs {
            if cidr.contains(':') {
                ip(&["-n", ns, "addr", "add", cidr, "dev", tap, "nodad"]);
            } else {
                ip(&["-n", ns, "addr", "add", cidr, "dev", tap]);
            }
        }
        ip(&["-n", ns, "link", "set", tap, "up"]);
    }

    /// Whether something in the namespace listens on TCP `port`.
    pub fn is_listening(&self, port: u16) -> bool {
        let out = self
            .cmd("ss")
            .args(["-Htln", &format!("sport = :{port}")])
            .output();
        out.map(|o| !o.stdout.is_empty()).unwrap_or(false)
    }

    /// Waits until something in the namespace listens on `port`.
    pub fn wait_listening(&self, port: u16) {
        assert!(
            wait_until(Duration::from_secs(20), || self.is_listening(port)),
            "nothing listened on port {port} in {}",
            self.name
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The `sluice:` section for a TAP-mode sluice on device `tap`, plus optional extra `io` keys
/// (indented for the `io:` map).
pub fn tap_section(tap: &str, io_extra: &str) -> String {
    format!(
        "sluice:\n  io:\n    backend: tap\n    tap:\n      name: {tap}\n      addresses: [\"{STACK_IP}/24\", \"{STACK_IP6}/64\"]\n      gateways: [\"{NS_IP}\"]\n{io_extra}"
    )
}

/// The `sluice:` section for a DPDK-mode sluice whose port is DPDK's `net_tap` vdev creating the
/// TAP `iface` (ordinary memory, no hugepages), polled by `workers` lcores (1 or 2), plus
/// extra keys for the `dpdk:` map (indented for it).
pub fn dpdk_section(iface: &str, dpdk_extra: &str) -> String {
    format!(
        "sluice:\n  io:\n    backend: dpdk\n    dpdk:\n      eal: {{lcores: [0, 1], no_huge_mb: 512, in_memory: true, vdevs: [\"net_tap0,iface={iface}\"]}}\n      ports:\n      - name: wire\n        device: net_tap0\n        addresses: [\"{STACK_IP}/24\", \"{STACK_IP6}/64\"]\n        gateways: [\"{NS_IP}\"]\n      queues: [{{lcore: 1, port: wire, queue: 0}}]\n      mempool: {{mbufs: 4095}}\n{dpdk_extra}"
    )
}

/// A TAP-mode sluice whose TAP sits in its own namespace.
pub struct TapSluice {
    pub ns: Netns,
    pub tap: String,
    pub sluice: Sluice,
}

impl TapSluice {
    /// Starts sluice on `yaml` (which must use `tap_section(tap, ..)` with the `tap` given to
    /// `build`) and wires its TAP into a fresh namespace.
    pub fn start(build: impl FnOnce(&str) -> String, extra: &[&str]) -> TapSluice {
        let tap = unique("slt");
        let ns = Netns::create();
        let sluice = Sluice::start(&build(&tap), extra);
        ns.adopt_tap(&tap);
        TapSluice { ns, tap, sluice }
    }
}

/// A TCP-proxy listener `name` on the stack's port `port` to cluster `cluster`, and a STATIC
/// cluster per `(name, [ports in the namespace])`, for TAP-mode configs.
pub fn tap_proxy_config(
    tap: &str,
    listeners: &[(&str, u16, &str)],
    clusters: &[(&str, &[u16])],
    io_extra: &str,
) -> String {
    proxy_config(tap_section(tap, io_extra), listeners, clusters)
}

/// `tap_proxy_config`'s listeners and clusters after any `sluice:` section.
pub fn proxy_config(
    section: String,
    listeners: &[(&str, u16, &str)],
    clusters: &[(&str, &[u16])],
) -> String {
    proxy_config_on(section, listeners, clusters, NS_IP)
}

/// `proxy_config` with the clusters' endpoints on `upstream` instead of `NS_IP`.
pub fn proxy_config_on(
    section: String,
    listeners: &[(&str, u16, &str)],
    clusters: &[(&str, &[u16])],
    upstream: &str,
) -> String {
    let mut y = section;
    y += "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 0}}\nstatic_resources:\n  listeners:\n";
    for (name, port, cluster) in listeners {
        y += &format!(
            "  - name: {name}\n    address: {{socket_address: {{address: 0.0.0.0, port_value: {port}}}}}\n    filter_chains:\n    - filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: {name}\n          cluster: {cluster}\n"
        );
    }
    y += "  clusters:\n";
    for (name, ports) in clusters {
        y += &format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 2s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n"
        );
        for port in ports.iter() {
            y += &format!(
                "        - endpoint: {{address: {{socket_address: {{address: {upstream}, port_value: {port}}}}}}}\n"
            );
        }
    }
    y
}

/// An rpc_proxy listener on the stack's port 12200 routing every service to the Bolt server on
/// the namespace's port 12201, with the Bolt health check on (it runs through the stack).
pub fn bolt_proxy_resources() -> String {
    format!(
        "admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\nstatic_resources:\n  listeners:\n  - name: rpc\n    address: {{socket_address: {{address: {STACK_IP}, port_value: 12200}}}}\n    filter_chains:\n    - filters:\n      - name: sluice.filters.network.rpc_proxy\n        typed_config:\n          \"@type\": type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy\n          stat_prefix: rpc\n          route_config:\n            virtual_hosts:\n            - name: all\n              services: [\"*\"]\n              routes:\n              - route: {{cluster: bolt}}\n  clusters:\n  - name: bolt\n    type: STATIC\n    connect_timeout: 2s\n    health_checks:\n    - timeout: 1s\n      interval: 1s\n      unhealthy_threshold: 1\n      healthy_threshold: 1\n      custom_health_check: {{name: sluice.health_checkers.bolt}}\n    load_assignment:\n      cluster_name: bolt\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: {NS_IP}, port_value: 12201}}}}}}\n"
    )
}

/// sofa-bolt-node server in the namespace behind `bolt_proxy_resources()`: the Bolt health check
/// passes through the stack, and 200 calls from sofa-bolt-node's client in the namespace are
/// answered with no mismatch.
pub fn bolt_rpc_through_the_stack(t: &TapSluice) {
    let mut server = t.ns.cmd("node");
    server
        .arg(js_dir().join("bolt_server.js"))
        .args(["--name", "tapside", "--port", "12201", "--host", NS_IP])
        .stdout(Stdio::null());
    let _server = Proc::spawn(server, "bolt_server.js");
    t.ns.wait_listening(12201);
    // The Bolt health check runs on the stack too: the endpoint turns healthy through the TAP.
    assert!(
        wait_until(Duration::from_secs(10), || t.sluice.stat(
            "sluice_host_healthy{cluster=\"bolt\",address=\"10.99.0.1:12201\"}"
        ) == 1),
        "the Bolt health check never passed through the stack"
    );
    let out = t.ns.run(
        "node",
        &[
            js_dir().join("bolt_client.js").to_str().unwrap(),
            "--host",
            STACK_IP,
            "--port",
            "12200",
            "--count",
            "200",
            "--concurrency",
            "20",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], 200, "{v}");
    assert_eq!(v["mismatched"], 0, "{v}");
    assert_eq!(v["answers"]["tapside:sayHello"], 200, "{v}");
    assert_eq!(
        t.sluice
            .stat("sluice_rpc_downstream_rq_total{stat_prefix=\"rpc\"}"),
        200
    );
}

/// Behind a stack-mode sluice whose listeners 8080, 8081 and 8082 proxy to the namespace's ports
/// 9080, 9081 and 9082 (see `proxy_config`): a web server, a socat echo and an iperf3 server run
/// there. ping and ping -6 are answered by the stack; curl fetches 3 MiB byte for byte; socat
/// round-trips over IPv4 and IPv6; iperf3 moves over 10 MiB each way.
pub fn web_echo_iperf3_and_ping_through(t: &TapSluice) {
    let dir = crate::TempDir::new("stack-web");
    crate::random_file(&dir.join("blob"), 3 << 20, 7);
    let mut web = t.ns.cmd("python3");
    web.args(["-m", "http.server", "9080", "--bind", NS_IP, "--directory"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _web = Proc::spawn(web, "http.server");
    t.ns.wait_listening(9080);
    let _echo = echo_in(&t.ns, 9081);
    let mut iperf = t.ns.cmd("iperf3");
    iperf
        .args(["-s", "-p", "9082", "-B", NS_IP])
        .stdout(Stdio::null());
    let _iperf = Proc::spawn(iperf, "iperf3 -s");
    t.ns.wait_listening(9082);

    // ICMP echo is answered by the stack itself.
    t.ns.run("ping", &["-c", "2", "-W", "2", STACK_IP]);
    t.ns.run("ping", &["-6", "-c", "2", "-W", "2", STACK_IP6]);

    // curl: a 3 MiB file, byte for byte.
    let got = dir.join("got");
    let out = t.ns.run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "20",
            "-o",
            got.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &format!("http://{STACK_IP}:8080/blob"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert_eq!(crate::sha256(&got), crate::sha256(&dir.join("blob")));

    // socat over IPv4 and IPv6 to the stack (upstream over IPv4).
    assert_eq!(
        socat_roundtrip(&t.ns, &format!("{STACK_IP}:8081"), "over v4\n"),
        "over v4\n"
    );
    assert_eq!(
        socat_roundtrip(&t.ns, &format!("[{STACK_IP6}]:8081"), "over v6\n"),
        "over v6\n"
    );

    // iperf3 both ways through the proxy.
    for reverse in [false, true] {
        let mut args = vec!["-c", STACK_IP, "-p", "8082", "-t", "2", "-J"];
        if reverse {
            args.push("-R");
        }
        let out = t.ns.run("iperf3", &args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v.get("error").is_none(), "iperf3: {}", v["error"]);
        let bytes = v["end"]["sum_received"]["bytes"].as_u64().unwrap();
        assert!(
            bytes > 10 << 20,
            "iperf3 moved only {bytes} bytes (reverse: {reverse})"
        );
    }
}

/// socat in the namespace with `args`, once it listens on `port`.
pub fn socat_in(ns: &Netns, port: u16, args: &[&str]) -> Proc {
    crate::require_program("socat");
    let mut cmd = ns.cmd("socat");
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let p = Proc::spawn(cmd, "socat");
    ns.wait_listening(port);
    p
}

/// An echo service (socat, v4 and v6) in the namespace on `port`.
pub fn echo_in(ns: &Netns, port: u16) -> Proc {
    socat_in(
        ns,
        port,
        &[
            &format!("TCP6-LISTEN:{port},reuseaddr,fork,ipv6only=0"),
            "EXEC:cat",
        ],
    )
}

/// Sends `msg` from inside the namespace to `addr` and returns what came back.
pub fn socat_roundtrip(ns: &Netns, addr: &str, msg: &str) -> String {
    let out = ns
        .cmd("socat")
        .args(["-t", "5", "-T", "10", "-", &format!("TCP:{addr},shut-down")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(msg.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An HTTP connection manager on the stack's port 8080 (AUTO: HTTP/1.1 and h2c) routing to
/// tests/testdata/http_upstream.py on the namespace's port 9080.
pub fn http_proxy_resources() -> String {
    let mut cluster = crate::http::cluster("up", &[9080], false, serde_json::json!({}));
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"]["address"] = NS_IP.into();
    let yaml = crate::http::hcm_bootstrap(
        8080,
        serde_json::json!([{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "up"}}]}]),
        serde_json::json!({}),
        vec![cluster],
    );
    // The listener binds on the stack's every address.
    let mut doc: serde_json::Value = serde_json::from_str(&yaml).unwrap();
    doc["static_resources"]["listeners"][0]["address"]["socket_address"]["address"] =
        "0.0.0.0".into();
    // Each top-level key as `key: <JSON>` (JSON is YAML), after the `sluice:` section's lines.
    doc.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

/// curl in the namespace through the stack's HTTP listener: HTTP/1.1 and h2c GETs answered by
/// the upstream in the namespace, and 8 MiB posted and echoed back byte for byte over both.
pub fn http_through_the_stack(t: &TapSluice) {
    let mut up = t.ns.cmd("python3");
    up.arg(crate::http::testdata("http_upstream.py"))
        .args(["9080", NS_IP])
        .stdout(Stdio::null());
    let _up = Proc::spawn(up, "http_upstream.py");
    t.ns.wait_listening(9080);
    let dir = crate::TempDir::new("stack-http");
    let blob = dir.join("blob");
    crate::random_file(&blob, 8 << 20, 11);
    for client in [&[][..], &["--http2-prior-knowledge"][..]] {
        let out = t.ns.run(
            "curl",
            &[
                client,
                &[
                    "-sS",
                    "--max-time",
                    "20",
                    &format!("http://{STACK_IP}:8080/hello"),
                ],
            ]
            .concat(),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "upstream 9080 /hello\n",
            "{client:?}"
        );
        let got = dir.join("got");
        let data = format!("@{}", blob.display());
        if client.is_empty() {
            let out = t.ns.run(
                "curl",
                &[
                    "-sS",
                    "--max-time",
                    "60",
                    "--data-binary",
                    &data,
                    "-o",
                    got.to_str().unwrap(),
                    "-w",
                    "%{http_code}",
                    &format!("http://{STACK_IP}:8080/echo"),
                ],
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{client:?}");
        } else {
            // nghttp, not curl, uploads over HTTP/2: curl 7.88 (Debian bookworm's) can send
            // part of a body twice when its socket is full (fixed in curl 8.2, curl#11342), and
            // the server then rightly resets the stream for exceeding its content-length.
            let out = t.ns.run(
                "nghttp",
                &[
                    "-d",
                    blob.to_str().unwrap(),
                    &format!("http://{STACK_IP}:8080/echo"),
                ],
            );
            std::fs::write(&got, &out.stdout).unwrap();
        }
        assert_eq!(crate::sha256(&got), crate::sha256(&blob), "{client:?}");
    }
    assert_eq!(
        t.sluice
            .stat("sluice_http_downstream_rq_2xx{stat_prefix=\"ingress\"}"),
        4
    );
    assert_eq!(
        t.sluice
            .stat("sluice_http_downstream_cx_http2_total{stat_prefix=\"ingress\"}"),
        2
    );
}
