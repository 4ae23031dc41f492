//! The `envoy.filters.network.tcp_proxy` network filter: pick a cluster and a host, connect
//! (moving on to the next host when a connect fails), then hand both connections to the stream
//! layer's pump.

pub mod config;

pub use config::TcpProxyConfig;

use super::cluster::{Cluster, Host, PickRequest};
use super::lb::Rng;
use super::network_filter::ConnectionHandler;
use crate::io::connect::ConnectError;
use crate::io::Connection;
use crate::route::target::Targets;
use crate::stats::{ClusterStats, Counter, TcpProxyStats};
use crate::stream::{pump, Direction, Observer, Outcome, PumpOptions};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

pub struct TcpProxy {
    pub config: TcpProxyConfig,
    /// The cluster or weighted clusters connections go to.
    pub route: Targets<Rc<Cluster>>,
    pub stats: Arc<TcpProxyStats>,
    /// The listener's per-connection buffer bound.
    pub buffer_limit: usize,
    pub splice: bool,
    pub rng: Rc<RefCell<Rng>>,
}

impl ConnectionHandler for TcpProxy {
    fn serve(
        self: Rc<Self>,
        conn: Connection,
        peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        Box::pin(TcpProxy::serve(self, conn, peer))
    }
}

/// Keeps a gauge raised while alive, so every exit path lowers it.
pub struct Active<'a>(&'a Counter);

impl<'a> Active<'a> {
    pub fn raise(c: &'a Counter) -> Active<'a> {
        c.inc();
        Active(c)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct ByteCounters<'a> {
    proxy: &'a TcpProxyStats,
    cluster: &'a ClusterStats,
}

impl Observer for ByteCounters<'_> {
    fn delivered(&self, direction: Direction, bytes: usize) {
        let n = bytes as u64;
        match direction {
            Direction::Upstream => {
                self.proxy.downstream_cx_rx_bytes_total.add(n);
                self.cluster.upstream_cx_tx_bytes_total.add(n);
            }
            Direction::Downstream => {
                self.cluster.upstream_cx_rx_bytes_total.add(n);
                self.proxy.downstream_cx_tx_bytes_total.add(n);
            }
        }
    }
}

impl TcpProxy {
    fn choose_cluster(&self) -> Option<Rc<Cluster>> {
        if self.route.is_empty() {
            return None;
        }
        let i = self.route.pick(&mut self.rng.borrow_mut());
        Some(self.route.get(i).clone())
    }

    /// Serves one downstream connection to its end.
    pub async fn serve(self: Rc<Self>, downstream: Connection, peer: SocketAddr) {
        self.stats.downstream_cx_total.inc();
        let Some(cluster) = self.choose_cluster() else {
            self.stats.downstream_cx_no_route.inc();
            return;
        };
        let Some((upstream, host)) = self.connect_upstream(&cluster, peer).await else {
            return; // dropping the downstream closes it: the client sees the failure at once
        };
        let _cx = Active::raise(&cluster.stats.upstream_cx_active);
        let _host_cx = Active::raise(&host.stats.cx_active);
        let limit = cluster
            .config
            .buffer_limit
            .map_or(self.buffer_limit, |c| c.min(self.buffer_limit));
        let options = PumpOptions {
            buffer_limit: limit,
            idle_timeout: self.config.idle_timeout,
            splice: self.splice,
        };
        let observer = ByteCounters {
            proxy: &self.stats,
            cluster: &cluster.stats,
        };
        match pump(downstream, upstream, &options, &observer).await {
            Outcome::Closed => {}
            Outcome::IdleTimeout => {
                self.stats.idle_timeout.inc();
                tracing::debug!(%peer, cluster = %cluster.config.name, "idle timeout");
            }
            Outcome::Failed { side, error } => {
                tracing::debug!(%peer, cluster = %cluster.config.name, ?side, %error, "connection ended by an error");
            }
        }
    }

    async fn connect_upstream(
        &self,
        cluster: &Cluster,
        peer: SocketAddr,
    ) -> Option<(Connection, Rc<Host>)> {
        let host_count = cluster.host_count();
        if host_count == 0 {
            cluster.stats.upstream_cx_none_healthy.inc();
            tracing::warn!(%peer, cluster = %cluster.config.name, "no upstream host available");
            return None;
        }
        let attempts = self
            .config
            .max_connect_attempts
            .map_or(host_count, |m| m as usize);
        let mut tried: Vec<usize> = Vec::with_capacity(attempts.min(8));
        for _ in 0..attempts {
            let picked = cluster
                .pick(&PickRequest {
                    tried: &tried,
                    ..Default::default()
                })
                .or_else(|| {
                    // More attempts allowed than hosts: start over with every host.
                    tried.clear();
                    cluster.pick(&PickRequest::default())
                });
            let Some((index, host)) = picked else {
                // Every host is backing off after failed connects: fail now, not one connect
                // per client.
                cluster.stats.upstream_cx_none_healthy.inc();
                tracing::debug!(%peer, cluster = %cluster.config.name, "every upstream host is backing off after failed connects");
                return None;
            };
            tried.push(index);
            cluster.stats.upstream_cx_total.inc();
            host.stats.cx_total.inc();
            match cluster.connector.connect(host.address).await {
                Ok(conn) => {
                    host.note_connect_success();
                    return Some((conn, host));
                }
                Err(e) => {
                    if !e.is_local() {
                        host.note_connect_failure();
                    }
                    cluster.stats.upstream_cx_connect_fail.inc();
                    host.stats.cx_connect_fail.inc();
                    if matches!(e, ConnectError::Timeout) {
                        cluster.stats.upstream_cx_connect_timeout.inc();
                    }
                    tracing::debug!(%peer, cluster = %cluster.config.name, host = %host.address, error = %e, "upstream connect failed");
                }
            }
        }
        self.stats.upstream_connect_attempts_exceeded.inc();
        tracing::warn!(%peer, cluster = %cluster.config.name, attempts, "upstream connect failed on every attempt; closing the downstream connection");
        None
    }
}
