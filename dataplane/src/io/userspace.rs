//! The userspace stack as the dataplane uses it: built on a worker's thread from `sluice.io`,
//! and installed there so that listeners and outgoing connections of that worker go through it.
//!
//! Installation is per thread because a stack, like everything a worker owns, is single-threaded
//! (`Rc`): code above the IO layer keeps calling `io::connect::connect` and never learns which
//! transport it got.

use crate::config::{TapConfig, UserspaceConfig};
use sluice_tcpstack::driver::{drive, Clock};
use sluice_tcpstack::impair::{Impaired, Impairment};
use sluice_tcpstack::pcap::{PcapSink, Recorder};
use sluice_tcpstack::socket::SharedStack;
use sluice_tcpstack::stats::StackStats;
use sluice_tcpstack::tap::TapDevice;
use sluice_tcpstack::{PacketDevice, Stack, StackConfig, TcpTuning};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// Which device a worker's stack runs on.
pub enum StackDevice {
    /// The TAP device of `sluice.io.tap` (one worker).
    Tap,
    /// A queue of the DPDK port (one per worker).
    #[cfg(feature = "dpdk")]
    Dpdk(super::dpdk::QueueAssignment),
}

/// Builds the stack `sluice.io` describes on this thread, installs it, and spawns its driver on
/// the current `LocalSet`. Errors say what failed in words (missing privilege, bad device).
pub fn start(io: &UserspaceConfig, on: StackDevice, worker: usize) -> Result<Started, String> {
    let t = &io.tcp;
    if let Some(s) = t.fixed_seed {
        tracing::warn!(
            seed = s,
            "sluice.io.tcp.fixed_seed: sequence numbers are predictable (replay tests only)"
        );
    }
    // Each use draws its own seed, unless the config fixes one for all.
    let seed = || t.fixed_seed.unwrap_or_else(random_seed);
    let tuning = TcpTuning {
        rx_buffer: t.receive_buffer_bytes,
        tx_buffer: t.send_buffer_bytes,
        congestion: t.congestion,
        keep_alive: t.keepalive_interval.map(to_smol),
        max_half_open: t.max_half_open,
        accept_backlog: t.accept_backlog,
        ..TcpTuning::default()
    };
    // The wire's MTU and whether its frames carry a virtio-net header, for the kernel's TAP.
    let (config, device, driver, section, wire) = match on {
        StackDevice::Tap => {
            let tap: &TapConfig = io.tap.as_ref().ok_or("sluice.io.tap is missing")?;
            let config = StackConfig {
                mac: tap.mac,
                addresses: tap.addresses.clone(),
                gateways: tap.gateways.clone(),
                seed: seed(),
                tcp: tuning,
                max_flows: t.max_connections,
            };
            let device = TapDevice::open(&tap.name, tap.mtu, tap.checksum_offload)
                .map_err(|e| e.to_string())?;
            tracing::info!(
                device = %tap.name,
                addresses = ?tap.addresses,
                mtu = tap.mtu,
                "userspace TCP/IP stack running on TAP"
            );
            let device: Box<dyn PacketDevice> = Box::new(device);
            let wire = (tap.mtu, tap.checksum_offload);
            (config, device, Driver::Signalled, "sluice.io.tap", wire)
        }
        #[cfg(feature = "dpdk")]
        StackDevice::Dpdk(q) => {
            let dpdk = io.dpdk.as_ref().ok_or("sluice.io.dpdk is missing")?;
            q.register_thread()?;
            let config = StackConfig {
                mac: dpdk.addresses.mac.unwrap_or(q.port.mac),
                addresses: dpdk.addresses.addresses.clone(),
                gateways: dpdk.addresses.gateways.clone(),
                seed: seed(),
                tcp: tuning,
                max_flows: t.max_connections,
            };
            tracing::info!(
                worker,
                device = %q.port.device,
                queue = q.queue,
                addresses = ?config.addresses,
                "userspace TCP/IP stack running on a DPDK queue"
            );
            let steering = q
                .fanout
                .is_some()
                .then(|| (q.port.steering.clone(), q.queue));
            let wire = (q.ip_mtu, false);
            let mut queue =
                sluice_tcpstack::dpdk_port::DpdkQueue::new(q.port, q.queue, q.pool, q.ip_mtu);
            if let Some((fanout, index)) = q.fanout {
                queue = queue.with_fanout(fanout, index);
            }
            let device: Box<dyn PacketDevice> = Box::new(queue);
            (
                config,
                device,
                Driver::Polled {
                    idle: dpdk.idle,
                    steering,
                },
                "sluice.io.dpdk",
                wire,
            )
        }
    };
    let device: Box<dyn PacketDevice> = match io.impair {
        Some(i) => {
            tracing::warn!(
                loss_percent = i.loss_per_10k as f64 / 100.0,
                delay = ?i.delay,
                "sluice.io.impair: dropping and delaying frames on purpose"
            );
            Box::new(Impaired::new(
                device,
                Impairment {
                    loss: i.loss_per_10k as f64 / 10_000.0,
                    delay: to_smol(i.delay),
                    seed: seed(),
                },
            ))
        }
        None => device,
    };
    let device: Box<dyn PacketDevice> = match &io.pcap {
        Some(path) => {
            // Several stacks (one per DPDK worker) record to files of their own.
            let path = if worker == 0 {
                path.clone()
            } else {
                let mut p = path.clone().into_os_string();
                p.push(format!(".{worker}"));
                p.into()
            };
            let sink = PcapSink::create(&path).map_err(|e| format!("sluice.io.pcap: {e}"))?;
            Box::new(Recorder::new(device, sink))
        }
        None => device,
    };
    let clock = Clock::start();
    let mut stack =
        Stack::new(&config, device, clock.now()).map_err(|e| format!("{section}: {e}"))?;
    if let Some(f) = &io.fallback {
        let (ip_mtu, vnet) = wire;
        stack.set_kernel_path(super::fallback::attach(f, config.mac, ip_mtu, vnet)?);
        tracing::info!(worker, tap = %f.tap, "frames the stack does not serve go to the host kernel");
    }
    let stats = stack.stats();
    #[cfg(feature = "dpdk")]
    if let Driver::Polled {
        steering: Some((steering, queue)),
        ..
    } = &driver
    {
        // Replies to our upstream connections must come back to this queue: only source
        // ports the NIC hashes here are used (the hash is over the reply's addresses; with the
        // symmetric key either direction gives the same).
        let (steering, queue) = (steering.clone(), *queue);
        stack.set_source_port_filter(Box::new(move |local, remote| {
            steering.queue_of(remote, local) == queue
        }));
    }
    let shared: SharedStack = Rc::new(RefCell::new(stack));
    let driver: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = match driver {
        Driver::Signalled => {
            let shared = shared.clone();
            Box::pin(async move {
                if let Err(e) = drive(shared, clock).await {
                    tracing::error!("the userspace stack stopped: {e}");
                }
            })
        }
        #[cfg(feature = "dpdk")]
        Driver::Polled { idle, .. } => Box::pin(sluice_tcpstack::driver::drive_polling(
            shared.clone(),
            clock,
            idle,
        )),
    };
    Ok(Started {
        stats,
        stack: shared,
        driver,
    })
}

/// A stack built and installed on this thread, not yet receiving.
pub struct Started {
    pub stats: Arc<StackStats>,
    /// The worker's stack: its listeners bind and its connectors connect through it.
    pub stack: SharedStack,
    /// The task that runs the stack: the worker spawns it once its first config serves, so no
    /// frame is taken off the device before the listeners it is for exist.
    pub driver: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
}

/// How the stack's driver learns of frames.
enum Driver {
    /// The device's descriptor becomes readable (TAP).
    Signalled,
    /// The device is polled (DPDK), with the idle policy and, when the port's queues are shared
    /// among workers, the RSS steering and this worker's queue.
    #[cfg(feature = "dpdk")]
    Polled {
        idle: sluice_tcpstack::driver::IdlePolicy,
        steering: Option<(sluice_hwconfig::rss::RssSteering, u16)>,
    },
}

fn to_smol(d: std::time::Duration) -> sluice_tcpstack::stack::Duration {
    sluice_tcpstack::stack::Duration::from_millis(d.as_millis() as u64)
}

/// Initial sequence numbers must not be predictable across restarts.
fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom fills the 8 bytes it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}
