//! mesh's gossip, sans-I/O.
//!
//! The cluster's shared state (members, their adjacency, address-ring entries, DNS records)
//! is a set of versioned records (`(kind, id) -> (version, body)`, the higher version wins),
//! held by every node in a [`Store`] and spread by [`Gossip`]: changes are pushed to
//! neighbours, and a periodic anti-entropy exchange (digest, listing, pull) repairs whatever
//! was lost. Messages are `mesh_proto::gossip` control messages; the caller seals them on its
//! sessions and passes received ones to [`Gossip::handle`].
//!
//! Files: `store.rs` (the versioned record store with per-bucket digest hashes) and
//! `engine.rs` (push to neighbours: bodies to a few, haves to the rest, pulled when no push
//! brings them; anti-entropy by digest, listing and pull).
//!
//! This crate does not pick neighbours, open sessions, read clocks or sockets, or know what a
//! record body means: `mesh-core` does all of that and hands bytes and `now` in.
#![forbid(unsafe_code)]

pub mod engine;
pub mod store;

pub use engine::{Gossip, GossipConfig, GossipStats, NodeId, Validator};
pub use store::{Merge, Record, RecordKey, Store};
