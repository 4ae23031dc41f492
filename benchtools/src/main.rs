//! `boltbench`: the Bolt benchmark's two peers.
//!
//!   boltbench echo --listen 127.0.0.1:PORT
//!       answers every Bolt request with a success response carrying the request's content,
//!       and every heartbeat with its ack; one thread, batched writes.
//!   boltbench load --target 127.0.0.1:PORT --connections 50 --pipeline 20 --seconds 10
//!       keeps `pipeline` requests (1 KiB content by default) in flight on each connection,
//!       records each request's latency, and prints one JSON line with QPS and percentiles.
//!
//! Both use sluice's own Bolt codec only to encode and to find frame boundaries.

mod echo;
mod histogram;
mod load;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;

#[derive(Parser)]
#[command(
    name = "boltbench",
    about = "Bolt benchmark peers: load generator and echo server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A Bolt echo server.
    Echo {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// A pipelined Bolt load generator.
    Load(load::Options),
}

/// Tens of thousands of connections need as many descriptors as the hard limit allows.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit read and write the one struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() {
    let cli = Cli::parse();
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let result = match cli.command {
        Command::Echo { listen } => local.block_on(&rt, echo::serve(listen)),
        Command::Load(opts) => local.block_on(&rt, load::run(opts)),
    };
    if let Err(e) = result {
        eprintln!("boltbench: {e}");
        std::process::exit(1);
    }
}
