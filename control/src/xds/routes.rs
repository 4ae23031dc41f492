//! RDS for RPC: an Envoy `RouteConfiguration` read as the route config of sluice's rpc_proxy
//! filter, the way MOSN reads one for SOFARPC. A virtual host's `domains` are the service names
//! it serves (same wildcards), and a route's path is the method with a leading "/":
//! `prefix: "/"` matches every method, `path: "/sayHello"` exactly sayHello, `prefix: "/say"`
//! methods starting with "say". Header matches, the route action (cluster, weighted clusters,
//! timeout, retries, metadata_match, hash policy) carry over as they are, and the dataplane's
//! reader checks them. Anything else is refused with its path.

use serde_json::{json, Map, Value};

pub fn rpc_route_config(rc: &Value) -> Result<Value, String> {
    let rc = rc.as_object().ok_or("expected an object")?;
    let mut out = Map::new();
    for (key, value) in rc {
        match key.as_str() {
            "name" => {
                out.insert("name".into(), value.clone());
            }
            "virtual_hosts" => {
                let hosts = value.as_array().ok_or("virtual_hosts: expected a list")?;
                let hosts = hosts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| virtual_host(h).map_err(|e| format!("virtual_hosts[{i}].{e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert("virtual_hosts".into(), Value::Array(hosts));
            }
            other => return Err(not_for_rpc(other)),
        }
    }
    Ok(Value::Object(out))
}

fn not_for_rpc(field: &str) -> String {
    format!("{field}: not supported in a route configuration for RPC")
}

fn virtual_host(h: &Value) -> Result<Value, String> {
    let h = h.as_object().ok_or("expected an object")?;
    let mut out = Map::new();
    for (key, value) in h {
        match key.as_str() {
            "name" => {
                out.insert("name".into(), value.clone());
            }
            "domains" => {
                out.insert("services".into(), value.clone());
            }
            "routes" => {
                let routes = value.as_array().ok_or("routes: expected a list")?;
                let routes = routes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| route(r).map_err(|e| format!("routes[{i}].{e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert("routes".into(), Value::Array(routes));
            }
            other => return Err(not_for_rpc(other)),
        }
    }
    Ok(Value::Object(out))
}

fn route(r: &Value) -> Result<Value, String> {
    let mut out = r.as_object().ok_or("expected an object")?.clone();
    if let Some(m) = out.remove("match") {
        out.insert(
            "match".into(),
            route_match(&m).map_err(|e| format!("match.{e}"))?,
        );
    }
    Ok(Value::Object(out))
}

fn route_match(m: &Value) -> Result<Value, String> {
    let m = m.as_object().ok_or("expected an object")?;
    let mut out = Map::new();
    for (key, value) in m {
        let text = || {
            value
                .as_str()
                .ok_or_else(|| format!("{key}: expected a string"))
        };
        let method = |s: &str| -> Result<String, String> {
            s.strip_prefix('/').map(String::from).ok_or_else(|| {
                format!("{key}: \"{s}\": an RPC route's path is \"/\" then the method")
            })
        };
        match key.as_str() {
            "prefix" => {
                let p = text()?;
                // "" and "/" match every method, as they match every path.
                if !p.is_empty() && p != "/" {
                    out.insert("method".into(), json!({"prefix": method(p)?}));
                }
            }
            "path" => {
                out.insert("method".into(), json!({"exact": method(text()?)?}));
            }
            "headers" => {
                out.insert("headers".into(), value.clone());
            }
            other => return Err(not_for_rpc(other)),
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_services_and_paths_are_methods() {
        let rc = json!({"name": "bolt", "virtual_hosts": [{"name": "hello",
            "domains": ["com.example.HelloService:1.0"],
            "routes": [
                {"match": {"path": "/sayHello", "headers": [{"name": "zone", "string_match": {"exact": "a"}}]},
                 "route": {"cluster": "a", "timeout": "3s"}},
                {"match": {"prefix": "/say"}, "route": {"cluster": "b"}},
                {"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]});
        let out = rpc_route_config(&rc).unwrap();
        let vh = &out["virtual_hosts"][0];
        assert_eq!(vh["services"], json!(["com.example.HelloService:1.0"]));
        assert_eq!(
            vh["routes"][0]["match"]["method"],
            json!({"exact": "sayHello"})
        );
        assert_eq!(vh["routes"][0]["match"]["headers"][0]["name"], "zone");
        assert_eq!(vh["routes"][0]["route"]["timeout"], "3s");
        assert_eq!(vh["routes"][1]["match"]["method"], json!({"prefix": "say"}));
        assert_eq!(vh["routes"][2]["match"], json!({}));
    }

    #[test]
    fn http_only_parts_are_refused_with_their_path() {
        let rc = json!({"virtual_hosts": [{"name": "v", "domains": ["*"],
            "routes": [{"match": {"safe_regex": {"regex": ".*"}}, "route": {"cluster": "a"}}]}]});
        assert_eq!(
            rpc_route_config(&rc).unwrap_err(),
            "virtual_hosts[0].routes[0].match.safe_regex: not supported in a route configuration for RPC"
        );
        let rc = json!({"virtual_hosts": [{"name": "v", "domains": ["*"],
            "routes": [{"match": {"path": "sayHello"}, "route": {"cluster": "a"}}]}]});
        assert!(rpc_route_config(&rc)
            .unwrap_err()
            .contains("\"/\" then the method"));
        assert!(rpc_route_config(&json!({"request_headers_to_add": []})).is_err());
    }
}
