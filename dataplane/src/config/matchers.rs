//! Envoy's common matchers as config: `type.matcher.v3.StringMatcher` and
//! `config.route.v3.HeaderMatcher`, read once for every filter that routes (HTTP, rpc_proxy).
//! What a match means at run time is in `crate::route::matchers`.

use super::reader::{Node, Result};
use super::{HeaderMatch, StringMatch};

/// Envoy's `type.matcher.v3.StringMatcher`: exactly one of exact, prefix, suffix, contains,
/// safe_regex; `ignore_case` for all but the regex.
pub fn parse_string_match(node: Node<'_>) -> Result<StringMatch> {
    node.expect_fields(
        &[
            "exact",
            "prefix",
            "suffix",
            "contains",
            "safe_regex",
            "ignore_case",
        ],
        &["custom"],
    )?;
    let ignore_case = match node.get("ignore_case") {
        Some(i) => i.node().as_bool()?,
        None => false,
    };
    let kinds = ["exact", "prefix", "suffix", "contains", "safe_regex"];
    let given: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| node.get(k).is_some())
        .collect();
    if given.len() != 1 {
        return Err(node.error("give exactly one of exact, prefix, suffix, contains, safe_regex"));
    }
    let kind = given[0];
    if kind == "safe_regex" {
        if ignore_case {
            return Err(
                node.error("ignore_case has no effect on safe_regex (Envoy refuses it too)")
            );
        }
        return parse_regex(node.require("safe_regex")?.node()).map(StringMatch::Regex);
    }
    let v = node.require(kind)?;
    let mut text = v.node().as_str()?.to_string();
    if ignore_case {
        text = text.to_ascii_lowercase();
    }
    let m = match kind {
        "exact" => StringMatch::Exact(text),
        "prefix" => StringMatch::Prefix(text),
        "suffix" => StringMatch::Suffix(text),
        _ => StringMatch::Contains(text),
    };
    Ok(if ignore_case {
        StringMatch::NoCase(Box::new(m))
    } else {
        m
    })
}

/// Envoy's `type.matcher.v3.RegexMatcher`, anchored: safe_regex matches the whole value.
pub fn parse_regex(node: Node<'_>) -> Result<regex::Regex> {
    node.expect_fields(&["regex", "google_re2"], &[])?;
    let pattern = node.require("regex")?;
    let p = pattern.node().as_str()?;
    regex::Regex::new(&format!("^(?:{p})$"))
        .map_err(|e| pattern.node().error(format!("invalid regex: {e}")))
}

/// Envoy's `config.route.v3.HeaderMatcher`, in its current form (string_match, present_match,
/// range_match) and its older one (exact_match, prefix_match, ..., safe_regex_match).
pub fn parse_header_match(node: Node<'_>) -> Result<HeaderMatch> {
    node.expect_fields(
        &[
            "name",
            "string_match",
            "present_match",
            "range_match",
            "invert_match",
            "treat_missing_header_as_empty",
            "exact_match",
            "prefix_match",
            "suffix_match",
            "contains_match",
            "safe_regex_match",
        ],
        &[],
    )?;
    let name = node.require("name")?.node().as_str()?.to_string();
    let specifiers = [
        "string_match",
        "present_match",
        "range_match",
        "exact_match",
        "prefix_match",
        "suffix_match",
        "contains_match",
        "safe_regex_match",
    ];
    let given: Vec<&str> = specifiers
        .iter()
        .copied()
        .filter(|k| node.get(k).is_some())
        .collect();
    if given.len() > 1 {
        return Err(node.error(format!(
            "give one header match specifier, not {}",
            given.join(" and ")
        )));
    }
    let mut matcher = None;
    let mut range = None;
    let mut present_false = false;
    if let Some(&kind) = given.first() {
        let v = node.require(kind)?;
        let v = v.node();
        let text = || -> Result<String> { Ok(v.as_str()?.to_string()) };
        match kind {
            "string_match" => matcher = Some(parse_string_match(v)?),
            "present_match" => present_false = !v.as_bool()?,
            "range_match" => {
                v.expect_fields(&["start", "end"], &[])?;
                let bound = |k: &str| -> Result<i64> {
                    let b = v.require(k)?;
                    let b = b.node();
                    match b.value() {
                        serde_json::Value::Number(n) => n.as_i64(),
                        serde_json::Value::String(s) => s.parse().ok(),
                        _ => None,
                    }
                    .ok_or_else(|| b.error("expected an integer"))
                };
                let (start, end) = (bound("start")?, bound("end")?);
                if start >= end {
                    return Err(v.error("start must be below end (the range is start..end)"));
                }
                range = Some(start..end);
            }
            "exact_match" => matcher = Some(StringMatch::Exact(text()?)),
            "prefix_match" => matcher = Some(StringMatch::Prefix(text()?)),
            "suffix_match" => matcher = Some(StringMatch::Suffix(text()?)),
            "contains_match" => matcher = Some(StringMatch::Contains(text()?)),
            _ => matcher = Some(StringMatch::Regex(parse_regex(v)?)),
        }
    }
    let flag = |k: &str| -> Result<bool> {
        Ok(match node.get(k) {
            Some(i) => i.node().as_bool()?,
            None => false,
        })
    };
    // `present_match: false` matches when the header is absent, i.e. an inverted presence.
    let invert = flag("invert_match")? != present_false;
    Ok(HeaderMatch {
        name,
        matcher,
        range,
        invert,
        missing_as_empty: flag("treat_missing_header_as_empty")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(v: serde_json::Value) -> std::result::Result<HeaderMatch, String> {
        parse_header_match(Node::root(&v)).map_err(|e| e.to_string())
    }

    #[test]
    fn header_matcher_forms() {
        let h = header(json!({"name": "X-A", "range_match": {"start": 1, "end": "10"}})).unwrap();
        assert_eq!((h.name.as_str(), h.range), ("X-A", Some(1..10)));
        let h = header(json!({"name": "x", "present_match": false})).unwrap();
        assert!(h.invert && h.matcher.is_none());
        let h = header(json!({"name": "x", "exact_match": "v", "invert_match": true})).unwrap();
        assert!(h.invert && h.matcher == Some(StringMatch::Exact("v".into())));
        let e =
            header(json!({"name": "x", "exact_match": "v", "present_match": true})).unwrap_err();
        assert!(
            e.contains("not exact_match and present_match")
                || e.contains("present_match and exact_match"),
            "{e}"
        );
        let e = header(json!({"name": "x", "range_match": {"start": 5, "end": 5}})).unwrap_err();
        assert!(e.starts_with("range_match: start must be below end"), "{e}");
    }

    #[test]
    fn ignore_case_lowers_the_pattern() {
        let v = json!({"prefix": "/API", "ignore_case": true});
        let m = parse_string_match(Node::root(&v)).unwrap();
        assert!(m.matches("/api/x") && m.matches("/Api/x") && !m.matches("/ap"));
    }
}
