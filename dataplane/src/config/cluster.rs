//! Reads one cluster of `static_resources.clusters` (or a CDS resource): discovery type,
//! timeouts, balancing, health checks, subsets and its load assignment.

use super::cluster_extras::*;
use super::common::{parse_buffer_limit, parse_socket_address};
use super::duration::parse_duration;
use super::model::*;
use super::reader::{ConfigError, Node, Result};
use std::net::IpAddr;
use std::time::Duration;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);

pub(super) fn parse_cluster(node: Node<'_>) -> Result<ClusterConfig> {
    node.expect_fields(
        &[
            "name",
            "type",
            "typed_extension_protocol_options",
            "max_requests_per_connection",
            "http2_protocol_options",
            "connect_timeout",
            "lb_policy",
            "load_assignment",
            "dns_refresh_rate",
            "dns_lookup_family",
            "per_connection_buffer_limit_bytes",
            "health_checks",
            "lb_subset_config",
            "ring_hash_lb_config",
            "maglev_lb_config",
        ],
        &[
            "circuit_breakers",
            "transport_socket",
            "transport_socket_matches",
            "outlier_detection",
            "cluster_type",
            "eds_cluster_config",
            "common_lb_config",
            "upstream_connection_options",
            "least_request_lb_config",
            "round_robin_lb_config",
            "original_dst_lb_config",
            "load_balancing_policy",
            "dns_resolvers",
            "dns_resolution_config",
            "typed_dns_resolver_config",
            "use_tcp_for_dns_lookups",
            "upstream_bind_config",
            "close_connections_on_host_health_failure",
            "ignore_health_on_host_removal",
            "filters",
            "track_cluster_stats",
            "track_timeout_budgets",
            "preconnect_policy",
            "connection_pool_per_downstream_connection",
            "http_protocol_options",
            "common_http_protocol_options",
            "upstream_http_protocol_options",
            "protocol_selection",
            "alt_stat_name",
            "respect_dns_ttl",
            "wait_for_warm_on_init",
            "dns_failure_refresh_rate",
            "dns_jitter",
            "metadata",
            "cleanup_interval",
            "hosts",
            "upstream_config",
            "lrs_server",
        ],
    )?;
    let name_node = node.require("name")?;
    let name = name_node.node().as_str()?.to_string();
    if name.is_empty() {
        return Err(name_node.node().error("must not be empty"));
    }
    let discovery = match node.get("type") {
        None => Discovery::Static,
        Some(t) => {
            let t = t.node();
            match t.as_str()? {
                "STATIC" => Discovery::Static,
                "STRICT_DNS" => Discovery::StrictDns,
                other @ ("LOGICAL_DNS" | "EDS" | "ORIGINAL_DST") => {
                    return Err(t.error(format!(
                        "cluster type {other} is not supported yet (supported: STATIC, STRICT_DNS)"
                    )))
                }
                other => {
                    return Err(t.error(format!(
                        "unknown cluster type \"{other}\" (supported: STATIC, STRICT_DNS)"
                    )))
                }
            }
        }
    };
    let connect_timeout = match node.get("connect_timeout") {
        Some(t) => {
            let d = parse_duration(t.node())?;
            if d.is_zero() {
                return Err(t.node().error("must be above 0s"));
            }
            d
        }
        None => DEFAULT_CONNECT_TIMEOUT,
    };
    let lb_policy = match node.get("lb_policy") {
        None => LbPolicy::RoundRobin,
        Some(p) => {
            let p = p.node();
            match p.as_str()? {
                "ROUND_ROBIN" => LbPolicy::RoundRobin,
                "RANDOM" => LbPolicy::Random,
                "LEAST_REQUEST" => LbPolicy::LeastRequest,
                "RING_HASH" => {
                    let c = node.get("ring_hash_lb_config");
                    parse_ring_hash(c.as_ref().map(|c| c.node()))?
                }
                "MAGLEV" => {
                    let c = node.get("maglev_lb_config");
                    parse_maglev(c.as_ref().map(|c| c.node()))?
                }
                other @ ("CLUSTER_PROVIDED" | "LOAD_BALANCING_POLICY_CONFIG") => {
                    return Err(p.error(format!(
                        "lb_policy {other} is not supported yet (supported: ROUND_ROBIN, RANDOM, LEAST_REQUEST, RING_HASH, MAGLEV)"
                    )))
                }
                other => {
                    return Err(p.error(format!(
                        "unknown lb_policy \"{other}\" (supported: ROUND_ROBIN, RANDOM, LEAST_REQUEST, RING_HASH, MAGLEV)"
                    )))
                }
            }
        }
    };
    let dns_refresh_rate = match node.get("dns_refresh_rate") {
        Some(t) => {
            let d = parse_duration(t.node())?;
            if d < Duration::from_millis(1) {
                return Err(t.node().error("must be at least 1ms"));
            }
            d
        }
        None => DEFAULT_DNS_REFRESH,
    };
    let dns_family = match node.get("dns_lookup_family") {
        None => DnsFamily::PreferV6,
        Some(f) => {
            let f = f.node();
            match f.as_str()? {
                "AUTO" | "V6_PREFERRED" => DnsFamily::PreferV6,
                "V4_PREFERRED" => DnsFamily::PreferV4,
                "V4_ONLY" => DnsFamily::V4Only,
                "V6_ONLY" => DnsFamily::V6Only,
                "ALL" => DnsFamily::All,
                other => return Err(f.error(format!("unknown dns_lookup_family \"{other}\""))),
            }
        }
    };
    let buffer_limit = match node.get("per_connection_buffer_limit_bytes") {
        Some(b) => Some(parse_buffer_limit(b.node())?),
        None => None,
    };
    let endpoints = match node.get("load_assignment") {
        Some(la) => parse_load_assignment(la.node(), &name, discovery)?,
        None => Vec::new(),
    };
    for (key, wants) in [
        (
            "ring_hash_lb_config",
            matches!(lb_policy, LbPolicy::RingHash { .. }),
        ),
        (
            "maglev_lb_config",
            matches!(lb_policy, LbPolicy::Maglev { .. }),
        ),
    ] {
        if let (Some(c), false) = (node.get(key), wants) {
            return Err(c.node().error("only allowed with the matching lb_policy"));
        }
    }
    let subsets = match node.get("lb_subset_config") {
        Some(s) => Some(parse_subset_config(s.node())?),
        None => None,
    };
    let mut health_checks = Vec::new();
    if let Some(list) = node.get("health_checks") {
        for item in list.node().items()? {
            let mut hc = parse_health_check(item.node())?;
            if let HealthCheckKind::Http {
                host: host @ None, ..
            } = &mut hc.kind
            {
                // Envoy's default Host for an HTTP health check is the cluster's name.
                *host = Some(name.clone());
            }
            health_checks.push(hc);
        }
    }
    Ok(ClusterConfig {
        name,
        discovery,
        connect_timeout,
        lb_policy,
        endpoints,
        dns_refresh_rate,
        dns_family,
        buffer_limit,
        subsets,
        health_checks,
        http: super::http_options::parse_upstream_http(node)?,
    })
}

fn parse_load_assignment(
    node: Node<'_>,
    cluster: &str,
    discovery: Discovery,
) -> Result<Vec<EndpointConfig>> {
    node.expect_fields(
        &["cluster_name", "endpoints"],
        &["named_endpoints", "policy"],
    )?;
    if let Some(cn) = node.get("cluster_name") {
        let cn_node = cn.node();
        let v = cn_node.as_str()?;
        if v != cluster {
            return Err(cn_node.error(format!(
                "\"{v}\" differs from the cluster's name \"{cluster}\""
            )));
        }
    }
    let mut out = Vec::new();
    let Some(groups) = node.get("endpoints") else {
        return Ok(out);
    };
    for group in groups.node().items()? {
        let group = group.node();
        group.expect_fields(
            &["lb_endpoints"],
            &[
                "locality",
                "load_balancing_weight",
                "priority",
                "proximity",
                "leds_cluster_locality_config",
                "metadata",
            ],
        )?;
        let Some(lbs) = group.get("lb_endpoints") else {
            continue;
        };
        for lb in lbs.node().items()? {
            let lb = lb.node();
            lb.expect_fields(
                &["endpoint", "load_balancing_weight", "metadata"],
                &["health_status", "endpoint_name"],
            )?;
            let metadata = match lb.get("metadata") {
                Some(m) => parse_lb_metadata(m.node())?,
                None => Metadata::new(),
            };
            let weight = match lb.get("load_balancing_weight") {
                Some(w) => {
                    let v = w.node().as_u32()?;
                    if v == 0 {
                        return Err(w.node().error("must be at least 1"));
                    }
                    v
                }
                None => 1,
            };
            let ep = lb.require("endpoint")?;
            let ep = ep.node();
            ep.expect_fields(
                &["address", "hostname"],
                &["health_check_config", "additional_addresses"],
            )?;
            let addr = ep.require("address")?;
            let addr = addr.node();
            addr.expect_fields(&["socket_address"], &["pipe", "envoy_internal_address"])?;
            let sa = addr.require("socket_address")?;
            let (host, port) = parse_socket_address(sa.node())?;
            if discovery == Discovery::Static && host.parse::<IpAddr>().is_err() {
                return Err(ConfigError::new(
                    format!("{}.address", sa.node().path()),
                    format!(
                        "\"{host}\" is not an IP address; a STATIC cluster needs IP addresses (use type STRICT_DNS for host names)"
                    ),
                ));
            }
            if port == 0 {
                return Err(ConfigError::new(
                    format!("{}.port_value", sa.node().path()),
                    "an endpoint needs a port above 0",
                ));
            }
            out.push(EndpointConfig {
                host,
                port,
                weight,
                metadata,
            });
        }
    }
    Ok(out)
}
