//! A path-tracking reader over a parsed config tree.
//!
//! The Envoy bootstrap is read from a generic JSON value rather than through serde derives so that
//! every error — unknown field, wrong type, missing value — names the exact path where it happened
//! (`static_resources.clusters[2].connect_timeout: ...`), and so that an unknown field is always an
//! error instead of being dropped silently.

use serde_json::Value;
use std::fmt;

/// A config error: where it is (a dotted path with `[index]` for list items) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// One node of the config tree together with the path that leads to it.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    value: &'a Value,
    path: &'a str,
}

/// Owned path storage for children: a child's path is built once and borrowed by its `Node`.
pub struct Child<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Child<'a> {
    pub fn node(&self) -> Node<'_> {
        Node {
            value: self.value,
            path: &self.path,
        }
    }
}

/// Protobuf's JSON mapping accepts lowerCamelCase as well as the original snake_case field name,
/// and Envoy reads both; so do we.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Self {
        Node { value, path: "" }
    }

    pub fn path(&self) -> &str {
        self.path
    }

    pub fn value(&self) -> &'a Value {
        self.value
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.path, message)
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// Checks this node is a map whose keys are all among `allowed` (snake_case names; their
    /// camelCase spellings are accepted too). `unsupported` lists Envoy fields that exist but that
    /// sluice does not implement, so the message can say so rather than "unknown".
    pub fn expect_fields(&self, allowed: &[&str], unsupported: &[&str]) -> Result<()> {
        let map = self.value.as_object().ok_or_else(|| {
            self.error(format!("expected a map, found {}", type_name(self.value)))
        })?;
        for key in map.keys() {
            let known = allowed.iter().any(|a| a == key || camel_case(a) == *key);
            if known {
                continue;
            }
            let path = self.child_path(key);
            let is_unsupported = unsupported
                .iter()
                .any(|a| a == key || camel_case(a) == *key);
            return Err(if is_unsupported {
                ConfigError::new(path, "this Envoy field is not supported by sluice yet")
            } else {
                ConfigError::new(
                    path,
                    format!("unknown field (expected one of: {})", allowed.join(", ")),
                )
            });
        }
        Ok(())
    }

    /// The child under `key` (snake_case or camelCase), if present and not null.
    pub fn get(&self, key: &str) -> Option<Child<'a>> {
        let map = self.value.as_object()?;
        let (name, value) = match map.get(key) {
            Some(v) => (key.to_string(), v),
            None => {
                let camel = camel_case(key);
                let v = map.get(&camel)?;
                (camel, v)
            }
        };
        if value.is_null() {
            return None;
        }
        Some(Child {
            value,
            path: self.child_path(&name),
        })
    }

    pub fn require(&self, key: &str) -> Result<Child<'a>> {
        self.get(key)
            .ok_or_else(|| ConfigError::new(self.child_path(key), "required field is missing"))
    }

    pub fn as_str(&self) -> Result<&'a str> {
        self.value.as_str().ok_or_else(|| {
            self.error(format!(
                "expected a string, found {}",
                type_name(self.value)
            ))
        })
    }

    pub fn as_bool(&self) -> Result<bool> {
        self.value.as_bool().ok_or_else(|| {
            self.error(format!(
                "expected true or false, found {}",
                type_name(self.value)
            ))
        })
    }

    /// An unsigned integer. Protobuf's JSON mapping writes 64-bit integers as strings, so a
    /// string of digits is accepted as well.
    pub fn as_u64(&self) -> Result<u64> {
        match self.value {
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| self.error(format!("expected a non-negative integer, found {n}"))),
            Value::String(s) => s
                .parse::<u64>()
                .map_err(|_| self.error(format!("expected a non-negative integer, found \"{s}\""))),
            other => Err(self.error(format!(
                "expected a non-negative integer, found {}",
                type_name(other)
            ))),
        }
    }

    pub fn as_u32(&self) -> Result<u32> {
        let v = self.as_u64()?;
        u32::try_from(v).map_err(|_| self.error(format!("{v} is larger than {}", u32::MAX)))
    }

    /// The items of a list, each with its `[index]` path.
    pub fn items(&self) -> Result<Vec<Child<'a>>> {
        let list = self.value.as_array().ok_or_else(|| {
            self.error(format!("expected a list, found {}", type_name(self.value)))
        })?;
        Ok(list
            .iter()
            .enumerate()
            .map(|(i, value)| Child {
                value,
                path: format!("{}[{}]", self.path, i),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_field_names_its_path_and_the_allowed_set() {
        let v = json!({"a": {"b": 1, "zz": 2}});
        let root = Node::root(&v);
        let a = root.require("a").unwrap();
        let err = a.node().expect_fields(&["b"], &[]).unwrap_err();
        assert_eq!(err.path, "a.zz");
        assert!(err.message.contains("expected one of: b"), "{err}");
    }

    #[test]
    fn camel_case_spelling_is_accepted() {
        let v = json!({"portValue": 80});
        let root = Node::root(&v);
        root.expect_fields(&["port_value"], &[]).unwrap();
        let port = root.require("port_value").unwrap();
        assert_eq!(port.node().as_u32().unwrap(), 80);
        assert_eq!(port.node().path(), "portValue");
    }

    #[test]
    fn list_items_carry_their_index() {
        let v = json!({"l": [1, "x"]});
        let root = Node::root(&v);
        let list = root.require("l").unwrap();
        let items = list.node().items().unwrap();
        let err = items[1].node().as_u64().unwrap_err();
        assert_eq!(
            err.to_string(),
            "l[1]: expected a non-negative integer, found \"x\""
        );
    }

    #[test]
    fn unsupported_envoy_field_says_so() {
        let v = json!({"x": 1});
        let err = Node::root(&v).expect_fields(&["a"], &["x"]).unwrap_err();
        assert!(err.message.contains("not supported by sluice"));
    }

    #[test]
    fn stringly_integers_from_protobuf_json_parse() {
        let v = json!("42");
        assert_eq!(Node::root(&v).as_u64().unwrap(), 42);
    }
}
