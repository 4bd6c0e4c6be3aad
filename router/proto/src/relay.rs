//! Relay framing: how a datagram between two nodes that cannot reach each other directly
//! travels through a third.
//!
//! ```text
//! Relay    0:type=5  1..4:0  4..12:destination key prefix  12..:end-to-end datagram
//! Relayed  0:type=6  1..4:0  4..12:source key prefix       12..:end-to-end datagram
//! ```
//!
//! Byte order: none; the header has no multi-byte integers (the key prefix is the first 8
//! bytes of the public key, as they are).
//!
//! The sender wraps its datagram for the destination (a handshake message or sealed data,
//! exactly as it would send it directly) in a `Relay` header and sends it to the relay. The
//! relay accepts it only from a member it has a session with, at that session's endpoint,
//! rewrites the header in place into `Relayed` naming the source, and sends it to the
//! destination, which accepts it only from a member it has a session with. The relay never
//! holds the keys of the end-to-end session: it reads 12 bytes of framing and nothing else.

use crate::ParseError;

/// Type byte of a datagram for the relay to forward.
pub const TYPE_RELAY: u8 = 5;
/// Type byte of a datagram a relay forwarded.
pub const TYPE_RELAYED: u8 = 6;
/// Bytes the framing adds.
pub const RELAY_HEADER_LEN: usize = 12;

/// A parsed relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayFrame<'a> {
    /// `true` for [`TYPE_RELAY`] (to forward), `false` for [`TYPE_RELAYED`] (forwarded).
    pub to_forward: bool,
    /// Destination (to forward) or source (forwarded) key prefix.
    pub peer: [u8; 8],
    /// The end-to-end datagram.
    pub inner: &'a [u8],
}

impl<'a> RelayFrame<'a> {
    /// Parses a relay frame; other types are [`ParseError::UnknownType`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        let to_forward = match buf.first() {
            Some(&TYPE_RELAY) => true,
            Some(&TYPE_RELAYED) => false,
            Some(&t) => return Err(ParseError::UnknownType(t)),
            None => return Err(ParseError::Truncated { len: 0, need: 1 }),
        };
        if buf.len() <= RELAY_HEADER_LEN {
            return Err(ParseError::Truncated {
                len: buf.len(),
                need: RELAY_HEADER_LEN + 1,
            });
        }
        if buf[1..4] != [0, 0, 0] {
            return Err(ParseError::Malformed("reserved bytes are not zero"));
        }
        if matches!(buf[RELAY_HEADER_LEN], TYPE_RELAY | TYPE_RELAYED) {
            return Err(ParseError::Malformed("relay frame inside a relay frame"));
        }
        let mut peer = [0u8; 8];
        peer.copy_from_slice(&buf[4..12]);
        Ok(Self {
            to_forward,
            peer,
            inner: &buf[RELAY_HEADER_LEN..],
        })
    }
}

/// Writes a relay header.
pub fn emit_relay_header(out: &mut [u8; RELAY_HEADER_LEN], to_forward: bool, peer: [u8; 8]) {
    out[0] = if to_forward { TYPE_RELAY } else { TYPE_RELAYED };
    out[1..4].fill(0);
    out[4..12].copy_from_slice(&peer);
}

/// `datagram` framed for the relay to forward to `dst`.
pub fn wrap(dst: [u8; 8], datagram: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; RELAY_HEADER_LEN + datagram.len()];
    if let Ok(h) = (&mut out[..RELAY_HEADER_LEN]).try_into() {
        emit_relay_header(h, true, dst);
    }
    out[RELAY_HEADER_LEN..].copy_from_slice(datagram);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rewrite_in_place() {
        let mut d = wrap([7; 8], &[4, 0, 0, 0, 1, 2, 3]);
        let f = RelayFrame::parse(&d).unwrap();
        assert!(f.to_forward);
        assert_eq!(f.peer, [7; 8]);
        assert_eq!(f.inner, &[4, 0, 0, 0, 1, 2, 3]);
        let h: &mut [u8; RELAY_HEADER_LEN] = (&mut d[..RELAY_HEADER_LEN]).try_into().unwrap();
        emit_relay_header(h, false, [9; 8]);
        let f = RelayFrame::parse(&d).unwrap();
        assert!(!f.to_forward);
        assert_eq!(f.peer, [9; 8]);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(RelayFrame::parse(&[]).is_err());
        assert!(RelayFrame::parse(&[TYPE_RELAY; 12]).is_err());
        let mut d = wrap([1; 8], &[4, 0]);
        d[2] = 1;
        assert!(RelayFrame::parse(&d).is_err());
        let nested = wrap([1; 8], &wrap([2; 8], &[4]));
        assert!(RelayFrame::parse(&nested).is_err());
        assert!(matches!(
            RelayFrame::parse(&[4, 0, 0]),
            Err(ParseError::UnknownType(4))
        ));
    }
}
