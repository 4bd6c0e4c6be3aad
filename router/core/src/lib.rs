//! The sans-I/O heart of a mesh node.
//!
//! [`Node`] takes datagrams from the underlay, packets from the TUN device and the current
//! time, and answers with what to do: send these bytes to that address, write this packet
//! to the TUN device, drop it (and count why). It owns the peers, their handshakes and
//! sessions, and the route table that maps a destination address to the peer that owns
//! its block (longest-prefix match). It never reads a clock, a socket or the OS RNG:
//! callers pass `now` and a seed, which is what makes it testable with a virtual clock.
//!
//! It does not know about tokio, TUN devices or netlink (see `mesh-datapath` and `meshd`),
//! nor about gossip or automatic address allocation yet: peers are the configured
//! bootstrap addresses, the peers remembered from an earlier run, and whoever completes a
//! handshake with the cluster secret; each peer announces its own blocks.
#![forbid(unsafe_code)]

mod drops;
mod node;
mod peer;
mod ratelimit;
mod route;

pub use drops::{DropCounters, DropReason};
pub use node::{Decap, Encap, Event, Node, NodeConfig, Transmit};
pub use route::RouteTable;

/// Bytes a sealed data datagram adds around a packet (header + AEAD tag).
pub const DATA_OVERHEAD: usize = mesh_proto::datagram::DATA_HEADER_LEN + mesh_crypto::TAG_LEN;
