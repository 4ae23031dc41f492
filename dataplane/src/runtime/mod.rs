//! The running dataplane: its workers, and [`Dataplane::apply`], the one operation that changes
//! config. Start-up, SIGHUP reloads and (later) pushes from the control process all go through
//! it: validate, bind what is new, build an immutable snapshot, hand it to every worker between
//! events, and wait until all of them serve it. A failure anywhere leaves the old config serving.

pub mod deadline;
pub mod dns;
pub mod worker;

use crate::config::{Bootstrap, Discovery, IoBackend};
use crate::io::affinity::allowed_cpus;
use crate::io::listener::bind_reuseport;
use crate::io::userspace;
use crate::proxy::hosts::ClusterHosts;
use crate::snapshot::{ClusterEntry, ListenerKey, Snapshot};
use crate::stats::Stats;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use worker::{WorkerHandle, WorkerUpdate};

/// How long a worker may take to switch to a new snapshot before the apply is reported failed.
const WORKER_SWITCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct ApplyError(pub String);

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ApplyError {}

pub struct Dataplane {
    workers: Vec<WorkerHandle>,
    stats: Arc<Stats>,
    current: Arc<ArcSwap<Snapshot>>,
    bound: HashMap<ListenerKey, SocketAddr>,
    dns: Option<dns::Refresher>,
    health: Option<crate::proxy::health::HealthChecker>,
    /// With a userspace stack: the addresses it owns (listeners must use one of them).
    stack_addresses: Option<StackAddresses>,
}

/// Chooses the CPU of each worker: the configured list, or the CPUs this process may use.
pub fn worker_cpus(configured: Option<&[usize]>, workers: usize) -> Result<Vec<usize>, ApplyError> {
    let allowed =
        allowed_cpus().map_err(|e| ApplyError(format!("cannot read CPU affinity: {e}")))?;
    let pool: Vec<usize> = match configured {
        Some(list) => {
            if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(ApplyError(format!(
                    "sluice.workers.cpus: CPU {bad} is not available to this process (allowed: {allowed:?})"
                )));
            }
            list.to_vec()
        }
        None => allowed,
    };
    if pool.is_empty() {
        return Err(ApplyError("no CPU is available to run workers on".into()));
    }
    Ok((0..workers).map(|i| pool[i % pool.len()]).collect())
}

impl Dataplane {
    /// Starts `concurrency` pinned workers and applies the first config.
    pub fn start(bootstrap: Bootstrap, concurrency: usize) -> Result<Dataplane, ApplyError> {
        let ext = &bootstrap.sluice;
        ext.userspace.check(ext.io_backend).map_err(ApplyError)?;
        let (devices, cpus, stack_addresses) = match ext.io_backend {
            IoBackend::Kernel => {
                let cpus = worker_cpus(ext.worker_cpus.as_deref(), concurrency.max(1))?;
                (None, cpus, None)
            }
            IoBackend::Tap => {
                let tap = ext.userspace.tap.as_ref().expect("checked");
                if concurrency > 1 {
                    // One TAP queue feeds one stack; spreading flows over workers needs the
                    // NIC's RSS (the DPDK backend).
                    tracing::info!("TAP mode runs one worker (one TAP queue, one stack)");
                }
                let cpus = worker_cpus(ext.worker_cpus.as_deref(), 1)?;
                let addrs = StackAddresses {
                    addresses: tap.addresses.iter().map(|a| a.0).collect(),
                    setting: "sluice.io.tap.addresses",
                };
                (Some(vec![userspace::StackDevice::Tap]), cpus, Some(addrs))
            }
            IoBackend::Dpdk => start_dpdk(ext)?,
        };
        let concurrency = cpus.len();
        let stats = Stats::new(concurrency);
        let empty = Snapshot {
            version: 0,
            bootstrap: Arc::new(bootstrap.clone()),
            clusters: HashMap::new(),
            bound: Vec::new(),
        };
        let current = Arc::new(ArcSwap::from_pointee(empty));
        let mut workers = Vec::with_capacity(concurrency);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut devices = devices.map(|d| d.into_iter());
        for (id, cpu) in cpus.iter().enumerate() {
            let stack = devices.as_mut().and_then(|d| d.next()).map(|device| {
                worker::StackWorker {
                    io: ext.userspace.clone(),
                    current: current.clone(),
                    device,
                    // Health probes run on the first worker, through its stack.
                    health: id == 0,
                }
            });
            let w = worker::spawn(id, Some(*cpu), stats.clone(), stack, ready_tx.clone())
                .map_err(|e| ApplyError(format!("cannot start worker {id}: {e}")))?;
            workers.push(w);
        }
        drop(ready_tx);
        for _ in 0..concurrency {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ApplyError(e)),
                Err(_) => return Err(ApplyError("a worker stopped while starting".into())),
            }
        }
        let mut dp = Dataplane {
            workers,
            stats,
            current,
            bound: HashMap::new(),
            dns: None,
            health: None,
            stack_addresses,
        };
        dp.apply(bootstrap)?;
        dp.dns = Some(dns::Refresher::start(dp.current.clone()));
        if dp.stack_addresses.is_none() {
            // With a userspace stack, its worker runs the checks (see `StackWorker`).
            dp.health = Some(crate::proxy::health::HealthChecker::start(
                dp.current.clone(),
            ));
        }
        tracing::info!(workers = concurrency, cpus = ?cpus, "workers started");
        Ok(dp)
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    pub fn current(&self) -> Arc<ArcSwap<Snapshot>> {
        self.current.clone()
    }

    /// Swaps in a new config on every worker; returns the new version. On error nothing changed.
    pub fn apply(&mut self, bootstrap: Bootstrap) -> Result<u64, ApplyError> {
        let old = self.current.load_full();
        if old.version > 0 && old.bootstrap.sluice != bootstrap.sluice {
            // Backend, splice and CPU layout are fixed for the process's life.
            return Err(ApplyError(
                "the sluice: section cannot change on reload; restart sluice to change it".into(),
            ));
        }
        let version = old.version + 1;
        let clusters = build_clusters(&bootstrap);

        // Bind every new listener before touching any worker, so a port in use fails the whole
        // apply and the old config keeps serving.
        let n = self.workers.len();
        let mut per_worker: Vec<HashMap<ListenerKey, std::net::TcpListener>> =
            (0..n).map(|_| HashMap::new()).collect();
        let mut bound = HashMap::new();
        let mut names = Vec::new();
        for (i, l) in bootstrap.listeners.iter().enumerate() {
            let key = ListenerKey::of(l);
            let addr = match (self.bound.get(&key), &self.stack_addresses) {
                (Some(a), _) => *a,
                (None, Some(stack)) => {
                    // The worker listens on its stack; here only check the address is its.
                    stack.check(l.address).map_err(|e| {
                        ApplyError(format!("static_resources.listeners[{i}] ({}): {e}", l.name))
                    })?;
                    l.address
                }
                (None, None) => {
                    let sockets = bind_reuseport(l.address, n, l.backlog).map_err(|e| {
                        ApplyError(format!("static_resources.listeners[{i}] ({}): {e}", l.name))
                    })?;
                    let addr = sockets[0].local_addr().unwrap_or(l.address);
                    for (w, s) in sockets.into_iter().enumerate() {
                        per_worker[w].insert(key.clone(), s);
                    }
                    addr
                }
            };
            names.push((l.name.clone(), addr));
            bound.insert(key, addr);
        }

        let snapshot = Arc::new(Snapshot {
            version,
            bootstrap: Arc::new(bootstrap),
            clusters,
            bound: names,
        });
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for (w, sockets) in self.workers.iter().zip(per_worker) {
            let update = WorkerUpdate {
                snapshot: snapshot.clone(),
                sockets,
                done: done_tx.clone(),
            };
            if w.updates.send(update).is_err() {
                return Err(ApplyError(format!("worker {} has stopped", w.id)));
            }
        }
        drop(done_tx);
        let mut errors = Vec::new();
        for _ in 0..n {
            match done_rx.recv_timeout(WORKER_SWITCH_TIMEOUT) {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => errors.push(e),
                Err(_) => {
                    errors.push("a worker did not switch to the new config in time".into());
                    break;
                }
            }
        }
        // Workers that switched serve the new snapshot now, so it is current either way; an
        // error here is an internal fault, reported as such.
        self.bound = bound;
        self.current.store(snapshot);
        self.stats.server.config_version.set(version);
        if !errors.is_empty() {
            return Err(ApplyError(format!(
                "internal error applying config version {version}: {}",
                errors.join("; ")
            )));
        }
        Ok(version)
    }

    /// The listeners as bound now: name and actual address.
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.current.load().bound.clone()
    }
}

/// The addresses a userspace stack owns (listeners must use one), and the setting they are in.
struct StackAddresses {
    addresses: Vec<std::net::IpAddr>,
    setting: &'static str,
}

impl StackAddresses {
    /// Whether a listener may use `addr`: an explicit port, on one of the stack's addresses
    /// (or all of them).
    fn check(&self, addr: SocketAddr) -> Result<(), String> {
        if addr.port() == 0 {
            return Err(format!(
                "cannot listen on {addr}: the userspace stack needs an explicit port"
            ));
        }
        if !addr.ip().is_unspecified() && !self.addresses.contains(&addr.ip()) {
            return Err(format!(
                "cannot listen on {addr}: not an address of the userspace stack ({}: {})",
                self.setting,
                self.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }
}

/// The stack devices of the workers (none: kernel sockets), the workers' CPUs, the addresses.
type StackLayout = (
    Option<Vec<userspace::StackDevice>>,
    Vec<usize>,
    Option<StackAddresses>,
);

/// Brings up DPDK (EAL, pools, port) and gives each queue binding a worker on its lcore.
#[cfg(feature = "dpdk")]
fn start_dpdk(ext: &crate::config::SluiceExtension) -> Result<StackLayout, ApplyError> {
    let dpdk = ext.userspace.dpdk.as_ref().expect("checked");
    if ext.worker_cpus.is_some() {
        tracing::info!("DPDK mode: workers run on the lcores of sluice.io.dpdk.queues, not sluice.workers.cpus");
    }
    let plan = crate::io::dpdk::bring_up(dpdk).map_err(ApplyError)?;
    let cpus = plan.workers.iter().map(|(lcore, _)| *lcore).collect();
    let devices = plan
        .workers
        .into_iter()
        .map(|(_, q)| userspace::StackDevice::Dpdk(q))
        .collect();
    let addrs = StackAddresses {
        addresses: dpdk.addresses.addresses.iter().map(|a| a.0).collect(),
        setting: "sluice.io.dpdk.ports[0].addresses",
    };
    Ok((Some(devices), cpus, Some(addrs)))
}

#[cfg(not(feature = "dpdk"))]
fn start_dpdk(_: &crate::config::SluiceExtension) -> Result<StackLayout, ApplyError> {
    // UserspaceConfig::check already refuses this; kept as an error, not a panic.
    Err(ApplyError(
        "this build of sluice has no DPDK support".into(),
    ))
}

fn build_clusters(bootstrap: &Bootstrap) -> HashMap<String, ClusterEntry> {
    let mut out = HashMap::new();
    let mut to_resolve = Vec::new();
    for c in &bootstrap.clusters {
        let hosts = ClusterHosts::new(c);
        if c.discovery == Discovery::StrictDns {
            to_resolve.push((Arc::new(c.clone()), hosts.clone()));
        }
        out.insert(
            c.name.clone(),
            ClusterEntry {
                config: Arc::new(c.clone()),
                hosts,
            },
        );
    }
    // First resolution before the config serves, as Envoy warms clusters before using them.
    dns::resolve_all(&to_resolve);
    out
}
