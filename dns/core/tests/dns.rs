//! Answering and forwarding through the public API: queries built with hickory, replies
//! parsed with hickory, sections, flags and RCODEs checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A test starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#![allow(clippy::disallowed_methods)]

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use mesh_dns::{
    Answer, DropReason, Event, ForwardQuery, Forwarder, ForwarderConfig, Owner, QueryCtx, Server,
    Transmit, Transport, ZoneConfig,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

const A_NODE: Owner = Owner([1; 32]);
const B_NODE: Owner = Owner([2; 32]);

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 32, 0, d))
}

fn server(config: ZoneConfig) -> Server {
    let mut s = Server::new(ZoneConfig {
        reverse_zones: vec!["10.32.0.0/12".parse().unwrap()],
        ..config
    });
    let q = |n: &str| s.config.qualify(n).unwrap();
    let (web, v4only, deep, bonly) = (q("web"), q("v4only"), q("deep.sub"), q("bonly"));
    s.store.add(&web, v4(1), A_NODE, 1).unwrap();
    s.store.add(&web, v4(2), B_NODE, 1).unwrap();
    let v6: IpAddr = "fd00::1".parse().unwrap();
    s.store.add(&web, v6, A_NODE, 1).unwrap();
    s.store.add(&v4only, v4(5), A_NODE, 1).unwrap();
    s.store.add(&deep, v4(9), A_NODE, 1).unwrap();
    s.store.add(&bonly, v4(20), B_NODE, 1).unwrap();
    s
}

fn query(n: &str, t: RecordType) -> Message {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(name(n), t));
    m
}

fn with_edns(mut m: Message, size: u16) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(size);
    m.edns = Some(e);
    m
}

fn ask_bytes(s: &Server, m: &Message, ctx: QueryCtx, seed: u64) -> Answer {
    s.answer(&m.to_vec().unwrap(), &ctx, seed)
}

fn ask(s: &Server, m: &Message) -> Message {
    ask_with(s, m, QueryCtx::udp(), 7)
}

fn ask_with(s: &Server, m: &Message, ctx: QueryCtx, seed: u64) -> Message {
    match ask_bytes(s, m, ctx, seed) {
        Answer::Reply(b) => {
            let r = Message::from_vec(&b).unwrap();
            assert_eq!(r.metadata.id, m.metadata.id);
            assert_eq!(r.metadata.message_type, MessageType::Response);
            r
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn soa_of(m: &Message) -> (&Name, &SOA, u32) {
    assert_eq!(m.authorities.len(), 1, "one SOA in authority: {m:?}");
    let r = &m.authorities[0];
    match &r.data {
        RData::SOA(soa) => (&r.name, soa, r.ttl),
        other => panic!("not a SOA: {other:?}"),
    }
}

#[test]
fn a_records_are_answered_authoritatively_with_the_ttl() {
    let s = server(ZoneConfig::default());
    let r = ask(&s, &query("web.mesh.local.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative && r.metadata.recursion_desired);
    assert!(!r.metadata.truncation);
    let mut got = addrs(&r);
    got.sort();
    assert_eq!(got, vec![v4(1), v4(2)]);
    assert!(
        r.answers
            .iter()
            .all(|a| a.ttl == 30 && a.dns_class == DNSClass::IN)
    );
    assert!(r.authorities.is_empty());
    assert!(r.edns.is_none(), "no OPT without one in the query");
}

#[test]
fn ttl_is_configurable() {
    let s = server(ZoneConfig {
        ttl: 7,
        ..ZoneConfig::default()
    });
    let r = ask(&s, &query("web.mesh.local.", RecordType::A));
    assert!(r.answers.iter().all(|a| a.ttl == 7));
}

#[test]
fn names_are_case_insensitive_and_the_question_is_echoed_as_asked() {
    let s = server(ZoneConfig::default());
    let r = ask(&s, &query("WeB.MeSh.LoCaL.", RecordType::A));
    assert_eq!(addrs(&r).len(), 2);
    assert_eq!(r.queries[0].name().to_string(), "WeB.MeSh.LoCaL.");
}

#[test]
fn aaaa_records() {
    let s = server(ZoneConfig::default());
    let r = ask(&s, &query("web.mesh.local.", RecordType::AAAA));
    assert_eq!(addrs(&r), vec!["fd00::1".parse::<IpAddr>().unwrap()]);
    let any = ask(&s, &query("web.mesh.local.", RecordType::ANY));
    assert_eq!(addrs(&any).len(), 3);
}

#[test]
fn nodata_is_noerror_with_no_answers_and_the_soa() {
    let s = server(ZoneConfig::default());
    for (n, t) in [
        ("v4only.mesh.local.", RecordType::AAAA),
        ("web.mesh.local.", RecordType::MX),
        ("web.mesh.local.", RecordType::TXT),
        ("sub.mesh.local.", RecordType::A), // empty non-terminal (RFC 8020)
        ("mesh.local.", RecordType::A),     // the apex
    ] {
        let r = ask(&s, &query(n, t));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{n} {t}");
        assert!(r.answers.is_empty(), "{n} {t}");
        assert!(r.metadata.authoritative);
        let (owner, soa, ttl) = soa_of(&r);
        assert_eq!(owner, &name("mesh.local."));
        assert_eq!(soa.minimum, 5);
        assert_eq!(ttl, 5);
    }
}

#[test]
fn nxdomain_carries_the_soa() {
    let s = server(ZoneConfig::default());
    for n in ["nothere.mesh.local.", "x.web.mesh.local.", "ub.mesh.local."] {
        let r = ask(&s, &query(n, RecordType::A));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{n}");
        assert!(r.answers.is_empty());
        assert_eq!(soa_of(&r).0, &name("mesh.local."));
    }
}

#[test]
fn the_apex_answers_soa() {
    let s = server(ZoneConfig::default());
    let r = ask(&s, &query("MESH.local.", RecordType::SOA));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    assert!(matches!(r.answers[0].data, RData::SOA(_)));
}

#[test]
fn the_zone_is_configurable() {
    let s = server(ZoneConfig::default().with_zone("Cluster.Internal").unwrap());
    let r = ask(&s, &query("web.cluster.internal.", RecordType::A));
    assert_eq!(addrs(&r).len(), 2);
    let nx = ask(&s, &query("nothere.cluster.internal.", RecordType::A));
    assert_eq!(soa_of(&nx).0, &name("cluster.internal."));
    // The old zone is now someone else's.
    assert!(matches!(
        ask_bytes(
            &s,
            &query("web.mesh.local.", RecordType::A),
            QueryCtx::udp(),
            1
        ),
        Answer::Forward(_)
    ));
}

#[test]
fn qualify_turns_user_input_into_zone_names() {
    let c = ZoneConfig::default();
    assert_eq!(c.qualify("Web").unwrap(), name("web.mesh.local."));
    assert_eq!(
        c.qualify("web.mesh.local").unwrap(),
        name("web.mesh.local.")
    );
    assert_eq!(
        c.qualify("a.b.mesh.local.").unwrap(),
        name("a.b.mesh.local.")
    );
    assert_eq!(
        c.qualify("web.example").unwrap(),
        name("web.example.mesh.local.")
    );
    assert!(c.qualify("web.example.").is_err());
    assert!(c.qualify("").is_err());
    assert!(c.qualify("a..b").is_err());
}

#[test]
fn ptr_for_record_addresses() {
    let s = server(ZoneConfig::default());
    let r = ask(&s, &query("1.0.32.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 1);
    match &r.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0, name("web.mesh.local.")),
        other => panic!("{other:?}"),
    }
    // IPv6, outside any configured reverse zone, but we hold a record for it.
    let v6: Ipv6Addr = "fd00::1".parse().unwrap();
    let r6 = ask(&s, &query(&Name::from(v6).to_string(), RecordType::PTR));
    assert_eq!(r6.answers.len(), 1);
    // The reverse name exists, but has no A records: NODATA.
    let nodata = ask(&s, &query("1.0.32.10.in-addr.arpa.", RecordType::A));
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(soa_of(&nodata).0, &name("32.10.in-addr.arpa."));
}

#[test]
fn ptr_inside_our_reverse_zone_without_a_record_is_nxdomain_and_outside_is_forwarded() {
    let s = server(ZoneConfig::default());
    let r = ask(&s, &query("77.0.33.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_of(&r).0, &name("33.10.in-addr.arpa."));
    // A partial reverse name above a record address exists (empty non-terminal).
    let ent = ask(&s, &query("0.32.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    // Outside: not ours.
    for n in [
        "1.1.168.192.in-addr.arpa.",
        "10.in-addr.arpa.",
        "foo.in-addr.arpa.",
    ] {
        assert!(
            matches!(
                ask_bytes(&s, &query(n, RecordType::PTR), QueryCtx::udp(), 1),
                Answer::Forward(_)
            ),
            "{n}"
        );
    }
}

#[test]
fn other_names_are_forwarded_with_the_clients_size_limit() {
    let s = server(ZoneConfig::default());
    let cases = [
        (query("example.com.", RecordType::A), QueryCtx::udp(), 512),
        (
            with_edns(query("example.com.", RecordType::A), 4096),
            QueryCtx::udp(),
            1232,
        ),
        (
            with_edns(query("example.com.", RecordType::A), 700),
            QueryCtx::udp(),
            700,
        ),
        (
            with_edns(query("example.com.", RecordType::A), 100),
            QueryCtx::udp(),
            512,
        ),
        (query("example.com.", RecordType::A), QueryCtx::tcp(), 65535),
    ];
    for (q, ctx, limit) in cases {
        match ask_bytes(&s, &q, ctx, 1) {
            Answer::Forward(f) => {
                assert_eq!(f.max_reply_len, limit);
                assert_eq!(f.request.queries[0].name(), &name("example.com."));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn edns_is_echoed_with_our_payload_size() {
    let s = server(ZoneConfig::default());
    let r = ask(
        &s,
        &with_edns(query("web.mesh.local.", RecordType::A), 4096),
    );
    let e = r.edns.expect("OPT echoed");
    assert_eq!(e.max_payload(), 1232);
    assert_eq!(e.version(), 0);
    let nx = ask(
        &s,
        &with_edns(query("nothere.mesh.local.", RecordType::A), 4096),
    );
    assert!(nx.edns.is_some());
    let mut v1 = with_edns(query("web.mesh.local.", RecordType::A), 4096);
    v1.edns.as_mut().unwrap().set_version(1);
    let bad = ask(&s, &v1);
    // BADVERS is 16, which hickory decodes as its alias BADSIG.
    assert_eq!(u16::from(bad.metadata.response_code), 16);
    assert!(bad.edns.is_some());
}

fn big_server(n: u8) -> Server {
    let mut s = server(ZoneConfig::default());
    let big = s.config.qualify("big-service-with-a-long-name").unwrap();
    for i in 0..n {
        let owner = if i % 3 == 0 { A_NODE } else { B_NODE };
        s.store
            .add(&big, IpAddr::V4(Ipv4Addr::new(10, 33, 0, i)), owner, 1)
            .unwrap();
    }
    s
}

#[test]
fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let s = big_server(100);
    let q = query("big-service-with-a-long-name.mesh.local.", RecordType::A);
    let Answer::Reply(udp) = ask_bytes(&s, &q, QueryCtx::udp(), 3) else {
        panic!()
    };
    assert!(udp.len() <= 512);
    let r = Message::from_vec(&udp).unwrap();
    assert!(r.metadata.truncation);
    assert!(!r.answers.is_empty() && r.answers.len() < 100);
    // With EDNS the limit is the client's size (capped at ours).
    let Answer::Reply(edns) = ask_bytes(&s, &with_edns(q.clone(), 1000), QueryCtx::udp(), 3) else {
        panic!()
    };
    assert!(edns.len() <= 1000 && edns.len() > 512);
    let re = Message::from_vec(&edns).unwrap();
    assert!(re.metadata.truncation && re.edns.is_some());
    // TCP gets everything.
    let t = ask_with(&s, &q, QueryCtx::tcp(), 3);
    assert!(!t.metadata.truncation);
    assert_eq!(t.answers.len(), 100);
    // What fits without truncation is not truncated.
    let small = big_server(10);
    let ok = ask_with(&small, &q, QueryCtx::udp(), 3);
    assert!(!ok.metadata.truncation);
    assert_eq!(ok.answers.len(), 10);
}

#[test]
fn several_addresses_are_shuffled_per_seed_deterministically() {
    let s = big_server(8);
    let q = query("big-service-with-a-long-name.mesh.local.", RecordType::A);
    let order = |seed| addrs(&ask_with(&s, &q, QueryCtx::udp(), seed));
    assert_eq!(order(42), order(42));
    let distinct: std::collections::BTreeSet<Vec<IpAddr>> = (0..20).map(order).collect();
    assert!(
        distinct.len() > 10,
        "only {} orders in 20 seeds",
        distinct.len()
    );
    let mut sorted = order(5);
    sorted.sort();
    let mut all = order(6);
    all.sort();
    assert_eq!(sorted, all, "same set, other order");
}

#[test]
fn subset_puts_the_near_node_first_and_limits() {
    let mut s = big_server(9); // owner A: .0 .3 .6; owner B: the rest
    s.config.subset = Some(4);
    let q = query("big-service-with-a-long-name.mesh.local.", RecordType::A);
    for seed in 0..20 {
        let ctx = QueryCtx {
            transport: Transport::Udp,
            near: Some(A_NODE),
        };
        let got = addrs(&ask_with(&s, &q, ctx, seed));
        assert_eq!(got.len(), 4);
        let mut first: Vec<IpAddr> = got[..3].to_vec();
        first.sort();
        let a_addrs: Vec<IpAddr> = [0, 3, 6]
            .iter()
            .map(|&d| IpAddr::V4(Ipv4Addr::new(10, 33, 0, d)))
            .collect();
        assert_eq!(first, a_addrs, "seed {seed}");
    }
    // Without locality, still at most 4.
    assert_eq!(addrs(&ask(&s, &q)).len(), 4);
}

#[test]
fn dead_owners_are_not_served_and_removed_records_go() {
    let mut s = server(ZoneConfig::default());
    s.store.set_node_alive(B_NODE, false);
    assert_eq!(
        addrs(&ask(&s, &query("web.mesh.local.", RecordType::A))),
        vec![v4(1)]
    );
    let gone = ask(&s, &query("bonly.mesh.local.", RecordType::A));
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    let ptr = ask(&s, &query("20.0.32.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(ptr.metadata.response_code, ResponseCode::NXDomain);
    s.store.set_node_alive(B_NODE, true);
    assert_eq!(
        addrs(&ask(&s, &query("bonly.mesh.local.", RecordType::A))),
        vec![v4(20)]
    );
    // Removal of one address; deletion of a node.
    let web = name("web.mesh.local.");
    s.store.remove(&web, Some(v4(1)), A_NODE);
    assert_eq!(
        addrs(&ask(&s, &query("web.mesh.local.", RecordType::A))),
        vec![v4(2)]
    );
    s.store.remove_owner(B_NODE);
    let r = ask(&s, &query("web.mesh.local.", RecordType::A));
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NoError,
        "AAAA still there"
    );
    assert!(r.answers.is_empty());
}

#[test]
fn rcodes_for_what_we_do_not_serve() {
    let s = server(ZoneConfig::default());
    let rcode = |m: &Message| ask(&s, m).metadata.response_code;
    let mut status = query("web.mesh.local.", RecordType::A);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(rcode(&status), ResponseCode::NotImp);
    let mut update = query("web.mesh.local.", RecordType::A);
    update.metadata.op_code = OpCode::Notify;
    assert_eq!(rcode(&update), ResponseCode::NotImp);
    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(rcode(&chaos), ResponseCode::Refused);
    let mut two = query("web.mesh.local.", RecordType::A);
    two.queries
        .push(Query::query(name("x.mesh.local."), RecordType::A));
    assert_eq!(rcode(&two), ResponseCode::FormErr);
    let mut none = query("web.mesh.local.", RecordType::A);
    none.queries.clear();
    assert_eq!(rcode(&none), ResponseCode::FormErr);
    assert_eq!(
        rcode(&query("mesh.local.", RecordType::AXFR)),
        ResponseCode::Refused
    );
}

#[test]
fn malformed_input_is_dropped_or_formerr() {
    let s = server(ZoneConfig::default());
    let ctx = QueryCtx::udp();
    assert_eq!(s.answer(&[], &ctx, 0), Answer::Drop(DropReason::TooShort));
    assert_eq!(
        s.answer(&[0; 11], &ctx, 0),
        Answer::Drop(DropReason::TooShort)
    );
    assert_eq!(
        s.answer(&[0; 5000], &ctx, 0),
        Answer::Drop(DropReason::TooLong)
    );
    let mut resp = query("web.mesh.local.", RecordType::A);
    resp.metadata.message_type = MessageType::Response;
    assert_eq!(
        ask_bytes(&s, &resp, ctx, 0),
        Answer::Drop(DropReason::NotAQuery)
    );
    // A readable header announcing a question that is not there.
    let mut bytes = query("web.mesh.local.", RecordType::A).to_vec().unwrap();
    bytes.truncate(20);
    let Answer::Reply(r) = s.answer(&bytes, &ctx, 0) else {
        panic!()
    };
    let r = Message::from_vec(&r).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(r.metadata.id, 0x1234);
    assert!(r.queries.is_empty());
}

// ---------------------------------------------------------------- forwarder

fn upstreams(n: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([192, 0, 2, 1 + i as u8], 53)))
        .collect()
}

fn forwarder(n: u16) -> Forwarder {
    Forwarder::new(
        ForwarderConfig {
            upstreams: upstreams(n),
            ..ForwarderConfig::default()
        },
        [99; 32],
    )
}

fn fq(id: u16, n: &str) -> ForwardQuery {
    let mut m = query(n, RecordType::A);
    m.metadata.id = id;
    ForwardQuery {
        request: m,
        max_reply_len: 512,
    }
}

/// The upstream's answer to the query in `payload`.
fn upstream_answer(payload: &[u8], ttl: u32) -> Vec<u8> {
    let q = Message::from_vec(payload).unwrap();
    assert!(q.metadata.recursion_desired);
    let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_available = true;
    r.queries = q.queries.clone();
    r.answers.push(Record::from_rdata(
        q.queries[0].name().clone(),
        ttl,
        RData::A(A(Ipv4Addr::new(203, 0, 113, 7))),
    ));
    r.to_vec().unwrap()
}

fn upstream_error(payload: &[u8], rcode: ResponseCode, soa: Option<(u32, u32)>) -> Vec<u8> {
    let q = Message::from_vec(payload).unwrap();
    let mut r = Message::error_msg(q.metadata.id, OpCode::Query, rcode);
    r.queries = q.queries.clone();
    if let Some((ttl, min)) = soa {
        let apex = name("example.");
        r.authorities.push(Record::from_rdata(
            apex.clone(),
            ttl,
            RData::SOA(SOA::new(apex.clone(), apex, 1, 1, 1, 1, min)),
        ));
    }
    r.to_vec().unwrap()
}

fn reply_of(f: &mut Forwarder, client: u64) -> Message {
    match f.poll_event() {
        Some(Event::Reply { client: c, bytes }) => {
            assert_eq!(c, client);
            Message::from_vec(&bytes).unwrap()
        }
        None => panic!("no reply for client {client}"),
    }
}

#[test]
fn failover_schedule_sends_to_the_next_upstream_every_200ms_then_a_second_round() {
    let mut f = forwarder(3);
    let t0 = Instant::now();
    assert_eq!(f.handle_query(t0, 1, fq(7, "example.com.")), None);
    let mut sends = Vec::new();
    let mut now = t0;
    loop {
        while let Some(t) = f.poll_transmit() {
            assert_eq!(t.transport, Transport::Udp);
            sends.push((now - t0, t.to));
        }
        if let Some(e) = f.poll_event() {
            let Event::Reply { client, bytes } = e;
            assert_eq!(client, 1);
            let r = Message::from_vec(&bytes).unwrap();
            assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
            assert_eq!(r.metadata.id, 7);
            break;
        }
        now = f.poll_timeout().expect("a timer while pending");
        f.handle_timeout(now);
    }
    let ms = |m| Duration::from_millis(m);
    let u = upstreams(3);
    assert_eq!(
        sends,
        vec![
            (ms(0), u[0]),
            (ms(200), u[1]),
            (ms(400), u[2]),
            (ms(1200), u[0]),
            (ms(1400), u[1]),
            (ms(1600), u[2]),
        ]
    );
    assert_eq!(now - t0, ms(2600), "SERVFAIL 1 s after the last send");
    assert_eq!(f.pending_len(), 0);
    assert_eq!(f.stats().timeouts, 1);
}

#[test]
fn the_first_answer_wins_and_its_upstream_is_asked_first_next_time() {
    let mut f = forwarder(2);
    let u = upstreams(2);
    let t0 = Instant::now();
    f.handle_query(t0, 1, fq(7, "example.com."));
    let first = f.poll_transmit().unwrap();
    assert_eq!(first.to, u[0]);
    f.handle_timeout(t0 + Duration::from_millis(200));
    let second = f.poll_transmit().unwrap();
    assert_eq!(second.to, u[1]);
    assert_ne!(first.query, second.query, "an upstream query of its own");
    assert_ne!(first.payload, second.payload, "its own ID and name case");
    f.handle_response(
        t0 + Duration::from_millis(210),
        second.query,
        u[1],
        &upstream_answer(&second.payload, 60),
    );
    let r = reply_of(&mut f, 1);
    assert_eq!(r.metadata.id, 7);
    assert_eq!(r.queries[0].name(), &name("example.com."));
    assert!(r.metadata.recursion_available && !r.metadata.authoritative);
    assert_eq!(addrs(&r), vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))]);
    // Both queries are closed; a late answer from the first (if its socket still lived)
    // is ignored.
    let mut closed: Vec<_> = std::iter::from_fn(|| f.poll_close()).collect();
    closed.sort();
    assert_eq!(closed, vec![first.query, second.query]);
    f.handle_response(
        t0 + Duration::from_millis(300),
        first.query,
        u[0],
        &upstream_answer(&first.payload, 60),
    );
    assert!(f.poll_event().is_none());
    assert_eq!(f.stats().ignored, 1);
    // Next question goes to u[1] first.
    f.handle_query(t0 + Duration::from_secs(1), 2, fq(8, "other.example."));
    assert_eq!(f.poll_transmit().unwrap().to, u[1]);
}

#[test]
fn answers_are_cached_per_ttl_with_the_id_rewritten() {
    let mut f = forwarder(1);
    let t0 = Instant::now();
    f.handle_query(t0, 1, fq(7, "example.com."));
    let t = f.poll_transmit().unwrap();
    f.handle_response(t0, t.query, t.to, &upstream_answer(&t.payload, 60));
    reply_of(&mut f, 1);
    // Cached: answered at once, new ID, the client's spelling, TTL aged.
    let hit = f
        .handle_query(t0 + Duration::from_secs(10), 2, fq(99, "EXAMPLE.com."))
        .expect("cache hit");
    let r = Message::from_vec(&hit).unwrap();
    assert_eq!(r.metadata.id, 99);
    assert_eq!(r.queries[0].name().to_string(), "EXAMPLE.com.");
    assert_eq!(r.answers[0].ttl, 50);
    assert!(f.poll_transmit().is_none());
    assert_eq!(f.stats().cache_hits, 1);
    // Expired: asked again.
    assert_eq!(
        f.handle_query(t0 + Duration::from_secs(60), 3, fq(5, "example.com.")),
        None
    );
    assert!(f.poll_transmit().is_some());
}

#[test]
fn negative_answers_are_cached_for_the_soa_minimum() {
    let mut f = forwarder(1);
    let t0 = Instant::now();
    f.handle_query(t0, 1, fq(7, "gone.example."));
    let t = f.poll_transmit().unwrap();
    f.handle_response(
        t0,
        t.query,
        t.to,
        &upstream_error(&t.payload, ResponseCode::NXDomain, Some((3600, 30))),
    );
    assert_eq!(
        reply_of(&mut f, 1).metadata.response_code,
        ResponseCode::NXDomain
    );
    let hit = f.handle_query(t0 + Duration::from_secs(29), 2, fq(8, "gone.example."));
    let r = Message::from_vec(&hit.unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        r.authorities.len(),
        1,
        "SOA kept for the client's own negative cache"
    );
    assert_eq!(
        f.handle_query(t0 + Duration::from_secs(30), 3, fq(9, "gone.example.")),
        None
    );
    // Without a SOA: never cached.
    let t = f.poll_transmit().unwrap();
    f.handle_response(
        t0 + Duration::from_secs(30),
        t.query,
        t.to,
        &upstream_error(&t.payload, ResponseCode::NXDomain, None),
    );
    reply_of(&mut f, 3);
    assert_eq!(
        f.handle_query(t0 + Duration::from_secs(31), 4, fq(9, "gone.example.")),
        None
    );
}

#[test]
fn servfail_moves_on_at_once_and_all_failing_ends_early() {
    let mut f = forwarder(2);
    let u = upstreams(2);
    let t0 = Instant::now();
    f.handle_query(t0, 1, fq(7, "example.com."));
    let t = f.poll_transmit().unwrap();
    f.handle_response(
        t0 + Duration::from_millis(5),
        t.query,
        u[0],
        &upstream_error(&t.payload, ResponseCode::ServFail, None),
    );
    let next = f
        .poll_transmit()
        .expect("next upstream asked without waiting");
    assert_eq!(next.to, u[1]);
    assert!(f.poll_event().is_none());
    f.handle_response(
        t0 + Duration::from_millis(9),
        next.query,
        u[1],
        &upstream_error(&next.payload, ResponseCode::Refused, None),
    );
    let r = reply_of(&mut f, 1);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(f.pending_len(), 0);
}

#[test]
fn identical_questions_in_flight_share_one_upstream_query() {
    let mut f = forwarder(1);
    let t0 = Instant::now();
    f.handle_query(t0, 1, fq(7, "example.com."));
    f.handle_query(t0, 2, fq(8, "Example.COM."));
    let t = f.poll_transmit().unwrap();
    assert!(f.poll_transmit().is_none());
    f.handle_response(t0, t.query, t.to, &upstream_answer(&t.payload, 60));
    let a = reply_of(&mut f, 1);
    let b = reply_of(&mut f, 2);
    assert_eq!((a.metadata.id, b.metadata.id), (7, 8));
    assert_eq!(b.queries[0].name().to_string(), "Example.COM.");
    assert_eq!(f.stats().coalesced, 1);
}

const REAL: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const FORGED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);

/// A question forwarded to one upstream: the forwarder and its upstream query.
fn asked(n: &str) -> (Forwarder, Transmit) {
    let mut f = forwarder(1);
    assert_eq!(f.handle_query(Instant::now(), 1, fq(7, n)), None);
    let t = f.poll_transmit().unwrap();
    (f, t)
}

/// The real answer to `t` with the forged address in it, then `tweak`ed.
fn forged(t: &Transmit, tweak: impl FnOnce(&mut Message)) -> Vec<u8> {
    let mut m = Message::from_vec(&upstream_answer(&t.payload, 86_400)).unwrap();
    m.answers[0].data = RData::A(A(FORGED));
    tweak(&mut m);
    m.to_vec().unwrap()
}

/// `bytes` arriving from `from` on `t`'s socket is ignored: no reply, nothing cached,
/// the query stays open, counted as a mismatch; and the real answer still counts after it.
fn is_rejected(mut f: Forwarder, t: &Transmit, from: SocketAddr, bytes: &[u8]) {
    let t0 = Instant::now();
    f.handle_response(t0, t.query, from, bytes);
    assert!(f.poll_event().is_none(), "the forgery reached the client");
    assert!(f.cache().is_empty(), "the forgery was cached");
    assert_eq!(f.poll_close(), None, "the query was closed by a forgery");
    assert_eq!(f.stats().mismatched, 1);
    assert_eq!(f.stats().upstream_answers, 0);
    assert_eq!(f.pending_len(), 1);
    f.handle_response(t0, t.query, t.to, &upstream_answer(&t.payload, 60));
    assert_eq!(addrs(&reply_of(&mut f, 1)), vec![REAL]);
    assert_eq!(f.stats().upstream_answers, 1);
    assert_eq!(f.poll_close(), Some(t.query));
    let asked = Message::from_vec(&t.payload).unwrap().queries[0]
        .name()
        .to_lowercase();
    let hit = f
        .handle_query(t0, 2, fq(8, &asked.to_string()))
        .expect("cached");
    assert_eq!(addrs(&Message::from_vec(&hit).unwrap()), vec![REAL]);
}

#[test]
fn an_answer_under_another_id_is_ignored() {
    let (f, t) = asked("example.com.");
    let bytes = forged(&t, |m| m.metadata.id = m.metadata.id.wrapping_add(1));
    is_rejected(f, &t, t.to, &bytes);
}

#[test]
fn an_answer_to_another_question_is_ignored() {
    let tweaks: [fn(&mut Message); 4] = [
        |m| {
            m.queries[0].set_name(name("evil.example."));
        },
        |m| {
            m.queries[0].set_query_type(RecordType::AAAA);
        },
        |m| {
            m.queries[0].set_query_class(DNSClass::CH);
        },
        |m| {
            let q = m.queries[0].clone();
            m.queries.push(q);
        },
    ];
    for tweak in tweaks {
        let (f, t) = asked("example.com.");
        is_rejected(f, &t, t.to, &forged(&t, tweak));
    }
}

#[test]
fn an_answer_with_the_name_in_another_letter_case_is_ignored() {
    let (f, t) = asked("www.example.com.");
    let sent = Message::from_vec(&t.payload).unwrap().queries[0]
        .name()
        .to_string();
    assert_ne!(sent, sent.to_lowercase(), "0x20: some letters upper case");
    assert_ne!(sent, sent.to_uppercase(), "0x20: some letters lower case");
    // As the client asked (all lower case), as a forger would guess.
    is_rejected(
        f,
        &t,
        t.to,
        &forged(&t, |m| {
            m.queries[0].set_name(name("www.example.com."));
        }),
    );
    // One letter flipped is enough.
    let (f, t) = asked("www.example.com.");
    let sent = Message::from_vec(&t.payload).unwrap().queries[0]
        .name()
        .to_string();
    let i = sent.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let mut one_off = sent.clone().into_bytes();
    one_off[i] ^= 0x20;
    let one_off = String::from_utf8(one_off).unwrap();
    is_rejected(
        f,
        &t,
        t.to,
        &forged(&t, |m| {
            m.queries[0].set_name(name(&one_off));
        }),
    );
}

#[test]
fn an_answer_from_another_address_is_ignored() {
    let (f, t) = asked("example.com.");
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), t.to.port());
    is_rejected(f, &t, from, &forged(&t, |_| {}));
}

#[test]
fn an_answer_from_another_port_is_ignored() {
    let (f, t) = asked("example.com.");
    let from = SocketAddr::new(t.to.ip(), 5353);
    is_rejected(f, &t, from, &forged(&t, |_| {}));
}

#[test]
fn a_query_garbage_or_another_opcode_is_ignored() {
    let tweaks: [fn(&mut Message); 2] = [
        |m| m.metadata.message_type = MessageType::Query,
        |m| m.metadata.op_code = OpCode::Notify,
    ];
    for tweak in tweaks {
        let (f, t) = asked("example.com.");
        is_rejected(f, &t, t.to, &forged(&t, tweak));
    }
    let (f, t) = asked("example.com.");
    is_rejected(f, &t, t.to, &[1, 2, 3]);
}

#[test]
fn an_answer_to_one_upstream_query_does_not_count_for_another() {
    // Two upstreams asked: each answer must come back on its own query's socket.
    let mut f = forwarder(2);
    let u = upstreams(2);
    let t0 = Instant::now();
    f.handle_query(t0, 1, fq(7, "example.com."));
    let first = f.poll_transmit().unwrap();
    f.handle_timeout(t0 + Duration::from_millis(200));
    let second = f.poll_transmit().unwrap();
    // The second upstream's real answer, arriving on the first query's socket.
    f.handle_response(t0, first.query, u[1], &upstream_answer(&second.payload, 60));
    // The first upstream's answer under the second query's ID and case.
    f.handle_response(t0, first.query, u[0], &upstream_answer(&second.payload, 60));
    assert!(f.poll_event().is_none());
    assert_eq!(f.stats().mismatched, 2);
    f.handle_response(
        t0,
        second.query,
        u[1],
        &upstream_answer(&second.payload, 60),
    );
    assert_eq!(addrs(&reply_of(&mut f, 1)), vec![REAL]);
}

#[test]
fn every_upstream_query_gets_its_own_id_and_case_from_the_seed() {
    let run = |seed: [u8; 32]| {
        let mut f = Forwarder::new(
            ForwarderConfig {
                upstreams: upstreams(1),
                ..ForwarderConfig::default()
            },
            seed,
        );
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for i in 0..200u16 {
            // Distinct names (identical ones would share one query), each 24 letters.
            let n = format!("q{i:03}bcdefghijklmnop.example.");
            f.handle_query(t0, u64::from(i), fq(i, &n));
            let t = f.poll_transmit().unwrap();
            let m = Message::from_vec(&t.payload).unwrap();
            let case: String = m.queries[0]
                .name()
                .to_string()
                .chars()
                .filter(char::is_ascii_alphabetic)
                .map(|c| if c.is_ascii_uppercase() { 'U' } else { 'l' })
                .collect();
            sent.push((m.metadata.id, case));
        }
        sent
    };
    let a = run([1; 32]);
    assert_eq!(a, run([1; 32]), "the same seed draws the same values");
    assert_ne!(a, run([2; 32]));
    let ids: std::collections::BTreeSet<u16> = a.iter().map(|(id, _)| *id).collect();
    let cases: std::collections::BTreeSet<&str> = a.iter().map(|(_, n)| n.as_str()).collect();
    // 200 draws of 16 bits, and of 2^24 spellings: a repeat or two at most.
    assert!(ids.len() >= 195, "IDs repeat: {}", ids.len());
    assert!(cases.len() >= 199, "cases repeat: {}", cases.len());
    // Not a counter.
    assert!(a.windows(2).any(|w| w[1].0 != w[0].0.wrapping_add(1)));
}

#[test]
fn answers_reach_the_client_and_the_cache_without_the_random_case() {
    let (mut f, t) = asked("www.example.com.");
    let t0 = Instant::now();
    f.handle_response(t0, t.query, t.to, &upstream_answer(&t.payload, 60));
    let r = reply_of(&mut f, 1);
    assert_eq!(r.answers[0].name.to_string(), "www.example.com.");
    let hit = f.handle_query(t0, 2, fq(8, "WWW.example.com.")).unwrap();
    let r = Message::from_vec(&hit).unwrap();
    assert_eq!(r.queries[0].name().to_string(), "WWW.example.com.");
    assert_eq!(r.answers[0].name.to_string(), "www.example.com.");
}

#[test]
fn a_questions_queries_close_when_it_ends() {
    let mut f = forwarder(3);
    let t0 = Instant::now();
    f.handle_query(t0, 1, fq(7, "example.com."));
    let mut sent = Vec::new();
    let mut now = t0;
    while f.pending_len() > 0 {
        sent.extend(std::iter::from_fn(|| f.poll_transmit()).map(|t| t.query));
        assert_eq!(f.open_queries(), sent.len(), "each send is an open query");
        now = f.poll_timeout().unwrap();
        f.handle_timeout(now);
    }
    assert_eq!(sent.len(), 6);
    let mut closed: Vec<_> = std::iter::from_fn(|| f.poll_close()).collect();
    closed.sort();
    assert_eq!(closed, sent);
    assert_eq!(f.open_queries(), 0);
    // A datagram for a closed query is merely late.
    f.handle_response(now, sent[0], upstreams(3)[0], &[1, 2, 3]);
    assert_eq!((f.stats().ignored, f.stats().mismatched), (1, 0));
}

#[test]
fn open_upstream_queries_are_bounded() {
    let mut f = Forwarder::new(
        ForwarderConfig {
            upstreams: upstreams(2),
            max_upstream_queries: 2,
            ..ForwarderConfig::default()
        },
        [3; 32],
    );
    let t0 = Instant::now();
    assert_eq!(f.handle_query(t0, 1, fq(1, "one.example.")), None);
    assert_eq!(f.handle_query(t0, 2, fq(2, "two.example.")), None);
    let full = f.handle_query(t0, 3, fq(3, "three.example.")).unwrap();
    assert_eq!(
        Message::from_vec(&full).unwrap().metadata.response_code,
        ResponseCode::ServFail
    );
    // The failover sends are skipped too, and counted.
    f.handle_timeout(t0 + Duration::from_millis(200));
    assert_eq!(f.open_queries(), 2);
    assert_eq!(f.stats().overloaded, 3);
}

#[test]
fn a_truncated_upstream_answer_is_retried_over_tcp() {
    let mut f = forwarder(1);
    let t0 = Instant::now();
    f.handle_query(t0, 1, fq(7, "example.com."));
    let t = f.poll_transmit().unwrap();
    let mut tc = Message::from_vec(&upstream_answer(&t.payload, 60)).unwrap();
    tc.metadata.truncation = true;
    tc.answers.clear();
    f.handle_response(t0, t.query, t.to, &tc.to_vec().unwrap());
    let retry = f.poll_transmit().unwrap();
    assert_eq!(retry.transport, Transport::Tcp);
    assert_eq!(retry.to, t.to);
    assert!(f.poll_event().is_none());
    assert_ne!(retry.query, t.query, "a new upstream query");
    assert_eq!(f.poll_close(), Some(t.query), "the UDP query is answered");
    f.handle_response(t0, retry.query, t.to, &upstream_answer(&retry.payload, 60));
    assert_eq!(addrs(&reply_of(&mut f, 1)).len(), 1);
}

#[test]
fn no_upstream_means_servfail_at_once() {
    let mut f = forwarder(0);
    let r = f
        .handle_query(Instant::now(), 1, fq(7, "example.com."))
        .unwrap();
    assert_eq!(
        Message::from_vec(&r).unwrap().metadata.response_code,
        ResponseCode::ServFail
    );
    assert_eq!(f.poll_timeout(), None);
}

#[test]
fn forwarded_replies_respect_the_clients_size() {
    let mut f = forwarder(1);
    let t0 = Instant::now();
    f.handle_query(t0, 1, fq(7, "big.example."));
    let t = f.poll_transmit().unwrap();
    let mut big = Message::from_vec(&upstream_answer(&t.payload, 60)).unwrap();
    for i in 0..60 {
        big.answers.push(Record::from_rdata(
            name("big.example."),
            60,
            RData::A(A(Ipv4Addr::new(203, 0, 113, i))),
        ));
    }
    f.handle_response(t0, t.query, t.to, &big.to_vec().unwrap());
    let Some(Event::Reply { bytes, .. }) = f.poll_event() else {
        panic!()
    };
    assert!(bytes.len() <= 512);
    assert!(Message::from_vec(&bytes).unwrap().metadata.truncation);
    // Over TCP (a large limit) the cached copy comes whole.
    let mut q = fq(8, "big.example.");
    q.max_reply_len = u16::MAX;
    let whole = Message::from_vec(&f.handle_query(t0, 2, q).unwrap()).unwrap();
    assert_eq!(whole.answers.len(), 61);
    assert!(!whole.metadata.truncation);
}
