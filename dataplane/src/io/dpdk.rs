//! The DPDK backend's bring-up (feature `dpdk`): the EAL from `sluice.io.dpdk.eal`, one mempool
//! per worker, the port with its queues, RSS and MTU; then, per worker, which queue it polls.
//! Runs on the main thread before any worker starts; every failure names the setting.

use crate::config::dpdk::DpdkConfig;
use sluice_hwconfig::dpdk::{register_thread, Eal, Mempool, Port, PortSetup};
use sluice_hwconfig::model::{PortDevice, Rss};
use sluice_tcpstack::dpdk_port::NeighborFanout;
use std::sync::Arc;

/// What one worker runs its stack on.
pub struct QueueAssignment {
    pub eal: Arc<Eal>,
    pub port: Arc<Port>,
    pub queue: u16,
    pub pool: Arc<Mempool>,
    pub ip_mtu: usize,
    /// With other workers polling other queues of the port: the ARP/NDP fan-out among them
    /// and this worker's index in it. Upstream source ports must then hash back to this queue.
    pub fanout: Option<(Arc<NeighborFanout>, usize)>,
}

impl QueueAssignment {
    /// On the worker's own thread: give it an lcore id (and so a mempool cache).
    pub fn register_thread(&self) -> Result<(), String> {
        register_thread(&self.eal)
    }
}

/// The brought-up backend: the CPU and queue of each worker, in worker order.
pub struct DpdkPlan {
    pub workers: Vec<(usize, QueueAssignment)>,
}

pub fn bring_up(cfg: &DpdkConfig) -> Result<DpdkPlan, String> {
    let hw = &cfg.hw;
    let args = sluice_hwconfig::eal::eal_args(hw);
    // rte_eal_init pins the calling thread to the main lcore; the main thread runs no packets
    // and its helper threads (admin, DNS) inherit its affinity, so it is put back afterwards.
    let affinity = crate::io::affinity::allowed_cpus().ok();
    if let Some(cpus) = &affinity {
        // Said here in sluice's words; DPDK would print its whole usage text instead.
        if let Some(bad) = hw.eal.lcores.iter().find(|c| !cpus.contains(c)) {
            return Err(format!(
                "sluice.io.dpdk.eal.lcores: CPU {bad} is not available to this process (allowed: {cpus:?})"
            ));
        }
    }
    let eal = Eal::init(&args).map_err(|e| {
        format!("sluice.io.dpdk.eal: {e} (run `sluice hwconfig check -c FILE` to see what the machine lacks)")
    })?;
    if let Some(cpus) = affinity {
        if let Err(e) = crate::io::affinity::set_current_thread(&cpus) {
            tracing::warn!("cannot restore the main thread's CPU set after EAL start: {e}");
        }
    }
    let eal = Arc::new(eal);
    let port_cfg = &hw.ports[0];
    let mut pools = Vec::new();
    for (i, b) in hw.queues.iter().enumerate() {
        let pool = Mempool::create(
            &eal,
            &format!("sluice-w{i}"),
            hw.mempool.mbufs,
            hw.mempool.cache,
            hw.mempool.data_room,
        )
        .map_err(|e| {
            format!(
                "sluice.io.dpdk.mempool (worker {i}, lcore {}): {e}",
                b.lcore
            )
        })?;
        pools.push(Arc::new(pool));
    }
    // Each RX queue fills from the pool of the worker that polls it.
    let mut rx_pools: Vec<&Mempool> = Vec::new();
    for q in 0..port_cfg.rx_queues {
        let w = hw.queues.iter().position(|b| b.queue == q).unwrap_or(0);
        rx_pools.push(&pools[w]);
    }
    let key = match &port_cfg.rss {
        Rss::Symmetric => sluice_hwconfig::model::symmetric_key(),
        Rss::Key(k) => k.clone(),
    };
    let device = match &port_cfg.device {
        PortDevice::Pci(d) | PortDevice::Vdev(d) => d.as_str(),
    };
    let setup = PortSetup {
        device,
        rx_queues: port_cfg.rx_queues,
        tx_queues: port_cfg.tx_queues,
        rx_descriptors: port_cfg.rx_descriptors,
        tx_descriptors: port_cfg.tx_descriptors,
        mtu: port_cfg.mtu,
        rss_key: &key,
        rx_pools: &rx_pools,
    };
    let port = Port::start(&eal, &setup)
        .map_err(|e| format!("sluice.io.dpdk.ports[0] ({}): {e}", port_cfg.name))?;
    if port_cfg.rx_queues > 1 && !port.rss_hardware {
        tracing::warn!(
            device,
            "the device does not hash flows to queues itself; whatever feeds its queues must \
             steer by the symmetric Toeplitz key and a round-robin table, as a NIC would"
        );
    }
    match port.link() {
        Ok((up, speed)) => {
            tracing::info!(device, up, speed_mbps = speed, mac = ?port.mac,
                rss_hardware = port.rss_hardware, reta_queried = port.reta_queried,
                reta_entries = port.steering.reta.len(), "DPDK port started");
            if !up {
                // Not fatal: a cable may be plugged in later, and DPDK polls on regardless.
                tracing::warn!(
                    device,
                    "the port's link is down: check the cable or the switch port"
                );
            }
        }
        Err(e) => tracing::warn!("{e}"),
    }
    let port = Arc::new(port);
    let fanout = (hw.queues.len() > 1).then(|| NeighborFanout::new(hw.queues.len()));
    let workers = hw
        .queues
        .iter()
        .zip(pools)
        .enumerate()
        .map(|(i, (b, pool))| {
            (
                b.lcore,
                QueueAssignment {
                    eal: eal.clone(),
                    port: port.clone(),
                    queue: b.queue,
                    pool,
                    ip_mtu: port_cfg.mtu as usize,
                    fanout: fanout.clone().map(|f| (f, i)),
                },
            )
        })
        .collect();
    Ok(DpdkPlan { workers })
}
