//! What a node knows about each member of the cluster, from gossip and from the member's own
//! announcements on a session: identity, where to reach it, its blocks, its neighbours, and
//! whether it is alive.

use ipnet::Ipv4Net;
use mesh_crypto::PublicKey;
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) key: PublicKey,
    pub(crate) name: String,
    /// The endpoint it announces (gossip), if any.
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) blocks: Vec<Ipv4Net>,
    /// When its current blocks were first seen here (oldest claim wins a conflict).
    pub(crate) blocks_since: Option<Instant>,
    /// Version of the announcement applied (member record or peer info: one counter).
    pub(crate) version: u64,
    /// It announced that it left.
    pub(crate) left: bool,
    /// Key prefixes of its neighbours, from its adjacency record.
    pub(crate) adjacency: Vec<[u8; 8]>,
    pub(crate) adjacency_version: u64,
    /// Since when nothing says it is alive.
    pub(crate) unreachable_since: Option<Instant>,
    pub(crate) dead: bool,
}

impl Member {
    pub(crate) fn new(key: PublicKey) -> Self {
        Self {
            key,
            name: String::new(),
            endpoint: None,
            blocks: Vec::new(),
            blocks_since: None,
            version: 0,
            left: false,
            adjacency: Vec::new(),
            adjacency_version: 0,
            unreachable_since: None,
            dead: false,
        }
    }

    /// Applies an announcement if it is newer (or `direct`: the member itself said it on a
    /// fresh session, so whatever its counter says after a restart, it is current). Returns
    /// whether the blocks changed.
    pub(crate) fn announce(
        &mut self,
        now: Instant,
        direct: bool,
        version: u64,
        name: String,
        blocks: Vec<Ipv4Net>,
    ) -> bool {
        if !direct && version <= self.version && self.version != 0 {
            return false;
        }
        self.version = version;
        if self.name != name || self.blocks != blocks {
            tracing::info!(peer = %self.key.fingerprint(), %name, ?blocks, "member announced");
        }
        self.name = name;
        let changed = self.blocks != blocks;
        if changed {
            self.blocks_since = Some(now);
            self.blocks = blocks;
        }
        changed
    }

    pub(crate) fn prefix(&self) -> [u8; 8] {
        mesh_proto::gossip::prefix(self.key.as_bytes())
    }
}
