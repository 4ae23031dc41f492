//! HTTP at L7: Envoy's `envoy.filters.network.http_connection_manager` with its router.
//!
//! - [`config`]: the connection manager's typed_config; [`route_config`]: the
//!   RouteConfiguration; [`filters`]: the HTTP filter extension point; [`access_log`].
//! - [`message`]: the codec-agnostic stream model (heads, bodies pulled frame by frame,
//!   trailers, resets) between the codecs and the router.
//! - [`server_h1`] / [`server_h2`]: downstream connections in HTTP/1.1 (the sans-IO codec in
//!   `protocol::http1`) and HTTP/2 (the `h2` crate, polled on the worker); `AUTO` tells them
//!   apart by the HTTP/2 connection preface.
//! - [`router`] finds the route, [`forward`] runs the request through it to an upstream, with
//!   [`upstream`]'s per-worker HTTP/1.1 and HTTP/2 pools.

pub mod access_log;
pub mod config;
pub mod fields;
pub mod filters;
pub mod forward;
pub mod h2_guard;
pub mod header_mutation;
pub mod local_reply;
pub mod message;
pub mod path_normalize;
pub mod policy;
pub mod replay;
pub mod request_headers;
pub mod rewrite;
pub mod route_action;
pub mod route_config;
pub mod router;
pub mod server_h1;
pub mod server_h2;
pub mod text;
pub mod time_text;
pub mod upstream;

use crate::fasthash::FastMap;
use crate::io::{Connection, Prefixed};
use crate::proxy::cluster::Cluster;
use crate::proxy::lb::Rng;
use crate::proxy::network_filter::{BuildContext, ConnectionHandler};
use crate::stats::HttpStats;
use access_log::Sink;
use bytes::BytesMut;
use config::{CodecType, HcmConfig};
use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// The HTTP/2 connection preface a client sends first.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A cluster as HTTP routes use it on one worker: hosts and balancer, and its HTTP pools.
pub struct Upstream {
    pub cluster: Rc<Cluster>,
    pub pool: Rc<upstream::HttpPool>,
}

/// One connection manager on one worker.
pub struct Hcm {
    pub config: Arc<HcmConfig>,
    pub routes: Rc<router::RouteTable>,
    pub clusters: FastMap<String, Rc<Upstream>>,
    pub stats: Arc<HttpStats>,
    pub rng: Rc<RefCell<Rng>>,
    pub buffer_limit: usize,
    server_name: http::HeaderValue,
    logs: Vec<(Arc<Sink>, access_log::Format)>,
}

impl Hcm {
    pub fn new(config: Arc<HcmConfig>, ctx: &BuildContext<'_>) -> Result<Hcm, String> {
        let mut clusters = FastMap::default();
        for cluster in (ctx.all_clusters)() {
            let pool = upstream::HttpPool::new(
                cluster.connector.clone(),
                cluster.config.http,
                cluster.stats.clone(),
            );
            clusters.insert(
                cluster.config.name.clone(),
                Rc::new(Upstream {
                    cluster,
                    pool: Rc::new(pool),
                }),
            );
        }
        let mut logs = Vec::new();
        for l in &config.access_log {
            logs.push((access_log::sink(&l.path)?, l.format.clone()));
        }
        if !config.filters.skipped.is_empty() {
            tracing::info!(stat_prefix = %config.stat_prefix, skipped = ?config.filters.skipped, "optional HTTP filters sluice does not have are skipped");
        }
        Ok(Hcm {
            routes: Rc::new(router::RouteTable::new(config.route_config.clone())),
            server_name: http::HeaderValue::from_str(&config.server_name).map_err(|_| {
                format!(
                    "server_name \"{}\" is not a valid header value",
                    config.server_name
                )
            })?,
            stats: ctx.shard.http(&config.stat_prefix),
            rng: ctx.rng.clone(),
            buffer_limit: ctx.buffer_limit,
            clusters,
            logs,
            config,
        })
    }

    /// Writes the access log lines for one finished request.
    pub fn log(&self, record: &access_log::Record<'_>) {
        for (sink, format) in &self.logs {
            let before = sink.dropped.load(std::sync::atomic::Ordering::Relaxed);
            sink.write(access_log::format(format, record));
            if sink.dropped.load(std::sync::atomic::Ordering::Relaxed) != before {
                self.stats.access_log_dropped.inc();
            }
        }
    }

    /// The access log lines for one finished exchange (nothing without access logs).
    pub fn log_exchange(
        &self,
        ex: &forward::Exchange,
        response: &message::ResponseHead,
        start: std::time::SystemTime,
        peer: SocketAddr,
        received: u64,
        sent: u64,
    ) {
        let Some(request) = ex.logged.as_ref() else {
            return;
        };
        self.log(&access_log::Record {
            start,
            request,
            response: Some(response),
            status: response.status,
            flags: ex.flags,
            details: ex.details,
            bytes_received: received,
            bytes_sent: sent,
            duration: start.elapsed().unwrap_or_default(),
            upstream_host: ex.upstream_host,
            upstream_cluster: ex.cluster.as_ref().map(|c| c.cluster.config.name.as_str()),
            peer: ex.downstream.unwrap_or(peer),
            direct_peer: peer,
            route_name: &ex.route_name,
        });
    }

    pub fn logs_enabled(&self) -> bool {
        !self.logs.is_empty()
    }

    /// Counts a response by its status class.
    pub fn count_response(&self, status: u16) {
        let s = &self.stats;
        match status / 100 {
            1 => s.downstream_rq_1xx.inc(),
            2 => s.downstream_rq_2xx.inc(),
            3 => s.downstream_rq_3xx.inc(),
            4 => s.downstream_rq_4xx.inc(),
            _ => s.downstream_rq_5xx.inc(),
        }
    }

    async fn serve_connection(self: Rc<Self>, mut conn: Connection, peer: SocketAddr) {
        self.stats.downstream_cx_total.inc();
        let _active = crate::proxy::tcp_proxy::Active::raise(&self.stats.downstream_cx_active);
        match self.config.codec {
            CodecType::Http1 => server_h1::serve(self.clone(), conn, peer, BytesMut::new()).await,
            CodecType::Http2 => server_h2::serve(self.clone(), Box::new(conn), peer).await,
            CodecType::Auto => {
                // Read until the bytes either are or cannot be the HTTP/2 preface.
                // Small: an HTTP/1 connection goes on reading its first head into it, and a
                // head usually fits (the buffer grows for one that does not).
                let mut buf = BytesMut::with_capacity(2 * 1024);
                loop {
                    let n = buf.len().min(H2_PREFACE.len());
                    if buf[..n] != H2_PREFACE[..n] {
                        return server_h1::serve(self.clone(), conn, peer, buf).await;
                    }
                    if n == H2_PREFACE.len() {
                        // Copied out: the read buffer would otherwise live as long as the
                        // connection.
                        let io = Prefixed::new(bytes::Bytes::copy_from_slice(&buf), conn);
                        return server_h2::serve(self.clone(), Box::new(io), peer).await;
                    }
                    let read = match self.config.idle_timeout {
                        Some(t) => tokio::time::timeout(t, conn.read_buf(&mut buf)).await,
                        None => Ok(conn.read_buf(&mut buf).await),
                    };
                    match read {
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        Ok(Ok(_)) => {}
                        Err(_) => {
                            self.stats.downstream_cx_idle_timeout.inc();
                            return;
                        }
                    }
                }
            }
        }
    }
}

impl ConnectionHandler for Hcm {
    fn serve(
        self: Rc<Self>,
        conn: Connection,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(self.serve_connection(conn, peer))
    }
}
