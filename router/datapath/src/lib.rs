//! The operating-system side of mesh's data path, on Linux.
//!
//! This crate is the only place in mesh that talks to the kernel about networking, and the only
//! crate allowed `unsafe` code (a few `setsockopt`/`setns` calls). It:
//!
//! - checks that meshd may create network devices ([`check_prerequisites`]);
//! - binds the underlay UDP socket ([`bind_udp`]) and enables IP forwarding
//!   ([`enable_ip_forwarding`]);
//! - through rtnetlink ([`HostNetwork`]), creates the `mesh0` bridge with the node's gateway
//!   address, opens the TUN device (tun-rs) and routes the cluster range into it.
//!
//! - for `mesh-cni`, attaches pods: a veth pair from a pod's namespace to the bridge with the
//!   pod's address, MTU and routes ([`HostNetwork::attach_pod`], [`PodSpec`]).
//!
//! It does **not** move packets, seal them, decide where they go, or allocate addresses: the
//! daemon reads and writes the TUN device and the UDP socket it gets from here, and the sans-I/O
//! crates decide. It does not decide a pod's address or routes (the CNI plugin and meshd do).
//! Of nftables it touches only meshd's own table, `inet mesh` ([`install_filter`]: the filter
//! that keeps plaintext from the underlay off the pods), and never iptables. Batching and offloads live here too: the batched UDP socket
//! ([`BatchUdp`]: recvmmsg/GRO, sendmsg/GSO) and the receive-side TCP coalescer
//! ([`Coalescer`]) that hands the TUN device super-packets.
//!
//! Everything acts on the network namespace of the calling thread. The bridge outlives meshd;
//! the TUN device is not persistent, so when meshd exits the kernel removes it and its routes.
//! Every setup step is idempotent, so a restarted meshd re-uses what it finds.
#![allow(unsafe_code)]

mod batch;
mod error;
mod filter;
mod gro;
mod host;
mod host_checks;
mod pod;
mod udp;

pub use batch::{BATCH_SIZE, BatchUdp, RecvMeta};
pub use error::DatapathError;
pub use filter::{
    COUNTER_SPOOFED_SOURCE, COUNTER_TO_LOCAL_PODS, COUNTER_TO_REMOTE_PODS, COUNTERS, CounterValue,
    FILTER_FAMILY, FILTER_TABLE, FilterSpec, InstalledFilter, filter_ruleset, install_filter,
    read_filter, remove_filter,
};
pub use gro::{Coalescer, VNET_HDR_LEN};
pub use host::HostNetwork;
pub use host_checks::{check_prerequisites, enable_ip_forwarding, enter_netns};
pub use pod::{LinkSummary, PodAttachment, PodSpec, RouteSummary};
pub use udp::{bind_udp, getsockopt_int};
