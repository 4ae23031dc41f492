//! Envoy's `RouteConfiguration` for HTTP, read into validated types: virtual hosts by domain,
//! routes in order with their matches and actions, header mutations at three levels. Every
//! field sluice does not honour is an error naming its path. The meaning of a match is in
//! `router.rs`; domains, string and header matchers, weighted targets are the shared route
//! model's (`crate::route`).

use crate::config::cluster_target::{check_cluster, parse_metadata_match, parse_weighted};
use crate::config::duration::parse_duration;
use crate::config::matchers::{parse_header_match, parse_regex, parse_string_match};
use crate::config::reader::{Node, Result};
use crate::config::{ClusterConfig, HeaderMatch, Metadata, StringMatch, WeightedCluster};
use crate::route::names::Pattern;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use std::time::Duration;

/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's default retry back-off base interval (the maximum defaults to 10×).
const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
pub struct HttpRouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    pub headers: HeaderMutations,
    pub ignore_port_in_host_matching: bool,
}

#[derive(Debug, Clone)]
pub struct VirtualHost {
    pub name: String,
    /// Lower-cased; exact, `*.suffix`, `prefix.*` or `*`.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    pub headers: HeaderMutations,
    /// Used by routes that set none of their own.
    pub retry_policy: Option<RetryPolicy>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: Action,
    pub headers: HeaderMutations,
}

#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    /// Only gRPC requests match.
    pub grpc: bool,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Path(String),
    /// Anchored: the whole path (without query) must match.
    Regex(regex::Regex),
    /// The prefix, followed by nothing or by `/`, `?` or `#`.
    SeparatedPrefix(String),
}

#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub name: String,
    /// `None`: the parameter only has to be present.
    pub matcher: Option<StringMatch>,
}

#[derive(Debug, Clone)]
pub enum Action {
    Forward(Box<Forward>),
    Redirect(Redirect),
    Direct { status: u16, body: Bytes },
}

/// Which cluster a route sends to.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterSpec {
    Cluster(String),
    Weighted(Vec<WeightedCluster>),
    /// The cluster named by this request header (404 NR... 503 when the cluster is unknown).
    Header(HeaderName),
}

#[derive(Debug, Clone)]
pub struct Forward {
    pub cluster: ClusterSpec,
    /// The status when `cluster_header` names no cluster.
    pub cluster_not_found_status: u16,
    pub metadata_match: Metadata,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(regex::Regex, String)>,
    pub host_rewrite: HostRewrite,
    /// `None`: no deadline (Envoy's `timeout: 0s`).
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub retry_policy: Option<RetryPolicy>,
    pub hash_policy: Vec<HashPolicy>,
    pub max_stream_duration: Option<Duration>,
    /// A gRPC request's `grpc-timeout` sets its deadline, capped at this (0: uncapped).
    pub grpc_timeout_header_max: Option<Duration>,
    /// Protocols this route lets the request upgrade to (`websocket`).
    pub upgrades: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HostRewrite {
    None,
    Literal(String),
    /// The upstream host's address becomes the Host.
    Auto,
    Header(HeaderName),
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub status: u16,
    pub strip_query: bool,
}

/// Envoy's retry conditions, as bits.
pub mod retry_on {
    pub const FIVE_XX: u32 = 1;
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    pub const RESET: u32 = 1 << 2;
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    pub const RETRIABLE_4XX: u32 = 1 << 4;
    pub const REFUSED_STREAM: u32 = 1 << 5;
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 6;
    pub const GRPC_CANCELLED: u32 = 1 << 7;
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 8;
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 9;
    pub const GRPC_UNAVAILABLE: u32 = 1 << 10;
    pub const GRPC_INTERNAL: u32 = 1 << 11;
    pub const PER_TRY_TIMEOUT_ONLY: u32 = 1 << 12;

    pub const NAMES: &[(&str, u32)] = &[
        ("5xx", FIVE_XX),
        ("gateway-error", GATEWAY_ERROR),
        ("reset", RESET),
        ("connect-failure", CONNECT_FAILURE),
        ("retriable-4xx", RETRIABLE_4XX),
        ("refused-stream", REFUSED_STREAM),
        ("retriable-status-codes", RETRIABLE_STATUS_CODES),
        ("cancelled", GRPC_CANCELLED),
        ("deadline-exceeded", GRPC_DEADLINE_EXCEEDED),
        ("resource-exhausted", GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", GRPC_UNAVAILABLE),
        ("internal", GRPC_INTERNAL),
        ("per-try-timeout", PER_TRY_TIMEOUT_ONLY),
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub retry_on: u32,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub retriable_status_codes: Vec<u16>,
    pub base_interval: Duration,
    pub max_interval: Duration,
    /// `envoy.retry_host_predicates.previous_hosts`: a retry avoids hosts already tried.
    pub previous_hosts: bool,
    pub host_selection_max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HashPolicy {
    Header { name: HeaderName, terminal: bool },
    Cookie { name: String, terminal: bool },
    SourceIp { terminal: bool },
}

/// Headers added and removed on the way up (request) and down (response).
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    pub request_add: Vec<HeaderAdd>,
    pub request_remove: Vec<HeaderName>,
    pub response_add: Vec<HeaderAdd>,
    pub response_remove: Vec<HeaderName>,
}

#[derive(Debug, Clone)]
pub struct HeaderAdd {
    pub name: HeaderName,
    pub value: HeaderValue,
    pub action: AppendAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// Another value beside those present.
    Append,
    AddIfAbsent,
    OverwriteIfExistsOrAdd,
    OverwriteIfExists,
}

pub fn parse_route_config(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<HttpRouteConfig> {
    node.expect_fields(
        &[
            "name",
            "virtual_hosts",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "ignore_port_in_host_matching",
            "validate_clusters",
            "max_direct_response_body_size_bytes",
        ],
        &[
            "vhds",
            "internal_only_headers",
            "most_specific_header_mutations_wins",
            "cluster_specifier_plugins",
            "request_mirror_policies",
            "typed_per_filter_config",
            "metadata",
        ],
    )?;
    let name = opt_str(node, "name")?.unwrap_or_default();
    let mut virtual_hosts = Vec::new();
    if let Some(list) = node.get("virtual_hosts") {
        for item in list.node().items()? {
            virtual_hosts.push(parse_virtual_host(item.node(), clusters)?);
        }
    }
    Ok(HttpRouteConfig {
        name,
        virtual_hosts,
        headers: parse_mutations(node)?,
        ignore_port_in_host_matching: opt_bool(node, "ignore_port_in_host_matching")?,
    })
}

fn opt_str(node: Node<'_>, key: &str) -> Result<Option<String>> {
    Ok(match node.get(key) {
        Some(v) => Some(v.node().as_str()?.to_string()),
        None => None,
    })
}

fn opt_bool(node: Node<'_>, key: &str) -> Result<bool> {
    Ok(match node.get(key) {
        Some(v) => v.node().as_bool()?,
        None => false,
    })
}

fn header_name(node: Node<'_>) -> Result<HeaderName> {
    let s = node.as_str()?;
    HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| node.error(format!("\"{s}\" is not a valid header name")))
}

fn parse_virtual_host(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<VirtualHost> {
    node.expect_fields(
        &[
            "name",
            "domains",
            "routes",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "retry_policy",
            "include_request_attempt_count",
            "include_attempt_count_in_response",
        ],
        &[
            "require_tls",
            "virtual_clusters",
            "rate_limits",
            "cors",
            "typed_per_filter_config",
            "hedge_policy",
            "per_request_buffer_limit_bytes",
            "request_mirror_policies",
            "retry_policy_typed_config",
            "matcher",
            "metadata",
        ],
    )?;
    let name = node.require("name")?.node().as_str()?.to_string();
    let list = node.require("domains")?;
    let mut domains = Vec::new();
    for d in list.node().items()? {
        let d = d.node();
        let v = d.as_str()?.to_ascii_lowercase();
        if v.is_empty() {
            return Err(d.error("a domain must not be empty"));
        }
        Pattern::parse(&v).map_err(|e| d.error(format!("not a domain pattern: {e}")))?;
        domains.push(v);
    }
    if domains.is_empty() {
        return Err(list.node().error("name at least one domain"));
    }
    let mut routes = Vec::new();
    if let Some(r) = node.get("routes") {
        for item in r.node().items()? {
            routes.push(parse_route(item.node(), clusters)?);
        }
    }
    let retry_policy = match node.get("retry_policy") {
        Some(r) => Some(parse_retry_policy(r.node())?),
        None => None,
    };
    Ok(VirtualHost {
        name,
        domains,
        routes,
        headers: parse_mutations(node)?,
        retry_policy,
    })
}

fn parse_route(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<Route> {
    node.expect_fields(
        &[
            "name",
            "match",
            "route",
            "redirect",
            "direct_response",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "decorator",
            "metadata",
        ],
        &[
            "filter_action",
            "non_forwarding_action",
            "typed_per_filter_config",
            "tracing",
            "per_request_buffer_limit_bytes",
            "stat_prefix",
        ],
    )?;
    let name = opt_str(node, "name")?.unwrap_or_default();
    let matcher = parse_match(node.require("match")?.node())?;
    let actions: Vec<&str> = ["route", "redirect", "direct_response"]
        .into_iter()
        .filter(|k| node.get(k).is_some())
        .collect();
    let action = match actions.as_slice() {
        ["route"] => Action::Forward(Box::new(parse_forward(
            node.require("route")?.node(),
            clusters,
        )?)),
        ["redirect"] => Action::Redirect(parse_redirect(node.require("redirect")?.node())?),
        ["direct_response"] => parse_direct(node.require("direct_response")?.node())?,
        [] => return Err(node.error("give one of route, redirect, direct_response")),
        _ => return Err(node.error(format!("give one action, not {}", actions.join(" and ")))),
    };
    Ok(Route {
        name,
        matcher,
        action,
        headers: parse_mutations(node)?,
    })
}

fn parse_match(node: Node<'_>) -> Result<RouteMatch> {
    node.expect_fields(
        &[
            "prefix",
            "path",
            "safe_regex",
            "path_separated_prefix",
            "case_sensitive",
            "headers",
            "query_parameters",
            "grpc",
        ],
        &[
            "connect_matcher",
            "path_match_policy",
            "runtime_fraction",
            "tls_context",
            "dynamic_metadata",
            "filter_state",
        ],
    )?;
    let given: Vec<&str> = ["prefix", "path", "safe_regex", "path_separated_prefix"]
        .into_iter()
        .filter(|k| node.get(k).is_some())
        .collect();
    let case_sensitive = match node.get("case_sensitive") {
        Some(c) => c.node().as_bool()?,
        None => true,
    };
    let text = |k: &str| -> Result<String> {
        let v = node.require(k)?.node().as_str()?.to_string();
        Ok(if case_sensitive {
            v
        } else {
            v.to_ascii_lowercase()
        })
    };
    let path = match given.as_slice() {
        ["prefix"] => PathMatch::Prefix(text("prefix")?),
        ["path"] => PathMatch::Path(text("path")?),
        ["safe_regex"] => PathMatch::Regex(parse_regex(node.require("safe_regex")?.node())?),
        ["path_separated_prefix"] => {
            let p = node.require("path_separated_prefix")?;
            let v = text("path_separated_prefix")?;
            if v.ends_with('/') || v.contains(['?', '#']) {
                return Err(p
                    .node()
                    .error("must not end in / or contain ? or # (Envoy refuses it too)"));
            }
            PathMatch::SeparatedPrefix(v)
        }
        [] => return Err(node.error("give one of prefix, path, safe_regex, path_separated_prefix")),
        _ => return Err(node.error(format!("give one path match, not {}", given.join(" and ")))),
    };
    let mut headers = Vec::new();
    if let Some(list) = node.get("headers") {
        for h in list.node().items()? {
            let hm = parse_header_match(h.node())?;
            HeaderName::from_bytes(hm.name.as_bytes())
                .ok()
                .filter(|_| !hm.name.is_empty())
                .or_else(|| {
                    hm.name
                        .starts_with(':')
                        .then(|| HeaderName::from_static("x"))
                })
                .ok_or_else(|| {
                    h.node()
                        .error(format!("\"{}\" is not a header name", hm.name))
                })?;
            headers.push(hm);
        }
    }
    let mut query = Vec::new();
    if let Some(list) = node.get("query_parameters") {
        for q in list.node().items()? {
            let q = q.node();
            q.expect_fields(&["name", "string_match", "present_match"], &[])?;
            let name = q.require("name")?.node().as_str()?.to_string();
            let matcher = match (q.get("string_match"), q.get("present_match")) {
                (Some(m), None) => Some(parse_string_match(m.node())?),
                (None, Some(p)) => {
                    if !p.node().as_bool()? {
                        return Err(p.node().error("only present_match: true has a meaning"));
                    }
                    None
                }
                (None, None) => None,
                _ => return Err(q.error("give one of string_match or present_match")),
            };
            query.push(QueryMatch { name, matcher });
        }
    }
    let grpc = match node.get("grpc") {
        Some(g) => {
            g.node().expect_fields(&[], &[])?;
            true
        }
        None => false,
    };
    Ok(RouteMatch {
        path,
        case_sensitive,
        headers,
        query,
        grpc,
    })
}

fn parse_forward(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<Forward> {
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
            max_stream_duration = (!d.is_zero()).then_some(d);
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

fn parse_retry_policy(node: Node<'_>) -> Result<RetryPolicy> {
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

fn parse_redirect(node: Node<'_>) -> Result<Redirect> {
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

fn parse_direct(node: Node<'_>) -> Result<Action> {
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

/// `request_headers_to_add` etc. on the node that holds them.
fn parse_mutations(node: Node<'_>) -> Result<HeaderMutations> {
    let adds = |key: &str| -> Result<Vec<HeaderAdd>> {
        let mut out = Vec::new();
        if let Some(list) = node.get(key) {
            for item in list.node().items()? {
                out.push(parse_header_add(item.node())?);
            }
        }
        Ok(out)
    };
    let removes = |key: &str| -> Result<Vec<HeaderName>> {
        let mut out = Vec::new();
        if let Some(list) = node.get(key) {
            for item in list.node().items()? {
                out.push(header_name(item.node())?);
            }
        }
        Ok(out)
    };
    Ok(HeaderMutations {
        request_add: adds("request_headers_to_add")?,
        request_remove: removes("request_headers_to_remove")?,
        response_add: adds("response_headers_to_add")?,
        response_remove: removes("response_headers_to_remove")?,
    })
}

/// Envoy's `HeaderValueOption`.
fn parse_header_add(node: Node<'_>) -> Result<HeaderAdd> {
    node.expect_fields(
        &["header", "append", "append_action", "keep_empty_value"],
        &[],
    )?;
    let h = node.require("header")?;
    let h = h.node();
    h.expect_fields(&["key", "value"], &["raw_value"])?;
    let name = header_name(h.require("key")?.node())?;
    if name.as_str().starts_with(':') || name == http::header::HOST {
        return Err(h.error("pseudo-headers and host cannot be modified this way"));
    }
    let v = match h.get("value") {
        Some(v) => v,
        None => h.require("value")?,
    };
    let text = v.node().as_str()?;
    if text.contains('%') && text.replace("%%", "").contains('%') {
        return Err(v.node().error(
            "command operators in header values (%...%) are not supported yet; write %% for a literal %",
        ));
    }
    let value = HeaderValue::from_str(&text.replace("%%", "%"))
        .map_err(|_| v.node().error("not a valid header value"))?;
    let action = match (node.get("append"), node.get("append_action")) {
        (Some(_), Some(_)) => return Err(node.error("give append or append_action, not both")),
        (Some(a), None) => {
            if a.node().as_bool()? {
                AppendAction::Append
            } else {
                AppendAction::OverwriteIfExistsOrAdd
            }
        }
        (None, Some(a)) => match a.node().as_str()? {
            "APPEND_IF_EXISTS_OR_ADD" => AppendAction::Append,
            "ADD_IF_ABSENT" => AppendAction::AddIfAbsent,
            "OVERWRITE_IF_EXISTS_OR_ADD" => AppendAction::OverwriteIfExistsOrAdd,
            "OVERWRITE_IF_EXISTS" => AppendAction::OverwriteIfExists,
            other => return Err(a.node().error(format!("unknown append_action {other}"))),
        },
        // Envoy's default is APPEND_IF_EXISTS_OR_ADD.
        (None, None) => AppendAction::Append,
    };
    Ok(HeaderAdd {
        name,
        value,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clusters() -> Vec<ClusterConfig> {
        let doc = json!({"static_resources": {"clusters": [
            {"name": "a", "load_assignment": {"cluster_name": "a", "endpoints": []}},
            {"name": "b", "load_assignment": {"cluster_name": "b", "endpoints": []}}]}});
        crate::config::bootstrap::parse_bootstrap(&doc)
            .unwrap()
            .clusters
    }

    fn parse(v: serde_json::Value) -> std::result::Result<HttpRouteConfig, String> {
        parse_route_config(Node::root(&v), &clusters()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_route_config_parses() {
        let rc = parse(json!({"name": "r", "virtual_hosts": [{"name": "v", "domains": ["Example.com", "*.x.io"],
            "routes": [
                {"match": {"prefix": "/api", "headers": [{"name": "x-env", "string_match": {"exact": "canary"}}],
                           "query_parameters": [{"name": "debug", "present_match": true}]},
                 "route": {"weighted_clusters": {"clusters": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3}]},
                           "prefix_rewrite": "/v2", "timeout": "0s",
                           "retry_policy": {"retry_on": "5xx,reset", "num_retries": 3, "per_try_timeout": "1s",
                                            "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts"}]},
                           "hash_policy": [{"header": {"header_name": "x-user"}}]}},
                {"match": {"path": "/old"}, "redirect": {"path_redirect": "/new", "response_code": "FOUND"}},
                {"match": {"safe_regex": {"regex": "/re/[0-9]+"}}, "direct_response": {"status": 418, "body": {"inline_string": "tea"}}}
            ],
            "response_headers_to_add": [{"header": {"key": "x-vh", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]}))
        .unwrap();
        let vh = &rc.virtual_hosts[0];
        assert_eq!(vh.domains, ["example.com", "*.x.io"]);
        let Action::Forward(f) = &vh.routes[0].action else {
            panic!()
        };
        assert_eq!(f.timeout, None);
        let retry = f.retry_policy.as_ref().unwrap();
        assert_eq!(retry.retry_on, retry_on::FIVE_XX | retry_on::RESET);
        assert!(retry.previous_hosts && retry.max_interval == Duration::from_millis(250));
        assert!(matches!(&vh.routes[1].action, Action::Redirect(r) if r.status == 302));
        assert!(
            matches!(&vh.routes[2].action, Action::Direct { status: 418, body } if &body[..] == b"tea")
        );
        assert_eq!(
            vh.headers.response_add[0].action,
            AppendAction::OverwriteIfExistsOrAdd
        );
    }

    #[test]
    fn mistakes_name_their_path() {
        let vh = |route: serde_json::Value| json!({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [route]}]});
        for (route, want) in [
            (json!({"match": {"prefix": "/"}, "route": {"cluster": "nope"}}),
             "virtual_hosts[0].routes[0].route.cluster: unknown cluster \"nope\""),
            (json!({"match": {"prefix": "/", "path": "/x"}, "route": {"cluster": "a"}}),
             "virtual_hosts[0].routes[0].match: give one path match, not prefix and path"),
            (json!({"match": {"prefix": "/"}, "route": {"cluster": "a", "retry_policy": {"retry_on": "5xx,sometimes"}}}),
             "virtual_hosts[0].routes[0].route.retry_policy.retry_on: retry_on \"sometimes\" is not supported"),
            (json!({"match": {"prefix": "/"}, "route": {"cluster": "a", "cors": {}}}),
             "virtual_hosts[0].routes[0].route.cors:"),
            (json!({"match": {"prefix": "/"}}),
             "virtual_hosts[0].routes[0]: give one of route, redirect, direct_response"),
            (json!({"match": {"safe_regex": {"regex": "("}}, "route": {"cluster": "a"}}),
             "virtual_hosts[0].routes[0].match.safe_regex.regex: invalid regex"),
        ] {
            let e = parse(vh(route)).unwrap_err();
            assert!(e.starts_with(want), "{e}\nwanted: {want}");
        }
    }

    #[test]
    fn re2_groups_become_regex_crate_groups() {
        assert_eq!(rewrite_groups(r"/v2/\1/x$"), "/v2/${1}/x$$");
        assert_eq!(decode_base64("dGVh").unwrap(), b"tea");
    }
}
