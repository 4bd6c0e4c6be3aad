//! mesh's IP address management, sans-I/O.
//!
//! Today this crate holds the **node-local** half ([`local`]): a [`LocalPool`] hands pod
//! addresses out of the blocks this node owns, keyed by the CNI attachment
//! (`container_id`, `ifname`), never twice, never the network, gateway or broadcast address
//! of a block. Its state is a plain serde value ([`PoolState`]) that `meshd` writes to its
//! state directory; this crate reads no files, clocks or sockets.
//!
//! It does **not** decide which blocks a node owns: that is the cluster-wide block ownership
//! (gossiped, donation/reclaim, issue 3), which will live beside it (e.g. a `ring` or
//! `blocks` module) and hand [`LocalPool`] its blocks. It does not touch interfaces either;
//! `mesh-cni` does.
#![forbid(unsafe_code)]

pub mod local;

pub use local::{
    AllocateError, Allocated, Allocation, AttachmentKey, KeyError, LocalPool, PodRef, PoolState,
    RestoreReport,
};
