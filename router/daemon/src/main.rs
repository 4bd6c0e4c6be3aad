//! `meshd`: the mesh router daemon. See `meshd --help` and README.md.
//!
//! This binary only wires things together: configuration ([`config`]), the state directory
//! ([`state`]: `node.key`, `peers.json`, `ipam.json`, and with automatic IPAM `ring.json` and
//! `blocks.json`), the runtime loop ([`run`], which also starts the DNS server of
//! `mesh-dns-server` on `--dns`), the local API ([`api`]), the pod address pool ([`ipam`]),
//! the Prometheus metrics endpoint ([`metrics`]: a collector over the status and pool
//! snapshot, taken at scrape time), its side of the nftables filter ([`filter`]), DNS records
//! between the API, gossip and the DNS store ([`names`]), `meshctl ping`'s probing ([`ping`]),
//! `meshctl debug`'s report ([`debug`]: read through rtnetlink, ethtool's netlink family,
//! `/proc` and `/sys`; its findings are pure functions in `debug/checks.rs`), Kubernetes mode
//! ([`kube`]: kube-runtime's Node watcher; peers and known keys into the core, `mesh/*`
//! annotations by merge patch, founding the ring, reclaiming deleted Nodes' members;
//! `kube-nodes.json`) and `meshd reset` / `meshd gen-secret` ([`reset`]). Protocol logic lives
//! in `mesh-core` and `mesh-ipam`, OS plumbing in `mesh-datapath`.
#![forbid(unsafe_code)]

mod api;
mod config;
mod debug;
mod filter;
mod ipam;
mod kube;
mod metrics;
mod names;
mod ping;
mod reset;
mod run;
mod state;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The mesh router: moves this node's pod traffic to other nodes over Noise-encrypted UDP.
///
/// With no subcommand, meshd runs in the foreground until SIGTERM. It needs root (or
/// CAP_NET_ADMIN) and /dev/net/tun. Every flag can also be set by its MESH_* environment
/// variable or in the --config TOML file; flags win over the environment, which wins over
/// the file.
#[derive(Debug, Parser)]
#[command(name = "meshd", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: config::RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Remove everything meshd created on this host (bridge, TUN device, API socket, node
    /// key, remembered peers, address pool, address ring and blocks), as when decommissioning
    /// it or making it a new member. Refuses while meshd runs.
    Reset(reset::ResetArgs),
    /// Print a new random cluster secret (base64) for `--secret-file`.
    GenSecret,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::GenSecret) => {
            println!("{}", reset::gen_secret());
            ExitCode::SUCCESS
        }
        Some(Command::Reset(args)) => {
            finish(runtime().and_then(|rt| rt.block_on(reset::reset(args))))
        }
        None => {
            let mut config = match cli.run.resolve() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("meshd: {e:#}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = init_logging(&config.log) {
                eprintln!("meshd: {e:#}");
                return ExitCode::from(2);
            }
            // Bound first, before anything is set up: a busy port leaves nothing behind.
            match metrics::Prebound::bind(config.metrics) {
                Ok(pre) => config.metrics_listener = pre,
                Err(e) => return finish(Err(e)),
            }
            finish(runtime().and_then(|rt| rt.block_on(run::run(config))))
        }
    }
}

fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Two worker threads, so the two packet loops (TUN to UDP, UDP to TUN) can run at once;
/// one on a machine with two CPUs or fewer, where the applications and the kernel's network
/// stack need the other CPU and a second worker only adds wake-ups and task migrations
/// (measured with peers.sh on 2 vCPUs: 6.3 against 5.7 Gbit/s, 1.77 against 1.94 CPU s per
/// GB; docs/performance.md).
fn worker_threads() -> usize {
    match std::thread::available_parallelism() {
        Ok(n) if n.get() > 2 => 2,
        _ => 1,
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("--log {filter:?} is not a valid filter: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    Ok(())
}
