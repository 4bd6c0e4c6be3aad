//! Who owns what in a simulated cluster: each node's underlay address (198.18.0.0/15, the
//! benchmarking range, as in the namespace tests) and its block of pod addresses. This is
//! the reference the invariants compare the nodes' forwarding against.

use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, SocketAddr};

/// UDP port every simulated node listens on.
pub const UNDERLAY_PORT: u16 = 6788;
/// First underlay address: node `i` is at `UNDERLAY_BASE + 1 + i`.
const UNDERLAY_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Underlay addresses available in 198.18.0.0/15 (network and broadcast left out).
pub const MAX_UNDERLAY_NODES: usize = (1 << 17) - 2;

/// Node `i`'s block is the `i`-th block of `block_prefix` in `range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    range: Ipv4Net,
    block_prefix: u8,
}

impl Addressing {
    /// Blocks of `/block_prefix` carved from `range` in order. `None` when the prefix is
    /// shorter than the range's or leaves fewer than 4 addresses per block.
    pub fn new(range: Ipv4Net, block_prefix: u8) -> Option<Self> {
        (block_prefix >= range.prefix_len() && block_prefix <= 30).then_some(Self {
            range: range.trunc(),
            block_prefix,
        })
    }

    /// The cluster range.
    pub fn range(&self) -> Ipv4Net {
        self.range
    }

    /// Prefix length of a block.
    pub fn block_prefix(&self) -> u8 {
        self.block_prefix
    }

    /// How many nodes can get a block.
    pub fn capacity(&self) -> usize {
        (1usize << (self.block_prefix - self.range.prefix_len())).min(MAX_UNDERLAY_NODES)
    }

    fn block_size(&self) -> u32 {
        1u32 << (32 - self.block_prefix)
    }

    /// Node `i`'s block; `None` beyond [`Addressing::capacity`].
    pub fn block(&self, i: usize) -> Option<Ipv4Net> {
        if i >= self.capacity() {
            return None;
        }
        let base = u32::from(self.range.network()) + i as u32 * self.block_size();
        Ipv4Net::new(Ipv4Addr::from(base), self.block_prefix).ok()
    }

    /// Index of the node whose block holds `ip` (whether or not that node exists).
    pub fn owner(&self, ip: Ipv4Addr) -> Option<usize> {
        if !self.range.contains(&ip) {
            return None;
        }
        let off = u32::from(ip) - u32::from(self.range.network());
        Some((off / self.block_size()) as usize)
    }

    /// A pod address in node `i`'s block: `host` is taken modulo the usable hosts.
    pub fn pod(&self, i: usize, host: u32) -> Option<Ipv4Addr> {
        let block = self.block(i)?;
        let usable = self.block_size() - 2;
        Some(Ipv4Addr::from(
            u32::from(block.network()) + 1 + host % usable,
        ))
    }

    /// Node `i`'s underlay address.
    pub fn underlay(i: usize) -> Option<SocketAddr> {
        (i < MAX_UNDERLAY_NODES).then(|| {
            SocketAddr::from((
                Ipv4Addr::from(u32::from(UNDERLAY_BASE) + 1 + i as u32),
                UNDERLAY_PORT,
            ))
        })
    }

    /// Which node an underlay address is.
    pub fn node_at(addr: SocketAddr) -> Option<usize> {
        let SocketAddr::V4(v4) = addr else {
            return None;
        };
        if v4.port() != UNDERLAY_PORT {
            return None;
        }
        let i = u32::from(*v4.ip()).checked_sub(u32::from(UNDERLAY_BASE) + 1)? as usize;
        (i < MAX_UNDERLAY_NODES).then_some(i)
    }
}

impl Default for Addressing {
    /// mesh's defaults: 10.32.0.0/12 in /24 blocks (4,096 nodes).
    fn default() -> Self {
        Self {
            range: Ipv4Net::new(Ipv4Addr::new(10, 32, 0, 0), 12).unwrap_or_default(),
            block_prefix: 24,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_owners_and_underlay_round_trip() {
        let a = Addressing::default();
        assert_eq!(a.capacity(), 4096);
        assert_eq!(a.block(0).unwrap().to_string(), "10.32.0.0/24");
        assert_eq!(a.block(257).unwrap().to_string(), "10.33.1.0/24");
        assert_eq!(a.block(4096), None);
        assert_eq!(a.owner(Ipv4Addr::new(10, 33, 1, 77)), Some(257));
        assert_eq!(a.owner(Ipv4Addr::new(10, 48, 0, 1)), None);
        let p = a.pod(3, 5).unwrap();
        assert_eq!(a.owner(p), Some(3));
        assert_eq!(a.pod(3, 254), a.pod(3, 0), "wraps inside the block");
        for i in [0, 1, 254, 255, 256, 70_000] {
            let u = Addressing::underlay(i).unwrap();
            assert_eq!(Addressing::node_at(u), Some(i));
        }
        assert_eq!(
            Addressing::underlay(0).unwrap().to_string(),
            "198.18.0.1:6788"
        );
        assert_eq!(
            Addressing::node_at("198.18.0.0:6788".parse().unwrap()),
            None
        );
        assert_eq!(Addressing::node_at("198.18.0.1:1".parse().unwrap()), None);
        let small = Addressing::new("10.32.0.0/12".parse().unwrap(), 28).unwrap();
        assert_eq!(small.capacity(), 65_536);
        assert!(Addressing::new("10.32.0.0/12".parse().unwrap(), 8).is_none());
    }
}
