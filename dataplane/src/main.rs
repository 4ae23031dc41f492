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
}

fn main() -> ExitCode {
    let mut args = Args::parse();
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
    let bootstrap = match load(&config_path, io) {
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

/// Loads the config file and applies the `--io` override, on start and on every reload alike
/// (so a reload never "changes" the backend the process runs).
fn load(path: &Path, io: Option<config::IoBackend>) -> Result<config::Bootstrap, String> {
    let mut b = config::load_file(path).map_err(|e| e.to_string())?;
    if let Some(io) = io {
        b.sluice.io_backend = io;
        b.sluice
            .userspace
            .check(io)
            .map_err(|e| format!("with --io: {e}"))?;
    }
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
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut dataplane = Dataplane::start(bootstrap, concurrency).map_err(|e| e.to_string())?;
    if let Some(listener) = admin_listener {
        let addr = listener
            .local_addr()
            .map_err(|e| format!("admin.address: {e}"))?;
        admin::spawn(
            listener,
            Admin {
                stats: dataplane.stats(),
                current: dataplane.current(),
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
    rt.block_on(signals(config_path, io, &mut dataplane))
}

/// Waits for signals: SIGHUP reloads the config file; SIGINT and SIGTERM stop sluice.
async fn signals(
    path: &Path,
    io: Option<config::IoBackend>,
    dataplane: &mut Dataplane,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k| signal(k).map_err(|e| format!("cannot install signal handler: {e}"));
    let mut hup = sig(SignalKind::hangup())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut term = sig(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(path, io, dataplane),
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("shutting down");
    Ok(())
}

fn reload(path: &Path, io: Option<config::IoBackend>, dataplane: &mut Dataplane) {
    let stats = dataplane.stats();
    stats.server.config_reloads_total.inc();
    let result = load(path, io).and_then(|b| dataplane.apply(b).map_err(|e| e.to_string()));
    match result {
        Ok(version) => tracing::info!(version, file = %path.display(), "config reloaded"),
        Err(e) => {
            stats.server.config_reload_failures_total.inc();
            tracing::error!(file = %path.display(), "config reload rejected, the previous config keeps serving: {e}");
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
