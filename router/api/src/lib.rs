//! Types of `meshd`'s local API: HTTP/1.1 + JSON over a unix socket (default
//! `/run/mesh/meshd.sock`, mode 0600), used by `meshctl` and `mesh-cni`.
//!
//! Endpoints: `GET /v1/status`, `/v1/ready`, `/v1/ipam`, `/v1/routes`, `/v1/dns`,
//! `/v1/debug`; `POST /v1/ipam/{allocate,release,gc}`, `/v1/members/remove`, `/v1/dns/{add,remove}`,
//! `/v1/ping`, `/v1/peers/{connect,forget}` (the `PATH_*` constants). Also the `meshctl
//! peers` and `connections` views built from a status ([`PeersView`], [`ConnectionsView`]) and
//! [`key_fingerprint`].
//!
//! This crate only holds the wire types and the endpoint paths; it does no I/O.
//! Field names are a public interface: add fields, never rename or remove them.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// `GET` — the whole node status ([`Status`]).
pub const PATH_STATUS: &str = "/v1/status";

/// Default UDP port of meshd (`--listen`, and of a `--peer` or `meshctl connect` endpoint
/// given without one).
pub const DEFAULT_UDP_PORT: u16 = 6788;

/// Default path of the API socket.
pub const DEFAULT_SOCKET: &str = "/run/mesh/meshd.sock";

/// Answer of [`PATH_STATUS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub node: NodeStatus,
    /// Every peer this node knows of, sorted by name.
    pub peers: Vec<PeerStatus>,
    /// Packets dropped before a peer could be told apart (unknown session index,
    /// malformed datagram, no route for a TUN packet, ...), by reason.
    pub drops: Vec<DropCount>,
    /// Counters of the packet path: batch sizes and offload state (explains a slow link).
    #[serde(default)]
    pub datapath: DatapathStatus,
    /// Every member of the cluster this node knows, itself included (state `local`), sorted
    /// by name.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// Gossip counters.
    #[serde(default)]
    pub gossip: GossipStatus,
    /// Problems meshd itself found and cannot fix, one line each, naming the fix (e.g. the
    /// address ring of another cluster was refused).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The DNS server; `None` with `--dns off`.
    #[serde(default)]
    pub dns: Option<DnsSummary>,
    /// The handshake gate: work done, load, cookies. Absent from older nodes' status.
    #[serde(default)]
    pub handshakes: HandshakeStatus,
}

/// The checks in front of handshakes (`docs/protocol.md`, "Handshake MACs and cookies").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeStatus {
    /// Initiations answered with public-key work (everything the gate let through).
    pub responded: u64,
    /// The node is under load now: initiations without a valid cookie get a cookie reply.
    pub under_load: bool,
    /// Cookie replies sent.
    pub cookies_sent: u64,
    /// Cookie replies accepted (this node's initiations met a loaded responder).
    pub cookies_received: u64,
    /// Initiations remembered for replay detection.
    pub replay_cache: u64,
}

/// The DNS server in [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSummary {
    /// Where it answers, `IP:PORT` (empty until it listens: automatic IPAM waits for a block).
    pub listen: String,
    /// The cluster zone, fully qualified.
    pub zone: String,
    /// Records of the zone held (not removed).
    pub records: u64,
    /// Of those, the ones answered (the others' owner is dead).
    pub served: u64,
    /// Queries received (UDP and TCP).
    pub queries: u64,
}

/// Whether a member is alive, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// This node.
    Local,
    /// Reachable over live sessions (ours, or confirmed by both ends in gossip).
    Alive,
    /// Unreachable for longer than `--dead-after`.
    Dead,
    /// It announced that it left.
    Left,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The name it announced.
    pub name: String,
    /// Its static public key (base64).
    pub public_key: String,
    /// The endpoint it announces, `IP:PORT`, if known.
    pub endpoint: Option<String>,
    /// Blocks it announces, CIDR.
    pub blocks: Vec<String>,
    /// Alive, dead, left, or this node.
    pub state: MemberState,
    /// It is one of this node's gossip neighbours.
    pub neighbour: bool,
    /// This node has a session with it now.
    pub session: bool,
    /// Seconds since nothing shows it alive (it is marked dead after `--dead-after`).
    pub unreachable_secs: Option<u64>,
}

/// Gossip counters of this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipStatus {
    /// Records held (two per member, more as gossip carries more).
    pub records: u64,
    /// Gossip neighbours now (outbound and inbound).
    pub neighbours: u64,
    /// Of which chosen by this node.
    pub outbound: u64,
    /// Gossip messages sent.
    pub tx_messages: u64,
    /// Their bytes (before sealing).
    pub tx_bytes: u64,
    /// Gossip messages received.
    pub rx_messages: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Records received that were new or newer.
    pub records_applied: u64,
    /// Records received that were already known.
    pub records_redundant: u64,
    /// Records pulled because a neighbour announced them (a have) and no push brought them
    /// within the pull delay. Absent from older nodes' status (read as 0).
    #[serde(default)]
    pub records_pulled: u64,
    /// Messages or records that did not parse.
    pub malformed: u64,
}

/// How the node moves packets, and how much per system call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatapathStatus {
    /// The TUN device hands over TCP super-packets (`IFF_VNET_HDR` + TSO) and takes coalesced
    /// ones back.
    pub tun_offload: bool,
    /// Datagrams the kernel sends per segmented UDP send (UDP GSO); 1 means off.
    pub udp_gso_segments: u64,
    /// Datagrams the kernel may coalesce per receive (UDP GRO); 1 means off.
    pub udp_gro_segments: u64,
    /// Reads from the TUN device.
    pub tun_reads: u64,
    /// Packets read from the TUN device.
    pub tun_read_packets: u64,
    /// Writes to the TUN device: one packet, or a super-packet of coalesced TCP segments.
    pub tun_writes: u64,
    /// Packets written to the TUN device.
    pub tun_write_packets: u64,
    /// UDP send calls (one call may carry a run of datagrams with GSO).
    pub udp_sends: u64,
    /// Datagrams sent.
    pub udp_send_datagrams: u64,
    /// UDP receive calls (one call may return many datagrams).
    pub udp_recvs: u64,
    /// Datagrams received.
    pub udp_recv_datagrams: u64,
    /// The UDP socket's receive buffer (`SO_RCVBUF`, bytes, as the kernel reports it); 0
    /// when unknown.
    #[serde(default)]
    pub udp_rcvbuf: u64,
    /// The UDP socket's send buffer (`SO_SNDBUF`, bytes); 0 when unknown.
    #[serde(default)]
    pub udp_sndbuf: u64,
}

/// This node's identity and configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Human name (hostname by default).
    pub name: String,
    /// Static X25519 public key, standard base64.
    pub public_key: String,
    /// Underlay UDP listen address, `IP:PORT`.
    pub listen: String,
    /// Cluster range, CIDR.
    pub range: String,
    /// Address blocks this node owns, CIDR.
    pub blocks: Vec<String>,
    /// The bridge pods attach to, and its (gateway) address in CIDR form.
    pub bridge: String,
    /// Gateway address on the bridge, CIDR (first address of the first block).
    pub gateway: String,
    /// TUN device name.
    pub tun: String,
    /// Overlay MTU given to pods and set on the TUN device.
    pub mtu: u32,
    /// Packet ciphers this node offers in handshakes, preferred first, comma-separated
    /// (`aes-256-gcm,chacha20-poly1305`, or `chacha20-poly1305`); each peer's session uses
    /// the first one both ends offer (`PeerStatus::cipher`).
    pub cipher: String,
    /// Process uptime in seconds.
    pub uptime_secs: u64,
    /// meshd version.
    pub version: String,
}

/// State of a peer's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// No session and no handshake in flight.
    Idle,
    /// A handshake is in flight, no usable session yet.
    Handshaking,
    /// A session is established and traffic can flow.
    Established,
    /// The last session expired and re-handshakes keep failing.
    Expired,
}

/// One peer as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The name the peer announced, or empty before it announced one.
    pub name: String,
    /// The peer's static public key (base64), empty while only its address is known.
    pub public_key: String,
    /// The underlay endpoint in use, `IP:PORT`.
    pub endpoint: String,
    /// Session state.
    pub state: PeerState,
    /// Blocks the peer announced, CIDR.
    pub blocks: Vec<String>,
    /// Seconds since the last completed handshake, `None` if there never was one.
    pub last_handshake_secs_ago: Option<u64>,
    /// Completed handshakes with this peer.
    pub handshakes: u64,
    /// Round-trip time of the last handshake, microseconds.
    pub rtt_us: Option<u64>,
    /// Data packets received and decrypted.
    pub rx_packets: u64,
    /// Bytes of decrypted payload received.
    pub rx_bytes: u64,
    /// Data packets sealed and sent.
    pub tx_packets: u64,
    /// Bytes of payload sealed and sent.
    pub tx_bytes: u64,
    /// Packets from or for this peer that were dropped, by reason.
    pub drops: Vec<DropCount>,
    /// Public key (base64) of the member our datagrams to this peer go through, when the
    /// direct path failed; `None` when direct.
    #[serde(default)]
    pub relay: Option<String>,
    /// Packets the peer sent in the current session, up to the newest that arrived (its
    /// counters); 0 without a session.
    #[serde(default)]
    pub session_rx_expected: u64,
    /// Of those, the ones that never arrived: inbound loss on the path from the peer
    /// (packets still on their way when reordered count too, for a moment).
    #[serde(default)]
    pub session_rx_lost: u64,
    /// Packet cipher of the current session (`aes-256-gcm` or `chacha20-poly1305`);
    /// `None` without one.
    #[serde(default)]
    pub cipher: Option<String>,
}

impl PeerStatus {
    /// Inbound loss in the current session, 0 to 1; `None` before anything arrived.
    pub fn rx_loss(&self) -> Option<f64> {
        (self.session_rx_expected > 0)
            .then(|| self.session_rx_lost as f64 / self.session_rx_expected as f64)
    }
}

/// A drop counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    /// Stable snake_case reason, e.g. `replay`, `authentication`, `no_route`.
    pub reason: String,
    /// Packets dropped for it.
    pub packets: u64,
}

/// Error body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// One line saying what went wrong.
    pub error: String,
}

impl PeerStatus {
    /// A peer known only by its address (no key, no name, no traffic yet), in `state`.
    pub fn address_only(endpoint: String, state: PeerState) -> Self {
        Self {
            name: String::new(),
            public_key: String::new(),
            endpoint,
            state,
            blocks: Vec::new(),
            last_handshake_secs_ago: None,
            handshakes: 0,
            rtt_us: None,
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            drops: Vec::new(),
            relay: None,
            session_rx_expected: 0,
            session_rx_lost: 0,
            cipher: None,
        }
    }
}

impl Status {
    /// The count of `reason` summed over the node-wide and every peer's drops.
    pub fn total_drops(&self, reason: &str) -> u64 {
        let node: u64 = self
            .drops
            .iter()
            .filter(|d| d.reason == reason)
            .map(|d| d.packets)
            .sum();
        let peers: u64 = self
            .peers
            .iter()
            .flat_map(|p| p.drops.iter())
            .filter(|d| d.reason == reason)
            .map(|d| d.packets)
            .sum();
        node + peers
    }
}

/// `GET` — 200 with [`Ready`] once meshd serves its API (the bridge, the TUN device and the
/// address pool are set up by then). `mesh-cni` asks it for CNI STATUS.
pub const PATH_READY: &str = "/v1/ready";
/// `GET` — the node's address pool ([`IpamStatus`]).
pub const PATH_IPAM: &str = "/v1/ipam";
/// `POST` [`IpamAllocateRequest`] — an address for a pod attachment ([`IpamAllocated`]).
pub const PATH_IPAM_ALLOCATE: &str = "/v1/ipam/allocate";
/// `POST` [`IpamReleaseRequest`] — frees an attachment's address ([`IpamReleased`]).
pub const PATH_IPAM_RELEASE: &str = "/v1/ipam/release";
/// `POST` [`IpamGcRequest`] — frees every attachment not listed ([`IpamGcResult`]).
pub const PATH_IPAM_GC: &str = "/v1/ipam/gc";

/// Answer of [`PATH_READY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Always `true` in a 200 answer.
    pub ready: bool,
}

/// One CNI attachment: the container and its interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// Body of [`PATH_IPAM_ALLOCATE`]. Asking again for the same attachment returns the same
/// address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamAllocateRequest {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `K8S_POD_NAME` from `CNI_ARGS`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// `K8S_POD_NAMESPACE` from `CNI_ARGS`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The CNI network name; scopes [`PATH_IPAM_GC`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// Answer of [`PATH_IPAM_ALLOCATE`]: everything the plugin needs to wire the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamAllocated {
    /// The pod's address with its block's prefix, e.g. `10.32.1.5/24`.
    pub address: String,
    /// The gateway (the bridge's address in that block), e.g. `10.32.1.1`.
    pub gateway: String,
    /// MTU for the pod's interface.
    pub mtu: u32,
    /// The bridge to attach the pod to.
    pub bridge: String,
    /// The cluster range (a non-primary interface routes only this via the gateway).
    pub range: String,
    /// `false` if the attachment had this address already (a retried ADD).
    #[serde(default)]
    pub fresh: bool,
}

/// Body of [`PATH_IPAM_RELEASE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamReleaseRequest {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// Answer of [`PATH_IPAM_RELEASE`]; releasing an attachment that holds nothing is fine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamReleased {
    /// The address freed, `None` if the attachment held none.
    pub released: Option<String>,
}

/// Body of [`PATH_IPAM_GC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamGcRequest {
    /// The attachments that stay; every other one (of `network`, if given) is freed.
    pub keep: Vec<AttachmentRef>,
    /// Only consider allocations made for this CNI network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// Answer of [`PATH_IPAM_GC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamGcResult {
    /// The allocations freed.
    pub released: Vec<IpamAllocation>,
}

/// One address handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamAllocation {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// Address with prefix, e.g. `10.32.1.5/24`.
    pub address: String,
    /// Pod name, if the runtime gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Pod namespace, if the runtime gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// CNI network name, if the plugin gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `true` when the address lies outside the node's current blocks (kept from before a
    /// configuration change; freed like any other, never handed out again).
    #[serde(default)]
    pub stranded: bool,
}

/// Answer of [`PATH_IPAM`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamStatus {
    /// The cluster range.
    pub range: String,
    /// The bridge pods attach to.
    pub bridge: String,
    /// MTU given to pods.
    pub mtu: u32,
    /// Blocks this node hands addresses out of.
    pub blocks: Vec<String>,
    /// Every allocation.
    pub allocations: Vec<IpamAllocation>,
    /// Usable addresses handed out.
    pub used: u64,
    /// Usable addresses still free.
    pub free: u64,
    /// How the node gets its blocks: `fixed` (`--block`) or `automatic` (the cluster's
    /// address ring).
    #[serde(default)]
    pub mode: IpamMode,
    /// Prefix length of a block (of `--block`, or of every block of the ring).
    #[serde(default)]
    pub block_prefix: u8,
    /// The cluster's address ring id (automatic, once this node founded or joined one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<String>,
    /// Use of each of `blocks`, in the same order.
    #[serde(default)]
    pub block_use: Vec<IpamBlockUse>,
    /// Who owns which blocks of the range, as this node's replica of the ring says, in
    /// address order (automatic only; empty for `fixed`).
    #[serde(default)]
    pub owners: Vec<IpamSpan>,
}

/// How a node gets its address blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpamMode {
    /// Its one block is given by `meshd --block`.
    #[default]
    Fixed,
    /// Blocks come from the cluster's address ring: founded by the first node, donated by
    /// their owner when a node needs one, reclaimed by `meshctl rmpeer`.
    Automatic,
}

/// Addresses used and free in one block of a node's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamBlockUse {
    /// The block, CIDR.
    pub block: String,
    /// Usable addresses handed out.
    pub used: u64,
    /// Usable addresses still free.
    pub free: u64,
}

/// A run of blocks with one owner, in [`IpamStatus::owners`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamSpan {
    /// The blocks, as the fewest prefixes (CIDR).
    pub blocks: Vec<String>,
    /// The owner's name as gossip knows it; empty when unknown.
    pub name: String,
    /// The owner's static public key (base64); `None` when this node has not heard who owns
    /// these blocks yet.
    pub public_key: Option<String>,
    /// The owner is this node.
    pub local: bool,
}

/// `POST` [`MemberRemoveRequest`] — declares a member gone for good and takes over its
/// address blocks (`meshctl rmpeer`); answers [`MemberRemoved`]. 409 when the member is
/// alive and `force` is not set, 404 when no member matches, 400 for this node itself or an
/// ambiguous name, 503 when the node runs with a fixed `--block`.
pub const PATH_MEMBERS_REMOVE: &str = "/v1/members/remove";

/// Body of [`PATH_MEMBERS_REMOVE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemoveRequest {
    /// The member's name, or its static public key (base64).
    pub member: String,
    /// Remove it even though this node sees it alive.
    #[serde(default)]
    pub force: bool,
}

/// Answer of [`PATH_MEMBERS_REMOVE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemoved {
    /// The member's name, empty if it never announced one.
    pub name: String,
    /// Its static public key, base64.
    pub public_key: String,
    /// The blocks this node took over, CIDR, as the fewest prefixes.
    pub reclaimed: Vec<String>,
    /// How many of its DNS records were removed (tombstones gossiped to every member).
    #[serde(default)]
    pub dns_removed: usize,
}

/// `GET` — the route table: which peer each block of the range goes to ([`Routes`]).
pub const PATH_ROUTES: &str = "/v1/routes";

/// Answer of [`PATH_ROUTES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    /// Every routed block, this node's own included, sorted by address then prefix length.
    pub routes: Vec<Route>,
}

/// Where packets for a block go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteVia {
    /// One of this node's own blocks: delivered to the local bridge.
    Local,
    /// Sealed and sent to the peer that announced the block.
    Peer,
}

/// One entry of the route table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination block, CIDR.
    pub block: String,
    /// `local` or `peer`.
    pub via: RouteVia,
    /// The owner's name (this node's for `local`), empty if the peer announced none.
    pub name: String,
    /// The owner's static public key, base64.
    pub public_key: String,
    /// The peer's underlay endpoint, `IP:PORT`; empty for `local`.
    pub endpoint: String,
    /// The peer's session state; `None` for `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PeerState>,
}

/// A public key's short form for tables, logs and metric labels: its first 8 base64
/// characters (the same as `mesh_crypto::PublicKey::fingerprint`). Empty for an empty key.
pub fn key_fingerprint(public_key: &str) -> String {
    public_key.chars().take(8).collect()
}

/// `meshctl peers -o json`: who the peers are (built from [`Status`] by `meshctl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersView {
    /// Every peer, in [`Status`] order (by name, then endpoint).
    pub peers: Vec<PeerView>,
}

/// One peer in [`PeersView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The name the peer announced, empty before it announced one.
    pub name: String,
    /// Static public key, base64; empty while only its address is known.
    pub public_key: String,
    /// [`key_fingerprint`] of `public_key`.
    pub fingerprint: String,
    /// Underlay endpoints, `IP:PORT` (today exactly one: the one in use).
    pub endpoints: Vec<String>,
    /// Session state.
    pub state: PeerState,
    /// Seconds since the last completed handshake, `None` if there never was one. A state
    /// change time is not tracked; sessions are renewed every 2 minutes.
    pub last_handshake_secs_ago: Option<u64>,
}

impl PeerView {
    /// The view of one peer of a [`Status`].
    pub fn from_status(p: &PeerStatus) -> Self {
        Self {
            name: p.name.clone(),
            public_key: p.public_key.clone(),
            fingerprint: key_fingerprint(&p.public_key),
            endpoints: if p.endpoint.is_empty() {
                Vec::new()
            } else {
                vec![p.endpoint.clone()]
            },
            state: p.state,
            last_handshake_secs_ago: p.last_handshake_secs_ago,
        }
    }
}

/// How traffic to a peer travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// Straight to the peer's underlay endpoint.
    Direct,
    /// Through another member (`relay` names it), because the direct path failed.
    Relay,
}

/// `meshctl connections -o json`: each peer's path and session (built from [`Status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionsView {
    /// One per peer, in [`Status`] order.
    pub connections: Vec<ConnectionView>,
}

/// One peer in [`ConnectionsView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    /// Peer name, empty before it announced one.
    pub name: String,
    /// Peer public key, base64.
    pub public_key: String,
    /// [`key_fingerprint`] of `public_key`.
    pub fingerprint: String,
    /// Underlay endpoint in use.
    pub endpoint: String,
    /// Session state.
    pub state: PeerState,
    /// `direct`, or `relay` through the member named by `relay`.
    pub path: PathKind,
    /// Name (or key fingerprint when it announced none) of the relay in use.
    #[serde(default)]
    pub relay: Option<String>,
    /// Round-trip time of the last handshake, microseconds.
    pub rtt_us: Option<u64>,
    /// Overlay MTU (the node's; no per-path MTU probing yet).
    pub mtu: u32,
    /// Packet cipher while a session is established, `None` otherwise.
    pub cipher: Option<String>,
    /// Seconds since the last completed handshake.
    pub last_handshake_secs_ago: Option<u64>,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Data packets received and decrypted.
    pub rx_packets: u64,
    /// Bytes of decrypted payload received.
    pub rx_bytes: u64,
    /// Data packets sealed and sent.
    pub tx_packets: u64,
    /// Bytes of payload sealed and sent.
    pub tx_bytes: u64,
    /// Drops charged to this peer, non-zero only.
    pub drops: Vec<DropCount>,
    /// Inbound loss in the current session: packets the peer sent up to its newest that
    /// arrived ([`PeerStatus::session_rx_expected`]) and those that never did.
    #[serde(default)]
    pub session_rx_expected: u64,
    /// See `session_rx_expected`.
    #[serde(default)]
    pub session_rx_lost: u64,
}

impl ConnectionsView {
    /// The connections of every peer of `status`.
    pub fn from_status(status: &Status) -> Self {
        let node = &status.node;
        let connections = status
            .peers
            .iter()
            .map(|p| ConnectionView {
                name: p.name.clone(),
                public_key: p.public_key.clone(),
                fingerprint: key_fingerprint(&p.public_key),
                endpoint: p.endpoint.clone(),
                state: p.state,
                path: if p.relay.is_some() {
                    PathKind::Relay
                } else {
                    PathKind::Direct
                },
                relay: p.relay.as_ref().map(|r| {
                    status
                        .members
                        .iter()
                        .find(|m| &m.public_key == r && !m.name.is_empty())
                        .map_or_else(|| key_fingerprint(r), |m| m.name.clone())
                }),
                rtt_us: p.rtt_us,
                mtu: node.mtu,
                cipher: p
                    .cipher
                    .clone()
                    .filter(|_| p.state == PeerState::Established),
                last_handshake_secs_ago: p.last_handshake_secs_ago,
                handshakes: p.handshakes,
                rx_packets: p.rx_packets,
                rx_bytes: p.rx_bytes,
                tx_packets: p.tx_packets,
                tx_bytes: p.tx_bytes,
                drops: p.drops.iter().filter(|d| d.packets > 0).cloned().collect(),
                session_rx_expected: p.session_rx_expected,
                session_rx_lost: p.session_rx_lost,
            })
            .collect();
        Self { connections }
    }
}

impl PeersView {
    /// The peers of `status`.
    pub fn from_status(status: &Status) -> Self {
        Self {
            peers: status.peers.iter().map(PeerView::from_status).collect(),
        }
    }
}

/// `GET` — the DNS records of the cluster zone ([`DnsRecords`]); 503 when DNS is off.
pub const PATH_DNS: &str = "/v1/dns";
/// `POST` [`DnsAddRequest`] — registers an address under a name, owned by this node;
/// answers [`DnsChanged`] (the record added).
pub const PATH_DNS_ADD: &str = "/v1/dns/add";
/// `POST` [`DnsRemoveRequest`] — removes this node's records under a name (one address or
/// all); answers [`DnsChanged`] (the records removed), 404 when there was none.
pub const PATH_DNS_REMOVE: &str = "/v1/dns/remove";

/// Answer of [`PATH_DNS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecords {
    /// The cluster zone, fully qualified (e.g. `mesh.local.`).
    pub zone: String,
    /// Where meshd serves DNS, `IP:PORT` (UDP and TCP).
    pub listen: String,
    /// Upstream resolvers for names outside the zone, `IP:PORT`, in preference order.
    pub upstreams: Vec<String>,
    /// TTL of the zone's positive answers, seconds (`--dns-ttl`); every record has it.
    #[serde(default)]
    pub ttl: u32,
    /// Every live (not removed) record, by name, then address, then owner.
    pub records: Vec<DnsRecord>,
}

/// One DNS record: an address under a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// Fully qualified, lower case (e.g. `web.mesh.local.`).
    pub name: String,
    /// The A (IPv4) or AAAA (IPv6) address.
    pub address: String,
    /// [`key_fingerprint`] of the public key of the node that registered it.
    pub owner: String,
    /// Whether it is answered: `false` while its owner is considered dead.
    pub served: bool,
}

/// Body of [`PATH_DNS_ADD`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAddRequest {
    /// Relative to the zone (`web`) or fully qualified inside it (`web.mesh.local.`).
    pub name: String,
    /// An IPv4 or IPv6 address.
    pub address: String,
}

/// Body of [`PATH_DNS_REMOVE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRemoveRequest {
    /// As in [`DnsAddRequest::name`].
    pub name: String,
    /// Only this address; `None`: every address of this node under the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Answer of [`PATH_DNS_ADD`] and [`PATH_DNS_REMOVE`]: the records added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsChanged {
    /// The records concerned.
    pub records: Vec<DnsRecord>,
}

/// `GET` — what the usual toolbox (bridge, links, netns, ARP, FDB, routes, offloads, socket
/// drops) shows piecemeal, read by meshd through rtnetlink, ethtool's netlink family,
/// `/proc` and `/sys`, with a list of findings ([`DebugReport`]).
pub const PATH_DEBUG: &str = "/v1/debug";

/// How bad a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nothing is broken.
    Info,
    /// Works, but slower or more fragile than it should.
    Warning,
    /// Traffic is (or will be) lost: `meshctl debug` exits 3.
    Error,
}

/// One problem found by [`PATH_DEBUG`]'s checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// Stable snake_case name of the check, e.g. `ip_forward`, `veth_detached`.
    pub check: String,
    /// What it is about (a link, a peer, a sysctl); empty for the node as a whole.
    pub subject: String,
    /// One line: the problem, then the fix.
    pub message: String,
}

/// A network link as rtnetlink reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugLink {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// Link kind (`bridge`, `veth`, `tun`, ...), empty when the kernel names none.
    pub kind: String,
    /// Administratively up (`ip link set X up`).
    pub admin_up: bool,
    /// Operational state, lower case (`up`, `down`, `lowerlayerdown`, `unknown`, ...).
    pub oper_state: String,
    /// MTU.
    pub mtu: u32,
    /// Name of the link it is enslaved to (its bridge), if any.
    pub master: Option<String>,
    /// MAC address, `aa:bb:..`; empty for layer-3 devices.
    pub mac: String,
    /// IPv4 addresses, CIDR.
    pub addresses: Vec<String>,
}

/// A pod's host-side veth and the namespace it leads to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugVeth {
    /// The host end.
    pub link: DebugLink,
    /// Interface index of the pod end, inside the pod's namespace.
    pub peer_ifindex: Option<u32>,
    /// The pod namespace's id as seen from the host namespace (`ip netns list-id`).
    pub netns_id: Option<i32>,
    /// Its name under `/run/netns`, when it has one there.
    pub netns_name: Option<String>,
    /// Enslaved to the node's bridge.
    pub attached: bool,
    /// The pod end's name, MTU and IPv4 addresses (CIDR), read inside its namespace when
    /// that has a name under `/run/netns`.
    #[serde(default)]
    pub pod_ifname: Option<String>,
    /// See `pod_ifname`.
    #[serde(default)]
    pub pod_mtu: Option<u32>,
    /// See `pod_ifname`.
    #[serde(default)]
    pub pod_addresses: Vec<String>,
}

/// An ARP (neighbour) entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugNeighbour {
    /// The device it is on.
    pub device: String,
    /// IP address.
    pub address: String,
    /// MAC address; empty while unresolved.
    pub mac: String,
    /// `reachable`, `stale`, `failed`, `incomplete`, `permanent`, ...
    pub state: String,
}

/// A forwarding-database entry of the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugFdb {
    /// The bridge port (or the bridge itself) it points to.
    pub device: String,
    /// MAC address.
    pub mac: String,
    /// VLAN, if any.
    pub vlan: Option<u16>,
    /// `permanent` (the port's own address), `static`, or learned (`reachable`, `stale`).
    pub state: String,
}

/// A kernel route for the cluster range (or inside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugRoute {
    /// Destination, CIDR.
    pub destination: String,
    /// Output device.
    pub device: String,
    /// Next hop, if any.
    pub gateway: Option<String>,
    /// Preferred source address, if any.
    pub source: Option<String>,
    /// Routing table number (254 is main).
    pub table: u32,
}

/// Offload settings of a device: ethtool's features (over netlink), rtnetlink's size limits,
/// and for the TUN device `/sys` and meshd's own state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugOffload {
    /// The device.
    pub device: String,
    /// Where the values come from, `+`-separated: `ethtool-netlink`, `rtnetlink`, `sysfs`.
    pub source: String,
    /// ethtool features that are on (`ethtool -k` names, e.g. `tx-tcp-segmentation`,
    /// `rx-gro`, `tx-checksum-ip-generic`); empty when ethtool's netlink family could not be
    /// read (then `source` lacks `ethtool-netlink`).
    #[serde(default)]
    pub features: Vec<String>,
    /// Largest GSO super-packet the device takes (IFLA_GSO_MAX_SIZE); 0 unknown.
    pub gso_max_size: u32,
    /// Most segments per GSO packet (IFLA_GSO_MAX_SEGS).
    pub gso_max_segs: u32,
    /// Largest GRO packet (IFLA_GRO_MAX_SIZE).
    pub gro_max_size: u32,
    /// Largest TSO packet the device supports (IFLA_TSO_MAX_SIZE).
    pub tso_max_size: u32,
    /// TUN devices: the virtio-net header is on (`/sys/class/net/X/tun_flags` has
    /// IFF_VNET_HDR), which meshd's offloads need. `None` for other devices.
    pub tun_vnet_hdr: Option<bool>,
    /// TUN devices: meshd reads super-packets (its `--offload` took effect).
    pub meshd_offload: Option<bool>,
}

/// Receive-buffer drops of meshd's UDP socket and of UDP on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugUdp {
    /// meshd's socket, `IP:PORT`.
    pub local: String,
    /// Datagrams the kernel dropped on meshd's socket (the `drops` column of
    /// `/proc/net/udp`); `None` when the socket was not found there.
    pub socket_drops: Option<u64>,
    /// Bytes queued for meshd to read (`rx_queue`).
    pub rx_queue: Option<u64>,
    /// `Udp: RcvbufErrors` of `/proc/net/snmp`: datagrams dropped host-wide for a full
    /// receive buffer.
    pub rcvbuf_errors: Option<u64>,
    /// `Udp: InErrors`.
    pub in_errors: Option<u64>,
    /// `Udp: SndbufErrors`.
    pub sndbuf_errors: Option<u64>,
}

/// Whether meshd's nftables table is the one it installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterState {
    /// Present, with the chains, rules and counters meshd installed at its start.
    #[default]
    Intact,
    /// No such table: pods are reachable in clear from the underlay.
    Missing,
    /// Present, but its chains, rules or counters differ from what meshd installed.
    Changed,
    /// `nft` could not list it (see [`DebugFilter::error`]).
    Unreadable,
}

/// One drop counter of meshd's nftables table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugFilterCounter {
    /// The counter's name (`spoofed_source`, `to_local_pods`, `to_remote_pods`).
    pub name: String,
    /// Packets dropped since meshd last installed the table.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// meshd's nftables table in [`DebugReport`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugFilter {
    /// Family and name, as `nft list table` takes them: `inet mesh`.
    pub table: String,
    /// Intact, missing, changed or unreadable.
    pub state: FilterState,
    /// The first difference from what meshd installed (for [`FilterState::Changed`]): a
    /// chain, rule or counter of one side that the other lacks, in nft's JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<String>,
    /// Why `nft` could not list the table (for [`FilterState::Unreadable`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The drop counters, as the kernel has them now.
    pub counters: Vec<DebugFilterCounter>,
}

/// Answer of [`PATH_DEBUG`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugReport {
    /// This node's name.
    pub node: String,
    /// The cluster range, CIDR.
    pub range: String,
    /// Overlay MTU.
    pub mtu: u32,
    /// The bridge; `None` when it is missing.
    pub bridge: Option<DebugLink>,
    /// Every link enslaved to the bridge.
    pub ports: Vec<DebugLink>,
    /// Pod veths: host ends enslaved to the bridge, named like `mesh-cni`'s (`vmesh…`), or
    /// leading into a named namespace where the other end has an address in the range.
    pub veths: Vec<DebugVeth>,
    /// The TUN device; `None` when it is missing.
    pub tun: Option<DebugLink>,
    /// ARP entries on the bridge.
    pub neighbours: Vec<DebugNeighbour>,
    /// FDB entries of the bridge.
    pub fdb: Vec<DebugFdb>,
    /// IPv4 routes whose destination overlaps the cluster range, every table.
    pub routes: Vec<DebugRoute>,
    /// Offload settings of the TUN device and the pod veths.
    pub offloads: Vec<DebugOffload>,
    /// `/proc/sys/net/ipv4/ip_forward` is 1; `None` when unreadable.
    pub ip_forward: Option<bool>,
    /// `/proc/sys/net/bridge/bridge-nf-call-iptables`; `None` when br_netfilter is not
    /// loaded.
    pub bridge_nf_call_iptables: Option<bool>,
    /// Socket receive-buffer drops.
    pub udp: DebugUdp,
    /// meshd's nftables table (the filter that keeps plaintext from the underlay off the
    /// pods); `None` from a meshd that has none.
    #[serde(default)]
    pub filter: Option<DebugFilter>,
    /// The problems found, worst first, one line each naming the fix.
    pub findings: Vec<Finding>,
    /// Parts that could not be read (netlink or file errors), one line each.
    pub errors: Vec<String>,
}

impl DebugReport {
    /// The worst severity among the findings, `None` when there is none.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// `POST` [`PingRequest`] — measures the overlay path to a member ([`PingResult`]); 404 when
/// nothing matches the target, 400 for this node itself or an ambiguous name.
pub const PATH_PING: &str = "/v1/ping";

/// Most probes one ping request may send.
pub const MAX_PING_COUNT: u32 = 20;

/// Body of [`PATH_PING`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {
    /// A member's name or public key, or a pod address (the member whose block holds it).
    pub target: String,
    /// Probes to send (1 to [`MAX_PING_COUNT`]); one more, full-size, checks the MTU.
    pub count: u32,
    /// Milliseconds between probes (10 to 1000).
    pub interval_ms: u64,
}

/// Answer of [`PATH_PING`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResult {
    /// What was asked for.
    pub target: String,
    /// The member's name.
    pub name: String,
    /// The member's public key, base64.
    pub public_key: String,
    /// Its underlay endpoint in use, `IP:PORT`.
    pub endpoint: String,
    /// `direct`, or `relay` through `relay`.
    pub path: PathKind,
    /// Name (or key fingerprint) of the relay, when relayed.
    pub relay: Option<String>,
    /// Probes sent.
    pub sent: u32,
    /// Answers received.
    pub received: u32,
    /// Round trip of each probe, microseconds, `None` for a lost one, in order.
    pub rtts_us: Vec<Option<u64>>,
    /// Smallest round trip, microseconds.
    pub rtt_min_us: Option<u64>,
    /// Mean round trip, microseconds.
    pub rtt_avg_us: Option<u64>,
    /// Largest round trip, microseconds.
    pub rtt_max_us: Option<u64>,
    /// The overlay MTU (bytes of an inner packet).
    pub mtu: u32,
    /// A probe of `mtu` bytes went there and back; `false` when it was lost (a path MTU
    /// below the overlay's, or just loss).
    pub mtu_ok: bool,
}

impl PingResult {
    /// Percent of probes lost (0 to 100), the MTU probe not counted.
    pub fn loss_percent(&self) -> u32 {
        if self.sent == 0 {
            return 0;
        }
        (self.sent - self.received.min(self.sent)) * 100 / self.sent
    }
}

/// `POST` [`EndpointRequest`] — adds a peer endpoint at run time, as `meshd --peer` does at
/// start ([`EndpointChanged`]); 400 for an address that is not `IP:PORT`.
pub const PATH_PEERS_CONNECT: &str = "/v1/peers/connect";
/// `POST` [`EndpointRequest`] — stops trying an endpoint and removes it from the known peers
/// saved in the state directory ([`EndpointChanged`]); 404 when the endpoint is unknown.
pub const PATH_PEERS_FORGET: &str = "/v1/peers/forget";

/// Body of [`PATH_PEERS_CONNECT`] and [`PATH_PEERS_FORGET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRequest {
    /// `IP:PORT`.
    pub endpoint: String,
}

/// Answer of [`PATH_PEERS_CONNECT`] and [`PATH_PEERS_FORGET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointChanged {
    /// The endpoint, `IP:PORT`.
    pub endpoint: String,
    /// connect: it was not tried before; forget: it was tried (a bootstrap endpoint).
    pub changed: bool,
    /// Public keys (base64) of the known peers at that endpoint removed from `peers.json`
    /// (forget), empty for connect.
    pub removed_keys: Vec<String>,
}
