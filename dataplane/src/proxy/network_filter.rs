//! The network filter extension point, shaped as Envoy's filter factories: each filter parses
//! its own typed_config once, on the main thread, into a validated config ([`FilterConfig`]),
//! and builds from that, once per worker and config version, the [`ConnectionHandler`] that
//! serves the listener's connections. A filter is found by its typed_config's type URL (the
//! name is a label, though a well-known name is enough, as in Envoy). Adding a filter is a
//! module that implements [`NetworkFilterFactory`] and one line in [`FACTORIES`].

use super::cluster::Cluster;
use super::lb::Rng;
use crate::config::cluster_model::ClusterConfig;
use crate::config::reader::{ConfigError, Node, Result};
use crate::io::Connection;
use crate::stats::Shard;
use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

/// Every network filter sluice has, in the order they are listed in errors.
pub static FACTORIES: &[&dyn NetworkFilterFactory] = &[
    &super::tcp_proxy::config::Factory,
    &super::rpc_proxy::config::Factory,
    &super::http::config::Factory,
];

/// One network filter: its names and type, and how to read its typed_config.
pub trait NetworkFilterFactory: Sync {
    /// The canonical name, e.g. `envoy.filters.network.tcp_proxy`.
    fn name(&self) -> &'static str;
    /// Older names the filter is also known by.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// The typed_config's `@type`.
    fn type_url(&self) -> &'static str;
    /// Reads and validates `typed_config` (the node holding `@type`).
    fn parse(&self, typed_config: Node<'_>, ctx: &ParseContext<'_>) -> Result<NetworkFilterConfig>;
}

/// What a filter's config may check itself against while it is read.
pub struct ParseContext<'a> {
    /// The clusters the same config defines (routes must name one of them).
    pub clusters: &'a [ClusterConfig],
}

/// A filter's validated config: immutable, shared by every worker.
pub trait FilterConfig: std::fmt::Debug + Send + Sync + Any {
    /// The factory's canonical name.
    fn filter_name(&self) -> &'static str;
    /// Builds what serves one listener's connections on one worker.
    fn build(
        &self,
        ctx: &BuildContext<'_>,
    ) -> std::result::Result<Rc<dyn ConnectionHandler>, String>;
    /// For tests and diagnostics that need the concrete config.
    fn as_any(&self) -> &dyn Any;
}

pub type NetworkFilterConfig = Arc<dyn FilterConfig>;

/// A worker's parts a filter is built from.
pub struct BuildContext<'a> {
    pub shard: &'a Shard,
    /// The listener's per-connection buffer bound.
    pub buffer_limit: usize,
    /// Whether kernel-to-kernel byte streams may be spliced.
    pub splice: bool,
    pub rng: &'a Rc<RefCell<Rng>>,
    /// Resolves a cluster name in the worker's current snapshot.
    pub cluster: &'a dyn Fn(&str) -> std::result::Result<Rc<Cluster>, String>,
    /// Every cluster of the snapshot (HTTP's cluster_header may name any of them).
    pub all_clusters: &'a dyn Fn() -> Vec<Rc<Cluster>>,
}

/// Serves accepted connections, one task per connection, on the worker that built it.
pub trait ConnectionHandler {
    fn serve(
        self: Rc<Self>,
        conn: Connection,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = ()>>>;
}

/// Reads one entry of a filter chain's `filters`: `{name, typed_config}`.
pub fn parse_network_filter(node: Node<'_>, ctx: &ParseContext<'_>) -> Result<NetworkFilterConfig> {
    node.expect_fields(&["name", "typed_config"], &["config_discovery", "config"])?;
    let name_node = node.require("name")?;
    let name = name_node.node().as_str()?;
    let typed = node.require("typed_config")?;
    let typed = typed.node();
    let type_node = typed.require("@type")?;
    let type_url = type_node.node().as_str()?;
    let by_name = FACTORIES
        .iter()
        .find(|f| f.name() == name || f.aliases().contains(&name));
    match FACTORIES.iter().find(|f| f.type_url() == type_url) {
        Some(f) => f.parse(typed, ctx),
        None => match by_name {
            Some(f) => Err(ConfigError::new(
                type_node.node().path(),
                format!(
                    "filter \"{name}\" expects type {}, found {type_url}",
                    f.type_url()
                ),
            )),
            None => Err(name_node.node().error(format!(
                "unknown filter \"{name}\" of type {type_url} (available: {})",
                FACTORIES
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}
