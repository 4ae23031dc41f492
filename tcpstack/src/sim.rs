//! Virtual time: stacks driven by events instead of a clock, for replay tests, the fuzz target
//! and benchmarks. A [`Node`] is a stack plus a synchronous application; [`simulate`] wires two
//! nodes through a scripted link; [`replay`] feeds a node captured frames at their timestamps.
//! Both decide what happens next by the same rule (earliest event; a frame before a timer at
//! the same instant), so a node replayed with the frames it received in a simulation emits the
//! same frames, byte for byte, at the same times.

use crate::device::{DeviceCaps, PacketDevice};
use crate::stack::{Stack, StackConfig};
use smoltcp::time::{Duration, Instant};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;

/// A device that only collects what the stack sends; frames come in through `Node::step`.
pub struct QueueDevice {
    caps: DeviceCaps,
    pub sent: Vec<Vec<u8>>,
}

impl QueueDevice {
    pub fn new(ip_mtu: usize) -> QueueDevice {
        QueueDevice {
            caps: DeviceCaps {
                ip_mtu,
                rx_checksum_verified: false,
                tx_checksum_offload: false,
            },
            sent: Vec::new(),
        }
    }
}

impl PacketDevice for QueueDevice {
    fn caps(&self) -> DeviceCaps {
        self.caps
    }
    fn recv(&mut self, _: Instant, _: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(None)
    }
    fn send(&mut self, _: Instant, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        let mut f = vec![0; len];
        fill(&mut f);
        self.sent.push(f);
        Ok(())
    }
}

pub type SimStack = Stack<QueueDevice>;

/// An application on a simulated stack: runs after every event, synchronously.
pub trait App {
    fn run(&mut self, stack: &mut SimStack);
    /// A time the application wants to run at even if nothing arrives.
    fn next_wake(&self) -> Option<Instant> {
        None
    }
}

pub struct Node {
    pub stack: SimStack,
    pub app: Box<dyn App>,
}

/// Timed frames.
pub type Frames = Vec<(Instant, Vec<u8>)>;

impl Node {
    pub fn new(config: &StackConfig, ip_mtu: usize, app: Box<dyn App>) -> Node {
        let stack = Stack::new(config, QueueDevice::new(ip_mtu), Instant::from_millis(0))
            .expect("valid simulation config");
        Node { stack, app }
    }

    /// When this node next needs to run without a frame arriving.
    pub fn next_wake(&self) -> Option<Instant> {
        let app = self.app.next_wake().filter(|t| *t > self.stack.now());
        self.stack.next_deadline().into_iter().chain(app).min()
    }

    /// Delivers `frame` (or only lets time pass) at `now`, runs the application, and returns
    /// what the stack sent.
    pub fn step(&mut self, now: Instant, frame: Option<&[u8]>) -> Vec<Vec<u8>> {
        match frame {
            Some(f) => self.stack.receive_frame(now, f),
            None => self.stack.advance(now),
        }
        self.app.run(&mut self.stack);
        self.stack.advance(now);
        std::mem::take(&mut self.stack.device_mut().sent)
    }
}

/// Steps allowed at one instant before a simulation is declared stuck.
const MAX_STEPS_PER_INSTANT: usize = 100_000;

/// Feeds `input` to `node` at the frames' times, running its timers in between, until `until`.
/// Returns what it sent.
pub fn replay(node: &mut Node, input: &[(Instant, Vec<u8>)], until: Instant) -> Frames {
    let start = Instant::from_millis(0);
    let mut out: Frames = node
        .step(start, None)
        .into_iter()
        .map(|f| (start, f))
        .collect();
    let mut i = 0;
    let mut same = (Instant::from_millis(-1), 0);
    loop {
        let frame_at = input.get(i).map(|f| f.0);
        let wake = node.next_wake();
        let (at, frame) = match (frame_at, wake) {
            (Some(f), Some(w)) if w < f => (w, None),
            (Some(f), _) => (f, Some(&input[i].1)),
            (None, Some(w)) => (w, None),
            (None, None) => break,
        };
        if at > until {
            break;
        }
        if frame.is_some() {
            i += 1;
        }
        same = if same.0 == at {
            (at, same.1 + 1)
        } else {
            (at, 0)
        };
        assert!(same.1 < MAX_STEPS_PER_INSTANT, "replay stuck at {at}");
        for f in node.step(at, frame.map(|f| f.as_slice())) {
            out.push((at, f));
        }
    }
    out
}

/// What the link does with a frame: (direction 0 = a→b or 1 = b→a, index in that direction).
pub enum Fate {
    Deliver,
    Drop,
    /// Deliver this much later than the link's latency.
    Hold(Duration),
}

/// What crossed the link during a simulation, from `b`'s point of view.
#[derive(Default)]
pub struct Trace {
    /// Frames `b` received, at the times it received them.
    pub b_in: Frames,
    /// Frames `b` sent.
    pub b_out: Frames,
}

/// Runs `a` and `b` joined by a link of `latency`, each frame passing `fate` first, until
/// `until` or until nothing is left to happen.
pub fn simulate(
    a: &mut Node,
    b: &mut Node,
    latency: Duration,
    mut fate: impl FnMut(usize, u64, &[u8]) -> Fate,
    until: Instant,
) -> Trace {
    let mut trace = Trace::default();
    // (arrival, sequence, to-node, frame): the sequence keeps equal arrivals in send order.
    let mut wire: Wire = BinaryHeap::new();
    let mut seq = 0u64;
    let mut sent = [0u64; 2];
    let mut same = (Instant::from_millis(-1), 0);
    // Both applications start at time zero, a first.
    let start = Instant::from_millis(0);
    let mut starting = vec![
        (start, 0, a.step(start, None)),
        (start, 1, b.step(start, None)),
    ];
    starting.reverse();
    loop {
        let (at, node_idx, out) = match starting.pop() {
            Some(first) => first,
            None => match next_event(&wire, a, b) {
                None => break,
                Some((at, _)) if at > until => break,
                Some((at, who)) => {
                    same = if same.0 == at {
                        (at, same.1 + 1)
                    } else {
                        (at, 0)
                    };
                    assert!(same.1 < MAX_STEPS_PER_INSTANT, "simulation stuck at {at}");
                    match who {
                        None => {
                            let Reverse((at, _, to, frame)) = wire.pop().expect("peeked");
                            if to == 1 {
                                trace.b_in.push((at, frame.clone()));
                            }
                            let node = if to == 0 { &mut *a } else { &mut *b };
                            (at, to, node.step(at, Some(&frame)))
                        }
                        Some(0) => (at, 0, a.step(at, None)),
                        Some(_) => (at, 1, b.step(at, None)),
                    }
                }
            },
        };
        for frame in out {
            if node_idx == 1 {
                trace.b_out.push((at, frame.clone()));
            }
            let index = sent[node_idx];
            sent[node_idx] += 1;
            let delay = match fate(node_idx, index, &frame) {
                Fate::Drop => continue,
                Fate::Deliver => latency,
                Fate::Hold(extra) => latency + extra,
            };
            wire.push(Reverse((at + delay, seq, 1 - node_idx, frame)));
            seq += 1;
        }
    }
    trace
}

type Wire = BinaryHeap<Reverse<(Instant, u64, usize, Vec<u8>)>>;

/// The earliest event: a frame arriving (`None`) or a node's wake-up (`Some(node)`). At equal
/// times a frame goes first, then node a, then node b.
fn next_event(wire: &Wire, a: &Node, b: &Node) -> Option<(Instant, Option<usize>)> {
    let mut pick: Option<(Instant, Option<usize>)> =
        wire.peek().map(|Reverse((at, _, _, _))| (*at, None));
    for (n, w) in [a.next_wake(), b.next_wake()].into_iter().enumerate() {
        if let Some(w) = w {
            if pick.is_none_or(|(t, _)| w < t) {
                pick = Some((w, Some(n)));
            }
        }
    }
    pick
}
