//! Deterministic replay under virtual time.
//!
//! Each scenario runs a client stack and a server stack (an echo application) through a
//! scripted link in virtual time. What the server received is its input capture; what it sent
//! is its golden output. The test checks, every run:
//! 1. the scenario's own properties (bytes intact, a retransmission happened, a zero window was
//!    advertised and reopened, ...), read from the frames;
//! 2. the simulation produced exactly the committed captures (`testdata/replay/*.pcap`);
//! 3. a fresh server fed the committed input capture at its timestamps emits exactly the
//!    committed output, byte for byte and microsecond for microsecond.
//!
//! `SLUICE_BLESS=1 cargo test -p sluice-tcpstack --test replay` rewrites the captures after an
//! intended change; `tcpdump -r` reads them.

mod common;

use sluice_tcpstack::pcap::{read_frames, PcapSink};
use sluice_tcpstack::sim::{replay, simulate, App, Fate, Frames, Node, SimStack};
use sluice_tcpstack::stack::{FlowRef, ListenerId};
use sluice_tcpstack::{Instant, StackConfig};
use smoltcp::socket::tcp::{RecvError, State};
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::Waker;

const MTU: usize = 1500;
const SERVER: &str = "10.0.0.2:7";

/// Echoes every connection; optionally does not read at all until `stall_until`.
struct Echo {
    listener: Option<ListenerId>,
    conns: Vec<(FlowRef, Vec<u8>)>,
    stall_until: Option<Instant>,
    /// Connections that ended in a reset, seen from the application.
    resets: Rc<RefCell<usize>>,
}

impl App for Echo {
    fn run(&mut self, st: &mut SimStack) {
        let l = *self
            .listener
            .get_or_insert_with(|| st.listen(SERVER.parse().unwrap()).unwrap());
        while let Some((f, _)) = st.accept(l, Waker::noop()) {
            self.conns.push((f, Vec::new()));
        }
        let stalled = self.stall_until.is_some_and(|t| st.now() < t);
        let resets = self.resets.clone();
        self.conns.retain_mut(|(f, pending)| {
            let alive = st.with_socket(*f, |s| {
                if !stalled {
                    let mut buf = [0u8; 8192];
                    loop {
                        match s.recv_slice(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                            Err(RecvError::Finished) => break,
                            Err(RecvError::InvalidState) => {
                                *resets.borrow_mut() += 1;
                                return false;
                            }
                        }
                    }
                }
                if !pending.is_empty() {
                    if let Ok(n) = s.send_slice(pending) {
                        pending.drain(..n);
                    }
                }
                if pending.is_empty() && !s.may_recv() && s.state() == State::CloseWait {
                    s.close();
                }
                s.state() != State::Closed
            });
            match alive {
                Some(true) => true,
                _ => {
                    st.release(*f);
                    false
                }
            }
        });
    }

    fn next_wake(&self) -> Option<Instant> {
        self.stall_until
    }
}

/// Connects, sends `data`, half-closes, and collects the echo until the server closes.
struct Client {
    target: SocketAddr,
    data: Vec<u8>,
    sent: usize,
    flow: Option<FlowRef>,
    received: Rc<RefCell<Vec<u8>>>,
    /// Reset the connection once this many bytes are sent.
    abort_after: Option<usize>,
    finished: Rc<RefCell<bool>>,
}

impl Client {
    fn new(target: &str, data: Vec<u8>) -> Client {
        Client {
            target: target.parse().unwrap(),
            data,
            sent: 0,
            flow: None,
            received: Rc::default(),
            abort_after: None,
            finished: Rc::default(),
        }
    }
}

impl App for Client {
    fn run(&mut self, st: &mut SimStack) {
        let f = *self
            .flow
            .get_or_insert_with(|| st.connect(self.target).unwrap());
        let (data, sent, abort_after) = (&self.data, &mut self.sent, self.abort_after);
        let received = self.received.clone();
        let state = st.with_socket(f, |s| {
            if s.may_send() && *sent < data.len() {
                let upto = abort_after.unwrap_or(data.len()).min(data.len());
                if let Ok(n) = s.send_slice(&data[*sent..upto]) {
                    *sent += n;
                }
                if abort_after.is_some_and(|a| *sent >= a) {
                    s.abort();
                    return s.state();
                }
                if *sent == data.len() {
                    s.close();
                }
            }
            let mut buf = [0u8; 8192];
            while let Ok(n) = s.recv_slice(&mut buf) {
                if n == 0 {
                    break;
                }
                received.borrow_mut().extend_from_slice(&buf[..n]);
            }
            s.state()
        });
        if matches!(state, None | Some(State::Closed) | Some(State::TimeWait)) {
            *self.finished.borrow_mut() = true;
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn config(last: u8, rx_buffer: usize) -> StackConfig {
    let mut c = common::config(last);
    c.tcp.rx_buffer = rx_buffer;
    c
}

/// A TCP segment's fields, for the scenario checks.
struct Seg {
    seq: u32,
    ack: u32,
    window: u16,
    len: usize,
    syn: bool,
    fin: bool,
    rst: bool,
}

fn tcp_of(frame: &[u8]) -> Option<Seg> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(Seg {
        seq: t.seq_number().0 as u32,
        ack: t.ack_number().0 as u32,
        window: t.window_len(),
        len: t.payload().len(),
        syn: t.syn(),
        fin: t.fin(),
        rst: t.rst(),
    })
}

fn data_segments(frames: &Frames) -> Vec<Seg> {
    frames
        .iter()
        .filter_map(|(_, f)| tcp_of(f))
        .filter(|s| s.len > 0)
        .collect()
}

fn is_arp(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x06])
}

fn testdata(name: &str, side: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/replay/{name}.{side}.pcap"))
}

fn write_pcap(path: &Path, frames: &Frames) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut sink = PcapSink::create(path).unwrap();
    for (at, f) in frames {
        sink.write(*at, f).unwrap();
    }
    sink.flush().unwrap();
}

fn load_pcap(path: &Path) -> Frames {
    read_frames(path)
        .unwrap_or_else(|e| panic!("{e} (SLUICE_BLESS=1 writes the golden captures)"))
        .into_iter()
        .map(|f| (Instant::from_micros(f.at.as_micros() as i64), f.data))
        .collect()
}

fn same_frames(what: &str, got: &Frames, want: &Frames) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} frames, golden has {}",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.0 == w.0 && g.1 == w.1,
            "{what}: frame {i} differs (at {} vs golden {})",
            g.0,
            w.0
        );
    }
}

/// Checks the simulation against the golden captures, then replays the input into a fresh
/// server and checks its output.
fn check_golden(
    name: &str,
    trace_in: &Frames,
    trace_out: &Frames,
    fresh_server: impl FnOnce() -> Node,
) {
    let (pin, pout) = (testdata(name, "in"), testdata(name, "out"));
    if std::env::var("SLUICE_BLESS").as_deref() == Ok("1") {
        write_pcap(&pin, trace_in);
        write_pcap(&pout, trace_out);
    }
    let golden_in = load_pcap(&pin);
    let golden_out = load_pcap(&pout);
    same_frames(&format!("{name}: simulated input"), trace_in, &golden_in);
    same_frames(&format!("{name}: simulated output"), trace_out, &golden_out);
    let mut server = fresh_server();
    let until = golden_out.last().map_or(Instant::from_secs(0), |f| f.0) + Duration::from_secs(120);
    let replayed = replay(&mut server, &golden_in, until);
    same_frames(&format!("{name}: replayed output"), &replayed, &golden_out);
}

struct Run {
    trace_in: Frames,
    trace_out: Frames,
    received: Vec<u8>,
    finished: bool,
    resets: usize,
    server_flows: usize,
}

fn run_scenario(
    client: Client,
    echo_stall: Option<Instant>,
    server_rx: usize,
    fate: impl FnMut(usize, u64, &[u8]) -> Fate,
) -> (Run, impl Fn() -> Node) {
    let received = client.received.clone();
    let finished = client.finished.clone();
    let mut a = Node::new(&config(1, 256 * 1024), MTU, Box::new(client));
    let resets = Rc::new(RefCell::new(0));
    let make_server = {
        let resets = resets.clone();
        move || {
            Node::new(
                &config(2, server_rx),
                MTU,
                Box::new(Echo {
                    listener: None,
                    conns: Vec::new(),
                    stall_until: echo_stall,
                    resets: resets.clone(),
                }),
            )
        }
    };
    let mut b = make_server();
    let trace = simulate(
        &mut a,
        &mut b,
        Duration::from_millis(1),
        fate,
        Instant::from_secs(60),
    );
    let run = Run {
        trace_in: trace.b_in,
        trace_out: trace.b_out,
        received: received.borrow().clone(),
        finished: *finished.borrow(),
        resets: *resets.borrow(),
        server_flows: b.stack.flow_count(),
    };
    (run, make_server)
}

#[test]
fn handshake_data_both_ways_fin_and_arp() {
    let data = pattern(20_000);
    let (run, fresh) = run_scenario(
        Client::new(SERVER, data.clone()),
        None,
        256 * 1024,
        |_, _, _| Fate::Deliver,
    );
    assert!(
        run.received == data,
        "echo differs ({} of {} bytes)",
        run.received.len(),
        data.len()
    );
    assert!(run.finished, "the connection did not close");
    // ARP first: the client asked, the server answered before anything else.
    assert!(is_arp(&run.trace_in[0].1) && is_arp(&run.trace_out[0].1));
    let segs: Vec<Seg> = run
        .trace_out
        .iter()
        .filter_map(|(_, f)| tcp_of(f))
        .collect();
    assert!(segs.iter().any(|s| s.syn), "no SYN-ACK");
    assert!(segs.iter().any(|s| s.fin), "no FIN from the server");
    // The server's FIN came after the client's (half-close: it echoed everything first).
    let client_fin = run
        .trace_in
        .iter()
        .position(|(_, f)| tcp_of(f).is_some_and(|s| s.fin))
        .unwrap();
    let server_fin_at = run
        .trace_out
        .iter()
        .find(|(_, f)| tcp_of(f).is_some_and(|s| s.fin))
        .unwrap()
        .0;
    assert!(server_fin_at >= run.trace_in[client_fin].0);
    assert_eq!(
        run.server_flows, 0,
        "the server's flow was not removed after closing"
    );
    check_golden("handshake_data_fin", &run.trace_in, &run.trace_out, fresh);
}

#[test]
fn loss_is_repaired_by_retransmission_both_ways() {
    let data = pattern(60_000);
    // Drop the third data segment each side sends (a first transmission).
    let mut data_sent = [0; 2];
    let (run, fresh) = run_scenario(
        Client::new(SERVER, data.clone()),
        None,
        256 * 1024,
        |dir, _, frame| {
            if tcp_of(frame).is_some_and(|s| s.len > 0) {
                data_sent[dir] += 1;
                if data_sent[dir] == 3 {
                    return Fate::Drop;
                }
            }
            Fate::Deliver
        },
    );
    assert!(run.received == data, "echo differs after loss");
    let out = data_segments(&run.trace_out);
    let resent = out
        .iter()
        .enumerate()
        .any(|(i, s)| out[..i].iter().any(|p| p.seq == s.seq && p.len == s.len));
    assert!(resent, "the server never retransmitted its lost segment");
    let inp = data_segments(&run.trace_in);
    let late = inp.windows(2).any(|w| w[1].seq < w[0].seq);
    assert!(
        late,
        "the client's retransmission never arrived out of sequence"
    );
    check_golden("loss_retransmit", &run.trace_in, &run.trace_out, fresh);
}

#[test]
fn out_of_order_segments_are_reassembled() {
    let data = pattern(30_000);
    // Hold the client's 6th frame back by 3 ms: later segments overtake it.
    let (run, fresh) = run_scenario(
        Client::new(SERVER, data.clone()),
        None,
        256 * 1024,
        |dir, i, _| match (dir, i) {
            (0, 5) => Fate::Hold(Duration::from_millis(3)),
            _ => Fate::Deliver,
        },
    );
    assert!(run.received == data, "echo differs after reordering");
    let inp = data_segments(&run.trace_in);
    assert!(
        inp.windows(2).any(|w| w[1].seq < w[0].seq),
        "nothing arrived out of order"
    );
    // The segments after the gap were acknowledged as duplicates of the gap's start.
    let acks: Vec<u32> = run
        .trace_out
        .iter()
        .filter_map(|(_, f)| tcp_of(f))
        .filter(|s| s.len == 0 && !s.syn && !s.fin)
        .map(|s| s.ack)
        .collect();
    assert!(
        acks.windows(2).any(|w| w[0] == w[1]),
        "no duplicate ACK for the gap"
    );
    check_golden("out_of_order", &run.trace_in, &run.trace_out, fresh);
}

#[test]
fn zero_window_then_window_update() {
    let data = pattern(16_000);
    // The server reads nothing for 3 s with a 4 KiB receive buffer: long enough for the client
    // to probe the closed window.
    let (run, fresh) = run_scenario(
        Client::new(SERVER, data.clone()),
        Some(Instant::from_millis(3000)),
        4096,
        |_, _, _| Fate::Deliver,
    );
    assert!(run.received == data, "echo differs after a zero window");
    let segs: Vec<(Instant, Seg)> = run
        .trace_out
        .iter()
        .filter_map(|(t, f)| tcp_of(f).map(|s| (*t, s)))
        .collect();
    let zero = segs
        .iter()
        .position(|(_, s)| s.window == 0 && !s.rst)
        .expect("no zero window advertised");
    let reopened = segs[zero..]
        .iter()
        .find(|(_, s)| s.window > 0)
        .expect("window never reopened");
    assert!(
        reopened.0 >= Instant::from_millis(3000),
        "window reopened before the application read"
    );
    // The client probed the closed window.
    assert!(
        run.trace_in
            .iter()
            .filter(|(t, _)| *t > segs[zero].0 && *t < reopened.0)
            .count()
            > 0,
        "no window probe"
    );
    check_golden("zero_window", &run.trace_in, &run.trace_out, fresh);
}

#[test]
fn rst_for_a_closed_port_and_for_an_aborted_connection() {
    // A SYN to a port nobody listens on gets a RST.
    let (run, fresh) = run_scenario(
        Client::new("10.0.0.2:9", vec![1, 2, 3]),
        None,
        256 * 1024,
        |_, _, _| Fate::Deliver,
    );
    let segs: Vec<Seg> = run
        .trace_out
        .iter()
        .filter_map(|(_, f)| tcp_of(f))
        .collect();
    assert!(segs.iter().any(|s| s.rst), "no RST for the closed port");
    assert!(run.finished);
    check_golden("rst_closed_port", &run.trace_in, &run.trace_out, fresh);

    // A client that resets mid-transfer: the server's application sees the reset and the flow goes.
    let mut client = Client::new(SERVER, pattern(10_000));
    client.abort_after = Some(3000);
    let (run, fresh) = run_scenario(client, None, 256 * 1024, |_, _, _| Fate::Deliver);
    assert!(
        run.trace_in
            .iter()
            .any(|(_, f)| tcp_of(f).is_some_and(|s| s.rst)),
        "the client sent no RST"
    );
    assert_eq!(
        run.resets, 1,
        "the server application did not see the reset"
    );
    assert_eq!(run.server_flows, 0);
    check_golden("rst_abort", &run.trace_in, &run.trace_out, fresh);
}
