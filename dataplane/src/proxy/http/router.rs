//! Route selection with Envoy's semantics: the virtual host by the request's host (exact,
//! longest `*.suffix`, longest `prefix.*`, `*`; port kept unless `ignore_port_in_host_matching`),
//! then the first route whose path, header, query and gRPC matches all accept the request.

use super::message::RequestHead;
use super::route_config::{HttpRouteConfig, PathMatch, Route, RouteMatch, VirtualHost};
use crate::route::names::NameTable;

/// A route configuration ready to match: its virtual hosts indexed by domain.
#[derive(Debug)]
pub struct RouteTable {
    pub config: std::sync::Arc<HttpRouteConfig>,
    domains: NameTable<usize>,
}

impl RouteTable {
    pub fn new(config: std::sync::Arc<HttpRouteConfig>) -> RouteTable {
        let mut domains = NameTable::default();
        for (i, vh) in config.virtual_hosts.iter().enumerate() {
            for d in &vh.domains {
                // Patterns were checked when the config was read.
                let _ = domains.insert(d, i);
            }
        }
        RouteTable { config, domains }
    }

    pub fn virtual_host(&self, head: &RequestHead) -> Option<&VirtualHost> {
        let raw = head.host();
        // Lower-cased only when it has to be: most hosts arrive lower-case.
        let lowered;
        let mut host = if raw.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = raw.to_ascii_lowercase();
            lowered.as_str()
        } else {
            raw
        };
        if self.config.ignore_port_in_host_matching {
            host = strip_port(host);
        }
        let i = *self.domains.find(Some(host))?;
        self.config.virtual_hosts.get(i)
    }

    /// The virtual host and the first of its routes that matches.
    pub fn route(&self, head: &RequestHead) -> Option<(&VirtualHost, &Route)> {
        let vh = self.virtual_host(head)?;
        let r = vh.routes.iter().find(|r| matches(&r.matcher, head))?;
        Some((vh, r))
    }
}

/// `host:port` or `[v6]:port` without the port.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(i) => &host[..i + 2],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

fn matches(m: &RouteMatch, head: &RequestHead) -> bool {
    let path = head.path_only();
    let lowered;
    let path = if m.case_sensitive {
        path
    } else {
        lowered = path.to_ascii_lowercase();
        &lowered
    };
    let path_ok = match &m.path {
        // A prefix matches the path with its query, as in Envoy.
        PathMatch::Prefix(p) => {
            if m.case_sensitive {
                head.path.starts_with(p.as_str())
            } else {
                head.path.to_ascii_lowercase().starts_with(p.as_str())
            }
        }
        PathMatch::Path(p) => path == p,
        PathMatch::Regex(r) => r.is_match(head.path_only()),
        PathMatch::SeparatedPrefix(p) => {
            path.starts_with(p.as_str())
                && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
        }
    };
    if !path_ok || (m.grpc && !head.is_grpc()) {
        return false;
    }
    let headers_ok = m.headers.iter().all(|h| {
        let value = match h.name.as_str() {
            ":method" => Some(head.method.as_str().as_bytes()),
            ":path" => Some(head.path.as_bytes()),
            ":authority" => Some(head.authority.as_bytes()),
            ":scheme" => Some(head.scheme.as_bytes()),
            name => {
                // Several fields of one name are matched as their comma-joined value.
                let mut all = head.headers.get_all(name);
                match (all.next(), all.next()) {
                    (None, _) => None,
                    (Some(v), None) => Some(v.as_bytes()),
                    (Some(_), Some(_)) => {
                        let joined: Vec<&[u8]> =
                            head.headers.get_all(name).map(|v| v.as_bytes()).collect();
                        return h.accepts(Some(&joined.join(&b","[..])));
                    }
                }
            }
        };
        h.accepts(value)
    });
    if !headers_ok {
        return false;
    }
    if m.query.is_empty() {
        return true;
    }
    let query = head.query().unwrap_or("");
    m.query.iter().all(|q| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| *k == q.name)
            .is_some_and(|(_, v)| q.matcher.as_ref().is_none_or(|s| s.matches(&v)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::Node;
    use crate::proxy::http::route_config::parse_route_config;
    use serde_json::json;
    use std::sync::Arc;

    fn table(v: serde_json::Value) -> RouteTable {
        let doc = json!({"static_resources": {"clusters": [
            {"name": "a", "load_assignment": {"cluster_name": "a", "endpoints": []}}]}});
        let clusters = crate::config::bootstrap::parse_bootstrap(&doc)
            .unwrap()
            .clusters;
        RouteTable::new(Arc::new(
            parse_route_config(Node::root(&v), &clusters).unwrap(),
        ))
    }

    fn head(host: &str, path: &str, headers: &[(&str, &str)]) -> RequestHead {
        let mut h = crate::proxy::http::fields::Fields::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        RequestHead {
            method: http::Method::GET,
            scheme: "http",
            authority: host.into(),
            path: path.into(),
            version: http::Version::HTTP_11,
            headers: h,
            continue_to: None,
        }
    }

    fn name(t: &RouteTable, h: &RequestHead) -> Option<String> {
        t.route(h).map(|(vh, r)| format!("{}/{}", vh.name, r.name))
    }

    #[test]
    fn hosts_paths_headers_queries() {
        let t = table(json!({"virtual_hosts": [
            {"name": "api", "domains": ["api.example.com", "api.example.com:8080"], "routes": [
                {"name": "exact", "match": {"path": "/v1/users"}, "route": {"cluster": "a"}},
                {"name": "sep", "match": {"path_separated_prefix": "/v1/items"}, "route": {"cluster": "a"}},
                {"name": "re", "match": {"safe_regex": {"regex": "/v1/[0-9]+"}}, "route": {"cluster": "a"}},
                {"name": "hdr", "match": {"prefix": "/", "headers": [
                    {"name": "x-version", "range_match": {"start": 2, "end": 4}},
                    {"name": ":method", "string_match": {"exact": "GET"}}]}, "route": {"cluster": "a"}},
                {"name": "q", "match": {"prefix": "/", "query_parameters": [{"name": "debug", "string_match": {"exact": "1"}}]}, "route": {"cluster": "a"}},
                {"name": "ci", "match": {"prefix": "/CASE", "case_sensitive": false}, "route": {"cluster": "a"}}
            ]},
            {"name": "any", "domains": ["*"], "routes": [{"name": "all", "match": {"prefix": "/"}, "route": {"cluster": "a"}}]}
        ]}));
        let n = |host: &str, path: &str, hs: &[(&str, &str)]| name(&t, &head(host, path, hs));
        assert_eq!(
            n("api.example.com", "/v1/users", &[]).as_deref(),
            Some("api/exact")
        );
        assert_eq!(
            n("API.example.com", "/v1/users?x=1", &[]).as_deref(),
            Some("api/exact")
        );
        assert_eq!(
            n("api.example.com", "/v1/items/3", &[]).as_deref(),
            Some("api/sep")
        );
        assert_eq!(n("api.example.com", "/v1/itemsX", &[]), None);
        assert_eq!(
            n("api.example.com", "/v1/42", &[]).as_deref(),
            Some("api/re")
        );
        assert_eq!(
            n("api.example.com", "/z", &[("x-version", "3")]).as_deref(),
            Some("api/hdr")
        );
        assert_eq!(n("api.example.com", "/z", &[("x-version", "4")]), None);
        assert_eq!(
            n("api.example.com", "/z?a=b&debug=1", &[]).as_deref(),
            Some("api/q")
        );
        assert_eq!(
            n("api.example.com", "/case/x", &[]).as_deref(),
            Some("api/ci")
        );
        assert_eq!(
            n("api.example.com:8080", "/v1/users", &[]).as_deref(),
            Some("api/exact")
        );
        assert_eq!(
            n("api.example.com:9", "/v1/users", &[]).as_deref(),
            Some("any/all")
        );
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("h:80"), "h");
    }
}
