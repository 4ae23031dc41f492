//! `sluice-control`, the control process.
//!
//! - `sluice-control xds -c BOOTSTRAP --dataplane SOCKET`: the xDS client. It reads `node` and
//!   `dynamic_resources` from the (Envoy v3) bootstrap, speaks ADS to the server (state of the
//!   world or delta), and pushes what it learns to the dataplane started with
//!   `sluice -c BOOTSTRAP --control-socket SOCKET`.
//! - `sluice-control push --socket SOCKET -f FILE`: pushes a file's static resources once.
//! - `sluice-control fallback up|down -c CONFIG`: the host kernel's TAP for a dataplane that
//!   owns the wire (`sluice.io.fallback`), with the stack's addresses and MAC.

use clap::{Parser, Subcommand};
use sluice_control::dataplane_link::DataplaneLink;
use sluice_control::xds;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "sluice-control", version, about = "sluice's control process")]
struct Cli {
    /// Log level, as `sluice -l` takes it (Envoy's names: trace, debug, info, warning, error,
    /// critical, off); default SLUICE_LOG, else info.
    #[arg(short = 'l', long = "log-level", global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the xDS client: resources from the xDS server are pushed to the dataplane.
    Xds {
        /// The Envoy v3 bootstrap: `node`, `dynamic_resources.ads_config` and the static cluster
        /// it names (the dataplane reads the same file).
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// The dataplane's control socket (`sluice --control-socket PATH`).
        #[arg(long)]
        dataplane: PathBuf,
    },
    /// Pushes listeners and clusters to a dataplane and prints its answer (exit 0 if applied).
    Push {
        /// The dataplane's control socket (`sluice --control-socket PATH`).
        #[arg(long)]
        socket: PathBuf,
        /// YAML or JSON with `static_resources` (a bootstrap file), or the resources themselves.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// The version the dataplane reports back for these resources.
        #[arg(long, default_value = "1")]
        version: String,
    },
    /// Makes or removes the host kernel's TAP for `sluice.io.fallback` (needs root).
    Fallback {
        #[command(subcommand)]
        action: FallbackAction,
    },
}

#[derive(Subcommand)]
enum FallbackAction {
    /// Creates the TAP (multi-queue, persistent) with the stack's addresses, MAC and MTU.
    Up {
        /// The dataplane's config (its `sluice.io` section).
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// The stack's MAC when the config does not say it (a DPDK port's own address).
        #[arg(long)]
        mac: Option<String>,
        /// Also route the host's default traffic through the stack's gateways.
        #[arg(long)]
        routes: bool,
    },
    /// Removes the TAP, its addresses and routes.
    Down {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.log_level.as_deref().map(sluice::logging::level_filter) {
        Some(Ok(level)) => tracing_subscriber::EnvFilter::new(level),
        Some(Err(e)) => {
            eprintln!("sluice-control: -l/--log-level: {e}");
            return ExitCode::from(2);
        }
        None => tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-control: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = match cli.command {
        Command::Fallback { action } => fallback(action),
        Command::Xds { config, dataplane } => rt.block_on(run_xds(&config, &dataplane)),
        Command::Push {
            socket,
            file,
            version,
        } => rt
            .block_on(push(&socket, &file, &version))
            .and_then(|applied| {
                if applied {
                    Ok(())
                } else {
                    Err("the dataplane refused the push".into())
                }
            }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-control: {e}");
            ExitCode::from(1)
        }
    }
}

fn fallback(action: FallbackAction) -> Result<(), String> {
    use sluice_control::fallback;
    let load = |config: &Path| {
        sluice::config::load_file(config).map_err(|e| format!("{}: {e}", config.display()))
    };
    match action {
        FallbackAction::Up {
            config,
            mac,
            routes,
        } => {
            let mac = mac
                .map(|m| {
                    sluice::config::userspace::parse_mac(&m).map_err(|e| format!("--mac: {e}"))
                })
                .transpose()?;
            let plan = fallback::plan(&load(&config)?, mac)?;
            fallback::up(&plan, routes)?;
            println!(
                "fallback TAP {} is up with {:?}: start the dataplane on {}",
                plan.tap,
                plan.addresses,
                config.display()
            );
        }
        FallbackAction::Down { config } => {
            let b = load(&config)?;
            let tap = fallback::tap_name(&b)?;
            if fallback::down(tap)? {
                println!("removed {tap}");
            } else {
                println!("{tap} does not exist: nothing to remove");
            }
        }
    }
    Ok(())
}

fn read_bootstrap(path: &Path) -> Result<serde_json::Value, String> {
    sluice::config::read_document(path).map_err(|e| e.to_string())
}

async fn run_xds(config: &Path, socket: &Path) -> Result<(), String> {
    let doc = read_bootstrap(config)?;
    let bootstrap = xds::bootstrap::read(&doc).map_err(|e| format!("{}: {e}", config.display()))?;
    let statics = xds::compose::StaticResources::from_bootstrap(&doc);
    let client = xds::state::Client::new(bootstrap.mode, statics);
    tracing::info!(server = %bootstrap.server, dataplane = %socket.display(), "starting the xDS client");
    xds::client::run(bootstrap, client, DataplaneLink::new(socket)).await
}

/// Sends the resources of `file`; true if the dataplane applied them.
async fn push(socket: &Path, file: &Path, version: &str) -> Result<bool, String> {
    let doc = read_bootstrap(file)?;
    let resources = doc.get("static_resources").cloned().unwrap_or(doc);
    let mut link = DataplaneLink::new(socket);
    let hello = link.connect().await?;
    eprintln!("dataplane: {}", hello.message);
    let reply = link.push_message(version, &resources).await?;
    println!("{reply}");
    Ok(reply.get("applied").is_some())
}
