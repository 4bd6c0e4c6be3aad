//! DNS records as the cluster's gossip carries them: one gossip record per
//! `(name, address, owner)`, keyed by a hash of that triple, so the gossip layer's own rule
//! (the higher version wins) is exactly [`RecordStore::merge`]'s rule.
//!
//! - id: SHA-256 of a domain-separation label, the owner, the address and the lower-case name
//!   in DNS wire form. The receiver recomputes it from the body and refuses a record whose id
//!   does not match, so one record cannot overwrite another.
//! - version: `stamp.version * 2 + tombstone`. Ordering these numbers orders the stamps the way
//!   the store does: the higher version first, then a tombstone over a live record.
//! - body: `format (1) | owner (32) | family (4 or 6) | address (4 or 16) | name (wire form)`.
//!
//! [`RecordStore::merge`]: crate::RecordStore::merge

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

use crate::store::{Entry, Owner, Stamp};

/// The body format this node writes and reads.
pub const BODY_FORMAT: u8 = 1;
/// Largest body: format, owner, family, an IPv6 address and a 255-byte name.
pub const MAX_BODY_LEN: usize = 1 + 32 + 1 + 16 + 255;

const ID_LABEL: &[u8] = b"mesh dns record v1\0";

/// A DNS record in the gossip layer's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipRecord {
    /// Which record: see the module docs.
    pub id: [u8; 32],
    /// `stamp.version * 2 + tombstone`.
    pub version: u64,
    /// The record itself.
    pub body: Vec<u8>,
}

/// Why a gossiped DNS record was refused (a peer of another version, or a forged record).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// The body starts with a format this node does not read.
    #[error("unknown DNS record format {0}")]
    Format(u8),
    /// The body ends early, or has bytes after the name.
    #[error("malformed DNS record body")]
    Malformed,
    /// The name is not a fully qualified DNS name in wire form.
    #[error("DNS record name does not decode: {0}")]
    Name(String),
    /// The id is not the hash of what the body holds.
    #[error("DNS record id does not match its body")]
    IdMismatch,
    /// The record's version does not fit the gossip version (`* 2 + 1` overflows).
    #[error("DNS record version {0} is too large")]
    Version(u64),
}

/// The gossip id of `(name, addr, owner)`.
pub fn record_id(name: &Name, addr: IpAddr, owner: Owner) -> Result<[u8; 32], GossipError> {
    let wire = name_wire(name)?;
    Ok(id_of(&wire, addr, owner))
}

/// `entry` as a gossip record.
pub fn to_gossip(entry: &Entry) -> Result<GossipRecord, GossipError> {
    let version = entry
        .stamp
        .version
        .checked_mul(2)
        .ok_or(GossipError::Version(entry.stamp.version))?
        | u64::from(entry.stamp.tombstone);
    let wire = name_wire(&entry.name)?;
    let mut body = Vec::with_capacity(1 + 32 + 1 + 16 + wire.len());
    body.push(BODY_FORMAT);
    body.extend_from_slice(&entry.owner.0);
    match entry.addr {
        IpAddr::V4(a) => {
            body.push(4);
            body.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            body.push(6);
            body.extend_from_slice(&a.octets());
        }
    }
    body.extend_from_slice(&wire);
    Ok(GossipRecord {
        id: id_of(&wire, entry.addr, entry.owner),
        version,
        body,
    })
}

/// The entry a gossip record carries, checked against its id.
pub fn from_gossip(id: &[u8; 32], version: u64, body: &[u8]) -> Result<Entry, GossipError> {
    let (name, addr, owner, expected) = parse(body)?;
    if expected != *id {
        return Err(GossipError::IdMismatch);
    }
    Ok(Entry {
        name,
        addr,
        owner,
        stamp: Stamp {
            version: version >> 1,
            tombstone: version & 1 == 1,
        },
    })
}

/// The id a gossip record with this body must have (every check of [`from_gossip`] but the
/// id's).
pub fn body_id(body: &[u8]) -> Result<[u8; 32], GossipError> {
    parse(body).map(|(_, _, _, id)| id)
}

fn parse(body: &[u8]) -> Result<(Name, IpAddr, Owner, [u8; 32]), GossipError> {
    let (&format, rest) = body.split_first().ok_or(GossipError::Malformed)?;
    if format != BODY_FORMAT {
        return Err(GossipError::Format(format));
    }
    let (owner, rest) = rest
        .split_first_chunk::<32>()
        .ok_or(GossipError::Malformed)?;
    let (&family, rest) = rest.split_first().ok_or(GossipError::Malformed)?;
    let (addr, wire) = match family {
        4 => {
            let (a, rest) = rest
                .split_first_chunk::<4>()
                .ok_or(GossipError::Malformed)?;
            (IpAddr::V4(Ipv4Addr::from(*a)), rest)
        }
        6 => {
            let (a, rest) = rest
                .split_first_chunk::<16>()
                .ok_or(GossipError::Malformed)?;
            (IpAddr::V6(Ipv6Addr::from(*a)), rest)
        }
        _ => return Err(GossipError::Malformed),
    };
    let name = Name::from_bytes(wire).map_err(|e| GossipError::Name(e.to_string()))?;
    if !name.is_fqdn() {
        return Err(GossipError::Name(format!("{name} is not fully qualified")));
    }
    // Canonical form only: the same record must always hash to the same id, and a trailing
    // byte would make two bodies for one id.
    if name_wire(&name)? != wire {
        return Err(GossipError::Malformed);
    }
    let owner = Owner(*owner);
    Ok((name, addr, owner, id_of(wire, addr, owner)))
}

fn name_wire(name: &Name) -> Result<Vec<u8>, GossipError> {
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    name.to_bytes()
        .map_err(|e| GossipError::Name(e.to_string()))
}

fn id_of(wire: &[u8], addr: IpAddr, owner: Owner) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(ID_LABEL);
    ctx.update(&owner.0);
    match addr {
        IpAddr::V4(a) => {
            ctx.update(&[4]);
            ctx.update(&a.octets());
        }
        IpAddr::V6(a) => {
            ctx.update(&[6]);
            ctx.update(&a.octets());
        }
    }
    ctx.update(wire);
    let mut id = [0; 32];
    id.copy_from_slice(ctx.finish().as_ref());
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordStore;
    use std::str::FromStr;

    fn entry(name: &str, addr: &str, owner: u8, version: u64, tombstone: bool) -> Entry {
        Entry {
            name: Name::from_str(name).unwrap(),
            addr: addr.parse().unwrap(),
            owner: Owner([owner; 32]),
            stamp: Stamp { version, tombstone },
        }
    }

    #[test]
    fn round_trips_v4_v6_and_tombstones() {
        for e in [
            entry("web.mesh.local.", "10.32.1.5", 1, 1_700_000_000_000, false),
            entry("db.mesh.local.", "fd00::db", 2, 7, true),
        ] {
            let g = to_gossip(&e).unwrap();
            assert!(g.body.len() <= MAX_BODY_LEN);
            assert_eq!(from_gossip(&g.id, g.version, &g.body).unwrap(), e);
        }
    }

    #[test]
    fn gossip_versions_order_like_the_store() {
        // (version, tombstone) pairs in the store's order map to increasing gossip versions.
        let stamps = [(1, false), (1, true), (2, false), (2, true), (9, false)];
        let versions: Vec<u64> = stamps
            .iter()
            .map(|&(v, t)| {
                to_gossip(&entry("a.z.", "10.0.0.1", 1, v, t))
                    .unwrap()
                    .version
            })
            .collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        let mut store = RecordStore::new();
        for &(v, t) in stamps.iter().rev() {
            store.merge(&entry("a.z.", "10.0.0.1", 1, v, t));
        }
        let held = store.entries().next().unwrap();
        assert_eq!(to_gossip(&held).unwrap().version, *versions.last().unwrap());
    }

    #[test]
    fn the_id_depends_on_name_address_and_owner_but_not_case_or_version() {
        let base = to_gossip(&entry("web.z.", "10.0.0.1", 1, 1, false)).unwrap();
        let upper = to_gossip(&entry("WEB.z.", "10.0.0.1", 1, 5, true)).unwrap();
        assert_eq!(base.id, upper.id);
        assert_eq!(base.body, upper.body);
        for other in [
            entry("web2.z.", "10.0.0.1", 1, 1, false),
            entry("web.z.", "10.0.0.2", 1, 1, false),
            entry("web.z.", "10.0.0.1", 2, 1, false),
        ] {
            assert_ne!(to_gossip(&other).unwrap().id, base.id, "{other:?}");
        }
    }

    #[test]
    fn refuses_bad_bodies() {
        let g = to_gossip(&entry("web.z.", "10.0.0.1", 1, 1, false)).unwrap();
        let mut other_id = g.id;
        other_id[0] ^= 1;
        assert_eq!(
            from_gossip(&other_id, g.version, &g.body),
            Err(GossipError::IdMismatch)
        );
        let mut format = g.body.clone();
        format[0] = 9;
        assert_eq!(
            from_gossip(&g.id, g.version, &format),
            Err(GossipError::Format(9))
        );
        for cut in [0, 1, 20, 34, 37] {
            assert!(
                from_gossip(&g.id, g.version, &g.body[..cut]).is_err(),
                "{cut}"
            );
        }
        let mut trailing = g.body.clone();
        trailing.push(0);
        assert!(from_gossip(&g.id, g.version, &trailing).is_err());
        let mut family = g.body.clone();
        family[33] = 5;
        assert_eq!(
            from_gossip(&g.id, g.version, &family),
            Err(GossipError::Malformed)
        );
    }

    #[test]
    fn a_version_that_cannot_double_is_refused() {
        let e = entry("web.z.", "10.0.0.1", 1, u64::MAX / 2 + 1, false);
        assert_eq!(to_gossip(&e), Err(GossipError::Version(u64::MAX / 2 + 1)));
    }
}
