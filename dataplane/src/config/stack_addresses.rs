//! The addresses a userspace stack owns on its device (TAP or NIC port), as the `tap` and
//! `dpdk` sections both spell them.

use super::reader::{Node, Result};
use std::net::IpAddr;

/// The addresses a userspace stack owns on its device (TAP or NIC port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackAddresses {
    /// With prefix lengths ("10.99.0.2/24").
    pub addresses: Vec<(IpAddr, u8)>,
    /// Default gateways, at most one per address family.
    pub gateways: Vec<IpAddr>,
    /// The stack's MAC address; unset, the device's own (or, on a TAP, one derived from the
    /// first address).
    pub mac: Option<[u8; 6]>,
}

/// Reads `addresses`, `gateways` and `mac` of a TAP or port section.
pub fn parse_stack_addresses(node: Node<'_>) -> Result<StackAddresses> {
    let list = node.require("addresses")?;
    let mut addresses = Vec::new();
    for item in list.node().items()? {
        let n = item.node();
        addresses.push(parse_cidr(n.as_str()?).map_err(|e| n.error(e))?);
    }
    if addresses.is_empty() {
        return Err(list.node().error("the stack needs at least one address"));
    }
    let mut gateways: Vec<IpAddr> = Vec::new();
    if let Some(g) = node.get("gateways") {
        for item in g.node().items()? {
            let n = item.node();
            let ip: IpAddr = n
                .as_str()?
                .parse()
                .map_err(|_| n.error("not an IP address"))?;
            if gateways.iter().any(|x| x.is_ipv4() == ip.is_ipv4()) {
                return Err(n.error("at most one gateway per address family"));
            }
            gateways.push(ip);
        }
    }
    let mac = match node.get("mac") {
        Some(m) => {
            let n = m.node();
            let mac = parse_mac(n.as_str()?).map_err(|e| n.error(e))?;
            if mac[0] & 1 != 0 {
                return Err(n.error("a multicast MAC address cannot be an interface's"));
            }
            Some(mac)
        }
        None => None,
    };
    Ok(StackAddresses {
        addresses,
        gateways,
        mac,
    })
}

fn parse_cidr(s: &str) -> std::result::Result<(IpAddr, u8), String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("\"{s}\": expected address/prefix-length, such as 10.99.0.2/24"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("\"{ip}\" is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("\"{prefix}\": prefix length must be 0 to {max}"))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("{ip} cannot be an interface address"));
    }
    Ok((ip, prefix))
}

/// A MAC address as Linux writes it ("02:73:0a:63:00:02").
pub fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

pub fn parse_mac(s: &str) -> std::result::Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("\"{s}\": expected six hex bytes separated by ':'"));
    }
    for (d, p) in mac.iter_mut().zip(parts) {
        *d =
            u8::from_str_radix(p, 16).map_err(|_| format!("\"{s}\": \"{p}\" is not a hex byte"))?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_mac_errors_say_what_is_wrong() {
        assert_eq!(
            parse_cidr("10.0.0.1/24").unwrap(),
            ("10.0.0.1".parse().unwrap(), 24)
        );
        assert!(parse_cidr("10.0.0.1")
            .unwrap_err()
            .contains("address/prefix-length"));
        assert!(parse_cidr("10.0.0.1/33").unwrap_err().contains("0 to 32"));
        assert!(parse_cidr("0.0.0.0/8")
            .unwrap_err()
            .contains("cannot be an interface"));
        assert_eq!(parse_mac("02:00:00:00:00:0a").unwrap(), [2, 0, 0, 0, 0, 10]);
        assert!(parse_mac("02:00:00:00:00")
            .unwrap_err()
            .contains("six hex bytes"));
        assert!(parse_mac("02:00:00:00:00:zz")
            .unwrap_err()
            .contains("not a hex byte"));
    }
}
