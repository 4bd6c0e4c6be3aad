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
//! It does not know about tokio, TUN devices or netlink (see `mesh-datapath` and `meshd`),
//! nor about automatic address allocation yet: each node announces the blocks it is given.
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
