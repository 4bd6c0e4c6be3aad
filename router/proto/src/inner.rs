//! What a node reads of the packets it tunnels: only enough to route them.
//!
//! Byte order: an IP packet's own (network order, big-endian); only the IPv4 addresses are
//! read, as octets.

use std::net::Ipv4Addr;

/// What the plaintext of a data message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner<'a> {
    /// Empty plaintext: a keepalive.
    Keepalive,
    /// An IPv4 packet with its addresses (header length checked).
    Ipv4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// An IPv6 packet (not routed yet).
    Ipv6,
    /// A control message: its type byte and the whole message.
    Control(u8, &'a [u8]),
    /// Anything else: too short for its version's header, or an unknown first byte.
    Invalid,
}

impl<'a> Inner<'a> {
    /// Classifies a plaintext.
    pub fn classify(buf: &'a [u8]) -> Self {
        let Some(&first) = buf.first() else {
            return Self::Keepalive;
        };
        match first >> 4 {
            4 => match ipv4_addrs(buf) {
                Some((src, dst)) => Self::Ipv4 { src, dst },
                None => Self::Invalid,
            },
            6 if buf.len() >= 40 => Self::Ipv6,
            0..=3 => Self::Control(first, buf),
            _ => Self::Invalid,
        }
    }
}

/// Source and destination of an IPv4 packet, if `buf` is at least a minimal IPv4 header
/// whose IHL is valid.
pub fn ipv4_addrs(buf: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if buf.len() < 20 || buf[0] >> 4 != 4 || usize::from(buf[0] & 0x0f) * 4 < 20 {
        return None;
    }
    let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
    let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
    Some((src, dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(src: [u8; 4], dst: [u8; 4]) -> [u8; 20] {
        let mut p = [0u8; 20];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn classifies() {
        assert_eq!(Inner::classify(&[]), Inner::Keepalive);
        let p = ipv4([10, 32, 1, 2], [10, 32, 2, 3]);
        assert_eq!(
            Inner::classify(&p),
            Inner::Ipv4 {
                src: Ipv4Addr::new(10, 32, 1, 2),
                dst: Ipv4Addr::new(10, 32, 2, 3)
            }
        );
        assert_eq!(Inner::classify(&p[..19]), Inner::Invalid);
        assert_eq!(Inner::classify(&[0x01, 2]), Inner::Control(1, &[1, 2]));
        assert_eq!(Inner::classify(&[0x60; 40]), Inner::Ipv6);
        assert_eq!(Inner::classify(&[0x60; 39]), Inner::Invalid);
        assert_eq!(Inner::classify(&[0xff; 40]), Inner::Invalid);
        let mut bad_ihl = p;
        bad_ihl[0] = 0x44;
        assert_eq!(Inner::classify(&bad_ihl), Inner::Invalid);
    }
}
