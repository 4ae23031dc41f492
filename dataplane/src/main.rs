//! `sluice`: the dataplane binary. Flags follow Envoy's where Envoy has one.

use clap::{Parser, Subcommand, ValueEnum};
use sluice::admin::{self, Admin};
use sluice::config;
use sluice::io::listener::BindError;
use sluice::runtime::Dataplane;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Run the proxy.
    Serve,
    /// Check the config file and exit 0 (valid) or 1 (invalid), like `envoy --mode validate`.
    Validate,
}

/// `--drain-strategy`, as Envoy's.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum DrainStrategy {
    /// Each connection is asked to close with a chance that grows over the drain time.
    Gradual,
    /// Every connection is asked at once.
    Immediate,
}

/// Tools beside serving.
#[derive(Subcommand, Debug)]
enum Tool {
    /// The DPDK hardware layout (`sluice.io.dpdk`).
    #[command(subcommand)]
    Hwconfig(HwTool),
}

#[derive(Subcommand, Debug)]
enum HwTool {
    /// Checks this machine against the layout in the config file and says what is missing and
    /// how to fix it; exits 0 if it can run, 1 if not. Changes nothing unless --apply.
    Check {
        #[arg(short = 'c', long = "config-path")]
        config: PathBuf,
        /// Reserve the hugepages the layout needs and mount hugetlbfs (needs root).
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Parser, Debug)]
#[command(args_conflicts_with_subcommands = true)]
#[command(
    name = "sluice",
    version,
    about = "sluice: a per-core, kernel-bypass-ready service-mesh data plane"
)]
struct Args {
    #[command(subcommand)]
    tool: Option<Tool>,
    /// Envoy v3 bootstrap file (YAML, or JSON if it ends in .json).
    #[arg(short = 'c', long = "config-path", required = true)]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "serve")]
    mode: Mode,
    /// trace, debug, info, warning, error, critical or off (default: RUST_LOG, else info).
    #[arg(short = 'l', long = "log-level")]
    log_level: Option<String>,
    /// Number of worker threads, each pinned to its own CPU (default: CPUs available).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Write the admin endpoint's bound address to this file once serving (as Envoy does).
    #[arg(long)]
    admin_address_path: Option<PathBuf>,
    /// Override the IO backend of the config's `sluice.io.backend`.
    #[arg(long = "io")]
    io: Option<String>,
    /// How long `/drain_listeners?graceful` asks connections to close before listeners stop
    /// (Envoy's flag and default).
    #[arg(long = "drain-time-s", default_value_t = 600)]
    drain_time_s: u64,
    /// How connections are asked to close during that time (Envoy's flag and default).
    #[arg(long = "drain-strategy", value_enum, default_value_t = DrainStrategy::Gradual)]
    drain_strategy: DrainStrategy,
    /// Accept config pushes from the control process on this Unix socket (see `sluice::push`).
    #[arg(long)]
    control_socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    sluice::drain::set_strategy(match args.drain_strategy {
        DrainStrategy::Gradual => sluice::drain::Strategy::Gradual,
        DrainStrategy::Immediate => sluice::drain::Strategy::Immediate,
    });
    if let Some(Tool::Hwconfig(HwTool::Check { config, apply })) = &args.tool {
        return hwconfig_check(config, *apply);
    }
    let config_path = args.config.take().expect("clap requires -c without a tool");
    if let Err(e) = sluice::logging::init(args.log_level.as_deref()) {
        eprintln!("error: -l: {e}");
        return ExitCode::from(1);
    }
    // --io is refused with the same words the config file gets.
    let io = match args
        .io
        .as_deref()
        .map(config::IoBackend::from_name)
        .transpose()
    {
        Ok(io) => io,
        Err(e) => {
            eprintln!("error: --io: {e}");
            return ExitCode::from(1);
        }
    };
    let bootstrap = match load(&config_path, io, None) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}: {e}", config_path.display());
            return ExitCode::from(1);
        }
    };
    match args.mode {
        Mode::Validate => {
            println!("configuration '{}' OK", config_path.display());
            ExitCode::SUCCESS
        }
        Mode::Serve => match serve(&args, &config_path, io, bootstrap) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
    }
}

/// Loads the config file, with pushed resources (if any) in place of its `static_resources`,
/// and applies the `--io` override: on start, on every reload and for every push alike (so
/// neither ever "changes" the backend the process runs).
fn load(
    path: &Path,
    io: Option<config::IoBackend>,
    pushed: Option<&sluice::push::Push>,
) -> Result<config::Bootstrap, String> {
    let mut doc = config::read_document(path).map_err(|e| e.to_string())?;
    if let Some(push) = pushed {
        let Some(map) = doc.as_object_mut() else {
            return Err("the config file is not a mapping".into());
        };
        let resources = serde_json::from_str(&push.static_resources)
            .map_err(|e| format!("the pushed resources: {e}"))?;
        map.insert("static_resources".into(), resources);
    }
    let mut b = config::bootstrap::parse_bootstrap(&doc).map_err(|e| e.to_string())?;
    if let Some(io) = io {
        b.sluice.io_backend = io;
        b.sluice
            .userspace
            .check(io)
            .map_err(|e| format!("with --io: {e}"))?;
    }
    b.resources_version = pushed.map(|p| p.version.clone());
    Ok(b)
}

fn serve(
    args: &Args,
    config_path: &Path,
    io: Option<config::IoBackend>,
    bootstrap: config::Bootstrap,
) -> Result<(), String> {
    // Bind the admin port first: a port in use there should fail before workers start.
    let admin_listener = match &bootstrap.admin {
        Some(a) => Some(std::net::TcpListener::bind(a.address).map_err(|source| {
            format!(
                "admin.address: {}",
                BindError {
                    address: a.address,
                    source
                }
            )
        })?),
        None => None,
    };
    match sluice::io::fds::raise_nofile_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!(
                before,
                after,
                "raised the open-files limit (RLIMIT_NOFILE) to its hard limit"
            )
        }
        Ok((_, now)) => tracing::info!(limit = now, "open-files limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!("cannot raise the open-files limit (RLIMIT_NOFILE): {e}"),
    }
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut dataplane = Dataplane::start(bootstrap, concurrency).map_err(|e| e.to_string())?;
    sluice::memory::release_freed();
    let control_status = sluice::control_status::ControlStatus::new();
    if let Some(listener) = admin_listener {
        let addr = listener
            .local_addr()
            .map_err(|e| format!("admin.address: {e}"))?;
        admin::spawn(
            listener,
            Admin {
                stats: dataplane.stats(),
                current: dataplane.current(),
                control: control_status.clone(),
                server: sluice::admin::ServerInfo {
                    started: std::time::Instant::now(),
                    concurrency,
                    config_path: config_path.display().to_string(),
                    log_level: args.log_level.clone().unwrap_or_else(|| "info".into()),
                    drain_time: std::time::Duration::from_secs(args.drain_time_s),
                },
                health_failed: Default::default(),
            },
        )
        .map_err(|e| format!("cannot start the admin endpoint: {e}"))?;
        if let Some(path) = &args.admin_address_path {
            write_atomically(path, &addr.to_string())
                .map_err(|e| format!("--admin-address-path {}: {e}", path.display()))?;
        }
        tracing::info!(%addr, "admin endpoint listening");
    }
    for (name, addr) in dataplane.listeners() {
        tracing::info!(listener = %name, %addr, "listening");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the main event loop: {e}"))?;
    let control = match &args.control_socket {
        Some(path) => Some(rt.block_on(async { control::listen(path, control_status) })?),
        None => None,
    };
    rt.block_on(signals(config_path, io, &mut dataplane, control))
}

/// Waits for signals and pushes: SIGHUP reloads the config file (with the last pushed
/// resources, if any, laid over it again); a push from the control process applies new
/// resources; SIGINT and SIGTERM stop sluice.
async fn signals(
    path: &Path,
    io: Option<config::IoBackend>,
    dataplane: &mut Dataplane,
    control: Option<control::Requests>,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k| signal(k).map_err(|e| format!("cannot install signal handler: {e}"));
    let mut hup = sig(SignalKind::hangup())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut control = control;
    let mut pushed: Option<sluice::push::Push> = None;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(path, io, pushed.as_ref(), dataplane),
            Some(request) = async { match control.as_mut() { Some(c) => c.recv().await, None => None } } => {
                control::answer(request, path, io, &mut pushed, dataplane);
            }
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("shutting down");
    Ok(())
}

fn reload(
    path: &Path,
    io: Option<config::IoBackend>,
    pushed: Option<&sluice::push::Push>,
    dataplane: &mut Dataplane,
) {
    let stats = dataplane.stats();
    stats.server.config_reloads_total.inc();
    let result = load(path, io, pushed).and_then(|b| dataplane.apply(b).map_err(|e| e.to_string()));
    sluice::memory::release_freed();
    match result {
        Ok(version) => tracing::info!(version, file = %path.display(), "config reloaded"),
        Err(e) => {
            stats.server.config_reload_failures_total.inc();
            tracing::error!(file = %path.display(), "config reload rejected, the previous config keeps serving: {e}");
        }
    }
}

/// The dataplane's end of the push channel: a task accepts control connections and forwards
/// their requests to the main loop, which owns the dataplane and answers each in turn.
mod control {
    use super::*;
    use serde_json::json;
    use sluice::control_status::ControlStatus;
    use sluice::push::{parse_push, read_message, write_message, Push};
    use std::sync::Arc;
    use tokio::sync::{mpsc, oneshot};

    pub enum Request {
        Hello(oneshot::Sender<serde_json::Value>),
        Push(Result<Push, String>, oneshot::Sender<serde_json::Value>),
    }

    pub type Requests = mpsc::Receiver<Request>;

    /// Binds the socket (refusing one a live process answers on; replacing a stale one) and
    /// starts accepting.
    pub fn listen(path: &Path, status: Arc<ControlStatus>) -> Result<Requests, String> {
        let what = |e: std::io::Error| format!("--control-socket {}: {e}", path.display());
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "--control-socket {}: another process is listening on it",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(what)?;
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(what)?;
        use std::os::unix::fs::PermissionsExt;
        // Whoever can push config owns the proxy: the socket is for this user only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(what)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(stream, tx.clone(), status.clone()));
                    }
                    Err(e) => {
                        tracing::error!("control socket: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tracing::info!(socket = %path.display(), "accepting config pushes");
        Ok(rx)
    }

    /// Hands a request to the main loop and waits for its answer; `None` if sluice is stopping.
    async fn ask(
        tx: &mpsc::Sender<Request>,
        make: impl FnOnce(oneshot::Sender<serde_json::Value>) -> Request,
    ) -> Option<serde_json::Value> {
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(make(reply_tx)).await.ok()?;
        reply_rx.await.ok()
    }

    async fn serve(
        stream: tokio::net::UnixStream,
        tx: mpsc::Sender<Request>,
        status: Arc<ControlStatus>,
    ) {
        let (mut r, mut w) = stream.into_split();
        let Some(hello) = ask(&tx, Request::Hello).await else {
            return;
        };
        if write_message(&mut w, &hello).await.is_err() {
            return;
        }
        tracing::info!("control process connected");
        loop {
            let message = match read_message(&mut r).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("control socket: {e}; closing the connection");
                    break;
                }
            };
            let reply = if let Some(s) = message.get("status") {
                // The xDS client's state, for the admin endpoint; nothing to apply.
                status.set(s.clone());
                json!({"noted": {}})
            } else {
                let push = parse_push(&message);
                drop(message);
                let Some(reply) = ask(&tx, |t| Request::Push(push, t)).await else {
                    break;
                };
                reply
            };
            if write_message(&mut w, &reply).await.is_err() {
                break;
            }
        }
        tracing::info!("control process disconnected; the current config keeps serving");
    }

    /// Answers one request on the main loop.
    pub fn answer(
        request: Request,
        path: &Path,
        io: Option<config::IoBackend>,
        pushed: &mut Option<Push>,
        dataplane: &mut Dataplane,
    ) {
        let stats = dataplane.stats();
        match request {
            Request::Hello(reply) => {
                let version = pushed.as_ref().map(|p| p.version.clone());
                let _ = reply.send(json!({"hello": {
                    "version": version,
                    "config_version": stats.server.config_version.get(),
                }}));
            }
            Request::Push(push, reply) => {
                stats.server.control_pushes_total.inc();
                let version = push.as_ref().ok().map(|p| p.version.clone());
                let outcome = push.and_then(|p| {
                    let b = load(path, io, Some(&p))?;
                    let applied = dataplane.apply(b).map_err(|e| e.to_string())?;
                    Ok((p, applied))
                });
                let message = match outcome {
                    Ok((p, applied)) => {
                        tracing::info!(version = %p.version, config_version = applied, "pushed config applied");
                        let m =
                            json!({"applied": {"version": p.version, "config_version": applied}});
                        *pushed = Some(p);
                        m
                    }
                    Err(e) => {
                        stats.server.control_push_rejected_total.inc();
                        tracing::error!(
                            "pushed config rejected, the previous config keeps serving: {e}"
                        );
                        json!({"rejected": {"version": version, "error": e}})
                    }
                };
                let _ = reply.send(message);
                sluice::memory::release_freed();
            }
        }
    }
}

fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

/// `sluice hwconfig check -c FILE [--apply]`.
fn hwconfig_check(path: &Path, apply: bool) -> ExitCode {
    use sluice_hwconfig::check::{apply as apply_layout, check, report, Machine};
    let layout = match config::load_file(path) {
        Ok(b) => match b.sluice.userspace.dpdk {
            Some(d) => d.hw,
            None => {
                eprintln!(
                    "error: {}: no sluice.io.dpdk section to check",
                    path.display()
                );
                return ExitCode::from(1);
            }
        },
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let machine = Machine::current();
    if apply {
        match apply_layout(&layout, &machine) {
            Ok(done) => done.iter().for_each(|d| println!("applied {d}")),
            Err(e) => {
                eprintln!("error: --apply: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let (text, usable) = report(&check(&layout, &machine));
    print!("{text}");
    println!(
        "EAL arguments: {}",
        sluice_hwconfig::eal::eal_args(&layout).join(" ")
    );
    if usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
