//! The validated configuration model: what the rest of the dataplane reads. Built from the Envoy v3
//! bootstrap by `config::bootstrap`; later also from xDS resources, which share these types.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub admin: Option<AdminConfig>,
    pub listeners: Vec<ListenerConfig>,
    pub clusters: Vec<ClusterConfig>,
    pub sluice: SluiceExtension,
    /// The document as it was read (after YAML -> JSON), for `/config_dump`.
    pub source: serde_json::Value,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// An IP literal (STATIC) or a host name (STRICT_DNS).
    pub host: String,
    pub port: u16,
    pub weight: u32,
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
}

impl Default for SluiceExtension {
    fn default() -> Self {
        SluiceExtension {
            io_backend: IoBackend::Kernel,
            splice: true,
            worker_cpus: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    Kernel,
}

impl IoBackend {
    /// The backend a name selects, for the config's `sluice.io.backend` and the `--io` flag.
    pub fn from_name(name: &str) -> Result<IoBackend, String> {
        match name {
            "kernel" => Ok(IoBackend::Kernel),
            "tap" | "dpdk" => Err(format!(
                "IO backend \"{name}\" is not available in this version of sluice yet (available: kernel)"
            )),
            _ => Err(format!("unknown IO backend \"{name}\" (expected kernel, tap or dpdk)")),
        }
    }
}
