//! A TAP device (/dev/net/tun in TAP mode): Ethernet frames to and from the host kernel. On a
//! laptop the kernel side of the TAP is the host's (or a namespace's) network; the userspace
//! stack behind it owns its own MAC and IP addresses, like a virtual machine would.

use crate::device::{ones_sum, DeviceCaps, PacketDevice, VnetHeader};
use smoltcp::time::Instant;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
/// TUNSETOFFLOAD flags: this end takes frames whose checksum the kernel left to be computed,
/// and TCP segments coalesced beyond the MTU (IPv4, IPv6): the kernel hands over up to 64 KiB
/// of a flow in one frame instead of one frame per MSS.
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

const VNET_HDR_LEN: usize = VnetHeader::LEN;

/// `struct ifreq` with the two union members used here.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    value: IfReqValue,
}

#[repr(C)]
union IfReqValue {
    flags: libc::c_short,
    mtu: libc::c_int,
    _pad: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let c = CString::new(name).map_err(|_| invalid(name, "contains a NUL byte"))?;
        let bytes = c.as_bytes_with_nul();
        if bytes.len() > libc::IFNAMSIZ {
            return Err(invalid(name, "longer than 15 bytes"));
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            value: IfReqValue { _pad: [0; 24] },
        };
        for (d, s) in req.name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        Ok(req)
    }
}

fn invalid(name: &str, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("TAP device name {name:?}: {why}"),
    )
}

pub struct TapDevice {
    fd: OwnedFd,
    name: String,
    ip_mtu: usize,
    scratch: Vec<u8>,
    /// Frames carry a virtio-net header: TCP checksums are neither computed nor verified on
    /// this link (the kernel marks frames it made or checked; we mark ours as partial).
    vnet: bool,
    last_rx_ok: bool,
    last_rx_header: VnetHeader,
}

/// How `TapDevice::attach` opens a TAP.
#[derive(Clone, Copy, Debug, Default)]
pub struct TapMode {
    /// Frames carry a virtio-net header.
    pub vnet_header: bool,
    /// With the header: the kernel may hand over partial checksums and coalesced segments.
    pub offloads: bool,
    /// One queue of a multi-queue TAP (one per stack that shares it).
    pub multi_queue: bool,
    /// Set the kernel side's MTU and bring it up (otherwise left as whoever made it set it).
    pub configure_link: bool,
}

impl TapDevice {
    /// Creates the TAP device `name` (or attaches to an existing one of that name), sets its
    /// MTU and brings it up. Needs CAP_NET_ADMIN. With `checksum_offload`, frames carry a
    /// virtio-net header so TCP checksums cost nothing on either side of the TAP.
    pub fn open(name: &str, ip_mtu: usize, checksum_offload: bool) -> io::Result<TapDevice> {
        let mode = TapMode {
            vnet_header: checksum_offload,
            offloads: checksum_offload,
            multi_queue: false,
            configure_link: true,
        };
        TapDevice::attach(name, ip_mtu, mode)
    }

    /// Creates or attaches to the TAP `name` as `mode` says. `ip_mtu` is the largest IP packet
    /// this end sends and expects.
    pub fn attach(name: &str, ip_mtu: usize, mode: TapMode) -> io::Result<TapDevice> {
        let explain = |e: io::Error, what: &str| -> io::Error {
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    " (TAP mode needs root or CAP_NET_ADMIN)".to_string()
                }
                Some(libc::ENOENT) | Some(libc::ENODEV) => {
                    " (is the tun module loaded? try: modprobe tun)".to_string()
                }
                Some(libc::EBUSY) => format!(" (another process holds {name})"),
                Some(libc::EINVAL) if mode.multi_queue => {
                    format!(" ({name} exists but was not created multi-queue)")
                }
                _ => String::new(),
            };
            io::Error::new(e.kind(), format!("TAP device {name}: {what}: {e}{hint}"))
        };
        let mut req = IfReq::new(name)?;
        // SAFETY: plain open(2) of a device node; the result is checked.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(explain(
                io::Error::last_os_error(),
                "cannot open /dev/net/tun",
            ));
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        req.value.flags = IFF_TAP
            | IFF_NO_PI
            | if mode.vnet_header { IFF_VNET_HDR } else { 0 }
            | if mode.multi_queue { IFF_MULTI_QUEUE } else { 0 };
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is laid out as.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
            return Err(explain(
                io::Error::last_os_error(),
                "cannot create or attach",
            ));
        }
        if mode.vnet_header {
            let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
            let offloads = if mode.offloads {
                TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
            } else {
                0
            };
            // SAFETY: TUNSETVNETHDRSZ reads one int; TUNSETOFFLOAD takes its flags by value.
            let ok = unsafe {
                libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ as _, &size) == 0
                    && libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, offloads) == 0
            };
            if !ok {
                return Err(explain(
                    io::Error::last_os_error(),
                    "cannot enable checksum offload",
                ));
            }
        }
        if mode.configure_link {
            configure_link(name, ip_mtu)
                .map_err(|e| explain(e, "cannot set MTU and bring it up"))?;
        }
        Ok(TapDevice {
            fd,
            name: name.to_string(),
            ip_mtu,
            scratch: vec![0; ip_mtu + DeviceCaps::ETHERNET_HEADER],
            vnet: mode.vnet_header,
            last_rx_ok: false,
            last_rx_header: VnetHeader::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Sets the kernel side's MTU to the stack's, so both ends agree on segment sizes, and marks
/// the link up.
fn configure_link(name: &str, ip_mtu: usize) -> io::Result<()> {
    // SAFETY: a datagram socket used only as a handle for interface ioctls.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the descriptor just created.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReq::new(name)?;
    req.value.mtu = ip_mtu as libc::c_int;
    // SAFETY: SIOCSIFMTU takes a `struct ifreq` with `ifr_mtu` set.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut req = IfReq::new(name)?;
    // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS read and write `ifr_flags` of a `struct ifreq`.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.value.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl PacketDevice for TapDevice {
    fn caps(&self) -> DeviceCaps {
        DeviceCaps {
            ip_mtu: self.ip_mtu,
            rx_checksum_verified: false,
            tx_checksum_offload: self.vnet,
        }
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let iov = iovecs(self.vnet, &mut hdr, buf);
        let parts = &iov.0[iov.1..];
        // SAFETY: scattering into buffers we own, each bounded by its length.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), parts.as_ptr(), parts.len() as i32) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let mut n = n as usize;
        if self.vnet {
            n = n.saturating_sub(VNET_HDR_LEN);
            self.last_rx_header = VnetHeader(hdr);
            self.last_rx_ok = hdr[0] & (VnetHeader::NEEDS_CSUM | VnetHeader::DATA_VALID) != 0;
        }
        Ok(Some(n))
    }

    fn last_rx_offload(&self) -> Option<VnetHeader> {
        self.vnet.then_some(self.last_rx_header)
    }

    /// With a virtio-net header on this TAP the frame goes out with the header it came with,
    /// so partial checksums and coalesced segments stay the kernel's to finish; without one,
    /// a partial checksum is completed first.
    fn send_frame(
        &mut self,
        _now: Instant,
        frame: &[u8],
        offload: Option<&VnetHeader>,
    ) -> io::Result<()> {
        let hdr = offload.copied().unwrap_or_default().0;
        let frame: &[u8] = match offload {
            Some(h) if !self.vnet && h.flags() & VnetHeader::NEEDS_CSUM != 0 => {
                if self.scratch.len() < frame.len() {
                    self.scratch.resize(frame.len(), 0);
                }
                let copy = &mut self.scratch[..frame.len()];
                copy.copy_from_slice(frame);
                h.complete_checksum(copy);
                copy
            }
            _ => frame,
        };
        write_frame(self.fd.as_raw_fd(), self.vnet, &hdr, frame)
    }

    fn last_rx_checksum_ok(&self) -> bool {
        self.last_rx_ok
    }

    fn send(
        &mut self,
        _now: Instant,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> io::Result<()> {
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        let frame = &mut self.scratch[..len];
        fill(frame);
        let mut hdr = [0u8; VNET_HDR_LEN];
        if self.vnet {
            if let Some((start, offset)) = partial_tcp_checksum(frame) {
                hdr = VnetHeader::partial_checksum(start, offset).0;
            }
        }
        write_frame(self.fd.as_raw_fd(), self.vnet, &hdr, frame)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

/// Writes one frame to the TAP `fd`, after the virtio-net header `hdr` when the TAP carries
/// one. A full TAP queue drops the frame (EAGAIN, returned as an error): TCP retransmits it,
/// as it would after a drop on a wire.
fn write_frame(fd: RawFd, vnet: bool, hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<()> {
    // writev only reads through these pointers; the casts to *mut are what iovec requires.
    let iov = [
        libc::iovec {
            iov_base: hdr.as_ptr() as *mut libc::c_void,
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        },
    ];
    let parts = if vnet { &iov[..] } else { &iov[1..] };
    // SAFETY: gathering from buffers that outlive the call.
    let n = unsafe { libc::writev(fd, parts.as_ptr(), parts.len() as i32) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The I/O vector for one frame: the virtio-net header (when the TAP carries one), then the
/// frame. Returns the vector and the index of its first part in use.
fn iovecs(vnet: bool, hdr: &mut [u8; VNET_HDR_LEN], frame: &mut [u8]) -> ([libc::iovec; 2], usize) {
    let iov = [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: frame.as_mut_ptr().cast(),
            iov_len: frame.len(),
        },
    ];
    (iov, if vnet { 0 } else { 1 })
}

/// For a TCP segment whose checksum smoltcp left out: stores the pseudo-header sum in the
/// checksum field (what a device completing the checksum starts from) and returns where the
/// checksummed range starts and where, relative to that, the checksum goes.
fn partial_tcp_checksum(frame: &mut [u8]) -> Option<(usize, usize)> {
    const TCP: u8 = 6;
    const CHECKSUM_AT: usize = 16;
    let (start, mut sum) = match frame.get(12..14)? {
        [0x08, 0x00] => {
            let ihl = (*frame.get(14)? & 0x0f) as usize * 4;
            if *frame.get(23)? != TCP {
                return None;
            }
            let total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
            let tcp_len = total.checked_sub(ihl)?;
            (
                14 + ihl,
                ones_sum(frame.get(26..34)?) + TCP as u32 + tcp_len as u32,
            )
        }
        [0x86, 0xdd] => {
            if *frame.get(20)? != TCP {
                return None;
            }
            let tcp_len = u16::from_be_bytes([frame[18], frame[19]]) as u32;
            (54, ones_sum(frame.get(22..54)?) + TCP as u32 + tcp_len)
        }
        _ => return None,
    };
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame
        .get_mut(start + CHECKSUM_AT..start + CHECKSUM_AT + 2)?
        .copy_from_slice(&(sum as u16).to_be_bytes());
    Some((start, CHECKSUM_AT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_checksum_completes_to_the_real_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/replay/handshake_data_fin.in.pcap");
        let frames = crate::pcap::read_frames(&path).unwrap();
        let mut checked = 0;
        for f in frames {
            let original = f.data;
            let mut frame = original.clone();
            let Some((start, offset)) = partial_tcp_checksum(&mut frame) else {
                continue; // ARP
            };
            assert_eq!((start, offset), (34, 16));
            // What a device (or the kernel, when it forwards) does with a partial checksum.
            VnetHeader::partial_checksum(start, offset).complete_checksum(&mut frame);
            assert_eq!(
                frame, original,
                "completed checksum differs from the real one"
            );
            checked += 1;
        }
        assert!(checked > 10);
    }
}
