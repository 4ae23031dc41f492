//! The HTTP filter extension point: `http_filters` of a connection manager, each found by its
//! typed_config's type URL (or its well-known name), parsed by its own factory. The chain must
//! end with the router, as Envoy's must. A filter sluice does not have is an error naming its
//! path, unless it is marked `is_optional` (skipped, as Envoy skips it) or `disabled`.
//!
//! A filter sees each request's head on the way up and each response's head on the way down,
//! and may answer locally instead ([`HttpFilter`]); the router is the chain's terminal step and
//! is not one of them.

use super::message::{RequestHead, Response, ResponseHead};
use crate::config::reader::{Node, Result};
use std::sync::Arc;

pub const ROUTER_NAME: &str = "envoy.filters.http.router";
pub const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// One HTTP filter: names, type, and how to read its typed_config.
pub trait HttpFilterFactory: Sync {
    fn name(&self) -> &'static str;
    fn type_url(&self) -> &'static str;
    fn parse(&self, typed_config: Node<'_>) -> Result<Arc<dyn HttpFilter>>;
}

/// What a filter decides about a request.
pub enum Decision {
    Continue,
    /// Answer with this instead of forwarding.
    Reply(Response),
}

/// A validated HTTP filter, shared by every worker (it holds no per-connection state).
pub trait HttpFilter: std::fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;
    fn on_request(&self, _head: &mut RequestHead) -> Decision {
        Decision::Continue
    }
    fn on_response(&self, _head: &mut ResponseHead) {}
}

/// Every HTTP filter sluice has besides the router (none yet: the extension point is here for
/// the TLS, resilience and Istio issues' filters).
pub static FACTORIES: &[&dyn HttpFilterFactory] = &[];

/// The router's own options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterOptions {
    /// Leave out the x-envoy-* headers sluice would add (suppress_envoy_headers).
    pub suppress_envoy_headers: bool,
}

#[derive(Debug, Clone, Default)]
pub struct HttpFilters {
    /// In order; the router is not among them.
    pub chain: Vec<Arc<dyn HttpFilter>>,
    pub router: RouterOptions,
    /// Optional filters that were skipped because sluice lacks them (names, for the log).
    pub skipped: Vec<String>,
}

pub fn parse_http_filters(node: Node<'_>) -> Result<HttpFilters> {
    let items = node.items()?;
    let mut out = HttpFilters::default();
    let mut router_seen = false;
    for (i, item) in items.iter().enumerate() {
        let f = item.node();
        f.expect_fields(
            &["name", "typed_config", "is_optional", "disabled"],
            &["config_discovery"],
        )?;
        let name = f.require("name")?.node().as_str()?.to_string();
        let optional = match f.get("is_optional") {
            Some(o) => o.node().as_bool()?,
            None => false,
        };
        let disabled = match f.get("disabled") {
            Some(d) => d.node().as_bool()?,
            None => false,
        };
        let typed = f.get("typed_config");
        let type_url = match &typed {
            Some(t) => Some(t.node().require("@type")?.node().as_str()?.to_string()),
            None => None,
        };
        let is_router = type_url.as_deref() == Some(ROUTER_TYPE)
            || (type_url.is_none() && (name == ROUTER_NAME || name == "envoy.router"));
        if is_router {
            if i + 1 != items.len() {
                return Err(f.error("the router must be the last HTTP filter"));
            }
            if let Some(t) = &typed {
                out.router = parse_router(t.node())?;
            }
            router_seen = true;
            continue;
        }
        if disabled {
            continue;
        }
        let factory = FACTORIES.iter().find(|x| match &type_url {
            Some(t) => x.type_url() == t,
            None => x.name() == name,
        });
        match (factory, &typed) {
            (Some(fac), Some(t)) => out.chain.push(fac.parse(t.node())?),
            (Some(_), None) => return Err(f.error("typed_config is required")),
            (None, _) if optional => out.skipped.push(name),
            (None, _) => {
                return Err(f.error(format!(
                    "unknown HTTP filter \"{name}\"{} (available: {ROUTER_NAME}{}); mark it is_optional: true to skip it",
                    type_url.map(|t| format!(" of type {t}")).unwrap_or_default(),
                    FACTORIES.iter().map(|x| format!(", {}", x.name())).collect::<String>()
                )))
            }
        }
    }
    if !router_seen {
        return Err(node.error(format!("the chain must end with {ROUTER_NAME}")));
    }
    Ok(out)
}

fn parse_router(node: Node<'_>) -> Result<RouterOptions> {
    node.expect_fields(
        &[
            "@type",
            "suppress_envoy_headers",
            "dynamic_stats",
            "start_child_span",
        ],
        &[
            "upstream_log",
            "upstream_log_options",
            "strict_check_headers",
            "respect_expected_rq_timeout",
            "suppress_grpc_request_failure_code_stats",
            "upstream_http_filters",
        ],
    )?;
    Ok(RouterOptions {
        suppress_envoy_headers: match node.get("suppress_envoy_headers") {
            Some(s) => s.node().as_bool()?,
            None => false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> std::result::Result<HttpFilters, String> {
        parse_http_filters(Node::root(&v)).map_err(|e| e.to_string())
    }

    #[test]
    fn router_last_unknown_refused_unless_optional() {
        let f = parse(json!([
            {"name": "istio.stats", "is_optional": true, "typed_config": {"@type": "type.googleapis.com/stats.PluginConfig"}},
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE, "suppress_envoy_headers": true}}
        ]))
        .unwrap();
        assert_eq!(f.skipped, ["istio.stats"]);
        assert!(f.router.suppress_envoy_headers);
        let e = parse(json!([{"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
                              {"name": "envoy.filters.http.router"}])).unwrap_err();
        assert!(
            e.starts_with("[0]: unknown HTTP filter \"envoy.filters.http.cors\""),
            "{e}"
        );
        let e = parse(
            json!([{"name": "envoy.filters.http.router"}, {"name": "x", "is_optional": true}]),
        )
        .unwrap_err();
        assert!(e.starts_with("[0]: the router must be the last"), "{e}");
        assert!(parse(json!([]))
            .unwrap_err()
            .contains("must end with envoy.filters.http.router"));
    }
}
