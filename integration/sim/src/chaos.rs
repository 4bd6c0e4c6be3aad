//! Random transitions: bootstrap topologies, and a fault schedule (partitions, heals,
//! one-way blocks, lossy or slow links, crashes, restarts, clock jumps, traffic) drawn
//! from the run's seed on its own RNG stream.

use crate::network::{Link, PartitionId};
use crate::rng::SimRng;
use crate::sim::{NodeSpec, Sim};
use std::time::Duration;

/// RNG stream of the fault schedule.
const STREAM_CHAOS: u64 = 3;

/// Whom node `i` is given as `--peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Everyone bootstraps from node 0.
    Star,
    /// Node `i` bootstraps from a random earlier node, or from node 0.
    RandomEarlier,
    /// Node `i` bootstraps from every earlier node: the full mesh today's design promises.
    Full,
}

impl Topology {
    /// Node `i`'s bootstrap peers.
    pub fn bootstrap(self, i: usize, rng: &mut SimRng) -> Vec<usize> {
        match (self, i) {
            (_, 0) => Vec::new(),
            (Self::Star, _) => vec![0],
            (Self::RandomEarlier, _) => {
                if rng.chance(0.25) {
                    vec![0]
                } else {
                    vec![rng.below(i)]
                }
            }
            (Self::Full, _) => (0..i).collect(),
        }
    }

    /// Adds `n` nodes bootstrapped this way.
    pub fn build(self, sim: &mut Sim, n: usize, rng: &mut SimRng) {
        for _ in 0..n {
            let i = sim.len();
            sim.add_node(NodeSpec::bootstrap(self.bootstrap(i, rng)));
        }
    }
}

/// One random transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Cut the network into these sides.
    Partition(Vec<Vec<usize>>),
    /// Heal the oldest partition.
    Heal,
    /// Drop `a → b`.
    Block(usize, usize),
    /// Lift a block `a → b`.
    Unblock(usize, usize),
    /// Change the link between `a` and `b`.
    Link(usize, usize, Link),
    /// Crash a node.
    Crash(usize),
    /// Restart a crashed node.
    Restart(usize),
    /// Every clock leaps forward.
    ClockJump(Duration),
    /// Send this many packets between random pairs of running nodes.
    Traffic(usize),
}

/// Bounds of the fault schedule.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Mean virtual time between transitions (exponentially distributed gaps).
    pub mean_gap: Duration,
    /// Largest clock jump.
    pub max_jump: Duration,
    /// Highest loss probability of a degraded link.
    pub max_loss: f64,
    /// Highest latency of a degraded link.
    pub max_latency: Duration,
    /// At most this share of the nodes is down at once.
    pub max_down: f64,
    /// Whether nodes crash and restart.
    pub crashes: bool,
    /// Whether clocks jump.
    pub clock_jumps: bool,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            mean_gap: Duration::from_secs(4),
            max_jump: Duration::from_secs(300),
            max_loss: 0.3,
            max_latency: Duration::from_millis(80),
            max_down: 0.5,
            crashes: true,
            clock_jumps: true,
        }
    }
}

/// A seeded fault schedule. See the module docs.
#[derive(Debug)]
pub struct Chaos {
    rng: SimRng,
    config: ChaosConfig,
    partitions: Vec<PartitionId>,
    applied: Vec<(Duration, Fault)>,
}

impl Chaos {
    /// The schedule of `seed` with default bounds.
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, ChaosConfig::default())
    }

    /// The schedule of `seed`.
    pub fn with_config(seed: u64, config: ChaosConfig) -> Self {
        Self {
            rng: SimRng::new(seed, STREAM_CHAOS),
            config,
            partitions: Vec::new(),
            applied: Vec::new(),
        }
    }

    /// The schedule's own RNG (for a test's other random choices).
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// Every transition applied so far, with its virtual time.
    pub fn applied(&self) -> &[(Duration, Fault)] {
        &self.applied
    }

    /// Draws the next transition for the current state of `sim`.
    pub fn next_fault(&mut self, sim: &Sim) -> Fault {
        let n = sim.len();
        let up = sim.up_nodes();
        let down: Vec<usize> = (0..n).filter(|&i| !sim.is_up(i)).collect();
        loop {
            let roll = self.rng.below(100);
            let f = match roll {
                0..15 if n >= 2 => {
                    let k = 2 + self.rng.below(2);
                    let mut sides = vec![Vec::new(); k];
                    for i in 0..n {
                        let s = self.rng.below(k);
                        sides[s].push(i);
                    }
                    Fault::Partition(sides)
                }
                15..28 if !self.partitions.is_empty() => Fault::Heal,
                28..36 if n >= 2 => {
                    let a = self.rng.below(n);
                    let b = (a + 1 + self.rng.below(n - 1)) % n;
                    Fault::Block(a, b)
                }
                36..44 => match self.rng.pick(&sim.network().blocks()) {
                    Some((a, b)) => Fault::Unblock(a, b),
                    None => continue,
                },
                44..52 if n >= 2 => {
                    let a = self.rng.below(n);
                    let b = (a + 1 + self.rng.below(n - 1)) % n;
                    let latency = self
                        .rng
                        .duration(Duration::from_micros(100), self.config.max_latency);
                    let jitter = self.rng.duration(Duration::ZERO, latency / 2);
                    let loss = self.rng.unit() * self.config.max_loss;
                    Fault::Link(
                        a,
                        b,
                        Link {
                            latency,
                            jitter,
                            loss,
                        },
                    )
                }
                52..61
                    if self.config.crashes
                        && (down.len() + 1) as f64 <= self.config.max_down * n as f64 =>
                {
                    match self.rng.pick(&up) {
                        Some(i) => Fault::Crash(i),
                        None => continue,
                    }
                }
                61..72 => match self.rng.pick(&down) {
                    Some(i) => Fault::Restart(i),
                    None => continue,
                },
                72..76 if self.config.clock_jumps => Fault::ClockJump(
                    self.rng
                        .duration(Duration::from_secs(1), self.config.max_jump),
                ),
                76..100 => Fault::Traffic(1 + self.rng.below(2 * n.max(1))),
                _ => continue,
            };
            return f;
        }
    }

    /// Applies one transition.
    pub fn apply(&mut self, sim: &mut Sim, fault: &Fault) {
        match fault {
            Fault::Partition(sides) => {
                let id = sim.partition(sides);
                self.partitions.push(id);
            }
            Fault::Heal => {
                if !self.partitions.is_empty() {
                    let id = self.partitions.remove(0);
                    sim.heal(id);
                }
            }
            Fault::Block(a, b) => sim.block_one_way(*a, *b),
            Fault::Unblock(a, b) => sim.unblock_one_way(*a, *b),
            Fault::Link(a, b, link) => sim.set_link(*a, *b, *link),
            Fault::Crash(i) => {
                sim.crash(*i);
            }
            Fault::Restart(i) => {
                sim.restart(*i);
            }
            Fault::ClockJump(by) => sim.jump_clock(*by),
            Fault::Traffic(count) => {
                let up = sim.up_nodes();
                if up.len() >= 2 {
                    for _ in 0..*count {
                        let a = up[self.rng.below(up.len())];
                        let b = up[self.rng.below(up.len())];
                        if a != b {
                            let filler = self.rng.below(1200);
                            sim.send_packet(a, b, filler);
                        }
                    }
                }
            }
        }
        self.applied.push((sim.elapsed(), fault.clone()));
    }

    /// Runs `sim` for `duration` of virtual time with random transitions at random gaps.
    pub fn run(&mut self, sim: &mut Sim, duration: Duration) {
        let end = sim.elapsed() + duration;
        loop {
            // Exponential gaps: -ln(U) * mean.
            let u = self.rng.unit().max(1e-9);
            let gap = self.config.mean_gap.mul_f64(-u.ln()).min(duration);
            let at = sim.elapsed() + gap;
            if at >= end {
                sim.run_for(end.saturating_sub(sim.elapsed()));
                return;
            }
            sim.run_for(gap);
            let f = self.next_fault(sim);
            self.apply(sim, &f);
        }
    }

    /// Ends every fault: heals the network and restarts every crashed node.
    pub fn repair(&mut self, sim: &mut Sim) {
        self.partitions.clear();
        sim.heal_network();
        for i in 0..sim.len() {
            sim.restart(i);
        }
    }
}
