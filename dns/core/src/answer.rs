//! Answering a query from the store: A, AAAA, PTR and SOA for the cluster zone, the right
//! RCODE for everything we refuse, and "not ours" for the forwarder.

use crate::config::{MAX_QUERY_LEN, ZoneConfig};
use crate::reply::{Transport, encode_within, response_to, size_limit};
use crate::rng::XorShift;
use crate::store::{NameKey, Owner, RecordStore, Served};
use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use ipnet::IpNet;
use std::net::IpAddr;

/// What the server knows about a query besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryCtx {
    /// UDP or TCP: decides the size limit and truncation.
    pub transport: Transport,
    /// The node the client runs on (the one answering, for a pod asking its own node):
    /// with [`ZoneConfig::subset`], its addresses come first.
    pub near: Option<Owner>,
}

impl QueryCtx {
    /// A query over UDP, no locality.
    pub fn udp() -> Self {
        Self {
            transport: Transport::Udp,
            near: None,
        }
    }

    /// A query over TCP, no locality.
    pub fn tcp() -> Self {
        Self {
            transport: Transport::Tcp,
            near: None,
        }
    }
}

/// A query that is not for us, parsed, for [`crate::Forwarder::handle_query`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardQuery {
    /// The client's query.
    pub request: Message,
    /// The largest reply the client takes (its UDP limit, or 65,535 over TCP).
    pub max_reply_len: u16,
}

/// Why a query got no reply at all. The server counts these; it does not log per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than a DNS header: nothing to reply to.
    TooShort,
    /// Longer than [`MAX_QUERY_LEN`].
    TooLong,
    /// The QR bit says it is a response: answering responses invites loops.
    NotAQuery,
    /// Even an empty reply could not be encoded (should not happen).
    Unencodable,
}

/// What to do with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes back to the client.
    Reply(Vec<u8>),
    /// Not our zone: resolve it upstream.
    Forward(Box<ForwardQuery>),
    /// Send nothing.
    Drop(DropReason),
}

/// Answers `query` from `store` under `config`. `rng_seed` decides the order of several
/// addresses under one name (the caller passes a fresh value per query; equal seeds give
/// equal orders). Never panics, whatever the bytes.
pub fn answer(
    store: &RecordStore,
    config: &ZoneConfig,
    query: &[u8],
    ctx: &QueryCtx,
    rng_seed: u64,
) -> Answer {
    if query.len() < 12 {
        return Answer::Drop(DropReason::TooShort);
    }
    if query.len() > MAX_QUERY_LEN {
        return Answer::Drop(DropReason::TooLong);
    }
    let header = match Header::read(&mut BinDecoder::new(query)) {
        Ok(h) => h,
        Err(_) => return Answer::Drop(DropReason::TooShort),
    };
    if header.metadata.message_type != MessageType::Query {
        return Answer::Drop(DropReason::NotAQuery);
    }
    let request = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => {
            // The header is readable: say FORMERR, with no question (we could not read it).
            let mut req = Message::new(
                header.metadata.id,
                MessageType::Query,
                header.metadata.op_code,
            );
            req.metadata = header.metadata;
            return reply(&response_to(&req, ResponseCode::FormErr, 0), 512);
        }
    };
    let limit = size_limit(&request, ctx.transport, config.max_udp_payload);
    let refuse = |rcode| reply(&response_to(&request, rcode, config.max_udp_payload), limit);

    if request.metadata.op_code != OpCode::Query {
        return refuse(ResponseCode::NotImp);
    }
    if request.queries.len() != 1 {
        return refuse(ResponseCode::FormErr);
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return refuse(ResponseCode::BADVERS);
    }
    let q = &request.queries[0];
    if q.query_class() != DNSClass::IN {
        return refuse(ResponseCode::Refused);
    }
    let qtype = q.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return refuse(ResponseCode::Refused);
    }
    let qname = q.name().clone();
    if !qname.is_fqdn() {
        return refuse(ResponseCode::FormErr);
    }
    let ans = Answering {
        store,
        config,
        request: &request,
        qname: &qname,
        qtype,
        near: ctx.near,
        rng_seed,
    };
    let resp = if config.zone.zone_of(&qname) {
        ans.in_zone()
    } else if let Some(resp) = ans.reverse() {
        resp
    } else {
        return Answer::Forward(Box::new(ForwardQuery {
            request,
            max_reply_len: limit,
        }));
    };
    reply(&resp, limit)
}

fn reply(msg: &Message, limit: u16) -> Answer {
    match encode_within(msg, limit) {
        Some(bytes) => Answer::Reply(bytes),
        None => Answer::Drop(DropReason::Unencodable),
    }
}

struct Answering<'a> {
    store: &'a RecordStore,
    config: &'a ZoneConfig,
    request: &'a Message,
    qname: &'a Name,
    qtype: RecordType,
    near: Option<Owner>,
    rng_seed: u64,
}

impl Answering<'_> {
    fn response(&self, rcode: ResponseCode) -> Message {
        let mut resp = response_to(self.request, rcode, self.config.max_udp_payload);
        resp.metadata.authoritative = true;
        resp
    }

    fn soa(&self, apex: &Name) -> Record {
        let neg = self.config.negative_ttl;
        let mname = Name::from_ascii("ns")
            .and_then(|n| n.append_domain(apex))
            .unwrap_or_else(|_| apex.clone());
        let rname = Name::from_ascii("hostmaster")
            .and_then(|n| n.append_domain(apex))
            .unwrap_or_else(|_| apex.clone());
        // Refresh/retry/expire matter to secondaries only, and there are none.
        let soa = SOA::new(mname, rname, 1, 3600, 600, 86400, neg);
        Record::from_rdata(apex.clone(), neg, RData::SOA(soa))
    }

    /// A negative answer: NXDOMAIN or NODATA (NOERROR, empty), with the SOA of `apex`.
    fn negative(&self, exists: bool, apex: &Name) -> Message {
        let rcode = if exists {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        let mut resp = self.response(rcode);
        resp.authorities.push(self.soa(apex));
        resp
    }

    fn in_zone(&self) -> Message {
        let zone = &self.config.zone;
        let key = NameKey::new(self.qname);
        let is_apex = zone == self.qname;
        let mut answers = Vec::new();
        if is_apex && matches!(self.qtype, RecordType::SOA | RecordType::ANY) {
            let mut soa = self.soa(zone);
            soa.name = self.qname.clone();
            answers.push(soa);
        }
        let want_v4 = matches!(self.qtype, RecordType::A | RecordType::ANY);
        let want_v6 = matches!(self.qtype, RecordType::AAAA | RecordType::ANY);
        if want_v4 || want_v6 {
            let served: Vec<Served> = self
                .store
                .served_at(&key)
                .into_iter()
                .filter(|s| (s.addr.is_ipv4() && want_v4) || (s.addr.is_ipv6() && want_v6))
                .collect();
            for s in self.balance(served) {
                let data = match s.addr {
                    IpAddr::V4(a) => RData::A(A(a)),
                    IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                };
                answers.push(Record::from_rdata(
                    self.qname.clone(),
                    self.config.ttl,
                    data,
                ));
            }
        }
        if answers.is_empty() {
            let exists = is_apex || self.store.exists_at_or_below(&key);
            return self.negative(exists, zone);
        }
        let mut resp = self.response(ResponseCode::NoError);
        resp.answers = answers;
        resp
    }

    /// Shuffles (from the seed), puts the near node's addresses first, and keeps at most
    /// `subset` of them.
    fn balance(&self, mut served: Vec<Served>) -> Vec<Served> {
        let mut rng = XorShift::new(self.rng_seed);
        rng.shuffle(&mut served);
        if let Some(limit) = self.config.subset {
            if let Some(near) = self.near {
                // Stable: keeps the shuffled order within each group.
                served.sort_by_key(|s| s.owner != near);
            }
            served.truncate(limit.max(1));
        }
        served
    }

    /// A reverse (`in-addr.arpa.`, `ip6.arpa.`) query we can answer, or `None` to forward.
    fn reverse(&self) -> Option<Message> {
        let net = self.qname.parse_arpa_name().ok()?;
        let full = net.prefix_len() == net.max_prefix_len();
        let names = if full {
            self.store.names_of(net.addr())
        } else {
            Vec::new()
        };
        let ours = self
            .config
            .reverse_zones
            .iter()
            .find(|z| z.contains(&net) || (full && z.contains(&net.addr())));
        if names.is_empty() && ours.is_none() {
            return None;
        }
        // The SOA owner: our reverse zone cut on a label boundary, or (for an address we
        // hold a record for outside our zones) the name itself.
        let apex = match ours {
            Some(z) => reverse_apex(z, net.addr()),
            None => self.qname.clone(),
        };
        if !names.is_empty() && matches!(self.qtype, RecordType::PTR | RecordType::ANY) {
            let mut resp = self.response(ResponseCode::NoError);
            resp.answers = names
                .into_iter()
                .map(|n| {
                    Record::from_rdata(self.qname.clone(), self.config.ttl, RData::PTR(PTR(n)))
                })
                .collect();
            return Some(resp);
        }
        let exists = !names.is_empty() || (!full && self.store_has_addr_in(&net));
        Some(self.negative(exists, &apex))
    }

    fn store_has_addr_in(&self, net: &IpNet) -> bool {
        self.store.any_served_in(net)
    }
}

/// The reverse name of `zone` rounded up to a label boundary (octets for IPv4, nibbles for
/// IPv6), taken around `addr`: 10.32.0.0/12 around 10.33.1.2 gives `33.10.in-addr.arpa.`.
fn reverse_apex(zone: &IpNet, addr: IpAddr) -> Name {
    let (step, max) = match zone {
        IpNet::V4(_) => (8, 32),
        IpNet::V6(_) => (4, 128),
    };
    let bits = zone.prefix_len().div_ceil(step) * step;
    let full = Name::from(addr);
    // The full reverse name has max/step address labels plus two (`in-addr`/`ip6`, `arpa`).
    let keep = usize::from(bits / step) + 2;
    debug_assert!(keep <= usize::from(max / step) + 2);
    full.trim_to(keep)
}
