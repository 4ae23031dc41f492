//! A cluster's current endpoints, shared by all workers. STATIC clusters fill it once; STRICT_DNS
//! clusters are re-resolved every `dns_refresh_rate` by the main thread, which swaps in a new set.
//! Workers notice the new version the next time they pick a host.

use crate::config::{ClusterConfig, Discovery, DnsFamily, EndpointConfig, Metadata};
use crate::stats::Counter;
use arc_swap::ArcSwap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct HostAddr {
    pub address: SocketAddr,
    pub weight: u32,
    pub metadata: Arc<Metadata>,
    /// Shared by every worker and the health checker; survives DNS updates of the same address.
    pub health: Arc<HostHealth>,
}

impl PartialEq for HostAddr {
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address
            && self.weight == other.weight
            && self.metadata == other.metadata
    }
}

impl HostAddr {
    pub fn new(address: SocketAddr, weight: u32, metadata: Metadata) -> HostAddr {
        HostAddr {
            address,
            weight,
            metadata: Arc::new(metadata),
            health: Arc::new(HostHealth::default()),
        }
    }
}

/// One endpoint's active health-check state: written by the health checker only, read by
/// workers (relaxed loads) when they rebuild their balancers.
#[derive(Debug)]
pub struct HostHealth {
    healthy: AtomicBool,
    pub checks_total: Counter,
    pub check_failures: Counter,
    pub consecutive_failures: Counter,
    pub consecutive_successes: Counter,
}

impl Default for HostHealth {
    fn default() -> Self {
        HostHealth {
            // Envoy starts hosts healthy when it has no check result yet for a static cluster
            // only if no health checks are configured; sluice starts healthy and lets the first
            // failed checks (unhealthy_threshold of them) take the host out.
            healthy: AtomicBool::new(true),
            checks_total: Counter::default(),
            check_failures: Counter::default(),
            consecutive_failures: Counter::default(),
            consecutive_successes: Counter::default(),
        }
    }
}

impl HostHealth {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    /// Returns whether the state changed.
    pub fn set_healthy(&self, v: bool) -> bool {
        self.healthy.swap(v, Ordering::Relaxed) != v
    }
}

#[derive(Debug, Default)]
pub struct HostSet {
    pub version: u64,
    pub hosts: Vec<HostAddr>,
}

/// The shared, swappable host set of one cluster.
pub struct ClusterHosts {
    pub current: ArcSwap<HostSet>,
    /// Bumped whenever a host's health changes, so workers know to rebuild their balancers.
    pub health_epoch: AtomicU64,
    /// The version of `current`, readable without loading it (workers check it per pick).
    version: AtomicU64,
}

impl ClusterHosts {
    /// A STATIC cluster's hosts are known now; a STRICT_DNS cluster starts empty until resolved.
    pub fn new(config: &ClusterConfig) -> Arc<ClusterHosts> {
        let hosts = match config.discovery {
            Discovery::Static => config
                .endpoints
                .iter()
                .filter_map(|e| {
                    let ip: IpAddr = e.host.parse().ok()?;
                    Some(HostAddr::new(
                        SocketAddr::new(ip, e.port),
                        e.weight,
                        e.metadata.clone(),
                    ))
                })
                .collect(),
            Discovery::StrictDns => Vec::new(),
        };
        Arc::new(ClusterHosts {
            current: ArcSwap::from_pointee(HostSet { version: 1, hosts }),
            health_epoch: AtomicU64::new(0),
            version: AtomicU64::new(1),
        })
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn health_epoch(&self) -> u64 {
        self.health_epoch.load(Ordering::Relaxed)
    }

    pub fn bump_health_epoch(&self) {
        self.health_epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Installs a new resolution result if it differs from the current one.
    pub fn update(&self, mut hosts: Vec<HostAddr>) -> bool {
        let cur = self.current.load();
        if cur.hosts == hosts {
            return false;
        }
        // An address that stays keeps its health state.
        for h in &mut hosts {
            if let Some(old) = cur.hosts.iter().find(|o| o.address == h.address) {
                h.health = old.health.clone();
            }
        }
        let version = cur.version + 1;
        self.current.store(Arc::new(HostSet { version, hosts }));
        self.version.store(version, Ordering::Release);
        true
    }
}

/// Resolves every endpoint of a STRICT_DNS cluster (blocking: call from a blocking thread).
/// Each address a name resolves to becomes a host with the endpoint's weight. An endpoint that
/// does not resolve contributes nothing and is reported in the error list.
pub fn resolve(config: &ClusterConfig) -> (Vec<HostAddr>, Vec<String>) {
    let mut hosts = Vec::new();
    let mut errors = Vec::new();
    for ep in &config.endpoints {
        match resolve_endpoint(ep, config.dns_family) {
            Ok(list) if list.is_empty() => errors.push(format!(
                "{}:{}: no address of the requested family ({:?})",
                ep.host, ep.port, config.dns_family
            )),
            Ok(list) => hosts.extend(
                list.into_iter()
                    .map(|address| HostAddr::new(address, ep.weight, ep.metadata.clone())),
            ),
            Err(e) => errors.push(format!("{}:{}: {e}", ep.host, ep.port)),
        }
    }
    (hosts, errors)
}

fn resolve_endpoint(ep: &EndpointConfig, family: DnsFamily) -> std::io::Result<Vec<SocketAddr>> {
    let mut all: Vec<SocketAddr> = Vec::new();
    for a in (ep.host.as_str(), ep.port).to_socket_addrs()? {
        if !all.contains(&a) {
            all.push(a);
        }
    }
    let v4: Vec<_> = all.iter().copied().filter(|a| a.is_ipv4()).collect();
    let v6: Vec<_> = all.iter().copied().filter(|a| a.is_ipv6()).collect();
    Ok(match family {
        DnsFamily::All => all,
        DnsFamily::V4Only => v4,
        DnsFamily::V6Only => v6,
        DnsFamily::PreferV4 if !v4.is_empty() => v4,
        DnsFamily::PreferV4 => v6,
        DnsFamily::PreferV6 if !v6.is_empty() => v6,
        DnsFamily::PreferV6 => v4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LbPolicy;
    use std::time::Duration;

    fn cluster(discovery: Discovery, host: &str, family: DnsFamily) -> ClusterConfig {
        ClusterConfig {
            name: "c".into(),
            discovery,
            connect_timeout: Duration::from_secs(1),
            lb_policy: LbPolicy::RoundRobin,
            endpoints: vec![EndpointConfig {
                host: host.into(),
                port: 80,
                weight: 2,
                metadata: Metadata::new(),
            }],
            dns_refresh_rate: Duration::from_secs(5),
            dns_family: family,
            buffer_limit: None,
            subsets: None,
            health_checks: Vec::new(),
            http: Default::default(),
        }
    }

    #[test]
    fn static_hosts_are_known_at_once() {
        let h = ClusterHosts::new(&cluster(Discovery::Static, "10.0.0.1", DnsFamily::All));
        let set = h.current.load();
        assert_eq!(
            set.hosts,
            vec![HostAddr::new(
                "10.0.0.1:80".parse().unwrap(),
                2,
                Metadata::new()
            )]
        );
    }

    #[test]
    fn localhost_resolves_with_family_filter() {
        let c = cluster(Discovery::StrictDns, "localhost", DnsFamily::V4Only);
        let (hosts, errors) = resolve(&c);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(hosts.iter().all(|h| h.address.is_ipv4() && h.weight == 2));
        assert!(hosts
            .iter()
            .any(|h| h.address == "127.0.0.1:80".parse().unwrap()));
    }

    #[test]
    fn unresolvable_name_is_reported() {
        let c = cluster(Discovery::StrictDns, "no-such-host.invalid", DnsFamily::All);
        let (hosts, errors) = resolve(&c);
        assert!(hosts.is_empty());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("no-such-host.invalid:80:"),
            "{errors:?}"
        );
    }

    #[test]
    fn update_bumps_the_version_only_on_change() {
        let h = ClusterHosts::new(&cluster(Discovery::StrictDns, "x", DnsFamily::All));
        let one = vec![HostAddr::new(
            "127.0.0.1:1".parse().unwrap(),
            1,
            Metadata::new(),
        )];
        assert!(h.update(one.clone()));
        assert!(!h.update(one));
        assert_eq!(h.current.load().version, 2);
    }
}
