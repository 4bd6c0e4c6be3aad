//! Cluster-wide block ownership: which node owns which block of the cluster range.
//!
//! Every node holds a replica, a [`Ring`]. The range is cut into equal blocks (default
//! 10.32.0.0/12 in /24s: 4,096 blocks) and ownership is written as [`Entry`] records: "blocks
//! `start..end` belong to `owner`, as of `version`", keyed by `start`. The gossip layer
//! carries entries as versioned records; [`Ring::merge`] keeps, per key, the entry with the
//! highest `(version, encoding)` (a join-semilattice: any order, any repetition, any subset
//! gives the same result), and a block belongs to the owner named by the highest-ranked entry
//! that covers it.
//!
//! Ownership changes hands in three ways only, never by a node claiming space it thinks free:
//!
//! - [`Ring::found`]: the one founder of a cluster owns the whole range (genesis), under a
//!   [`RingId`] it derives from its key and a nonce. Entries of another ring are refused
//!   ([`MergeError::DifferentCluster`]).
//! - [`Ring::donate`]: an owner gives free blocks of its own to another node. Only the owner
//!   writes its blocks, and it writes them above every version covering them, so along each
//!   block's history every entry names the writer of the next one.
//! - [`Ring::reclaim`]: one node takes over every block of a node the operator declared dead
//!   (`meshctl rmpeer`, or its Kubernetes Node deleted). A reclaim jumps to the next *epoch*
//!   of the version space, so it outranks anything the dead node wrote or writes later.
//!
//! Why no block is ever owned by two live nodes, what we kept from Weave Net's
//! ring-with-donation and what changed, and the operator contract of reclaim:
//! `docs/ipam.md`.
//!
//! The ring is sans-I/O and deterministic: no clock, no RNG, no files. Callers persist
//! [`RingState`] (before anything this node wrote leaves it, see [`Ring::poll_write`]), pass
//! received entries to [`Ring::merge`], and hand the blocks of [`Ring::owned_blocks`] to the
//! node's [`crate::LocalPool`].

mod entry;
mod geometry;
mod sip;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use entry::{
    DecodeError, ENTRY_FORMAT, ENTRY_LEN, Entry, NodeId, RingId, RingIdError, short_id,
};
pub use geometry::{
    DEFAULT_BLOCK_PREFIX, DEFAULT_RANGE, Geometry, GeometryError, MAX_BLOCK_PREFIX, MAX_BLOCKS,
};

/// Versions are `epoch << EPOCH_SHIFT | counter`. An owner's write takes the highest version
/// covering the blocks it writes plus one; a reclaim takes the next epoch, with a 40-bit tag
/// of the reclaimer below it. 2^48 writes fit in one epoch, 2^16 reclaims in one block's
/// history.
pub const EPOCH_SHIFT: u32 = 48;
/// The low bits of a reclaim's version: the reclaimer's tag, so two reclaims of the same
/// blocks by different nodes get different versions (and the gossip store, which compares
/// versions only, still sees that they differ).
const TAG_BITS: u32 = 40;

/// The version a reclaim by `reclaimer` writes over blocks whose highest version is `max`:
/// the next epoch, with the reclaimer's 40-bit tag below it. `None` when the epochs are
/// exhausted.
fn reclaim_version(max: u64, reclaimer: &NodeId) -> Option<u64> {
    let epoch = (max >> EPOCH_SHIFT) + 1;
    if epoch >> (64 - EPOCH_SHIFT) != 0 {
        return None;
    }
    let mut tag = [0u8; 8];
    tag[3..].copy_from_slice(&reclaimer[..5]);
    Some(epoch << EPOCH_SHIFT | (u64::from_be_bytes(tag) & ((1 << TAG_BITS) - 1)))
}

/// One key's record, as held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    end: u32,
    version: u64,
    owner: NodeId,
}

impl Rec {
    /// The order of two records with the same key, the same as [`Entry::beats`]: version,
    /// then the encoding, which for one ring and key differs first in `end`, then `owner`.
    fn rank(&self) -> (u64, u32, NodeId) {
        (self.version, self.end, self.owner)
    }
}

/// The order of records covering one block: highest version wins; the rest only decides
/// between records no correct run produces (equal versions over the same block).
type Rank = (u64, u32, u32, NodeId);

fn rank(start: u32, r: &Rec) -> Rank {
    (r.version, start, r.end, r.owner)
}

/// A run of blocks whose winning record is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    start: u32,
    end: u32,
    key: u32,
    owner: NodeId,
}

/// Who owns each block, from the records: a sweep over their starts and ends.
fn resolve(records: &BTreeMap<u32, Rec>) -> Vec<Seg> {
    let mut bounds: Vec<u32> = records.iter().flat_map(|(s, r)| [*s, r.end]).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut by_end: Vec<(u32, u32)> = records.iter().map(|(s, r)| (r.end, *s)).collect();
    by_end.sort_unstable();
    let mut starts = records.iter().peekable();
    let mut ends = by_end.iter().peekable();
    let mut active: BTreeSet<Rank> = BTreeSet::new();
    let mut segs: Vec<Seg> = Vec::new();
    for (i, &p) in bounds.iter().enumerate() {
        while let Some(&&(e, s)) = ends.peek()
            && e == p
        {
            if let Some(r) = records.get(&s) {
                active.remove(&rank(s, r));
            }
            ends.next();
        }
        while let Some(&(&s, r)) = starts.peek()
            && s == p
        {
            active.insert(rank(s, r));
            starts.next();
        }
        let Some(&q) = bounds.get(i + 1) else {
            break;
        };
        if let Some(&(_, key, _, owner)) = active.last() {
            match segs.last_mut() {
                Some(last) if last.end == p && last.key == key => last.end = q,
                _ => segs.push(Seg {
                    start: p,
                    end: q,
                    key,
                    owner,
                }),
            }
        }
    }
    segs
}

/// The owner of block `b` in `segs`.
fn owner_in(segs: &[Seg], b: u32) -> Option<NodeId> {
    let i = segs.partition_point(|s| s.end <= b);
    segs.get(i).filter(|s| s.start <= b).map(|s| s.owner)
}

/// What a node asks a donor for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Up to this many free blocks (a donor gives at most half its free blocks, rounded up,
    /// so it keeps room for its own pods), from its largest free runs.
    Blocks(u32),
    /// This block, which must be the donor's and free.
    Block(Ipv4Net),
    /// Every free block (a node leaving the cluster hands its space over).
    AllFree,
}

/// A version would pass `u64::MAX` (2^48 writes or 2^16 reclaims of the same blocks: not
/// reachable in practice, but refused rather than wrapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ownership version of these blocks cannot rise any further")]
pub struct VersionExhausted;

/// Why [`Ring::found`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoundError {
    /// This replica already belongs to a ring (its own, or one it joined).
    #[error(
        "this node already belongs to cluster ring {0}: a cluster is founded once, by one node; \
         `meshd reset` forgets the ring"
    )]
    AlreadyInRing(RingId),
}

fn fmt_owner(owner: &Option<NodeId>) -> String {
    owner.as_ref().map_or("unknown".to_owned(), short_id)
}

/// Why [`Ring::donate`] gave nothing. All but `Version` are the asker's or the caller's to
/// handle (ask another donor, pick another block).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DonateError {
    /// This replica belongs to no ring yet.
    #[error("this node belongs to no cluster ring yet: found one or join one first")]
    NotInRing,
    /// Donor and recipient are the same node.
    #[error("a node cannot donate blocks to itself")]
    ToSelf,
    /// The block asked for is not one block of this ring.
    #[error("{block} is not one block of {geometry}")]
    NotABlock {
        /// What was asked for.
        block: Ipv4Net,
        /// The ring's range and block size.
        geometry: Geometry,
    },
    /// The block asked for is not this node's.
    #[error("{block} is not this node's to give: its owner is {}", fmt_owner(.owner))]
    NotOwner {
        /// The block.
        block: Ipv4Net,
        /// Its owner as this node knows it.
        owner: Option<NodeId>,
    },
    /// The block asked for has addresses in use.
    #[error("{0} has pod addresses in use; only free blocks are donated")]
    InUse(Ipv4Net),
    /// Every block of this node has addresses in use (or it owns none).
    #[error("this node has no free block to donate ({owned} blocks owned, none free)")]
    NothingFree {
        /// Blocks this node owns.
        owned: u32,
    },
    /// See [`VersionExhausted`].
    #[error(transparent)]
    Version(#[from] VersionExhausted),
}

/// Why [`Ring::reclaim`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReclaimError {
    /// This replica belongs to no ring yet.
    #[error("this node belongs to no cluster ring yet")]
    NotInRing,
    /// A node cannot declare itself dead.
    #[error("a node cannot reclaim its own blocks")]
    OwnNode,
    /// See [`VersionExhausted`].
    #[error(transparent)]
    Version(#[from] VersionExhausted),
}

/// Why [`Ring::merge`] refused a batch. Nothing of the batch was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The entries belong to another cluster: two clusters founded separately met.
    #[error(
        "refusing address ownership of cluster ring {theirs}: this node belongs to cluster \
         ring {ours}. The two clusters were started separately, and each owns the whole \
         cluster range, so they cannot share it without handing out addresses twice. Reset the \
         nodes of one of them (usually the smaller) with `meshd reset` and start them again \
         with a --peer of the other; see docs/ipam.md"
    )]
    DifferentCluster {
        /// This node's ring.
        ours: RingId,
        /// The ring the entries belong to.
        theirs: RingId,
    },
    /// The entries were written for another range or block size.
    #[error(
        "refusing address ownership written for {theirs}: this node is configured with \
         {ours}; every member of a cluster must use the same cluster range and block size"
    )]
    Geometry {
        /// This node's geometry.
        ours: Geometry,
        /// The entries' geometry.
        theirs: Geometry,
    },
}

/// Blocks whose owner changed, contiguous, from one owner to one other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerChange {
    /// First block index.
    pub start: u32,
    /// Block index after the last.
    pub end: u32,
    /// The blocks, as the fewest prefixes.
    pub nets: Vec<Ipv4Net>,
    /// Owner before (`None`: not known to this replica).
    pub from: Option<NodeId>,
    /// Owner after.
    pub to: Option<NodeId>,
}

/// What [`Ring::merge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Entries that were new or won over the one held.
    pub applied: usize,
    /// Set when this merge made an empty replica join the entries' ring.
    pub adopted: Option<RingId>,
    /// Every run of blocks whose owner changed.
    pub changes: Vec<OwnerChange>,
    /// Blocks this replica reclaimed again because the entries gave them to a node it had
    /// reclaimed (see [`Ring::reclaim`]); they are in `changes` too. Non-empty means the
    /// merge wrote entries: persist, then push [`Ring::poll_write`].
    pub reclaimed: Vec<Ipv4Net>,
}

impl MergeOutcome {
    /// Blocks `me` owned before and not after. Under the operator contract this happens
    /// only when `me` was declared dead and reclaimed: stop allocating from them (their
    /// allocations become stranded in the [`crate::LocalPool`]) and tell the operator.
    pub fn lost(&self, me: NodeId) -> Vec<Ipv4Net> {
        self.changes
            .iter()
            .filter(|c| c.from == Some(me))
            .flat_map(|c| c.nets.iter().copied())
            .collect()
    }

    /// Blocks `me` owns now and did not before (a donation arrived).
    pub fn gained(&self, me: NodeId) -> Vec<Ipv4Net> {
        self.changes
            .iter()
            .filter(|c| c.to == Some(me))
            .flat_map(|c| c.nets.iter().copied())
            .collect()
    }
}

/// A run of blocks with one owner, for views (`meshctl ipam`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// First block index.
    pub start: u32,
    /// Block index after the last.
    pub end: u32,
    /// The blocks, as the fewest prefixes.
    pub nets: Vec<Ipv4Net>,
    /// Their owner; `None` when this replica has not heard of it yet.
    pub owner: Option<NodeId>,
}

/// One node's replica of the cluster's block ownership. See the module docs.
#[derive(Debug, Clone)]
pub struct Ring {
    geometry: Geometry,
    id: Option<RingId>,
    records: BTreeMap<u32, Rec>,
    /// Derived from `records` after every change.
    segs: Vec<Seg>,
    /// Keys this node wrote that [`Ring::poll_write`] has not returned yet.
    written: BTreeSet<u32>,
    /// Nodes this replica reclaimed, and for whom: blocks that turn up owned by one of them
    /// later (a donation to it that was still travelling) are reclaimed again on arrival.
    /// Local to this node (persisted, not gossiped).
    reclaimed: BTreeMap<NodeId, NodeId>,
}

/// Two replicas are equal when they hold the same ring and records (local bookkeeping, what
/// is still to be polled and whom this node reclaimed, does not count).
impl PartialEq for Ring {
    fn eq(&self, other: &Self) -> bool {
        self.geometry == other.geometry && self.id == other.id && self.records == other.records
    }
}

impl Eq for Ring {}

impl Ring {
    /// An empty replica (no ring yet) for `range` cut into `/block_prefix` blocks.
    pub fn new(range: Ipv4Net, block_prefix: u8) -> Result<Self, GeometryError> {
        Ok(Self::with_geometry(Geometry::new(range, block_prefix)?))
    }

    /// An empty replica for `geometry`.
    pub fn with_geometry(geometry: Geometry) -> Self {
        Self {
            geometry,
            id: None,
            records: BTreeMap::new(),
            segs: Vec::new(),
            written: BTreeSet::new(),
            reclaimed: BTreeMap::new(),
        }
    }

    /// The range and block size.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The ring this replica belongs to: `None` until it founds or joins one.
    pub fn id(&self) -> Option<RingId> {
        self.id
    }

    /// Founds a cluster: `me` owns the whole range. Only one node of a cluster does this,
    /// once (the caller decides which: e.g. the node started without `--peer`); every other
    /// node joins by merging entries and asking for a donation.
    pub fn found(&mut self, me: NodeId, id: RingId) -> Result<Vec<Ipv4Net>, FoundError> {
        if let Some(existing) = self.id {
            return Err(FoundError::AlreadyInRing(existing));
        }
        self.id = Some(id);
        let rec = Rec {
            end: self.geometry.blocks(),
            version: 1,
            owner: me,
        };
        self.records.insert(0, rec);
        self.written.insert(0);
        self.segs = resolve(&self.records);
        Ok(vec![self.geometry.range()])
    }

    /// The owner of the block holding `addr`, as this replica knows it.
    pub fn owner_of(&self, addr: Ipv4Addr) -> Option<NodeId> {
        self.owner_of_block(self.geometry.index_of(addr)?)
    }

    /// The owner of block `index`, as this replica knows it.
    pub fn owner_of_block(&self, index: u32) -> Option<NodeId> {
        owner_in(&self.segs, index)
    }

    /// The blocks of `node`, as the fewest prefixes (what routes announce).
    pub fn owned(&self, node: NodeId) -> Vec<Ipv4Net> {
        self.runs_of(node)
            .into_iter()
            .flat_map(|(s, e)| self.geometry.aggregate(s, e))
            .collect()
    }

    /// The blocks of `node`, one prefix per block (what a [`crate::LocalPool`] is given:
    /// each block has its own gateway, so donating one later strands nothing else).
    pub fn owned_blocks(&self, node: NodeId) -> Vec<Ipv4Net> {
        self.runs_of(node)
            .into_iter()
            .flat_map(|(s, e)| s..e)
            .filter_map(|i| self.geometry.block(i))
            .collect()
    }

    /// How many blocks `node` owns.
    pub fn owned_count(&self, node: NodeId) -> u32 {
        self.segs
            .iter()
            .filter(|s| s.owner == node)
            .map(|s| s.end - s.start)
            .sum()
    }

    /// Blocks per owner.
    pub fn owners(&self) -> BTreeMap<NodeId, u32> {
        let mut out = BTreeMap::new();
        for s in &self.segs {
            *out.entry(s.owner).or_insert(0) += s.end - s.start;
        }
        out
    }

    /// Blocks whose owner this replica does not know yet (0 once it has every entry).
    pub fn unknown_blocks(&self) -> u32 {
        self.geometry.blocks() - self.segs.iter().map(|s| s.end - s.start).sum::<u32>()
    }

    /// The whole range as runs of one owner (or of unknown ownership).
    pub fn spans(&self) -> Vec<Span> {
        let mut out: Vec<Span> = Vec::new();
        let mut push = |start: u32, end: u32, owner: Option<NodeId>| match out.last_mut() {
            Some(last) if last.end == start && last.owner == owner => last.end = end,
            _ => out.push(Span {
                start,
                end,
                nets: Vec::new(),
                owner,
            }),
        };
        let mut at = 0;
        for s in &self.segs {
            if s.start > at {
                push(at, s.start, None);
            }
            push(s.start, s.end, Some(s.owner));
            at = s.end;
        }
        if at < self.geometry.blocks() && self.id.is_some() {
            push(at, self.geometry.blocks(), None);
        }
        for span in &mut out {
            span.nets = self.geometry.aggregate(span.start, span.end);
        }
        out
    }

    /// Whom to ask for blocks: every other owner, most blocks first (ties by id). Free
    /// addresses are not part of the ring (see docs/ipam.md), so "most blocks" stands in
    /// for "most free space"; a donor with nothing free answers [`DonateError::NothingFree`]
    /// and the asker tries the next.
    pub fn donor_candidates(&self, me: NodeId) -> Vec<NodeId> {
        let mut v: Vec<(u32, NodeId)> = self
            .owners()
            .into_iter()
            .filter(|(n, _)| *n != me)
            .map(|(n, c)| (c, n))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// Gives blocks of `me` to `to`, never one for which `in_use` says addresses are
    /// allocated. For [`Want::Blocks`], the largest free runs go first, taken from their
    /// high end and aligned when the count is a power of two, so both sides keep
    /// contiguous, aggregatable ranges. Returns the blocks given (as the fewest prefixes).
    ///
    /// Persist the ring before the entries this wrote ([`Ring::poll_write`]) leave the node,
    /// and remove the blocks from the node's pool and bridge.
    pub fn donate(
        &mut self,
        me: NodeId,
        to: NodeId,
        want: Want,
        in_use: impl Fn(Ipv4Net) -> bool,
    ) -> Result<Vec<Ipv4Net>, DonateError> {
        if self.id.is_none() {
            return Err(DonateError::NotInRing);
        }
        if to == me {
            return Err(DonateError::ToSelf);
        }
        let regions: Vec<(u32, u32)> = match want {
            Want::Block(block) => {
                let Some(i) = self.geometry.index_of_block(block) else {
                    return Err(DonateError::NotABlock {
                        block,
                        geometry: self.geometry,
                    });
                };
                let owner = self.owner_of_block(i);
                if owner != Some(me) {
                    return Err(DonateError::NotOwner { block, owner });
                }
                if in_use(block) {
                    return Err(DonateError::InUse(block));
                }
                vec![(i, i + 1)]
            }
            Want::Blocks(0) => return Ok(Vec::new()),
            Want::Blocks(_) | Want::AllFree => {
                let runs = self.free_runs(me, &in_use);
                let free: u32 = runs.iter().map(|(s, e)| e - s).sum();
                if free == 0 {
                    return Err(DonateError::NothingFree {
                        owned: self.owned_count(me),
                    });
                }
                let n = match want {
                    Want::Blocks(n) => n.min(free.div_ceil(2)),
                    _ => free,
                };
                choose(runs, n)
            }
        };
        self.write(&regions, to, |max| max.checked_add(1))?;
        Ok(regions
            .iter()
            .flat_map(|&(s, e)| self.geometry.aggregate(s, e))
            .collect())
    }

    /// Takes over every block this replica knows `dead` to own, for `me`. Returns them.
    ///
    /// The operator contract (docs/ipam.md): `dead` is gone for good (it never runs again
    /// with its key; `meshd reset` gives a reset node a new one), exactly one node reclaims
    /// it, and that node has the entries `dead` wrote last. If `dead` runs again anyway it
    /// loses: the reclaim outranks anything it wrote or writes, and its
    /// [`MergeOutcome::lost`] names the blocks.
    ///
    /// The replica remembers `dead` (in its [`RingState`]): blocks that reach it later still
    /// owned by `dead` (a donation to `dead` that was on its way when it died) are reclaimed
    /// by [`Ring::merge`] as they arrive. Reclaiming again is harmless.
    pub fn reclaim(&mut self, me: NodeId, dead: NodeId) -> Result<Vec<Ipv4Net>, ReclaimError> {
        if self.id.is_none() {
            return Err(ReclaimError::NotInRing);
        }
        if dead == me {
            return Err(ReclaimError::OwnNode);
        }
        self.reclaimed.insert(dead, me);
        let regions = self.runs_of(dead);
        if regions.is_empty() {
            return Ok(Vec::new());
        }
        self.write(&regions, me, |max| reclaim_version(max, &me))?;
        Ok(regions
            .iter()
            .flat_map(|&(s, e)| self.geometry.aggregate(s, e))
            .collect())
    }

    /// Merges entries received from other nodes (any subset, any order, repeated or not).
    /// The batch is checked first and refused whole if any entry belongs to another cluster
    /// or geometry. An empty replica joins the ring of the entries.
    ///
    /// If the entries hand blocks to a node this replica reclaimed, it reclaims them again
    /// ([`MergeOutcome::reclaimed`]): persist, then push what [`Ring::poll_write`] returns.
    pub fn merge(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<MergeOutcome, MergeError> {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut id = self.id;
        for e in &entries {
            if e.geometry != self.geometry {
                return Err(MergeError::Geometry {
                    ours: self.geometry,
                    theirs: e.geometry,
                });
            }
            match id {
                None => id = Some(e.ring),
                Some(ours) if ours != e.ring => {
                    return Err(MergeError::DifferentCluster {
                        ours,
                        theirs: e.ring,
                    });
                }
                Some(_) => {}
            }
        }
        let adopted = if self.id.is_none() { id } else { None };
        self.id = id;
        let mut applied = 0;
        for e in entries {
            let rec = Rec {
                end: e.end,
                version: e.version,
                owner: e.owner,
            };
            match self.records.get(&e.start) {
                Some(held) if held.rank() >= rec.rank() => {}
                _ => {
                    self.records.insert(e.start, rec);
                    applied += 1;
                }
            }
        }
        let mut changes = Vec::new();
        let mut reclaimed = Vec::new();
        if applied > 0 {
            let before = std::mem::replace(&mut self.segs, resolve(&self.records));
            let leftovers: Vec<(NodeId, NodeId)> = self
                .reclaimed
                .iter()
                .map(|(&dead, &by)| (dead, by))
                .filter(|&(dead, _)| self.segs.iter().any(|s| s.owner == dead))
                .collect();
            for (dead, by) in leftovers {
                let regions = self.runs_of(dead);
                // Versions cannot run out in practice; if they did, the blocks stay with
                // `dead` and show in `owners()`.
                if self
                    .write(&regions, by, |max| reclaim_version(max, &by))
                    .is_ok()
                {
                    reclaimed.extend(
                        regions
                            .iter()
                            .flat_map(|&(s, e)| self.geometry.aggregate(s, e)),
                    );
                }
            }
            changes = self.diff(&before);
        }
        Ok(MergeOutcome {
            applied,
            adopted,
            changes,
            reclaimed,
        })
    }

    /// Every entry held, by key: what anti-entropy compares and a new member needs.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.records
            .keys()
            .filter_map(move |&start| self.entry(start))
    }

    /// The entry held for key `start`.
    pub fn entry(&self, start: u32) -> Option<Entry> {
        let ring = self.id?;
        let r = self.records.get(&start)?;
        Some(Entry {
            ring,
            geometry: self.geometry,
            start,
            end: r.end,
            version: r.version,
            owner: r.owner,
        })
    }

    /// Entries held (at most one per block, however long the cluster lives).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No entries: the replica belongs to no ring yet.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The next entry this node wrote (found, donate, reclaim) that the gossip layer has not
    /// taken yet; the current version of its key. Persist the ring first. Not persisted:
    /// after a restart, insert all of [`Ring::entries`] into the gossip store again.
    pub fn poll_write(&mut self) -> Option<Entry> {
        loop {
            let key = self.written.pop_first()?;
            if let Some(e) = self.entry(key) {
                return Some(e);
            }
        }
    }

    /// The state to persist in the state directory.
    pub fn state(&self) -> RingState {
        RingState {
            version: RingState::VERSION,
            range: self.geometry.range(),
            block_prefix: self.geometry.block_prefix(),
            ring: self.id,
            records: self
                .records
                .iter()
                .map(|(&start, r)| StateRecord {
                    start,
                    end: r.end,
                    version: r.version,
                    owner: r.owner,
                })
                .collect(),
            reclaimed: self
                .reclaimed
                .iter()
                .map(|(&dead, &by)| Reclaimed { dead, by })
                .collect(),
        }
    }

    /// A replica from a persisted state, checked.
    pub fn from_state(state: RingState) -> Result<Self, StateError> {
        if state.version != RingState::VERSION {
            return Err(StateError::UnknownVersion(state.version));
        }
        let mut ring = Self::new(state.range, state.block_prefix)?;
        if state.ring.is_none() && !state.records.is_empty() {
            return Err(StateError::RecordsWithoutRing);
        }
        ring.id = state.ring;
        let blocks = ring.geometry.blocks();
        for r in state.records {
            if r.start >= r.end || r.end > blocks {
                return Err(StateError::Span {
                    start: r.start,
                    end: r.end,
                    blocks,
                });
            }
            let rec = Rec {
                end: r.end,
                version: r.version,
                owner: r.owner,
            };
            if ring.records.insert(r.start, rec).is_some() {
                return Err(StateError::DuplicateKey(r.start));
            }
        }
        ring.reclaimed = state.reclaimed.iter().map(|r| (r.dead, r.by)).collect();
        ring.segs = resolve(&ring.records);
        Ok(ring)
    }

    /// Maximal runs of blocks owned by `node`.
    fn runs_of(&self, node: NodeId) -> Vec<(u32, u32)> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for s in self.segs.iter().filter(|s| s.owner == node) {
            match runs.last_mut() {
                Some(last) if last.1 == s.start => last.1 = s.end,
                _ => runs.push((s.start, s.end)),
            }
        }
        runs
    }

    /// Maximal runs of blocks owned by `me` with no address in use.
    fn free_runs(&self, me: NodeId, in_use: &impl Fn(Ipv4Net) -> bool) -> Vec<(u32, u32)> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for (s, e) in self.runs_of(me) {
            for i in s..e {
                let busy = self.geometry.block(i).is_none_or(in_use);
                if busy {
                    continue;
                }
                match runs.last_mut() {
                    Some(last) if last.1 == i => last.1 = i + 1,
                    _ => runs.push((i, i + 1)),
                }
            }
        }
        runs
    }

    /// Writes `regions` (sorted, disjoint, every block won by a record of the writer, or of
    /// the dead node for a reclaim) over to `to`, all at one new version `version(max)`,
    /// where `max` is the highest version of any record covering what is written. Every
    /// record that wins somewhere in the regions is restated too: its winning runs outside
    /// the regions are written again for its owner at the new version, so nothing it
    /// covered falls back to an older record, and its key may be overwritten later. Every
    /// key held inside what is written is rewritten, so no record the writer holds is left
    /// under the new ones (see docs/ipam.md, "why no block has two owners").
    fn write(
        &mut self,
        regions: &[(u32, u32)],
        to: NodeId,
        version: impl FnOnce(u64) -> Option<u64>,
    ) -> Result<(), VersionExhausted> {
        let hits = |s: &Seg| {
            let i = regions.partition_point(|r| r.1 <= s.start);
            regions.get(i).is_some_and(|r| r.0 < s.end)
        };
        let touched: BTreeSet<u32> = self
            .segs
            .iter()
            .filter(|s| hits(s))
            .map(|s| s.key)
            .collect();
        let mut pieces: Vec<(u32, u32, NodeId)> = Vec::new();
        let mut push = |a: u32, b: u32, owner: NodeId| match pieces.last_mut() {
            Some(last) if last.1 == a && last.2 == owner => last.1 = b,
            _ => pieces.push((a, b, owner)),
        };
        for s in self.segs.iter().filter(|s| touched.contains(&s.key)) {
            let mut at = s.start;
            let first = regions.partition_point(|r| r.1 <= s.start);
            for &(a, b) in regions.iter().skip(first) {
                if a >= s.end {
                    break;
                }
                if a > at {
                    push(at, a, s.owner);
                }
                let hi = b.min(s.end);
                push(a.max(at), hi, to);
                at = hi;
            }
            if at < s.end {
                push(at, s.end, s.owner);
            }
        }
        // Split at every key held inside a piece, so that key is rewritten too. Otherwise a
        // record this write buries (it still covers blocks written here, at a lower
        // version) would surface again in a replica that later gets a newer, shorter
        // record for the key that buried it but not yet the record that covers the rest.
        let pieces: Vec<(u32, u32, NodeId)> = pieces
            .into_iter()
            .flat_map(|(a, b, owner)| {
                let inner: Vec<u32> = self.records.range(a + 1..b).map(|(k, _)| *k).collect();
                let cuts: Vec<u32> = std::iter::once(a).chain(inner).chain([b]).collect();
                cuts.windows(2)
                    .map(|w| (w[0], w[1], owner))
                    .collect::<Vec<_>>()
            })
            .collect();
        let max = self
            .records
            .iter()
            .filter(|(start, r)| {
                let i = pieces.partition_point(|p| p.1 <= **start);
                pieces.get(i).is_some_and(|p| p.0 < r.end)
            })
            .map(|(_, r)| r.version)
            .max()
            .unwrap_or(0);
        let v = version(max).ok_or(VersionExhausted)?;
        for (a, b, owner) in pieces {
            self.records.insert(
                a,
                Rec {
                    end: b,
                    version: v,
                    owner,
                },
            );
            self.written.insert(a);
        }
        self.segs = resolve(&self.records);
        Ok(())
    }

    /// Runs of blocks whose owner differs between `before` and the current resolution.
    fn diff(&self, before: &[Seg]) -> Vec<OwnerChange> {
        let mut bounds: Vec<u32> = before
            .iter()
            .chain(&self.segs)
            .flat_map(|s| [s.start, s.end])
            .chain([0, self.geometry.blocks()])
            .collect();
        bounds.sort_unstable();
        bounds.dedup();
        let mut out: Vec<OwnerChange> = Vec::new();
        for w in bounds.windows(2) {
            let (p, q) = (w[0], w[1]);
            let from = owner_in(before, p);
            let to = owner_in(&self.segs, p);
            if from == to {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.end == p && last.from == from && last.to == to => last.end = q,
                _ => out.push(OwnerChange {
                    start: p,
                    end: q,
                    nets: Vec::new(),
                    from,
                    to,
                }),
            }
        }
        for c in &mut out {
            c.nets = self.geometry.aggregate(c.start, c.end);
        }
        out
    }
}

/// Picks `n` blocks from `runs`: largest run first (ties: lowest), from its high end,
/// aligned to `k` when the `k` blocks taken from it are a power of two. Sorted by start.
fn choose(mut runs: Vec<(u32, u32)>, n: u32) -> Vec<(u32, u32)> {
    runs.sort_by(|a, b| (b.1 - b.0).cmp(&(a.1 - a.0)).then(a.0.cmp(&b.0)));
    let mut left = n;
    let mut out = Vec::new();
    for (rs, re) in runs {
        if left == 0 {
            break;
        }
        let k = left.min(re - rs);
        let aligned = (re - k) / k * k;
        let start = if k.is_power_of_two() && aligned >= rs {
            aligned
        } else {
            re - k
        };
        out.push((start, start + k));
        left -= k;
    }
    out.sort_unstable();
    out
}

/// The persisted form of a [`Ring`] (`meshd` keeps it in its state directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    /// Format version, [`RingState::VERSION`].
    pub version: u32,
    /// The cluster range.
    pub range: Ipv4Net,
    /// The block prefix length.
    pub block_prefix: u8,
    /// The ring, once founded or joined.
    #[serde(default)]
    pub ring: Option<RingId>,
    /// Every record, by key.
    #[serde(default)]
    pub records: Vec<StateRecord>,
    /// Nodes this node reclaimed (see [`Ring::reclaim`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reclaimed: Vec<Reclaimed>,
}

/// A node this node reclaimed, in a [`RingState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclaimed {
    /// The node declared dead, 64 hex digits.
    #[serde(with = "hex_node")]
    pub dead: NodeId,
    /// The node that took its blocks over (this node), 64 hex digits.
    #[serde(with = "hex_node")]
    pub by: NodeId,
}

impl RingState {
    /// The format version this crate writes and reads.
    pub const VERSION: u32 = 1;
}

/// One record of a [`RingState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    /// First block index (the key).
    pub start: u32,
    /// Block index after the last.
    pub end: u32,
    /// Version.
    pub version: u64,
    /// Owner, 64 hex digits.
    #[serde(with = "hex_node")]
    pub owner: NodeId,
}

mod hex_node {
    use super::NodeId;
    use super::entry::{hex, hex_decode};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(id))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let s = String::deserialize(d)?;
        hex_decode::<32>(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("node id {s:?} is not 64 hex digits")))
    }
}

/// Why a persisted state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Written by another version of this crate.
    #[error("ring state format {0} is unknown (this node reads {current})", current = RingState::VERSION)]
    UnknownVersion(u32),
    /// The range or block size is impossible.
    #[error("ring state: {0}")]
    Geometry(#[from] GeometryError),
    /// Records but no ring id.
    #[error("ring state has ownership records but no ring id")]
    RecordsWithoutRing,
    /// A record outside the range.
    #[error("ring state has a record for blocks {start}..{end} of a range of {blocks} blocks")]
    Span {
        /// First block.
        start: u32,
        /// End (exclusive).
        end: u32,
        /// Blocks in the range.
        blocks: u32,
    },
    /// Two records with the same key.
    #[error("ring state has two records for block {0}")]
    DuplicateKey(u32),
}

impl From<Ring> for RingState {
    fn from(ring: Ring) -> Self {
        ring.state()
    }
}

impl TryFrom<RingState> for Ring {
    type Error = StateError;
    fn try_from(state: RingState) -> Result<Self, StateError> {
        Self::from_state(state)
    }
}

impl Serialize for Ring {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.state().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_state(RingState::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Ring {
    /// One line per run of one owner, e.g. `10.32.0.0/13 10.40.0.0/14 -> 0a1b2c3d4e5f6071`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => writeln!(f, "ring {id} over {}", self.geometry)?,
            None => writeln!(f, "no ring yet over {}", self.geometry)?,
        }
        for span in self.spans() {
            let nets: Vec<String> = span.nets.iter().map(ToString::to_string).collect();
            writeln!(f, "  {} -> {}", nets.join(" "), fmt_owner(&span.owner))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
