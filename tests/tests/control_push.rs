//! Config pushed into a running dataplane over its control socket (`sluice --control-socket`),
//! with the real `sluice-control push` as the sender: applied like a reload (new listeners serve,
//! established connections survive), a broken push rejected with its reason while the previous
//! config serves on, and the version the dataplane reports back when the control process
//! reconnects.

use sluice_integration::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `sluice-control push`: (applied?, the answer printed, the hello printed).
fn push(socket: &Path, resources: &str, version: &str) -> (bool, String, String) {
    let dir = TempDir::new("push");
    let file = dir.join("resources.yaml");
    std::fs::write(&file, resources).unwrap();
    let r = run_to_exit(
        Command::new(bin_dir().join("sluice-control"))
            .args(["push", "--socket"])
            .arg(socket)
            .arg("-f")
            .arg(&file)
            .args(["--version", version]),
    );
    (r.status.success(), r.stdout, r.stderr)
}

fn roundtrip_on(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    stream.read_exact(&mut got).unwrap();
    got
}

#[test]
fn pushes_apply_like_a_reload_and_a_broken_one_is_rejected_with_its_reason() {
    let (_echo, echo_port) = echo_server();
    let (_reply, reply_port) = reply_server("pushed");
    let dir = TempDir::new("control");
    let socket = dir.join("control.sock");
    // `front` on a fixed port: a listener is the same one across configs when its name and
    // address are, and the pushed resources name the port.
    let port = free_port();
    let file_config = bootstrap(
        &[("front", port, "up")],
        &[("up", "ROUND_ROBIN", &[(echo_port, 1)])],
        "",
        "",
    );
    let sluice = Sluice::start(
        &file_config,
        &["--control-socket", socket.to_str().unwrap()],
    );
    let front = sluice.listener("front");
    let mut held = TcpStream::connect(front).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(roundtrip_on(&mut held, b"before\n"), b"before\n");

    // Resources: `front` kept as it is, a new listener `second` to another upstream.
    let both = bootstrap(
        &[("front", front.port(), "up"), ("second", 0, "other")],
        &[
            ("up", "ROUND_ROBIN", &[(echo_port, 1)]),
            ("other", "ROUND_ROBIN", &[(reply_port, 1)]),
        ],
        "",
        "",
    );
    let (ok, answer, hello) = push(&socket, &both, "v1");
    assert!(ok, "{answer}\n{hello}");
    assert!(hello.contains(r#""version":null"#), "{hello}");
    assert!(
        answer.contains(r#""applied""#) && answer.contains(r#""version":"v1""#),
        "{answer}"
    );
    assert_eq!(sluice.stat("sluice_server_config_version"), 2);
    let (_, dump) = sluice.get("/config_dump");
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["resources_version"], "v1");
    assert_eq!(
        dump["configs"][0]["bootstrap"]["static_resources"]["listeners"][1]["name"],
        "second"
    );
    let (_, body) = http_get_raw(sluice.listener("second"));
    assert_eq!(body.trim(), "pushed");
    // The connection made before the push carries on.
    assert_eq!(roundtrip_on(&mut held, b"after\n"), b"after\n");

    // A broken push: an unknown cluster. Rejected with the path and reason; nothing changes.
    let broken = both.replace("cluster: other", "cluster: nowhere");
    let (ok, answer, _) = push(&socket, &broken, "v2");
    assert!(!ok);
    assert!(
        answer.contains(r#""rejected""#) && answer.contains(r#"unknown cluster \"nowhere\""#),
        "{answer}"
    );
    assert_eq!(sluice.stat("sluice_server_config_version"), 2);
    assert_eq!(sluice.stat("sluice_server_control_push_rejected_total"), 1);
    assert_eq!(sluice.stat("sluice_server_control_pushes_total"), 2);
    assert_eq!(roundtrip_on(&mut held, b"still\n"), b"still\n");

    // A control process that comes back learns what the dataplane serves.
    let (ok, _, hello) = push(&socket, &both, "v3");
    assert!(ok);
    assert!(hello.contains(r#""version":"v1""#), "{hello}");

    // SIGHUP re-reads the file and keeps the pushed resources over it.
    sluice.reload(&file_config, true);
    let (_, body) = http_get_raw(sluice.listener("second"));
    assert_eq!(body.trim(), "pushed");
}

/// A second dataplane on the same socket path is refused while the first one lives.
#[test]
fn a_control_socket_in_use_is_a_clear_error() {
    let (_echo, echo_port) = echo_server();
    let dir = TempDir::new("control-busy");
    let socket = dir.join("control.sock");
    let arg = socket.to_str().unwrap();
    let _first = Sluice::start(&front_to(echo_port), &["--control-socket", arg]);
    Sluice::run_to_exit(&front_to(echo_port), &["--control-socket", arg])
        .assert_fails_with("another process is listening on it");
}

/// Reads whatever a server sends on connect until it closes.
fn http_get_raw(addr: std::net::SocketAddr) -> ((), String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    ((), out)
}

/// `sluice-control -l` takes the levels `sluice -l` takes; another is refused with the flag named.
#[test]
fn control_log_level_flag_is_checked() {
    let run = |args: &[&str]| {
        Command::new(bin_dir().join("sluice-control"))
            .args(args)
            .output()
            .unwrap()
    };
    let bad = run(&[
        "-l",
        "loud",
        "push",
        "--socket",
        "/nonexistent.sock",
        "-f",
        "/nonexistent.json",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("-l/--log-level: unknown log level \"loud\""),
        "{err}"
    );
    // A known level (Envoy's name, after the subcommand too) gets as far as the file.
    let ok = run(&[
        "push",
        "--socket",
        "/nonexistent.sock",
        "-f",
        "/nonexistent.json",
        "--log-level",
        "warning",
    ]);
    assert_eq!(ok.status.code(), Some(1));
    let err = String::from_utf8_lossy(&ok.stderr);
    assert!(
        err.contains("cannot read config file /nonexistent.json"),
        "{err}"
    );
}
