//! Kernel fallback topologies: the stack owns 10.97.0.2 on its wire (a TAP, or DPDK's net_tap
//! port, moved into a namespace that stands for the network), and the test machine's own
//! kernel carries the same address on the fallback TAP that `sluice-control fallback up`
//! makes. A subnet of its own, so the kernel's address clashes with no other test's.

use crate::netns::{echo_in, proxy_config_on, socat_roundtrip, unique, Netns};
use crate::{
    bin_dir, free_port, require_program, run_to_exit, wait_until, Exit, Proc, Sluice, TempDir,
};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The stack's (and the host kernel's) address, and the network side's.
pub const STACK: &str = "10.97.0.2";
pub const NET: &str = "10.97.0.1";

/// Runs `sluice-control ARGS` to completion.
fn control(args: &[&str]) -> Exit {
    run_to_exit(Command::new(bin_dir().join("sluice-control")).args(args))
}

/// The fallback TAP, removed with `sluice-control fallback down` on drop.
struct FallbackTap {
    config: std::path::PathBuf,
}

impl FallbackTap {
    fn up(config: &std::path::Path) -> FallbackTap {
        let out = control(&["fallback", "up", "-c", config.to_str().unwrap()]);
        assert!(out.status.success(), "fallback up: {}", out.stderr);
        FallbackTap {
            config: config.to_path_buf(),
        }
    }
}

impl Drop for FallbackTap {
    fn drop(&mut self) {
        let out = control(&["fallback", "down", "-c", self.config.to_str().unwrap()]);
        if !std::thread::panicking() {
            assert!(out.status.success(), "fallback down: {}", out.stderr);
            assert!(out.stdout.contains("removed"), "{}", out.stdout);
        }
    }
}

/// This (root) namespace's count of ICMP echo replies its kernel sent.
fn kernel_echo_replies() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (icmp.next().unwrap(), icmp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "OutEchoReps")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// With `section(wire, fallback)` — the `sluice:` section for a stack on the wire device
/// `wire` that owns `STACK`, with the given `fallback:` map lines (indented for `io:`) — and a
/// listener on port 8080 proxying to an echo in the network:
///
/// - without the fallback TAP, the dataplane refuses to start and says what to run;
/// - ping from the network is answered by the host kernel (its own counter moves);
/// - a TCP session to the kernel's port (socat, as ssh would be) goes through the stack's wire;
/// - the listener on the same address is sluice's;
/// - a kernel port the rules do not give the kernel is reset by the stack;
/// - with the fallback TAP deleted under it, sluice says so once and serves on.
///
/// `workers`: how many stacks the section runs. With several on net_tap the proxied checks are
/// left out: net_tap spreads frames over its queues by the kernel's own hash, not by the RSS
/// that sluice picks upstream source ports for, so a listener's upstream replies can reach the
/// wrong worker (the net_memif test covers several workers proxying).
pub fn ping_and_a_session_reach_the_kernel(section: impl Fn(&str, &str) -> String, workers: usize) {
    let proxied = workers == 1;
    // The host kernel's address lives in this (root) namespace, shared by every test of the
    // process: two fallback TAPs with it at once would steal each other's replies.
    static ROOT_NAMESPACE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _only_one = ROOT_NAMESPACE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    require_program("socat");
    let (kernel_port, other_port) = (free_port(), free_port());
    let dir = TempDir::new("fallback");
    let (wire, ktap) = (unique("slt"), unique("slk"));
    let fallback = format!(
        "    fallback:\n      tap: {ktap}\n      rules:\n      - {{protocol: tcp, ports: [{kernel_port}]}}\n      - {{protocol: icmp}}\n"
    );
    let yaml = proxy_config_on(
        section(&wire, &fallback),
        &[("echo", 8080, "echo")],
        &[("echo", &[9081])],
        NET,
    );
    let config = dir.join("sluice.yaml");
    std::fs::write(&config, &yaml).unwrap();

    let exit = Sluice::run_to_exit(&yaml, &[]);
    assert!(!exit.status.success());
    assert!(
        exit.stderr.contains(&format!(
            "sluice.io.fallback.tap: there is no interface {ktap}"
        )) && exit.stderr.contains("sluice-control fallback up"),
        "{}",
        exit.stderr
    );

    let fallback = FallbackTap::up(&config);
    let ns = Netns::create();
    let sluice = Sluice::start(&yaml, &[]);
    ns.adopt_tap_as(&wire, &[&format!("{NET}/24")]);
    // Until the wire is up in its namespace, the kernel's first frames (IPv6 router
    // solicitations) cannot be sent: counted as errors, and none may be from here on.
    let errors = sluice.stat("sluice_stack_fallback_errors");

    // The host's own services, on the address it shares with the stack.
    let _ssh = host_server(kernel_port);
    let _other = host_server(other_port);
    let _echo = echo_in(&ns, 9081);

    let replies = kernel_echo_replies();
    ns.run("ping", &["-c", "3", "-W", "2", STACK]);
    assert!(
        kernel_echo_replies() >= replies + 3,
        "the host kernel did not answer the pings"
    );
    assert_eq!(
        socat_roundtrip(&ns, &format!("{STACK}:{kernel_port}"), "to it\n"),
        "host-to it\n"
    );
    if proxied {
        assert_eq!(
            socat_roundtrip(&ns, &format!("{STACK}:8080"), "to sluice\n"),
            "to sluice\n"
        );
        assert_eq!(
            sluice.stat("sluice_tcp_downstream_cx_total{stat_prefix=\"echo\"}"),
            1
        );
    }
    let unknown = sluice.stat("sluice_stack_rx_unknown_flow");
    let refused = ns
        .cmd("socat")
        .args(["-T", "5", "-", &format!("TCP:{STACK}:{other_port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Connection refused"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(sluice.stat("sluice_stack_rx_unknown_flow") > unknown);

    let to_kernel = sluice.stat("sluice_stack_fallback_to_kernel");
    let from_kernel = sluice.stat("sluice_stack_fallback_from_kernel");
    // 3 echo requests, the session's segments (at least SYN, data, FIN, ACKs) and ARP copies.
    assert!(to_kernel >= 8, "to kernel: {to_kernel}");
    assert!(from_kernel >= 6, "from kernel: {from_kernel}");
    assert_eq!(sluice.stat("sluice_stack_fallback_errors"), errors);

    // The fallback TAP removed under the running dataplane: said once, and sluice serves on.
    drop(fallback);
    if proxied {
        assert_eq!(
            socat_roundtrip(&ns, &format!("{STACK}:8080"), "still sluice\n"),
            "still sluice\n"
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || sluice
            .log()
            .contains("the kernel fallback TAP failed")),
        "{}",
        sluice.log()
    );
    if proxied {
        assert_eq!(
            socat_roundtrip(&ns, &format!("{STACK}:8080"), "and still\n"),
            "and still\n"
        );
    }
    // Said once by each stack.
    let said = || {
        sluice
            .log()
            .matches("the kernel fallback TAP failed")
            .count()
    };
    assert!(wait_until(Duration::from_secs(10), || said() >= workers));
    assert_eq!(said(), workers);
}

/// A socat in this (root) namespace on `STACK:port` that answers each line with "host-" and
/// the line.
fn host_server(port: u16) -> Proc {
    let mut cmd = Command::new("socat");
    cmd.args([
        &format!("TCP-LISTEN:{port},bind={STACK},reuseaddr,fork"),
        "SYSTEM:sed -u s/^/host-/",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let p = Proc::spawn(cmd, "socat");
    let listening = || {
        Command::new("ss")
            .args(["-Htln", &format!("src {STACK}:{port}")])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty())
    };
    assert!(
        wait_until(Duration::from_secs(10), listening),
        "socat did not listen on {STACK}:{port}"
    );
    p
}
