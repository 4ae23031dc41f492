//! The `sluice.filters.network.rpc_proxy` network filter's config: multiplexed RPC at L7, with a
//! route config shaped like Envoy's dubbo_proxy / generic_proxy ones (virtual hosts matched by
//! service, routes by method and headers). Read from its typed_config, built per worker into an
//! [`RpcProxy`].

use super::RpcProxy;
use crate::config::cluster_target::{check_cluster, parse_cluster_target, parse_metadata_match};
use crate::config::duration::{optional_duration, parse_duration};
use crate::config::matchers::{parse_header_match, parse_string_match};
use crate::config::reader::{Node, Result};
use crate::config::*;
use crate::protocol::registry;
use crate::proxy::network_filter::{
    BuildContext, ConnectionHandler, FilterConfig, NetworkFilterConfig, NetworkFilterFactory,
    ParseContext,
};
use crate::route::names::Pattern;
use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub const RPC_PROXY_NAME: &str = "sluice.filters.network.rpc_proxy";
pub const RPC_PROXY_TYPE: &str = "type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy";

const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Requests from one downstream share upstream connections with everyone else's, and an
/// upstream answers in order: a client allowed 10,000 in flight made every other client wait for
/// 10,000 of its requests (seconds on a loaded upstream, seen in the hostile suite). 1,000 keeps
/// that wait short and still lets one connection pipeline far past what a round trip needs.
const DEFAULT_MAX_PER_DOWNSTREAM: u32 = 1_000;
const DEFAULT_PER_CONNECTION: u32 = 10_000;
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// Envoy's default for a connection's idle timeout (tcp_proxy, http_connection_manager).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// MOSN's default read timeout for a connection in the middle of a frame.
const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(15);

/// A `sluice.filters.network.rpc_proxy` filter: multiplexed RPC (Bolt, ...) proxied at L7.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcProxyConfig {
    pub stat_prefix: String,
    /// Codec names in detection order.
    pub protocols: Vec<String>,
    pub max_frame_bytes: usize,
    /// Where connections speaking none of `protocols` go, forwarded as opaque bytes; without it
    /// they are closed.
    pub passthrough_cluster: Option<String>,
    pub routes: RpcRouteConfig,
    pub upstream: RpcUpstreamConfig,
    /// The deadline of a request that carries none and whose route sets none.
    pub default_timeout: Duration,
    /// Requests one downstream connection may have in flight before sluice stops reading it.
    pub max_requests_per_downstream: u32,
    /// A downstream connection with no request in flight and nothing read or written for this
    /// long is closed; `None`: never (Envoy's `idle_timeout`, 0s turns it off).
    pub idle_timeout: Option<Duration>,
    /// A frame that has begun to arrive must be whole within this long, else the connection is
    /// closed (a client that sends half a header and goes silent).
    pub frame_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcUpstreamConfig {
    pub connections_per_host: u32,
    pub max_requests_per_connection: u32,
    /// Heartbeats on an upstream connection idle this long; `None` turns them off.
    pub heartbeat_interval: Option<Duration>,
    /// An unanswered heartbeat closes the connection after this long.
    pub heartbeat_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcRouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<RpcVirtualHost>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcVirtualHost {
    pub name: String,
    /// Service names: exact, `*`, or with one leading or trailing `*`.
    pub services: Vec<String>,
    pub routes: Vec<RpcRoute>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcRoute {
    pub method: Option<StringMatch>,
    pub headers: Vec<HeaderMatch>,
    pub action: RpcRouteAction,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcRouteAction {
    pub target: TcpRoute,
    /// Endpoint metadata a host must carry (`metadata_match.filter_metadata["envoy.lb"]`).
    pub metadata_match: Metadata,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    /// The header whose value is the hash key for RING_HASH / MAGLEV clusters.
    pub hash_header: Option<String>,
}

pub struct Factory;

impl NetworkFilterFactory for Factory {
    fn name(&self) -> &'static str {
        RPC_PROXY_NAME
    }
    fn type_url(&self) -> &'static str {
        RPC_PROXY_TYPE
    }
    fn parse(&self, typed_config: Node<'_>, ctx: &ParseContext<'_>) -> Result<NetworkFilterConfig> {
        Ok(Arc::new(parse_rpc_proxy(typed_config, ctx.clusters)?))
    }
}

impl FilterConfig for RpcProxyConfig {
    fn filter_name(&self) -> &'static str {
        RPC_PROXY_NAME
    }

    fn build(
        &self,
        ctx: &BuildContext<'_>,
    ) -> std::result::Result<Rc<dyn ConnectionHandler>, String> {
        let proxy = RpcProxy::new(
            Arc::new(self.clone()),
            ctx.shard,
            ctx.buffer_limit,
            ctx.cluster,
            ctx.rng.clone(),
        )?;
        Ok(Rc::new(proxy))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn parse_rpc_proxy(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<RpcProxyConfig> {
    node.expect_fields(
        &[
            "@type",
            "stat_prefix",
            "protocols",
            "max_frame_bytes",
            "passthrough_cluster",
            "route_config",
            "upstream",
            "default_timeout",
            "max_requests_per_downstream",
            "idle_timeout",
            "frame_timeout",
        ],
        &[],
    )?;
    let sp = node.require("stat_prefix")?;
    let stat_prefix = sp.node().as_str()?.to_string();
    if stat_prefix.is_empty() {
        return Err(sp.node().error("must not be empty"));
    }
    let protocols = match node.get("protocols") {
        None => registry::names().into_iter().map(String::from).collect(),
        Some(p) => {
            let mut out = Vec::new();
            for item in p.node().items()? {
                let item = item.node();
                let name = item.as_str()?;
                if registry::by_name(name).is_none() {
                    return Err(item.error(format!(
                        "unknown protocol \"{name}\" (available: {})",
                        registry::names().join(", ")
                    )));
                }
                out.push(name.to_string());
            }
            if out.is_empty() {
                return Err(p.node().error("name at least one protocol"));
            }
            out
        }
    };
    let max_frame_bytes = match node.get("max_frame_bytes") {
        Some(m) => {
            let v = m.node().as_u32()? as usize;
            if v < 64 {
                return Err(m.node().error("must be at least 64 bytes"));
            }
            v
        }
        None => DEFAULT_MAX_FRAME,
    };
    let passthrough_cluster = match node.get("passthrough_cluster") {
        Some(c) => {
            let name = c.node().as_str()?;
            check_cluster(c.node(), name, clusters)?;
            Some(name.to_string())
        }
        None => None,
    };
    let routes = parse_route_config(node.require("route_config")?.node(), clusters)?;
    let upstream = match node.get("upstream") {
        Some(u) => parse_upstream(u.node())?,
        None => RpcUpstreamConfig {
            connections_per_host: 1,
            max_requests_per_connection: DEFAULT_PER_CONNECTION,
            heartbeat_interval: Some(DEFAULT_HEARTBEAT),
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
        },
    };
    let default_timeout = match node.get("default_timeout") {
        Some(t) => positive_duration(t.node())?,
        None => DEFAULT_TIMEOUT,
    };
    let max_requests_per_downstream = match node.get("max_requests_per_downstream") {
        Some(m) => at_least_one(m.node())?,
        None => DEFAULT_MAX_PER_DOWNSTREAM,
    };
    let idle_timeout = optional_duration(node, "idle_timeout", Some(DEFAULT_IDLE_TIMEOUT))?;
    let frame_timeout = match node.get("frame_timeout") {
        Some(t) => positive_duration(t.node())?,
        None => DEFAULT_FRAME_TIMEOUT,
    };
    Ok(RpcProxyConfig {
        idle_timeout,
        frame_timeout,
        stat_prefix,
        protocols,
        max_frame_bytes,
        passthrough_cluster,
        routes,
        upstream,
        default_timeout,
        max_requests_per_downstream,
    })
}

fn positive_duration(node: Node<'_>) -> Result<Duration> {
    let d = parse_duration(node)?;
    if d.is_zero() {
        return Err(node.error("must be above 0s"));
    }
    Ok(d)
}

fn at_least_one(node: Node<'_>) -> Result<u32> {
    let v = node.as_u32()?;
    if v == 0 {
        return Err(node.error("must be at least 1"));
    }
    Ok(v)
}

fn parse_upstream(node: Node<'_>) -> Result<RpcUpstreamConfig> {
    node.expect_fields(
        &[
            "connections_per_host",
            "max_requests_per_connection",
            "heartbeat_interval",
            "heartbeat_timeout",
        ],
        &[],
    )?;
    let connections_per_host = match node.get("connections_per_host") {
        Some(c) => at_least_one(c.node())?,
        None => 1,
    };
    let max_requests_per_connection = match node.get("max_requests_per_connection") {
        Some(c) => at_least_one(c.node())?,
        None => DEFAULT_PER_CONNECTION,
    };
    let heartbeat_interval =
        optional_duration(node, "heartbeat_interval", Some(DEFAULT_HEARTBEAT))?;
    let heartbeat_timeout = match node.get("heartbeat_timeout") {
        Some(h) => positive_duration(h.node())?,
        None => DEFAULT_HEARTBEAT_TIMEOUT,
    };
    Ok(RpcUpstreamConfig {
        connections_per_host,
        max_requests_per_connection,
        heartbeat_interval,
        heartbeat_timeout,
    })
}

fn parse_route_config(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<RpcRouteConfig> {
    node.expect_fields(&["name", "virtual_hosts"], &[])?;
    let name = match node.get("name") {
        Some(n) => n.node().as_str()?.to_string(),
        None => String::new(),
    };
    let mut virtual_hosts = Vec::new();
    if let Some(list) = node.get("virtual_hosts") {
        for item in list.node().items()? {
            virtual_hosts.push(parse_virtual_host(item.node(), clusters)?);
        }
    }
    Ok(RpcRouteConfig {
        name,
        virtual_hosts,
    })
}

fn parse_virtual_host(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<RpcVirtualHost> {
    node.expect_fields(&["name", "services", "routes"], &[])?;
    let name = node.require("name")?.node().as_str()?.to_string();
    let mut services = Vec::new();
    let list = node.require("services")?;
    for s in list.node().items()? {
        let s = s.node();
        let v = s.as_str()?;
        if v.is_empty() {
            return Err(s.error("a service name must not be empty"));
        }
        Pattern::parse(v).map_err(|e| s.error(format!("not a service pattern: {e}")))?;
        services.push(v.to_string());
    }
    if services.is_empty() {
        return Err(list.node().error("name at least one service"));
    }
    let mut routes = Vec::new();
    for r in node.require("routes")?.node().items()? {
        routes.push(parse_route(r.node(), clusters)?);
    }
    Ok(RpcVirtualHost {
        name,
        services,
        routes,
    })
}

fn parse_route(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<RpcRoute> {
    node.expect_fields(
        &["name", "match", "route"],
        &["direct_response", "metadata"],
    )?;
    let (method, headers) = match node.get("match") {
        Some(m) => {
            let m = m.node();
            m.expect_fields(&["method", "headers"], &[])?;
            let method = match m.get("method") {
                Some(x) => Some(parse_string_match(x.node())?),
                None => None,
            };
            let mut headers = Vec::new();
            if let Some(list) = m.get("headers") {
                for h in list.node().items()? {
                    headers.push(parse_header_match(h.node())?);
                }
            }
            (method, headers)
        }
        None => (None, Vec::new()),
    };
    let action = parse_action(node.require("route")?.node(), clusters)?;
    Ok(RpcRoute {
        method,
        headers,
        action,
    })
}

fn parse_action(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<RpcRouteAction> {
    node.expect_fields(
        &[
            "cluster",
            "weighted_clusters",
            "metadata_match",
            "timeout",
            "retry_policy",
            "hash_policy",
        ],
        &["cluster_header", "request_mirror_policies", "priority"],
    )?;
    let target = parse_cluster_target(node, clusters, &["runtime_key_prefix"])?;
    let metadata_match = parse_metadata_match(node)?;
    let timeout = match node.get("timeout") {
        Some(t) => {
            let d = parse_duration(t.node())?;
            (!d.is_zero()).then_some(d)
        }
        None => None,
    };
    let retry = match node.get("retry_policy") {
        Some(r) => {
            let r = r.node();
            r.expect_fields(&["num_retries", "per_try_timeout", "retry_on"], &[])?;
            if let Some(on) = r.get("retry_on") {
                let on_node = on.node();
                for part in on_node.as_str()?.split(',') {
                    let part = part.trim();
                    if !matches!(part, "connect-failure" | "per-try-timeout") {
                        return Err(on_node.error(format!(
                            "retry_on \"{part}\" is not supported (supported: connect-failure, per-try-timeout)"
                        )));
                    }
                }
            }
            RetryPolicy {
                num_retries: match r.get("num_retries") {
                    Some(n) => n.node().as_u32()?,
                    None => 1,
                },
                per_try_timeout: match r.get("per_try_timeout") {
                    Some(t) => Some(positive_duration(t.node())?),
                    None => None,
                },
            }
        }
        None => RetryPolicy::default(),
    };
    let hash_header = match node.get("hash_policy") {
        Some(h) => {
            let items = h.node().items()?;
            if items.len() > 1 {
                return Err(h.node().error("one hash policy is supported"));
            }
            match items.first() {
                Some(item) => {
                    let item = item.node();
                    item.expect_fields(&["header"], &["terminal"])?;
                    let hdr = item.require("header")?;
                    let hdr = hdr.node();
                    hdr.expect_fields(&["header_name"], &[])?;
                    Some(hdr.require("header_name")?.node().as_str()?.to_string())
                }
                None => None,
            }
        }
        None => None,
    };
    Ok(RpcRouteAction {
        target,
        metadata_match,
        timeout,
        retry,
        hash_header,
    })
}

/// A filter name or type URL that selects the rpc_proxy.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::bootstrap::parse_bootstrap;
    use serde_json::json;

    fn doc(typed: serde_json::Value) -> serde_json::Value {
        json!({"static_resources": {
            "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
                "filter_chains": [{"filters": [{"name": RPC_PROXY_NAME, "typed_config": typed}]}]}],
            "clusters": [{"name": "a", "load_assignment": {"endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 2}}}}]}]}}]
        }})
    }

    fn error(typed: serde_json::Value) -> String {
        parse_bootstrap(&doc(typed)).unwrap_err().to_string()
    }

    const AT: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

    #[test]
    fn a_full_filter_parses() {
        let b = parse_bootstrap(&doc(json!({
            "@type": RPC_PROXY_TYPE, "stat_prefix": "rpc", "protocols": ["bolt"],
            "upstream": {"connections_per_host": 2, "heartbeat_interval": "0s"},
            "route_config": {"virtual_hosts": [{"name": "v", "services": ["*"], "routes": [
                {"match": {"method": {"prefix": "say"}}, "route": {"cluster": "a", "timeout": "2s",
                 "retry_policy": {"num_retries": 2, "per_try_timeout": "0.5s"},
                 "hash_policy": [{"header": {"header_name": "uid"}}],
                 "metadata_match": {"filter_metadata": {"envoy.lb": {"v": 1}}}}}]}]}
        })))
        .unwrap();
        let p: &RpcProxyConfig = b.listeners[0]
            .filter
            .as_any()
            .downcast_ref()
            .expect("rpc_proxy");
        assert_eq!(p.upstream.connections_per_host, 2);
        assert_eq!(p.upstream.heartbeat_interval, None);
        let action = &p.routes.virtual_hosts[0].routes[0].action;
        assert_eq!(action.retry.num_retries, 2);
        assert_eq!(action.hash_header.as_deref(), Some("uid"));
        assert_eq!(
            action.metadata_match.get("v").map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn mistakes_name_their_path() {
        let base = |extra: serde_json::Value| {
            let mut t = json!({"@type": RPC_PROXY_TYPE, "stat_prefix": "rpc", "route_config": {"virtual_hosts": [
                {"name": "v", "services": ["*"], "routes": [{"route": {"cluster": "a"}}]}]}});
            for (k, v) in extra.as_object().unwrap() {
                t[k] = v.clone();
            }
            t
        };
        assert_eq!(
            error(base(json!({"protocols": ["dubbo"]}))),
            format!("{AT}.protocols[0]: unknown protocol \"dubbo\" (available: bolt)")
        );
        assert_eq!(
            error(base(json!({"route_config": {"virtual_hosts": [{"name": "v", "services": ["a*b"], "routes": []}]}}))),
            format!("{AT}.route_config.virtual_hosts[0].services[0]: not a service pattern: \"a*b\": a wildcard may only be the first or the last character, once")
        );
        let e = error(base(
            json!({"route_config": {"virtual_hosts": [{"name": "v", "services": ["*"], "routes": [
            {"match": {"method": {"safe_regex": {"regex": "("}}}, "route": {"cluster": "a"}}]}]}}),
        ));
        assert!(e.starts_with(&format!("{AT}.route_config.virtual_hosts[0].routes[0].match.method.safe_regex.regex: invalid regex")), "{e}");
        assert_eq!(
            error(base(json!({"passthrough_cluster": "nope"}))),
            format!("{AT}.passthrough_cluster: unknown cluster \"nope\" (not in static_resources.clusters)")
        );
        assert_eq!(
            error(base(json!({"route_config": {"virtual_hosts": [{"name": "v", "services": ["*"], "routes": [
                {"route": {"cluster": "a", "retry_policy": {"retry_on": "5xx"}}}]}]}}))),
            format!("{AT}.route_config.virtual_hosts[0].routes[0].route.retry_policy.retry_on: retry_on \"5xx\" is not supported (supported: connect-failure, per-try-timeout)")
        );
        assert_eq!(
            error(base(json!({"upstream": {"connections_per_host": 0}}))),
            format!("{AT}.upstream.connections_per_host: must be at least 1")
        );
    }
}
