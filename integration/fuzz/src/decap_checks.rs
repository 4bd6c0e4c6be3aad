//! The check behind the `decapsulate` fuzz target: `mesh_core::Node::decapsulate` fed
//! arbitrary datagrams.
//!
//! Shared by the fuzz target (through this crate) and `router/core/tests/decap_garbage.rs`,
//! which includes this file by path. Each input builds fresh nodes on a virtual clock (so a
//! crash reproduces from its input alone) and is read as a script:
//!
//! ```text
//! byte 0      bit 0: 0 = no session yet (another node's handshake initiation is on hand),
//!             1 = a session with that node is established and two sealed data datagrams
//!             from it are on hand
//! then ops    [op][len][len bytes of argument], the last one cut short by the input's end
//!   op % 6 == 0  the argument is a datagram, fed as it is
//!             1  a genuine datagram (chosen by op / 6), each argument byte pair (i, x) XORing x
//!                into byte i; no pairs replays it unchanged
//!             2  a genuine datagram cut to argument[0] bytes, then the rest of the argument
//!                appended
//!             3  the clock moves argument[0] seconds and the node handles its timeout
//!             4  a datagram the node under test sent itself, fed back to it
//!             5  as 0, but from an address the node has never heard of
//! ```
//!
//! Properties: no panic; `Decap::Deliver` only for a genuine sealed datagram never delivered
//! before, with the plaintext that was sealed; every `Decap::Dropped(reason)` counted once.

use mesh_core::{Decap, DropReason, Encap, Node, NodeConfig};
use mesh_crypto::{ClusterPsk, StaticKeypair, TAG_LEN};
use mesh_proto::datagram::DATA_HEADER_LEN;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The cluster secret of the fuzzed nodes (also `handshake_checks`').
pub const SECRET: &[u8] = b"fuzzing cluster secret";
/// Bound on datagrams moved while the two nodes shake hands.
const SETTLE_STEPS: usize = 64;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(198, 18, 0, i + 1), 6788))
}

/// Node `i`'s configuration (key `[i + 1; 32]`, block 10.32.(i+1).0/24), bootstrapping to
/// `bootstrap` (also used by `handshake_checks`).
pub fn config(i: u8, bootstrap: Vec<SocketAddr>) -> NodeConfig {
    let block = match ipnet::Ipv4Net::new(Ipv4Addr::new(10, 32, i + 1, 0), 24) {
        Ok(b) => b,
        Err(e) => panic!("block: {e}"),
    };
    let range = match ipnet::Ipv4Net::new(Ipv4Addr::new(10, 32, 0, 0), 16) {
        Ok(r) => r,
        Err(e) => panic!("range: {e}"),
    };
    NodeConfig {
        name: format!("n{i}"),
        range,
        keypair: StaticKeypair::generate([i + 1; 32]),
        psk: ClusterPsk::derive(SECRET),
        blocks: vec![block],
        bootstrap,
        known_peers: Vec::new(),
        generation: 1,
        advertise: None,
        dead_after: mesh_core::DEFAULT_DEAD_AFTER,
        gossip: mesh_core::GossipConfig::default(),
        ring: None,
        ciphers: mesh_crypto::CipherSet::with_aes(i.is_multiple_of(2)),
        unix_time: Duration::from_secs(1_800_000_000),
    }
}

/// A minimal IPv4 packet from node `from`'s block to node `to`'s.
fn ipv4(from: u8, to: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[9] = 17;
    p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p[12..16].copy_from_slice(&[10, 32, from + 1, 7]);
    p[16..20].copy_from_slice(&[10, 32, to + 1, 9]);
    p.extend_from_slice(payload);
    p
}

/// Node `a` (bootstrapping to `b`) and node `b`, the one under test.
struct Pair {
    now: Instant,
    a: Node,
    b: Node,
    /// Datagrams `a` really sent, and for sealed data the packet inside.
    genuine: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Genuine sealed datagrams `b` already delivered.
    delivered: Vec<Vec<u8>>,
    /// What `b` sent (never delivered anywhere).
    from_b: Vec<Vec<u8>>,
    outcome: Outcome,
}

/// What the node under test answered to one input's datagrams.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// `Decap::Deliver`.
    pub delivered: usize,
    /// `Decap::Consumed`.
    pub consumed: usize,
    /// `Decap::Dropped(_)`.
    pub dropped: usize,
}

impl Pair {
    fn new(established: bool) -> Self {
        let now = Instant::now();
        let mut p = Self {
            now,
            a: Node::new(config(0, vec![addr(1)]), now, [0x40; 32]),
            b: Node::new(config(1, Vec::new()), now, [0x41; 32]),
            genuine: Vec::new(),
            delivered: Vec::new(),
            from_b: Vec::new(),
            outcome: Outcome::default(),
        };
        p.a.handle_timeout(now);
        if !established {
            while let Some(t) = p.a.poll_transmit() {
                p.genuine.push((t.payload, None));
            }
            assert!(
                !p.genuine.is_empty(),
                "a bootstrapping node sends an initiation"
            );
            return p;
        }
        for _ in 0..SETTLE_STEPS {
            let mut moved = false;
            while let Some(t) = p.a.poll_transmit() {
                moved = true;
                let mut d = t.payload;
                let _ = p.b.decapsulate(now, addr(0), &mut d);
            }
            while let Some(t) = p.b.poll_transmit() {
                moved = true;
                let mut d = t.payload;
                let _ = p.a.decapsulate(now, addr(1), &mut d);
            }
            if !moved {
                break;
            }
        }
        assert_eq!(p.a.established_peers(), 1, "handshake did not complete");
        assert_eq!(p.b.established_peers(), 1, "handshake did not complete");
        for payload in [&b"first"[..], b"second packet"] {
            let packet = ipv4(0, 1, payload);
            let mut buf = vec![0u8; DATA_HEADER_LEN + packet.len() + TAG_LEN];
            buf[DATA_HEADER_LEN..DATA_HEADER_LEN + packet.len()].copy_from_slice(&packet);
            match p.a.encapsulate(now, &mut buf, packet.len()) {
                Encap::Send { to, len } => {
                    assert_eq!(to, addr(1));
                    buf.truncate(len);
                    p.genuine.push((buf, Some(packet)));
                }
                other => panic!("an established node does not send: {other:?}"),
            }
        }
        p
    }

    fn counts(&self) -> Vec<u64> {
        DropReason::ALL
            .iter()
            .map(|&r| self.b.total_drops(r))
            .collect()
    }

    fn feed(&mut self, from: SocketAddr, datagram: &[u8]) {
        let mut buf = datagram.to_vec();
        let before = self.counts();
        let got = self.b.decapsulate(self.now, from, &mut buf);
        let after = self.counts();
        match got {
            Decap::Deliver { start, len } => {
                let Some(end) = start.checked_add(len).filter(|&e| e <= buf.len()) else {
                    panic!("Deliver {start}+{len} outside a {}-byte buffer", buf.len());
                };
                let Some((_, Some(packet))) = self.genuine.iter().find(|(g, _)| g == datagram)
                else {
                    panic!("delivered a datagram nobody sealed: {datagram:02x?}");
                };
                assert!(
                    !self.delivered.iter().any(|d| d == datagram),
                    "delivered a replayed datagram: {datagram:02x?}"
                );
                assert_eq!(&buf[start..end], &packet[..], "delivered other bytes");
                self.delivered.push(datagram.to_vec());
                self.outcome.delivered += 1;
            }
            Decap::Dropped(reason) => {
                let i = DropReason::ALL.iter().position(|&r| r == reason);
                let Some(i) = i else {
                    panic!("{reason:?} is not in DropReason::ALL");
                };
                assert_eq!(
                    after[i],
                    before[i] + 1,
                    "Dropped({reason:?}) counted {} times",
                    after[i] as i128 - before[i] as i128
                );
                self.outcome.dropped += 1;
            }
            Decap::Consumed => self.outcome.consumed += 1,
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(t) = self.b.poll_transmit() {
            if self.from_b.len() < 16 {
                self.from_b.push(t.payload);
            }
        }
        while self.b.poll_event().is_some() {}
    }

    fn tick(&mut self, secs: u8) {
        self.now += Duration::from_secs(u64::from(secs));
        if self.b.poll_timeout().is_some_and(|t| t <= self.now) {
            self.b.handle_timeout(self.now);
        }
        let _ = self.b.peer_status(self.now);
        self.drain();
    }
}

/// Runs one input (see the module docs) and says what the node answered.
pub fn fuzz_decapsulate(data: &[u8]) -> Outcome {
    let Some((&mode, mut rest)) = data.split_first() else {
        return Outcome::default();
    };
    let mut pair = Pair::new(mode & 1 == 1);
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (arg, next) = tail.split_at(n);
        rest = next;
        match op % 6 {
            0 => pair.feed(addr(0), arg),
            1 | 2 => {
                let pick = usize::from(op / 6) % pair.genuine.len();
                let mut d = pair.genuine[pick].0.clone();
                if op % 6 == 1 {
                    for c in arg.chunks_exact(2) {
                        if !d.is_empty() {
                            let at = usize::from(c[0]) % d.len();
                            d[at] ^= c[1];
                        }
                    }
                } else {
                    let keep = arg.first().map_or(d.len(), |&k| usize::from(k));
                    d.truncate(keep);
                    d.extend_from_slice(arg.get(1..).unwrap_or_default());
                }
                pair.feed(addr(0), &d);
            }
            3 => pair.tick(arg.first().copied().unwrap_or(1)),
            4 => {
                if !pair.from_b.is_empty() {
                    let pick = usize::from(op / 6) % pair.from_b.len();
                    let d = pair.from_b[pick].clone();
                    pair.feed(addr(1), &d);
                }
            }
            _ => pair.feed(addr(9), arg),
        }
    }
    pair.outcome
}
