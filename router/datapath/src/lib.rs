//! The operating-system side of mesh's data path, on Linux.
//!
//! This crate is the only place in mesh that talks to the kernel about networking, and the only
//! crate allowed `unsafe` code (`setsockopt`, `getsockopt` and `setns` calls, each with a
//! SAFETY comment). It:
//!
//! - checks that meshd may create network devices ([`check_prerequisites`]), enables IP
//!   forwarding ([`enable_ip_forwarding`]) and enters a network namespace ([`enter_netns`])
//!   (`host_checks.rs`);
//! - binds the underlay UDP socket with large buffers ([`bind_udp`], `udp.rs`);
//! - through rtnetlink and tun-rs ([`HostNetwork`], `host.rs`), creates the `mesh0` bridge
//!   with the node's gateway address, opens the TUN device (with kernel offloads:
//!   `create_tun_offload`) and routes the cluster range into it;
//! - batches: the batched UDP socket ([`BatchUdp`], `batch.rs`: recvmmsg with UDP GRO,
//!   sendmsg with UDP GSO, through quinn-udp) and the receive-side TCP coalescer
//!   ([`Coalescer`], `gro.rs`, sans-I/O) that turns decrypted segments into TUN super-packets
//!   with a virtio GSO header;
//! - for `mesh-cni`, attaches pods: a veth pair from a pod's namespace to the bridge with the
//!   pod's address, MTU and routes ([`HostNetwork::attach_pod`], [`PodSpec`], `pod.rs`);
//! - keeps plaintext from the underlay off the pods: meshd's own nftables table `inet mesh`
//!   ([`install_filter`], `filter.rs`: the rule set as a pure function, replaced in one `nft`
//!   transaction through the `nftables` crate, listed back, removed).
//!
//! It does **not** move packets, seal them, decide where they go, or allocate addresses: the
//! daemon reads and writes the TUN device and the UDP socket it gets from here, and the sans-I/O
//! crates decide. It does not decide a pod's address or routes (the CNI plugin and meshd do).
//! Of nftables it touches only the table `inet mesh`, and never iptables.
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
