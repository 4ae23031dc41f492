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
    /// The size it was made for (what [`take_pipe`] matches on).
    requested: usize,
}

/// Spare empty pipes a worker keeps for reuse; more are closed when given back.
const SPARE_PIPES: usize = 32;

thread_local! {
    /// This worker's empty pipes. A connection holds a pipe only while bytes are in flight in
    /// that direction, so an idle spliced connection costs its two sockets and nothing more.
    static SPARE: std::cell::RefCell<Vec<Pipe>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty pipe of `size` bytes from this worker's spares, or a new one.
pub fn take_pipe(size: usize) -> io::Result<Pipe> {
    let spare = SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let i = s.iter().position(|p| p.requested == size)?;
        Some(s.swap_remove(i))
    });
    match spare {
        Some(p) => Ok(p),
        None => Pipe::new(size),
    }
}

/// Gives back a pipe that holds no bytes.
pub fn give_back_pipe(pipe: Pipe) {
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_PIPES {
            s.push(pipe);
        }
    });
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
        let requested = size;
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
            requested,
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
