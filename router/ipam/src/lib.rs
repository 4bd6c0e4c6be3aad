//! mesh's IP address management, sans-I/O, in two halves.
//!
//! - **Which blocks a node owns** ([`ring`]): the cluster range (default 10.32.0.0/12) is cut
//!   into blocks (default /24), and every node holds a replica, a [`Ring`], of who owns
//!   which. Ownership is created once, by the one node that founds the cluster, and then
//!   moves only by donation from the owner or by an explicit reclaim of a node declared dead;
//!   no block is ever owned by two live nodes. The ring's [`Entry`] records are what gossip
//!   carries (a fixed 71-byte encoding, mergeable in any order); its [`RingState`] is what the
//!   state directory keeps. See `docs/ipam.md`.
//! - **Which address a pod gets** ([`local`]): a [`LocalPool`] hands pod addresses out of the
//!   blocks this node owns, keyed by the CNI attachment (`container_id`, `ifname`), never
//!   twice, never the network, gateway or broadcast address of a block. Its state is a plain
//!   serde value ([`PoolState`]).
//!
//! This crate reads no files, clocks, sockets or RNG: `meshd` persists both states, carries
//! entries between nodes, and passes in what is needed (node keys, a founder's nonce, which
//! blocks have addresses in use). It does not touch interfaces either; `mesh-cni` does.
#![forbid(unsafe_code)]

pub mod local;
pub mod ring;

pub use local::{
    AllocateError, Allocated, Allocation, AttachmentKey, KeyError, LocalPool, PodRef, PoolState,
    RestoreReport,
};
pub use ring::{
    DecodeError, DonateError, ENTRY_LEN, Entry, FoundError, Geometry, GeometryError, MergeError,
    MergeOutcome, NodeId, OwnerChange, ReclaimError, Ring, RingId, RingState, Span, StateError,
    Want,
};
