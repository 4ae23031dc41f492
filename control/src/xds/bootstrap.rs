//! The parts of an Envoy v3 bootstrap the xDS client reads, as Envoy reads them: `node`, and
//! `dynamic_resources` with an `ads_config` whose gRPC service names a static cluster (the
//! xDS server's address). Errors name the config path.

use super::state::Mode;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct XdsBootstrap {
    /// The bootstrap's `node`, as JSON (encoded into every first request).
    pub node: Value,
    pub mode: Mode,
    /// `host:port` of the xDS server.
    pub server: String,
    pub connect_timeout: Duration,
}

fn at(path: &str, msg: impl std::fmt::Display) -> String {
    format!("{path}: {msg}")
}

pub fn read(doc: &Value) -> Result<XdsBootstrap, String> {
    let node = doc.get("node").cloned().unwrap_or(Value::Null);
    if node
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return Err(at(
            "node.id",
            "required: the xDS server tells its clients apart by it",
        ));
    }
    let dynamic = doc.get("dynamic_resources").ok_or_else(|| {
        at(
            "dynamic_resources",
            "required: it says where the xDS server is",
        )
    })?;
    let ads = dynamic.get("ads_config").ok_or_else(|| {
        at(
            "dynamic_resources.ads_config",
            "required: sluice speaks xDS as ADS (one stream for every type)",
        )
    })?;
    for key in ["lds_config", "cds_config"] {
        if let Some(source) = dynamic.get(key) {
            if source.get("ads").is_none() {
                return Err(at(
                    &format!("dynamic_resources.{key}"),
                    "only {ads: {}} is supported: every type comes over the ADS stream",
                ));
            }
        }
    }
    let mode = match ads
        .get("api_type")
        .and_then(Value::as_str)
        .unwrap_or("GRPC")
    {
        "GRPC" | "AGGREGATED_GRPC" => Mode::StateOfTheWorld,
        "DELTA_GRPC" | "AGGREGATED_DELTA_GRPC" => Mode::Delta,
        other => {
            return Err(at(
                "dynamic_resources.ads_config.api_type",
                format!("\"{other}\" is not supported (GRPC or DELTA_GRPC)"),
            ))
        }
    };
    if let Some(v) = ads.get("transport_api_version").and_then(Value::as_str) {
        if v != "V3" {
            return Err(at(
                "dynamic_resources.ads_config.transport_api_version",
                format!("\"{v}\": only V3 exists"),
            ));
        }
    }
    let service = ads.pointer("/grpc_services/0").ok_or_else(|| {
        at(
            "dynamic_resources.ads_config.grpc_services",
            "name one gRPC service",
        )
    })?;
    let cluster = service
        .pointer("/envoy_grpc/cluster_name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            at(
                "dynamic_resources.ads_config.grpc_services[0]",
                "expected envoy_grpc: {cluster_name: ...} naming a static cluster",
            )
        })?;
    let (server, connect_timeout) = server_address(doc, cluster)?;
    Ok(XdsBootstrap {
        node,
        mode,
        server,
        connect_timeout,
    })
}

/// The first endpoint of the static cluster `name`, and its connect timeout.
fn server_address(doc: &Value, name: &str) -> Result<(String, Duration), String> {
    let clusters = doc
        .pointer("/static_resources/clusters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (i, cluster) = clusters
        .iter()
        .enumerate()
        .find(|(_, c)| c.get("name").and_then(Value::as_str) == Some(name))
        .ok_or_else(|| {
            at(
                "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name",
                format!("no static cluster is named \"{name}\""),
            )
        })?;
    let path = format!("static_resources.clusters[{i}]");
    let socket = cluster
        .pointer("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address")
        .ok_or_else(|| {
            at(
                &path,
                "the xDS server's cluster needs an endpoint with a socket_address",
            )
        })?;
    let host = socket.get("address").and_then(Value::as_str).unwrap_or("");
    let port = socket
        .get("port_value")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if host.is_empty() || port == 0 || port > 65535 {
        return Err(at(
            &path,
            "the xDS server's endpoint needs an address and a port_value",
        ));
    }
    let timeout = match cluster.get("connect_timeout") {
        Some(t) => {
            let node = sluice::config::reader::Node::root(t);
            sluice::config::duration::parse_duration(node)
                .map_err(|e| at(&format!("{path}.connect_timeout"), e))?
        }
        None => Duration::from_secs(5),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok((format!("{host}:{port}"), timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "node": {"id": "sluice-1", "cluster": "edge"},
            "dynamic_resources": {
                "ads_config": {"api_type": "DELTA_GRPC", "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
                "lds_config": {"ads": {}}, "cds_config": {"resource_api_version": "V3", "ads": {}}},
            "static_resources": {"clusters": [{"name": "xds", "connect_timeout": "2s",
                "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "::1", "port_value": 18000}}}}]}]}}]}
        })
    }

    #[test]
    fn reads_what_envoy_reads() {
        let b = read(&doc()).unwrap();
        assert_eq!(b.mode, Mode::Delta);
        assert_eq!(b.server, "[::1]:18000");
        assert_eq!(b.connect_timeout, Duration::from_secs(2));
        assert_eq!(b.node["cluster"], "edge");
    }

    #[test]
    fn reads_the_example_bootstrap() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/xds.yaml");
        let doc = sluice::config::read_document(std::path::Path::new(path)).unwrap();
        let b = read(&doc).unwrap();
        assert_eq!(b.mode, Mode::StateOfTheWorld);
        assert_eq!(b.server, "127.0.0.1:18000");
        assert_eq!(b.node["id"], "sluice-example");
    }

    #[test]
    fn mistakes_name_their_path() {
        type Change = fn(&mut Value);
        let cases: Vec<(Change, &str)> = vec![
            (|d| d["node"]["id"] = json!(""), "node.id: required"),
            (
                |d| d["dynamic_resources"]["ads_config"]["api_type"] = json!("REST"),
                "api_type: \"REST\"",
            ),
            (
                |d| d["dynamic_resources"]["lds_config"] = json!({"path": "/x"}),
                "dynamic_resources.lds_config: only",
            ),
            (
                |d| {
                    d["dynamic_resources"]["ads_config"]["grpc_services"][0]["envoy_grpc"]
                        ["cluster_name"] = json!("nope")
                },
                "no static cluster is named \"nope\"",
            ),
            (
                |d| d["static_resources"]["clusters"][0]["connect_timeout"] = json!("soon"),
                "static_resources.clusters[0].connect_timeout",
            ),
        ];
        for (change, expected) in cases {
            let mut d = doc();
            change(&mut d);
            let e = read(&d).unwrap_err();
            assert!(e.contains(expected), "{e} should contain {expected}");
        }
    }
}
