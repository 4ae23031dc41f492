//! `stackbench`: the userspace stack on its own, two stacks joined by the in-memory wire, on one
//! thread (so one core does both ends' work).
//!
//!   stackbench throughput --mtu 1500 --seconds 5
//!       one connection, the sender writing from a 64 KiB buffer as fast as the window allows,
//!       the receiver reading into one; prints Gbit/s of payload.
//!   stackbench packets --connections 10000 [--active 100] --seconds 5
//!       opens that many connections, then runs 64-byte request/response exchanges on
//!       connections picked at random among the first `active` (default: all), the others
//!       staying open and idle; prints the CPU time per frame processed, and the memory each
//!       idle connection costs (resident set growth per flow).

use clap::{Parser, Subcommand};
use sluice_tcpstack::memory::{pair, MemoryDevice};
use sluice_tcpstack::stack::FlowRef;
use sluice_tcpstack::{Instant, Stack, StackConfig, TcpTuning};
use std::task::Waker;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "stackbench",
    about = "The userspace TCP stack, stack to stack in memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Throughput {
        #[arg(long, default_value_t = 1500)]
        mtu: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    Packets {
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Exchanges go to this many of the connections (picked at random among them); the
        /// rest stay open and idle. Default: all of them.
        #[arg(long)]
        active: Option<usize>,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

type S = Stack<MemoryDevice>;

fn config(last: u8) -> StackConfig {
    StackConfig {
        mac: [2, 0, 0, 0, 0, last],
        addresses: vec![(format!("10.0.0.{last}").parse().unwrap(), 24)],
        gateways: vec![],
        seed: last as u64,
        tcp: TcpTuning::default(),
        max_flows: 1_000_000,
    }
}

fn stacks(mtu: usize) -> (S, S, std::time::Instant) {
    let (da, db) = pair(mtu);
    let t0 = std::time::Instant::now();
    let a = Stack::new(&config(1), da, Instant::from_millis(0)).unwrap();
    let b = Stack::new(&config(2), db, Instant::from_millis(0)).unwrap();
    (a, b, t0)
}

fn now(t0: std::time::Instant) -> Instant {
    Instant::from_micros(t0.elapsed().as_micros() as i64)
}

/// CPU time this process has used (user + system).
fn cpu() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn throughput(mtu: usize, seconds: f64) {
    let (mut a, mut b, t0) = stacks(mtu);
    let l = b.listen("10.0.0.2:9".parse().unwrap()).unwrap();
    let c = a.connect("10.0.0.2:9".parse().unwrap()).unwrap();
    let out = vec![0x5au8; 64 * 1024];
    let mut inbuf = vec![0u8; 64 * 1024];
    let mut server = None;
    let mut received = 0u64;
    let mut started: Option<(std::time::Instant, Duration, u64)> = None;
    let run = Duration::from_secs_f64(seconds);
    loop {
        let t = now(t0);
        a.poll(t);
        b.poll(t);
        if server.is_none() {
            server = b.accept(l, Waker::noop()).map(|x| x.0);
        }
        a.with_socket(c, |s| {
            while s.can_send() {
                match s.send_slice(&out) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        if let Some(f) = server {
            b.with_socket(f, |s| {
                while let Ok(n) = s.recv_slice(&mut inbuf) {
                    if n == 0 {
                        break;
                    }
                    received += n as u64;
                }
            });
        }
        // Measure after a warm-up second (window and congestion control open up).
        match started {
            None if t0.elapsed() >= Duration::from_secs(1) => {
                started = Some((std::time::Instant::now(), cpu(), received))
            }
            Some((at, _, _)) if at.elapsed() >= run => break,
            _ => {}
        }
    }
    let (at, cpu0, bytes0) = started.unwrap();
    let wall = at.elapsed().as_secs_f64();
    let used = (cpu() - cpu0).as_secs_f64();
    let bytes = received - bytes0;
    println!(
        "{}",
        serde_json::json!({
            "mtu": mtu,
            "seconds": wall,
            "bytes": bytes,
            "gbit_per_s": bytes as f64 * 8.0 / wall / 1e9,
            "cpu_seconds": used,
            "gbit_per_cpu_second": bytes as f64 * 8.0 / used / 1e9,
        })
    );
}

fn packets(connections: usize, active: usize, seconds: f64) {
    let (mut a, mut b, t0) = stacks(1500);
    let l = b.listen("10.0.0.2:9".parse().unwrap()).unwrap();
    let rss0 = rss_kib();
    let mut clients: Vec<FlowRef> = Vec::with_capacity(connections);
    let mut servers: Vec<FlowRef> = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(a.connect("10.0.0.2:9".parse().unwrap()).unwrap());
    }
    while servers.len() < connections {
        let t = now(t0);
        a.poll(t);
        b.poll(t);
        while let Some((f, _)) = b.accept(l, Waker::noop()) {
            servers.push(f);
        }
    }
    // Settle: every handshake's last ACK processed.
    for _ in 0..10 {
        let t = now(t0);
        a.poll(t);
        b.poll(t);
    }
    let per_flow_kib = (rss_kib() - rss0) as f64 / (2 * connections) as f64;
    // Server flow ids by client port: accept order need not match connect order.
    let mut by_port = std::collections::HashMap::new();
    for f in &servers {
        by_port.insert(b.endpoints(*f).unwrap().1.port(), *f);
    }
    let pairs: Vec<(FlowRef, FlowRef)> = clients[..active.clamp(1, connections)]
        .iter()
        .map(|c| (*c, by_port[&a.endpoints(*c).unwrap().0.port()]))
        .collect();
    let (sa, sb) = (a.stats(), b.stats());
    let frames0 = sa.rx_frames.get() + sb.rx_frames.get();
    let (wall0, cpu0) = (std::time::Instant::now(), cpu());
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let msg = [7u8; 64];
    let mut buf = [0u8; 256];
    let mut exchanges = 0u64;
    let run = Duration::from_secs_f64(seconds);
    while wall0.elapsed() < run {
        for _ in 0..256 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let (c, s) = pairs[(rng % pairs.len() as u64) as usize];
            a.with_socket(c, |k| k.send_slice(&msg).unwrap());
            let t = now(t0);
            a.poll(t);
            b.poll(t);
            b.with_socket(s, |k| {
                let n = k.recv_slice(&mut buf).unwrap();
                k.send_slice(&buf[..n]).unwrap();
            });
            b.poll(t);
            a.poll(t);
            a.with_socket(c, |k| k.recv_slice(&mut buf).unwrap());
            exchanges += 1;
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let used = (cpu() - cpu0).as_secs_f64();
    let frames = sa.rx_frames.get() + sb.rx_frames.get() - frames0;
    // After the exchanges: connections that carried data hold the pages their rings touched.
    let per_flow_after_kib = (rss_kib() - rss0) as f64 / (2 * connections) as f64;
    // Then a quiet spell (the clock jumped forward): empty rings hand their pages back.
    let later = now(t0) + sluice_tcpstack::stack::Duration::from_secs(12);
    a.advance(later);
    b.advance(later);
    let per_flow_quiet_kib = (rss_kib() - rss0) as f64 / (2 * connections) as f64;
    println!(
        "{}",
        serde_json::json!({
            "connections": connections,
            "active": pairs.len(),
            "flows": a.flow_count() + b.flow_count(),
            "seconds": wall,
            "exchanges": exchanges,
            "frames": frames,
            "ns_per_frame": used * 1e9 / frames as f64,
            "kib_per_idle_flow": per_flow_kib,
            "kib_per_flow_after_exchanges": per_flow_after_kib,
            "kib_per_flow_after_quiet": per_flow_quiet_kib,
        })
    );
}

fn main() {
    match Cli::parse().command {
        Command::Throughput { mtu, seconds } => throughput(mtu, seconds),
        Command::Packets {
            connections,
            active,
            seconds,
        } => packets(connections, active.unwrap_or(connections), seconds),
    }
}
