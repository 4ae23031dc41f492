//! `sluice-control`, the control process.
//!
//! What exists: `sluice-control push`, which sends a set of Envoy v3 resources (listeners and
//! clusters) to a running dataplane over its control socket (`sluice --control-socket PATH`)
//! and prints the dataplane's answer. The dataplane applies it with the same snapshot swap a
//! SIGHUP reload uses. The xDS client that will produce those resources from a control plane,
//! and the kernel fallback through TAP, are not written yet; run without a command, it says so.

use clap::{Parser, Subcommand};
use serde_json::json;
use sluice::push::{read_message, write_message};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "sluice-control", version, about = "sluice's control process")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(Command::Push {
        socket,
        file,
        version,
    }) = cli.command
    else {
        eprintln!(
            "sluice-control: the xDS client and the kernel fallback are not implemented in this version; \
             `sluice-control push` sends resources to a dataplane started with --control-socket, \
             and a static bootstrap (sluice -c FILE, reloaded with SIGHUP) works as before"
        );
        return ExitCode::from(2);
    };
    match push(&socket, &file, &version) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sluice-control push: {e}");
            ExitCode::from(1)
        }
    }
}

/// Sends the resources of `file`; true if the dataplane applied them.
fn push(socket: &PathBuf, file: &PathBuf, version: &str) -> Result<bool, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let json = file.extension().is_some_and(|e| e == "json");
    let doc =
        sluice::config::parse_text(&text, json).map_err(|e| format!("{}: {e}", file.display()))?;
    let resources = doc.get("static_resources").cloned().unwrap_or(doc);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
        let hello = read_message(&mut s)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the dataplane closed the connection")?;
        eprintln!("dataplane: {hello}");
        let message = json!({"push": {"version": version, "static_resources": resources}});
        write_message(&mut s, &message)
            .await
            .map_err(|e| e.to_string())?;
        let reply = read_message(&mut s)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the dataplane closed the connection without answering")?;
        println!("{reply}");
        Ok(reply.get("applied").is_some())
    })
}
