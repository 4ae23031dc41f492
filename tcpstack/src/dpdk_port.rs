//! A DPDK port queue as a packet device (feature `dpdk`): the stack's frames go straight into
//! mbufs from the worker's pool; received frames are read inside their mbufs and copied into
//! the stack's buffer (one copy, to be removed when the device seam takes borrowed frames).

use crate::device::{DeviceCaps, PacketDevice};
use sluice_hwconfig::dpdk::{Mempool, Port};
use smoltcp::time::Instant;
use std::io;
use std::rc::Rc;

pub struct DpdkQueue {
    port: Rc<Port>,
    queue: u16,
    pool: Rc<Mempool>,
    ip_mtu: usize,
}

impl DpdkQueue {
    pub fn new(port: Rc<Port>, queue: u16, pool: Rc<Mempool>, ip_mtu: usize) -> DpdkQueue {
        DpdkQueue {
            port,
            queue,
            pool,
            ip_mtu,
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

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut len = None;
        self.port.receive(self.queue, 1, |frame| {
            let n = frame.len().min(buf.len());
            buf[..n].copy_from_slice(&frame[..n]);
            len = Some(n);
        });
        Ok(len)
    }

    fn send(
        &mut self,
        _now: Instant,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        match self.port.send_with(self.queue, &self.pool, len, fill) {
            Ok(true) => Ok(()),
            Ok(false) => Err(io::Error::new(io::ErrorKind::WouldBlock, "TX queue full")),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}
