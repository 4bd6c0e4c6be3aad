//! `meshd reset`: remove everything meshd created on this host (links, its nftables table,
//! state files), for decommissioning.
//! `meshd gen-secret`: make a cluster secret.

use crate::config::{DEFAULT_BRIDGE, DEFAULT_STATE_DIR, DEFAULT_TUN};
use crate::state::{BLOCKS_FILE, IPAM_FILE, KEY_FILE, PEERS_FILE, RING_FILE};
use anyhow::{Result, bail};
use base64::Engine as _;
use clap::Args;
use rand_core::{OsRng, RngCore};
use std::path::PathBuf;

/// Flags of `meshd reset` (the same names and defaults as for running).
#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    /// Bridge to delete.
    #[arg(long, env = "MESH_BRIDGE", default_value = DEFAULT_BRIDGE)]
    bridge: String,
    /// TUN device to delete.
    #[arg(long, env = "MESH_TUN", default_value = DEFAULT_TUN)]
    tun: String,
    /// State directory whose node key, peers file, address pool, ring and blocks files are
    /// removed.
    #[arg(long, env = "MESH_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// API socket to remove.
    #[arg(long, env = "MESH_API_SOCKET", default_value = mesh_api::DEFAULT_SOCKET)]
    api_socket: PathBuf,
}

pub(crate) async fn reset(args: ResetArgs) -> Result<()> {
    if std::os::unix::net::UnixStream::connect(&args.api_socket).is_ok() {
        bail!(
            "meshd is still running (its API socket {} answers): stop it first",
            args.api_socket.display()
        );
    }
    mesh_datapath::check_prerequisites()?;
    let net = mesh_datapath::HostNetwork::connect().await?;
    for link in [&args.tun, &args.bridge] {
        if net.delete_link(link).await? {
            println!("removed link {link}");
        }
    }
    match mesh_datapath::remove_filter() {
        Ok(true) => println!(
            "removed nftables table {} {}",
            mesh_datapath::FILTER_FAMILY,
            mesh_datapath::FILTER_TABLE
        ),
        Ok(false) => {}
        // Without nft there is no table of meshd's to remove.
        Err(mesh_datapath::DatapathError::NftMissing) => {}
        Err(e) => return Err(e.into()),
    }
    if std::fs::remove_file(&args.api_socket).is_ok() {
        println!("removed {}", args.api_socket.display());
    }
    for f in [KEY_FILE, PEERS_FILE, IPAM_FILE, RING_FILE, BLOCKS_FILE] {
        let p = args.state_dir.join(f);
        if std::fs::remove_file(&p).is_ok() {
            println!("removed {}", p.display());
        }
    }
    if std::fs::remove_dir(&args.state_dir).is_ok() {
        println!("removed {}", args.state_dir.display());
    }
    Ok(())
}

/// 32 random bytes, base64.
pub(crate) fn gen_secret() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}
