//! The rpc_proxy's retries, timeouts and pools, in-process under paused time: the proxy is
//! built from a parsed bootstrap exactly as a worker builds it, over an in-memory network whose
//! upstreams are Bolt servers written here. Virtual time makes the deadlines exact.

use crate::config::bootstrap::parse_bootstrap;
use crate::io::connect::memory::MemoryNetwork;
use crate::io::connect::Network;
use crate::io::Connection;
use crate::protocol::bolt::{encode_response, status, Bolt, RequestSpec, PROTO_V1};
use crate::protocol::xprotocol::{Codec, FrameHead, FrameKind};
use crate::proxy::cluster::Cluster;
use crate::proxy::hosts::ClusterHosts;
use crate::proxy::lb::Rng;
use crate::proxy::network_filter::{BuildContext, ConnectionHandler};
use crate::stats::Stats;
use bytes::{Buf, BytesMut};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

const A: &str = "10.0.0.1:9000";
const B: &str = "10.0.0.2:9000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A bootstrap with one rpc_proxy listener sending everything to cluster `up` (hosts A and B)
/// with `route` as the route action's extra fields.
fn bootstrap(route: serde_json::Value) -> serde_json::Value {
    let endpoint = |a: &str| {
        let a = addr(a);
        json!({"endpoint": {"address": {"socket_address": {
            "address": a.ip().to_string(), "port_value": a.port()}}}})
    };
    let mut action = json!({"cluster": "up"});
    action
        .as_object_mut()
        .unwrap()
        .extend(route.as_object().unwrap().clone());
    json!({"static_resources": {
        "listeners": [{"name": "rpc",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "sluice.filters.network.rpc_proxy",
                "typed_config": {"@type": super::RPC_PROXY_TYPE, "stat_prefix": "rpc",
                    "protocols": ["bolt"], "default_timeout": "3s",
                    "upstream": {"heartbeat_interval": "0s"},
                    "route_config": {"name": "r", "virtual_hosts": [{"name": "all",
                        "services": ["*"], "routes": [{"route": action}]}]}}}]}]}],
        "clusters": [{"name": "up", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "up", "endpoints": [
                {"lb_endpoints": [endpoint(A), endpoint(B)]}]}}]}})
}

/// What an upstream does with the requests it is sent.
#[derive(Clone, Copy)]
enum Upstream {
    Answers,
    Silent,
}

#[derive(Default)]
struct Seen {
    connections: Cell<u32>,
    requests: Cell<u32>,
}

/// Serves connections to one address as `behaviour` says, counting what arrives.
fn upstream(net: &MemoryNetwork, at: &str, behaviour: Upstream) -> Rc<Seen> {
    let seen = Rc::new(Seen::default());
    let mut incoming = net.listen(addr(at));
    let s = seen.clone();
    tokio::task::spawn_local(async move {
        while let Some(conn) = incoming.recv().await {
            s.connections.set(s.connections.get() + 1);
            tokio::task::spawn_local(serve_upstream(conn, behaviour, s.clone()));
        }
    });
    seen
}

async fn serve_upstream(mut conn: DuplexStream, behaviour: Upstream, seen: Rc<Seen>) {
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some(head)) = Bolt.decode(&buf, 1 << 20) {
            if head.kind == FrameKind::Request {
                seen.requests.set(seen.requests.get() + 1);
                if let Upstream::Answers = behaviour {
                    let mut out = BytesMut::new();
                    encode_response(&buf[..head.len], status::SUCCESS, b"ok", &mut out);
                    if conn.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
            buf.advance(head.len);
        }
        match conn.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The rpc_proxy of `doc`, built for worker 0 over `net`, as a worker builds it.
fn build(
    doc: serde_json::Value,
    net: &Rc<MemoryNetwork>,
) -> (Rc<dyn ConnectionHandler>, Arc<Stats>) {
    let b = parse_bootstrap(&doc).unwrap();
    let stats = Stats::new(1);
    let rng = Rc::new(RefCell::new(Rng::from_entropy()));
    let network = Network::Memory(net.clone());
    let clusters: HashMap<String, Rc<Cluster>> = b
        .clusters
        .iter()
        .map(|c| {
            let cluster = Cluster::new(
                Arc::new(c.clone()),
                ClusterHosts::new(c),
                stats.clone(),
                0,
                rng.clone(),
                &network,
            );
            (c.name.clone(), Rc::new(cluster))
        })
        .collect();
    let cluster = |name: &str| clusters.get(name).cloned().ok_or(format!("no {name}"));
    let all_clusters = || clusters.values().cloned().collect::<Vec<_>>();
    let l = &b.listeners[0];
    let handler = l
        .filter
        .build(&BuildContext {
            shard: &stats.shards[0],
            buffer_limit: l.buffer_limit,
            splice: false,
            rng: &rng,
            cluster: &cluster,
            all_clusters: &all_clusters,
        })
        .unwrap();
    (handler, stats)
}

/// A downstream client connection served by `proxy`.
struct Client {
    conn: DuplexStream,
    buf: BytesMut,
    next_id: u32,
}

impl Client {
    fn connect(proxy: &Rc<dyn ConnectionHandler>) -> Client {
        let (near, far) = tokio::io::duplex(256 * 1024);
        tokio::task::spawn_local(
            proxy
                .clone()
                .serve(Connection::Stream(Box::new(far)), addr("192.0.2.1:40000")),
        );
        Client {
            conn: near,
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    /// Sends one request and waits for its answer: its head and how long it took.
    async fn call(&mut self) -> (FrameHead, Duration) {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = BytesMut::new();
        RequestSpec {
            proto: PROTO_V1,
            ver1: 1,
            crc: false,
            oneway: false,
            request_id: id,
            timeout_ms: 0,
            class: b"com.alipay.sofa.rpc.core.request.SofaRequest",
            headers: &[("service", "com.example.Echo:1.0")],
            content: b"hi",
        }
        .encode(&mut req);
        let t0 = Instant::now();
        self.conn.write_all(&req).await.unwrap();
        loop {
            if let Some(head) = Bolt.decode(&self.buf, 1 << 20).unwrap() {
                self.buf.advance(head.len);
                assert_eq!(
                    head.request_id,
                    u64::from(id),
                    "an answer to another request"
                );
                return (head, t0.elapsed());
            }
            assert!(
                self.conn.read_buf(&mut self.buf).await.unwrap() > 0,
                "closed"
            );
        }
    }
}

fn run(test: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, test);
}

fn stat(stats: &Stats, series: &str) -> u64 {
    let text = stats.render_prometheus();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A request whose first try goes to a host that never answers is retried on the other host
/// exactly at its per-try timeout, and answered; one that goes to the good host first is
/// answered at once.
#[test]
fn a_per_try_timeout_retries_on_the_other_host_at_exactly_its_deadline() {
    run(async {
        let net = Rc::new(MemoryNetwork::default());
        let silent = upstream(&net, A, Upstream::Silent);
        let good = upstream(&net, B, Upstream::Answers);
        let (proxy, stats) = build(
            bootstrap(
                json!({"retry_policy": {"num_retries": 1, "per_try_timeout": "0.5s",
                "retry_on": "per-try-timeout"}}),
            ),
            &net,
        );
        let mut c = Client::connect(&proxy);
        let mut retried = 0;
        for _ in 0..6 {
            let (head, took) = c.call().await;
            assert_eq!(head.status, status::SUCCESS);
            if took >= Duration::from_millis(500) {
                assert!(took < Duration::from_millis(501), "retried late: {took:?}");
                retried += 1;
            } else {
                assert!(took < Duration::from_millis(1), "{took:?}");
            }
        }
        assert!(retried > 0, "round robin never tried the silent host");
        assert_eq!(silent.requests.get(), retried);
        assert_eq!(good.requests.get(), 6);
        assert_eq!(
            stat(&stats, "sluice_cluster_upstream_rq_retry{cluster=\"up\"}"),
            u64::from(retried)
        );
    });
}

/// With no retries, a request no upstream answers gets Bolt's TIMEOUT at exactly the default
/// timeout, and the next request on the same connection is still served.
#[test]
fn an_unanswered_request_times_out_at_its_deadline_and_the_connection_goes_on() {
    run(async {
        let net = Rc::new(MemoryNetwork::default());
        upstream(&net, A, Upstream::Silent);
        upstream(&net, B, Upstream::Silent);
        let (proxy, _stats) = build(bootstrap(json!({})), &net);
        let mut c = Client::connect(&proxy);
        for _ in 0..2 {
            let (head, took) = c.call().await;
            assert_eq!(head.status, status::TIMEOUT);
            assert_eq!(took, Duration::from_secs(3));
        }
    });
}

/// A host that refuses connections is tried once and then passed by (connect backoff) while the
/// other host's one pooled connection carries every request.
#[test]
fn a_refusing_host_is_backed_off_and_one_pooled_connection_carries_the_rest() {
    run(async {
        let net = Rc::new(MemoryNetwork::default());
        // Nobody listens on A: connects to it are refused.
        let good = upstream(&net, B, Upstream::Answers);
        let (proxy, stats) = build(
            bootstrap(json!({"retry_policy": {"num_retries": 1, "retry_on": "connect-failure"}})),
            &net,
        );
        let mut c = Client::connect(&proxy);
        for _ in 0..20 {
            let (head, took) = c.call().await;
            assert_eq!(head.status, status::SUCCESS);
            assert!(took < Duration::from_millis(1), "{took:?}");
        }
        assert_eq!(
            good.connections.get(),
            1,
            "requests share one upstream connection"
        );
        assert_eq!(good.requests.get(), 20);
        let refused = stat(
            &stats,
            "sluice_host_cx_connect_fail{cluster=\"up\",address=\"10.0.0.1:9000\"}",
        );
        assert!(
            refused <= 1,
            "{refused} connects to a refusing host in no time"
        );
    });
}
