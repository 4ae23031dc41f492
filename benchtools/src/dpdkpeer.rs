//! `dpdkpeer`: the far side of a DPDK link for tests and benchmarks (feature `dpdk`). It is a
//! DPDK process of its own with one userspace stack on a multi-queue port (net_memif to a
//! DPDK-mode sluice), and it puts each frame it sends on the queue a NIC's RSS would pick:
//! the Toeplitz hash of the TCP flow under the symmetric key, through a round-robin table. So
//! it stands in for both the NIC's hashing and the hosts beyond it.
//!
//!   dpdkpeer --vdev net_memif0,role=client,socket=/tmp/s.sock --queues 2 \
//!            --address 10.88.0.1/24 --target 10.88.0.2:8000 --echo-port 9000 \
//!            --connections 64 --bytes 100000
//!
//! It listens on `--echo-port` (the upstream a proxy in front forwards to), then opens
//! `--connections` connections to `--target`, each sending `--bytes` and reading them back,
//! and prints JSON: connections that echoed intact, bytes, seconds, frames per queue.

use clap::Parser;
use sluice_hwconfig::dpdk::{Eal, Mempool, Port, PortSetup, Queued, RxBurst, TxBurst};
use sluice_hwconfig::rss::RssSteering;
use sluice_tcpstack::classify::{classify, Class};
use sluice_tcpstack::device::{DeviceCaps, LentFrame, PacketDevice};
use sluice_tcpstack::driver::{drive_polling, Clock, IdlePolicy};
use sluice_tcpstack::socket::{SharedStack, TcpListener, TcpStream};
use sluice_tcpstack::{Instant, Stack, StackConfig, TcpTuning};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(
    name = "dpdkpeer",
    about = "A DPDK peer that steers frames like a NIC's RSS"
)]
struct Cli {
    /// The EAL --vdev string of the port (e.g. net_memif0,role=client,socket=PATH).
    #[arg(long)]
    vdev: String,
    #[arg(long, default_value_t = 2)]
    queues: u16,
    /// The CPU the peer runs on.
    #[arg(long, default_value_t = 0)]
    lcore: usize,
    /// The peer stack's address with prefix.
    #[arg(long)]
    address: String,
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value_t = 9000)]
    echo_port: u16,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 100_000)]
    bytes: usize,
    /// Give up after this long.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Poll without pause (for a peer with a core of its own); by default it naps when idle.
    #[arg(long)]
    poll: bool,
}

/// The peer's port: sends on the queue RSS picks, receives from every queue.
struct SteeringPort {
    port: Arc<Port>,
    pool: Arc<Mempool>,
    steering: RssSteering,
    rx: Vec<RxBurst>,
    tx: Vec<TxBurst>,
    next_rx: usize,
    rx_frames: Rc<Vec<Cell<u64>>>,
    tx_frames: Rc<Vec<Cell<u64>>>,
    /// Each frame is built here first: its queue depends on its contents.
    scratch: Vec<u8>,
}

/// The TCP flow of an Ethernet frame, as (source, destination), read by the stack's classifier.
fn tcp_flow(frame: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    match classify(frame, false) {
        Class::Tcp(head) => {
            let at = |(ip, port)| SocketAddr::new(IpAddr::from(ip), port);
            Some((at(head.key.remote), at(head.key.local)))
        }
        _ => None,
    }
}

impl PacketDevice for SteeringPort {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            ip_mtu: 1500,
            rx_checksum_verified: false,
            tx_checksum_offload: false,
        }
    }
    fn lends_rx(&self) -> bool {
        true
    }
    fn recv_lent(&mut self, _now: Instant) -> io::Result<Option<LentFrame>> {
        let n = self.rx.len();
        for _ in 0..=n {
            let q = self.next_rx;
            if let Some((ptr, len)) = self.rx[q].next_frame() {
                let c = &self.rx_frames[q];
                c.set(c.get() + 1);
                // SAFETY: held by the burst until its next refill.
                return Ok(Some(unsafe { LentFrame::new(ptr, len) }));
            }
            self.next_rx = (q + 1) % n;
            self.rx[self.next_rx].refill(&self.port, self.next_rx as u16);
        }
        Ok(None)
    }
    fn recv(&mut self, _: Instant, _: &mut [u8]) -> io::Result<Option<usize>> {
        Err(io::Error::other("this device lends its frames"))
    }
    fn send(&mut self, _: Instant, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let mut frame = std::mem::take(&mut self.scratch);
        frame.resize(len, 0);
        fill(&mut frame);
        // Frames other than TCP (ARP, ICMP) go to queue 0, as a NIC's RSS leaves them.
        let q = tcp_flow(&frame).map_or(0, |(s, d)| self.steering.queue_of(s, d)) as usize;
        let c = &self.tx_frames[q];
        c.set(c.get() + 1);
        let pushed = self.tx[q].push(&self.port, q as u16, &self.pool, len, &mut |b| {
            b.copy_from_slice(&frame)
        });
        self.scratch = frame;
        match pushed {
            Ok(Queued::Yes) => Ok(()),
            Ok(other) => Err(io::Error::other(format!("{other:?}"))),
            Err(e) => Err(io::Error::other(e)),
        }
    }
    fn flush_tx(&mut self) {
        for (q, tx) in self.tx.iter_mut().enumerate() {
            tx.flush(&self.port, q as u16);
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("dpdkpeer: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let args: Vec<String> = [
        "dpdkpeer".to_string(),
        "-l".into(),
        cli.lcore.to_string(),
        "--no-huge".into(),
        "-m".into(),
        "512".into(),
        "--no-shconf".into(),
        "--no-pci".into(),
        "--vdev".into(),
        cli.vdev.clone(),
        "--log-level=error".into(),
    ]
    .into();
    let eal = Eal::init(&args)?;
    let pool = Arc::new(Mempool::create(&eal, "peer", 16383, 256, 2176)?);
    let device = cli.vdev.split(',').next().unwrap_or_default().to_string();
    let key = sluice_hwconfig::model::symmetric_key();
    let port = Arc::new(Port::start(
        &eal,
        &PortSetup {
            device: &device,
            rx_queues: cli.queues,
            tx_queues: cli.queues,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mtu: 1500,
            rss_key: &key,
            rx_pools: &[&pool],
        },
    )?);
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(cli.timeout);
    while !port.link()?.0 {
        if std::time::Instant::now() > deadline {
            return Err("the link never came up".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (ip, prefix) = cli
        .address
        .split_once('/')
        .ok_or("--address needs a prefix length")?;
    let ip: IpAddr = ip.parse().map_err(|_| "--address: not an IP")?;
    let config = StackConfig {
        mac: port.mac,
        addresses: vec![(ip, prefix.parse().map_err(|_| "--address: bad prefix")?)],
        gateways: vec![],
        seed: std::process::id() as u64,
        tcp: TcpTuning::default(),
        max_flows: 100_000,
    };
    let queues = cli.queues as usize;
    let rx_frames: Rc<Vec<Cell<u64>>> = Rc::new((0..queues).map(|_| Cell::new(0)).collect());
    let tx_frames: Rc<Vec<Cell<u64>>> = Rc::new((0..queues).map(|_| Cell::new(0)).collect());
    let dev = SteeringPort {
        port: port.clone(),
        pool,
        steering: RssSteering::round_robin(key, 128, cli.queues),
        rx: (0..queues).map(|_| RxBurst::default()).collect(),
        tx: (0..queues).map(|_| TxBurst::default()).collect(),
        next_rx: 0,
        rx_frames: rx_frames.clone(),
        tx_frames: tx_frames.clone(),
        scratch: Vec::with_capacity(2048),
    };
    let clock = Clock::start();
    let device: Box<dyn PacketDevice> = Box::new(dev);
    let stack = Stack::new(&config, device, clock.now()).map_err(|e| format!("{e:?}"))?;
    let stack: SharedStack = Rc::new(RefCell::new(stack));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&rt, async {
        let idle = if cli.poll {
            IdlePolicy::Poll
        } else {
            IdlePolicy::Backoff {
                max_sleep: Duration::from_micros(100),
            }
        };
        tokio::task::spawn_local(drive_polling(stack.clone(), clock, idle));
        exchange(&cli, &stack).await
    });
    let per_queue = |v: &Rc<Vec<Cell<u64>>>| v.iter().map(Cell::get).collect::<Vec<_>>();
    println!(
        "{}",
        serde_json::json!({
            "connections": cli.connections,
            "ok": report.ok,
            "failed": report.failed,
            "first_error": report.first_error,
            "bytes": report.bytes,
            "seconds": report.seconds,
            "rx_frames_per_queue": per_queue(&rx_frames),
            "tx_frames_per_queue": per_queue(&tx_frames),
        })
    );
    Ok(())
}

#[derive(Default)]
struct Report {
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    bytes: u64,
    seconds: f64,
}

/// Serves echo on `--echo-port` and runs the connections to `--target`.
async fn exchange(cli: &Cli, stack: &SharedStack) -> Report {
    let ip: IpAddr = cli.address.split('/').next().unwrap().parse().unwrap();
    let listener = match TcpListener::bind(stack, SocketAddr::new(ip, cli.echo_port)) {
        Ok(l) => l,
        Err(e) => {
            return Report {
                failed: cli.connections,
                first_error: Some(format!("listen: {e}")),
                ..Report::default()
            }
        }
    };
    tokio::task::spawn_local(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::task::spawn_local(async move {
                let mut buf = vec![0u8; 16384];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..cli.connections {
        let stack = stack.clone();
        let (target, len) = (cli.target, cli.bytes);
        tasks.push(tokio::task::spawn_local(async move {
            let data: Vec<u8> = (0..len).map(|j| (j * 31 + i * 7) as u8).collect();
            let mut s = TcpStream::connect(&stack, target)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (mut r, mut w) = tokio::io::split(&mut s);
            let send = async {
                w.write_all(&data).await?;
                w.shutdown().await
            };
            let mut got = Vec::with_capacity(len);
            let recv = r.read_to_end(&mut got);
            let (a, b) = tokio::join!(send, recv);
            a.map_err(|e| format!("send: {e}"))?;
            b.map_err(|e| format!("receive: {e}"))?;
            if got != data {
                return Err(format!("echo differs: {} of {} bytes back", got.len(), len));
            }
            Ok::<u64, String>(len as u64)
        }));
    }
    let mut report = Report::default();
    let limit = Duration::from_secs_f64(cli.timeout);
    for t in tasks {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), t).await {
            Ok(Ok(Ok(n))) => {
                report.ok += 1;
                report.bytes += n;
            }
            other => {
                report.failed += 1;
                let e = match other {
                    Ok(Ok(Err(e))) => e,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".into(),
                    Ok(Ok(Ok(_))) => unreachable!(),
                };
                report.first_error.get_or_insert(e);
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}
