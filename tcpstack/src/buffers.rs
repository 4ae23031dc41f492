//! Connection buffers that cost memory only where data has been.
//!
//! smoltcp sockets take fixed-size ring buffers, and the receive buffer's size sets the window
//! advertised in the handshake, so it cannot start small and grow. Instead each connection's two
//! rings live in one anonymous private mapping: the kernel backs a page only when it is first
//! written, so an idle connection that carried a few small messages holds a few pages, not the
//! whole window. The send ring rewinds to its start whenever it empties (smoltcp does this), so
//! request/response traffic keeps touching the same first pages. The receive ring walks on, so
//! the stack hands a quiet connection's pages back (`trim_rx`, `trim_tx`) when their contents
//! no longer matter: resident memory follows data in flight, not the window size.

use std::io;
use std::ptr::NonNull;

const PAGE: usize = 4096;

pub struct Buffers {
    base: NonNull<u8>,
    /// The receive ring's mapped length (whole pages).
    rx_len: usize,
    /// The receive ring as smoltcp sees it: exactly the size asked for, since smoltcp derives
    /// its window scale from it (65535 bytes: unscaled; one byte more, a page-rounded 65536,
    /// would already be scaled).
    rx_ring: usize,
    tx_len: usize,
}

impl Buffers {
    pub fn new(rx_ring: usize, tx_len: usize) -> io::Result<Buffers> {
        let rx_len = rx_ring.div_ceil(PAGE) * PAGE;
        let tx_len = tx_len.div_ceil(PAGE) * PAGE;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                rx_len + tx_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Buffers {
            base: NonNull::new(p.cast()).expect("mmap returned null"),
            rx_len,
            rx_ring,
            tx_len,
        })
    }

    /// The two rings, for a socket that must not outlive `self`.
    ///
    /// # Safety
    /// The caller must drop every use of the returned slices before `self` is dropped, and
    /// call this once per `Buffers`.
    pub unsafe fn rings(&mut self) -> (&'static mut [u8], &'static mut [u8]) {
        let rx = std::slice::from_raw_parts_mut(self.base.as_ptr(), self.rx_ring);
        let tx = std::slice::from_raw_parts_mut(self.base.as_ptr().add(self.rx_len), self.tx_len);
        (rx, tx)
    }
}

impl Buffers {
    /// Returns the receive ring's pages to the kernel; they read as zeroes afterwards. Only for
    /// a ring holding nothing, out-of-order data included.
    pub fn trim_rx(&mut self) {
        self.discard(0, self.rx_len);
    }

    /// Returns the send ring's pages to the kernel. Only for a ring holding nothing unsent and
    /// nothing unacknowledged.
    pub fn trim_tx(&mut self) {
        self.discard(self.rx_len, self.tx_len);
    }

    fn discard(&mut self, offset: usize, len: usize) {
        // SAFETY: the range lies inside our mapping. MADV_DONTNEED on private anonymous memory
        // only drops contents (later reads see zeroes); callers only do it to empty rings.
        unsafe {
            libc::madvise(
                self.base.as_ptr().add(offset).cast(),
                len,
                libc::MADV_DONTNEED,
            );
        }
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; the socket using it is gone (see `rings`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.rx_len + self.tx_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receive_ring_is_exactly_the_size_asked_for() {
        // The mapping is whole pages, but smoltcp must see 65535 bytes: it picks its window
        // scale from the ring's size, and a 65536-byte ring would be scaled (and rounded).
        let mut b = Buffers::new(65_535, 10_000).unwrap();
        // SAFETY: the slices are dropped before `b`.
        let (rx, tx) = unsafe { b.rings() };
        assert_eq!((rx.len(), tx.len()), (65_535, 12_288));
        rx[65_534] = 1;
        tx[0] = 2;
        assert_eq!((rx[65_534], tx[0]), (1, 2));
    }
}
