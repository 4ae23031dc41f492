//! `sluice.io.dpdk`: the hardware layout of the DPDK dataplane (see the `sluice-hwconfig`
//! crate for the model, its rules and the machine check). Parsed here so its errors carry
//! their path like every other config error.

use super::duration::parse_duration;
use super::reader::{ConfigError, Node, Result};
use super::stack_addresses::{parse_stack_addresses, StackAddresses};
use sluice_hwconfig::model::*;
pub use sluice_tcpstack::driver::IdlePolicy;

/// `sluice.io.dpdk` as the dataplane runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkConfig {
    pub hw: HwConfig,
    /// The addresses the stacks own on the port (every lcore's stack owns all of them; RSS
    /// decides which stack sees which flow).
    pub addresses: StackAddresses,
    pub idle: IdlePolicy,
}

pub fn parse_dpdk(node: Node<'_>) -> Result<DpdkConfig> {
    node.expect_fields(&["eal", "ports", "queues", "mempool", "idle"], &[])?;
    let eal = parse_eal(node.require("eal")?.node())?;
    let mut ports = Vec::new();
    let mut addresses = None;
    let list = node.require("ports")?;
    for p in list.node().items()? {
        ports.push(parse_port(p.node())?);
        addresses = Some(parse_stack_addresses(p.node())?);
    }
    if ports.len() != 1 {
        // One stack per lcore owns one port's queues; routing between ports is not built.
        return Err(list
            .node()
            .error("the DPDK dataplane serves exactly one port for now"));
    }
    let addresses = addresses.expect("one port");
    let idle = node.get("idle");
    let idle = parse_idle(idle.as_ref().map(|n| n.node()))?;
    let mut queues = Vec::new();
    for q in node.require("queues")?.node().items()? {
        let q = q.node();
        q.expect_fields(&["lcore", "port", "queue"], &[])?;
        queues.push(QueueBinding {
            lcore: q.require("lcore")?.node().as_u32()? as usize,
            port: q.require("port")?.node().as_str()?.to_string(),
            queue: small(q.require("queue")?.node())?,
        });
    }
    let mut mempool = MempoolConfig::default();
    if let Some(m) = node.get("mempool") {
        let m = m.node();
        m.expect_fields(&["mbufs", "cache", "data_room"], &[])?;
        if let Some(v) = m.get("mbufs") {
            mempool.mbufs = v.node().as_u32()?;
        }
        if let Some(v) = m.get("cache") {
            mempool.cache = v.node().as_u32()?;
        }
        if let Some(v) = m.get("data_room") {
            mempool.data_room = small(v.node())?;
        }
    }
    let hw = HwConfig {
        eal,
        ports,
        queues,
        mempool,
    };
    hw.validate()
        .map_err(|e| ConfigError::new(format!("{}.{}", node.path(), e.path), e.message))?;
    Ok(DpdkConfig {
        hw,
        addresses,
        idle,
    })
}

/// `idle: {policy: poll}` (the default) or `{policy: backoff, max_sleep: 0.0002s}`.
fn parse_idle(node: Option<Node<'_>>) -> Result<IdlePolicy> {
    let Some(node) = node else {
        return Ok(IdlePolicy::Poll);
    };
    node.expect_fields(&["policy", "max_sleep"], &[])?;
    let policy = node.require("policy")?;
    match policy.node().as_str()? {
        "poll" => Ok(IdlePolicy::Poll),
        "backoff" => {
            let max_sleep = match node.get("max_sleep") {
                Some(m) => {
                    let d = parse_duration(m.node())?;
                    if d.is_zero() || d > std::time::Duration::from_millis(10) {
                        return Err(m.node().error("max_sleep must be between 1us and 10ms"));
                    }
                    d
                }
                None => std::time::Duration::from_micros(200),
            };
            Ok(IdlePolicy::Backoff { max_sleep })
        }
        other => Err(policy.node().error(format!(
            "unknown idle policy \"{other}\" (expected poll or backoff)"
        ))),
    }
}

fn small(node: Node<'_>) -> Result<u16> {
    let v = node.as_u32()?;
    u16::try_from(v).map_err(|_| node.error(format!("{v} is larger than 65535")))
}

fn strings(node: Option<super::reader::Child<'_>>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(list) = node {
        for s in list.node().items()? {
            out.push(s.node().as_str()?.to_string());
        }
    }
    Ok(out)
}

fn parse_eal(node: Node<'_>) -> Result<EalConfig> {
    node.expect_fields(
        &[
            "lcores",
            "memory_channels",
            "hugepages",
            "no_huge_mb",
            "in_memory",
            "vdevs",
            "pci_allow",
            "extra_args",
        ],
        &[],
    )?;
    let mut lcores = Vec::new();
    for c in node.require("lcores")?.node().items()? {
        lcores.push(c.node().as_u32()? as usize);
    }
    let memory = match (node.get("hugepages"), node.get("no_huge_mb")) {
        (Some(h), None) => {
            let h = h.node();
            h.expect_fields(&["size", "pages"], &[])?;
            let size = h.require("size")?;
            let page_kib = match size.node().as_str()? {
                "2MB" => 2048,
                "1GB" => 1_048_576,
                other => {
                    return Err(size
                        .node()
                        .error(format!("\"{other}\": hugepage size is 2MB or 1GB")))
                }
            };
            Memory::Hugepages {
                page_kib,
                pages: h.require("pages")?.node().as_u64()?,
            }
        }
        (None, Some(m)) => Memory::NoHuge {
            megabytes: m.node().as_u64()?,
        },
        _ => return Err(node.error("give exactly one of hugepages {size, pages} or no_huge_mb")),
    };
    Ok(EalConfig {
        lcores,
        memory_channels: node
            .get("memory_channels")
            .map(|n| n.node().as_u32())
            .transpose()?,
        memory,
        in_memory: node
            .get("in_memory")
            .map(|n| n.node().as_bool())
            .transpose()?
            .unwrap_or(false),
        vdevs: strings(node.get("vdevs"))?,
        pci_allow: strings(node.get("pci_allow"))?,
        extra_args: strings(node.get("extra_args"))?,
    })
}

fn parse_port(node: Node<'_>) -> Result<PortConfig> {
    node.expect_fields(
        &[
            "name",
            "device",
            "rx_queues",
            "tx_queues",
            "rx_descriptors",
            "tx_descriptors",
            "mtu",
            "rss",
            "addresses",
            "gateways",
            "mac",
        ],
        &[],
    )?;
    let device = node.require("device")?.node().as_str()?.to_string();
    let device = if is_pci_address(&device) {
        PortDevice::Pci(device)
    } else {
        PortDevice::Vdev(device)
    };
    let or = |key: &str, default: u16| -> Result<u16> {
        node.get(key)
            .map(|n| small(n.node()))
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let rss = match node.get("rss") {
        None => Rss::Symmetric,
        Some(r) => {
            let r = r.node();
            r.expect_fields(&["key"], &[])?;
            let key = r.require("key")?;
            let k = key.node();
            match k.as_str()? {
                "symmetric" => Rss::Symmetric,
                hex => Rss::Key(
                    parse_hex(hex)
                        .ok_or_else(|| k.error("expected \"symmetric\" or the key in hex"))?,
                ),
            }
        }
    };
    Ok(PortConfig {
        name: node.require("name")?.node().as_str()?.to_string(),
        device,
        rx_queues: or("rx_queues", 1)?,
        tx_queues: or("tx_queues", 1)?,
        rx_descriptors: or("rx_descriptors", 1024)?,
        tx_descriptors: or("tx_descriptors", 1024)?,
        mtu: or("mtu", 1500)?,
        rss,
    })
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| *c != ':').collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
