//! Properties of mesh in the simulator, each over many seeds: after random partitions,
//! one-way blocks, lossy links, crashes, restarts and clock jumps, every running node knows
//! every other alive and routes its block, and a packet each way between every pair arrives
//! exactly once; direct bootstrap converges; the same seed gives the same run; no packet is
//! ever delivered to a non-owner, twice, or from a node that does not own its source.
//!
//! `cargo test -p mesh-sim` runs a CI-sized number of seeds; `MESH_SIM_SEEDS=N` runs N
//! (use `--release` for hundreds), `MESH_SIM_SEED=S` replays seed S alone, and
//! `MESH_SIM_LOG=mesh_core=debug,mesh_sim=info` prints its nodes' logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mesh_core::{DropReason, Encap};
use mesh_sim::properties::{all_pairs, check_bootstrap_sessions, check_exchange, check_membership};
use mesh_sim::{
    Chaos, ChaosConfig, Link, NodeSpec, SeedGuard, Sim, SimConfig, SimRng, Topology, Violation,
    seeds,
};
use std::time::Duration;

/// Virtual time given to the mesh after the last fault heals: the longest handshake retry
/// backoff (30 s plus jitter) twice over.
const SETTLE: Duration = Duration::from_secs(60);

/// Time a packet between two members gets to arrive: sessions are made on demand, and a
/// session whose last handshake message was lost (XX's third) is found silent and redone
/// after 15 s.
const EXCHANGE_SETTLE: Duration = Duration::from_secs(30);

/// Random size and topology, a few minutes of random faults, repair, settle.
fn chaotic_run(seed: u64, chaos_config: ChaosConfig, record: bool) -> (Sim, Chaos) {
    let mut sim = Sim::with_config(
        seed,
        SimConfig {
            record_trace: record,
            ..SimConfig::default()
        },
    );
    let mut chaos = Chaos::with_config(seed, chaos_config);
    let n = 5 + chaos.rng().below(8);
    let topology = [Topology::Star, Topology::RandomEarlier, Topology::Full][chaos.rng().below(3)];
    topology.build(&mut sim, n, chaos.rng());
    sim.run_for(Duration::from_secs(5));
    let secs = 60 + chaos.rng().below(120) as u64;
    chaos.run(&mut sim, Duration::from_secs(secs));
    chaos.repair(&mut sim);
    sim.run_for(SETTLE);
    (sim, chaos)
}

fn describe(chaos: &Chaos) -> String {
    chaos
        .applied()
        .iter()
        .filter(|(_, f)| !matches!(f, mesh_sim::Fault::Traffic(_)))
        .map(|(t, f)| format!("{:>8.3}s {f:?}", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[test]
fn after_random_faults_heal_everyone_knows_everyone_and_packets_arrive_once() {
    for seed in seeds(64) {
        let _guard = SeedGuard::new(seed, "healing after random faults");
        let (mut sim, chaos) = chaotic_run(seed, ChaosConfig::default(), false);
        if let Err(e) = check_membership(&sim) {
            panic!("seed {seed}: {e}\nfaults:\n  {}", describe(&chaos));
        }
        let pairs = all_pairs(&sim);
        if let Err(e) = check_exchange(&mut sim, &pairs, EXCHANGE_SETTLE) {
            panic!("seed {seed}: {e}\nfaults:\n  {}", describe(&chaos));
        }
        for i in 0..sim.len() {
            assert_eq!(sim.node_stats(i).block_conflicts, 0, "seed {seed} node {i}");
        }
        assert!(sim.violations().is_empty());
    }
}

#[test]
fn with_every_node_bootstrapping_from_every_earlier_one_everyone_routes_everyone() {
    for seed in seeds(32) {
        let _guard = SeedGuard::new(seed, "full mesh from direct bootstrap");
        let mut sim = Sim::new(seed);
        let mut rng = SimRng::new(seed, 100);
        let n = 5 + rng.below(8);
        Topology::Full.build(&mut sim, n, &mut rng);
        // Slow, jittery and slightly lossy links, no partition: retries must get through. A
        // lost message costs a whole retry (1 s doubling to 30 s) and XX needs three, so
        // the bound is generous; at 20 % loss a pair can take over a minute.
        for a in 0..n {
            for b in a + 1..n {
                let latency = rng.duration(Duration::from_micros(200), Duration::from_millis(40));
                sim.set_link(
                    a,
                    b,
                    Link {
                        latency,
                        jitter: latency / 4,
                        loss: rng.unit() * 0.05,
                    },
                );
            }
        }
        // Every node routes every block (learned by gossip or from the peer itself).
        let limit = 2 * SETTLE;
        let took = sim.run_until(limit, Duration::from_millis(250), |s| {
            (0..s.len()).all(|i| s.node(i).is_some_and(|n| n.route_count() == s.len()))
        });
        assert!(
            took.is_some(),
            "seed {seed}: routes incomplete after {limit:?}"
        );
        check_membership(&sim).unwrap();
        // Exactly once needs a lossless network.
        sim.heal_network();
        let pairs = all_pairs(&sim);
        check_exchange(&mut sim, &pairs, EXCHANGE_SETTLE).unwrap();
    }
}

/// Chaos without the transitions that make several of a node's peers due at one instant
/// (crash/restart, clock jumps): deterministic whatever order the node keeps its peers in.
fn network_faults_only() -> ChaosConfig {
    ChaosConfig {
        crashes: false,
        clock_jumps: false,
        ..ChaosConfig::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_run_under_network_faults() {
    for seed in seeds(16) {
        let _guard = SeedGuard::new(seed, "determinism under network faults");
        let (a, _) = chaotic_run(seed, network_faults_only(), true);
        let (b, _) = chaotic_run(seed, network_faults_only(), true);
        assert_same_trace(seed, &a, &b);
    }
    let (a, _) = chaotic_run(1, network_faults_only(), false);
    let (b, _) = chaotic_run(2, network_faults_only(), false);
    assert_ne!(
        a.trace_hash(),
        b.trace_hash(),
        "different seeds, different runs"
    );
}

/// Needs `Node::handle_timeout` to visit peers in key order rather than `HashMap` order:
/// after a restart or a clock jump it draws from its RNG for several peers at once.
#[test]
fn the_same_seed_gives_the_same_run_with_crashes_and_clock_jumps() {
    for seed in seeds(16) {
        let _guard = SeedGuard::new(seed, "determinism with crashes and clock jumps");
        let (a, _) = chaotic_run(seed, ChaosConfig::default(), true);
        let (b, _) = chaotic_run(seed, ChaosConfig::default(), true);
        assert_same_trace(seed, &a, &b);
    }
}

fn assert_same_trace(seed: u64, a: &Sim, b: &Sim) {
    if let Some(i) = a.trace().iter().zip(b.trace()).position(|(x, y)| x != y) {
        panic!(
            "seed {seed}: runs diverge at event {i}:\n  {:?}\n  {:?}",
            a.trace()[i],
            b.trace()[i]
        );
    }
    assert_eq!(a.trace().len(), b.trace().len(), "seed {seed}");
    assert_eq!(a.trace_hash(), b.trace_hash(), "seed {seed}");
    assert!(!a.trace().is_empty());
}

#[test]
fn a_member_announcing_another_nodes_block_never_gets_its_traffic() {
    for seed in seeds(4) {
        let _guard = SeedGuard::new(seed, "block claimed by another member");
        let mut sim = Sim::new(seed);
        let victim = sim.block(1);
        sim.add_node(NodeSpec::bootstrap([]));
        sim.add_node(NodeSpec::bootstrap([0]));
        // Node 2 claims node 1's block too; it comes late, so node 1 owns it first.
        sim.add_node(NodeSpec {
            bootstrap: vec![0],
            extra_blocks: vec![victim],
        });
        sim.crash(2);
        sim.run_for(Duration::from_secs(3));
        sim.restart(2);
        sim.run_for(Duration::from_secs(400));
        // Traffic for node 1's block goes to node 1 (the ledger checks the owner on every
        // delivery), and node 2 cannot speak for it either.
        for _ in 0..10 {
            let (id, r) = sim.send_packet(0, 1, 32);
            assert!(matches!(r, Some(Encap::Send { .. })), "{r:?}");
            sim.run_for(Duration::from_millis(100));
            assert_eq!(sim.ledger().deliveries_of(id), 1);
        }
        assert!(sim.node_stats(0).block_conflicts > 0);
        let before = sim
            .node(0)
            .unwrap()
            .total_drops(DropReason::SourceNotAllowed);
        let spoof = mesh_sim::ledger::sim_packet(
            sim.addressing().pod(1, 3).unwrap(),
            sim.addressing().pod(0, 3).unwrap(),
            mesh_sim::PacketId(u64::MAX),
            0,
        );
        sim.inject(2, &spoof);
        sim.run_for(Duration::from_millis(100));
        let after = sim
            .node(0)
            .unwrap()
            .total_drops(DropReason::SourceNotAllowed);
        assert_eq!(after, before + 1);
        assert!(sim.violations().is_empty());
    }
}

/// Today a block belongs to whoever announces it first (cluster-wide ownership comes with
/// IPAM): a member that claims an absent node's block gets its traffic. The reference model
/// knows better, and the owner invariant says so.
fn a_lying_member_with_the_owner_absent(panic_on_violation: bool) -> Sim {
    let mut sim = Sim::with_config(
        99,
        SimConfig {
            panic_on_violation,
            ..SimConfig::default()
        },
    );
    let victim = sim.block(1);
    sim.add_node(NodeSpec::bootstrap([]));
    sim.add_node(NodeSpec::bootstrap([0]));
    sim.add_node(NodeSpec {
        bootstrap: vec![0],
        extra_blocks: vec![victim],
    });
    sim.crash(1);
    sim.run_for(Duration::from_secs(3));
    sim.send_packet(0, 1, 10);
    sim.run_for(Duration::from_secs(1));
    sim
}

#[test]
fn the_owner_invariant_catches_a_packet_delivered_to_a_node_that_does_not_own_it() {
    let sim = a_lying_member_with_the_owner_absent(false);
    assert!(
        matches!(
            sim.violations(),
            [Violation::WrongOwner {
                node: 2,
                owner: Some(1),
                ..
            }]
        ),
        "{:?}",
        sim.violations()
    );
    let panicked = std::panic::catch_unwind(|| a_lying_member_with_the_owner_absent(true))
        .expect_err("a violation panics by default");
    let msg = panicked
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(msg.contains("seed 99"), "{msg}");
    assert!(
        msg.contains("node 2 delivered a packet for 10.32.1.21, which belongs to node 1"),
        "{msg}"
    );
}

#[test]
fn a_one_way_block_keeps_the_session_down_until_lifted() {
    let _g = SeedGuard::new(7, "one-way block");
    let mut sim = Sim::new(7);
    sim.add_node(NodeSpec::bootstrap([]));
    sim.add_node(NodeSpec::bootstrap([0]));
    sim.block_one_way(0, 1);
    sim.run_for(Duration::from_secs(30));
    assert!(!sim.established(1, 0));
    assert!(!sim.established(0, 1));
    sim.unblock_one_way(0, 1);
    sim.run_for(SETTLE);
    check_bootstrap_sessions(&sim).unwrap();
    let v: &[Violation] = sim.violations();
    assert!(v.is_empty());
}
