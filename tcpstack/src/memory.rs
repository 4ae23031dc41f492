//! An in-memory wire: two devices whose sends are the other's receives. It wires two stacks
//! together in tests and benchmarks, on one thread, with no kernel involved. A wire can drop,
//! hold back or reorder frames on purpose, so tests can exercise loss and reordering.

use crate::device::{DeviceCaps, PacketDevice};
use smoltcp::time::Instant;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

/// What the wire does to a frame on its way.
pub enum Verdict {
    Deliver,
    Drop,
    /// Deliver after the next frame in the same direction (a one-step reordering).
    Delay,
}

/// Decides each frame's fate: (direction 0 = a→b, 1 = b→a, index of the frame in that direction).
pub type Impairment = Box<dyn FnMut(usize, u64, &[u8]) -> Verdict>;

#[derive(Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    held: Option<Vec<u8>>,
    sent: u64,
    /// The receiving end's driver, waiting for frames.
    waker: Option<std::task::Waker>,
}

struct Wire {
    queues: [Queue; 2],
    impairment: Option<Impairment>,
    /// Spent frame buffers, reused so a steady flow does not allocate.
    spare: Vec<Vec<u8>>,
}

/// One end of an in-memory wire.
pub struct MemoryDevice {
    wire: Rc<RefCell<Wire>>,
    /// Direction this end sends in.
    dir: usize,
    caps: DeviceCaps,
}

/// Creates the two ends of a wire with the given IP MTU.
pub fn pair(ip_mtu: usize) -> (MemoryDevice, MemoryDevice) {
    pair_with(ip_mtu, None)
}

/// A wire whose frames pass through `impairment` first.
pub fn pair_with(ip_mtu: usize, impairment: Option<Impairment>) -> (MemoryDevice, MemoryDevice) {
    let wire = Rc::new(RefCell::new(Wire {
        queues: [Queue::default(), Queue::default()],
        impairment,
        spare: Vec::new(),
    }));
    // Nothing on this wire can corrupt a frame, so neither end computes or checks checksums.
    let caps = DeviceCaps {
        ip_mtu,
        rx_checksum_verified: true,
        tx_checksum_offload: true,
    };
    let a = MemoryDevice {
        wire: wire.clone(),
        dir: 0,
        caps,
    };
    let b = MemoryDevice { wire, dir: 1, caps };
    (a, b)
}

impl MemoryDevice {
    /// Frames waiting for the other end.
    pub fn in_flight(&self) -> usize {
        self.wire.borrow().queues[self.dir].frames.len()
    }

    /// Frames waiting for this end.
    pub fn pending(&self) -> usize {
        self.wire.borrow().queues[1 - self.dir].frames.len()
    }

    /// Uses checksums as a real link would (for tests that corrupt frames on purpose).
    pub fn with_checksums(mut self) -> Self {
        self.caps.rx_checksum_verified = false;
        self.caps.tx_checksum_offload = false;
        self
    }
}

impl PacketDevice for MemoryDevice {
    fn caps(&self) -> DeviceCaps {
        self.caps
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut wire = self.wire.borrow_mut();
        let Some(frame) = wire.queues[1 - self.dir].frames.pop_front() else {
            return Ok(None);
        };
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        wire.spare.push(frame);
        Ok(Some(n))
    }

    fn send(
        &mut self,
        _now: Instant,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        let mut wire = self.wire.borrow_mut();
        let mut frame = wire.spare.pop().unwrap_or_default();
        frame.clear();
        frame.resize(len, 0);
        fill(&mut frame);
        let wire = &mut *wire;
        let q = &mut wire.queues[self.dir];
        let index = q.sent;
        q.sent += 1;
        let verdict = match wire.impairment.as_mut() {
            Some(f) => f(self.dir, index, &frame),
            None => Verdict::Deliver,
        };
        if let Some(w) = q.waker.take() {
            w.wake();
        }
        match verdict {
            Verdict::Drop => wire.spare.push(frame),
            Verdict::Delay => {
                if let Some(previous) = q.held.replace(frame) {
                    q.frames.push_back(previous);
                }
            }
            Verdict::Deliver => {
                q.frames.push_back(frame);
                if let Some(held) = q.held.take() {
                    q.frames.push_back(held);
                }
            }
        }
        Ok(())
    }

    fn register_rx(&mut self, waker: &std::task::Waker) -> bool {
        let mut wire = self.wire.borrow_mut();
        let q = &mut wire.queues[1 - self.dir];
        if !q.frames.is_empty() {
            return true;
        }
        q.waker = Some(waker.clone());
        false
    }
}
