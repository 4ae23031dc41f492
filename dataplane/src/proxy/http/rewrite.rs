//! Where a route sends a request's path: prefix and regex rewrites of a forwarded request,
//! and the Location of a redirect, as Envoy computes them.

use super::message::RequestHead;
use super::route_config::{Forward, PathMatch, Redirect, Route};

/// The path `forward` rewrites `path` (which `route` matched) to: its prefix_rewrite in place
/// of the matched prefix (the whole path for path and regex matches), or its regex_rewrite
/// applied to the path without the query; `None` when it rewrites nothing.
pub fn rewritten_path(path: &str, forward: &Forward, route: &Route) -> Option<String> {
    let path_only = path.split_once('?').map_or(path, |(p, _)| p);
    if let Some(new_prefix) = &forward.prefix_rewrite {
        let matched = match &route.matcher.path {
            PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) => p.len(),
            PathMatch::Path(_) | PathMatch::Regex(_) => path_only.len(),
        };
        // The route matched, so the prefix is the path's own start; `get` keeps a mismatch
        // (not possible, but on the data path) from panicking.
        let rest = path.get(matched.min(path.len())..).unwrap_or("");
        return Some(format!("{new_prefix}{rest}"));
    }
    let (re, sub) = forward.regex_rewrite.as_ref()?;
    let new = re.replace_all(path_only, sub.as_str()).into_owned();
    Some(match path.split_once('?') {
        Some((_, q)) => format!("{new}?{q}"),
        None => new,
    })
}

/// Where a redirect sends the request `head` that `route` matched.
pub fn redirect_location(rd: &Redirect, head: &RequestHead, route: &Route) -> String {
    let scheme = rd.scheme.as_deref().unwrap_or(head.scheme);
    let authority = head.authority.as_str();
    let (host, port) = match rd.host.as_deref() {
        Some(h) => (h.to_string(), None),
        None => {
            let h = super::router::strip_port(authority);
            let p = authority
                .get(h.len() + 1..)
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            (h.to_string(), p)
        }
    };
    let port = match rd.port {
        Some(p) => Some(p.to_string()),
        // A scheme change keeps the port unless it is a scheme's default, as Envoy does.
        None if rd.scheme.is_some() => port.filter(|p| p != "80" && p != "443"),
        None => port,
    };
    let mut path = match (&rd.path, &rd.prefix_rewrite) {
        (Some(p), _) => p.clone(),
        (None, Some(prefix)) => {
            let matched = match &route.matcher.path {
                PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) => p.len(),
                _ => head.path_only().len(),
            };
            format!(
                "{prefix}{}",
                head.path.get(matched.min(head.path.len())..).unwrap_or("")
            )
        }
        (None, None) => head.path.to_string(),
    };
    if rd.strip_query {
        if let Some(i) = path.find('?') {
            path.truncate(i);
        }
    } else if rd.path.is_some() && !path.contains('?') {
        if let Some(q) = head.query() {
            path = format!("{path}?{q}");
        }
    }
    match port {
        Some(p) => format!("{scheme}://{host}:{p}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}
