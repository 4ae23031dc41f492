//! The validated hardware layout.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwConfig {
    pub eal: EalConfig,
    pub ports: Vec<PortConfig>,
    /// Which lcore polls which queue of which port: one worker per entry.
    pub queues: Vec<QueueBinding>,
    pub mempool: MempoolConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConfig {
    /// CPUs DPDK runs lcores on; the first is the main lcore.
    pub lcores: Vec<usize>,
    pub memory_channels: Option<u32>,
    pub memory: Memory,
    /// Keep no files in /var/run (several DPDK processes, tests).
    pub in_memory: bool,
    /// Virtual devices, as EAL `--vdev` strings ("net_tap0,iface=dtap0").
    pub vdevs: Vec<String>,
    /// PCI devices DPDK may use (allow-list); empty: none, unless ports name some.
    pub pci_allow: Vec<String>,
    /// Further EAL arguments passed as they are.
    pub extra_args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Memory {
    /// Hugepages of `page_kib` KiB, at least `pages` of them reserved.
    Hugepages { page_kib: u64, pages: u64 },
    /// Ordinary memory (`--no-huge`): slower, for tests and virtual devices.
    NoHuge { megabytes: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub name: String,
    pub device: PortDevice,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    pub mtu: u16,
    pub rss: Rss,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortDevice {
    /// A NIC by PCI address, "0000:3b:00.0".
    Pci(String),
    /// A virtual device by the name given in `eal.vdevs` ("net_tap0").
    Vdev(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rss {
    /// The symmetric Toeplitz key (0x6d5a repeated): both directions of a flow hash alike, so
    /// they reach the same queue and core.
    Symmetric,
    /// A 40- or 52-byte key given in hex; must itself be symmetric for proxied flows.
    Key(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBinding {
    pub lcore: usize,
    pub port: String,
    pub queue: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Mbufs per worker's pool.
    pub mbufs: u32,
    pub cache: u32,
    /// Bytes of packet room per mbuf (headroom included).
    pub data_room: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            mbufs: 8191,
            cache: 256,
            data_room: 2176,
        }
    }
}

/// The symmetric RSS key: any 16-bit period makes Toeplitz symmetric in (src, dst).
pub fn symmetric_key() -> Vec<u8> {
    [0x6d, 0x5a].repeat(20)
}

/// A layout rule broken, with the setting it is about (a path under `sluice.io.dpdk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> LayoutError {
    LayoutError {
        path: path.into(),
        message: message.into(),
    }
}

/// Whether `s` is a PCI address in DPDK's domain:bus:device.function form.
pub fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_hexdigit());
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&b[11])
}

impl HwConfig {
    /// Checks the rules that hold whatever the machine: every queue polled by exactly one
    /// lcore, lcores that are the EAL's, devices that exist in the config, sizes DPDK accepts.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let mut seen = HashSet::new();
        if self.eal.lcores.is_empty() {
            return Err(err("eal.lcores", "name at least one CPU"));
        }
        for (i, c) in self.eal.lcores.iter().enumerate() {
            if !seen.insert(*c) {
                return Err(err(
                    format!("eal.lcores[{i}]"),
                    format!("CPU {c} is listed twice"),
                ));
            }
        }
        for (i, a) in self.eal.pci_allow.iter().enumerate() {
            if !is_pci_address(a) {
                return Err(err(
                    format!("eal.pci_allow[{i}]"),
                    format!("\"{a}\" is not a PCI address (expected 0000:3b:00.0)"),
                ));
            }
        }
        let vdev_names: Vec<&str> = self
            .eal
            .vdevs
            .iter()
            .map(|v| v.split(',').next().unwrap_or(""))
            .collect();
        if self.ports.is_empty() {
            return Err(err("ports", "name at least one port"));
        }
        let mut names = HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let at = |f: &str| format!("ports[{i}].{f}");
            if !names.insert(p.name.as_str()) {
                return Err(err(
                    at("name"),
                    format!("port \"{}\" is defined twice", p.name),
                ));
            }
            match &p.device {
                PortDevice::Pci(a) if !is_pci_address(a) => {
                    return Err(err(
                        at("device"),
                        format!("\"{a}\" is neither a PCI address nor a vdev of eal.vdevs"),
                    ))
                }
                PortDevice::Vdev(v) if !vdev_names.contains(&v.as_str()) => {
                    return Err(err(
                        at("device"),
                        format!(
                            "\"{v}\" is neither a PCI address nor a vdev of eal.vdevs ({})",
                            vdev_names.join(", ")
                        ),
                    ))
                }
                _ => {}
            }
            if p.rx_queues == 0 || p.tx_queues == 0 {
                return Err(err(
                    at("rx_queues"),
                    "a port needs at least one RX and one TX queue",
                ));
            }
            for (f, d) in [
                ("rx_descriptors", p.rx_descriptors),
                ("tx_descriptors", p.tx_descriptors),
            ] {
                if !d.is_power_of_two() || !(64..=32768).contains(&d) {
                    return Err(err(
                        at(f),
                        format!("{d}: descriptors must be a power of two from 64 to 32768"),
                    ));
                }
            }
            if !(68..=9600).contains(&p.mtu) {
                return Err(err(
                    at("mtu"),
                    format!("{}: MTU must be from 68 to 9600", p.mtu),
                ));
            }
            if let Rss::Key(k) = &p.rss {
                if k.len() != 40 && k.len() != 52 {
                    return Err(err(
                        at("rss.key"),
                        format!("the key is {} bytes; NICs take 40 (or 52)", k.len()),
                    ));
                }
            }
        }
        let mut polled = HashSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            let at = |f: &str| format!("queues[{i}].{f}");
            if !self.eal.lcores.contains(&q.lcore) {
                return Err(err(
                    at("lcore"),
                    format!("CPU {} is not one of eal.lcores", q.lcore),
                ));
            }
            let Some(p) = self.ports.iter().find(|p| p.name == q.port) else {
                return Err(err(at("port"), format!("no port named \"{}\"", q.port)));
            };
            if q.queue >= p.rx_queues.min(p.tx_queues) {
                return Err(err(
                    at("queue"),
                    format!(
                        "port {} has queues 0 to {}",
                        p.name,
                        p.rx_queues.min(p.tx_queues) - 1
                    ),
                ));
            }
            if !polled.insert((q.port.as_str(), q.queue)) {
                return Err(err(
                    at("queue"),
                    format!(
                        "queue {} of port {} is polled by two lcores",
                        q.queue, q.port
                    ),
                ));
            }
        }
        for p in &self.ports {
            for q in 0..p.rx_queues {
                if !polled.contains(&(p.name.as_str(), q)) {
                    return Err(err("queues", format!("RX queue {q} of port {} is polled by no lcore: its packets would be lost", p.name)));
                }
            }
        }
        let data_room = self.mempool.data_room as u32;
        for (i, p) in self.ports.iter().enumerate() {
            // 128 bytes of headroom, then the frame.
            if (p.mtu as u32) + 14 + 4 + 128 > data_room {
                return Err(err(format!("ports[{i}].mtu"), format!("{} does not fit mempool.data_room {} (frame + 128 bytes of headroom); raise data_room", p.mtu, data_room)));
            }
        }
        let need: u32 = self
            .ports
            .iter()
            .map(|p| p.rx_descriptors as u32 + p.tx_descriptors as u32)
            .max()
            .unwrap_or(0);
        if self.mempool.mbufs < need + self.mempool.cache {
            return Err(err(
                "mempool.mbufs",
                format!(
                    "{} mbufs cannot fill {} descriptors plus a cache of {}",
                    self.mempool.mbufs, need, self.mempool.cache
                ),
            ));
        }
        Ok(())
    }
}
