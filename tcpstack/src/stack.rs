//! The stack: one smoltcp `Interface` (addresses, routes, ARP/NDP, ICMP echo) and a flow table
//! that hands each TCP segment straight to its own connection.
//!
//! smoltcp's `SocketSet` offers every packet to every socket, and its egress walks every socket.
//! Here each connection lives in a `SocketSet` of its own, so smoltcp only ever sees the one
//! socket a segment belongs to: the flow table (a hash map from the 4-tuple) finds it, ingress and
//! egress run on that set alone, and per-connection timers sit in a heap. Per-packet work does
//! not depend on how many connections are open.
//!
//! Listening is the flow table's job too: a SYN for a listened port creates a fresh socket in
//! LISTEN for that one peer, so any number of handshakes can be pending (up to the listener's
//! half-open cap, which bounds a SYN flood), and established connections wait in the listener's
//! accept queue.
//!
//! Time is passed in, never read: the same code runs on a real clock in the dataplane and on a
//! virtual one in replay tests, where the same input gives the same output bytes.

use crate::buffers::Buffers;
use crate::classify::{classify, Class, DropReason, FlowKey, TcpHead};
use crate::device::{DeviceCaps, PacketDevice, VnetHeader};
use crate::fallback::KernelPath;
use crate::stats::StackStats;
use crate::timers::Timers;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
pub use smoltcp::time::Duration;
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint,
};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Waker;

/// Frames taken from the device per `poll` before egress runs: ACKs for a batch go out once.
const RX_BATCH: usize = 64;
/// Segments one connection may send per egress turn before others get theirs.
const TX_BURST: usize = 64;
/// Ephemeral ports for active opens (the IANA dynamic range).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;
/// How long a connection the application has let go of may take to finish closing.
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection quiet this long has the pages of its empty rings handed back.
const TRIM_AFTER: Duration = Duration::from_secs(2);
/// How often the stack looks for such connections (off the per-packet path).
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// How long a passive handshake may stay half-open (SYN-ACKs retransmitted meanwhile) before
/// its slot is freed; Linux gives up after about a minute, a shorter bound caps a SYN flood.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Congestion control for every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Congestion {
    Cubic,
    Reno,
    None,
}

/// The largest receive ring whose window smoltcp advertises without scaling.
pub const MAX_UNSCALED_WINDOW: usize = 65_535;

/// Per-connection TCP settings.
#[derive(Clone, Debug)]
pub struct TcpTuning {
    /// Receive ring size. Up to 65535 (the default) the window is advertised unscaled. Above
    /// it smoltcp scales the window and rounds it down, which can pull the window's right edge
    /// back by up to 2^scale - 1 bytes: a peer that already sent up to the old edge has those
    /// bytes dropped, and a smoltcp peer (another sluice) may then never resend them. Linux
    /// peers recover; larger rings are for links where 64 KiB in flight is too little.
    pub rx_buffer: usize,
    pub tx_buffer: usize,
    pub congestion: Congestion,
    pub timestamps: bool,
    /// `None`: ACK at the end of each receive batch, never on a timer (no delayed-ACK stalls).
    pub ack_delay: Option<Duration>,
    pub keep_alive: Option<Duration>,
    /// Handshakes that may be pending per listener; SYNs beyond it are dropped (the client
    /// retries), which bounds what a SYN flood costs.
    pub max_half_open: usize,
    /// Established connections that may wait per listener for the application to accept them.
    pub accept_backlog: usize,
}

impl Default for TcpTuning {
    fn default() -> Self {
        TcpTuning {
            rx_buffer: MAX_UNSCALED_WINDOW,
            tx_buffer: 256 * 1024,
            congestion: Congestion::Cubic,
            timestamps: true,
            ack_delay: None,
            keep_alive: None,
            max_half_open: 4096,
            accept_backlog: 4096,
        }
    }
}

/// Everything a stack needs to start.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub mac: [u8; 6],
    /// Addresses the stack owns, with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Default gateways (at most one per family).
    pub gateways: Vec<IpAddr>,
    /// Seeds initial sequence numbers and the like; fixed in replay tests for determinism.
    pub seed: u64,
    pub tcp: TcpTuning,
    /// Connections the flow table may hold in any state.
    pub max_flows: usize,
}

/// RFC 9293 (3.10.7.4): with the receive window closed no segment is acceptable, "but special
/// allowance should be made to accept valid ACKs". smoltcp drops such a segment whole, and it
/// may itself have closed the window a few bytes short of an edge it advertised before (window
/// scaling rounds down), so the peer's next segments start past our window and every ACK they
/// carry is lost: with two connections feeding each other through a proxy, neither side ever
/// moves again. Such a segment is handed to smoltcp as what it may take, a bare ACK at the
/// point we acknowledged (payload and FIN dropped; the peer sends them again).
fn zero_window_ack(frame: &[u8], head: &TcpHead, flow: &Flow) -> Option<Vec<u8>> {
    if !head.ack || head.syn || head.rst {
        return None;
    }
    let acked = flow.ack_sent?;
    if !seq_after(head.seq, acked) {
        return None;
    }
    if !window_nearly_closed(flow.set.get::<tcp::Socket>(flow.handle)) {
        return None;
    }
    bare_ack_at(frame, head, acked)
}

/// `frame` (a TCP segment `head` describes) as a bare ACK at sequence number `seq`: payload,
/// FIN and PSH gone, IP length fixed. Checksums are left stale: the classifier has verified
/// them already and smoltcp does not look.
fn bare_ack_at(frame: &[u8], head: &TcpHead, seq: u32) -> Option<Vec<u8>> {
    let mut f = frame.get(..head.payload_at)?.to_vec();
    let ip_len = (head.payload_at - head.ip_at) as u16;
    if f[head.ip_at] >> 4 == 4 {
        f[head.ip_at + 2..head.ip_at + 4].copy_from_slice(&ip_len.to_be_bytes());
    } else {
        let payload_len = (head.payload_at - head.tcp_at) as u16;
        f[head.ip_at + 4..head.ip_at + 6].copy_from_slice(&payload_len.to_be_bytes());
    }
    f[head.tcp_at + 4..head.tcp_at + 8].copy_from_slice(&seq.to_be_bytes());
    // Keep ACK (and URG/ECE/CWR); drop FIN and PSH with the payload.
    f[head.tcp_at + 13] &= !0x09;
    Some(f)
}

/// Windows are advertised in units of up to 2^14 bytes (the largest scale): with less room than
/// that, the window advertised may be zero.
fn window_nearly_closed(socket: &tcp::Socket) -> bool {
    socket.recv_capacity() - socket.recv_queue() < 1 << 14
}

/// Decides whether an outgoing connection may use a local address and port for a remote.
pub type SourcePortFilter = Box<dyn Fn(SocketAddr, SocketAddr) -> bool>;

#[derive(Debug)]
pub enum StackError {
    /// The address is not one of the stack's, or the port is 0.
    Unaddressable(SocketAddr),
    AddressInUse(SocketAddr),
    NoEphemeralPort(SocketAddr),
    FlowLimit(usize),
    Buffers(std::io::Error),
    Config(String),
}

impl std::fmt::Display for StackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StackError::Unaddressable(a) => {
                write!(f, "{a}: not an address of the userspace stack, or port 0")
            }
            StackError::AddressInUse(a) => write!(f, "cannot listen on {a}: already listening"),
            StackError::NoEphemeralPort(a) => write!(f, "connect to {a}: no free local port"),
            StackError::FlowLimit(n) => write!(f, "the stack already holds {n} connections"),
            StackError::Buffers(e) => write!(f, "cannot allocate connection buffers: {e}"),
            StackError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StackError {}

/// A connection in the flow table. Holds a generation so that a stale handle can never reach a
/// slot that has been reused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowRef {
    idx: u32,
    gen: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ListenerId(u32);

/// What a SYN for no known flow found.
enum Passive {
    Opened(u32),
    /// A listener, but its half-open queue (or the flow table) is full.
    Full,
    NoListener,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Created by a SYN for a listener; `queued` once handed to its accept queue.
    Passive {
        listener: u32,
        queued: bool,
    },
    Active,
}

struct Flow {
    gen: u32,
    /// Exactly one TCP socket. Declared before `buffers`: it borrows them and must drop first.
    set: SocketSet<'static>,
    handle: SocketHandle,
    key: FlowKey,
    /// Still findable by its 4-tuple (false once CLOSED).
    keyed: bool,
    origin: Origin,
    /// An application handle (stream) refers to this flow.
    attached: bool,
    dirty: bool,
    /// The deadline currently scheduled in the timer heap.
    timer_at: Option<Instant>,
    /// The socket's rings; only trimmed here, read and written by smoltcp.
    buffers: Buffers,
    /// Sequence number just past the furthest segment received (wrapping).
    rcv_high: u32,
    /// The last acknowledgement number this stack sent on the connection.
    ack_sent: Option<u32>,
    /// The rings may hold resident pages worth handing back once the connection is quiet.
    touched: bool,
    last_active: Instant,
}

struct Listener {
    endpoint: (Option<IpAddress>, u16),
    ready: VecDeque<FlowRef>,
    half_open: usize,
    waker: Option<Waker>,
}

/// A fast hasher for 4-tuples: the keys come from the network, but the table's size is capped
/// and each bucket check is one comparison, so a keyed hash buys little here.
#[derive(Default)]
pub struct FlowHasher(u64);

impl Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut v = [0u8; 8];
            v[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(v));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(v as u64)
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64)
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64)
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64)
    }
}

type FlowMap = HashMap<FlowKey, u32, BuildHasherDefault<FlowHasher>>;

thread_local! {
    /// The stack clock in milliseconds, read by smoltcp's TCP timestamp generator (a plain `fn`,
    /// so it cannot capture the stack). Set before every poll; virtual in replay tests.
    static CLOCK_MS: Cell<u32> = const { Cell::new(0) };
}

fn tsval() -> u32 {
    CLOCK_MS.with(|c| c.get())
}

pub struct Stack<D: PacketDevice> {
    iface: Interface,
    device: D,
    smol_caps: DeviceCapabilities,
    verify_rx: bool,
    flows: Vec<Option<Flow>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    live: usize,
    by_key: FlowMap,
    listeners: Vec<Option<Listener>>,
    by_port: HashMap<u16, Vec<u32>>,
    timers: Timers,
    dirty: Vec<u32>,
    neighbor_wait: Vec<u32>,
    tuning: TcpTuning,
    max_flows: usize,
    next_port: u16,
    /// Which source ports outgoing connections may use (see `set_source_port_filter`).
    port_filter: Option<SourcePortFilter>,
    now: Instant,
    rx_buf: Vec<u8>,
    /// Woken when the application gives the stack work (data to send, a window to reopen).
    kick: Option<Waker>,
    /// When quiet connections' pages are next handed back, while any may hold some.
    next_trim: Option<Instant>,
    stats: Arc<StackStats>,
    /// The host kernel's TAP, when frames the stack does not serve go there.
    kernel: Option<KernelPath>,
    /// The offload header of the frame being processed, passed on with it to the kernel.
    rx_offload: Option<VnetHeader>,
}

impl<D: PacketDevice> Stack<D> {
    pub fn new(config: &StackConfig, mut device: D, now: Instant) -> Result<Stack<D>, StackError> {
        let caps = device.caps();
        let mac = EthernetAddress(config.mac);
        if !mac.is_unicast() {
            return Err(StackError::Config(format!(
                "MAC address {mac} is not unicast"
            )));
        }
        let smol_caps = smol_caps(&caps);
        let stats = Arc::new(StackStats::default());
        let mut seen = Seen::default();
        let adapter = &mut SmolDevice::new(&mut device, now, &smol_caps, &stats, &mut seen, None);
        let mut iface_config = Config::new(HardwareAddress::Ethernet(mac));
        iface_config.random_seed = config.seed;
        let mut iface = Interface::new(iface_config, adapter, now);
        let mut cidrs = Vec::new();
        for (addr, prefix) in &config.addresses {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if *prefix > max {
                return Err(StackError::Config(format!(
                    "{addr}/{prefix}: prefix longer than {max}"
                )));
            }
            cidrs.push(IpCidr::new(IpAddress::from(*addr), *prefix));
        }
        let mut overflow = false;
        iface.update_ip_addrs(|addrs| {
            for c in cidrs {
                overflow |= addrs.push(c).is_err();
            }
        });
        if overflow {
            return Err(StackError::Config(
                "too many addresses for the stack".into(),
            ));
        }
        for gw in &config.gateways {
            let added = match gw {
                IpAddr::V4(v4) => iface.routes_mut().add_default_ipv4_route(*v4).map(|_| ()),
                IpAddr::V6(v6) => iface.routes_mut().add_default_ipv6_route(*v6).map(|_| ()),
            };
            added.map_err(|_| StackError::Config(format!("cannot add a route via {gw}")))?;
        }
        let verify_rx = !caps.rx_checksum_verified;
        let seed_port = EPHEMERAL.start() + (config.seed % 16384) as u16;
        Ok(Stack {
            iface,
            device,
            smol_caps,
            verify_rx,
            flows: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_key: FlowMap::default(),
            listeners: Vec::new(),
            by_port: HashMap::new(),
            timers: Timers::default(),
            dirty: Vec::new(),
            neighbor_wait: Vec::new(),
            tuning: config.tcp.clone(),
            max_flows: config.max_flows,
            next_port: seed_port,
            port_filter: None,
            now,
            rx_buf: vec![0; DeviceCaps::MAX_RX_FRAME],
            kick: None,
            next_trim: None,
            stats,
            kernel: None,
            rx_offload: None,
        })
    }

    pub fn stats(&self) -> Arc<StackStats> {
        self.stats.clone()
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Registers the waker of the task that drives this stack.
    pub fn set_kick(&mut self, waker: &Waker) {
        match &self.kick {
            Some(w) if w.will_wake(waker) => {}
            _ => self.kick = Some(waker.clone()),
        }
    }

    fn set_now(&mut self, now: Instant) {
        // The clock never runs backwards, even if a caller's does.
        if now > self.now {
            self.now = now;
        }
        CLOCK_MS.with(|c| c.set(self.now.total_millis() as u32));
    }

    /// Receives a batch from the device, fires due timers, and sends what is pending.
    /// Returns whether anything happened.
    pub fn poll(&mut self, now: Instant) -> bool {
        self.set_now(now);
        let mut work = false;
        let lends = self.device.lends_rx();
        let mut buf = std::mem::take(&mut self.rx_buf);
        for _ in 0..RX_BATCH {
            let received = if lends {
                // SAFETY: the frame is read before the device is asked for another.
                self.device
                    .recv_lent(self.now)
                    .map(|f| f.map(|f| unsafe { f.bytes() }))
            } else {
                self.device
                    .recv(self.now, &mut buf)
                    .map(|n| n.map(|n| &buf[..n]))
            };
            match received {
                Ok(Some(frame)) => {
                    work = true;
                    if frame.len() > self.smol_caps.max_transmission_unit {
                        self.stats.rx_coalesced_frames.inc();
                    }
                    let verify = self.verify_rx && !self.device.last_rx_checksum_ok();
                    if self.kernel.is_some() {
                        self.rx_offload = self.device.last_rx_offload();
                    }
                    self.ingress(frame, verify);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("packet device receive failed: {e}");
                    break;
                }
            }
        }
        self.rx_buf = buf;
        work |= self.run_due();
        if !work {
            self.device.idle();
        }
        work
    }

    /// Processes one frame as if the device had just received it, then sends what is pending.
    /// This is how pcap replay and the fuzz target feed the stack.
    pub fn receive_frame(&mut self, now: Instant, frame: &[u8]) {
        self.set_now(now);
        self.rx_offload = None;
        self.ingress(frame, self.verify_rx);
        self.run_due();
    }

    /// Advances the clock to `now`, firing the timers due by then.
    pub fn advance(&mut self, now: Instant) {
        self.set_now(now);
        self.run_due();
    }

    /// What follows every event: due timers fire, pending sends go out, quiet connections'
    /// pages are handed back. Returns whether anything was sent or fired.
    fn run_due(&mut self) -> bool {
        let work = self.fire_timers() | self.flush();
        self.trim_quiet();
        self.device.flush_tx();
        work
    }

    /// When `poll` must run next even if no frame arrives: now if work is pending, else the
    /// earliest timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.dirty.is_empty() {
            return Some(self.now);
        }
        let device = self.device.next_timer();
        let timers = self.timers.next().into_iter().chain(device);
        timers.chain(self.next_trim).min()
    }

    /// From now on, gives the host kernel the frames the stack does not serve, through `path`
    /// (see `fallback`); the driver also moves what the kernel sends to the wire
    /// (`poll_kernel`).
    pub fn set_kernel_path(&mut self, path: KernelPath) {
        self.kernel = Some(path);
    }

    /// The kernel TAP's descriptor, which becomes readable when the kernel sends.
    pub fn kernel_fd(&self) -> Option<std::os::fd::RawFd> {
        self.kernel.as_ref().and_then(|k| k.device.raw_fd())
    }

    /// Moves a batch of frames the kernel sent on its TAP to the wire, unchanged. Returns
    /// whether there were any.
    pub fn poll_kernel(&mut self, now: Instant) -> bool {
        self.set_now(now);
        let Some(k) = self.kernel.as_mut().filter(|k| !k.failed) else {
            return false;
        };
        let mut moved = false;
        for _ in 0..RX_BATCH {
            match k.device.recv(self.now, &mut k.buf) {
                Ok(Some(n)) => {
                    moved = true;
                    self.stats.fallback_from_kernel.inc();
                    let offload = k.device.last_rx_offload();
                    if let Err(e) = self
                        .device
                        .send_frame(self.now, &k.buf[..n], offload.as_ref())
                    {
                        self.stats.fallback_errors.inc();
                        tracing::debug!("a frame from the kernel could not be sent: {e}");
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The TAP is gone (deleted under the dataplane) or broken: said once, and
                    // the stack serves on without the kernel rather than failing every round.
                    self.stats.fallback_errors.inc();
                    tracing::error!(
                        "the kernel fallback TAP failed ({e}): the host kernel gets no more frames"
                    );
                    k.failed = true;
                    break;
                }
            }
        }
        if moved {
            self.device.flush_tx();
        }
        moved
    }

    /// Whether the kernel fallback takes `frame` (always false without one).
    fn kernel_wants(&self, frame: &[u8]) -> bool {
        self.kernel
            .as_ref()
            .is_some_and(|k| !k.failed && k.rules.wants_frame(frame))
    }

    /// Passes `frame` to the kernel's TAP as it came, with its offload header.
    fn pass_to_kernel(&mut self, frame: &[u8]) {
        let Some(k) = self.kernel.as_mut().filter(|k| !k.failed) else {
            return;
        };
        self.stats.fallback_to_kernel.inc();
        if let Err(e) = k
            .device
            .send_frame(self.now, frame, self.rx_offload.as_ref())
        {
            // A full TAP queue (the kernel not keeping up) drops, as a busy NIC would.
            self.stats.fallback_errors.inc();
            tracing::debug!("a frame for the kernel could not be passed on: {e}");
        }
    }

    fn ingress(&mut self, frame: &[u8], verify: bool) {
        self.stats.rx_frames.inc();
        match classify(frame, verify) {
            // What the stack cannot take (other ethertypes, fragments) the kernel may.
            Class::Drop(DropReason::UnknownEthertype | DropReason::Fragment)
                if self.kernel_wants(frame) =>
            {
                self.pass_to_kernel(frame)
            }
            Class::Drop(reason) => self.stats.dropped(reason),
            Class::Tcp(head) => self.tcp_ingress(frame, head),
            Class::Neighbor => {
                // Both sides answer for the same addresses with the same MAC, and both must
                // learn their neighbours: the kernel always gets a copy.
                self.pass_to_kernel(frame);
                self.ingress_unowned(frame);
                // Connections that stopped for lack of a link address may go on now.
                for idx in std::mem::take(&mut self.neighbor_wait) {
                    self.mark_dirty(idx);
                }
            }
            Class::Other if self.kernel_wants(frame) => self.pass_to_kernel(frame),
            Class::Other => self.ingress_unowned(frame),
        }
    }

    /// Hands a frame that belongs to no connection to smoltcp with an empty socket set: it
    /// answers ARP, NDP and ICMP echo, and resets TCP segments nobody owns.
    fn ingress_unowned(&mut self, frame: &[u8]) {
        let mut none = SocketSet::new(Vec::new());
        self.ingress_into(frame, &mut none);
    }

    /// Lets smoltcp process `frame` against the sockets of `set` (one connection's, or none);
    /// anything it answers directly goes out at once. Returns what went out.
    fn ingress_into(&mut self, frame: &[u8], set: &mut SocketSet<'static>) -> Seen {
        let mut seen = Seen::default();
        let mut dev = SmolDevice::new(
            &mut self.device,
            self.now,
            &self.smol_caps,
            &self.stats,
            &mut seen,
            Some(frame),
        );
        self.iface.poll_ingress_single(self.now, &mut dev, set);
        seen
    }

    fn tcp_ingress(&mut self, frame: &[u8], head: TcpHead) {
        let idx = match self.by_key.get(&head.key) {
            Some(&idx) => idx,
            None if head.syn && !head.ack && !head.rst => match self.passive_open(&head) {
                Passive::Opened(idx) => idx,
                // A listener wants it but has no room: drop without a word; the client
                // retransmits its SYN, as it would after a loss.
                Passive::Full => return,
                Passive::NoListener => return self.unknown_flow(frame),
            },
            None => return self.unknown_flow(frame),
        };
        self.stats.rx_tcp_segments.inc();
        let flow = self.flows[idx as usize]
            .as_mut()
            .expect("keyed flow exists");
        // Egress is batched to the end of a round, but two answers must leave before the next
        // segment of their connection is looked at: a handshake's own (SYN-ACK), since that
        // segment may be the ACK of it (a replayed capture delivers both in one burst); and,
        // with the receive window nearly closed, the ACK that tells where it closed, which
        // `zero_window_ack` must know.
        if flow.dirty {
            let socket = flow.set.get::<tcp::Socket>(flow.handle);
            if matches!(
                socket.state(),
                tcp::State::SynReceived | tcp::State::SynSent
            ) || window_nearly_closed(socket)
            {
                self.egress(idx);
            }
        }
        let flow = self.flows[idx as usize]
            .as_mut()
            .expect("keyed flow exists");
        if seq_after(head.seq_end, flow.rcv_high) || !flow.touched {
            flow.rcv_high = head.seq_end;
        }
        self.touch(idx);
        let flow = self.flows[idx as usize]
            .as_mut()
            .expect("keyed flow exists");
        let rewritten = zero_window_ack(frame, &head, flow);
        let frame = rewritten.as_deref().unwrap_or(frame);
        // The set is taken out for the call so the stack can be borrowed whole.
        let mut set = std::mem::replace(&mut flow.set, SocketSet::new(Vec::new()));
        let seen = self.ingress_into(frame, &mut set);
        let flow = self.flows[idx as usize]
            .as_mut()
            .expect("keyed flow exists");
        flow.set = set;
        if let Some(ack) = seen.ack {
            flow.ack_sent = Some(ack);
        }
        self.mark_dirty(idx);
        self.transition(idx);
    }

    /// A segment for no connection: the kernel's if the fallback takes it (an ssh session, a
    /// port sluice does not listen on), else smoltcp answers it with RST (unless it is one).
    fn unknown_flow(&mut self, frame: &[u8]) {
        if self.kernel_wants(frame) {
            return self.pass_to_kernel(frame);
        }
        self.stats.rx_unknown_flow.inc();
        self.ingress_unowned(frame);
    }

    /// A SYN for no known flow: if a listener wants it and there is room, a fresh socket in
    /// LISTEN for this one peer.
    fn passive_open(&mut self, head: &TcpHead) -> Passive {
        let (addr, port) = head.key.local;
        let found = self.by_port.get(&port).and_then(|ids| {
            ids.iter().copied().find(|&lid| {
                let l = self.listeners[lid as usize]
                    .as_ref()
                    .expect("indexed listener exists");
                l.endpoint.0.is_none_or(|a| a == addr)
            })
        });
        let Some(lid) = found else {
            return Passive::NoListener;
        };
        let listener = self.listeners[lid as usize]
            .as_mut()
            .expect("listener exists");
        if listener.half_open >= self.tuning.max_half_open {
            self.stats.syn_dropped_half_open_full.inc();
            return Passive::Full;
        }
        if self.live >= self.max_flows {
            self.stats.syn_dropped_flow_limit.inc();
            return Passive::Full;
        }
        let origin = Origin::Passive {
            listener: lid,
            queued: false,
        };
        let mut socket = match self.new_socket() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("dropping SYN: {e}");
                return Passive::Full;
            }
        };
        let endpoint = IpListenEndpoint {
            addr: Some(addr),
            port,
        };
        if socket.1.listen(endpoint).is_err() {
            return Passive::NoListener;
        }
        socket.1.set_timeout(Some(HANDSHAKE_TIMEOUT));
        let idx = self.insert(head.key, socket, origin);
        if let Some(l) = self.listeners[lid as usize].as_mut() {
            l.half_open += 1;
        }
        self.stats.flows_half_open.inc();
        Passive::Opened(idx)
    }

    fn new_socket(&self) -> Result<(Buffers, tcp::Socket<'static>), StackError> {
        let mut buffers = Buffers::new(self.tuning.rx_buffer, self.tuning.tx_buffer)
            .map_err(StackError::Buffers)?;
        // SAFETY: the socket is stored in the same `Flow` as `buffers`, declared before it, so it
        // is dropped first; `rings` is called once.
        let (rx, tx) = unsafe { buffers.rings() };
        let mut s = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        s.set_congestion_control(match self.tuning.congestion {
            Congestion::Cubic => tcp::CongestionControl::Cubic,
            Congestion::Reno => tcp::CongestionControl::Reno,
            Congestion::None => tcp::CongestionControl::None,
        });
        // A proxy forwards what it has at once: no Nagle, ACKs as described in `TcpTuning`.
        s.set_nagle_enabled(false);
        s.set_ack_delay(self.tuning.ack_delay);
        s.set_keep_alive(self.tuning.keep_alive);
        if self.tuning.timestamps {
            s.set_tsval_generator(Some(tsval));
        }
        Ok((buffers, s))
    }

    fn insert(
        &mut self,
        key: FlowKey,
        (buffers, socket): (Buffers, tcp::Socket<'static>),
        origin: Origin,
    ) -> u32 {
        let mut set = SocketSet::new(Vec::<SocketStorage<'static>>::with_capacity(1));
        let handle = set.add(socket);
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.flows.push(None);
                self.gens.push(0);
                (self.flows.len() - 1) as u32
            }
        };
        let gen = self.gens[idx as usize];
        self.flows[idx as usize] = Some(Flow {
            gen,
            set,
            handle,
            key,
            keyed: true,
            origin,
            attached: false,
            dirty: false,
            timer_at: None,
            buffers,
            rcv_high: 0,
            ack_sent: None,
            touched: false,
            last_active: self.now,
        });
        self.by_key.insert(key, idx);
        self.live += 1;
        self.stats.flows_active.inc();
        self.stats.flows_created.inc();
        idx
    }

    fn remove(&mut self, idx: u32) {
        let Some(flow) = self.flows[idx as usize].take() else {
            return;
        };
        if flow.keyed {
            self.by_key.remove(&flow.key);
        }
        if let Origin::Passive {
            listener,
            queued: false,
        } = flow.origin
        {
            if let Some(l) = self
                .listeners
                .get_mut(listener as usize)
                .and_then(|l| l.as_mut())
            {
                l.half_open -= 1;
            }
            self.stats.flows_half_open.sub(1);
        }
        self.gens[idx as usize] = self.gens[idx as usize].wrapping_add(1);
        self.free.push(idx);
        self.live -= 1;
        self.stats.flows_active.sub(1);
    }

    fn socket(&mut self, idx: u32) -> &mut tcp::Socket<'static> {
        let flow = self.flows[idx as usize].as_mut().expect("flow exists");
        flow.set.get_mut::<tcp::Socket>(flow.handle)
    }

    pub(crate) fn mark_dirty_ref(&mut self, r: FlowRef) {
        if self.valid(r) {
            self.mark_dirty(r.idx);
        }
    }

    fn mark_dirty(&mut self, idx: u32) {
        if let Some(flow) = self.flows[idx as usize].as_mut() {
            if !flow.dirty {
                flow.dirty = true;
                if self.dirty.is_empty() {
                    if let Some(k) = &self.kick {
                        k.wake_by_ref();
                    }
                }
                self.dirty.push(idx);
            }
        }
    }

    /// Acts on a connection's state after smoltcp has processed something for it.
    fn transition(&mut self, idx: u32) {
        let state = self.socket(idx).state();
        let flow = self.flows[idx as usize].as_mut().expect("flow exists");
        match state {
            // smoltcp returns a reset half-open socket to LISTEN; here that socket was only ever
            // for one peer.
            tcp::State::Listen => self.remove(idx),
            tcp::State::Closed => {
                if flow.keyed {
                    flow.keyed = false;
                    self.by_key.remove(&flow.key);
                }
                let queued = matches!(flow.origin, Origin::Passive { queued: true, .. });
                if !flow.attached && !queued {
                    self.remove(idx);
                }
            }
            tcp::State::SynReceived | tcp::State::SynSent => {}
            _ => {
                if let Origin::Passive {
                    listener,
                    queued: false,
                } = flow.origin
                {
                    flow.origin = Origin::Passive {
                        listener,
                        queued: true,
                    };
                    let r = FlowRef { idx, gen: flow.gen };
                    // Established: the handshake's time limit no longer applies.
                    flow.set
                        .get_mut::<tcp::Socket>(flow.handle)
                        .set_timeout(None);
                    self.stats.flows_half_open.sub(1);
                    let l = self.listeners[listener as usize]
                        .as_mut()
                        .expect("listener exists");
                    l.half_open -= 1;
                    if l.ready.len() >= self.tuning.accept_backlog {
                        self.stats.accept_queue_overflow.inc();
                        self.socket(idx).abort();
                        self.mark_dirty(idx);
                        // Removed once the RST is out and the socket reports CLOSED.
                        let flow = self.flows[idx as usize].as_mut().expect("flow exists");
                        flow.origin = Origin::Active;
                    } else {
                        l.ready.push_back(r);
                        if let Some(w) = l.waker.take() {
                            w.wake();
                        }
                    }
                }
            }
        }
    }

    /// Notes that a connection's rings were just used, so a later sweep may trim them.
    fn touch(&mut self, idx: u32) {
        let flow = self.flows[idx as usize].as_mut().expect("flow exists");
        flow.touched = true;
        flow.last_active = self.now;
        self.next_trim.get_or_insert(self.now + TRIM_EVERY);
    }

    /// Hands back the ring pages of connections quiet for a while whose rings are empty. Runs
    /// every few seconds while any connection may hold such pages; it walks the flow table, so
    /// it stays off the per-packet path.
    fn trim_quiet(&mut self) {
        match self.next_trim {
            Some(at) if self.now >= at => {}
            _ => return,
        }
        let mut pending = false;
        for flow in self.flows.iter_mut().flatten() {
            if !flow.touched {
                continue;
            }
            if self.now - flow.last_active < TRIM_AFTER {
                pending = true;
                continue;
            }
            let socket = flow.set.get::<tcp::Socket>(flow.handle);
            // Nothing buffered for the application, and everything received acknowledged: no
            // out-of-order data is parked in the ring either.
            let rx_empty = socket.recv_queue() == 0
                && flow
                    .ack_sent
                    .is_some_and(|ack| !seq_after(flow.rcv_high, ack));
            let tx_empty = socket.send_queue() == 0;
            if rx_empty {
                flow.buffers.trim_rx();
            }
            if tx_empty {
                flow.buffers.trim_tx();
            }
            if rx_empty && tx_empty {
                flow.touched = false;
            } else {
                pending = true;
            }
        }
        self.next_trim = pending.then(|| self.now + TRIM_EVERY);
    }

    fn fire_timers(&mut self) -> bool {
        let mut fired = false;
        while let Some((at, idx, gen)) = self.timers.pop_due(self.now) {
            let current = matches!(&self.flows.get(idx as usize), Some(Some(f)) if f.gen == gen && f.timer_at == Some(at));
            if current {
                self.flows[idx as usize]
                    .as_mut()
                    .expect("flow exists")
                    .timer_at = None;
                self.mark_dirty(idx);
                fired = true;
            }
        }
        fired
    }

    /// Sends for every connection with pending work.
    fn flush(&mut self) -> bool {
        let mut any = false;
        while let Some(idx) = self.dirty.pop() {
            any = true;
            self.egress(idx);
        }
        let flows = &self.flows;
        self.timers.compact(self.live, |at, idx, gen| {
            matches!(flows.get(idx as usize), Some(Some(f)) if f.gen == gen && f.timer_at == Some(at))
        });
        any
    }

    fn egress(&mut self, idx: u32) {
        let Some(flow) = self.flows[idx as usize].as_mut() else {
            return;
        };
        flow.dirty = false;
        let mut seen = Seen::default();
        let mut sent_any = false;
        for _ in 0..TX_BURST {
            let mut dev = SmolDevice::new(
                &mut self.device,
                self.now,
                &self.smol_caps,
                &self.stats,
                &mut seen,
                None,
            );
            if self.iface.poll_egress(self.now, &mut dev, &mut flow.set) == PollResult::None {
                break;
            }
            sent_any = true;
        }
        let next = self.iface.poll_at(self.now, &flow.set);
        // smoltcp sends one neighbour solicitation at a time and keeps every other connection
        // that needs the same address silent for a second. A connection that has something to
        // send yet sent nothing is such a one: it goes on as soon as any ARP/NDP answer arrives.
        let socket = flow.set.get::<tcp::Socket>(flow.handle);
        let has_work = socket.send_queue() > 0
            || matches!(
                socket.state(),
                tcp::State::SynSent
                    | tcp::State::SynReceived
                    | tcp::State::FinWait1
                    | tcp::State::Closing
                    | tcp::State::LastAck
            );
        if let Some(ack) = seen.ack {
            flow.ack_sent = Some(ack);
        }
        if seen.solicitation || (!sent_any && has_work && next.is_some_and(|t| t > self.now)) {
            self.neighbor_wait.push(idx);
        }
        match next {
            // Still wants to send now after a full burst: another turn, after everyone else.
            Some(at) if at <= self.now => {
                self.mark_dirty(idx);
            }
            Some(at) => {
                if flow.timer_at != Some(at) {
                    flow.timer_at = Some(at);
                    self.timers.schedule(at, idx, flow.gen);
                }
            }
            None => flow.timer_at = None,
        }
        self.transition(idx);
    }

    // ---- the application side ----

    /// Starts listening on `addr` (an address of the stack, or unspecified for all of them).
    pub fn listen(&mut self, addr: SocketAddr) -> Result<ListenerId, StackError> {
        if addr.port() == 0 {
            return Err(StackError::Unaddressable(addr));
        }
        let ip = (!addr.ip().is_unspecified()).then(|| IpAddress::from(addr.ip()));
        if let Some(ip) = ip {
            if !self.iface.has_ip_addr(ip) {
                return Err(StackError::Unaddressable(addr));
            }
        }
        let taken = self.by_port.get(&addr.port()).is_some_and(|ids| {
            ids.iter().any(|&id| {
                let l = self.listeners[id as usize]
                    .as_ref()
                    .expect("listener exists");
                l.endpoint.0.is_none() || ip.is_none() || l.endpoint.0 == ip
            })
        });
        if taken {
            return Err(StackError::AddressInUse(addr));
        }
        let listener = Listener {
            endpoint: (ip, addr.port()),
            ready: VecDeque::new(),
            half_open: 0,
            waker: None,
        };
        let id = match self.listeners.iter().position(|l| l.is_none()) {
            Some(i) => {
                self.listeners[i] = Some(listener);
                i as u32
            }
            None => {
                self.listeners.push(Some(listener));
                (self.listeners.len() - 1) as u32
            }
        };
        self.by_port.entry(addr.port()).or_default().push(id);
        Ok(ListenerId(id))
    }

    /// Stops listening. Handshakes in progress and connections nobody accepted are reset;
    /// accepted connections are not affected.
    pub fn unlisten(&mut self, id: ListenerId) {
        let Some(l) = self.listeners.get_mut(id.0 as usize).and_then(|l| l.take()) else {
            return;
        };
        if let Some(ids) = self.by_port.get_mut(&l.endpoint.1) {
            ids.retain(|&x| x != id.0);
        }
        let pending: Vec<u32> = (0..self.flows.len() as u32)
            .filter(|&i| {
                matches!(&self.flows[i as usize], Some(f) if f.origin == Origin::Passive { listener: id.0, queued: false })
            })
            .collect();
        self.stats.flows_half_open.sub(pending.len() as u64);
        let unaccepted = l
            .ready
            .into_iter()
            .filter(|r| self.valid(*r))
            .map(|r| r.idx);
        for idx in unaccepted.collect::<Vec<_>>().into_iter().chain(pending) {
            // Detached from the listener first: its slot may be reused at once (a reload that
            // moves a listener), and these connections must not count against the new one.
            // Nobody holds them, so they go as soon as their RST is out.
            self.flows[idx as usize]
                .as_mut()
                .expect("flow exists")
                .origin = Origin::Active;
            self.socket(idx).abort();
            self.mark_dirty(idx);
        }
    }

    /// Takes the next established connection from a listener's queue, or registers `waker`.
    pub fn accept(&mut self, id: ListenerId, waker: &Waker) -> Option<(FlowRef, SocketAddr)> {
        loop {
            let l = self.listeners.get_mut(id.0 as usize)?.as_mut()?;
            let Some(r) = l.ready.pop_front() else {
                l.waker = Some(waker.clone());
                return None;
            };
            if !self.valid(r) {
                continue;
            }
            let flow = self.flows[r.idx as usize].as_mut().expect("valid flow");
            flow.attached = true;
            let remote = flow.key.remote;
            return Some((r, to_std(remote)));
        }
    }

    /// Restricts the source ports of outgoing connections to those `filter` accepts for
    /// (local, remote): with several stacks behind one NIC, the ports whose replies the NIC's RSS
    /// delivers to this stack's own queue.
    pub fn set_source_port_filter(&mut self, filter: SourcePortFilter) {
        self.port_filter = Some(filter);
    }

    /// Opens a connection to `remote` from one of the stack's addresses of the same family.
    pub fn connect(&mut self, remote: SocketAddr) -> Result<FlowRef, StackError> {
        if self.live >= self.max_flows {
            return Err(StackError::FlowLimit(self.max_flows));
        }
        let remote_ip = IpAddress::from(remote.ip());
        let local_ip = self
            .iface
            .get_source_address(&remote_ip)
            .ok_or(StackError::Unaddressable(remote))?;
        let span = (EPHEMERAL.end() - EPHEMERAL.start()) as u32 + 1;
        let mut key = None;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                port + 1
            };
            let k = FlowKey {
                local: (local_ip, port),
                remote: (remote_ip, remote.port()),
            };
            let allowed = self
                .port_filter
                .as_ref()
                .is_none_or(|f| f(to_std(k.local), remote));
            if allowed
                && !self.by_key.contains_key(&k)
                && self.by_port.get(&port).is_none_or(|l| l.is_empty())
            {
                key = Some(k);
                break;
            }
        }
        let key = key.ok_or(StackError::NoEphemeralPort(remote))?;
        let mut socket = self.new_socket()?;
        let local = IpEndpoint::new(key.local.0, key.local.1);
        let remote_ep = IpEndpoint::new(remote_ip, remote.port());
        socket
            .1
            .connect(self.iface.context(), remote_ep, local)
            .map_err(|_| StackError::Unaddressable(remote))?;
        let idx = self.insert(key, socket, Origin::Active);
        let flow = self.flows[idx as usize].as_mut().expect("just inserted");
        flow.attached = true;
        let r = FlowRef { idx, gen: flow.gen };
        self.mark_dirty(idx);
        Ok(r)
    }

    fn valid(&self, r: FlowRef) -> bool {
        matches!(self.flows.get(r.idx as usize), Some(Some(f)) if f.gen == r.gen)
    }

    /// Runs `op` on a connection's socket and schedules whatever it made necessary (data to
    /// send, a window update). `None` if the connection is gone.
    pub fn with_socket<R>(
        &mut self,
        r: FlowRef,
        op: impl FnOnce(&mut tcp::Socket<'static>) -> R,
    ) -> Option<R> {
        if !self.valid(r) {
            return None;
        }
        let out = op(self.socket(r.idx));
        self.touch(r.idx);
        self.mark_dirty(r.idx);
        Some(out)
    }

    /// Runs `op` on a connection's socket without scheduling anything (reading state,
    /// registering wakers).
    pub fn inspect<R>(
        &mut self,
        r: FlowRef,
        op: impl FnOnce(&mut tcp::Socket<'static>) -> R,
    ) -> Option<R> {
        if !self.valid(r) {
            return None;
        }
        Some(op(self.socket(r.idx)))
    }

    /// The application lets go of a connection. An open one is closed gracefully (FIN) and may
    /// take up to a minute to finish; one with unread data is reset, as the kernel does.
    pub fn release(&mut self, r: FlowRef) {
        if !self.valid(r) {
            return;
        }
        let socket = self.socket(r.idx);
        if socket.state() == tcp::State::Closed {
            self.remove(r.idx);
            return;
        }
        if socket.recv_queue() > 0 {
            socket.abort();
        } else {
            socket.close();
            socket.set_timeout(Some(ORPHAN_TIMEOUT));
        }
        self.flows[r.idx as usize]
            .as_mut()
            .expect("valid flow")
            .attached = false;
        self.mark_dirty(r.idx);
    }

    /// The connection's endpoints (local, remote).
    pub fn endpoints(&self, r: FlowRef) -> Option<(SocketAddr, SocketAddr)> {
        if !self.valid(r) {
            return None;
        }
        let key = self.flows[r.idx as usize].as_ref()?.key;
        Some((to_std(key.local), to_std(key.remote)))
    }

    /// Connections in the flow table.
    pub fn flow_count(&self) -> usize {
        self.live
    }
}

fn to_std((addr, port): (IpAddress, u16)) -> SocketAddr {
    SocketAddr::new(IpAddr::from(addr), port)
}

fn smol_caps(caps: &DeviceCaps) -> DeviceCapabilities {
    let mut c = DeviceCapabilities::default();
    c.medium = Medium::Ethernet;
    c.max_transmission_unit = caps.frame_mtu();
    // Receive checksums are verified (and counted) by the classifier before smoltcp sees a
    // frame, so smoltcp never checks them. It computes transmit ones, except TCP's when the
    // device does (TCP payload is where the cost is; headers and ICMP are cheap).
    let mut sums = ChecksumCapabilities::ignored();
    sums.ipv4 = Checksum::Tx;
    sums.icmpv4 = Checksum::Tx;
    sums.icmpv6 = Checksum::Tx;
    sums.tcp = if caps.tx_checksum_offload {
        Checksum::None
    } else {
        Checksum::Tx
    };
    c.checksum = sums;
    c
}

/// smoltcp's view of our device while it sends: each frame goes straight to the device.
struct Egress<'a, D: PacketDevice> {
    dev: &'a mut D,
    now: Instant,
    caps: &'a DeviceCapabilities,
    stats: &'a StackStats,
    /// What went out, as far as the flow table cares.
    seen: &'a mut Seen,
}

/// What the frames a connection's turn produced said.
#[derive(Default)]
struct Seen {
    /// A neighbour solicitation (ARP request, NDP NS) went out instead of data.
    solicitation: bool,
    /// The acknowledgement number of the last TCP segment sent.
    ack: Option<u32>,
}

impl<D: PacketDevice> phy::TxToken for Egress<'_, D> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut f = Some(f);
        let mut out = None;
        let sent = self.dev.send(self.now, len, &mut |buf| {
            if let Some(f) = f.take() {
                out = Some(f(buf));
            }
            if is_solicitation(buf) {
                self.seen.solicitation = true;
            } else if let Some(ack) = tcp_ack(buf) {
                self.seen.ack = Some(ack);
            }
        });
        match sent {
            Ok(()) => self.stats.tx_frames.inc(),
            Err(_) => self.stats.tx_errors.inc(),
        }
        match out {
            Some(r) => r,
            // The device failed before asking for the bytes: build them anyway, then drop them
            // (TCP retransmits).
            None => (f.take().expect("unused closure"))(&mut vec![0; len]),
        }
    }
}

impl<D: PacketDevice> Egress<'_, D> {
    fn reborrow(&mut self) -> Egress<'_, D> {
        Egress {
            dev: self.dev,
            now: self.now,
            caps: self.caps,
            stats: self.stats,
            seen: self.seen,
        }
    }
}

/// smoltcp's view of our device: at most one frame we already hold to receive (none while
/// sending), and every frame smoltcp sends straight to the device.
struct SmolDevice<'a, 'f, D: PacketDevice> {
    frame: Option<&'f [u8]>,
    tx: Egress<'a, D>,
}

impl<'a, 'f, D: PacketDevice> SmolDevice<'a, 'f, D> {
    fn new(
        dev: &'a mut D,
        now: Instant,
        caps: &'a DeviceCapabilities,
        stats: &'a StackStats,
        seen: &'a mut Seen,
        frame: Option<&'f [u8]>,
    ) -> Self {
        SmolDevice {
            frame,
            tx: Egress {
                dev,
                now,
                caps,
                stats,
                seen,
            },
        }
    }
}

struct FrameRx<'f>(&'f [u8]);

impl phy::RxToken for FrameRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl<'a, 'f, D: PacketDevice> phy::Device for SmolDevice<'a, 'f, D> {
    type RxToken<'b>
        = FrameRx<'f>
    where
        Self: 'b;
    type TxToken<'b>
        = Egress<'b, D>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(FrameRx<'f>, Egress<'_, D>)> {
        let frame = self.frame.take()?;
        Some((FrameRx(frame), self.tx.reborrow()))
    }

    fn transmit(&mut self, _: Instant) -> Option<Egress<'_, D>> {
        Some(self.tx.reborrow())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.tx.caps.clone()
    }
}

/// The acknowledgement number of a TCP segment in an Ethernet frame (IPv4 or IPv6 without
/// extension headers), if it carries one.
fn tcp_ack(frame: &[u8]) -> Option<u32> {
    let tcp = match frame.get(12..14)? {
        [0x08, 0x00] => {
            let ihl = (*frame.get(14)? & 0x0f) as usize * 4;
            (*frame.get(23)? == 6).then_some(14 + ihl)?
        }
        [0x86, 0xdd] => (*frame.get(20)? == 6).then_some(54)?,
        _ => return None,
    };
    let flags = *frame.get(tcp + 13)?;
    let ack = frame.get(tcp + 8..tcp + 12)?;
    (flags & 0x10 != 0).then(|| u32::from_be_bytes([ack[0], ack[1], ack[2], ack[3]]))
}

/// Whether sequence number `a` is after `b` (modulo 2^32).
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// An ARP request or an NDP neighbour solicitation.
fn is_solicitation(frame: &[u8]) -> bool {
    const ARP: [u8; 2] = [0x08, 0x06];
    const IPV6: [u8; 2] = [0x86, 0xdd];
    const ICMPV6: u8 = 58;
    const NEIGHBOR_SOLICIT: u8 = 135;
    match frame.get(12..14) {
        Some(t) if t == ARP => true,
        Some(t) if t == IPV6 => {
            frame.get(20) == Some(&ICMPV6) && frame.get(54) == Some(&NEIGHBOR_SOLICIT)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{classify, Class};

    fn segment(v6: bool, flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&1000u16.to_be_bytes());
        tcp.extend_from_slice(&80u16.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&5u32.to_be_bytes());
        tcp.extend_from_slice(&[5 << 4, flags, 0x10, 0, 0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&(20 + tcp.len() as u16).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        }
        f.extend_from_slice(&tcp);
        f
    }

    fn head(frame: &[u8]) -> TcpHead {
        match classify(frame, false) {
            Class::Tcp(h) => h,
            other => panic!("not a TCP segment: {other:?}"),
        }
    }

    #[test]
    fn a_segment_past_a_closed_window_becomes_a_bare_ack_at_the_point_acknowledged() {
        for v6 in [false, true] {
            // ACK|PSH|FIN with 300 bytes, starting 4 bytes past what was acknowledged.
            let frame = segment(v6, 0x19, 1004, &[7; 300]);
            let bare = bare_ack_at(&frame, &head(&frame), 1000).unwrap();
            let h = head(&bare);
            assert_eq!(bare.len(), frame.len() - 300, "v6: {v6}");
            assert_eq!((h.seq, h.seq_end, h.ack, h.fin), (1000, 1000, true, false));
            assert_eq!(bare[h.tcp_at + 13], 0x10, "only ACK is left");
            assert_eq!(h.payload_at, bare.len());
            // The window and the acknowledgement number travel on unchanged.
            let (ack, window) = (h.tcp_at + 8..h.tcp_at + 12, h.tcp_at + 14..h.tcp_at + 16);
            assert_eq!(bare[ack.clone()], frame[ack]);
            assert_eq!(bare[window.clone()], frame[window]);
        }
    }
}
