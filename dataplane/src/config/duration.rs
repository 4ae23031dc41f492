//! Protobuf `Duration` values as Envoy reads them: the JSON string form `"1.5s"` (decimal seconds,
//! up to nanosecond precision, then `s`) or the object form `{seconds: 1, nanos: 500000000}`.

use super::reader::{Node, Result};
use std::time::Duration;

/// The timeout or interval `field` of `parent`, where `0s` turns the thing off (Envoy's
/// convention): `None` then, and `default` when the field is absent.
pub fn optional_duration(
    parent: Node<'_>,
    field: &str,
    default: Option<Duration>,
) -> Result<Option<Duration>> {
    match parent.get(field) {
        Some(n) => {
            let d = parse_duration(n.node())?;
            Ok((!d.is_zero()).then_some(d))
        }
        None => Ok(default),
    }
}

pub fn parse_duration(node: Node<'_>) -> Result<Duration> {
    if node.value().is_object() {
        node.expect_fields(&["seconds", "nanos"], &[])?;
        let secs = match node.get("seconds") {
            Some(c) => c.node().as_u64()?,
            None => 0,
        };
        let nanos = match node.get("nanos") {
            Some(c) => c.node().as_u32()?,
            None => 0,
        };
        if nanos >= 1_000_000_000 {
            return Err(node.error("nanos must be below 1000000000"));
        }
        return Ok(Duration::new(secs, nanos));
    }
    let text = node.as_str()?;
    parse_duration_str(text).ok_or_else(|| {
        node.error(format!(
            "invalid duration \"{text}\" (expected seconds with an 's' suffix, e.g. \"0.25s\")"
        ))
    })
}

fn parse_duration_str(text: &str) -> Option<Duration> {
    let number = text.strip_suffix('s')?;
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Duration> {
        parse_duration(Node::root(&v))
    }

    #[test]
    fn string_forms() {
        assert_eq!(parse(json!("5s")).unwrap(), Duration::from_secs(5));
        assert_eq!(parse(json!("0.25s")).unwrap(), Duration::from_millis(250));
        assert_eq!(parse(json!("1.000000001s")).unwrap(), Duration::new(1, 1));
        assert_eq!(parse(json!(".5s")).unwrap(), Duration::from_millis(500));
    }

    #[test]
    fn object_form() {
        let d = parse(json!({"seconds": 2, "nanos": 5})).unwrap();
        assert_eq!(d, Duration::new(2, 5));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["5", "s", "-1s", "1.2.3s", "5ms", "1.0000000001s", ""] {
            assert!(parse(json!(bad)).is_err(), "{bad} should be rejected");
        }
        assert!(parse(json!(5)).is_err());
    }
}
