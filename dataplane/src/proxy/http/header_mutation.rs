//! Envoy's header mutations (`request_headers_to_add`, `request_headers_to_remove`,
//! `response_headers_to_add`, `response_headers_to_remove` with `HeaderValueOption`s), as a
//! route, a virtual host and a route configuration each carry them.

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
