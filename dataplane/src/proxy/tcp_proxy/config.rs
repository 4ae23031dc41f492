//! The `envoy.filters.network.tcp_proxy` network filter's config: read from its typed_config,
//! and built per worker into a [`TcpProxy`].

use super::TcpProxy;
use crate::config::cluster_target::parse_cluster_target;
use crate::config::duration::optional_duration;
use crate::config::reader::{Node, Result};
use crate::config::{ClusterConfig, TcpRoute};
use crate::proxy::network_filter::{
    BuildContext, ConnectionHandler, FilterConfig, NetworkFilterConfig, NetworkFilterFactory,
    ParseContext,
};
use crate::route::target::Targets;
use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub const TCP_PROXY_NAME: &str = "envoy.filters.network.tcp_proxy";
pub const TCP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq)]
pub struct TcpProxyConfig {
    pub stat_prefix: String,
    pub route: TcpRoute,
    /// `None` disables the idle timeout (Envoy's `idle_timeout: 0s`).
    pub idle_timeout: Option<Duration>,
    /// `None`: try every endpoint of the cluster once before giving up.
    pub max_connect_attempts: Option<u32>,
}

pub struct Factory;

impl NetworkFilterFactory for Factory {
    fn name(&self) -> &'static str {
        TCP_PROXY_NAME
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["envoy.tcp_proxy"]
    }
    fn type_url(&self) -> &'static str {
        TCP_PROXY_TYPE
    }
    fn parse(&self, typed_config: Node<'_>, ctx: &ParseContext<'_>) -> Result<NetworkFilterConfig> {
        Ok(Arc::new(parse_tcp_proxy(typed_config, ctx.clusters)?))
    }
}

impl FilterConfig for TcpProxyConfig {
    fn filter_name(&self) -> &'static str {
        TCP_PROXY_NAME
    }

    fn build(
        &self,
        ctx: &BuildContext<'_>,
    ) -> std::result::Result<Rc<dyn ConnectionHandler>, String> {
        let route = match &self.route {
            TcpRoute::Cluster(c) => Targets::one((ctx.cluster)(c)?),
            TcpRoute::Weighted(list) => Targets::weighted(
                list.iter()
                    .map(|w| Ok(((ctx.cluster)(&w.name)?, w.weight)))
                    .collect::<std::result::Result<_, String>>()?,
            ),
        };
        Ok(Rc::new(TcpProxy {
            config: self.clone(),
            route,
            stats: ctx.shard.tcp_proxy(&self.stat_prefix),
            buffer_limit: ctx.buffer_limit,
            splice: ctx.splice,
            rng: ctx.rng.clone(),
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn parse_tcp_proxy(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<TcpProxyConfig> {
    node.expect_fields(
        &[
            "@type",
            "stat_prefix",
            "cluster",
            "weighted_clusters",
            "idle_timeout",
            "max_connect_attempts",
        ],
        &[
            "metadata_match",
            "on_demand",
            "upstream_config",
            "hash_policy",
            "tunneling_config",
            "downstream_idle_timeout",
            "upstream_idle_timeout",
            "max_downstream_connection_duration",
            "access_log",
            "access_log_flush_interval",
            "flush_access_log_on_connected",
            "access_log_options",
            "backoff_options",
            "proxy_protocol_tlvs",
        ],
    )?;
    let stat_prefix_node = node.require("stat_prefix")?;
    let stat_prefix = stat_prefix_node.node().as_str()?.to_string();
    if stat_prefix.is_empty() {
        return Err(stat_prefix_node.node().error("must not be empty"));
    }
    let route = parse_cluster_target(node, clusters, &[])?;
    let idle_timeout = optional_duration(node, "idle_timeout", Some(DEFAULT_TCP_IDLE_TIMEOUT))?;
    let max_connect_attempts = match node.get("max_connect_attempts") {
        Some(m) => {
            let v = m.node().as_u32()?;
            if v == 0 {
                return Err(m.node().error("must be at least 1"));
            }
            Some(v)
        }
        None => None,
    };
    Ok(TcpProxyConfig {
        stat_prefix,
        route,
        idle_timeout,
        max_connect_attempts,
    })
}
