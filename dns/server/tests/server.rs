//! The server shell on loopback: zone answers over UDP and TCP, truncation and the TCP
//! retry, forwarding to a stub upstream written here, caching, and failover past an
//! upstream that never answers. Only 127.0.0.1, ephemeral ports; nothing else is touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mesh_dns::{ForwarderConfig, Owner, ZoneConfig};
use mesh_dns_server::{DnsState, serve};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Generous: a reply that takes this long is a failure, not slowness (weaveDNS's dead
/// upstream cost 5 s per query; ours must come well within this).
const CLIENT_WAIT: Duration = Duration::from_secs(4);
const EXTERNAL_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

struct Running {
    udp: SocketAddr,
    tcp: SocketAddr,
    state: Arc<DnsState>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(upstreams: Vec<SocketAddr>) -> Running {
    start_with(ForwarderConfig {
        upstreams,
        ..ForwarderConfig::default()
    })
    .await
}

async fn start_with(forwarder: ForwarderConfig) -> Running {
    let udp = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let tcp = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let state = Arc::new(DnsState::new(
        ZoneConfig::default(),
        forwarder,
        Some(Owner([1; 32])),
        12345,
    ));
    let task = tokio::spawn(serve(udp, tcp, state.clone()));
    Running {
        udp: udp_addr,
        tcp: tcp_addr,
        state,
        task,
    }
}

fn query(id: u16, n: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(name(n), t));
    m.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, q: &[u8]) -> Message {
    let sock = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    sock.send_to(q, server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, from) = tokio::time::timeout(CLIENT_WAIT, sock.recv_from(&mut buf))
        .await
        .expect("no UDP reply in time")
        .unwrap();
    assert_eq!(from, server);
    assert!(n <= 512, "UDP reply of {n} bytes to a query without EDNS");
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(&buf[..2], &q[..2], "reply ID");
    m
}

async fn ask_tcp(server: SocketAddr, queries: &[Vec<u8>]) -> Vec<Message> {
    let mut s = TcpStream::connect(server).await.unwrap();
    let mut out = Vec::new();
    for q in queries {
        s.write_u16(q.len() as u16).await.unwrap();
        s.write_all(q).await.unwrap();
        let len = tokio::time::timeout(CLIENT_WAIT, s.read_u16())
            .await
            .expect("no TCP reply in time")
            .unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        s.read_exact(&mut buf).await.unwrap();
        out.push(Message::from_vec(&buf).unwrap());
    }
    out
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

/// A stub upstream: answers `*.test.` A queries with 203.0.113.7 (TTL 60), except that
/// `big.test.` gets a truncated UDP answer and its 80 addresses over TCP on the same port.
/// Counts the UDP queries it sees.
struct Stub {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    _tasks: Vec<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn stub_answer(q: &[u8], over_tcp: bool) -> Vec<u8> {
    let q = Message::from_vec(q).unwrap();
    let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.queries = q.queries.clone();
    let qname = q.queries[0].name().clone();
    if qname == name("big.test.") && !over_tcp {
        r.metadata.truncation = true;
    } else if qname == name("big.test.") {
        for i in 0..80 {
            r.answers.push(Record::from_rdata(
                qname.clone(),
                60,
                RData::A(A(Ipv4Addr::new(203, 0, 113, i))),
            ));
        }
    } else if name("test.").zone_of(&qname) {
        r.answers
            .push(Record::from_rdata(qname, 60, RData::A(A(EXTERNAL_ADDR))));
    } else {
        r.metadata.response_code = ResponseCode::NXDomain;
    }
    r.to_vec().unwrap()
}

async fn stub() -> Stub {
    // UDP and TCP on the same port number: retry until a free pair turns up.
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let udp_queries = Arc::new(AtomicUsize::new(0));
    let tcp_queries = Arc::new(AtomicUsize::new(0));
    let count = udp_queries.clone();
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = udp.recv_from(&mut buf).await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            udp.send_to(&stub_answer(&buf[..n], false), from)
                .await
                .unwrap();
        }
    });
    let count = tcp_queries.clone();
    let tcp_task = tokio::spawn(async move {
        loop {
            let (mut s, _) = tcp.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let len = s.read_u16().await.unwrap();
            let mut q = vec![0u8; usize::from(len)];
            s.read_exact(&mut q).await.unwrap();
            let r = stub_answer(&q, true);
            s.write_u16(r.len() as u16).await.unwrap();
            s.write_all(&r).await.unwrap();
        }
    });
    Stub {
        addr,
        udp_queries,
        tcp_queries,
        _tasks: vec![AbortOnDrop(udp_task), AbortOnDrop(tcp_task)],
    }
}

#[tokio::test]
async fn zone_names_are_answered_over_udp_and_tcp() {
    let s = start(Vec::new()).await;
    s.state.update(|srv| {
        let web = srv.config.qualify("web").unwrap();
        srv.store
            .add(
                &web,
                IpAddr::V4(Ipv4Addr::new(10, 32, 0, 1)),
                Owner([1; 32]),
                1,
            )
            .unwrap();
    });
    let r = ask_udp(s.udp, &query(1, "web.mesh.local.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(addrs(&r), vec![IpAddr::V4(Ipv4Addr::new(10, 32, 0, 1))]);
    let nx = ask_udp(s.udp, &query(2, "nope.mesh.local.", RecordType::A)).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities.len(), 1);
    // Two queries on one TCP connection.
    let rs = ask_tcp(
        s.tcp,
        &[
            query(3, "web.mesh.local.", RecordType::A),
            query(4, "web.mesh.local.", RecordType::AAAA),
        ],
    )
    .await;
    assert_eq!(addrs(&rs[0]).len(), 1);
    assert_eq!(rs[1].metadata.response_code, ResponseCode::NoError);
    assert!(rs[1].answers.is_empty());
    // Without upstreams, other names get SERVFAIL at once.
    let sf = ask_udp(s.udp, &query(5, "external.test.", RecordType::A)).await;
    assert_eq!(sf.metadata.response_code, ResponseCode::ServFail);
    let st = s.state.stats();
    assert_eq!((st.udp_queries, st.tcp_queries), (3, 2));
    // Replies by source and RCODE (NOERROR, FORMERR, SERVFAIL, NXDOMAIN, …), and timed.
    assert_eq!(st.replies.zone, [3, 0, 0, 1, 0, 0, 0]);
    assert_eq!(st.replies.forward, [0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(st.replies.count(), 5);
    assert!(st.replies.seconds_sum > 0.0);
}

#[tokio::test]
async fn a_truncated_udp_answer_is_retried_over_tcp_by_the_client() {
    let s = start(Vec::new()).await;
    s.state.update(|srv| {
        let big = srv.config.qualify("big").unwrap();
        for i in 0..100 {
            srv.store
                .add(
                    &big,
                    IpAddr::V4(Ipv4Addr::new(10, 33, 0, i)),
                    Owner([2; 32]),
                    1,
                )
                .unwrap();
        }
    });
    let q = query(9, "big.mesh.local.", RecordType::A);
    let udp = ask_udp(s.udp, &q).await;
    assert!(udp.metadata.truncation);
    assert!(udp.answers.len() < 100);
    let tcp = ask_tcp(s.tcp, &[q]).await;
    assert!(!tcp[0].metadata.truncation);
    assert_eq!(tcp[0].answers.len(), 100);
}

#[tokio::test]
async fn other_names_are_forwarded_and_cached() {
    let up = stub().await;
    let s = start(vec![up.addr]).await;
    let a = ask_udp(s.udp, &query(11, "external.test.", RecordType::A)).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.recursion_available && !a.metadata.authoritative);
    assert_eq!(addrs(&a), vec![IpAddr::V4(EXTERNAL_ADDR)]);
    let b = ask_udp(s.udp, &query(12, "EXTERNAL.test.", RecordType::A)).await;
    assert_eq!(addrs(&b), vec![IpAddr::V4(EXTERNAL_ADDR)]);
    assert_eq!(b.queries[0].name().to_string(), "EXTERNAL.test.");
    assert!(b.answers[0].ttl <= 60);
    assert_eq!(
        up.udp_queries.load(Ordering::SeqCst),
        1,
        "second answer came from the cache"
    );
    // Over TCP too, from the cache.
    let c = ask_tcp(s.tcp, &[query(13, "external.test.", RecordType::A)]).await;
    assert_eq!(addrs(&c[0]), vec![IpAddr::V4(EXTERNAL_ADDR)]);
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 1);
    // Negative answers come through (not cached without a SOA: asked again).
    let nx = ask_udp(s.udp, &query(14, "nothing.example.", RecordType::A)).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let st = s.state.stats();
    assert_eq!(st.forwarder.cache_hits, 2);
    assert_eq!(st.forwarded, 4);
    assert_eq!(st.replies.forward, [3, 0, 0, 1, 0, 0, 0]);
    assert_eq!(st.replies.zone, [0; 7]);
}

#[tokio::test]
async fn a_dead_first_upstream_costs_a_failover_delay_not_a_timeout() {
    // An upstream that never answers: bound, never read.
    let silent = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let up = stub().await;
    let s = start(vec![silent.local_addr().unwrap(), up.addr]).await;
    let a = ask_udp(s.udp, &query(21, "one.test.", RecordType::A)).await;
    assert_eq!(addrs(&a), vec![IpAddr::V4(EXTERNAL_ADDR)]);
    // The live upstream is now asked first: a new name needs no failover.
    let b = ask_udp(s.udp, &query(22, "two.test.", RecordType::A)).await;
    assert_eq!(addrs(&b), vec![IpAddr::V4(EXTERNAL_ADDR)]);
    let f = s.state.stats().forwarder;
    assert_eq!(f.upstream_answers, 2);
    assert_eq!(f.upstream_sends, 3, "silent once, then the stub twice");
    drop(silent);
}

#[tokio::test]
async fn a_truncated_upstream_answer_is_fetched_again_over_tcp() {
    let up = stub().await;
    let s = start(vec![up.addr]).await;
    let q = query(31, "big.test.", RecordType::A);
    // The client over UDP without EDNS still gets at most 512 bytes, truncated.
    let udp = ask_udp(s.udp, &q).await;
    assert!(udp.metadata.truncation);
    assert_eq!(
        up.tcp_queries.load(Ordering::SeqCst),
        1,
        "upstream asked over TCP"
    );
    // Its TCP retry is answered whole from the cache.
    let tcp = ask_tcp(s.tcp, &[q]).await;
    assert_eq!(tcp[0].answers.len(), 80);
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn garbage_is_survived() {
    let s = start(Vec::new()).await;
    let sock = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    for junk in [&b""[..], &[0u8; 5][..], &[0xff; 300][..]] {
        sock.send_to(junk, s.udp).await.unwrap();
    }
    // A TCP client that sends half a frame and goes away.
    let mut t = TcpStream::connect(s.tcp).await.unwrap();
    t.write_all(&[0, 40, 1, 2]).await.unwrap();
    drop(t);
    let r = ask_udp(s.udp, &query(41, "x.mesh.local.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(s.state.stats().dropped >= 2);
}

/// The forged address an off-path attacker wants in the cache (TEST-NET-2).
const FORGED_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
/// A long name: the more letters, the more bits of 0x20 case the attacker must guess.
const TARGET: &str = "accounts.examplebank.test.";

/// An answer to `TARGET` A with `addr`, under `id`, spelling the name `qname`.
fn answer_for(id: u16, qname: &Name, addr: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let mut r = Message::new(id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_desired = true;
    r.metadata.recursion_available = true;
    r.queries.push(Query::query(qname.clone(), RecordType::A));
    r.answers
        .push(Record::from_rdata(qname.clone(), ttl, RData::A(A(addr))));
    r.to_vec().unwrap()
}

/// Datagrams from upstream sockets the forwarder has dealt with: accepted, rejected by a
/// check, or arriving for nothing it waits for.
fn upstream_datagrams_seen(s: &Running) -> u64 {
    let f = s.state.stats().forwarder;
    f.upstream_answers + f.upstream_errors + f.ignored + f.mismatched
}

/// Waits until the forwarder has dealt with `n` upstream datagrams: flow control for the
/// attacker, so that the kernel drops none of its flood for a full socket buffer (a
/// dropped forged datagram would make the attack fail for a reason other than the
/// defence). Returns `false` at once when the question has ended (answered, or failed):
/// its port may be closed then, and nothing more would be seen. A hang guard, not a
/// timing assertion.
async fn until_seen(s: &Running, n: u64) -> bool {
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let f = s.state.stats().forwarder;
        if f.upstream_answers + f.upstream_errors + f.timeouts > 0 {
            return false;
        }
        if upstream_datagrams_seen(s) >= n {
            return true;
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "forwarder stuck at {} of {n} upstream datagrams",
            upstream_datagrams_seen(s)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// RFC 5452's attack, off path: the attacker knows the upstream's address and port, the
/// name being asked (it made a pod ask it), and, more than a real off-path attacker, the
/// port the forwarder's query left from. It floods that port with a forged answer under
/// every one of the 65,536 IDs, each from the upstream's exact address and port (it sends
/// through the upstream's own socket: on the wire that is a perfectly spoofed source).
/// It does not see the query itself, so it cannot know the 0x20 letter case. Then the
/// real upstream answers, slowly, after the whole flood; and two copies of the real
/// answer arrive first from the upstream's address on another port and from another
/// address on the upstream's port (those test the source check alone). The client must
/// get the real address, the cache must hold it, and every forgery must be counted.
#[tokio::test]
async fn spoofed_answer_is_ignored() {
    let upstream = Arc::new(UdpSocket::bind((LOOPBACK, 0)).await.unwrap());
    let up_addr = upstream.local_addr().unwrap();
    let s = start_with(ForwarderConfig {
        upstreams: vec![up_addr],
        // One send, and time for the whole flood before SERVFAIL.
        rounds: 1,
        final_wait: Duration::from_secs(120),
        ..ForwarderConfig::default()
    })
    .await;
    let client = {
        let server = s.udp;
        tokio::spawn(async move {
            let sock = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
            sock.send_to(&query(51, TARGET, RecordType::A), server)
                .await
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let (n, _) = tokio::time::timeout(Duration::from_secs(120), sock.recv_from(&mut buf))
                .await
                .expect("no reply to the client")
                .unwrap();
            Message::from_vec(&buf[..n]).unwrap()
        })
    };
    // The upstream receives the forwarder's query; only the port it came from is passed
    // to the attacker.
    let mut buf = vec![0u8; 4096];
    let (n, fwd_port) = tokio::time::timeout(CLIENT_WAIT, upstream.recv_from(&mut buf))
        .await
        .expect("the forwarder asked nobody")
        .unwrap();
    let real_query = Message::from_vec(&buf[..n]).unwrap();

    // The attacker.
    let seen_before = upstream_datagrams_seen(&s);
    let target = name(TARGET);
    let mut sent = 0u64;
    for id in 0..=u16::MAX {
        let forged = answer_for(id, &target, FORGED_ADDR, 86_400);
        upstream.send_to(&forged, fwd_port).await.unwrap();
        sent += 1;
        if sent.is_multiple_of(128) && !until_seen(&s, seen_before + sent).await {
            break; // A forgery was taken: the question is over.
        }
    }
    until_seen(&s, seen_before + sent).await;

    // The real answer, byte for byte, from the wrong port and then the wrong address.
    let (id, qname) = (real_query.metadata.id, real_query.queries[0].name().clone());
    let real = answer_for(id, &qname, EXTERNAL_ADDR, 60);
    let other_port = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    other_port.send_to(&real, fwd_port).await.unwrap();
    let other_addr = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), up_addr.port()))
        .await
        .unwrap();
    other_addr.send_to(&real, fwd_port).await.unwrap();
    until_seen(&s, seen_before + sent + 2).await;
    // And from the upstream itself.
    upstream.send_to(&real, fwd_port).await.unwrap();

    let got = client.await.unwrap();
    assert_eq!(
        addrs(&got),
        vec![IpAddr::V4(EXTERNAL_ADDR)],
        "the client got a forged answer"
    );
    // The cache holds the real answer: asked again, nobody is asked.
    let again = ask_udp(
        s.udp,
        &query(52, "Accounts.ExampleBank.test.", RecordType::A),
    )
    .await;
    assert_eq!(addrs(&again), vec![IpAddr::V4(EXTERNAL_ADDR)]);
    let f = s.state.stats().forwarder;
    assert_eq!(f.cache_hits, 1, "the second question came from the cache");
    assert_eq!(f.upstream_sends, 1);
    assert_eq!(f.upstream_answers, 1);
    assert_eq!(f.mismatched, sent + 2, "every forgery counted");
}

/// RFC 5452's random source port: each upstream query leaves from a port of its own, and
/// that port is closed once its answer is in (a late forgery then finds nothing listening:
/// the kernel answers it with ICMP port unreachable).
#[tokio::test]
async fn each_upstream_query_has_a_port_of_its_own_closed_after_its_answer() {
    let upstream = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let s = start(vec![upstream.local_addr().unwrap()]).await;
    let mut ports = std::collections::BTreeSet::new();
    for i in 0..4u16 {
        let n = format!("host{i}.test.");
        let server = s.udp;
        let client =
            tokio::spawn(async move { ask_udp(server, &query(60 + i, &n, RecordType::A)).await });
        let mut buf = vec![0u8; 4096];
        let (len, from) = tokio::time::timeout(CLIENT_WAIT, upstream.recv_from(&mut buf))
            .await
            .expect("no upstream query")
            .unwrap();
        upstream
            .send_to(&stub_answer(&buf[..len], false), from)
            .await
            .unwrap();
        assert_eq!(
            addrs(&client.await.unwrap()),
            vec![IpAddr::V4(EXTERNAL_ADDR)]
        );
        ports.insert(from.port());
        // The port is closed: a datagram to it is refused (once the socket's task is gone).
        let probe = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        probe.connect(from).await.unwrap();
        let guard = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                tokio::time::Instant::now() < guard,
                "port {from} still open"
            );
            probe.send(b"late").await.unwrap();
            let mut b = [0u8; 16];
            match tokio::time::timeout(Duration::from_millis(20), probe.recv(&mut b)).await {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => {}
            }
        }
    }
    // Four draws from ~28,000 ports: a fixed port gives one.
    assert!(ports.len() >= 3, "ports reused: {ports:?}");
}
