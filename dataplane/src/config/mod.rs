//! The config model: the Envoy v3 bootstrap (YAML or JSON) read into validated types.

//!
//! The core schema lives here (reader, bootstrap, listener, cluster, route targets and
//! matchers); each network filter reads its own typed_config next to its runtime code, found
//! through [`crate::proxy::network_filter`].

pub mod bootstrap;
pub mod cluster;
pub mod cluster_extras;
pub mod cluster_model;
pub mod cluster_target;
pub mod common;
pub mod dpdk;
pub mod duration;
pub mod http_options;
pub mod matchers;
pub mod model;
pub mod reader;
pub mod route_model;
pub mod stack_addresses;
pub mod userspace;

pub use model::*;
pub use reader::ConfigError;
pub use userspace::{FallbackConfig, IoBackend, StackTcpConfig, TapConfig, UserspaceConfig};

use std::path::Path;

/// Reads, parses and validates a bootstrap file. The file name decides the syntax as Envoy does:
/// `.json` is JSON, anything else is YAML (which also reads JSON).
pub fn load_file(path: &Path) -> Result<Bootstrap, ConfigError> {
    bootstrap::parse_bootstrap(&read_document(path)?)
}

/// Reads a bootstrap file into its JSON tree (YAML or JSON, as `load_file`), unvalidated: the
/// base a pushed set of resources is laid over.
pub fn read_document(path: &Path) -> Result<serde_json::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            String::new(),
            format!("cannot read config file {}: {e}", path.display()),
        )
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse_text(&text, is_json)
        .map_err(|m| ConfigError::new(String::new(), format!("{}: {m}", path.display())))
}

/// Parses config text into a JSON tree; the error says where the syntax broke. An empty file,
/// or one that is not a mapping, is refused (as Envoy refuses it): taken as "no listeners and
/// no clusters", a truncated file on reload would stop all traffic.
pub fn parse_text(text: &str, json: bool) -> Result<serde_json::Value, String> {
    if text.trim().is_empty() {
        return Err("the file is empty; a bootstrap needs at least static_resources, dynamic_resources or admin".into());
    }
    let doc: serde_json::Value = if json {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?
    };
    let kind = match &doc {
        serde_json::Value::Object(_) => return Ok(doc),
        serde_json::Value::Null => "holds no document (only comments or `---`)",
        serde_json::Value::Array(_) => "is a list",
        serde_json::Value::String(_) => "is a string",
        serde_json::Value::Number(_) => "is a number",
        serde_json::Value::Bool(_) => "is a boolean",
    };
    Err(format!(
        "the file {kind}, not a mapping of bootstrap fields"
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_text;

    #[test]
    fn empty_and_non_mapping_files_are_refused() {
        for (text, json, want) in [
            ("", false, "empty"),
            ("  \n\n", false, "empty"),
            ("# nothing here\n", false, "no document"),
            ("---\n", false, "no document"),
            ("- a\n- b\n", false, "is a list"),
            ("just words", false, "is a string"),
            ("42", true, "is a number"),
            ("null", true, "no document"),
        ] {
            let e = parse_text(text, json).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let doc = parse_text(
            "admin: {address: {socket_address: {port_value: 1}}}\nx: &a [1]\ny: *a\n",
            false,
        )
        .unwrap();
        assert_eq!(doc["y"], serde_json::json!([1]));
    }
}
