//! An immutable, versioned config snapshot: what every worker builds its state from, and what
//! the admin API reports. Swapping snapshots is the one way config changes.

use crate::config::{Bootstrap, ClusterConfig, ListenerConfig};
use crate::proxy::hosts::ClusterHosts;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What identifies a listener across config versions: its address, or for a port-0 listener
/// (ephemeral port) its name, so a reload keeps the port it was given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenerKey {
    Address(SocketAddr),
    Ephemeral(String),
}

impl ListenerKey {
    pub fn of(l: &ListenerConfig) -> ListenerKey {
        if l.address.port() == 0 {
            ListenerKey::Ephemeral(l.name.clone())
        } else {
            ListenerKey::Address(l.address)
        }
    }
}

pub struct ClusterEntry {
    pub config: Arc<ClusterConfig>,
    pub hosts: Arc<ClusterHosts>,
}

pub struct Snapshot {
    pub version: u64,
    pub bootstrap: Arc<Bootstrap>,
    pub clusters: HashMap<String, ClusterEntry>,
    /// Listener name -> the address it is actually bound to.
    pub bound: Vec<(String, SocketAddr)>,
}
