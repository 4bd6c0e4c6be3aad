//! Forwarding names outside the cluster zone to upstream resolvers: which upstream gets
//! the query when, matching their answers, the cache, and the reply to each waiting
//! client. A state machine in the style of quinn-proto: `handle_*(now, …)`, then drain
//! [`Forwarder::poll_transmit`] and [`Forwarder::poll_event`], and sleep until
//! [`Forwarder::poll_timeout`].
//!
//! Failover: a query goes to one upstream (the one that answered first last time); if no
//! answer came after [`ForwarderConfig::failover_delay`] (200 ms) it also goes to the next,
//! and so on through the list, then a second round after
//! [`ForwarderConfig::round_gap`]; the first acceptable answer wins. A dead upstream
//! therefore costs a few hundred milliseconds once, not 5 s per query as in weaveDNS, and
//! afterwards the live one is asked first. An upstream's SERVFAIL, REFUSED or NOTIMP moves
//! on to the next one at once. Identical questions in flight share one upstream query.

use crate::answer::ForwardQuery;
use crate::cache::{Cache, CacheConfig, CacheKey};
use crate::config::DEFAULT_MAX_UDP_PAYLOAD;
use crate::reply::{Transport, encode_within, our_edns, response_to};
use crate::rng::XorShift;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Delay before the next upstream is asked too.
pub const DEFAULT_FAILOVER_DELAY: Duration = Duration::from_millis(200);
/// Pause between the end of one round over the upstreams and the start of the next.
pub const DEFAULT_ROUND_GAP: Duration = Duration::from_millis(800);
/// Rounds over the upstream list (a round resends to every upstream once).
pub const DEFAULT_ROUNDS: u32 = 2;
/// How long after the last send we wait before answering SERVFAIL.
pub const DEFAULT_FINAL_WAIT: Duration = Duration::from_millis(1000);
/// Upstream queries in flight at most; beyond it new questions get SERVFAIL at once.
pub const DEFAULT_MAX_PENDING: usize = 4096;

/// Configuration of the forwarder. [`Default`] has no upstreams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// Upstream resolvers, in preference order (see [`crate::parse_resolv_conf`]).
    pub upstreams: Vec<SocketAddr>,
    /// Default [`DEFAULT_FAILOVER_DELAY`].
    pub failover_delay: Duration,
    /// Default [`DEFAULT_ROUND_GAP`].
    pub round_gap: Duration,
    /// Default [`DEFAULT_ROUNDS`]; at least 1 is used.
    pub rounds: u32,
    /// Default [`DEFAULT_FINAL_WAIT`].
    pub final_wait: Duration,
    /// Default [`DEFAULT_MAX_PENDING`].
    pub max_pending: usize,
    /// The cache's bounds.
    pub cache: CacheConfig,
    /// The UDP payload size we advertise upstream and to clients. Default 1232.
    pub max_udp_payload: u16,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            failover_delay: DEFAULT_FAILOVER_DELAY,
            round_gap: DEFAULT_ROUND_GAP,
            rounds: DEFAULT_ROUNDS,
            final_wait: DEFAULT_FINAL_WAIT,
            max_pending: DEFAULT_MAX_PENDING,
            cache: CacheConfig::default(),
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
        }
    }
}

/// Bytes to send to an upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The upstream.
    pub to: SocketAddr,
    /// UDP normally; TCP (one query per connection, length-prefixed by the shell) when
    /// the upstream's UDP answer was truncated.
    pub transport: Transport,
    /// The DNS message.
    pub payload: Vec<u8>,
}

/// Something for the shell to do for a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Send `bytes` to the client `client` (the token passed to
    /// [`Forwarder::handle_query`]).
    Reply {
        /// The caller's token for the client.
        client: u64,
        /// The reply.
        bytes: Vec<u8>,
    },
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    /// Questions answered from the cache.
    pub cache_hits: u64,
    /// Questions that needed an upstream (coalesced ones included).
    pub cache_misses: u64,
    /// Questions that joined an identical one already in flight.
    pub coalesced: u64,
    /// Datagrams (and TCP queries) sent upstream.
    pub upstream_sends: u64,
    /// Upstream answers accepted.
    pub upstream_answers: u64,
    /// Upstream answers that were errors (SERVFAIL, REFUSED, NOTIMP).
    pub upstream_errors: u64,
    /// Datagrams that matched nothing we asked (late, duplicate or spoofed).
    pub ignored: u64,
    /// Questions that got SERVFAIL because no upstream answered in time.
    pub timeouts: u64,
    /// Questions refused because too many were in flight, or no upstream is configured.
    pub overloaded: u64,
}

#[derive(Clone, Debug)]
struct Pending {
    key: CacheKey,
    question: Query,
    clients: Vec<(u64, ForwardQuery)>,
    started: Instant,
    /// Upstream indexes in the order they are asked (starting at the preferred one).
    order: Vec<usize>,
    sends: usize,
    sent_to: Vec<bool>,
    failed: Vec<bool>,
    tcp_retried: bool,
    payload: Vec<u8>,
    last_send: Instant,
}

/// The forwarder and its cache. See the module docs.
#[derive(Debug)]
pub struct Forwarder {
    config: ForwarderConfig,
    cache: Cache,
    rng: XorShift,
    pending: BTreeMap<u16, Pending>,
    in_flight: BTreeMap<CacheKey, u16>,
    preferred: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: ForwarderStats,
}

impl Forwarder {
    /// A forwarder with an empty cache. `rng_seed` drives the upstream transaction IDs:
    /// the shell seeds it from the OS so that off-path spoofing needs to guess them.
    pub fn new(config: ForwarderConfig, rng_seed: u64) -> Self {
        Self {
            cache: Cache::new(config.cache),
            config,
            rng: XorShift::new(rng_seed),
            pending: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            preferred: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ForwarderStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ForwarderConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> ForwarderStats {
        self.stats
    }

    /// The cache (for `meshctl dns` and tests).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Questions waiting for an upstream.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// A client's question that [`crate::answer`] handed over. Returns the reply at once
    /// on a cache hit (or SERVFAIL when there is no upstream or too much in flight);
    /// otherwise `None`, and the reply comes later as an [`Event::Reply`] for `client`.
    pub fn handle_query(
        &mut self,
        now: Instant,
        client: u64,
        query: ForwardQuery,
    ) -> Option<Vec<u8>> {
        let Some(question) = query.request.queries.first().cloned() else {
            return self.immediate(&query, ResponseCode::FormErr);
        };
        let key = CacheKey::new(
            question.name(),
            question.query_type(),
            question.query_class(),
        );
        if let Some(cached) = self.cache.get(now, &key) {
            self.stats.cache_hits += 1;
            return Some(self.client_reply(&query, &cached));
        }
        self.stats.cache_misses += 1;
        if let Some(id) = self.in_flight.get(&key)
            && let Some(p) = self.pending.get_mut(id)
        {
            self.stats.coalesced += 1;
            p.clients.push((client, query));
            return None;
        }
        let n = self.config.upstreams.len();
        if n == 0 || self.pending.len() >= self.config.max_pending {
            self.stats.overloaded += 1;
            return self.immediate(&query, ResponseCode::ServFail);
        }
        let id = loop {
            let id = self.rng.next_u64() as u16;
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let mut upstream = Message::new(id, MessageType::Query, OpCode::Query);
        upstream.metadata.recursion_desired = true;
        let mut q = question.clone();
        q.set_name(key.name.clone());
        upstream.queries.push(q);
        upstream.edns = Some(our_edns(self.config.max_udp_payload));
        let Ok(payload) = upstream.to_vec() else {
            return self.immediate(&query, ResponseCode::FormErr);
        };
        let order = (0..n).map(|i| (self.preferred + i) % n).collect();
        let pending = Pending {
            key: key.clone(),
            question,
            clients: vec![(client, query)],
            started: now,
            order,
            sends: 0,
            sent_to: vec![false; n],
            failed: vec![false; n],
            tcp_retried: false,
            payload,
            last_send: now,
        };
        self.pending.insert(id, pending);
        self.in_flight.insert(key, id);
        self.send_due(now, id);
        None
    }

    /// A datagram (or TCP reply) from `from`. Anything that does not answer a question we
    /// asked that upstream is ignored and counted.
    pub fn handle_response(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(msg) = Message::from_vec(bytes) else {
            self.stats.ignored += 1;
            return;
        };
        let id = msg.metadata.id;
        let Some(p) = self.pending.get_mut(&id) else {
            self.stats.ignored += 1;
            return;
        };
        let Some(idx) = self.config.upstreams.iter().position(|u| *u == from) else {
            self.stats.ignored += 1;
            return;
        };
        let same_question = msg.queries.len() == 1 && {
            let q = &msg.queries[0];
            q.name() == p.question.name()
                && q.query_type() == p.question.query_type()
                && q.query_class() == p.question.query_class()
        };
        if !p.sent_to[idx] || msg.metadata.message_type != MessageType::Response || !same_question {
            self.stats.ignored += 1;
            return;
        }
        let rcode = msg.metadata.response_code;
        if matches!(
            rcode,
            ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp
        ) {
            self.stats.upstream_errors += 1;
            p.failed[idx] = true;
            if p.failed.iter().all(|&f| f) {
                self.finish(id, None);
            } else if p.sends < p.order.len() {
                // Do not wait for the failover delay: ask the next one now.
                self.send_next(now, id);
            }
            return;
        }
        if msg.metadata.truncation {
            if !p.tcp_retried {
                p.tcp_retried = true;
                let payload = p.payload.clone();
                self.stats.upstream_sends += 1;
                self.transmits.push_back(Transmit {
                    to: from,
                    transport: Transport::Tcp,
                    payload,
                });
            }
            return;
        }
        self.stats.upstream_answers += 1;
        self.preferred = idx;
        let key = p.key.clone();
        self.cache.insert(now, key, &msg);
        self.finish(id, Some(&msg));
    }

    /// Sends what is due and gives up on questions past their deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<u16> = self.pending.keys().copied().collect();
        for id in ids {
            let Some(p) = self.pending.get(&id) else {
                continue;
            };
            if now >= self.deadline(p) {
                self.stats.timeouts += 1;
                self.finish(id, None);
            } else {
                self.send_due(now, id);
            }
        }
    }

    /// When [`Forwarder::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| match self.next_send_at(p) {
                Some(t) => t.min(self.deadline(p)),
                None => self.deadline(p),
            })
            .min()
    }

    /// The next datagram to send upstream.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next reply for a client.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The schedule: when send number `k` (0-based) is due, relative to the question's
    /// arrival. Within a round the upstreams are `failover_delay` apart; rounds are
    /// `round_gap` apart.
    pub fn send_offset(&self, k: usize) -> Duration {
        let n = self.config.upstreams.len().max(1);
        let round = u32::try_from(k / n).unwrap_or(u32::MAX);
        let i = u32::try_from(k % n).unwrap_or(u32::MAX);
        let n32 = u32::try_from(n - 1).unwrap_or(u32::MAX);
        let round_len = self.config.failover_delay.saturating_mul(n32) + self.config.round_gap;
        round_len.saturating_mul(round) + self.config.failover_delay.saturating_mul(i)
    }

    fn total_sends(&self) -> usize {
        self.config.upstreams.len() * self.config.rounds.max(1) as usize
    }

    fn next_send_at(&self, p: &Pending) -> Option<Instant> {
        (p.sends < self.total_sends()).then(|| p.started + self.send_offset(p.sends))
    }

    fn deadline(&self, p: &Pending) -> Instant {
        let last = self.send_offset(self.total_sends().saturating_sub(1));
        (p.started + last).max(p.last_send) + self.config.final_wait
    }

    fn send_due(&mut self, now: Instant, id: u16) {
        while let Some(p) = self.pending.get(&id) {
            match self.next_send_at(p) {
                Some(t) if t <= now => self.send_next(now, id),
                _ => break,
            }
        }
    }

    fn send_next(&mut self, now: Instant, id: u16) {
        let total = self.total_sends();
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        if p.sends >= total || p.order.is_empty() {
            return;
        }
        let idx = p.order[p.sends % p.order.len()];
        p.sends += 1;
        // An upstream that already said SERVFAIL is not asked again; its slot passes.
        if p.failed[idx] {
            return;
        }
        p.sent_to[idx] = true;
        p.last_send = now;
        let payload = p.payload.clone();
        let to = self.config.upstreams[idx];
        self.stats.upstream_sends += 1;
        self.transmits.push_back(Transmit {
            to,
            transport: Transport::Udp,
            payload,
        });
    }

    /// Replies to every client of `id`: from `response`, or SERVFAIL.
    fn finish(&mut self, id: u16, response: Option<&Message>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.in_flight.remove(&p.key);
        for (client, query) in p.clients {
            let bytes = match response {
                Some(r) => self.client_reply(&query, r),
                None => self.error_reply(&query, ResponseCode::ServFail),
            };
            if !bytes.is_empty() {
                self.events.push_back(Event::Reply { client, bytes });
            }
        }
    }

    fn immediate(&self, query: &ForwardQuery, rcode: ResponseCode) -> Option<Vec<u8>> {
        let bytes = self.error_reply(query, rcode);
        (!bytes.is_empty()).then_some(bytes)
    }

    fn error_reply(&self, query: &ForwardQuery, rcode: ResponseCode) -> Vec<u8> {
        let resp = response_to(&query.request, rcode, self.config.max_udp_payload);
        encode_within(&resp, query.max_reply_len).unwrap_or_default()
    }

    /// The upstream's (or cache's) answer, re-addressed to the client: its ID, its question
    /// as it spelled it, its flags, an OPT record if it sent one, within its size limit.
    fn client_reply(&self, query: &ForwardQuery, upstream: &Message) -> Vec<u8> {
        let mut resp = response_to(
            &query.request,
            upstream.metadata.response_code,
            self.config.max_udp_payload,
        );
        resp.metadata.authentic_data = false;
        resp.answers = upstream.answers.clone();
        resp.authorities = upstream.authorities.clone();
        resp.additionals = upstream.additionals.clone();
        encode_within(&resp, query.max_reply_len).unwrap_or_default()
    }
}
