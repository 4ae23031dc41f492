//! The process's drain state, as Envoy's drain manager has it: serving; draining (listeners
//! still accept, but HTTP/1.1 responses carry `Connection: close` and HTTP/2 connections get
//! GOAWAY, so clients move elsewhere); closed (listeners stop accepting; established
//! connections run to their end). `/drain_listeners` starts it: at once, or with `?graceful`
//! after the drain time (`--drain-time-s`, Envoy's default 600 s).
//!
//! Shared by every worker through one watch channel (a worker's listener and its HTTP/2
//! connections wait on it) and an atomic the per-response check reads.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::watch;

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
