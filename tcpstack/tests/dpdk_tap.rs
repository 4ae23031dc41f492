//! The stack on a DPDK port (feature `dpdk`): DPDK's net_tap virtual device, moved into a
//! network namespace where Linux's own TCP (socat) talks to an echo service on the stack.
//! Needs root; skips with a reason otherwise, unless SLUICE_REQUIRE_PRIVILEGED=1.
#![cfg(feature = "dpdk")]

mod common;

use sluice_hwconfig::dpdk::{Eal, Mempool, Port, PortSetup};
use sluice_tcpstack::dpdk_port::DpdkQueue;
use sluice_tcpstack::driver::Clock;
use sluice_tcpstack::{Stack, StackConfig};
use smoltcp::socket::tcp::State;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant as StdInstant};

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn linux_tcp_talks_to_the_stack_through_a_dpdk_port() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("SLUICE_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "needs root"
        );
        eprintln!("skipping: needs root (DPDK's net_tap creates a TAP device)");
        return;
    }
    let iface = format!("sldp{}", std::process::id() % 100_000);
    let ns = format!("sldpns{}", std::process::id() % 100_000);
    let args: Vec<String> = format!(
        "sluice -l 0 --no-huge -m 256 --no-shconf --no-pci --vdev net_tap0,iface={iface} --log-level=error"
    )
    .split(' ')
    .map(str::to_string)
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    let pool = Arc::new(Mempool::create(&eal, "tap", 2047, 32, 2176).unwrap());
    let setup = PortSetup {
        device: "net_tap0",
        rx_queues: 1,
        tx_queues: 1,
        rx_descriptors: 512,
        tx_descriptors: 512,
        mtu: 1500,
        rss_key: &sluice_hwconfig::model::symmetric_key(),
        rx_pools: &[&pool],
    };
    let port = Arc::new(Port::start(&eal, &setup).unwrap());
    sh(&["ip", "netns", "add", &ns]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sh(&["ip", "link", "set", &iface, "netns", &ns]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            &iface,
        ]);
        sh(&["ip", "-n", &ns, "link", "set", &iface, "up"]);
        let mut config: StackConfig = common::config(2);
        config.addresses = vec![("10.77.0.2".parse().unwrap(), 24)];
        let clock = Clock::start();
        let device = DpdkQueue::new(port.clone(), 0, pool.clone(), 1500);
        let mut stack = Stack::new(&config, device, clock.now()).unwrap();
        let listener = stack.listen("10.77.0.2:7".parse().unwrap()).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut client = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "socat",
                "-t",
                "5",
                "-T",
                "10",
                "-",
                "TCP:10.77.0.2:7,shut-down",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = client.stdin.take().unwrap();
        // Drained as it comes, so socat never blocks on a full pipe.
        let mut stdout = client.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut got).unwrap();
            got
        });
        let feeder = {
            let data = data.clone();
            std::thread::spawn(move || {
                stdin.write_all(&data).unwrap();
            })
        };
        let mut conns = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let deadline = StdInstant::now() + Duration::from_secs(30);
        while client.try_wait().unwrap().is_none() {
            assert!(
                StdInstant::now() < deadline,
                "the echo over DPDK did not finish"
            );
            stack.poll(clock.now());
            while let Some((f, _)) = stack.accept(listener, Waker::noop()) {
                conns.push(f);
            }
            for f in &conns {
                stack.with_socket(*f, |s| {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = s.recv_slice(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        pending.extend_from_slice(&buf[..n]);
                    }
                    if let Ok(n) = s.send_slice(&pending) {
                        pending.drain(..n);
                    }
                    if pending.is_empty() && !s.may_recv() && s.state() == State::CloseWait {
                        s.close();
                    }
                });
            }
        }
        feeder.join().unwrap();
        let echoed = reader.join().unwrap();
        assert!(
            echoed == data,
            "echo through DPDK differs: {} of {} bytes",
            echoed.len(),
            data.len()
        );
        assert!(stack.stats().rx_tcp_segments.get() > 10);
    }));
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
