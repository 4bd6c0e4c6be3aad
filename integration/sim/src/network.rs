//! The underlay model: what happens to a datagram between two nodes.
//!
//! Every link has a latency (base plus a seeded uniform jitter, so datagrams on one link can
//! overtake each other, as UDP allows) and a loss probability. On top of the links:
//! partitions (sets of nodes that cannot reach each other; several may be active at once)
//! and one-way blocks (`a → b` dropped while `b → a` passes). Whether the receiving node is
//! up is the simulator's business, not this model's.

use crate::rng::SimRng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Delay and loss of one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Base one-way latency.
    pub latency: Duration,
    /// A uniform extra delay in `[0, jitter]` is added per datagram.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a datagram is lost.
    pub loss: f64,
}

impl Default for Link {
    /// A data-centre link: 1 ms ± 0.5 ms, no loss.
    fn default() -> Self {
        Self {
            latency: Duration::from_micros(750),
            jitter: Duration::from_micros(500),
            loss: 0.0,
        }
    }
}

/// Why a datagram did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loss {
    /// Sender and receiver are on different sides of a partition.
    Partition,
    /// The direction sender → receiver is blocked.
    OneWayBlock,
    /// The link's loss probability struck.
    Random,
    /// The receiver was down when the datagram arrived.
    NodeDown,
    /// The destination address is no node's.
    UnknownAddress,
}

/// What the network does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    /// It arrives after this delay.
    Arrives(Duration),
    /// It is lost.
    Lost(Loss),
}

/// Handle of an active partition, to heal it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId(u64);

/// Links, partitions and blocks between nodes (by index).
#[derive(Debug, Clone, Default)]
pub struct Network {
    default_link: Link,
    links: HashMap<(usize, usize), Link>,
    /// Per active partition, the side of each node (nodes not listed are on side 0).
    partitions: BTreeMap<PartitionId, HashMap<usize, u32>>,
    next_partition: u64,
    blocked: HashSet<(usize, usize)>,
}

impl Network {
    /// A network where every link is `default_link`.
    pub fn new(default_link: Link) -> Self {
        Self {
            default_link,
            ..Self::default()
        }
    }

    /// The link every pair without its own setting uses.
    pub fn default_link(&self) -> Link {
        self.default_link
    }

    /// Sets the link used for pairs without their own setting.
    pub fn set_default_link(&mut self, link: Link) {
        self.default_link = link;
    }

    /// The link `from → to`.
    pub fn link(&self, from: usize, to: usize) -> Link {
        self.links
            .get(&(from, to))
            .copied()
            .unwrap_or(self.default_link)
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_link(&mut self, a: usize, b: usize, link: Link) {
        self.links.insert((a, b), link);
        self.links.insert((b, a), link);
    }

    /// Every link back to the default.
    pub fn reset_links(&mut self) {
        self.links.clear();
    }

    /// Cuts the network into `sides`: nodes in different sets cannot reach each other; nodes
    /// in no set form one more side together. Returns a handle for [`Network::heal`].
    pub fn partition(&mut self, sides: &[Vec<usize>]) -> PartitionId {
        let id = PartitionId(self.next_partition);
        self.next_partition += 1;
        let mut side_of = HashMap::new();
        for (s, nodes) in sides.iter().enumerate() {
            for &n in nodes {
                side_of.insert(n, s as u32 + 1);
            }
        }
        self.partitions.insert(id, side_of);
        id
    }

    /// Removes one partition (other partitions stay).
    pub fn heal(&mut self, id: PartitionId) {
        self.partitions.remove(&id);
    }

    /// The partitions in force, oldest first.
    pub fn partitions(&self) -> Vec<PartitionId> {
        self.partitions.keys().copied().collect()
    }

    /// Drops every datagram `from → to` (the other direction is untouched).
    pub fn block(&mut self, from: usize, to: usize) {
        self.blocked.insert((from, to));
    }

    /// Lifts a one-way block.
    pub fn unblock(&mut self, from: usize, to: usize) {
        self.blocked.remove(&(from, to));
    }

    /// The one-way blocks in force, sorted.
    pub fn blocks(&self) -> Vec<(usize, usize)> {
        let mut v: Vec<_> = self.blocked.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Heals every partition, lifts every block and resets every link to the default.
    pub fn heal_all(&mut self) {
        self.partitions.clear();
        self.blocked.clear();
        self.links.clear();
    }

    /// Whether partitions and blocks let `from → to` through (loss aside).
    pub fn reachable(&self, from: usize, to: usize) -> Result<(), Loss> {
        if from == to {
            return Ok(());
        }
        for sides in self.partitions.values() {
            let side = |n: usize| sides.get(&n).copied().unwrap_or(0);
            if side(from) != side(to) {
                return Err(Loss::Partition);
            }
        }
        if self.blocked.contains(&(from, to)) {
            return Err(Loss::OneWayBlock);
        }
        Ok(())
    }

    /// Decides one datagram's fate. Draws exactly two values from `rng` whatever the
    /// outcome, so a change in one link's state does not shift every later draw.
    pub fn fate(&self, from: usize, to: usize, rng: &mut SimRng) -> Fate {
        let loss_roll = rng.unit();
        let link = self.link(from, to);
        let delay = rng.duration(link.latency, link.latency + link.jitter);
        if let Err(why) = self.reachable(from, to) {
            return Fate::Lost(why);
        }
        if loss_roll < link.loss {
            return Fate::Lost(Loss::Random);
        }
        Fate::Arrives(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_across_sides_and_heal_one_by_one() {
        let mut net = Network::default();
        let p = net.partition(&[vec![0, 1], vec![2]]);
        assert_eq!(net.reachable(0, 1), Ok(()));
        assert_eq!(net.reachable(0, 2), Err(Loss::Partition));
        assert_eq!(
            net.reachable(3, 2),
            Err(Loss::Partition),
            "unlisted nodes are a side"
        );
        assert_eq!(net.reachable(3, 0), Err(Loss::Partition));
        assert_eq!(net.reachable(3, 4), Ok(()));
        let q = net.partition(&[vec![1]]);
        assert_eq!(net.reachable(0, 1), Err(Loss::Partition));
        net.heal(p);
        assert_eq!(net.reachable(0, 2), Ok(()));
        assert_eq!(net.reachable(0, 1), Err(Loss::Partition));
        net.heal(q);
        assert_eq!(net.reachable(0, 1), Ok(()));
    }

    #[test]
    fn one_way_blocks_are_one_way() {
        let mut net = Network::default();
        net.block(0, 1);
        assert_eq!(net.reachable(0, 1), Err(Loss::OneWayBlock));
        assert_eq!(net.reachable(1, 0), Ok(()));
        net.unblock(0, 1);
        assert_eq!(net.reachable(0, 1), Ok(()));
    }

    #[test]
    fn latency_stays_within_the_link_and_loss_strikes_at_its_rate() {
        let mut net = Network::default();
        let link = Link {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            loss: 0.25,
        };
        net.set_link(0, 1, link);
        let mut rng = SimRng::new(3, 0);
        let mut lost = 0;
        for _ in 0..10_000 {
            match net.fate(1, 0, &mut rng) {
                Fate::Arrives(d) => {
                    assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(15));
                }
                Fate::Lost(why) => {
                    assert_eq!(why, Loss::Random);
                    lost += 1;
                }
            }
        }
        assert!((2_000..3_000).contains(&lost), "{lost}");
        assert_eq!(net.link(0, 2), Link::default());
        net.heal_all();
        assert_eq!(net.link(0, 1), Link::default());
    }
}
