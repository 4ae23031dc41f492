//! A DPDK port queue as a packet device (feature `dpdk`). Received frames are lent to the stack
//! inside their mbufs, a burst at a time; sent frames are written straight into mbufs from the
//! worker's own pool and handed to the driver a burst at a time, at the end of each round. No
//! heap allocation and no system call per packet.

use crate::device::{DeviceCaps, LentFrame, PacketDevice};
use sluice_hwconfig::dpdk::{Mempool, Port, Queued, RxBurst, TxBurst};
use smoltcp::time::Instant;
use std::io;
use std::sync::Arc;

pub struct DpdkQueue {
    port: Arc<Port>,
    queue: u16,
    pool: Arc<Mempool>,
    ip_mtu: usize,
    rx: RxBurst,
    tx: TxBurst,
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
        }
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
        let next = match self.rx.next_frame() {
            Some(f) => Some(f),
            None if self.rx.refill(&self.port, self.queue) > 0 => self.rx.next_frame(),
            None => None,
        };
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
