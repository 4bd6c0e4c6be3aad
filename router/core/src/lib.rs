//! The sans-I/O heart of a mesh node.
//!
//! [`Node`] takes datagrams from the underlay, packets from the TUN device and the current
//! time, and answers with what to do: send these bytes to that address, write this packet
//! to the TUN device, drop it (and count why). It owns the peers, their handshakes and
//! sessions, and the route table that maps a destination address to the peer that owns
//! its block (longest-prefix match). It never reads a clock, a socket or the OS RNG:
//! callers pass `now` and a seed, which is what makes it testable with a virtual clock.
//!
//! Members are learned by gossip (`mesh-gossip`, carried inside the sessions): given one
//! reachable member, a node learns every member's key, endpoint and blocks, keeps sessions
//! with about log2(N) gossip neighbours plus the peers it exchanges packets with, and marks
//! members dead when the gossiped adjacency no longer reaches them (`node/membership.rs`).
//!
//! Files:
//! - `node.rs`: the `Node`: encapsulate and decapsulate, handshake state, sessions, rekeys,
//!   keepalives, path choice and failover, forwarding relayed datagrams, the timer walk;
//! - `peer.rs`: a peer's state (known peers can also be added at run time: `add_known_peer`);
//! - `route.rs`: the route table (read-only to callers through `Node::routes`);
//! - `gate.rs`: the handshake gate in front of every initiation (mac1, timestamp and replay
//!   cache, global budget and cookie replies under load, per-source limit of proven sources);
//! - `drops.rs`: the drop counters; `member.rs`: members;
//! - `node/membership.rs`: the node's side of gossip: its member and adjacency records,
//!   applying others', choosing gossip neighbours, which sessions to keep, liveness, relay
//!   choice;
//! - `node/ipam.rs`: automatic IPAM: the ring replica (founded at start or by `found_ring`),
//!   active blocks, donations asked and given, reclaims;
//! - `node/echo.rs`: echo probes for `meshctl ping`, and bootstrap endpoints added or
//!   forgotten at run time (`add_bootstrap`, `forget_bootstrap`, used by `meshctl
//!   connect`/`forget` and `--kube`).
//!
//! It does not know about tokio, TUN devices or netlink (see `mesh-datapath` and `meshd`). The
//! gossip protocol itself is `mesh-gossip`'s, block ownership and address allocation
//! `mesh-ipam`'s.
#![forbid(unsafe_code)]

mod drops;
pub mod gate;
mod member;
mod node;
mod peer;
mod route;

pub use drops::{DropCounters, DropReason};
pub use mesh_gossip::GossipConfig;
pub use node::{
    CONTROL_BLOCK_REQUEST, DEFAULT_DEAD_AFTER, Decap, Encap, Event, FIRST_APP_KIND, KIND_RING,
    MAX_ECHO_LEN, Node, NodeConfig, PingError, ReclaimError, RingConfig, Transmit,
};
pub use route::RouteTable;

/// Bytes a sealed data datagram adds around a packet (header + AEAD tag).
pub const DATA_OVERHEAD: usize = mesh_proto::datagram::DATA_HEADER_LEN + mesh_crypto::TAG_LEN;
