//! The validated cluster model: discovery, load balancing, endpoints, subsets, health checks.

use std::time::Duration;

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
    /// The protocol and pool settings HTTP routes use towards this cluster.
    pub http: super::http_options::UpstreamHttpOptions,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `tcp_health_check` with no payload: a connect that succeeds is healthy.
    TcpConnect,
    /// `custom_health_check` named `sluice.health_checkers.bolt`: a Bolt heartbeat answered with
    /// success is healthy.
    BoltHeartbeat,
    /// `http_health_check`: an HTTP/1.1 GET of `path` answered with one of `expected` statuses.
    Http {
        path: String,
        /// The Host to send; `None`: the cluster's name, as Envoy sends it.
        host: Option<String>,
        /// Half-open ranges of statuses that count as healthy (Envoy's default: 200 only).
        expected: Vec<std::ops::Range<u16>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// An IP literal (STATIC) or a host name (STRICT_DNS).
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub metadata: Metadata,
}
