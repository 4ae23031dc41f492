//! The packet-device seam: what the stack needs from a NIC queue, a TAP device, a pcap file or an
//! in-memory wire. Frames are Ethernet frames. The DPDK port implements the same trait.

use smoltcp::time::Instant;
use std::io;

/// What a device tells the stack about itself.
#[derive(Clone, Copy, Debug)]
pub struct DeviceCaps {
    /// Largest IP packet the device carries (the link MTU, without the Ethernet header).
    pub ip_mtu: usize,
    /// The device delivers frames whose checksums it has already verified (TAP with a virtio
    /// header saying so, a NIC with rx checksum offload, an in-memory wire that cannot corrupt).
    pub rx_checksum_verified: bool,
    /// The device fills in (or does not need) TCP transmit checksums.
    pub tx_checksum_offload: bool,
}

impl DeviceCaps {
    pub const ETHERNET_HEADER: usize = 14;
    /// The largest frame a device may deliver: one IP packet of 64 KiB. Devices that coalesce
    /// segments (TAP with segmentation offload) deliver frames larger than their MTU.
    pub const MAX_RX_FRAME: usize = 65_535 + Self::ETHERNET_HEADER;

    pub fn frame_mtu(&self) -> usize {
        self.ip_mtu + Self::ETHERNET_HEADER
    }
}

/// A received frame a device lends in place (inside a DPDK mbuf): valid until the next receive
/// call on that device.
#[derive(Clone, Copy)]
pub struct LentFrame {
    ptr: *const u8,
    len: usize,
}

impl LentFrame {
    /// # Safety
    /// `ptr..ptr+len` must stay readable until the device's next `recv`/`recv_lent` call.
    pub unsafe fn new(ptr: *const u8, len: usize) -> LentFrame {
        LentFrame { ptr, len }
    }

    /// # Safety
    /// Only until the lending device is asked for another frame.
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        std::slice::from_raw_parts(self.ptr, self.len)
    }
}

/// A source and sink of Ethernet frames. `now` is the stack's clock (real or virtual), so that
/// wrappers such as the pcap recorder stamp frames with the time the stack acted on them.
pub trait PacketDevice {
    fn caps(&self) -> DeviceCaps;
    /// Copies the next received frame into `buf` (`DeviceCaps::MAX_RX_FRAME` long) and
    /// returns its length, or `None` when nothing is waiting.
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Whether `recv_lent` works: the stack then reads frames where the device keeps them.
    fn lends_rx(&self) -> bool {
        false
    }
    /// The next received frame, lent in place (no copy); for devices whose `lends_rx` is true.
    fn recv_lent(&mut self, _now: Instant) -> io::Result<Option<LentFrame>> {
        Ok(None)
    }
    /// Sends one frame of `len` bytes that `fill` writes.
    fn send(&mut self, now: Instant, len: usize, fill: &mut dyn FnMut(&mut [u8]))
        -> io::Result<()>;
    /// Hands frames the device has batched to the wire; the stack calls it after every round.
    fn flush_tx(&mut self) {}
    /// The file descriptor that becomes readable when frames arrive, for devices that have one.
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// For devices without a descriptor: wake `waker` when a frame arrives. Returns whether
    /// frames are already waiting (then nothing was registered).
    fn register_rx(&mut self, _waker: &std::task::Waker) -> bool {
        false
    }
    /// Whether the frame `recv` returned last is known to carry valid (or locally generated,
    /// not yet computed) checksums, so the stack need not verify them.
    fn last_rx_checksum_ok(&self) -> bool {
        false
    }
    /// The stack has nothing to do for now: a chance to write out anything buffered.
    fn idle(&mut self) {}
    /// When the device itself needs to be polled again (a device that holds frames back).
    fn next_timer(&self) -> Option<Instant> {
        None
    }
    /// The offload header (virtio-net) of the frame `recv` returned last, for devices that
    /// carry one: what must go with the frame if it is passed on unchanged to another device.
    fn last_rx_offload(&self) -> Option<VnetHeader> {
        None
    }
    /// Sends a frame received elsewhere, unchanged, with the offload header it came with.
    /// Devices that cannot carry the header get the frame with its checksum completed here.
    fn send_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
        offload: Option<&VnetHeader>,
    ) -> io::Result<()> {
        if let Some(h) = offload {
            if h.is_gso() && frame.len() > self.caps().frame_mtu() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a coalesced (GSO) frame larger than the MTU: this device cannot segment it",
                ));
            }
        }
        self.send(now, frame.len(), &mut |buf| {
            buf.copy_from_slice(frame);
            if let Some(h) = offload {
                h.complete_checksum(buf);
            }
        })
    }
}

/// `struct virtio_net_hdr` (without `num_buffers`), as a TAP with IFF_VNET_HDR puts before
/// every frame: flags, GSO type and sizes, and where a checksum left to the device goes.
/// Native byte order on little-endian hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHeader(pub [u8; VnetHeader::LEN]);

impl VnetHeader {
    pub const LEN: usize = 10;
    /// flags: the checksum from `csum_start` on is still to be computed.
    pub const NEEDS_CSUM: u8 = 1;
    /// flags: the sender has already verified the checksum.
    pub const DATA_VALID: u8 = 2;

    /// A frame whose TCP checksum is partial: it starts at `start`, the field is `offset` in.
    pub fn partial_checksum(start: usize, offset: usize) -> VnetHeader {
        let mut h = [0u8; Self::LEN];
        h[0] = Self::NEEDS_CSUM;
        h[6..8].copy_from_slice(&(start as u16).to_ne_bytes());
        h[8..10].copy_from_slice(&(offset as u16).to_ne_bytes());
        VnetHeader(h)
    }

    pub fn flags(&self) -> u8 {
        self.0[0]
    }

    /// A segmentation-offload frame: one TCP segment of up to 64 KiB the receiver splits.
    pub fn is_gso(&self) -> bool {
        self.0[1] != 0
    }

    /// Computes a checksum the header says was left to the device, as the device would: the
    /// one's-complement sum from `csum_start` to the end (the field already holds the
    /// pseudo-header sum), stored at `csum_start + csum_offset`. Frames not marked, or whose
    /// offsets do not fit, are left as they are.
    pub fn complete_checksum(&self, frame: &mut [u8]) {
        if self.flags() & Self::NEEDS_CSUM == 0 {
            return;
        }
        let start = u16::from_ne_bytes([self.0[6], self.0[7]]) as usize;
        let at = start + u16::from_ne_bytes([self.0[8], self.0[9]]) as usize;
        if at + 2 > frame.len() {
            return;
        }
        let mut sum = ones_sum(&frame[start..]);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        frame[at..at + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
}

/// Sum of big-endian 16-bit words (a last odd byte padded with zero).
pub(crate) fn ones_sum(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

impl<D: PacketDevice + ?Sized> PacketDevice for Box<D> {
    fn caps(&self) -> DeviceCaps {
        (**self).caps()
    }
    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        (**self).recv(now, buf)
    }
    fn lends_rx(&self) -> bool {
        (**self).lends_rx()
    }
    fn recv_lent(&mut self, now: Instant) -> io::Result<Option<LentFrame>> {
        (**self).recv_lent(now)
    }
    fn flush_tx(&mut self) {
        (**self).flush_tx()
    }
    fn send(
        &mut self,
        now: Instant,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        (**self).send(now, len, fill)
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        (**self).raw_fd()
    }
    fn register_rx(&mut self, waker: &std::task::Waker) -> bool {
        (**self).register_rx(waker)
    }
    fn last_rx_checksum_ok(&self) -> bool {
        (**self).last_rx_checksum_ok()
    }
    fn idle(&mut self) {
        (**self).idle()
    }
    fn next_timer(&self) -> Option<Instant> {
        (**self).next_timer()
    }
    fn last_rx_offload(&self) -> Option<VnetHeader> {
        (**self).last_rx_offload()
    }
    fn send_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
        offload: Option<&VnetHeader>,
    ) -> io::Result<()> {
        (**self).send_frame(now, frame, offload)
    }
}
