//! The record store: a CRDT of `(name, address, owner) -> (version, tombstone)` that gossip
//! merges and the local API edits, plus the local view of which owners are alive.
//!
//! Merge rule, per key `(name, address, owner)`: the higher version wins; at equal versions a
//! tombstone wins. That is a maximum over a total order, so [`RecordStore::merge`] is
//! commutative, associative and idempotent, and every node that has seen the same set of
//! entries holds the same state whatever the order it saw them in.
//!
//! Liveness ([`RecordStore::set_node_alive`]) is each node's own failure-detector view: it is
//! not part of the merged state and is never gossiped. Records of a dead owner stay in the
//! store (they come back when the owner does) but are not served.

use hickory_proto::rr::Name;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// The node that registered a record: its static public key, or any 32-byte identity the
/// caller uses for nodes. Opaque to this crate.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner(pub [u8; 32]);

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The version and liveness of one `(name, address, owner)` record: the merged value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Higher wins.
    pub version: u64,
    /// At equal versions, `true` wins: a removal beats a concurrent add of the same version.
    pub tombstone: bool,
}

/// One record as gossip carries it: the unit of [`RecordStore::merge`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Fully qualified, lower case (the store lower-cases what it merges).
    pub name: Name,
    /// The A (IPv4) or AAAA (IPv6) address.
    pub addr: IpAddr,
    /// The node that registered it.
    pub owner: Owner,
    /// Version and tombstone.
    pub stamp: Stamp,
}

impl Entry {
    /// The tombstone that removes this record: the next version, removed.
    pub fn removal(&self) -> Entry {
        Entry {
            stamp: Stamp {
                version: self.stamp.version.saturating_add(1),
                tombstone: true,
            },
            ..self.clone()
        }
    }
}

/// A live (not removed) record, as [`RecordStore::list`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Fully qualified, lower case.
    pub name: Name,
    /// The address.
    pub addr: IpAddr,
    /// The node that registered it.
    pub owner: Owner,
    /// Its version.
    pub version: u64,
    /// Whether it is answered: `false` while its owner is marked dead.
    pub served: bool,
}

/// Why a local edit was refused. The caller (the local API) passed something unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The name is not fully qualified (use [`crate::ZoneConfig::qualify`] first).
    #[error("name {0} is not fully qualified")]
    NotFqdn(String),
    /// A version counter would overflow: only reachable with forged gossip.
    #[error("version counter exhausted for {0}")]
    VersionExhausted(String),
}

/// Key of a name in the store's map: its labels from the root down, each prefixed with its
/// length, lower case. A name's descendants are exactly the keys that start with its key,
/// which makes "does anything exist at or below this name" a range scan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NameKey(Vec<u8>);

impl NameKey {
    pub(crate) fn new(name: &Name) -> Self {
        let mut key = Vec::with_capacity(name.len() + 1);
        for label in name.iter().rev() {
            // A label is at most 63 bytes: the length fits a byte.
            key.push(label.len() as u8);
            key.extend(label.iter().map(u8::to_ascii_lowercase));
        }
        Self(key)
    }

    fn is_prefix_of(&self, other: &Self) -> bool {
        other.0.starts_with(&self.0)
    }
}

#[derive(Clone, Debug, Default)]
struct NameEntry {
    name: Name,
    records: BTreeMap<(IpAddr, Owner), Stamp>,
}

/// A served address under a name, as answering sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Served {
    pub(crate) addr: IpAddr,
    pub(crate) owner: Owner,
}

/// The DNS records of the cluster. See the module docs for the merge rule.
#[derive(Clone, Debug, Default)]
pub struct RecordStore {
    names: BTreeMap<NameKey, NameEntry>,
    /// Every name that ever held an address (tombstoned or not), for PTR answers.
    by_addr: BTreeMap<IpAddr, BTreeSet<NameKey>>,
    dead: BTreeSet<Owner>,
}

impl RecordStore {
    /// An empty store, every owner alive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one gossiped entry. Returns whether the store changed (for gossip: only
    /// changes are worth passing on). Names are compared case-insensitively and kept in
    /// lower case; a name that is not fully qualified is ignored (returns `false`).
    pub fn merge(&mut self, entry: &Entry) -> bool {
        if !entry.name.is_fqdn() {
            return false;
        }
        let key = NameKey::new(&entry.name);
        let slot = self
            .names
            .entry(key.clone())
            .or_insert_with(|| NameEntry {
                name: entry.name.to_lowercase(),
                records: BTreeMap::new(),
            })
            .records
            .entry((entry.addr, entry.owner));
        let changed = match slot {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(entry.stamp);
                true
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                if entry.stamp > *o.get() {
                    o.insert(entry.stamp);
                    true
                } else {
                    false
                }
            }
        };
        if changed {
            self.by_addr.entry(entry.addr).or_default().insert(key);
        }
        changed
    }

    /// Every entry, tombstones included: the full state for anti-entropy, in a stable order
    /// (by name from the root, then address, then owner).
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.names.values().flat_map(|ne| {
            ne.records.iter().map(|(&(addr, owner), &stamp)| Entry {
                name: ne.name.clone(),
                addr,
                owner,
                stamp,
            })
        })
    }

    /// Registers `addr` under `name` for `owner` (a local API call). The new version is
    /// above the record's current one and at least `now_unix_ms`, the wall clock in
    /// milliseconds since the Unix epoch as read by the caller: that floor lets a node that
    /// restarted without its state still outvote the tombstones it gossiped before.
    /// Returns the entry to gossip.
    pub fn add(
        &mut self,
        name: &Name,
        addr: IpAddr,
        owner: Owner,
        now_unix_ms: u64,
    ) -> Result<Entry, StoreError> {
        if !name.is_fqdn() {
            return Err(StoreError::NotFqdn(name.to_string()));
        }
        let current = self.stamp(name, addr, owner);
        let version = match current {
            // Already live: keep the version, nothing to gossip that is not known already.
            Some(s) if !s.tombstone => s.version,
            Some(s) => s
                .version
                .checked_add(1)
                .ok_or_else(|| StoreError::VersionExhausted(name.to_string()))?
                .max(now_unix_ms),
            None => now_unix_ms.max(1),
        };
        let entry = Entry {
            name: name.to_lowercase(),
            addr,
            owner,
            stamp: Stamp {
                version,
                tombstone: false,
            },
        };
        self.merge(&entry);
        Ok(entry)
    }

    /// Removes `owner`'s records under `name`: the one with `addr`, or all of them. Returns
    /// the tombstones to gossip (empty when there was nothing live to remove).
    pub fn remove(&mut self, name: &Name, addr: Option<IpAddr>, owner: Owner) -> Vec<Entry> {
        let Some(ne) = self.names.get(&NameKey::new(name)) else {
            return Vec::new();
        };
        let victims: Vec<Entry> = ne
            .records
            .iter()
            .filter(|&(&(a, o), s)| o == owner && !s.tombstone && addr.is_none_or(|x| x == a))
            .map(|(&(addr, owner), &stamp)| {
                Entry {
                    name: ne.name.clone(),
                    addr,
                    owner,
                    stamp,
                }
                .removal()
            })
            .collect();
        for e in &victims {
            self.merge(e);
        }
        victims
    }

    /// Removes every record of `owner` (its node was deleted: `meshctl rmpeer`, or its
    /// Kubernetes Node went away). Returns the tombstones to gossip.
    pub fn remove_owner(&mut self, owner: Owner) -> Vec<Entry> {
        let victims: Vec<Entry> = self
            .entries()
            .filter(|e| e.owner == owner && !e.stamp.tombstone)
            .map(|e| e.removal())
            .collect();
        for e in &victims {
            self.merge(e);
        }
        self.dead.remove(&owner);
        victims
    }

    /// Marks `owner` alive or dead in this node's view. Records of dead owners are kept
    /// but not served.
    pub fn set_node_alive(&mut self, owner: Owner, alive: bool) {
        if alive {
            self.dead.remove(&owner);
        } else {
            self.dead.insert(owner);
        }
    }

    /// Whether `owner` is alive in this node's view (owners are alive until marked dead).
    pub fn is_alive(&self, owner: Owner) -> bool {
        !self.dead.contains(&owner)
    }

    /// `(live, served)`: how many records are not removed, and how many of those are
    /// answered (their owner is alive). [`RecordStore::list`]'s counts, without the list.
    pub fn counts(&self) -> (u64, u64) {
        let (mut live, mut served) = (0, 0);
        for ne in self.names.values() {
            for (&(_, owner), stamp) in &ne.records {
                if !stamp.tombstone {
                    live += 1;
                    served += u64::from(self.is_alive(owner));
                }
            }
        }
        (live, served)
    }

    /// The live (not removed) records, served or not, by name then address then owner.
    pub fn list(&self) -> Vec<Listed> {
        self.entries()
            .filter(|e| !e.stamp.tombstone)
            .map(|e| Listed {
                served: self.is_alive(e.owner),
                name: e.name,
                addr: e.addr,
                owner: e.owner,
                version: e.stamp.version,
            })
            .collect()
    }

    /// The merged stamp of one record, if the store has ever seen it.
    pub fn stamp(&self, name: &Name, addr: IpAddr, owner: Owner) -> Option<Stamp> {
        self.names
            .get(&NameKey::new(name))
            .and_then(|ne| ne.records.get(&(addr, owner)).copied())
    }

    /// Number of entries, tombstones included.
    pub fn len(&self) -> usize {
        self.names.values().map(|ne| ne.records.len()).sum()
    }

    /// Whether the store holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn is_served(&self, owner: Owner, stamp: Stamp) -> bool {
        !stamp.tombstone && !self.dead.contains(&owner)
    }

    /// The served addresses under exactly `key`, in store order.
    pub(crate) fn served_at(&self, key: &NameKey) -> Vec<Served> {
        self.names
            .get(key)
            .map(|ne| {
                ne.records
                    .iter()
                    .filter(|&(&(_, o), &s)| self.is_served(o, s))
                    .map(|(&(addr, owner), _)| Served { addr, owner })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a served record exists at `key` or below it (an empty non-terminal exists
    /// too: RFC 8020).
    pub(crate) fn exists_at_or_below(&self, key: &NameKey) -> bool {
        self.names
            .range(key.clone()..)
            .take_while(|(k, _)| key.is_prefix_of(k))
            .any(|(_, ne)| ne.records.iter().any(|(&(_, o), &s)| self.is_served(o, s)))
    }

    /// Whether any served record has an address inside `net`.
    pub(crate) fn any_served_in(&self, net: &ipnet::IpNet) -> bool {
        self.by_addr
            .range(net.network()..=net.broadcast())
            .flat_map(|(&a, keys)| keys.iter().map(move |k| (a, k)))
            .any(|(a, k)| {
                self.names.get(k).is_some_and(|ne| {
                    ne.records
                        .iter()
                        .any(|(&(ra, o), &s)| ra == a && self.is_served(o, s))
                })
            })
    }

    /// The names that serve `addr` (for PTR), lower case, in store order.
    pub(crate) fn names_of(&self, addr: IpAddr) -> Vec<Name> {
        let Some(keys) = self.by_addr.get(&addr) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| self.names.get(k))
            .filter(|ne| {
                ne.records
                    .iter()
                    .any(|(&(a, o), &s)| a == addr && self.is_served(o, s))
            })
            .map(|ne| ne.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift;
    use std::net::Ipv4Addr;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn random_entry(rng: &mut XorShift) -> Entry {
        let names = [
            "a.mesh.local.",
            "B.mesh.local.",
            "b.mesh.local.",
            "c.d.mesh.local.",
        ];
        Entry {
            name: name(names[rng.below(names.len())]),
            addr: IpAddr::V4(Ipv4Addr::new(10, 32, 0, rng.below(3) as u8)),
            owner: Owner([rng.below(2) as u8; 32]),
            stamp: Stamp {
                version: rng.below(4) as u64,
                tombstone: rng.below(2) == 1,
            },
        }
    }

    fn state(s: &RecordStore) -> Vec<Entry> {
        s.entries().collect()
    }

    fn merged(parts: &[&RecordStore]) -> RecordStore {
        let mut out = RecordStore::new();
        for p in parts {
            for e in p.entries() {
                out.merge(&e);
            }
        }
        out
    }

    /// The same multiset of entries merged in any order, with repeats, and grouped any way,
    /// gives the same state: commutative, associative, idempotent.
    #[test]
    fn merge_is_a_semilattice_over_random_orders() {
        for seed in 0..300u64 {
            let mut rng = XorShift::new(seed);
            let ops: Vec<Entry> = (0..1 + rng.below(40))
                .map(|_| random_entry(&mut rng))
                .collect();
            let mut reference = RecordStore::new();
            for e in &ops {
                reference.merge(e);
            }
            // Commutativity: a shuffled order, with some entries delivered twice.
            let mut shuffled = ops.clone();
            for _ in 0..rng.below(10) {
                let i = rng.below(ops.len());
                shuffled.push(ops[i].clone());
            }
            rng.shuffle(&mut shuffled);
            let mut other = RecordStore::new();
            for e in &shuffled {
                other.merge(e);
            }
            assert_eq!(
                state(&reference),
                state(&other),
                "seed {seed}: order matters"
            );
            // Associativity: split into three stores, merge as (a ⊔ b) ⊔ c and a ⊔ (b ⊔ c).
            let mut parts = [RecordStore::new(), RecordStore::new(), RecordStore::new()];
            for e in &shuffled {
                parts[rng.below(3)].merge(e);
            }
            let left = merged(&[&merged(&[&parts[0], &parts[1]]), &parts[2]]);
            let right = merged(&[&parts[0], &merged(&[&parts[1], &parts[2]])]);
            assert_eq!(state(&left), state(&right), "seed {seed}: grouping matters");
            assert_eq!(state(&left), state(&reference), "seed {seed}");
            // Idempotence: merging the state into itself changes nothing.
            let mut again = reference.clone();
            for e in reference.entries() {
                assert!(!again.merge(&e), "seed {seed}: re-merge changed the store");
            }
            assert_eq!(state(&again), state(&reference));
        }
    }

    #[test]
    fn higher_version_wins_and_tombstone_wins_ties() {
        let mut s = RecordStore::new();
        let n = name("x.mesh.local.");
        let ip = IpAddr::V4(Ipv4Addr::new(10, 32, 0, 1));
        let o = Owner([1; 32]);
        let e = |version, tombstone| Entry {
            name: n.clone(),
            addr: ip,
            owner: o,
            stamp: Stamp { version, tombstone },
        };
        assert!(s.merge(&e(5, false)));
        assert!(!s.merge(&e(4, true)), "older tombstone must lose");
        assert!(s.merge(&e(5, true)), "tombstone wins a tie");
        assert!(
            !s.merge(&e(5, false)),
            "add loses a tie against a tombstone"
        );
        assert!(s.merge(&e(6, false)));
        assert_eq!(
            s.stamp(&n, ip, o),
            Some(Stamp {
                version: 6,
                tombstone: false
            })
        );
    }

    #[test]
    fn local_edits_produce_gossipable_entries() {
        let mut s = RecordStore::new();
        let n = name("Web.mesh.local.");
        let ip = IpAddr::V4(Ipv4Addr::new(10, 32, 0, 1));
        let ip2 = IpAddr::V4(Ipv4Addr::new(10, 32, 0, 2));
        let (a, b) = (Owner([1; 32]), Owner([2; 32]));
        let added = s.add(&n, ip, a, 1000).unwrap();
        assert_eq!(added.stamp.version, 1000);
        assert_eq!(added.name.to_string(), "web.mesh.local.");
        s.add(&n, ip2, a, 1000).unwrap();
        s.add(&n, ip, b, 1000).unwrap();
        assert_eq!(s.list().len(), 3);
        // Remove one address of one owner.
        let gone = s.remove(&n, Some(ip), a);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].stamp.tombstone && gone[0].stamp.version == 1001);
        assert_eq!(s.list().len(), 2);
        // Re-adding later beats the tombstone, even with a clock that went backwards.
        let back = s.add(&n, ip, a, 10).unwrap();
        assert_eq!(back.stamp.version, 1002);
        // Remove all of an owner's records under the name.
        assert_eq!(s.remove(&n, None, a).len(), 2);
        assert_eq!(
            s.remove(&n, None, a).len(),
            0,
            "nothing live left to remove"
        );
        // Another node applying the same gossip agrees.
        let mut peer = RecordStore::new();
        for e in s.entries() {
            peer.merge(&e);
        }
        assert_eq!(peer.list(), s.list());
        assert!(s.add(&name("relative"), ip, a, 1).is_err());
    }

    #[test]
    fn dead_owners_are_listed_but_not_served_and_deleted_owners_go() {
        let mut s = RecordStore::new();
        let n = name("web.mesh.local.");
        let ip = IpAddr::V4(Ipv4Addr::new(10, 32, 0, 1));
        let o = Owner([7; 32]);
        s.add(&n, ip, o, 1).unwrap();
        let key = NameKey::new(&n);
        assert_eq!(s.served_at(&key).len(), 1);
        s.set_node_alive(o, false);
        assert!(s.served_at(&key).is_empty());
        assert!(!s.exists_at_or_below(&key));
        assert!(!s.list()[0].served);
        assert_eq!(s.counts(), (1, 0));
        s.set_node_alive(o, true);
        assert_eq!(s.counts(), (1, 1));
        assert_eq!(s.served_at(&key).len(), 1);
        assert_eq!(s.remove_owner(o).len(), 1);
        assert!(s.list().is_empty());
        assert_eq!(s.counts(), (0, 0));
        assert_eq!(s.len(), 1, "the tombstone stays for gossip");
    }

    #[test]
    fn name_keys_make_descendants_a_prefix_range() {
        let a = NameKey::new(&name("sub.mesh.local."));
        let b = NameKey::new(&name("x.SUB.mesh.local."));
        let c = NameKey::new(&name("xsub.mesh.local."));
        assert!(a.is_prefix_of(&b));
        assert!(!a.is_prefix_of(&c));
    }
}
