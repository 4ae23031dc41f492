//! The validated configuration model: what the rest of the dataplane reads. Built from the Envoy v3
//! bootstrap by `config::bootstrap`; later also from xDS resources, which share these types.

use std::net::SocketAddr;

pub use super::cluster_model::*;
pub use super::route_model::*;
pub use super::userspace::{IoBackend, UserspaceConfig};
pub use crate::proxy::network_filter::NetworkFilterConfig;

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

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    /// Bytes buffered per direction of a connection before sluice stops reading its source.
    pub buffer_limit: usize,
    pub backlog: u32,
    /// The chain's terminal network filter, parsed by its own extension
    /// ([`crate::proxy::network_filter`]).
    pub filter: NetworkFilterConfig,
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
