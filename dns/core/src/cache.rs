//! The forwarder's answer cache: bounded in entries, honouring record TTLs, and caching
//! negative answers (NXDOMAIN, NODATA) for the SOA's negative TTL (RFC 2308).

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a cached answer is keyed by: the question, name lower-cased.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheKey {
    /// Lower case, fully qualified.
    pub name: Name,
    /// The query type.
    pub qtype: RecordType,
    /// The query class.
    pub qclass: DNSClass,
}

impl CacheKey {
    /// The key of a question.
    pub fn new(name: &Name, qtype: RecordType, qclass: DNSClass) -> Self {
        Self {
            name: name.to_lowercase(),
            qtype,
            qclass,
        }
    }
}

/// Bounds of the cache. [`Default`] gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Entries kept at most; when full, the entry closest to expiry goes first. Default
    /// 10,000 (a few MB at most).
    pub capacity: usize,
    /// TTLs above this are cut to it. Default one day.
    pub max_ttl: u32,
    /// Negative answers are kept at most this long. Default 15 min.
    pub max_negative_ttl: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_ttl: 86_400,
            max_negative_ttl: 900,
        }
    }
}

#[derive(Clone, Debug)]
struct Cached {
    response: Message,
    stored: Instant,
    expires: Instant,
    seq: u64,
}

/// The cache. Time is passed in; nothing here reads a clock.
#[derive(Clone, Debug)]
pub struct Cache {
    config: CacheConfig,
    entries: BTreeMap<CacheKey, Cached>,
    by_expiry: BTreeMap<(Instant, u64), CacheKey>,
    seq: u64,
}

impl Cache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config,
            entries: BTreeMap::new(),
            by_expiry: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Entries held (expired ones included until they are looked up or evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How long `response` may be cached: the smallest answer TTL for a positive answer,
    /// min(SOA TTL, SOA MINIMUM) for a negative one (none without a SOA: RFC 2308 §5), and
    /// not at all for errors, truncated replies and zero TTLs.
    pub fn ttl_of(&self, response: &Message) -> Option<u32> {
        if response.metadata.truncation {
            return None;
        }
        let rcode = response.metadata.response_code;
        let ttl = if rcode == ResponseCode::NoError && !response.answers.is_empty() {
            response
                .answers
                .iter()
                .map(|r| r.ttl)
                .min()?
                .min(self.config.max_ttl)
        } else if rcode == ResponseCode::NoError || rcode == ResponseCode::NXDomain {
            response
                .authorities
                .iter()
                .find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                })?
                .min(self.config.max_negative_ttl)
        } else {
            return None;
        };
        (ttl > 0).then_some(ttl)
    }

    /// Stores `response` under `key` if it is cacheable. Returns whether it was stored.
    pub fn insert(&mut self, now: Instant, key: CacheKey, response: &Message) -> bool {
        let Some(ttl) = self.ttl_of(response) else {
            return false;
        };
        if self.config.capacity == 0 {
            return false;
        }
        self.remove(&key);
        while self.entries.len() >= self.config.capacity {
            let Some((_, victim)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&victim);
        }
        let mut stored = response.clone();
        stored.edns = None;
        stored.signature = None;
        self.seq += 1;
        let expires = now + Duration::from_secs(u64::from(ttl));
        self.by_expiry.insert((expires, self.seq), key.clone());
        self.entries.insert(
            key,
            Cached {
                response: stored,
                stored: now,
                expires,
                seq: self.seq,
            },
        );
        true
    }

    /// The cached response for `key` with every TTL lowered by the time it spent here, or
    /// `None` (an expired entry is dropped on the way).
    pub fn get(&mut self, now: Instant, key: &CacheKey) -> Option<Message> {
        let entry = self.entries.get(key)?;
        if now >= entry.expires {
            self.remove(key);
            return None;
        }
        let aged = u32::try_from(now.saturating_duration_since(entry.stored).as_secs())
            .unwrap_or(u32::MAX);
        let mut msg = entry.response.clone();
        for r in msg
            .answers
            .iter_mut()
            .chain(msg.authorities.iter_mut())
            .chain(msg.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(aged);
        }
        Some(msg)
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(old) = self.entries.remove(key) {
            self.by_expiry.remove(&(old.expires, old.seq));
        }
    }
}

#[cfg(test)]
// A test starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::net::Ipv4Addr;

    fn key(n: &str) -> CacheKey {
        CacheKey::new(&Name::from_ascii(n).unwrap(), RecordType::A, DNSClass::IN)
    }

    fn positive(n: &str, ttls: &[u32]) -> Message {
        let name = Name::from_ascii(n).unwrap();
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.queries.push(Query::query(name.clone(), RecordType::A));
        for (i, &ttl) in ttls.iter().enumerate() {
            m.answers.push(Record::from_rdata(
                name.clone(),
                ttl,
                RData::A(A(Ipv4Addr::new(192, 0, 2, i as u8))),
            ));
        }
        m
    }

    fn negative(rcode: ResponseCode, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = positive("gone.example.", &[]);
        m.metadata.response_code = rcode;
        let apex = Name::from_ascii("example.").unwrap();
        let soa = SOA::new(apex.clone(), apex.clone(), 1, 1, 1, 1, minimum);
        m.authorities
            .push(Record::from_rdata(apex, soa_ttl, RData::SOA(soa)));
        m
    }

    #[test]
    fn positive_answers_live_for_their_smallest_ttl_and_age() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheConfig::default());
        assert!(c.insert(t0, key("a.example."), &positive("a.example.", &[60, 40])));
        let hit = c
            .get(t0 + Duration::from_secs(15), &key("A.EXAMPLE."))
            .unwrap();
        assert_eq!(
            hit.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(),
            vec![45, 25]
        );
        assert!(
            c.get(t0 + Duration::from_millis(39_999), &key("a.example."))
                .is_some()
        );
        assert!(
            c.get(t0 + Duration::from_secs(40), &key("a.example."))
                .is_none()
        );
        assert!(c.is_empty(), "expired entries are dropped on lookup");
    }

    #[test]
    fn negative_answers_use_the_soa_minimum_rfc2308() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheConfig::default());
        let nx = negative(ResponseCode::NXDomain, 300, 60);
        assert_eq!(c.ttl_of(&nx), Some(60));
        assert!(c.insert(t0, key("gone.example."), &nx));
        let hit = c
            .get(t0 + Duration::from_secs(59), &key("gone.example."))
            .unwrap();
        assert_eq!(hit.metadata.response_code, ResponseCode::NXDomain);
        assert!(
            c.get(t0 + Duration::from_secs(60), &key("gone.example."))
                .is_none()
        );
        // NODATA: the SOA's own TTL when it is smaller.
        assert_eq!(c.ttl_of(&negative(ResponseCode::NoError, 10, 60)), Some(10));
        // Capped.
        assert_eq!(
            c.ttl_of(&negative(ResponseCode::NoError, 99_999, 99_999)),
            Some(900)
        );
        // No SOA, errors, truncation, zero TTL: not cached.
        let mut bare = positive("gone.example.", &[]);
        bare.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(c.ttl_of(&bare), None);
        assert_eq!(c.ttl_of(&negative(ResponseCode::ServFail, 300, 60)), None);
        let mut tc = positive("a.example.", &[60]);
        tc.metadata.truncation = true;
        assert_eq!(c.ttl_of(&tc), None);
        assert_eq!(c.ttl_of(&positive("a.example.", &[0])), None);
        assert_eq!(
            c.ttl_of(&positive("a.example.", &[1_000_000])),
            Some(86_400)
        );
    }

    #[test]
    fn bounded_in_entries_evicting_the_soonest_to_expire() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheConfig {
            capacity: 3,
            ..CacheConfig::default()
        });
        for (i, ttl) in [100u32, 10, 50, 70, 5].iter().enumerate() {
            let n = format!("n{i}.example.");
            c.insert(t0, key(&n), &positive(&n, &[*ttl]));
            assert!(c.len() <= 3);
        }
        let alive: Vec<bool> = (0..5)
            .map(|i| c.get(t0, &key(&format!("n{i}.example."))).is_some())
            .collect();
        // n3 pushed out n1 (10 s, the soonest to expire); n4 pushed out n2 (50 s, the
        // soonest among those held when it came).
        assert_eq!(alive, vec![true, false, false, true, true]);
    }
}
