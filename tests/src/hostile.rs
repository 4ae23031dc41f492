//! The hostile-client suite's parts: the listener types under attack (each protocol adds
//! itself to [`Kind`]), a well-behaved client that runs beside every attack and reports what it
//! got, upstreams that misbehave (never read, never finish a handshake), and readings of the
//! sluice process from /proc (RSS, descriptors, CPU time).

use crate::bolt::{js_dir, Call, RawBolt};
use crate::Proc;
use sluice::protocol::bolt::status;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The listener types the suite attacks. A protocol added later gets a variant here and its
/// frames in the methods below, and every attack then runs against it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// envoy.filters.network.tcp_proxy to an echo server.
    TcpProxy,
    /// sluice.filters.network.rpc_proxy speaking Bolt to a sofa-bolt-node server.
    RpcBolt,
}

pub const ALL: [Kind; 2] = [Kind::TcpProxy, Kind::RpcBolt];

impl Kind {
    /// The listener's name in [`suite_config`].
    pub fn listener(self) -> &'static str {
        match self {
            Kind::TcpProxy => "tcp",
            Kind::RpcBolt => "bolt",
        }
    }

    /// What a flooding client sends over and over: a request of about 1 KiB.
    pub fn request(self, id: u32) -> Vec<u8> {
        match self {
            Kind::TcpProxy => vec![b'x'; 1024],
            Kind::RpcBolt => {
                let pad = "p".repeat(700);
                Call {
                    id,
                    headers: &[("service", "suite.Echo:1.0"), ("pad", &pad)],
                    ..Default::default()
                }
                .encode()
            }
        }
    }

    /// The start of a frame, cut short (half a header).
    pub fn partial_frame(self) -> Option<Vec<u8>> {
        match self {
            Kind::TcpProxy => None,
            Kind::RpcBolt => Some(self.request(1)[..11].to_vec()),
        }
    }
}

/// Envoy-format config with one listener of each [`Kind`] and the misbehaving upstreams the
/// attacks need: `echo` (Node echo), `bolt` (sofa-bolt-node), `stuck` (accepts, never reads) and
/// `blackhole` (never completes a handshake). Bolt services: `suite.Echo:1.0` → bolt,
/// `suite.Stuck:1.0` → stuck, `suite.Blackhole:1.0` → blackhole. `extra` holds YAML lines for
/// the rpc_proxy's and the tcp_proxy's typed_config and for both listeners.
pub fn suite_config(ports: &Upstreams, extra: &Extra) -> String {
    let Extra {
        rpc: rpc_extra,
        tcp: tcp_extra,
        listener: listener_extra,
    } = extra;
    let cluster = |name: &str, ports: &[u16]| {
        let mut c = format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 2s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n"
        );
        for p in ports {
            c.push_str(&format!(
                "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}\n"
            ));
        }
        c
    };
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
{listener_extra}    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
{tcp_extra}  - name: bolt
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
{listener_extra}    filter_chains:
    - filters:
      - name: sluice.filters.network.rpc_proxy
        typed_config:
          "@type": type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy
          stat_prefix: bolt
          max_frame_bytes: 1048576
          upstream: {{heartbeat_interval: 0s}}
{rpc_extra}
          route_config:
            name: suite
            virtual_hosts:
            - name: stuck
              services: ["suite.Stuck:1.0"]
              routes: [{{route: {{cluster: stuck}}}}]
            - name: blackhole
              services: ["suite.Blackhole:1.0"]
              routes: [{{route: {{cluster: blackhole}}}}]
            - name: echo
              services: ["*"]
              routes: [{{route: {{cluster: bolt}}}}]
  clusters:
{echo}{stuck}{blackhole}{bolt}"#,
        echo = cluster("echo", &ports.echo),
        stuck = cluster("stuck", &[ports.stuck]),
        blackhole = cluster("blackhole", &[ports.blackhole]),
        bolt = cluster("bolt", &ports.bolt),
    )
}

/// Settings a test adds to [`suite_config`], as indented YAML lines.
#[derive(Default)]
pub struct Extra<'a> {
    pub rpc: &'a str,
    pub tcp: &'a str,
    pub listener: &'a str,
}

/// The upstreams' ports.
pub struct Upstreams {
    pub echo: Vec<u16>,
    pub stuck: u16,
    pub blackhole: u16,
    pub bolt: Vec<u16>,
}

/// tests/js/echo_server.js on `port` (0: any): an echo server, or (`no_read`) one that never
/// reads.
pub fn node_echo(port: u16, no_read: bool) -> (Proc, u16) {
    let mut cmd = Command::new("node");
    cmd.arg(js_dir().join("echo_server.js"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if no_read {
        cmd.arg("--no-read");
    }
    let mut proc = Proc::spawn(cmd, "echo_server.js");
    let mut line = String::new();
    BufReader::new(proc.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("echo_server.js did not start: {line:?}"))
        .parse()
        .unwrap();
    (proc, port)
}

/// A port whose handshakes never complete: a listening socket with a backlog of 0 that never
/// accepts, its one queue slot taken, so the kernel drops every further SYN.
pub struct Blackhole {
    _listener: OwnedFd,
    _fillers: Vec<TcpStream>,
    pub port: u16,
}

impl Blackhole {
    pub fn new() -> Blackhole {
        // SAFETY: plain socket calls on a descriptor this function owns; every result checked.
        let (fd, port) = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as u16;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
            assert_eq!(
                libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
                0
            );
            assert_eq!(libc::listen(fd, 0), 0);
            let mut got: libc::sockaddr_in = std::mem::zeroed();
            let mut glen = len;
            libc::getsockname(fd, &mut got as *mut _ as *mut libc::sockaddr, &mut glen);
            (OwnedFd::from_raw_fd(fd), u16::from_be(got.sin_port))
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut fillers = Vec::new();
        // Fill the queue until a connect no longer completes.
        for _ in 0..4 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
        }
        Blackhole {
            _listener: fd,
            _fillers: fillers,
            port,
        }
    }
}

impl Default for Blackhole {
    fn default() -> Self {
        Blackhole::new()
    }
}

/// Descriptors the suite needs in this process (thousands of attacking connections live in it)
/// and in the sluice it starts, which inherits the limit.
pub const FDS_NEEDED: u64 = 16_384;

/// The test process's descriptor limit raised: both limits to at least [`FDS_NEEDED`] where
/// the process may (CAP_SYS_RESOURCE), else the soft limit to the hard one. Fails with a clear
/// message when that is still too few.
pub fn raise_own_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own; failures are checked below.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_max < FDS_NEEDED {
            let more = libc::rlimit {
                rlim_cur: FDS_NEEDED,
                rlim_max: FDS_NEEDED,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &more);
        }
    }
    let (_, now) = sluice::io::fds::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    assert!(
        now >= FDS_NEEDED,
        "the hostile-client suite needs {FDS_NEEDED} open files and the hard limit is {now}: raise it (`ulimit -Hn {FDS_NEEDED}` with CAP_SYS_RESOURCE, or /etc/security/limits.conf)"
    );
}

/// Open descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// CPU time (user + system) process `pid` has used, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// What the well-behaved client got.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
}

impl Tally {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-3)
    }
}

/// A client that does one request/response exchange after another on its own connection (a new
/// one after a failure) until stopped.
pub struct GoodClient {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Tally>>,
    started: Instant,
}

/// The shortest run a rate is read from (connection set-up would dominate a shorter one).
const MIN_RUN: Duration = Duration::from_millis(500);

impl GoodClient {
    pub fn start(kind: Kind, addr: SocketAddr) -> GoodClient {
        GoodClient::spawn(kind, addr, false)
    }

    /// A client that opens a new connection for every exchange.
    pub fn start_fresh(kind: Kind, addr: SocketAddr) -> GoodClient {
        GoodClient::spawn(kind, addr, true)
    }

    fn spawn(kind: Kind, addr: SocketAddr, fresh: bool) -> GoodClient {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut t = Tally::default();
            let mut conn: Option<Conn> = None;
            let mut id = 0u32;
            while !flag.load(Ordering::Relaxed) {
                id = id.wrapping_add(1);
                let c = conn.get_or_insert_with(|| Conn::open(kind, addr));
                if c.exchange(kind, id) {
                    t.ok += 1;
                    if fresh {
                        conn = None;
                    }
                } else {
                    t.failed += 1;
                    conn = None;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            t.seconds = started.elapsed().as_secs_f64();
            t
        });
        GoodClient {
            stop,
            thread: Some(thread),
            started: Instant::now(),
        }
    }

    /// Runs a client for `for_how_long` and reports.
    pub fn measure(kind: Kind, addr: SocketAddr, for_how_long: Duration) -> Tally {
        let c = GoodClient::start(kind, addr);
        std::thread::sleep(for_how_long);
        c.finish()
    }

    /// Stops the client (after at least [`MIN_RUN`]) and reports.
    pub fn finish(mut self) -> Tally {
        if let Some(left) = MIN_RUN.checked_sub(self.started.elapsed()) {
            std::thread::sleep(left);
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

enum Conn {
    Tcp(Option<TcpStream>),
    Bolt(Option<RawBolt>),
}

impl Conn {
    fn open(kind: Kind, addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok();
        match kind {
            Kind::TcpProxy => Conn::Tcp(s.inspect(|s| {
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            })),
            Kind::RpcBolt => Conn::Bolt(s.map(|_| RawBolt::connect(addr))),
        }
    }

    fn exchange(&mut self, kind: Kind, id: u32) -> bool {
        match self {
            Conn::Tcp(Some(s)) => {
                let msg = kind.request(id);
                let mut back = vec![0u8; msg.len()];
                s.write_all(&msg).is_ok() && s.read_exact(&mut back).is_ok() && back == msg
            }
            Conn::Bolt(Some(b)) => {
                b.send(&kind.request(id));
                matches!(b.recv_within(Duration::from_secs(2)),
                    Some((h, _)) if h.request_id == u64::from(id) && h.status == status::SUCCESS)
            }
            _ => false,
        }
    }
}

/// Writes `unit` to `s` over and over without ever reading, until a write has been blocked for
/// `stall` (the proxy stopped reading and TCP pushed back) or `cap` bytes went out. Returns the
/// bytes written and whether the writer was held back.
pub fn write_until_blocked(
    s: &TcpStream,
    unit: &[u8],
    stall: Duration,
    cap: usize,
) -> (usize, bool) {
    s.set_nonblocking(true).unwrap();
    let mut written = 0usize;
    let mut at = 0usize;
    let mut blocked_since: Option<Instant> = None;
    let mut w = s;
    while written < cap {
        match w.write(&unit[at..]) {
            Ok(n) => {
                written += n;
                at = (at + n) % unit.len();
                blocked_since = None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stall {
                    return (written, true);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return (written, false),
        }
    }
    (written, false)
}

/// Whether the peer closed `s` (EOF or reset) within `timeout`, reading and dropping anything
/// that comes first.
pub fn closed_within(s: &TcpStream, timeout: Duration) -> bool {
    s.set_nonblocking(false).unwrap();
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65536];
    let mut r = s;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        r.set_read_timeout(Some(left)).unwrap();
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}
