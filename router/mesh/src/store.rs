//! [`Store`]: the versioned records one node holds, with the per-bucket hashes a digest
//! sends.

use mesh_proto::gossip::{
    BUCKETS, GossipMsg, LISTING_ENTRY_LEN, LISTING_HEADER_LEN, ListingEntry, MAX_GOSSIP_LEN,
    ShortKey, entry_hash, prefix,
};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Which record: its kind and 32-byte id. Ordered by kind, then id byte by byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordKey {
    /// Kind (see `mesh_proto::gossip::KIND_*`).
    pub kind: u8,
    /// Id, usually the static key of the node the record is about.
    pub id: [u8; 32],
}

impl Ord for RecordKey {
    /// The order of `(kind, id)` compared byte by byte, read as four big-endian words: the
    /// store's maps compare keys at every step, and a `memcmp` call per comparison was a
    /// tenth of a large simulation's time.
    fn cmp(&self, other: &Self) -> Ordering {
        self.kind
            .cmp(&other.kind)
            .then_with(|| words(&self.id).cmp(&words(&other.id)))
    }
}

impl PartialOrd for RecordKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An id as big-endian words: they compare as the bytes do.
pub(crate) fn words(id: &[u8; 32]) -> [u64; 4] {
    let mut w = [0u64; 4];
    for (word, chunk) in w.iter_mut().zip(id.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *word = u64::from_be_bytes(b);
    }
    w
}

impl RecordKey {
    /// How listings and pulls name it.
    pub fn short(&self) -> ShortKey {
        (self.kind, prefix(&self.id))
    }

    /// The digest bucket it counts in.
    pub fn bucket(&self) -> u8 {
        self.id[0]
    }
}

/// A record's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Higher wins.
    pub version: u64,
    /// Kind-specific bytes.
    pub body: Vec<u8>,
}

/// What [`Store::merge`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The record was new or newer and is now stored.
    Applied,
    /// We hold the same version.
    Same,
    /// We hold a newer version.
    Older,
}

/// Records by key, with the XOR of their entry hashes per bucket.
#[derive(Debug, Clone)]
pub struct Store {
    records: BTreeMap<RecordKey, Record>,
    kinds: BTreeSet<u8>,
    buckets: Box<[u32; BUCKETS]>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            records: BTreeMap::new(),
            kinds: BTreeSet::new(),
            buckets: Box::new([0; BUCKETS]),
        }
    }
}

fn hash_of(key: &RecordKey, version: u64) -> u32 {
    entry_hash(key.kind, &prefix(&key.id), version)
}

impl Store {
    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// One record.
    pub fn get(&self, key: &RecordKey) -> Option<&Record> {
        self.records.get(key)
    }

    /// Every record, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&RecordKey, &Record)> {
        self.records.iter()
    }

    /// Every record of one kind, by id.
    pub fn of_kind(&self, kind: u8) -> impl Iterator<Item = (&RecordKey, &Record)> {
        let lo = RecordKey { kind, id: [0; 32] };
        let hi = RecordKey {
            kind,
            id: [0xff; 32],
        };
        self.records.range(lo..=hi)
    }

    /// Stores `(version, body)` under `key` if it is newer than what is held. Equal versions
    /// with different bodies (two writers, which only a restart that lost its version or a
    /// misbehaving member causes) are settled by the larger body, so every node picks the
    /// same one.
    pub fn merge(&mut self, key: RecordKey, version: u64, body: &[u8]) -> Merge {
        if let Some(old) = self.records.get_mut(&key) {
            let newer = version > old.version || (version == old.version && body > &old.body[..]);
            if !newer {
                return if version == old.version {
                    Merge::Same
                } else {
                    Merge::Older
                };
            }
            let b = usize::from(key.bucket());
            self.buckets[b] ^= hash_of(&key, old.version) ^ hash_of(&key, version);
            old.version = version;
            old.body.clear();
            old.body.extend_from_slice(body);
            return Merge::Applied;
        }
        self.buckets[usize::from(key.bucket())] ^= hash_of(&key, version);
        self.kinds.insert(key.kind);
        self.records.insert(
            key,
            Record {
                version,
                body: body.to_vec(),
            },
        );
        Merge::Applied
    }

    /// Forgets a record. Returns whether it was held.
    pub fn remove(&mut self, key: &RecordKey) -> bool {
        match self.records.remove(key) {
            Some(old) => {
                self.buckets[usize::from(key.bucket())] ^= hash_of(key, old.version);
                true
            }
            None => false,
        }
    }

    /// The digest of everything held, as sent to a neighbour.
    pub fn digest(&self) -> GossipMsg {
        self.digest_sent(false)
    }

    /// The digest of everything held; `aside`: sent to a node that is not a neighbour.
    pub fn digest_sent(&self, aside: bool) -> GossipMsg {
        GossipMsg::Digest {
            count: self.records.len().min(u32::MAX as usize) as u32,
            buckets: self.buckets.clone(),
            aside,
        }
    }

    /// The hash of one bucket.
    pub fn bucket_hash(&self, bucket: u8) -> u32 {
        self.buckets[usize::from(bucket)]
    }

    /// The records of one bucket between two short keys (inclusive), in short-key order.
    pub fn in_range(
        &self,
        bucket: u8,
        low: ShortKey,
        high: ShortKey,
    ) -> impl Iterator<Item = (&RecordKey, &Record)> {
        self.kinds
            .iter()
            .filter(move |k| **k >= low.0 && **k <= high.0)
            .flat_map(move |&kind| {
                let mut lo = [0u8; 32];
                lo[0] = bucket;
                let mut hi = [0xffu8; 32];
                hi[0] = bucket;
                self.records
                    .range(RecordKey { kind, id: lo }..=RecordKey { kind, id: hi })
            })
            .filter(move |(k, _)| {
                let s = k.short();
                s >= low && s <= high
            })
    }

    /// Records whose short key is `short` (one, except for an 8-byte prefix collision).
    pub fn by_short(&self, short: ShortKey) -> impl Iterator<Item = (&RecordKey, &Record)> {
        let mut lo = [0u8; 32];
        lo[..8].copy_from_slice(&short.1);
        let mut hi = [0xffu8; 32];
        hi[..8].copy_from_slice(&short.1);
        self.records.range(
            RecordKey {
                kind: short.0,
                id: lo,
            }..=RecordKey {
                kind: short.0,
                id: hi,
            },
        )
    }

    /// Our listing of one whole bucket, in as many messages as it takes.
    pub fn listings(&self, bucket: u8) -> Vec<GossipMsg> {
        let per_msg = (MAX_GOSSIP_LEN - LISTING_HEADER_LEN) / LISTING_ENTRY_LEN;
        let bucket_low: ShortKey = (0, [bucket, 0, 0, 0, 0, 0, 0, 0]);
        let bucket_high: ShortKey = (0xff, [bucket, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let mut entries: Vec<ListingEntry> = self
            .in_range(bucket, bucket_low, bucket_high)
            .map(|(k, r)| ListingEntry {
                key: k.short(),
                version: r.version,
            })
            .collect();
        entries.sort_by_key(|e| e.key);
        // Prefix collisions would repeat a short key; keep the newest so the listing stays
        // strictly sorted.
        entries.dedup_by(|later, earlier| {
            if later.key == earlier.key {
                earlier.version = earlier.version.max(later.version);
                true
            } else {
                false
            }
        });
        if entries.is_empty() {
            return vec![GossipMsg::Listing {
                bucket,
                low: bucket_low,
                high: bucket_high,
                entries,
            }];
        }
        let chunks: Vec<&[ListingEntry]> = entries.chunks(per_msg).collect();
        let n = chunks.len();
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let low = if i == 0 { bucket_low } else { chunk[0].key };
                let high = if i + 1 == n {
                    bucket_high
                } else {
                    // Up to just before the next chunk's first key.
                    let next = chunks[i + 1][0].key;
                    before(next)
                };
                GossipMsg::Listing {
                    bucket,
                    low,
                    high,
                    entries: chunk.to_vec(),
                }
            })
            .collect()
    }
}

/// The short key just before `k`.
fn before(k: ShortKey) -> ShortKey {
    let (kind, p) = k;
    let v = u64::from_be_bytes(p);
    if v & 0x00ff_ffff_ffff_ffff == 0 {
        // First key of this kind in the bucket: end at the previous kind's last key.
        let mut last = [0xffu8; 8];
        last[0] = p[0];
        (kind.saturating_sub(1), last)
    } else {
        (kind, (v - 1).to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: u8, first: u8, n: u8) -> RecordKey {
        let mut id = [n; 32];
        id[0] = first;
        RecordKey { kind, id }
    }

    #[test]
    fn keys_order_as_kind_then_id_bytes() {
        // Ids that differ in one byte at every position, both ways, and in the kind.
        let mut keys = Vec::new();
        for kind in [0u8, 1, 255] {
            for pos in [0usize, 7, 8, 15, 16, 31] {
                for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                    let mut id = [0x80u8; 32];
                    id[pos] = v;
                    keys.push(RecordKey { kind, id });
                }
            }
        }
        for a in &keys {
            for b in &keys {
                let bytes = (a.kind, &a.id[..]).cmp(&(b.kind, &b.id[..]));
                assert_eq!(a.cmp(b), bytes, "{a:?} vs {b:?}");
                assert_eq!(a.partial_cmp(b), Some(bytes));
            }
        }
    }

    #[test]
    fn digests_match_iff_same_records_whatever_the_order() {
        let mut a = Store::default();
        let mut b = Store::default();
        a.merge(key(1, 1, 1), 1, b"x");
        a.merge(key(1, 1, 1), 5, b"y");
        a.merge(key(2, 9, 9), 2, b"z");
        b.merge(key(2, 9, 9), 2, b"z");
        b.merge(key(1, 1, 1), 5, b"y");
        assert_eq!(a.digest(), b.digest());
        b.merge(key(1, 1, 1), 6, b"w");
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.bucket_hash(9), b.bucket_hash(9));
        assert_ne!(a.bucket_hash(1), b.bucket_hash(1));
    }

    #[test]
    fn merge_keeps_the_newest_and_settles_ties_the_same_way_everywhere() {
        let mut s = Store::default();
        assert_eq!(s.merge(key(1, 1, 1), 3, b"b"), Merge::Applied);
        assert_eq!(s.merge(key(1, 1, 1), 2, b"z"), Merge::Older);
        assert_eq!(s.merge(key(1, 1, 1), 3, b"b"), Merge::Same);
        assert_eq!(s.merge(key(1, 1, 1), 3, b"a"), Merge::Same);
        assert_eq!(s.merge(key(1, 1, 1), 3, b"c"), Merge::Applied);
        assert_eq!(s.get(&key(1, 1, 1)).unwrap().body, b"c");
    }

    #[test]
    fn listings_cover_the_bucket_in_sorted_chunks() {
        let mut s = Store::default();
        for n in 0..200u8 {
            s.merge(key(1 + n % 2, 4, n), u64::from(n), b"");
        }
        s.merge(key(1, 5, 0), 1, b"");
        let msgs = s.listings(4);
        assert!(msgs.len() > 1);
        let mut total = 0;
        let mut prev_high: Option<ShortKey> = None;
        for m in &msgs {
            let bytes = m.to_bytes().unwrap();
            let GossipMsg::Listing {
                bucket,
                low,
                high,
                entries,
            } = GossipMsg::parse(&bytes).unwrap()
            else {
                panic!()
            };
            assert_eq!(bucket, 4);
            if let Some(p) = prev_high {
                assert!(low > p);
            }
            prev_high = Some(high);
            total += entries.len();
            // Every record of the store in [low, high] is listed.
            assert_eq!(s.in_range(4, low, high).count(), entries.len());
        }
        assert_eq!(total, 200);
        assert_eq!(s.listings(77).len(), 1);
    }
}
