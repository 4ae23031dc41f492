//! Reads the `envoy.filters.network.tcp_proxy` network filter's typed_config.

use super::cluster_target::parse_cluster_target;
use super::duration::optional_duration;
use super::model::*;
use super::reader::{Node, Result};
use std::time::Duration;

pub const TCP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
pub(super) const TCP_PROXY_NAMES: &[&str] = &["envoy.filters.network.tcp_proxy", "envoy.tcp_proxy"];
const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) fn parse_tcp_proxy(
    node: Node<'_>,
    clusters: &[ClusterConfig],
) -> Result<TcpProxyConfig> {
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
