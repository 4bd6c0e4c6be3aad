//! Every packet injected at a TUN device and every packet a node delivered to one, and the
//! data-path invariants checked on each delivery:
//!
//! - a packet is delivered only to the node that owns its destination;
//! - a packet is delivered at most as often as it was injected (exactly-once tracking by a
//!   unique id in the payload);
//! - a delivered packet was injected at a node whose block holds its source address, and
//!   arrives unaltered.
//!
//! Packets made by [`sim_packet`] carry [`PACKET_MAGIC`] and a [`PacketId`] after the IPv4
//! header; packets without them (a test's own bytes) are checked against the node that sent
//! the datagram instead.

use crate::addressing::Addressing;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Marks a simulator-made packet's payload.
pub const PACKET_MAGIC: [u8; 8] = *b"mesh-sim";
/// IPv4 header length of simulator-made packets (no options).
const IPV4_HEADER_LEN: usize = 20;
/// Payload bytes before the filler: magic and id.
const TAG_LEN: usize = PACKET_MAGIC.len() + 8;

/// Unique id of a simulator-made packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(pub u64);

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// An IPv4/UDP-looking packet from `src` to `dst` carrying `id` and `filler` more bytes
/// (the router reads only the IPv4 header).
pub fn sim_packet(src: Ipv4Addr, dst: Ipv4Addr, id: PacketId, filler: usize) -> Vec<u8> {
    let total = IPV4_HEADER_LEN + TAG_LEN + filler;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..28].copy_from_slice(&PACKET_MAGIC);
    p[28..36].copy_from_slice(&id.0.to_be_bytes());
    p
}

/// Source, destination and (for simulator-made packets) id of an IPv4 packet.
pub fn read_packet(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, Option<PacketId>)> {
    if p.len() < IPV4_HEADER_LEN || p[0] >> 4 != 4 {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let hl = usize::from(p[0] & 0x0f) * 4;
    let id = p
        .get(hl..hl + TAG_LEN)
        .filter(|t| t[..8] == PACKET_MAGIC)
        .and_then(|t| t[8..].try_into().ok())
        .map(|b| PacketId(u64::from_be_bytes(b)));
    Some((src, dst, id))
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Delivered to a node that does not own the destination.
    WrongOwner {
        /// The node that delivered it.
        node: usize,
        /// The destination.
        dst: Ipv4Addr,
        /// The node that owns it, if any.
        owner: Option<usize>,
    },
    /// Delivered more often than injected.
    Duplicate {
        /// The packet.
        id: PacketId,
        /// The node that delivered it again.
        node: usize,
        /// Deliveries so far, this one included.
        deliveries: u32,
    },
    /// A simulator id nobody injected.
    UnknownPacket {
        /// The packet.
        id: PacketId,
        /// The node that delivered it.
        node: usize,
    },
    /// The source address is not in the block of the node that sent the packet.
    ForeignSource {
        /// The packet, if simulator-made.
        id: Option<PacketId>,
        /// Its source address.
        src: Ipv4Addr,
        /// The node it was injected at (or, without an id, that sent the datagram).
        sender: usize,
        /// The node that owns `src`, if any.
        owner: Option<usize>,
    },
    /// Source or destination differ from what was injected.
    Altered {
        /// The packet.
        id: PacketId,
    },
    /// A node handed something that is not IPv4 to its TUN device.
    NotIpv4 {
        /// The node.
        node: usize,
    },
    /// A node's timer kept firing at one instant without time moving (a livelock).
    TimerSpin {
        /// The node.
        node: usize,
        /// Virtual time.
        at: Duration,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongOwner { node, dst, owner } => write!(
                f,
                "node {node} delivered a packet for {dst}, which belongs to {}",
                whose(*owner)
            ),
            Self::Duplicate {
                id,
                node,
                deliveries,
            } => write!(
                f,
                "packet {id} delivered again at node {node} ({deliveries} deliveries)"
            ),
            Self::UnknownPacket { id, node } => {
                write!(
                    f,
                    "node {node} delivered packet {id}, which nobody injected"
                )
            }
            Self::ForeignSource {
                id,
                src,
                sender,
                owner,
            } => {
                let id = id.map_or_else(|| "without id".to_string(), |i| i.to_string());
                write!(
                    f,
                    "packet {id} from node {sender} with source {src}, which belongs to {}, was delivered",
                    whose(*owner)
                )
            }
            Self::Altered { id } => write!(f, "packet {id} arrived with other addresses"),
            Self::NotIpv4 { node } => write!(f, "node {node} delivered a non-IPv4 packet"),
            Self::TimerSpin { node, at } => {
                write!(f, "node {node}'s timer spins at {at:?} of virtual time")
            }
        }
    }
}

fn whose(owner: Option<usize>) -> String {
    owner.map_or_else(|| "no node".to_string(), |o| format!("node {o}"))
}

/// One packet a node wrote to its TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Virtual time.
    pub at: Duration,
    /// The node that delivered it.
    pub node: usize,
    /// The node whose datagram carried it.
    pub via: usize,
    /// Simulator id, when it has one.
    pub id: Option<PacketId>,
    /// Inner source.
    pub src: Ipv4Addr,
    /// Inner destination.
    pub dst: Ipv4Addr,
    /// Packet length.
    pub len: usize,
}

#[derive(Debug, Clone)]
struct Injected {
    origin: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    injections: u32,
    deliveries: u32,
}

/// Injections and deliveries, with the checks above.
#[derive(Debug, Default)]
pub struct Ledger {
    next_id: u64,
    injected: HashMap<PacketId, Injected>,
    deliveries: Vec<Delivery>,
    keep_deliveries: bool,
}

impl Ledger {
    /// An empty ledger; `keep_deliveries` keeps every [`Delivery`] (memory grows with traffic).
    pub fn new(keep_deliveries: bool) -> Self {
        Self {
            keep_deliveries,
            ..Self::default()
        }
    }

    /// A fresh id.
    pub fn next_id(&mut self) -> PacketId {
        self.next_id += 1;
        PacketId(self.next_id)
    }

    /// Records a packet injected at `origin`'s TUN device.
    pub fn injected(&mut self, origin: usize, packet: &[u8]) {
        if let Some((src, dst, Some(id))) = read_packet(packet) {
            self.injected
                .entry(id)
                .and_modify(|i| i.injections += 1)
                .or_insert(Injected {
                    origin,
                    src,
                    dst,
                    injections: 1,
                    deliveries: 0,
                });
        }
    }

    /// Records a delivery at `node` of a packet carried by `via`'s datagram and checks it.
    pub fn delivered(
        &mut self,
        at: Duration,
        node: usize,
        via: usize,
        packet: &[u8],
        addressing: &Addressing,
        out: &mut Vec<Violation>,
    ) {
        let Some((src, dst, id)) = read_packet(packet) else {
            out.push(Violation::NotIpv4 { node });
            return;
        };
        let owner = addressing.owner(dst);
        if owner != Some(node) {
            out.push(Violation::WrongOwner { node, dst, owner });
        }
        let sender = match id {
            Some(id) => match self.injected.get_mut(&id) {
                None => {
                    out.push(Violation::UnknownPacket { id, node });
                    via
                }
                Some(inj) => {
                    inj.deliveries += 1;
                    if inj.deliveries > inj.injections {
                        out.push(Violation::Duplicate {
                            id,
                            node,
                            deliveries: inj.deliveries,
                        });
                    }
                    if inj.src != src || inj.dst != dst {
                        out.push(Violation::Altered { id });
                    }
                    inj.origin
                }
            },
            None => via,
        };
        let src_owner = addressing.owner(src);
        if src_owner != Some(sender) {
            out.push(Violation::ForeignSource {
                id,
                src,
                sender,
                owner: src_owner,
            });
        }
        if self.keep_deliveries {
            self.deliveries.push(Delivery {
                at,
                node,
                via,
                id,
                src,
                dst,
                len: packet.len(),
            });
        }
    }

    /// How often packet `id` was delivered.
    pub fn deliveries_of(&self, id: PacketId) -> u32 {
        self.injected.get(&id).map_or(0, |i| i.deliveries)
    }

    /// Every delivery kept so far (see [`Ledger::new`]).
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(a: &Addressing, i: usize) -> Ipv4Addr {
        a.pod(i, 9).unwrap()
    }

    #[test]
    fn packet_round_trip() {
        let p = sim_packet(
            Ipv4Addr::new(10, 32, 0, 1),
            Ipv4Addr::new(10, 32, 1, 1),
            PacketId(42),
            100,
        );
        assert_eq!(p.len(), 136);
        assert_eq!(
            read_packet(&p),
            Some((
                Ipv4Addr::new(10, 32, 0, 1),
                Ipv4Addr::new(10, 32, 1, 1),
                Some(PacketId(42))
            ))
        );
        assert_eq!(read_packet(&p[..20]).unwrap().2, None);
        assert_eq!(read_packet(&[0x60; 40]), None);
    }

    #[test]
    fn each_invariant_is_caught() {
        let a = Addressing::default();
        let mut l = Ledger::new(true);
        let mut v = Vec::new();
        let id = l.next_id();
        let p = sim_packet(pod(&a, 0), pod(&a, 1), id, 0);
        l.injected(0, &p);
        l.delivered(Duration::ZERO, 1, 0, &p, &a, &mut v);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(l.deliveries_of(id), 1);
        assert_eq!(l.deliveries().len(), 1);

        l.delivered(Duration::ZERO, 1, 0, &p, &a, &mut v);
        assert!(matches!(
            v.as_slice(),
            [Violation::Duplicate { deliveries: 2, .. }]
        ));
        v.clear();

        l.delivered(Duration::ZERO, 2, 0, &p, &a, &mut v);
        assert!(matches!(
            v[0],
            Violation::WrongOwner {
                node: 2,
                owner: Some(1),
                ..
            }
        ));
        v.clear();

        // Injected at node 2 with node 0's source: a spoof, whoever carries it.
        let id = l.next_id();
        let spoof = sim_packet(pod(&a, 0), pod(&a, 1), id, 0);
        l.injected(2, &spoof);
        l.delivered(Duration::ZERO, 1, 2, &spoof, &a, &mut v);
        assert!(matches!(
            v.as_slice(),
            [Violation::ForeignSource {
                sender: 2,
                owner: Some(0),
                ..
            }]
        ));
        v.clear();

        let never = sim_packet(pod(&a, 0), pod(&a, 1), PacketId(999), 0);
        l.delivered(Duration::ZERO, 1, 0, &never, &a, &mut v);
        assert!(matches!(v.as_slice(), [Violation::UnknownPacket { .. }]));
        v.clear();

        let id = l.next_id();
        let orig = sim_packet(pod(&a, 0), pod(&a, 1), id, 0);
        l.injected(0, &orig);
        let mut changed = orig.clone();
        changed[19] ^= 1;
        l.delivered(Duration::ZERO, 1, 0, &changed, &a, &mut v);
        assert!(v.contains(&Violation::Altered { id }));
        v.clear();

        l.delivered(Duration::ZERO, 1, 0, &[0u8; 3], &a, &mut v);
        assert_eq!(v, vec![Violation::NotIpv4 { node: 1 }]);
        v.clear();

        // Without an id, the datagram's sender must own the source.
        let mut raw = sim_packet(pod(&a, 0), pod(&a, 1), PacketId(0), 0);
        raw.truncate(20);
        l.delivered(Duration::ZERO, 1, 0, &raw, &a, &mut v);
        assert!(v.is_empty());
        l.delivered(Duration::ZERO, 1, 3, &raw, &a, &mut v);
        assert!(matches!(
            v.as_slice(),
            [Violation::ForeignSource {
                id: None,
                sender: 3,
                ..
            }]
        ));
    }
}
