//! Envoy's header mutations (`request_headers_to_add`, `request_headers_to_remove`,
//! `response_headers_to_add`, `response_headers_to_remove` with `HeaderValueOption`s), as a
//! route, a virtual host and a route configuration each carry them.

use super::access_log::{parse_format, Operator};
use super::route_config::header_name;
use crate::config::reader::{Node, Result};
use http::{HeaderName, HeaderValue};

/// Headers added and removed on the way up (request) and down (response).
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    pub request_add: Vec<HeaderAdd>,
    pub request_remove: Vec<HeaderName>,
    pub response_add: Vec<HeaderAdd>,
    pub response_remove: Vec<HeaderName>,
    /// Whether a value of `request_add` / `response_add` has command operators (most have
    /// none, and then nothing is formatted per request).
    pub formats_request: bool,
    pub formats_response: bool,
}

#[derive(Debug, Clone)]
pub struct HeaderAdd {
    pub name: HeaderName,
    /// The value when it has no command operators.
    pub value: HeaderValue,
    /// A value with command operators (%REQ(x)%, %DOWNSTREAM_REMOTE_ADDRESS%, ...), formatted
    /// per request as Envoy does: an operator with nothing to say gives nothing, and a value
    /// that comes out empty is not added unless `keep_empty_value`.
    pub format: Option<Vec<Operator>>,
    pub keep_empty: bool,
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

/// `request_headers_to_add` etc. on the node that holds them.
pub(super) fn parse_mutations(node: Node<'_>) -> Result<HeaderMutations> {
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
    let request_add = adds("request_headers_to_add")?;
    let response_add = adds("response_headers_to_add")?;
    Ok(HeaderMutations {
        formats_request: request_add.iter().any(|a| a.format.is_some()),
        formats_response: response_add.iter().any(|a| a.format.is_some()),
        request_add,
        request_remove: removes("request_headers_to_remove")?,
        response_add,
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
    let ops = parse_format(v.node(), text)?;
    let (value, format) = match ops.as_slice() {
        [] => (HeaderValue::from_static(""), None),
        [Operator::Literal(l)] => (
            HeaderValue::from_str(l).map_err(|_| v.node().error("not a valid header value"))?,
            None,
        ),
        _ => (HeaderValue::from_static(""), Some(ops)),
    };
    let keep_empty = match node.get("keep_empty_value") {
        Some(k) => k.node().as_bool()?,
        None => false,
    };
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
        format,
        keep_empty,
        action,
    })
}
