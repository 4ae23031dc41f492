//! splice(2) through a pipe: the zero-copy path between two kernel sockets. Bytes move
//! socket -> pipe -> socket as page references and never enter user space.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking pipe used as the in-kernel buffer of one direction of a proxied connection.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// Capacity in bytes as the kernel reports it.
    pub capacity: usize,
}

impl Pipe {
    /// A pipe of (at most) `size` bytes. If the kernel refuses the size (non-root users past
    /// `pipe-user-pages-soft`) the pipe keeps its default size: a smaller bound, never a larger.
    pub fn new(size: usize) -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds is a valid 2-element array; on success both fds are owned by us.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and exclusively ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let size = size.min(i32::MAX as usize) as libc::c_int;
        // SAFETY: fcntl on an fd we own; failure is reported through the return value.
        let capacity = unsafe {
            let set = libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size);
            if set > 0 {
                set
            } else {
                libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
            }
        };
        if capacity <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe {
            read,
            write,
            capacity: capacity as usize,
        })
    }
}

/// One non-blocking splice of up to `len` bytes. `Ok(0)` means end of input.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: null offsets are valid for sockets and pipes; the kernel validates the fds.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
