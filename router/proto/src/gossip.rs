//! Gossip messages, carried inside sealed sessions as control type `0x02`.
//!
//! Gossip moves *records*: `(kind, id) -> (version, body)`, where `id` is 32 bytes (a node's
//! static key for per-node records) and the body's meaning depends on the kind. The higher
//! version wins. Four operations:
//!
//! ```text
//! 0:type=0x02  1:op
//! push     op=1  2..4:n  then n x record
//!          record = 1:kind  32:id  8:version  2:body length L  L:body
//! digest   op=2  2..6:record count  then 256 x 4:bucket hash
//! listing  op=3  2:bucket  3..12:low (kind, 8-byte id prefix)  12..21:high (same)
//!               21..23:n  then n x (1:kind  8:id prefix  8:version), sorted, all inside [low, high]
//! pull     op=4  2..4:n  then n x (1:kind  8:id prefix)
//! have     op=5  2..4:n  then n x (1:kind  8:id prefix  8:version)
//! ```
//!
//! Byte order: little-endian (counts, versions, bucket hashes, body lengths, and in the
//! record bodies below the endpoint's port and the round-trip times); addresses are their
//! octets in network order. Bodies of [`KIND_RING`] and [`KIND_DNS`] are encoded by their own
//! crates and say their own byte order (ring entries are big-endian).
//!
//! A record's bucket is the first byte of its id. A digest carries, per bucket, the XOR of
//! [`entry_hash`] over the bucket's records: two nodes with the same records have the same
//! digest, and one that differs names the buckets to compare. A listing says which records
//! (by id prefix and version) the sender holds between `low` and `high` of one bucket, so the
//! receiver can push what the sender lacks and pull what it lacks itself. A have announces
//! records the sender just received, without their bodies: the receiver pulls the ones it
//! does not get pushed from elsewhere soon after. Every message fits in [`MAX_GOSSIP_LEN`]
//! bytes.
//!
//! Record kinds: [`KIND_MEMBER`] ([`MemberBody`]), [`KIND_ADJACENCY`] ([`AdjacencyBody`]),
//! [`KIND_RING`] (address ring entries, encoded by `mesh_ipam`) and, from
//! [`FIRST_APP_KIND`] up, application records the core carries without reading: so far
//! [`KIND_DNS`] (encoded by `mesh_dns`).

use crate::ParseError;
use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Type byte of gossip control messages.
pub const CONTROL_GOSSIP: u8 = 0x02;
/// Largest gossip message: with the data header, tag, UDP and IPv4 headers it stays under
/// 1280 bytes, so it crosses any underlay unfragmented.
pub const MAX_GOSSIP_LEN: usize = 1200;
/// Buckets of a digest.
pub const BUCKETS: usize = 256;
/// Bytes of a record before its body.
pub const RECORD_HEADER_LEN: usize = 1 + 32 + 8 + 2;
/// Largest record body that fits a push of one record.
pub const MAX_BODY_LEN: usize = MAX_GOSSIP_LEN - 4 - RECORD_HEADER_LEN;
/// Bytes of one listing entry.
pub const LISTING_ENTRY_LEN: usize = 17;
/// Bytes of a listing before its entries.
pub const LISTING_HEADER_LEN: usize = 23;
/// Bytes of a digest.
pub const DIGEST_LEN: usize = 6 + BUCKETS * 4;

/// Kind of a node's membership record ([`MemberBody`]).
pub const KIND_MEMBER: u8 = 1;
/// Kind of a node's adjacency record ([`AdjacencyBody`]).
pub const KIND_ADJACENCY: u8 = 2;
/// Kind of an address ring entry (automatic IPAM; the body is `mesh_ipam::ring::Entry`'s
/// encoding).
pub const KIND_RING: u8 = 3;
/// Kinds from this one up are application records: the core gossips them without reading
/// them, for the owner of the node (`mesh_core::Node::publish_record`).
pub const FIRST_APP_KIND: u8 = 4;
/// Kind of a DNS record (the first application kind; the body is `mesh_dns::to_gossip`'s
/// encoding).
pub const KIND_DNS: u8 = FIRST_APP_KIND;

const OP_PUSH: u8 = 1;
const OP_DIGEST: u8 = 2;
const OP_LISTING: u8 = 3;
const OP_PULL: u8 = 4;
const OP_HAVE: u8 = 5;
const OP_DIGEST_ASIDE: u8 = 6;
/// Most entries of one have message.
pub const MAX_HAVE_ENTRIES: usize = (MAX_GOSSIP_LEN - 4) / LISTING_ENTRY_LEN;
/// Bytes of one pull entry: kind and id prefix.
pub const PULL_ENTRY_LEN: usize = 1 + 8;
/// Most entries of one pull message: its 4-byte header and this many entries fit
/// [`MAX_GOSSIP_LEN`], so a longer pull is sent in chunks of this many.
pub const MAX_PULL_ENTRIES: usize = (MAX_GOSSIP_LEN - 4) / PULL_ENTRY_LEN;

/// A record as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRecord {
    /// What the body is.
    pub kind: u8,
    /// Whose (usually a node's static key).
    pub id: [u8; 32],
    /// Higher wins.
    pub version: u64,
    /// Kind-specific bytes, at most [`MAX_BODY_LEN`].
    pub body: Vec<u8>,
}

impl WireRecord {
    /// Encoded length inside a push.
    pub fn wire_len(&self) -> usize {
        RECORD_HEADER_LEN + self.body.len()
    }
}

/// A `(kind, id prefix)` pair: how listings and pulls name records.
pub type ShortKey = (u8, [u8; 8]);

/// One entry of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingEntry {
    /// The record.
    pub key: ShortKey,
    /// Its version at the sender.
    pub version: u64,
}

/// A gossip message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipMsg {
    /// Records the receiver may not have.
    Push(Vec<WireRecord>),
    /// The sender's record count and bucket hashes.
    Digest {
        /// Records the sender holds.
        count: u32,
        /// XOR of [`entry_hash`] per bucket.
        buckets: Box<[u32; BUCKETS]>,
        /// Sent to a node the sender did not choose as a neighbour (op 6 rather than 2: the
        /// occasional digest to a random member); answered the same, but it makes the
        /// sender no inbound neighbour of the receiver.
        aside: bool,
    },
    /// The sender's records in `[low, high]` of one bucket.
    Listing {
        /// The bucket (first byte of the ids).
        bucket: u8,
        /// First key covered.
        low: ShortKey,
        /// Last key covered.
        high: ShortKey,
        /// Sorted by key.
        entries: Vec<ListingEntry>,
    },
    /// Records the sender wants pushed.
    Pull(Vec<ShortKey>),
    /// Records the sender has just received (by id prefix and version), announced instead
    /// of pushed.
    Have(Vec<ListingEntry>),
}

/// The hash a record adds to its bucket of a digest. Bodies are not hashed: a version names
/// one body.
pub fn entry_hash(kind: u8, prefix: &[u8; 8], version: u64) -> u32 {
    let mut x = u64::from_le_bytes(*prefix) ^ (u64::from(kind) << 56) ^ version.rotate_left(17);
    // splitmix64's finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x as u32
}

/// The 8-byte prefix of an id.
pub fn prefix(id: &[u8; 32]) -> [u8; 8] {
    let mut p = [0u8; 8];
    p.copy_from_slice(&id[..8]);
    p
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], at: usize) -> Self {
        Self { buf, at }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let s = self
            .buf
            .get(self.at..self.at + n)
            .ok_or(ParseError::Truncated {
                len: self.buf.len(),
                need: self.at + n,
            })?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ParseError> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(w))
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut w = [0u8; N];
        w.copy_from_slice(self.take(N)?);
        Ok(w)
    }
    fn short_key(&mut self) -> Result<ShortKey, ParseError> {
        Ok((self.u8()?, self.arr::<8>()?))
    }
    fn end(&self, what: &'static str) -> Result<(), ParseError> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            Err(ParseError::Malformed(what))
        }
    }
}

impl GossipMsg {
    /// Parses a gossip message (including its type byte).
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        if buf.len() > MAX_GOSSIP_LEN {
            return Err(ParseError::Malformed("gossip message too long"));
        }
        let mut r = Reader::new(buf, 0);
        let ty = r.u8()?;
        if ty != CONTROL_GOSSIP {
            return Err(ParseError::UnknownType(ty));
        }
        match r.u8()? {
            OP_PUSH => {
                let n = usize::from(r.u16()?);
                let mut records = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let kind = r.u8()?;
                    let id = r.arr::<32>()?;
                    let version = r.u64()?;
                    let len = usize::from(r.u16()?);
                    let body = r.take(len)?.to_vec();
                    records.push(WireRecord {
                        kind,
                        id,
                        version,
                        body,
                    });
                }
                r.end("trailing bytes after gossip push")?;
                Ok(Self::Push(records))
            }
            op @ (OP_DIGEST | OP_DIGEST_ASIDE) => {
                let count = r.u32()?;
                let mut buckets = Box::new([0u32; BUCKETS]);
                for b in buckets.iter_mut() {
                    *b = r.u32()?;
                }
                r.end("trailing bytes after gossip digest")?;
                Ok(Self::Digest {
                    count,
                    buckets,
                    aside: op == OP_DIGEST_ASIDE,
                })
            }
            OP_LISTING => {
                let bucket = r.u8()?;
                let low = r.short_key()?;
                let high = r.short_key()?;
                if low > high || low.1[0] != bucket || high.1[0] != bucket {
                    return Err(ParseError::Malformed("listing bounds outside its bucket"));
                }
                let n = usize::from(r.u16()?);
                let mut entries = Vec::with_capacity(n.min(128));
                let mut last: Option<ShortKey> = None;
                for _ in 0..n {
                    let key = r.short_key()?;
                    let version = r.u64()?;
                    if key < low || key > high || last.is_some_and(|l| l >= key) {
                        return Err(ParseError::Malformed(
                            "listing entries unsorted or out of bounds",
                        ));
                    }
                    last = Some(key);
                    entries.push(ListingEntry { key, version });
                }
                r.end("trailing bytes after gossip listing")?;
                Ok(Self::Listing {
                    bucket,
                    low,
                    high,
                    entries,
                })
            }
            OP_PULL => {
                let n = usize::from(r.u16()?);
                let mut keys = Vec::with_capacity(n.min(128));
                for _ in 0..n {
                    keys.push(r.short_key()?);
                }
                r.end("trailing bytes after gossip pull")?;
                Ok(Self::Pull(keys))
            }
            OP_HAVE => {
                let n = usize::from(r.u16()?);
                let mut entries = Vec::with_capacity(n.min(MAX_HAVE_ENTRIES));
                for _ in 0..n {
                    let key = r.short_key()?;
                    let version = r.u64()?;
                    entries.push(ListingEntry { key, version });
                }
                r.end("trailing bytes after gossip have")?;
                Ok(Self::Have(entries))
            }
            _ => Err(ParseError::Malformed("unknown gossip operation")),
        }
    }

    /// Bytes [`Self::to_bytes`] returns.
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::Push(records) => 4 + records.iter().map(WireRecord::wire_len).sum::<usize>(),
            Self::Digest { .. } => DIGEST_LEN,
            Self::Listing { entries, .. } => LISTING_HEADER_LEN + entries.len() * LISTING_ENTRY_LEN,
            Self::Pull(keys) => 4 + keys.len() * PULL_ENTRY_LEN,
            Self::Have(entries) => 4 + entries.len() * LISTING_ENTRY_LEN,
        }
    }

    /// The encoded message; `None` when it would exceed [`MAX_GOSSIP_LEN`].
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let len = self.buffer_len();
        if len > MAX_GOSSIP_LEN {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        out.push(CONTROL_GOSSIP);
        match self {
            Self::Push(records) => {
                out.push(OP_PUSH);
                out.extend_from_slice(&(records.len() as u16).to_le_bytes());
                for rec in records {
                    out.push(rec.kind);
                    out.extend_from_slice(&rec.id);
                    out.extend_from_slice(&rec.version.to_le_bytes());
                    out.extend_from_slice(&(rec.body.len() as u16).to_le_bytes());
                    out.extend_from_slice(&rec.body);
                }
            }
            Self::Digest {
                count,
                buckets,
                aside,
            } => {
                out.push(if *aside { OP_DIGEST_ASIDE } else { OP_DIGEST });
                out.extend_from_slice(&count.to_le_bytes());
                for b in buckets.iter() {
                    out.extend_from_slice(&b.to_le_bytes());
                }
            }
            Self::Listing {
                bucket,
                low,
                high,
                entries,
            } => {
                out.push(OP_LISTING);
                out.push(*bucket);
                for k in [low, high] {
                    out.push(k.0);
                    out.extend_from_slice(&k.1);
                }
                out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
                for e in entries {
                    out.push(e.key.0);
                    out.extend_from_slice(&e.key.1);
                    out.extend_from_slice(&e.version.to_le_bytes());
                }
            }
            Self::Pull(keys) => {
                out.push(OP_PULL);
                out.extend_from_slice(&(keys.len() as u16).to_le_bytes());
                for k in keys {
                    out.push(k.0);
                    out.extend_from_slice(&k.1);
                }
            }
            Self::Have(entries) => {
                out.push(OP_HAVE);
                out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
                for e in entries {
                    out.push(e.key.0);
                    out.extend_from_slice(&e.key.1);
                    out.extend_from_slice(&e.version.to_le_bytes());
                }
            }
        }
        debug_assert_eq!(out.len(), len);
        Some(out)
    }
}

/// Longest member name, bytes.
pub const MAX_MEMBER_NAME: usize = 63;
/// Most blocks in a member record.
pub const MAX_MEMBER_BLOCKS: usize = 64;
/// Most neighbours in an adjacency record.
pub const MAX_ADJACENCY: usize = 64;

/// A node's membership record: who it is and how to reach it.
///
/// ```text
/// 1:flags (bit 0: left the cluster)  1:name length N  N:name
/// 1:endpoint family (0 none, 4 IPv4)  [4:address 2:port]
/// 1:block count M  M x (4:address 1:prefix length)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberBody {
    /// Human name.
    pub name: String,
    /// The address peers should send to, when the node knows it.
    pub endpoint: Option<SocketAddrV4>,
    /// Blocks it announces.
    pub blocks: Vec<Ipv4Net>,
    /// It left the cluster on purpose (or was removed).
    pub left: bool,
}

impl MemberBody {
    /// Encodes the body; `None` if a field exceeds its limit.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        if self.name.len() > MAX_MEMBER_NAME || self.blocks.len() > MAX_MEMBER_BLOCKS {
            return None;
        }
        let mut out = Vec::with_capacity(4 + self.name.len() + 6 + self.blocks.len() * 5);
        out.push(u8::from(self.left));
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        match self.endpoint {
            None => out.push(0),
            Some(ep) => {
                out.push(4);
                out.extend_from_slice(&ep.ip().octets());
                out.extend_from_slice(&ep.port().to_le_bytes());
            }
        }
        out.push(self.blocks.len() as u8);
        for b in &self.blocks {
            out.extend_from_slice(&b.network().octets());
            out.push(b.prefix_len());
        }
        Some(out)
    }

    /// Parses a body.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(buf, 0);
        let flags = r.u8()?;
        if flags & !1 != 0 {
            return Err(ParseError::Malformed("unknown member flags"));
        }
        let name_len = usize::from(r.u8()?);
        if name_len > MAX_MEMBER_NAME {
            return Err(ParseError::Malformed("name too long"));
        }
        let name = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| ParseError::Malformed("name is not UTF-8"))?
            .to_owned();
        let endpoint = match r.u8()? {
            0 => None,
            4 => {
                let a = r.arr::<4>()?;
                let port = r.u16()?;
                Some(SocketAddrV4::new(Ipv4Addr::from(a), port))
            }
            _ => return Err(ParseError::Malformed("unknown address family")),
        };
        let count = usize::from(r.u8()?);
        if count > MAX_MEMBER_BLOCKS {
            return Err(ParseError::Malformed("too many blocks"));
        }
        let mut blocks = Vec::with_capacity(count);
        for _ in 0..count {
            let a = Ipv4Addr::from(r.arr::<4>()?);
            let net = Ipv4Net::new(a, r.u8()?)
                .map_err(|_| ParseError::Malformed("prefix length above 32"))?;
            if net.network() != a {
                return Err(ParseError::Malformed("block has host bits set"));
            }
            blocks.push(net);
        }
        r.end("trailing bytes after member record")?;
        Ok(Self {
            name,
            endpoint,
            blocks,
            left: flags & 1 != 0,
        })
    }
}

/// A node's adjacency record: the neighbours it has live sessions with, and their RTT.
///
/// ```text
/// 1:count N  N x (8:key prefix  2:RTT in milliseconds, saturating)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdjacencyBody {
    /// Sorted by prefix, at most [`MAX_ADJACENCY`].
    pub neighbours: Vec<([u8; 8], u16)>,
}

impl AdjacencyBody {
    /// Encodes the body; `None` past [`MAX_ADJACENCY`] entries.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        if self.neighbours.len() > MAX_ADJACENCY {
            return None;
        }
        let mut out = Vec::with_capacity(1 + self.neighbours.len() * 10);
        out.push(self.neighbours.len() as u8);
        for (p, rtt) in &self.neighbours {
            out.extend_from_slice(p);
            out.extend_from_slice(&rtt.to_le_bytes());
        }
        Some(out)
    }

    /// Parses a body.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(buf, 0);
        let n = usize::from(r.u8()?);
        if n > MAX_ADJACENCY {
            return Err(ParseError::Malformed("too many neighbours"));
        }
        let mut neighbours = Vec::with_capacity(n);
        for _ in 0..n {
            let p = r.arr::<8>()?;
            let rtt = r.u16()?;
            neighbours.push((p, rtt));
        }
        r.end("trailing bytes after adjacency record")?;
        Ok(Self { neighbours })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<GossipMsg> {
        let mut buckets = Box::new([0u32; BUCKETS]);
        buckets[3] = 0xdead_beef;
        vec![
            GossipMsg::Push(vec![
                WireRecord {
                    kind: KIND_MEMBER,
                    id: [7; 32],
                    version: 42,
                    body: vec![1, 2, 3],
                },
                WireRecord {
                    kind: KIND_ADJACENCY,
                    id: [9; 32],
                    version: 1,
                    body: vec![],
                },
            ]),
            GossipMsg::Push(vec![]),
            GossipMsg::Digest {
                count: 5,
                buckets: buckets.clone(),
                aside: false,
            },
            GossipMsg::Listing {
                bucket: 7,
                low: (0, [7, 0, 0, 0, 0, 0, 0, 0]),
                high: (255, [7, 255, 255, 255, 255, 255, 255, 255]),
                entries: vec![
                    ListingEntry {
                        key: (1, [7; 8]),
                        version: 3,
                    },
                    ListingEntry {
                        key: (2, [7; 8]),
                        version: 4,
                    },
                ],
            },
            GossipMsg::Pull(vec![(1, [1; 8]), (2, [2; 8])]),
            GossipMsg::Have(vec![
                ListingEntry {
                    key: (2, [9; 8]),
                    version: 7,
                },
                ListingEntry {
                    key: (1, [3; 8]),
                    version: u64::MAX,
                },
            ]),
            GossipMsg::Digest {
                count: 6,
                buckets,
                aside: true,
            },
        ]
    }

    #[test]
    fn messages_round_trip_and_truncations_fail() {
        for msg in samples() {
            let bytes = msg.to_bytes().unwrap();
            assert_eq!(bytes.len(), msg.buffer_len());
            assert_eq!(GossipMsg::parse(&bytes).unwrap(), msg);
            for len in 0..bytes.len() {
                assert!(GossipMsg::parse(&bytes[..len]).is_err(), "{msg:?} at {len}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(GossipMsg::parse(&longer).is_err());
        }
    }

    #[test]
    fn oversized_messages_are_refused_both_ways() {
        let big = GossipMsg::Push(vec![WireRecord {
            kind: 1,
            id: [0; 32],
            version: 0,
            body: vec![0; MAX_BODY_LEN + 1],
        }]);
        assert_eq!(big.to_bytes(), None);
        let fits = GossipMsg::Push(vec![WireRecord {
            kind: 1,
            id: [0; 32],
            version: 0,
            body: vec![0; MAX_BODY_LEN],
        }]);
        assert_eq!(fits.to_bytes().unwrap().len(), MAX_GOSSIP_LEN);
        let entry = ListingEntry {
            key: (1, [0; 8]),
            version: 0,
        };
        assert!(
            GossipMsg::Have(vec![entry; MAX_HAVE_ENTRIES])
                .to_bytes()
                .is_some()
        );
        assert_eq!(
            GossipMsg::Have(vec![entry; MAX_HAVE_ENTRIES + 1]).to_bytes(),
            None
        );
        let pull = GossipMsg::Pull(vec![(1, [0; 8]); MAX_PULL_ENTRIES]);
        let bytes = pull.to_bytes().unwrap();
        assert_eq!(bytes.len(), 4 + MAX_PULL_ENTRIES * PULL_ENTRY_LEN);
        assert_eq!(GossipMsg::parse(&bytes).unwrap(), pull);
        assert_eq!(
            GossipMsg::Pull(vec![(1, [0; 8]); MAX_PULL_ENTRIES + 1]).to_bytes(),
            None
        );
        assert!(GossipMsg::parse(&[CONTROL_GOSSIP, OP_PUSH, 0, 0, 0].repeat(300)).is_err());
    }

    #[test]
    fn listings_must_be_sorted_and_inside_their_bucket() {
        let GossipMsg::Listing {
            bucket,
            low,
            high,
            mut entries,
        } = samples().remove(3)
        else {
            unreachable!()
        };
        entries.reverse();
        let unsorted = GossipMsg::Listing {
            bucket,
            low,
            high,
            entries,
        };
        assert!(GossipMsg::parse(&unsorted.to_bytes().unwrap()).is_err());
        let wrong_bucket = GossipMsg::Listing {
            bucket: 8,
            low,
            high,
            entries: vec![],
        };
        assert!(GossipMsg::parse(&wrong_bucket.to_bytes().unwrap()).is_err());
    }

    #[test]
    fn bodies_round_trip_and_reject_garbage() {
        let m = MemberBody {
            name: "node-a".into(),
            endpoint: Some("198.18.0.1:6788".parse().unwrap()),
            blocks: vec!["10.32.1.0/24".parse().unwrap()],
            left: false,
        };
        let b = m.to_bytes().unwrap();
        assert_eq!(MemberBody::parse(&b).unwrap(), m);
        for len in 0..b.len() {
            assert!(MemberBody::parse(&b[..len]).is_err());
        }
        let none = MemberBody {
            endpoint: None,
            left: true,
            ..m.clone()
        };
        assert_eq!(MemberBody::parse(&none.to_bytes().unwrap()).unwrap(), none);
        let mut bad = b.clone();
        *bad.last_mut().unwrap() = 33;
        assert!(MemberBody::parse(&bad).is_err());

        let a = AdjacencyBody {
            neighbours: vec![([1; 8], 3), ([2; 8], u16::MAX)],
        };
        let b = a.to_bytes().unwrap();
        assert_eq!(AdjacencyBody::parse(&b).unwrap(), a);
        for len in 0..b.len() {
            assert!(AdjacencyBody::parse(&b[..len]).is_err());
        }
    }

    #[test]
    fn entry_hash_depends_on_every_field() {
        let h = entry_hash(1, &[1; 8], 1);
        assert_ne!(h, entry_hash(2, &[1; 8], 1));
        assert_ne!(h, entry_hash(1, &[2; 8], 1));
        assert_ne!(h, entry_hash(1, &[1; 8], 2));
    }
}
