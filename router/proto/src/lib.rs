//! mesh wire formats.
//!
//! - [`datagram`]: every UDP datagram between two `meshd`s (handshake messages and sealed
//!   data), as checked views over a byte slice plus emit functions that write headers in
//!   place.
//! - [`control`]: control messages carried *inside* sealed sessions (a node's name and
//!   blocks), told apart from IP packets by their first byte.
//! - [`block_request`]: automatic IPAM's request for a block donation, a control message.
//! - [`echo`]: `meshctl ping`'s probes, control messages.
//! - [`gossip`]: the gossip messages (push, digest, listing, pull) and the record bodies
//!   they carry (members, adjacency), control type `0x02`.
//! - [`relay`]: the 12-byte framing of datagrams forwarded through a relay node.
//! - [`inner`]: the little we read of the tunnelled IP packets (version, source, destination).
//!
//! Every number that names a message on the wire is defined here, once:
//!
//! | first byte of a UDP datagram | | control type (first byte of a plaintext) | | gossip record kind | |
//! |---|---|---|---|---|---|
//! | 1 | [`datagram::TYPE_HANDSHAKE_INIT`] | 0x01 | [`control::CONTROL_PEER_INFO`] | 1 | [`gossip::KIND_MEMBER`] |
//! | 2 | [`datagram::TYPE_HANDSHAKE_RESPONSE`] | 0x02 | [`gossip::CONTROL_GOSSIP`] | 2 | [`gossip::KIND_ADJACENCY`] |
//! | 3 | [`datagram::TYPE_HANDSHAKE_FINAL`] | 0x03 | [`block_request::CONTROL_BLOCK_REQUEST`] | 3 | [`gossip::KIND_RING`] |
//! | 4 | [`datagram::TYPE_DATA`] | 0x04 | [`echo::CONTROL_ECHO_REQUEST`] | 4 | [`gossip::KIND_DNS`] ([`gossip::FIRST_APP_KIND`]) |
//! | 5 | [`relay::TYPE_RELAY`] | 0x05 | [`echo::CONTROL_ECHO_REPLY`] | | |
//! | 6 | [`relay::TYPE_RELAYED`] | | | | |
//! | 7 | [`datagram::TYPE_COOKIE_REPLY`] | | | | |
//!
//! A plaintext whose first byte is below 0x40 is a control message (an IP packet starts
//! with 0x4_ or 0x6_): see [`inner::Inner::classify`].
//!
//! This crate does no I/O and no cryptography: it only says where the bytes are. Every
//! parser checks lengths once, after which its accessors cannot panic; each has a fuzz target
//! (`integration/fuzz/`).
//!
//! Byte order is stated per format, in each module's doc. Multi-byte integers are
//! little-endian in [`datagram`], [`control`] and [`gossip`]; [`echo`]'s probe id is
//! big-endian; [`relay`] and [`block_request`] have no multi-byte integers. IPv4 addresses
//! are always their four octets in network order (`10.32.1.0` is `0a 20 01 00`). Record
//! bodies that other crates encode say their own: `mesh_ipam`'s ring entries are
//! big-endian (their gossip id starts with the block index, little-endian), `mesh_dns`'s
//! records have no multi-byte integers.
#![forbid(unsafe_code)]

pub mod block_request;
pub mod control;
pub mod datagram;
pub mod echo;
pub mod gossip;
pub mod inner;
pub mod relay;

/// The wire format could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than its fixed header (or than a length field inside it says).
    #[error("message truncated: {len} bytes, need at least {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The first byte names no message type we know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A handshake message of another protocol version (1: a node from before handshake
    /// MACs). Blame: the peer is incompatible; upgrade it.
    #[error("handshake of mesh protocol version {0}; this node speaks version 2")]
    Version(u8),
    /// Reserved bytes are not zero, or a field holds a value outside its range.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct(numbers: &[u8]) -> bool {
        let mut sorted = numbers.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.len() == numbers.len()
    }

    #[test]
    fn every_wire_number_names_one_message() {
        use datagram::*;
        assert!(distinct(&[
            TYPE_HANDSHAKE_INIT,
            TYPE_HANDSHAKE_RESPONSE,
            TYPE_HANDSHAKE_FINAL,
            TYPE_DATA,
            relay::TYPE_RELAY,
            relay::TYPE_RELAYED,
            TYPE_COOKIE_REPLY,
        ]));
        let control = [
            control::CONTROL_PEER_INFO,
            gossip::CONTROL_GOSSIP,
            block_request::CONTROL_BLOCK_REQUEST,
            echo::CONTROL_ECHO_REQUEST,
            echo::CONTROL_ECHO_REPLY,
        ];
        assert!(distinct(&control));
        for t in control {
            let msg = [t, 0, 0];
            assert_eq!(
                inner::Inner::classify(&msg),
                inner::Inner::Control(t, &msg),
                "control type {t:#x} is not read as a control message"
            );
        }
        use gossip::*;
        assert!(distinct(&[
            KIND_MEMBER,
            KIND_ADJACENCY,
            KIND_RING,
            KIND_DNS
        ]));
        const {
            assert!(KIND_MEMBER < FIRST_APP_KIND);
            assert!(KIND_ADJACENCY < FIRST_APP_KIND);
            assert!(KIND_RING < FIRST_APP_KIND);
            assert!(KIND_DNS >= FIRST_APP_KIND);
        }
    }
}
