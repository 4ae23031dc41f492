//! Counters and gauges, sharded per worker.
//!
//! Each worker owns one `Shard`; only that worker ever writes the atomics in it (relaxed adds on
//! cache lines no other core writes), and the admin thread sums the shards when it renders
//! `/stats`. The maps from names to counter blocks are locked only when a worker builds its state
//! for a new config snapshot, never per connection.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    /// Each counter has exactly one writer (a worker writes only its own shard, the health
    /// checker only endpoint health, the main thread only server stats), so an update is a plain
    /// load and store: no locked read-modify-write on the per-request path. Readers (admin) see
    /// a value at most one update old.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
    #[inline]
    pub fn dec(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(1),
            Ordering::Relaxed,
        );
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Declares a block of named metrics with a way to visit them all, so rendering never drifts from
/// the fields.
macro_rules! metric_block {
    ($(#[$m:meta])* $name:ident { $($field:ident : $kind:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Default, Debug)]
        pub struct $name { $(pub $field: Counter),* }
        impl $name {
            pub fn visit(&self, mut f: impl FnMut(&'static str, Kind, u64)) {
                $( f(stringify!($field), Kind::$kind, self.$field.get()); )*
            }
        }
    };
}

metric_block!(
    /// Per listener (keyed by listener name).
    ListenerStats {
        downstream_cx_total: Counter,
        downstream_cx_active: Gauge,
        downstream_cx_accept_errors: Counter,
    }
);

metric_block!(
    /// Per cluster (keyed by cluster name).
    ClusterStats {
        upstream_cx_total: Counter,
        upstream_cx_active: Gauge,
        upstream_cx_connect_fail: Counter,
        upstream_cx_connect_timeout: Counter,
        upstream_cx_none_healthy: Counter,
        upstream_cx_rx_bytes_total: Counter,
        upstream_cx_tx_bytes_total: Counter,
        upstream_rq_total: Counter,
        upstream_rq_active: Gauge,
        upstream_rq_timeout: Counter,
        upstream_rq_retry: Counter,
        upstream_rq_connection_closed: Counter,
        upstream_rq_overflow: Counter,
        upstream_rq_no_healthy: Counter,
        upstream_cx_heartbeat_failure: Counter,
        upstream_cx_protocol_error: Counter,
        upstream_flow_control_backed_up_total: Counter,
        upstream_heartbeat_ack_dropped: Counter,
        upstream_cx_http1_total: Counter,
        upstream_cx_http2_total: Counter,
        upstream_rq_1xx: Counter,
        upstream_rq_2xx: Counter,
        upstream_rq_3xx: Counter,
        upstream_rq_4xx: Counter,
        upstream_rq_5xx: Counter,
        upstream_rq_per_try_timeout: Counter,
        upstream_rq_rx_reset: Counter,
        upstream_rq_retry_success: Counter,
    }
);

metric_block!(
    /// Per endpoint of a cluster (keyed by cluster name and address).
    HostStats {
        cx_total: Counter,
        cx_active: Gauge,
        cx_connect_fail: Counter,
        rq_total: Counter,
        rq_active: Gauge,
    }
);

metric_block!(
    /// Per tcp_proxy `stat_prefix`.
    TcpProxyStats {
        downstream_cx_total: Counter,
        downstream_cx_rx_bytes_total: Counter,
        downstream_cx_tx_bytes_total: Counter,
        downstream_cx_no_route: Counter,
        idle_timeout: Counter,
        upstream_connect_attempts_exceeded: Counter,
        upstream_flush_total: Counter,
    }
);

metric_block!(
    /// Per rpc_proxy `stat_prefix`.
    RpcProxyStats {
        downstream_cx_total: Counter,
        downstream_cx_active: Gauge,
        downstream_cx_protocol_error: Counter,
        downstream_cx_unknown_protocol: Counter,
        downstream_cx_passthrough: Counter,
        downstream_rq_total: Counter,
        downstream_rq_active: Gauge,
        downstream_rq_oneway: Counter,
        downstream_rq_no_route: Counter,
        downstream_rq_local_reply: Counter,
        downstream_rs_total: Counter,
        downstream_heartbeat: Counter,
        downstream_unexpected_response: Counter,
        downstream_rq_oneway_dropped: Counter,
        downstream_cx_idle_timeout: Counter,
        downstream_cx_frame_timeout: Counter,
        downstream_flow_control_paused_reading_total: Counter,
        downstream_flow_control_resumed_reading_total: Counter,
        upstream_rs_late: Counter,
        upstream_heartbeat_sent: Counter,
    }
);

metric_block!(
    /// Per http_connection_manager `stat_prefix` (Envoy's `http.<stat_prefix>.*`, router stats
    /// included).
    HttpStats {
        downstream_cx_total: Counter,
        downstream_cx_active: Gauge,
        downstream_cx_http1_total: Counter,
        downstream_cx_http2_total: Counter,
        downstream_cx_protocol_error: Counter,
        downstream_cx_idle_timeout: Counter,
        downstream_cx_drain_close: Counter,
        downstream_rq_total: Counter,
        downstream_rq_active: Gauge,
        downstream_rq_http1_total: Counter,
        downstream_rq_http2_total: Counter,
        downstream_rq_1xx: Counter,
        downstream_rq_2xx: Counter,
        downstream_rq_3xx: Counter,
        downstream_rq_4xx: Counter,
        downstream_rq_5xx: Counter,
        downstream_rq_completed: Counter,
        downstream_rq_rx_reset: Counter,
        downstream_rq_tx_reset: Counter,
        downstream_rq_timeout: Counter,
        downstream_rq_header_timeout: Counter,
        downstream_rq_idle_timeout: Counter,
        downstream_rq_too_large: Counter,
        downstream_rq_ws_on_non_ws_route: Counter,
        downstream_rq_failed_path_normalization: Counter,
        downstream_rq_max_duration_reached: Counter,
        downstream_rq_redirected_with_normalized_path: Counter,
        no_route: Counter,
        no_cluster: Counter,
        rq_direct_response: Counter,
        rq_redirect: Counter,
        rq_reset_after_downstream_response_started: Counter,
        access_log_dropped: Counter,
    }
);

metric_block!(
    /// Per worker, to show how connections spread over cores.
    WorkerStats {
        downstream_cx_total: Counter,
        downstream_cx_active: Gauge,
    }
);

metric_block!(
    /// Process-wide, written by the main thread.
    ServerStats {
        config_reloads_total: Counter,
        config_reload_failures_total: Counter,
        config_version: Gauge,
        control_pushes_total: Counter,
        control_push_rejected_total: Counter,
    }
);

type Map<T> = Mutex<BTreeMap<String, Arc<T>>>;

/// One worker's counters.
#[derive(Default)]
pub struct Shard {
    pub worker: WorkerStats,
    listeners: Map<ListenerStats>,
    clusters: Map<ClusterStats>,
    hosts: Map<HostStats>,
    tcp_proxies: Map<TcpProxyStats>,
    rpc_proxies: Map<RpcProxyStats>,
    http: Map<HttpStats>,
}

fn entry<T: Default>(map: &Map<T>, key: &str) -> Arc<T> {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(key.to_string()).or_default().clone()
}

impl Shard {
    pub fn listener(&self, name: &str) -> Arc<ListenerStats> {
        entry(&self.listeners, name)
    }
    pub fn cluster(&self, name: &str) -> Arc<ClusterStats> {
        entry(&self.clusters, name)
    }
    /// Host stats are keyed `cluster|address` so the same address in two clusters counts apart.
    pub fn host(&self, cluster: &str, address: &str) -> Arc<HostStats> {
        entry(&self.hosts, &host_key(cluster, address))
    }
    pub fn tcp_proxy(&self, stat_prefix: &str) -> Arc<TcpProxyStats> {
        entry(&self.tcp_proxies, stat_prefix)
    }
    pub fn rpc_proxy(&self, stat_prefix: &str) -> Arc<RpcProxyStats> {
        entry(&self.rpc_proxies, stat_prefix)
    }
    pub fn http(&self, stat_prefix: &str) -> Arc<HttpStats> {
        entry(&self.http, stat_prefix)
    }
}

fn host_key(cluster: &str, address: &str) -> String {
    format!("{cluster}|{address}")
}

/// All shards plus the process-wide block; shared by workers and the admin thread.
pub struct Stats {
    pub server: ServerStats,
    pub shards: Vec<Shard>,
    /// Each worker's userspace stack counters, once it runs one (indexed by worker).
    pub stacks: Vec<std::sync::OnceLock<Arc<sluice_tcpstack::stats::StackStats>>>,
}

/// The stack's counters only ever grow, except its gauges of live flows.
fn stack_metric_kind(metric: &str) -> Kind {
    if metric.starts_with("flows_active") || metric.starts_with("flows_half_open") {
        Kind::Gauge
    } else {
        Kind::Counter
    }
}

/// Sums one kind of block over every shard: name -> (metric -> (kind, value)).
fn sum_blocks<T>(
    shards: &[Shard],
    pick: impl Fn(&Shard) -> &Map<T>,
    visit: impl Fn(&T, &mut dyn FnMut(&'static str, Kind, u64)),
) -> BTreeMap<String, BTreeMap<&'static str, (Kind, u64)>> {
    let mut out: BTreeMap<String, BTreeMap<&'static str, (Kind, u64)>> = BTreeMap::new();
    for shard in shards {
        let map = pick(shard).lock().unwrap_or_else(|p| p.into_inner());
        for (name, block) in map.iter() {
            let slot = out.entry(name.clone()).or_default();
            visit(block, &mut |metric, kind, v| {
                slot.entry(metric).or_insert((kind, 0)).1 += v;
            });
        }
    }
    out
}

/// The value of one endpoint's stats, summed over workers.
#[derive(Default, Debug, Clone, Copy)]
pub struct HostTotals {
    pub cx_total: u64,
    pub cx_active: u64,
    pub cx_connect_fail: u64,
    pub rq_total: u64,
    pub rq_active: u64,
}

impl Stats {
    pub fn new(workers: usize) -> Arc<Stats> {
        Arc::new(Stats {
            server: ServerStats::default(),
            shards: (0..workers).map(|_| Shard::default()).collect(),
            stacks: (0..workers).map(|_| std::sync::OnceLock::new()).collect(),
        })
    }

    pub fn host_totals(&self, cluster: &str, address: &str) -> HostTotals {
        let key = host_key(cluster, address);
        let mut t = HostTotals::default();
        for shard in &self.shards {
            let map = shard.hosts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = map.get(&key) {
                t.cx_total += h.cx_total.get();
                t.cx_active += h.cx_active.get();
                t.cx_connect_fail += h.cx_connect_fail.get();
                t.rq_total += h.rq_total.get();
                t.rq_active += h.rq_active.get();
            }
        }
        t
    }

    /// Prometheus text exposition of everything, summed over workers (plus per-worker totals).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let mut series: BTreeMap<String, (Kind, Vec<(String, u64)>)> = BTreeMap::new();
        let mut push = |family: String, kind: Kind, labels: String, v: u64| {
            series
                .entry(family)
                .or_insert((kind, Vec::new()))
                .1
                .push((labels, v));
        };
        self.server
            .visit(|m, k, v| push(format!("sluice_server_{m}"), k, String::new(), v));
        for (i, shard) in self.shards.iter().enumerate() {
            shard.worker.visit(|m, k, v| {
                push(
                    format!("sluice_worker_{m}"),
                    k,
                    format!("worker=\"{i}\""),
                    v,
                )
            });
        }
        let blocks: [(&str, &str, BTreeMap<_, _>); 6] = [
            (
                "listener",
                "listener",
                sum_blocks(&self.shards, |s| &s.listeners, |b, f| b.visit(f)),
            ),
            (
                "cluster",
                "cluster",
                sum_blocks(&self.shards, |s| &s.clusters, |b, f| b.visit(f)),
            ),
            (
                "tcp",
                "stat_prefix",
                sum_blocks(&self.shards, |s| &s.tcp_proxies, |b, f| b.visit(f)),
            ),
            (
                "rpc",
                "stat_prefix",
                sum_blocks(&self.shards, |s| &s.rpc_proxies, |b, f| b.visit(f)),
            ),
            (
                "http",
                "stat_prefix",
                sum_blocks(&self.shards, |s| &s.http, |b, f| b.visit(f)),
            ),
            (
                "host",
                "",
                sum_blocks(&self.shards, |s| &s.hosts, |b, f| b.visit(f)),
            ),
        ];
        for (prefix, label, totals) in blocks {
            for (name, metrics) in totals {
                let labels = if label.is_empty() {
                    let (cluster, address) = name.split_once('|').unwrap_or(("", &name));
                    format!(
                        "cluster=\"{}\",address=\"{}\"",
                        escape_label(cluster),
                        escape_label(address)
                    )
                } else {
                    format!("{label}=\"{}\"", escape_label(&name))
                };
                for (metric, (kind, v)) in metrics {
                    push(format!("sluice_{prefix}_{metric}"), kind, labels.clone(), v);
                }
            }
        }
        // The stacks' counters summed, and with several stacks (one per DPDK lcore) each
        // worker's own as sluice_stack_worker_*{worker="N"}, which shows how RSS spreads flows.
        let stacks: Vec<(usize, &Arc<sluice_tcpstack::stats::StackStats>)> = self
            .stacks
            .iter()
            .enumerate()
            .filter_map(|(w, s)| s.get().map(|s| (w, s)))
            .collect();
        let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (worker, stack) in &stacks {
            for (metric, _help, v) in stack.each() {
                *totals.entry(metric).or_default() += v;
                if stacks.len() > 1 {
                    push(
                        format!("sluice_stack_worker_{metric}"),
                        stack_metric_kind(metric),
                        format!("worker=\"{worker}\""),
                        v,
                    );
                }
            }
        }
        for (metric, v) in totals {
            push(
                format!("sluice_stack_{metric}"),
                stack_metric_kind(metric),
                String::new(),
                v,
            );
        }
        for (family, (kind, rows)) in series {
            let t = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# TYPE {family} {t}");
            for (labels, v) in rows {
                if labels.is_empty() {
                    let _ = writeln!(out, "{family} {v}");
                } else {
                    let _ = writeln!(out, "{family}{{{labels}}} {v}");
                }
            }
        }
        out
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_summed_and_rendered() {
        let stats = Stats::new(2);
        stats.shards[0].cluster("c").upstream_cx_total.add(2);
        stats.shards[1].cluster("c").upstream_cx_total.add(3);
        stats.shards[1]
            .host("c", "127.0.0.1:80")
            .cx_connect_fail
            .inc();
        stats.shards[0].worker.downstream_cx_total.inc();
        let text = stats.render_prometheus();
        assert!(
            text.contains("# TYPE sluice_cluster_upstream_cx_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_cluster_upstream_cx_total{cluster=\"c\"} 5\n"),
            "{text}"
        );
        assert!(text
            .contains("sluice_host_cx_connect_fail{cluster=\"c\",address=\"127.0.0.1:80\"} 1\n"));
        assert!(text.contains("sluice_worker_downstream_cx_total{worker=\"0\"} 1\n"));
        assert!(text.contains("sluice_worker_downstream_cx_total{worker=\"1\"} 0\n"));
        assert_eq!(stats.host_totals("c", "127.0.0.1:80").cx_connect_fail, 1);
    }

    #[test]
    fn gauges_go_down() {
        let s = Shard::default();
        let l = s.listener("x");
        l.downstream_cx_active.inc();
        l.downstream_cx_active.dec();
        assert_eq!(l.downstream_cx_active.get(), 0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
