//! The cluster range cut into equal blocks, numbered from 0: the coordinates every ownership
//! record is written in.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The default cluster range.
pub const DEFAULT_RANGE: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 32, 0, 0), 12);
/// The default block prefix length: /24, 4,096 blocks in the default range.
pub const DEFAULT_BLOCK_PREFIX: u8 = 24;
/// Longest block prefix: a /31 or /32 block has no pod address to give (see `LocalPool`).
pub const MAX_BLOCK_PREFIX: u8 = 30;
/// Most blocks a range may be cut into (2^24): block indices and record ends stay far from
/// `u32::MAX`, and a full ownership table still fits in memory comfortably.
pub const MAX_BLOCKS: u32 = 1 << 24;

/// Why a range and block size cannot make a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// The block prefix is shorter than the range's.
    #[error("block size /{block_prefix} is larger than the cluster range {range}")]
    BlockLargerThanRange {
        /// The range.
        range: Ipv4Net,
        /// The block prefix length.
        block_prefix: u8,
    },
    /// Blocks would hold no pod address.
    #[error("block size /{0} is too small: blocks must be /{MAX_BLOCK_PREFIX} or larger")]
    BlockTooSmall(u8),
    /// More than [`MAX_BLOCKS`] blocks.
    #[error(
        "the cluster range {range} in /{block_prefix} blocks makes more than {MAX_BLOCKS} blocks; \
         use larger blocks"
    )]
    TooManyBlocks {
        /// The range.
        range: Ipv4Net,
        /// The block prefix length.
        block_prefix: u8,
    },
}

/// A cluster range and its block size. Block `i` is the `i`-th block of the range, counted
/// from its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    range: Ipv4Net,
    block_prefix: u8,
}

impl Default for Geometry {
    fn default() -> Self {
        Self {
            range: DEFAULT_RANGE,
            block_prefix: DEFAULT_BLOCK_PREFIX,
        }
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in /{} blocks", self.range, self.block_prefix)
    }
}

impl Geometry {
    /// `range` (truncated to its network) cut into `/block_prefix` blocks.
    pub fn new(range: Ipv4Net, block_prefix: u8) -> Result<Self, GeometryError> {
        let range = range.trunc();
        if block_prefix < range.prefix_len() {
            return Err(GeometryError::BlockLargerThanRange {
                range,
                block_prefix,
            });
        }
        if block_prefix > MAX_BLOCK_PREFIX {
            return Err(GeometryError::BlockTooSmall(block_prefix));
        }
        if block_prefix - range.prefix_len() > MAX_BLOCKS.trailing_zeros() as u8 {
            return Err(GeometryError::TooManyBlocks {
                range,
                block_prefix,
            });
        }
        Ok(Self {
            range,
            block_prefix,
        })
    }

    /// The cluster range.
    pub fn range(&self) -> Ipv4Net {
        self.range
    }

    /// The prefix length of one block.
    pub fn block_prefix(&self) -> u8 {
        self.block_prefix
    }

    /// How many blocks the range holds.
    pub fn blocks(&self) -> u32 {
        1 << (self.block_prefix - self.range.prefix_len())
    }

    fn block_shift(&self) -> u32 {
        32 - u32::from(self.block_prefix)
    }

    /// Block `index` as a prefix; `None` past the last block.
    pub fn block(&self, index: u32) -> Option<Ipv4Net> {
        if index >= self.blocks() {
            return None;
        }
        let base = u32::from(self.range.network());
        let addr = Ipv4Addr::from(base + (index << self.block_shift()));
        Ipv4Net::new(addr, self.block_prefix).ok()
    }

    /// The index of the block holding `addr`; `None` outside the range.
    pub fn index_of(&self, addr: Ipv4Addr) -> Option<u32> {
        if !self.range.contains(&addr) {
            return None;
        }
        Some((u32::from(addr) - u32::from(self.range.network())) >> self.block_shift())
    }

    /// The index of `block`, if it is exactly one block of this geometry.
    pub fn index_of_block(&self, block: Ipv4Net) -> Option<u32> {
        if block.prefix_len() != self.block_prefix || block.network() != block.addr() {
            return None;
        }
        self.index_of(block.network())
    }

    /// Blocks `[start, end)` as the fewest prefixes that cover exactly them.
    pub fn aggregate(&self, start: u32, end: u32) -> Vec<Ipv4Net> {
        let mut out = Vec::new();
        let mut at = start;
        let end = end.min(self.blocks());
        while at < end {
            // The largest power-of-two run that starts at `at`, is aligned to its size and
            // does not pass `end`. Block indices are aligned like addresses because the
            // range's network address is aligned to the whole range.
            let mut size = if at == 0 {
                1u32 << 31
            } else {
                1 << at.trailing_zeros()
            };
            while size > end - at {
                size >>= 1;
            }
            let prefix = self.block_prefix - size.trailing_zeros() as u8;
            let base = u32::from(self.range.network()) + (at << self.block_shift());
            if let Ok(net) = Ipv4Net::new(Ipv4Addr::from(base), prefix) {
                out.push(net);
            }
            at += size;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn default_is_4096_blocks_of_24() {
        let g = Geometry::default();
        assert_eq!(g.blocks(), 4096);
        assert_eq!(g.block(0), Some(net("10.32.0.0/24")));
        assert_eq!(g.block(4095), Some(net("10.47.255.0/24")));
        assert_eq!(g.block(4096), None);
        assert_eq!(g.index_of("10.33.2.7".parse().unwrap()), Some(258));
        assert_eq!(g.index_of("10.48.0.1".parse().unwrap()), None);
        assert_eq!(g.index_of_block(net("10.33.2.0/24")), Some(258));
        assert_eq!(g.index_of_block(net("10.33.2.0/23")), None);
        assert_eq!(g.to_string(), "10.32.0.0/12 in /24 blocks");
    }

    #[test]
    fn bad_geometries_are_refused_with_the_reason() {
        assert!(matches!(
            Geometry::new(net("10.32.0.0/12"), 8),
            Err(GeometryError::BlockLargerThanRange { .. })
        ));
        assert_eq!(
            Geometry::new(net("10.32.0.0/12"), 31),
            Err(GeometryError::BlockTooSmall(31))
        );
        assert!(matches!(
            Geometry::new(net("10.0.0.0/4"), 30),
            Err(GeometryError::TooManyBlocks { .. })
        ));
        // Host bits are dropped, like everywhere else in this crate.
        let g = Geometry::new(net("10.32.1.0/12"), 24).unwrap();
        assert_eq!(g.range(), net("10.32.0.0/12"));
        // The whole IPv4 space in /24s is the largest geometry.
        assert_eq!(
            Geometry::new(net("0.0.0.0/0"), 24).unwrap().blocks(),
            MAX_BLOCKS
        );
    }

    #[test]
    fn aggregation_is_minimal_and_exact() {
        let g = Geometry::default();
        assert_eq!(g.aggregate(0, 4096), vec![net("10.32.0.0/12")]);
        assert_eq!(g.aggregate(4095, 4096), vec![net("10.47.255.0/24")]);
        assert_eq!(
            g.aggregate(1, 8),
            vec![
                net("10.32.1.0/24"),
                net("10.32.2.0/23"),
                net("10.32.4.0/22")
            ]
        );
        assert_eq!(g.aggregate(3, 3), Vec::<Ipv4Net>::new());
        let small = Geometry::new(net("192.168.0.0/16"), 30).unwrap();
        assert_eq!(small.aggregate(2, 4), vec![net("192.168.0.8/29")]);
    }
}
