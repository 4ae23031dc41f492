//! Config handling of the real binary: validation, clear errors with paths, Envoy running the
//! same file, SIGHUP reloads (good and bad) under traffic, and the admin API.

use sluice_integration::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What `backend: dpdk` without a `sluice.io.dpdk` layout says: in a build with DPDK, that the
/// layout is missing; in one without, that the build has no DPDK.
const NO_DPDK_LAYOUT: &str = if cfg!(feature = "dpdk") {
    "sluice.io.backend dpdk needs a sluice.io.dpdk section"
} else {
    "this build of sluice has no DPDK support"
};

#[test]
fn validate_mode_accepts_the_example_and_rejects_bad_files() {
    let mut examples = vec![
        "envoy.yaml",
        "http.yaml",
        "bolt.yaml",
        "tap.yaml",
        "xds.yaml",
    ];
    if cfg!(feature = "dpdk") {
        examples.push("dpdk.yaml");
    }
    for example in examples {
        let path = format!("{}/../examples/{example}", env!("CARGO_MANIFEST_DIR"));
        let ok = run_to_exit(Command::new(sluice_bin()).args(["--mode", "validate", "-c", &path]));
        assert!(ok.status.success(), "{example}: {}", ok.stderr);
        assert!(ok.stdout.contains("OK"));
    }

    let bad_filter = front_to(1)
        .replace(
            "name: envoy.filters.network.tcp_proxy",
            "name: envoy.filters.network.foo",
        )
        .replace("tcp_proxy.v3.TcpProxy", "foo.v3.Foo");
    for mode in [&["--mode", "validate"][..], &[]] {
        let r = Sluice::run_to_exit(&bad_filter, mode);
        r.assert_fails_with("static_resources.listeners[0].filter_chains[0].filters[0].name: unknown filter \"envoy.filters.network.foo\"");
    }
}

#[test]
fn config_errors_name_their_path_and_exit_1() {
    let good = front_to(1);
    let cases: &[(String, &str)] = &[
        (good.replace("lb_policy: ROUND_ROBIN", "lb_policy: CLUSTER_PROVIDED"), "static_resources.clusters[0].lb_policy: lb_policy CLUSTER_PROVIDED is not supported yet"),
        (good.replace("lb_policy: ROUND_ROBIN", "lb_policy: MAGLEV\n    maglev_lb_config: {table_size: 100}"), "static_resources.clusters[0].maglev_lb_config.table_size: table_size 100 must be a prime"),
        (good.replace("connect_timeout: 1s", "connect_timeout: soon"), "static_resources.clusters[0].connect_timeout: invalid duration \"soon\""),
        (good.replace("cluster: up", "cluster: nowhere"), "typed_config.cluster: unknown cluster \"nowhere\""),
        (good.replace("    connect_timeout: 1s", "    connect_timeout: 1s\n    circuit_breakers: {}"), "static_resources.clusters[0].circuit_breakers: this Envoy field is not supported by sluice yet"),
        (good.replace("stat_prefix: front", "stat_prefix: front\n          bogus_field: 1"), "typed_config.bogus_field: unknown field"),
        (good.replace("port_value: 1}", "port_value: 99999}"), "port_value: port 99999 is out of range"),
        (good.clone() + "sluice:\n  io: {backend: dpdk}\n", NO_DPDK_LAYOUT),
        (good.clone() + "sluice:\n  io: {backend: dpdq}\n", "sluice.io.backend: unknown IO backend \"dpdq\" (expected kernel, tap or dpdk)"),
        ("admin: [\n".to_string(), "invalid YAML"),
    ];
    for (yaml, want) in cases {
        Sluice::run_to_exit(yaml, &[]).assert_fails_with(want);
    }
    let r = run_to_exit(Command::new(sluice_bin()).args(["-c", "/nonexistent/sluice.yaml"]));
    r.assert_fails_with("cannot read config file /nonexistent/sluice.yaml");
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yaml = bootstrap(
        &[("front", port, "up")],
        &[("up", "ROUND_ROBIN", &[(1, 1)])],
        "",
        "",
    );
    let r = Sluice::run_to_exit(&yaml, &[]);
    r.assert_fails_with(&format!("static_resources.listeners[0] (front): cannot listen on 127.0.0.1:{port}: the address is already in use"));
    // The admin port too.
    let yaml = front_to(1).replacen("port_value: 0}", &format!("port_value: {port}}}"), 1);
    let r = Sluice::run_to_exit(&yaml, &[]);
    r.assert_fails_with(&format!("admin.address: cannot listen on 127.0.0.1:{port}"));
}

#[test]
fn bad_worker_cpu_and_io_flag_are_clear_errors() {
    let yaml = bootstrap(
        &[("front", 0, "up")],
        &[("up", "ROUND_ROBIN", &[(1, 1)])],
        "",
        "sluice:\n  workers: {cpus: [4000]}\n",
    );
    let r = Sluice::run_to_exit(&yaml, &[]);
    r.assert_fails_with("sluice.workers.cpus: CPU 4000 is not available");
    let yaml = front_to(1);
    let r = Sluice::run_to_exit(&yaml, &["--io", "dpdk"]);
    r.assert_fails_with(NO_DPDK_LAYOUT);
    let r = Sluice::run_to_exit(&yaml, &["--io", "dpdq"]);
    r.assert_fails_with("--io: unknown IO backend \"dpdq\"");
    let r = Sluice::run_to_exit(&yaml, &["--io", "tap"]);
    r.assert_fails_with("with --io: sluice.io.backend tap needs a sluice.io.tap section");
}

/// The same file, without sluice's extension section, runs under Envoy 1.40 and under sluice,
/// and both proxy the same bytes.
#[test]
fn envoy_runs_the_same_file() {
    let envoy = envoy_bin();
    let (_echo, echo) = echo_server();
    let front = free_port();
    let admin = free_port();
    let yaml = bootstrap(
        &[("front", front, "up")],
        &[("up", "ROUND_ROBIN", &[(echo, 1)])],
        "          idle_timeout: 30s\n",
        "",
    )
    .replacen("port_value: 0}", &format!("port_value: {admin}}}"), 1);
    let dir = TempDir::new("envoy");
    let file = dir.join("bootstrap.yaml");
    std::fs::write(&file, &yaml).unwrap();

    let v = run_to_exit(
        Command::new(&envoy)
            .arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(&file),
    );
    assert!(
        v.status.success(),
        "envoy rejected the file: {}{}",
        v.stdout,
        v.stderr
    );
    let v = run_to_exit(
        Command::new(sluice_bin())
            .arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(&file),
    );
    assert!(v.status.success(), "sluice rejected the file: {}", v.stderr);

    let addr_file = dir.join("envoy.admin");
    let mut cmd = Command::new(&envoy);
    cmd.arg("-c")
        .arg(&file)
        .arg("--concurrency")
        .arg("1")
        .arg("-l")
        .arg("error")
        .arg("--admin-address-path")
        .arg(&addr_file)
        .arg("--base-id")
        .arg((std::process::id() % 60000).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut envoy_proc = Proc::spawn(cmd, "envoy");
    assert!(wait_until(Duration::from_secs(60), || is_listening(front)
        || envoy_proc.child.try_wait().unwrap().is_some()));
    assert!(is_listening(front), "envoy did not start");
    let msg: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    assert_eq!(
        roundtrip(([127, 0, 0, 1], front).into(), &msg).unwrap(),
        msg,
        "through envoy"
    );
    drop(envoy_proc);
    assert!(wait_until(Duration::from_secs(20), || !is_listening(front)));

    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    assert_eq!(sluice.listener("front").port(), front);
    assert_eq!(
        roundtrip(([127, 0, 0, 1], front).into(), &msg).unwrap(),
        msg,
        "through sluice"
    );
}

/// A long transfer and a stream of short connections run while the config is reloaded three
/// times (listener added, route changed, listener removed): no byte and no connection is lost,
/// and new connections follow the new config.
#[test]
fn reload_under_traffic_loses_no_byte_and_no_connection() {
    let (_one, p_one) = reply_server("one");
    let (_two, p_two) = reply_server("two");
    let dir = TempDir::new("reload");
    let sink = dir.join("sink");
    let p_sink = free_port();
    let mut sink_server = socat_server(
        p_sink,
        &[
            "-u",
            &format!("TCP-LISTEN:{p_sink},reuseaddr,bind=127.0.0.1"),
            &format!("CREATE:{}", sink.display()),
        ],
    );
    let cfg = |front_cluster: &str, with_extra: bool| {
        let mut listeners = vec![("front", 0, front_cluster), ("bulk", 0, "sink")];
        if with_extra {
            listeners.push(("extra", 0, "one"));
        }
        bootstrap(
            &listeners,
            &[
                ("one", "ROUND_ROBIN", &[(p_one, 1)]),
                ("two", "ROUND_ROBIN", &[(p_two, 1)]),
                ("sink", "ROUND_ROBIN", &[(p_sink, 1)]),
            ],
            "",
            "",
        )
    };
    let sluice = Sluice::start(&cfg("one", false), &["--concurrency", "2"]);
    let front = sluice.listener("front");
    let bulk = sluice.listener("bulk");

    // The long transfer: 48 MiB paced over ~3 s.
    let payload = dir.join("payload");
    random_file(&payload, 48 << 20, 5);
    let data = std::fs::read(&payload).unwrap();
    let writer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(bulk).unwrap();
        for chunk in data.chunks(512 * 1024) {
            s.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
    });

    // Short connections, non-stop; each must get a full answer from one of the upstreams.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let prober = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match roundtrip(front, b"") {
                    Ok(r) if r == b"one\n" || r == b"two\n" => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    sluice.reload(&cfg("one", true), true);
    let extra = sluice.listener("extra");
    assert_eq!(roundtrip(extra, b"").unwrap(), b"one\n");
    assert_eq!(
        sluice.listener("front"),
        front,
        "an unchanged listener keeps its socket"
    );
    sluice.reload(&cfg("two", true), true);
    assert_eq!(
        roundtrip(front, b"").unwrap(),
        b"two\n",
        "new connections use the new route"
    );
    sluice.reload(&cfg("two", false), true);
    assert!(
        TcpStream::connect(extra).is_err(),
        "a removed listener stops accepting"
    );
    assert!(
        !writer.is_finished(),
        "the transfer ended before the reloads; the test proves nothing"
    );

    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    assert!(sink_server.wait_timeout(Duration::from_secs(30)).is_some());
    assert_eq!(
        sha256(&sink),
        sha256(&payload),
        "the long transfer lost or changed bytes"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "short connections failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 10);
    assert_eq!(sluice.stat("sluice_server_config_version"), 4);
}

#[test]
fn bad_reload_is_rejected_and_the_old_config_keeps_serving() {
    let (_one, p_one) = reply_server("one");
    let yaml = bootstrap(
        &[("front", 0, "one")],
        &[("one", "ROUND_ROBIN", &[(p_one, 1)])],
        "",
        "",
    );
    let sluice = Sluice::start(&yaml, &["--concurrency", "2"]);
    let front = sluice.listener("front");
    let mut open = TcpStream::connect(front).unwrap();
    sluice.reload(
        &yaml.replace("lb_policy: ROUND_ROBIN", "lb_policy: SOMETIMES"),
        false,
    );
    assert!(sluice.log().contains("config reload rejected, the previous config keeps serving: static_resources.clusters[0].lb_policy: unknown lb_policy \"SOMETIMES\""), "{}", sluice.log());
    // A new listener on a port in use fails the whole reload, also after parsing succeeded.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let with_busy = bootstrap(
        &[("front", 0, "one"), ("busy", port, "one")],
        &[("one", "ROUND_ROBIN", &[(p_one, 1)])],
        "",
        "",
    );
    sluice.reload(&with_busy, false);
    assert!(sluice.log().contains("already in use"), "{}", sluice.log());
    assert_eq!(sluice.stat("sluice_server_config_version"), 1);
    assert_eq!(sluice.stat("sluice_server_config_reload_failures_total"), 2);
    assert_eq!(roundtrip(front, b"").unwrap(), b"one\n");
    let mut got = String::new();
    open.read_to_string(&mut got).unwrap();
    assert_eq!(
        got, "one\n",
        "a connection open during the failed reloads still works"
    );
}

#[test]
fn admin_endpoints() {
    let (_one, p_one) = reply_server("one");
    let yaml = bootstrap(
        &[("front", 0, "one")],
        &[("one", "ROUND_ROBIN", &[(p_one, 4)])],
        "",
        "",
    );
    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    assert_eq!(sluice.get("/ready"), (200, "LIVE\n".to_string()));
    roundtrip(sluice.listener("front"), b"").unwrap();

    let (status, dump) = sluice.get("/config_dump");
    assert_eq!(status, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["configs"][0]["version_info"], "1");
    assert_eq!(
        dump["configs"][0]["bootstrap"]["static_resources"]["clusters"][0]["name"],
        "one"
    );

    // The client sees the close before sluice's worker lowers its gauges: wait for them.
    let settled = format!("one::127.0.0.1:{p_one}::cx_active::0");
    assert!(wait_until(Duration::from_secs(5), || sluice
        .get("/clusters")
        .1
        .contains(&settled)));
    let (_, clusters) = sluice.get("/clusters");
    for line in [
        "cx_total::1",
        "cx_active::0",
        "cx_connect_fail::0",
        "weight::4",
        "health_flags::healthy",
    ] {
        assert!(
            clusters.contains(&format!("one::127.0.0.1:{p_one}::{line}")),
            "{line} missing:\n{clusters}"
        );
    }
    let (_, json) = sluice.get("/clusters?format=json");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["cluster_statuses"][0]["host_statuses"][0]["stats"]["cx_total"],
        1
    );

    let (_, stats) = sluice.get("/stats/prometheus");
    for series in [
        "# TYPE sluice_listener_downstream_cx_total counter",
        "sluice_listener_downstream_cx_total{listener=\"front\"} 1",
        "sluice_cluster_upstream_cx_total{cluster=\"one\"} 1",
        "sluice_cluster_upstream_cx_rx_bytes_total{cluster=\"one\"} 4",
        "sluice_tcp_downstream_cx_total{stat_prefix=\"front\"} 1",
    ] {
        assert!(stats.contains(series), "{series} missing:\n{stats}");
    }
    assert_eq!(sluice.get("/nope").0, 404);
    let mut s = TcpStream::connect(sluice.admin).unwrap();
    s.write_all(b"POST /stats HTTP/1.1\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    let mut s = TcpStream::connect(sluice.admin).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Admin reads requests with the data path's HTTP/1 codec: its framing rules and limits.
    for (raw, want) in [
        (
            &b"GET /ready HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            "HTTP/1.1 400",
        ),
        (b"GET /ready HTTP/2.0\r\n\r\n", "HTTP/1.1 426"),
        (
            &[
                b"GET /ready HTTP/1.1\r\n".as_slice(),
                &b"X: y\r\n".repeat(101),
                b"\r\n",
            ]
            .concat(),
            "HTTP/1.1 431",
        ),
    ] {
        let mut s = TcpStream::connect(sluice.admin).unwrap();
        s.write_all(raw).unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        assert!(r.starts_with(want), "{want}: {r}");
    }
    // Envoy's forms of /stats beside the Prometheus one.
    let (_, envoy_text) = sluice.get("/stats?filter=%5Ecluster%5C.one%5C.upstream_cx_total$");
    assert_eq!(envoy_text, "cluster.one.upstream_cx_total: 1\n");
    let (_, used) = sluice.get("/stats?usedonly");
    assert!(
        used.contains("tcp.front.downstream_cx_total: 1\n"),
        "{used}"
    );
    assert!(used.lines().all(|l| !l.ends_with(": 0")), "{used}");
    let (_, j) = sluice.get("/stats?format=json&filter=tcp%5C.front");
    let j: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert!(j["stats"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "tcp.front.downstream_cx_total" && s["value"] == 1));
    assert_eq!(sluice.get("/stats?filter=(").0, 400);
    let (code, info) = sluice.get("/server_info");
    assert_eq!(code, 200);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["command_line_options"]["concurrency"], 1);
    let (_, mem) = sluice.get("/memory");
    let mem: serde_json::Value = serde_json::from_str(&mem).unwrap();
    assert!(
        mem["total_physical_bytes"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(sluice.get("/help").1.contains("/healthcheck/fail"));
    // The state-changing endpoints take POST only, as Envoy's do.
    assert_eq!(sluice.get("/healthcheck/fail").0, 405);
    let post = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .arg(format!("http://{}{path}", sluice.admin))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(post("/healthcheck/fail"), "200");
    assert_eq!(sluice.get("/ready"), (503, "DRAINING\n".to_string()));
    assert_eq!(post("/healthcheck/ok"), "200");
    assert_eq!(sluice.get("/ready"), (200, "LIVE\n".to_string()));
    // POST /logging?level= changes the running level: at error, admin's info lines stop.
    let said = |what: &str| sluice.log().matches(what).count();
    let before = said("health check state set");
    assert_eq!(post("/logging?level=error"), "200");
    assert_eq!(post("/healthcheck/ok"), "200");
    assert_eq!(
        said("health check state set"),
        before,
        "logged at level error"
    );
    assert_eq!(post("/logging?level=info"), "200");
    assert_eq!(post("/healthcheck/ok"), "200");
    assert_eq!(said("health check state set"), before + 1);
    assert_eq!(post("/logging?level=loud"), "400");
    assert_eq!(post("/logging"), "400");
    // curl, a HEAD request: the head only, with the length the body would have.
    let out = Command::new("curl")
        .args(["-sS", "-I", &format!("http://{}/ready", sluice.admin)])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 5"), "{head}");
}

/// An empty file (or comments only, or a list) is refused at start and by `--mode validate`, as
/// Envoy 1.40 refuses it; on reload it is rejected and the running config keeps serving (taken
/// as "no listeners", a file truncated mid-deploy would have stopped all traffic).
#[test]
fn empty_and_non_mapping_files_are_refused_everywhere() {
    let dir = TempDir::new("empty");
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let envoy = run_to_exit(
        Command::new(envoy_bin())
            .args(["--mode", "validate", "-c"])
            .arg(&empty),
    );
    assert!(!envoy.status.success(), "Envoy accepted an empty file");
    for (text, want) in [
        ("", "the file is empty"),
        ("# just a comment\n", "holds no document"),
        ("- a\n- b\n", "is a list"),
    ] {
        for mode in [&["--mode", "validate"][..], &[]] {
            Sluice::run_to_exit(text, mode).assert_fails_with(want);
        }
    }
    let (_one, p_one) = reply_server("one");
    let yaml = front_to(p_one);
    let sluice = Sluice::start(&yaml, &["--concurrency", "1"]);
    let front = sluice.listener("front");
    sluice.reload("", false);
    assert!(
        sluice.log().contains("the file is empty"),
        "{}",
        sluice.log()
    );
    sluice.reload("\n# nothing\n", false);
    assert_eq!(roundtrip(front, b"").unwrap(), b"one\n");
    assert_eq!(sluice.stat("sluice_server_config_version"), 1);
}

/// `POST /quitquitquit` stops sluice the way SIGTERM does: exit code 0, listeners closed.
#[test]
fn quitquitquit_stops_sluice_cleanly() {
    let (_one, p_one) = reply_server("one");
    let mut sluice = Sluice::start(&front_to(p_one), &["--concurrency", "1"]);
    let front = sluice.listener("front");
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST"])
        .arg(format!("http://{}/quitquitquit", sluice.admin))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    let status = sluice
        .proc
        .wait_timeout(Duration::from_secs(10))
        .expect("sluice did not stop after /quitquitquit");
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(front).is_err(),
        "the listener is still open"
    );
}
