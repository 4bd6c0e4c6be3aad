//! `meshd` running: sets up the host (bridge, TUN, routes, UDP socket), then moves bytes
//! between the TUN device, the UDP socket and the sans-I/O [`Node`], and serves the API.
//!
//! Two tasks move packets, one per direction, so reading the TUN device and reading the
//! socket proceed in parallel; the node sits behind a mutex held only for the in-place
//! seal or open of one packet. A third task runs the node's timers.

use crate::config::Config;
use crate::state;
use anyhow::{Context, Result};
use mesh_core::{Decap, Encap, Event, Node, NodeConfig, Transmit};
use mesh_crypto::{ClusterPsk, PublicKey, TAG_LEN};
use mesh_datapath::HostNetwork;
use mesh_proto::datagram::DATA_HEADER_LEN;
use rand_core::{OsRng, RngCore};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Largest datagram we receive.
const MAX_DATAGRAM: usize = 65_535;
/// Socket buffers asked for (the kernel may clamp without CAP_NET_ADMIN).
const SOCKET_BUFFER: usize = 4 << 20;
/// The timer task wakes at least this often, to pick up deadlines that packet handling
/// moved earlier.
const TIMER_GRANULARITY: Duration = Duration::from_millis(50);

/// What the tasks and the API share.
pub(crate) struct Shared {
    node: Mutex<Node>,
    config: Config,
    public_key: PublicKey,
    started: Instant,
    tun_write_errors: AtomicU64,
    udp_send_errors: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn node(&self) -> MutexGuard<'_, Node> {
        // A panic while holding the lock already ended the process (panic = abort is not
        // set, but every task is joined and a panic propagates); recover the data anyway.
        self.node.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self) -> mesh_api::Status {
        let now = Instant::now();
        let node = self.node();
        let mut drops = node.drops().to_api();
        for (reason, counter) in [
            ("tun_write", &self.tun_write_errors),
            ("udp_send", &self.udp_send_errors),
        ] {
            let n = counter.load(Ordering::Relaxed);
            if n > 0 {
                drops.push(mesh_api::DropCount {
                    reason: reason.into(),
                    packets: n,
                });
            }
        }
        let c = &self.config;
        mesh_api::Status {
            node: mesh_api::NodeStatus {
                name: c.name.clone(),
                public_key: self.public_key.to_string(),
                listen: c.listen.to_string(),
                range: c.range.to_string(),
                blocks: node.blocks().iter().map(ToString::to_string).collect(),
                bridge: c.bridge.clone(),
                gateway: gateway(c).to_string(),
                tun: c.tun.clone(),
                mtu: c.mtu,
                cipher: "chacha20-poly1305".into(),
                uptime_secs: now.saturating_duration_since(self.started).as_secs(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            peers: node.peer_status(now),
            drops,
        }
    }
}

/// The bridge address: the block's first address, with the block's prefix.
pub(crate) fn gateway(c: &Config) -> ipnet::Ipv4Net {
    let first = u32::from(c.block.network()).saturating_add(1);
    ipnet::Ipv4Net::new(first.into(), c.block.prefix_len()).unwrap_or(c.block)
}

/// Runs meshd until SIGTERM/SIGINT.
pub(crate) async fn run(config: Config) -> Result<()> {
    if config.secret_mode & 0o077 != 0 {
        tracing::warn!(
            path = %config.secret_file.display(),
            mode = format!("{:o}", config.secret_mode),
            "secret file is readable by other users; chmod 600 it"
        );
    }
    mesh_datapath::check_prerequisites()?;
    let udp = mesh_datapath::bind_udp(config.listen, SOCKET_BUFFER)?;
    let api_listener = crate::api::bind(&config.api_socket)?;
    let mut cleanup = Cleanup::new(config.api_socket.clone());

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

    let net = HostNetwork::connect().await?;
    let gw = gateway(&config);
    let created_bridge = net
        .ensure_bridge(&config.bridge, gw, config.mtu)
        .await
        .with_context(|| format!("cannot set up bridge {}", config.bridge))?;
    if created_bridge {
        cleanup.bridge = Some((net.clone(), config.bridge.clone()));
    }
    mesh_datapath::enable_ip_forwarding()?;
    let tun = HostNetwork::create_tun(&config.tun, config.mtu)?;
    net.route_to_tun(config.range, &config.tun, gw.addr())
        .await
        .with_context(|| format!("cannot route {} to {}", config.range, config.tun))?;
    tracing::info!(
        listen = %config.listen,
        bridge = %config.bridge,
        gateway = %gw,
        tun = %config.tun,
        range = %config.range,
        mtu = config.mtu,
        peers = config.peers.len(),
        "meshd up"
    );

    let now = Instant::now();
    let node = Node::new(
        NodeConfig {
            name: config.name.clone(),
            keypair,
            psk: ClusterPsk::derive(&config.secret.0),
            blocks: vec![config.block],
            range: config.range,
            bootstrap: config.peers.clone(),
            known_peers: known_peers.clone(),
        },
        now,
        random_seed(),
    );
    let shared = Arc::new(Shared {
        node: Mutex::new(node),
        config: config.clone(),
        public_key,
        started: now,
        tun_write_errors: AtomicU64::new(0),
        udp_send_errors: AtomicU64::new(0),
    });
    let udp = Arc::new(udp);
    let tun = Arc::new(tun);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(tun_to_udp(shared.clone(), tun.clone(), udp.clone()));
    tasks.spawn(udp_to_tun(shared.clone(), tun.clone(), udp.clone()));
    tasks.spawn(timers(
        shared.clone(),
        udp.clone(),
        config.state_dir.clone(),
        known_peers,
    ));
    tasks.spawn(crate::api::serve(api_listener, shared.clone()));
    // Everything is up: from here on, a stop keeps the bridge (pods stay attached).
    cleanup.bridge = None;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        Some(res) = tasks.join_next() => {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            drop(tun);
            anyhow::bail!("a meshd task stopped unexpectedly ({res:?}); see the log above");
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // Dropping the TUN device deletes it and its routes; the bridge and its address stay so
    // local pods keep talking and a restarted meshd picks them up again.
    drop(tun);
    Ok(())
}

/// Removes what a failed start created: the API socket always, the bridge only if this
/// run created it and did not finish starting.
struct Cleanup {
    api_socket: std::path::PathBuf,
    bridge: Option<(HostNetwork, String)>,
}

impl Cleanup {
    fn new(api_socket: std::path::PathBuf) -> Self {
        Self {
            api_socket,
            bridge: None,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.api_socket);
        if let Some((net, name)) = self.bridge.take() {
            // Best effort from a destructor: spawn the deletion on the runtime and let the
            // process exit wait for it via the runtime shutdown.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = net.delete_link(&name).await;
                });
            }
        }
    }
}

fn random_seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    OsRng.fill_bytes(&mut s);
    s
}

fn drain(node: &mut Node, out: &mut Vec<Transmit>) {
    while let Some(t) = node.poll_transmit() {
        out.push(t);
    }
}

async fn send_all(shared: &Shared, udp: &UdpSocket, out: &mut Vec<Transmit>) {
    for t in out.drain(..) {
        if udp.send_to(&t.payload, t.to).await.is_err() {
            shared.udp_send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn tun_to_udp(shared: Arc<Shared>, tun: Arc<tun_rs::AsyncDevice>, udp: Arc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut pending = Vec::new();
    let max_packet = MAX_DATAGRAM - DATA_HEADER_LEN - TAG_LEN;
    loop {
        let n = match tun
            .recv(&mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + max_packet])
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "reading the TUN device failed");
                return;
            }
        };
        let outcome = {
            let mut node = shared.node();
            let r = node.encapsulate(Instant::now(), &mut buf, n);
            drain(&mut node, &mut pending);
            r
        };
        if let Encap::Send { to, len } = outcome
            && udp.send_to(&buf[..len], to).await.is_err()
        {
            shared.udp_send_errors.fetch_add(1, Ordering::Relaxed);
        }
        if !pending.is_empty() {
            send_all(&shared, &udp, &mut pending).await;
        }
    }
}

async fn udp_to_tun(shared: Arc<Shared>, tun: Arc<tun_rs::AsyncDevice>, udp: Arc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut pending = Vec::new();
    loop {
        let (n, from) = match udp.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors (port unreachable from a peer that is down) surface here on
                // Linux; they are not fatal.
                tracing::trace!(error = %e, "UDP receive error");
                continue;
            }
        };
        let from = canonical(from);
        let outcome = {
            let mut node = shared.node();
            let r = node.decapsulate(Instant::now(), from, &mut buf[..n]);
            drain(&mut node, &mut pending);
            r
        };
        if let Decap::Deliver { start, len } = outcome
            && tun.send(&buf[start..start + len]).await.is_err()
        {
            shared.tun_write_errors.fetch_add(1, Ordering::Relaxed);
        }
        if !pending.is_empty() {
            send_all(&shared, &udp, &mut pending).await;
        }
    }
}

/// IPv4-mapped IPv6 addresses back to IPv4, so one peer has one endpoint form.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

async fn timers(
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
    state_dir: std::path::PathBuf,
    known: Vec<(PublicKey, SocketAddr)>,
) {
    let mut pending = Vec::new();
    let mut known: BTreeMap<PublicKey, SocketAddr> = known.into_iter().collect();
    loop {
        let deadline = {
            let node = shared.node();
            node.poll_timeout()
        };
        let now = Instant::now();
        let wake = deadline
            .map_or(now + TIMER_GRANULARITY, |d| d.min(now + TIMER_GRANULARITY))
            .max(now);
        tokio::time::sleep_until(wake.into()).await;
        let mut changed = false;
        {
            let mut node = shared.node();
            let now = Instant::now();
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
            drain(&mut node, &mut pending);
            while let Some(ev) = node.poll_event() {
                match ev {
                    Event::PeerEstablished { key, endpoint } => {
                        if known.insert(key, endpoint) != Some(endpoint) {
                            changed = true;
                        }
                    }
                    Event::BlockConflict { .. } => {}
                }
            }
        }
        send_all(&shared, &udp, &mut pending).await;
        if changed {
            let list: Vec<_> = known.iter().map(|(k, e)| (*k, *e)).collect();
            if let Err(e) = state::save_peers(&state_dir, &list) {
                tracing::warn!(error = %e, "cannot save known peers");
            }
        }
    }
}
