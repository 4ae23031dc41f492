//! sluice in TAP mode: its own TCP/IP stack behind a TAP device, with the Linux kernel's TCP on
//! the other side (in a network namespace), and real programs as clients and servers: curl,
//! socat, iperf3, ping, sofa-bolt-node, boltbench. Needs root; see `netns::privileged`.

use sluice_integration::netns::*;
use sluice_integration::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Skips (or, under SLUICE_REQUIRE_PRIVILEGED=1, fails) a test that cannot run here.
macro_rules! need_root {
    ($name:literal) => {
        if !privileged($name) {
            return;
        }
    };
}

#[test]
fn curl_socat_iperf3_and_ping_through_the_tap_proxy() {
    need_root!("curl_socat_iperf3_and_ping_through_the_tap_proxy");
    let t = TapSluice::start(
        |tap| {
            tap_proxy_config(
                tap,
                &[
                    ("web", 8080, "web"),
                    ("echo", 8081, "echo"),
                    ("iperf", 8082, "iperf"),
                ],
                &[("web", &[9080]), ("echo", &[9081]), ("iperf", &[9082])],
                "",
            )
        },
        &[],
    );
    web_echo_iperf3_and_ping_through(&t);

    let s = &t.sluice;
    assert!(s.stat("sluice_stack_rx_tcp_segments") > 1000);
    assert_eq!(s.stat("sluice_stack_rx_drop_bad_checksum"), 0);
    // The kernel handed over coalesced segments (TSO offload on the TAP) during the bulk runs.
    assert!(s.stat("sluice_stack_rx_coalesced_frames") > 0);
    assert!(s.stat("sluice_tcp_downstream_cx_total{stat_prefix=\"web\"}") >= 1);
}

/// Uploads and downloads `len` pseudo-random bytes through the proxy (listeners `up` and `down`
/// on the stack, a socat sink and source behind them in the namespace) and compares sha256s.
fn transfer_both_ways(
    t: &TapSluice,
    [up, down, sink_port, source_port]: [u16; 4],
    len: u64,
    within: Duration,
) {
    let dir = TempDir::new("tap-transfer");
    let src = dir.join("src");
    random_file(&src, len as usize, len);
    let sunk = dir.join("sunk");
    let fetched = dir.join("fetched");
    let listen = |port: u16| format!("TCP-LISTEN:{port},bind={NS_IP},reuseaddr");
    let _sink = socat_in(
        &t.ns,
        sink_port,
        &[
            "-u",
            &listen(sink_port),
            &format!("CREATE:{}", sunk.display()),
        ],
    );
    let _source = socat_in(
        &t.ns,
        source_port,
        &[
            "-u",
            &format!("OPEN:{},rdonly", src.display()),
            &listen(source_port),
        ],
    );
    let client = |port: u16| format!("TCP:{STACK_IP}:{port},connect-timeout=20");
    t.ns.run(
        "socat",
        &[
            "-u",
            "-T",
            "60",
            &format!("OPEN:{},rdonly", src.display()),
            &client(up),
        ],
    );
    t.ns.run(
        "socat",
        &[
            "-u",
            "-T",
            "60",
            &client(down),
            &format!("CREATE:{}", fetched.display()),
        ],
    );
    // The sink writes until its peer's FIN arrives; wait for it to finish the file.
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).ok();
    assert!(
        wait_until(within, || size(&sunk) == Some(len)),
        "upload incomplete: {:?} bytes",
        size(&sunk)
    );
    let want = sha256(&src);
    assert_eq!(sha256(&sunk), want, "upload corrupted");
    assert_eq!(sha256(&fetched), want, "download corrupted");
}

/// 100 MB up and 100 MB down through the TAP-mode proxy, compared by sha256.
#[test]
fn hundred_megabytes_each_way_byte_identical() {
    need_root!("hundred_megabytes_each_way_byte_identical");
    let t = TapSluice::start(
        |tap| {
            tap_proxy_config(
                tap,
                &[("up", 8083, "sink"), ("down", 8084, "source")],
                &[("sink", &[9083]), ("source", &[9084])],
                "",
            )
        },
        &[],
    );
    transfer_both_ways(
        &t,
        [8083, 8084, 9083, 9084],
        100_000_000,
        Duration::from_secs(30),
    );
}

/// Whether this kernel has netem (the CI machine's does not: CONFIG_NET_SCH_NETEM is unset).
fn kernel_has_netem() -> bool {
    let ns = Netns::create();
    let out = Command::new("tc")
        .args([
            "-n", &ns.name, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .output();
    out.map(|o| o.status.success()).unwrap_or(false)
}

/// 5% loss and 20 ms delay in both directions between the kernel and the stack: transfers
/// through the proxy still complete intact. With tc netem where the kernel has it; otherwise
/// with `sluice.io.impair`, the same impairment applied in sluice's device layer.
#[test]
fn lossy_delayed_link_still_delivers_intact() {
    need_root!("lossy_delayed_link_still_delivers_intact");
    let netem = kernel_has_netem();
    let impair = if netem {
        String::new()
    } else {
        eprintln!("this kernel has no netem: impairing the link inside sluice's device layer");
        "    impair: {loss_percent: 5, delay: 0.020s}\n".to_string()
    };
    let t = TapSluice::start(
        |tap| {
            tap_proxy_config(
                tap,
                &[("up", 8085, "sink"), ("down", 8086, "source")],
                &[("sink", &[9085]), ("source", &[9086])],
                &impair,
            )
        },
        &[],
    );
    if netem {
        let ns = &t.ns.name;
        let tc = |args: &[&str]| {
            let out = Command::new("tc")
                .args(["-n", ns])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tc {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // Towards the stack: netem on the TAP's egress.
        tc(&[
            "qdisc", "add", "dev", &t.tap, "root", "netem", "loss", "5%", "delay", "20ms",
        ]);
        // From the stack: the TAP's ingress redirected through an ifb device with netem on it.
        let ifb = unique("slifb");
        t.ns.run("ip", &["link", "add", &ifb, "type", "ifb"]);
        t.ns.run("ip", &["link", "set", &ifb, "up"]);
        tc(&["qdisc", "add", "dev", &t.tap, "handle", "ffff:", "ingress"]);
        tc(&[
            "filter", "add", "dev", &t.tap, "parent", "ffff:", "matchall", "action", "mirred",
            "egress", "redirect", "dev", &ifb,
        ]);
        tc(&[
            "qdisc", "add", "dev", &ifb, "root", "netem", "loss", "5%", "delay", "20ms",
        ]);
    }

    transfer_both_ways(
        &t,
        [8085, 8086, 9085, 9086],
        2_000_000,
        Duration::from_secs(60),
    );
    // The loss was real: the kernel side had to retransmit.
    let out = t.ns.run("nstat", &["-az", "TcpRetransSegs"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let retrans: u64 = text
        .lines()
        .find(|l| l.starts_with("TcpRetransSegs"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        retrans > 10,
        "expected retransmissions under 5% loss, nstat says:\n{text}"
    );
}

/// 10,000 connections open at once through the TAP-mode proxy (20,000 flows in the stack), all
/// carrying requests, none failing.
#[test]
fn ten_thousand_concurrent_connections() {
    need_root!("ten_thousand_concurrent_connections");
    let t = TapSluice::start(
        |tap| tap_proxy_config(tap, &[("many", 8087, "echo")], &[("echo", &[9087])], ""),
        &[],
    );
    let boltbench = bin_dir().join("boltbench");
    let mut echo = t.ns.cmd(boltbench.to_str().unwrap());
    echo.args(["echo", "--listen", &format!("{NS_IP}:9087")])
        .stdout(Stdio::null());
    let _echo = Proc::spawn(echo, "boltbench echo");
    t.ns.wait_listening(9087);
    let mut load = t.ns.cmd(boltbench.to_str().unwrap());
    load.args([
        "load",
        "--target",
        &format!("{STACK_IP}:8087"),
        "--connections",
        "10000",
        "--pipeline",
        "1",
        "--payload",
        "64",
        "--warmup",
        "0",
        "--seconds",
        "4",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let load = load.spawn().unwrap();
    let mut peak = 0;
    wait_until(Duration::from_secs(60), || {
        peak = peak.max(t.sluice.stat("sluice_stack_flows_active"));
        peak >= 20_000
    });
    let out = load.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "boltbench load: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        peak >= 20_000,
        "the stack never held 20,000 flows at once (peak {peak})"
    );
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["connection_errors"], 0, "{v}");
    assert!(v["requests"].as_u64().unwrap() >= 10_000, "{v}");
}

/// sofa-bolt-node client and server on the kernel side, the Bolt proxy on the stack.
#[test]
fn bolt_rpc_through_the_tap_proxy() {
    need_root!("bolt_rpc_through_the_tap_proxy");
    let t = TapSluice::start(
        |tap| {
            let mut y = tap_section(tap, "");
            y += &bolt_proxy_resources();
            y
        },
        &[],
    );
    bolt_rpc_through_the_stack(&t);
}

/// HTTP/1.1 and h2c through the connection manager on the stack, with curl and an upstream on
/// the kernel side.
#[test]
fn http_through_the_tap_proxy() {
    need_root!("http_through_the_tap_proxy");
    let t = TapSluice::start(|tap| tap_section(tap, "") + &http_proxy_resources(), &[]);
    http_through_the_stack(&t);
}

/// `sluice.io.pcap` records what the stack sends and receives; tcpdump reads it.
#[test]
fn pcap_switch_records_frames_tcpdump_can_read() {
    need_root!("pcap_switch_records_frames_tcpdump_can_read");
    let dir = TempDir::new("tap-pcap");
    let pcap = dir.join("stack.pcap");
    let io_extra = format!("    pcap: {}\n", pcap.display());
    let t = TapSluice::start(
        |tap| {
            tap_proxy_config(
                tap,
                &[("echo", 8088, "echo")],
                &[("echo", &[9088])],
                &io_extra,
            )
        },
        &[],
    );
    let _echo = echo_in(&t.ns, 9088);
    assert_eq!(
        socat_roundtrip(&t.ns, &format!("{STACK_IP}:8088"), "captured\n"),
        "captured\n"
    );
    require_program("tcpdump");
    let read = || {
        let out = Command::new("tcpdump")
            .args(["-nn", "-r"])
            .arg(&pcap)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Written out when the stack goes idle; wait for the client's FIN exchange to land.
    let mut text = String::new();
    let complete = wait_until(Duration::from_secs(10), || {
        text = read();
        text.contains(&format!("{STACK_IP}.8088 > "))
            && text.contains(&format!("> {NS_IP}.9088: Flags [F"))
    });
    assert!(complete, "capture lacks the proxied flows:\n{text}");
    assert!(
        text.contains("ARP, Request") || text.contains("ARP, Reply"),
        "no ARP in capture:\n{text}"
    );
}

#[test]
fn listener_on_an_address_the_stack_does_not_own_is_refused() {
    need_root!("listener_on_an_address_the_stack_does_not_own_is_refused");
    let tap = unique("slt");
    let yaml = tap_proxy_config(&tap, &[("x", 8089, "c")], &[("c", &[9089])], "").replace(
        "address: 0.0.0.0, port_value: 8089",
        "address: 10.1.2.3, port_value: 8089",
    );
    Sluice::run_to_exit(&yaml, &[]).assert_fails_with(
        "cannot listen on 10.1.2.3:8089: not an address of the userspace stack (sluice.io.tap.addresses: 10.99.0.2, fd99::2)",
    );
}

/// scripts/tap-topology.sh up, examples/tap.yaml, a client in the clients' namespace reaching
/// sluice's stack through the host's routing; then down leaves nothing behind.
#[test]
fn laptop_topology_script_runs_the_tap_example() {
    need_root!("laptop_topology_script_runs_the_tap_example");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (tap, ns, veth) = (unique("slt"), unique("slcl"), unique("slv"));
    let script = |verb: &str| {
        let out = Command::new(root.join("scripts/tap-topology.sh"))
            .arg(verb)
            .env("SLUICE_TAP", &tap)
            .env("SLUICE_NS", &ns)
            .env("SLUICE_VETH", &veth)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tap-topology.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let forward_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    script("up");
    let result = std::panic::catch_unwind(|| {
        let dir = TempDir::new("tap-example");
        std::fs::write(dir.join("index.html"), "through the laptop topology\n").unwrap();
        let mut web = Command::new("python3");
        web.args(["-m", "http.server", "9080", "--bind", NS_IP, "--directory"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _web = Proc::spawn(web, "http.server");
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect((NS_IP, 9080)).is_ok()
        }));
        let yaml = std::fs::read_to_string(root.join("examples/tap.yaml"))
            .unwrap()
            .replace("name: sluice0", &format!("name: {tap}"))
            .replace("port_value: 9901", "port_value: 0");
        let s = Sluice::start(&yaml, &[]);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "curl",
                "-sS",
                "--max-time",
                "10",
                &format!("http://{STACK_IP}:8080/index.html"),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "through the laptop topology\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(s.stat("sluice_stack_rx_tcp_segments") > 0);
    });
    script("down");
    assert!(
        Command::new("ip")
            .args(["link", "show", &tap])
            .output()
            .unwrap()
            .stdout
            .is_empty(),
        "TAP left behind"
    );
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains(&ns),
        "namespace left behind"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        forward_before
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Without CAP_NET_ADMIN (dropped from the bounding set, so even root's sluice lacks it), TAP
/// mode refuses to start and says why.
#[test]
fn missing_privilege_is_explained() {
    need_root!("missing_privilege_is_explained");
    require_program("setpriv");
    let tap = unique("slt");
    let dir = TempDir::new("tap-noperm");
    let cfg = dir.join("sluice.yaml");
    std::fs::write(
        &cfg,
        tap_proxy_config(&tap, &[("x", 8090, "c")], &[("c", &[9090])], ""),
    )
    .unwrap();
    let exit = run_to_exit(
        Command::new("setpriv")
            .arg("--bounding-set=-net_admin")
            .arg(sluice_bin())
            .arg("-c")
            .arg(&cfg),
    );
    exit.assert_fails_with(&format!(
        "TAP device {tap}: cannot create or attach: Operation not permitted (os error 1) (TAP mode needs root or CAP_NET_ADMIN)"
    ));
}

/// The host kernel behind the fallback TAP gets ping and an ssh-style session on the address
/// sluice serves its listener on (see `fallback::ping_and_a_session_reach_the_kernel`).
#[test]
fn kernel_fallback_answers_ping_and_ssh_style_traffic_while_sluice_serves_its_listener() {
    need_root!(
        "kernel_fallback_answers_ping_and_ssh_style_traffic_while_sluice_serves_its_listener"
    );
    sluice_integration::fallback::ping_and_a_session_reach_the_kernel(
        |wire, fallback| {
            format!(
            "sluice:\n  io:\n    backend: tap\n    tap:\n      name: {wire}\n      addresses: [\"{STACK}/24\"]\n      gateways: [\"{NET}\"]\n{fallback}",
            STACK = sluice_integration::fallback::STACK,
            NET = sluice_integration::fallback::NET,
        )
        },
        1,
    );
}
