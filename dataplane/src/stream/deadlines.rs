//! The deadlines of one upstream connection's outstanding requests, earliest first.
//!
//! Requests on one connection mostly carry the same timeout, so their deadlines arrive in
//! order: those go to the back of a FIFO (sequential memory, O(1)). A deadline earlier than the
//! FIFO's last goes to a small heap of stragglers instead. Answered requests are not looked for
//! here (that would cost a search per response); their entries are skipped when they come due,
//! and dropped in bulk by [`DeadlineQueue::retain`] once they outnumber the live ones.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use tokio::time::Instant;

#[derive(Default)]
pub struct DeadlineQueue {
    in_order: VecDeque<(Instant, u64)>,
    stragglers: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl DeadlineQueue {
    pub fn push(&mut self, at: Instant, id: u64) {
        match self.in_order.back() {
            Some(&(last, _)) if at < last => self.stragglers.push(Reverse((at, id))),
            _ => self.in_order.push_back((at, id)),
        }
    }

    /// The earliest entry.
    pub fn peek(&self) -> Option<(Instant, u64)> {
        let a = self.in_order.front().copied();
        let b = self.stragglers.peek().map(|Reverse(x)| *x);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn pop(&mut self) -> Option<(Instant, u64)> {
        let a = self.in_order.front().copied();
        let b = self.stragglers.peek().map(|Reverse(x)| *x);
        match (a, b) {
            (Some(x), Some(y)) if y < x => self.stragglers.pop().map(|Reverse(v)| v),
            (Some(_), _) => self.in_order.pop_front(),
            (None, _) => self.stragglers.pop().map(|Reverse(v)| v),
        }
    }

    pub fn len(&self) -> usize {
        self.in_order.len() + self.stragglers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the entries `live` says are still wanted.
    pub fn retain(&mut self, live: impl Fn(u64, Instant) -> bool) {
        self.in_order.retain(|&(at, id)| live(id, at));
        let mut rest = std::mem::take(&mut self.stragglers).into_vec();
        rest.retain(|Reverse((at, id))| live(*id, *at));
        self.stragglers = BinaryHeap::from(rest);
    }

    pub fn clear(&mut self) {
        self.in_order.clear();
        self.stragglers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_come_out_earliest_first_in_or_out_of_order() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let mut q = DeadlineQueue::default();
        for (at, id) in [(10, 1), (20, 2), (5, 3), (30, 4), (15, 5)] {
            q.push(ms(at), id);
        }
        assert_eq!(q.peek(), Some((ms(5), 3)));
        let order: Vec<u64> = std::iter::from_fn(|| q.pop().map(|(_, id)| id)).collect();
        assert_eq!(order, [3, 1, 5, 2, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn retain_drops_answered_entries() {
        let t = Instant::now();
        let mut q = DeadlineQueue::default();
        for id in 0..10u64 {
            q.push(t + Duration::from_millis(10 - id), id);
        }
        q.retain(|id, _| id % 2 == 0);
        assert_eq!(q.len(), 5);
        assert_eq!(q.pop().map(|(_, id)| id), Some(8));
    }
}
