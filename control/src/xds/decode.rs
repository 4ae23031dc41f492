//! Turns xDS resources (protobuf `Any`) into the canonical proto3 JSON of the Envoy v3 API —
//! field names as in the .proto files, durations as "1.5s", enums by name, nested `Any` with
//! "@type" — which is exactly the form the dataplane's config reader takes from a bootstrap file.
//! Every field the server set comes through, so whatever sluice does not support is refused by
//! that reader with the field's path, never silently dropped.

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use std::sync::OnceLock;

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).expect("the built-in descriptor set"))
}

/// The message name of a type URL (`type.googleapis.com/envoy.config.cluster.v3.Cluster`).
pub fn message_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Decodes one resource of type `type_url` into JSON; the error says what is wrong with it.
pub fn to_json(type_url: &str, bytes: &[u8]) -> Result<serde_json::Value, String> {
    let name = message_name(type_url);
    let descriptor = pool()
        .get_message_by_name(name)
        .ok_or_else(|| format!("sluice does not know the resource type {type_url}"))?;
    let message = DynamicMessage::decode(descriptor, bytes)
        .map_err(|e| format!("not a valid {name}: {e}"))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(true);
    let mut out = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut out, &options)
        .map_err(|e| format!("{name}: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_slice(&out.into_inner()).map_err(|e| format!("{name}: {e}"))?;
    Ok(unwrap_typed_structs(json))
}

const TYPED_STRUCTS: &[&str] = &[
    "type.googleapis.com/xds.type.v3.TypedStruct",
    "type.googleapis.com/udpa.type.v1.TypedStruct",
];

/// A `TypedStruct` carries a config whose proto sluice (or the server) has not compiled: it is
/// rewritten as the message it stands for, `{"@type": type_url, ...value}`.
fn unwrap_typed_structs(json: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match json {
        Value::Object(mut map) => {
            let is_typed_struct = map
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| TYPED_STRUCTS.contains(&t));
            if is_typed_struct {
                let type_url = map.remove("type_url").unwrap_or(Value::Null);
                let mut inner = match map.remove("value") {
                    Some(Value::Object(v)) => v,
                    _ => Default::default(),
                };
                inner.insert("@type".into(), type_url);
                return unwrap_typed_structs(whole_numbers(Value::Object(inner)));
            }
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, unwrap_typed_structs(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(unwrap_typed_structs).collect()),
        other => other,
    }
}

/// A `google.protobuf.Struct` has only doubles: its whole numbers become JSON integers again, as
/// the same config written in a bootstrap file would have them.
fn whole_numbers(json: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match json {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                if f >= 0.0 {
                    Value::from(f as u64)
                } else {
                    Value::from(f as i64)
                }
            }
            _ => Value::Number(n),
        },
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, whole_numbers(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        other => other,
    }
}

/// Encodes a resource given as JSON into its protobuf bytes (for tests and the `push` of a
/// file as xDS would deliver it).
pub fn from_json(type_url: &str, json: &serde_json::Value) -> Result<Vec<u8>, String> {
    let name = message_name(type_url);
    let descriptor = pool()
        .get_message_by_name(name)
        .ok_or_else(|| format!("sluice does not know the resource type {type_url}"))?;
    let options = prost_reflect::DeserializeOptions::new();
    let message = DynamicMessage::deserialize_with_options(descriptor, json, &options)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(prost::Message::encode_to_vec(&message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

    #[test]
    fn a_cluster_comes_out_as_envoy_json() {
        let input = json!({
            "name": "web", "type": "EDS", "connect_timeout": "1.500s",
            "eds_cluster_config": {"eds_config": {"ads": {}}},
            "lb_policy": "RING_HASH",
            "ring_hash_lb_config": {"minimum_ring_size": "2048"},
        });
        let bytes = from_json(CLUSTER, &input).unwrap();
        let out = to_json(CLUSTER, &bytes).unwrap();
        assert_eq!(out["name"], "web");
        assert_eq!(out["type"], "EDS");
        assert_eq!(out["connect_timeout"], "1.500s");
        assert_eq!(out["lb_policy"], "RING_HASH");
        assert_eq!(out["ring_hash_lb_config"]["minimum_ring_size"], 2048);
        assert_eq!(out["eds_cluster_config"]["eds_config"]["ads"], json!({}));
    }

    #[test]
    fn typed_configs_and_typed_structs_unwrap() {
        let input = json!({
            "name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 80}},
            "filter_chains": [{"filters": [
                {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "t", "cluster": "web"}},
                {"name": "sluice.filters.network.rpc_proxy", "typed_config": {
                    "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
                    "type_url": "type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy",
                    "value": {"stat_prefix": "rpc", "max_frame_bytes": 1024}}}]}],
        });
        let out = to_json(LISTENER, &from_json(LISTENER, &input).unwrap()).unwrap();
        let filters = &out["filter_chains"][0]["filters"];
        assert_eq!(filters[0]["typed_config"]["cluster"], "web");
        assert_eq!(
            filters[1]["typed_config"],
            json!({"@type": "type.googleapis.com/sluice.filters.network.rpc_proxy.v1.RpcProxy",
                   "stat_prefix": "rpc", "max_frame_bytes": 1024})
        );
    }

    #[test]
    fn garbage_and_unknown_types_are_errors() {
        assert!(to_json(CLUSTER, &[0xff, 0xff, 0xff])
            .unwrap_err()
            .contains("not a valid envoy.config.cluster.v3.Cluster"));
        assert!(to_json("type.googleapis.com/foo.Bar", &[])
            .unwrap_err()
            .contains("does not know"));
    }
}
