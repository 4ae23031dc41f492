//! Multiplexed upstream connections and the per-host pool that holds them.
//!
//! Request ids belong to the connection they travel on: each request gets a fresh id from its
//! upstream connection, and the response is matched by that id back to its exchange, which puts
//! the downstream's id back. The connection's task owns the socket's reading side, the deadline
//! heap of its outstanding requests and the heartbeat of an idle connection.

use super::deadlines::DeadlineQueue;
use super::exchange::{Downstream, Exchange};
use super::framed::FrameReader;
use super::outbox::{finish_writer, write_loop, Outbox};
use super::signal::Signal;
use crate::error::ProxyError;
use crate::fasthash::FastMap;
use crate::io::connect::{ConnectError, Connector};
use crate::protocol::xprotocol::{Codec, FrameKind, LocalReply};
use crate::proxy::cluster::Host;
use crate::stats::{ClusterStats, RpcProxyStats};
use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What a pool needs to know, from the proxy's `upstream` config and the cluster.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub connections_per_host: u32,
    pub max_requests_per_connection: u32,
    pub heartbeat_interval: Option<Duration>,
    pub heartbeat_timeout: Duration,
    pub max_frame: usize,
    /// Unwritten bytes an upstream connection holds before the downstreams feeding it pause
    /// (the cluster's `per_connection_buffer_limit_bytes`).
    pub buffer_limit: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Connecting,
    Ready,
    Closed,
}

struct Pending {
    exchange: Exchange,
    /// When this attempt gives up; earlier than the exchange's deadline for a per-try timeout.
    try_deadline: Instant,
}

/// What every connection of one host pool shares.
pub struct PoolContext {
    pub host: Rc<Host>,
    /// The protocol the pool's connections speak (pools are per host *and* protocol).
    pub codec: Arc<dyn Codec>,
    pub settings: Rc<PoolSettings>,
    /// The cluster's connector on this worker.
    pub connector: Connector,
    pub cluster_stats: Arc<ClusterStats>,
    pub proxy_stats: Arc<RpcProxyStats>,
}

pub struct UpstreamConn {
    ctx: Rc<PoolContext>,
    outbox: Rc<Outbox>,
    state: Cell<State>,
    pending: RefCell<FastMap<u64, Pending>>,
    deadlines: RefCell<DeadlineQueue>,
    /// Wakes the task when a deadline earlier than all others arrives, or on drain.
    wake: Signal,
    next_id: Cell<u64>,
    wrapped: Cell<bool>,
    heartbeat: Cell<Option<(u64, Instant)>>,
    /// Close once nothing is outstanding (the proxy that owned the pool is gone).
    draining: Cell<bool>,
}

impl UpstreamConn {
    fn open(ctx: Rc<PoolContext>) -> Rc<UpstreamConn> {
        let conn = Rc::new(UpstreamConn {
            outbox: Outbox::new(ctx.settings.buffer_limit),
            ctx,
            state: Cell::new(State::Connecting),
            pending: RefCell::new(FastMap::default()),
            deadlines: RefCell::new(DeadlineQueue::default()),
            wake: Signal::default(),
            next_id: Cell::new(0),
            wrapped: Cell::new(false),
            heartbeat: Cell::new(None),
            draining: Cell::new(false),
        });
        tokio::task::spawn_local(conn.clone().run());
        conn
    }

    fn usable(&self) -> bool {
        self.state.get() != State::Closed && !self.draining.get()
    }

    fn load(&self) -> usize {
        self.pending.borrow().len()
    }

    fn has_room(&self) -> bool {
        self.load() < self.ctx.settings.max_requests_per_connection as usize
    }

    /// A fresh id not in use on this connection. Ids count up from 1; only once they have
    /// wrapped around can a new id meet an old one still outstanding, so only then is it checked.
    fn allocate_id(&self) -> u64 {
        let max = self.ctx.codec.max_request_id();
        let pending = self.pending.borrow();
        let hb = self.heartbeat.get().map(|(id, _)| id);
        loop {
            let id = if self.next_id.get() >= max {
                self.wrapped.set(true);
                1
            } else {
                self.next_id.get() + 1
            };
            self.next_id.set(id);
            if !self.wrapped.get() || (!pending.contains_key(&id) && hb != Some(id)) {
                return id;
            }
        }
    }

    /// Sends one attempt of `ex`; it comes back through its owner if the attempt fails.
    /// `frame` is the request's bytes, or `None` to send the exchange's retry copy.
    fn send(&self, ex: Exchange, frame: Option<&[u8]>, per_try: Option<Duration>) {
        let id = self.allocate_id();
        let bytes = frame.or(ex.retry_frame.as_deref()).unwrap_or_default();
        self.push_from(&ex.downstream, bytes, id);
        let deadline = ex.deadline;
        let try_deadline = per_try.map_or(deadline, |d| (Instant::now() + d).min(deadline));
        self.ctx.host.stats.rq_total.inc();
        self.ctx.host.stats.rq_active.inc();
        self.ctx.cluster_stats.upstream_rq_total.inc();
        self.ctx.cluster_stats.upstream_rq_active.inc();
        let earliest = {
            // Answered requests leave their entries behind; drop them in bulk when they
            // dominate, so memory stays bounded by what is outstanding (amortised O(1)).
            let mut q = self.deadlines.borrow_mut();
            let pending = self.pending.borrow();
            if q.len() > 2 * pending.len() + 1024 {
                q.retain(|id, at| pending.get(&id).is_some_and(|p| p.try_deadline == at));
            }
            let earliest = q.peek().is_none_or(|(d, _)| try_deadline < d);
            q.push(try_deadline, id);
            earliest
        };
        self.pending.borrow_mut().insert(
            id,
            Pending {
                exchange: ex,
                try_deadline,
            },
        );
        if earliest {
            self.wake.notify();
        }
    }

    fn send_oneway(&self, frame: &[u8], downstream: &Downstream) {
        let id = self.allocate_id();
        self.push_from(downstream, frame, id);
        self.ctx.host.stats.rq_total.inc();
        self.ctx.cluster_stats.upstream_rq_total.inc();
    }

    /// Queues `frame` for the upstream. A frame is never refused once accepted; if the
    /// connection is over its limit (the upstream reads slower than downstreams send), the
    /// downstream is told to stop reading until this connection has drained.
    fn push_from(&self, downstream: &Downstream, frame: &[u8], id: u64) {
        let was_over = self.outbox.over_limit();
        self.outbox.push_frame(&*self.ctx.codec, frame, id);
        if self.outbox.over_limit() {
            if !was_over {
                self.ctx
                    .cluster_stats
                    .upstream_flow_control_backed_up_total
                    .inc();
            }
            downstream.block_on(&self.outbox);
        }
    }

    fn take(&self, id: u64) -> Option<Pending> {
        let p = self.pending.borrow_mut().remove(&id)?;
        self.ctx.host.stats.rq_active.dec();
        self.ctx.cluster_stats.upstream_rq_active.dec();
        Some(p)
    }

    /// Fails every outstanding request (the connection is gone or never came up).
    fn fail_all(&self, why: ProxyError) {
        let ids: Vec<u64> = self.pending.borrow().keys().copied().collect();
        for id in ids {
            if let Some(p) = self.take(id) {
                if why == ProxyError::UpstreamReset {
                    self.ctx.cluster_stats.upstream_rq_connection_closed.inc();
                }
                p.exchange.fail(why);
            }
        }
        self.deadlines.borrow_mut().clear();
    }

    /// Ends attempts whose deadline has passed; returns the next deadline.
    fn expire(&self, now: Instant) -> Option<Instant> {
        loop {
            let top = self.deadlines.borrow().peek();
            let (at, id) = top?;
            if at > now {
                return Some(at);
            }
            self.deadlines.borrow_mut().pop();
            let current = self
                .pending
                .borrow()
                .get(&id)
                .is_some_and(|p| p.try_deadline == at);
            if !current {
                continue; // answered already, or the id was reused
            }
            if let Some(p) = self.take(id) {
                self.ctx.cluster_stats.upstream_rq_timeout.inc();
                let overall = p.exchange.deadline <= now;
                p.exchange.fail(if overall {
                    ProxyError::Timeout
                } else {
                    ProxyError::PerTryTimeout
                });
            }
        }
    }

    fn on_frame(&self, kind: FrameKind, id: u64, frame: &[u8]) {
        match kind {
            FrameKind::Response => match self.take(id) {
                Some(p) => p.exchange.respond(frame),
                // Its exchange timed out and was answered already: drop it.
                None => self.ctx.proxy_stats.upstream_rs_late.inc(),
            },
            FrameKind::HeartbeatAck => {
                if self.heartbeat.get().is_some_and(|(h, _)| h == id) {
                    self.heartbeat.set(None);
                }
            }
            FrameKind::Heartbeat => {
                // An upstream that sends heartbeats and reads nothing would grow this outbox
                // without end: over its limit, acks are not queued (the upstream's own
                // heartbeat timeout then does what it should with a peer that never reads).
                if self.outbox.over_limit() {
                    self.ctx.cluster_stats.upstream_heartbeat_ack_dropped.inc();
                    return;
                }
                let codec = &self.ctx.codec;
                self.outbox
                    .push_with(|b| codec.local_reply(frame, LocalReply::HeartbeatAck, b));
            }
            FrameKind::Request | FrameKind::Oneway => {
                // Upstreams do not call downstreams over a proxied connection.
                self.ctx.cluster_stats.upstream_cx_protocol_error.inc();
            }
        }
    }

    /// Connects within the connect timeout while the requests queued meanwhile keep their own
    /// deadlines: one whose deadline passes during the connect is answered (TIMEOUT, or a retry
    /// after a per-try timeout) then, not when the connect ends.
    async fn connect_keeping_deadlines(&self) -> Result<crate::io::Connection, ConnectError> {
        let connecting = self.ctx.connector.connect(self.ctx.host.address);
        tokio::pin!(connecting);
        loop {
            let next = self.expire(Instant::now());
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut connecting => return r,
                _ = sleep => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    async fn run(self: Rc<Self>) {
        let addr = self.ctx.host.address;
        self.ctx.cluster_stats.upstream_cx_total.inc();
        self.ctx.host.stats.cx_total.inc();
        let conn = match self.connect_keeping_deadlines().await {
            Ok(c) => c,
            Err(e) => {
                if matches!(e, ConnectError::Timeout) {
                    self.ctx.cluster_stats.upstream_cx_connect_timeout.inc();
                }
                if !e.is_local() {
                    self.ctx.host.note_connect_failure();
                }
                self.ctx.cluster_stats.upstream_cx_connect_fail.inc();
                self.ctx.host.stats.cx_connect_fail.inc();
                tracing::debug!(upstream = %addr, error = %e, "upstream connect failed");
                self.state.set(State::Closed);
                self.outbox.close();
                self.fail_all(ProxyError::ConnectFailure);
                return;
            }
        };
        self.ctx.host.note_connect_success();
        self.state.set(State::Ready);
        self.ctx.cluster_stats.upstream_cx_active.inc();
        self.ctx.host.stats.cx_active.inc();
        let (mut rd, wr) = conn.split();
        let writer = tokio::task::spawn_local(write_loop(self.outbox.clone(), wr));
        let mut reader = FrameReader::new(
            self.ctx.codec.clone(),
            self.ctx.settings.max_frame,
            BytesMut::with_capacity(64 * 1024),
        );
        let mut last_read = Instant::now();
        let why = 'conn: loop {
            // Deliver every whole frame before reading again.
            loop {
                match reader.next_frame() {
                    Ok(Some(head)) => {
                        self.on_frame(head.kind, head.request_id, reader.frame(head.len));
                        reader.consume(head.len);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.ctx.cluster_stats.upstream_cx_protocol_error.inc();
                        tracing::warn!(upstream = %addr, error = %e, "upstream sent a bad frame; closing the connection");
                        break 'conn "bad frame";
                    }
                }
            }
            if self.draining.get() && self.pending.borrow().is_empty() {
                break "drained";
            }
            let now = Instant::now();
            let next_deadline = self.expire(now);
            let heartbeat_at = match (self.heartbeat.get(), self.ctx.settings.heartbeat_interval) {
                (Some((_, due)), _) => Some(due),
                (None, Some(every)) => Some(last_read + every),
                (None, None) => None,
            };
            let wake_at = [next_deadline, heartbeat_at].into_iter().flatten().min();
            let sleep = async {
                match wake_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = reader.fill(&mut rd) => match r {
                    Ok(true) => last_read = Instant::now(),
                    Ok(false) => break "closed by the upstream",
                    Err(_) => break "read error",
                },
                _ = sleep => {
                    let now = Instant::now();
                    if let Some((_, due)) = self.heartbeat.get() {
                        if due <= now {
                            self.ctx.cluster_stats.upstream_cx_heartbeat_failure.inc();
                            tracing::warn!(upstream = %addr, "upstream did not answer a heartbeat; closing the connection");
                            break "heartbeat timeout";
                        }
                    } else if let Some(every) = self.ctx.settings.heartbeat_interval {
                        if last_read + every <= now {
                            let id = self.allocate_id();
                            let codec = &self.ctx.codec;
                            self.outbox.push_with(|b| codec.heartbeat(id, b));
                            self.heartbeat.set(Some((id, now + self.ctx.settings.heartbeat_timeout)));
                            self.ctx.proxy_stats.upstream_heartbeat_sent.inc();
                        }
                    }
                }
                _ = self.wake.notified() => {}
            }
            if self.outbox.is_dead() {
                break "write error";
            }
        };
        tracing::debug!(upstream = %addr, reason = why, "upstream connection closed");
        self.state.set(State::Closed);
        self.outbox.close();
        self.ctx.cluster_stats.upstream_cx_active.dec();
        self.ctx.host.stats.cx_active.dec();
        self.fail_all(ProxyError::UpstreamReset);
        // Let the writer flush what is queued, but not forever: an upstream that stopped
        // reading would hold the connection (and its buffer) for good.
        finish_writer(writer, self.ctx.connector.timeout()).await;
    }
}

/// The connections of one proxy to one host, for one protocol.
pub struct HostPool {
    ctx: Rc<PoolContext>,
    conns: RefCell<Vec<Rc<UpstreamConn>>>,
    next: Cell<usize>,
}

impl HostPool {
    pub fn new(ctx: PoolContext) -> HostPool {
        HostPool {
            ctx: Rc::new(ctx),
            conns: RefCell::new(Vec::new()),
            next: Cell::new(0),
        }
    }

    /// A connection with room for one more request: opens one while the pool has fewer than
    /// `connections_per_host`, else takes the next with room in turn. `None` (counted as an
    /// overflow) when every connection is at its limit.
    fn choose(&self) -> Option<Rc<UpstreamConn>> {
        let mut conns = self.conns.borrow_mut();
        conns.retain(|c| c.usable());
        if conns.len() < self.ctx.settings.connections_per_host as usize {
            let c = UpstreamConn::open(self.ctx.clone());
            conns.push(c.clone());
            return Some(c);
        }
        let n = conns.len();
        for k in 0..n {
            let c = &conns[(self.next.get() + k) % n];
            if c.has_room() {
                self.next.set((self.next.get() + k + 1) % n);
                return Some(c.clone());
            }
        }
        self.ctx.cluster_stats.upstream_rq_overflow.inc();
        None
    }

    /// Sends one attempt of `ex` on a connection with room, or fails it with `Overflow`.
    pub fn send(&self, ex: Exchange, frame: Option<&[u8]>, per_try: Option<Duration>) {
        match self.choose() {
            Some(c) => c.send(ex, frame, per_try),
            None => ex.fail(ProxyError::UpstreamOverflow),
        }
    }

    /// Sends a oneway request; `false` when every connection is at its limit.
    pub fn send_oneway(&self, frame: &[u8], downstream: &Downstream) -> bool {
        match self.choose() {
            Some(c) => {
                c.send_oneway(frame, downstream);
                true
            }
            None => false,
        }
    }

    /// Lets every connection close once its outstanding requests are answered.
    pub fn drain(&self) {
        for c in self.conns.borrow().iter() {
            c.draining.set(true);
            c.wake.notify();
        }
    }
}
