//! The config model: the Envoy v3 bootstrap (YAML or JSON) read into validated types.

pub mod bootstrap;
pub mod cluster_extras;
pub mod dpdk;
pub mod duration;
pub mod model;
pub mod reader;
pub mod rpc_proxy;
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

/// Parses config text into a JSON tree; the error says where the syntax broke.
pub fn parse_text(text: &str, json: bool) -> Result<serde_json::Value, String> {
    let doc: serde_json::Value = if json {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?
    } else {
        serde_yaml::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?
    };
    if doc.is_null() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    Ok(doc)
}
