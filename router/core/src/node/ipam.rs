//! The node's side of cluster-wide block ownership (`mesh_ipam::ring`), when it runs with
//! automatic IPAM instead of a `--block`:
//!
//! - The ring's entries travel as gossip records of kind [`KIND_RING`]; each one received is
//!   merged into this node's replica. Entries of another cluster are refused (and reported
//!   once, with the fix).
//! - The node *uses* (hands pod addresses out of) a few of the blocks it owns, its *active*
//!   blocks: one to start, one more each time the owner of the node asks
//!   ([`Node::need_block`], when its pool is full). Active blocks are never donated.
//! - A node that owns nothing free asks the member with the most blocks for one, with a
//!   [`CONTROL_BLOCK_REQUEST`] on their session, every [`REQUEST_EVERY`] until it has one;
//!   the owner donates by writing ring entries, pushed to the asker at once and gossiped.
//! - Routes come from the ring itself (the owner of each span), not from what members
//!   announce.

use super::{Event, Node};
use ipnet::Ipv4Net;
use mesh_crypto::PublicKey;
use mesh_gossip::RecordKey;
use mesh_ipam::ring::{Entry, MergeError, Ring, RingId, RingState, Want};
use mesh_proto::block_request::BlockRequest;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

pub use mesh_proto::block_request::CONTROL_BLOCK_REQUEST;
pub use mesh_proto::gossip::KIND_RING;

/// A node that needs a block asks again this often.
const REQUEST_EVERY: Duration = Duration::from_secs(2);

/// Why [`Node::reclaim`] refused. Nothing was taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReclaimError {
    /// This node runs with fixed `--block`s. Blame: the caller; reclaiming is for automatic
    /// IPAM.
    #[error("this node runs with a fixed --block: there is no address ring to reclaim from")]
    FixedBlocks,
    /// The address ring refused (no ring yet, this node itself, version exhausted): see
    /// [`mesh_ipam::ReclaimError`], which says who is to blame.
    #[error(transparent)]
    Ring(#[from] mesh_ipam::ReclaimError),
}

/// Automatic IPAM settings of a node.
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// Prefix length of a block (24 by default).
    pub block_prefix: u8,
    /// The replica saved by an earlier run.
    pub state: Option<RingState>,
    /// Blocks this node was using (its pool's) in an earlier run.
    pub active: Vec<Ipv4Net>,
    /// Found a new cluster (owning the whole range) if no ring is known: the first node of a
    /// cluster, started without `--peer`. A random nonce makes its ring id unique.
    pub found_nonce: Option<[u8; 16]>,
}

#[derive(Debug)]
pub(super) struct IpamState {
    pub(super) ring: Ring,
    /// Blocks used for pods, in the order they were taken.
    pub(super) active: Vec<Ipv4Net>,
    /// Blocks asked for beyond the active ones (from `need_block`).
    pub(super) wanted: u32,
    pub(super) next_request: Instant,
    /// Rings we refused to merge with, already reported.
    pub(super) refused: BTreeSet<RingId>,
}

impl Node {
    pub(super) fn ipam_init(&mut self, now: Instant, config: RingConfig) {
        let ring = match config.state.map(Ring::from_state) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "saved ring state unusable; starting from an empty replica");
                match Ring::new(self.range, config.block_prefix) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot divide the range into blocks");
                        return;
                    }
                }
            }
            None => match Ring::new(self.range, config.block_prefix) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot divide the range into blocks");
                    return;
                }
            },
        };
        self.ipam = Some(IpamState {
            ring,
            active: config.active,
            wanted: 0,
            next_request: now,
            refused: BTreeSet::new(),
        });
        let me = *self.keypair.public().as_bytes();
        if let (Some(nonce), Some(st)) = (config.found_nonce, self.ipam.as_mut())
            && st.ring.id().is_none()
        {
            let id = RingId::derive(&me, &nonce);
            match st.ring.found(me, id) {
                Ok(_) => {
                    tracing::info!(ring = %id, range = %self.range, "founded the cluster's address ring");
                    self.events.push_back(Event::RingChanged);
                }
                Err(e) => tracing::warn!(error = %e, "cannot found a ring"),
            }
        }
        self.filter_foreign_rings();
        // Everything we hold goes into gossip (ours and what we learned before a restart).
        let entries: Vec<Entry> = self
            .ipam
            .as_ref()
            .map(|st| st.ring.entries().collect())
            .unwrap_or_default();
        for e in entries {
            self.gossip_entry(now, &e);
        }
        self.ipam_changed(now);
        self.pump_gossip(now);
    }

    fn gossip_entry(&mut self, now: Instant, e: &Entry) {
        let key = RecordKey {
            kind: KIND_RING,
            id: e.record_id(),
        };
        self.gossip.insert_local(now, key, e.version(), &e.encode());
    }

    /// A ring entry of another ring reached us (refused by the gossip filter).
    pub(super) fn foreign_ring(&mut self, id: &[u8; 32]) {
        let Some(ours) = self.ipam.as_ref().and_then(|st| st.ring.id()) else {
            return;
        };
        let mut theirs = [0u8; 16];
        theirs.copy_from_slice(&id[4..20]);
        self.report_foreign(ours, RingId(theirs));
    }

    fn report_foreign(&mut self, ours: RingId, theirs: RingId) {
        let Some(st) = self.ipam.as_mut() else {
            return;
        };
        if st.refused.insert(theirs) {
            tracing::error!(%ours, %theirs, "address ring of another cluster refused: two clusters were started separately; run `meshd reset` on the smaller one and start it with --peer pointing into the other (docs/ipam.md)");
            self.events.push_back(Event::ForeignRing {
                ours: ours.to_string(),
                theirs: theirs.to_string(),
            });
        }
    }

    /// Once this node is in a ring, only that ring's entries are stored and gossiped (the
    /// ring id is bytes 4..20 of an entry's record id).
    fn filter_foreign_rings(&mut self) {
        if let Some(id) = self.ipam.as_ref().and_then(|st| st.ring.id()) {
            self.gossip.set_id_filter(KIND_RING, 4, Some(id.0.to_vec()));
        }
    }

    /// Pushes what the ring wrote (a donation, a reclaim) into gossip, and to `also`.
    fn flush_ring_writes(&mut self, now: Instant, also: Option<PublicKey>) {
        let mut written = Vec::new();
        if let Some(st) = self.ipam.as_mut() {
            while let Some(e) = st.ring.poll_write() {
                written.push(e);
            }
        }
        if written.is_empty() {
            return;
        }
        // The owner of the node persists the ring (on RingChanged) before it sends what is
        // queued now.
        self.events.push_back(Event::RingChanged);
        for e in &written {
            self.gossip_entry(now, e);
            if let Some(to) = also {
                self.gossip.push_to(
                    *to.as_bytes(),
                    RecordKey {
                        kind: KIND_RING,
                        id: e.record_id(),
                    },
                );
            }
        }
    }

    /// A ring record changed in gossip: merge it. (Called from inside the gossip pump: it
    /// must not pump itself.)
    pub(super) fn apply_ring_record(&mut self, now: Instant, id: &[u8; 32]) {
        let key = RecordKey {
            kind: KIND_RING,
            id: *id,
        };
        let Some(rec) = self.gossip.get(&key) else {
            return;
        };
        let Ok(entry) = Entry::from_record(id, rec.version, &rec.body) else {
            return;
        };
        let me = *self.keypair.public().as_bytes();
        let Some(st) = self.ipam.as_mut() else {
            return;
        };
        match st.ring.merge([entry]) {
            Ok(outcome) => {
                if outcome.adopted.is_some() {
                    self.filter_foreign_rings();
                }
                if outcome.applied == 0 && outcome.reclaimed.is_empty() {
                    return;
                }
                let lost = outcome.lost(me);
                if !lost.is_empty() {
                    tracing::warn!(
                        ?lost,
                        "blocks of this node now belong to another (reclaimed while it was away?)"
                    );
                }
                self.events.push_back(Event::RingChanged);
                self.flush_ring_writes(now, None);
                self.ipam_changed(now);
            }
            Err(MergeError::DifferentCluster { ours, theirs }) => {
                // Not ours: out of the store, so it is not passed on either.
                self.gossip
                    .set_id_filter(KIND_RING, 4, Some(ours.0.to_vec()));
                self.report_foreign(ours, theirs);
            }
            Err(e) => {
                tracing::error!(error = %e, "ring entry refused");
            }
        }
    }

    /// After any change of ownership: keep the active blocks to what we own, take one if we
    /// have none (or more were asked for), announce, reroute.
    pub(super) fn ipam_changed(&mut self, now: Instant) {
        let me = *self.keypair.public().as_bytes();
        let Some(st) = self.ipam.as_mut() else {
            return;
        };
        let owned_blocks = st.ring.owned_blocks(me);
        let owned_set: BTreeSet<Ipv4Net> = owned_blocks.iter().copied().collect();
        let before = st.active.clone();
        st.active.retain(|b| owned_set.contains(b));
        while (st.active.is_empty() || st.wanted > 0)
            && let Some(b) = owned_blocks
                .iter()
                .find(|b| !st.active.contains(b))
                .copied()
        {
            st.active.push(b);
            st.wanted = st.wanted.saturating_sub(1);
        }
        let active = st.active.clone();
        let owned = st.ring.owned(me);
        if active != before {
            tracing::info!(blocks = ?active, "blocks in use for pods");
            self.events.push_back(Event::BlocksChanged {
                active: active.clone(),
            });
        }
        if owned != self.blocks {
            self.blocks = owned;
            self.info_version += 1;
            self.publish_member(now);
        }
        self.routes_dirty = true;
        self.rebuild_routes();
    }

    /// Asks for a donation when we need a block and own none free; called once a second.
    pub(super) fn ipam_maintain(&mut self, now: Instant) {
        let me = *self.keypair.public().as_bytes();
        let Some(st) = self.ipam.as_ref() else {
            return;
        };
        if st.ring.id().is_none() || now < st.next_request {
            return;
        }
        let free = st
            .ring
            .owned_blocks(me)
            .iter()
            .filter(|b| !st.active.contains(b))
            .count();
        let need = st.active.is_empty() || st.wanted as usize > free;
        if !need {
            return;
        }
        // The member with the most blocks that is alive and reachable.
        let donor = st
            .ring
            .donor_candidates(me)
            .into_iter()
            .map(PublicKey::from_bytes)
            .find(|k| self.members.get(k).is_some_and(|m| !m.dead && !m.left));
        if let Some(st) = self.ipam.as_mut() {
            st.next_request = now + REQUEST_EVERY;
        }
        let Some(donor) = donor else {
            return;
        };
        tracing::debug!(donor = %donor.fingerprint(), "asking for a block");
        let msg = BlockRequest { count: 1 }.to_bytes();
        if !self.send_plaintext(now, donor, &msg) && self.ensure_peer(now, donor) {
            if let Some(p) = self.peers.get_mut(&donor) {
                p.enqueue(&msg);
            }
            self.ensure_handshake(now, donor);
        }
    }

    /// A member asked us for blocks: donate free ones (never an active one).
    pub(super) fn on_block_request(&mut self, now: Instant, from: PublicKey, req: BlockRequest) {
        let me = *self.keypair.public().as_bytes();
        let count = req.wanted();
        let Some(st) = self.ipam.as_mut() else {
            return;
        };
        let active: BTreeSet<Ipv4Net> = st.active.iter().copied().collect();
        match st
            .ring
            .donate(me, *from.as_bytes(), Want::Blocks(count), |b| {
                active.contains(&b)
            }) {
            Ok(blocks) => {
                tracing::info!(to = %from.fingerprint(), ?blocks, "donated blocks");
                self.flush_ring_writes(now, Some(from));
                self.ipam_changed(now);
                self.pump_gossip(now);
            }
            Err(e) => tracing::debug!(to = %from.fingerprint(), error = %e, "no donation"),
        }
    }

    /// Founds the cluster's address ring now, as `RingConfig::found_nonce` does at start
    /// (meshd's `--kube` decides only once it has listed the Nodes); `false` without
    /// automatic IPAM or when the node already belongs to a ring.
    pub fn found_ring(&mut self, now: Instant, nonce: [u8; 16]) -> bool {
        let me = *self.keypair.public().as_bytes();
        let Some(st) = self.ipam.as_mut() else {
            return false;
        };
        if st.ring.id().is_some() {
            return false;
        }
        let id = RingId::derive(&me, &nonce);
        if let Err(e) = st.ring.found(me, id) {
            tracing::warn!(error = %e, "cannot found a ring");
            return false;
        }
        tracing::info!(ring = %id, range = %self.range, "founded the cluster's address ring");
        self.filter_foreign_rings();
        // Pushes RingChanged: meshd persists the ring before anything of it leaves.
        self.flush_ring_writes(now, None);
        self.ipam_changed(now);
        self.pump_gossip(now);
        true
    }

    /// The cluster ring this node belongs to, if any (automatic IPAM).
    pub fn ring_id(&self) -> Option<String> {
        self.ipam
            .as_ref()
            .and_then(|st| st.ring.id())
            .map(|id| id.to_string())
    }

    /// Whether `key` owns any block in this node's replica of the ring.
    pub fn owns_blocks(&self, key: &PublicKey) -> bool {
        self.ipam
            .as_ref()
            .is_some_and(|st| !st.ring.owned(*key.as_bytes()).is_empty())
    }

    /// The pool is full: use one more owned block, or ask for one.
    pub fn need_block(&mut self, now: Instant) {
        if let Some(st) = self.ipam.as_mut() {
            st.wanted = st.wanted.saturating_add(1);
            st.next_request = now;
        }
        self.ipam_changed(now);
        self.ipam_maintain(now);
        self.pump_gossip(now);
    }

    /// Takes over every block of `dead` (the operator declared it gone: `meshctl rmpeer`).
    pub fn reclaim(&mut self, now: Instant, dead: PublicKey) -> Result<Vec<Ipv4Net>, ReclaimError> {
        let me = *self.keypair.public().as_bytes();
        let Some(st) = self.ipam.as_mut() else {
            return Err(ReclaimError::FixedBlocks);
        };
        let blocks = st.ring.reclaim(me, *dead.as_bytes())?;
        tracing::info!(dead = %dead.fingerprint(), ?blocks, "reclaimed the blocks of a removed member");
        self.flush_ring_writes(now, None);
        self.ipam_changed(now);
        self.pump_gossip(now);
        Ok(blocks)
    }

    /// The replica to persist (automatic IPAM only).
    pub fn ring_state(&self) -> Option<RingState> {
        self.ipam.as_ref().map(|st| st.ring.state())
    }

    /// Blocks used for pods (automatic IPAM), or the fixed `--block`s.
    pub fn active_blocks(&self) -> Vec<Ipv4Net> {
        match &self.ipam {
            Some(st) => st.active.clone(),
            None => self.blocks.clone(),
        }
    }

    /// Who owns what, `(blocks, owner key)`, when running with automatic IPAM.
    pub fn ring_spans(&self) -> Option<Vec<(Vec<Ipv4Net>, Option<PublicKey>)>> {
        self.ipam.as_ref().map(|st| {
            st.ring
                .spans()
                .into_iter()
                .map(|s| (s.nets, s.owner.map(PublicKey::from_bytes)))
                .collect()
        })
    }

    /// Routes from ring ownership: every owned span to its owner.
    pub(super) fn ring_routes(&self) -> Option<Vec<(Ipv4Net, PublicKey)>> {
        let st = self.ipam.as_ref()?;
        let mut out = Vec::new();
        for s in st.ring.spans() {
            if let Some(owner) = s.owner {
                let k = PublicKey::from_bytes(owner);
                for n in s.nets {
                    out.push((n, k));
                }
            }
        }
        Some(out)
    }
}
