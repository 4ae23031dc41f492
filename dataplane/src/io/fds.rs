//! File descriptors: the limit sluice runs with, and a small reserve that keeps the admin
//! endpoint answering when the data path has used up every descriptor.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

/// Raises the soft RLIMIT_NOFILE to the hard limit (as Envoy's and nginx's packagers advise, and
/// as Go does at start): a proxy holds two descriptors per proxied connection, and the common
/// soft default of 1024 would cap it at a few hundred clients. Returns (before, after).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct; raising the soft limit up to the hard one needs no
        // privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// Whether an accept failed for want of descriptors (process or system wide).
pub fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Descriptors held back so that one thread can still accept when the rest are used up: on
/// EMFILE it gives one back, accepts in its place, and takes it again when that connection is
/// done.
pub struct Reserve {
    held: Vec<File>,
    size: usize,
}

impl Reserve {
    pub fn new(size: usize) -> Reserve {
        let mut r = Reserve {
            held: Vec::new(),
            size,
        };
        r.refill();
        r
    }

    /// Gives one descriptor back for an accept; `false` when none is held.
    pub fn release_one(&mut self) -> bool {
        self.held.pop().is_some()
    }

    /// Takes back what was given, as far as descriptors are free now.
    pub fn refill(&mut self) {
        while self.held.len() < self.size {
            match File::open("/dev/null") {
                Ok(f) => self.held.push(f),
                Err(_) => break,
            }
        }
    }

    /// Closes `fd` (a connection accepted in a reserved slot) and keeps its descriptor number
    /// as a reserve in one step (dup2 of /dev/null over it), so no other thread can take the
    /// slot in between.
    pub fn reclaim(&mut self, fd: OwnedFd) {
        if self.held.len() >= self.size {
            return; // dropping `fd` closes it
        }
        let Some(null) = self.held.first().map(|f| f.as_raw_fd()).or_else(|| {
            File::open("/dev/null").ok().map(|f| {
                let raw = f.as_raw_fd();
                self.held.push(f);
                raw
            })
        }) else {
            return;
        };
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is ours (taken from the OwnedFd); dup2 atomically closes what it refers
        // to and makes it a copy of /dev/null, which we then own as a File.
        unsafe {
            if libc::dup2(null, raw) >= 0 {
                self.held.push(File::from_raw_fd(raw));
            } else {
                libc::close(raw);
            }
        }
        self.held.truncate(self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (before, after) = raise_nofile_limit().unwrap();
        assert!(after >= before);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        let mut r = Reserve::new(2);
        assert_eq!(r.held.len(), 2);
        assert!(r.release_one());
        r.refill();
        assert_eq!(r.held.len(), 2);
        // A connection in a reserved slot gives the slot back as a reserve.
        assert!(r.release_one());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let raw = c.as_raw_fd();
        r.reclaim(c.into());
        assert_eq!(r.held.len(), 2);
        assert!(r.held.iter().any(|f| f.as_raw_fd() == raw));
    }
}
