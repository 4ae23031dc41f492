//! One worker's view of a cluster: the shared host set, plus this worker's balancer state and
//! counters. Built per worker for each config snapshot; only that worker touches it.

use super::hosts::{ClusterHosts, HostSet};
use super::lb::{Balancer, Candidate, Rng};
use crate::config::ClusterConfig;
use crate::stats::{ClusterStats, HostStats, Shard};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

pub struct Host {
    pub address: SocketAddr,
    pub weight: u32,
    pub stats: Arc<HostStats>,
}

impl Candidate for Host {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn active(&self) -> u64 {
        self.stats.cx_active.get()
    }
}

struct View {
    version: u64,
    hosts: Rc<[Rc<Host>]>,
    balancer: Balancer,
}

pub struct Cluster {
    pub config: Arc<ClusterConfig>,
    pub stats: Arc<ClusterStats>,
    shared: Arc<ClusterHosts>,
    /// All workers' stats; this cluster only ever touches shard `worker`.
    all_stats: Arc<crate::stats::Stats>,
    worker: usize,
    view: RefCell<View>,
    rng: Rc<RefCell<Rng>>,
}

impl Cluster {
    pub fn new(
        config: Arc<ClusterConfig>,
        shared: Arc<ClusterHosts>,
        stats: Arc<crate::stats::Stats>,
        worker: usize,
        rng: Rc<RefCell<Rng>>,
    ) -> Cluster {
        let shard = &stats.shards[worker];
        let set = shared.current.load_full();
        let view = build_view(&config, &set, shard);
        Cluster {
            stats: shard.cluster(&config.name),
            config,
            shared,
            all_stats: stats,
            worker,
            view: RefCell::new(view),
            rng,
        }
    }

    /// How many hosts the cluster has now (refreshed if DNS changed the set).
    pub fn host_count(&self) -> usize {
        self.refresh();
        self.view.borrow().hosts.len()
    }

    fn refresh(&self) {
        let set = self.shared.current.load();
        if set.version != self.view.borrow().version {
            let v = build_view(&self.config, &set, &self.all_stats.shards[self.worker]);
            *self.view.borrow_mut() = v;
        }
    }

    /// Picks a host not yet in `tried` (indexes into `hosts()`).
    pub fn pick(&self, tried: &[usize]) -> Option<(usize, Rc<Host>)> {
        self.refresh();
        let mut view = self.view.borrow_mut();
        let view = &mut *view;
        let mut rng = self.rng.borrow_mut();
        let i = view
            .balancer
            .pick(&view.hosts, &mut rng, &|i| tried.contains(&i))?;
        Some((i, view.hosts[i].clone()))
    }
}

fn build_view(config: &ClusterConfig, set: &HostSet, shard: &Shard) -> View {
    let hosts: Rc<[Rc<Host>]> = set
        .hosts
        .iter()
        .map(|h| {
            Rc::new(Host {
                address: h.address,
                weight: h.weight,
                stats: shard.host(&config.name, &h.address.to_string()),
            })
        })
        .collect();
    View {
        version: set.version,
        balancer: Balancer::new(config.lb_policy, &hosts),
        hosts,
    }
}
