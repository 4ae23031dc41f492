//! The parts of an Envoy cluster beyond addresses: endpoint metadata, subset load balancing,
//! consistent-hash settings and active health checks.

use super::duration::parse_duration;
use super::model::*;
use super::reader::{Node, Result};
use std::time::Duration;

/// The metadata namespace Envoy's subset load balancer reads.
pub const LB_NAMESPACE: &str = "envoy.lb";

/// `metadata: {filter_metadata: {"envoy.lb": {key: value}}}`. Other namespaces are data other
/// filters would read; sluice keeps only `envoy.lb`.
pub fn parse_lb_metadata(node: Node<'_>) -> Result<Metadata> {
    node.expect_fields(&["filter_metadata"], &["typed_filter_metadata"])?;
    let mut out = Metadata::new();
    let Some(fm) = node.get("filter_metadata") else {
        return Ok(out);
    };
    let fm = fm.node();
    let map = fm
        .value()
        .as_object()
        .ok_or_else(|| fm.error("expected a map of metadata namespaces"))?;
    if map.contains_key(LB_NAMESPACE) {
        let lb = fm.require(LB_NAMESPACE)?;
        let lb = lb.node();
        let entries = lb
            .value()
            .as_object()
            .ok_or_else(|| lb.error("expected a map of metadata keys to values"))?;
        for (k, v) in entries {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => {
                    return Err(lb.error(format!(
                        "metadata value of \"{k}\" must be a string, number or boolean"
                    )))
                }
            };
            out.insert(k.clone(), text);
        }
    }
    Ok(out)
}

pub fn parse_subset_config(node: Node<'_>) -> Result<SubsetConfig> {
    node.expect_fields(
        &["fallback_policy", "default_subset", "subset_selectors"],
        &[
            "locality_weight_aware",
            "scale_locality_weight",
            "panic_mode_any",
            "list_as_any",
            "metadata_fallback_policy",
        ],
    )?;
    let fallback = match node.get("fallback_policy") {
        None => SubsetFallback::NoFallback,
        Some(f) => {
            let f = f.node();
            match f.as_str()? {
                "NO_FALLBACK" => SubsetFallback::NoFallback,
                "ANY_ENDPOINT" => SubsetFallback::AnyEndpoint,
                "DEFAULT_SUBSET" => SubsetFallback::DefaultSubset,
                other => {
                    return Err(f.error(format!(
                        "unknown fallback_policy \"{other}\" (expected NO_FALLBACK, ANY_ENDPOINT or DEFAULT_SUBSET)"
                    )))
                }
            }
        }
    };
    let default_subset = match node.get("default_subset") {
        Some(d) => scalar_map(d.node())?,
        None => Metadata::new(),
    };
    let mut selectors = Vec::new();
    if let Some(list) = node.get("subset_selectors") {
        for item in list.node().items()? {
            let item = item.node();
            item.expect_fields(
                &["keys"],
                &[
                    "fallback_policy",
                    "fallback_keys_subset",
                    "single_host_per_subset",
                ],
            )?;
            let mut keys = Vec::new();
            for k in item.require("keys")?.node().items()? {
                keys.push(k.node().as_str()?.to_string());
            }
            keys.sort();
            selectors.push(keys);
        }
    }
    Ok(SubsetConfig {
        fallback,
        default_subset,
        selectors,
    })
}

/// A map of scalar values as strings (`default_subset`, `metadata_match` entries).
pub fn scalar_map(node: Node<'_>) -> Result<Metadata> {
    let map = node
        .value()
        .as_object()
        .ok_or_else(|| node.error("expected a map"))?;
    let mut out = Metadata::new();
    for (k, v) in map {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(node.error(format!("value of \"{k}\" must be a scalar"))),
        };
        out.insert(k.clone(), text);
    }
    Ok(out)
}

/// The two Envoy ring-hash settings sluice honours, with Envoy's defaults.
pub fn parse_ring_hash(node: Option<Node<'_>>) -> Result<LbPolicy> {
    let (mut min, mut max) = (1024u64, 8 * 1024 * 1024u64);
    if let Some(n) = node {
        n.expect_fields(
            &["minimum_ring_size", "maximum_ring_size"],
            &[
                "hash_function",
                "use_hostname_for_hashing",
                "hash_balance_factor",
                "consistent_hashing_lb_config",
            ],
        )?;
        if let Some(v) = n.get("minimum_ring_size") {
            min = v.node().as_u64()?;
        }
        if let Some(v) = n.get("maximum_ring_size") {
            max = v.node().as_u64()?;
        }
        if min == 0 || min > max || max > 8 * 1024 * 1024 {
            return Err(n.error(format!(
                "ring sizes must satisfy 0 < minimum ({min}) <= maximum ({max}) <= 8388608"
            )));
        }
    }
    Ok(LbPolicy::RingHash {
        min_ring_size: min,
        max_ring_size: max,
    })
}

pub fn parse_maglev(node: Option<Node<'_>>) -> Result<LbPolicy> {
    let mut table_size = 65537u64;
    if let Some(n) = node {
        n.expect_fields(
            &["table_size"],
            &[
                "consistent_hashing_lb_config",
                "locality_weighted_lb_config",
            ],
        )?;
        if let Some(v) = n.get("table_size") {
            let v = v.node();
            table_size = v.as_u64()?;
            if table_size > 5_000_011 || !is_prime(table_size) {
                return Err(v.error(format!(
                    "table_size {table_size} must be a prime no larger than 5000011"
                )));
            }
        }
    }
    Ok(LbPolicy::Maglev { table_size })
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

pub const BOLT_HEALTH_CHECKER: &str = "sluice.health_checkers.bolt";

/// Envoy's `HttpHealthCheck`: path (required), host, expected_statuses (default 200).
fn parse_http_health_check(node: Node<'_>) -> Result<HealthCheckKind> {
    node.expect_fields(
        &["path", "host", "expected_statuses", "codec_client_type"],
        &[
            "send",
            "receive",
            "request_headers_to_add",
            "request_headers_to_remove",
            "retriable_statuses",
            "service_name_matcher",
            "method",
            "response_buffer_size",
        ],
    )?;
    let p = node.require("path")?;
    let path = p.node().as_str()?.to_string();
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(p
            .node()
            .error("must start with / and hold no spaces or control characters"));
    }
    if let Some(c) = node.get("codec_client_type") {
        if c.node().as_str()? != "HTTP1" {
            return Err(c.node().error("only HTTP1 health checks are supported yet"));
        }
    }
    let host = match node.get("host") {
        Some(h) => Some(h.node().as_str()?.to_string()),
        None => None,
    };
    let mut expected = Vec::new();
    if let Some(list) = node.get("expected_statuses") {
        for r in list.node().items()? {
            let r = r.node();
            r.expect_fields(&["start", "end"], &[])?;
            let bound = |k: &str| -> Result<u16> {
                let v = r.require(k)?;
                let n = v.node().as_u64()?;
                if !(100..=600).contains(&n) {
                    return Err(v.node().error("must be from 100 to 600"));
                }
                Ok(n as u16)
            };
            let (start, end) = (bound("start")?, bound("end")?);
            if start >= end {
                return Err(r.error("start must be below end (the range is start..end)"));
            }
            expected.push(start..end);
        }
    }
    if expected.is_empty() {
        expected.push(200..201);
    }
    Ok(HealthCheckKind::Http {
        path,
        host,
        expected,
    })
}

pub fn parse_health_check(node: Node<'_>) -> Result<HealthCheckConfig> {
    node.expect_fields(
        &[
            "timeout",
            "interval",
            "interval_jitter",
            "unhealthy_threshold",
            "healthy_threshold",
            "tcp_health_check",
            "custom_health_check",
            "http_health_check",
        ],
        &[
            "initial_jitter",
            "interval_jitter_percent",
            "alt_port",
            "reuse_connection",
            "no_traffic_interval",
            "no_traffic_healthy_interval",
            "unhealthy_interval",
            "unhealthy_edge_interval",
            "healthy_edge_interval",
            "event_log_path",
            "event_logger",
            "event_service",
            "always_log_health_check_failures",
            "always_log_health_check_success",
            "tls_options",
            "transport_socket_match_criteria",
            "grpc_health_check",
        ],
    )?;
    let positive = |key: &str| -> Result<Duration> {
        let c = node.require(key)?;
        let d = parse_duration(c.node())?;
        if d.is_zero() {
            return Err(c.node().error("must be above 0s"));
        }
        Ok(d)
    };
    let timeout = positive("timeout")?;
    let interval = positive("interval")?;
    let interval_jitter = match node.get("interval_jitter") {
        Some(j) => parse_duration(j.node())?,
        None => Duration::ZERO,
    };
    let threshold = |key: &str| -> Result<u32> {
        let c = node.require(key)?;
        let v = c.node().as_u32()?;
        if v == 0 {
            return Err(c.node().error("must be at least 1"));
        }
        Ok(v)
    };
    let unhealthy_threshold = threshold("unhealthy_threshold")?;
    let healthy_threshold = threshold("healthy_threshold")?;
    let given: Vec<&str> = [
        "tcp_health_check",
        "custom_health_check",
        "http_health_check",
    ]
    .into_iter()
    .filter(|k| node.get(k).is_some())
    .collect();
    let kind = match given.as_slice() {
        ["tcp_health_check"] => {
            let t = node.require("tcp_health_check")?;
            t.node()
                .expect_fields(&[], &["send", "receive", "proxy_protocol_config"])?;
            HealthCheckKind::TcpConnect
        }
        ["custom_health_check"] => {
            let c = node.require("custom_health_check")?;
            let c = c.node();
            c.expect_fields(&["name", "typed_config"], &[])?;
            let name = c.require("name")?;
            let n = name.node().as_str()?;
            if n != BOLT_HEALTH_CHECKER {
                return Err(name.node().error(format!(
                    "unknown custom health checker \"{n}\" (available: {BOLT_HEALTH_CHECKER})"
                )));
            }
            HealthCheckKind::BoltHeartbeat
        }
        ["http_health_check"] => parse_http_health_check(node.require("http_health_check")?.node())?,
        [] => {
            return Err(node.error(
                "a health checker is required: tcp_health_check, http_health_check or custom_health_check",
            ))
        }
        _ => return Err(node.error(format!("give one health checker, not {}", given.join(" and ")))),
    };
    Ok(HealthCheckConfig {
        timeout,
        interval,
        interval_jitter,
        unhealthy_threshold,
        healthy_threshold,
        kind,
    })
}
