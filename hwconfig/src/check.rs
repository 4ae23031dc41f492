//! Checks a machine against a layout and says, in plain words, what is missing and how to fix
//! it. Reads /proc and /sys under a root directory (the real `/`, or a fake tree in tests) and
//! changes nothing; [`apply`] does the few things it may do when asked (reserve hugepages,
//! mount hugetlbfs).

use crate::model::{HwConfig, Memory, PortDevice};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// The machine as seen through its /proc and /sys.
pub struct Machine {
    root: PathBuf,
    /// CPUs this process may run on.
    pub allowed_cpus: Vec<usize>,
    pub is_root: bool,
}

impl Machine {
    /// This machine.
    pub fn current() -> Machine {
        Machine {
            root: PathBuf::from("/"),
            allowed_cpus: allowed_cpus(),
            // SAFETY: geteuid has no preconditions.
            is_root: unsafe { libc::geteuid() } == 0,
        }
    }

    /// A fake machine: /proc and /sys under `root` (tests).
    pub fn at(root: &Path, allowed_cpus: Vec<usize>, is_root: bool) -> Machine {
        Machine {
            root: root.to_path_buf(),
            allowed_cpus,
            is_root,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn read(&self, p: &str) -> Option<String> {
        fs::read_to_string(self.path(p))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn exists(&self, p: &str) -> bool {
        self.path(p).exists()
    }

    fn hugepage_dir(page_kib: u64) -> String {
        format!("/sys/kernel/mm/hugepages/hugepages-{page_kib}kB")
    }

    fn hugetlbfs_mount(&self) -> Option<String> {
        let mounts = self.read("/proc/mounts")?;
        mounts
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(2) == Some(&"hugetlbfs"))
            .and_then(|f| f.get(1).map(|s| s.to_string()))
    }
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works, but not as well as it could (not isolated, wrong NUMA node).
    Warn,
    /// sluice cannot run this layout until it is fixed.
    Missing,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    pub fix: Option<String>,
}

fn ok(what: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        what: what.into(),
        fix: None,
    }
}

fn warn(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Warn,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

fn missing(what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level: Level::Missing,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

/// Drivers a NIC can be bound to for DPDK to drive it.
const DPDK_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

pub fn check(cfg: &HwConfig, m: &Machine) -> Vec<Finding> {
    let mut out = Vec::new();
    check_cpus(cfg, m, &mut out);
    check_memory(cfg, m, &mut out);
    for p in &cfg.ports {
        match &p.device {
            PortDevice::Pci(addr) => check_nic(&p.name, addr, cfg, m, &mut out),
            PortDevice::Vdev(name) => check_vdev(&p.name, name, cfg, m, &mut out),
        }
    }
    out
}

fn check_cpus(cfg: &HwConfig, m: &Machine, out: &mut Vec<Finding>) {
    let lcores = &cfg.eal.lcores;
    let absent: Vec<usize> = lcores
        .iter()
        .copied()
        .filter(|c| !m.allowed_cpus.contains(c))
        .collect();
    if absent.is_empty() {
        out.push(ok(format!(
            "lcores {}: available to this process",
            list(lcores)
        )));
    } else {
        out.push(missing(
            format!("lcores {}: not available to this process (it may use CPUs {})", list(&absent), list(&m.allowed_cpus)),
            "choose eal.lcores among the CPUs listed, or start sluice with a wider CPU set (taskset, cgroup cpuset)",
        ));
    }
    let isolated = m
        .read("/sys/devices/system/cpu/isolated")
        .map(|s| parse_cpu_list(&s))
        .unwrap_or_default();
    let busy: Vec<usize> = lcores
        .iter()
        .copied()
        .filter(|c| !isolated.contains(c))
        .collect();
    if !busy.is_empty() {
        out.push(warn(
            format!(
                "lcores {}: not isolated, so other tasks can run there and add jitter to polling",
                list(&busy)
            ),
            "boot with isolcpus=<lcores> nohz_full=<lcores> on a dedicated gateway (optional)",
        ));
    }
}

fn check_memory(cfg: &HwConfig, m: &Machine, out: &mut Vec<Finding>) {
    match cfg.eal.memory {
        Memory::NoHuge { megabytes } => out.push(ok(format!(
            "memory: {megabytes} MiB of ordinary pages (--no-huge; fine for virtual devices and tests, slower on a NIC)"
        ))),
        Memory::Hugepages { page_kib, pages } => {
            let dir = Machine::hugepage_dir(page_kib);
            if !m.exists(&dir) {
                out.push(missing(
                    format!("hugepages: this kernel has no {page_kib} KiB hugepages"),
                    "use eal.hugepages.size 2MB (or 1GB where the CPU supports it), or no_huge",
                ));
                return;
            }
            let free: u64 = m.read(&format!("{dir}/free_hugepages")).and_then(|v| v.parse().ok()).unwrap_or(0);
            let total: u64 = m.read(&format!("{dir}/nr_hugepages")).and_then(|v| v.parse().ok()).unwrap_or(0);
            if free >= pages {
                out.push(ok(format!("hugepages: {free} of {total} {page_kib} KiB pages free (need {pages})")));
            } else {
                out.push(missing(
                    format!("hugepages: {free} {page_kib} KiB pages free, {pages} needed ({total} reserved)"),
                    format!("echo {} > {dir}/nr_hugepages   (or: sluice hwconfig check --apply)", total + (pages - free)),
                ));
            }
            match m.hugetlbfs_mount() {
                Some(at) => out.push(ok(format!("hugetlbfs mounted at {at}"))),
                None => out.push(missing(
                    "hugetlbfs: not mounted, so DPDK cannot map hugepages",
                    "mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages   (or: sluice hwconfig check --apply)",
                )),
            }
        }
    }
}

fn check_nic(port: &str, addr: &str, cfg: &HwConfig, m: &Machine, out: &mut Vec<Finding>) {
    let dev = format!("/sys/bus/pci/devices/{addr}");
    if !m.exists(&dev) {
        out.push(missing(
            format!("port {port}: no PCI device {addr} on this machine"),
            "list the machine's devices with `lspci -D` (or dpdk-devbind.py --status) and use one of those addresses",
        ));
        return;
    }
    let driver = fs::read_link(m.path(&format!("{dev}/driver")))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    match driver.as_deref() {
        Some(d) if DPDK_DRIVERS.contains(&d) => out.push(ok(format!("port {port}: {addr} is bound to {d}"))),
        Some(d) if d.starts_with("mlx") => out.push(ok(format!(
            "port {port}: {addr} is driven by {d} (Mellanox NICs work with DPDK while bound to their kernel driver)"
        ))),
        Some(d) => out.push(missing(
            format!("port {port}: {addr} is bound to the kernel driver {d}, so DPDK cannot drive it"),
            format!("dpdk-devbind.py --bind=vfio-pci {addr}   (its kernel interface goes away while bound)"),
        )),
        None => out.push(missing(
            format!("port {port}: {addr} is bound to no driver"),
            format!("modprobe vfio-pci && dpdk-devbind.py --bind=vfio-pci {addr}"),
        )),
    }
    if driver.as_deref() == Some("vfio-pci") || driver.is_none() {
        let iommu = fs::read_dir(m.path("/sys/kernel/iommu_groups"))
            .map(|d| d.count() > 0)
            .unwrap_or(false);
        let noiommu = m
            .read("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode")
            .is_some_and(|v| v == "Y");
        if iommu {
            out.push(ok("IOMMU: enabled (vfio-pci can isolate the NIC)"));
        } else if noiommu {
            out.push(warn(
                "IOMMU: off; vfio runs in unsafe no-IOMMU mode",
                "enable the IOMMU (intel_iommu=on or amd_iommu=on, iommu=pt) for DMA isolation",
            ));
        } else {
            out.push(missing(
                "IOMMU: off, and vfio-pci needs it",
                "boot with intel_iommu=on iommu=pt (or amd_iommu=on), or for a lab machine: echo Y > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode",
            ));
        }
    }
    if let Some(node) = m
        .read(&format!("{dev}/numa_node"))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|n| *n >= 0)
    {
        let far: Vec<usize> = cfg
            .queues
            .iter()
            .filter(|q| q.port == port)
            .map(|q| q.lcore)
            .filter(|c| !m.exists(&format!("/sys/devices/system/cpu/cpu{c}/node{node}")))
            .collect();
        if far.is_empty() {
            out.push(ok(format!(
                "port {port}: on NUMA node {node}, with the lcores polling it"
            )));
        } else {
            out.push(warn(
                format!("port {port}: on NUMA node {node}, but lcores {} poll it from another node", list(&far)),
                format!("poll {addr} from CPUs of node {node} (see /sys/devices/system/node/node{node}/cpulist)"),
            ));
        }
    }
}

fn check_vdev(port: &str, name: &str, cfg: &HwConfig, m: &Machine, out: &mut Vec<Finding>) {
    let spec = cfg
        .eal
        .vdevs
        .iter()
        .find(|v| v.split(',').next() == Some(name))
        .cloned()
        .unwrap_or_default();
    let arg = |key: &str| {
        spec.split(',')
            .skip(1)
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
    };
    let kind = name.trim_end_matches(|c: char| c.is_ascii_digit());
    match kind {
        "net_tap" => {
            if !m.exists("/dev/net/tun") {
                out.push(missing(
                    format!("port {port}: {name} needs /dev/net/tun"),
                    "modprobe tun",
                ));
            } else if !m.is_root {
                out.push(missing(
                    format!("port {port}: {name} creates a TAP device, which needs CAP_NET_ADMIN"),
                    "run as root or grant CAP_NET_ADMIN",
                ));
            } else {
                out.push(ok(format!(
                    "port {port}: {name} (a TAP device towards the kernel)"
                )));
            }
        }
        "net_pcap" => {
            let files: Vec<String> = ["rx_pcap", "rx_iface"]
                .iter()
                .filter_map(|k| arg(k))
                .collect();
            match arg("rx_pcap") {
                Some(f) if !Path::new(&f).exists() => out.push(missing(
                    format!("port {port}: {name} reads {f}, which does not exist"),
                    "give rx_pcap= an existing capture",
                )),
                _ => out.push(ok(format!(
                    "port {port}: {name} ({})",
                    if files.is_empty() {
                        "pcap".to_string()
                    } else {
                        files.join(", ")
                    }
                ))),
            }
        }
        "net_af_packet" => match arg("iface") {
            Some(i) if m.exists(&format!("/sys/class/net/{i}")) => {
                out.push(ok(format!("port {port}: {name} on interface {i}")))
            }
            Some(i) => out.push(missing(
                format!("port {port}: {name} uses interface {i}, which does not exist"),
                "name an existing interface in iface= (ip link)",
            )),
            None => out.push(missing(
                format!("port {port}: {name} has no iface="),
                "add iface=<interface> to the vdev string",
            )),
        },
        _ => out.push(ok(format!("port {port}: {name} (virtual device)"))),
    }
}

/// What `--apply` does: reserve missing hugepages and mount hugetlbfs. Returns what it did.
pub fn apply(cfg: &HwConfig, m: &Machine) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let Memory::Hugepages { page_kib, pages } = cfg.eal.memory else {
        return Ok(done);
    };
    if !m.is_root {
        return Err("reserving hugepages and mounting hugetlbfs need root".into());
    }
    let dir = Machine::hugepage_dir(page_kib);
    if !m.exists(&dir) {
        return Err(format!("this kernel has no {page_kib} KiB hugepages"));
    }
    let free: u64 = m
        .read(&format!("{dir}/free_hugepages"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let total: u64 = m
        .read(&format!("{dir}/nr_hugepages"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if free < pages {
        let want = total + (pages - free);
        fs::write(m.path(&format!("{dir}/nr_hugepages")), want.to_string())
            .map_err(|e| format!("{dir}/nr_hugepages: {e}"))?;
        let got: u64 = m
            .read(&format!("{dir}/nr_hugepages"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if got < want {
            return Err(format!("asked the kernel for {want} {page_kib} KiB hugepages, it reserved {got} (memory too fragmented or too small)"));
        }
        done.push(format!("reserved {want} {page_kib} KiB hugepages"));
    }
    if m.hugetlbfs_mount().is_none() {
        let at = m.path("/dev/hugepages");
        fs::create_dir_all(&at).map_err(|e| format!("{}: {e}", at.display()))?;
        let target =
            std::ffi::CString::new(at.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
        let opts = std::ffi::CString::new(format!("pagesize={}K", page_kib)).expect("no NUL");
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                c"nodev".as_ptr(),
                target.as_ptr(),
                c"hugetlbfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(format!(
                "mount hugetlbfs on {}: {}",
                at.display(),
                std::io::Error::last_os_error()
            ));
        }
        done.push(format!("mounted hugetlbfs on {}", at.display()));
    }
    Ok(done)
}

/// The findings as text, one per line with its fix under it; and whether all is usable.
pub fn report(findings: &[Finding]) -> (String, bool) {
    let mut s = String::new();
    for f in findings {
        let tag = match f.level {
            Level::Ok => "ok     ",
            Level::Warn => "warn   ",
            Level::Missing => "MISSING",
        };
        let _ = writeln!(s, "{tag} {}", f.what);
        if let (Some(fix), true) = (&f.fix, f.level != Level::Ok) {
            let _ = writeln!(s, "        fix: {fix}");
        }
    }
    let usable = findings.iter().all(|f| f.level != Level::Missing);
    (s, usable)
}

fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// "0-3,8" → [0, 1, 2, 3, 8].
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}
