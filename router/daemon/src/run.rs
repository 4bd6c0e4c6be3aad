//! `meshd` running: sets up the host (bridge, TUN, routes, UDP socket), then moves bytes
//! between the TUN device, the UDP socket and the sans-I/O [`Node`], and serves the API.
//!
//! Two tasks move packets, one per direction, so reading the TUN device and reading the
//! socket proceed in parallel; both work in batches (a TUN read yields up to 128 segments of
//! a TCP super-packet, a UDP receive up to 32 buffers of GRO-coalesced datagrams) and take
//! the node's mutex once per batch, only for the in-place seals or opens. A third task runs
//! the node's timers.

use crate::config::Config;
use crate::state;
use anyhow::{Context, Result};
use mesh_core::{Decap, Encap, Event, Node, NodeConfig, Transmit};
use mesh_crypto::{ClusterPsk, PublicKey, TAG_LEN};
use mesh_datapath::{BATCH_SIZE, BatchUdp, HostNetwork, RecvMeta};
use mesh_proto::datagram::DATA_HEADER_LEN;
use rand_core::{OsRng, RngCore};
use std::collections::BTreeMap;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Largest datagram we receive.
const MAX_DATAGRAM: usize = 65_535;
/// Socket buffers asked for (the kernel may clamp without CAP_NET_ADMIN).
const SOCKET_BUFFER: usize = 4 << 20;
/// Packets one TUN read may yield (a 64 KB super-packet in MTU-sized segments).
const TUN_BATCH: usize = tun_rs::IDEAL_BATCH_SIZE;
/// Bytes kept in front of each packet written to the TUN device, for its virtio header.
const TUN_HEADROOM: usize = 16;
/// The timer task wakes at least this often, to pick up deadlines that packet handling
/// moved earlier.
const TIMER_GRANULARITY: Duration = Duration::from_millis(50);

/// What the tasks and the API share.
pub(crate) struct Shared {
    node: Mutex<Node>,
    pub(crate) config: Config,
    pub(crate) public_key: PublicKey,
    started: Instant,
    /// The pod address pool, served by the API to `mesh-cni`.
    pub(crate) ipam: crate::ipam::IpamService,
    tun_write_errors: AtomicU64,
    tun_read_errors: AtomicU64,
    udp_send_errors: AtomicU64,
    counters: Counters,
    /// The metrics socket and start time, for the metrics server (`metrics.rs`).
    pub(crate) metrics: crate::metrics::Metrics,
    /// The DNS server's records and counters; `None` with `--dns off`.
    pub(crate) dns: Option<Arc<mesh_dns_server::DnsState>>,
}

/// Packet-path counters; see `mesh_api::DatapathStatus`.
#[derive(Debug, Default)]
struct Counters {
    tun_offload: AtomicBool,
    udp_gso_segments: AtomicU64,
    udp_gro_segments: AtomicU64,
    tun_reads: AtomicU64,
    tun_read_packets: AtomicU64,
    tun_writes: AtomicU64,
    tun_write_packets: AtomicU64,
    udp_sends: AtomicU64,
    udp_send_datagrams: AtomicU64,
    udp_recvs: AtomicU64,
    udp_recv_datagrams: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn count(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn node(&self) -> MutexGuard<'_, Node> {
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
            ("tun_read", &self.tun_read_errors),
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
            datapath: self.datapath_status(),
            members: node.members(now),
            gossip: node.gossip_status(now),
        }
    }

    fn datapath_status(&self) -> mesh_api::DatapathStatus {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        mesh_api::DatapathStatus {
            tun_offload: c.tun_offload.load(Ordering::Relaxed),
            udp_gso_segments: get(&c.udp_gso_segments),
            udp_gro_segments: get(&c.udp_gro_segments),
            tun_reads: get(&c.tun_reads),
            tun_read_packets: get(&c.tun_read_packets),
            tun_writes: get(&c.tun_writes),
            tun_write_packets: get(&c.tun_write_packets),
            udp_sends: get(&c.udp_sends),
            udp_send_datagrams: get(&c.udp_send_datagrams),
            udp_recvs: get(&c.udp_recvs),
            udp_recv_datagrams: get(&c.udp_recv_datagrams),
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
    mesh_datapath::check_prerequisites()?;
    if config.secret_mode & 0o077 != 0 {
        tracing::warn!(
            path = %config.secret_file.display(),
            mode = format!("{:o}", config.secret_mode),
            "secret file is readable by other users; chmod 600 it"
        );
    }
    let udp = mesh_datapath::bind_udp(config.listen, SOCKET_BUFFER)?;
    let api_listener = crate::api::bind(&config.api_socket)?;
    let _cleanup = Cleanup::new(config.api_socket.clone());

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
    // The DNS sockets bind to the gateway address, so after the bridge has it; they and the
    // TUN device go away by themselves when dropped on a failure below.
    let setup = async {
        let dns = match &config.dns {
            Some(d) => Some(bind_dns(d.listen).await?),
            None => None,
        };
        let (tun, offload) = setup_tun(&net, &config, gw.addr()).await?;
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
    tracing::info!(
        listen = %config.listen,
        bridge = %config.bridge,
        gateway = %gw,
        tun = %config.tun,
        range = %config.range,
        mtu = config.mtu,
        offload,
        peers = config.peers.len(),
        dns = ?config.dns.as_ref().map(|d| d.listen),
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
            generation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            advertise: config.advertise,
            dead_after: config.dead_after,
            gossip: mesh_core::GossipConfig::default(),
            ring: None,
        },
        now,
        random_seed(),
    );
    let shared = Arc::new(Shared {
        node: Mutex::new(node),
        config: config.clone(),
        public_key,
        started: now,
        ipam: crate::ipam::IpamService::load(&config)?,
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
    });
    let udp = Arc::new(BatchUdp::new(udp)?);
    let c = &shared.counters;
    c.tun_offload.store(offload, Ordering::Relaxed);
    c.udp_gso_segments
        .store(udp.max_gso_segments() as u64, Ordering::Relaxed);
    c.udp_gro_segments
        .store(udp.gro_segments() as u64, Ordering::Relaxed);
    let tun = Arc::new(tun);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(tun_to_udp(
        shared.clone(),
        tun.clone(),
        udp.clone(),
        config.mtu as usize,
    ));
    tasks.spawn(udp_to_tun(shared.clone(), tun.clone(), udp.clone()));
    tasks.spawn(timers(
        shared.clone(),
        udp.clone(),
        config.state_dir.clone(),
        known_peers,
    ));
    tasks.spawn(crate::metrics::serve(shared.clone()));
    if let (Some((dns_udp, dns_tcp)), Some(state)) = (dns_sockets, shared.dns.clone()) {
        if let Some(d) = &config.dns {
            if d.upstreams.is_empty() {
                tracing::warn!(
                    "no upstream DNS resolver (none in /etc/resolv.conf or --dns-upstream): names outside the zone get SERVFAIL"
                );
            }
            tracing::info!(listen = %d.listen, zone = %d.zone.zone, upstreams = ?d.upstreams, "dns up");
        }
        tasks.spawn(async move {
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
    src: std::net::Ipv4Addr,
) -> Result<(tun_rs::AsyncDevice, bool)> {
    mesh_datapath::enable_ip_forwarding()?;
    let (tun, offload) = if config.offload {
        HostNetwork::create_tun_offload(&config.tun, config.mtu)?
    } else {
        (HostNetwork::create_tun(&config.tun, config.mtu)?, false)
    };
    net.route_to_tun(config.range, &config.tun, src)
        .await
        .with_context(|| format!("cannot route {} to {}", config.range, config.tun))?;
    Ok((tun, offload))
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

async fn send_all(shared: &Shared, udp: &BatchUdp, out: &mut Vec<Transmit>) {
    for t in out.drain(..) {
        shared.count(&shared.counters.udp_sends, 1);
        shared.count(&shared.counters.udp_send_datagrams, 1);
        if udp.send(t.to, &t.payload, None).await.is_err() {
            shared.udp_send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// TUN -> underlay. One read returns up to [`TUN_BATCH`] packets (a TCP super-packet split
/// into MTU-sized segments when offloads are on); each lands in its own fixed-size slot of
/// one buffer, `DATA_HEADER_LEN` bytes in, so it is sealed in place. A run of equal-sized
/// datagrams to one peer (plus one shorter last one) is then moved back to back and leaves
/// in one segmented (GSO) send.
async fn tun_to_udp(
    shared: Arc<Shared>,
    tun: Arc<tun_rs::AsyncDevice>,
    udp: Arc<BatchUdp>,
    mtu: usize,
) -> Result<()> {
    let slot = DATA_HEADER_LEN + mtu + TAG_LEN;
    let mut original = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + MAX_DATAGRAM];
    let mut store = vec![0u8; slot * TUN_BATCH];
    let mut sizes = vec![0usize; TUN_BATCH];
    let mut sealed: Vec<Option<(SocketAddr, usize)>> = vec![None; TUN_BATCH];
    let mut pending = Vec::new();
    loop {
        let n = {
            let mut bufs: Vec<&mut [u8]> = store.chunks_mut(slot).collect();
            match tun
                .recv_multiple(&mut original, &mut bufs, &mut sizes, DATA_HEADER_LEN)
                .await
            {
                Ok(n) => n,
                // An error of the read itself (device gone, bad descriptor) ends the task;
                // any other is about one packet the offload code could not split (a bad
                // virtio header, a segment that does not fit): drop it, count it, go on.
                Err(e) if e.raw_os_error().is_some_and(|c| c != libc::EINTR) => {
                    return Err(e).context("reading the TUN device failed");
                }
                Err(e) => {
                    tracing::trace!(error = %e, "unsplittable packet from the TUN device");
                    shared.tun_read_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        };
        shared.count(&shared.counters.tun_reads, 1);
        shared.count(&shared.counters.tun_read_packets, n as u64);
        {
            let mut node = shared.node();
            let now = Instant::now();
            for (i, chunk) in store.chunks_mut(slot).take(n).enumerate() {
                sealed[i] = match node.encapsulate(now, chunk, sizes[i]) {
                    Encap::Send { to, len } => Some((to, len)),
                    Encap::Queued | Encap::Relayed | Encap::Dropped(_) => None,
                };
            }
            drain(&mut node, &mut pending);
        }
        let mut i = 0;
        while i < n {
            let Some((to, len)) = sealed[i] else {
                i += 1;
                continue;
            };
            let (end, bytes) = pack_run(&mut store, slot, &sealed[..n], i, to, len);
            let segment = (end - i > 1).then_some(len);
            let start = i * slot;
            shared.count(&shared.counters.udp_sends, 1);
            shared.count(&shared.counters.udp_send_datagrams, (end - i) as u64);
            if udp
                .send(to, &store[start..start + bytes], segment)
                .await
                .is_err()
            {
                shared.udp_send_errors.fetch_add(1, Ordering::Relaxed);
            }
            i = end;
        }
        if !pending.is_empty() {
            send_all(&shared, &udp, &mut pending).await;
        }
    }
}

/// Finds the run that starts at datagram `first` (to `to`, `len` bytes): following
/// datagrams to the same peer of the same length, plus at most one shorter last one, and
/// moves them back to back behind the first, so the run is one GSO buffer of `len`-byte
/// segments. Returns the index after the run and the run's total bytes.
fn pack_run(
    store: &mut [u8],
    slot: usize,
    sealed: &[Option<(SocketAddr, usize)>],
    first: usize,
    to: SocketAddr,
    len: usize,
) -> (usize, usize) {
    let base = first * slot;
    let mut end = first + 1;
    let mut bytes = len;
    while let Some(&Some((t, l))) = sealed.get(end) {
        if t != to || l > len {
            break;
        }
        // Datagram `end` moves from its slot to right behind the run; the destination
        // never passes the source (l <= len <= slot), so nothing unread is overwritten.
        let src = end * slot;
        store.copy_within(src..src + l, base + bytes);
        bytes += l;
        end += 1;
        if l < len {
            break;
        }
    }
    (end, bytes)
}

/// Underlay -> TUN. One receive returns up to `BATCH_SIZE` buffers, each holding one
/// datagram or several coalesced by UDP GRO; every datagram is opened in place, its packet
/// copied behind `TUN_HEADROOM` bytes (room for the virtio header) into a reusable buffer,
/// and the whole batch goes to the TUN device in one `send_multiple`, which coalesces TCP
/// segments back into super-packets when offloads are on.
async fn udp_to_tun(
    shared: Arc<Shared>,
    tun: Arc<tun_rs::AsyncDevice>,
    udp: Arc<BatchUdp>,
) -> Result<()> {
    let mut rx: Vec<Vec<u8>> = (0..BATCH_SIZE).map(|_| vec![0u8; MAX_DATAGRAM]).collect();
    let mut meta = vec![RecvMeta::default(); BATCH_SIZE];
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut gro = tun_rs::GROTable::default();
    let mut pending = Vec::new();
    loop {
        let n = {
            let mut slices: Vec<IoSliceMut<'_>> =
                rx.iter_mut().map(|b| IoSliceMut::new(&mut b[..])).collect();
            match udp.recv(&mut slices, &mut meta).await {
                Ok(n) => n,
                Err(e) => {
                    // ICMP errors (port unreachable from a peer that is down) surface here
                    // on Linux; they are not fatal.
                    tracing::trace!(error = %e, "UDP receive error");
                    continue;
                }
            }
        };
        shared.count(&shared.counters.udp_recvs, 1);
        let mut count = 0;
        let mut datagrams = 0u64;
        {
            let mut node = shared.node();
            let now = Instant::now();
            for (buf, m) in rx.iter_mut().zip(&meta).take(n) {
                let from = canonical(m.addr);
                let stride = m.stride.max(1);
                for dg in buf[..m.len].chunks_mut(stride) {
                    datagrams += 1;
                    if let Decap::Deliver { start, len } = node.decapsulate(now, from, dg) {
                        if count == out.len() {
                            out.push(Vec::with_capacity(TUN_HEADROOM + len));
                        }
                        let v = &mut out[count];
                        v.clear();
                        v.resize(TUN_HEADROOM, 0);
                        v.extend_from_slice(&dg[start..start + len]);
                        count += 1;
                    }
                }
            }
            drain(&mut node, &mut pending);
        }
        shared.count(&shared.counters.udp_recv_datagrams, datagrams);
        if count > 0 {
            shared.count(&shared.counters.tun_write_packets, count as u64);
            match tun
                .send_multiple(&mut gro, &mut out[..count], TUN_HEADROOM)
                .await
            {
                Ok(_) => shared.count(&shared.counters.tun_writes, 1),
                Err(_) => {
                    shared.tun_write_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
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
    udp: Arc<BatchUdp>,
    state_dir: std::path::PathBuf,
    known: Vec<(PublicKey, SocketAddr)>,
) -> Result<()> {
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
                    Event::BlockConflict { .. }
                    | Event::MemberDead { .. }
                    | Event::MemberAlive { .. }
                    // meshd runs with a fixed --block (ring: None): these do not happen.
                    | Event::BlocksChanged { .. }
                    | Event::RingChanged
                    | Event::ForeignRing { .. } => {}
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

#[cfg(test)]
mod tests {
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
