//! `sluice-control fallback up|down`: the host kernel's TAP for a dataplane that owns the wire.
//!
//! The TAP carries the stack's own addresses and MAC, so to the network the host and sluice
//! are one machine: sluice serves its listeners, and everything else the rules in
//! `sluice.io.fallback` select reaches the kernel through this TAP (see tcpstack's `fallback`).
//! It is multi-queue, so each of the dataplane's workers attaches a queue of its own, and
//! persistent, so it keeps its addresses while the dataplane restarts.

use sluice::config::userspace::format_mac;
use sluice::config::{Bootstrap, IoBackend};
use std::net::IpAddr;
use std::process::Command;

/// What the TAP gets, from the dataplane's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub tap: String,
    pub mac: [u8; 6],
    pub mtu: usize,
    pub addresses: Vec<(IpAddr, u8)>,
    pub gateways: Vec<IpAddr>,
}

/// The plan for the dataplane config `b`. A DPDK port's MAC is the NIC's, which only DPDK can
/// read: unless the config sets `mac`, it must be given (`mac`, from `--mac`).
pub fn plan(b: &Bootstrap, mac: Option<[u8; 6]>) -> Result<Plan, String> {
    let io = &b.sluice.userspace;
    let tap = tap_name(b)?;
    let (addresses, gateways, config_mac, mtu) = match (b.sluice.io_backend, &io.dpdk, &io.tap) {
        (IoBackend::Dpdk, Some(d), _) => (
            &d.addresses.addresses,
            &d.addresses.gateways,
            d.addresses.mac,
            d.hw.ports[0].mtu as usize,
        ),
        (_, _, Some(t)) => (&t.addresses, &t.gateways, Some(t.mac), t.mtu),
        _ => return Err("sluice.io.fallback needs backend tap or dpdk, with its section".into()),
    };
    let mac = mac.or(config_mac).ok_or(
        "the DPDK port's MAC is not in the config (sluice.io.dpdk.ports[0].mac): give the NIC's \
         address with --mac (`sluice hwconfig check` or `dpdk-devbind.py` shows it)",
    )?;
    Ok(Plan {
        tap: tap.to_string(),
        mac,
        mtu,
        addresses: addresses.clone(),
        gateways: gateways.clone(),
    })
}

/// The fallback TAP's name in the dataplane config `b`.
pub fn tap_name(b: &Bootstrap) -> Result<&str, String> {
    let f = b.sluice.userspace.fallback.as_ref();
    f.map(|f| f.tap.as_str()).ok_or_else(|| {
        "the config has no sluice.io.fallback section (with `tap`, the TAP's name)".to_string()
    })
}

/// The `ip` commands that make the TAP as `plan` says; with `routes`, default routes through
/// the stack's gateways too (when the wire is the host's only way out).
pub fn up_commands(plan: &Plan, exists: bool, routes: bool) -> Vec<Vec<String>> {
    let tap = plan.tap.as_str();
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let mut ip = |args: &[&str]| cmds.push(args.iter().map(|s| s.to_string()).collect());
    if !exists {
        ip(&["tuntap", "add", "dev", tap, "mode", "tap", "multi_queue"]);
    }
    let mac = format_mac(plan.mac);
    let mtu = plan.mtu.to_string();
    ip(&["link", "set", "dev", tap, "address", &mac, "mtu", &mtu]);
    for (addr, prefix) in &plan.addresses {
        let cidr = format!("{addr}/{prefix}");
        if addr.is_ipv6() {
            // The stack answers for it already: no duplicate address detection to wait out.
            ip(&["addr", "replace", &cidr, "dev", tap, "nodad"]);
        } else {
            ip(&["addr", "replace", &cidr, "dev", tap]);
        }
    }
    ip(&["link", "set", "dev", tap, "up"]);
    if routes {
        for gw in &plan.gateways {
            let family = if gw.is_ipv6() { "-6" } else { "-4" };
            let gw = gw.to_string();
            ip(&[
                family, "route", "replace", "default", "via", &gw, "dev", tap,
            ]);
        }
    }
    cmds
}

/// Makes (or, if it is already there, reconfigures) the fallback TAP.
pub fn up(plan: &Plan, routes: bool) -> Result<(), String> {
    let exists = match tun_flags(&plan.tap) {
        None => false,
        Some(flags) if flags & (IFF_TAP | IFF_MULTI_QUEUE) == IFF_TAP | IFF_MULTI_QUEUE => true,
        Some(_) => {
            return Err(format!(
                "{} exists but is not a multi-queue TAP; remove it (ip link del {}) or choose \
                 another sluice.io.fallback.tap",
                plan.tap, plan.tap
            ))
        }
    };
    if !exists && interface_exists(&plan.tap) {
        return Err(format!(
            "{} exists and is not a TAP; choose another sluice.io.fallback.tap",
            plan.tap
        ));
    }
    for args in up_commands(plan, exists, routes) {
        run_ip(&args)?;
    }
    Ok(())
}

/// Removes the TAP `tap` (and with it its addresses and routes). Nothing to remove is not an
/// error: the answer says whether there was anything.
pub fn down(tap: &str) -> Result<bool, String> {
    if !interface_exists(tap) {
        return Ok(false);
    }
    run_ip(&["link".into(), "del".into(), "dev".into(), tap.to_string()])?;
    Ok(true)
}

fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

const IFF_TAP: u32 = 0x0002;
const IFF_MULTI_QUEUE: u32 = 0x0100;

/// The TUN/TAP flags of interface `name`, if it is one.
fn tun_flags(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/tun_flags")).ok()?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

fn run_ip(args: &[String]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        format!("cannot run ip (iproute2): {e}; install it with apt-get install iproute2")
    })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let hint = if why.contains("Operation not permitted") {
            " (this needs root or CAP_NET_ADMIN)"
        } else {
            ""
        };
        return Err(format!("ip {}: {}{hint}", args.join(" "), why.trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bootstrap(sluice: serde_json::Value) -> Result<Bootstrap, String> {
        let doc = serde_json::json!({"sluice": sluice});
        sluice::config::bootstrap::parse_bootstrap(&doc).map_err(|e| e.to_string())
    }

    #[test]
    fn a_tap_config_gives_the_stacks_addresses_and_mac() {
        let b = bootstrap(serde_json::json!({"io": {
            "backend": "tap",
            "tap": {"name": "sl0", "addresses": ["10.97.0.2/24", "fd97::2/64"], "gateways": ["10.97.0.1"],
                    "mac": "02:00:00:00:97:02", "mtu": 9000},
            "fallback": {"tap": "slk0"}
        }}))
        .unwrap();
        let p = plan(&b, None).unwrap();
        assert_eq!(p.mac, [2, 0, 0, 0, 0x97, 2]);
        let cmds: Vec<String> = up_commands(&p, false, true)
            .into_iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            cmds,
            [
                "tuntap add dev slk0 mode tap multi_queue",
                "link set dev slk0 address 02:00:00:00:97:02 mtu 9000",
                "addr replace 10.97.0.2/24 dev slk0",
                "addr replace fd97::2/64 dev slk0 nodad",
                "link set dev slk0 up",
                "-4 route replace default via 10.97.0.1 dev slk0",
            ]
        );
        // `--mac` wins over the config's.
        assert_eq!(
            plan(&b, Some([2, 1, 1, 1, 1, 1])).unwrap().mac,
            [2, 1, 1, 1, 1, 1]
        );
    }

    #[test]
    fn without_a_fallback_section_or_a_dpdk_mac_it_says_what_is_missing() {
        let b = bootstrap(serde_json::json!({"io": {
            "backend": "tap", "tap": {"addresses": ["10.97.0.2/24"]}
        }}))
        .unwrap();
        assert!(plan(&b, None)
            .unwrap_err()
            .contains("no sluice.io.fallback section"));
    }
}
