//! Block request: automatic IPAM's ask for a donation. A node that needs an address block
//! and owns none free sends it, inside their session, to the member that owns the most;
//! the owner answers by writing ring entries (gossip records of kind
//! [`KIND_RING`](crate::gossip::KIND_RING)), not with a control message.
//!
//! ```text
//! BlockRequest  0:type=0x03  1:count (blocks wanted)
//! ```
//!
//! Byte order: none; both fields are single bytes.
//!
//! Every node sends exactly these two bytes. A receiver is lenient, as nodes have always
//! been: a message of the type byte alone asks for one block, bytes after the count are
//! ignored, and the count a donor honours is clamped to `1..=`[`MAX_BLOCKS_PER_REQUEST`]
//! ([`BlockRequest::wanted`]).

use crate::ParseError;

/// Type byte of [`BlockRequest`].
pub const CONTROL_BLOCK_REQUEST: u8 = 0x03;
/// Bytes [`BlockRequest::emit`] writes.
pub const BLOCK_REQUEST_LEN: usize = 2;
/// Most blocks a donor gives for one request.
pub const MAX_BLOCKS_PER_REQUEST: u8 = 16;

/// A request for address blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRequest {
    /// Blocks asked for, as on the wire (1 when the message has no count byte).
    pub count: u8,
}

impl BlockRequest {
    /// Bytes [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        BLOCK_REQUEST_LEN
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; BLOCK_REQUEST_LEN] {
        [CONTROL_BLOCK_REQUEST, self.count]
    }

    /// Writes the message into `out`, returns its length; `None` if `out` is too small.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        out.get_mut(..BLOCK_REQUEST_LEN)?
            .copy_from_slice(&self.to_bytes());
        Some(BLOCK_REQUEST_LEN)
    }

    /// Parses a block request (type byte included); see the module doc for what is
    /// tolerated.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        match buf.first() {
            None => Err(ParseError::Truncated { len: 0, need: 1 }),
            Some(&CONTROL_BLOCK_REQUEST) => Ok(Self {
                count: buf.get(1).copied().unwrap_or(1),
            }),
            Some(&t) => Err(ParseError::UnknownType(t)),
        }
    }

    /// Blocks a donor gives at most: `count` within `1..=`[`MAX_BLOCKS_PER_REQUEST`].
    pub fn wanted(&self) -> u32 {
        u32::from(self.count.clamp(1, MAX_BLOCKS_PER_REQUEST))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for count in [0, 1, 7, 16, 17, 255] {
            let req = BlockRequest { count };
            let mut buf = [0xffu8; 4];
            assert_eq!(req.emit(&mut buf), Some(BLOCK_REQUEST_LEN));
            assert_eq!(buf[..2], [0x03, count]);
            assert_eq!(buf[..2], req.to_bytes());
            assert_eq!(BlockRequest::parse(&buf[..2]), Ok(req));
        }
    }

    #[test]
    fn the_count_a_donor_honours_is_clamped() {
        let wanted = |count| BlockRequest { count }.wanted();
        assert_eq!(wanted(0), 1);
        assert_eq!(wanted(1), 1);
        assert_eq!(wanted(16), 16);
        assert_eq!(wanted(17), 16);
        assert_eq!(wanted(255), 16);
    }

    #[test]
    fn lenient_where_nodes_always_were_and_refuses_the_rest() {
        assert_eq!(
            BlockRequest::parse(&[0x03]),
            Ok(BlockRequest { count: 1 }),
            "no count byte: one block"
        );
        assert_eq!(
            BlockRequest::parse(&[0x03, 4, 9, 9]),
            Ok(BlockRequest { count: 4 }),
            "bytes after the count are ignored"
        );
        assert_eq!(
            BlockRequest::parse(&[]),
            Err(ParseError::Truncated { len: 0, need: 1 })
        );
        assert_eq!(
            BlockRequest::parse(&[0x04, 1]),
            Err(ParseError::UnknownType(4))
        );
        assert_eq!(BlockRequest { count: 1 }.emit(&mut [0u8; 1]), None);
    }
}
