//! A DPDK port queue as a packet device (feature `dpdk`). Received frames are lent to the stack
//! inside their mbufs, a burst at a time; sent frames are written straight into mbufs from the
//! worker's own pool and handed to the driver a burst at a time, at the end of each round. No
//! heap allocation and no system call per packet.

use crate::device::{DeviceCaps, LentFrame, PacketDevice};
use sluice_hwconfig::dpdk::{Mempool, Port, Queued, RxBurst, TxBurst};
use smoltcp::time::Instant;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Address resolution shared among the stacks of one port. RSS spreads TCP flows over queues,
/// but ARP and NDP frames are not TCP: a NIC puts them on one queue, while the stack that asked
/// (or whose peer asked) may poll another. So every queue passes a copy of each ARP/NDP frame it
/// receives to the others. Only these rare frames cross cores; TCP segments never do.
pub struct NeighborFanout {
    inboxes: Vec<Mutex<VecDeque<Vec<u8>>>>,
    waiting: Vec<AtomicUsize>,
}

/// Frames an inbox holds at most; beyond that (an ARP flood) copies are dropped.
const INBOX_LIMIT: usize = 256;

impl NeighborFanout {
    pub fn new(queues: usize) -> Arc<NeighborFanout> {
        Arc::new(NeighborFanout {
            inboxes: (0..queues).map(|_| Mutex::new(VecDeque::new())).collect(),
            waiting: (0..queues).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    fn share(&self, from: usize, frame: &[u8]) {
        for (i, inbox) in self.inboxes.iter().enumerate() {
            if i == from {
                continue;
            }
            let mut q = inbox.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() < INBOX_LIMIT {
                q.push_back(frame.to_vec());
                self.waiting[i].store(q.len(), Ordering::Release);
            }
        }
    }

    fn take(&self, me: usize) -> Option<Vec<u8>> {
        // One relaxed-cost load per round when nothing waits.
        if self.waiting[me].load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut q = self.inboxes[me].lock().unwrap_or_else(|p| p.into_inner());
        let f = q.pop_front();
        self.waiting[me].store(q.len(), Ordering::Release);
        f
    }
}

/// Whether an Ethernet frame is ARP, or an IPv6 neighbour discovery message (ICMPv6 types
/// 133-137 right after the fixed header).
pub fn is_neighbor_frame(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x06]) => true,
        Some([0x86, 0xdd]) => {
            frame.get(20) == Some(&58) && frame.get(54).is_some_and(|t| (133..=137).contains(t))
        }
        _ => false,
    }
}

pub struct DpdkQueue {
    port: Arc<Port>,
    queue: u16,
    pool: Arc<Mempool>,
    ip_mtu: usize,
    rx: RxBurst,
    tx: TxBurst,
    /// With other queues of the port polled by other stacks: (the fan-out, this queue's index).
    fanout: Option<(Arc<NeighborFanout>, usize)>,
    /// A frame another queue shared, lent to the stack until the next receive call.
    shared: Vec<u8>,
}

impl DpdkQueue {
    pub fn new(port: Arc<Port>, queue: u16, pool: Arc<Mempool>, ip_mtu: usize) -> DpdkQueue {
        DpdkQueue {
            port,
            queue,
            pool,
            ip_mtu,
            rx: RxBurst::default(),
            tx: TxBurst::default(),
            fanout: None,
            shared: Vec::new(),
        }
    }

    /// Shares address resolution with the port's other queues (see [`NeighborFanout`]).
    pub fn with_fanout(mut self, fanout: Arc<NeighborFanout>, index: usize) -> DpdkQueue {
        self.fanout = Some((fanout, index));
        self
    }
}

impl PacketDevice for DpdkQueue {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            ip_mtu: self.ip_mtu,
            rx_checksum_verified: false,
            tx_checksum_offload: false,
        }
    }

    fn lends_rx(&self) -> bool {
        true
    }

    fn recv_lent(&mut self, _now: Instant) -> io::Result<Option<LentFrame>> {
        if let Some((fanout, me)) = &self.fanout {
            if let Some(f) = fanout.take(*me) {
                self.shared = f;
                // SAFETY: `shared` is only replaced by a later receive call.
                return Ok(Some(unsafe {
                    LentFrame::new(self.shared.as_ptr(), self.shared.len())
                }));
            }
        }
        let next = match self.rx.next_frame() {
            Some(f) => Some(f),
            None if self.rx.refill(&self.port, self.queue) > 0 => self.rx.next_frame(),
            None => None,
        };
        if let (Some((ptr, len)), Some((fanout, me))) = (next, &self.fanout) {
            // SAFETY: the mbuf is held by the burst until the next refill.
            let frame = unsafe { std::slice::from_raw_parts(ptr, len) };
            if is_neighbor_frame(frame) {
                fanout.share(*me, frame);
            }
        }
        // SAFETY: the mbuf stays with this burst until the next refill, which only a later
        // receive call makes.
        Ok(next.map(|(ptr, len)| unsafe { LentFrame::new(ptr, len) }))
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.recv_lent(now)?.map(|f| {
            // SAFETY: read before the next receive call.
            let frame = unsafe { f.bytes() };
            let n = frame.len().min(buf.len());
            buf[..n].copy_from_slice(&frame[..n]);
            n
        }))
    }

    fn send(
        &mut self,
        _now: Instant,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        match self.tx.push(&self.port, self.queue, &self.pool, len, fill) {
            Ok(Queued::Yes) => Ok(()),
            Ok(Queued::RingFull) => Err(io::Error::new(io::ErrorKind::WouldBlock, "TX ring full")),
            Ok(Queued::PoolEmpty) => Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "mempool exhausted",
            )),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    fn flush_tx(&mut self) {
        self.tx.flush(&self.port, self.queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbor_frames_are_recognised_and_shared_with_the_other_queues_only() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut ns = vec![0u8; 78];
        ns[12..14].copy_from_slice(&[0x86, 0xdd]);
        ns[20] = 58;
        ns[54] = 135;
        let mut tcp6 = ns.clone();
        tcp6[20] = 6;
        let mut ipv4 = vec![0u8; 60];
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert!(is_neighbor_frame(&arp) && is_neighbor_frame(&ns));
        assert!(!is_neighbor_frame(&tcp6) && !is_neighbor_frame(&ipv4) && !is_neighbor_frame(&[]));
        let f = NeighborFanout::new(3);
        f.share(1, &arp);
        assert_eq!(f.take(1), None);
        assert_eq!(f.take(0), Some(arp.clone()));
        assert_eq!(f.take(2), Some(arp.clone()));
        assert_eq!(f.take(0), None);
        for _ in 0..1000 {
            f.share(0, &arp);
        }
        let mut n = 0;
        while f.take(1).is_some() {
            n += 1;
        }
        assert_eq!(n, INBOX_LIMIT);
    }
}
