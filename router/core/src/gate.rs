//! The handshake gate: what a node checks, and in which order, before it spends public-key
//! work on a handshake initiation, so that a flood cannot starve established sessions.
//!
//! For every initiation, cheapest first:
//! 1. **mac1** ([`mesh_crypto::Mac1Key`]): one keyed hash. Without the cluster secret no
//!    datagram gets past it, whatever its source.
//! 2. **Freshness and replay**: the initiation's timestamp must be within [`MAX_CLOCK_SKEW`]
//!    of this node's clock, and its (timestamp, mac1) not seen before. A captured initiation
//!    sent again costs a lookup, never a Diffie-Hellman operation.
//! 3. **Load**: a global token bucket of [`GLOBAL_PER_SECOND`] handshakes. While it is empty
//!    (and for [`LOAD_HOLD`] after), the node is *under load*: an initiation without a valid
//!    mac2 gets a cookie reply bound to its source address and port instead of a handshake.
//! 4. **Per source**: only a source that proved with a valid mac2 that it receives at the
//!    address it claims is charged to a per-address bucket ([`SOURCE_BURST`],
//!    [`SOURCE_PER_SECOND`]). Spoofed datagrams never carry a valid mac2, so they can neither
//!    use up a real peer's allowance nor aim the limiter at its address.
//!
//! Initiations forwarded by a relay come from a member over an authenticated session; the
//! relay proved its address, so they skip the cookie and are charged to the global budget.
//! This module holds no node state besides its own and does no public-key work.

use mesh_crypto::{
    COOKIE_NONCE_LEN, CookieJar, CookieKey, MAC_LEN, MACS_LEN, Mac1Key, SEALED_COOKIE_LEN,
};
use mesh_proto::datagram::{COOKIE_REPLY_LEN, emit_cookie_reply};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Handshakes with public-key work per second, all sources, before the node counts as under
/// load. One costs about five X25519 operations: 200 a second is a few percent of one core.
pub const GLOBAL_PER_SECOND: f64 = 200.0;
/// The global bucket's size: a burst of this many handshakes passes without cookies.
pub const GLOBAL_BURST: f64 = 200.0;
/// Once under load, cookies are asked for at least this long.
pub const LOAD_HOLD: Duration = Duration::from_secs(1);
/// Handshakes a proven source may start in a burst.
pub const SOURCE_BURST: f64 = 20.0;
/// Sustained handshakes per second per proven source.
pub const SOURCE_PER_SECOND: f64 = 10.0;
/// Proven sources tracked at once; beyond it, full buckets are forgotten first.
const MAX_SOURCES: usize = 4096;
/// An initiation whose timestamp is further than this from our clock, either way, is refused
/// (`handshake_stale`): the replay cache needs to remember only this window.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Initiations remembered for replay detection, at most. When full, the oldest timestamps
/// go and nothing at or below them is accepted any more (so a replay is never accepted).
pub const REPLAY_CACHE_MAX: usize = 65_536;

/// What to do with an initiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Do the handshake.
    Process,
    /// Send this cookie reply to the source instead, and do nothing else.
    Cookie(Vec<u8>),
    /// Drop it.
    Drop(Refusal),
}

/// Why an initiation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// mac1 does not verify: no cluster secret, another receiver, or altered.
    Mac,
    /// Timestamp outside [`MAX_CLOCK_SKEW`] of our clock.
    Stale,
    /// Seen before.
    Replay,
    /// Its proven source used up its bucket.
    RateLimited,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let add = now.saturating_duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + add).min(burst);
        self.last = now;
    }

    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Initiations seen within the skew window, by (timestamp, mac1).
#[derive(Debug, Default)]
struct ReplayCache {
    seen: BTreeSet<(u64, [u8; MAC_LEN])>,
    /// Nothing at or below this timestamp is accepted (raised when the cache overflowed).
    floor: Option<u64>,
}

impl ReplayCache {
    /// Whether the initiation was seen, or is at or below the floor (then it may have been).
    fn seen(&self, timestamp: u64, mac1: &[u8; MAC_LEN]) -> bool {
        self.floor.is_some_and(|f| timestamp <= f) || self.seen.contains(&(timestamp, *mac1))
    }

    /// Records the initiation; false if it was seen (or is at or below the floor).
    fn insert(&mut self, timestamp: u64, mac1: [u8; MAC_LEN], oldest_kept: u64) -> bool {
        if self.floor.is_some_and(|f| timestamp <= f) {
            return false;
        }
        // Forget what the skew check refuses anyway.
        while let Some(first) = self.seen.first().copied() {
            if first.0 >= oldest_kept {
                break;
            }
            self.seen.pop_first();
        }
        if !self.seen.insert((timestamp, mac1)) {
            return false;
        }
        while self.seen.len() > REPLAY_CACHE_MAX {
            if let Some((ts, _)) = self.seen.pop_first() {
                self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
            }
        }
        true
    }
}

/// Counters of the gate, for status and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateCounters {
    /// Cookie replies sent.
    pub(crate) cookies_sent: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct HandshakeGate {
    mac1_own: Mac1Key,
    mac1_anon: Mac1Key,
    cookie_key: CookieKey,
    jar: CookieJar,
    rng: ChaCha20Rng,
    global: Bucket,
    loaded_until: Option<Instant>,
    sources: HashMap<IpAddr, Bucket>,
    replay: ReplayCache,
    pub(crate) counters: GateCounters,
}

impl HandshakeGate {
    pub(crate) fn new(
        mac1_own: Mac1Key,
        mac1_anon: Mac1Key,
        cookie_key: CookieKey,
        now: Instant,
        seed: [u8; 32],
    ) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Self {
            mac1_own,
            mac1_anon,
            cookie_key,
            jar: CookieJar::new(now, secret),
            rng,
            global: Bucket::full(GLOBAL_BURST, now),
            loaded_until: None,
            sources: HashMap::new(),
            replay: ReplayCache::default(),
            counters: GateCounters::default(),
        }
    }

    /// The mac1 key of messages addressed to this node that name it (IK initiation, IK
    /// response, XX final), or that cannot (`anonymous`: XX initiation and response).
    pub(crate) fn mac1_key(&self, anonymous: bool) -> &Mac1Key {
        if anonymous {
            &self.mac1_anon
        } else {
            &self.mac1_own
        }
    }

    /// Whether `datagram` (a whole handshake message) carries a valid mac1 for us.
    pub(crate) fn mac1_ok(&self, datagram: &[u8], anonymous: bool) -> bool {
        let Some(n) = datagram.len().checked_sub(MACS_LEN) else {
            return false;
        };
        self.mac1_key(anonymous)
            .verify(&datagram[..n], &datagram[n..n + MAC_LEN])
    }

    /// Opens the cookie of a reply to our initiation whose mac1 was `mac1` (the responder
    /// sealed it with the cluster's cookie key, which this gate also seals with).
    pub(crate) fn open_cookie(
        &self,
        sealed: &[u8; SEALED_COOKIE_LEN],
        mac1: &[u8; MAC_LEN],
        nonce: [u8; COOKIE_NONCE_LEN],
    ) -> Result<[u8; mesh_crypto::COOKIE_LEN], mesh_crypto::CookieError> {
        self.cookie_key.open(sealed, mac1, nonce)
    }

    /// Whether the node is under load now.
    pub(crate) fn under_load(&self, now: Instant) -> bool {
        self.loaded_until.is_some_and(|t| now < t)
    }

    /// Entries in the replay cache.
    pub(crate) fn replay_entries(&self) -> usize {
        self.replay.seen.len()
    }

    /// Decides about the initiation `datagram` (the whole message) from `from`, sent at
    /// `timestamp` (ms since the Unix epoch) when our clock says `now_ms`. `relayed`: it came
    /// through a relay over a session (its source is proven).
    // Each argument is one fact about the datagram from a different source (clock, socket,
    // path, header); a struct for one call site would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_init(
        &mut self,
        now: Instant,
        now_ms: u64,
        from: SocketAddr,
        relayed: bool,
        anonymous: bool,
        timestamp: u64,
        datagram: &[u8],
    ) -> Verdict {
        if !self.mac1_ok(datagram, anonymous) {
            return Verdict::Drop(Refusal::Mac);
        }
        let skew = MAX_CLOCK_SKEW.as_millis() as u64;
        if timestamp.abs_diff(now_ms) > skew {
            return Verdict::Drop(Refusal::Stale);
        }
        let n = datagram.len() - MACS_LEN;
        let mut mac1 = [0u8; MAC_LEN];
        mac1.copy_from_slice(&datagram[n..n + MAC_LEN]);
        if self.replay.seen(timestamp, &mac1) {
            return Verdict::Drop(Refusal::Replay);
        }
        if self.jar.due(now) {
            let mut secret = [0u8; 32];
            self.rng.fill_bytes(&mut secret);
            self.jar.rotate(now, secret);
        }
        let proven = relayed
            || self
                .jar
                .verify_mac2(from, &datagram[..n + MAC_LEN], &datagram[n + MAC_LEN..]);
        let has_token = self.global.take(now, GLOBAL_PER_SECOND, GLOBAL_BURST);
        if !has_token {
            self.loaded_until = Some(now + LOAD_HOLD);
        }
        if self.under_load(now) && !proven {
            return Verdict::Cookie(self.cookie_reply(from, &mac1, datagram));
        }
        if proven && !relayed && !self.take_source(from.ip(), now) {
            return Verdict::Drop(Refusal::RateLimited);
        }
        // Only now is work spent on it: remember it, so the same bytes never cost again.
        self.replay
            .insert(timestamp, mac1, now_ms.saturating_sub(skew));
        Verdict::Process
    }

    fn take_source(&mut self, src: IpAddr, now: Instant) -> bool {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&src) {
            #[allow(clippy::disallowed_methods)]
            // order-free: each source is refilled and kept or dropped by itself
            self.sources.retain(|_, b| {
                b.refill(now, SOURCE_PER_SECOND, SOURCE_BURST);
                b.tokens < SOURCE_BURST
            });
            if self.sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        self.sources
            .entry(src)
            .or_insert_with(|| Bucket::full(SOURCE_BURST, now))
            .take(now, SOURCE_PER_SECOND, SOURCE_BURST)
    }

    fn cookie_reply(&mut self, from: SocketAddr, mac1: &[u8; MAC_LEN], init: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; COOKIE_NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        let sealed: [u8; SEALED_COOKIE_LEN] =
            self.cookie_key.seal(&self.jar.cookie(from), mac1, nonce);
        // The initiator's index: bytes 4..8 of every initiation (checked by the parser).
        let mut receiver = [0u8; 4];
        receiver.copy_from_slice(&init[4..8]);
        let mut out = [0u8; COOKIE_REPLY_LEN];
        emit_cookie_reply(&mut out, u32::from_le_bytes(receiver), &nonce, &sealed);
        self.counters.cookies_sent += 1;
        out.to_vec()
    }
}

#[cfg(test)]
// A test starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use mesh_crypto::{ClusterPsk, StaticKeypair, seal_macs};
    use mesh_proto::datagram::{Datagram, INIT_HEADER_LEN, Pattern, emit_init_header};

    const NOW_MS: u64 = 1_800_000_000_000;

    fn psk() -> ClusterPsk {
        ClusterPsk::derive(b"gate tests secret")
    }

    fn gate(now: Instant) -> (HandshakeGate, StaticKeypair) {
        let me = StaticKeypair::generate([4; 32]);
        let g = HandshakeGate::new(
            Mac1Key::for_receiver(&psk(), &me.public()),
            Mac1Key::anonymous(&psk()),
            CookieKey::new(&psk()),
            now,
            [9; 32],
        );
        (g, me)
    }

    /// An IK-shaped initiation to `me` with index `sender` (the Noise part is filler: the
    /// gate never reads it).
    fn init(me: &StaticKeypair, sender: u32, ts: u64, cookie: Option<&[u8; 16]>) -> Vec<u8> {
        let mut buf = vec![0x11u8; INIT_HEADER_LEN + 96 + MACS_LEN];
        let h: &mut [u8; INIT_HEADER_LEN] = (&mut buf[..INIT_HEADER_LEN]).try_into().unwrap();
        emit_init_header(h, Pattern::Ik, sender, ts);
        seal_macs(
            &mut buf,
            &Mac1Key::for_receiver(&psk(), &me.public()),
            cookie,
        );
        buf
    }

    fn check(g: &mut HandshakeGate, now: Instant, from: SocketAddr, msg: &[u8]) -> Verdict {
        let Ok(Datagram::HandshakeInit { timestamp, .. }) = Datagram::parse(msg) else {
            panic!("not an initiation");
        };
        g.check_init(now, NOW_MS, from, false, false, timestamp, msg)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Opens the cookie of a reply to `msg`, as its sender would.
    fn open_cookie(reply: &[u8], msg: &[u8]) -> [u8; 16] {
        let Ok(Datagram::CookieReply { nonce, sealed, .. }) = Datagram::parse(reply) else {
            panic!("not a cookie reply");
        };
        let n = msg.len() - MACS_LEN;
        let mac1: [u8; 16] = msg[n..n + 16].try_into().unwrap();
        CookieKey::new(&psk()).open(sealed, &mac1, *nonce).unwrap()
    }

    #[test]
    fn junk_and_other_secrets_fail_at_mac1() {
        let t0 = Instant::now();
        let (mut g, me) = gate(t0);
        let mut junk = init(&me, 1, NOW_MS, None);
        let n = junk.len();
        junk[n - 20] ^= 1;
        assert_eq!(
            check(&mut g, t0, addr("198.18.0.5:1"), &junk),
            Verdict::Drop(Refusal::Mac)
        );
        // Right shape, another cluster's secret.
        let mut other = init(&me, 1, NOW_MS, None);
        let other_psk = ClusterPsk::derive(b"another cluster secret");
        seal_macs(
            &mut other,
            &Mac1Key::for_receiver(&other_psk, &me.public()),
            None,
        );
        assert_eq!(
            check(&mut g, t0, addr("198.18.0.5:1"), &other),
            Verdict::Drop(Refusal::Mac)
        );
        // Addressed to another node (IK binds mac1 to the receiver's key).
        let them = StaticKeypair::generate([5; 32]);
        let elsewhere = init(&them, 1, NOW_MS, None);
        assert_eq!(
            check(&mut g, t0, addr("198.18.0.5:1"), &elsewhere),
            Verdict::Drop(Refusal::Mac)
        );
        assert_eq!(g.replay_entries(), 0, "nothing refused is remembered");
    }

    #[test]
    fn a_replayed_or_stale_initiation_is_refused_before_any_work() {
        let t0 = Instant::now();
        let (mut g, me) = gate(t0);
        let msg = init(&me, 7, NOW_MS - 1000, None);
        let from = addr("198.18.0.5:6788");
        assert_eq!(check(&mut g, t0, from, &msg), Verdict::Process);
        assert_eq!(
            check(&mut g, t0, from, &msg),
            Verdict::Drop(Refusal::Replay)
        );
        assert_eq!(
            check(&mut g, t0, addr("198.18.0.99:4"), &msg),
            Verdict::Drop(Refusal::Replay),
            "from any address"
        );
        let skew = MAX_CLOCK_SKEW.as_millis() as u64;
        for ts in [NOW_MS - skew - 1, NOW_MS + skew + 1] {
            let old = init(&me, 8, ts, None);
            assert_eq!(check(&mut g, t0, from, &old), Verdict::Drop(Refusal::Stale));
        }
        let edge = init(&me, 9, NOW_MS - skew, None);
        assert_eq!(check(&mut g, t0, from, &edge), Verdict::Process);
    }

    #[test]
    fn the_replay_cache_is_bounded_and_never_accepts_a_replay() {
        let mut c = ReplayCache::default();
        for i in 0..(REPLAY_CACHE_MAX as u64 + 10) {
            assert!(c.insert(1_000 + i, [0; 16], 0));
        }
        assert_eq!(c.seen.len(), REPLAY_CACHE_MAX);
        // The ten oldest were forgotten, and the floor refuses them (and anything older).
        assert!(!c.insert(1_000, [0; 16], 0));
        assert!(!c.insert(1_009, [0; 16], 0));
        assert!(
            !c.insert(1_005, [1; 16], 0),
            "older than what was forgotten"
        );
        assert!(c.insert(1_000 + REPLAY_CACHE_MAX as u64 + 10, [0; 16], 0));
        // Entries older than the window are dropped as time moves on.
        let mut c = ReplayCache::default();
        assert!(c.insert(5, [0; 16], 0));
        assert!(c.insert(10, [0; 16], 8));
        assert_eq!(c.seen.len(), 1);
    }

    /// Flood the budget with valid but unproven initiations (what a hostile member spoofing
    /// sources can send): after the burst, each gets a cookie, not a handshake. The cookie
    /// works only from the address it was made for.
    #[test]
    fn under_load_a_cookie_replaces_the_handshake_and_proves_the_address() {
        let t0 = Instant::now();
        let (mut g, me) = gate(t0);
        let mut processed = 0;
        let mut cookie_replies = Vec::new();
        for i in 0..(GLOBAL_BURST as u32 + 50) {
            let from = SocketAddr::new(IpAddr::from([198, 18, 1, (i % 250) as u8]), 4000);
            let msg = init(&me, i + 1, NOW_MS, None);
            match check(&mut g, t0, from, &msg) {
                Verdict::Process => processed += 1,
                Verdict::Cookie(reply) => cookie_replies.push((from, msg, reply)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(processed, GLOBAL_BURST as u32);
        assert_eq!(cookie_replies.len(), 50);
        assert!(g.under_load(t0));
        assert_eq!(g.counters.cookies_sent, 50);

        let (from, msg, reply) = &cookie_replies[0];
        let cookie = open_cookie(reply, msg);
        let again = init(&me, 9999, NOW_MS, Some(&cookie));
        assert_eq!(check(&mut g, t0, *from, &again), Verdict::Process, "proven");
        // The same cookie from a spoofed address, or another port, proves nothing.
        let spoofed = init(&me, 10_000, NOW_MS, Some(&cookie));
        assert!(matches!(
            check(&mut g, t0, addr("198.18.9.9:4000"), &spoofed),
            Verdict::Cookie(_)
        ));
        let other_port = init(&me, 10_001, NOW_MS, Some(&cookie));
        let mut p = *from;
        p.set_port(4001);
        assert!(matches!(
            check(&mut g, t0, p, &other_port),
            Verdict::Cookie(_)
        ));
        // A made-up cookie neither.
        let forged = init(&me, 10_002, NOW_MS, Some(&[0x42; 16]));
        assert!(matches!(
            check(&mut g, t0, *from, &forged),
            Verdict::Cookie(_)
        ));
        // Load ends once the budget refills and LOAD_HOLD passed.
        let later = t0 + LOAD_HOLD + Duration::from_secs(2);
        let calm = init(&me, 10_003, NOW_MS + 3000, None);
        assert_eq!(
            check(&mut g, later, addr("198.18.9.9:4000"), &calm),
            Verdict::Process
        );
    }

    /// Spoofed datagrams carrying a real peer's address cannot use up its allowance: only
    /// proven initiations are charged per source, and a spoofer cannot prove an address it
    /// does not receive at.
    #[test]
    fn spoofed_sources_cannot_aim_the_limiter_at_a_peer() {
        let t0 = Instant::now();
        let (mut g, me) = gate(t0);
        let peer = addr("198.18.0.2:6788");
        // Use up the global budget with spoofed initiations from the peer's own address.
        for i in 0..(GLOBAL_BURST as u32 + 500) {
            let _ = check(&mut g, t0, peer, &init(&me, i + 1, NOW_MS, None));
        }
        assert!(g.under_load(t0));
        // The real peer gets a cookie, comes back with it, and is served.
        let first = init(&me, 50_000, NOW_MS, None);
        let Verdict::Cookie(reply) = check(&mut g, t0, peer, &first) else {
            panic!("expected a cookie");
        };
        let cookie = open_cookie(&reply, &first);
        let second = init(&me, 50_001, NOW_MS, Some(&cookie));
        assert_eq!(check(&mut g, t0, peer, &second), Verdict::Process);
        // A proven source is limited to its burst.
        let mut served = 1;
        for i in 0..100 {
            if check(
                &mut g,
                t0,
                peer,
                &init(&me, 60_000 + i, NOW_MS, Some(&cookie)),
            ) == Verdict::Process
            {
                served += 1;
            }
        }
        assert_eq!(served, SOURCE_BURST as u32);
        // Another proven source is not affected.
        let other = addr("198.18.0.3:6788");
        let c2 = g.jar.cookie(other);
        assert_eq!(
            check(&mut g, t0, other, &init(&me, 70_000, NOW_MS, Some(&c2))),
            Verdict::Process
        );
    }

    #[test]
    fn relayed_initiations_skip_the_cookie() {
        let t0 = Instant::now();
        let (mut g, me) = gate(t0);
        let relay = addr("198.18.0.7:6788");
        for i in 0..(GLOBAL_BURST as u32 + 1) {
            let _ = check(
                &mut g,
                t0,
                addr("198.18.5.5:1"),
                &init(&me, i + 1, NOW_MS, None),
            );
        }
        assert!(g.under_load(t0));
        let msg = init(&me, 80_000, NOW_MS, None);
        assert_eq!(
            g.check_init(t0, NOW_MS, relay, true, false, NOW_MS, &msg),
            Verdict::Process
        );
    }
}
