//! A worker: one thread pinned to one CPU, running a single-threaded event loop that owns its
//! listening sockets (SO_REUSEPORT), its connections, its balancer state and its stats shard.
//! Nothing on the connection path is shared with another thread except relaxed counter writes to
//! this worker's own shard. Config arrives as [`WorkerUpdate`]s between events.

use crate::config::UserspaceConfig;
use crate::io::affinity::pin_current_thread;
use crate::io::connect::Network;
use crate::io::listener::Acceptor;
use crate::io::userspace;
use crate::proxy::cluster::Cluster;
use crate::proxy::health::HealthChecker;
use crate::proxy::lb::Rng;
use crate::proxy::network_filter::{BuildContext, ConnectionHandler};
use crate::proxy::tcp_proxy::Active;
use crate::snapshot::{ListenerKey, Snapshot};
use crate::stats::{ListenerStats, Stats};
use arc_swap::ArcSwap;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub struct WorkerUpdate {
    pub snapshot: Arc<Snapshot>,
    /// Sockets for listeners this worker does not have yet.
    pub sockets: HashMap<ListenerKey, std::net::TcpListener>,
    /// Told (with the worker id, or an error) once the worker serves the new snapshot.
    pub done: std::sync::mpsc::Sender<Result<usize, String>>,
}

pub struct WorkerHandle {
    pub id: usize,
    pub updates: mpsc::UnboundedSender<WorkerUpdate>,
    pub thread: std::thread::JoinHandle<()>,
}

/// What a listener hands each accepted connection to, for one snapshot.
struct ListenerRuntime {
    stats: Arc<ListenerStats>,
    /// The terminal filter each accepted connection is handed to.
    filter: Rc<dyn ConnectionHandler>,
}

struct ActiveListener {
    current: Rc<RefCell<Rc<ListenerRuntime>>>,
    task: JoinHandle<()>,
}

/// A worker that runs the userspace stack: what to build, and the config its health checks
/// follow (they run on the worker, through the stack).
pub struct StackWorker {
    pub io: UserspaceConfig,
    pub current: Arc<ArcSwap<Snapshot>>,
    pub device: userspace::StackDevice,
    /// Whether this worker runs the health checks.
    pub health: bool,
}

/// Starts a worker thread. `ready` hears once whether its start-up (building a userspace stack,
/// if it has one) worked.
pub fn spawn(
    id: usize,
    cpu: Option<usize>,
    stats: Arc<Stats>,
    stack: Option<StackWorker>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> std::io::Result<WorkerHandle> {
    let (tx, rx) = mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name(format!("sluice-worker-{id}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                if let Err(e) = pin_current_thread(cpu) {
                    tracing::warn!(worker = id, cpu, "cannot pin worker to its CPU: {e}");
                }
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(worker = id, "cannot start the worker's event loop: {e}");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(id, rx, stats, stack, ready));
        })?;
    Ok(WorkerHandle {
        id,
        updates: tx,
        thread,
    })
}

async fn run(
    id: usize,
    mut updates: mpsc::UnboundedReceiver<WorkerUpdate>,
    stats: Arc<Stats>,
    stack: Option<StackWorker>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut driver = None;
    let mut network = Network::Kernel;
    let _health = match stack {
        Some(s) => match userspace::start(&s.io, s.device, id) {
            Ok(started) => {
                let _ = stats.stacks[id].set(started.stats);
                driver = Some(started.driver);
                network = Network::Stack(started.stack);
                let _ = ready.send(Ok(()));
                s.health
                    .then(|| HealthChecker::start_local(s.current, network.clone()))
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        },
        None => {
            let _ = ready.send(Ok(()));
            None
        }
    };
    let rng = Rc::new(RefCell::new(Rng::from_entropy()));
    let mut listeners: HashMap<ListenerKey, ActiveListener> = HashMap::new();
    while let Some(mut update) = updates.recv().await {
        let result = apply(id, &mut update, &mut listeners, &stats, &rng, &network);
        if let Some(d) = driver.take() {
            tokio::task::spawn_local(d);
        }
        let _ = update.done.send(result.map(|()| id));
    }
    // The dataplane is shutting down: stop accepting; dropping the runtime closes connections.
    for (_, l) in listeners.drain() {
        l.task.abort();
    }
}

fn apply(
    id: usize,
    update: &mut WorkerUpdate,
    listeners: &mut HashMap<ListenerKey, ActiveListener>,
    stats: &Arc<Stats>,
    rng: &Rc<RefCell<Rng>>,
    network: &Network,
) -> Result<(), String> {
    let snapshot = &update.snapshot;
    let shard = &stats.shards[id];
    let mut clusters: HashMap<&str, Rc<Cluster>> = HashMap::new();
    for (name, entry) in &snapshot.clusters {
        let c = Cluster::new(
            entry.config.clone(),
            entry.hosts.clone(),
            stats.clone(),
            id,
            rng.clone(),
            network,
        );
        clusters.insert(name.as_str(), Rc::new(c));
    }
    let cluster = |name: &str| {
        clusters
            .get(name)
            .cloned()
            .ok_or_else(|| format!("cluster \"{name}\" missing from snapshot"))
    };
    let all_clusters = || clusters.values().cloned().collect::<Vec<_>>();
    let mut wanted: HashMap<ListenerKey, Rc<ListenerRuntime>> = HashMap::new();
    for l in &snapshot.bootstrap.listeners {
        let filter = l
            .filter
            .build(&BuildContext {
                shard,
                buffer_limit: l.buffer_limit,
                splice: snapshot.bootstrap.sluice.splice,
                rng,
                cluster: &cluster,
                all_clusters: &all_clusters,
            })
            .map_err(|e| format!("listener {}: {e}", l.name))?;
        let runtime = ListenerRuntime {
            stats: shard.listener(&l.name),
            filter,
        };
        wanted.insert(ListenerKey::of(l), Rc::new(runtime));
    }
    // Listeners that are gone stop accepting; their established connections keep flowing.
    listeners.retain(|key, l| {
        let keep = wanted.contains_key(key);
        if !keep {
            l.task.abort();
        }
        keep
    });
    for (key, runtime) in wanted {
        if let Some(existing) = listeners.get(&key) {
            *existing.current.borrow_mut() = runtime;
            continue;
        }
        let socket = match (update.sockets.remove(&key), network, &key) {
            (Some(s), _, _) => Acceptor::Kernel(
                tokio::net::TcpListener::from_std(s)
                    .map_err(|e| format!("listener {key:?}: {e}"))?,
            ),
            (None, Network::Stack(stack), ListenerKey::Address(addr)) => Acceptor::Stack(
                sluice_tcpstack::socket::TcpListener::bind(stack, *addr)
                    .map_err(|e| format!("listener {addr}: {e}"))?,
            ),
            _ => return Err(format!("no socket was bound for listener {key:?}")),
        };
        let current = Rc::new(RefCell::new(runtime));
        let task =
            tokio::task::spawn_local(accept_loop(socket, current.clone(), stats.clone(), id));
        listeners.insert(key, ActiveListener { current, task });
    }
    Ok(())
}

/// How often a listener that keeps failing to accept says so in the log.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

async fn accept_loop(
    socket: Acceptor,
    current: Rc<RefCell<Rc<ListenerRuntime>>>,
    stats: Arc<Stats>,
    worker: usize,
) {
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut suppressed = 0u64;
    let mut drain = crate::drain::subscribe();
    loop {
        let accepted = tokio::select! {
            a = socket.accept() => a,
            _ = crate::drain::reached(&mut drain, crate::drain::Phase::Closed) => {
                // /drain_listeners: the socket closes with this task; connections run on.
                tracing::info!(worker, "listener closed by a drain");
                return;
            }
        };
        match accepted {
            Ok((conn, peer)) => {
                let runtime = current.borrow().clone();
                let stats = stats.clone();
                tokio::task::spawn_local(async move {
                    let w = &stats.shards[worker].worker;
                    w.downstream_cx_total.inc();
                    runtime.stats.downstream_cx_total.inc();
                    let _active = Active::raise(&runtime.stats.downstream_cx_active);
                    let _w_active = Active::raise(&w.downstream_cx_active);
                    runtime.filter.clone().serve(conn, peer).await;
                });
            }
            Err(e) => {
                current.borrow().stats.downstream_cx_accept_errors.inc();
                // Out of file descriptors and the like: back off instead of spinning, and say
                // so once per interval rather than twenty times a second.
                let now = tokio::time::Instant::now();
                if last_warning.is_none_or(|t| now.duration_since(t) >= ACCEPT_WARN_EVERY) {
                    tracing::warn!(worker, suppressed, "accept failed: {e} (counted in sluice_listener_downstream_cx_accept_errors; retrying every 50 ms)");
                    last_warning = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
