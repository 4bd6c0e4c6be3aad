//! The node-local pool: pod addresses out of the blocks this node owns.
//!
//! An address is handed to one *attachment*, the CNI pair (`container_id`, `ifname`). Asking
//! again for the same attachment returns the same address (a runtime retrying ADD), releasing
//! is idempotent, and [`LocalPool::gc`] frees every attachment the runtime no longer knows.
//! The network address, the first address (the gateway on the bridge) and the broadcast
//! address of a block are never handed out.
//!
//! Addresses are chosen next-fit: the first free one after the last one handed out, wrapping
//! around. A released address is therefore not reused at once, so ARP caches and conntrack
//! entries of the pod that had it have time to expire before another pod gets it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Longest container ID accepted (the CNI spec sets no limit; runtimes use 64 hex digits).
const MAX_CONTAINER_ID_LEN: usize = 256;
/// Longest interface name the kernel accepts.
const MAX_IFNAME_LEN: usize = 15;

/// One CNI attachment: the key of an allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawKey")]
pub struct AttachmentKey {
    container_id: String,
    ifname: String,
}

#[derive(Deserialize)]
struct RawKey {
    container_id: String,
    ifname: String,
}

impl TryFrom<RawKey> for AttachmentKey {
    type Error = KeyError;
    fn try_from(raw: RawKey) -> Result<Self, KeyError> {
        Self::new(raw.container_id, raw.ifname)
    }
}

/// Why a container ID or interface name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The container ID breaks the CNI spec's rule.
    #[error(
        "container ID {0:?} is invalid: it must be 1 to 256 characters, start with a letter or \
         digit and contain only letters, digits, '_', '.' and '-'"
    )]
    ContainerId(String),
    /// The interface name is one the kernel would refuse.
    #[error(
        "interface name {0:?} is invalid: it must be 1 to 15 bytes, not '.' or '..', without \
         '/', ':' or whitespace"
    )]
    Ifname(String),
}

impl AttachmentKey {
    /// Checks both parts: the container ID by the CNI spec's rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`),
    /// the interface name by the kernel's.
    pub fn new(
        container_id: impl Into<String>,
        ifname: impl Into<String>,
    ) -> Result<Self, KeyError> {
        let container_id = container_id.into();
        let ifname = ifname.into();
        let id_ok = container_id.len() <= MAX_CONTAINER_ID_LEN
            && container_id
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !id_ok {
            return Err(KeyError::ContainerId(container_id));
        }
        let if_ok = !ifname.is_empty()
            && ifname.len() <= MAX_IFNAME_LEN
            && ifname != "."
            && ifname != ".."
            && !ifname
                .bytes()
                .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
        if !if_ok {
            return Err(KeyError::Ifname(ifname));
        }
        Ok(Self {
            container_id,
            ifname,
        })
    }

    /// The container ID (`CNI_CONTAINERID`).
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The interface name inside the container (`CNI_IFNAME`).
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

impl fmt::Display for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// Who holds an allocation, as the runtime told the CNI plugin. Informational, except
/// `network`, which scopes [`LocalPool::gc_network`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    /// `K8S_POD_NAME`, if the runtime passed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// `K8S_POD_NAMESPACE`, if the runtime passed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The CNI network name (`name` of the network configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// One address handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The attachment holding it.
    #[serde(flatten)]
    pub key: AttachmentKey,
    /// The address.
    pub address: Ipv4Addr,
    /// The block it came from (its prefix is the pod's prefix, its first address the gateway).
    pub block: Ipv4Net,
    /// Who holds it.
    #[serde(flatten)]
    pub pod: PodRef,
}

impl Allocation {
    /// The address with its block's prefix, e.g. `10.32.1.5/24`.
    pub fn address_net(&self) -> Ipv4Net {
        Ipv4Net::new(self.address, self.block.prefix_len()).unwrap_or(self.block)
    }

    /// The block's gateway: its first address, held by the node's bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(self.block)
    }
}

/// The first address of `block`, which the node's bridge holds.
pub fn gateway_of(block: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(block.network()).saturating_add(1))
}

/// The answer of [`LocalPool::allocate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocated {
    /// The allocation (new, or the one the attachment already had).
    pub allocation: Allocation,
    /// `true` if this call handed the address out; `false` if the attachment had it already.
    pub fresh: bool,
}

/// Why no address could be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    /// The node owns no block yet.
    #[error("this node owns no address block yet, so it has no pod address to give")]
    NoBlocks,
    /// Every usable address of every block is taken.
    #[error(
        "address space exhausted: all {capacity} pod addresses of this node's blocks ({}) are \
         in use; remove pods that are gone (CNI GC) or give the node a larger block",
        fmt_blocks(.blocks)
    )]
    Exhausted {
        /// The node's blocks.
        blocks: Vec<Ipv4Net>,
        /// Usable addresses in them.
        capacity: u64,
    },
}

fn fmt_blocks(blocks: &[Ipv4Net]) -> String {
    blocks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The serializable state of a [`LocalPool`] (what `meshd` keeps in `ipam.json`). The blocks
/// are not part of it: they come from the node's configuration (`--block`) or, with automatic
/// IPAM, from the node's blocks in use ([`LocalPool::set_blocks`]; meshd keeps them apart).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    /// Format version, [`PoolState::VERSION`].
    pub version: u32,
    /// The last address handed out (the next-fit cursor).
    #[serde(default)]
    pub last: Option<Ipv4Addr>,
    /// Every allocation.
    #[serde(default)]
    pub allocations: Vec<Allocation>,
}

impl PoolState {
    /// The format version this crate writes and reads.
    pub const VERSION: u32 = 1;
}

/// What [`LocalPool::restore`] found in a saved state besides good allocations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Allocations whose address is no usable address of the current blocks (the block was
    /// given up, or the configuration changed). They are **kept** — a pod may still use the
    /// address — and are released like any other, but their addresses are never handed out.
    pub stranded: Vec<Allocation>,
    /// Entries dropped because an earlier entry already held the same address or attachment
    /// (a corrupted or hand-edited file).
    pub duplicates: Vec<Allocation>,
}

/// The node-local address pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPool {
    /// Sorted, non-overlapping, truncated.
    blocks: Vec<Ipv4Net>,
    by_key: BTreeMap<AttachmentKey, Allocation>,
    by_addr: BTreeMap<Ipv4Addr, AttachmentKey>,
    last: Option<Ipv4Addr>,
}

impl LocalPool {
    /// An empty pool over `blocks` (truncated to their network; overlapping ones merged).
    pub fn new(blocks: impl IntoIterator<Item = Ipv4Net>) -> Self {
        Self {
            blocks: normalize(blocks),
            by_key: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            last: None,
        }
    }

    /// A pool over `blocks` holding the allocations of `state`. Allocations outside the
    /// blocks are kept and reported; duplicates are dropped and reported.
    pub fn restore(
        blocks: impl IntoIterator<Item = Ipv4Net>,
        state: PoolState,
    ) -> (Self, RestoreReport) {
        let mut pool = Self::new(blocks);
        pool.last = state.last;
        let mut report = RestoreReport::default();
        for a in state.allocations {
            if pool.by_key.contains_key(&a.key) || pool.by_addr.contains_key(&a.address) {
                report.duplicates.push(a);
                continue;
            }
            if !pool.is_usable(a.address) {
                report.stranded.push(a.clone());
            }
            pool.insert(a);
        }
        (pool, report)
    }

    /// The state to persist.
    pub fn state(&self) -> PoolState {
        PoolState {
            version: PoolState::VERSION,
            last: self.last,
            allocations: self.by_key.values().cloned().collect(),
        }
    }

    /// The blocks addresses are handed out from.
    pub fn blocks(&self) -> &[Ipv4Net] {
        &self.blocks
    }

    /// Replaces the blocks addresses are handed out from (automatic IPAM: the node's blocks
    /// in use changed). Allocations outside the new blocks stay, as stranded (a pod may still
    /// use the address; it is freed like any other and never handed out again). Returns the
    /// allocations this call stranded.
    pub fn set_blocks(&mut self, blocks: impl IntoIterator<Item = Ipv4Net>) -> Vec<Allocation> {
        let before: BTreeSet<Ipv4Addr> = self
            .by_addr
            .keys()
            .filter(|a| self.is_usable(**a))
            .copied()
            .collect();
        self.blocks = normalize(blocks);
        self.by_key
            .values()
            .filter(|a| before.contains(&a.address) && !self.is_usable(a.address))
            .cloned()
            .collect()
    }

    /// Each block with its usable addresses handed out and still free, in block order.
    pub fn usage(&self) -> Vec<(Ipv4Net, u64, u64)> {
        self.blocks
            .iter()
            .map(|b| {
                let (cap, used) = match usable_range(*b) {
                    Some((lo, hi)) => (
                        u64::from(hi - lo) + 1,
                        self.by_addr
                            .range(Ipv4Addr::from(lo)..=Ipv4Addr::from(hi))
                            .count() as u64,
                    ),
                    None => (0, 0),
                };
                (*b, used, cap.saturating_sub(used))
            })
            .collect()
    }

    /// Whether `addr` is an address this pool may hand out (inside a block, not reserved).
    pub fn is_usable(&self, addr: Ipv4Addr) -> bool {
        self.blocks
            .iter()
            .any(|b| usable_range(*b).is_some_and(|(lo, hi)| (lo..=hi).contains(&u32::from(addr))))
    }

    /// Hands an address to `key`, or returns the one it has already.
    pub fn allocate(
        &mut self,
        key: AttachmentKey,
        pod: PodRef,
    ) -> Result<Allocated, AllocateError> {
        if let Some(existing) = self.by_key.get(&key) {
            return Ok(Allocated {
                allocation: existing.clone(),
                fresh: false,
            });
        }
        if self.blocks.is_empty() {
            return Err(AllocateError::NoBlocks);
        }
        let Some((address, block)) = self.next_free() else {
            return Err(AllocateError::Exhausted {
                blocks: self.blocks.clone(),
                capacity: self.capacity(),
            });
        };
        let allocation = Allocation {
            key,
            address,
            block,
            pod,
        };
        self.last = Some(address);
        self.insert(allocation.clone());
        Ok(Allocated {
            allocation,
            fresh: true,
        })
    }

    /// Frees `key`'s address; `None` if it had none (releasing twice is fine).
    pub fn release(&mut self, key: &AttachmentKey) -> Option<Allocation> {
        let a = self.by_key.remove(key)?;
        self.by_addr.remove(&a.address);
        Some(a)
    }

    /// Frees every allocation whose attachment is not in `keep`; returns what it freed.
    pub fn gc(&mut self, keep: &[AttachmentKey]) -> Vec<Allocation> {
        self.gc_matching(keep, |_| true)
    }

    /// Like [`LocalPool::gc`], but only among allocations made for CNI network `network`
    /// (a runtime's GC names the attachments of one network; another network's must stay).
    pub fn gc_network(&mut self, network: &str, keep: &[AttachmentKey]) -> Vec<Allocation> {
        self.gc_matching(keep, |a| a.pod.network.as_deref() == Some(network))
    }

    fn gc_matching(
        &mut self,
        keep: &[AttachmentKey],
        in_scope: impl Fn(&Allocation) -> bool,
    ) -> Vec<Allocation> {
        let keep: BTreeSet<&AttachmentKey> = keep.iter().collect();
        let doomed: Vec<AttachmentKey> = self
            .by_key
            .values()
            .filter(|a| in_scope(a) && !keep.contains(&a.key))
            .map(|a| a.key.clone())
            .collect();
        doomed.iter().filter_map(|k| self.release(k)).collect()
    }

    /// The allocation of `key`, if any.
    pub fn get(&self, key: &AttachmentKey) -> Option<&Allocation> {
        self.by_key.get(key)
    }

    /// Every allocation, by attachment.
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.by_key.values()
    }

    /// Allocations whose address is no usable address of the current blocks.
    pub fn stranded(&self) -> impl Iterator<Item = &Allocation> {
        self.by_key.values().filter(|a| !self.is_usable(a.address))
    }

    /// Usable addresses in all blocks.
    pub fn capacity(&self) -> u64 {
        self.blocks
            .iter()
            .filter_map(|b| usable_range(*b))
            .map(|(lo, hi)| u64::from(hi - lo) + 1)
            .sum()
    }

    /// Usable addresses handed out (stranded allocations not counted).
    pub fn used(&self) -> u64 {
        self.by_addr.keys().filter(|a| self.is_usable(**a)).count() as u64
    }

    /// Usable addresses still free.
    pub fn free(&self) -> u64 {
        self.capacity().saturating_sub(self.used())
    }

    fn insert(&mut self, a: Allocation) {
        self.by_addr.insert(a.address, a.key.clone());
        self.by_key.insert(a.key.clone(), a);
    }

    /// The first free usable address after the cursor, wrapping around once.
    fn next_free(&self) -> Option<(Ipv4Addr, Ipv4Net)> {
        let after = self.last.map(u32::from);
        let scan = |from_exclusive: Option<u32>, to_inclusive: Option<u32>| {
            for block in &self.blocks {
                let Some((lo, hi)) = usable_range(*block) else {
                    continue;
                };
                let lo = match from_exclusive {
                    Some(f) if f >= hi => continue,
                    Some(f) => lo.max(f + 1),
                    None => lo,
                };
                let hi = match to_inclusive {
                    Some(t) if t < lo => continue,
                    Some(t) => hi.min(t),
                    None => hi,
                };
                for n in lo..=hi {
                    let addr = Ipv4Addr::from(n);
                    if !self.by_addr.contains_key(&addr) {
                        return Some((addr, *block));
                    }
                }
            }
            None
        };
        match after {
            Some(a) => scan(Some(a), None).or_else(|| scan(None, Some(a))),
            None => scan(None, None),
        }
    }
}

/// Sorted, truncated blocks with any block contained in another dropped.
fn normalize(blocks: impl IntoIterator<Item = Ipv4Net>) -> Vec<Ipv4Net> {
    let mut v: Vec<Ipv4Net> = blocks.into_iter().map(|b| b.trunc()).collect();
    v.sort();
    v.dedup();
    let all = v.clone();
    v.retain(|b| !all.iter().any(|o| o != b && o.contains(b)));
    v
}

/// First and last address a block may hand out: all but network, gateway and broadcast.
/// `None` for blocks of /31 and /32, which have none.
fn usable_range(block: Ipv4Net) -> Option<(u32, u32)> {
    if block.prefix_len() > 30 {
        return None;
    }
    let network = u32::from(block.network());
    let broadcast = u32::from(block.broadcast());
    Some((network + 2, broadcast - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn key(c: &str, i: &str) -> AttachmentKey {
        AttachmentKey::new(c, i).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn first_address_skips_network_and_gateway() {
        let mut p = LocalPool::new([net("10.32.1.0/24")]);
        let a = p.allocate(key("c1", "eth0"), PodRef::default()).unwrap();
        assert!(a.fresh);
        assert_eq!(a.allocation.address, ip("10.32.1.2"));
        assert_eq!(a.allocation.gateway(), ip("10.32.1.1"));
        assert_eq!(a.allocation.address_net().to_string(), "10.32.1.2/24");
        assert_eq!(p.capacity(), 253);
        assert_eq!(p.used(), 1);
        assert_eq!(p.free(), 252);
    }

    #[test]
    fn same_attachment_gets_the_same_address() {
        let mut p = LocalPool::new([net("10.32.1.0/24")]);
        let a = p.allocate(key("c1", "eth0"), PodRef::default()).unwrap();
        let b = p.allocate(key("c1", "eth0"), PodRef::default()).unwrap();
        assert!(!b.fresh);
        assert_eq!(a.allocation, b.allocation);
        let c = p.allocate(key("c1", "net1"), PodRef::default()).unwrap();
        assert_ne!(c.allocation.address, a.allocation.address);
        assert_eq!(p.used(), 2);
    }

    #[test]
    fn release_is_idempotent_and_the_address_comes_back_after_wrapping() {
        let mut p = LocalPool::new([net("10.32.1.0/29")]); // .2 .. .6 usable
        let first = p.allocate(key("c1", "eth0"), PodRef::default()).unwrap();
        assert!(p.release(&key("c1", "eth0")).is_some());
        assert!(p.release(&key("c1", "eth0")).is_none());
        // Next-fit: the released .2 is handed out again only after .3 .. .6.
        let mut got = Vec::new();
        for i in 0..5 {
            let a = p.allocate(key(&format!("d{i}"), "eth0"), PodRef::default());
            got.push(a.unwrap().allocation.address);
        }
        assert_eq!(
            got,
            [
                "10.32.1.3",
                "10.32.1.4",
                "10.32.1.5",
                "10.32.1.6",
                "10.32.1.2"
            ]
            .map(ip)
        );
        assert_eq!(got[4], first.allocation.address);
    }

    #[test]
    fn exhaustion_is_a_typed_error_and_broadcast_is_never_given() {
        let mut p = LocalPool::new([net("10.32.1.0/30")]); // only .2
        p.allocate(key("c1", "eth0"), PodRef::default()).unwrap();
        let err = p
            .allocate(key("c2", "eth0"), PodRef::default())
            .unwrap_err();
        assert_eq!(
            err,
            AllocateError::Exhausted {
                blocks: vec![net("10.32.1.0/30")],
                capacity: 1
            }
        );
        assert!(err.to_string().contains("exhausted"), "{err}");
        let mut empty = LocalPool::new([]);
        assert_eq!(
            empty.allocate(key("c1", "eth0"), PodRef::default()),
            Err(AllocateError::NoBlocks)
        );
    }

    #[test]
    fn gc_frees_everything_not_kept_and_network_scope_spares_others() {
        let mut p = LocalPool::new([net("10.32.1.0/24")]);
        let on = |n: &str| PodRef {
            network: Some(n.into()),
            ..PodRef::default()
        };
        p.allocate(key("a", "eth0"), on("mesh")).unwrap();
        p.allocate(key("b", "eth0"), on("mesh")).unwrap();
        p.allocate(key("b", "net1"), on("other")).unwrap();
        let freed = p.gc_network("mesh", &[key("a", "eth0")]);
        assert_eq!(freed.len(), 1);
        assert_eq!(freed[0].key, key("b", "eth0"));
        assert!(p.get(&key("b", "net1")).is_some());
        let freed = p.gc(&[]);
        assert_eq!(freed.len(), 2);
        assert_eq!(p.used(), 0);
    }

    #[test]
    fn keys_are_checked() {
        assert!(AttachmentKey::new("", "eth0").is_err());
        assert!(AttachmentKey::new("-abc", "eth0").is_err());
        assert!(AttachmentKey::new("a b", "eth0").is_err());
        assert!(AttachmentKey::new("abc", "").is_err());
        assert!(AttachmentKey::new("abc", "way-too-long-name").is_err());
        assert!(AttachmentKey::new("abc", "a/b").is_err());
        assert!(AttachmentKey::new("Abc_1.2-x", "net1").is_ok());
        let bad: Result<AttachmentKey, _> =
            serde_json::from_str(r#"{"container_id":"","ifname":"eth0"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn state_round_trips_and_keeps_stranded_allocations() {
        let mut p = LocalPool::new([net("10.32.1.0/24"), net("10.32.2.0/24")]);
        let pod = PodRef {
            pod_name: Some("web".into()),
            pod_namespace: Some("default".into()),
            network: Some("mesh".into()),
        };
        p.allocate(key("a", "eth0"), pod).unwrap();
        for i in 0..300 {
            p.allocate(key(&format!("c{i}"), "eth0"), PodRef::default())
                .unwrap();
        }
        let text = serde_json::to_string(&p.state()).unwrap();
        let back: PoolState = serde_json::from_str(&text).unwrap();
        let (q, report) =
            LocalPool::restore([net("10.32.1.0/24"), net("10.32.2.0/24")], back.clone());
        assert_eq!(report, RestoreReport::default());
        assert_eq!(q, p);

        // The second block is gone: its allocations are reported, kept, and releasable.
        let (mut r, report) = LocalPool::restore([net("10.32.1.0/24")], back);
        assert_eq!(report.stranded.len(), 301 - 253);
        assert!(report.duplicates.is_empty());
        assert_eq!(r.stranded().count(), 48);
        assert_eq!(r.used(), 253);
        let s = report.stranded[0].key.clone();
        assert!(r.release(&s).is_some());
        assert_eq!(r.stranded().count(), 47);
        // Still full: the stranded addresses are no room for new pods.
        assert!(r.allocate(key("new", "eth0"), PodRef::default()).is_err());
    }

    #[test]
    fn set_blocks_strands_what_falls_outside_and_hands_out_from_the_new_ones() {
        let mut pool = LocalPool::new([net("10.32.0.0/30")]);
        let a = pool.allocate(key("a", "eth0"), PodRef::default()).unwrap();
        assert_eq!(a.allocation.address, ip("10.32.0.2"));
        assert!(matches!(
            pool.allocate(key("b", "eth0"), PodRef::default()),
            Err(AllocateError::Exhausted { .. })
        ));
        assert!(
            pool.set_blocks([net("10.32.0.0/30"), net("10.32.0.4/30")])
                .is_empty()
        );
        let b = pool.allocate(key("b", "eth0"), PodRef::default()).unwrap();
        assert_eq!(b.allocation.address, ip("10.32.0.6"));
        assert_eq!(
            pool.usage(),
            [(net("10.32.0.0/30"), 1, 0), (net("10.32.0.4/30"), 1, 0)]
        );
        let stranded = pool.set_blocks([net("10.32.0.4/30")]);
        assert_eq!(stranded.len(), 1);
        assert_eq!(stranded[0].key, key("a", "eth0"));
        assert_eq!(pool.stranded().count(), 1);
        assert_eq!(
            pool.get(&key("a", "eth0")).unwrap().address,
            ip("10.32.0.2")
        );
        assert_eq!(pool.usage(), [(net("10.32.0.4/30"), 1, 0)]);
        // No blocks: nothing to give, the allocations stay.
        assert_eq!(pool.set_blocks([]).len(), 1);
        assert!(matches!(
            pool.allocate(key("c", "eth0"), PodRef::default()),
            Err(AllocateError::NoBlocks)
        ));
        assert_eq!(pool.allocations().count(), 2);
    }

    #[test]
    fn restore_drops_and_reports_duplicates() {
        let a = Allocation {
            key: key("a", "eth0"),
            address: ip("10.32.1.5"),
            block: net("10.32.1.0/24"),
            pod: PodRef::default(),
        };
        let same_addr = Allocation {
            key: key("b", "eth0"),
            ..a.clone()
        };
        let same_key = Allocation {
            address: ip("10.32.1.6"),
            ..a.clone()
        };
        let state = PoolState {
            version: 1,
            last: None,
            allocations: vec![a.clone(), same_addr.clone(), same_key.clone()],
        };
        let (p, report) = LocalPool::restore([net("10.32.1.0/24")], state);
        assert_eq!(report.duplicates, vec![same_addr, same_key]);
        assert_eq!(p.allocations().collect::<Vec<_>>(), vec![&a]);
    }

    /// xorshift64*: a tiny deterministic generator, so a failing seed reproduces exactly.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random allocate / release / gc / restore sequences against a reference model: no
    /// address is ever held by two attachments, no reserved or out-of-block address is
    /// handed out, the same attachment keeps its address, and exhaustion happens exactly
    /// when the model says every usable address is taken.
    #[test]
    fn random_sequences_never_hand_out_an_address_twice() {
        let blocks = [
            net("10.32.1.0/29"),
            net("10.32.1.16/30"),
            net("10.32.9.0/28"),
        ];
        let reserved: BTreeSet<Ipv4Addr> = blocks
            .iter()
            .flat_map(|b| [b.network(), gateway_of(*b), b.broadcast()])
            .collect();
        for seed in 1..=200u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut pool = LocalPool::new(blocks);
            let capacity = pool.capacity();
            assert_eq!(capacity, 5 + 1 + 13);
            let mut model: BTreeMap<AttachmentKey, Ipv4Addr> = BTreeMap::new();
            for step in 0..400 {
                let ctx = || format!("seed {seed} step {step}");
                let k = key(
                    &format!("c{}", rng.below(30)),
                    ["eth0", "net1"][rng.below(2) as usize],
                );
                match rng.below(10) {
                    0..=4 => match pool.allocate(k.clone(), PodRef::default()) {
                        Ok(a) => {
                            let addr = a.allocation.address;
                            assert!(!reserved.contains(&addr), "reserved {addr}: {}", ctx());
                            assert!(blocks.iter().any(|b| b.contains(&addr)), "{}", ctx());
                            match model.get(&k) {
                                Some(prev) => {
                                    assert!(!a.fresh, "{}", ctx());
                                    assert_eq!(*prev, addr, "{}", ctx());
                                }
                                None => {
                                    assert!(a.fresh, "{}", ctx());
                                    assert!(
                                        !model.values().any(|v| *v == addr),
                                        "{addr} handed out twice: {}",
                                        ctx()
                                    );
                                    model.insert(k, addr);
                                }
                            }
                        }
                        Err(AllocateError::Exhausted { .. }) => {
                            assert!(!model.contains_key(&k), "{}", ctx());
                            assert_eq!(model.len() as u64, capacity, "{}", ctx());
                        }
                        Err(e) => panic!("{e}: {}", ctx()),
                    },
                    5..=7 => {
                        let freed = pool.release(&k).map(|a| a.address);
                        assert_eq!(freed, model.remove(&k), "{}", ctx());
                    }
                    8 => {
                        let keep: Vec<AttachmentKey> = model
                            .keys()
                            .filter(|_| rng.below(2) == 0)
                            .cloned()
                            .collect();
                        let freed = pool.gc(&keep);
                        let expected = model.len() - keep.len();
                        assert_eq!(freed.len(), expected, "{}", ctx());
                        model.retain(|k, _| keep.contains(k));
                    }
                    _ => {
                        let (restored, report) = LocalPool::restore(blocks, pool.state());
                        assert_eq!(report, RestoreReport::default(), "{}", ctx());
                        assert_eq!(restored, pool, "{}", ctx());
                        pool = restored;
                    }
                }
                assert_eq!(pool.used(), model.len() as u64, "{}", ctx());
                let held: BTreeMap<AttachmentKey, Ipv4Addr> = pool
                    .allocations()
                    .map(|a| (a.key.clone(), a.address))
                    .collect();
                assert_eq!(held, model, "{}", ctx());
            }
        }
    }
}
