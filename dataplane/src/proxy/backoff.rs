//! Connect pacing per upstream host: after a failed connect, a host is left alone for a while
//! (doubling with each failure in a row, with jitter) so that a dead host costs a few connect
//! attempts per second, not one per request, and picks meanwhile go to the other hosts.
//!
//! One per host per worker, kept across pool rebuilds (health changes) by the cluster view.

use std::cell::Cell;
use std::time::Duration;
use tokio::time::Instant;

/// The pause after the first failure; each further failure in a row doubles it.
pub const BASE: Duration = Duration::from_millis(100);
/// The longest pause, so a host that comes back is used again within this.
pub const MAX: Duration = Duration::from_secs(5);

#[derive(Default, Debug)]
pub struct ConnectBackoff {
    /// Until when the host is not picked; `None` in the common case, so a pick reads no clock.
    until: Cell<Option<Instant>>,
    failures: Cell<u32>,
}

impl ConnectBackoff {
    /// A connect failed. Failures of connects that were already under way when the host began
    /// backing off do not lengthen the pause.
    pub fn failed(&self, now: Instant) {
        if self.until.get().is_some_and(|t| now < t) {
            return;
        }
        let n = self.failures.get().saturating_add(1);
        self.failures.set(n);
        let pause = BASE.saturating_mul(1 << (n - 1).min(16)).min(MAX);
        // Up to a quarter off, so that workers (and sluices) do not retry in step.
        let noise = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() % 1000);
        let jitter = pause.mul_f64(0.25 * f64::from(noise) / 1000.0);
        self.until.set(Some(now + pause - jitter));
    }

    /// A connect succeeded: the host is used again at once.
    pub fn succeeded(&self) {
        self.failures.set(0);
        self.until.set(None);
    }

    /// Whether picks should pass the host by now.
    pub fn is_active(&self) -> bool {
        match self.until.get() {
            None => false,
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                // The pause is over: the next pick may try the host again; one more failure
                // doubles the pause.
                self.until.set(None);
                false
            }
        }
    }

    /// The current pause's end.
    #[cfg(test)]
    fn until(&self) -> Option<Instant> {
        self.until.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_maximum_and_success_resets_them() {
        let b = ConnectBackoff::default();
        let t = Instant::now();
        assert!(!b.is_active());
        b.failed(t);
        let first = b.until().unwrap() - t;
        assert!(first <= BASE && first >= BASE * 3 / 4, "{first:?}");
        // A failure while paused does not count again.
        b.failed(t + Duration::from_millis(1));
        assert_eq!(b.until().unwrap() - t, first);
        let mut at = t;
        for _ in 0..10 {
            at = b.until().unwrap();
            b.failed(at);
        }
        let last = b.until().unwrap() - at;
        assert!(last <= MAX && last >= MAX * 3 / 4, "{last:?}");
        b.succeeded();
        assert!(!b.is_active());
        assert_eq!(b.until(), None);
    }
}
