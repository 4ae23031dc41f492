//! One worker's view of a cluster: the shared host set, plus this worker's balancer state and
//! counters. Built per worker for each config snapshot; only that worker touches it.
//!
//! Balancers run over *pools*: the healthy hosts of the whole cluster, or of one metadata
//! subset. Pools are rebuilt when DNS changes the host set or a health check changes a host's
//! state (both bump a version the view compares on each pick), so a pick never scans
//! unhealthy hosts. When no host of a pool is healthy, the pool uses all of them (Envoy's panic
//! mode) rather than failing every request.

use super::backoff::ConnectBackoff;
use super::hosts::{ClusterHosts, HostHealth, HostSet};
use super::lb::{Balancer, Candidate, Rng};
use crate::config::{ClusterConfig, LbPolicy, Metadata, SubsetFallback};
use crate::fasthash::FastMap;
use crate::io::connect::{Connector, Network};
use crate::stats::{ClusterStats, HostStats, Shard};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

pub struct Host {
    pub address: SocketAddr,
    pub weight: u32,
    pub metadata: Arc<Metadata>,
    pub health: Arc<HostHealth>,
    pub stats: Arc<HostStats>,
    /// Connect pacing: a host whose connect just failed is passed by for a while.
    pub backoff: Rc<ConnectBackoff>,
}

impl Host {
    pub fn note_connect_failure(&self) {
        self.backoff.failed(tokio::time::Instant::now());
    }
    pub fn note_connect_success(&self) {
        self.backoff.succeeded();
    }
}

impl Candidate for Host {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn active(&self) -> u64 {
        self.stats.cx_active.get() + self.stats.rq_active.get()
    }
}

/// What a pick is for: hosts already tried for this request, its hash key, and the endpoint
/// metadata its route asks for.
#[derive(Default)]
pub struct PickRequest<'a> {
    pub tried: &'a [usize],
    pub hash: Option<u64>,
    pub subset: Option<&'a Metadata>,
}

struct Pool {
    /// Indexes into the view's `hosts`.
    members: Vec<usize>,
    hosts: Vec<Rc<Host>>,
    balancer: Balancer,
}

impl Pool {
    /// The healthy hosts `wanted` selects, or all it selects when none is healthy; `None` when it
    /// selects no host at all.
    fn build(policy: LbPolicy, all: &[Rc<Host>], wanted: impl Fn(&Host) -> bool) -> Option<Pool> {
        let selected: Vec<usize> = (0..all.len()).filter(|&i| wanted(&all[i])).collect();
        if selected.is_empty() {
            return None;
        }
        let healthy: Vec<usize> = selected
            .iter()
            .copied()
            .filter(|&i| all[i].health.is_healthy())
            .collect();
        let members = if healthy.is_empty() {
            selected
        } else {
            healthy
        };
        let hosts: Vec<Rc<Host>> = members.iter().map(|&i| all[i].clone()).collect();
        let keys: Vec<String> = hosts.iter().map(|h| h.address.to_string()).collect();
        Some(Pool {
            balancer: Balancer::new(policy, &hosts, &keys),
            members,
            hosts,
        })
    }
}

struct View {
    version: u64,
    health_epoch: u64,
    hosts: Rc<[Rc<Host>]>,
    all: Option<Pool>,
    subsets: HashMap<Metadata, Option<Pool>>,
}

pub struct Cluster {
    pub config: Arc<ClusterConfig>,
    pub stats: Arc<ClusterStats>,
    /// How this cluster's upstream connections are made on this worker.
    pub connector: Connector,
    shared: Arc<ClusterHosts>,
    /// All workers' stats; this cluster only ever touches shard `worker`.
    all_stats: Arc<crate::stats::Stats>,
    worker: usize,
    view: RefCell<View>,
    /// Connect pacing per address, kept when the view is rebuilt.
    backoffs: RefCell<FastMap<SocketAddr, Rc<ConnectBackoff>>>,
    rng: Rc<RefCell<Rng>>,
}

impl Cluster {
    pub fn new(
        config: Arc<ClusterConfig>,
        shared: Arc<ClusterHosts>,
        stats: Arc<crate::stats::Stats>,
        worker: usize,
        rng: Rc<RefCell<Rng>>,
        network: &Network,
    ) -> Cluster {
        let shard = &stats.shards[worker];
        let set = shared.current.load_full();
        let backoffs = RefCell::new(FastMap::default());
        let view = build_view(&config, &set, shared.health_epoch(), shard, &backoffs);
        Cluster {
            stats: shard.cluster(&config.name),
            connector: Connector::new(network.clone(), config.connect_timeout),
            config,
            shared,
            all_stats: stats,
            worker,
            view: RefCell::new(view),
            backoffs,
            rng,
        }
    }

    /// How many hosts the cluster has now (refreshed if DNS changed the set).
    pub fn host_count(&self) -> usize {
        self.refresh();
        self.view.borrow().hosts.len()
    }

    fn refresh(&self) {
        let epoch = self.shared.health_epoch();
        let stale = {
            let v = self.view.borrow();
            v.version != self.shared.version() || v.health_epoch != epoch
        };
        if stale {
            let set = self.shared.current.load();
            let v = build_view(
                &self.config,
                &set,
                epoch,
                &self.all_stats.shards[self.worker],
                &self.backoffs,
            );
            *self.view.borrow_mut() = v;
        }
    }

    /// Picks a host for `req`; the index is stable for this view (what `tried` holds). Hosts
    /// whose connect just failed are passed by while they back off; `None` when no host is left.
    pub fn pick(&self, req: &PickRequest<'_>) -> Option<(usize, Rc<Host>)> {
        self.refresh();
        let mut view = self.view.borrow_mut();
        let pool = view.pool_for(&self.config, req.subset)?;
        let mut rng = self.rng.borrow_mut();
        let members = &pool.members;
        let hosts = &pool.hosts;
        let i = pool.balancer.pick(
            &pool.hosts,
            &mut rng,
            &|k| req.tried.contains(&members[k]) || hosts[k].backoff.is_active(),
            req.hash,
        )?;
        Some((pool.members[i], pool.hosts[i].clone()))
    }

    /// Whether the hosts `subset` selects are all passed by because their connects just
    /// failed: what a `None` from [`Cluster::pick`] then means is a connect failure answered
    /// at once, not a cluster without hosts.
    pub fn all_backing_off(&self, subset: Option<&Metadata>) -> bool {
        self.refresh();
        let mut view = self.view.borrow_mut();
        view.pool_for(&self.config, subset)
            .is_some_and(|p| p.hosts.iter().all(|h| h.backoff.is_active()))
    }
}

impl View {
    fn pool_for(&mut self, config: &ClusterConfig, subset: Option<&Metadata>) -> Option<&mut Pool> {
        let (Some(subset), Some(sc)) = (subset.filter(|s| !s.is_empty()), &config.subsets) else {
            // Without lb_subset_config a route's metadata_match selects nothing, as in Envoy.
            return self.all.as_mut();
        };
        if !self.subsets.contains_key(subset) {
            let keys: Vec<String> = subset.keys().cloned().collect();
            let selectable = sc.selectors.is_empty() || sc.selectors.contains(&keys);
            let matching = |want: &Metadata| {
                let want = want.clone();
                move |h: &Host| want.iter().all(|(k, v)| h.metadata.get(k) == Some(v))
            };
            let pool = selectable
                .then(|| Pool::build(config.lb_policy, &self.hosts, matching(subset)))
                .flatten()
                .or_else(|| match sc.fallback {
                    SubsetFallback::NoFallback => None,
                    SubsetFallback::AnyEndpoint => {
                        Pool::build(config.lb_policy, &self.hosts, |_| true)
                    }
                    SubsetFallback::DefaultSubset => {
                        Pool::build(config.lb_policy, &self.hosts, matching(&sc.default_subset))
                    }
                });
            self.subsets.insert(subset.clone(), pool);
        }
        self.subsets.get_mut(subset).and_then(|p| p.as_mut())
    }
}

fn build_view(
    config: &ClusterConfig,
    set: &HostSet,
    health_epoch: u64,
    shard: &Shard,
    backoffs: &RefCell<FastMap<SocketAddr, Rc<ConnectBackoff>>>,
) -> View {
    let mut backoffs = backoffs.borrow_mut();
    let hosts: Rc<[Rc<Host>]> = set
        .hosts
        .iter()
        .map(|h| {
            Rc::new(Host {
                address: h.address,
                weight: h.weight,
                metadata: h.metadata.clone(),
                health: h.health.clone(),
                stats: shard.host(&config.name, &h.address.to_string()),
                backoff: backoffs.entry(h.address).or_default().clone(),
            })
        })
        .collect();
    View {
        version: set.version,
        health_epoch,
        all: Pool::build(config.lb_policy, &hosts, |_| true),
        subsets: HashMap::new(),
        hosts,
    }
}
