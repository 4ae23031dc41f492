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

thread_local! {
    static CURRENT: RefCell<Option<SharedStack>> = const { RefCell::new(None) };
}

/// The stack installed on this thread, if any.
pub fn current() -> Option<SharedStack> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Builds the stack `sluice.io` describes on this thread, installs it, and spawns its driver on
/// the current `LocalSet`. Errors say what failed in words (missing privilege, bad device).
pub fn start(io: &UserspaceConfig) -> Result<Arc<StackStats>, String> {
    let tap: &TapConfig = io.tap.as_ref().ok_or("sluice.io.tap is missing")?;
    let t = &io.tcp;
    let config = StackConfig {
        mac: tap.mac,
        addresses: tap.addresses.clone(),
        gateways: tap.gateways.clone(),
        seed: seed(),
        tcp: TcpTuning {
            rx_buffer: t.receive_buffer_bytes,
            tx_buffer: t.send_buffer_bytes,
            congestion: t.congestion,
            keep_alive: t.keepalive_interval.map(to_smol),
            max_half_open: t.max_half_open,
            accept_backlog: t.accept_backlog,
            ..TcpTuning::default()
        },
        max_flows: t.max_connections,
    };
    let device =
        TapDevice::open(&tap.name, tap.mtu, tap.checksum_offload).map_err(|e| e.to_string())?;
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
        None => Box::new(device),
    };
    let device: Box<dyn PacketDevice> = match &io.pcap {
        Some(path) => {
            let sink = PcapSink::create(path).map_err(|e| format!("sluice.io.pcap: {e}"))?;
            Box::new(Recorder::new(device, sink))
        }
        None => Box::new(device),
    };
    let clock = Clock::start();
    let stack =
        Stack::new(&config, device, clock.now()).map_err(|e| format!("sluice.io.tap: {e}"))?;
    let stats = stack.stats();
    let shared: SharedStack = Rc::new(RefCell::new(stack));
    CURRENT.with(|c| *c.borrow_mut() = Some(shared.clone()));
    tokio::task::spawn_local(async move {
        if let Err(e) = drive(shared, clock).await {
            tracing::error!("the userspace stack stopped: {e}");
        }
    });
    tracing::info!(
        device = %tap.name,
        addresses = ?tap.addresses,
        mtu = tap.mtu,
        "userspace TCP/IP stack running on TAP"
    );
    Ok(stats)
}

fn to_smol(d: std::time::Duration) -> sluice_tcpstack::stack::Duration {
    sluice_tcpstack::stack::Duration::from_millis(d.as_millis() as u64)
}

/// Initial sequence numbers must not be predictable across restarts.
fn seed() -> u64 {
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
