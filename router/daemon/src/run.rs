//! `meshd` running: sets up the host (bridge, TUN, routes, UDP socket), then moves bytes
//! between the TUN device, the UDP socket and the sans-I/O [`Node`], and serves the API.
//!
//! [`run`] checks privileges and `/dev/net/tun`, binds the UDP socket and the API socket,
//! replaces its nftables table `inet mesh` (`filter.rs`; the table outlives meshd, as the
//! bridge does, and `meshd reset` removes it), loads or creates the node key, creates (or
//! reuses) the bridge with the block's first address, enables IPv4 forwarding, opens the TUN
//! device and routes the cluster range into it. Then it runs these tasks:
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
//! - `timers`: sleep until the node's `poll_timeout` (at most 50 ms) or until an API handler
//!   wakes it (a ping probe queued), lock, `handle_timeout`, drain transmits.
//! - `events`: the node's events: `peers.json` when a peer is established at a new endpoint
//!   (not at an endpoint `meshctl forget` named); with automatic IPAM `blocks.json`, the
//!   bridge's gateways, the route source and the pool's blocks on `BlocksChanged`; the
//!   foreign-ring warning; gossiped DNS records (`RecordChanged` of kind 4) merged into the
//!   DNS store, and `MemberDead`/`MemberAlive` turning a member's records unserved/served
//!   (`names.rs`).
//! - the API: axum on the unix socket; `GET /v1/status` locks the node to build the answer;
//!   `POST /v1/ping` queues each probe in the node and wakes the timers task to send it.
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
    /// Where the DNS server listens, once it does (with automatic IPAM and no `--dns`, only
    /// once the node has a block).
    pub(crate) dns_listen: OnceLock<SocketAddr>,
    /// The node's events for the events task (all but `RingChanged`, handled in `drain`).
    events: mpsc::UnboundedSender<Event>,
    /// Events held back while the ring could not be persisted (a block the ring gave this
    /// node is used only once the ring says so on disk).
    held_events: Mutex<Vec<Event>>,
    /// The last attempt to persist the ring failed: the node's datagrams are held back (and
    /// dropped) until one succeeds.
    ring_unsaved: AtomicBool,
    /// Datagrams dropped because the ring could not be persisted.
    ring_held_datagrams: AtomicU64,
    /// Problems to show in `meshctl status` (one line each, naming the fix).
    warnings: Mutex<Vec<String>>,
    /// The host's netlink connection (`meshctl debug` reads links, neighbours and routes).
    pub(crate) net: HostNetwork,
    /// Peers reached, by key, as saved in `peers.json` (the events task adds, `meshctl
    /// forget` removes).
    known: Mutex<BTreeMap<PublicKey, SocketAddr>>,
    /// Endpoints `meshctl forget` named: peers there are not saved again (a session that
    /// stays up would otherwise save them at its next rekey) until `meshctl connect` names
    /// the endpoint again or meshd restarts.
    forgotten: Mutex<std::collections::BTreeSet<SocketAddr>>,
    /// meshd's nftables table as the kernel had it right after meshd installed it
    /// (`filter.rs`): what `meshctl debug` compares the table with.
    pub(crate) filter: mesh_datapath::InstalledFilter,
    /// Wakes the timers task to send what an API handler queued in the node now (a ping's
    /// probe) rather than at its next tick.
    kick: tokio::sync::Notify,
}

/// Packet-path counters; see `mesh_api::DatapathStatus`.
#[derive(Debug, Default)]
struct Counters {
    tun_offload: AtomicBool,
    udp_gso_segments: AtomicU64,
    udp_rcvbuf: AtomicU64,
    udp_sndbuf: AtomicU64,
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

    /// Whether blocks come from the cluster's address ring (no `--block`).
    pub(crate) fn automatic(&self) -> bool {
        self.config.block.is_none()
    }

    /// Hands the node's events on and persists its address ring if it changed; `false` when
    /// that failed (then nothing the node queued may leave). Call with the node locked, before
    /// taking any datagram out of it ([`Shared::drain`] does).
    pub(crate) fn settle(&self, node: &mut Node) -> bool {
        let mut ring_changed = self.ring_unsaved.load(Ordering::Relaxed);
        let mut held = self.held_events.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::RingChanged => ring_changed = true,
                ev => held.push(ev),
            }
        }
        let saved = match (ring_changed, node.ring_state()) {
            (true, Some(ring)) => match state::save_ring(&self.config.state_dir, &ring) {
                Ok(()) => {
                    if self.ring_unsaved.swap(false, Ordering::Relaxed) {
                        tracing::info!("address ring saved again; datagrams flow again");
                    }
                    true
                }
                Err(e) => {
                    if !self.ring_unsaved.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            error = %format!("{e:#}"),
                            "cannot save the address ring: holding back this node's gossip, \
                             handshakes and keepalives until it can (a ring entry must not leave \
                             unsaved); fix the state directory"
                        );
                    }
                    false
                }
            },
            _ => true,
        };
        if saved {
            for ev in held.drain(..) {
                // The events task runs as long as meshd does.
                let _ = self.events.send(ev);
            }
        }
        saved
    }

    /// [`Shared::settle`], then every datagram the node queued into `out` (or dropped, while
    /// the ring cannot be saved).
    fn drain(&self, node: &mut Node, out: &mut Vec<Transmit>) {
        let saved = self.settle(node);
        while let Some(t) = node.poll_transmit() {
            if saved {
                out.push(t);
            } else {
                self.count(&self.ring_held_datagrams, 1);
            }
        }
    }

    /// Wakes the timers task to send what the node queued now.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    /// `meshctl connect`: tries `addr` as a bootstrap endpoint from now on (whoever answers
    /// there is saved in `peers.json` once reached, like any peer; one reached already is
    /// saved now). `false` if it is tried already.
    pub(crate) fn connect_endpoint(&self, addr: SocketAddr) -> Result<bool> {
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr);
        let (added, reached) = {
            let mut node = self.node();
            let now = Instant::now();
            let added = node.add_bootstrap(now, addr);
            self.settle(&mut node);
            let reached: Vec<PublicKey> = node
                .peer_status(now)
                .iter()
                .filter(|p| {
                    p.state == mesh_api::PeerState::Established && p.endpoint == addr.to_string()
                })
                .filter_map(|p| p.public_key.parse().ok())
                .collect();
            (added, reached)
        };
        self.kick();
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for k in reached {
            changed |= known.insert(k, addr) != Some(addr);
        }
        if changed {
            let list: Vec<_> = known.iter().map(|(k, e)| (*k, *e)).collect();
            state::save_peers(&self.config.state_dir, &list)?;
        }
        Ok(added)
    }

    /// `meshctl forget`: stops trying `addr`, removes the peers saved at that endpoint from
    /// `peers.json` and saves none there again until `meshctl connect` names it. Whether it
    /// was a bootstrap endpoint, and the keys removed; `None` when it was neither.
    pub(crate) fn forget_endpoint(
        &self,
        addr: SocketAddr,
    ) -> Result<Option<(bool, Vec<PublicKey>)>> {
        let was_bootstrap = self.node().forget_bootstrap(addr);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<PublicKey> = known
            .iter()
            .filter(|(_, e)| **e == addr)
            .map(|(k, _)| *k)
            .collect();
        if !was_bootstrap && keys.is_empty() {
            return Ok(None);
        }
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr);
        if !keys.is_empty() {
            for k in &keys {
                known.remove(k);
            }
            let list: Vec<_> = known.iter().map(|(k, e)| (*k, *e)).collect();
            state::save_peers(&self.config.state_dir, &list)?;
        }
        Ok(Some((was_bootstrap, keys)))
    }

    /// Records a warning for `meshctl status`, once.
    fn warn(&self, line: String) {
        let mut w = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if !w.contains(&line) {
            w.push(line);
        }
    }

    /// The `ipam` answer: the pool, and with automatic IPAM the ring as this node sees it.
    pub(crate) fn ipam_status(&self) -> mesh_api::IpamStatus {
        let mut out = self.ipam.status();
        out.block_prefix = self.config.block_prefix;
        if !self.automatic() {
            return out;
        }
        out.mode = mesh_api::IpamMode::Automatic;
        let now = Instant::now();
        let node = self.node();
        let names: BTreeMap<String, String> = node
            .members(now)
            .into_iter()
            .map(|m| (m.public_key, m.name))
            .collect();
        out.ring = node
            .ring_state()
            .and_then(|r| r.ring)
            .map(|id| id.to_string());
        let own = node.public_key();
        out.owners = node
            .ring_spans()
            .unwrap_or_default()
            .into_iter()
            .map(|(nets, owner)| {
                let key = owner.map(|k| k.to_string());
                mesh_api::IpamSpan {
                    blocks: nets.iter().map(ToString::to_string).collect(),
                    name: key
                        .as_ref()
                        .and_then(|k| names.get(k).cloned())
                        .unwrap_or_default(),
                    public_key: key,
                    local: owner == Some(own),
                }
            })
            .collect();
        out
    }

    pub(crate) fn status(&self) -> mesh_api::Status {
        let now = Instant::now();
        let pool_blocks = self.ipam.blocks();
        let mut warnings = self
            .warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if self.automatic() && pool_blocks.is_empty() {
            warnings.push(
                "this node has no address block yet, so pods get no address: it gets one from \
                 the cluster's address ring once it reaches a member that owns blocks (check \
                 its --peer and the members above)"
                    .to_owned(),
            );
        }
        let held = self.ring_held_datagrams.load(Ordering::Relaxed);
        if held > 0 && self.ring_unsaved.load(Ordering::Relaxed) {
            warnings.push(format!(
                "{held} datagrams held back because the address ring cannot be saved to {}: \
                 fix the state directory (meshd's log says why)",
                self.config.state_dir.display()
            ));
        }
        let node = self.node();
        let handshakes = node.handshake_status(now);
        if handshakes.under_load {
            warnings.push(
                "handshake load: more than 200 initiations a second, so senders must prove \
                 their address with a cookie first (one round trip more); a flood? see the \
                 handshake_cookie and handshake_mac drops"
                    .to_owned(),
            );
        }
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
                gateway: pool_blocks
                    .first()
                    .map(|b| gateway_of(*b).to_string())
                    .unwrap_or_default(),
                tun: c.tun.clone(),
                mtu: c.mtu,
                cipher: c.ciphers.names(),
                uptime_secs: now.saturating_duration_since(self.started).as_secs(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            peers: node.peer_status(now),
            drops,
            datapath: self.datapath_status(),
            members: node.members(now),
            gossip: node.gossip_status(now),
            handshakes,
            warnings,
            dns: self.dns.as_deref().map(|d| {
                let (zone, (records, served)) =
                    d.read(|s| (s.config.zone.to_string(), s.store.counts()));
                let stats = d.stats();
                mesh_api::DnsSummary {
                    listen: self
                        .dns_listen
                        .get()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    zone,
                    records,
                    served,
                    queries: stats.udp_queries + stats.tcp_queries,
                }
            }),
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
            udp_rcvbuf: get(&c.udp_rcvbuf),
            udp_sndbuf: get(&c.udp_sndbuf),
        }
    }
}

/// A block's bridge address: its first address, with the block's prefix.
pub(crate) fn gateway_of(block: Ipv4Net) -> Ipv4Net {
    Ipv4Net::new(mesh_ipam::local::gateway_of(block), block.prefix_len()).unwrap_or(block)
}

/// The message of a refused foreign ring (the ring's own, which names the fix).
fn foreign_ring_message(ours: &str, theirs: &str) -> String {
    match (ours.parse(), theirs.parse()) {
        (Ok(ours), Ok(theirs)) => {
            mesh_ipam::MergeError::DifferentCluster { ours, theirs }.to_string()
        }
        _ => format!(
            "refusing address ownership of cluster ring {theirs}: this node belongs to cluster \
             ring {ours}; reset the nodes of one cluster with `meshd reset` and start them with \
             a --peer of the other (docs/ipam.md)"
        ),
    }
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
    tasks.spawn(events(shared.clone(), net.clone(), events_rx, gateway_tx));
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
            shared.drain(&mut node, &mut pending);
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
        // Full-size segments fill their slot exactly: already in place.
        if src != base + bytes {
            store.copy_within(src..src + l, base + bytes);
        }
        bytes += l;
        end += 1;
        if l < len {
            break;
        }
    }
    (end, bytes)
}

/// Underlay -> TUN. One receive returns up to `BATCH_SIZE` buffers, each holding one
/// datagram or several coalesced by UDP GRO; every datagram is opened in place and its
/// packet copied once, into a [`Coalescer`] that merges consecutive TCP segments of a flow
/// into super-packets when the TUN device takes them (offloads on). Its buffers (at most
/// [`TUN_FLUSH`], each up to 64 KB) are written one `write` each; a batch with more
/// packets than that is written in several rounds.
async fn udp_to_tun(
    shared: Arc<Shared>,
    tun: Arc<tun_rs::AsyncDevice>,
    udp: Arc<BatchUdp>,
    offload: bool,
) -> Result<()> {
    let mut rx: Vec<Vec<u8>> = (0..BATCH_SIZE).map(|_| vec![0u8; MAX_DATAGRAM]).collect();
    let mut meta = vec![RecvMeta::default(); BATCH_SIZE];
    let mut out = if offload {
        Coalescer::new(TUN_FLUSH)
    } else {
        Coalescer::without_merging(TUN_FLUSH)
    };
    // Without offloads the device takes bare packets, no virtio header.
    let skip = if offload { 0 } else { VNET_HDR_LEN };
    let mut pending = Vec::new();
    // When a receive last brought a datagram the node delivered or used.
    let mut last_useful = Instant::now();
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
        // Whether anything of this receive was delivered or used by the node.
        let mut useful = false;
        // Where the next round starts: (buffer, byte offset in it).
        let mut at = (0, 0);
        while at.0 < n {
            let mut packets = 0u64;
            let mut datagrams = 0u64;
            // Handshake messages taken in this round: at most HANDSHAKES_PER_LOCK, so the
            // node lock (and this task's turn on the runtime) is held for a bounded time even
            // when every datagram of a batch is a handshake that passes the gate.
            let mut handshakes = 0usize;
            {
                let mut node = shared.node();
                let now = Instant::now();
                'fill: while at.0 < n {
                    let m = &meta[at.0];
                    let from = canonical(m.addr);
                    let stride = m.stride.max(1);
                    let len = m.len;
                    let buf = &mut rx[at.0];
                    while at.1 < len {
                        if out.is_full() || handshakes >= HANDSHAKES_PER_LOCK {
                            break 'fill;
                        }
                        let end = (at.1 + stride).min(len);
                        let dg = &mut buf[at.1..end];
                        if is_handshake(dg) {
                            handshakes += 1;
                        }
                        at.1 = end;
                        datagrams += 1;
                        match node.decapsulate(now, from, dg) {
                            Decap::Deliver { start, len } => {
                                // Not full (checked above), so the packet is taken.
                                out.push(&dg[start..start + len]);
                                packets += 1;
                                useful = true;
                            }
                            Decap::Consumed => useful = true,
                            Decap::Dropped(_) => {}
                        }
                    }
                    at = (at.0 + 1, 0);
                }
                shared.drain(&mut node, &mut pending);
            }
            shared.count(&shared.counters.udp_recv_datagrams, datagrams);
            if !out.is_empty() {
                shared.count(&shared.counters.tun_write_packets, packets);
                let bufs = out.finish();
                shared.count(&shared.counters.tun_writes, bufs.len() as u64);
                for b in bufs {
                    if tun.send(&b[skip..]).await.is_err() {
                        shared.tun_write_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                out.clear();
            }
            if !pending.is_empty() {
                send_all(&shared, &udp, &mut pending).await;
            }
            if handshakes >= HANDSHAKES_PER_LOCK {
                // Let the other loops (established sessions' packets) run before more.
                tokio::task::yield_now().await;
            }
        }
        let now = Instant::now();
        if useful {
            last_useful = now;
        } else if now.saturating_duration_since(last_useful) >= JUNK_QUIET {
            // Only dropped datagrams (junk: a flood) for a while, and this receive too: wait a
            // little so the next receive takes what came meanwhile in one call. At a high
            // flood rate that turns a system call per datagram into one per millisecond. While
            // anything useful arrives, nothing waits: a session's traffic is never delayed by
            // it, only a first datagram after a junk-only spell (by up to about a millisecond).
            tokio::time::sleep(JUNK_PAUSE).await;
        }
    }
}

/// How long `udp_to_tun` waits after a receive whose datagrams were all dropped, when
/// nothing useful came for [`JUNK_QUIET`].
const JUNK_PAUSE: Duration = Duration::from_millis(1);
/// See [`JUNK_PAUSE`].
const JUNK_QUIET: Duration = Duration::from_millis(50);

/// Handshake messages `udp_to_tun` hands the node per lock hold (see there).
const HANDSHAKES_PER_LOCK: usize = 16;

/// A handshake message or cookie reply, directly or inside a relay frame: the datagrams
/// that may cost the node public-key work.
fn is_handshake(dg: &[u8]) -> bool {
    use mesh_proto::datagram::{
        TYPE_COOKIE_REPLY, TYPE_HANDSHAKE_FINAL, TYPE_HANDSHAKE_INIT, TYPE_HANDSHAKE_RESPONSE,
    };
    let kind = |b: Option<&u8>| {
        matches!(
            b,
            Some(
                &(TYPE_HANDSHAKE_INIT
                    | TYPE_HANDSHAKE_RESPONSE
                    | TYPE_HANDSHAKE_FINAL
                    | TYPE_COOKIE_REPLY)
            )
        )
    };
    match dg.first() {
        Some(&(mesh_proto::relay::TYPE_RELAY | mesh_proto::relay::TYPE_RELAYED)) => {
            kind(dg.get(mesh_proto::relay::RELAY_HEADER_LEN))
        }
        first => kind(first),
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

async fn timers(shared: Arc<Shared>, udp: Arc<BatchUdp>) -> Result<()> {
    let mut pending = Vec::new();
    loop {
        let deadline = {
            let node = shared.node();
            node.poll_timeout()
        };
        let now = Instant::now();
        let wake = deadline
            .map_or(now + TIMER_GRANULARITY, |d| d.min(now + TIMER_GRANULARITY))
            .max(now);
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            () = shared.kick.notified() => {}
        }
        {
            let mut node = shared.node();
            let now = Instant::now();
            // The monotonic clock stops while the host is suspended and the wall clock may
            // be stepped: initiations carry the wall clock, so follow it.
            node.sync_clock(now, unix_time());
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
            shared.drain(&mut node, &mut pending);
        }
        send_all(&shared, &udp, &mut pending).await;
    }
}

/// Acts on the node's events, in order: persists peers it reached (`peers.json`); with
/// automatic IPAM persists the blocks in use (`blocks.json`), puts their gateways on the
/// bridge (and takes those of blocks no longer in use off), routes the range with the first
/// gateway as source and gives the pool the blocks; records a refused foreign ring for
/// `meshctl status`; merges gossiped DNS records and tells the DNS store which owners are dead.
async fn events(
    shared: Arc<Shared>,
    net: HostNetwork,
    mut rx: mpsc::UnboundedReceiver<Event>,
    gateway: watch::Sender<Option<Ipv4Addr>>,
) -> Result<()> {
    let c = &shared.config;
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::PeerEstablished { key, endpoint } => {
                let mut known = shared.known.lock().unwrap_or_else(|e| e.into_inner());
                let forgotten = shared
                    .forgotten
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&endpoint);
                if !forgotten && known.insert(key, endpoint) != Some(endpoint) {
                    let list: Vec<_> = known.iter().map(|(k, e)| (*k, *e)).collect();
                    if let Err(e) = state::save_peers(&c.state_dir, &list) {
                        tracing::warn!(error = %e, "cannot save known peers");
                    }
                }
            }
            Event::BlocksChanged { active } => {
                if c.block.is_none() {
                    use_blocks(&shared, &net, &active, &gateway).await;
                }
            }
            Event::ForeignRing { ours, theirs } => {
                shared.warn(foreign_ring_message(&ours, &theirs));
            }
            Event::RecordChanged { kind, id } if kind == names::KIND_DNS => {
                names::record_changed(&shared, &id);
            }
            Event::MemberDead { key } => names::member_liveness(&shared, &key, false),
            Event::MemberAlive { key } => names::member_liveness(&shared, &key, true),
            Event::RingChanged | Event::BlockConflict { .. } | Event::RecordChanged { .. } => {}
        }
    }
    // Shared holds the sender: the channel closes only when meshd stops.
    std::future::pending().await
}

/// Automatic IPAM: pods get addresses out of `active` from now on.
async fn use_blocks(
    shared: &Shared,
    net: &HostNetwork,
    active: &[Ipv4Net],
    gateway: &watch::Sender<Option<Ipv4Addr>>,
) {
    let c = &shared.config;
    // First on disk: blocks in use are never donated, also after a restart.
    if let Err(e) = state::save_blocks(&c.state_dir, active) {
        tracing::error!(error = %format!("{e:#}"), ?active, "cannot save the blocks in use; pods get no address from new blocks until it can");
        return;
    }
    let gateways: Vec<Ipv4Net> = active.iter().map(|b| gateway_of(*b)).collect();
    match net.sync_addresses(&c.bridge, c.range, &gateways).await {
        Ok((added, deleted)) => {
            if !added.is_empty() || !deleted.is_empty() {
                tracing::info!(bridge = %c.bridge, ?added, ?deleted, "gateways on the bridge");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, bridge = %c.bridge, "cannot put the gateways on the bridge")
        }
    }
    let first = gateways.first().map(|g| g.addr());
    if *gateway.borrow() != first {
        if let Err(e) = net.route_to_tun_from(c.range, &c.tun, first).await {
            tracing::warn!(error = %e, "cannot set the source address of the route into the mesh");
        }
        gateway.send_replace(first);
    }
    if let Err(e) = shared.ipam.set_blocks(active) {
        tracing::error!(error = %e, "cannot give the address pool its new blocks");
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
