//! The `sluice.filters.network.rpc_proxy` network filter: multiplexed RPC (Bolt, and whatever
//! else the codec registry holds) proxied at L7.
//!
//! A downstream connection's protocol is detected from its first bytes. Each request frame is
//! routed (service -> virtual host -> route by method and headers), a cluster and a host are
//! picked (weighted clusters, subsets, hash key), and the request leaves on a pooled,
//! multiplexed upstream connection. Heartbeats are answered here; requests nothing routes get
//! the protocol's "no processor" reply. Connections speaking no known protocol go to the
//! passthrough cluster as opaque bytes, or are closed.

pub mod config;
mod router;

pub use config::*;

use super::cluster::{Cluster, Host, PickRequest};
use super::lb::{hash64, Rng};
use super::tcp_proxy::TcpProxyConfig;
use super::tcp_proxy::{Active, TcpProxy};
use crate::config::common::DEFAULT_BUFFER_LIMIT;
use crate::config::TcpRoute;
use crate::error::ProxyError;
use crate::fasthash::FastMap;
use crate::io::{Connection, Prefixed};
use crate::protocol::registry::{self, Detected};
use crate::protocol::xprotocol::{Codec, FrameHead, FrameKind, LocalReply};
use crate::route::target::Targets;
use crate::stats::{RpcProxyStats, Shard};
use crate::stream::conn_clock::{Activity, ConnClock, Tick, Timeouts};
use crate::stream::exchange::{Downstream, Exchange, ExchangeOwner};
use crate::stream::framed::FrameReader;
use crate::stream::outbox::{finish_writer, write_loop, Outbox};
use crate::stream::upstream::{HostPool, PoolContext, PoolSettings};
use bytes::BytesMut;
use router::Router;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// One proxy instance's upstream pools to one cluster, keyed by host address and protocol (a
/// listener may speak several protocols; a connection speaks one). When the proxy is replaced
/// (config reload) and its last request is done, the pools drain and close.
pub struct Pools {
    settings: Rc<PoolSettings>,
    cluster: Rc<Cluster>,
    proxy_stats: Arc<RpcProxyStats>,
    map: RefCell<FastMap<(SocketAddr, &'static str), Rc<HostPool>>>,
}

impl Pools {
    fn get(&self, host: &Rc<Host>, codec: &Arc<dyn Codec>) -> Rc<HostPool> {
        self.map
            .borrow_mut()
            .entry((host.address, codec.name()))
            .or_insert_with(|| {
                Rc::new(HostPool::new(PoolContext {
                    host: host.clone(),
                    codec: codec.clone(),
                    settings: self.settings.clone(),
                    connector: self.cluster.connector.clone(),
                    cluster_stats: self.cluster.stats.clone(),
                    proxy_stats: self.proxy_stats.clone(),
                }))
            })
            .clone()
    }
}

impl Drop for Pools {
    fn drop(&mut self) {
        for p in self.map.borrow().values() {
            p.drain();
        }
    }
}

/// One route with what it needs to send a request: its clusters' pools and weights.
pub struct RouteEntry {
    action: RpcRouteAction,
    /// One entry per cluster of the route (one, or the weighted clusters).
    targets: Targets<Rc<Pools>>,
    rng: Rc<RefCell<Rng>>,
}

impl RouteEntry {
    fn choose_cluster(&self) -> usize {
        self.targets.pick(&mut self.rng.borrow_mut())
    }

    fn pick(&self, target: usize, tried: &[usize], hash: Option<u64>) -> Option<(usize, Rc<Host>)> {
        let cluster = &self.targets.get(target).cluster;
        let subset = Some(&self.action.metadata_match);
        cluster
            .pick(&PickRequest {
                tried,
                hash,
                subset,
            })
            // A retry may go back to a host already tried when no other is left.
            .or_else(|| {
                if tried.is_empty() {
                    None
                } else {
                    cluster.pick(&PickRequest {
                        tried: &[],
                        hash,
                        subset,
                    })
                }
            })
    }

    /// Sends the next attempt of `ex`: `frame` on the first, the exchange's copy on retries.
    fn dispatch(&self, mut ex: Exchange, frame: Option<&[u8]>) {
        let pools = &self.targets.get(ex.cluster);
        let Some((index, host)) = self.pick(ex.cluster, ex.tried.as_slice(), ex.hash) else {
            pools.cluster.stats.upstream_rq_no_healthy.inc();
            ex.reply_locally(LocalReply::from(ProxyError::NoHealthyUpstream));
            return;
        };
        ex.tried.push(index);
        ex.attempts += 1;
        let pool = pools.get(&host, &ex.downstream.codec);
        pool.send(ex, frame, self.action.retry.per_try_timeout);
    }

    fn send_oneway(&self, frame: &[u8], downstream: &Downstream) {
        let c = self.choose_cluster();
        let hash = self.hash_key(&*downstream.codec, frame);
        let Some((_, host)) = self.pick(c, &[], hash) else {
            self.targets
                .get(c)
                .cluster
                .stats
                .upstream_rq_no_healthy
                .inc();
            return;
        };
        let pool = self.targets.get(c).get(&host, &downstream.codec);
        if !pool.send_oneway(frame, downstream) {
            // Every connection to the host is at its request limit: a oneway request has no
            // answer to carry the failure, so it is dropped and counted.
            downstream.stats.downstream_rq_oneway_dropped.inc();
        }
    }

    fn hash_key(&self, codec: &dyn Codec, frame: &[u8]) -> Option<u64> {
        let name = self.action.hash_header.as_deref()?;
        codec.header(frame, name).map(hash64)
    }
}

impl ExchangeOwner for RouteEntry {
    fn attempt_failed(&self, ex: Exchange, why: ProxyError) {
        // retry_on connect-failure and per-try-timeout: the two conditions rpc_proxy offers.
        let retriable = matches!(why, ProxyError::ConnectFailure | ProxyError::PerTryTimeout);
        if retriable && ex.attempts <= self.action.retry.num_retries && Instant::now() < ex.deadline
        {
            self.targets
                .get(ex.cluster)
                .cluster
                .stats
                .upstream_rq_retry
                .inc();
            self.dispatch(ex, None);
            return;
        }
        ex.reply_locally(LocalReply::from(why));
    }
}

pub struct RpcProxy {
    pub config: Arc<RpcProxyConfig>,
    pub stats: Arc<RpcProxyStats>,
    codecs: Vec<Arc<dyn Codec>>,
    router: Router<Rc<RouteEntry>>,
    passthrough: Option<Rc<TcpProxy>>,
    /// The listener's per-connection buffer bound: unwritten answers above it pause reading.
    buffer_limit: usize,
}

impl crate::proxy::network_filter::ConnectionHandler for RpcProxy {
    fn serve(
        self: Rc<Self>,
        conn: Connection,
        peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        Box::pin(RpcProxy::serve(self, conn, peer))
    }
}

impl RpcProxy {
    /// Builds the proxy for one worker; `cluster` resolves names in the snapshot.
    pub fn new(
        config: Arc<RpcProxyConfig>,
        shard: &Shard,
        buffer_limit: usize,
        cluster: &dyn Fn(&str) -> Result<Rc<Cluster>, String>,
        rng: Rc<RefCell<Rng>>,
    ) -> Result<RpcProxy, String> {
        let stats = shard.rpc_proxy(&config.stat_prefix);
        let codecs = config
            .protocols
            .iter()
            .map(|p| registry::by_name(p).ok_or_else(|| format!("unknown protocol {p}")))
            .collect::<Result<Vec<_>, _>>()?;
        // One set of pools per cluster the proxy routes to, shared by every route to it.
        let mut pools: HashMap<String, Rc<Pools>> = HashMap::new();
        let mut pools_of = |name: &str| -> Result<Rc<Pools>, String> {
            if let Some(p) = pools.get(name) {
                return Ok(p.clone());
            }
            let c = cluster(name)?;
            let up = &config.upstream;
            let p = Rc::new(Pools {
                settings: Rc::new(PoolSettings {
                    connections_per_host: up.connections_per_host,
                    max_requests_per_connection: up.max_requests_per_connection,
                    heartbeat_interval: up.heartbeat_interval,
                    heartbeat_timeout: up.heartbeat_timeout,
                    max_frame: config.max_frame_bytes,
                    buffer_limit: c.config.buffer_limit.unwrap_or(DEFAULT_BUFFER_LIMIT),
                }),
                cluster: c,
                proxy_stats: stats.clone(),
                map: RefCell::new(FastMap::default()),
            });
            pools.insert(name.to_string(), p.clone());
            Ok(p)
        };
        let mut failed = None;
        let router = Router::new(&config.routes, |vi, ri| {
            let action = config.routes.virtual_hosts[vi].routes[ri].action.clone();
            let names: Vec<(&str, u32)> = match &action.target {
                TcpRoute::Cluster(c) => vec![(c.as_str(), 1)],
                TcpRoute::Weighted(list) => {
                    list.iter().map(|w| (w.name.as_str(), w.weight)).collect()
                }
            };
            let mut targets = Vec::new();
            for (n, w) in &names {
                match pools_of(n) {
                    Ok(p) => targets.push((p, *w)),
                    Err(e) => failed = Some(e),
                }
            }
            Rc::new(RouteEntry {
                action,
                targets: Targets::weighted(targets),
                rng: rng.clone(),
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let passthrough = match &config.passthrough_cluster {
            Some(name) => {
                let stat_prefix = format!("{}.passthrough", config.stat_prefix);
                Some(Rc::new(TcpProxy {
                    stats: shard.tcp_proxy(&stat_prefix),
                    config: TcpProxyConfig {
                        stat_prefix,
                        route: TcpRoute::Cluster(name.clone()),
                        idle_timeout: Some(Duration::from_secs(3600)),
                        max_connect_attempts: None,
                    },
                    route: Targets::one(cluster(name)?),
                    buffer_limit,
                    splice: false,
                    rng: rng.clone(),
                }))
            }
            None => None,
        };
        Ok(RpcProxy {
            config,
            stats,
            codecs,
            router,
            passthrough,
            buffer_limit,
        })
    }

    /// Serves one downstream connection to its end.
    pub async fn serve(self: Rc<Self>, mut conn: Connection, peer: SocketAddr) {
        self.stats.downstream_cx_total.inc();
        let _active = Active::raise(&self.stats.downstream_cx_active);
        // Detection needs a few bytes; the frame reader grows the buffer as frames need.
        let mut first = BytesMut::with_capacity(DETECT_READ);
        let codec = loop {
            match registry::detect(&self.codecs, &first) {
                Detected::Codec(c) => break c,
                Detected::Unknown => {
                    self.stats.downstream_cx_unknown_protocol.inc();
                    match &self.passthrough {
                        Some(tp) => {
                            self.stats.downstream_cx_passthrough.inc();
                            let replay = Prefixed::new(first.freeze(), conn);
                            tp.clone()
                                .serve(Connection::Stream(Box::new(replay)), peer)
                                .await;
                        }
                        None => {
                            tracing::warn!(%peer, first_byte = first[0], "connection speaks none of the configured protocols and no passthrough cluster is set; closing it");
                        }
                    }
                    return;
                }
                Detected::NeedMore => {
                    // Silence before the first byte is idleness; silence after it is a stalled
                    // frame.
                    let limit = if first.is_empty() {
                        self.config.idle_timeout
                    } else {
                        Some(self.config.frame_timeout)
                    };
                    let read = conn.read_buf(&mut first);
                    let r = match limit {
                        Some(d) => tokio::time::timeout(d, read).await.ok(),
                        None => Some(read.await),
                    };
                    match r {
                        Some(Ok(n)) if n > 0 => {}
                        Some(_) => return,
                        None if first.is_empty() => {
                            self.stats.downstream_cx_idle_timeout.inc();
                            return;
                        }
                        None => {
                            self.stats.downstream_cx_frame_timeout.inc();
                            tracing::debug!(%peer, bytes = first.len(), "downstream stalled before its first frame was whole; closing it");
                            return;
                        }
                    }
                }
            }
        };
        let (mut rd, wr) = conn.split();
        let outbox = Outbox::new(self.buffer_limit);
        let writer = tokio::task::spawn_local(write_loop(outbox.clone(), wr));
        let downstream = Downstream::new(
            outbox.clone(),
            codec.clone(),
            self.stats.clone(),
            self.config.max_requests_per_downstream,
        );
        let mut reader = FrameReader::new(codec.clone(), self.config.max_frame_bytes, first);
        let timeouts = Timeouts {
            idle: self.config.idle_timeout,
            frame: self.config.frame_timeout,
        };
        let activity = |reader: &FrameReader| Activity {
            inflight: downstream.inflight(),
            last_write: outbox.last_write(),
            buffered: reader.buffered(),
        };
        let mut clock = ConnClock::new(Instant::now());
        let timer = tokio::time::sleep_until(clock.armed);
        tokio::pin!(timer);
        let end = 'conn: loop {
            // One clock read per batch of frames (the read's): deadlines need no finer grain.
            let now = clock.last_read;
            let mut consumed = false;
            loop {
                match reader.next_frame() {
                    Ok(Some(head)) => {
                        self.on_frame(&downstream, head, reader.frame(head.len), now);
                        reader.consume(head.len);
                        consumed = true;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.stats.downstream_cx_protocol_error.inc();
                        tracing::warn!(%peer, protocol = codec.name(), error = %e, "bad frame from downstream; closing the connection");
                        break 'conn End::Finish;
                    }
                }
            }
            clock.after_frames(reader.buffered(), consumed, now);
            // Backpressure: no more reading while the connection has its fill of requests out,
            // its answers are piling up unread, or an upstream it feeds is backed up.
            if downstream.must_pause() && !outbox.is_dead() {
                self.stats
                    .downstream_flow_control_paused_reading_total
                    .inc();
                if !self.pause(&downstream, &mut clock, &timeouts).await {
                    break 'conn End::Idle;
                }
                self.stats
                    .downstream_flow_control_resumed_reading_total
                    .inc();
            }
            if outbox.is_dead() {
                break End::Finish;
            }
            let wanted = clock.next_wakeup(&timeouts, &activity(&reader));
            if wanted < clock.armed {
                timer.as_mut().reset(wanted);
                clock.armed = wanted;
            }
            tokio::select! {
                r = reader.fill(&mut rd) => match r {
                    Ok(true) => clock.on_read(Instant::now()),
                    Ok(false) | Err(_) => {
                        if reader.buffered() > 0 {
                            self.stats.downstream_cx_protocol_error.inc();
                            tracing::warn!(%peer, bytes = reader.buffered(), "downstream closed in the middle of a frame (truncated frame)");
                        }
                        break End::ClientDone;
                    }
                },
                _ = &mut timer => {
                    clock.armed = clock.far;
                    timer.as_mut().reset(clock.far);
                    match clock.on_timer(&timeouts, &activity(&reader), Instant::now()) {
                        Tick::FrameTimeout => break End::FrameTimeout,
                        Tick::Idle => break End::Idle,
                        Tick::Release => {
                            reader.release_if_empty();
                            outbox.release_idle_buffers();
                        }
                        Tick::Nothing => {}
                    }
                }
            }
        };
        match end {
            End::ClientDone | End::Finish => {}
            End::FrameTimeout => {
                self.stats.downstream_cx_frame_timeout.inc();
                tracing::debug!(%peer, bytes = reader.buffered(), "downstream stalled in the middle of a frame; closing it");
            }
            End::Idle => {
                self.stats.downstream_cx_idle_timeout.inc();
                tracing::debug!(%peer, "downstream connection idle; closing it");
                // Nothing in flight and nothing moving: no answer is lost by not waiting.
                writer.abort();
                return;
            }
        }
        // Requests already accepted get their answers (each ends by its deadline at the latest).
        drop(reader);
        while downstream.inflight() > 0 && !outbox.is_dead() {
            downstream.progress.notified().await;
        }
        outbox.close();
        // Answers already queued are written, unless the client reads none of them for as long
        // as an idle connection is kept.
        let grace = self
            .config
            .idle_timeout
            .unwrap_or(self.config.frame_timeout);
        if !finish_writer(writer, grace).await {
            self.stats.downstream_cx_idle_timeout.inc();
        }
    }

    /// Waits while the connection must not be read (see `Downstream::must_pause`). `false`: the
    /// connection was idle (no request in flight, no byte written) for `idle_timeout` meanwhile,
    /// as with a client that never reads its answers.
    async fn pause(&self, downstream: &Downstream, clock: &mut ConnClock, t: &Timeouts) -> bool {
        let activity = || Activity {
            inflight: downstream.inflight(),
            last_write: downstream.outbox.last_write(),
            buffered: 0,
        };
        loop {
            let Some(deadline) = clock.idle_deadline(t, &activity()) else {
                downstream.wait_for_room().await;
                break;
            };
            tokio::select! {
                _ = downstream.wait_for_room() => break,
                _ = tokio::time::sleep_until(deadline) => {
                    if clock.idle_due(t, &activity(), Instant::now()) {
                        return false;
                    }
                }
            }
        }
        clock.after_pause(Instant::now());
        true
    }

    fn on_frame(&self, downstream: &Rc<Downstream>, head: FrameHead, frame: &[u8], now: Instant) {
        match head.kind {
            FrameKind::Heartbeat => {
                self.stats.downstream_heartbeat.inc();
                downstream.reply_to(frame, LocalReply::HeartbeatAck);
            }
            FrameKind::Response | FrameKind::HeartbeatAck => {
                self.stats.downstream_unexpected_response.inc();
            }
            FrameKind::Oneway => {
                self.stats.downstream_rq_total.inc();
                self.stats.downstream_rq_oneway.inc();
                match self.router.route(&*downstream.codec, frame) {
                    Some(route) => route.send_oneway(frame, downstream),
                    None => self.stats.downstream_rq_no_route.inc(),
                }
            }
            FrameKind::Request => {
                self.stats.downstream_rq_total.inc();
                let route = self.router.route(&*downstream.codec, frame).cloned();
                let deadline = self.deadline(now, head.timeout_ms, route.as_deref());
                let Some(route) = route else {
                    self.stats.downstream_rq_no_route.inc();
                    let owner: Rc<dyn ExchangeOwner> = Rc::new(NoOwner);
                    Exchange::new(frame, false, head, downstream.clone(), deadline, owner)
                        .reply_locally(LocalReply::from(ProxyError::NoRoute));
                    return;
                };
                let hash = route.hash_key(&*downstream.codec, frame);
                let owner: Rc<dyn ExchangeOwner> = route.clone();
                let keep = route.action.retry.num_retries > 0;
                let mut ex = Exchange::new(frame, keep, head, downstream.clone(), deadline, owner);
                ex.cluster = route.choose_cluster();
                ex.hash = hash;
                route.dispatch(ex, Some(frame));
            }
        }
    }

    /// The request's own timeout, capped by its route's; the default when neither sets one.
    fn deadline(&self, now: Instant, timeout_ms: u32, route: Option<&RouteEntry>) -> Instant {
        let own = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
        let by_route = route.and_then(|r| r.action.timeout);
        let d = match (own, by_route) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => self.config.default_timeout,
        };
        now + d
    }
}

/// The least room the first read of a downstream connection gets (detection needs a few bytes).
const DETECT_READ: usize = 512;

/// How a downstream connection's read loop ended.
enum End {
    /// EOF or a read error.
    ClientDone,
    /// A bad frame, or the writer is gone.
    Finish,
    FrameTimeout,
    Idle,
}

/// The owner of an exchange answered at once (no route): it never has an attempt to fail.
struct NoOwner;

impl ExchangeOwner for NoOwner {
    fn attempt_failed(&self, ex: Exchange, _why: ProxyError) {
        ex.reply_locally(LocalReply::from(ProxyError::NoRoute));
    }
}

#[cfg(test)]
mod tests;
