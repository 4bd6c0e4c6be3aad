//! Automatic IPAM in the simulator, over many seeds: nodes get blocks from the cluster's
//! address ring (node 0 founds it, every other node asks for a donation), through random
//! partitions, one-way blocks, lossy links, crashes, restarts and clock jumps.
//!
//! Checked every 100 ms of virtual time: **no block is in use by two nodes** (a block in use
//! is one a node hands pod addresses out of, so this is "no address is allocated twice"), and
//! no block is owned by two running nodes in their own views. After the faults heal: every
//! node has a block in use and every replica of the ring is the same.
//!
//! `MESH_SIM_SEEDS=N` runs N seeds, `MESH_SIM_SEED=S` replays seed S alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ipnet::Ipv4Net;
use mesh_sim::{Chaos, ChaosConfig, Fault, SeedGuard, Sim, SimConfig, Topology, seeds};
use std::collections::BTreeMap;
use std::time::Duration;

const SLICE: Duration = Duration::from_millis(100);

fn check_unique(sim: &Sim, seed: u64) {
    let mut active: BTreeMap<Ipv4Net, usize> = BTreeMap::new();
    let mut owned: BTreeMap<Ipv4Net, usize> = BTreeMap::new();
    for i in sim.up_nodes() {
        let node = sim.node(i).unwrap();
        for b in node.active_blocks() {
            if let Some(j) = active.insert(b, i) {
                panic!(
                    "seed {seed}: block {b} in use by nodes {j} and {i} at {:?}",
                    sim.elapsed()
                );
            }
        }
        let me = node.public_key();
        for (nets, owner) in node.ring_spans().unwrap_or_default() {
            if owner != Some(me) {
                continue;
            }
            for n in nets {
                for b in n.subnets(sim.addressing().block_prefix()).unwrap() {
                    if let Some(j) = owned.insert(b, i) {
                        panic!(
                            "seed {seed}: block {b} owned by nodes {j} and {i} in their own views at {:?}",
                            sim.elapsed()
                        );
                    }
                }
            }
        }
    }
}

/// A simulation with automatic IPAM.
fn auto_ipam(seed: u64) -> Sim {
    Sim::with_config(
        seed,
        SimConfig {
            auto_ipam: true,
            ..SimConfig::default()
        },
    )
}

fn run_checked(sim: &mut Sim, d: Duration, seed: u64) {
    let end = sim.elapsed() + d;
    while sim.elapsed() < end {
        sim.run_for(SLICE);
        check_unique(sim, seed);
    }
}

#[test]
fn no_block_is_ever_in_use_twice_and_everyone_gets_one() {
    for seed in seeds(8) {
        let _guard = SeedGuard::new(seed, "ipam under faults");
        let mut sim = auto_ipam(seed);
        let mut chaos = Chaos::with_config(seed, ChaosConfig::default());
        let n = 4 + chaos.rng().below(12);
        let topology = [Topology::Star, Topology::RandomEarlier][chaos.rng().below(2)];
        topology.build(&mut sim, n, chaos.rng());
        run_checked(&mut sim, Duration::from_secs(3), seed);
        // Random faults (no data packets: the ledger assumes fixed blocks).
        let faults_end = sim.elapsed() + Duration::from_secs(60 + chaos.rng().below(90) as u64);
        while sim.elapsed() < faults_end {
            let gap = Duration::from_millis(200 + chaos.rng().below(4000) as u64);
            run_checked(&mut sim, gap, seed);
            let f = chaos.next_fault(&sim);
            if !matches!(f, Fault::Traffic(_)) {
                chaos.apply(&mut sim, &f);
            }
            // Some nodes ask for more space, as a full pool would.
            if chaos.rng().chance(0.1) {
                let i = chaos.rng().below(n);
                let now = sim.now();
                if let Some(node) = sim.node_mut(i) {
                    node.need_block(now);
                }
                sim.touched(i);
            }
        }
        chaos.repair(&mut sim);
        run_checked(&mut sim, Duration::from_secs(60), seed);
        for i in 0..n {
            let node = sim.node(i).unwrap();
            assert!(
                !node.active_blocks().is_empty(),
                "seed {seed}: node {i} has no block after the heal"
            );
            assert_eq!(sim.node_stats(i).foreign_rings, 0, "seed {seed}");
        }
        let reference = sim.node(0).unwrap().ring_spans();
        for i in 1..n {
            assert_eq!(
                sim.node(i).unwrap().ring_spans(),
                reference,
                "seed {seed}: node {i}'s ring differs from node 0's"
            );
        }
    }
}

#[test]
fn two_clusters_founded_apart_refuse_to_merge() {
    let seed = seeds(1)[0];
    let _guard = SeedGuard::new(seed, "two founders");
    let mut sim = auto_ipam(seed);
    // 0 and 2 both found (no bootstrap); 1 joins 0, 3 joins 2; then 3 is told about 0.
    sim.add_node(mesh_sim::NodeSpec::bootstrap([]));
    sim.add_node(mesh_sim::NodeSpec::bootstrap([0]));
    sim.add_node(mesh_sim::NodeSpec::bootstrap([]));
    sim.add_node(mesh_sim::NodeSpec::bootstrap([2, 0]));
    // Each cluster hands out 10.32.0.0/24 (that is what founding twice means); what must not
    // happen is that they merge silently.
    sim.run_for(Duration::from_secs(30));
    let refused: u64 = (0..4).map(|i| sim.node_stats(i).foreign_rings).sum();
    assert!(refused > 0, "nobody noticed the other cluster");
}

/// The `ipam_partition` netns test, over many seeds: {0, 1} and {2, 3, 4} are cut apart, node
/// 2 (one block, full) asks for another during the cut and must get it soon after the heal
/// (node 0, the founder, is the only one with free blocks).
#[test]
fn a_node_that_asked_during_a_partition_gets_a_block_soon_after_the_heal() {
    for seed in seeds(16) {
        let _guard = SeedGuard::new(seed, "ask during a partition");
        let mut sim = auto_ipam(seed);
        sim.add_node(mesh_sim::NodeSpec::bootstrap([]));
        for _ in 1..5 {
            sim.add_node(mesh_sim::NodeSpec::bootstrap([0]));
        }
        let mut rng = mesh_sim::SimRng::new(seed, 7);
        while (0..5).any(|i| sim.node(i).unwrap().active_blocks().is_empty()) {
            assert!(
                sim.elapsed() < Duration::from_secs(10),
                "seed {seed}: not every node has a block 10 s after the start"
            );
            run_checked(&mut sim, SLICE, seed);
        }
        run_checked(
            &mut sim,
            Duration::from_millis(rng.below(2000) as u64),
            seed,
        );
        let cut = sim.partition(&[vec![0, 1], vec![2, 3, 4]]);
        run_checked(
            &mut sim,
            Duration::from_millis(rng.below(3000) as u64),
            seed,
        );
        // Node 1 asks too, and gets one from node 0 on its side of the cut.
        for i in [1, 2] {
            let now = sim.now();
            sim.node_mut(i).unwrap().need_block(now);
            sim.touched(i);
        }
        run_checked(
            &mut sim,
            Duration::from_millis(3000 + rng.below(10_000) as u64),
            seed,
        );
        assert_eq!(
            sim.node(2).unwrap().active_blocks().len(),
            1,
            "seed {seed}: node 2 got a block while cut off from every donor"
        );
        sim.heal(cut);
        let healed = sim.elapsed();
        while sim.node(2).unwrap().active_blocks().len() < 2 {
            assert!(
                sim.elapsed() - healed < Duration::from_secs(15),
                "seed {seed}: node 2 has no second block 15 s after the heal"
            );
            run_checked(&mut sim, SLICE, seed);
        }
    }
}
