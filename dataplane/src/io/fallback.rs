//! The host kernel's side of a stack that owns the wire (`sluice.io.fallback`): each worker's
//! stack attaches one queue of the multi-queue TAP that `sluice-control fallback up` made with
//! the stack's addresses and MAC, and hands it what it does not serve.

use crate::config::userspace::format_mac;
use crate::config::FallbackConfig;
use sluice_tcpstack::fallback::KernelPath;
use sluice_tcpstack::tap::{TapDevice, TapMode};

/// Attaches to the fallback TAP for a stack with MAC `mac` whose wire carries IP packets of up
/// to `ip_mtu` bytes; `vnet` says whether the wire's frames come with a virtio-net header (a
/// TAP wire with checksum offload), which then passes through unchanged.
pub fn attach(
    f: &FallbackConfig,
    mac: [u8; 6],
    ip_mtu: usize,
    vnet: bool,
) -> Result<KernelPath, String> {
    let name = &f.tap;
    let sys = std::path::Path::new("/sys/class/net").join(name);
    let read = |file: &str| std::fs::read_to_string(sys.join(file)).map(|s| s.trim().to_string());
    let hint = "run `sluice-control fallback up -c CONFIG` first: it makes the TAP and gives it \
                the stack's addresses and MAC";
    let Ok(theirs) = read("address") else {
        return Err(format!(
            "sluice.io.fallback.tap: there is no interface {name}; {hint}"
        ));
    };
    let ours = format_mac(mac);
    if !theirs.eq_ignore_ascii_case(&ours) {
        return Err(format!(
            "sluice.io.fallback.tap: {name} has MAC {theirs} but the stack answers with {ours}: \
             both must use the same one ({hint}, with --mac {ours} if the stack's MAC is the NIC's)"
        ));
    }
    if let Some(mtu) = read("mtu").ok().and_then(|m| m.parse::<usize>().ok()) {
        if mtu > ip_mtu {
            return Err(format!(
                "sluice.io.fallback.tap: {name} has MTU {mtu}, larger than the wire's {ip_mtu}: \
                 the kernel would send packets the wire cannot carry"
            ));
        }
    }
    let mode = TapMode {
        vnet_header: vnet,
        // The kernel computes its checksums and segments its sends itself: what it hands over
        // must be fit for any wire, a NIC queue included.
        offloads: false,
        multi_queue: true,
        configure_link: false,
    };
    let device = TapDevice::attach(name, ip_mtu, mode)
        .map_err(|e| format!("sluice.io.fallback.tap: {e}"))?;
    Ok(KernelPath::new(Box::new(device), f.rules.clone()))
}
