//! Per-connection timers (retransmission, delayed work, TIME-WAIT, keep-alive) in one min-heap.
//! Rescheduling pushes a new entry and leaves the old one to be skipped when it surfaces: the
//! flow remembers which deadline is current. The heap is rebuilt when stale entries dominate, so
//! its size stays proportional to the number of flows.

use smoltcp::time::Instant;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(i64, u32, u32)>>,
}

impl Timers {
    pub fn schedule(&mut self, at: Instant, idx: u32, gen: u32) {
        self.heap.push(Reverse((at.total_micros(), idx, gen)));
    }

    /// The earliest deadline, possibly a stale one (waking early is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| Instant::from_micros(*at))
    }

    /// Pops one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now.total_micros() => {
                let Reverse((at, idx, gen)) = self.heap.pop()?;
                Some((Instant::from_micros(at), idx, gen))
            }
            _ => None,
        }
    }

    /// Drops entries `is_current` rejects, when there are many more entries than `live` flows.
    pub fn compact(&mut self, live: usize, mut is_current: impl FnMut(Instant, u32, u32) -> bool) {
        if self.heap.len() <= 4 * live + 64 {
            return;
        }
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse((at, idx, gen))| is_current(Instant::from_micros(*at), *idx, *gen))
            .collect();
    }
}
