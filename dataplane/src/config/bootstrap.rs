//! Reads an Envoy v3 bootstrap document into the validated model. Every field sluice does not
//! implement is an error naming its path: a config never half-applies.

use super::cluster::parse_cluster;
use super::common::{parse_address, parse_buffer_limit, DEFAULT_BUFFER_LIMIT};
use super::model::*;
use super::reader::{Node, Result};
use super::userspace;
use crate::proxy::network_filter::{parse_network_filter, ParseContext};
use std::collections::HashSet;

const DEFAULT_BACKLOG: u32 = 1024;

/// Parses and validates a whole bootstrap document.
pub fn parse_bootstrap(doc: &serde_json::Value) -> Result<Bootstrap> {
    let root = Node::root(doc);
    root.expect_fields(
        // dynamic_resources is sluice-control's (the xDS client reads the same file).
        &[
            "admin",
            "static_resources",
            "node",
            "sluice",
            "dynamic_resources",
        ],
        &[
            "cluster_manager",
            "layered_runtime",
            "stats_sinks",
            "stats_config",
            "stats_flush_interval",
            "overload_manager",
            "tracing",
            "watchdog",
            "watchdogs",
            "hds_config",
            "flags_path",
            "node_context_params",
            "bootstrap_extensions",
            "fatal_actions",
            "default_socket_interface",
            "inline_headers",
            "application_log_config",
        ],
    )?;
    if let Some(node) = root.get("node") {
        let node = node.node();
        node.expect_fields(
            &["id", "cluster", "metadata", "locality", "user_agent_name"],
            &[],
        )?;
    }
    let admin = match root.get("admin") {
        Some(a) => Some(parse_admin(a.node())?),
        None => None,
    };
    let sluice = match root.get("sluice") {
        Some(s) => parse_extension(s.node())?,
        None => SluiceExtension::default(),
    };
    let (listeners, clusters) = match root.get("static_resources") {
        Some(s) => parse_static_resources(s.node())?,
        None => (Vec::new(), Vec::new()),
    };
    Ok(Bootstrap {
        admin,
        listeners,
        clusters,
        sluice,
        source: doc.to_string().into(),
        resources_version: None,
    })
}

fn parse_admin(node: Node<'_>) -> Result<AdminConfig> {
    node.expect_fields(
        &["address"],
        &[
            "access_log",
            "access_log_path",
            "profile_path",
            "socket_options",
            "ignore_global_conn_limit",
        ],
    )?;
    let address = parse_address(node.require("address")?.node())?;
    Ok(AdminConfig { address })
}

fn parse_extension(node: Node<'_>) -> Result<SluiceExtension> {
    node.expect_fields(&["io", "workers"], &[])?;
    let mut ext = SluiceExtension::default();
    if let Some(io) = node.get("io") {
        let io = io.node();
        io.expect_fields(
            &[
                "backend", "splice", "tap", "tcp", "pcap", "impair", "dpdk", "fallback",
            ],
            &[],
        )?;
        if let Some(b) = io.get("backend") {
            let b = b.node();
            ext.io_backend = IoBackend::from_name(b.as_str()?).map_err(|e| b.error(e))?;
        }
        if let Some(s) = io.get("splice") {
            ext.splice = s.node().as_bool()?;
        }
        if let Some(t) = io.get("tap") {
            ext.userspace.tap = Some(userspace::parse_tap(t.node())?);
        }
        if let Some(t) = io.get("tcp") {
            ext.userspace.tcp = userspace::parse_tcp(t.node())?;
        }
        if let Some(p) = io.get("pcap") {
            let p = p.node();
            let path = p.as_str()?;
            if path.is_empty() {
                return Err(p.error("must be a file path"));
            }
            ext.userspace.pcap = Some(path.into());
        }
        if let Some(d) = io.get("dpdk") {
            ext.userspace.dpdk = Some(super::dpdk::parse_dpdk(d.node())?);
        }
        if let Some(i) = io.get("impair") {
            ext.userspace.impair = Some(userspace::parse_impair(i.node())?);
        }
        if let Some(f) = io.get("fallback") {
            ext.userspace.fallback = Some(userspace::parse_fallback(f.node())?);
        }
        ext.userspace
            .check(ext.io_backend)
            .map_err(|e| io.error(e))?;
    }
    if let Some(w) = node.get("workers") {
        let w = w.node();
        w.expect_fields(&["cpus"], &[])?;
        if let Some(cpus) = w.get("cpus") {
            let mut list = Vec::new();
            for item in cpus.node().items()? {
                list.push(item.node().as_u32()? as usize);
            }
            if list.is_empty() {
                return Err(cpus.node().error("must name at least one CPU"));
            }
            ext.worker_cpus = Some(list);
        }
    }
    Ok(ext)
}

fn parse_static_resources(node: Node<'_>) -> Result<(Vec<ListenerConfig>, Vec<ClusterConfig>)> {
    node.expect_fields(&["listeners", "clusters"], &["secrets"])?;
    let mut clusters = Vec::new();
    if let Some(list) = node.get("clusters") {
        let mut names = HashSet::new();
        for item in list.node().items()? {
            let c = parse_cluster(item.node())?;
            if !names.insert(c.name.clone()) {
                return Err(item
                    .node()
                    .error(format!("duplicate cluster name \"{}\"", c.name)));
            }
            clusters.push(c);
        }
    }
    let mut listeners = Vec::new();
    if let Some(list) = node.get("listeners") {
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for item in list.node().items()? {
            let l = parse_listener(item.node(), &clusters)?;
            if !names.insert(l.name.clone()) {
                return Err(item
                    .node()
                    .error(format!("duplicate listener name \"{}\"", l.name)));
            }
            if l.address.port() != 0 && !addrs.insert(l.address) {
                return Err(item.node().error(format!(
                    "another listener already uses address {}",
                    l.address
                )));
            }
            listeners.push(l);
        }
    }
    Ok((listeners, clusters))
}

/// `envoy.config.core.v3.Address` with a `socket_address` whose address is an IP literal.
fn parse_listener(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<ListenerConfig> {
    node.expect_fields(
        &[
            "name",
            "address",
            "filter_chains",
            "per_connection_buffer_limit_bytes",
            "tcp_backlog_size",
        ],
        &[
            "stat_prefix",
            "listener_filters",
            "listener_filters_timeout",
            "continue_on_listener_filters_timeout",
            "use_original_dst",
            "transparent",
            "freebind",
            "socket_options",
            "tcp_fast_open_queue_length",
            "traffic_direction",
            "udp_listener_config",
            "default_filter_chain",
            "filter_chain_matcher",
            "connection_balance_config",
            "enable_reuse_port",
            "reuse_port",
            "drain_type",
            "max_connections_to_accept_per_socket_event",
            "bind_to_port",
            "additional_addresses",
            "metadata",
            "access_log",
            "api_listener",
            "ignore_global_conn_limit",
            "enable_mptcp",
            "internal_listener",
            "deprecated_v1",
        ],
    )?;
    let name = node.require("name")?.node().as_str()?.to_string();
    if name.is_empty() {
        return Err(node.require("name")?.node().error("must not be empty"));
    }
    let address = parse_address(node.require("address")?.node())?;
    let buffer_limit = match node.get("per_connection_buffer_limit_bytes") {
        Some(b) => parse_buffer_limit(b.node())?,
        None => DEFAULT_BUFFER_LIMIT,
    };
    let backlog = match node.get("tcp_backlog_size") {
        Some(b) => b.node().as_u32()?.max(1),
        None => DEFAULT_BACKLOG,
    };
    let chains = node.require("filter_chains")?;
    let items = chains.node().items()?;
    if items.is_empty() {
        return Err(chains.node().error("a listener needs one filter chain"));
    }
    if items.len() > 1 {
        return Err(chains.node().error(
            "sluice supports one filter chain per listener (filter_chain_match is not supported yet)",
        ));
    }
    let filter = parse_filter_chain(items[0].node(), clusters)?;
    Ok(ListenerConfig {
        name,
        address,
        buffer_limit,
        backlog,
        filter,
    })
}

fn parse_filter_chain(node: Node<'_>, clusters: &[ClusterConfig]) -> Result<NetworkFilterConfig> {
    node.expect_fields(
        &["filters", "name"],
        &[
            "filter_chain_match",
            "transport_socket",
            "transport_socket_connect_timeout",
            "metadata",
            "use_proxy_proto",
        ],
    )?;
    let filters = node.require("filters")?;
    let items = filters.node().items()?;
    let Some(last) = items.last() else {
        return Err(filters
            .node()
            .error("a filter chain needs a terminal network filter"));
    };
    if items.len() > 1 {
        // Only terminal filters exist so far, and only the last filter of a chain may be terminal.
        return Err(items[0]
            .node()
            .error("only one network filter per chain is supported (the terminal one)"));
    }
    parse_network_filter(last.node(), &ParseContext { clusters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dpdk::IdlePolicy;
    use crate::proxy::tcp_proxy::config::{TcpProxyConfig, TCP_PROXY_TYPE};
    use serde_json::json;
    use std::net::IpAddr;
    use std::time::Duration;

    fn minimal() -> serde_json::Value {
        json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
            "static_resources": {
                "listeners": [{
                    "name": "l0",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 10000}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {"@type": TCP_PROXY_TYPE, "stat_prefix": "tcp", "cluster": "c0"}
                    }]}]
                }],
                "clusters": [{
                    "name": "c0", "type": "STATIC", "connect_timeout": "0.25s",
                    "lb_policy": "ROUND_ROBIN",
                    "load_assignment": {"cluster_name": "c0", "endpoints": [{"lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}},
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8081}}}, "load_balancing_weight": 3}
                    ]}]}
                }]
            }
        })
    }

    #[test]
    fn minimal_bootstrap_parses() {
        let b = parse_bootstrap(&minimal()).unwrap();
        assert_eq!(b.admin.unwrap().address, "127.0.0.1:9901".parse().unwrap());
        assert_eq!(b.listeners.len(), 1);
        let l = &b.listeners[0];
        assert_eq!(l.buffer_limit, DEFAULT_BUFFER_LIMIT);
        let tp: &TcpProxyConfig = l.filter.as_any().downcast_ref().expect("tcp_proxy");
        assert_eq!(tp.route, TcpRoute::Cluster("c0".into()));
        assert_eq!(tp.idle_timeout, Some(Duration::from_secs(3600)));
        let c = &b.clusters[0];
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.endpoints[1].weight, 3);
        assert_eq!(c.endpoints[0].weight, 1);
    }

    fn error_of(mut doc: serde_json::Value, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        edit(&mut doc);
        parse_bootstrap(&doc).unwrap_err().to_string()
    }

    #[test]
    fn unknown_filter_names_its_path() {
        let e = error_of(minimal(), |d| {
            let f = &mut d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
            f["name"] = json!("envoy.filters.network.foo");
            f["typed_config"]["@type"] = json!("type.googleapis.com/foo.Foo");
        });
        assert_eq!(
            e,
            "static_resources.listeners[0].filter_chains[0].filters[0].name: unknown filter \"envoy.filters.network.foo\" of type type.googleapis.com/foo.Foo (available: envoy.filters.network.tcp_proxy, sluice.filters.network.rpc_proxy, envoy.filters.network.http_connection_manager)"
        );
    }

    #[test]
    fn a_known_filter_name_with_another_type_names_the_type() {
        let e = error_of(minimal(), |d| {
            let f = &mut d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
            f["typed_config"]["@type"] = json!("type.googleapis.com/foo.Foo");
        });
        assert_eq!(
            e,
            format!("static_resources.listeners[0].filter_chains[0].filters[0].typed_config.@type: filter \"envoy.filters.network.tcp_proxy\" expects type {TCP_PROXY_TYPE}, found type.googleapis.com/foo.Foo")
        );
    }

    #[test]
    fn filter_named_freely_but_typed_as_tcp_proxy_is_accepted() {
        let mut d = minimal();
        d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["name"] =
            json!("my-tcp");
        parse_bootstrap(&d).unwrap();
    }

    #[test]
    fn unknown_cluster_reference_is_an_error() {
        let e = error_of(minimal(), |d| {
            d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["cluster"] = json!("nope");
        });
        assert!(e.starts_with("static_resources.listeners[0].filter_chains[0].filters[0].typed_config.cluster: unknown cluster \"nope\""), "{e}");
    }

    #[test]
    fn unsupported_envoy_fields_are_errors() {
        let e = error_of(minimal(), |d| {
            d["static_resources"]["clusters"][0]["outlier_detection"] = json!({});
        });
        assert_eq!(
            e,
            "static_resources.clusters[0].outlier_detection: this Envoy field is not supported by sluice yet"
        );
        let e = error_of(minimal(), |d| d["stats_sinks"] = json!([]));
        assert!(e.starts_with("stats_sinks:"), "{e}");
    }

    #[test]
    fn unknown_field_is_an_error() {
        let e = error_of(minimal(), |d| {
            d["static_resources"]["listeners"][0]["bogus"] = json!(1)
        });
        assert!(
            e.starts_with("static_resources.listeners[0].bogus: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn static_cluster_needs_ip() {
        let e = error_of(minimal(), |d| {
            d["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
                ["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"] =
                json!("example.com");
        });
        assert!(
            e.contains("lb_endpoints[0].endpoint.address.socket_address.address"),
            "{e}"
        );
        assert!(e.contains("STRICT_DNS"), "{e}");
    }

    #[test]
    fn duplicate_names_and_addresses_are_errors() {
        let e = error_of(minimal(), |d| {
            let l = d["static_resources"]["listeners"][0].clone();
            d["static_resources"]["listeners"]
                .as_array_mut()
                .unwrap()
                .push(l);
        });
        assert!(e.contains("listeners[1]: duplicate listener name"), "{e}");
        let e = error_of(minimal(), |d| {
            let mut l = d["static_resources"]["listeners"][0].clone();
            l["name"] = json!("other");
            d["static_resources"]["listeners"]
                .as_array_mut()
                .unwrap()
                .push(l);
        });
        assert!(
            e.contains("listeners[1]: another listener already uses address"),
            "{e}"
        );
    }

    #[test]
    fn weighted_clusters_and_idle_timeout_zero() {
        let mut d = minimal();
        let tc = &mut d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        tc.as_object_mut().unwrap().remove("cluster");
        tc["weighted_clusters"] = json!({"clusters": [{"name": "c0", "weight": 2}]});
        tc["idle_timeout"] = json!("0s");
        let b = parse_bootstrap(&d).unwrap();
        let tp: &TcpProxyConfig = b.listeners[0]
            .filter
            .as_any()
            .downcast_ref()
            .expect("tcp_proxy");
        assert_eq!(tp.idle_timeout, None);
        assert_eq!(
            tp.route,
            TcpRoute::Weighted(vec![WeightedCluster {
                name: "c0".into(),
                weight: 2
            }])
        );
    }

    #[test]
    fn extension_section() {
        let mut d = minimal();
        d["sluice"] =
            json!({"io": {"backend": "kernel", "splice": false}, "workers": {"cpus": [1]}});
        let b = parse_bootstrap(&d).unwrap();
        assert!(!b.sluice.splice);
        assert_eq!(b.sluice.worker_cpus, Some(vec![1]));
        d["sluice"] = json!({"io": {"backend": "dpdk"}});
        let e = parse_bootstrap(&d).unwrap_err().to_string();
        if cfg!(feature = "dpdk") {
            assert_eq!(
                e,
                "sluice.io: sluice.io.backend dpdk needs a sluice.io.dpdk section"
            );
        } else {
            assert!(
                e.starts_with("sluice.io: this build of sluice has no DPDK support"),
                "{e}"
            );
        }
        // The layout parses in either build (with backend kernel it is only checked).
        d["sluice"] = json!({"io": {"backend": "kernel", "dpdk": {
            "eal": {"lcores": [0, 1], "no_huge_mb": 256, "vdevs": ["net_tap0"]},
            "ports": [{"name": "wire", "device": "net_tap0", "rx_queues": 1,
                       "addresses": ["10.9.0.2/24"], "gateways": ["10.9.0.1"]}],
            "queues": [{"lcore": 1, "port": "wire", "queue": 0}],
            "idle": {"policy": "backoff", "max_sleep": "0.00005s"}}}});
        let b = parse_bootstrap(&d).unwrap();
        let dpdk = b.sluice.userspace.dpdk.unwrap();
        assert_eq!(
            dpdk.addresses.gateways,
            vec!["10.9.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            dpdk.idle,
            IdlePolicy::Backoff {
                max_sleep: Duration::from_micros(50)
            }
        );
        let bad = |path: &str, value: serde_json::Value, want: &str| {
            let mut d = d.clone();
            d.pointer_mut(path).map(|v| *v = value).expect(path);
            let e = parse_bootstrap(&d).unwrap_err().to_string();
            assert!(e.contains(want), "{path}: {e}");
        };
        bad(
            "/sluice/io/dpdk/idle/policy",
            json!("spin"),
            "sluice.io.dpdk.idle.policy: unknown idle policy \"spin\"",
        );
        bad(
            "/sluice/io/dpdk/idle/max_sleep",
            json!("1s"),
            "sluice.io.dpdk.idle.max_sleep: max_sleep must be between",
        );
        bad(
            "/sluice/io/dpdk/ports/0/addresses",
            json!([]),
            "sluice.io.dpdk.ports[0].addresses: the stack needs at least one address",
        );
        let two = d["sluice"]["io"]["dpdk"]["ports"][0].clone();
        bad(
            "/sluice/io/dpdk/ports",
            json!([two.clone(), two]),
            "sluice.io.dpdk.ports: the DPDK dataplane serves exactly one port for now",
        );
    }

    #[test]
    fn userspace_stack_section() {
        let mut d = minimal();
        d["sluice"] = json!({"io": {
            "backend": "tap",
            "tap": {"name": "sl0", "addresses": ["10.99.0.2/24", "fd99::2/64"], "gateways": ["10.99.0.1"], "mtu": 9000},
            "tcp": {"congestion": "reno", "receive_buffer_bytes": 65536, "keepalive_interval": "30s", "max_half_open": 128},
            "pcap": "/tmp/x.pcap",
            "impair": {"loss_percent": "2.5", "delay": "0.010s"}
        }});
        let b = parse_bootstrap(&d).unwrap();
        let u = &b.sluice.userspace;
        let tap = u.tap.as_ref().unwrap();
        assert_eq!(tap.name, "sl0");
        assert_eq!(tap.addresses.len(), 2);
        assert_eq!(tap.mtu, 9000);
        assert!(tap.checksum_offload);
        assert_eq!(tap.mac, [2, 0x73, 10, 99, 0, 2]);
        assert_eq!(u.tcp.congestion, super::userspace::Congestion::Reno);
        assert_eq!(u.tcp.receive_buffer_bytes, 65536);
        assert_eq!(u.tcp.keepalive_interval, Some(Duration::from_secs(30)));
        assert_eq!(u.tcp.max_half_open, 128);
        assert_eq!(u.impair.unwrap().loss_per_10k, 250);

        let err = |io: serde_json::Value| {
            let mut d = minimal();
            d["sluice"] = json!({ "io": io });
            parse_bootstrap(&d).unwrap_err().to_string()
        };
        let e = err(json!({"backend": "tap"}));
        assert_eq!(e, "sluice.io: sluice.io.backend tap needs a sluice.io.tap section with at least one address");
        let e = err(json!({"backend": "tap", "tap": {"addresses": []}}));
        assert_eq!(
            e,
            "sluice.io.tap.addresses: the stack needs at least one address"
        );
        let e = err(json!({"backend": "tap", "tap": {"addresses": ["10.0.0.1/40"]}}));
        assert_eq!(
            e,
            "sluice.io.tap.addresses[0]: \"40\": prefix length must be 0 to 32"
        );
        let e = err(
            json!({"backend": "tap", "tap": {"addresses": ["10.0.0.1/24"], "name": "a-very-long-interface"}}),
        );
        assert!(
            e.starts_with("sluice.io.tap.name: an interface name is 1 to 15"),
            "{e}"
        );
        let e = err(json!({"backend": "tap", "tap": {"addresses": ["10.0.0.1/24"], "mtu": 100}}));
        assert_eq!(e, "sluice.io.tap.mtu: mtu must be between 1280 and 65521");
        let e = err(
            json!({"backend": "tap", "tap": {"addresses": ["10.0.0.1/24"], "gateways": ["10.0.0.9", "10.0.0.8"]}}),
        );
        assert_eq!(
            e,
            "sluice.io.tap.gateways[1]: at most one gateway per address family"
        );
        let e = err(
            json!({"backend": "tap", "tap": {"addresses": ["10.0.0.1/24"], "mac": "01:00:00:00:00:01"}}),
        );
        assert_eq!(
            e,
            "sluice.io.tap.mac: a multicast MAC address cannot be an interface's"
        );
        let e = err(
            json!({"backend": "tap", "tap": {"addresses": ["10.0.0.1/24"]}, "tcp": {"congestion": "bbr"}}),
        );
        assert!(
            e.starts_with("sluice.io.tcp.congestion: unknown congestion control \"bbr\""),
            "{e}"
        );
        let e = err(
            json!({"backend": "tap", "tap": {"addresses": ["10.0.0.1/24"]}, "tcp": {"receive_buffer_bytes": 10}}),
        );
        assert_eq!(
            e,
            "sluice.io.tcp.receive_buffer_bytes: must be between 4096 and 1073741824"
        );
        let e = err(
            json!({"backend": "tap", "tap": {"addresses": ["10.0.0.1/24"]}, "impair": {"loss_percent": 150}}),
        );
        assert_eq!(
            e,
            "sluice.io.impair.loss_percent: must be a percentage from 0 to 100"
        );
        let e = err(json!({"backend": "kernel", "pcap": "/tmp/x.pcap"}));
        assert_eq!(
            e,
            "sluice.io: sluice.io.pcap records the userspace stack's frames; it needs backend tap"
        );
    }

    #[test]
    fn fallback_section() {
        use sluice_tcpstack::fallback::{Protocol, Rule, Rules};
        let parse = |fallback: serde_json::Value| {
            let mut d = minimal();
            d["sluice"] = json!({"io": {
                "backend": "tap",
                "tap": {"addresses": ["10.0.0.2/24"]},
                "fallback": fallback,
            }});
            parse_bootstrap(&d).map(|b| b.sluice.userspace.fallback.unwrap())
        };
        let f = parse(json!({"tap": "slk0"})).unwrap();
        assert_eq!(f.tap, "slk0");
        assert_eq!(f.rules, Rules::everything());
        let f = parse(json!({"tap": "slk0", "rules": [
            {"protocol": "tcp", "ports": [22, "8000-8100"]},
            {"protocol": "icmp"}
        ]}))
        .unwrap();
        assert_eq!(
            f.rules,
            Rules(vec![
                Rule {
                    protocol: Protocol::Tcp,
                    ports: vec![22..=22, 8000..=8100]
                },
                Rule {
                    protocol: Protocol::Icmp,
                    ports: vec![]
                },
            ])
        );
        let e = |v| parse(v).unwrap_err().to_string();
        assert_eq!(
            e(json!({"rules": []})),
            "sluice.io.fallback.tap: required field is missing"
        );
        assert!(e(json!({"tap": "k", "rules": [{"protocol": "neighbor"}]}))
            .starts_with("sluice.io.fallback.rules[0].protocol: expected tcp, udp, icmp"),);
        assert_eq!(
            e(json!({"tap": "k", "rules": [{"protocol": "icmp", "ports": [1]}]})),
            "sluice.io.fallback.rules[0].ports: only tcp, udp and any rules have ports"
        );
        assert_eq!(
            e(json!({"tap": "k", "rules": [{"protocol": "tcp", "ports": ["90-80"]}]})),
            "sluice.io.fallback.rules[0].ports[0]: port range \"90-80\" ends before it starts"
        );
        assert!(
            e(json!({"tap": "k", "rules": [{"protocol": "tcp", "ports": [70000]}]}))
                .starts_with("sluice.io.fallback.rules[0].ports[0]: a port is a number")
        );
        let mut d = minimal();
        d["sluice"] = json!({"io": {"fallback": {"tap": "k"}}});
        assert_eq!(
            parse_bootstrap(&d).unwrap_err().to_string(),
            "sluice.io: sluice.io.fallback hands the host kernel what the userspace stack does not serve; it needs backend tap or dpdk"
        );
    }

    #[test]
    fn bad_port_and_type() {
        let e = error_of(minimal(), |d| {
            d["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] =
                json!(70000);
        });
        assert!(e.contains("port_value: port 70000 is out of range"), "{e}");
        let e = error_of(minimal(), |d| {
            d["static_resources"]["clusters"][0]["type"] = json!("EDS");
        });
        assert!(
            e.contains("clusters[0].type: cluster type EDS is not supported yet"),
            "{e}"
        );
    }
}
