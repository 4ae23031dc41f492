//! Fields that listeners and clusters spell alike: socket addresses and the per-connection
//! buffer limit.

use super::reader::{ConfigError, Node, Result};
use std::net::{IpAddr, SocketAddr};

pub(super) fn parse_address(node: Node<'_>) -> Result<SocketAddr> {
    node.expect_fields(&["socket_address"], &["pipe", "envoy_internal_address"])?;
    let sa = node.require("socket_address")?;
    let (host, port) = parse_socket_address(sa.node())?;
    let ip: IpAddr = host.parse().map_err(|_| {
        ConfigError::new(
            format!("{}.address", sa.node().path()),
            format!("\"{host}\" is not an IP address"),
        )
    })?;
    Ok(SocketAddr::new(ip, port))
}

pub(super) fn parse_socket_address(node: Node<'_>) -> Result<(String, u16)> {
    node.expect_fields(
        &["address", "port_value", "protocol"],
        &[
            "named_port",
            "resolver_name",
            "ipv4_compat",
            "network_namespace_filepath",
        ],
    )?;
    if let Some(p) = node.get("protocol") {
        let p = p.node();
        if p.as_str()? != "TCP" {
            return Err(p.error(format!(
                "protocol \"{}\" is not supported (only TCP)",
                p.as_str()?
            )));
        }
    }
    let host = node.require("address")?.node().as_str()?.to_string();
    let port_node = node.require("port_value")?;
    let port = port_node.node().as_u32()?;
    let port = u16::try_from(port).map_err(|_| {
        port_node
            .node()
            .error(format!("port {port} is out of range (0-65535)"))
    })?;
    Ok((host, port))
}

pub(super) fn parse_buffer_limit(node: Node<'_>) -> Result<usize> {
    let v = node.as_u32()? as usize;
    // One page is the smallest a pipe can be; smaller limits cannot be honoured exactly.
    if v < 4096 {
        return Err(node.error(format!("{v} is below the minimum of 4096 bytes")));
    }
    Ok(v)
}

/// Envoy's default `per_connection_buffer_limit_bytes` is 1 MiB; sluice moves bytes through a
/// pipe or buffer of this size per direction, so 1 MiB per direction is the default bound too.
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;
