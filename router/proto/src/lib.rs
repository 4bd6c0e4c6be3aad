//! mesh wire formats.
//!
//! - [`datagram`]: every UDP datagram between two `meshd`s (handshake messages and sealed
//!   data), as checked views over a byte slice plus emit functions that write headers in
//!   place.
//! - [`control`]: control messages carried *inside* sealed sessions (a node's name and
//!   blocks), told apart from IP packets by their first byte.
//! - [`gossip`]: the gossip messages (push, digest, listing, pull) and the record bodies
//!   they carry (members, adjacency), control type `0x02`.
//! - [`relay`]: the 12-byte framing of datagrams forwarded through a relay node.
//! - [`echo`]: the echo probes of `meshctl ping`.
//! - [`inner`]: the little we read of the tunnelled IP packets (version, source, destination).
//!
//! This crate does no I/O and no cryptography: it only says where the bytes are. Every
//! parser checks lengths once, after which its accessors cannot panic; each has a fuzz target
//! (`integration/fuzz/`). Integers on the wire are little-endian, except the echo probe's id
//! (big-endian) and the IP headers [`inner`] reads (network byte order).
#![forbid(unsafe_code)]

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
