//! Active health checking: TCP connect, or a Bolt heartbeat that must be answered with success.
//!
//! Checks run on a thread of their own (with a small event loop), never on a worker. Each
//! (cluster, endpoint) with `health_checks` gets a task that checks every interval (+ jitter)
//! and flips the endpoint's shared health flag after `unhealthy_threshold` failures in a row or
//! `healthy_threshold` successes in a row; the very first result counts at once, so an endpoint
//! that is down at start-up is out before the first interval passes. Each flip bumps the
//! cluster's health epoch, and workers rebuild their balancers on their next pick.

use super::hosts::{ClusterHosts, HostHealth};
use super::lb::Rng;
use crate::config::{HealthCheckConfig, HealthCheckKind};
use crate::io::connect::{Connector, Network};
use crate::protocol::bolt::Bolt;
use crate::protocol::xprotocol::{Codec, FrameKind};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use bytes::BytesMut;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The outcome of one check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy(String),
}

/// Runs one check of `kind` against `addr`, connecting with `connector` (whose timeout bounds
/// the whole check).
pub async fn check_once(
    kind: &HealthCheckKind,
    connector: &Connector,
    addr: SocketAddr,
) -> Verdict {
    let timeout = connector.timeout();
    match tokio::time::timeout(timeout, probe(kind, connector, addr)).await {
        Ok(v) => v,
        Err(_) => Verdict::Unhealthy(format!("no answer within {timeout:?}")),
    }
}

async fn probe(kind: &HealthCheckKind, connector: &Connector, addr: SocketAddr) -> Verdict {
    // Through the same transport as the traffic: on a userspace-stack worker, through its stack.
    let mut stream = match connector.connect(addr).await {
        Ok(s) => s,
        Err(e) => return Verdict::Unhealthy(format!("connect: {e}")),
    };
    match kind {
        HealthCheckKind::TcpConnect => Verdict::Healthy,
        HealthCheckKind::Http {
            path,
            host,
            expected,
        } => http_probe(&mut stream, path, host.as_deref().unwrap_or(""), expected).await,
        HealthCheckKind::BoltHeartbeat => {
            let mut hb = BytesMut::new();
            Bolt.heartbeat(1, &mut hb);
            ask(&mut stream, &hb, |buf| match Bolt.decode(buf, 64 * 1024) {
                Ok(Some(head)) => Some(
                    if head.kind == FrameKind::HeartbeatAck
                        && head.request_id == 1
                        && Bolt.is_success(head.status)
                    {
                        Verdict::Healthy
                    } else {
                        Verdict::Unhealthy(format!(
                            "answered the heartbeat with {:?} status {}",
                            head.kind, head.status
                        ))
                    },
                ),
                Ok(None) => None,
                Err(e) => Some(Verdict::Unhealthy(format!("bad answer: {e}"))),
            })
            .await
        }
    }
}

/// Writes `request`, then reads until `answer` makes a verdict of what has arrived (`None`:
/// it needs more bytes).
async fn ask(
    stream: &mut crate::io::Connection,
    request: &[u8],
    mut answer: impl FnMut(&mut BytesMut) -> Option<Verdict>,
) -> Verdict {
    if let Err(e) = stream.write_all(request).await {
        return Verdict::Unhealthy(format!("write: {e}"));
    }
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(v) = answer(&mut buf) {
            return v;
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) => return Verdict::Unhealthy("closed without answering".into()),
            Ok(_) => {}
            Err(e) => return Verdict::Unhealthy(format!("read: {e}")),
        }
    }
}

/// An HTTP/1.1 GET with `Connection: close`, answered with a status in `expected`.
async fn http_probe(
    stream: &mut crate::io::Connection,
    path: &str,
    host: &str,
    expected: &[std::ops::Range<u16>],
) -> Verdict {
    use crate::protocol::http1::{encode, Limits, Message, ResponseDecoder};
    let mut req = BytesMut::new();
    encode::request_head(
        "GET",
        path.as_bytes(),
        [
            (&b"host"[..], host.as_bytes()),
            (b"user-agent", b"Envoy/HC"),
            (b"connection", b"close"),
        ],
        &mut req,
    );
    let mut decoder = ResponseDecoder::new(Limits::default());
    ask(stream, &req, |buf| loop {
        match decoder.decode(buf, false) {
            Ok(Some(Message::Head(h))) if (100..200).contains(&h.status) => continue,
            Ok(Some(Message::Head(h))) => {
                return Some(if expected.iter().any(|r| r.contains(&h.status)) {
                    Verdict::Healthy
                } else {
                    Verdict::Unhealthy(format!("answered {path} with status {}", h.status))
                });
            }
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(e) => return Some(Verdict::Unhealthy(format!("bad answer: {e}"))),
        }
    })
    .await
}

/// Applies one verdict to a host's state; returns whether the state flipped.
pub fn record(
    health: &HostHealth,
    config: &HealthCheckConfig,
    verdict: &Verdict,
    first: bool,
) -> bool {
    health.checks_total.inc();
    match verdict {
        Verdict::Healthy => {
            health.consecutive_failures.set(0);
            health.consecutive_successes.inc();
            let enough = health.consecutive_successes.get() >= u64::from(config.healthy_threshold);
            (first || enough) && health.set_healthy(true)
        }
        Verdict::Unhealthy(_) => {
            health.check_failures.inc();
            health.consecutive_successes.set(0);
            health.consecutive_failures.inc();
            let enough = health.consecutive_failures.get() >= u64::from(config.unhealthy_threshold);
            (first || enough) && health.set_healthy(false)
        }
    }
}

async fn check_loop(
    cluster: String,
    addr: SocketAddr,
    config: HealthCheckConfig,
    hosts: Arc<ClusterHosts>,
    health: Arc<HostHealth>,
    network: Network,
) {
    let mut rng = Rng::from_entropy();
    let mut first = true;
    let connector = Connector::new(network, config.timeout);
    loop {
        let verdict = check_once(&config.kind, &connector, addr).await;
        if record(&health, &config, &verdict, first) {
            hosts.bump_health_epoch();
            match &verdict {
                Verdict::Healthy => tracing::info!(%cluster, host = %addr, "endpoint is healthy"),
                Verdict::Unhealthy(why) => {
                    tracing::warn!(%cluster, host = %addr, reason = %why, "endpoint is unhealthy")
                }
            }
        }
        first = false;
        let jitter_ms = config.interval_jitter.as_millis() as u64;
        let jitter = if jitter_ms > 0 {
            Duration::from_millis(rng.below(jitter_ms + 1))
        } else {
            Duration::ZERO
        };
        tokio::time::sleep(config.interval + jitter).await;
    }
}

/// Keeps one check task per (snapshot version, cluster, endpoint) running.
pub struct HealthChecker {
    stop: Arc<AtomicBool>,
}

impl HealthChecker {
    /// Runs the checks on a thread of their own, over kernel sockets.
    pub fn start(current: Arc<ArcSwap<Snapshot>>) -> HealthChecker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = crate::event_loop::spawn("sluice-health", move || {
            supervise(current, flag, Network::Kernel)
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the health-check thread: {e}; endpoints stay healthy");
        }
        HealthChecker { stop }
    }

    /// Runs the checks as a task of the current thread's event loop instead of a thread of
    /// their own: a worker with a userspace stack runs them there, so probes take the stack's
    /// path to the endpoints, as its traffic does.
    pub fn start_local(current: Arc<ArcSwap<Snapshot>>, network: Network) -> HealthChecker {
        let stop = Arc::new(AtomicBool::new(false));
        tokio::task::spawn_local(supervise(current, stop.clone(), network));
        HealthChecker { stop }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

type TaskKey = (u64, String, SocketAddr, u64);

async fn supervise(current: Arc<ArcSwap<Snapshot>>, stop: Arc<AtomicBool>, network: Network) {
    let mut tasks: HashMap<TaskKey, tokio::task::JoinHandle<()>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let snap = current.load_full();
        let mut wanted = HashSet::new();
        for (name, entry) in &snap.clusters {
            let Some(config) = entry.config.health_checks.first() else {
                continue;
            };
            let set = entry.hosts.current.load();
            for h in &set.hosts {
                let key = (snap.version, name.clone(), h.address, set.version);
                wanted.insert(key.clone());
                tasks.entry(key).or_insert_with(|| {
                    tokio::task::spawn_local(check_loop(
                        name.clone(),
                        h.address,
                        config.clone(),
                        entry.hosts.clone(),
                        h.health.clone(),
                        network.clone(),
                    ))
                });
            }
        }
        tasks.retain(|k, t| {
            let keep = wanted.contains(k);
            if !keep {
                t.abort();
            }
            keep
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, t) in tasks {
        t.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HealthCheckConfig {
        HealthCheckConfig {
            timeout: Duration::from_millis(100),
            interval: Duration::from_millis(100),
            interval_jitter: Duration::ZERO,
            unhealthy_threshold: 2,
            healthy_threshold: 3,
            kind: HealthCheckKind::TcpConnect,
        }
    }

    #[test]
    fn thresholds_flip_the_state() {
        let h = HostHealth::default();
        let c = config();
        let bad = Verdict::Unhealthy("x".into());
        // The first result counts at once.
        assert!(record(&h, &c, &bad, true));
        assert!(!h.is_healthy());
        assert!(!record(&h, &c, &Verdict::Healthy, false));
        assert!(!record(&h, &c, &Verdict::Healthy, false));
        assert!(record(&h, &c, &Verdict::Healthy, false));
        assert!(h.is_healthy());
        assert!(!record(&h, &c, &bad, false));
        assert!(record(&h, &c, &bad, false));
        assert!(!h.is_healthy());
        assert_eq!(h.checks_total.get(), 6);
        assert_eq!(h.check_failures.get(), 3);
    }

    #[tokio::test]
    async fn tcp_check_sees_listening_and_closed_ports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = Connector::new(Network::Kernel, Duration::from_secs(1));
        assert_eq!(
            check_once(&HealthCheckKind::TcpConnect, &c, addr).await,
            Verdict::Healthy
        );
        drop(l);
        assert!(matches!(
            check_once(&HealthCheckKind::TcpConnect, &c, addr).await,
            Verdict::Unhealthy(_)
        ));
    }
}
