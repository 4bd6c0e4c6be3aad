//! Control messages sent inside sealed sessions.
//!
//! The plaintext of a data message is one of: nothing (a keepalive), an IP packet (its first
//! nibble is 4 or 6), or a control message, whose first byte is below 0x40 and names it.
//!
//! ```text
//! PeerInfo  0:type=0x01  1:format version=1  2..10:info version  10..18:acked version
//!           18:name length N (<= 63)  19..19+N:name (UTF-8)
//!           then 1:block count M (<= 32), M x (1:family=4  4:address  1:prefix length)
//!           format version 2 adds: 1:family of the observed endpoint (0 none, 4 IPv4)
//!           [4:address  2:port]
//! ```
//!
//! Byte order: little-endian (the versions and the observed endpoint's port); addresses are
//! their octets in network order.
//!
//! The *observed endpoint* is the address and port the sender sees the receiver's datagrams
//! come from: how a node learns the endpoint it announces to the cluster by gossip.
//!
//! `info version` rises whenever the sender's name or blocks change; `acked version` is the
//! highest info version of the *receiver* that the sender has, so each side retransmits its
//! info until the other acknowledges it (the session itself is unreliable UDP).

use crate::ParseError;
use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Type byte of [`PeerInfo`].
pub const CONTROL_PEER_INFO: u8 = 0x01;
/// Longest node name, bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Most blocks one node announces.
pub const MAX_BLOCKS: usize = 32;
/// Largest encoded [`PeerInfo`].
pub const MAX_PEER_INFO_LEN: usize = 19 + MAX_NAME_LEN + 1 + MAX_BLOCKS * 6 + 7;

const FORMAT_VERSION: u8 = 2;

/// A node's name and address blocks, as it announces them to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Rises with every change of `name` or `blocks`.
    pub info_version: u64,
    /// The receiver's info version the sender has seen.
    pub acked_version: u64,
    /// Human name.
    pub name: String,
    /// Blocks the sender owns.
    pub blocks: Vec<Ipv4Net>,
    /// Where the sender sees the receiver (format version 2).
    pub observed: Option<SocketAddrV4>,
}

impl PeerInfo {
    /// Bytes [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        19 + self.name.len()
            + 1
            + self.blocks.len() * 6
            + if self.observed.is_some() { 7 } else { 1 }
    }

    /// Writes the message into `out`, returns its length. `None` if `out` is too small or
    /// a field exceeds its limit (name longer than [`MAX_NAME_LEN`], more than
    /// [`MAX_BLOCKS`] blocks).
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        if self.name.len() > MAX_NAME_LEN || self.blocks.len() > MAX_BLOCKS {
            return None;
        }
        let len = self.buffer_len();
        let out = out.get_mut(..len)?;
        out[0] = CONTROL_PEER_INFO;
        out[1] = FORMAT_VERSION;
        out[2..10].copy_from_slice(&self.info_version.to_le_bytes());
        out[10..18].copy_from_slice(&self.acked_version.to_le_bytes());
        out[18] = self.name.len() as u8;
        let mut at = 19;
        out[at..at + self.name.len()].copy_from_slice(self.name.as_bytes());
        at += self.name.len();
        out[at] = self.blocks.len() as u8;
        at += 1;
        for b in &self.blocks {
            out[at] = 4;
            out[at + 1..at + 5].copy_from_slice(&b.addr().octets());
            out[at + 5] = b.prefix_len();
            at += 6;
        }
        match self.observed {
            None => out[at] = 0,
            Some(ep) => {
                out[at] = 4;
                out[at + 1..at + 5].copy_from_slice(&ep.ip().octets());
                out[at + 5..at + 7].copy_from_slice(&ep.port().to_le_bytes());
            }
        }
        Some(len)
    }

    /// Parses a PeerInfo message (including its type byte).
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let truncated = |need| ParseError::Truncated {
            len: buf.len(),
            need,
        };
        if buf.len() < 20 {
            return Err(truncated(20));
        }
        if buf[0] != CONTROL_PEER_INFO {
            return Err(ParseError::UnknownType(buf[0]));
        }
        if buf[1] != 1 && buf[1] != FORMAT_VERSION {
            return Err(ParseError::Malformed(
                "unsupported peer info format version",
            ));
        }
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let name_len = usize::from(buf[18]);
        if name_len > MAX_NAME_LEN {
            return Err(ParseError::Malformed("name too long"));
        }
        let mut at = 19;
        let name_bytes = buf
            .get(at..at + name_len)
            .ok_or(truncated(at + name_len + 1))?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| ParseError::Malformed("name is not UTF-8"))?
            .to_owned();
        at += name_len;
        let count = usize::from(*buf.get(at).ok_or(truncated(at + 1))?);
        at += 1;
        if count > MAX_BLOCKS {
            return Err(ParseError::Malformed("too many blocks"));
        }
        let body = buf
            .get(at..at + count * 6)
            .ok_or(truncated(at + count * 6))?;
        let mut blocks = Vec::with_capacity(count);
        for b in body.chunks_exact(6) {
            if b[0] != 4 {
                return Err(ParseError::Malformed("unknown address family"));
            }
            let addr = Ipv4Addr::new(b[1], b[2], b[3], b[4]);
            let net = Ipv4Net::new(addr, b[5])
                .map_err(|_| ParseError::Malformed("prefix length above 32"))?;
            if net.network() != addr {
                return Err(ParseError::Malformed("block has host bits set"));
            }
            blocks.push(net);
        }
        at += count * 6;
        let observed = if buf[1] == 1 {
            None
        } else {
            match *buf.get(at).ok_or(truncated(at + 1))? {
                0 => {
                    at += 1;
                    None
                }
                4 => {
                    let b = buf.get(at + 1..at + 7).ok_or(truncated(at + 7))?;
                    at += 7;
                    Some(SocketAddrV4::new(
                        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                        u16::from_le_bytes([b[4], b[5]]),
                    ))
                }
                _ => return Err(ParseError::Malformed("unknown address family")),
            }
        };
        if at != buf.len() {
            return Err(ParseError::Malformed("trailing bytes after peer info"));
        }
        Ok(Self {
            info_version: u64_at(2),
            acked_version: u64_at(10),
            name,
            blocks,
            observed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PeerInfo {
        PeerInfo {
            info_version: 3,
            acked_version: 9,
            name: "node-a".into(),
            blocks: vec![
                "10.32.1.0/24".parse().unwrap(),
                "10.33.0.0/16".parse().unwrap(),
            ],
            observed: Some("198.18.0.2:6788".parse().unwrap()),
        }
    }

    #[test]
    fn round_trip() {
        let info = sample();
        let mut buf = [0u8; MAX_PEER_INFO_LEN];
        let n = info.emit(&mut buf).unwrap();
        assert_eq!(n, info.buffer_len());
        assert_eq!(PeerInfo::parse(&buf[..n]).unwrap(), info);
    }

    #[test]
    fn truncations_and_trailing_bytes_are_errors() {
        let info = sample();
        let mut buf = [0u8; MAX_PEER_INFO_LEN];
        let n = info.emit(&mut buf).unwrap();
        for len in 0..n {
            assert!(PeerInfo::parse(&buf[..len]).is_err(), "len {len}");
        }
        assert!(PeerInfo::parse(&buf[..n + 1]).is_err());
    }

    #[test]
    fn limits_are_enforced_both_ways() {
        let mut info = sample();
        info.name = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(info.emit(&mut [0u8; 512]), None);
        let mut info = sample();
        let mut buf = [0u8; MAX_PEER_INFO_LEN];
        info.observed = None;
        let n = info.emit(&mut buf).unwrap();
        buf[n - 2] = 33; // prefix length of the last block
        assert!(matches!(
            PeerInfo::parse(&buf[..n]),
            Err(ParseError::Malformed(_))
        ));
        info.blocks = vec!["10.0.0.0/8".parse().unwrap()];
        let n = info.emit(&mut buf).unwrap();
        buf[n - 3] = 1; // host bit inside a /8
        assert!(PeerInfo::parse(&buf[..n]).is_err());
    }

    #[test]
    fn too_small_buffer_is_none() {
        let info = sample();
        assert_eq!(info.emit(&mut [0u8; 10]), None);
    }
}
