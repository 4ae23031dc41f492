//! `sluice.io`: which IO backend carries connections, and the userspace stack's settings
//! (`tap`, `tcp`, `pcap`) when it is not the kernel.

use super::duration::parse_duration;
use super::reader::{Node, Result};
pub use super::stack_addresses::{format_mac, parse_mac, parse_stack_addresses, StackAddresses};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use sluice_tcpstack::Congestion;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    Kernel,
    /// The userspace stack on a TAP device.
    Tap,
    /// One userspace stack per lcore on DPDK NIC queues.
    Dpdk,
}

impl IoBackend {
    /// The backend a name selects, for the config's `sluice.io.backend` and the `--io` flag.
    pub fn from_name(name: &str) -> std::result::Result<IoBackend, String> {
        match name {
            "kernel" => Ok(IoBackend::Kernel),
            "tap" => Ok(IoBackend::Tap),
            "dpdk" => Ok(IoBackend::Dpdk),
            _ => Err(format!(
                "unknown IO backend \"{name}\" (expected kernel, tap or dpdk)"
            )),
        }
    }
}

/// `sluice.io.tap`: the TAP device the userspace stack sits behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// Interface name, created if missing (default `sluice0`).
    pub name: String,
    /// Addresses the stack owns, with prefix lengths ("10.99.0.2/24").
    pub addresses: Vec<(IpAddr, u8)>,
    /// Default gateways, at most one per address family.
    pub gateways: Vec<IpAddr>,
    /// The stack's MAC address (default: locally administered, derived from the first address).
    pub mac: [u8; 6],
    /// Link MTU on both sides of the TAP (default 1500).
    pub mtu: usize,
    /// TCP checksums left to the kernel through a virtio-net header (default true); off, the
    /// stack computes and verifies them in software.
    pub checksum_offload: bool,
}

/// `sluice.io.tcp`: the userspace stack's TCP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackTcpConfig {
    pub congestion: Congestion,
    pub receive_buffer_bytes: usize,
    pub send_buffer_bytes: usize,
    pub keepalive_interval: Option<Duration>,
    pub max_half_open: usize,
    pub accept_backlog: usize,
    pub max_connections: usize,
    /// A fixed random seed (initial sequence numbers, ephemeral ports), so that a replayed
    /// capture meets the numbers it was made for. For pcap-replay tests only: predictable
    /// sequence numbers are a security hole on a real network.
    pub fixed_seed: Option<u64>,
}

impl Default for StackTcpConfig {
    fn default() -> Self {
        let d = sluice_tcpstack::TcpTuning::default();
        StackTcpConfig {
            congestion: d.congestion,
            receive_buffer_bytes: d.rx_buffer,
            send_buffer_bytes: d.tx_buffer,
            keepalive_interval: None,
            max_half_open: d.max_half_open,
            accept_backlog: d.accept_backlog,
            max_connections: 1_000_000,
            fixed_seed: None,
        }
    }
}

/// `sluice.io.impair`: loss and delay the stack's device adds in both directions, as `tc netem`
/// would on a kernel that has it. For tests and experiments, never for production traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImpairConfig {
    /// Frames dropped per 10,000 (so 5% is 500).
    pub loss_per_10k: u32,
    pub delay: Duration,
}

/// Everything under `sluice.io` that concerns the userspace stack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserspaceConfig {
    pub tap: Option<TapConfig>,
    pub tcp: StackTcpConfig,
    /// Record every frame the stack sends and receives to this pcap file.
    pub pcap: Option<PathBuf>,
    pub impair: Option<ImpairConfig>,
    /// `sluice.io.dpdk`: the DPDK layout, the port's addresses and the idle policy.
    pub dpdk: Option<super::dpdk::DpdkConfig>,
    /// `sluice.io.fallback`: the host kernel's TAP for what the stack does not serve.
    pub fallback: Option<FallbackConfig>,
}

/// `sluice.io.fallback`: when the stack owns the wire, the TAP through which the host kernel
/// (carrying the same addresses and MAC) gets the frames the stack does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackConfig {
    /// The TAP `sluice-control fallback up` made (multi-queue: one queue per worker).
    pub tap: String,
    /// What goes to the kernel; default everything the stack does not serve.
    pub rules: sluice_tcpstack::fallback::Rules,
}

impl UserspaceConfig {
    /// Checks that `backend` has what it needs; called after any `--io` override.
    pub fn check(&self, backend: IoBackend) -> std::result::Result<(), String> {
        match backend {
            IoBackend::Tap if self.tap.is_none() => Err(
                "sluice.io.backend tap needs a sluice.io.tap section with at least one address"
                    .into(),
            ),
            IoBackend::Dpdk if !cfg!(feature = "dpdk") => Err(
                "this build of sluice has no DPDK support: build it with `cargo build --release \
                 -p sluice-dataplane --features dpdk` (needs libdpdk-dev), or run with --io tap or --io kernel"
                    .into(),
            ),
            IoBackend::Dpdk if self.dpdk.is_none() => {
                Err("sluice.io.backend dpdk needs a sluice.io.dpdk section".into())
            }
            IoBackend::Dpdk if self.impair.is_some() => {
                Err("sluice.io.impair is for TAP mode; it is not applied to NIC queues".into())
            }
            IoBackend::Kernel if self.pcap.is_some() => Err(
                "sluice.io.pcap records the userspace stack's frames; it needs backend tap".into(),
            ),
            IoBackend::Kernel if self.fallback.is_some() => Err(
                "sluice.io.fallback hands the host kernel what the userspace stack does not \
                 serve; it needs backend tap or dpdk"
                    .into(),
            ),
            IoBackend::Kernel if self.impair.is_some() => Err(
                "sluice.io.impair acts on the userspace stack's device; it needs backend tap"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

pub fn parse_fallback(node: Node<'_>) -> Result<FallbackConfig> {
    use sluice_tcpstack::fallback::{Protocol, Rule, Rules};
    node.expect_fields(&["tap", "rules"], &[])?;
    let tap = interface_name(node.require("tap")?.node())?;
    let rules = match node.get("rules") {
        None => Rules::everything(),
        Some(list) => {
            let mut rules = Vec::new();
            for item in list.node().items()? {
                let r = item.node();
                r.expect_fields(&["protocol", "ports"], &[])?;
                let p = r.require("protocol")?;
                let p = p.node();
                let protocol = Protocol::from_name(p.as_str()?).ok_or_else(|| {
                    p.error("expected tcp, udp, icmp, other or any (ARP and NDP always reach the kernel)")
                })?;
                let mut ports = Vec::new();
                if let Some(list) = r.get("ports") {
                    if !protocol.has_ports() {
                        return Err(list.node().error("only tcp, udp and any rules have ports"));
                    }
                    for port in list.node().items()? {
                        let n = port.node();
                        ports.push(parse_port_range(n)?);
                    }
                }
                rules.push(Rule { protocol, ports });
            }
            Rules(rules)
        }
    };
    Ok(FallbackConfig { tap, rules })
}

/// A port (22) or an inclusive range ("8000-8100").
fn parse_port_range(n: Node<'_>) -> Result<std::ops::RangeInclusive<u16>> {
    let bad = || n.error("a port is a number from 1 to 65535, or a range such as \"8000-8100\"");
    if let Ok(v) = n.as_u64() {
        let p = u16::try_from(v).ok().filter(|p| *p > 0).ok_or_else(bad)?;
        return Ok(p..=p);
    }
    let text = n.as_str().map_err(|_| bad())?;
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let lo: u16 = lo.trim().parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if hi < lo {
        return Err(n.error(format!("port range \"{text}\" ends before it starts")));
    }
    Ok(lo..=hi)
}

/// An interface name as Linux allows it.
fn interface_name(n: Node<'_>) -> Result<String> {
    let s = n.as_str()?;
    if s.is_empty() || s.len() > 15 || s.contains('/') || s.contains(char::is_whitespace) {
        return Err(n.error("an interface name is 1 to 15 characters, no '/' or spaces"));
    }
    Ok(s.to_string())
}

pub fn parse_tap(node: Node<'_>) -> Result<TapConfig> {
    node.expect_fields(
        &[
            "name",
            "addresses",
            "gateways",
            "mac",
            "mtu",
            "checksum_offload",
        ],
        &[],
    )?;
    let name = match node.get("name") {
        Some(n) => interface_name(n.node())?,
        None => "sluice0".to_string(),
    };
    let StackAddresses {
        addresses,
        gateways,
        mac,
    } = parse_stack_addresses(node)?;
    let mac = mac.unwrap_or_else(|| derived_mac(addresses[0].0));
    let mtu = match node.get("mtu") {
        Some(m) => {
            let n = m.node();
            let v = n.as_u32()? as usize;
            if !(1280..=65521).contains(&v) {
                return Err(n.error("mtu must be between 1280 and 65521"));
            }
            v
        }
        None => 1500,
    };
    let checksum_offload = match node.get("checksum_offload") {
        Some(c) => c.node().as_bool()?,
        None => true,
    };
    Ok(TapConfig {
        name,
        addresses,
        gateways,
        mac,
        mtu,
        checksum_offload,
    })
}

pub fn parse_tcp(node: Node<'_>) -> Result<StackTcpConfig> {
    node.expect_fields(
        &[
            "congestion",
            "receive_buffer_bytes",
            "send_buffer_bytes",
            "keepalive_interval",
            "max_half_open",
            "accept_backlog",
            "max_connections",
            "fixed_seed",
        ],
        &[],
    )?;
    let mut c = StackTcpConfig::default();
    if let Some(n) = node.get("fixed_seed") {
        c.fixed_seed = Some(n.node().as_u64()?);
    }
    if let Some(n) = node.get("congestion") {
        let n = n.node();
        c.congestion = match n.as_str()? {
            "cubic" => Congestion::Cubic,
            "reno" => Congestion::Reno,
            "none" => Congestion::None,
            other => {
                return Err(n.error(format!(
                    "unknown congestion control \"{other}\" (expected cubic, reno or none)"
                )))
            }
        };
    }
    let sized = |field: &str, min: u64, max: u64, into: &mut usize| -> Result<()> {
        if let Some(n) = node.get(field) {
            let n = n.node();
            let v = n.as_u64()?;
            if !(min..=max).contains(&v) {
                return Err(n.error(format!("must be between {min} and {max}")));
            }
            *into = v as usize;
        }
        Ok(())
    };
    sized(
        "receive_buffer_bytes",
        4096,
        1 << 30,
        &mut c.receive_buffer_bytes,
    )?;
    sized("send_buffer_bytes", 4096, 1 << 30, &mut c.send_buffer_bytes)?;
    sized("max_half_open", 1, 1 << 24, &mut c.max_half_open)?;
    sized("accept_backlog", 1, 1 << 24, &mut c.accept_backlog)?;
    sized("max_connections", 1, 1 << 26, &mut c.max_connections)?;
    if let Some(n) = node.get("keepalive_interval") {
        let d = parse_duration(n.node())?;
        c.keepalive_interval = (!d.is_zero()).then_some(d);
    }
    Ok(c)
}

pub fn parse_impair(node: Node<'_>) -> Result<ImpairConfig> {
    node.expect_fields(&["loss_percent", "delay"], &[])?;
    let loss_per_10k = match node.get("loss_percent") {
        Some(n) => {
            let n = n.node();
            let text = match n.as_u32() {
                Ok(v) => v.to_string(),
                Err(_) => n.as_str()?.to_string(),
            };
            let pct: f64 = text
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=100.0).contains(p))
                .ok_or_else(|| n.error("must be a percentage from 0 to 100"))?;
            (pct * 100.0).round() as u32
        }
        None => 0,
    };
    let delay = match node.get("delay") {
        Some(d) => parse_duration(d.node())?,
        None => Duration::ZERO,
    };
    Ok(ImpairConfig {
        loss_per_10k,
        delay,
    })
}

/// A locally administered unicast MAC that differs per stack address.
fn derived_mac(ip: IpAddr) -> [u8; 6] {
    let o = match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets()[12..].to_vec(),
    };
    [0x02, 0x73, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_macs_differ_per_address() {
        assert_eq!(
            derived_mac("10.99.0.2".parse().unwrap()),
            [2, 0x73, 10, 99, 0, 2]
        );
    }
}
