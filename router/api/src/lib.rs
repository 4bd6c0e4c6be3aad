//! Types of `meshd`'s local API: HTTP/1.1 + JSON over a unix socket (default
//! `/run/mesh/meshd.sock`, mode 0600), used by `meshctl` and `mesh-cni`.
//!
//! This crate only holds the wire types and the endpoint paths; it does no I/O.
//! Field names are a public interface: add fields, never rename or remove them.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// `GET` — the whole node status ([`Status`]).
pub const PATH_STATUS: &str = "/v1/status";

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
    /// Packet cipher of established sessions (e.g. `chacha20-poly1305`).
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
