//! The EAL argument list a layout turns into (what `rte_eal_init` will be given).

use crate::model::{HwConfig, Memory, PortDevice};

pub fn eal_args(cfg: &HwConfig) -> Vec<String> {
    let e = &cfg.eal;
    let mut a = vec!["sluice".to_string()];
    let lcores: Vec<String> = e.lcores.iter().map(|c| c.to_string()).collect();
    a.extend(["-l".into(), lcores.join(",")]);
    if let Some(n) = e.memory_channels {
        a.extend(["-n".into(), n.to_string()]);
    }
    if let Memory::NoHuge { megabytes } = e.memory {
        a.extend(["--no-huge".into(), "-m".into(), megabytes.to_string()]);
    }
    if e.in_memory {
        // DPDK 22.11 treats --no-huge as legacy memory, which --in-memory refuses; --no-shconf
        // gives the same "no files in /var/run" there.
        let flag = match e.memory {
            Memory::NoHuge { .. } => "--no-shconf",
            Memory::Hugepages { .. } => "--in-memory",
        };
        a.push(flag.into());
    }
    for v in &e.vdevs {
        a.extend(["--vdev".into(), v.clone()]);
    }
    let mut allow: Vec<&String> = e.pci_allow.iter().collect();
    for p in &cfg.ports {
        if let PortDevice::Pci(addr) = &p.device {
            if !allow.contains(&addr) {
                allow.push(addr);
            }
        }
    }
    if allow.is_empty() {
        // Only virtual devices: do not probe (and grab) the machine's NICs.
        a.push("--no-pci".into());
    }
    for addr in allow {
        a.extend(["-a".into(), addr.clone()]);
    }
    a.extend(e.extra_args.iter().cloned());
    a
}
