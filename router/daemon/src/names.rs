//! DNS records across the cluster: the local API's edits go out as gossip records of kind
//! [`KIND_DNS`], records gossip brings in are merged into the DNS store, and the store learns
//! which owners are dead (their records are kept, not served) from the node's membership.
//!
//! Lock order: the DNS store is never held while taking the node's lock.

use std::time::Instant;

use mesh_core::Node;
use mesh_crypto::PublicKey;
use mesh_dns::{Entry, Owner};

use crate::run::Shared;

pub(crate) use mesh_proto::gossip::KIND_DNS;

/// Gossips `entries` (edits of this node's store) to the cluster. Call with the node locked;
/// the timers task sends what it queued.
pub(crate) fn publish(node: &mut Node, now: Instant, entries: &[Entry]) {
    for e in entries {
        match mesh_dns::to_gossip(e) {
            Ok(g) => {
                node.publish_record(now, KIND_DNS, g.id, g.version, &g.body);
            }
            Err(err) => {
                tracing::warn!(name = %e.name, address = %e.addr, error = %err, "dns record not gossiped")
            }
        }
    }
}

/// Gossip changed DNS record `id`: merges it into the store, not served if its owner is a
/// member this node sees dead or departed.
pub(crate) fn record_changed(shared: &Shared, id: &[u8; 32]) {
    let Some(dns) = shared.dns.as_deref() else {
        return;
    };
    let parsed = shared.read(|node, _| {
        let (version, body) = node.record(KIND_DNS, id)?;
        match mesh_dns::from_gossip(id, version, body) {
            Ok(e) => {
                let gone = node.member_gone(&PublicKey::from_bytes(e.owner.0));
                Some((e, gone))
            }
            Err(err) => {
                tracing::debug!(error = %err, "gossiped dns record refused");
                None
            }
        }
    });
    let Some((entry, gone)) = parsed else {
        return;
    };
    dns.update(|s| {
        if s.store.merge(&entry) {
            tracing::debug!(name = %entry.name, address = %entry.addr, removed = entry.stamp.tombstone, "dns record from gossip");
        }
        if gone {
            s.store.set_node_alive(entry.owner, false);
        }
    });
}

/// A member died (`alive == false`) or came back: its records stop or start being served.
pub(crate) fn member_liveness(shared: &Shared, key: &PublicKey, alive: bool) {
    if let Some(dns) = shared.dns.as_deref() {
        dns.update(|s| s.store.set_node_alive(Owner(*key.as_bytes()), alive));
    }
}

/// A member was removed for good (`meshctl rmpeer`): its records are removed everywhere, by
/// tombstones this node gossips (also with `--dns off`: the records are found in gossip).
/// Call with the node locked. Returns how many records were removed.
pub(crate) fn remove_owner(
    shared: &Shared,
    node: &mut Node,
    now: Instant,
    key: &PublicKey,
) -> usize {
    let owner = Owner(*key.as_bytes());
    let mut gone: Vec<Entry> = node
        .records(KIND_DNS)
        .filter_map(|(id, version, body)| mesh_dns::from_gossip(id, version, body).ok())
        .filter(|e| e.owner == owner && !e.stamp.tombstone)
        .map(|e| e.removal())
        .collect();
    if let Some(dns) = shared.dns.as_deref() {
        dns.update(|s| {
            for e in &gone {
                s.store.merge(e);
            }
            // Records only this store holds (none, unless gossip refused them).
            gone.extend(s.store.remove_owner(owner));
        });
    }
    publish(node, now, &gone);
    gone.len()
}
