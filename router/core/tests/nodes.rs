//! Several real `Node`s on a virtual clock and a lossless in-memory network: bootstrap, queued
//! packets, a three-node mesh, a wrong secret (refused at mac1, no handshake work),
//! replays and tampering, a replayed initiation (no work), a forged response (the handshake
//! survives it), a member's spoofed flood (cookies; a real peer still gets in), retries
//! stopping after 90 s, a spoofed source, rekeys over 10 minutes, keepalives and expiry,
//! restarts, and determinism (the same seeds give the same datagrams).
#![allow(clippy::unwrap_used)]
// A test starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#![allow(clippy::disallowed_methods)]

use mesh_core::{Decap, DropReason, Encap, Node, NodeConfig};
use mesh_crypto::{ClusterPsk, StaticKeypair, TAG_LEN};
use mesh_proto::datagram::{DATA_HEADER_LEN, TYPE_DATA};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

struct Sim {
    now: Instant,
    nodes: Vec<Option<Node>>,
    addrs: Vec<SocketAddr>,
    inflight: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Packets each node delivered to its TUN device.
    tun: Vec<Vec<Vec<u8>>>,
    /// Every datagram that crossed the network.
    wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Drop datagrams to/from these node indices.
    cut: Vec<usize>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(198, 18, 0, i as u8 + 1), 6788))
}

fn block(i: usize) -> ipnet::Ipv4Net {
    format!("10.32.{}.0/24", i + 1).parse().unwrap()
}

fn pod(i: usize, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, i as u8 + 1, host)
}

fn keypair(i: usize) -> StaticKeypair {
    StaticKeypair::generate([i as u8 + 1; 32])
}

fn config(i: usize, secret: &[u8], bootstrap: Vec<usize>) -> NodeConfig {
    NodeConfig {
        name: format!("n{i}"),
        keypair: keypair(i),
        psk: ClusterPsk::derive(secret),
        blocks: vec![block(i)],
        range: "10.32.0.0/12".parse().unwrap(),
        bootstrap: bootstrap.into_iter().map(addr).collect(),
        known_peers: Vec::new(),
        generation: 1,
        advertise: None,
        dead_after: mesh_core::DEFAULT_DEAD_AFTER,
        gossip: mesh_core::GossipConfig::default(),
        ring: None,
        // Every third node offers ChaCha20-Poly1305 only: sessions between the others use
        // AES-256-GCM, so both ciphers and their negotiation run in every test.
        ciphers: mesh_crypto::CipherSet::with_aes(!i.is_multiple_of(3)),
        unix_time: Duration::from_secs(1_800_000_000),
    }
}

/// A minimal IPv4 packet (header only checks what the router reads) with a payload.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[9] = 17;
    let total = (20 + payload.len()) as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

impl Sim {
    fn new(configs: Vec<NodeConfig>) -> Self {
        let now = Instant::now();
        let n = configs.len();
        let nodes = configs
            .into_iter()
            .enumerate()
            .map(|(i, c)| Some(Node::new(c, now, [0x40 + i as u8; 32])))
            .collect();
        Self {
            now,
            nodes,
            addrs: (0..n).map(addr).collect(),
            inflight: VecDeque::new(),
            tun: vec![Vec::new(); n],
            wire: Vec::new(),
            cut: Vec::new(),
        }
    }

    fn node(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().unwrap()
    }

    fn index_of(&self, a: SocketAddr) -> Option<usize> {
        self.addrs.iter().position(|x| *x == a)
    }

    fn collect_transmits(&mut self) {
        for i in 0..self.nodes.len() {
            let from = self.addrs[i];
            if let Some(node) = self.nodes[i].as_mut() {
                while let Some(t) = node.poll_transmit() {
                    self.inflight.push_back((from, t.to, t.payload));
                }
            }
        }
    }

    /// Delivers datagrams until the network is quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.collect_transmits();
            let Some((from, to, mut d)) = self.inflight.pop_front() else {
                return;
            };
            self.wire.push((from, to, d.clone()));
            let Some(j) = self.index_of(to) else { continue };
            let fi = self.index_of(from);
            if self.cut.contains(&j) || fi.is_some_and(|f| self.cut.contains(&f)) {
                continue;
            }
            let now = self.now;
            let Some(node) = self.nodes[j].as_mut() else {
                continue;
            };
            if let Decap::Deliver { start, len } = node.decapsulate(now, from, &mut d) {
                self.tun[j].push(d[start..start + len].to_vec());
            }
        }
        panic!("network never settled");
    }

    /// Advances the virtual clock by `d`, running every timer on the way.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let mut spins = 0u32;
        let mut last = self.now;
        loop {
            self.settle();
            let next = self
                .nodes
                .iter()
                .flatten()
                .filter_map(|n| n.poll_timeout())
                .min()
                .unwrap_or(end)
                .max(self.now);
            if next > end {
                break;
            }
            if next == last {
                spins += 1;
                assert!(spins < 1000, "timers spin at one instant: {:?}", self.now);
            } else {
                spins = 0;
                last = next;
            }
            self.now = next;
            let now = self.now;
            for n in self.nodes.iter_mut().flatten() {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
            }
            if next == end {
                self.settle();
                break;
            }
        }
        self.now = end;
        self.settle();
    }

    /// Sends a packet from node i's TUN; returns what encapsulate said.
    fn send(&mut self, i: usize, packet: &[u8]) -> Encap {
        let mut buf = vec![0u8; DATA_HEADER_LEN + packet.len() + TAG_LEN];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(packet);
        let now = self.now;
        let from = self.addrs[i];
        let r = self.node(i).encapsulate(now, &mut buf, packet.len());
        if let Encap::Send { to, len } = r {
            buf.truncate(len);
            self.inflight.push_back((from, to, buf));
        }
        self.settle();
        r
    }

    fn established(&self, i: usize) -> usize {
        self.nodes[i].as_ref().unwrap().established_peers()
    }

    fn data_datagrams(&self, from: usize, to: usize) -> Vec<Vec<u8>> {
        self.wire
            .iter()
            .filter(|(f, t, d)| *f == addr(from) && *t == addr(to) && d[0] == TYPE_DATA)
            .map(|(_, _, d)| d.clone())
            .collect()
    }
}

#[test]
fn bootstrap_by_address_then_data_both_ways() {
    let mut sim = Sim::new(vec![
        config(0, b"cluster secret one", vec![1]),
        config(1, b"cluster secret one", vec![]),
    ]);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.established(0), 1);
    assert_eq!(sim.established(1), 1);

    let p = ipv4(pod(0, 10), pod(1, 20), b"hello from a");
    assert!(matches!(sim.send(0, &p), Encap::Send { .. }));
    assert_eq!(sim.tun[1].last().unwrap(), &p);

    let back = ipv4(pod(1, 20), pod(0, 10), b"hello from b");
    assert!(matches!(sim.send(1, &back), Encap::Send { .. }));
    assert_eq!(sim.tun[0].last().unwrap(), &back);

    // The payload never crosses in clear.
    for (_, _, d) in &sim.wire {
        assert!(
            !d.windows(12)
                .any(|w| w == b"hello from a" || w == b"hello from b")
        );
    }
}

#[test]
fn simultaneous_bootstrap_and_packets_queued_before_the_session() {
    let mut sim = Sim::new(vec![
        config(0, b"s3cret-s3cret", vec![1]),
        config(1, b"s3cret-s3cret", vec![0]),
    ]);
    // Nothing is known yet: no route until the owner announced its block.
    let p = ipv4(pod(0, 10), pod(1, 20), b"early");
    assert_eq!(sim.send(0, &p), Encap::Dropped(DropReason::NoRoute));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.established(0), 1);
    assert_eq!(sim.established(1), 1);
    for i in 0..50u8 {
        let p = ipv4(pod(0, 10), pod(1, 20), &[i; 100]);
        assert!(matches!(sim.send(0, &p), Encap::Send { .. }));
        let q = ipv4(pod(1, 20), pod(0, 10), &[i; 100]);
        assert!(matches!(sim.send(1, &q), Encap::Send { .. }));
    }
    assert_eq!(sim.tun[1].len(), 50);
    assert_eq!(sim.tun[0].len(), 50);
}

#[test]
fn three_nodes_full_mesh_from_one_seed_each() {
    let mut sim = Sim::new(vec![
        config(0, b"three nodes!", vec![1, 2]),
        config(1, b"three nodes!", vec![2]),
        config(2, b"three nodes!", vec![]),
    ]);
    sim.run_for(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(sim.established(i), 2, "node {i}");
    }
    for a in 0..3 {
        for b in 0..3 {
            if a != b {
                let p = ipv4(pod(a, 5), pod(b, 6), &[a as u8, b as u8]);
                assert!(matches!(sim.send(a, &p), Encap::Send { .. }), "{a}->{b}");
                assert_eq!(sim.tun[b].last().unwrap(), &p);
            }
        }
    }
}

#[test]
fn wrong_secret_never_gets_a_session() {
    let mut sim = Sim::new(vec![
        config(0, b"the right secret", vec![1]),
        config(1, b"another secret!!", vec![0]),
    ]);
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.established(0), 0);
    assert_eq!(sim.established(1), 0);
    // Another secret fails mac1: refused after one hash, before any public-key work.
    for i in 0..2 {
        assert!(
            sim.node(i).total_drops(DropReason::HandshakeMac) > 0,
            "node {i} counts the foreign initiations"
        );
        assert_eq!(sim.node(i).total_drops(DropReason::HandshakeFailed), 0);
        let now = sim.now;
        assert_eq!(
            sim.node(i).handshake_status(now).responded,
            0,
            "node {i} did no handshake work for the other secret"
        );
    }
    assert!(sim.data_datagrams(0, 1).is_empty());
}

#[test]
fn replayed_and_tampered_datagrams_are_dropped_and_counted() {
    let mut sim = Sim::new(vec![
        config(0, b"replay secret", vec![1]),
        config(1, b"replay secret", vec![]),
    ]);
    sim.run_for(Duration::from_secs(2));
    let p = ipv4(pod(0, 10), pod(1, 20), b"once only");
    assert!(matches!(sim.send(0, &p), Encap::Send { .. }));
    let delivered = sim.tun[1].len();
    let captured = sim.data_datagrams(0, 1).last().unwrap().clone();

    let now = sim.now;
    let mut again = captured.clone();
    assert_eq!(
        sim.node(1).decapsulate(now, addr(0), &mut again),
        Decap::Dropped(DropReason::Replay)
    );
    assert_eq!(sim.node(1).total_drops(DropReason::Replay), 1);

    // A fresh packet with one flipped bit in the tag.
    assert!(matches!(sim.send(0, &p), Encap::Send { .. }));
    let mut flipped = sim.data_datagrams(0, 1).last().unwrap().clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0x10;
    // Move the counter far ahead too, past anything seen, so only the tag can refuse it.
    flipped[15] ^= 0x40;
    // Make sure it was not already delivered: re-deliver the flipped copy only.
    let before = sim.tun[1].len();
    assert_eq!(
        sim.node(1).decapsulate(now, addr(0), &mut flipped),
        Decap::Dropped(DropReason::Authentication)
    );
    assert_eq!(sim.node(1).total_drops(DropReason::Authentication), 1);
    assert_eq!(sim.tun[1].len(), before);
    assert_eq!(delivered + 1, before);

    // A datagram for a session index nobody has.
    let mut unknown = captured;
    unknown[4] ^= 0xff;
    assert_eq!(
        sim.node(1).decapsulate(now, addr(0), &mut unknown),
        Decap::Dropped(DropReason::UnknownSession)
    );
    // Garbage.
    assert_eq!(
        sim.node(1).decapsulate(now, addr(0), &mut [0xee; 3]),
        Decap::Dropped(DropReason::Malformed)
    );
}

#[test]
fn spoofed_inner_source_is_refused() {
    let mut sim = Sim::new(vec![
        config(0, b"spoof secret", vec![1]),
        config(1, b"spoof secret", vec![]),
    ]);
    sim.run_for(Duration::from_secs(2));
    // Node 0 claims a source in node 1's own block.
    let p = ipv4(pod(1, 99), pod(1, 20), b"spoofed");
    // Routed by destination to node 1, which refuses the source.
    assert!(matches!(sim.send(0, &p), Encap::Send { .. }));
    assert!(sim.tun[1].is_empty());
    assert_eq!(sim.node(1).total_drops(DropReason::SourceNotAllowed), 1);
}

#[test]
fn traffic_keeps_flowing_across_rekeys() {
    let mut sim = Sim::new(vec![
        config(0, b"rekey secret", vec![1]),
        config(1, b"rekey secret", vec![0]),
    ]);
    sim.run_for(Duration::from_secs(2));
    let mut sent = 0;
    // Ten minutes: several rekeys (120 s) and session expiries (180 s) happen.
    for step in 0..600u32 {
        let p = ipv4(pod(0, 1), pod(1, 2), &step.to_le_bytes());
        assert!(matches!(sim.send(0, &p), Encap::Send { .. }), "step {step}");
        let q = ipv4(pod(1, 2), pod(0, 1), &step.to_le_bytes());
        assert!(matches!(sim.send(1, &q), Encap::Send { .. }), "step {step}");
        sent += 1;
        sim.run_for(Duration::from_secs(1));
    }
    assert_eq!(sim.tun[1].len(), sent);
    assert_eq!(sim.tun[0].len(), sent);
    let now = sim.now;
    let statuses = sim.node(0).peer_status(now);
    assert!(statuses[0].handshakes >= 4, "{statuses:?}");
}

#[test]
fn idle_sessions_stay_up_with_keepalives_and_expire_when_the_peer_is_gone() {
    let mut sim = Sim::new(vec![
        config(0, b"idle secret", vec![1]),
        config(1, b"idle secret", vec![]),
    ]);
    sim.run_for(Duration::from_secs(2));
    sim.run_for(Duration::from_secs(400));
    assert_eq!(sim.established(0), 1, "rekeyed while idle");
    let keepalives = sim.data_datagrams(1, 0).len();
    assert!(keepalives >= 30, "keepalives every 10 s: {keepalives}");

    sim.cut.push(1);
    sim.run_for(Duration::from_secs(200));
    assert_eq!(sim.established(0), 0, "the session expires without answers");
    let now = sim.now;
    let st = sim.node(0).peer_status(now);
    assert_eq!(st[0].state, mesh_api::PeerState::Expired);

    sim.cut.clear();
    sim.run_for(Duration::from_secs(40));
    assert_eq!(sim.established(0), 1, "and comes back when the peer does");
}

#[test]
fn a_restarted_peer_with_the_same_key_is_reached_again() {
    let mut sim = Sim::new(vec![
        config(0, b"restart secret", vec![1]),
        config(1, b"restart secret", vec![]),
    ]);
    sim.run_for(Duration::from_secs(2));
    let p = ipv4(pod(0, 1), pod(1, 2), b"before");
    assert!(matches!(sim.send(0, &p), Encap::Send { .. }));

    // Node 1 restarts: same key, remembers node 0 from its state directory.
    let mut c = config(1, b"restart secret", vec![]);
    c.known_peers = vec![(keypair(0).public(), addr(0))];
    let now = sim.now;
    sim.nodes[1] = Some(Node::new(c, now, [0x99; 32]));
    sim.run_for(Duration::from_secs(1));
    let after = ipv4(pod(0, 1), pod(1, 2), b"after");
    assert!(matches!(sim.send(0, &after), Encap::Send { .. }));
    assert_eq!(sim.tun[1].last().unwrap(), &after);
    let back = ipv4(pod(1, 2), pod(0, 1), b"back");
    assert!(matches!(sim.send(1, &back), Encap::Send { .. }));
    assert_eq!(sim.tun[0].last().unwrap(), &back);
}

#[test]
fn same_seed_same_wire() {
    let run = || {
        let mut sim = Sim::new(vec![
            config(0, b"determinism", vec![1]),
            config(1, b"determinism", vec![0]),
        ]);
        sim.run_for(Duration::from_secs(5));
        sim.wire
            .iter()
            .map(|(_, _, d)| d.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn a_member_announcing_another_nodes_block_gets_neither_its_traffic_nor_its_sources() {
    let mut c2 = config(2, b"owner secret", vec![0]);
    c2.blocks.push(block(1)); // node 2 also claims node 1's block
    c2.blocks.push("10.99.0.0/24".parse().unwrap()); // and one outside the range
    let mut sim = Sim::new(vec![
        config(0, b"owner secret", vec![1]),
        config(1, b"owner secret", vec![]),
        c2,
    ]);
    sim.cut.push(2); // node 2 comes later: node 1 owns its block first
    sim.run_for(Duration::from_secs(3));
    sim.cut.clear();
    // Long enough for several rekeys, so a fresher handshake cannot move the block.
    sim.run_for(Duration::from_secs(400));
    assert_eq!(sim.established(0), 2);
    let to_one = ipv4(pod(0, 1), pod(1, 7), b"for node 1");
    assert!(matches!(sim.send(0, &to_one), Encap::Send { .. }));
    assert_eq!(sim.tun[1].last().unwrap(), &to_one);
    assert!(sim.tun[2].iter().all(|p| p != &to_one));
    let outside = ipv4(pod(0, 1), Ipv4Addr::new(10, 99, 0, 5), b"x");
    assert_eq!(sim.send(0, &outside), Encap::Dropped(DropReason::NoRoute));
    // Node 2 speaking for node 1's addresses is refused at node 0.
    let spoof = ipv4(pod(1, 7), pod(0, 1), b"pretending");
    assert!(matches!(sim.send(2, &spoof), Encap::Send { .. }));
    assert!(sim.tun[0].iter().all(|p| p != &spoof));
    assert_eq!(sim.node(0).total_drops(DropReason::SourceNotAllowed), 1);
}

#[test]
fn a_restarted_peer_with_a_new_block_is_routed_to_its_new_block() {
    let mut sim = Sim::new(vec![
        config(0, b"renumber secret", vec![1]),
        config(1, b"renumber secret", vec![]),
    ]);
    sim.run_for(Duration::from_secs(2));
    let mut c = config(1, b"renumber secret", vec![0]);
    c.blocks = vec!["10.32.9.0/24".parse().unwrap()];
    let now = sim.now;
    sim.nodes[1] = Some(Node::new(c, now, [0x77; 32]));
    sim.run_for(Duration::from_secs(3));
    let p = ipv4(pod(0, 1), Ipv4Addr::new(10, 32, 9, 9), b"renumbered");
    assert!(matches!(sim.send(0, &p), Encap::Send { .. }));
    assert_eq!(sim.tun[1].last().unwrap(), &p);
}

#[test]
fn both_sides_know_the_round_trip_time() {
    let mut sim = Sim::new(vec![
        config(0, b"rtt secret rtt!!", vec![1]),
        config(1, b"rtt secret rtt!!", vec![]),
    ]);
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    for i in 0..2 {
        let st = sim.node(i).peer_status(now);
        assert!(st[0].rtt_us.is_some(), "node {i}: {st:?}");
    }
}

/// Delivers every datagram node `from` queued to its addressee, at the sim's clock; returns
/// how many there were and their lengths.
fn hop(sim: &mut Sim, from: usize) -> Vec<usize> {
    let mut lens = Vec::new();
    let src = sim.addrs[from];
    let mut out = Vec::new();
    while let Some(t) = sim.node(from).poll_transmit() {
        out.push(t);
    }
    for mut t in out {
        lens.push(t.payload.len());
        let j = sim.index_of(t.to).unwrap();
        let now = sim.now;
        let _ = sim.node(j).decapsulate(now, src, &mut t.payload);
    }
    lens
}

/// The echo answers node `i` reported since the last call (its other events are dropped).
fn echo_answers(sim: &mut Sim, i: usize) -> Vec<(u64, Duration)> {
    let mut out = Vec::new();
    while let Some(ev) = sim.node(i).poll_event() {
        if let mesh_core::Event::EchoAnswered { id, rtt } = ev {
            out.push((id, rtt));
        }
    }
    out
}

#[test]
fn echo_probes_measure_the_round_trip_on_the_virtual_clock_at_any_size() {
    let mut sim = Sim::new(vec![
        config(0, b"echo secret echo", vec![1]),
        config(1, b"echo secret echo", vec![]),
    ]);
    sim.run_for(Duration::from_secs(2));
    let b = keypair(1).public();
    for (id, len) in [(1u64, 16usize), (2, 1420)] {
        let now = sim.now;
        sim.node(0).ping(now, b, id, len).unwrap();
        sim.now += Duration::from_millis(3);
        let there = hop(&mut sim, 0);
        assert_eq!(there.len(), 1);
        sim.now += Duration::from_millis(4);
        let back = hop(&mut sim, 1);
        assert_eq!(back, there, "the reply is as long as the request");
        assert_eq!(
            echo_answers(&mut sim, 0),
            vec![(id, Duration::from_millis(7))],
            "one answer, on the virtual clock"
        );
        assert!(echo_answers(&mut sim, 0).is_empty(), "reported once");
    }
    // A lost probe has no answer; forgetting it is fine.
    let now = sim.now;
    sim.node(0).ping(now, b, 3, 16).unwrap();
    while sim.node(0).poll_transmit().is_some() {}
    assert!(echo_answers(&mut sim, 0).is_empty());
    sim.node(0).forget_ping(3);
    // Pinging oneself is refused; a peer without a session starts a handshake.
    let a = keypair(0).public();
    assert_eq!(
        sim.node(0).ping(now, a, 4, 16),
        Err(mesh_core::PingError::IsSelf)
    );
    let stranger = keypair(7).public();
    assert_eq!(
        sim.node(0).ping(now, stranger, 5, 16),
        Err(mesh_core::PingError::NoSession)
    );
    // No echo message was ever counted as bad control.
    assert_eq!(sim.node(1).total_drops(DropReason::BadControl), 0);
}

#[test]
fn a_bootstrap_endpoint_added_at_run_time_is_reached_and_a_forgotten_one_is_not_tried() {
    let mut sim = Sim::new(vec![
        config(0, b"connect secret!!", vec![]),
        config(1, b"connect secret!!", vec![]),
        config(2, b"connect secret!!", vec![]),
    ]);
    sim.cut.push(2);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.established(0), 0);
    let now = sim.now;
    assert!(sim.node(0).add_bootstrap(now, addr(1)));
    assert!(!sim.node(0).add_bootstrap(now, addr(1)), "already tried");
    assert!(sim.node(0).add_bootstrap(now, addr(2)));
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.established(0), 1);
    assert_eq!(sim.node(0).bootstrap_endpoints(), vec![addr(1), addr(2)]);
    let shown = |sim: &mut Sim| {
        let now = sim.now;
        sim.node(0)
            .peer_status(now)
            .iter()
            .any(|p| p.endpoint == addr(2).to_string())
    };
    assert!(shown(&mut sim), "the unanswered endpoint is listed");

    assert!(sim.node(0).forget_bootstrap(addr(2)));
    assert!(!sim.node(0).forget_bootstrap(addr(2)), "forgotten already");
    assert!(!shown(&mut sim));
    assert_eq!(sim.node(0).bootstrap_endpoints(), vec![addr(1)]);
    let before = sim.wire.len();
    sim.run_for(Duration::from_secs(30));
    assert!(
        !sim.wire[before..].iter().any(|(_, to, _)| *to == addr(2)),
        "a forgotten endpoint gets no more handshakes"
    );
    // Connecting again revives it.
    let now = sim.now;
    assert!(sim.node(0).add_bootstrap(now, addr(2)));
    assert!(shown(&mut sim));
}

/// Handshake initiations on the wire from `from`, by pattern byte (1 = IK, 2 = XX).
fn initiations(sim: &Sim, from: usize) -> Vec<u8> {
    sim.wire
        .iter()
        .filter(|(f, _, d)| *f == addr(from) && d.first() == Some(&1))
        .map(|(_, _, d)| d[1])
        .collect()
}

#[test]
fn a_bootstrap_address_added_at_run_time_is_contacted() {
    let mut sim = Sim::new(vec![
        config(0, b"cluster secret one", vec![]),
        config(1, b"cluster secret one", vec![]),
    ]);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.established(0), 0, "nobody knows anybody yet");
    let now = sim.now;
    assert!(sim.node(0).add_bootstrap(now, addr(1)));
    assert!(
        !sim.node(0).add_bootstrap(now, addr(1)),
        "the same address twice is one bootstrap"
    );
    sim.run_for(Duration::from_secs(2));
    assert_eq!((sim.established(0), sim.established(1)), (1, 1));
    assert_eq!(initiations(&sim, 0).first(), Some(&2), "a bare address: XX");
    let p = ipv4(pod(0, 10), pod(1, 20), b"after a runtime bootstrap");
    assert!(matches!(sim.send(0, &p), Encap::Send { .. }));
    assert_eq!(sim.tun[1].last().unwrap(), &p);
}

#[test]
fn a_removed_bootstrap_address_is_no_longer_contacted_until_added_again() {
    let mut sim = Sim::new(vec![config(0, b"cluster secret one", vec![])]);
    let nobody = addr(5);
    let now = sim.now;
    assert!(!sim.node(0).forget_bootstrap(nobody), "not one yet");
    assert!(sim.node(0).add_bootstrap(now, nobody));
    sim.run_for(Duration::from_secs(5));
    let to_nobody = |sim: &Sim| sim.wire.iter().filter(|(_, t, _)| *t == nobody).count();
    let before = to_nobody(&sim);
    assert!(before > 0, "contacted while it is a bootstrap address");
    let listed = |sim: &mut Sim| {
        let now = sim.now;
        sim.node(0)
            .peer_status(now)
            .iter()
            .any(|p| p.endpoint == nobody.to_string())
    };
    assert!(listed(&mut sim));
    assert!(sim.node(0).forget_bootstrap(nobody));
    assert!(!sim.node(0).forget_bootstrap(nobody), "once");
    sim.run_for(Duration::from_secs(60));
    assert_eq!(to_nobody(&sim), before, "no handshake after the removal");
    assert!(!listed(&mut sim), "not listed any more");
    let now = sim.now;
    assert!(sim.node(0).add_bootstrap(now, nobody), "back again");
    sim.run_for(Duration::from_secs(2));
    assert!(to_nobody(&sim) > before);
}

#[test]
fn a_known_peer_added_at_run_time_is_reached_with_ik() {
    let mut sim = Sim::new(vec![
        config(0, b"cluster secret one", vec![]),
        config(1, b"cluster secret one", vec![]),
    ]);
    sim.run_for(Duration::from_secs(1));
    let now = sim.now;
    let own = keypair(0).public();
    assert!(!sim.node(0).add_known_peer(now, own, addr(0)), "not itself");
    let key = keypair(1).public();
    assert!(sim.node(0).add_known_peer(now, key, addr(1)));
    assert!(
        !sim.node(0).add_known_peer(now, key, addr(1)),
        "known already"
    );
    // The endpoint as a bootstrap address too, as meshd --kube adds it: resolved to the
    // key, so the first contact is IK, not XX.
    assert!(sim.node(0).add_bootstrap(now, addr(1)));
    sim.run_for(Duration::from_secs(2));
    assert_eq!((sim.established(0), sim.established(1)), (1, 1));
    let patterns = initiations(&sim, 0);
    assert!(
        !patterns.is_empty() && patterns.iter().all(|p| *p == 1),
        "{patterns:?}"
    );
}

#[test]
fn a_ring_founded_at_run_time_gives_the_founder_a_block() {
    let mut c = config(0, b"cluster secret one", vec![]);
    c.ring = Some(mesh_core::RingConfig {
        block_prefix: 24,
        state: None,
        active: Vec::new(),
        found_nonce: None,
    });
    let mut sim = Sim::new(vec![c]);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.node(0).active_blocks().is_empty());
    assert_eq!(sim.node(0).ring_id(), None);
    let now = sim.now;
    assert!(sim.node(0).found_ring(now, [7; 16]));
    assert!(!sim.node(0).found_ring(now, [8; 16]), "one ring only");
    let ring = sim.node(0).ring_id().unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.node(0).ring_id(), Some(ring));
    assert_eq!(sim.node(0).active_blocks().len(), 1);
    let own = keypair(0).public();
    assert!(sim.node(0).owns_blocks(&own));
    assert!(!sim.node(0).owns_blocks(&keypair(1).public()));
    let mut events = Vec::new();
    while let Some(e) = sim.node(0).poll_event() {
        events.push(e);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, mesh_core::Event::RingChanged)),
        "{events:?}"
    );
}

#[test]
fn a_refused_reclaim_says_who_is_to_blame() {
    use mesh_core::ReclaimError;
    let fixed = config(0, b"cluster secret one", vec![]);
    let mut ringed = config(1, b"cluster secret one", vec![]);
    ringed.ring = Some(mesh_core::RingConfig {
        block_prefix: 24,
        state: None,
        active: Vec::new(),
        found_nonce: None,
    });
    let mut sim = Sim::new(vec![fixed, ringed]);
    let now = sim.now;
    let (other, ringed_key) = (keypair(2).public(), keypair(1).public());
    let err = sim.node(0).reclaim(now, other).unwrap_err();
    assert_eq!(err, ReclaimError::FixedBlocks);
    assert_eq!(
        err.to_string(),
        "this node runs with a fixed --block: there is no address ring to reclaim from"
    );
    assert_eq!(
        sim.node(1).reclaim(now, other),
        Err(ReclaimError::Ring(mesh_ipam::ReclaimError::NotInRing))
    );
    assert!(sim.node(1).found_ring(now, [7; 16]));
    assert_eq!(
        sim.node(1).reclaim(now, ringed_key),
        Err(ReclaimError::Ring(mesh_ipam::ReclaimError::OwnNode))
    );
    assert_eq!(sim.node(1).reclaim(now, other), Ok(Vec::new()));
}

#[test]
fn sessions_use_aes_256_gcm_only_where_both_ends_offer_it() {
    // config(): node 0 offers ChaCha20-Poly1305 only, nodes 1 and 2 AES-256-GCM too.
    let mut sim = Sim::new(vec![
        config(0, b"three nodes!", vec![1, 2]),
        config(1, b"three nodes!", vec![2]),
        config(2, b"three nodes!", vec![]),
    ]);
    sim.run_for(Duration::from_secs(3));
    let now = sim.now;
    for i in 0..3 {
        let keys: Vec<String> = (0..3).map(|j| keypair(j).public().to_string()).collect();
        for p in sim.node(i).peer_status(now) {
            let j = keys
                .iter()
                .position(|k| *k == p.public_key)
                .expect("a known peer");
            let want = if i == 0 || j == 0 {
                "chacha20-poly1305"
            } else {
                "aes-256-gcm"
            };
            assert_eq!(p.cipher.as_deref(), Some(want), "{i} -> {j}");
        }
    }
    // Data flows over both kinds of session, both ways.
    for (a, b) in [(0, 1), (1, 0), (1, 2), (2, 1), (2, 0)] {
        let p = ipv4(pod(a, 5), pod(b, 6), &[a as u8, b as u8]);
        assert!(matches!(sim.send(a, &p), Encap::Send { .. }), "{a}->{b}");
        assert_eq!(sim.tun[b].last().unwrap(), &p, "{a}->{b}");
    }
}

/// The first datagram on the wire from `from` to `to` whose type byte is `kind`.
fn first_on_wire(sim: &Sim, from: usize, to: usize, kind: u8) -> Vec<u8> {
    sim.wire
        .iter()
        .find(|(f, t, d)| *f == addr(from) && *t == addr(to) && d.first() == Some(&kind))
        .map(|(_, _, d)| d.clone())
        .unwrap_or_else(|| panic!("no datagram of type {kind} from {from} to {to} on the wire"))
}

/// An on-path attacker records a genuine initiation and sends it again, from the same and
/// from another address, now and after the skew window: each copy is refused after a hash
/// and a lookup, with no handshake work (the responder's work counter does not move), and
/// the session it would have disturbed keeps working. Before handshake MACs, each replay
/// cost the responder a full IK response (five X25519 operations) and an unconfirmed slot.
#[test]
fn a_replayed_initiation_costs_no_public_key_work() {
    let mut sim = Sim::new(vec![
        config(0, b"replay secret!!!", vec![1]),
        config(1, b"replay secret!!!", vec![]),
    ]);
    sim.run_for(Duration::from_secs(3));
    assert_eq!((sim.established(0), sim.established(1)), (1, 1));
    let init = first_on_wire(&sim, 0, 1, 1);
    let now = sim.now;
    let work = sim.node(1).handshake_status(now).responded;
    assert!(work > 0);
    for from in [
        addr(0),
        SocketAddr::from((Ipv4Addr::new(198, 18, 7, 7), 6788)),
    ] {
        let mut copy = init.clone();
        assert_eq!(
            sim.node(1).decapsulate(now, from, &mut copy),
            Decap::Dropped(DropReason::HandshakeReplay)
        );
    }
    assert_eq!(sim.node(1).handshake_status(now).responded, work);
    // Long after, the timestamp is out of the window: still no work.
    sim.run_for(Duration::from_secs(400));
    let now = sim.now;
    let work = sim.node(1).handshake_status(now).responded;
    let mut copy = init.clone();
    assert_eq!(
        sim.node(1).decapsulate(now, addr(0), &mut copy),
        Decap::Dropped(DropReason::HandshakeReplay)
    );
    assert_eq!(sim.node(1).handshake_status(now).responded, work);
    let p = ipv4(pod(0, 1), pod(1, 2), b"still up");
    assert!(matches!(sim.send(0, &p), Encap::Send { .. }));
    assert_eq!(sim.tun[1].last().unwrap(), &p);
}

/// A handshake response that fails authentication must not end the pending handshake:
/// a member holding the secret (so its forgery passes mac1) answers first with a forged
/// response; the genuine response that follows still completes the handshake. An outsider's
/// forgery fails mac1 already. Before, the first response, forged or not, consumed the
/// pending handshake and the genuine one was dropped as `unknown_session`.
#[test]
fn a_forged_response_leaves_the_pending_handshake_in_place() {
    const SECRET: &[u8] = b"forgery secret!!";
    let mut sim = Sim::new(vec![config(0, SECRET, vec![1]), config(1, SECRET, vec![])]);
    let now = sim.now;
    sim.node(0).handle_timeout(now);
    let init = sim.node(0).poll_transmit().unwrap();
    let mut d = init.payload.clone();
    assert_eq!(
        sim.node(1).decapsulate(now, addr(0), &mut d),
        Decap::Consumed
    );
    let genuine = sim.node(1).poll_transmit().unwrap().payload;
    let psk = ClusterPsk::derive(SECRET);
    // XX: the response's mac1 is keyed by the cluster secret alone.
    let mut forged = genuine.clone();
    forged[20] ^= 0x40;
    mesh_crypto::seal_macs(&mut forged, &mesh_crypto::Mac1Key::anonymous(&psk), None);
    assert_eq!(
        sim.node(0).decapsulate(now, addr(1), &mut forged.clone()),
        Decap::Dropped(DropReason::HandshakeFailed)
    );
    let mut outsider = genuine.clone();
    outsider[20] ^= 0x40;
    assert_eq!(
        sim.node(0).decapsulate(now, addr(1), &mut outsider),
        Decap::Dropped(DropReason::HandshakeMac)
    );
    let mut d = genuine.clone();
    assert_eq!(
        sim.node(0).decapsulate(now, addr(1), &mut d),
        Decap::Consumed
    );
    sim.collect_transmits();
    sim.settle();
    assert_eq!((sim.established(0), sim.established(1)), (1, 1));
}

/// Retries stop after REKEY_ATTEMPT_TIME (90 s) without an answer, and start again when
/// the address is needed again (here `meshctl connect`, i.e. `add_bootstrap`). Before, an
/// address nobody answers at was tried every 30 s for ever. A node with no session at all
/// keeps trying its bootstrap addresses: reaching the cluster is a standing need.
#[test]
fn handshake_retries_stop_after_rekey_attempt_time_and_start_again_on_demand() {
    let nobody = addr(9);
    let mut sim = Sim::new(vec![
        config(0, b"attempt secret!!", vec![1, 9]),
        config(1, b"attempt secret!!", vec![]),
    ]);
    let to_nobody = |sim: &Sim| {
        sim.wire
            .iter()
            .filter(|(f, t, d)| *f == addr(0) && *t == nobody && d[0] == 1)
            .count()
    };
    sim.run_for(Duration::from_secs(100));
    assert_eq!(sim.established(0), 1);
    let in_round = to_nobody(&sim);
    assert!(in_round >= 4, "retried within the round ({in_round})");
    sim.run_for(Duration::from_secs(600));
    assert_eq!(
        to_nobody(&sim),
        in_round,
        "no retries after the round ran out"
    );
    let now = sim.now;
    assert!(sim.node(0).add_bootstrap(now, nobody), "needed again");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(to_nobody(&sim), in_round + 1, "a new round starts");

    // Alone, a node keeps trying.
    let mut alone = Sim::new(vec![config(0, b"attempt secret!!", vec![9])]);
    alone.run_for(Duration::from_secs(100));
    let first = to_nobody(&alone);
    alone.run_for(Duration::from_secs(300));
    assert!(to_nobody(&alone) >= first + 9, "every 30 s while alone");
}

/// A hostile member (it holds the cluster secret, so its initiations pass mac1) floods node
/// 1 with initiations from spoofed sources, more than the handshake budget. Past the budget
/// node 1 answers with cookies instead of handshakes; a real peer that starts a handshake
/// during the flood gets a cookie, comes back with it from the address it was made for, and
/// gets its session. A forged cookie reply and a genuine one replayed change nothing.
#[test]
fn under_a_member_flood_a_real_peer_gets_in_with_a_cookie() {
    const SECRET: &[u8] = b"cookie flood sec";
    let mut c0 = config(0, SECRET, vec![]);
    c0.known_peers = vec![(keypair(1).public(), addr(1))];
    let mut sim = Sim::new(vec![c0, config(1, SECRET, vec![])]);
    let psk = ClusterPsk::derive(SECRET);
    let hostile = keypair(7);
    let target = keypair(1).public();
    let now = sim.now;
    let flood = mesh_core::gate::GLOBAL_BURST as u32 + 300;
    for i in 0..flood {
        let mut hs =
            mesh_crypto::Handshake::initiate_ik(&hostile, &target, &psk, [i as u8; 32]).unwrap();
        let mut msg = vec![0u8; 16 + 200];
        let n = hs.write_message(&[], &mut msg[16..]).unwrap();
        msg.truncate(16 + n + 32);
        let h: &mut [u8; 16] = (&mut msg[..16]).try_into().unwrap();
        mesh_proto::datagram::emit_init_header(
            h,
            mesh_proto::datagram::Pattern::Ik,
            i + 1,
            1_800_000_000_000,
        );
        mesh_crypto::seal_macs(
            &mut msg,
            &mesh_crypto::Mac1Key::for_receiver(&psk, &target),
            None,
        );
        let spoofed = SocketAddr::from((
            Ipv4Addr::new(198, 19, (i / 250) as u8, (i % 250) as u8 + 1),
            6788,
        ));
        let _ = sim.node(1).decapsulate(now, spoofed, &mut msg);
    }
    // The flood's answers go to the spoofed addresses, nowhere in this network.
    while sim.node(1).poll_transmit().is_some() {}
    let status = sim.node(1).handshake_status(now);
    assert!(status.under_load);
    assert_eq!(
        status.responded,
        u64::from(mesh_core::gate::GLOBAL_BURST as u32)
    );
    assert_eq!(status.cookies_sent, 300);
    assert_eq!(sim.node(1).total_drops(DropReason::HandshakeCookie), 300);

    // A forged cookie reply to node 0, before it even started: unknown session.
    let mut forged = [0u8; 52];
    mesh_proto::datagram::emit_cookie_reply(&mut forged, 1234, &[1; 12], &[2; 32]);
    assert_eq!(
        sim.node(0).decapsulate(now, addr(1), &mut forged),
        Decap::Dropped(DropReason::UnknownSession)
    );

    // The real peer: a packet for node 1 starts its handshake.
    let p = ipv4(pod(0, 1), pod(1, 2), b"through the flood");
    let now = sim.now;
    sim.node(0).handle_timeout(now);
    sim.settle();
    assert_eq!((sim.established(0), sim.established(1)), (1, 1));
    assert_eq!(sim.node(0).handshake_status(now).cookies_received, 1);
    let cookie_reply = first_on_wire(&sim, 1, 0, 7);
    // Replayed: it names an initiation that is gone.
    assert_eq!(
        sim.node(0)
            .decapsulate(now, addr(1), &mut cookie_reply.clone()),
        Decap::Dropped(DropReason::UnknownSession)
    );
    assert!(matches!(sim.send(0, &p), Encap::Send { .. }));
    assert_eq!(sim.tun[1].last().unwrap(), &p);
}
