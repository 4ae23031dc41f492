//! Two stacks joined by an in-memory wire, driven on one thread.
#![allow(dead_code)]

use sluice_tcpstack::driver::{drive, Clock};
use sluice_tcpstack::memory::{pair_with, Impairment, MemoryDevice};
use sluice_tcpstack::socket::SharedStack;
use sluice_tcpstack::{PacketDevice, Stack, StackConfig, TcpTuning};
use std::cell::RefCell;
use std::rc::Rc;

pub fn config(last: u8) -> StackConfig {
    StackConfig {
        mac: [0x02, 0, 0, 0, 0, last],
        addresses: vec![
            (format!("10.0.0.{last}").parse().unwrap(), 24),
            (format!("fd00::{last}").parse().unwrap(), 64),
        ],
        gateways: vec![],
        seed: last as u64,
        tcp: TcpTuning::default(),
        max_flows: 100_000,
    }
}

pub fn shared(config: &StackConfig, dev: MemoryDevice, clock: Clock) -> SharedStack {
    let dev: Box<dyn PacketDevice> = Box::new(dev);
    Rc::new(RefCell::new(Stack::new(config, dev, clock.now()).unwrap()))
}

/// Stacks 10.0.0.1 (a) and 10.0.0.2 (b), each with its driver task spawned on the current
/// LocalSet.
pub fn spawn_pair(impairment: Option<Impairment>) -> (SharedStack, SharedStack) {
    let clock = Clock::start();
    let (da, db) = pair_with(1500, impairment);
    let a = shared(&config(1), da, clock);
    let b = shared(&config(2), db, clock);
    tokio::task::spawn_local(drive(a.clone(), clock));
    tokio::task::spawn_local(drive(b.clone(), clock));
    (a, b)
}

pub fn run<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// Deterministic filler so corruption shows as a mismatch.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

/// The frames the client sent in the golden handshake/data/FIN capture (ARP first).
pub fn golden_input() -> Vec<Vec<u8>> {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/replay/handshake_data_fin.in.pcap");
    sluice_tcpstack::pcap::read_frames(&p)
        .unwrap()
        .into_iter()
        .map(|f| f.data)
        .collect()
}
