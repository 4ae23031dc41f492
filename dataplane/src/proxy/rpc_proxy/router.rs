//! Route matching for multiplexed RPC: a virtual host by the request's service, then the first
//! route of that host whose method and header matchers all accept the request.

use super::config::RpcRouteConfig;
use crate::config::{HeaderMatch, StringMatch};
use crate::protocol::xprotocol::Codec;
use crate::route::names::NameTable;

/// Virtual hosts compiled for lookup; `R` is whatever the proxy attaches to each route.
pub struct Router<R> {
    /// Service name -> virtual host index, with Envoy's domain rules (`route::names`).
    services: NameTable<usize>,
    hosts: Vec<Vec<(Matcher, R)>>,
}

pub struct Matcher {
    method: Option<StringMatch>,
    headers: Vec<HeaderMatch>,
}

impl Matcher {
    fn accepts(
        &self,
        codec: &dyn Codec,
        frame: &[u8],
        method: &mut Option<Option<String>>,
    ) -> bool {
        if let Some(m) = &self.method {
            // Read the method once per request, and only if some route asks for it.
            let name = method.get_or_insert_with(|| codec.method(frame).map(|c| c.into_owned()));
            match name {
                Some(n) if m.matches(n) => {}
                _ => return false,
            }
        }
        self.headers
            .iter()
            .all(|h| h.accepts(codec.header(frame, &h.name)))
    }
}

impl<R> Router<R> {
    /// Compiles `config`, attaching `make(vhost index, route index)` to each route.
    pub fn new(config: &RpcRouteConfig, mut make: impl FnMut(usize, usize) -> R) -> Router<R> {
        let mut services = NameTable::default();
        let mut hosts = Vec::new();
        for (vi, vh) in config.virtual_hosts.iter().enumerate() {
            for s in &vh.services {
                // The config reader checked every pattern.
                let _ = services.insert(s, vi);
            }
            let routes = vh
                .routes
                .iter()
                .enumerate()
                .map(|(ri, r)| {
                    (
                        Matcher {
                            method: r.method.clone(),
                            headers: r.headers.clone(),
                        },
                        make(vi, ri),
                    )
                })
                .collect();
            hosts.push(routes);
        }
        Router { services, hosts }
    }

    /// The route for one request frame.
    pub fn route(&self, codec: &dyn Codec, frame: &[u8]) -> Option<&R> {
        let service = codec.service(frame);
        let vh = *self.services.find(service.as_deref())?;
        let mut method = None;
        self.hosts[vh]
            .iter()
            .find(|(m, _)| m.accepts(codec, frame, &mut method))
            .map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::parse_rpc_proxy;
    use super::*;
    use crate::config::reader::Node;
    use crate::config::{ClusterConfig, Discovery, DnsFamily, LbPolicy};
    use crate::protocol::bolt::{Bolt, RequestSpec, PROTO_V1};
    use bytes::BytesMut;
    use std::time::Duration;

    fn cluster(name: &str) -> ClusterConfig {
        ClusterConfig {
            name: name.into(),
            discovery: Discovery::Static,
            connect_timeout: Duration::from_secs(1),
            lb_policy: LbPolicy::RoundRobin,
            endpoints: vec![],
            dns_refresh_rate: Duration::from_secs(5),
            dns_family: DnsFamily::All,
            buffer_limit: None,
            subsets: None,
            health_checks: vec![],
            http: Default::default(),
        }
    }

    fn request(headers: &[(&str, &str)]) -> BytesMut {
        let mut out = BytesMut::new();
        RequestSpec {
            proto: PROTO_V1,
            ver1: 1,
            crc: false,
            oneway: false,
            request_id: 1,
            timeout_ms: 100,
            class: b"x",
            headers,
            content: b"",
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn services_methods_and_headers_pick_routes() {
        let doc = serde_json::json!({
            "stat_prefix": "rpc",
            "route_config": {"virtual_hosts": [
                {"name": "hello", "services": ["com.x.Hello:1.0"], "routes": [
                    {"match": {"method": {"exact": "sayHello"}}, "route": {"cluster": "a"}},
                    {"match": {"headers": [{"name": "zone", "string_match": {"safe_regex": {"regex": "gz[0-9]+"}}}]}, "route": {"cluster": "b"}},
                    {"match": {"headers": [{"name": "zone", "present_match": true, "invert_match": true}]}, "route": {"cluster": "c"}}
                ]},
                {"name": "pay", "services": ["com.x.pay.*"], "routes": [{"route": {"cluster": "d"}}]},
                {"name": "rest", "services": ["*"], "routes": [{"route": {"cluster": "e"}}]}
            ]}
        });
        let clusters: Vec<_> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| cluster(n))
            .collect();
        let cfg = parse_rpc_proxy(Node::root(&doc), &clusters).unwrap();
        let router = Router::new(&cfg.routes, |vi, ri| {
            match &cfg.routes.virtual_hosts[vi].routes[ri].action.target {
                crate::config::TcpRoute::Cluster(c) => c.clone(),
                _ => unreachable!(),
            }
        });
        let r = |h: &[(&str, &str)]| router.route(&Bolt, &request(h)).cloned();
        let svc = ("service", "com.x.Hello:1.0");
        assert_eq!(
            r(&[svc, ("sofa_head_method_name", "sayHello")]).as_deref(),
            Some("a")
        );
        assert_eq!(r(&[svc, ("zone", "gz01")]).as_deref(), Some("b"));
        // Regexes match the whole value.
        assert_eq!(r(&[svc, ("zone", "xgz01")]), None);
        assert_eq!(r(&[svc]).as_deref(), Some("c"));
        assert_eq!(
            r(&[("service", "com.x.pay.Wallet:1.0")]).as_deref(),
            Some("d")
        );
        assert_eq!(
            r(&[("sofa_head_target_service", "other")]).as_deref(),
            Some("e")
        );
        assert_eq!(r(&[]).as_deref(), Some("e"));
    }
}
