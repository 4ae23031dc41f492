//! Proxy layer: clusters and their hosts, load balancing, and the network filters that decide
//! where a downstream connection goes (tcp_proxy, rpc_proxy, and HTTP's connection manager).

pub mod backoff;
pub mod cluster;
pub mod health;
pub mod hosts;
pub mod http;
pub mod lb;
pub mod network_filter;
pub mod rpc_proxy;
pub mod tcp_proxy;
