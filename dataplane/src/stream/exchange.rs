//! One request/response exchange of a multiplexed RPC protocol, and the downstream connection it
//! answers on. An exchange is owned by exactly one place at a time: the proxy while it routes,
//! an upstream connection's pending table while the request is out, and it ends by writing
//! exactly one response (the upstream's or sluice's own) to its downstream. Dropping an
//! exchange without answering is a bug, so every path ends in `respond` or `reply_locally`.

use super::outbox::Outbox;
use super::signal::Signal;
pub use crate::error::ProxyError;
use crate::protocol::xprotocol::{Codec, FrameHead, LocalReply};
use crate::stats::RpcProxyStats;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use tokio::time::Instant;

/// The downstream side of exchanges: where their responses go, and the bounds that stop sluice
/// reading the connection: requests in flight (until their answer is written), its own unwritten
/// answers, and an upstream connection it sent to that is backed up.
pub struct Downstream {
    pub outbox: Rc<Outbox>,
    pub codec: Arc<dyn Codec>,
    pub stats: Arc<RpcProxyStats>,
    inflight: Cell<u32>,
    max_inflight: u32,
    /// Signalled when an exchange ends, for a reader waiting on the in-flight bound.
    pub progress: Signal,
    /// An upstream connection this downstream queued a frame on while it was over its limit;
    /// reading waits until it has drained.
    blocked_on: RefCell<Option<Rc<Outbox>>>,
}

impl Downstream {
    pub fn new(
        outbox: Rc<Outbox>,
        codec: Arc<dyn Codec>,
        stats: Arc<RpcProxyStats>,
        max_inflight: u32,
    ) -> Rc<Downstream> {
        Rc::new(Downstream {
            outbox,
            codec,
            stats,
            inflight: Cell::new(0),
            max_inflight,
            progress: Signal::default(),
            blocked_on: RefCell::new(None),
        })
    }

    /// Exchanges not yet answered.
    pub fn inflight(&self) -> u32 {
        self.inflight.get()
    }

    /// At the in-flight bound: exchanges plus answers not yet written.
    pub fn is_full(&self) -> bool {
        self.inflight.get() + self.outbox.unwritten_frames() >= self.max_inflight
    }

    /// A frame of this downstream's went onto `upstream` while it was over its limit.
    pub fn block_on(&self, upstream: &Rc<Outbox>) {
        *self.blocked_on.borrow_mut() = Some(upstream.clone());
    }

    /// Whether the reader must stop before reading more.
    pub fn must_pause(&self) -> bool {
        self.is_full() || self.outbox.over_limit() || self.blocked_on.borrow().is_some()
    }

    /// Waits until reading may resume: below the in-flight bound, the own outbox drained to its
    /// low watermark, and any backed-up upstream drained to its own. Returns at once when the
    /// connection's writer is gone (the caller then closes).
    pub async fn wait_for_room(&self) {
        loop {
            if self.outbox.is_dead() {
                return;
            }
            let upstream = self.blocked_on.borrow().clone();
            if let Some(u) = &upstream {
                if !u.above_low_watermark() {
                    *self.blocked_on.borrow_mut() = None;
                    continue;
                }
            }
            let own = self.is_full() || self.outbox.above_low_watermark();
            match (own, upstream) {
                (false, None) => return,
                (_, Some(u)) => {
                    tokio::select! {
                        _ = self.progress.notified() => {}
                        _ = self.outbox.written.notified() => {}
                        _ = u.drained() => {}
                    }
                }
                (true, None) => {
                    tokio::select! {
                        _ = self.progress.notified() => {}
                        _ = self.outbox.written.notified() => {}
                    }
                }
            }
        }
    }

    fn begin(&self) {
        self.inflight.set(self.inflight.get() + 1);
        self.stats.downstream_rq_active.inc();
    }

    fn end(&self) {
        self.inflight.set(self.inflight.get().saturating_sub(1));
        self.stats.downstream_rq_active.dec();
        self.progress.notify();
    }

    /// Answers a request frame with sluice's own reply, outside any exchange (heartbeats).
    pub fn reply_to(&self, request: &[u8], reply: LocalReply) {
        let codec = &self.codec;
        self.outbox
            .push_with(|b| codec.local_reply(request, reply, b));
    }
}

/// Decides what happens to an exchange whose attempt failed: retry it elsewhere or answer it.
pub trait ExchangeOwner {
    fn attempt_failed(&self, exchange: Exchange, why: ProxyError);
}

/// The hosts an exchange has tried, kept inline: a request that needs more attempts than this
/// may go back to a host it tried before.
#[derive(Default, Clone, Copy)]
pub struct Tried {
    hosts: [usize; 4],
    len: u8,
}

impl Tried {
    pub fn push(&mut self, host: usize) {
        if usize::from(self.len) < self.hosts.len() {
            self.hosts[usize::from(self.len)] = host;
            self.len += 1;
        }
    }
    pub fn as_slice(&self) -> &[usize] {
        &self.hosts[..usize::from(self.len)]
    }
}

/// How much of a request an exchange keeps for answering it itself: codecs build local replies
/// from the request's fixed header alone.
pub const REPLY_PREFIX: usize = 32;

pub struct Exchange {
    /// The start of the request as received, for local replies.
    prefix: [u8; REPLY_PREFIX],
    /// The whole request, kept only when its route may retry it (else the request's bytes go
    /// from the downstream read buffer straight into the upstream's write buffer).
    pub retry_frame: Option<Box<[u8]>>,
    pub head: FrameHead,
    pub downstream: Rc<Downstream>,
    pub deadline: Instant,
    /// Attempts made so far (1 after the first send).
    pub attempts: u32,
    /// Hosts tried, as indexes into the cluster's current view.
    pub tried: Tried,
    /// Which cluster of the route was chosen (weighted clusters), and the hash key.
    pub cluster: usize,
    pub hash: Option<u64>,
    pub owner: Rc<dyn ExchangeOwner>,
}

impl Exchange {
    /// Starts the exchange for `frame`; `keep` keeps a copy for retries.
    pub fn new(
        frame: &[u8],
        keep: bool,
        head: FrameHead,
        downstream: Rc<Downstream>,
        deadline: Instant,
        owner: Rc<dyn ExchangeOwner>,
    ) -> Exchange {
        downstream.begin();
        let mut prefix = [0u8; REPLY_PREFIX];
        let n = frame.len().min(REPLY_PREFIX);
        prefix[..n].copy_from_slice(&frame[..n]);
        Exchange {
            prefix,
            retry_frame: keep.then(|| frame.into()),
            head,
            downstream,
            deadline,
            attempts: 0,
            tried: Tried::default(),
            cluster: 0,
            hash: None,
            owner,
        }
    }

    /// Delivers the upstream's response, with the downstream's request id put back.
    pub fn respond(self, response: &[u8]) {
        let d = &self.downstream;
        if d.outbox
            .push_frame(&*d.codec, response, self.head.request_id)
        {
            d.stats.downstream_rs_total.inc();
        }
        d.end();
    }

    /// Answers with sluice's own response (timeout, no route, ...).
    pub fn reply_locally(self, reply: LocalReply) {
        let d = &self.downstream;
        let id = self.head.request_id;
        let prefix = &self.prefix;
        let codec = &d.codec;
        d.outbox.push_with(|b| {
            let start = b.len();
            codec.local_reply(prefix, reply, b);
            codec.set_request_id(&mut b[start..], id);
        });
        d.stats.downstream_rq_local_reply.inc();
        d.end();
    }

    /// Hands the exchange to its owner after a failed attempt.
    pub fn fail(self, why: ProxyError) {
        let owner = self.owner.clone();
        owner.attempt_failed(self, why);
    }
}
