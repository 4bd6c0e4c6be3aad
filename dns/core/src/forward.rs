//! Forwarding names outside the cluster zone to upstream resolvers: which upstream gets
//! the query when, matching their answers, the cache, and the reply to each waiting
//! client. A state machine in the style of quinn-proto: `handle_*(now, …)`, then drain
//! [`Forwarder::poll_transmit`], [`Forwarder::poll_event`] and [`Forwarder::poll_close`],
//! and sleep until [`Forwarder::poll_timeout`].
//!
//! Failover: a query goes to one upstream (the one that answered first last time); if no
//! answer came after [`ForwarderConfig::failover_delay`] (200 ms) it also goes to the next,
//! and so on through the list, then a second round after
//! [`ForwarderConfig::round_gap`]; the first acceptable answer wins. A dead upstream
//! therefore costs a few hundred milliseconds once, not 5 s per query as in weaveDNS, and
//! afterwards the live one is asked first. An upstream's SERVFAIL, REFUSED or NOTIMP moves
//! on to the next one at once. Identical questions in flight share one question upstream.
//!
//! Spoofing (RFC 5452). Every datagram sent upstream is an [`UpstreamQuery`] of its own:
//! a fresh 16-bit ID and a fresh letter case of the name ("0x20", see `case.rs`), both
//! drawn from a ChaCha20 CSPRNG that the caller seeds (from the OS in production; a
//! fixed seed keeps tests exact), and the shell sends it from a socket of its own on a
//! random ephemeral port, handing back what that socket receives with the query's
//! token. An answer counts only if it comes from the address *and* port that query went
//! to, is a response, carries the query's ID, and asks exactly the same question (type,
//! class, and the name with the same letter case, compared byte for byte). Anything else
//! is ignored, counted ([`ForwarderStats::mismatched`]), and the real answer is still
//! awaited. An off-path forger must hit port, ID and case at once (about 15 + 16 bits,
//! plus one per letter) within one round trip to the upstream. When a question ends,
//! [`Forwarder::poll_close`] names its queries so the shell closes their sockets: a
//! late answer then finds no socket at all.

use crate::answer::ForwardQuery;
use crate::cache::{Cache, CacheConfig, CacheKey};
use crate::config::DEFAULT_MAX_UDP_PAYLOAD;
use crate::reply::{Transport, encode_within, our_edns, response_to};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
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
/// Questions in flight upstream at most; beyond it new questions get SERVFAIL at once.
pub const DEFAULT_MAX_PENDING: usize = 4096;
/// Upstream queries open at most, each holding a socket (a file descriptor) in the shell
/// until its question ends. Beyond it new questions get SERVFAIL at once and due resends
/// are skipped. Kept well under the 1024 descriptors a service gets by default.
pub const DEFAULT_MAX_UPSTREAM_QUERIES: usize = 512;

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
    /// Default [`DEFAULT_MAX_UPSTREAM_QUERIES`].
    pub max_upstream_queries: usize,
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
            max_upstream_queries: DEFAULT_MAX_UPSTREAM_QUERIES,
            cache: CacheConfig::default(),
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
        }
    }
}

/// One query sent upstream, as a token between the forwarder and its shell: the shell
/// sends the [`Transmit`] from a socket of its own (a fresh ephemeral port), passes this
/// token with every datagram that socket receives ([`Forwarder::handle_response`]), and
/// closes the socket when [`Forwarder::poll_close`] returns the token. Not secret and
/// never on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpstreamQuery(u64);

/// Bytes to send to an upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Which upstream query this is; see [`UpstreamQuery`] for what the shell owes it.
    pub query: UpstreamQuery,
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
    /// Datagrams for an upstream query that waits for nothing any more (a late one, in
    /// the moment before the shell closed its socket).
    pub ignored: u64,
    /// Datagrams for an upstream query still waiting that failed a check: not from the
    /// address and port asked, unreadable, not a response, another ID, another question,
    /// or the name in another letter case. Spoofing attempts land here (so would the
    /// answers of an upstream that does not echo the question as asked).
    pub mismatched: u64,
    /// Questions that got SERVFAIL because no upstream answered in time.
    pub timeouts: u64,
    /// Questions refused because too many were in flight or no upstream is configured,
    /// and resends skipped because [`ForwarderConfig::max_upstream_queries`] were open.
    pub overloaded: u64,
}

/// A question waiting for an upstream, shared by every client that asked it.
#[derive(Clone, Debug)]
struct Pending {
    key: CacheKey,
    /// The first client's question (the template of every upstream query).
    question: Query,
    clients: Vec<(u64, ForwardQuery)>,
    started: Instant,
    /// Upstream indexes in the order they are asked (starting at the preferred one).
    order: Vec<usize>,
    sends: usize,
    failed: Vec<bool>,
    tcp_retried: bool,
    last_send: Instant,
    /// Its upstream queries still open.
    queries: Vec<UpstreamQuery>,
}

/// What an answer to one upstream query must match. Its `Debug` leaves out the ID and
/// the name's case: a forger's missing bits while the query is open.
#[derive(Clone)]
struct Sent {
    /// The [`Pending`] it belongs to.
    question: u64,
    /// Index of the upstream it went to.
    upstream: usize,
    id: u16,
    /// The name as sent, in its random letter case.
    name: Name,
}

impl std::fmt::Debug for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sent")
            .field("question", &self.question)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// What became of a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sending {
    Sent,
    /// Not due, already failed upstream, or too many queries open.
    Skipped,
    /// The question cannot be encoded (FORMERR for the client).
    Unencodable,
}

/// The forwarder and its cache. See the module docs.
#[derive(Debug)]
pub struct Forwarder {
    config: ForwarderConfig,
    cache: Cache,
    rng: ChaCha20Rng,
    pending: BTreeMap<u64, Pending>,
    in_flight: BTreeMap<CacheKey, u64>,
    sent: BTreeMap<UpstreamQuery, Sent>,
    next_question: u64,
    next_query: u64,
    preferred: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    closed: VecDeque<UpstreamQuery>,
    stats: ForwarderStats,
}

impl Forwarder {
    /// A forwarder with an empty cache. `rng_seed` seeds the ChaCha20 CSPRNG that draws
    /// every upstream query's ID and letter case: the shell takes it from the OS, so that
    /// an off-path forger has to guess them; tests pass a constant.
    pub fn new(config: ForwarderConfig, rng_seed: [u8; 32]) -> Self {
        Self {
            cache: Cache::new(config.cache),
            config,
            rng: ChaCha20Rng::from_seed(rng_seed),
            pending: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            sent: BTreeMap::new(),
            next_question: 0,
            next_query: 0,
            preferred: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            closed: VecDeque::new(),
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

    /// Upstream queries open (each one a socket in the shell).
    pub fn open_queries(&self) -> usize {
        self.sent.len()
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
        if let Some(q) = self.in_flight.get(&key)
            && let Some(p) = self.pending.get_mut(q)
        {
            self.stats.coalesced += 1;
            p.clients.push((client, query));
            return None;
        }
        let n = self.config.upstreams.len();
        if n == 0
            || self.pending.len() >= self.config.max_pending
            || self.sent.len() >= self.config.max_upstream_queries
        {
            self.stats.overloaded += 1;
            return self.immediate(&query, ResponseCode::ServFail);
        }
        let q = self.next_question;
        self.next_question += 1;
        let order = (0..n).map(|i| (self.preferred + i) % n).collect();
        let pending = Pending {
            key: key.clone(),
            question,
            clients: vec![(client, query)],
            started: now,
            order,
            sends: 0,
            failed: vec![false; n],
            tcp_retried: false,
            last_send: now,
            queries: Vec::new(),
        };
        self.pending.insert(q, pending);
        self.in_flight.insert(key, q);
        if self.send_next(now, q) == Sending::Unencodable {
            let p = self.pending.remove(&q)?;
            self.in_flight.remove(&p.key);
            let (_, query) = p.clients.into_iter().next()?;
            return self.immediate(&query, ResponseCode::FormErr);
        }
        self.send_due(now, q);
        None
    }

    /// A datagram (or TCP reply) that the socket of upstream query `query` received from
    /// `from`. It counts only if it is the answer to that query (see the module docs);
    /// anything else is ignored and counted, and the question keeps waiting.
    pub fn handle_response(
        &mut self,
        now: Instant,
        query: UpstreamQuery,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let Some((sent, p)) = self
            .sent
            .get(&query)
            .and_then(|s| Some((s, self.pending.get(&s.question)?)))
        else {
            self.stats.ignored += 1;
            return;
        };
        let from_upstream = self.config.upstreams.get(sent.upstream) == Some(&from);
        let Some(mut msg) = from_upstream
            .then(|| Message::from_vec(bytes).ok())
            .flatten()
            .filter(|m| answers(m, sent, &p.question))
        else {
            self.stats.mismatched += 1;
            return;
        };
        let (q, idx) = (sent.question, sent.upstream);
        // Answered: this query's socket can go.
        self.close(query);
        let Some(p) = self.pending.get_mut(&q) else {
            return;
        };
        let rcode = msg.metadata.response_code;
        if matches!(
            rcode,
            ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp
        ) {
            self.stats.upstream_errors += 1;
            p.failed[idx] = true;
            if p.failed.iter().all(|&f| f) {
                self.finish(q, None);
            } else if p.sends < p.order.len() {
                // Do not wait for the failover delay: ask the next one now.
                self.send_next(now, q);
            }
            return;
        }
        if msg.metadata.truncation {
            if !p.tcp_retried {
                p.tcp_retried = true;
                self.send_to(now, q, idx, Transport::Tcp);
            }
            return;
        }
        self.stats.upstream_answers += 1;
        self.preferred = idx;
        let key = p.key.clone();
        // The cache and the clients get the name as it was before 0x20.
        for record in msg
            .answers
            .iter_mut()
            .chain(msg.authorities.iter_mut())
            .chain(msg.additionals.iter_mut())
        {
            respell(record, &key.name);
        }
        self.cache.insert(now, key, &msg);
        self.finish(q, Some(&msg));
    }

    /// Sends what is due and gives up on questions past their deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        let qs: Vec<u64> = self.pending.keys().copied().collect();
        for q in qs {
            let Some(p) = self.pending.get(&q) else {
                continue;
            };
            if now >= self.deadline(p) {
                self.stats.timeouts += 1;
                self.finish(q, None);
            } else {
                self.send_due(now, q);
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

    /// The next upstream query that waits for nothing any more: the shell closes its
    /// socket (or abandons its TCP exchange).
    pub fn poll_close(&mut self) -> Option<UpstreamQuery> {
        self.closed.pop_front()
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

    fn send_due(&mut self, now: Instant, q: u64) {
        while let Some(p) = self.pending.get(&q) {
            match self.next_send_at(p) {
                Some(t) if t <= now => {
                    self.send_next(now, q);
                }
                _ => break,
            }
        }
    }

    /// Takes question `q`'s next slot in the schedule and sends it over UDP, unless that
    /// upstream already failed or too many queries are open.
    fn send_next(&mut self, now: Instant, q: u64) -> Sending {
        let total = self.total_sends();
        let Some(p) = self.pending.get_mut(&q) else {
            return Sending::Skipped;
        };
        if p.sends >= total || p.order.is_empty() {
            return Sending::Skipped;
        }
        let idx = p.order[p.sends % p.order.len()];
        p.sends += 1;
        // An upstream that already said SERVFAIL is not asked again; its slot passes.
        if p.failed[idx] {
            return Sending::Skipped;
        }
        if self.sent.len() >= self.config.max_upstream_queries {
            self.stats.overloaded += 1;
            return Sending::Skipped;
        }
        self.send_to(now, q, idx, Transport::Udp)
    }

    /// A new upstream query for question `q` to upstream `idx`, under a fresh ID and
    /// letter case from the CSPRNG.
    fn send_to(&mut self, now: Instant, q: u64, idx: usize, transport: Transport) -> Sending {
        let (Some(p), Some(&to)) = (self.pending.get_mut(&q), self.config.upstreams.get(idx))
        else {
            return Sending::Skipped;
        };
        let id = (self.rng.next_u32() & 0xffff) as u16;
        let name = crate::case::randomise(&p.key.name, &mut self.rng);
        let mut upstream = Message::new(id, MessageType::Query, OpCode::Query);
        upstream.metadata.recursion_desired = true;
        let mut question = p.question.clone();
        question.set_name(name.clone());
        upstream.queries.push(question);
        upstream.edns = Some(our_edns(self.config.max_udp_payload));
        let Ok(payload) = upstream.to_vec() else {
            return Sending::Unencodable;
        };
        let query = UpstreamQuery(self.next_query);
        self.next_query += 1;
        p.queries.push(query);
        p.last_send = now;
        self.sent.insert(
            query,
            Sent {
                question: q,
                upstream: idx,
                id,
                name,
            },
        );
        self.stats.upstream_sends += 1;
        self.transmits.push_back(Transmit {
            query,
            to,
            transport,
            payload,
        });
        Sending::Sent
    }

    /// Forgets upstream query `query` and tells the shell to close its socket.
    fn close(&mut self, query: UpstreamQuery) {
        if let Some(sent) = self.sent.remove(&query) {
            if let Some(p) = self.pending.get_mut(&sent.question) {
                p.queries.retain(|x| *x != query);
            }
            self.closed.push_back(query);
        }
    }

    /// Replies to every client of question `q`, from `response` or with SERVFAIL, and
    /// closes its upstream queries.
    fn finish(&mut self, q: u64, response: Option<&Message>) {
        let Some(p) = self.pending.remove(&q) else {
            return;
        };
        self.in_flight.remove(&p.key);
        for query in p.queries {
            self.sent.remove(&query);
            self.closed.push_back(query);
        }
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

/// Whether `msg` is the answer to upstream query `sent` of `question`: a response to a
/// standard query under its ID, with exactly one question, of the same type and class,
/// whose name has the same bytes, letter case included.
fn answers(msg: &Message, sent: &Sent, question: &Query) -> bool {
    msg.metadata.message_type == MessageType::Response
        && msg.metadata.op_code == OpCode::Query
        && msg.metadata.id == sent.id
        && msg.queries.len() == 1
        && msg.queries[0].name().eq_case(&sent.name)
        && msg.queries[0].query_type() == question.query_type()
        && msg.queries[0].query_class() == question.query_class()
}

/// A record under the question's name gets the name's plain spelling back (upstreams
/// copy the 0x20 case into their records).
fn respell(record: &mut Record, plain: &Name) {
    if record.name == *plain && !record.name.eq_case(plain) {
        record.name = plain.clone();
    }
}
