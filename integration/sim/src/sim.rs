//! [`Sim`]: real [`mesh_core::Node`]s on one virtual clock and a seeded in-memory network.
//!
//! The clock is an [`Instant`] taken at construction plus a virtual offset; it only moves
//! when the simulator jumps it to the next event — the earliest datagram arrival or the
//! earliest node timeout ([`Node::poll_timeout`]) — or when a test advances it. Datagrams are
//! delivered in arrival order, ties broken by send order; timers due at one instant fire in
//! node order, after the datagrams due then. Nothing reads the OS clock or RNG after
//! construction, so one seed gives one run.

use crate::addressing::Addressing;
use crate::ledger::{Ledger, PacketId, Violation, sim_packet};
use crate::network::{Fate, Link, Loss, Network, PartitionId};
use crate::rng::SimRng;
use crate::seed::SeedGuard;
use ipnet::Ipv4Net;
use mesh_api::PeerState;
use mesh_core::{Decap, Encap, Event, Node, NodeConfig};
use mesh_crypto::{ClusterPsk, PublicKey, StaticKeypair, TAG_LEN};
use mesh_proto::datagram::{
    DATA_HEADER_LEN, TYPE_DATA, TYPE_HANDSHAKE_FINAL, TYPE_HANDSHAKE_INIT, TYPE_HANDSHAKE_RESPONSE,
};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// RNG stream of node seeds and static keys.
const STREAM_NODES: u64 = 1;
/// RNG stream of the network's latency and loss draws.
const STREAM_NETWORK: u64 = 2;
/// A node's timer firing this often at one instant is a livelock.
const SPIN_LIMIT: u32 = 1_000;
/// The virtual wall clock at the start of every simulation (handshake initiations carry it).
const SIM_UNIX_EPOCH: Duration = Duration::from_secs(1_800_000_000);

/// How a simulation is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Cluster range and block size; node `i` owns block `i`.
    pub addressing: Addressing,
    /// Link between every pair without its own setting.
    pub link: Link,
    /// The cluster secret every node is given.
    pub secret: Vec<u8>,
    /// Keep every [`crate::Delivery`] (see [`Sim::ledger`]); off for large runs.
    pub keep_deliveries: bool,
    /// Keep every [`TraceEvent`] (see [`Sim::trace`]); the trace hash is kept regardless.
    pub record_trace: bool,
    /// Panic (printing the seed) as soon as a step breaks an invariant. Off, violations are
    /// collected in [`Sim::violations`] instead.
    pub panic_on_violation: bool,
    /// Automatic IPAM: nodes get their blocks from the cluster's address ring (node 0, or any
    /// node without bootstrap peers, founds it) instead of block `i`. The packet ledger's
    /// ownership checks assume block `i`, so send no packets in this mode.
    pub auto_ipam: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            addressing: Addressing::default(),
            link: Link::default(),
            secret: b"mesh-sim cluster secret".to_vec(),
            keep_deliveries: false,
            record_trace: false,
            panic_on_violation: true,
            auto_ipam: false,
        }
    }
}

/// What a node is started with (besides its key and block, which the simulator assigns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSpec {
    /// Nodes whose addresses it is given as `--peer`.
    pub bootstrap: Vec<usize>,
    /// Blocks it announces on top of its own, which it does not own in the reference
    /// model: a lying member, to check that nodes never route someone else's block to it.
    pub extra_blocks: Vec<Ipv4Net>,
}

impl NodeSpec {
    /// A node bootstrapping from `bootstrap`.
    pub fn bootstrap(bootstrap: impl IntoIterator<Item = usize>) -> Self {
        Self {
            bootstrap: bootstrap.into_iter().collect(),
            extra_blocks: Vec::new(),
        }
    }
}

/// Per-node counters (they survive crashes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams the node sent.
    pub tx_datagrams: u64,
    /// Their bytes (UDP payload).
    pub tx_bytes: u64,
    /// Datagrams that reached the node.
    pub rx_datagrams: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Packets it delivered to its TUN device.
    pub delivered: u64,
    /// `BlockConflict` events it raised.
    pub block_conflicts: u64,
    /// `ForeignRing` events it raised.
    pub foreign_rings: u64,
    /// Times it was (re)started.
    pub starts: u64,
}

/// Simulation-wide counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed (datagram arrivals and timer firings).
    pub steps: u64,
    /// Datagrams sent by all nodes.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of those, handshake messages (initiation, response, final).
    pub handshake_datagrams: u64,
    /// Of those, data-channel datagrams (packets, keepalives, control).
    pub data_datagrams: u64,
    /// Datagrams lost, by cause.
    pub lost: BTreeMap<Loss, u64>,
    /// `handle_timeout` calls.
    pub timer_fires: u64,
    /// Packets delivered to TUN devices.
    pub delivered: u64,
}

/// One thing that happened, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEvent {
    /// A node sent a datagram (`digest` of its bytes).
    Send {
        /// Virtual time.
        at: Duration,
        /// Sender.
        from: usize,
        /// Destination (`usize::MAX`: no node).
        to: usize,
        /// Length.
        len: usize,
        /// FNV-1a of the bytes.
        digest: u64,
    },
    /// A datagram was lost.
    Lost {
        /// Virtual time.
        at: Duration,
        /// Sender.
        from: usize,
        /// Destination.
        to: usize,
        /// Why.
        why: Loss,
    },
    /// A node delivered a packet to its TUN device.
    Deliver {
        /// Virtual time.
        at: Duration,
        /// The node.
        node: usize,
        /// The packet's id, if it has one.
        id: Option<PacketId>,
    },
    /// A node's timer fired.
    Timer {
        /// Virtual time.
        at: Duration,
        /// The node.
        node: usize,
    },
    /// A fault or repair, in words.
    Fault {
        /// Virtual time.
        at: Duration,
        /// What.
        what: String,
    },
}

#[derive(Debug)]
struct SimNode {
    spec: NodeSpec,
    keypair: StaticKeypair,
    /// What meshd persists in `peers.json`: every peer it was ever established with.
    known: BTreeMap<PublicKey, SocketAddr>,
    /// What meshd persists with automatic IPAM: the ring replica and the blocks in use.
    ring_state: Option<mesh_ipam::ring::RingState>,
    active: Vec<Ipv4Net>,
    node: Option<Node>,
    /// The time the timer heap holds for this node.
    armed: Option<Duration>,
    stats: NodeStats,
}

#[derive(Debug)]
struct InFlight {
    arrival: Duration,
    seq: u64,
    from: usize,
    to: usize,
    payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.arrival, self.seq).cmp(&(other.arrival, other.seq))
    }
}

/// The simulator. See the module docs.
#[derive(Debug)]
pub struct Sim {
    seed: u64,
    config: SimConfig,
    psk: ClusterPsk,
    start: Instant,
    elapsed: Duration,
    node_rng: SimRng,
    net_rng: SimRng,
    net: Network,
    nodes: Vec<SimNode>,
    key_index: HashMap<PublicKey, usize>,
    key_text_index: HashMap<String, usize>,
    inflight: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Duration, usize)>>,
    seq: u64,
    ledger: Ledger,
    violations: Vec<Violation>,
    checked: usize,
    spin: (usize, Duration, u32),
    stats: Stats,
    trace: Vec<TraceEvent>,
    trace_hash: u64,
    guard: SeedGuard,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// A datagram's fingerprint for the trace: FNV-1a over 8-byte words (each product rotated,
/// so high bits mix down), then the tail byte by byte. Byte-wise FNV over every datagram was
/// about 6 % of a 300-node run's `perf` samples.
fn payload_digest(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    let mut words = bytes.chunks_exact(8);
    for c in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(FNV_PRIME)
            .rotate_left(23);
    }
    fnv(h, words.remainder())
}

impl Sim {
    /// An empty simulation with the default [`SimConfig`].
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, SimConfig::default())
    }

    /// An empty simulation.
    pub fn with_config(seed: u64, config: SimConfig) -> Self {
        Self {
            seed,
            psk: ClusterPsk::derive(&config.secret),
            start: Instant::now(),
            elapsed: Duration::ZERO,
            node_rng: SimRng::new(seed, STREAM_NODES),
            net_rng: SimRng::new(seed, STREAM_NETWORK),
            net: Network::new(config.link),
            nodes: Vec::new(),
            key_index: HashMap::new(),
            key_text_index: HashMap::new(),
            inflight: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            ledger: Ledger::new(config.keep_deliveries),
            violations: Vec::new(),
            checked: 0,
            spin: (usize::MAX, Duration::ZERO, 0),
            stats: Stats::default(),
            trace: Vec::new(),
            trace_hash: FNV_OFFSET,
            guard: SeedGuard::new(seed, "mesh-sim run"),
            config,
        }
    }

    // ------------------------------------------------------------------ nodes

    /// Adds and starts a node; returns its index. Bootstrap indices may name nodes not
    /// added yet (their addresses are fixed by index).
    ///
    /// # Panics
    /// When the addressing has no block left for it (see [`Addressing::capacity`]).
    pub fn add_node(&mut self, spec: NodeSpec) -> usize {
        let i = self.nodes.len();
        assert!(
            i < self.config.addressing.capacity(),
            "mesh-sim: no block left for node {i} in {:?}",
            self.config.addressing
        );
        let keypair = StaticKeypair::generate(self.node_rng.bytes32());
        self.key_index.insert(keypair.public(), i);
        self.key_text_index.insert(keypair.public().to_string(), i);
        self.nodes.push(SimNode {
            spec,
            keypair,
            known: BTreeMap::new(),
            ring_state: None,
            active: Vec::new(),
            node: None,
            armed: None,
            stats: NodeStats::default(),
        });
        self.start_node(i);
        i
    }

    /// Adds `n` nodes, node `i` bootstrapping from `bootstrap(i)`.
    pub fn add_nodes(&mut self, n: usize, mut bootstrap: impl FnMut(usize) -> Vec<usize>) {
        for _ in 0..n {
            let i = self.nodes.len();
            self.add_node(NodeSpec::bootstrap(bootstrap(i)));
        }
    }

    fn start_node(&mut self, i: usize) {
        let block = self.block(i);
        let n = &mut self.nodes[i];
        let mut blocks = vec![block];
        blocks.extend(n.spec.extra_blocks.iter().copied());
        let config = NodeConfig {
            name: format!("n{i}"),
            keypair: n.keypair.clone(),
            psk: self.psk.clone(),
            blocks,
            range: self.config.addressing.range(),
            bootstrap: n
                .spec
                .bootstrap
                .iter()
                .filter_map(|&b| Addressing::underlay(b))
                .collect(),
            known_peers: n.known.iter().map(|(k, a)| (*k, *a)).collect(),
            generation: n.stats.starts + 1,
            advertise: None,
            dead_after: mesh_core::DEFAULT_DEAD_AFTER,
            gossip: mesh_core::GossipConfig::default(),
            ring: self.config.auto_ipam.then(|| mesh_core::RingConfig {
                block_prefix: self.config.addressing.block_prefix(),
                state: n.ring_state.clone(),
                active: n.active.clone(),
                found_nonce: n.spec.bootstrap.is_empty().then(|| {
                    let mut nonce = [0u8; 16];
                    nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    nonce
                }),
            }),
            // Every third node offers ChaCha20-Poly1305 only: both ciphers and their
            // negotiation run in every simulation.
            ciphers: mesh_crypto::CipherSet::with_aes(!i.is_multiple_of(3)),
            // Every node's wall clock is the same virtual one (clock jumps move it for all).
            unix_time: SIM_UNIX_EPOCH + self.elapsed,
        };
        let now = self.start + self.elapsed;
        n.node = Some(Node::new(config, now, self.node_rng.bytes32()));
        n.stats.starts += 1;
        self.after_touch(i);
    }

    /// Stops node `i` abruptly: everything but its static key and its known peers (what
    /// meshd keeps in its state directory) is lost. False if it was already down.
    pub fn crash(&mut self, i: usize) -> bool {
        let Some(n) = self.nodes.get_mut(i) else {
            return false;
        };
        if n.node.take().is_none() {
            return false;
        }
        n.armed = None;
        self.fault(format!("crash {i}"));
        true
    }

    /// Starts a crashed node again with its persisted key and known peers. False if it was
    /// up.
    pub fn restart(&mut self, i: usize) -> bool {
        if self.nodes.get(i).is_none_or(|n| n.node.is_some()) {
            return false;
        }
        self.fault(format!("restart {i}"));
        self.start_node(i);
        true
    }

    /// Number of nodes (up or down).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// No nodes yet.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether node `i` is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.node.is_some())
    }

    /// Indices of running nodes.
    pub fn up_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.is_up(i)).collect()
    }

    /// Node `i`, when running.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i)?.node.as_ref()
    }

    /// Node `i`, when running. Whatever the caller does to it, call [`Sim::touched`] after,
    /// so its datagrams are sent and its timer re-armed.
    pub fn node_mut(&mut self, i: usize) -> Option<&mut Node> {
        self.nodes.get_mut(i)?.node.as_mut()
    }

    /// Collects node `i`'s datagrams and events and re-arms its timer (after
    /// [`Sim::node_mut`]).
    pub fn touched(&mut self, i: usize) {
        self.after_touch(i);
    }

    /// What node `i` was started with.
    pub fn spec(&self, i: usize) -> Option<&NodeSpec> {
        self.nodes.get(i).map(|n| &n.spec)
    }

    /// Node `i`'s static public key.
    pub fn public_key(&self, i: usize) -> Option<PublicKey> {
        self.nodes.get(i).map(|n| n.keypair.public())
    }

    /// The node with this static key.
    pub fn index_of_key(&self, key: &PublicKey) -> Option<usize> {
        self.key_index.get(key).copied()
    }

    /// Node `i`'s underlay address.
    pub fn addr(&self, i: usize) -> Option<SocketAddr> {
        Addressing::underlay(i)
    }

    /// Node `i`'s block in the reference model.
    pub fn block(&self, i: usize) -> Ipv4Net {
        self.config.addressing.block(i).unwrap_or_default()
    }

    /// The addressing (cluster range and blocks).
    pub fn addressing(&self) -> &Addressing {
        &self.config.addressing
    }

    /// The peers node `i` has persisted (meshd's `peers.json`), as node indices.
    pub fn persisted_peers(&self, i: usize) -> Vec<usize> {
        self.nodes.get(i).map_or_else(Vec::new, |n| {
            n.known
                .keys()
                .filter_map(|k| self.index_of_key(k))
                .collect()
        })
    }

    /// Every peer node `i` knows (and every bootstrap address nobody answered yet), as
    /// node indices with their state, from [`Node::peer_status`]. Empty when down.
    pub fn peer_states(&self, i: usize) -> Vec<(usize, PeerState)> {
        let Some(node) = self.node(i) else {
            return Vec::new();
        };
        let mut out: Vec<(usize, PeerState)> = node
            .peer_status(self.now())
            .into_iter()
            .filter_map(|p| {
                let j = if p.public_key.is_empty() {
                    p.endpoint.parse().ok().and_then(Addressing::node_at)
                } else {
                    self.key_text_index.get(&p.public_key).copied()
                }?;
                Some((j, p.state))
            })
            .collect();
        out.sort_by_key(|(j, _)| *j);
        out
    }

    /// Whether node `i` has an established session with node `j`.
    pub fn established(&self, i: usize, j: usize) -> bool {
        self.peer_states(i)
            .iter()
            .any(|&(k, s)| k == j && s == PeerState::Established)
    }

    /// Established sessions of node `i` (0 when down).
    pub fn established_count(&self, i: usize) -> usize {
        self.node(i).map_or(0, Node::established_peers)
    }

    /// Pairs `(a, b)`, `a < b`, where one is given the other as bootstrap peer: the pairs
    /// today's design promises a session to.
    pub fn bootstrap_pairs(&self) -> BTreeSet<(usize, usize)> {
        let mut out = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for &b in &n.spec.bootstrap {
                if b != i && b < self.nodes.len() {
                    out.insert((i.min(b), i.max(b)));
                }
            }
        }
        out
    }

    /// Pairs `(a, b)`, `a < b`, of running nodes where either knows the other (from
    /// [`Sim::peer_states`]).
    pub fn knowing_pairs(&self) -> BTreeSet<(usize, usize)> {
        let mut out = BTreeSet::new();
        for a in self.up_nodes() {
            for (b, _) in self.peer_states(a) {
                if b != a && self.is_up(b) {
                    out.insert((a.min(b), a.max(b)));
                }
            }
        }
        out
    }

    // ------------------------------------------------------------------ network

    /// The network model, read-only.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Cuts the network into `sides` (see [`Network::partition`]).
    pub fn partition(&mut self, sides: &[Vec<usize>]) -> PartitionId {
        self.fault(format!("partition {sides:?}"));
        self.net.partition(sides)
    }

    /// Heals one partition.
    pub fn heal(&mut self, id: PartitionId) {
        self.fault(format!("heal {id:?}"));
        self.net.heal(id);
    }

    /// Drops every datagram `from → to`.
    pub fn block_one_way(&mut self, from: usize, to: usize) {
        self.fault(format!("block {from}->{to}"));
        self.net.block(from, to);
    }

    /// Lifts a one-way block.
    pub fn unblock_one_way(&mut self, from: usize, to: usize) {
        self.fault(format!("unblock {from}->{to}"));
        self.net.unblock(from, to);
    }

    /// Sets both directions of the link between `a` and `b`.
    pub fn set_link(&mut self, a: usize, b: usize, link: Link) {
        self.fault(format!("link {a}<->{b} {link:?}"));
        self.net.set_link(a, b, link);
    }

    /// Sets the link of every pair without a setting of its own.
    pub fn set_default_link(&mut self, link: Link) {
        self.fault(format!("default link {link:?}"));
        self.net.set_default_link(link);
    }

    /// Heals every partition, lifts every block and resets every link.
    pub fn heal_network(&mut self) {
        self.fault("heal network".to_string());
        self.net.heal_all();
    }

    /// Every node's clock leaps forward by `by` (a suspended VM, a stalled host): overdue
    /// timers fire at once and datagrams in flight arrive at the new time.
    pub fn jump_clock(&mut self, by: Duration) {
        self.fault(format!("clock jump {by:?}"));
        self.elapsed += by;
    }

    // ------------------------------------------------------------------ TUN side

    /// Hands `packet` to node `i` as if read from its TUN device. `None` when it is down.
    pub fn inject(&mut self, i: usize, packet: &[u8]) -> Option<Encap> {
        let now = self.now();
        self.ledger.injected(i, packet);
        let node = self.nodes.get_mut(i)?.node.as_mut()?;
        let mut buf = vec![0u8; DATA_HEADER_LEN + packet.len() + TAG_LEN];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(packet);
        let r = node.encapsulate(now, &mut buf, packet.len());
        if let Encap::Send { to, len } = r {
            buf.truncate(len);
            self.send_datagram(i, to, buf);
        }
        self.after_touch(i);
        Some(r)
    }

    /// Injects a fresh simulator packet from a pod of node `from` to a pod of node `to`
    /// with `filler` bytes of payload; returns its id and what `encapsulate` said.
    pub fn send_packet(
        &mut self,
        from: usize,
        to: usize,
        filler: usize,
    ) -> (PacketId, Option<Encap>) {
        let id = self.ledger.next_id();
        let a = &self.config.addressing;
        let (Some(src), Some(dst)) = (a.pod(from, 10), a.pod(to, 20)) else {
            return (id, None);
        };
        let p = sim_packet(src, dst, id, filler);
        (id, self.inject(from, &p))
    }

    /// Injections, deliveries and their checks.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Invariant violations collected so far (when not panicking on them).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    // ------------------------------------------------------------------ time

    /// The virtual now.
    pub fn now(&self) -> Instant {
        self.start + self.elapsed
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Runs every event up to `elapsed() + d`, then sets the clock there.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.elapsed + d;
        while self.step(end) {}
        self.elapsed = self.elapsed.max(end);
    }

    /// Runs in slices of `every` until `done` holds (checked after each slice) or `limit`
    /// of virtual time passed; returns the virtual time it took, if it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        every: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<Duration> {
        let t0 = self.elapsed;
        loop {
            if done(self) {
                return Some(self.elapsed - t0);
            }
            if self.elapsed - t0 >= limit {
                return None;
            }
            self.run_for(
                every
                    .min(limit - (self.elapsed - t0))
                    .max(Duration::from_nanos(1)),
            );
        }
    }

    /// Time of the next event, if any.
    pub fn next_event(&mut self) -> Option<Duration> {
        self.drop_stale_timers();
        let d = self.inflight.peek().map(|Reverse(d)| d.arrival);
        let t = self.timers.peek().map(|Reverse((at, _))| *at);
        let next = match (d, t) {
            (Some(d), Some(t)) => Some(d.min(t)),
            (a, b) => a.or(b),
        };
        next.map(|n| n.max(self.elapsed))
    }

    fn drop_stale_timers(&mut self) {
        while let Some(Reverse((at, i))) = self.timers.peek() {
            if self.nodes[*i].armed == Some(*at) {
                break;
            }
            self.timers.pop();
        }
    }

    /// Processes the next event if it is due by `end`: one datagram arrival, or one node's
    /// timer. Invariants are checked after it. False when nothing is due by `end`.
    pub fn step(&mut self, end: Duration) -> bool {
        self.drop_stale_timers();
        let dgram = self.inflight.peek().map(|Reverse(d)| d.arrival);
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let take_datagram = match (dgram, timer) {
            (Some(d), Some(t)) => d <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        let at = if take_datagram { dgram } else { timer }
            .unwrap_or_default()
            .max(self.elapsed);
        if at > end {
            return false;
        }
        self.elapsed = at;
        self.stats.steps += 1;
        if take_datagram {
            if let Some(Reverse(d)) = self.inflight.pop() {
                self.arrive(d);
            }
        } else if let Some(Reverse((_, i))) = self.timers.pop() {
            self.fire_timer(i);
        }
        self.check_step();
        true
    }

    fn fire_timer(&mut self, i: usize) {
        let now = self.now();
        let at = self.elapsed;
        self.nodes[i].armed = None;
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        if node.poll_timeout().is_none_or(|t| t > now) {
            self.after_touch(i);
            return;
        }
        if self.spin.0 == i && self.spin.1 == at {
            self.spin.2 += 1;
            if self.spin.2 >= SPIN_LIMIT {
                // Leave the timer disarmed (until the next datagram for this node), so a run
                // that collects violations instead of panicking still moves on.
                if self.spin.2 == SPIN_LIMIT {
                    self.violations.push(Violation::TimerSpin { node: i, at });
                }
                return;
            }
        } else {
            self.spin = (i, at, 1);
        }
        let span = tracing::info_span!("sim", t = ?at, node = i).entered();
        node.handle_timeout(now);
        drop(span);
        self.stats.timer_fires += 1;
        self.record(TraceEvent::Timer { at, node: i });
        self.after_touch(i);
    }

    fn arrive(&mut self, d: InFlight) {
        let InFlight {
            from,
            to,
            mut payload,
            ..
        } = d;
        let now = self.now();
        let at = self.elapsed;
        let Some(src) = Addressing::underlay(from) else {
            return;
        };
        let Some(n) = self.nodes.get_mut(to) else {
            return;
        };
        let Some(node) = n.node.as_mut() else {
            self.lose(from, to, Loss::NodeDown);
            return;
        };
        n.stats.rx_datagrams += 1;
        n.stats.rx_bytes += payload.len() as u64;
        let span = tracing::info_span!("sim", t = ?at, node = to, from).entered();
        let decap = node.decapsulate(now, src, &mut payload);
        drop(span);
        if let Decap::Deliver { start, len } = decap {
            n.stats.delivered += 1;
            self.stats.delivered += 1;
            let packet = &payload[start..start + len];
            self.ledger.delivered(
                at,
                to,
                from,
                packet,
                &self.config.addressing,
                &mut self.violations,
            );
            let id = crate::ledger::read_packet(packet).and_then(|(_, _, id)| id);
            self.record(TraceEvent::Deliver { at, node: to, id });
        }
        self.after_touch(to);
    }

    /// Sends node `i`'s queued datagrams, handles its events like meshd does (persisting
    /// established peers) and re-arms its timer.
    fn after_touch(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let Some(node) = n.node.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::PeerEstablished { key, endpoint } => {
                    n.known.insert(key, endpoint);
                }
                Event::BlockConflict { .. } => n.stats.block_conflicts += 1,
                Event::RingChanged => n.ring_state = node.ring_state(),
                Event::BlocksChanged { active } => n.active = active,
                Event::ForeignRing { .. } => n.stats.foreign_rings += 1,
                Event::MemberDead { .. }
                | Event::MemberAlive { .. }
                | Event::RecordChanged { .. }
                | Event::EchoAnswered { .. } => {}
            }
        }
        let wake = n
            .node
            .as_ref()
            .and_then(Node::poll_timeout)
            .map(|t| t.saturating_duration_since(self.start));
        if wake != n.armed {
            n.armed = wake;
            if let Some(w) = wake {
                self.timers.push(Reverse((w, i)));
            }
        }
        // The order of datagrams to different peers is the node's business (and today
        // follows its peer map's hash order); per destination, order is kept.
        out.sort_by_key(|t| Addressing::node_at(t.to).unwrap_or(usize::MAX));
        for t in out {
            self.send_datagram(i, t.to, t.payload);
        }
    }

    fn send_datagram(&mut self, from: usize, to: SocketAddr, payload: Vec<u8>) {
        let at = self.elapsed;
        let len = payload.len();
        self.stats.datagrams += 1;
        self.stats.bytes += len as u64;
        match payload.first() {
            Some(&TYPE_DATA) => self.stats.data_datagrams += 1,
            Some(&(TYPE_HANDSHAKE_INIT | TYPE_HANDSHAKE_RESPONSE | TYPE_HANDSHAKE_FINAL)) => {
                self.stats.handshake_datagrams += 1
            }
            _ => {}
        }
        let n = &mut self.nodes[from].stats;
        n.tx_datagrams += 1;
        n.tx_bytes += len as u64;
        let to_node = Addressing::node_at(to).filter(|&j| j < self.nodes.len());
        self.record_send(at, from, to_node.unwrap_or(usize::MAX), &payload);
        let Some(j) = to_node else {
            self.lose(from, usize::MAX, Loss::UnknownAddress);
            return;
        };
        match self.net.fate(from, j, &mut self.net_rng) {
            Fate::Lost(why) => self.lose(from, j, why),
            Fate::Arrives(delay) => {
                self.seq += 1;
                self.inflight.push(Reverse(InFlight {
                    arrival: at + delay,
                    seq: self.seq,
                    from,
                    to: j,
                    payload,
                }));
            }
        }
    }

    fn lose(&mut self, from: usize, to: usize, why: Loss) {
        *self.stats.lost.entry(why).or_default() += 1;
        let at = self.elapsed;
        self.record(TraceEvent::Lost { at, from, to, why });
    }

    fn fault(&mut self, what: String) {
        let at = self.elapsed;
        self.record(TraceEvent::Fault { at, what });
    }

    fn record_send(&mut self, at: Duration, from: usize, to: usize, payload: &[u8]) {
        let digest = payload_digest(payload);
        self.record(TraceEvent::Send {
            at,
            from,
            to,
            len: payload.len(),
            digest,
        });
    }

    fn record(&mut self, ev: TraceEvent) {
        let mut h = self.trace_hash;
        match &ev {
            TraceEvent::Send {
                at,
                from,
                to,
                len,
                digest,
            } => {
                h = fnv(h, &[1]);
                h = fnv(h, &at.as_nanos().to_le_bytes());
                h = fnv(h, &(*from as u64).to_le_bytes());
                h = fnv(h, &(*to as u64).to_le_bytes());
                h = fnv(h, &(*len as u64).to_le_bytes());
                h = fnv(h, &digest.to_le_bytes());
            }
            TraceEvent::Lost { at, from, to, why } => {
                h = fnv(h, &[2, *why as u8]);
                h = fnv(h, &at.as_nanos().to_le_bytes());
                h = fnv(h, &(*from as u64).to_le_bytes());
                h = fnv(h, &(*to as u64).to_le_bytes());
            }
            TraceEvent::Deliver { at, node, id } => {
                h = fnv(h, &[3]);
                h = fnv(h, &at.as_nanos().to_le_bytes());
                h = fnv(h, &(*node as u64).to_le_bytes());
                h = fnv(h, &id.map_or(0, |p| p.0).to_le_bytes());
            }
            TraceEvent::Timer { at, node } => {
                h = fnv(h, &[4]);
                h = fnv(h, &at.as_nanos().to_le_bytes());
                h = fnv(h, &(*node as u64).to_le_bytes());
            }
            TraceEvent::Fault { at, what } => {
                h = fnv(h, &[5]);
                h = fnv(h, &at.as_nanos().to_le_bytes());
                h = fnv(h, what.as_bytes());
            }
        }
        self.trace_hash = h;
        if self.config.record_trace {
            self.trace.push(ev);
        }
    }

    /// Every event so far, when [`SimConfig::record_trace`] is on.
    pub fn trace(&self) -> &[TraceEvent] {
        &self.trace
    }

    /// A hash of every event so far (kept whether or not the trace is recorded): equal
    /// hashes mean equal runs.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }

    /// Simulation-wide counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Node `i`'s counters.
    pub fn node_stats(&self, i: usize) -> NodeStats {
        self.nodes.get(i).map(|n| n.stats).unwrap_or_default()
    }

    fn check_step(&mut self) {
        if self.violations.len() == self.checked {
            return;
        }
        if self.config.panic_on_violation {
            let list: Vec<String> = self.violations[self.checked..]
                .iter()
                .map(ToString::to_string)
                .collect();
            panic!(
                "mesh-sim seed {}: invariant broken at {:?} of virtual time:\n  {}",
                self.seed,
                self.elapsed,
                list.join("\n  ")
            );
        }
        self.checked = self.violations.len();
    }

    /// The guard that prints this run's seed on a panic.
    pub fn seed_guard(&self) -> &SeedGuard {
        &self.guard
    }
}
