//! The machine check against fake /proc and /sys trees, and the layout rules.

use sluice_hwconfig::check::{check, parse_cpu_list, report, Level, Machine};
use sluice_hwconfig::eal::eal_args;
use sluice_hwconfig::model::*;
use std::path::{Path, PathBuf};

fn layout(memory: Memory, device: PortDevice, vdevs: &[&str]) -> HwConfig {
    HwConfig {
        eal: EalConfig {
            lcores: vec![1, 2],
            memory_channels: Some(4),
            memory,
            in_memory: true,
            vdevs: vdevs.iter().map(|s| s.to_string()).collect(),
            pci_allow: vec![],
            extra_args: vec![],
        },
        ports: vec![PortConfig {
            name: "p0".into(),
            device,
            rx_queues: 2,
            tx_queues: 2,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mtu: 1500,
            rss: Rss::Symmetric,
        }],
        queues: vec![
            QueueBinding {
                lcore: 1,
                port: "p0".into(),
                queue: 0,
            },
            QueueBinding {
                lcore: 2,
                port: "p0".into(),
                queue: 1,
            },
        ],
        mempool: MempoolConfig::default(),
    }
}

struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Tree {
        let p = std::env::temp_dir().join(format!("sluice-hw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tree(p)
    }
    fn file(&self, path: &str, content: &str) -> &Self {
        let f = self.0.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, content).unwrap();
        self
    }
    fn link(&self, path: &str, to: &str) -> &Self {
        let f = self.0.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(to, f).unwrap();
        self
    }
    fn root(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Each wanted text starts some line of the report (indentation ignored).
fn assert_lines(text: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(w)),
            "no line starting {w:?} in:\n{text}"
        );
    }
}

#[test]
fn a_nic_on_a_kernel_driver_without_hugepages_or_iommu_is_explained() {
    let t = Tree::new("kernelnic");
    t.file(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        "0\n",
    )
    .file(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
        "0\n",
    )
    .file("/proc/mounts", "proc /proc proc rw 0 0\n")
    .file("/sys/bus/pci/devices/0000:3b:00.0/numa_node", "1\n")
    .file("/sys/bus/drivers/ice/.keep", "")
    .link(
        "/sys/bus/pci/devices/0000:3b:00.0/driver",
        "../../../bus/drivers/ice",
    );
    std::fs::create_dir_all(t.root().join("sys/devices/system/cpu/cpu1/node0")).unwrap();
    std::fs::create_dir_all(t.root().join("sys/devices/system/cpu/cpu2/node1")).unwrap();
    let cfg = layout(
        Memory::Hugepages {
            page_kib: 2048,
            pages: 512,
        },
        PortDevice::Pci("0000:3b:00.0".into()),
        &[],
    );
    cfg.validate().unwrap();
    let m = Machine::at(t.root(), vec![0, 1, 2, 3], true);
    let (text, usable) = report(&check(&cfg, &m));
    assert!(!usable, "{text}");
    assert_lines(
        &text,
        &[
            "MISSING hugepages: 0 2048 KiB pages free, 512 needed",
            "fix: echo 512 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            "MISSING hugetlbfs: not mounted",
            "MISSING port p0: 0000:3b:00.0 is bound to the kernel driver ice",
            "fix: dpdk-devbind.py --bind=vfio-pci 0000:3b:00.0",
            // lcore 1 is on node 0, the NIC on node 1.
            "warn    port p0: on NUMA node 1, but lcores 1 poll it from another node",
            "warn    lcores 1, 2: not isolated",
        ],
    );
}

#[test]
fn a_ready_machine_passes() {
    let t = Tree::new("ready");
    t.file(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        "1024\n",
    )
    .file(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
        "1024\n",
    )
    .file(
        "/proc/mounts",
        "nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n",
    )
    .file("/sys/devices/system/cpu/isolated", "1-2\n")
    .file("/sys/kernel/iommu_groups/7/.keep", "")
    .file("/sys/bus/drivers/vfio-pci/.keep", "")
    .link(
        "/sys/bus/pci/devices/0000:3b:00.0/driver",
        "../../../bus/drivers/vfio-pci",
    );
    let cfg = layout(
        Memory::Hugepages {
            page_kib: 2048,
            pages: 512,
        },
        PortDevice::Pci("0000:3b:00.0".into()),
        &[],
    );
    let m = Machine::at(t.root(), vec![0, 1, 2, 3], true);
    let findings = check(&cfg, &m);
    let (text, usable) = report(&findings);
    assert!(usable, "{text}");
    assert!(findings.iter().all(|f| f.level == Level::Ok), "{text}");
    assert!(text.contains("hugepages: 1024 of 1024 2048 KiB pages free (need 512)"));
}

#[test]
fn lcores_outside_the_process_cpu_set_and_vdev_prerequisites() {
    let t = Tree::new("vdev");
    let cfg = layout(
        Memory::NoHuge { megabytes: 512 },
        PortDevice::Vdev("net_af_packet0".into()),
        &["net_af_packet0,iface=nosuch9"],
    );
    cfg.validate().unwrap();
    let m = Machine::at(t.root(), vec![0, 1], false);
    let (text, usable) = report(&check(&cfg, &m));
    assert!(!usable);
    assert!(
        text.contains("MISSING lcores 2: not available to this process (it may use CPUs 0, 1)"),
        "{text}"
    );
    assert!(
        text.contains(
            "MISSING port p0: net_af_packet0 uses interface nosuch9, which does not exist"
        ),
        "{text}"
    );
    assert!(
        text.contains("ok      memory: 512 MiB of ordinary pages (--no-huge"),
        "{text}"
    );
}

#[test]
fn layout_rules_name_the_setting() {
    let good = layout(
        Memory::NoHuge { megabytes: 256 },
        PortDevice::Vdev("net_ring0".into()),
        &["net_ring0"],
    );
    good.validate().unwrap();
    let broken = |edit: &dyn Fn(&mut HwConfig)| {
        let mut c = good.clone();
        edit(&mut c);
        c.validate().unwrap_err().to_string()
    };
    assert_eq!(
        broken(&|c| c.queues.pop().map(|_| ()).unwrap()),
        "queues: RX queue 1 of port p0 is polled by no lcore: its packets would be lost"
    );
    assert_eq!(
        broken(&|c| c.queues[1].queue = 0),
        "queues[1].queue: queue 0 of port p0 is polled by two lcores"
    );
    assert_eq!(
        broken(&|c| c.queues[1].lcore = 7),
        "queues[1].lcore: CPU 7 is not one of eal.lcores"
    );
    assert_eq!(
        broken(&|c| c.queues[1].queue = 5),
        "queues[1].queue: port p0 has queues 0 to 1"
    );
    assert_eq!(
        broken(&|c| c.ports[0].rx_descriptors = 1000),
        "ports[0].rx_descriptors: 1000: descriptors must be a power of two from 64 to 32768"
    );
    assert_eq!(broken(&|c| c.ports[0].device = PortDevice::Vdev("net_tap0".into())), "ports[0].device: \"net_tap0\" is neither a PCI address nor a vdev of eal.vdevs (net_ring0)");
    assert_eq!(broken(&|c| c.ports[0].mtu = 9000), "ports[0].mtu: 9000 does not fit mempool.data_room 2176 (frame + 128 bytes of headroom); raise data_room");
    assert_eq!(
        broken(&|c| c.mempool.mbufs = 1000),
        "mempool.mbufs: 1000 mbufs cannot fill 2048 descriptors plus a cache of 256"
    );
    assert_eq!(
        broken(&|c| c.eal.lcores.push(1)),
        "eal.lcores[2]: CPU 1 is listed twice"
    );
    assert_eq!(
        broken(&|c| c.ports[0].rss = Rss::Key(vec![0; 10])),
        "ports[0].rss.key: the key is 10 bytes; NICs take 40 (or 52)"
    );
}

#[test]
fn eal_arguments() {
    let c = layout(
        Memory::NoHuge { megabytes: 256 },
        PortDevice::Vdev("net_ring0".into()),
        &["net_ring0"],
    );
    assert_eq!(
        eal_args(&c).join(" "),
        "sluice -l 1,2 -n 4 --no-huge -m 256 --no-shconf --vdev net_ring0 --no-pci"
    );
    let c = layout(
        Memory::Hugepages {
            page_kib: 2048,
            pages: 1,
        },
        PortDevice::Pci("0000:3b:00.0".into()),
        &[],
    );
    assert_eq!(
        eal_args(&c).join(" "),
        "sluice -l 1,2 -n 4 --in-memory -a 0000:3b:00.0"
    );
    assert_eq!(parse_cpu_list("0-2, 5,7-8"), vec![0, 1, 2, 5, 7, 8]);
    assert_eq!(symmetric_key().len(), 40);
}
