//! A worker's reusable buffer for bytes on their way to a socket.
//!
//! An HTTP head is encoded into a buffer, written, and the buffer is done with; allocating one
//! per message costs a malloc and a free per head, each side, and touches fresh memory each
//! time. A worker keeps one spare buffer: whoever encodes takes it and gives it back when done
//! (a write that has to wait keeps it meanwhile, and the next message gets a new one), so
//! back-to-back messages on a busy worker reuse the same warm bytes.
//!
//! Only plain memory is kept per thread, nothing tied to an event loop.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};

/// What a fresh buffer starts with (a head is usually a few hundred bytes).
const INITIAL: usize = 1024;
/// A buffer grown past this (a large inline body) is freed instead of kept.
const KEEP_MAX: usize = 64 * 1024;

thread_local! {
    static SPARE: Cell<Option<Vec<u8>>> = const { Cell::new(None) };
}

/// The worker's spare buffer (empty), back to it on drop.
pub struct Scratch(Vec<u8>);

impl Scratch {
    pub fn take() -> Scratch {
        let spare = SPARE.try_with(Cell::take).ok().flatten();
        Scratch(spare.unwrap_or_else(|| Vec::with_capacity(INITIAL)))
    }
}

impl Deref for Scratch {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.0.capacity() > KEEP_MAX {
            return;
        }
        let mut buf = std::mem::take(&mut self.0);
        buf.clear();
        let _ = SPARE.try_with(|s| s.set(Some(buf)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spare_is_reused_empty_and_a_second_taker_gets_its_own() {
        let mut a = Scratch::take();
        a.extend_from_slice(b"hello");
        let at = a.as_ptr();
        let mut b = Scratch::take();
        assert_ne!(b.as_ptr(), at);
        b.push(1);
        drop(a);
        drop(b);
        let c = Scratch::take();
        assert!(c.is_empty());
        assert!(c.capacity() >= INITIAL);
        let mut big = Scratch::take();
        big.resize(KEEP_MAX + 1, 0);
        drop(big);
        assert!(Scratch::take().is_empty());
    }
}
