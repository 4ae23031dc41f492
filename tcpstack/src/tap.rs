//! A TAP device (/dev/net/tun in TAP mode): Ethernet frames to and from the host kernel. On a
//! laptop the kernel side of the TAP is the host's (or a namespace's) network; the userspace
//! stack behind it owns its own MAC and IP addresses, like a virtual machine would.

use crate::device::{DeviceCaps, PacketDevice};
use smoltcp::time::Instant;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

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
}

impl TapDevice {
    /// Creates the TAP device `name` (or attaches to an existing one of that name), sets its
    /// MTU and brings it up. Needs CAP_NET_ADMIN.
    pub fn open(name: &str, ip_mtu: usize) -> io::Result<TapDevice> {
        let explain = |e: io::Error, what: &str| -> io::Error {
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    " (TAP mode needs root or CAP_NET_ADMIN)".to_string()
                }
                Some(libc::ENOENT) | Some(libc::ENODEV) => {
                    " (is the tun module loaded? try: modprobe tun)".to_string()
                }
                Some(libc::EBUSY) => format!(" (another process holds {name})"),
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
        req.value.flags = IFF_TAP | IFF_NO_PI;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is laid out as.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
            return Err(explain(
                io::Error::last_os_error(),
                "cannot create or attach",
            ));
        }
        configure_link(name, ip_mtu).map_err(|e| explain(e, "cannot set MTU and bring it up"))?;
        Ok(TapDevice {
            fd,
            name: name.to_string(),
            ip_mtu,
            scratch: vec![0; ip_mtu + DeviceCaps::ETHERNET_HEADER],
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
            tx_checksum_offload: false,
        }
    }

    fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: reading into a buffer we own, bounded by its length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
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
        // SAFETY: writing `len` bytes we own. A full TAP queue drops the frame (EAGAIN): TCP
        // retransmits it, as it would after a drop on a wire.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), len) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}
