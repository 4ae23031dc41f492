//! A route's action as Envoy spells it: `route` (cluster specifier, rewrites, timeouts, retry
//! and hash policies, upgrades), `redirect` and `direct_response`.

use super::route_config::{
    header_name, opt_bool, opt_str, retry_on, Action, ClusterSpec, Forward, HashPolicy,
    HostRewrite, Redirect, RetryPolicy, DEFAULT_RETRY_BASE, DEFAULT_ROUTE_TIMEOUT,
};
use crate::config::cluster_target::{check_cluster, parse_metadata_match, parse_weighted};
use crate::config::duration::parse_duration;
use crate::config::reader::{Node, Result};
use crate::config::ClusterConfig;
use bytes::Bytes;

pub(super) fn parse_forward(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<Forward> {
    node.expect_fields(
        &[
            "cluster",
            "weighted_clusters",
            "cluster_header",
            "metadata_match",
            "prefix_rewrite",
            "regex_rewrite",
            "host_rewrite_literal",
            "auto_host_rewrite",
            "host_rewrite_header",
            "timeout",
            "idle_timeout",
            "retry_policy",
            "hash_policy",
            "max_stream_duration",
            "upgrade_configs",
            "cluster_not_found_response_code",
        ],
        &[
            "cluster_specifier_plugin",
            "inline_cluster_specifier_plugin",
            "path_rewrite_policy",
            "host_rewrite_path_regex",
            "append_x_forwarded_host",
            "early_data_policy",
            "request_mirror_policies",
            "priority",
            "rate_limits",
            "include_vh_rate_limits",
            "cors",
            "hedge_policy",
            "internal_redirect_policy",
            "max_internal_redirects",
            "max_grpc_timeout",
            "grpc_timeout_offset",
            "retry_policy_typed_config",
            "request_body_buffer_limit",
        ],
    )?;
    let specs: Vec<&str> = ["cluster", "weighted_clusters", "cluster_header"]
        .into_iter()
        .filter(|k| node.get(k).is_some())
        .collect();
    let cluster = match specs.as_slice() {
        ["cluster"] => {
            let c = node.require("cluster")?;
            let name = c.node().as_str()?;
            check_cluster(c.node(), name, clusters)?;
            ClusterSpec::Cluster(name.to_string())
        }
        ["weighted_clusters"] => ClusterSpec::Weighted(parse_weighted(
            node.require("weighted_clusters")?.node(),
            clusters,
            &["runtime_key_prefix", "header_name", "use_hash_policy"],
            &[
                "metadata_match",
                "request_headers_to_add",
                "request_headers_to_remove",
                "response_headers_to_add",
                "response_headers_to_remove",
                "host_rewrite_literal",
                "cluster_header",
                "typed_per_filter_config",
            ],
        )?),
        ["cluster_header"] => {
            ClusterSpec::Header(header_name(node.require("cluster_header")?.node())?)
        }
        [] => return Err(node.error("give one of cluster, weighted_clusters, cluster_header")),
        _ => {
            return Err(node.error(format!(
                "give one cluster specifier, not {}",
                specs.join(" and ")
            )))
        }
    };
    let cluster_not_found_status = match node.get("cluster_not_found_response_code") {
        None => 503,
        Some(c) => {
            let v = c.node();
            let code = match v.value() {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match code.as_str() {
                "SERVICE_UNAVAILABLE" | "0" => 503,
                "NOT_FOUND" | "1" => 404,
                "INTERNAL_SERVER_ERROR" | "2" => 500,
                _ => {
                    return Err(
                        v.error("not one of SERVICE_UNAVAILABLE, NOT_FOUND, INTERNAL_SERVER_ERROR")
                    )
                }
            }
        }
    };
    let metadata_match = parse_metadata_match(node)?;
    let regex_rewrite = match node.get("regex_rewrite") {
        Some(r) => {
            let r = r.node();
            r.expect_fields(&["pattern", "substitution"], &[])?;
            let p = r.require("pattern")?;
            let p = p.node();
            p.expect_fields(&["regex", "google_re2"], &[])?;
            let pat = p.require("regex")?;
            // Unanchored: every match in the path is substituted, as Envoy's regex_rewrite.
            let re = regex::Regex::new(pat.node().as_str()?)
                .map_err(|e| pat.node().error(format!("invalid regex: {e}")))?;
            let sub = r.require("substitution")?.node().as_str()?.to_string();
            // RE2 writes groups as \1; the regex crate as ${1}.
            Some((re, rewrite_groups(&sub)))
        }
        None => None,
    };
    let rewrites: Vec<&str> = [
        "host_rewrite_literal",
        "auto_host_rewrite",
        "host_rewrite_header",
    ]
    .into_iter()
    .filter(|k| node.get(k).is_some())
    .collect();
    if rewrites.len() > 1 {
        return Err(node.error(format!(
            "give one host rewrite, not {}",
            rewrites.join(" and ")
        )));
    }
    let host_rewrite = if let Some(l) = opt_str(node, "host_rewrite_literal")? {
        HostRewrite::Literal(l)
    } else if opt_bool(node, "auto_host_rewrite")? {
        HostRewrite::Auto
    } else if let Some(h) = node.get("host_rewrite_header") {
        HostRewrite::Header(header_name(h.node())?)
    } else {
        HostRewrite::None
    };
    let timeout = match node.get("timeout") {
        Some(t) => {
            let d = parse_duration(t.node())?;
            (!d.is_zero()).then_some(d)
        }
        None => Some(DEFAULT_ROUTE_TIMEOUT),
    };
    let idle_timeout = match node.get("idle_timeout") {
        Some(t) => {
            let d = parse_duration(t.node())?;
            (!d.is_zero()).then_some(d)
        }
        None => None,
    };
    let retry_policy = match node.get("retry_policy") {
        Some(r) => Some(parse_retry_policy(r.node())?),
        None => None,
    };
    let mut hash_policy = Vec::new();
    if let Some(h) = node.get("hash_policy") {
        for item in h.node().items()? {
            hash_policy.push(parse_hash_policy(item.node())?);
        }
    }
    let (mut max_stream_duration, mut grpc_timeout_header_max) = (None, None);
    if let Some(m) = node.get("max_stream_duration") {
        let m = m.node();
        m.expect_fields(
            &["max_stream_duration", "grpc_timeout_header_max"],
            &["grpc_timeout_header_offset"],
        )?;
        if let Some(d) = m.get("max_stream_duration") {
            let d = parse_duration(d.node())?;
            // Zero is kept: it turns the connection manager's max_stream_duration off here.
            max_stream_duration = Some(d);
        }
        if let Some(d) = m.get("grpc_timeout_header_max") {
            grpc_timeout_header_max = Some(parse_duration(d.node())?);
        }
    }
    let mut upgrades = Vec::new();
    if let Some(u) = node.get("upgrade_configs") {
        for item in u.node().items()? {
            let item = item.node();
            item.expect_fields(&["upgrade_type", "enabled"], &["connect_config"])?;
            let t = item
                .require("upgrade_type")?
                .node()
                .as_str()?
                .to_ascii_lowercase();
            let enabled = match item.get("enabled") {
                Some(e) => e.node().as_bool()?,
                None => true,
            };
            if enabled {
                upgrades.push(t);
            }
        }
    }
    for (key, text) in [
        ("prefix_rewrite", opt_str(node, "prefix_rewrite")?),
        (
            "regex_rewrite",
            regex_rewrite.as_ref().map(|(_, s)| s.clone()),
        ),
    ] {
        if let Some(t) = text {
            // What is written into a request line must not be able to end it.
            if t.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(node.error(format!(
                    "{key}: \"{t}\" contains a space or control character"
                )));
            }
        }
    }
    Ok(Forward {
        cluster,
        cluster_not_found_status,
        metadata_match,
        prefix_rewrite: opt_str(node, "prefix_rewrite")?,
        regex_rewrite,
        host_rewrite,
        timeout,
        idle_timeout,
        retry_policy,
        hash_policy,
        max_stream_duration,
        grpc_timeout_header_max,
        upgrades,
    })
}

/// RE2 substitutions write capture groups as `\1`; the regex crate as `${1}`.
fn rewrite_groups(sub: &str) -> String {
    let mut out = String::with_capacity(sub.len());
    let mut chars = sub.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let d = chars.next().unwrap_or('0');
                out.push_str(&format!("${{{d}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn parse_retry_policy(node: Node<'_>) -> Result<RetryPolicy> {
    node.expect_fields(
        &[
            "retry_on",
            "num_retries",
            "per_try_timeout",
            "retriable_status_codes",
            "retry_back_off",
            "retry_host_predicate",
            "host_selection_retry_max_attempts",
        ],
        &[
            "per_try_idle_timeout",
            "retry_priority",
            "retry_options_predicates",
            "rate_limited_retry_back_off",
            "retriable_headers",
            "retriable_request_headers",
        ],
    )?;
    let mut retry_on = 0;
    if let Some(on) = node.get("retry_on") {
        let on = on.node();
        for part in on
            .as_str()?
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match retry_on::NAMES.iter().find(|(n, _)| *n == part) {
                Some((_, bit)) => retry_on |= bit,
                None => {
                    return Err(on.error(format!(
                        "retry_on \"{part}\" is not supported (supported: {})",
                        retry_on::NAMES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            }
        }
    }
    let mut retriable_status_codes = Vec::new();
    if let Some(list) = node.get("retriable_status_codes") {
        for c in list.node().items()? {
            let v = c.node().as_u32()?;
            if !(100..600).contains(&v) {
                return Err(c.node().error("not an HTTP status"));
            }
            retriable_status_codes.push(v as u16);
        }
    }
    let (mut base_interval, mut max_interval) = (DEFAULT_RETRY_BASE, None);
    if let Some(b) = node.get("retry_back_off") {
        let b = b.node();
        b.expect_fields(&["base_interval", "max_interval"], &[])?;
        let bi = b.require("base_interval")?;
        base_interval = parse_duration(bi.node())?;
        if base_interval.is_zero() {
            return Err(bi.node().error("must be above 0"));
        }
        if let Some(m) = b.get("max_interval") {
            let m_d = parse_duration(m.node())?;
            if m_d < base_interval {
                return Err(m.node().error("must not be below base_interval"));
            }
            max_interval = Some(m_d);
        }
    }
    let mut previous_hosts = false;
    if let Some(list) = node.get("retry_host_predicate") {
        for p in list.node().items()? {
            let p = p.node();
            p.expect_fields(&["name", "typed_config"], &[])?;
            let name = p.require("name")?;
            match name.node().as_str()? {
                "envoy.retry_host_predicates.previous_hosts" => previous_hosts = true,
                other => {
                    return Err(name.node().error(format!(
                        "retry host predicate \"{other}\" is not supported (supported: envoy.retry_host_predicates.previous_hosts)"
                    )))
                }
            }
        }
    }
    Ok(RetryPolicy {
        retry_on,
        num_retries: match node.get("num_retries") {
            Some(n) => n.node().as_u32()?,
            None => 1,
        },
        per_try_timeout: match node.get("per_try_timeout") {
            Some(t) => {
                let d = parse_duration(t.node())?;
                (!d.is_zero()).then_some(d)
            }
            None => None,
        },
        retriable_status_codes,
        base_interval,
        max_interval: max_interval.unwrap_or(base_interval * 10),
        previous_hosts,
        host_selection_max_attempts: match node.get("host_selection_retry_max_attempts") {
            Some(n) => n.node().as_u32()?.max(1),
            None => 1,
        },
    })
}

fn parse_hash_policy(node: Node<'_>) -> Result<HashPolicy> {
    node.expect_fields(
        &["header", "cookie", "connection_properties", "terminal"],
        &["query_parameter", "filter_state"],
    )?;
    let terminal = opt_bool(node, "terminal")?;
    if let Some(h) = node.get("header") {
        let h = h.node();
        h.expect_fields(&["header_name"], &["regex_rewrite"])?;
        return Ok(HashPolicy::Header {
            name: header_name(h.require("header_name")?.node())?,
            terminal,
        });
    }
    if let Some(c) = node.get("cookie") {
        let c = c.node();
        c.expect_fields(&["name"], &["ttl", "path", "attributes"])?;
        return Ok(HashPolicy::Cookie {
            name: c.require("name")?.node().as_str()?.to_string(),
            terminal,
        });
    }
    if let Some(p) = node.get("connection_properties") {
        let p = p.node();
        p.expect_fields(&["source_ip"], &[])?;
        if opt_bool(p, "source_ip")? {
            return Ok(HashPolicy::SourceIp { terminal });
        }
        return Err(p.error("source_ip: true is the only connection property"));
    }
    Err(node.error("give one of header, cookie, connection_properties"))
}

pub(super) fn parse_redirect(node: Node<'_>) -> Result<Redirect> {
    node.expect_fields(
        &[
            "https_redirect",
            "scheme_redirect",
            "host_redirect",
            "port_redirect",
            "path_redirect",
            "prefix_rewrite",
            "response_code",
            "strip_query",
        ],
        &["regex_rewrite"],
    )?;
    let mut scheme = opt_str(node, "scheme_redirect")?;
    if opt_bool(node, "https_redirect")? {
        scheme = Some("https".into());
    }
    let port = match node.get("port_redirect") {
        Some(p) => {
            Some(u16::try_from(p.node().as_u32()?).map_err(|_| p.node().error("not a port"))?)
        }
        None => None,
    };
    let status = match node.get("response_code") {
        None => 301,
        Some(c) => {
            let v = c.node();
            let code = match v.value() {
                serde_json::Value::String(s) => s.as_str().to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            match code.as_str() {
                "MOVED_PERMANENTLY" | "0" => 301,
                "FOUND" | "1" => 302,
                "SEE_OTHER" | "2" => 303,
                "TEMPORARY_REDIRECT" | "3" => 307,
                "PERMANENT_REDIRECT" | "4" => 308,
                _ => return Err(v.error("not a redirect response code (MOVED_PERMANENTLY, FOUND, SEE_OTHER, TEMPORARY_REDIRECT, PERMANENT_REDIRECT)")),
            }
        }
    };
    if node.get("path_redirect").is_some() && node.get("prefix_rewrite").is_some() {
        return Err(node.error("give path_redirect or prefix_rewrite, not both"));
    }
    Ok(Redirect {
        scheme,
        host: opt_str(node, "host_redirect")?,
        port,
        path: opt_str(node, "path_redirect")?,
        prefix_rewrite: opt_str(node, "prefix_rewrite")?,
        status,
        strip_query: opt_bool(node, "strip_query")?,
    })
}

pub(super) fn parse_direct(node: Node<'_>) -> Result<Action> {
    node.expect_fields(&["status", "body"], &["body_format"])?;
    let s = node.require("status")?;
    let status = s.node().as_u32()?;
    if !(200..600).contains(&status) {
        return Err(s.node().error("must be a status from 200 to 599"));
    }
    let body = match node.get("body") {
        Some(b) => {
            let b = b.node();
            b.expect_fields(
                &["inline_string", "inline_bytes", "filename"],
                &["environment_variable"],
            )?;
            if let Some(t) = opt_str(b, "inline_string")? {
                Bytes::from(t)
            } else if let Some(f) = b.get("filename") {
                let path = f.node().as_str()?;
                Bytes::from(
                    std::fs::read(path)
                        .map_err(|e| f.node().error(format!("cannot read {path}: {e}")))?,
                )
            } else if let Some(x) = b.get("inline_bytes") {
                let text = x.node().as_str()?;
                Bytes::from(decode_base64(text).ok_or_else(|| x.node().error("not base64"))?)
            } else {
                return Err(b.error("give one of inline_string, inline_bytes, filename"));
            }
        }
        None => Bytes::new(),
    };
    Ok(Action::Direct {
        status: status as u16,
        body,
    })
}

/// Protobuf JSON writes `bytes` fields as standard base64.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|b| *b != b'=' && !b.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re2_groups_become_regex_crate_groups() {
        assert_eq!(rewrite_groups(r"/v2/\1/x$"), "/v2/${1}/x$$");
        assert_eq!(decode_base64("dGVh").unwrap(), b"tea");
    }
}
