//! Deadlines on futures, with timers a connection reuses.
//!
//! `tokio::time::timeout` makes a timer for each call and frees it on drop: a timer-wheel
//! insert and remove under the driver's lock, for a deadline that almost never comes — per
//! HTTP request twice (waiting for its head, waiting for its upstream). Here a future's first
//! poll needs no timer at all (most reads and writes finish then), and one that must wait
//! borrows a timer from its connection's pool and gives it back when it ends. Moving a
//! registered timer's deadline later only updates it in place (tokio's extend path); a wait
//! takes the pooled timer whose deadline is nearest below its own, so each kind of deadline of
//! a connection (the idle read, a route's 15 s) keeps a timer of its own that only moves later,
//! and a keep-alive connection registers a timer about once per timeout period instead of
//! twice per request.
//!
//! A pooled timer whose old deadline comes while it waits in the pool wakes the task that
//! last used it once; that task is polled, finds nothing ready and waits again.
//!
//! A pool belongs to a connection (or an HTTP/2 stream), which lives on one worker's event
//! loop: a timer must not outlive the runtime it was made on.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

/// The deadline came before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Idle timers a pool keeps (a connection has a few kinds of deadline); more are freed.
const POOL_MAX: usize = 4;

/// Idle timers, for the deadlines of one connection (or stream).
#[derive(Default)]
pub struct TimerPool {
    idle: RefCell<Vec<Pin<Box<Sleep>>>>,
}

impl TimerPool {
    /// `fut`, or `Err(Elapsed)` once `deadline` has come (as `tokio::time::timeout_at`).
    pub fn timeout_at<F: Future>(&self, deadline: Instant, fut: F) -> Within<'_, F> {
        self.within(Deadline::At(deadline), fut)
    }

    /// `fut`, or `Err(Elapsed)` after `after` (as `tokio::time::timeout`); the clock is read
    /// only if `fut` does not finish at its first poll.
    pub fn timeout<F: Future>(&self, after: std::time::Duration, fut: F) -> Within<'_, F> {
        self.within(Deadline::After(after), fut)
    }

    fn within<F: Future>(&self, deadline: Deadline, fut: F) -> Within<'_, F> {
        Within {
            fut,
            pool: self,
            deadline,
            timer: None,
        }
    }

    fn lease(&self, deadline: Instant) -> Lease<'_> {
        let pooled = {
            let mut idle = self.idle.borrow_mut();
            // Of the timers set no later than this deadline, the one set nearest to it, so that
            // short and long deadlines keep timers of their own kind. None fits: a new one.
            let at = (0..idle.len())
                .filter(|&i| idle[i].deadline() <= deadline)
                .max_by_key(|&i| idle[i].deadline());
            at.map(|i| idle.swap_remove(i))
        };
        Lease {
            pool: self,
            timer: Some(pooled.unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline)))),
            deadline,
        }
    }
}

#[derive(Clone, Copy)]
enum Deadline {
    At(Instant),
    /// This long after the first wait.
    After(std::time::Duration),
}

pin_project_lite::pin_project! {
    /// A future with a deadline (a struct, not an `async fn`, so that the future it wraps is
    /// stored once and not moved again when it is first polled).
    pub struct Within<'p, F> {
        #[pin]
        fut: F,
        pool: &'p TimerPool,
        deadline: Deadline,
        timer: Option<Lease<'p>>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let timer = match this.timer {
            Some(t) => t,
            None => {
                let at = match *this.deadline {
                    Deadline::At(at) => at,
                    Deadline::After(d) => Instant::now() + d,
                };
                this.timer.insert(this.pool.lease(at))
            }
        };
        timer.poll(cx).map(|()| Err(Elapsed))
    }
}

/// A pooled timer for a deadline, back in its pool on drop.
///
/// The timer is left where it was set (no later than the deadline) and moved on only when it
/// fires early, the way `stream::conn_clock` re-arms lazily: a busy connection's wait costs no
/// timer update at all, and its timer fires about once per timeout period.
struct Lease<'p> {
    pool: &'p TimerPool,
    timer: Option<Pin<Box<Sleep>>>,
    deadline: Instant,
}

impl Lease<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(t) = &mut self.timer else {
            return Poll::Pending;
        };
        std::task::ready!(t.as_mut().poll(cx));
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        // Early: set it to the deadline. Should it fire at once again, the deadline is within
        // the timer's millisecond.
        t.as_mut().reset(self.deadline);
        t.as_mut().poll(cx)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(t) = self.timer.take() else { return };
        if let Ok(mut idle) = self.pool.idle.try_borrow_mut() {
            if idle.len() < POOL_MAX {
                idle.push(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn elapsed_after(pool: &TimerPool, secs: u64) -> Duration {
        let at = Instant::now();
        let r = pool
            .timeout(Duration::from_secs(secs), std::future::pending::<()>())
            .await;
        assert_eq!(r, Err(Elapsed));
        at.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_fire_and_pooled_timers_serve_later_ones() {
        let pool = TimerPool::default();
        assert_eq!(elapsed_after(&pool, 2).await, Duration::from_secs(2));
        // A ready future needs no timer and keeps its value.
        assert_eq!(
            pool.timeout(Duration::from_secs(1), async { 7 }).await,
            Ok(7)
        );
        // The pooled timer (its deadline passed) is set again, earlier and later.
        for secs in [5, 1, 3] {
            assert_eq!(elapsed_after(&pool, secs).await, Duration::from_secs(secs));
        }
        // A future that finishes after waiting but before its deadline is not cut short, and
        // the old deadline of the timer it gave back does not fire into the next wait.
        let slow = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        };
        assert_eq!(
            pool.timeout(Duration::from_secs(10), slow).await,
            Ok("done")
        );
        assert_eq!(elapsed_after(&pool, 20).await, Duration::from_secs(20));
        let shorter = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            "soon"
        };
        assert_eq!(
            pool.timeout(Duration::from_secs(30), shorter).await,
            Ok("soon")
        );
        assert_eq!(elapsed_after(&pool, 1).await, Duration::from_secs(1));
        let kept = pool.idle.borrow().len();
        assert!((1..=POOL_MAX).contains(&kept), "{kept}");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_at_once_each_get_their_own_timer() {
        let pool = TimerPool::default();
        let (a, b) = tokio::join!(elapsed_after(&pool, 3), elapsed_after(&pool, 1));
        assert_eq!((a, b), (Duration::from_secs(3), Duration::from_secs(1)));
        assert_eq!(pool.idle.borrow().len(), 2);
    }
}
