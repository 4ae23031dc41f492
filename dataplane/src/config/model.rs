//! The validated configuration model: what the rest of the dataplane reads. Built from the Envoy v3
//! bootstrap by `config::bootstrap`; later also from xDS resources, which share these types.

use std::net::SocketAddr;
use std::time::Duration;

pub use super::userspace::{IoBackend, UserspaceConfig};

#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub admin: Option<AdminConfig>,
    pub listeners: Vec<ListenerConfig>,
    pub clusters: Vec<ClusterConfig>,
    pub sluice: SluiceExtension,
    /// The document as it was read (after YAML -> JSON), for `/config_dump`: compact JSON text,
    /// a fraction of the memory of a `serde_json::Value` of it.
    pub source: std::sync::Arc<str>,
    /// When `static_resources` came from the control process: the version it pushed them as.
    pub resources_version: Option<String>,
}

impl Bootstrap {
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub address: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    /// Bytes buffered per direction of a connection before sluice stops reading its source.
    pub buffer_limit: usize,
    pub backlog: u32,
    pub filter: NetworkFilter,
}

/// The terminal network filter of a listener's filter chain.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkFilter {
    TcpProxy(TcpProxyConfig),
    RpcProxy(Box<RpcProxyConfig>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpProxyConfig {
    pub stat_prefix: String,
    pub route: TcpRoute,
    /// `None` disables the idle timeout (Envoy's `idle_timeout: 0s`).
    pub idle_timeout: Option<Duration>,
    /// `None`: try every endpoint of the cluster once before giving up.
    pub max_connect_attempts: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TcpRoute {
    Cluster(String),
    Weighted(Vec<WeightedCluster>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    Static,
    StrictDns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    Random,
    LeastRequest,
    /// Consistent hashing on a ring (ketama style) of the request's hash key.
    RingHash {
        min_ring_size: u64,
        max_ring_size: u64,
    },
    /// Maglev consistent hashing: a lookup table of a prime size.
    Maglev {
        table_size: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFamily {
    /// Envoy's AUTO / V6_PREFERRED: IPv6 if any, else IPv4.
    PreferV6,
    /// Envoy's V4_PREFERRED: IPv4 if any, else IPv6.
    PreferV4,
    V4Only,
    V6Only,
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub discovery: Discovery,
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    pub endpoints: Vec<EndpointConfig>,
    pub dns_refresh_rate: Duration,
    pub dns_family: DnsFamily,
    pub buffer_limit: Option<usize>,
    pub subsets: Option<SubsetConfig>,
    pub health_checks: Vec<HealthCheckConfig>,
}

/// An endpoint's `metadata.filter_metadata["envoy.lb"]`, values as strings.
pub type Metadata = std::collections::BTreeMap<String, String>;

/// Envoy's `lb_subset_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetConfig {
    pub fallback: SubsetFallback,
    pub default_subset: Metadata,
    /// The key sets a route's `metadata_match` may select on; any other set falls back.
    pub selectors: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubsetFallback {
    NoFallback,
    AnyEndpoint,
    DefaultSubset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub timeout: Duration,
    pub interval: Duration,
    pub interval_jitter: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub kind: HealthCheckKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `tcp_health_check` with no payload: a connect that succeeds is healthy.
    TcpConnect,
    /// `custom_health_check` named `sluice.health_checkers.bolt`: a Bolt heartbeat answered with
    /// success is healthy.
    BoltHeartbeat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// An IP literal (STATIC) or a host name (STRICT_DNS).
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub metadata: Metadata,
}

/// A `sluice.filters.network.rpc_proxy` filter: multiplexed RPC (Bolt, ...) proxied at L7.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcProxyConfig {
    pub stat_prefix: String,
    /// Codec names in detection order.
    pub protocols: Vec<String>,
    pub max_frame_bytes: usize,
    /// Where connections speaking none of `protocols` go, forwarded as opaque bytes; without it
    /// they are closed.
    pub passthrough_cluster: Option<String>,
    pub routes: RpcRouteConfig,
    pub upstream: RpcUpstreamConfig,
    /// The deadline of a request that carries none and whose route sets none.
    pub default_timeout: Duration,
    /// Requests one downstream connection may have in flight before sluice stops reading it.
    pub max_requests_per_downstream: u32,
    /// A downstream connection with no request in flight and nothing read or written for this
    /// long is closed; `None`: never (Envoy's `idle_timeout`, 0s turns it off).
    pub idle_timeout: Option<Duration>,
    /// A frame that has begun to arrive must be whole within this long, else the connection is
    /// closed (a client that sends half a header and goes silent).
    pub frame_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcUpstreamConfig {
    pub connections_per_host: u32,
    pub max_requests_per_connection: u32,
    /// Heartbeats on an upstream connection idle this long; `None` turns them off.
    pub heartbeat_interval: Option<Duration>,
    /// An unanswered heartbeat closes the connection after this long.
    pub heartbeat_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcRouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<RpcVirtualHost>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcVirtualHost {
    pub name: String,
    /// Service names: exact, `*`, or with one leading or trailing `*`.
    pub services: Vec<String>,
    pub routes: Vec<RpcRoute>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcRoute {
    pub method: Option<StringMatch>,
    pub headers: Vec<HeaderMatch>,
    pub action: RpcRouteAction,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    pub name: String,
    /// `None`: the header only has to be present.
    pub matcher: Option<StringMatch>,
    pub invert: bool,
}

#[derive(Debug, Clone)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(regex::Regex),
}

impl StringMatch {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StringMatch::Exact(x) => v == x,
            StringMatch::Prefix(x) => v.starts_with(x.as_str()),
            StringMatch::Suffix(x) => v.ends_with(x.as_str()),
            StringMatch::Contains(x) => v.contains(x.as_str()),
            StringMatch::Regex(r) => r.is_match(v),
        }
    }
}

impl PartialEq for StringMatch {
    fn eq(&self, other: &Self) -> bool {
        use StringMatch::*;
        match (self, other) {
            (Exact(a), Exact(b))
            | (Prefix(a), Prefix(b))
            | (Suffix(a), Suffix(b))
            | (Contains(a), Contains(b)) => a == b,
            (Regex(a), Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcRouteAction {
    pub target: TcpRoute,
    /// Endpoint metadata a host must carry (`metadata_match.filter_metadata["envoy.lb"]`).
    pub metadata_match: Metadata,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    /// The header whose value is the hash key for RING_HASH / MAGLEV clusters.
    pub hash_header: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// Further attempts after the first, on connect failure or per-try timeout.
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
}

/// sluice-only settings, under the top-level `sluice:` key that Envoy is never given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SluiceExtension {
    pub io_backend: IoBackend,
    /// Move bytes between two kernel sockets with splice(2) through a pipe, never copying them
    /// into user space.
    pub splice: bool,
    /// CPUs to pin workers to, in order; default: the CPUs the process may run on.
    pub worker_cpus: Option<Vec<usize>>,
    /// The userspace stack's settings (used with backend tap).
    pub userspace: UserspaceConfig,
}

impl Default for SluiceExtension {
    fn default() -> Self {
        SluiceExtension {
            io_backend: IoBackend::Kernel,
            splice: true,
            worker_cpus: None,
            userspace: UserspaceConfig::default(),
        }
    }
}
