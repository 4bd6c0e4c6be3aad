//! `meshd` running: sets up the host (bridge, TUN, routes, UDP socket), then moves bytes
//! between the TUN device, the UDP socket and the sans-I/O [`Node`], and serves the API.
//!
//! [`run`] checks privileges and `/dev/net/tun`, binds the UDP socket and the API socket,
//! replaces its nftables table `inet mesh` (`filter.rs`; the table outlives meshd, as the
//! bridge does, and `meshd reset` removes it), loads or creates the node key, creates (or
//! reuses) the bridge with the block's first address, enables IPv4 forwarding, opens the TUN
//! device and routes the cluster range into it. Then it runs these tasks (the packet loops
//! and timers in `run/loops.rs`, events in `run/events.rs`; what they share, and the lock
//! rules, in `run/shared.rs`; `meshctl status` in `run/status.rs`; `meshctl connect`/`forget`
//! in `run/peer_book.rs`):
//!
//! - `tun_to_udp`: one read of the TUN device: with offloads on, a TCP super-packet of up to
//!   64 KB split into MTU-sized segments (up to 128), each in its own fixed-size slot of one
//!   reused buffer, 16 bytes in; lock the node once, `encapsulate` each in place, unlock;
//!   `pack_run` moves each run of equal-sized datagrams to one peer back to back, and the run
//!   leaves in one UDP GSO send; then send whatever the node queued (handshakes, flushed
//!   packets).
//! - `udp_to_tun`: one batched receive (up to 32 buffers, each holding up to 64 datagrams
//!   coalesced by UDP GRO); lock once, `decapsulate` every datagram in place (handshakes are
//!   answered here too, at most 16 handshake messages per lock hold, after which the loop
//!   unlocks, writes, sends and yields before going on), push each delivered packet into the
//!   `Coalescer` (one copy: consecutive TCP segments of a flow are appended into one 64 KB
//!   super-packet with a virtio GSO header when offloads are on); unlock; one `write` to the
//!   TUN per coalescer buffer (in rounds of at most 128 buffers); send queued transmits.
//!   After 50 ms in which every datagram was dropped (a junk flood), a receive that brings
//!   only dropped datagrams is followed by a 1 ms pause, so the next one reads a batch.
//! - `timers`: sleep until the node's `poll_timeout` (at most 50 ms) or until an API handler
//!   wakes it (a ping probe queued), lock, `handle_timeout`, drain transmits.
//! - `events`: the node's events: `peers.json` when a peer is established at a new endpoint
//!   (not at an endpoint `meshctl forget` named); with automatic IPAM `blocks.json`, the
//!   bridge's gateways, the route source and the pool's blocks on `BlocksChanged`; the
//!   foreign-ring warning; gossiped DNS records (`RecordChanged` of kind 4) merged into the
//!   DNS store, and `MemberDead`/`MemberAlive` turning a member's records unserved/served
//!   (`names.rs`).
//! - the API: axum on the unix socket; `GET /v1/status` locks the node to build the answer;
//!   `POST /v1/ping` queues each probe in the node and wakes the timers task to send it; the
//!   node reports each answer as an event (`EchoAnswered`), which `Shared::settle` hands to
//!   the waiting ping.
//! - metrics: axum on `--metrics` (TCP, bound in `main` before anything is set up); each
//!   scrape takes the same status and pool answer as the API; the packet loops count nothing
//!   extra.
//! - kube, with `--kube` only (the client is made before anything is set up: no in-cluster
//!   config and no kubeconfig stops the start): the Node watcher's events and a 2 s tick;
//!   locks the node briefly (peers, ring id, members, founding, reclaims), never across an
//!   `await`; API errors are logged once per streak and never end the task.
//! - the DNS server on `--dns` (`mesh-dns-server`), and the rtnetlink connection.
//!
//! Every path that takes datagrams out of the node goes through [`Shared::drain`], which
//! first persists the node's address ring to `ring.json` when it changed (automatic IPAM),
//! under the node lock: a datagram may carry ring entries this node just wrote (a donation, a
//! reclaim), and docs/ipam.md's contract (P) lets them leave only once the ring is on disk.
//!
//! The `Node` sits behind one `std::sync::Mutex`, held for the seals or opens of one batch (or
//! one handshake step), never across an `await`. `--offload off` turns the offloads off: the
//! same loops then move one packet per read and write (the fallback when the kernel refuses
//! them, too). `meshctl status -o json` shows the counters of both loops under `datapath`.
//! SIGTERM or SIGINT aborts the tasks and drops the TUN device (the kernel removes it and its
//! routes); the bridge and its address stay. If any task ends, meshd shuts down the same way
//! and exits with an error.

use crate::config::Config;
use crate::names;
use crate::state;
use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use mesh_core::{Decap, Encap, Event, Node, NodeConfig, RingConfig, Transmit};
use mesh_crypto::{ClusterPsk, PublicKey, TAG_LEN};
use mesh_datapath::{BATCH_SIZE, BatchUdp, Coalescer, HostNetwork, RecvMeta, VNET_HDR_LEN};
use mesh_proto::datagram::DATA_HEADER_LEN;
use rand_core::{OsRng, RngCore};
use std::collections::BTreeMap;
use std::io::IoSliceMut;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

mod events;
mod loops;
mod peer_book;
mod shared;
mod status;

use loops::{timers, tun_to_udp, udp_to_tun};
use shared::{Counters, foreign_ring_message};
pub(crate) use shared::{Shared, gateway_of};

/// Largest datagram we receive.
const MAX_DATAGRAM: usize = 65_535;
/// Socket buffers asked for (the kernel may clamp without CAP_NET_ADMIN).
const SOCKET_BUFFER: usize = 4 << 20;
/// Packets one TUN read may yield (a 64 KB super-packet in MTU-sized segments).
const TUN_BATCH: usize = tun_rs::IDEAL_BATCH_SIZE;
/// Buffers the receive path fills before writing them to the TUN device (each can grow
/// into a 64 KB super-packet, so this bounds that memory to about 8 MB).
const TUN_FLUSH: usize = tun_rs::IDEAL_BATCH_SIZE;
/// The timer task wakes at least this often, to pick up deadlines that packet handling
/// moved earlier.
const TIMER_GRANULARITY: Duration = Duration::from_millis(50);

/// Runs meshd until SIGTERM/SIGINT.
pub(crate) async fn run(config: Config) -> Result<()> {
    mesh_datapath::check_prerequisites()?;
    if config.secret_mode & 0o077 != 0 {
        tracing::warn!(
            path = %config.secret_file.display(),
            mode = format!("{:o}", config.secret_mode),
            "secret file is readable by other users; chmod 600 it"
        );
    }
    // A missing in-cluster config or kubeconfig fails the start, before anything is set up;
    // the API server itself is reached later, by the kube task (meshd runs without it).
    let kube_client = match &config.kube {
        Some(k) => Some(crate::kube::connect(k).await?),
        None => None,
    };
    let udp = mesh_datapath::bind_udp(config.listen, SOCKET_BUFFER)?;
    let api_listener = crate::api::bind(&config.api_socket)?;
    let _cleanup = Cleanup::new(config.api_socket.clone());
    // Before the bridge, the TUN device and forwarding: pods are never reachable unfiltered.
    let filter = crate::filter::install(&config)?;

    state::ensure_dir(&config.state_dir)?;
    let (keypair, created) = state::load_or_create_key(&config.state_dir, random_seed())?;
    let public_key = keypair.public();
    tracing::info!(
        name = %config.name,
        key = %public_key,
        created,
        "node identity"
    );
    let known_peers = state::load_peers(&config.state_dir);
    let ring = match config.block {
        Some(_) => None,
        None => Some(ring_config(&config)?),
    };

    let now = Instant::now();
    let node = Node::new(
        NodeConfig {
            name: config.name.clone(),
            keypair,
            psk: ClusterPsk::derive(&config.secret.0),
            blocks: config.block.into_iter().collect(),
            range: config.range,
            bootstrap: config.peers.clone(),
            known_peers: known_peers.clone(),
            generation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            advertise: config.advertise,
            dead_after: config.dead_after,
            gossip: mesh_core::GossipConfig::default(),
            ring,
            ciphers: config.ciphers,
            unix_time: unix_time(),
        },
        now,
        random_seed(),
    );
    // The blocks pods get addresses from: --block, or what the node uses of the ring now (kept
    // from the last run, the founder's first block, or none yet).
    let blocks = node.active_blocks();
    if config.block.is_none() {
        // A ring this node just founded is a write of its own: on disk before anything of it
        // leaves (the node reports no RingChanged for it), so a restart never founds another.
        if let Some(ring) = node.ring_state().filter(|r| r.ring.is_some()) {
            state::save_ring(&config.state_dir, &ring)?;
        }
        // Before the pool hands out anything from them: blocks in use are never donated.
        state::save_blocks(&config.state_dir, &blocks)?;
    }
    let first_gateway = blocks.first().copied().map(gateway_of);

    let net = HostNetwork::connect().await?;
    let created_bridge = match config.block {
        Some(block) => {
            net.ensure_bridge(&config.bridge, gateway_of(block), config.mtu)
                .await
        }
        None => {
            net.ensure_bridge_without_address(&config.bridge, config.mtu)
                .await
        }
    }
    .with_context(|| format!("cannot set up bridge {}", config.bridge))?;
    // The DNS sockets bind to the gateway address, so after the bridge has it; they and the
    // TUN device go away by themselves when dropped on a failure below.
    let setup = async {
        if config.block.is_none() {
            let gateways: Vec<Ipv4Net> = blocks.iter().map(|b| gateway_of(*b)).collect();
            net.sync_addresses(&config.bridge, config.range, &gateways)
                .await
                .with_context(|| format!("cannot put the gateways on {}", config.bridge))?;
        }
        let dns_at = config.dns.as_ref().and_then(|d| {
            d.listen.or_else(|| {
                first_gateway
                    .map(|g| SocketAddr::new(g.addr().into(), crate::config::DEFAULT_DNS_PORT))
            })
        });
        let dns = match dns_at {
            Some(at) => Some((at, bind_dns(at).await?)),
            None => None,
        };
        let (tun, offload) = setup_tun(&net, &config, first_gateway.map(|g| g.addr())).await?;
        Ok::<_, anyhow::Error>((tun, offload, dns))
    };
    let (tun, offload, dns_sockets) = match setup.await {
        Ok(t) => t,
        Err(e) => {
            // Leave nothing half-made: a bridge this run created goes too (a bridge that was
            // already there holds pods and stays).
            if created_bridge && let Err(del) = net.delete_link(&config.bridge).await {
                tracing::warn!(error = %del, bridge = %config.bridge, "cannot remove the bridge after a failed start");
            }
            return Err(e);
        }
    };
    let filter = filter.keep();
    tracing::info!(
        listen = %config.listen,
        bridge = %config.bridge,
        gateway = ?first_gateway,
        tun = %config.tun,
        range = %config.range,
        ipam = if config.block.is_some() { "fixed" } else { "automatic" },
        blocks = ?blocks,
        mtu = config.mtu,
        offload,
        peers = config.peers.len(),
        dns = ?dns_sockets.as_ref().map(|(at, _)| *at),
        "meshd up"
    );

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let ipam = crate::ipam::IpamService::load(&config, &blocks)?;
    let shared = Arc::new(Shared {
        node: Mutex::new(node),
        config: config.clone(),
        public_key,
        started: now,
        ipam,
        tun_write_errors: AtomicU64::new(0),
        tun_read_errors: AtomicU64::new(0),
        udp_send_errors: AtomicU64::new(0),
        counters: Counters::default(),
        metrics: crate::metrics::Metrics::new(&config),
        dns: config.dns.as_ref().map(|d| {
            Arc::new(mesh_dns_server::DnsState::new(
                d.zone.clone(),
                mesh_dns::ForwarderConfig {
                    upstreams: d.upstreams.clone(),
                    ..mesh_dns::ForwarderConfig::default()
                },
                Some(mesh_dns::Owner(*public_key.as_bytes())),
                OsRng.next_u64(),
            ))
        }),
        dns_listen: OnceLock::new(),
        events: events_tx,
        held_events: Mutex::new(Vec::new()),
        pings: Mutex::new(std::collections::HashMap::new()),
        ring_unsaved: AtomicBool::new(false),
        ring_held_datagrams: AtomicU64::new(0),
        warnings: Mutex::new(Vec::new()),
        net: net.clone(),
        known: Mutex::new(known_peers.iter().copied().collect()),
        forgotten: Mutex::new(std::collections::BTreeSet::new()),
        kick: tokio::sync::Notify::new(),
        filter,
    });
    {
        // Persists the ring the node may have just founded (or restored), before anything
        // leaves.
        let mut node = shared.node();
        shared.settle(&mut node);
    }
    let buffers = {
        use std::os::fd::AsRawFd;
        let get = |opt| {
            mesh_datapath::getsockopt_int(udp.as_raw_fd(), opt)
                .map_or(0, |v| u64::try_from(v).unwrap_or(0))
        };
        (get(libc::SO_RCVBUF), get(libc::SO_SNDBUF))
    };
    let udp = Arc::new(BatchUdp::new(udp)?);
    let c = &shared.counters;
    c.udp_rcvbuf.store(buffers.0, Ordering::Relaxed);
    c.udp_sndbuf.store(buffers.1, Ordering::Relaxed);
    c.tun_offload.store(offload, Ordering::Relaxed);
    c.udp_gso_segments
        .store(udp.max_gso_segments() as u64, Ordering::Relaxed);
    c.udp_gro_segments
        .store(udp.gro_segments() as u64, Ordering::Relaxed);
    let tun = Arc::new(tun);

    if let Some((at, _)) = &dns_sockets {
        let _ = shared.dns_listen.set(*at);
    }
    let (gateway_tx, gateway_rx) = watch::channel(first_gateway.map(|g| g.addr()));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(tun_to_udp(
        shared.clone(),
        tun.clone(),
        udp.clone(),
        config.mtu as usize,
    ));
    tasks.spawn(udp_to_tun(
        shared.clone(),
        tun.clone(),
        udp.clone(),
        offload,
    ));
    tasks.spawn(timers(shared.clone(), udp.clone()));
    tasks.spawn(events::events(
        shared.clone(),
        net.clone(),
        events_rx,
        gateway_tx,
    ));
    tasks.spawn(crate::metrics::serve(shared.clone()));
    if let Some(client) = kube_client {
        tasks.spawn(crate::kube::run(shared.clone(), client));
    }
    if let Some(state) = shared.dns.clone() {
        if let Some(d) = &config.dns
            && d.upstreams.is_empty()
        {
            tracing::warn!(
                "no upstream DNS resolver (none in /etc/resolv.conf or --dns-upstream): names outside the zone get SERVFAIL"
            );
        }
        let shared = shared.clone();
        tasks.spawn(async move {
            let (at, (dns_udp, dns_tcp)) = match dns_sockets {
                Some(s) => s,
                None => match dns_at_first_gateway(gateway_rx).await {
                    Some(s) => s,
                    // Logged; the node runs on without DNS.
                    None => std::future::pending().await,
                },
            };
            let _ = shared.dns_listen.set(at);
            tracing::info!(listen = %at, zone = %state.read(|s| s.config.zone.to_string()), "dns up");
            mesh_dns_server::serve(dns_udp, dns_tcp, state)
                .await
                .context("the DNS server stopped")
        });
    }
    let api_shared = shared.clone();
    tasks.spawn(async move {
        crate::api::serve(api_listener, api_shared).await;
        anyhow::bail!("the API server stopped")
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        Some(res) = tasks.join_next() => {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            drop(tun);
            let why = match res {
                Ok(Ok(())) => "without an error".to_owned(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => e.to_string(),
            };
            anyhow::bail!("a packet task stopped: {why}");
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // Dropping the TUN device deletes it and its routes; the bridge and its address stay so
    // local pods keep talking and a restarted meshd picks them up again.
    drop(tun);
    Ok(())
}

/// Automatic IPAM's start: the ring and blocks in use saved by the last run, and whether to
/// found a new cluster (no `--peer` and no ring saved: this is the first node).
fn ring_config(config: &Config) -> Result<RingConfig> {
    let state = state::load_ring(&config.state_dir, config.range, config.block_prefix)?;
    let active = state::load_blocks(&config.state_dir)?;
    // With --kube the kube task decides, once it has listed the Nodes (`kube::founds_ring`).
    let found_nonce =
        (config.peers.is_empty() && state.is_none() && config.kube.is_none()).then(|| {
            let mut nonce = [0u8; 16];
            OsRng.fill_bytes(&mut nonce);
            nonce
        });
    if found_nonce.is_some() {
        tracing::info!(
            range = %config.range,
            block_size = config.block_prefix,
            "no --peer and no address ring saved: founding a new cluster's address ring"
        );
    } else if state.is_none() && config.kube.is_none() {
        tracing::info!("joining the cluster's address ring through the --peer members");
    }
    Ok(RingConfig {
        block_prefix: config.block_prefix,
        state,
        active,
        found_nonce,
    })
}

/// Waits for the node's first gateway, then binds the DNS server there (port 53). `None`
/// (logged) when the bind fails: the node runs on without DNS.
async fn dns_at_first_gateway(
    mut gateway: watch::Receiver<Option<Ipv4Addr>>,
) -> Option<(SocketAddr, (tokio::net::UdpSocket, tokio::net::TcpListener))> {
    let gw = loop {
        if let Some(gw) = *gateway.borrow_and_update() {
            break gw;
        }
        if gateway.changed().await.is_err() {
            return None;
        }
    };
    let at = SocketAddr::new(gw.into(), crate::config::DEFAULT_DNS_PORT);
    match bind_dns(at).await {
        Ok(s) => Some((at, s)),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "no DNS server on this node");
            None
        }
    }
}

/// Removes the API socket when `run` returns, however it returns.
struct Cleanup {
    api_socket: std::path::PathBuf,
}

impl Cleanup {
    fn new(api_socket: std::path::PathBuf) -> Self {
        Self { api_socket }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.api_socket);
    }
}

/// The DNS server's UDP socket and TCP listener on `addr`.
async fn bind_dns(addr: SocketAddr) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let hint = "pick another with --dns ADDR:PORT or turn DNS off with --dns off";
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve DNS on udp {addr}: {e} ({hint})"))?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve DNS on tcp {addr}: {e} ({hint})"))?;
    Ok((udp, tcp))
}

/// IP forwarding, the TUN device (with offloads unless `--offload off`) and the route of
/// the cluster range into it.
async fn setup_tun(
    net: &HostNetwork,
    config: &Config,
    src: Option<Ipv4Addr>,
) -> Result<(tun_rs::AsyncDevice, bool)> {
    mesh_datapath::enable_ip_forwarding()?;
    let (tun, offload) = if config.offload {
        HostNetwork::create_tun_offload(&config.tun, config.mtu)?
    } else {
        (HostNetwork::create_tun(&config.tun, config.mtu)?, false)
    };
    net.route_to_tun_from(config.range, &config.tun, src)
        .await
        .with_context(|| format!("cannot route {} to {}", config.range, config.tun))?;
    Ok((tun, offload))
}

/// The wall clock as time since the Unix epoch (zero if it is set before 1970).
fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn random_seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    OsRng.fill_bytes(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::loops::pack_run;
    use super::shared::foreign_ring_message;
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, i], 6788))
    }

    /// Fills slot `i` with `len` bytes of value `i + 1`.
    fn store_with(slot: usize, lens: &[usize]) -> Vec<u8> {
        let mut store = vec![0u8; slot * lens.len()];
        for (i, l) in lens.iter().enumerate() {
            store[i * slot..i * slot + l].fill(i as u8 + 1);
        }
        store
    }

    #[test]
    fn a_foreign_ring_is_reported_with_the_rings_own_message_naming_the_fix() {
        let ours = "0a".repeat(16);
        let theirs = "0b".repeat(16);
        let m = foreign_ring_message(&ours, &theirs);
        assert!(m.starts_with(&format!(
            "refusing address ownership of cluster ring {theirs}"
        )));
        assert!(
            m.contains(&ours) && m.contains("meshd reset") && m.contains("--peer"),
            "{m}"
        );
        assert!(!m.contains('\n'));
        let m = foreign_ring_message("x", "y");
        assert!(m.contains("meshd reset"), "{m}");
    }

    #[test]
    fn gateway_is_the_first_address_with_the_block_prefix() {
        assert_eq!(
            gateway_of("10.32.255.240/28".parse().unwrap()),
            "10.32.255.241/28".parse::<Ipv4Net>().unwrap()
        );
    }

    #[test]
    fn runs_of_equal_datagrams_are_packed_back_to_back_with_a_short_last_one() {
        let slot = 100;
        let lens = [80, 80, 80, 30, 80];
        let mut store = store_with(slot, &lens);
        let sealed: Vec<_> = lens.iter().map(|l| Some((addr(1), *l))).collect();
        let (end, bytes) = pack_run(&mut store, slot, &sealed, 0, addr(1), 80);
        assert_eq!((end, bytes), (4, 270), "stops after the short one");
        let mut want = vec![1u8; 80];
        want.extend([2u8; 80]);
        want.extend([3u8; 80]);
        want.extend([4u8; 30]);
        assert_eq!(&store[..270], &want[..]);
        // The next run starts untouched at its own slot.
        assert_eq!(&store[400..480], &[5u8; 80]);
        // Datagrams that fill their slots are already back to back.
        let lens = [100, 100, 100, 40];
        let mut store = store_with(slot, &lens);
        let sealed: Vec<_> = lens.iter().map(|l| Some((addr(1), *l))).collect();
        assert_eq!(
            pack_run(&mut store, slot, &sealed, 0, addr(1), 100),
            (4, 340)
        );
        let want: Vec<u8> = [1u8, 2, 3, 4]
            .iter()
            .zip(lens)
            .flat_map(|(b, l)| vec![*b; l])
            .collect();
        assert_eq!(&store[..340], &want[..]);
    }

    #[test]
    fn a_run_ends_at_another_peer_a_longer_datagram_or_a_dropped_packet() {
        let slot = 100;
        let mut store = store_with(slot, &[50, 50, 50, 60, 50]);
        let sealed = vec![
            Some((addr(1), 50)),
            Some((addr(2), 50)),
            Some((addr(2), 50)),
            Some((addr(2), 60)),
            None,
        ];
        assert_eq!(pack_run(&mut store, slot, &sealed, 0, addr(1), 50), (1, 50));
        assert_eq!(
            pack_run(&mut store, slot, &sealed, 1, addr(2), 50),
            (3, 100)
        );
        assert_eq!(&store[100..200], &[[2u8; 50], [3u8; 50]].concat()[..]);
        assert_eq!(pack_run(&mut store, slot, &sealed, 3, addr(2), 60), (4, 60));
    }
}
