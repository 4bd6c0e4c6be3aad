//! The deterministic N-node simulator of mesh.
//!
//! [`Sim`] runs N real [`mesh_core::Node`]s in one process on a virtual clock and an
//! in-memory underlay. The clock jumps straight to the next event (the earliest datagram
//! arrival or node timeout), so minutes of cluster life take milliseconds. The network
//! model ([`Network`]) gives each link a latency with seeded jitter and a loss probability,
//! and supports partitions, one-way blocks and clock jumps; nodes can crash (losing all
//! state but their static key and known peers, as meshd keeps them in its state directory)
//! and restart. Every random choice comes from one `u64` seed: the same seed gives the same
//! run, event for event ([`Sim::trace_hash`]), and a failing run prints its seed
//! ([`SeedGuard`]).
//!
//! That needs the nodes to be deterministic too, given their seed and inputs: a node must
//! never let a `HashMap`'s iteration order (random per process) decide the order of its
//! RNG draws or of its output (`Node::handle_timeout` visits peers in key order for this).
//! Gossip, topology and IPAM state must follow the same rule.
//!
//! After every step the data-path invariants of [`ledger`] are checked: a packet is
//! delivered only to the owner of its destination, at most once, and only if it was sent
//! by a node whose block holds its source. A node panicking fails the run (and prints the
//! seed). [`properties`] holds the convergence checks run once the faults are over, and
//! [`Chaos`] the random fault schedule. The property tests (`tests/properties.rs`) run a
//! CI-sized number of seeds (64 for the fault schedule); `MESH_SIM_SEEDS=200 cargo test
//! --release -p mesh-sim` runs 200 seeds of every test (how long both take:
//! `docs/performance.md`) and `MESH_SIM_SEED=17` replays one;
//! `MESH_SIM_LOG=mesh_core=debug,mesh_sim=info` added to a replay prints the nodes' log lines, each with the virtual time and the node (and the
//! sender of the datagram it handled). `sim-scale` (`cargo run --release -p mesh-sim --bin
//! sim-scale -- --nodes 1000 --topology random`) measures how gossip membership scales: the
//! virtual time until every node knows every other alive and routes its block after a cold
//! start, and until a late join is known everywhere; then, in the steady state, gossip and
//! UDP bytes per node per second, sessions and gossip neighbours per node; and the wall time
//! and peak memory of the run (`docs/performance.md` has its figures).
//!
//! # What is checked
//!
//! Nodes learn members by gossip from one bootstrap peer and make sessions on demand. After
//! all faults heal and a bounded settle time, every running node knows every other as an
//! alive member and routes its block ([`properties::check_membership`]), and a packet each
//! way between every pair is delivered exactly once ([`properties::check_exchange`] over
//! [`properties::all_pairs`]). `tests/membership.rs` checks convergence from a single
//! bootstrap peer ([`Topology::Star`], [`Topology::RandomEarlier`]), that nobody keeps a
//! session with everybody, death within the bound and life after a restart, and a late join
//! reaching every node; `tests/relay.rs` failover through a relay and back; `tests/ipam.rs`
//! that no block is ever in use by two nodes under faults.
//!
//! # What it does not do
//!
//! No sockets, threads or OS clock: the simulator never touches the network of the machine.
//! It does not model bandwidth or queueing (a link delays every datagram independently),
//! IPv6 underlays, NAT, or MTU; and it models only what a node does, not meshd's batching.
//!
//! Files: `sim.rs` (the nodes and the virtual clock), `network.rs` (the seeded underlay:
//! latency, jitter, loss, partitions, one-way blocks), `chaos.rs` (crashes, clock jumps, the
//! random fault schedule and bootstrap topologies), `ledger.rs` (the data-path invariants),
//! `properties.rs` (the convergence checks).
#![forbid(unsafe_code)]

mod addressing;
mod chaos;
pub mod ledger;
mod network;
pub mod properties;
mod rng;
mod seed;
mod sim;

pub use addressing::{Addressing, MAX_UNDERLAY_NODES, UNDERLAY_PORT};
pub use chaos::{Chaos, ChaosConfig, Fault, Topology};
pub use ledger::{Delivery, Ledger, PacketId, Violation};
pub use network::{Fate, Link, Loss, Network, PartitionId};
pub use rng::SimRng;
pub use seed::{LOG_ENV, SEED_ENV, SEEDS_ENV, SeedGuard, seeds};
pub use sim::{NodeSpec, NodeStats, Sim, SimConfig, Stats, TraceEvent};
