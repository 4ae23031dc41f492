//! Envoy's `RouteConfiguration` for HTTP, read into validated types: virtual hosts by domain,
//! routes in order with their matches and actions, header mutations at three levels. Every
//! field sluice does not honour is an error naming its path. The meaning of a match is in
//! `router.rs`; domains, string and header matchers, weighted targets are the shared route
//! model's (`crate::route`).

use crate::config::matchers::{parse_header_match, parse_regex, parse_string_match};
use crate::config::reader::{Node, Result};
use crate::config::{ClusterConfig, HeaderMatch, Metadata, StringMatch, WeightedCluster};
use crate::route::names::Pattern;
use bytes::Bytes;
use http::HeaderName;
use std::time::Duration;

use super::header_mutation::parse_mutations;
pub use super::header_mutation::{AppendAction, HeaderAdd, HeaderMutations};
use super::route_action::{parse_direct, parse_forward, parse_redirect, parse_retry_policy};

/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's default retry back-off base interval (the maximum defaults to 10×).
pub(super) const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
pub struct HttpRouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    pub headers: HeaderMutations,
    pub ignore_port_in_host_matching: bool,
    /// Removed from every request that is not internal (with sluice, every request).
    pub internal_only_headers: Vec<HeaderName>,
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
    /// The stream's longest life here; zero: none, whatever the connection manager says.
    pub max_stream_duration: Option<Duration>,
    /// A gRPC request's `grpc-timeout` sets its max stream duration, capped at this (0:
    /// uncapped).
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
            "internal_only_headers",
        ],
        &[
            "vhds",
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
        internal_only_headers: match node.get("internal_only_headers") {
            Some(list) => list
                .node()
                .items()?
                .iter()
                .map(|i| header_name(i.node()))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        },
    })
}

pub(super) fn opt_str(node: Node<'_>, key: &str) -> Result<Option<String>> {
    Ok(match node.get(key) {
        Some(v) => Some(v.node().as_str()?.to_string()),
        None => None,
    })
}

pub(super) fn opt_bool(node: Node<'_>, key: &str) -> Result<bool> {
    Ok(match node.get(key) {
        Some(v) => v.node().as_bool()?,
        None => false,
    })
}

pub(super) fn header_name(node: Node<'_>) -> Result<HeaderName> {
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
}
