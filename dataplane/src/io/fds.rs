//! File descriptors: the limit sluice runs with, and a small reserve that keeps the admin
//! endpoint answering when the data path has used up every descriptor.

use std::fs::File;
use std::io;

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

    pub fn held(&self) -> usize {
        self.held.len()
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
        assert_eq!(r.held(), 2);
        assert!(r.release_one());
        r.refill();
        assert_eq!(r.held(), 2);
    }
}
