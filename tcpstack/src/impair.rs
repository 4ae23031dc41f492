//! A lossy, slow link in front of any device: drops a share of frames and delays the rest, in
//! both directions, like `tc netem loss P delay D` on both ends of a wire. It exists for kernels
//! without netem (CONFIG_NET_SCH_NETEM unset, as on the CI machine) and for deterministic loss
//! in tests: the drop decisions come from a seeded generator.

use crate::device::{DeviceCaps, PacketDevice, VnetHeader};
use smoltcp::time::{Duration, Instant};
use std::collections::VecDeque;
use std::io;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// Share of frames dropped, 0.0 to 1.0, each direction.
    pub loss: f64,
    /// Added one-way delay, each direction.
    pub delay: Duration,
    pub seed: u64,
}

pub struct Impaired<D> {
    inner: D,
    cfg: Impairment,
    rng: u64,
    /// Frames received from the device (whether their checksums are known good, and their
    /// offload header), held until their time.
    rx: VecDeque<(Instant, Vec<u8>, bool, Option<VnetHeader>)>,
    last_ok: bool,
    last_offload: Option<VnetHeader>,
    /// Frames the stack sent, held until their time.
    tx: VecDeque<(Instant, Vec<u8>)>,
    scratch: Vec<u8>,
}

impl<D: PacketDevice> Impaired<D> {
    pub fn new(inner: D, cfg: Impairment) -> Self {
        Impaired {
            inner,
            cfg,
            rng: cfg.seed | 1,
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            last_ok: false,
            last_offload: None,
            scratch: vec![0; DeviceCaps::MAX_RX_FRAME],
        }
    }

    fn lose(&mut self) -> bool {
        // xorshift64: cheap and reproducible from the seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64 <= self.cfg.loss
    }

    /// Sends the delayed frames whose time has come.
    fn release_tx(&mut self, now: Instant) {
        while self.tx.front().is_some_and(|(at, _)| *at <= now) {
            let (_, frame) = self.tx.pop_front().expect("checked");
            let _ = self
                .inner
                .send(now, frame.len(), &mut |buf| buf.copy_from_slice(&frame));
        }
    }
}

impl<D: PacketDevice> PacketDevice for Impaired<D> {
    fn caps(&self) -> DeviceCaps {
        self.inner.caps()
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.release_tx(now);
        // Take in everything the device has, deciding each frame's fate on arrival.
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(n) = self.inner.recv(now, &mut scratch)? {
            let ok = self.inner.last_rx_checksum_ok();
            let offload = self.inner.last_rx_offload();
            if !self.lose() {
                self.rx
                    .push_back((now + self.cfg.delay, scratch[..n].to_vec(), ok, offload));
            }
        }
        self.scratch = scratch;
        match self.rx.front() {
            Some((at, ..)) if *at <= now => {
                let (_, frame, ok, offload) = self.rx.pop_front().expect("checked");
                self.last_ok = ok;
                self.last_offload = offload;
                let n = frame.len().min(buf.len());
                buf[..n].copy_from_slice(&frame[..n]);
                Ok(Some(n))
            }
            _ => Ok(None),
        }
    }

    fn send(
        &mut self,
        now: Instant,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        let mut frame = vec![0; len];
        fill(&mut frame);
        if !self.lose() {
            self.tx.push_back((now + self.cfg.delay, frame));
        }
        self.release_tx(now);
        Ok(())
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.raw_fd()
    }

    fn register_rx(&mut self, waker: &std::task::Waker) -> bool {
        self.inner.register_rx(waker)
    }

    fn idle(&mut self) {
        self.inner.idle()
    }

    fn flush_tx(&mut self) {
        self.inner.flush_tx()
    }

    fn last_rx_checksum_ok(&self) -> bool {
        self.last_ok
    }

    fn last_rx_offload(&self) -> Option<VnetHeader> {
        self.last_offload
    }

    fn next_timer(&self) -> Option<Instant> {
        let rx = self.rx.front().map(|f| f.0);
        let tx = self.tx.front().map(|f| f.0);
        rx.into_iter().chain(tx).min()
    }
}
