//! [`Gossip`]: spreads a [`Store`] between neighbours.
//!
//! Three mechanisms, all over the sealed sessions the caller owns:
//!
//! - **Push**: a record written here is sent to every neighbour at once. A record that is new
//!   here because a neighbour pushed it is passed on after `relay_delay` (jittered, 0.5 to 1.5
//!   times), packed with whatever else arrived meanwhile, to the neighbours of that relay
//!   round, skipping those that pushed or announced the same record in the meantime (they
//!   have it). The round's neighbours, not those of the record's arrival: a node that got
//!   records before it had chosen its neighbours (from its bootstrap peer, in a cold start)
//!   still passes them on to the neighbours it chose since. Waiting `relay_delay` instead of
//!   passing a change on at once lets it cross most links once instead of once each way: a
//!   change floods the neighbour graph in about its diameter times `relay_delay`. It goes to
//!   every outbound neighbour and to every inbound one that may have no other source; inbound
//!   neighbours the caller says are well linked ([`Gossip::set_well_linked`]: they list
//!   several other neighbours) get it only while the total stays within `relay_fanout`, drawn
//!   at random. Why: the node every joiner was given as `--peer` is the inbound neighbour of
//!   all of them for a while, and passing it every change of a cold start made its traffic
//!   grow with the square of the cluster; well-linked nodes still get each change from the
//!   nodes that chose them.
//! - **Lazy push** (as in Plumtree, without its tree): of the neighbours a received change
//!   goes on to, only the first `eager_fanout` in the round's random order get its body; the
//!   others get a *have*, its key and version in 17 bytes. A node that lacks a record a have
//!   names waits `pull_delay` for a push of it (one usually comes: every node that gets the
//!   body passes it on to `eager_fanout` others), then pulls it from the node that announced
//!   it, then from the next one. Why: a flood of bodies delivers each record to each node
//!   about as many times as it has neighbours, which was most of the cost of a flood. A
//!   change still reaches a node by a push or a pull on every path a flood of bodies would
//!   take, only up to `pull_delay` later on the paths with no body.
//! - **Anti-entropy**: every `anti_entropy_interval` (jittered) the node sends its digest
//!   (256 bucket hashes, about 1 KB) to its next outbound neighbour in turn. The receiver
//!   answers each differing bucket with its listing of that bucket; the listing's receiver
//!   pushes what the other lacks and pulls what it lacks itself. Pushes lost on the way, a
//!   node back from a partition, and a newcomer are all repaired this way. The cost per node
//!   is one digest per interval, whatever the cluster's size, plus the differences.
//!
//! What each choice gained, measured in the simulator: `docs/performance.md`, "Gossip in the
//! simulator".
//!
//! Neighbours are the *outbound* ones the caller picks ([`Gossip::set_outbound`]) and the
//! *inbound* ones: nodes that sent us a neighbour's digest within `inbound_ttl`. Each node's
//! outbound neighbours hear a digest from it at least every `outbound × interval`, so
//! inbound links stay up while the other side keeps choosing us. A digest sent *aside*
//! ([`Gossip::send_digest_aside`], gossip op 6) is answered but makes no neighbour: the
//! occasional digest a node sends to a random member to join islands would otherwise make
//! (and, `inbound_ttl` later, unmake) a neighbour each time, and every such change is a new
//! adjacency record flooded to all. A neighbour's digest counts at once, so joins are not
//! slowed. Each node that becomes a neighbour is reported once ([`Gossip::poll_new_neighbour`]), so
//! the caller can push it its own records at once.

use crate::store::{Merge, Record, RecordKey, Store};
use mesh_proto::ParseError;
use mesh_proto::gossip::{
    GossipMsg, ListingEntry, MAX_BODY_LEN, MAX_GOSSIP_LEN, MAX_HAVE_ENTRIES, MAX_PULL_ENTRIES,
    ShortKey, WireRecord,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// A node, by its 32-byte static key.
pub type NodeId = [u8; 32];

/// Gossip settings.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Time between two digests this node sends.
    pub anti_entropy_interval: Duration,
    /// A node that sent us gossip counts as a neighbour this long.
    pub inbound_ttl: Duration,
    /// Buckets answered with a listing per digest received (the rest at the next round).
    pub max_listings_per_digest: usize,
    /// How long a received change waits before it is passed on (see the module docs).
    pub relay_delay: Duration,
    /// Each received change goes to every outbound neighbour and every inbound one not known
    /// to be well linked, and to well-linked inbound ones only while the total stays within
    /// this many (drawn at random). See the module docs.
    pub relay_fanout: usize,
    /// Of the neighbours a received change is passed on to, this many get its body; the
    /// others get a have (its key and version) and pull the body if no push brings it
    /// within `pull_delay`. See the module docs.
    pub eager_fanout: usize,
    /// How long a node that heard of a record by a have waits for a push of it before it
    /// pulls it from the node that announced it; and, if that brings nothing, again this
    /// long before it asks the next one that announced it.
    pub pull_delay: Duration,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            anti_entropy_interval: Duration::from_secs(1),
            inbound_ttl: Duration::from_secs(30),
            max_listings_per_digest: 32,
            relay_delay: Duration::from_millis(50),
            relay_fanout: 16,
            eager_fanout: 5,
            pull_delay: Duration::from_millis(150),
        }
    }
}

/// Gossip counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Messages sent.
    pub tx_messages: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Messages received.
    pub rx_messages: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Records received that were new or newer.
    pub records_applied: u64,
    /// Records received that we already had (or had newer).
    pub records_redundant: u64,
    /// Messages that did not parse.
    pub malformed: u64,
    /// Records refused by the validator.
    pub invalid_records: u64,
    /// Digests sent.
    pub digests: u64,
    /// Records announced to us (have entries) that we did not hold.
    pub announced_new: u64,
    /// Records pulled because a have announced them and no push brought them in time.
    pub pulled_after_have: u64,
}

/// A record announced to us that we lack (see `Gossip::wanted`).
#[derive(Debug)]
struct Wanted {
    version: u64,
    from: VecDeque<NodeId>,
    due: Instant,
}

/// Announcers remembered per wanted record.
const MAX_ANNOUNCERS: usize = 3;

/// Decides whether a record's body is acceptable for its kind.
pub type Validator = fn(kind: u8, body: &[u8]) -> bool;

/// The gossip engine of one node. See the module docs.
#[derive(Debug)]
pub struct Gossip {
    config: GossipConfig,
    store: Store,
    validator: Validator,
    /// Per kind: records are accepted only if their id holds these bytes at this offset.
    id_filters: BTreeMap<u8, (usize, Vec<u8>)>,
    rng: ChaCha20Rng,
    outbound: BTreeSet<NodeId>,
    /// Last neighbour's digest (not one sent aside) received, per sender.
    inbound: BTreeMap<NodeId, Instant>,
    /// Nodes the caller says have enough other neighbours to get changes from.
    well_linked: BTreeSet<NodeId>,
    new_neighbours: VecDeque<NodeId>,
    /// Records to push, per node; sorted and deduplicated when sent (`flush`). A list
    /// rather than a set: a flood queues every new record for every neighbour.
    pending: BTreeMap<NodeId, Vec<RecordKey>>,
    /// Received changes to pass on at `relay_at`, each with the nodes known to hold its
    /// version already (those it arrived from or that announced it): the round sends it to
    /// the neighbours of that moment but these. Per record rather than per neighbour: every
    /// copy that arrives adds its sender, and most copies in a flood are ones we have; and a
    /// few holders rather than every target (a bootstrap peer has hundreds of neighbours).
    relay: BTreeMap<RecordKey, Vec<NodeId>>,
    relay_at: Option<Instant>,
    /// Records to announce (have), per node; like `pending`.
    announce: BTreeMap<NodeId, Vec<RecordKey>>,
    /// Records a have announced that we lack: the version, who announced it (first first,
    /// a few at most) and when to pull it from the next of them.
    wanted: BTreeMap<ShortKey, Wanted>,
    /// The earliest `Wanted::due`.
    pull_at: Option<Instant>,
    ae_cursor: usize,
    next_ae: Instant,
    sends: VecDeque<(NodeId, Vec<u8>)>,
    changes: VecDeque<RecordKey>,
    /// Records refused by an id filter (the first few per kind and id bytes).
    filtered: VecDeque<RecordKey>,
    stats: GossipStats,
}

fn accept_all(_: u8, _: &[u8]) -> bool {
    true
}

impl Gossip {
    /// An engine with an empty store.
    pub fn new(config: GossipConfig, now: Instant, seed: [u8; 32]) -> Self {
        Self {
            next_ae: now + config.anti_entropy_interval,
            config,
            store: Store::default(),
            validator: accept_all,
            id_filters: BTreeMap::new(),
            rng: ChaCha20Rng::from_seed(seed),
            outbound: BTreeSet::new(),
            inbound: BTreeMap::new(),
            well_linked: BTreeSet::new(),
            new_neighbours: VecDeque::new(),
            pending: BTreeMap::new(),
            relay: BTreeMap::new(),
            relay_at: None,
            announce: BTreeMap::new(),
            wanted: BTreeMap::new(),
            pull_at: None,
            ae_cursor: 0,
            sends: VecDeque::new(),
            changes: VecDeque::new(),
            filtered: VecDeque::new(),
            stats: GossipStats::default(),
        }
    }

    /// Records whose body `validator` refuses are neither stored nor passed on.
    pub fn set_validator(&mut self, validator: Validator) {
        self.validator = validator;
    }

    /// From now on, records of `kind` are accepted only if their id holds `value` at
    /// `offset` (`None` lifts the filter); held records that do not are forgotten. How a node
    /// in one address ring keeps the entries of another ring out of its store and off the
    /// wire.
    pub fn set_id_filter(&mut self, kind: u8, offset: usize, value: Option<Vec<u8>>) {
        match value {
            None => {
                self.id_filters.remove(&kind);
            }
            Some(v) => {
                let stale: Vec<RecordKey> = self
                    .store
                    .of_kind(kind)
                    .filter(|(k, _)| k.id.get(offset..offset + v.len()) != Some(&v[..]))
                    .map(|(k, _)| *k)
                    .collect();
                for k in stale {
                    self.store.remove(&k);
                }
                self.id_filters.insert(kind, (offset, v));
            }
        }
    }

    fn id_allowed(&self, kind: u8, id: &[u8; 32]) -> bool {
        match self.id_filters.get(&kind) {
            None => true,
            Some((offset, v)) => id.get(*offset..*offset + v.len()) == Some(&v[..]),
        }
    }

    /// Whether a record with this id prefix may pass the id filter of its kind (the part of
    /// the filter the 8 bytes cover).
    fn prefix_allowed(&self, kind: u8, prefix: &[u8; 8]) -> bool {
        match self.id_filters.get(&kind) {
            None => true,
            Some((offset, v)) => (*offset..offset + v.len())
                .zip(v)
                .take_while(|(i, _)| *i < prefix.len())
                .all(|(i, b)| prefix[i] == *b),
        }
    }

    /// The records.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Counters.
    pub fn stats(&self) -> GossipStats {
        self.stats
    }

    /// Live inbound neighbours: they sent a neighbour's digest within `inbound_ttl`.
    fn inbound_neighbours(&self, now: Instant) -> impl Iterator<Item = &NodeId> {
        let ttl = self.config.inbound_ttl;
        self.inbound
            .iter()
            .filter(move |(_, at)| now.saturating_duration_since(**at) < ttl)
            .map(|(id, _)| id)
    }

    /// Outbound and live inbound neighbours.
    pub fn neighbours(&self, now: Instant) -> BTreeSet<NodeId> {
        let mut all = self.outbound.clone();
        all.extend(self.inbound_neighbours(now).copied());
        all
    }

    /// Outbound and live inbound neighbours, without collecting them (an inbound one that is
    /// also outbound comes twice).
    pub fn neighbours_iter(&self, now: Instant) -> impl Iterator<Item = &NodeId> {
        self.outbound.iter().chain(self.inbound_neighbours(now))
    }

    /// Whether `id` is an outbound or live inbound neighbour (no allocation).
    pub fn is_neighbour(&self, now: Instant, id: &NodeId) -> bool {
        self.outbound.contains(id)
            || self
                .inbound
                .get(id)
                .is_some_and(|at| now.saturating_duration_since(*at) < self.config.inbound_ttl)
    }

    /// Says whether `id` has enough other gossip neighbours (`mesh-core` reads it off its
    /// adjacency record) that received changes need not all go to it when it is an inbound
    /// neighbour here (see `GossipConfig::relay_fanout`).
    pub fn set_well_linked(&mut self, id: NodeId, well_linked: bool) {
        if well_linked {
            self.well_linked.insert(id);
        } else {
            self.well_linked.remove(&id);
        }
    }

    /// Next node that became a neighbour (outbound, or inbound: see the module docs).
    /// Reported again if it stopped being one in between.
    pub fn poll_new_neighbour(&mut self) -> Option<NodeId> {
        self.new_neighbours.pop_front()
    }

    /// The outbound neighbours.
    pub fn outbound(&self) -> &BTreeSet<NodeId> {
        &self.outbound
    }

    /// Sets the outbound neighbours. A new one gets our digest at once, so it catches up
    /// without waiting for its turn.
    pub fn set_outbound(&mut self, now: Instant, ids: BTreeSet<NodeId>) {
        let added: Vec<NodeId> = ids.difference(&self.outbound).copied().collect();
        let was: Vec<bool> = added.iter().map(|id| self.is_neighbour(now, id)).collect();
        self.outbound = ids;
        for (id, was) in added.into_iter().zip(was) {
            self.send_digest(id);
            if !was {
                self.new_neighbours.push_back(id);
            }
        }
        self.drop_stale_pending(now);
    }

    /// Forgets a node entirely (it is dead or gone): no more pushes to it.
    pub fn forget_neighbour(&mut self, id: &NodeId) {
        self.outbound.remove(id);
        self.inbound.remove(id);
        self.well_linked.remove(id);
        self.pending.remove(id);
        self.announce.remove(id);
        for w in self.wanted.values_mut() {
            w.from.retain(|t| t != id);
        }
    }

    /// Stores a record this node wrote and queues it for every neighbour. Returns whether it
    /// was newer than what was held.
    pub fn insert_local(
        &mut self,
        now: Instant,
        key: RecordKey,
        version: u64,
        body: &[u8],
    ) -> bool {
        if body.len() > MAX_BODY_LEN {
            return false;
        }
        if self.store.merge(key, version, body) != Merge::Applied {
            return false;
        }
        for n in self.neighbours(now) {
            self.pending.entry(n).or_default().push(key);
        }
        self.flush();
        true
    }

    /// Handles one gossip message (including its type byte) from `from`.
    pub fn handle(&mut self, now: Instant, from: NodeId, msg: &[u8]) -> Result<(), ParseError> {
        self.stats.rx_messages += 1;
        self.stats.rx_bytes += msg.len() as u64;
        let parsed = match GossipMsg::parse(msg) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        // Only a digest keeps an inbound neighbour alive (a node sends digests to its
        // outbound neighbours, and once a minute to a random member); pushes and answers do
        // not, or two nodes pushing to each other would keep each other as neighbours
        // forever. A digest sent aside (to a random member) makes no neighbour either.
        if matches!(parsed, GossipMsg::Digest { aside: false, .. }) {
            let was = self.is_neighbour(now, &from);
            self.inbound.insert(from, now);
            if !was && self.is_neighbour(now, &from) {
                self.new_neighbours.push_back(from);
            }
        }
        match parsed {
            GossipMsg::Push(records) => self.on_push(now, from, records),
            GossipMsg::Digest { buckets, .. } => {
                let mut answered = 0;
                for b in 0..=255u8 {
                    if buckets[usize::from(b)] == self.store.bucket_hash(b) {
                        continue;
                    }
                    if answered == self.config.max_listings_per_digest {
                        break;
                    }
                    answered += 1;
                    if buckets[usize::from(b)] == 0 {
                        // The sender has nothing there: everything we have is news to it.
                        let keys: Vec<RecordKey> = self
                            .store
                            .in_range(
                                b,
                                (0, [b, 0, 0, 0, 0, 0, 0, 0]),
                                (0xff, [b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
                            )
                            .map(|(k, _)| *k)
                            .collect();
                        self.pending.entry(from).or_default().extend(keys);
                    } else {
                        for m in self.store.listings(b) {
                            self.send(from, &m);
                        }
                    }
                }
            }
            GossipMsg::Listing {
                bucket,
                low,
                high,
                entries,
            } => {
                let theirs: BTreeMap<ShortKey, u64> =
                    entries.iter().map(|e| (e.key, e.version)).collect();
                let mut push = Vec::new();
                for (k, r) in self.store.in_range(bucket, low, high) {
                    match theirs.get(&k.short()) {
                        Some(v) if *v >= r.version => {}
                        _ => push.push(*k),
                    }
                }
                let mut pull = Vec::new();
                for e in &entries {
                    let ours = self.store.by_short(e.key).map(|(_, r)| r.version).max();
                    if ours.is_none_or(|v| v < e.version) {
                        pull.push(e.key);
                    }
                }
                self.pending.entry(from).or_default().extend(push);
                for chunk in pull.chunks(MAX_PULL_ENTRIES) {
                    self.send(from, &GossipMsg::Pull(chunk.to_vec()));
                }
            }
            GossipMsg::Pull(keys) => {
                let mut push = Vec::new();
                for short in keys {
                    push.extend(self.store.by_short(short).map(|(k, _)| *k));
                }
                self.pending.entry(from).or_default().extend(push);
            }
            GossipMsg::Have(entries) => self.on_have(now, from, entries),
        }
        self.flush();
        Ok(())
    }

    fn on_have(&mut self, now: Instant, from: NodeId, entries: Vec<ListingEntry>) {
        // What we hold under each short key (one record, but for a prefix collision).
        let mut held: Vec<(RecordKey, u64)> = Vec::new();
        for e in entries {
            if !self.prefix_allowed(e.key.0, &e.key.1) {
                // Another address ring's entry: we would refuse it when pulled.
                continue;
            }
            let mut lacking = true;
            held.clear();
            held.extend(self.store.by_short(e.key).map(|(k, r)| (*k, r.version)));
            for &(key, version) in &held {
                if version >= e.version {
                    lacking = false;
                }
                if version == e.version
                    && let Some(holders) = self.relay.get_mut(&key)
                {
                    // It has this version: no need to pass it on to it.
                    if !holders.contains(&from) {
                        holders.push(from);
                    }
                } else if version > e.version {
                    // The sender is behind: give it ours.
                    self.pending.entry(from).or_default().push(key);
                }
            }
            if !lacking {
                continue;
            }
            let due = now + self.config.pull_delay;
            match self.wanted.get_mut(&e.key) {
                Some(w) if w.version > e.version => continue,
                Some(w) if w.version == e.version => {
                    if w.from.len() < MAX_ANNOUNCERS && !w.from.contains(&from) {
                        w.from.push_back(from);
                    }
                    continue;
                }
                _ => {
                    self.stats.announced_new += 1;
                    self.wanted.insert(
                        e.key,
                        Wanted {
                            version: e.version,
                            from: VecDeque::from([from]),
                            due,
                        },
                    );
                }
            }
            self.pull_at = Some(self.pull_at.map_or(due, |t| t.min(due)));
        }
    }

    /// Pulls the announced records no push brought within `pull_delay`, each from the
    /// next node that announced it.
    fn pull_wanted(&mut self, now: Instant) {
        let mut pulls: BTreeMap<NodeId, Vec<ShortKey>> = BTreeMap::new();
        let mut next: Option<Instant> = None;
        let store = &self.store;
        let stats = &mut self.stats;
        let pull_delay = self.config.pull_delay;
        self.wanted.retain(|key, w| {
            if store.by_short(*key).any(|(_, r)| r.version >= w.version) {
                return false;
            }
            if w.due > now {
                next = Some(next.map_or(w.due, |t| t.min(w.due)));
                return true;
            }
            let Some(to) = w.from.pop_front() else {
                return false;
            };
            pulls.entry(to).or_default().push(*key);
            stats.pulled_after_have += 1;
            if w.from.is_empty() {
                // Nobody else to ask: anti-entropy brings it if this pull does not.
                return false;
            }
            w.due = now + pull_delay;
            next = Some(next.map_or(w.due, |t| t.min(w.due)));
            true
        });
        self.pull_at = next;
        for (to, keys) in pulls {
            for chunk in keys.chunks(MAX_PULL_ENTRIES) {
                self.send(to, &GossipMsg::Pull(chunk.to_vec()));
            }
        }
    }

    fn on_push(&mut self, now: Instant, from: NodeId, records: Vec<WireRecord>) {
        for rec in records {
            if !self.id_allowed(rec.kind, &rec.id) {
                self.stats.invalid_records += 1;
                if self.filtered.len() < 64 {
                    self.filtered.push_back(RecordKey {
                        kind: rec.kind,
                        id: rec.id,
                    });
                }
                continue;
            }
            if !(self.validator)(rec.kind, &rec.body) {
                self.stats.invalid_records += 1;
                continue;
            }
            let key = RecordKey {
                kind: rec.kind,
                id: rec.id,
            };
            let merge = self.store.merge(key, rec.version, &rec.body);
            if merge != Merge::Older
                && let Some(w) = self.wanted.get(&key.short())
                && w.version <= rec.version
            {
                // Announced to us, and now pushed: no need to pull it.
                self.wanted.remove(&key.short());
            }
            match merge {
                Merge::Applied => {
                    self.stats.records_applied += 1;
                    self.changes.push_back(key);
                    // A new version: only its sender is known to hold it.
                    let holders = self.relay.entry(key).or_default();
                    holders.clear();
                    holders.push(from);
                    if self.relay_at.is_none() {
                        let d = self.config.relay_delay;
                        let jitter = f64::from(self.rng.next_u32() % 1000) / 1000.0;
                        self.relay_at = Some(now + d / 2 + d.mul_f64(jitter));
                    }
                }
                Merge::Same => {
                    self.stats.records_redundant += 1;
                    if let Some(holders) = self.relay.get_mut(&key)
                        && !holders.contains(&from)
                    {
                        // It has this version: no need to pass it on to it.
                        holders.push(from);
                    }
                }
                Merge::Older => {
                    // The sender is behind: give it ours.
                    self.stats.records_redundant += 1;
                    self.pending.entry(from).or_default().push(key);
                }
            }
        }
    }

    /// Passes on received changes and runs anti-entropy when due; forgets silent inbound
    /// neighbours.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.relay_at.is_some_and(|at| now >= at) {
            self.relay_at = None;
            let relay = std::mem::take(&mut self.relay);
            // One random order of the neighbours for the whole round, so that changes that
            // arrived together (a member's member and adjacency records) go on together to
            // the same well-linked neighbours rather than each to its own.
            let mut order: Vec<NodeId> = self.neighbours(now).into_iter().collect();
            for i in (1..order.len()).rev() {
                let j = (self.rng.next_u32() as usize) % (i + 1);
                order.swap(i, j);
            }
            #[allow(clippy::disallowed_types)] // looked up only: never visited
            let position: foldhash::HashMap<NodeId, usize> =
                order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
            // Outbound neighbours and inbound ones that may have no other source must get a
            // change; well-linked inbound ones fill what is left of the fan-out, in the
            // round's order.
            let optional: Vec<bool> = order
                .iter()
                .map(|n| !self.outbound.contains(n) && self.well_linked.contains(n))
                .collect();
            let required_all = optional.iter().filter(|o| !**o).count();
            let mut bodies: Vec<Vec<RecordKey>> = vec![Vec::new(); order.len()];
            let mut haves: Vec<Vec<RecordKey>> = vec![Vec::new(); order.len()];
            let mut holds = vec![false; order.len()];
            let mut held: Vec<usize> = Vec::new();
            for (key, holders) in relay {
                held.clear();
                held.extend(holders.iter().filter_map(|h| position.get(h).copied()));
                for &i in &held {
                    holds[i] = true;
                }
                let required = required_all - held.iter().filter(|&&i| !optional[i]).count();
                let mut room = self.config.relay_fanout.saturating_sub(required);
                // The body to the first few in the round's order, a have to the others.
                let mut sent = 0;
                for i in 0..order.len() {
                    if holds[i] {
                        continue;
                    }
                    if optional[i] {
                        if room == 0 {
                            continue;
                        }
                        room -= 1;
                    }
                    if sent < self.config.eager_fanout {
                        bodies[i].push(key);
                    } else {
                        haves[i].push(key);
                    }
                    sent += 1;
                }
                for &i in &held {
                    holds[i] = false;
                }
            }
            for (i, n) in order.into_iter().enumerate() {
                for (queue, keys) in [
                    (&mut self.pending, std::mem::take(&mut bodies[i])),
                    (&mut self.announce, std::mem::take(&mut haves[i])),
                ] {
                    if !keys.is_empty() {
                        queue.entry(n).or_default().extend(keys);
                    }
                }
            }
            self.flush();
        }
        if self.pull_at.is_some_and(|at| now >= at) {
            self.pull_wanted(now);
        }
        if now < self.next_ae {
            return;
        }
        let ttl = self.config.inbound_ttl;
        self.inbound
            .retain(|_, at| now.saturating_duration_since(*at) < ttl);
        self.drop_stale_pending(now);
        let targets: Vec<NodeId> = if self.outbound.is_empty() {
            self.inbound_neighbours(now).copied().collect()
        } else {
            self.outbound.iter().copied().collect()
        };
        if !targets.is_empty() {
            self.ae_cursor = (self.ae_cursor + 1) % targets.len();
            self.send_digest(targets[self.ae_cursor]);
        }
        // 0.75 to 1.25 times the interval, so nodes started together drift apart.
        let base = self.config.anti_entropy_interval;
        let jitter = (self.rng.next_u32() % 1000) as u64;
        self.next_ae = now + base * 3 / 4 + base.mul_f64(jitter as f64 / 2000.0);
    }

    /// When [`Gossip::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Instant {
        [self.relay_at, self.pull_at]
            .into_iter()
            .flatten()
            .fold(self.next_ae, Instant::min)
    }

    /// Next message to send: `(neighbour, bytes)`. The caller seals it on its session with
    /// that neighbour (and drops it if there is none: anti-entropy repairs the loss).
    pub fn poll_send(&mut self) -> Option<(NodeId, Vec<u8>)> {
        self.sends.pop_front()
    }

    /// Next record refused by an id filter ([`Gossip::set_id_filter`]).
    pub fn poll_filtered(&mut self) -> Option<RecordKey> {
        self.filtered.pop_front()
    }

    /// Next record that changed because of a message received.
    pub fn poll_change(&mut self) -> Option<RecordKey> {
        self.changes.pop_front()
    }

    /// A record.
    pub fn get(&self, key: &RecordKey) -> Option<&Record> {
        self.store.get(key)
    }

    fn drop_stale_pending(&mut self, now: Instant) {
        let live = self.neighbours(now);
        self.pending.retain(|id, _| live.contains(id));
        self.announce.retain(|id, _| live.contains(id));
    }

    /// Pushes one record to `to` now (neighbour or not): a donation goes straight to the
    /// node that asked, besides spreading by gossip.
    pub fn push_to(&mut self, to: NodeId, key: RecordKey) {
        self.push_all_to(to, [key]);
    }

    /// Pushes the records of `keys` that are held to `to` now, packed together: a node's
    /// own records to a new neighbour.
    pub fn push_all_to(&mut self, to: NodeId, keys: impl IntoIterator<Item = RecordKey>) {
        let held: Vec<RecordKey> = keys
            .into_iter()
            .filter(|k| self.store.get(k).is_some())
            .collect();
        if !held.is_empty() {
            self.pending.entry(to).or_default().extend(held);
            self.flush();
        }
    }

    /// Sends our digest to a neighbour.
    fn send_digest(&mut self, to: NodeId) {
        self.stats.digests += 1;
        let d = self.store.digest();
        self.send(to, &d);
    }

    /// Sends our digest *aside*, to a node that is not our neighbour (gossip op 6): it is
    /// answered like any digest, so occasional exchanges with a random member join gossip
    /// islands that know of each other, but it makes us no inbound neighbour of the
    /// receiver (which would list us in its adjacency record, flooded to all, and unlist
    /// us `inbound_ttl` later).
    pub fn send_digest_aside(&mut self, to: NodeId) {
        self.stats.digests += 1;
        let d = self.store.digest_sent(true);
        self.send(to, &d);
    }

    fn send(&mut self, to: NodeId, msg: &GossipMsg) {
        if let Some(bytes) = msg.to_bytes() {
            self.stats.tx_messages += 1;
            self.stats.tx_bytes += bytes.len() as u64;
            self.sends.push_back((to, bytes));
        }
    }

    /// Packs every queued record into push messages, and every queued announcement into
    /// haves.
    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (to, mut keys) in pending {
            keys.sort_unstable();
            keys.dedup();
            let mut batch: Vec<WireRecord> = Vec::new();
            let mut len = 4;
            for key in keys {
                let Some(r) = self.store.get(&key) else {
                    continue;
                };
                let rec = WireRecord {
                    kind: key.kind,
                    id: key.id,
                    version: r.version,
                    body: r.body.clone(),
                };
                if len + rec.wire_len() > MAX_GOSSIP_LEN && !batch.is_empty() {
                    self.send(to, &GossipMsg::Push(std::mem::take(&mut batch)));
                    len = 4;
                }
                len += rec.wire_len();
                batch.push(rec);
            }
            if !batch.is_empty() {
                self.send(to, &GossipMsg::Push(batch));
            }
        }
        let announce = std::mem::take(&mut self.announce);
        for (to, mut keys) in announce {
            keys.sort_unstable();
            keys.dedup();
            let entries: Vec<ListingEntry> = keys
                .iter()
                .filter_map(|k| {
                    let r = self.store.get(k)?;
                    Some(ListingEntry {
                        key: k.short(),
                        version: r.version,
                    })
                })
                .collect();
            for chunk in entries.chunks(MAX_HAVE_ENTRIES) {
                self.send(to, &GossipMsg::Have(chunk.to_vec()));
            }
        }
    }
}

#[cfg(test)]
// A test starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    impl Gossip {
        /// When changes wait to be passed on or announced records to be pulled.
        fn busy_until(&self) -> Option<Instant> {
            [self.relay_at, self.pull_at].into_iter().flatten().min()
        }
    }

    fn id(n: u8) -> NodeId {
        let mut id = [0u8; 32];
        id[0] = n.wrapping_mul(37);
        id[1] = n;
        id
    }

    /// Engines wired all to all (or as `links` says), exchanging messages until quiet.
    struct Net {
        nodes: Vec<Gossip>,
        now: Instant,
        /// Messages delivered.
        delivered: usize,
        drop_every: usize,
    }

    impl Net {
        fn new(n: usize) -> Self {
            let now = Instant::now();
            let nodes = (0..n)
                .map(|i| Gossip::new(GossipConfig::default(), now, [i as u8; 32]))
                .collect();
            Self {
                nodes,
                now,
                delivered: 0,
                drop_every: 0,
            }
        }

        fn index(&self, nid: &NodeId) -> usize {
            (0..self.nodes.len())
                .find(|i| id(*i as u8) == *nid)
                .unwrap()
        }

        fn pump(&mut self) {
            let mut sent = 0usize;
            loop {
                let mut any = false;
                for i in 0..self.nodes.len() {
                    while let Some((to, bytes)) = self.nodes[i].poll_send() {
                        any = true;
                        sent += 1;
                        if self.drop_every > 0 && sent.is_multiple_of(self.drop_every) {
                            continue;
                        }
                        let j = self.index(&to);
                        self.delivered += 1;
                        self.nodes[j].handle(self.now, id(i as u8), &bytes).unwrap();
                    }
                }
                if !any {
                    // Received changes wait `relay_delay` before they are passed on.
                    let Some(at) = self.nodes.iter().filter_map(Gossip::busy_until).max() else {
                        break;
                    };
                    self.now = self.now.max(at);
                    for g in &mut self.nodes {
                        if g.busy_until().is_some_and(|t| t <= self.now) {
                            g.handle_timeout(self.now);
                        }
                    }
                }
            }
        }

        fn tick(&mut self, secs: u64) {
            for _ in 0..secs * 4 {
                self.now += Duration::from_millis(250);
                for g in &mut self.nodes {
                    g.handle_timeout(self.now);
                }
                self.pump();
            }
        }

        fn converged(&self) -> bool {
            let d = self.nodes[0].store().digest();
            self.nodes.iter().all(|g| g.store().digest() == d)
        }
    }

    fn ring(net: &mut Net) {
        let n = net.nodes.len();
        for i in 0..n {
            let out: BTreeSet<NodeId> = [id(((i + 1) % n) as u8)].into_iter().collect();
            let now = net.now;
            net.nodes[i].set_outbound(now, out);
        }
        net.pump();
    }

    #[test]
    fn a_record_floods_a_ring_by_push() {
        let mut net = Net::new(8);
        ring(&mut net);
        let now = net.now;
        let key = RecordKey { kind: 1, id: id(3) };
        assert!(net.nodes[3].insert_local(now, key, 1, b"hello"));
        net.pump();
        assert!(net.converged());
        for g in &net.nodes {
            assert_eq!(g.get(&key).unwrap().body, b"hello");
        }
        // A stale local write is refused and sends nothing.
        assert!(!net.nodes[2].insert_local(now, key, 0, b"old"));
        assert!(net.nodes[2].poll_send().is_none());
    }

    #[test]
    fn anti_entropy_repairs_lost_pushes_and_late_joiners() {
        let mut net = Net::new(6);
        ring(&mut net);
        net.drop_every = 2; // lose every second message
        let now = net.now;
        for i in 0..6u8 {
            for k in 0..40u8 {
                let mut rid = id(i);
                rid[2] = k;
                net.nodes[usize::from(i)].insert_local(
                    now,
                    RecordKey { kind: 1, id: rid },
                    1,
                    &[i, k],
                );
            }
        }
        net.pump();
        assert!(!net.converged());
        net.drop_every = 0;
        net.tick(30);
        assert!(net.converged());
        assert_eq!(net.nodes[5].store().len(), 240);
    }

    #[test]
    fn newer_versions_win_and_the_sender_of_an_old_one_is_corrected() {
        let mut net = Net::new(2);
        ring(&mut net);
        let key = RecordKey { kind: 2, id: id(0) };
        let now = net.now;
        // Written on both sides while they did not talk (no neighbours yet for node 1's write).
        net.nodes[0].insert_local(now, key, 5, b"new");
        net.nodes[1].forget_neighbour(&id(0));
        net.nodes[1].insert_local(now, key, 3, b"old");
        net.pump();
        net.tick(5);
        assert!(net.converged());
        assert_eq!(net.nodes[1].get(&key).unwrap().body, b"new");
    }

    #[test]
    fn an_id_filter_keeps_other_records_out_and_reports_them() {
        let mut net = Net::new(2);
        ring(&mut net);
        let now = net.now;
        let mine = RecordKey {
            kind: 3,
            id: [7; 32],
        };
        let mut other_id = [7; 32];
        other_id[5] = 9;
        let theirs = RecordKey {
            kind: 3,
            id: other_id,
        };
        net.nodes[1].set_id_filter(3, 4, Some(vec![7; 4]));
        // A have of a record the filter refuses asks for nothing.
        net.nodes[1].handle(now, id(0), &have(theirs, 1)).unwrap();
        assert!(net.nodes[1].wanted.is_empty());
        net.nodes[1].handle(now, id(0), &have(mine, 1)).unwrap();
        assert_eq!(net.nodes[1].wanted.len(), 1);
        net.nodes[0].insert_local(now, mine, 1, b"a");
        net.nodes[0].insert_local(now, theirs, 1, b"b");
        net.pump();
        assert!(net.nodes[1].get(&mine).is_some());
        assert!(net.nodes[1].get(&theirs).is_none());
        assert_eq!(net.nodes[1].poll_filtered(), Some(theirs));
        // Setting a filter forgets what does not match.
        net.nodes[0].set_id_filter(3, 4, Some(vec![7; 4]));
        assert!(net.nodes[0].get(&theirs).is_none());
        assert!(net.nodes[0].get(&mine).is_some());
        net.tick(5);
        assert!(net.converged());
    }

    #[test]
    fn a_digest_sent_aside_makes_no_neighbour_but_is_answered() {
        let now = Instant::now();
        let mut a = Gossip::new(GossipConfig::default(), now, [1; 32]);
        let mut b = Gossip::new(GossipConfig::default(), now, [2; 32]);
        let key = RecordKey { kind: 1, id: id(1) };
        a.insert_local(now, key, 1, b"a's");
        // A digest sent aside (an island-joining digest to a random member) is answered,
        // and the exchange brings our records over ...
        b.send_digest_aside(id(1));
        let (_, sent) = b.poll_send().unwrap();
        assert_eq!(sent[1], 6, "sent aside as gossip op 6");
        a.handle(now, id(2), &sent).unwrap();
        loop {
            let mut any = false;
            while let Some((_, m)) = b.poll_send() {
                any = true;
                a.handle(now, id(2), &m).unwrap();
            }
            while let Some((_, m)) = a.poll_send() {
                any = true;
                b.handle(now, id(1), &m).unwrap();
            }
            if !any {
                break;
            }
        }
        assert_eq!(b.get(&key).unwrap().body, b"a's");
        // ... but it is no neighbour: no pushes go to it and nothing is reported.
        assert!(!a.is_neighbour(now, &id(2)));
        assert!(a.neighbours(now).is_empty());
        assert_eq!(a.poll_new_neighbour(), None);
        // A neighbour's digest (the node chose us) makes it an inbound neighbour at once,
        // reported once.
        a.handle(now, id(2), &b.store().digest().to_bytes().unwrap())
            .unwrap();
        assert!(a.is_neighbour(now, &id(2)));
        assert_eq!(a.poll_new_neighbour(), Some(id(2)));
        a.handle(now, id(2), &b.store().digest().to_bytes().unwrap())
            .unwrap();
        assert_eq!(a.poll_new_neighbour(), None);
        // A digest sent aside does not keep it one: it lapses `inbound_ttl` after the last
        // neighbour's digest.
        let later = now + GossipConfig::default().inbound_ttl;
        a.handle(
            later,
            id(2),
            &b.store().digest_sent(true).to_bytes().unwrap(),
        )
        .unwrap();
        assert!(!a.is_neighbour(later, &id(2)));
    }

    #[test]
    fn a_new_outbound_neighbour_is_reported_once() {
        let now = Instant::now();
        let mut a = Gossip::new(GossipConfig::default(), now, [1; 32]);
        a.set_outbound(now, [id(2)].into_iter().collect());
        assert_eq!(a.poll_new_neighbour(), Some(id(2)));
        a.set_outbound(now, [id(2), id(3)].into_iter().collect());
        assert_eq!(a.poll_new_neighbour(), Some(id(3)));
        assert_eq!(a.poll_new_neighbour(), None);
    }

    /// Who `g` passes a change pushed by `from` on to (its body or a have): a push, then its
    /// relay timer.
    fn relayed_to(g: &mut Gossip, now: Instant, from: NodeId, version: u64) -> Vec<NodeId> {
        let push = GossipMsg::Push(vec![WireRecord {
            kind: 1,
            id: [7; 32],
            version,
            body: b"news".to_vec(),
        }])
        .to_bytes()
        .unwrap();
        g.handle(now, from, &push).unwrap();
        g.handle_timeout(g.relay_at.unwrap());
        // Pushes and haves only (a digest may fall due meanwhile).
        let mut to: Vec<NodeId> = std::iter::from_fn(|| g.poll_send())
            .filter(|(_, m)| {
                matches!(
                    GossipMsg::parse(m),
                    Ok(GossipMsg::Push(_) | GossipMsg::Have(_))
                )
            })
            .map(|(t, _)| t)
            .collect();
        to.sort_unstable();
        to
    }

    #[test]
    fn well_linked_inbound_neighbours_share_what_is_left_of_the_fanout() {
        let mut now = Instant::now();
        let config = GossipConfig {
            relay_fanout: 5,
            ..GossipConfig::default()
        };
        let mut g = Gossip::new(config, now, [9; 32]);
        // Outbound 1..=3; inbound 10..=29 (their digests), of which 10..=25 are well linked.
        g.set_outbound(now, (1..=3).map(id).collect());
        let digest = Store::default().digest().to_bytes().unwrap();
        for n in 10..=29 {
            g.handle(now, id(n), &digest).unwrap();
            g.set_well_linked(id(n), n <= 25);
        }
        while g.poll_send().is_some() {}
        let required: BTreeSet<NodeId> = (1..=3).chain(26..=29).map(id).collect();
        let mut seen_optional = BTreeSet::new();
        // 100 ms apart: the inbound neighbours stay live (`inbound_ttl`) all along.
        for version in 1..=40 {
            now += Duration::from_millis(100);
            let to = relayed_to(&mut g, now, id(1), version);
            let to_set: BTreeSet<NodeId> = to.iter().copied().collect();
            // Every outbound and not-well-linked neighbour but the sender; nobody twice.
            let expected: BTreeSet<NodeId> =
                required.iter().copied().filter(|n| *n != id(1)).collect();
            assert!(to_set.is_superset(&expected), "version {version}: {to:?}");
            assert_eq!(to.len(), to_set.len());
            // Six required ones leave no room in a fan-out of five: no well-linked one.
            assert_eq!(to.len(), expected.len(), "version {version}");
            seen_optional.extend(to_set.difference(&expected).copied());
        }
        assert!(seen_optional.is_empty());

        // With the fan-out larger than the required ones, the rest is drawn at random among
        // the well-linked ones, and over many changes each of them gets some.
        g.config.relay_fanout = 10;
        for version in 41..=200 {
            now += Duration::from_millis(100);
            let to = relayed_to(&mut g, now, id(1), version);
            assert_eq!(to.len(), 10, "version {version}");
            let optional: Vec<NodeId> = to
                .iter()
                .copied()
                .filter(|n| !required.contains(n))
                .collect();
            assert_eq!(optional.len(), 4);
            assert!(optional.iter().all(|n| (10..=25).map(id).any(|w| w == *n)));
            seen_optional.extend(optional);
        }
        assert_eq!(seen_optional, (10..=25).map(id).collect());
        // A node no longer well linked is required again.
        g.set_well_linked(id(10), false);
        now += Duration::from_millis(100);
        assert!(relayed_to(&mut g, now, id(1), 201).contains(&id(10)));
    }

    #[test]
    fn a_received_change_skips_the_neighbours_that_pushed_it_meanwhile() {
        let now = Instant::now();
        let mut g = Gossip::new(GossipConfig::default(), now, [9; 32]);
        g.set_outbound(now, (1..=4).map(id).collect());
        while g.poll_send().is_some() {}
        let push = GossipMsg::Push(vec![WireRecord {
            kind: 1,
            id: [7; 32],
            version: 1,
            body: b"news".to_vec(),
        }])
        .to_bytes()
        .unwrap();
        g.handle(now, id(1), &push).unwrap();
        // Node 2 pushes the same record before we passed it on: it has it.
        g.handle(now + Duration::from_millis(5), id(2), &push)
            .unwrap();
        assert!(g.poll_send().is_none(), "passed on before relay_delay");
        let at = g.poll_timeout();
        assert!(at <= now + GossipConfig::default().relay_delay * 3 / 2);
        g.handle_timeout(at);
        let mut to: Vec<NodeId> = std::iter::from_fn(|| g.poll_send())
            .map(|(t, _)| t)
            .collect();
        to.sort_unstable();
        let mut want = vec![id(3), id(4)];
        want.sort_unstable();
        assert_eq!(to, want);
    }

    /// Bodies each node received for one record flooded over a graph where node `i` chose
    /// `i + 1`, `i + 3`, `i + 7` and `i + 12` (mod `n`) as outbound neighbours; and whether
    /// all got it.
    fn flood(n: usize, eager_fanout: usize) -> (u64, u64, bool) {
        let mut net = Net::new(n);
        for g in &mut net.nodes {
            g.config.eager_fanout = eager_fanout;
        }
        let now = net.now;
        for i in 0..n {
            let out = [1, 3, 7, 12].map(|d| id(((i + d) % n) as u8)).into_iter();
            net.nodes[i].set_outbound(now, out.collect());
        }
        // The digests make the inbound neighbours; then a quiet start.
        net.pump();
        let before: Vec<GossipStats> = net.nodes.iter().map(Gossip::stats).collect();
        let key = RecordKey { kind: 1, id: id(0) };
        net.nodes[0].insert_local(now, key, 1, b"news");
        net.pump();
        let all = net.nodes.iter().all(|g| g.get(&key).is_some());
        let (mut bodies, mut pulled) = (0, 0);
        for (g, b) in net.nodes.iter().zip(before) {
            let s = g.stats();
            bodies +=
                s.records_applied + s.records_redundant - b.records_applied - b.records_redundant;
            pulled += s.pulled_after_have - b.pulled_after_have;
        }
        (bodies, pulled, all)
    }

    #[test]
    fn a_flood_sends_few_bodies_and_announces_the_rest() {
        let n = 40;
        let (eager_bodies, eager_pulled, eager_all) = flood(n, usize::MAX);
        let (lazy_bodies, lazy_pulled, lazy_all) = flood(n, 2);
        assert!(eager_all && lazy_all);
        assert_eq!(eager_pulled, 0);
        // Every node gets at least one body; with bodies to all, most get several.
        assert!(lazy_bodies >= n as u64 - 1);
        assert!(
            lazy_bodies * 2 < eager_bodies,
            "{lazy_bodies} bodies with haves, {eager_bodies} without"
        );
        // Bodies plus pulls: nobody is left out waiting for anti-entropy.
        assert!(lazy_pulled < n as u64);
    }

    fn have(key: RecordKey, version: u64) -> Vec<u8> {
        GossipMsg::Have(vec![ListingEntry {
            key: key.short(),
            version,
        }])
        .to_bytes()
        .unwrap()
    }

    fn sent(g: &mut Gossip) -> Vec<(NodeId, GossipMsg)> {
        std::iter::from_fn(|| g.poll_send())
            .filter_map(|(to, m)| match GossipMsg::parse(&m).unwrap() {
                GossipMsg::Digest { .. } => None,
                msg => Some((to, msg)),
            })
            .collect()
    }

    #[test]
    fn an_announced_record_is_pulled_when_no_push_brings_it() {
        let now = Instant::now();
        let delay = GossipConfig::default().pull_delay;
        let mut g = Gossip::new(GossipConfig::default(), now, [9; 32]);
        g.set_outbound(now, (1..=3).map(id).collect());
        sent(&mut g);
        let key = RecordKey {
            kind: 1,
            id: [7; 32],
        };
        // Announced by 1, then by 2: nothing is asked at once.
        g.handle(now, id(1), &have(key, 4)).unwrap();
        g.handle(now + delay / 2, id(2), &have(key, 4)).unwrap();
        assert!(sent(&mut g).is_empty());
        assert_eq!(g.poll_timeout(), now + delay);
        // No push came: pulled from the first that announced it ...
        g.handle_timeout(now + delay);
        assert_eq!(
            sent(&mut g),
            vec![(id(1), GossipMsg::Pull(vec![key.short()]))]
        );
        // ... and, when that brings nothing either, from the next one.
        assert_eq!(g.poll_timeout(), now + delay * 2);
        g.handle_timeout(now + delay * 2);
        assert_eq!(
            sent(&mut g),
            vec![(id(2), GossipMsg::Pull(vec![key.short()]))]
        );
        assert_eq!(g.stats().pulled_after_have, 2);

        // A push that comes in time makes the pull needless.
        let other = RecordKey {
            kind: 1,
            id: [8; 32],
        };
        let t = now + delay * 3;
        g.handle(t, id(3), &have(other, 1)).unwrap();
        let push = GossipMsg::Push(vec![WireRecord {
            kind: 1,
            id: other.id,
            version: 1,
            body: b"x".to_vec(),
        }])
        .to_bytes()
        .unwrap();
        g.handle(t + delay / 3, id(1), &push).unwrap();
        g.handle_timeout(t + delay);
        g.handle_timeout(t + delay * 3);
        assert!(
            sent(&mut g)
                .iter()
                .all(|(_, m)| !matches!(m, GossipMsg::Pull(_)))
        );
        assert_eq!(g.stats().pulled_after_have, 2);
    }

    #[test]
    fn a_have_of_an_old_version_gets_the_new_one_pushed_back() {
        let now = Instant::now();
        let mut g = Gossip::new(GossipConfig::default(), now, [9; 32]);
        g.set_outbound(now, [id(1)].into_iter().collect());
        sent(&mut g);
        let key = RecordKey {
            kind: 1,
            id: [7; 32],
        };
        g.insert_local(now, key, 5, b"five");
        sent(&mut g);
        g.handle(now, id(1), &have(key, 3)).unwrap();
        let out = sent(&mut g);
        assert_eq!(out.len(), 1);
        let (to, GossipMsg::Push(records)) = &out[0] else {
            panic!("{out:?}");
        };
        assert_eq!(*to, id(1));
        assert_eq!(
            (records[0].version, &records[0].body[..]),
            (5, &b"five"[..])
        );
        // A have of the version we hold asks nothing.
        g.handle(now, id(1), &have(key, 5)).unwrap();
        g.handle_timeout(now + Duration::from_secs(1));
        assert!(sent(&mut g).is_empty());
    }

    #[test]
    fn garbage_is_an_error_and_counted() {
        let mut g = Gossip::new(GossipConfig::default(), Instant::now(), [0; 32]);
        assert!(g.handle(Instant::now(), id(1), &[2, 9]).is_err());
        assert_eq!(g.stats().malformed, 1);
        g.set_validator(|kind, _| kind != 7);
        let push = GossipMsg::Push(vec![WireRecord {
            kind: 7,
            id: id(1),
            version: 1,
            body: vec![],
        }])
        .to_bytes()
        .unwrap();
        g.handle(Instant::now(), id(1), &push).unwrap();
        assert_eq!(g.store().len(), 0);
        assert_eq!(g.stats().invalid_records, 1);
    }
}
