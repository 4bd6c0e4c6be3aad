//! The route table: destination address -> owner of the longest matching block.
//!
//! Lookups cost one hash probe per distinct prefix length in the table (usually one: every
//! node's block has the cluster's block size), not one comparison per block.

use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Blocks of one prefix length, keyed by network address.
type BlocksOfLen<T> = HashMap<u32, (Ipv4Net, T)>;

/// Longest-prefix-match table from IPv4 blocks to an owner `T`.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    /// Prefix lengths present, longest first, each with its blocks keyed by network address.
    by_len: Vec<(u8, BlocksOfLen<T>)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self { by_len: Vec::new() }
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

impl<T: Clone> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `net -> owner`, unless a block that overlaps it is already in the table;
    /// then returns the overlapping block and leaves the table unchanged.
    pub fn insert(&mut self, net: Ipv4Net, owner: T) -> Result<(), Ipv4Net> {
        let net = net.trunc();
        if let Some(existing) = self.overlapping(net) {
            return Err(existing);
        }
        let len = net.prefix_len();
        let pos = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(pos) => pos,
            Err(pos) => {
                self.by_len.insert(pos, (len, HashMap::new()));
                pos
            }
        };
        self.by_len[pos]
            .1
            .insert(u32::from(net.network()), (net, owner));
        Ok(())
    }

    /// A block in the table that overlaps `net`, if any.
    pub fn overlapping(&self, net: Ipv4Net) -> Option<Ipv4Net> {
        for (len, blocks) in &self.by_len {
            if *len <= net.prefix_len() {
                // A shorter (or equal) block overlaps iff it contains net's network address.
                let key = u32::from(net.network()) & mask(*len);
                if let Some((b, _)) = blocks.get(&key) {
                    return Some(*b);
                }
            } else {
                // Longer blocks inside net: the lowest, so the answer does not depend on the
                // map's order.
                #[allow(clippy::disallowed_methods)] // order-free: the lowest
                let inside = blocks
                    .values()
                    .map(|(b, _)| *b)
                    .filter(|b| net.contains(b))
                    .min();
                if inside.is_some() {
                    return inside;
                }
            }
        }
        None
    }

    /// The owner of the longest block containing `addr`.
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<(&Ipv4Net, &T)> {
        let a = u32::from(addr);
        self.by_len.iter().find_map(|(len, blocks)| {
            blocks
                .get(&(a & mask(*len)))
                .map(|(net, owner)| (net, owner))
        })
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.by_len.iter().map(|(_, b)| b.len()).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every block and owner, longest prefixes first, the blocks of one length in no set order
    /// (sort them to show them, as `Node::routes` does).
    #[allow(clippy::disallowed_methods)] // order-free: the order is left to the caller
    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Net, &T)> {
        self.by_len
            .iter()
            .flat_map(|(_, blocks)| blocks.values().map(|(n, o)| (n, o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_and_misses_are_none() {
        let mut t = RouteTable::new();
        t.insert(net("10.32.1.0/24"), 'a').unwrap();
        t.insert(net("10.32.2.0/24"), 'b').unwrap();
        t.insert(net("10.40.0.0/16"), 'c').unwrap();
        t.insert(net("0.0.0.0/32"), 'z').unwrap();
        assert_eq!(
            t.lookup("10.32.1.77".parse().unwrap()).map(|x| *x.1),
            Some('a')
        );
        assert_eq!(
            t.lookup("10.32.2.0".parse().unwrap()).map(|x| *x.1),
            Some('b')
        );
        assert_eq!(
            t.lookup("10.40.255.1".parse().unwrap()).map(|x| *x.1),
            Some('c')
        );
        assert_eq!(t.lookup("10.32.3.1".parse().unwrap()), None);
        assert_eq!(t.len(), 4);
    }

    /// A shorter block over many longer ones is refused naming the lowest of them, whatever
    /// order the blocks came in (not the first the hash map happens to visit).
    #[test]
    fn a_refusal_names_the_lowest_overlapping_block() {
        for reversed in [false, true] {
            let mut t = RouteTable::new();
            let mut thirds: Vec<u8> = (1..=64).collect();
            if reversed {
                thirds.reverse();
            }
            for i in thirds {
                t.insert(net(&format!("10.32.{i}.0/24")), i).unwrap();
            }
            assert_eq!(t.insert(net("10.32.0.0/16"), 0), Err(net("10.32.1.0/24")));
            assert_eq!(
                t.overlapping(net("10.32.32.0/19")),
                Some(net("10.32.32.0/24"))
            );
        }
    }

    #[test]
    fn overlapping_blocks_are_refused_both_ways() {
        let mut t = RouteTable::new();
        t.insert(net("10.32.1.0/24"), 1).unwrap();
        assert_eq!(t.insert(net("10.32.0.0/16"), 2), Err(net("10.32.1.0/24")));
        assert_eq!(t.insert(net("10.32.1.128/25"), 3), Err(net("10.32.1.0/24")));
        assert_eq!(t.insert(net("10.32.1.0/24"), 4), Err(net("10.32.1.0/24")));
        assert!(t.insert(net("10.32.2.0/25"), 5).is_ok());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn default_route_block_matches_everything() {
        let mut t = RouteTable::new();
        t.insert(net("0.0.0.0/0"), 'd').unwrap();
        assert_eq!(
            t.lookup("1.2.3.4".parse().unwrap()).map(|x| *x.1),
            Some('d')
        );
    }
}
