//! The timeouts of one downstream connection of a framed protocol, kept sans-IO: when it was
//! last read, since when a frame has been arriving, and what the one timer that serves them all
//! should do when it fires. Any codec-driven connection (Bolt today, HTTP/1 heads later) asks
//! the same questions: idle too long, a frame begun and not finished, a quiet buffer to hand
//! back.
//!
//! One timer serves all three: it is moved earlier when a nearer deadline appears and, when it
//! fires, re-armed from the latest activity, so a busy connection costs a timer event per
//! second, not one per read.

use std::time::Duration;
use tokio::time::Instant;

/// A quiet connection with an empty read buffer hands its memory back after this long.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Nothing in flight and nothing read or written for this long ends the connection.
    pub idle: Option<Duration>,
    /// A frame that has begun to arrive must be whole within this long.
    pub frame: Duration,
}

/// What the connection is doing when the clock is asked.
#[derive(Clone, Copy, Debug, Default)]
pub struct Activity {
    /// Requests in flight (not yet answered).
    pub inflight: u32,
    /// When the writer last finished writing a chunk.
    pub last_write: Option<Instant>,
    /// Bytes read and not yet a whole frame.
    pub buffered: usize,
}

/// What a fired timer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    FrameTimeout,
    Idle,
    /// Hand the (empty) read buffer back.
    Release,
    Nothing,
}

pub struct ConnClock {
    /// When the last read returned bytes (also the batch clock for the frames it completed).
    pub last_read: Instant,
    /// When the first byte of the frame now partly buffered arrived.
    partial_since: Option<Instant>,
    /// When the idle check last found requests in flight.
    busy_at: Instant,
    /// The read buffer was handed back since the last read.
    released: bool,
    /// Where the timer is set now.
    pub armed: Instant,
    /// A time that never comes (an unset timer).
    pub far: Instant,
}

impl ConnClock {
    pub fn new(now: Instant) -> ConnClock {
        let far = now + Duration::from_secs(86400 * 365);
        ConnClock {
            last_read: now,
            partial_since: None,
            busy_at: now,
            released: false,
            armed: far,
            far,
        }
    }

    /// A read returned bytes at `now`.
    pub fn on_read(&mut self, now: Instant) {
        self.last_read = now;
        self.released = false;
    }

    /// The latest of the last read, the last write and the last time requests were in flight.
    pub fn last_activity(&self, last_write: Option<Instant>) -> Instant {
        last_write
            .map_or(self.last_read, |w| w.max(self.last_read))
            .max(self.busy_at)
    }

    /// After the whole frames of a read were taken: `buffered` bytes are left, `consumed` says
    /// whether any frame was taken.
    pub fn after_frames(&mut self, buffered: usize, consumed: bool, now: Instant) {
        self.partial_since = match (buffered, self.partial_since) {
            (0, _) => None,
            // The rest of this read began a new frame.
            (_, _) if consumed => Some(now),
            (_, Some(t)) => Some(t),
            (_, None) => Some(now),
        };
    }

    /// Time spent with reading paused is not the client's: a frame it had begun gets its full
    /// time again.
    pub fn after_pause(&mut self, now: Instant) {
        if self.partial_since.is_some() {
            self.partial_since = Some(now);
        }
    }

    /// When the timer should fire next.
    pub fn next_wakeup(&self, t: &Timeouts, a: &Activity) -> Instant {
        let frame = self.partial_since.map(|s| s + t.frame);
        let idle = self.idle_deadline(t, a);
        let release = (a.buffered == 0 && !self.released).then(|| self.last_read + RELEASE_AFTER);
        [frame, idle, release]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.far)
    }

    /// When the idle timeout falls due if nothing happens meanwhile; `None` without one.
    pub fn idle_deadline(&self, t: &Timeouts, a: &Activity) -> Option<Instant> {
        t.idle.map(|d| self.last_activity(a.last_write) + d)
    }

    /// Whether the connection has been idle for the idle timeout at `now`. Requests in flight
    /// keep it busy, and idleness then counts from `now`.
    pub fn idle_due(&mut self, t: &Timeouts, a: &Activity, now: Instant) -> bool {
        let Some(d) = t.idle else {
            return false;
        };
        if a.inflight > 0 {
            self.busy_at = now;
            return false;
        }
        now >= self.last_activity(a.last_write) + d
    }

    /// What the timer's firing at `now` means; anything but an end is re-armed by the next
    /// `next_wakeup`.
    pub fn on_timer(&mut self, t: &Timeouts, a: &Activity, now: Instant) -> Tick {
        if self.partial_since.is_some_and(|s| now >= s + t.frame) {
            return Tick::FrameTimeout;
        }
        if self.idle_due(t, a, now) {
            return Tick::Idle;
        }
        if a.buffered == 0 && !self.released && now >= self.last_read + RELEASE_AFTER {
            self.released = true;
            return Tick::Release;
        }
        Tick::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        idle: Some(Duration::from_secs(10)),
        frame: Duration::from_secs(2),
    };

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_stalled_frame_times_out_from_its_first_byte() {
        let t0 = Instant::now();
        let mut c = ConnClock::new(t0);
        c.after_frames(11, false, t0);
        let a = Activity {
            buffered: 11,
            ..Default::default()
        };
        assert_eq!(c.next_wakeup(&T, &a), t0 + s(2));
        // More bytes of the same frame do not restart its time.
        c.on_read(t0 + s(1));
        c.after_frames(20, false, t0 + s(1));
        assert_eq!(c.on_timer(&T, &a, t0 + s(2)), Tick::FrameTimeout);
        // A frame completed and a new one begun in the same read gets its own time.
        let mut c = ConnClock::new(t0);
        c.after_frames(5, false, t0);
        c.after_frames(7, true, t0 + s(1));
        assert_eq!(c.on_timer(&T, &a, t0 + s(2)), Tick::Nothing);
        assert_eq!(c.on_timer(&T, &a, t0 + s(3)), Tick::FrameTimeout);
        // A pause gives the frame its full time again.
        c.after_pause(t0 + s(3));
        assert_eq!(c.next_wakeup(&T, &a), t0 + s(5));
    }

    #[test]
    fn idle_counts_reads_writes_and_requests_in_flight() {
        let t0 = Instant::now();
        let mut c = ConnClock::new(t0);
        c.after_frames(0, true, t0);
        let quiet = Activity::default();
        // The quiet buffer goes back after a second, once.
        assert_eq!(c.next_wakeup(&T, &quiet), t0 + RELEASE_AFTER);
        assert_eq!(c.on_timer(&T, &quiet, t0 + s(1)), Tick::Release);
        assert_eq!(c.on_timer(&T, &quiet, t0 + s(2)), Tick::Nothing);
        assert_eq!(c.next_wakeup(&T, &quiet), t0 + s(10));
        // A request in flight at the idle deadline keeps the connection, and idleness counts
        // from then.
        let busy = Activity {
            inflight: 1,
            ..Default::default()
        };
        assert_eq!(c.on_timer(&T, &busy, t0 + s(10)), Tick::Nothing);
        assert_eq!(c.on_timer(&T, &quiet, t0 + s(15)), Tick::Nothing);
        assert_eq!(c.on_timer(&T, &quiet, t0 + s(20)), Tick::Idle);
        // A write counts as activity.
        let mut c = ConnClock::new(t0);
        let wrote = Activity {
            last_write: Some(t0 + s(8)),
            ..Default::default()
        };
        assert_eq!(c.on_timer(&T, &wrote, t0 + s(12)), Tick::Release);
        assert_eq!(c.on_timer(&T, &wrote, t0 + s(17)), Tick::Nothing);
        assert_eq!(c.on_timer(&T, &wrote, t0 + s(18)), Tick::Idle);
        // No idle timeout: only the release is ever due.
        let never = Timeouts { idle: None, ..T };
        let mut c = ConnClock::new(t0);
        assert_eq!(c.on_timer(&never, &quiet, t0 + s(1000)), Tick::Release);
        assert_eq!(c.next_wakeup(&never, &quiet), c.far);
    }
}
