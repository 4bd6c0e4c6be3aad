//! [`Node`]: one mesh node as a state machine.
//!
//! Handshakes follow WireGuard's shape on top of Noise: an initiator that knows the peer's
//! static key runs `IKpsk2` (two messages), one that only has an address runs `XXpsk0`
//! (three). A responder's `IK` session is *unconfirmed* until the first data message on it
//! arrives — that proves the initiator holds the cluster secret — so a replayed initiation
//! can neither add a peer nor move traffic to a session the real initiator does not have.
//! Each peer has a `current` session (we send on it) and a `previous` one (still accepted),
//! so packets in flight across a rekey are not lost.

mod echo;
mod ipam;
mod membership;

pub use echo::{MAX_ECHO_LEN, PingError};
pub use ipam::{CONTROL_BLOCK_REQUEST, KIND_RING, ReclaimError, RingConfig};
pub use membership::FIRST_APP_KIND;

use crate::drops::{DropCounters, DropReason};
use crate::gate::{HandshakeGate, Refusal, Verdict};
use crate::member::Member;
use crate::peer::Peer;
use crate::route::RouteTable;
use ipnet::Ipv4Net;
use mesh_crypto::timers::{
    HANDSHAKE_RETRY_MAX, KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_AFTER_TIME,
    REKEY_ATTEMPT_TIME, REKEY_TIMEOUT, RESPONDER_REKEY_AFTER_TIME, handshake_retry_delay,
};
use mesh_crypto::{
    COOKIE_LEN, COOKIE_USE_LIFETIME, Cipher, CipherSet, ClusterPsk, CookieKey,
    HANDSHAKE_OVERHEAD_MAX, Handshake, HandshakePattern, MAC_LEN, Mac1Key, PublicKey, Session,
    StaticKeypair, TAG_LEN, choice, seal_macs,
};
use mesh_gossip::{Gossip, GossipConfig};
use mesh_proto::ParseError;
use mesh_proto::block_request::BlockRequest;
use mesh_proto::control::{CONTROL_PEER_INFO, MAX_PEER_INFO_LEN, PeerInfo};
use mesh_proto::datagram::{
    DATA_HEADER_LEN, Datagram, HANDSHAKE_MACS_LEN, INIT_HEADER_LEN, Pattern, REPLY_HEADER_LEN,
    emit_data_header, emit_init_header, emit_reply_header,
};
use mesh_proto::echo::{CONTROL_ECHO_REPLY, CONTROL_ECHO_REQUEST};
use mesh_proto::gossip::CONTROL_GOSSIP;
use mesh_proto::inner::Inner;
use mesh_proto::relay::{RELAY_HEADER_LEN, RelayFrame, emit_relay_header, wrap};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Membership, neighbours, adjacency and liveness are revisited this often.
const MAINTAIN_INTERVAL: Duration = Duration::from_secs(1);
/// While a peer is reached through a relay, a direct handshake is tried this often.
const DIRECT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Packets sent this long without anything back make us ask the peer for an answer; no
/// answer within as long again and the path is taken for dead.
const PATH_SILENCE: Duration = Duration::from_secs(1);
/// Times we ask within that second (evenly spaced). One ask made a path fail over whenever
/// it or its answer was lost: over an underlay losing 1 % of datagrams, simulated clusters
/// of 20 to 60 nodes failed over 120 to 300 times in 4 minutes, and packets sent during a
/// switch were lost. With three, all three or their answers have to be lost.
const PATH_ASKS: u32 = 3;
/// A peer needed again this long after its last handshake attempt starts over.
const FRESH_AFTER: Duration = Duration::from_secs(60);
/// Unanswered handshakes to a peer after which one goes through a relay.
const RELAY_AFTER_ATTEMPTS: u32 = 2;
/// Peer info is sent again this often until the peer acknowledges it.
const INFO_RETRANSMIT: Duration = Duration::from_secs(1);
/// A peer we sent to but have not heard from for this long gets a new handshake.
const DEAD_AFTER: Duration = Duration::from_secs(15); // KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
/// An XX responder waits this long for the third message.
const RESPONDER_HANDSHAKE_TIMEOUT: Duration = REKEY_TIMEOUT;
/// An unconfirmed responder session is forgotten after this long.
const UNCONFIRMED_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive unanswered IK attempts after which a bootstrap address is tried with XX
/// again (the node behind it may have a new key).
const IK_FAILURES_BEFORE_XX: u32 = 3;
/// Cookies kept (one per address that gave us one); expired ones go first.
const MAX_COOKIES: usize = 1024;
/// A node of another protocol version is logged at most this often.
const VERSION_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What a node is told at start.
#[derive(Debug)]
pub struct NodeConfig {
    /// Human name announced to peers.
    pub name: String,
    /// This node's static key pair.
    pub keypair: StaticKeypair,
    /// Pre-shared key derived from the cluster secret.
    pub psk: ClusterPsk,
    /// Blocks this node owns.
    pub blocks: Vec<Ipv4Net>,
    /// The cluster range: blocks peers announce outside it are never routed.
    pub range: Ipv4Net,
    /// Addresses to contact without knowing who is there (`--peer`).
    pub bootstrap: Vec<SocketAddr>,
    /// Peers remembered from an earlier run: key and last endpoint.
    pub known_peers: Vec<(PublicKey, SocketAddr)>,
    /// Rises with every start (meshd passes the Unix time in seconds): the versions of what
    /// this node announces start above those of its earlier runs.
    pub generation: u64,
    /// The endpoint to announce to the cluster; `None` announces the one peers observe.
    pub advertise: Option<SocketAddr>,
    /// A member nothing shows alive for this long is marked dead.
    pub dead_after: Duration,
    /// Gossip timers.
    pub gossip: GossipConfig,
    /// Automatic IPAM: blocks come from the cluster's address ring (then `blocks` is
    /// ignored). `None`: the node owns exactly `blocks` (`--block`).
    pub ring: Option<RingConfig>,
    /// The packet ciphers this node offers in its handshakes (`--cipher`); a session uses
    /// AES-256-GCM when both ends offer it, ChaCha20-Poly1305 otherwise.
    pub ciphers: CipherSet,
    /// The wall clock at the `now` given to [`Node::new`], as time since the Unix epoch
    /// (handshake initiations carry it; see [`Node::sync_clock`]).
    pub unix_time: Duration,
}

/// Default of [`NodeConfig::dead_after`].
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(30);

/// Result of [`Node::encapsulate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Send `buf[..len]` to `to`.
    Send {
        /// Underlay destination.
        to: SocketAddr,
        /// Datagram length at the start of the buffer.
        len: usize,
    },
    /// Kept until a session with the owner exists (a handshake was started).
    Queued,
    /// Sealed and queued as a transmit through a relay (see [`Node::poll_transmit`]).
    Relayed,
    /// Dropped and counted.
    Dropped(DropReason),
}

/// Result of [`Node::decapsulate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decap {
    /// Write `buf[start..start + len]` (an IP packet) to the TUN device.
    Deliver {
        /// Offset of the packet in the buffer.
        start: usize,
        /// Its length.
        len: usize,
    },
    /// Handled inside the node (handshake, keepalive, control). Check
    /// [`Node::poll_transmit`].
    Consumed,
    /// Dropped and counted.
    Dropped(DropReason),
}

/// A datagram the node wants sent (handshakes, keepalives, control, flushed queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Underlay destination.
    pub to: SocketAddr,
    /// The whole datagram.
    pub payload: Vec<u8>,
}

/// Things the owner of the node may want to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session with this peer was established (persist it to reconnect after a restart).
    PeerEstablished {
        /// The peer's static key.
        key: PublicKey,
        /// Where it is.
        endpoint: SocketAddr,
    },
    /// Automatic IPAM: the blocks used for pods changed (persist them, give them to the pool,
    /// put the first one's gateway on the bridge).
    BlocksChanged {
        /// All of them, in the order taken.
        active: Vec<Ipv4Net>,
    },
    /// Automatic IPAM: the ring replica changed; persist [`Node::ring_state`] before sending
    /// what the node queued.
    RingChanged,
    /// Gossip brought the address ring of another cluster; it was refused.
    ForeignRing {
        /// Our ring id.
        ours: String,
        /// Theirs.
        theirs: String,
    },
    /// A gossiped record of an application kind changed (see [`Node::publish_record`]).
    RecordChanged {
        /// Its kind.
        kind: u8,
        /// Its id.
        id: [u8; 32],
    },
    /// A member was marked dead (nothing showed it alive for `dead_after`), or left.
    MemberDead {
        /// Its key.
        key: PublicKey,
    },
    /// A member marked dead is alive again.
    MemberAlive {
        /// Its key.
        key: PublicKey,
    },
    /// The reply to echo probe `id` ([`Node::ping`]) came, `rtt` after the probe left.
    EchoAnswered {
        /// The probe's id.
        id: u64,
        /// Its round trip.
        rtt: Duration,
    },
    /// A peer announced a block that overlaps one already routed; it was not routed.
    BlockConflict {
        /// The peer.
        key: PublicKey,
        /// The block it announced.
        block: Ipv4Net,
        /// The block it collides with.
        existing: Ipv4Net,
    },
}

/// Who an initiator handshake is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Peer(PublicKey),
    /// A direct handshake with a peer we reach through a relay: back to direct if it works.
    Probe(PublicKey),
    Bootstrap(usize),
}

/// How a datagram came, and how to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct(SocketAddr),
    /// Forwarded by `relay` from the node whose key starts with `peer`.
    Relay {
        relay: PublicKey,
        peer: [u8; 8],
    },
}

#[derive(Debug)]
enum Slot {
    /// Our handshake, waiting for the response.
    Initiating {
        hs: Box<Handshake>,
        target: Target,
        started: Instant,
        /// mac1 of the initiation: a cookie reply to it is sealed to it.
        mac1: [u8; MAC_LEN],
        /// The initiation carried a mac2 (a cookie the responder gave us).
        with_cookie: bool,
    },
    /// An XX handshake we answered, waiting for the third message.
    RespondingXx {
        hs: Box<Handshake>,
        remote_index: u32,
        started: Instant,
        /// The cipher chosen in our reply.
        cipher: Cipher,
    },
    /// A session. `confirmed == false` for an IK responder session before its first data.
    Session {
        session: Box<Session>,
        peer: PublicKey,
        remote_index: u32,
        confirmed: bool,
    },
}

#[derive(Debug)]
struct Bootstrap {
    addr: SocketAddr,
    handshake: Option<u32>,
    attempts: u32,
    next_attempt: Instant,
    /// Who answered there last.
    resolved: Option<PublicKey>,
    /// The address is this node itself.
    is_self: bool,
    /// Removed at run time (`Node::forget_bootstrap`): not tried, not shown.
    forgotten: bool,
    /// First attempt of the current round of unanswered attempts.
    round_started: Option<Instant>,
    /// The last attempt.
    attempted_at: Option<Instant>,
    /// The round ran out ([`REKEY_ATTEMPT_TIME`]): no retries until needed again.
    gave_up: bool,
}

/// The header fields of an initiation.
#[derive(Debug, Clone, Copy)]
struct Init {
    pattern: Pattern,
    sender: u32,
    timestamp: u64,
}

/// One mesh node. See the crate docs.
#[derive(Debug)]
pub struct Node {
    name: String,
    keypair: StaticKeypair,
    psk: ClusterPsk,
    ciphers: CipherSet,
    blocks: Vec<Ipv4Net>,
    range: Ipv4Net,
    /// Version of what this node announces (peer info and member record share it).
    info_version: u64,
    adjacency_version: u64,
    /// Neighbour prefixes in the adjacency record last published.
    own_adjacency: Vec<[u8; 8]>,
    advertise: Option<SocketAddr>,
    /// The endpoint announced in the member record.
    announced_endpoint: Option<SocketAddr>,
    /// Where each peer says it sees us.
    observed: HashMap<PublicKey, SocketAddr>,
    dead_after: Duration,
    members: HashMap<PublicKey, Member>,
    by_prefix: HashMap<[u8; 8], PublicKey>,
    gossip: Gossip,
    /// Application records this node published (pushed to each new gossip neighbour).
    own_records: std::collections::BTreeSet<mesh_gossip::RecordKey>,
    next_maintain: Instant,
    next_random_digest: Instant,
    routes_dirty: bool,
    ipam: Option<ipam::IpamState>,
    liveness_dirty: bool,
    next_liveness: Instant,
    liveness_cache: membership::LivenessCache,
    rng: ChaCha20Rng,
    peers: HashMap<PublicKey, Peer>,
    /// The peers that may have timers: every peer that has had a session, a relay or IP
    /// packets since the timer walk last found it had none of these (a superset of those
    /// that have them now). The walk looks at these rather than at every peer: in a large
    /// cluster they are a few dozen of thousands, and it runs at every timer.
    timed: BTreeSet<PublicKey>,
    bootstrap: Vec<Bootstrap>,
    slots: HashMap<u32, Slot>,
    /// When the first of `slots` expires, as the last walk over them found it (`None`: not
    /// known, a slot was added since; `Some(None)`: no slot expires). Removing a slot or
    /// confirming a session only makes that time later, so until it comes the walk, which
    /// would expire nothing, is skipped.
    slots_due: Option<Option<Instant>>,
    routes: RouteTable<PublicKey>,
    /// Announced blocks that are not routed (outside the range or taken), already reported.
    conflicts: std::collections::HashSet<(PublicKey, Ipv4Net)>,
    /// The cheap checks in front of every initiation (MACs, replay, load, cookies).
    gate: HandshakeGate,
    /// Cookies responders under load gave us, by their address, with when they came.
    cookies: HashMap<SocketAddr, ([u8; COOKIE_LEN], Instant)>,
    /// The wall clock (ms since the Unix epoch) at an instant (see `sync_clock`).
    clock: (Instant, u64),
    /// Initiations answered with public-key work.
    responded: u64,
    /// Cookie replies accepted.
    cookies_received: u64,
    /// When a node of another protocol version was last logged.
    version_warned_at: Option<Instant>,
    /// Datagrams (and their bytes) this node forwarded as a relay.
    relayed_packets: u64,
    relayed_bytes: u64,
    drops: DropCounters,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_timeout: Option<Instant>,
    /// `meshctl ping`'s probes.
    probes: echo::Probes,
}

impl Node {
    /// A node at time `now`; `seed` feeds every random choice it makes (session indices,
    /// ephemeral keys, jitter).
    pub fn new(config: NodeConfig, now: Instant, seed: [u8; 32]) -> Self {
        let ring_config = config.ring;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut gossip_seed = [0u8; 32];
        rng.fill_bytes(&mut gossip_seed);
        let mut gossip = Gossip::new(config.gossip, now, gossip_seed);
        gossip.set_validator(membership::valid_record);
        let base = config.generation.saturating_mul(1 << 20).max(1);
        let mut gate_seed = [0u8; 32];
        rng.fill_bytes(&mut gate_seed);
        let gate = HandshakeGate::new(
            Mac1Key::for_receiver(&config.psk, &config.keypair.public()),
            Mac1Key::anonymous(&config.psk),
            CookieKey::new(&config.psk),
            now,
            gate_seed,
        );
        let clock = (now, config.unix_time.as_millis() as u64);
        let mut node = Self {
            name: config.name,
            keypair: config.keypair,
            psk: config.psk,
            ciphers: config.ciphers,
            blocks: config.blocks,
            range: config.range,
            info_version: base,
            adjacency_version: base,
            own_adjacency: Vec::new(),
            advertise: config.advertise,
            announced_endpoint: config.advertise,
            observed: HashMap::new(),
            dead_after: config.dead_after,
            members: HashMap::new(),
            by_prefix: HashMap::new(),
            gossip,
            own_records: std::collections::BTreeSet::new(),
            next_maintain: now,
            next_random_digest: now + Duration::from_secs(60),
            routes_dirty: false,
            ipam: None,
            liveness_dirty: true,
            next_liveness: now,
            liveness_cache: membership::LivenessCache::default(),
            rng,
            peers: HashMap::new(),
            timed: BTreeSet::new(),
            bootstrap: Vec::new(),
            slots: HashMap::new(),
            slots_due: None,
            routes: RouteTable::new(),
            conflicts: std::collections::HashSet::new(),
            gate,
            cookies: HashMap::new(),
            clock,
            responded: 0,
            cookies_received: 0,
            version_warned_at: None,
            relayed_packets: 0,
            relayed_bytes: 0,
            drops: DropCounters::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_timeout: Some(now),
            probes: echo::Probes::default(),
        };
        let own = node.keypair.public();
        for (key, endpoint) in config.known_peers {
            if key != own {
                node.peers.insert(key, Peer::new(key, endpoint, now));
                node.member_mut(key).endpoint = Some(endpoint);
            }
        }
        node.publish_member(now);
        node.publish_adjacency(now, Vec::new());
        if let Some(rc) = ring_config {
            node.blocks = Vec::new();
            node.ipam_init(now, rc);
        }
        for addr in config.bootstrap {
            node.add_bootstrap(now, addr);
        }
        node.rebuild_routes();
        node
    }

    /// Learns a peer's key and endpoint at run time, as `known_peers` at start, so the first
    /// handshake with it is the one-round-trip IK; `false` for this node itself or a peer
    /// already known (whose endpoint the sessions keep up to date).
    pub fn add_known_peer(&mut self, now: Instant, key: PublicKey, endpoint: SocketAddr) -> bool {
        if key == self.keypair.public() || self.peers.contains_key(&key) {
            return false;
        }
        self.peers.insert(key, Peer::new(key, endpoint, now));
        let member = self.member_mut(key);
        if member.endpoint.is_none() {
            member.endpoint = Some(endpoint);
        }
        for b in self.bootstrap.iter_mut().filter(|b| b.addr == endpoint) {
            b.resolved.get_or_insert(key);
        }
        self.schedule(now);
        true
    }

    /// Tells the node the wall clock: `unix` (time since the Unix epoch) is now. The node
    /// counts on from it with `now`; call it now and then (meshd does once a second), so a
    /// stepped or suspended clock is followed.
    pub fn sync_clock(&mut self, now: Instant, unix: Duration) {
        self.clock = (now, unix.as_millis() as u64);
    }

    /// Wall clock in ms since the Unix epoch, at `now`.
    fn unix_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.clock;
        if now >= at {
            ms.saturating_add(now.duration_since(at).as_millis() as u64)
        } else {
            ms.saturating_sub(at.duration_since(now).as_millis() as u64)
        }
    }

    /// The handshake gate's state and counters, in API form.
    pub fn handshake_status(&self, now: Instant) -> mesh_api::HandshakeStatus {
        mesh_api::HandshakeStatus {
            responded: self.responded,
            under_load: self.gate.under_load(now),
            cookies_sent: self.gate.counters.cookies_sent,
            cookies_received: self.cookies_received,
            replay_cache: self.gate.replay_entries() as u64,
        }
    }

    /// This node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.keypair.public()
    }

    /// Blocks this node owns.
    pub fn blocks(&self) -> &[Ipv4Net] {
        &self.blocks
    }

    /// The earliest time [`Node::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn schedule(&mut self, at: Instant) {
        self.next_timeout = Some(self.next_timeout.map_or(at, |t| t.min(at)));
    }

    fn new_index(&mut self) -> u32 {
        loop {
            let i = self.rng.next_u32();
            if i != 0 && !self.slots.contains_key(&i) {
                return i;
            }
        }
    }

    fn seed(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        s
    }

    // ---------------------------------------------------------------- TUN -> underlay

    /// Seals a packet read from the TUN device for the peer that owns its destination.
    ///
    /// The packet must be at `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]`, and `buf` must
    /// have `TAG_LEN` more bytes after it: the header and tag are written around it in
    /// place, so on [`Encap::Send`] the datagram is `buf[..len]` with no copy.
    pub fn encapsulate(&mut self, now: Instant, buf: &mut [u8], packet_len: usize) -> Encap {
        let end = DATA_HEADER_LEN + packet_len;
        if buf.len() < end + TAG_LEN {
            self.drops.add(DropReason::BufferTooSmall);
            return Encap::Dropped(DropReason::BufferTooSmall);
        }
        let dst = match Inner::classify(&buf[DATA_HEADER_LEN..end]) {
            Inner::Ipv4 { dst, .. } => dst,
            _ => {
                self.drops.add(DropReason::UnsupportedPacket);
                return Encap::Dropped(DropReason::UnsupportedPacket);
            }
        };
        let Some((_, key)) = self.routes.lookup(dst) else {
            self.drops.add(DropReason::NoRoute);
            return Encap::Dropped(DropReason::NoRoute);
        };
        let key = *key;
        if key == self.keypair.public() {
            // Our own block: the kernel delivers it on the bridge, never to the TUN.
            self.drops.add(DropReason::NoRoute);
            return Encap::Dropped(DropReason::NoRoute);
        }
        if let Some(peer) = self.peers.get_mut(&key) {
            if note_data(now, peer) {
                self.timed.insert(key);
            }
            // A session that brought nothing for DEAD_AFTER was idle on both sides (nobody
            // needed it, so no keepalives): the peer may have restarted or let it expire
            // since. Sending on it could vanish; queue the packet behind a fresh handshake.
            let idle = |t: Option<Instant>| {
                t.is_none_or(|t| now.saturating_duration_since(t) >= DEAD_AFTER)
            };
            if peer.current.is_some() && idle(peer.last_rx) && idle(peer.last_tx) {
                peer.previous = peer.current.take();
                peer.attempts = 0;
                peer.next_attempt = now;
            }
            // Our XX session may not exist at the peer yet: wait for its confirmation.
            if peer.unconfirmed_final.is_some() {
                if peer.enqueue(&buf[DATA_HEADER_LEN..end]) {
                    peer.drops.add(DropReason::QueueFull);
                }
                return Encap::Queued;
            }
        }
        match self.seal_for(now, key, buf, packet_len) {
            Some((to, len, relay)) => {
                if let Some(relay_addr) = relay.and_then(|r| self.peers.get(&r)).map(|r| r.endpoint)
                {
                    // One copy, into the relay frame (a fallback path, not the fast one).
                    self.transmits.push_back(Transmit {
                        to: relay_addr,
                        payload: wrap(mesh_proto::gossip::prefix(key.as_bytes()), &buf[..len]),
                    });
                    return Encap::Relayed;
                }
                Encap::Send { to, len }
            }
            None => {
                if !self.ensure_peer(now, key) {
                    self.drops.add(DropReason::NoRoute);
                    return Encap::Dropped(DropReason::NoRoute);
                }
                let Some(peer) = self.peers.get_mut(&key) else {
                    self.drops.add(DropReason::NoRoute);
                    return Encap::Dropped(DropReason::NoRoute);
                };
                if note_data(now, peer) {
                    self.timed.insert(key);
                }
                if peer.enqueue(&buf[DATA_HEADER_LEN..end]) {
                    peer.drops.add(DropReason::QueueFull);
                }
                self.ensure_handshake(now, key);
                Encap::Queued
            }
        }
    }

    /// Seals `buf[DATA_HEADER_LEN..][..len]` on the peer's current session in place:
    /// `(endpoint, datagram length, relay in use)`. `None` when there is no usable session.
    fn seal_for(
        &mut self,
        now: Instant,
        key: PublicKey,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(SocketAddr, usize, Option<PublicKey>)> {
        let peer = self.peers.get_mut(&key)?;
        let index = peer.current?;
        let Some(Slot::Session {
            session,
            remote_index,
            ..
        }) = self.slots.get_mut(&index)
        else {
            peer.current = None;
            return None;
        };
        let counter = session.next_counter(now).ok()?;
        let (header, rest) = buf.split_at_mut(DATA_HEADER_LEN);
        let header: &mut [u8; DATA_HEADER_LEN] = header.try_into().ok()?;
        emit_data_header(header, *remote_index, counter);
        let sealed = session.seal(counter, header, rest, len).ok()?;
        let rekey = needs_rekey(session, now);
        peer.tx_packets += 1;
        peer.tx_bytes += len as u64;
        peer.last_tx = Some(now);
        let check_path = peer
            .last_rx
            .is_none_or(|t| now.saturating_duration_since(t) >= PATH_SILENCE)
            && peer.liveness_probe.is_none();
        let to = peer.endpoint;
        let relay = peer.relay;
        if check_path {
            self.schedule(now + PATH_SILENCE);
        }
        if rekey {
            self.ensure_handshake(now, key);
        }
        Some((to, DATA_HEADER_LEN + sealed, relay))
    }

    /// Seals a node-made plaintext (keepalive, control) and queues it as a transmit.
    fn send_plaintext(&mut self, now: Instant, key: PublicKey, plaintext: &[u8]) -> bool {
        let mut buf = vec![0u8; DATA_HEADER_LEN + plaintext.len() + TAG_LEN];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
        match self.seal_for(now, key, &mut buf, plaintext.len()) {
            Some((_, len, _)) => {
                buf.truncate(len);
                self.push_to_peer(key, buf);
                true
            }
            None => false,
        }
    }

    /// Queues a datagram for a peer: to its endpoint, or framed for its relay.
    fn push_to_peer(&mut self, key: PublicKey, payload: Vec<u8>) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let relay = peer
            .relay
            .and_then(|r| self.peers.get(&r))
            .map(|r| r.endpoint);
        let (to, payload) = match relay {
            Some(relay_addr) => (
                relay_addr,
                wrap(mesh_proto::gossip::prefix(key.as_bytes()), &payload),
            ),
            None => (peer.endpoint, payload),
        };
        self.transmits.push_back(Transmit { to, payload });
    }

    /// Queues a datagram back along the path one came by.
    fn push_on_path(&mut self, path: Path, payload: Vec<u8>) {
        match path {
            Path::Direct(to) => self.transmits.push_back(Transmit { to, payload }),
            Path::Relay { relay, peer } => {
                if let Some(r) = self.peers.get(&relay) {
                    let to = r.endpoint;
                    self.transmits.push_back(Transmit {
                        to,
                        payload: wrap(peer, &payload),
                    });
                }
            }
        }
    }

    // ---------------------------------------------------------------- underlay -> TUN

    /// Handles one datagram from the underlay, decrypting data in place.
    pub fn decapsulate(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) -> Decap {
        match RelayFrame::parse(buf) {
            Ok(frame) if frame.to_forward => {
                let dst = frame.peer;
                return self.forward_relay(now, from, dst, buf);
            }
            Ok(frame) => {
                // Forwarded to us: only from a member we have a session with, at its endpoint.
                let src = frame.peer;
                let Some(relay) = self.session_peer_at(from) else {
                    return self.drop_node(DropReason::RelayRefused);
                };
                let path = Path::Relay { relay, peer: src };
                return match self.decapsulate_path(now, path, from, &mut buf[RELAY_HEADER_LEN..]) {
                    Decap::Deliver { start, len } => Decap::Deliver {
                        start: start + RELAY_HEADER_LEN,
                        len,
                    },
                    other => other,
                };
            }
            Err(_) => {}
        }
        self.decapsulate_path(now, Path::Direct(from), from, buf)
    }

    /// The peer with a live session at `addr`, reached directly.
    fn session_peer_at(&self, addr: SocketAddr) -> Option<PublicKey> {
        #[allow(clippy::disallowed_methods)] // order-free: sorted below
        let mut found: Vec<PublicKey> = self
            .peers
            .values()
            .filter(|p| p.endpoint == addr && p.relay.is_none() && p.current.is_some())
            .map(|p| p.key)
            .collect();
        found.sort_unstable();
        found.first().copied()
    }

    /// We are the relay: pass the datagram on to `dst` if both ends are members we have
    /// direct sessions with. The header is rewritten in place to name the source.
    fn forward_relay(
        &mut self,
        now: Instant,
        from: SocketAddr,
        dst: [u8; 8],
        buf: &mut [u8],
    ) -> Decap {
        let Some(src) = self.session_peer_at(from) else {
            return self.drop_node(DropReason::RelayRefused);
        };
        let to = self.by_prefix.get(&dst).copied().and_then(|k| {
            self.peers
                .get(&k)
                .filter(|p| p.current.is_some() && p.relay.is_none() && k != src)
                .map(|p| p.endpoint)
        });
        let Some(to) = to else {
            return self.drop_node(DropReason::RelayRefused);
        };
        if let Ok(h) = (&mut buf[..RELAY_HEADER_LEN]).try_into() {
            emit_relay_header(h, false, mesh_proto::gossip::prefix(src.as_bytes()));
        }
        self.relayed_packets += 1;
        self.relayed_bytes += buf.len() as u64;
        // Both sessions carry traffic now: keep them up while it lasts.
        let dst_key = self.by_prefix.get(&dst).copied();
        for k in [Some(src), dst_key].into_iter().flatten() {
            if let Some(p) = self.peers.get_mut(&k)
                && note_data(now, p)
            {
                self.timed.insert(k);
            }
        }
        self.transmits.push_back(Transmit {
            to,
            payload: buf.to_vec(),
        });
        Decap::Consumed
    }

    fn decapsulate_path(
        &mut self,
        now: Instant,
        path: Path,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Decap {
        let header: [u8; DATA_HEADER_LEN];
        let (receiver, counter) = match Datagram::parse(buf) {
            Err(ParseError::Version(v)) => {
                if self
                    .version_warned_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= VERSION_WARNING_INTERVAL)
                {
                    self.version_warned_at = Some(now);
                    tracing::warn!(
                        %from,
                        version = v,
                        "refused a handshake of mesh protocol version {v}: this node speaks \
                         version 2 (handshake MACs) and does not talk to older nodes; upgrade \
                         meshd there"
                    );
                }
                return self.drop_node(DropReason::HandshakeVersion);
            }
            Err(_) => return self.drop_node(DropReason::Malformed),
            Ok(Datagram::HandshakeInit {
                pattern,
                sender,
                timestamp,
                noise,
                ..
            }) => {
                let init = Init {
                    pattern,
                    sender,
                    timestamp,
                };
                return self.on_init(now, path, from, init, noise, buf);
            }
            Ok(Datagram::HandshakeResponse {
                sender,
                receiver,
                noise,
                ..
            }) => {
                return self.on_response(now, path, sender, receiver, noise, buf);
            }
            Ok(Datagram::HandshakeFinal {
                sender,
                receiver,
                noise,
                ..
            }) => {
                return self.on_final(now, path, sender, receiver, noise, buf);
            }
            Ok(Datagram::CookieReply {
                receiver,
                nonce,
                sealed,
            }) => {
                let (nonce, sealed) = (*nonce, *sealed);
                return self.on_cookie_reply(now, path, from, receiver, nonce, sealed);
            }
            Ok(Datagram::Data {
                receiver,
                counter,
                header: h,
                ..
            }) => {
                header = *h;
                (receiver, counter)
            }
        };
        self.on_data(now, path, receiver, counter, &header, buf)
    }

    fn drop_node(&mut self, reason: DropReason) -> Decap {
        self.drops.add(reason);
        Decap::Dropped(reason)
    }

    fn on_data(
        &mut self,
        now: Instant,
        path: Path,
        receiver: u32,
        counter: u64,
        header: &[u8; DATA_HEADER_LEN],
        buf: &mut [u8],
    ) -> Decap {
        let Some(Slot::Session {
            session,
            peer: key,
            confirmed,
            ..
        }) = self.slots.get_mut(&receiver)
        else {
            return self.drop_node(DropReason::UnknownSession);
        };
        let key = *key;
        if let Path::Relay { peer, .. } = path
            && peer != mesh_proto::gossip::prefix(key.as_bytes())
        {
            return self.drop_node(DropReason::RelayRefused);
        }
        let opened = session.open(now, counter, header, &mut buf[DATA_HEADER_LEN..]);
        let len = match opened {
            Ok(len) => len,
            Err(e) => {
                let reason = DropReason::from_open(&e);
                match self.peers.get_mut(&key) {
                    Some(peer) => peer.drops.add(reason),
                    None => self.drops.add(reason),
                }
                return Decap::Dropped(reason);
            }
        };
        if !*confirmed {
            *confirmed = true;
            self.install_session(now, key, receiver, path, None, None);
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return self.drop_node(DropReason::UnknownSession);
        };
        peer.last_rx = Some(now);
        if peer
            .unconfirmed_final
            .as_ref()
            .is_some_and(|(i, _)| *i == receiver)
        {
            peer.unconfirmed_final = None;
            let queued: Vec<Vec<u8>> = peer.queue.drain(..).collect();
            for packet in queued {
                self.send_plaintext(now, key, &packet);
            }
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return self.drop_node(DropReason::UnknownSession);
        };
        peer.liveness_probe = None;
        if let Path::Direct(from) = path
            && peer.relay.is_none()
            && peer.endpoint != from
        {
            tracing::info!(peer = %peer.key.fingerprint(), old = %peer.endpoint, new = %from, "peer endpoint changed");
            peer.endpoint = from;
        }
        let plain = &buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
        match Inner::classify(plain) {
            Inner::Keepalive => Decap::Consumed,
            Inner::Ipv4 { src, dst } => {
                // The source must be routed to this very peer: a block it announced but
                // that was refused (outside the range, or owned by another node) does not
                // count, so a member cannot speak for addresses it does not own.
                if self.routes.lookup(src).is_none_or(|(_, k)| *k != key) {
                    peer.drops.add(DropReason::SourceNotAllowed);
                    return Decap::Dropped(DropReason::SourceNotAllowed);
                }
                if !self.blocks.iter().any(|b| b.contains(&dst)) {
                    peer.drops.add(DropReason::WrongDestination);
                    return Decap::Dropped(DropReason::WrongDestination);
                }
                peer.rx_packets += 1;
                peer.rx_bytes += len as u64;
                if note_data(now, peer) {
                    self.timed.insert(key);
                }
                Decap::Deliver {
                    start: DATA_HEADER_LEN,
                    len,
                }
            }
            Inner::Control(CONTROL_PEER_INFO, msg) => match PeerInfo::parse(msg) {
                Ok(info) => {
                    self.on_peer_info(now, key, info);
                    Decap::Consumed
                }
                Err(_) => {
                    peer.drops.add(DropReason::BadControl);
                    Decap::Dropped(DropReason::BadControl)
                }
            },
            Inner::Control(CONTROL_BLOCK_REQUEST, msg) => match BlockRequest::parse(msg) {
                Ok(req) => {
                    self.on_block_request(now, key, req);
                    Decap::Consumed
                }
                Err(_) => {
                    peer.drops.add(DropReason::BadControl);
                    Decap::Dropped(DropReason::BadControl)
                }
            },
            Inner::Control(CONTROL_ECHO_REQUEST | CONTROL_ECHO_REPLY, msg) => {
                let msg = msg.to_vec();
                if self.on_echo(now, key, &msg) {
                    return Decap::Consumed;
                }
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.drops.add(DropReason::BadControl);
                }
                Decap::Dropped(DropReason::BadControl)
            }
            Inner::Control(CONTROL_GOSSIP, msg) => {
                peer.gossip_rx += 1;
                let from = *key.as_bytes();
                let msg = msg.to_vec();
                if self.gossip.handle(now, from, &msg).is_err()
                    && let Some(peer) = self.peers.get_mut(&key)
                {
                    peer.drops.add(DropReason::BadControl);
                    return Decap::Dropped(DropReason::BadControl);
                }
                self.pump_gossip(now);
                Decap::Consumed
            }
            Inner::Control(..) => {
                peer.drops.add(DropReason::BadControl);
                Decap::Dropped(DropReason::BadControl)
            }
            Inner::Ipv6 | Inner::Invalid => {
                peer.drops.add(DropReason::UnsupportedPacket);
                Decap::Dropped(DropReason::UnsupportedPacket)
            }
        }
    }

    fn on_peer_info(&mut self, now: Instant, key: PublicKey, info: PeerInfo) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        // The first acknowledgement of our info times the round trip, on both sides of a
        // session (the handshake only times it for the initiator).
        if peer.acked_our_info < self.info_version
            && info.acked_version >= self.info_version
            && let Some(sent) = peer.info_sent_at.take()
        {
            peer.rtt = Some(now.saturating_duration_since(sent));
        }
        peer.acked_our_info = peer.acked_our_info.max(info.acked_version);
        let changed = info.info_version > peer.info_version;
        let answer = changed || info.acked_version < self.info_version;
        if let Some(observed) = info.observed {
            self.observed.insert(key, SocketAddr::V4(observed));
        }
        if changed {
            let direct = peer.info_version == 0;
            peer.info_version = info.info_version;
            if self
                .member_mut(key)
                .announce(now, direct, info.info_version, info.name, info.blocks)
            {
                self.routes_dirty = true;
            }
            self.refresh_routes();
        }
        if answer {
            // Acknowledge at once, so the peer stops retransmitting.
            self.send_info(now, key);
        }
    }

    fn send_info(&mut self, now: Instant, key: PublicKey) {
        self.send_info_asking(now, key, false);
    }

    /// Sends our info; `ask` claims we have none of the peer's, which makes it answer at
    /// once (how a silent path is tested).
    fn send_info_asking(&mut self, now: Instant, key: PublicKey, ask: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let info = PeerInfo {
            info_version: self.info_version,
            acked_version: if ask { 0 } else { peer.info_version },
            name: self.name.clone(),
            blocks: self.blocks.clone(),
            observed: match (peer.endpoint, peer.relay) {
                (SocketAddr::V4(v4), None) => Some(v4),
                _ => None,
            },
        };
        peer.info_next_send = now + INFO_RETRANSMIT;
        if peer.acked_our_info < self.info_version {
            peer.info_sent_at = Some(now);
        }
        if let Some((_, msg)) = peer.unconfirmed_final.clone() {
            self.push_to_peer(key, msg);
        }
        let mut buf = [0u8; MAX_PEER_INFO_LEN];
        if let Some(n) = info.emit(&mut buf) {
            self.send_plaintext(now, key, &buf[..n]);
        }
        self.schedule(now + INFO_RETRANSMIT);
    }

    /// Rebuilds the routes if something they are made of changed since the last rebuild
    /// (`routes_dirty`: a member's blocks, death or departure; with automatic IPAM, always).
    /// A rebuild from unchanged inputs gives the same table (the incumbents it keeps are
    /// the blocks it chose last time), so skipping it changes nothing; it costs
    /// O(members log members), which every new session and every rekey paid.
    fn refresh_routes(&mut self) {
        if self.routes_dirty || self.ipam.is_some() {
            self.rebuild_routes();
        }
    }

    /// Routes every peer's blocks. A block stays with the peer that routes it now while that
    /// peer has a live session; other claims are taken live peers first, then by who
    /// announced the block first. Our own blocks always win, and blocks outside the cluster
    /// range are never routed. So a node that announces somebody else's block cannot take
    /// its traffic, however recently it handshaked.
    fn rebuild_routes(&mut self) {
        let own = self.keypair.public();
        if let Some(spans) = self.ring_routes() {
            // Automatic IPAM: the ring says who owns what; announcements do not matter.
            let mut table = RouteTable::new();
            for (net, key) in spans {
                let _ = table.insert(net, key);
            }
            self.routes = table;
            self.routes_dirty = false;
            return;
        }
        let mut table = RouteTable::new();
        for b in &self.blocks {
            let _ = table.insert(*b, own);
        }
        let mut claims: Vec<(bool, bool, Option<Instant>, PublicKey, Ipv4Net)> = Vec::new();
        #[allow(clippy::disallowed_methods)] // order-free: the claims are sorted below
        for p in self.members.values() {
            let live = !p.dead && !p.left;
            for b in &p.blocks {
                let incumbent = self
                    .routes
                    .lookup(b.network())
                    .is_some_and(|(net, k)| *k == p.key && net == b);
                // Sort key: live incumbents first, then live peers, then the earliest claim.
                claims.push((!(live && incumbent), !live, p.blocks_since, p.key, *b));
            }
        }
        claims.sort();
        let mut conflicts = std::collections::HashSet::new();
        for (_, _, _, key, block) in claims {
            let refused = if !self.range.contains(&block) {
                Some(self.range)
            } else {
                table.insert(block, key).err()
            };
            if let Some(existing) = refused {
                if !self.conflicts.contains(&(key, block)) {
                    tracing::warn!(peer = %key.fingerprint(), %block, %existing, "peer announced a block outside the range or owned by another node; not routed");
                    self.events.push_back(Event::BlockConflict {
                        key,
                        block,
                        existing,
                    });
                }
                conflicts.insert((key, block));
            }
        }
        self.conflicts = conflicts;
        self.routes = table;
        self.routes_dirty = false;
    }

    // ---------------------------------------------------------------- handshakes

    fn on_init(
        &mut self,
        now: Instant,
        path: Path,
        from: SocketAddr,
        init: Init,
        noise: &[u8],
        datagram: &[u8],
    ) -> Decap {
        let Init {
            pattern,
            sender,
            timestamp,
        } = init;
        let pattern = match pattern {
            Pattern::Ik => HandshakePattern::IK,
            Pattern::Xx => HandshakePattern::XX,
        };
        let relayed = matches!(path, Path::Relay { .. });
        let anonymous = pattern == HandshakePattern::XX;
        let now_ms = self.unix_ms(now);
        match self
            .gate
            .check_init(now, now_ms, from, relayed, anonymous, timestamp, datagram)
        {
            Verdict::Process => {}
            Verdict::Cookie(reply) => {
                self.transmits.push_back(Transmit {
                    to: from,
                    payload: reply,
                });
                return self.drop_node(DropReason::HandshakeCookie);
            }
            Verdict::Drop(Refusal::Mac) => return self.drop_node(DropReason::HandshakeMac),
            Verdict::Drop(Refusal::Stale | Refusal::Replay) => {
                return self.drop_node(DropReason::HandshakeReplay);
            }
            Verdict::Drop(Refusal::RateLimited) => {
                return self.drop_node(DropReason::HandshakeRateLimited);
            }
        }
        self.responded += 1;
        let seed = self.seed();
        let mut payload = [0u8; 256];
        let mut hs = match Handshake::respond(pattern, &self.keypair, &self.psk, seed) {
            Ok(hs) => hs,
            Err(_) => return self.drop_node(DropReason::HandshakeFailed),
        };
        let Ok(read) = hs.read_message(noise, &mut payload) else {
            return self.drop_node(DropReason::HandshakeFailed);
        };
        if pattern == HandshakePattern::IK && hs.remote_static() == Some(self.keypair.public()) {
            return self.drop_node(DropReason::HandshakeFailed);
        }
        let cipher = self.ciphers.choose(CipherSet::from_offer(&payload[..read]));
        let index = self.new_index();
        let reply = choice(cipher);
        let mut out =
            vec![0u8; REPLY_HEADER_LEN + HANDSHAKE_OVERHEAD_MAX + reply.len() + HANDSHAKE_MACS_LEN];
        let Ok(n) = hs.write_message(&reply, &mut out[REPLY_HEADER_LEN..]) else {
            return self.drop_node(DropReason::HandshakeFailed);
        };
        out.truncate(REPLY_HEADER_LEN + n + HANDSHAKE_MACS_LEN);
        if let Ok(h) = (&mut out[..REPLY_HEADER_LEN]).try_into() {
            emit_reply_header(h, false, index, sender);
        }
        // IK: the initiator's key is known now; XX: not before message 3.
        let key = match hs.remote_static() {
            Some(k) if pattern == HandshakePattern::IK => Mac1Key::for_receiver(&self.psk, &k),
            _ => self.gate.mac1_key(true).clone(),
        };
        seal_macs(&mut out, &key, None);
        self.push_on_path(path, out);
        match pattern {
            HandshakePattern::IK => {
                let Some(remote) = hs.remote_static() else {
                    return self.drop_node(DropReason::HandshakeFailed);
                };
                let Ok(session) = hs.into_session_with(now, cipher) else {
                    return self.drop_node(DropReason::HandshakeFailed);
                };
                self.insert_slot(
                    index,
                    Slot::Session {
                        session: Box::new(session),
                        peer: remote,
                        remote_index: sender,
                        confirmed: false,
                    },
                );
                self.schedule(now + UNCONFIRMED_TIMEOUT);
            }
            HandshakePattern::XX => {
                self.insert_slot(
                    index,
                    Slot::RespondingXx {
                        hs: Box::new(hs),
                        remote_index: sender,
                        started: now,
                        cipher,
                    },
                );
                self.schedule(now + RESPONDER_HANDSHAKE_TIMEOUT);
            }
        }
        Decap::Consumed
    }

    fn on_response(
        &mut self,
        now: Instant,
        path: Path,
        sender: u32,
        receiver: u32,
        noise: &[u8],
        datagram: &[u8],
    ) -> Decap {
        let anonymous = match self.slots.get(&receiver) {
            Some(Slot::Initiating { hs, .. }) => hs.pattern() == HandshakePattern::XX,
            _ => return self.drop_node(DropReason::UnknownSession),
        };
        if !self.gate.mac1_ok(datagram, anonymous) {
            return self.drop_node(DropReason::HandshakeMac);
        }
        // Read in place: a response that fails authentication leaves the handshake waiting
        // for the genuine one (`Handshake::read_message` restores its state).
        let mut payload = [0u8; 256];
        let (read, target) = match self.slots.get_mut(&receiver) {
            Some(Slot::Initiating { hs, target, .. }) => {
                (hs.read_message(noise, &mut payload), *target)
            }
            _ => return self.drop_node(DropReason::UnknownSession),
        };
        let Ok(read) = read else {
            self.count_handshake_failure(target);
            return Decap::Dropped(DropReason::HandshakeFailed);
        };
        let Some(Slot::Initiating {
            mut hs, started, ..
        }) = self.slots.remove(&receiver)
        else {
            return self.drop_node(DropReason::UnknownSession);
        };
        self.clear_handshake(target, receiver);
        let Ok(cipher) = self.ciphers.accept_choice(&payload[..read]) else {
            self.count_handshake_failure(target);
            return Decap::Dropped(DropReason::HandshakeFailed);
        };
        let xx = hs.pattern() == HandshakePattern::XX;
        let Some(remote) = hs.remote_static() else {
            self.count_handshake_failure(target);
            return Decap::Dropped(DropReason::HandshakeFailed);
        };
        let mut final_msg = None;
        if xx {
            let mut out = vec![0u8; REPLY_HEADER_LEN + HANDSHAKE_OVERHEAD_MAX + HANDSHAKE_MACS_LEN];
            let Ok(n) = hs.write_message(&[], &mut out[REPLY_HEADER_LEN..]) else {
                self.count_handshake_failure(target);
                return Decap::Dropped(DropReason::HandshakeFailed);
            };
            out.truncate(REPLY_HEADER_LEN + n + HANDSHAKE_MACS_LEN);
            if let Ok(h) = (&mut out[..REPLY_HEADER_LEN]).try_into() {
                emit_reply_header(h, true, receiver, sender);
            }
            seal_macs(&mut out, &Mac1Key::for_receiver(&self.psk, &remote), None);
            final_msg = Some(out.clone());
            self.push_on_path(path, out);
        }
        let Ok(session) = hs.into_session_with(now, cipher) else {
            self.count_handshake_failure(target);
            return Decap::Dropped(DropReason::HandshakeFailed);
        };
        if remote == self.keypair.public() {
            if let Target::Bootstrap(i) = target {
                tracing::warn!(addr = %self.bootstrap[i].addr, "bootstrap address is this node itself; ignoring it");
                self.bootstrap[i].is_self = true;
            }
            return Decap::Consumed;
        }
        if let Target::Bootstrap(i) = target {
            let b = &mut self.bootstrap[i];
            b.resolved = Some(remote);
            b.attempts = 0;
            b.round_started = None;
            b.gave_up = false;
        }
        // An XX initiator cannot know that its third message arrived. While another session
        // with the peer works, the new one waits, unconfirmed, for the peer's first data on
        // it (or expires): replacing a working session with one the peer may not have
        // would blackhole this direction until the next rekey.
        let wait = xx && self.peers.get(&remote).is_some_and(|p| p.current.is_some());
        self.insert_slot(
            receiver,
            Slot::Session {
                session: Box::new(session),
                peer: remote,
                remote_index: sender,
                confirmed: !wait,
            },
        );
        if wait {
            self.schedule(now + UNCONFIRMED_TIMEOUT);
            return Decap::Consumed;
        }
        self.install_session(
            now,
            remote,
            receiver,
            path,
            Some(now.saturating_duration_since(started)),
            final_msg,
        );
        Decap::Consumed
    }

    fn on_final(
        &mut self,
        now: Instant,
        path: Path,
        sender: u32,
        receiver: u32,
        noise: &[u8],
        datagram: &[u8],
    ) -> Decap {
        let Some(Slot::RespondingXx { remote_index, .. }) = self.slots.get(&receiver) else {
            return self.drop_node(DropReason::UnknownSession);
        };
        if *remote_index != sender {
            return self.drop_node(DropReason::UnknownSession);
        }
        if !self.gate.mac1_ok(datagram, false) {
            return self.drop_node(DropReason::HandshakeMac);
        }
        // Read in place: a final message that fails authentication leaves the handshake
        // waiting for the genuine one.
        let mut payload = [0u8; 256];
        let read = match self.slots.get_mut(&receiver) {
            Some(Slot::RespondingXx { hs, .. }) => hs.read_message(noise, &mut payload),
            _ => return self.drop_node(DropReason::UnknownSession),
        };
        if read.is_err() {
            return self.drop_node(DropReason::HandshakeFailed);
        }
        let Some(Slot::RespondingXx { hs, cipher, .. }) = self.slots.remove(&receiver) else {
            return self.drop_node(DropReason::UnknownSession);
        };
        let Some(remote) = hs.remote_static() else {
            return self.drop_node(DropReason::HandshakeFailed);
        };
        if remote == self.keypair.public() {
            return self.drop_node(DropReason::HandshakeFailed);
        }
        let Ok(session) = hs.into_session_with(now, cipher) else {
            return self.drop_node(DropReason::HandshakeFailed);
        };
        self.insert_slot(
            receiver,
            Slot::Session {
                session: Box::new(session),
                peer: remote,
                remote_index: sender,
                confirmed: true,
            },
        );
        self.install_session(now, remote, receiver, path, None, None);
        Decap::Consumed
    }

    fn clear_handshake(&mut self, target: Target, index: u32) {
        match target {
            Target::Peer(key) => {
                if let Some(p) = self.peers.get_mut(&key)
                    && p.handshake == Some(index)
                {
                    p.handshake = None;
                }
            }
            Target::Probe(key) => {
                if let Some(p) = self.peers.get_mut(&key)
                    && p.probe == Some(index)
                {
                    p.probe = None;
                }
            }
            Target::Bootstrap(i) => {
                if self.bootstrap[i].handshake == Some(index) {
                    self.bootstrap[i].handshake = None;
                }
            }
        }
    }

    fn count_handshake_failure(&mut self, target: Target) {
        match target {
            Target::Peer(key) | Target::Probe(key) => match self.peers.get_mut(&key) {
                Some(p) => p.drops.add(DropReason::HandshakeFailed),
                None => self.drops.add(DropReason::HandshakeFailed),
            },
            Target::Bootstrap(_) => self.drops.add(DropReason::HandshakeFailed),
        }
    }

    /// Makes session `index` the peer's current one (creating the peer if new), flushes
    /// packets queued for it and announces our info.
    fn install_session(
        &mut self,
        now: Instant,
        key: PublicKey,
        index: u32,
        path: Path,
        rtt: Option<Duration>,
        xx_final: Option<Vec<u8>>,
    ) {
        self.member_mut(key);
        let known = self.members.get(&key).and_then(|m| m.endpoint);
        let relay_addr = match path {
            Path::Relay { relay, .. } => self.peers.get(&relay).map(|r| r.endpoint),
            Path::Direct(_) => None,
        };
        let Some(initial) = (match path {
            Path::Direct(a) => Some(a),
            Path::Relay { .. } => known.or(relay_addr),
        }) else {
            return;
        };
        let peer = self
            .peers
            .entry(key)
            .or_insert_with(|| Peer::new(key, initial, now));
        let was_established = peer.current.is_some();
        // The session before the previous one stays in `slots` until it expires: with
        // handshakes crossing (both sides initiating, plus a bootstrap XX) three sessions can
        // form within a round trip, and packets the peer sealed on any of them must open.
        peer.previous = peer.current.replace(index).filter(|i| *i != index);
        self.timed.insert(key);
        // An XX initiator's session may not exist at the peer yet (its third message can be
        // lost, or overtaken by our first packets): packets stay queued until the peer sends
        // something on it.
        let waiting = xx_final.is_some();
        peer.unconfirmed_final = xx_final.map(|m| (index, m));
        let was_relay = peer.relay;
        match path {
            Path::Direct(a) => {
                peer.endpoint = a;
                peer.relay = None;
            }
            Path::Relay { relay, .. } => {
                peer.relay = Some(relay);
                peer.next_probe = now + DIRECT_PROBE_INTERVAL;
            }
        }
        if was_relay != peer.relay {
            match peer.relay {
                Some(r) => {
                    tracing::info!(peer = %key.fingerprint(), relay = %r.fingerprint(), "path through a relay")
                }
                None if was_relay.is_some() => {
                    tracing::info!(peer = %key.fingerprint(), "path direct again")
                }
                None => {}
            }
        }
        let endpoint = peer.endpoint;
        peer.liveness_probe = None;
        if let Some(p) = peer.probe.take()
            && p != index
        {
            self.slots.remove(&p);
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.last_handshake = Some(now);
        peer.handshakes += 1;
        peer.attempts = 0;
        peer.round_started = None;
        peer.gave_up = false;
        peer.failed_over_at = None;
        peer.ever_established = true;
        peer.first_established.get_or_insert(now);
        peer.last_rx = Some(now);
        if rtt.is_some() {
            peer.rtt = rtt;
        }
        // A fresh session: the peer may have restarted, lost our info and started its own
        // versions from scratch, so both sides take the next announcement whatever its version.
        peer.acked_our_info = 0;
        peer.info_version = 0;
        peer.info_next_send = now;
        if let Some(h) = peer.handshake.take() {
            self.slots.remove(&h);
        }
        let queued: Vec<Vec<u8>> = if waiting {
            Vec::new()
        } else {
            peer.queue.drain(..).collect()
        };
        // A bootstrap address whose node reached us first needs no handshake of its own.
        let direct = matches!(path, Path::Direct(_));
        for b in self
            .bootstrap
            .iter_mut()
            .filter(|b| direct && b.addr == endpoint)
        {
            b.resolved = Some(key);
            b.attempts = 0;
            b.round_started = None;
            b.gave_up = false;
            if let Some(h) = b.handshake.take() {
                self.slots.remove(&h);
            }
        }
        if !was_established {
            tracing::info!(peer = %key.fingerprint(), %endpoint, "session established");
        }
        self.events
            .push_back(Event::PeerEstablished { key, endpoint });
        self.send_info(now, key);
        for packet in queued {
            self.send_plaintext(now, key, &packet);
        }
        self.refresh_routes();
        self.schedule(now);
    }

    /// Starts a handshake with a known peer unless one is in flight or backing off.
    fn ensure_handshake(&mut self, now: Instant, key: PublicKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        // Needed again after a round of attempts ran out: a new round (the backoff stays).
        if peer.gave_up {
            peer.gave_up = false;
            peer.round_started = None;
        }
        // Needed again long after the last attempt: start over (direct, no backoff); what
        // failed then says little about now.
        if peer.current.is_none() && now.saturating_duration_since(peer.next_attempt) >= FRESH_AFTER
        {
            peer.attempts = 0;
            peer.relay = None;
        }
        // An initiation still pending past its retry time went unanswered: it is retried
        // here, not only by the peer's timer, which retries only for peers it keeps a session
        // with (a node asking a non-neighbour for a block, after a partition healed, waited
        // for that forever).
        if now < peer.next_attempt {
            let at = peer.next_attempt;
            self.schedule(at);
            return;
        }
        self.initiate(now, Target::Peer(key));
    }

    fn initiate(&mut self, now: Instant, target: Target) {
        let seed = self.seed();
        let jitter = self.rng.next_u64();
        if let Target::Peer(key) = target {
            self.pick_path(now, key);
        }
        let (to, hs, mac1_key) = match target {
            Target::Peer(key) | Target::Probe(key) => {
                let Some(peer) = self.peers.get(&key) else {
                    return;
                };
                (
                    peer.endpoint,
                    Handshake::initiate_ik(&self.keypair, &key, &self.psk, seed),
                    Mac1Key::for_receiver(&self.psk, &key),
                )
            }
            Target::Bootstrap(i) => (
                self.bootstrap[i].addr,
                Handshake::initiate_xx(&self.keypair, &self.psk, seed),
                self.gate.mac1_key(true).clone(),
            ),
        };
        let Ok(mut hs) = hs else {
            return;
        };
        let index = self.new_index();
        let offer = self.ciphers.offer();
        let mut out =
            vec![0u8; INIT_HEADER_LEN + HANDSHAKE_OVERHEAD_MAX + offer.len() + HANDSHAKE_MACS_LEN];
        let Ok(n) = hs.write_message(&offer, &mut out[INIT_HEADER_LEN..]) else {
            return;
        };
        out.truncate(INIT_HEADER_LEN + n + HANDSHAKE_MACS_LEN);
        let pattern = match hs.pattern() {
            HandshakePattern::IK => Pattern::Ik,
            HandshakePattern::XX => Pattern::Xx,
        };
        let timestamp = self.unix_ms(now);
        if let Ok(h) = (&mut out[..INIT_HEADER_LEN]).try_into() {
            emit_init_header(h, pattern, index, timestamp);
        }
        let cookie = self
            .cookies
            .get(&to)
            .filter(|(_, at)| now.saturating_duration_since(*at) < COOKIE_USE_LIFETIME)
            .map(|(c, _)| *c);
        let mac1 = seal_macs(&mut out, &mac1_key, cookie.as_ref());
        let (attempts, old) = match target {
            Target::Peer(key) => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                let old = peer.handshake.replace(index);
                // A round is attempts that follow each other (at most the retry cap apart):
                // after a longer pause (the peer was not wanted, the clock jumped) a new one
                // starts.
                let pause = peer
                    .handshake_started
                    .is_none_or(|t| now.saturating_duration_since(t) > 2 * HANDSHAKE_RETRY_MAX);
                if pause {
                    peer.round_started = None;
                }
                peer.handshake_started = Some(now);
                peer.round_started.get_or_insert(now);
                let a = peer.attempts;
                peer.attempts = peer.attempts.saturating_add(1);
                peer.next_attempt = now + handshake_retry_delay(a, jitter);
                (a, old)
            }
            Target::Probe(key) => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                peer.next_probe = now + DIRECT_PROBE_INTERVAL;
                (0, peer.probe.replace(index))
            }
            Target::Bootstrap(i) => {
                let b = &mut self.bootstrap[i];
                let old = b.handshake.replace(index);
                // As for peers: a pause longer than the retry cap starts a new round.
                if b.attempted_at
                    .is_none_or(|t| now.saturating_duration_since(t) > 2 * HANDSHAKE_RETRY_MAX)
                {
                    b.round_started = None;
                }
                b.attempted_at = Some(now);
                b.round_started.get_or_insert(now);
                let a = b.attempts;
                b.attempts = b.attempts.saturating_add(1);
                b.next_attempt = now + handshake_retry_delay(a, jitter);
                (a, old)
            }
        };
        if let Some(old) = old {
            self.slots.remove(&old);
        }
        tracing::trace!(?target, %to, attempts, "handshake initiation");
        self.insert_slot(
            index,
            Slot::Initiating {
                hs: Box::new(hs),
                target,
                started: now,
                mac1,
                with_cookie: cookie.is_some(),
            },
        );
        match target {
            Target::Peer(key) => self.push_to_peer(key, out),
            Target::Probe(_) | Target::Bootstrap(_) => {
                self.transmits.push_back(Transmit { to, payload: out })
            }
        }
        self.schedule(now + handshake_retry_delay(attempts, jitter));
    }

    /// Before a handshake with `key`: after [`RELAY_AFTER_ATTEMPTS`] unanswered ones go
    /// through a relay, and a relay that is no longer usable is replaced.
    fn pick_path(&mut self, now: Instant, key: PublicKey) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let usable = |n: &Self, r: PublicKey| {
            n.peers.get(&r).is_some_and(|p| {
                p.current.is_some()
                    && p.relay.is_none()
                    && p.last_rx
                        .is_some_and(|t| now.saturating_duration_since(t) < membership::LIVE_WINDOW)
            })
        };
        // Without a session, after the first unanswered attempts every other one goes
        // direct again: a relay chosen from stale adjacency (or one that lost its own
        // session with the peer) must not be the only way tried.
        if peer.current.is_none()
            && peer.attempts >= RELAY_AFTER_ATTEMPTS
            && (peer.attempts - RELAY_AFTER_ATTEMPTS) % 2 == 1
        {
            if let Some(p) = self.peers.get_mut(&key) {
                p.relay = None;
            }
            return;
        }
        let wanted = match peer.relay {
            Some(r) if usable(self, r) => return,
            Some(_) => true,
            None => peer.current.is_none() && peer.attempts >= RELAY_AFTER_ATTEMPTS,
        };
        if !wanted {
            return;
        }
        let relay = self.choose_relay(now, key);
        if relay.is_none() {
            self.prepare_relay(now, key);
        }
        if let Some(peer) = self.peers.get_mut(&key)
            && peer.relay != relay
        {
            match relay {
                Some(r) => {
                    tracing::debug!(peer = %key.fingerprint(), relay = %r.fingerprint(), "handshake through a relay")
                }
                None => {
                    tracing::debug!(peer = %key.fingerprint(), "no relay usable; trying direct")
                }
            }
            peer.relay = relay;
            self.timed.insert(key);
        }
    }

    /// Packets to `key` went unanswered although we asked: the path is dead. The session is
    /// kept for receiving, and a new handshake goes through a relay at once.
    fn fail_over(&mut self, now: Instant, key: PublicKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        tracing::info!(peer = %key.fingerprint(), "no answer on the path to the peer; failing over");
        peer.liveness_probe = None;
        peer.failed_over_at = Some(now);
        if let Some(c) = peer.current.take() {
            peer.previous = Some(c);
        }
        // The relay in use (if any) failed too: pick another.
        let failed_relay = peer.relay.take();
        peer.attempts = peer.attempts.max(RELAY_AFTER_ATTEMPTS);
        peer.next_attempt = now;
        if let Some(h) = peer.handshake.take() {
            self.slots.remove(&h);
        }
        let relay = self.choose_relay_except(now, key, failed_relay);
        if relay.is_none() {
            self.prepare_relay(now, key);
        }
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.relay = relay;
            self.timed.insert(key);
        }
        self.initiate(now, Target::Peer(key));
    }

    // ---------------------------------------------------------------- timers

    /// Runs every timer due at `now`: handshake retries, rekeys, keepalives, info
    /// retransmits, session expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.next_timeout = None;
        self.expire_slots(now);
        if now >= self.next_maintain {
            self.maintain(now);
            self.next_maintain = now + MAINTAIN_INTERVAL;
        }
        self.gossip.handle_timeout(now);
        self.pump_gossip(now);
        let at = self.gossip.poll_timeout().min(self.next_maintain);
        self.schedule(at);

        // A peer learned by gossip but with no session and no use for one has no timer: only
        // peers with a session, and peers that want one (`wants_session`: gossip
        // neighbours, relays, bootstrap peers, peers that carried packets lately) are looked
        // at. In a large cluster they are a few dozen of thousands, and this runs at every
        // timer. Then in key order, not the map's hash order: the RNG draws (ephemeral keys,
        // indices, retry jitter) go to the same peers for the same seed, run after run.
        let mut relays: HashSet<PublicKey> = HashSet::new();
        let mut keys: Vec<PublicKey> = Vec::new();
        let peers = &self.peers;
        self.timed.retain(|key| {
            let Some(p) = peers.get(key) else {
                return false;
            };
            if let Some(r) = p.relay {
                relays.insert(r);
            }
            let carried = membership::carries_data(now, p);
            if p.current.is_some() || carried {
                keys.push(*key);
            }
            p.current.is_some() || p.relay.is_some() || carried
        });
        #[cfg(debug_assertions)]
        for (key, p) in &self.peers {
            let carried = membership::carries_data(now, p);
            debug_assert!(
                !(p.current.is_some() || p.relay.is_some() || carried) || self.timed.contains(key),
                "a peer with a session, a relay or recent packets is missing from the timer walk"
            );
        }
        #[allow(clippy::disallowed_methods)] // order-free: the keys are sorted below
        keys.extend(
            self.gossip
                .neighbours_iter(now)
                .map(|id| PublicKey::from_bytes(*id))
                .chain(relays.iter().copied())
                .chain(self.bootstrap.iter().filter_map(|b| b.resolved)),
        );
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            self.peer_timers(now, key, &relays);
        }
        for i in 0..self.bootstrap.len() {
            self.bootstrap_timers(now, i);
        }
    }

    fn insert_slot(&mut self, index: u32, slot: Slot) {
        self.slots.insert(index, slot);
        self.slots_due = None;
    }

    fn expire_slots(&mut self, now: Instant) {
        if let Some(due) = self.slots_due {
            match due {
                Some(at) if now >= at => {}
                Some(at) => return self.schedule(at),
                None => return,
            }
        }
        let mut expired = Vec::new();
        for (index, slot) in &self.slots {
            let gone = match slot {
                Slot::Initiating { .. } => false, // retried by its owner's timer
                Slot::RespondingXx { started, .. } => {
                    now.saturating_duration_since(*started) >= RESPONDER_HANDSHAKE_TIMEOUT
                }
                Slot::Session {
                    session, confirmed, ..
                } => {
                    session.is_expired(now)
                        || (!confirmed
                            && now.saturating_duration_since(session.created())
                                >= UNCONFIRMED_TIMEOUT)
                }
            };
            if gone {
                // A session's slot names its peer: only that peer can refer to it.
                let owner = match slot {
                    Slot::Session { peer, .. } => Some(*peer),
                    _ => None,
                };
                expired.push((*index, owner));
            }
        }
        for (index, owner) in expired {
            self.slots.remove(&index);
            #[allow(clippy::disallowed_methods)]
            // order-free: each peer lets go of the slot by itself
            let peers: &mut dyn Iterator<Item = &mut Peer> = match owner {
                Some(key) => &mut self.peers.get_mut(&key).into_iter(),
                None => &mut self.peers.values_mut(),
            };
            for peer in peers {
                if peer.current == Some(index) {
                    peer.current = peer.previous.take();
                    if peer.current.is_none() {
                        tracing::info!(peer = %peer.key.fingerprint(), "session expired");
                        // The path goes with the session: the next one is found afresh.
                        peer.relay = None;
                    }
                }
                if peer.previous == Some(index) {
                    peer.previous = None;
                }
            }
        }
        let mut due: Option<Instant> = None;
        #[allow(clippy::disallowed_methods)] // order-free: the earliest due time
        for slot in self.slots.values() {
            let at = match slot {
                Slot::Initiating { .. } => continue,
                Slot::RespondingXx { started, .. } => *started + RESPONDER_HANDSHAKE_TIMEOUT,
                Slot::Session {
                    session, confirmed, ..
                } => {
                    if *confirmed {
                        session.created() + REJECT_AFTER_TIME
                    } else {
                        session.created() + UNCONFIRMED_TIMEOUT
                    }
                }
            };
            due = Some(due.map_or(at, |t| t.min(at)));
        }
        self.slots_due = Some(due);
        if let Some(at) = due {
            self.schedule(at);
        }
    }

    fn peer_timers(&mut self, now: Instant, key: PublicKey, relays: &HashSet<PublicKey>) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let session = self.current_session(peer);
        let silent = match (peer.last_tx, peer.last_rx) {
            (Some(tx), Some(rx)) => tx > rx && now.saturating_duration_since(rx) >= DEAD_AFTER,
            _ => false,
        };
        let wanted = self.wants_session(now, key, relays);
        let wants_handshake = wanted
            && match session {
                None => true,
                Some(s) => needs_rekey(s, now) || silent,
            };
        let has_session = session.is_some();
        let handshake_due = wants_handshake && now >= peer.next_attempt;
        let next_attempt = peer.next_attempt;
        let keepalive_at = peer.last_tx.map_or(now, |t| t + KEEPALIVE_TIMEOUT);
        let info_due = has_session && peer.acked_our_info < self.info_version;
        let info_at = peer.info_next_send;
        let rekey_at = session.map(|s| {
            s.created()
                + if s.is_initiator() {
                    REKEY_AFTER_TIME
                } else {
                    RESPONDER_REKEY_AFTER_TIME
                }
        });

        let gave_up = peer.gave_up;
        let round_over = round_over(now, peer.round_started, peer.handshake_started);
        if gave_up {
            // Retries stopped; the next need for the peer starts a new round.
        } else if handshake_due && round_over && self.has_a_session() {
            self.give_up(key);
        } else if handshake_due {
            if silent && has_session {
                tracing::debug!(peer = %key.fingerprint(), "no answer from peer; new handshake");
            }
            self.initiate(now, Target::Peer(key));
        } else if wants_handshake {
            self.schedule(next_attempt);
        }
        if has_session {
            if !wanted {
                // Nobody needs this session: no keepalives or rekeys, it lapses.
            } else if now >= keepalive_at {
                self.send_plaintext(now, key, &[]);
                self.schedule(now + KEEPALIVE_TIMEOUT);
            } else {
                self.schedule(keepalive_at);
            }
            if info_due {
                if now >= info_at {
                    self.send_info(now, key);
                } else {
                    self.schedule(info_at);
                }
            }
            if let Some(at) = rekey_at.filter(|at| *at > now && wanted) {
                self.schedule(at);
            }
            self.path_timers(now, key);
        }
    }

    /// A round of handshake attempts with `key` went unanswered for [`REKEY_ATTEMPT_TIME`]:
    /// stop retrying (as WireGuard does) and drop what waited for the session. The next need
    /// for the peer (`ensure_handshake`) starts a new round.
    fn give_up(&mut self, key: PublicKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.gave_up = true;
        peer.round_started = None;
        peer.drops
            .add_n(DropReason::NoRoute, peer.queue.len() as u64);
        peer.queue.clear();
        let pending = peer.handshake.take();
        tracing::debug!(peer = %key.fingerprint(), "no handshake answer for 90 s; retries stop until the peer is needed again");
        if let Some(h) = pending {
            self.slots.remove(&h);
        }
    }

    /// Whether any peer has a session (the walk's set holds every peer with one).
    fn has_a_session(&self) -> bool {
        self.timed
            .iter()
            .any(|k| self.peers.get(k).is_some_and(|p| p.current.is_some()))
    }

    /// A cookie reply to our initiation `receiver`: the responder is under load. Keep the
    /// cookie for its address and initiate again with it at once (once per initiation: a
    /// second cookie for an initiation that carried one waits for the retry timer).
    fn on_cookie_reply(
        &mut self,
        now: Instant,
        path: Path,
        from: SocketAddr,
        receiver: u32,
        nonce: [u8; 12],
        sealed: [u8; 32],
    ) -> Decap {
        if !matches!(path, Path::Direct(_)) {
            return self.drop_node(DropReason::UnknownSession);
        }
        let Some(Slot::Initiating {
            mac1,
            target,
            with_cookie,
            ..
        }) = self.slots.get(&receiver)
        else {
            return self.drop_node(DropReason::UnknownSession);
        };
        let (mac1, target, with_cookie) = (*mac1, *target, *with_cookie);
        let Ok(cookie) = self.gate.open_cookie(&sealed, &mac1, nonce) else {
            return self.drop_node(DropReason::HandshakeMac);
        };
        self.cookies_received += 1;
        if self.cookies.len() >= MAX_COOKIES && !self.cookies.contains_key(&from) {
            #[allow(clippy::disallowed_methods)]
            // order-free: each cookie is kept or dropped by itself
            self.cookies
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < COOKIE_USE_LIFETIME);
            #[allow(clippy::disallowed_methods)]
            // order-free: the oldest, ties to the lowest address
            let oldest = self
                .cookies
                .iter()
                .min_by_key(|(a, (_, at))| (*at, **a))
                .map(|(a, _)| *a);
            if self.cookies.len() >= MAX_COOKIES
                && let Some(a) = oldest
            {
                self.cookies.remove(&a);
            }
        }
        self.cookies.insert(from, (cookie, now));
        tracing::debug!(%from, "cookie reply: the peer is under load; initiating again with its cookie");
        if !with_cookie {
            // The attempt was answered: it does not count towards a relay or the backoff.
            match target {
                Target::Peer(k) => {
                    if let Some(p) = self.peers.get_mut(&k) {
                        p.attempts = p.attempts.saturating_sub(1);
                    }
                }
                Target::Bootstrap(i) => {
                    let b = &mut self.bootstrap[i];
                    b.attempts = b.attempts.saturating_sub(1);
                }
                Target::Probe(_) => {}
            }
            self.initiate(now, target);
        }
        Decap::Consumed
    }

    /// A session's path: ask for an answer when packets go out and nothing comes back, fail
    /// over when the answer does not come either; while relayed, try direct now and then.
    fn path_timers(&mut self, now: Instant, key: PublicKey) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let sending = peer
            .last_tx
            .is_some_and(|t| now.saturating_duration_since(t) < PATH_SILENCE);
        let heard = peer.last_rx;
        let quiet = heard.is_none_or(|t| now.saturating_duration_since(t) >= PATH_SILENCE);
        match peer.liveness_probe {
            None if sending && quiet => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.liveness_probe = Some((now, 1));
                }
                self.send_info_asking(now, key, true);
                self.schedule(now + PATH_SILENCE / PATH_ASKS);
            }
            Some((asked, mut asks)) if heard.is_none_or(|t| t < asked) => {
                if now.saturating_duration_since(asked) >= PATH_SILENCE {
                    self.fail_over(now, key);
                    return;
                }
                // Ask k (from 0) is due k/PATH_ASKS of the way into the second.
                let due = |k: u32| asked + PATH_SILENCE * k / PATH_ASKS;
                if asks < PATH_ASKS && now >= due(asks) {
                    asks += 1;
                    if let Some(p) = self.peers.get_mut(&key) {
                        p.liveness_probe = Some((asked, asks));
                    }
                    self.send_info_asking(now, key, true);
                }
                self.schedule(if asks < PATH_ASKS {
                    due(asks)
                } else {
                    asked + PATH_SILENCE
                });
            }
            Some(_) => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.liveness_probe = None;
                }
            }
            None => {}
        }
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if peer.relay.is_some() && peer.current.is_some() {
            if now >= peer.next_probe {
                self.initiate(now, Target::Probe(key));
            } else {
                let at = peer.next_probe;
                self.schedule(at);
            }
        }
    }

    fn bootstrap_timers(&mut self, now: Instant, i: usize) {
        let b = &self.bootstrap[i];
        if b.is_self || b.forgotten {
            return;
        }
        let needed = match b.resolved.and_then(|k| self.peers.get(&k)) {
            // Someone answered here: IK with its key takes over, unless it keeps failing
            // (a new key behind the same address).
            Some(peer) => peer.current.is_none() && peer.attempts >= IK_FAILURES_BEFORE_XX,
            None => true,
        };
        if !needed {
            return;
        }
        // A round that ran out stops, unless this node has no session at all: then reaching
        // the cluster is a standing need, and the bootstrap addresses are all it has.
        let round_over = round_over(now, b.round_started, b.attempted_at);
        if b.gave_up || round_over {
            if !self.has_a_session() {
                let b = &mut self.bootstrap[i];
                b.gave_up = false;
                b.round_started = None;
            } else {
                if !b.gave_up {
                    tracing::debug!(addr = %b.addr, "no handshake answer at a bootstrap address for 90 s; retries stop while other sessions are up");
                }
                let b = &mut self.bootstrap[i];
                b.gave_up = true;
                b.round_started = None;
                if let Some(h) = b.handshake.take() {
                    self.slots.remove(&h);
                }
                return;
            }
        }
        let b = &self.bootstrap[i];
        if now >= b.next_attempt {
            self.initiate(now, Target::Bootstrap(i));
        } else {
            let at = b.next_attempt;
            self.schedule(at);
        }
    }

    // ---------------------------------------------------------------- status

    /// `p`'s current session.
    fn current_session(&self, p: &Peer) -> Option<&Session> {
        match p.current.and_then(|i| self.slots.get(&i)) {
            Some(Slot::Session { session, .. }) => Some(session),
            _ => None,
        }
    }

    /// Every peer (and every bootstrap address nobody answered yet) in API form.
    pub fn peer_status(&self, now: Instant) -> Vec<mesh_api::PeerStatus> {
        #[allow(clippy::disallowed_methods)] // order-free: sorted below
        let mut out: Vec<mesh_api::PeerStatus> = self
            .peers
            .values()
            .map(|p| {
                let session = self.current_session(p);
                // Packets of the current session's receiving side: expected, and lost.
                let (rx_expected, rx_lost) = session.map_or((0, 0), |s| {
                    let (span, accepted) = s.received();
                    (span, span.saturating_sub(accepted))
                });
                mesh_api::PeerStatus {
                    name: self
                        .members
                        .get(&p.key)
                        .map(|m| m.name.clone())
                        .unwrap_or_default(),
                    public_key: p.key.to_string(),
                    endpoint: p.endpoint.to_string(),
                    state: p.state(),
                    blocks: self
                        .members
                        .get(&p.key)
                        .map(|m| m.blocks.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    last_handshake_secs_ago: p
                        .last_handshake
                        .map(|t| now.saturating_duration_since(t).as_secs()),
                    handshakes: p.handshakes,
                    rtt_us: p.rtt.map(|d| d.as_micros() as u64),
                    rx_packets: p.rx_packets,
                    rx_bytes: p.rx_bytes,
                    tx_packets: p.tx_packets,
                    tx_bytes: p.tx_bytes,
                    drops: p.drops.to_api(),
                    relay: p.relay.map(|r| r.to_string()),
                    session_rx_expected: rx_expected,
                    session_rx_lost: rx_lost,
                    cipher: session.map(|s| s.cipher().name().to_owned()),
                }
            })
            .collect();
        for b in &self.bootstrap {
            if b.is_self || b.forgotten || b.resolved.is_some_and(|k| self.peers.contains_key(&k)) {
                continue;
            }
            let state = if b.handshake.is_some() {
                mesh_api::PeerState::Handshaking
            } else {
                mesh_api::PeerState::Idle
            };
            out.push(mesh_api::PeerStatus::address_only(
                b.addr.to_string(),
                state,
            ));
        }
        out.sort_by(|a, b| {
            (&a.name, &a.endpoint, &a.public_key).cmp(&(&b.name, &b.endpoint, &b.public_key))
        });
        out
    }

    /// Node-wide drop counters (drops not charged to a peer).
    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    /// The count of `reason` over the node and all peers.
    #[allow(clippy::disallowed_methods)] // order-free: a sum
    pub fn total_drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason)
            + self
                .peers
                .values()
                .map(|p| p.drops.get(reason))
                .sum::<u64>()
    }

    /// The route table, read-only: every routed block (this node's own included, owned by
    /// [`Node::public_key`]) and the key of the node it goes to, sorted by block.
    pub fn routes(&self) -> Vec<(Ipv4Net, PublicKey)> {
        let mut out: Vec<(Ipv4Net, PublicKey)> =
            self.routes.iter().map(|(net, key)| (*net, *key)).collect();
        out.sort_by_key(|(net, _)| (net.network(), net.prefix_len()));
        out
    }

    /// Number of routed blocks (what `routes().len()` says, without listing them).
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Peers with an established session.
    #[allow(clippy::disallowed_methods)] // order-free: a count
    pub fn established_peers(&self) -> usize {
        self.peers.values().filter(|p| p.current.is_some()).count()
    }
}

/// Whether a round of handshake attempts that began at `started` has run out: it is
/// [`REKEY_ATTEMPT_TIME`] old and still going (its last attempt, `last`, is at most two retry
/// intervals ago; after a longer pause the next attempt starts a new round).
fn round_over(now: Instant, started: Option<Instant>, last: Option<Instant>) -> bool {
    started.is_some_and(|t| now.saturating_duration_since(t) >= REKEY_ATTEMPT_TIME)
        && last.is_some_and(|t| now.saturating_duration_since(t) <= 2 * HANDSHAKE_RETRY_MAX)
}

fn needs_rekey(session: &Session, now: Instant) -> bool {
    session.needs_rekey(now)
}

/// Notes that `peer` carried an IP packet now. Returns whether it had carried none within
/// `IDLE_AFTER`: only then must it join the timer walk's set (`Node::timed`), which keeps
/// every peer that carries packets, so the packet path touches the set once per idle
/// period, not once per packet.
fn note_data(now: Instant, peer: &mut Peer) -> bool {
    let started = !membership::carries_data(now, peer);
    peer.last_data = Some(now);
    started
}
