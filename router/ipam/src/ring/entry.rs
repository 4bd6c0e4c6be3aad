//! One ownership record as it travels between nodes: [`Entry`], its fixed 71-byte encoding,
//! and the cluster's identity [`RingId`].
//!
//! ```text
//! offset len  field (integers big-endian, so byte order is numeric order)
//!   0     1   format = 1
//!   1    16   ring id
//!  17     4   cluster range: network address
//!  21     1   cluster range: prefix length
//!  22     1   block prefix length
//!  23     4   start: first block index (the record's key)
//!  27     4   end: block index after the last one (exclusive)
//!  31     8   version
//!  39    32   owner (node static key)
//!  71         total
//! ```
//!
//! Every entry is self-contained: it names its cluster (ring id), the coordinates its block
//! indices are in (range and block size), and the blocks it covers. A receiver can check it
//! and merge it alone, whatever else it has or lacks.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::geometry::{Geometry, GeometryError};
use super::sip::siphash24;

/// A node's identity: its 32-byte static public key.
pub type NodeId = [u8; 32];

/// Bytes of an encoded [`Entry`].
pub const ENTRY_LEN: usize = 71;
/// The encoding this crate writes and reads.
pub const ENTRY_FORMAT: u8 = 1;

/// The identity of one cluster's address space, fixed when its founder created it
/// ([`crate::ring::Ring::found`]). Two clusters founded separately have different ids, and
/// their records never merge.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RingId(pub [u8; 16]);

impl RingId {
    /// The ring id a founder derives from its key and a value it chose (random bytes from
    /// the OS, the time, or both: the caller passes them, this crate has no RNG or clock).
    /// Two SipHash-2-4 outputs under fixed, domain-separating keys: not a cryptographic
    /// commitment (members are trusted; see docs/ipam.md), but two founders never end up
    /// with the same id by accident, even with a poor nonce, because their keys differ.
    pub fn derive(founder: &NodeId, nonce: &[u8]) -> Self {
        const KEY_A: (u64, u64) = (0x6d65_7368_2d72_696e, 0x672d_6964_2d30_3161);
        const KEY_B: (u64, u64) = (0x6d65_7368_2d72_696e, 0x672d_6964_2d30_3162);
        let mut msg = Vec::with_capacity(32 + nonce.len());
        msg.extend_from_slice(founder);
        msg.extend_from_slice(nonce);
        let a = siphash24(KEY_A.0, KEY_A.1, &msg);
        let b = siphash24(KEY_B.0, KEY_B.1, &msg);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&a.to_be_bytes());
        id[8..].copy_from_slice(&b.to_be_bytes());
        Self(id)
    }
}

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingId({self})")
    }
}

/// A ring id that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ring id {0:?} is not 32 hex digits")]
pub struct RingIdError(String);

impl FromStr for RingId {
    type Err = RingIdError;
    fn from_str(s: &str) -> Result<Self, RingIdError> {
        hex_decode::<16>(s)
            .map(Self)
            .ok_or_else(|| RingIdError(s.to_owned()))
    }
}

impl Serialize for RingId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RingId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `N` bytes from exactly `2 * N` hex digits.
pub(crate) fn hex_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The first 8 bytes of a node id in hex: enough to tell nodes apart in a message.
pub fn short_id(id: &NodeId) -> String {
    hex(&id[..8])
}

/// Why bytes are not an [`Entry`]. The sender is to blame (a bug, corruption, or a member
/// running an incompatible version); drop the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than an entry.
    #[error("ownership record truncated: {len} bytes, {need} needed")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// More bytes than one entry where exactly one was expected.
    #[error("ownership record has {0} trailing bytes")]
    TrailingBytes(usize),
    /// A format this version does not know (a newer member?).
    #[error("ownership record format {0} is unknown (this node reads format {ENTRY_FORMAT})")]
    UnknownFormat(u8),
    /// The range or block size is impossible.
    #[error("ownership record names an invalid geometry: {0}")]
    Geometry(#[from] GeometryError),
    /// The cluster range has host bits set.
    #[error("ownership record's cluster range {0} has host bits set")]
    RangeHostBits(Ipv4Net),
    /// The prefix length is above 32.
    #[error("ownership record's prefix length {0} is above 32")]
    PrefixLength(u8),
    /// The blocks covered are empty or past the range.
    #[error("ownership record covers blocks {start}..{end} of a range of {blocks} blocks")]
    Span {
        /// First block.
        start: u32,
        /// End (exclusive).
        end: u32,
        /// Blocks in the range.
        blocks: u32,
    },
    /// The gossip record's id or version disagree with its body.
    #[error("gossip record id or version does not match the ownership record it carries")]
    RecordMismatch,
}

/// One ownership record: "blocks `start..end` of ring `ring` belong to `owner`, as of
/// `version`". The key (`start`) is stable: a node's gossip store keeps, per key, the entry
/// with the highest `(version, encoded bytes)` — exactly what [`crate::ring::Ring::merge`]
/// keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    pub(crate) ring: RingId,
    pub(crate) geometry: Geometry,
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) version: u64,
    pub(crate) owner: NodeId,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blocks {}..{} -> {} v{:#x}",
            self.start,
            self.end,
            short_id(&self.owner),
            self.version
        )
    }
}

impl Entry {
    /// The cluster it belongs to.
    pub fn ring(&self) -> RingId {
        self.ring
    }

    /// The range and block size its indices are in.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The key: the first block it covers.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// The block after the last one it covers.
    pub fn end(&self) -> u32 {
        self.end
    }

    /// Higher wins (see docs/ipam.md for how versions are chosen).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The node the blocks belong to.
    pub fn owner(&self) -> NodeId {
        self.owner
    }

    /// The blocks it covers, as the fewest prefixes.
    pub fn nets(&self) -> Vec<Ipv4Net> {
        self.geometry.aggregate(self.start, self.end)
    }

    /// The 32-byte id of this record in the gossip store: the key (little-endian, so the
    /// first byte, the gossip bucket, spreads consecutive blocks over all buckets) and the
    /// ring id. Its first 8 bytes (key and 4 bytes of ring id) name it in listings.
    pub fn record_id(&self) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&self.start.to_le_bytes());
        id[4..20].copy_from_slice(&self.ring.0);
        id
    }

    /// Writes the 71-byte encoding.
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[0] = ENTRY_FORMAT;
        out[1..17].copy_from_slice(&self.ring.0);
        out[17..21].copy_from_slice(&self.geometry.range().network().octets());
        out[21] = self.geometry.range().prefix_len();
        out[22] = self.geometry.block_prefix();
        out[23..27].copy_from_slice(&self.start.to_be_bytes());
        out[27..31].copy_from_slice(&self.end.to_be_bytes());
        out[31..39].copy_from_slice(&self.version.to_be_bytes());
        out[39..71].copy_from_slice(&self.owner);
        out
    }

    /// Writes the encoding into the front of `out`; `None` if it is shorter than
    /// [`ENTRY_LEN`].
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        out.get_mut(..ENTRY_LEN)?.copy_from_slice(&self.encode());
        Some(ENTRY_LEN)
    }

    /// Parses exactly one entry.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (entry, rest) = Self::decode_prefix(buf)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        Ok(entry)
    }

    /// Parses the entry at the front of `buf`; returns it and the bytes after it.
    pub fn decode_prefix(buf: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let Some((b, rest)) = buf.split_first_chunk::<ENTRY_LEN>() else {
            return Err(DecodeError::Truncated {
                len: buf.len(),
                need: ENTRY_LEN,
            });
        };
        if b[0] != ENTRY_FORMAT {
            return Err(DecodeError::UnknownFormat(b[0]));
        }
        let mut ring = [0u8; 16];
        ring.copy_from_slice(&b[1..17]);
        let addr = Ipv4Addr::new(b[17], b[18], b[19], b[20]);
        let range = Ipv4Net::new(addr, b[21]).map_err(|_| DecodeError::PrefixLength(b[21]))?;
        if range.network() != addr {
            return Err(DecodeError::RangeHostBits(range));
        }
        let geometry = Geometry::new(range, b[22])?;
        let u32_at = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let start = u32_at(23);
        let end = u32_at(27);
        if start >= end || end > geometry.blocks() {
            return Err(DecodeError::Span {
                start,
                end,
                blocks: geometry.blocks(),
            });
        }
        let mut version = [0u8; 8];
        version.copy_from_slice(&b[31..39]);
        let mut owner = [0u8; 32];
        owner.copy_from_slice(&b[39..71]);
        let entry = Self {
            ring: RingId(ring),
            geometry,
            start,
            end,
            version: u64::from_be_bytes(version),
            owner,
        };
        Ok((entry, rest))
    }

    /// Parses the body of a gossip record and checks that the record's id and version are
    /// the entry's own (so the gossip store and the ring agree on what wins).
    pub fn from_record(id: &[u8; 32], version: u64, body: &[u8]) -> Result<Self, DecodeError> {
        let entry = Self::decode(body)?;
        if entry.record_id() != *id || entry.version != version {
            return Err(DecodeError::RecordMismatch);
        }
        Ok(entry)
    }

    /// Whether `self` wins over `other` for the same key: the higher version, then the
    /// larger encoding (the gossip store's rule for equal versions).
    pub fn beats(&self, other: &Self) -> bool {
        (self.version, self.encode()) > (other.version, other.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            ring: RingId([0xab; 16]),
            geometry: Geometry::default(),
            start: 258,
            end: 260,
            version: (3 << 48) | 0x1234,
            owner: [7; 32],
        }
    }

    #[test]
    fn encoding_round_trips_and_is_71_bytes() {
        let e = sample();
        let bytes = e.encode();
        assert_eq!(bytes.len(), ENTRY_LEN);
        assert_eq!(Entry::decode(&bytes), Ok(e));
        assert_eq!(
            hex(&bytes[..39]),
            "01abababababababababababababababab0a2000000c1800000102000001040003000000001234"
        );
        let mut buf = [0u8; 100];
        assert_eq!(e.emit(&mut buf), Some(ENTRY_LEN));
        assert_eq!(e.emit(&mut buf[..70]), None);
        let (again, rest) = Entry::decode_prefix(&buf).unwrap();
        assert_eq!(again, e);
        assert_eq!(rest.len(), 29);
        assert_eq!(
            Entry::decode(&buf),
            Err(DecodeError::TrailingBytes(29)),
            "decode wants exactly one entry"
        );
        assert_eq!(e.nets(), vec!["10.33.2.0/23".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(
            e.to_string(),
            "blocks 258..260 -> 0707070707070707 v0x3000000001234"
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for len in 0..ENTRY_LEN {
            assert_eq!(
                Entry::decode(&bytes[..len]),
                Err(DecodeError::Truncated {
                    len,
                    need: ENTRY_LEN
                }),
                "{len}"
            );
        }
    }

    #[test]
    fn bad_fields_are_refused() {
        let good = sample().encode();
        let with = |at: usize, v: u8| {
            let mut b = good;
            b[at] = v;
            Entry::decode(&b)
        };
        assert_eq!(with(0, 2), Err(DecodeError::UnknownFormat(2)));
        assert_eq!(with(21, 33), Err(DecodeError::PrefixLength(33)));
        assert!(matches!(with(20, 1), Err(DecodeError::RangeHostBits(_))));
        assert!(matches!(with(22, 8), Err(DecodeError::Geometry(_))));
        assert!(matches!(with(22, 31), Err(DecodeError::Geometry(_))));
        // start == end, end past the range, start past end
        assert!(matches!(with(26, 4), Err(DecodeError::Span { .. })));
        assert!(matches!(with(28, 0x20), Err(DecodeError::Span { .. })));
        assert!(matches!(with(29, 0), Err(DecodeError::Span { .. })));
    }

    /// xorshift64*, so the run is the same every time.
    fn noise(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic_and_what_parses_round_trips() {
        let mut next = noise(0x5eed);
        let good = sample().encode();
        for i in 0..20_000 {
            let mut buf: Vec<u8> = if i % 2 == 0 {
                good.to_vec()
            } else {
                (0..(next() % 80)).map(|_| next() as u8).collect()
            };
            for _ in 0..(next() % 4) {
                if !buf.is_empty() {
                    let at = (next() as usize) % buf.len();
                    buf[at] = next() as u8;
                }
            }
            if let Ok(e) = Entry::decode(&buf) {
                assert_eq!(e.encode().as_slice(), buf.as_slice());
            }
        }
    }

    #[test]
    fn gossip_record_must_match_its_body() {
        let e = sample();
        let id = e.record_id();
        assert_eq!(&id[..4], &258u32.to_le_bytes());
        assert_eq!(Entry::from_record(&id, e.version, &e.encode()), Ok(e));
        assert_eq!(
            Entry::from_record(&id, e.version + 1, &e.encode()),
            Err(DecodeError::RecordMismatch)
        );
        let mut other = id;
        other[0] ^= 1;
        assert_eq!(
            Entry::from_record(&other, e.version, &e.encode()),
            Err(DecodeError::RecordMismatch)
        );
    }

    #[test]
    fn beats_is_version_then_bytes() {
        let a = sample();
        let newer = Entry {
            version: a.version + 1,
            owner: [0; 32],
            ..a
        };
        assert!(newer.beats(&a) && !a.beats(&newer));
        let tie = Entry {
            owner: [8; 32],
            ..a
        };
        assert!(tie.beats(&a) && !a.beats(&tie));
        assert!(!a.beats(&a));
    }

    #[test]
    fn ring_ids_print_parse_and_differ_by_founder_and_nonce() {
        let a = RingId::derive(&[1; 32], b"nonce");
        let b = RingId::derive(&[2; 32], b"nonce");
        let c = RingId::derive(&[1; 32], b"nonce2");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, RingId::derive(&[1; 32], b"nonce"));
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<RingId>(), Ok(a));
        assert!("xyz".parse::<RingId>().is_err());
        assert!(format!("{}g", &text[..31]).parse::<RingId>().is_err());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<RingId>(&json).unwrap(), a);
    }
}
