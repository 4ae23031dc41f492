//! Re-resolves STRICT_DNS clusters every `dns_refresh_rate`, on a thread of its own (the system
//! resolver blocks), and swaps each cluster's host set when the answer changes.

use crate::config::{ClusterConfig, Discovery};
use crate::proxy::hosts::{resolve, ClusterHosts};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Resolves the given clusters in parallel, one thread each, and installs the results.
pub fn resolve_all(clusters: &[(Arc<ClusterConfig>, Arc<ClusterHosts>)]) {
    std::thread::scope(|s| {
        for (config, hosts) in clusters {
            s.spawn(move || resolve_into(config, hosts));
        }
    });
}

fn resolve_into(config: &ClusterConfig, hosts: &ClusterHosts) {
    let (found, errors) = resolve(config);
    for e in &errors {
        tracing::warn!(cluster = %config.name, "DNS resolution failed: {e}");
    }
    // A failed lookup keeps the hosts we had rather than emptying the cluster.
    if found.is_empty() && !errors.is_empty() {
        return;
    }
    if hosts.update(found) {
        let set = hosts.current.load();
        tracing::info!(cluster = %config.name, hosts = ?set.hosts.iter().map(|h| h.address).collect::<Vec<_>>(), "DNS hosts changed");
    }
}

pub struct Refresher {
    stop: Arc<AtomicBool>,
}

impl Refresher {
    pub fn start(current: Arc<ArcSwap<Snapshot>>) -> Refresher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("sluice-dns".into())
            .spawn(move || {
                let mut due: HashMap<(u64, String), Instant> = HashMap::new();
                while !flag.load(Ordering::Relaxed) {
                    let snap = current.load_full();
                    let now = Instant::now();
                    due.retain(|(v, _), _| *v == snap.version);
                    for (name, entry) in &snap.clusters {
                        if entry.config.discovery != Discovery::StrictDns {
                            continue;
                        }
                        let key = (snap.version, name.clone());
                        let next = *due
                            .entry(key.clone())
                            .or_insert(now + entry.config.dns_refresh_rate);
                        if now >= next {
                            resolve_into(&entry.config, &entry.hosts);
                            due.insert(key, Instant::now() + entry.config.dns_refresh_rate);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the DNS refresh thread: {e}; STRICT_DNS clusters will not be re-resolved");
        }
        Refresher { stop }
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
