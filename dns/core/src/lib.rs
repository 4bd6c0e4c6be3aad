//! mesh's DNS, sans I/O: the record store that gossip feeds, answering queries for the
//! cluster zone, and the decisions of forwarding everything else upstream.
//!
//! - [`RecordStore`]: records `(name, address, owner node, version, tombstone)` merged as a
//!   CRDT (higher version wins, a tombstone wins a tie), with the local API's edits
//!   ([`RecordStore::add`], [`RecordStore::remove`], [`RecordStore::remove_owner`]) and this
//!   node's view of which owners are alive ([`RecordStore::set_node_alive`]).
//! - [`answer`] / [`Server::answer`]: query bytes in, [`Answer`] out — a reply (A, AAAA, PTR,
//!   SOA; NXDOMAIN vs NODATA with the zone's SOA in the authority section; FORMERR, NOTIMP,
//!   REFUSED, BADVERS; EDNS echoed; TC when the reply does not fit the client's UDP size),
//!   [`Answer::Forward`] for names outside the zone, or [`Answer::Drop`]. Several addresses
//!   under a name come in an order shuffled from the caller's seed, optionally only a subset
//!   with the querying node's own first ([`ZoneConfig::subset`]).
//! - [`Forwarder`]: which upstream gets a forwarded question when (fast failover), matching
//!   upstream answers against spoofing (RFC 5452: a fresh ID, name case and socket per
//!   upstream query; address, port, ID, question and case must all match), and a bounded
//!   [`Cache`] honouring TTLs and negative answers (RFC 2308). [`parse_resolv_conf`]
//!   reads upstreams out of resolv.conf text.
//!
//! Every message type and the wire codec come from `hickory-proto`; nothing here encodes or
//! decodes DNS by hand.
//!
//! It does not read clocks, sockets, files or the OS RNG: callers pass `now` (an
//! [`std::time::Instant`] for the forwarder, wall-clock milliseconds for record versions)
//! and seeds (the forwarder's seeds a ChaCha20 CSPRNG, which the shell takes from the OS). It does not gossip: it hands out [`Entry`] values, turns them into gossip
//! records and back ([`to_gossip`], [`from_gossip`]) and merges them. It does not
//! detect dead nodes (it is told), and does not validate DNSSEC. Tombstones are kept until
//! gossip gains a way to agree they can go. See `mesh-dns-server` for the UDP/TCP shell.
//!
//! Files: `store.rs` (the record store), `gossip.rs` (records as gossip records and back),
//! `answer.rs` (answering the zone), `forward.rs`, `case.rs` and `cache.rs` (the forwarder,
//! its 0x20 name case and its cache), `config.rs` (the fixed defaults), `resolv.rs`
//! (resolv.conf).
#![forbid(unsafe_code)]

mod answer;
mod cache;
mod case;
mod config;
mod forward;
mod gossip;
mod reply;
mod resolv;
mod rng;
mod store;

pub use answer::{Answer, DropReason, ForwardQuery, QueryCtx, answer};
pub use cache::{Cache, CacheConfig, CacheKey};
pub use config::{
    CLASSIC_UDP_PAYLOAD, DEFAULT_MAX_UDP_PAYLOAD, DEFAULT_NEGATIVE_TTL, DEFAULT_TTL, DEFAULT_ZONE,
    MAX_QUERY_LEN, NameError, ZoneConfig,
};
pub use forward::{
    DEFAULT_FAILOVER_DELAY, DEFAULT_FINAL_WAIT, DEFAULT_MAX_PENDING, DEFAULT_MAX_UPSTREAM_QUERIES,
    DEFAULT_ROUND_GAP, DEFAULT_ROUNDS, Event, Forwarder, ForwarderConfig, ForwarderStats, Transmit,
    UpstreamQuery,
};
pub use gossip::{
    BODY_FORMAT, GossipError, GossipRecord, MAX_BODY_LEN, body_id, from_gossip, record_id,
    to_gossip,
};
pub use reply::{Transport, response_code};
pub use resolv::parse_resolv_conf;
pub use store::{Entry, Listed, Owner, RecordStore, Stamp, StoreError};

/// The answering side in one value: the store and the zone configuration.
#[derive(Clone, Debug, Default)]
pub struct Server {
    /// The records.
    pub store: RecordStore,
    /// The zone and its settings.
    pub config: ZoneConfig,
}

impl Server {
    /// An empty store under `config`.
    pub fn new(config: ZoneConfig) -> Self {
        Self {
            store: RecordStore::new(),
            config,
        }
    }

    /// [`answer`] from this server's store and configuration.
    pub fn answer(&self, query: &[u8], ctx: &QueryCtx, rng_seed: u64) -> Answer {
        answer(&self.store, &self.config, query, ctx, rng_seed)
    }
}
