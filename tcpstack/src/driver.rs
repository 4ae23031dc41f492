//! The task that runs a stack on a tokio current-thread runtime: it receives frames when the
//! device is readable, sends when connections have work, and wakes for timers. It yields after
//! every round of work so the connections' tasks consume what arrived before more is read: the
//! receive windows, not an unbounded queue, then pace the peers.

use crate::socket::SharedStack;
use smoltcp::time::Instant;
use std::future::poll_fn;
use std::future::Future;
use std::os::fd::RawFd;
use std::task::Poll;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Monotonic time as the stack counts it.
#[derive(Clone, Copy)]
pub struct Clock(std::time::Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(std::time::Instant::now())
    }
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.0.elapsed().as_micros() as i64)
    }
    fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        let offset = std::time::Duration::from_micros(at.total_micros().max(0) as u64);
        tokio::time::Instant::from_std(self.0 + offset)
    }
}

struct Fd(RawFd);

impl std::os::fd::AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Registers a descriptor of the stack's devices with the reactor.
fn readiness(fd: Option<RawFd>) -> std::io::Result<Option<AsyncFd<Fd>>> {
    match fd {
        // SAFETY: the descriptor belongs to one of the stack's devices, and the driver task
        // holds the stack (and so the device) for as long as the registration lives.
        Some(fd) => Ok(Some(unsafe {
            AsyncFd::register_with_interest(Fd(fd), Interest::READABLE)?
        })),
        None => Ok(None),
    }
}

/// Whether `fd` is readable; when it is, its readiness is cleared before the caller drains
/// it, so a frame arriving after the last empty read raises readiness again.
fn take_ready(fd: &Option<AsyncFd<Fd>>, cx: &mut std::task::Context<'_>) -> bool {
    match fd.as_ref().map(|fd| fd.poll_read_ready(cx)) {
        Some(Poll::Ready(Ok(mut guard))) => {
            guard.clear_ready();
            true
        }
        _ => false,
    }
}

/// Runs `stack` until the task is dropped.
pub async fn drive(stack: SharedStack, clock: Clock) -> std::io::Result<()> {
    let fd = readiness(stack.borrow().device().raw_fd())?;
    let kernel_fd = readiness(stack.borrow().kernel_fd())?;
    let mut sleep = Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
    loop {
        let worked = {
            let mut st = stack.borrow_mut();
            let now = clock.now();
            // Not short-circuited: both the wire and the kernel's TAP are drained each round.
            st.poll(now) | (kernel_fd.is_some() && st.poll_kernel(now))
        };
        if worked {
            tokio::task::yield_now().await;
            continue;
        }
        let deadline = stack.borrow().next_deadline();
        if let Some(at) = deadline {
            sleep.as_mut().reset(clock.to_tokio(at));
        }
        poll_fn(|cx| {
            let mut st = stack.borrow_mut();
            st.set_kick(cx.waker());
            // Both are asked, so both register this task's waker.
            let kernel = take_ready(&kernel_fd, cx);
            if fd.is_some() {
                if take_ready(&fd, cx) | kernel {
                    return Poll::Ready(());
                }
            } else if st.device_mut().register_rx(cx.waker()) || kernel {
                return Poll::Ready(());
            }
            if st.next_deadline().is_some_and(|at| at <= st.now()) {
                return Poll::Ready(());
            }
            drop(st);
            if deadline.is_some() && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
    }
}

/// What a poll-mode driver does when a round finds nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Poll again at once: lowest latency, one core at 100% whatever the load.
    Poll,
    /// After a spell of empty rounds, nap for growing spells up to `max_sleep`: the core goes
    /// quiet when traffic stops, at the cost of up to `max_sleep` latency for the first frame.
    Backoff { max_sleep: std::time::Duration },
}

/// Rounds between looks at a quiet kernel fallback TAP in poll mode.
const KERNEL_POLL_EVERY: u32 = 32;

/// Empty rounds spun before the first nap (a few tens of microseconds of polling).
const SPIN_ROUNDS: u32 = 512;

impl IdlePolicy {
    fn nap(self, empty_rounds: u32) {
        if let IdlePolicy::Backoff { max_sleep } = self {
            if empty_rounds > SPIN_ROUNDS {
                let exp = (empty_rounds - SPIN_ROUNDS).min(16);
                let nap = std::time::Duration::from_micros(1 << exp).min(max_sleep);
                std::thread::sleep(nap);
            }
        }
    }
}

/// Runs `stack` on a device that is polled, not signalled (a DPDK queue): every turn of the
/// event loop receives a burst, runs timers and sends, then lets the connections' tasks run.
/// The task re-queues itself instead of yielding to the reactor, so the loop makes no system
/// call per round; tokio still checks its reactor and timers every few dozen tasks.
pub async fn drive_polling(stack: SharedStack, clock: Clock, idle: IdlePolicy) {
    let mut empty_rounds = 0u32;
    let has_kernel = stack.borrow().kernel_fd().is_some();
    let mut kernel_countdown = 0u32;
    poll_fn(|cx| {
        let mut st = stack.borrow_mut();
        let now = clock.now();
        let mut worked = st.poll(now);
        // The kernel's TAP costs a system call to look at, so a quiet one is looked at every
        // few rounds only (microseconds apart), a busy one every round.
        if has_kernel {
            if kernel_countdown == 0 {
                kernel_countdown = if st.poll_kernel(now) {
                    worked = true;
                    0
                } else {
                    KERNEL_POLL_EVERY
                };
            } else {
                kernel_countdown -= 1;
            }
        }
        drop(st);
        if worked {
            empty_rounds = 0;
        } else {
            empty_rounds = empty_rounds.saturating_add(1);
            idle.nap(empty_rounds);
        }
        cx.waker().wake_by_ref();
        Poll::<()>::Pending
    })
    .await
}
