//! The process's drain state, as Envoy's drain manager has it: serving; draining (listeners
//! still accept, but HTTP/1.1 responses carry `Connection: close` and HTTP/2 connections get
//! GOAWAY, so clients move elsewhere); closed (listeners stop accepting; established
//! connections run to their end). `/drain_listeners` starts it: at once, or with `?graceful`
//! after the drain time (`--drain-time-s`, Envoy's default 600 s).
//!
//! How connections are asked to close during a graceful drain is `--drain-strategy`, as
//! Envoy's: `gradual` (the default) asks each with a probability that grows from 0 to 1 over
//! the drain time, and schedules each HTTP/2 connection's GOAWAY at a random point of it, so
//! that clients do not all reconnect at once; `immediate` asks every one at once.
//!
//! Shared by every worker through one watch channel (a worker's listener and its HTTP/2
//! connections wait on it) and an atomic the per-response check reads.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// `--drain-strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Gradual,
    Immediate,
}

static IMMEDIATE: AtomicBool = AtomicBool::new(false);
/// When the graceful drain began and how long it lasts (set once, when it starts).
static WINDOW: Mutex<Option<(Instant, Duration)>> = Mutex::new(None);

/// Sets the strategy (at start-up, from the command line).
pub fn set_strategy(s: Strategy) {
    IMMEDIATE.store(s == Strategy::Immediate, Ordering::Relaxed);
}

/// How far into the drain window `now` is, 0 to 1; 1 once it is over, or when the drain is
/// immediate or was not graceful.
fn progress(now: Instant) -> f64 {
    if IMMEDIATE.load(Ordering::Relaxed) {
        return 1.0;
    }
    match *WINDOW.lock().unwrap_or_else(|e| e.into_inner()) {
        Some((start, length)) if !length.is_zero() => {
            (now.saturating_duration_since(start).as_secs_f64() / length.as_secs_f64()).min(1.0)
        }
        _ => 1.0,
    }
}

/// A number in [0, 1) that differs from call to call and thread to thread (a per-thread
/// xorshift with a random seed; it only spreads closes out).
fn uniform() -> f64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local!(static STATE: Cell<u64> =
        Cell::new(RandomState::new().hash_one(std::time::SystemTime::now()) | 1));
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// Whether a connection should be asked to close now (Envoy's `drainClose()`): never while
/// serving; while draining, at once with the immediate strategy, else with a probability of
/// the share of the drain time gone; always once listeners are closed.
pub fn drain_close() -> bool {
    match phase() {
        Phase::Serving => false,
        Phase::Closed => true,
        Phase::Draining => {
            let p = progress(Instant::now());
            p >= 1.0 || uniform() < p
        }
    }
}

/// How long from now a connection that should close during the drain waits before it is
/// asked to (Envoy's drain-close callback): a random point of what is left of the drain time
/// with the gradual strategy, none with the immediate one.
pub fn close_delay() -> Duration {
    if IMMEDIATE.load(Ordering::Relaxed) {
        return Duration::ZERO;
    }
    match *WINDOW.lock().unwrap_or_else(|e| e.into_inner()) {
        Some((start, length)) => {
            let left = (start + length).saturating_duration_since(Instant::now());
            left.mul_f64(uniform())
        }
        None => Duration::ZERO,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Connections are asked to close; listeners still accept.
    Draining,
    /// Listeners have stopped accepting.
    Closed,
}

static PHASE: AtomicU8 = AtomicU8::new(0);
static CHANNEL: OnceLock<watch::Sender<Phase>> = OnceLock::new();

fn channel() -> &'static watch::Sender<Phase> {
    CHANNEL.get_or_init(|| watch::channel(Phase::Serving).0)
}

fn set(phase: Phase) {
    PHASE.store(phase as u8, Ordering::Relaxed);
    channel().send_replace(phase);
}

/// The phase now (a relaxed load: cheap enough for every response).
pub fn phase() -> Phase {
    match PHASE.load(Ordering::Relaxed) {
        0 => Phase::Serving,
        1 => Phase::Draining,
        _ => Phase::Closed,
    }
}

pub fn is_draining() -> bool {
    phase() != Phase::Serving
}

/// Tells of every change of phase.
pub fn subscribe() -> watch::Receiver<Phase> {
    channel().subscribe()
}

/// Starts draining: listeners close at once, or after `graceful` has passed.
pub fn start(graceful: Option<Duration>) {
    if phase() != Phase::Serving {
        return;
    }
    match graceful {
        None => {
            set(Phase::Draining);
            set(Phase::Closed);
        }
        Some(t) => {
            *WINDOW.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), t));
            set(Phase::Draining);
            std::thread::spawn(move || {
                std::thread::sleep(t);
                set(Phase::Closed);
            });
        }
    }
}

/// Waits until the phase is at least `want`.
pub async fn reached(rx: &mut watch::Receiver<Phase>, want: Phase) {
    let rank = |p: Phase| p as u8;
    let _ = rx.wait_for(|p| rank(*p) >= rank(want)).await;
}
