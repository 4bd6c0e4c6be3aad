//! The node's side of gossip: what it announces (its member and adjacency records), what it
//! learns from the records of others, which neighbours it gossips with, which sessions it
//! keeps, and which members are alive.
//!
//! Liveness comes from the gossiped adjacency: an edge between two members counts when both
//! list each other (so the stale record of a dead node cannot keep it alive), and a member is
//! alive while it is reachable from this node over such edges or over a live session of our
//! own. A member that stays unreachable for `dead_after` is marked dead: it is not chosen as
//! a neighbour, its blocks lose their claim to live members', and the owner of the node gets
//! [`Event::MemberDead`].

use super::{Event, MAINTAIN_INTERVAL, Node};
use crate::member::Member;
use crate::peer::Peer;
use mesh_crypto::PublicKey;
use mesh_gossip::{NodeId, RecordKey};
use mesh_proto::gossip::{AdjacencyBody, KIND_ADJACENCY, KIND_MEMBER, MemberBody, prefix};
use rand_core::RngCore;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use mesh_proto::gossip::FIRST_APP_KIND;

/// A session that brought something this recently shows its peer alive.
pub(super) const LIVE_WINDOW: Duration = Duration::from_secs(30);
/// A session that carried IP packets is kept (keepalives, rekeys) this long after the last.
pub(super) const IDLE_AFTER: Duration = Duration::from_secs(120);
/// Fewest and most outbound gossip neighbours; in between, about log2 of the members.
const MIN_NEIGHBOURS: usize = 3;
const MAX_NEIGHBOURS: usize = 16;
/// Unanswered handshakes after which an outbound neighbour is replaced.
const NEIGHBOUR_ATTEMPTS: u32 = 3;
/// A bootstrap peer stays an outbound neighbour at least this long after the first session
/// (and until it sent us gossip): long enough for several digests each way, so what we know
/// reaches it and the nodes that joined through us do not form an island.
const BOOTSTRAP_KEEP: Duration = Duration::from_secs(10);
/// A digest goes to one random member outside the neighbours this often: gossip islands that
/// know of each other merge even if no neighbour links them. It goes *aside* (gossip op 6):
/// the receiver answers it but does not count us as a neighbour.
const RANDOM_DIGEST_EVERY: Duration = Duration::from_secs(60);
/// Liveness is recomputed at least this often even when no record changed (session
/// activity ages without any record changing).
const LIVENESS_EVERY: Duration = Duration::from_secs(5);

/// What the last full liveness walk started from and did not reach (see
/// [`Node::evaluate_liveness`]).
#[derive(Debug, Default)]
pub(super) struct LivenessCache {
    /// Members known then.
    members: usize,
    /// The members the walk started from, sorted.
    seeds: Vec<PublicKey>,
    /// Members it did not reach (or that left), sorted.
    unreached: Vec<PublicKey>,
}

/// An outbound neighbour to replace: no session, handshakes unanswered, and not in the
/// middle of a failover (which makes a new session through a relay, see `FAILOVER_GRACE`).
fn failing_peer(now: Instant, p: &Peer) -> bool {
    p.current.is_none() && p.attempts >= NEIGHBOUR_ATTEMPTS && !p.failing_over(now)
}

/// Whether `p` carried IP packets within [`IDLE_AFTER`]: its session is kept up for them.
pub(super) fn carries_data(now: Instant, p: &Peer) -> bool {
    p.last_data
        .is_some_and(|t| now.saturating_duration_since(t) < IDLE_AFTER)
}

/// Whether the sorted prefixes hold `p` (compared as numbers: the same order as the bytes,
/// without a `memcmp` per step).
pub(super) fn has_prefix(sorted: &[[u8; 8]], p: &[u8; 8]) -> bool {
    let want = u64::from_be_bytes(*p);
    sorted
        .binary_search_by(|x| u64::from_be_bytes(*x).cmp(&want))
        .is_ok()
}

/// Record bodies of kinds this node reads must parse; other kinds pass (newer nodes may
/// gossip kinds this one does not know).
pub(super) fn valid_record(kind: u8, body: &[u8]) -> bool {
    match kind {
        KIND_MEMBER => MemberBody::parse(body).is_ok(),
        KIND_ADJACENCY => AdjacencyBody::parse(body).is_ok(),
        super::KIND_RING => mesh_ipam::ring::Entry::decode(body).is_ok(),
        _ => true,
    }
}

fn v4(addr: Option<SocketAddr>) -> Option<std::net::SocketAddrV4> {
    match addr {
        Some(SocketAddr::V4(a)) => Some(a),
        _ => None,
    }
}

impl Node {
    pub(super) fn member_mut(&mut self, key: PublicKey) -> &mut Member {
        let by_prefix = &mut self.by_prefix;
        self.members.entry(key).or_insert_with(|| {
            let m = Member::new(key);
            by_prefix.insert(m.prefix(), key);
            m
        })
    }

    fn own_id(&self) -> NodeId {
        *self.keypair.public().as_bytes()
    }

    /// Writes this node's member record at the current version.
    pub(super) fn publish_member(&mut self, now: Instant) {
        let body = MemberBody {
            name: self.name.clone(),
            endpoint: v4(self.announced_endpoint),
            blocks: self.blocks.clone(),
            left: false,
        };
        let Some(bytes) = body.to_bytes() else {
            tracing::warn!("member record over its limits (name or blocks); not announced");
            return;
        };
        let key = RecordKey {
            kind: KIND_MEMBER,
            id: self.own_id(),
        };
        self.gossip
            .insert_local(now, key, self.info_version, &bytes);
    }

    /// Writes this node's adjacency record at the current version.
    pub(super) fn publish_adjacency(&mut self, now: Instant, neighbours: Vec<([u8; 8], u16)>) {
        self.own_adjacency = neighbours.iter().map(|(p, _)| *p).collect();
        let Some(bytes) = (AdjacencyBody { neighbours }).to_bytes() else {
            return;
        };
        let key = RecordKey {
            kind: KIND_ADJACENCY,
            id: self.own_id(),
        };
        self.gossip
            .insert_local(now, key, self.adjacency_version, &bytes);
        self.liveness_dirty = true;
    }

    /// Applies the records gossip changed and sends what gossip queued.
    pub(super) fn pump_gossip(&mut self, now: Instant) {
        loop {
            let mut any = false;
            while let Some(id) = self.gossip.poll_new_neighbour() {
                any = true;
                self.push_own_records(id);
            }
            while let Some(key) = self.gossip.poll_change() {
                any = true;
                self.apply_record(now, key);
            }
            while let Some(key) = self.gossip.poll_filtered() {
                if key.kind == super::KIND_RING {
                    self.foreign_ring(&key.id);
                }
            }
            while let Some((to, bytes)) = self.gossip.poll_send() {
                any = true;
                let key = PublicKey::from_bytes(to);
                if !self.send_plaintext(now, key, &bytes) && self.ensure_peer(now, key) {
                    // Sent when the session is up (the queue is bounded; anti-entropy
                    // repairs whatever it drops).
                    if let Some(p) = self.peers.get_mut(&key) {
                        p.enqueue(&bytes);
                    }
                    self.ensure_handshake(now, key);
                }
            }
            if !any {
                break;
            }
        }
        // Received changes are passed on a little later (`GossipConfig::relay_delay`).
        let at = self.gossip.poll_timeout();
        self.schedule(at);
    }

    /// Our own records go to a new neighbour at once: a newcomer's member record (its
    /// endpoint and blocks) would otherwise reach the cluster only by anti-entropy, seconds
    /// after its adjacency record made it known alive.
    fn push_own_records(&mut self, to: NodeId) {
        let id = self.own_id();
        let mut keys = vec![
            RecordKey {
                kind: KIND_MEMBER,
                id,
            },
            RecordKey {
                kind: KIND_ADJACENCY,
                id,
            },
        ];
        keys.extend(self.own_records.iter().copied());
        self.gossip.push_all_to(to, keys);
    }

    fn apply_record(&mut self, now: Instant, key: RecordKey) {
        let Some(rec) = self.gossip.get(&key) else {
            return;
        };
        let version = rec.version;
        let body = rec.body.clone();
        if key.kind == super::KIND_RING {
            self.apply_ring_record(now, &key.id);
            return;
        }
        if key.kind >= FIRST_APP_KIND {
            // Carried for the owner of the node (DNS names, ...): it reads the record.
            self.events.push_back(Event::RecordChanged {
                kind: key.kind,
                id: key.id,
            });
            return;
        }
        let pk = PublicKey::from_bytes(key.id);
        if pk == self.keypair.public() {
            // Our own record, newer than ours: written by an earlier run of this node (or
            // forged). Announce again above it, so the cluster takes ours.
            match key.kind {
                KIND_MEMBER if version >= self.info_version => {
                    self.info_version = version + 1;
                    self.publish_member(now);
                }
                KIND_ADJACENCY if version >= self.adjacency_version => {
                    self.adjacency_version = version + 1;
                    let current = self.own_adjacency.iter().map(|p| (*p, 0)).collect();
                    self.publish_adjacency(now, current);
                }
                _ => {}
            }
            return;
        }
        match key.kind {
            KIND_MEMBER => {
                let Ok(m) = MemberBody::parse(&body) else {
                    return;
                };
                let endpoint = m.endpoint.map(SocketAddr::V4);
                let member = self.member_mut(pk);
                if version < member.version {
                    return;
                }
                let was_left = member.left;
                // A new generation is a restart: the sessions we had with its earlier run
                // are gone on its side, so stop sending on them (a new handshake starts at
                // the next packet). Had it reached us already, its info would have brought
                // this version on the new session and this would not fire.
                let restarted = member.version != 0 && version >> 20 > member.version >> 20;
                let changed = member.announce(now, false, version, m.name, m.blocks);
                member.endpoint = endpoint.or(member.endpoint);
                member.left = m.left;
                if changed || was_left != m.left {
                    self.routes_dirty = true;
                }
                if restarted
                    && let Some(peer) = self.peers.get_mut(&pk)
                    && let Some(stale) = peer.current.take()
                {
                    tracing::debug!(peer = %pk.fingerprint(), "member restarted; its old session is dropped");
                    peer.previous = Some(stale);
                }
                if let Some(peer) = self.peers.get_mut(&pk)
                    && peer.current.is_none()
                {
                    // News from the member (a restart, a new endpoint): whatever the backoff
                    // of earlier failed handshakes, the next one may go at once.
                    if let Some(ep) = endpoint {
                        peer.endpoint = ep;
                    }
                    peer.attempts = 0;
                    peer.next_attempt = now;
                }
                self.liveness_dirty = true;
            }
            KIND_ADJACENCY => {
                let Ok(a) = AdjacencyBody::parse(&body) else {
                    return;
                };
                let own_prefix = prefix(self.keypair.public().as_bytes());
                let member = self.member_mut(pk);
                if version <= member.adjacency_version {
                    return;
                }
                member.adjacency_version = version;
                let mut prefixes: Vec<[u8; 8]> = a.neighbours.iter().map(|(p, _)| *p).collect();
                prefixes.sort_unstable();
                let lists_us = prefixes.binary_search(&own_prefix).is_ok();
                let others = prefixes.len() - usize::from(lists_us);
                member.adjacency = prefixes;
                // One with other neighbours enough gets changes from them too: it need not
                // get every change from us (a bootstrap peer has hundreds of such).
                self.gossip
                    .set_well_linked(key.id, others >= MIN_NEIGHBOURS);
                self.liveness_dirty = true;
            }
            _ => {}
        }
    }

    /// A peer entry for `key`, made from its announced endpoint if there is none yet.
    /// `false` when we know no way to reach it.
    pub(super) fn ensure_peer(&mut self, now: Instant, key: PublicKey) -> bool {
        if self.peers.contains_key(&key) {
            return true;
        }
        if key == self.keypair.public() {
            return false;
        }
        let Some(endpoint) = self.members.get(&key).and_then(|m| m.endpoint) else {
            return false;
        };
        self.peers.insert(key, Peer::new(key, endpoint, now));
        true
    }

    /// Whether a session with `key` should be kept up (keepalives, rekeys, re-handshakes):
    /// gossip neighbours, peers that carried IP packets lately, relays in use (`relays`),
    /// and the bootstrap peers while no neighbour is reachable.
    pub(super) fn wants_session(
        &self,
        now: Instant,
        key: PublicKey,
        relays: &HashSet<PublicKey>,
    ) -> bool {
        if self.gossip.is_neighbour(now, key.as_bytes()) || relays.contains(&key) {
            return true;
        }
        let Some(peer) = self.peers.get(&key) else {
            return false;
        };
        if carries_data(now, peer) {
            return true;
        }
        let bootstrap = self.bootstrap.iter().any(|b| b.resolved == Some(key));
        bootstrap && !self.has_live_neighbour(now)
    }

    fn has_live_neighbour(&self, now: Instant) -> bool {
        self.gossip.outbound().iter().any(|id| {
            self.peers
                .get(&PublicKey::from_bytes(*id))
                .is_some_and(|p| p.current.is_some() && self.recently_heard(now, p))
        })
    }

    fn recently_heard(&self, now: Instant, p: &Peer) -> bool {
        p.last_rx
            .is_some_and(|t| now.saturating_duration_since(t) < LIVE_WINDOW)
    }

    /// Once per [`MAINTAIN_INTERVAL`]: the announced endpoint, liveness, neighbours,
    /// adjacency and routes.
    pub(super) fn maintain(&mut self, now: Instant) {
        if self.advertise.is_none() {
            let best = most_reported(&self.observed);
            if best.is_some() && best != self.announced_endpoint {
                tracing::info!(endpoint = ?best, "announcing the endpoint peers see");
                self.announced_endpoint = best;
                self.info_version += 1;
                self.publish_member(now);
            }
        }
        if self.liveness_dirty || now >= self.next_liveness {
            self.evaluate_liveness(now);
        }
        self.choose_outbound(now);
        if now >= self.next_random_digest {
            self.next_random_digest = now + RANDOM_DIGEST_EVERY;
            self.random_digest(now);
        }
        let neighbours = self.gossip.neighbours(now);
        let mut adjacency: Vec<([u8; 8], u16)> = neighbours
            .iter()
            .filter_map(|id| {
                let p = self.peers.get(&PublicKey::from_bytes(*id))?;
                // A neighbour whose path is failing over to a relay is still listed: its
                // session is being made again (`FAILOVER_GRACE`).
                let up = p.current.is_some() || p.failing_over(now);
                (up && self.recently_heard(now, p)).then(|| {
                    let ms = p
                        .rtt
                        .map_or(0, |d| d.as_millis().min(u128::from(u16::MAX)) as u16);
                    (prefix(id), ms)
                })
            })
            .collect();
        adjacency.sort_unstable();
        adjacency.truncate(mesh_proto::gossip::MAX_ADJACENCY);
        let prefixes: Vec<[u8; 8]> = adjacency.iter().map(|(p, _)| *p).collect();
        if prefixes != self.own_adjacency {
            if tracing::enabled!(tracing::Level::DEBUG) {
                let hex = |p: &[u8; 8]| p.iter().map(|b| format!("{b:02x}")).collect::<String>();
                let added: Vec<String> = prefixes
                    .iter()
                    .filter(|p| !self.own_adjacency.contains(p))
                    .map(hex)
                    .collect();
                let removed: Vec<String> = self
                    .own_adjacency
                    .iter()
                    .filter(|p| !prefixes.contains(p))
                    .map(hex)
                    .collect();
                tracing::debug!(
                    node = %self.keypair.public().fingerprint(),
                    version = self.adjacency_version + 1,
                    ?added,
                    ?removed,
                    "neighbours changed; publishing adjacency"
                );
            }
            self.adjacency_version += 1;
            self.publish_adjacency(now, adjacency);
            self.pump_gossip(now);
        }
        self.ipam_maintain(now);
        if self.routes_dirty {
            self.rebuild_routes();
        }
        let _ = MAINTAIN_INTERVAL;
    }

    /// Marks members alive or dead from reachability over mutually confirmed adjacency.
    ///
    /// The walk over every member's adjacency costs O(members × neighbours). When no record
    /// changed (`liveness_dirty`), no member was added and the walk would start from the same
    /// members as last time, it would reach the same ones: then only the members it did not
    /// reach are looked at again (they age towards `dead_after`). Same outcome, same order.
    fn evaluate_liveness(&mut self, now: Instant) {
        let dirty = self.liveness_dirty;
        self.liveness_dirty = false;
        self.next_liveness = now + LIVENESS_EVERY;
        let own = self.keypair.public();
        let own_prefix = prefix(own.as_bytes());
        let lists = |m: &Member, p: &[u8; 8]| has_prefix(&m.adjacency, p);
        // From us: members with a live session, and neighbours we list that list us.
        #[allow(clippy::disallowed_methods)] // order-free: sorted below
        let mut seeds: Vec<PublicKey> = self
            .peers
            .iter()
            .filter(|(key, p)| {
                let direct = p.current.is_some() && self.recently_heard(now, p);
                let mutual = has_prefix(&self.own_adjacency, &prefix(key.as_bytes()))
                    && self.members.get(key).is_some_and(|m| lists(m, &own_prefix));
                (direct || mutual) && self.members.contains_key(key)
            })
            .map(|(key, _)| *key)
            .collect();
        seeds.sort_unstable();
        let cache = &self.liveness_cache;
        if !dirty && cache.members == self.members.len() && cache.seeds == seeds {
            for key in cache.unreached.clone() {
                self.age_unreachable(now, key);
            }
        } else {
            self.walk_liveness(now, seeds);
        }
        let at = self.next_liveness;
        self.schedule(at);
    }

    /// Every member reachable from `seeds` over mutual adjacency is alive; the others age.
    fn walk_liveness(&mut self, now: Instant, seeds: Vec<PublicKey>) {
        // The members by position, their prefixes in a small table: the walk then follows
        // each edge with one lookup in it and one search in the neighbour's own list, where
        // looking members up by key (hashing 32 bytes, then a large entry) cost several
        // cache misses per edge. It runs at every node whenever an adjacency changes
        // anywhere, over members × neighbours edges.
        #[allow(clippy::disallowed_methods)]
        // hash order: who is reached does not depend on it; only the order of MemberDead/MemberAlive events among members in one walk does, and no consumer reads that order
        let nodes: Vec<(&PublicKey, &Member)> = self.members.iter().collect();
        let index: foldhash::HashMap<[u8; 8], u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (prefix(k.as_bytes()), i as u32))
            .collect();
        let position = |k: &PublicKey| index.get(&prefix(k.as_bytes())).copied();
        let mut reached = vec![false; nodes.len()];
        let mut queue: VecDeque<u32> = VecDeque::new();
        for i in seeds.iter().filter_map(position) {
            if !reached[i as usize] {
                reached[i as usize] = true;
                queue.push_back(i);
            }
        }
        while let Some(i) = queue.pop_front() {
            let (_, m) = nodes[i as usize];
            let mp = m.prefix();
            for p in &m.adjacency {
                let Some(j) = index.get(p).copied() else {
                    continue;
                };
                let (_, n) = nodes[j as usize];
                if reached[j as usize] {
                    continue;
                }
                if has_prefix(&n.adjacency, &mp) {
                    reached[j as usize] = true;
                    queue.push_back(j);
                }
            }
        }
        // In the map's (hash) order, each with whether the walk reached it.
        let outcome: Vec<(PublicKey, bool)> = nodes
            .iter()
            .zip(reached)
            .map(|((k, _), r)| (**k, r))
            .collect();
        let mut unreached = Vec::new();
        for (key, reached) in outcome {
            let Some(m) = self.members.get_mut(&key) else {
                continue;
            };
            if m.left || !reached {
                self.age_unreachable(now, key);
                unreached.push(key);
                continue;
            }
            m.unreachable_since = None;
            if m.dead {
                m.dead = false;
                if let Some(p) = self.peers.get_mut(&key)
                    && p.current.is_none()
                {
                    p.attempts = 0;
                    p.next_attempt = now;
                }
                tracing::info!(peer = %key.fingerprint(), name = %m.name, "member alive again");
                self.events.push_back(Event::MemberAlive { key });
                self.routes_dirty = true;
            }
        }
        self.liveness_cache = LivenessCache {
            members: self.members.len(),
            seeds,
            unreached,
        };
    }

    /// A member the liveness walk did not reach (or that left): dead once it has been
    /// unreachable for `dead_after`.
    fn age_unreachable(&mut self, now: Instant, key: PublicKey) {
        let dead_after = self.dead_after;
        let Some(m) = self.members.get_mut(&key) else {
            return;
        };
        let since = *m.unreachable_since.get_or_insert(now);
        if !m.dead && (m.left || now.saturating_duration_since(since) >= dead_after) {
            m.dead = true;
            tracing::info!(peer = %key.fingerprint(), name = %m.name, "member marked dead");
            self.events.push_back(Event::MemberDead { key });
            self.routes_dirty = true;
            self.gossip.forget_neighbour(key.as_bytes());
        } else if !m.dead {
            let at = since + dead_after;
            self.next_liveness = self.next_liveness.min(at);
        }
    }

    /// Keeps about log2(members) outbound neighbours, chosen at random among live members,
    /// replacing dead ones and ones that do not answer. Bootstrap peers are left out once
    /// there are enough others, so the first node of a cluster does not stay everybody's
    /// neighbour.
    fn choose_outbound(&mut self, now: Instant) {
        // Counted and checked key by key rather than listed and sorted: this runs every
        // second, and the sorted list of every live member is needed only when a neighbour
        // has to be drawn.
        let candidate = |m: &Member| {
            !m.dead && !m.left && (m.endpoint.is_some() || self.peers.contains_key(&m.key))
        };
        let is_candidate = |k: &PublicKey| self.members.get(k).is_some_and(candidate);
        #[allow(clippy::disallowed_methods)] // order-free: a count
        let n = self.members.values().filter(|m| candidate(m)).count();
        let log2 = (usize::BITS - n.leading_zeros()) as usize;
        let target = log2.clamp(MIN_NEIGHBOURS, MAX_NEIGHBOURS).min(n);
        // A bootstrap peer is let go only once it has told us what it knows: the nodes that
        // joined through us may be all we know, and without it we would be an island.
        let boot: BTreeSet<PublicKey> = self.bootstrap.iter().filter_map(|b| b.resolved).collect();
        let pending = |p: &Peer| {
            p.gossip_rx == 0
                || p.first_established
                    .is_none_or(|t| now.saturating_duration_since(t) < BOOTSTRAP_KEEP)
        };
        let boot_pending = boot.iter().any(|k| self.peers.get(k).is_none_or(pending));
        let failing = |k: &PublicKey| self.peers.get(k).is_some_and(|p| failing_peer(now, p));
        // Live members that are neither bootstrap peers nor failing.
        let mut set_aside: BTreeSet<PublicKey> = boot.clone();
        #[allow(clippy::disallowed_methods)] // order-free: into a BTreeSet
        set_aside.extend(
            self.peers
                .values()
                .filter(|p| failing_peer(now, p))
                .map(|p| p.key),
        );
        let others = n - set_aside.iter().filter(|k| is_candidate(k)).count();
        let eligible = |k: &PublicKey| {
            is_candidate(k) && !failing(k) && (boot_pending || others < target || !boot.contains(k))
        };
        let mut chosen: BTreeSet<PublicKey> = self
            .gossip
            .outbound()
            .iter()
            .map(|id| PublicKey::from_bytes(*id))
            .filter(|k| eligible(k))
            .collect();
        for k in &boot {
            if eligible(k) && self.peers.get(k).is_none_or(pending) {
                chosen.insert(*k);
            }
        }
        if chosen.len() < target {
            #[allow(clippy::disallowed_methods)] // order-free: sorted before the draw
            let mut pool: Vec<PublicKey> = self
                .members
                .values()
                .filter(|m| candidate(m) && eligible(&m.key) && !chosen.contains(&m.key))
                .map(|m| m.key)
                .collect();
            pool.sort_unstable();
            while chosen.len() < target && !pool.is_empty() {
                let i = (self.rng.next_u32() as usize) % pool.len();
                chosen.insert(pool.swap_remove(i));
            }
        }
        // Trimmed from the largest key down, but never a bootstrap peer we still need: a
        // node whose bootstrap handshake came late, after its own joiners, knew only them
        // and dropped the peer when its key sorted last, and stayed an island with them.
        let needed = |k: &PublicKey| boot.contains(k) && self.peers.get(k).is_none_or(pending);
        while chosen.len() > target {
            let Some(k) = chosen.iter().rev().find(|k| !needed(k)).copied() else {
                break;
            };
            chosen.remove(&k);
        }
        let ids: BTreeSet<NodeId> = chosen.iter().map(|k| *k.as_bytes()).collect();
        if &ids != self.gossip.outbound() {
            tracing::debug!(
                added = ?ids.difference(self.gossip.outbound()).map(|id| PublicKey::from_bytes(*id).fingerprint()).collect::<Vec<_>>(),
                removed = ?self.gossip.outbound().difference(&ids).map(|id| PublicKey::from_bytes(*id).fingerprint()).collect::<Vec<_>>(),
                "outbound gossip neighbours changed"
            );
            self.gossip.set_outbound(now, ids);
        }
        for k in chosen {
            if self.ensure_peer(now, k) && self.peers.get(&k).is_some_and(|p| p.current.is_none()) {
                self.ensure_handshake(now, k);
            }
        }
        self.pump_gossip(now);
    }

    /// Every member, in API form.
    pub fn members(&self, now: Instant) -> Vec<mesh_api::MemberStatus> {
        let neighbours = self.gossip.neighbours(now);
        #[allow(clippy::disallowed_methods)] // order-free: sorted by name and key below
        let mut out: Vec<mesh_api::MemberStatus> = self
            .members
            .values()
            .map(|m| {
                let peer = self.peers.get(&m.key);
                mesh_api::MemberStatus {
                    name: m.name.clone(),
                    public_key: m.key.to_string(),
                    endpoint: m.endpoint.map(|e| e.to_string()),
                    blocks: m.blocks.iter().map(ToString::to_string).collect(),
                    state: if m.left {
                        mesh_api::MemberState::Left
                    } else if m.dead {
                        mesh_api::MemberState::Dead
                    } else {
                        mesh_api::MemberState::Alive
                    },
                    neighbour: neighbours.contains(m.key.as_bytes()),
                    session: peer.is_some_and(|p| p.current.is_some()),
                    unreachable_secs: m
                        .unreachable_since
                        .map(|t| now.saturating_duration_since(t).as_secs()),
                }
            })
            .collect();
        out.push(mesh_api::MemberStatus {
            name: self.name.clone(),
            public_key: self.keypair.public().to_string(),
            endpoint: self.announced_endpoint.map(|e| e.to_string()),
            blocks: self.blocks.iter().map(ToString::to_string).collect(),
            state: mesh_api::MemberState::Local,
            neighbour: false,
            session: false,
            unreachable_secs: None,
        });
        out.sort_by(|a, b| (&a.name, &a.public_key).cmp(&(&b.name, &b.public_key)));
        out
    }

    /// Gossip counters and sizes, in API form.
    pub fn gossip_status(&self, now: Instant) -> mesh_api::GossipStatus {
        let s = self.gossip.stats();
        mesh_api::GossipStatus {
            records: self.gossip.store().len() as u64,
            neighbours: self.gossip.neighbours(now).len() as u64,
            outbound: self.gossip.outbound().len() as u64,
            tx_messages: s.tx_messages,
            tx_bytes: s.tx_bytes,
            rx_messages: s.rx_messages,
            rx_bytes: s.rx_bytes,
            records_applied: s.records_applied,
            records_redundant: s.records_redundant,
            records_pulled: s.pulled_after_have,
            malformed: s.malformed + s.invalid_records,
        }
    }

    /// Members known (not counting this node) and how many of them are alive.
    pub fn member_counts(&self) -> (usize, usize) {
        #[allow(clippy::disallowed_methods)] // order-free: a count
        let alive = self.members.values().filter(|m| !m.dead && !m.left).count();
        (self.members.len(), alive)
    }
}

/// The endpoint most peers say they see us at (ties: the lowest address).
fn most_reported(observed: &HashMap<PublicKey, SocketAddr>) -> Option<SocketAddr> {
    let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
    #[allow(clippy::disallowed_methods)]
    // order-free: a count per address, ties broken by address below
    for a in observed.values() {
        *counts.entry(*a).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|(a, ca), (b, cb)| ca.cmp(cb).then(b.cmp(a)))
        .map(|(a, _)| a)
}

impl Node {
    /// The best relay towards `dst`: a live member both we and `dst` have a direct session
    /// with (so it can forward both ways), by our round-trip time to it. Two hops at most:
    /// adjacency lists gossip neighbours, and every member has a few.
    pub(super) fn choose_relay(&self, now: Instant, dst: PublicKey) -> Option<PublicKey> {
        self.choose_relay_except(now, dst, None)
    }

    pub(super) fn choose_relay_except(
        &self,
        now: Instant,
        dst: PublicKey,
        except: Option<PublicKey>,
    ) -> Option<PublicKey> {
        let d = self.members.get(&dst)?;
        let dp = d.prefix();
        let own = self.keypair.public();
        let mut best: Option<(Duration, PublicKey)> = None;
        for p in &d.adjacency {
            let Some(&r) = self.by_prefix.get(p) else {
                continue;
            };
            if r == dst || r == own || Some(r) == except {
                continue;
            }
            let Some(rm) = self.members.get(&r) else {
                continue;
            };
            if rm.dead || rm.left || rm.adjacency.binary_search(&dp).is_err() {
                continue;
            }
            let Some(peer) = self.peers.get(&r) else {
                continue;
            };
            if peer.current.is_none() || peer.relay.is_some() || !self.recently_heard(now, peer) {
                continue;
            }
            let rtt = peer.rtt.unwrap_or(Duration::from_secs(1));
            if best.is_none_or(|(b, k)| (rtt, r) < (b, k)) {
                best = Some((rtt, r));
            }
        }
        best.map(|(_, r)| r)
    }

    /// No relay to `dst` is usable yet: start a session with one of its neighbours, so the
    /// next attempt has one.
    pub(super) fn prepare_relay(&mut self, now: Instant, dst: PublicKey) {
        let Some(d) = self.members.get(&dst) else {
            return;
        };
        let dp = d.prefix();
        let own = self.keypair.public();
        let mut candidates: Vec<PublicKey> = d
            .adjacency
            .iter()
            .filter_map(|p| self.by_prefix.get(p).copied())
            .filter(|r| {
                *r != dst
                    && *r != own
                    && self.members.get(r).is_some_and(|m| {
                        !m.dead && !m.left && m.adjacency.binary_search(&dp).is_ok()
                    })
            })
            .collect();
        candidates.sort_unstable();
        // Marked wanted: its timers start the handshake (not from here, which runs inside
        // a handshake's own path choice).
        if let Some(r) = candidates.first().copied()
            && self.ensure_peer(now, r)
            && let Some(p) = self.peers.get_mut(&r)
            && p.current.is_none()
        {
            if super::note_data(now, p) {
                self.timed.insert(r);
            }
            self.schedule(now);
        }
    }
}

impl Node {
    /// One digest to a random member that is not a neighbour (see [`RANDOM_DIGEST_EVERY`]),
    /// alive or dead (but not left): a member taken for dead may only be on the other side
    /// of a partition that has healed. When both sides took each other for dead while no
    /// session linked them (a partition that outlived every session, or a clock jump), no
    /// neighbour, handshake retry or digest to a live member would ever cross again, and the
    /// cluster stayed split for good. A digest to a member that really is gone costs one
    /// unanswered handshake. (Serf's reconnect to failed members does the same.)
    fn random_digest(&mut self, now: Instant) {
        let neighbours = self.gossip.neighbours(now);
        #[allow(clippy::disallowed_methods)] // order-free: sorted before the draw
        let mut candidates: Vec<PublicKey> = self
            .members
            .values()
            .filter(|m| {
                !m.left
                    && !neighbours.contains(m.key.as_bytes())
                    && (m.endpoint.is_some() || self.peers.contains_key(&m.key))
            })
            .map(|m| m.key)
            .collect();
        if candidates.is_empty() {
            return;
        }
        candidates.sort_unstable();
        let k = candidates[(self.rng.next_u32() as usize) % candidates.len()];
        self.gossip.send_digest_aside(*k.as_bytes());
        self.pump_gossip(now);
    }
}

impl Node {
    /// Publishes a record of an application kind ([`FIRST_APP_KIND`] and up) by gossip:
    /// written by this node, the higher version wins everywhere. Returns whether it was
    /// newer than the one held. Bodies over the gossip limit are refused (`false`).
    pub fn publish_record(
        &mut self,
        now: Instant,
        kind: u8,
        id: [u8; 32],
        version: u64,
        body: &[u8],
    ) -> bool {
        if kind < FIRST_APP_KIND {
            return false;
        }
        let key = RecordKey { kind, id };
        let applied = self.gossip.insert_local(now, key, version, body);
        if applied {
            self.own_records.insert(key);
        }
        self.pump_gossip(now);
        applied
    }

    /// A gossiped record: `(version, body)`.
    pub fn record(&self, kind: u8, id: &[u8; 32]) -> Option<(u64, &[u8])> {
        self.gossip
            .get(&RecordKey { kind, id: *id })
            .map(|r| (r.version, r.body.as_slice()))
    }

    /// Every gossiped record of one kind: `(id, version, body)`, by id.
    pub fn records(&self, kind: u8) -> impl Iterator<Item = (&[u8; 32], u64, &[u8])> {
        self.gossip
            .store()
            .of_kind(kind)
            .map(|(k, r)| (&k.id, r.version, r.body.as_slice()))
    }

    /// Whether `key` is this node or a member this node sees alive (not dead, not left).
    pub fn is_alive(&self, key: &PublicKey) -> bool {
        *key == self.keypair.public() || self.members.get(key).is_some_and(|m| !m.dead && !m.left)
    }

    /// Whether `key` is a member this node knows and sees dead or departed (unlike
    /// `!is_alive`, `false` for a key it has not heard of yet).
    pub fn member_gone(&self, key: &PublicKey) -> bool {
        self.members.get(key).is_some_and(|m| m.dead || m.left)
    }
}
