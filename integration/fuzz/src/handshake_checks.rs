//! The check behind the `handshake` fuzz target: handshake messages and cookie replies of
//! protocol version 2, made by someone who holds the cluster secret (so their MACs verify and
//! the input reaches the gate's later checks and the Noise code), fed to a node.
//!
//! Shared by the fuzz target (through this crate) and `router/core/tests/handshake_garbage.rs`,
//! which includes this file by path. Each input builds a fresh node on a virtual clock and is
//! read as a script of ops `[op][len][len bytes of argument]`, the last one cut short:
//!
//! ```text
//! op % 5 == 0  the argument is a datagram, fed as it is
//!           1  a handshake message of type 1 + (op / 5) % 3 (init, response, final) whose
//!              fields come from the argument (pattern, indices, timestamp offset from the
//!              node's clock in seconds, Noise part), its MACs sealed with the cluster secret
//!              (mac1 for the node, mac2 zeros)
//!           2  a cookie reply naming the index in the argument, with the argument's bytes
//!              as nonce and sealed cookie
//!           3  the clock moves argument[0] seconds and the node handles its timeout
//!           4  the last datagram fed, fed again (a replay)
//! ```
//!
//! Properties: no panic; every `Dropped(reason)` counted exactly once; the node's handshake
//! work counter (`responded`) rises only with a `Consumed` initiation, never for a replay of
//! an initiation it already took, and never for a datagram whose MACs were not sealed with
//! the cluster secret.

use crate::decap_checks::{SECRET, config};
use mesh_core::{Decap, DropReason, Node};
use mesh_crypto::{ClusterPsk, Mac1Key, StaticKeypair, seal_macs};
use mesh_proto::datagram::{
    COOKIE_REPLY_LEN, HANDSHAKE_MACS_LEN, INIT_HEADER_LEN, Pattern, REPLY_HEADER_LEN,
    emit_cookie_reply, emit_init_header, emit_reply_header,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The node's wall clock at the start, ms since the Unix epoch (`decap_checks::config`'s).
const START_MS: u64 = 1_800_000_000_000;

/// The node under test: `decap_checks`' node 1, with no bootstrap address.
fn node() -> Node {
    Node::new(config(1, Vec::new()), Instant::now(), [0x42; 32])
}

/// What the node answered to one input's datagrams.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// `Decap::Consumed`.
    pub consumed: usize,
    /// `Decap::Dropped(_)`, of which `mac` for `handshake_mac`.
    pub dropped: usize,
    /// `Dropped(HandshakeMac)`.
    pub mac: usize,
    /// Initiations the node did handshake work for.
    pub responded: u64,
}

fn u32_of(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, x) in w.iter_mut().enumerate() {
        *x = b.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

/// A sealed handshake message built from `arg` (see the module docs).
fn handshake(kind: u8, arg: &[u8], now_ms: u64, psk: &ClusterPsk, me: &StaticKeypair) -> Vec<u8> {
    let noise = arg.get(10..).unwrap_or(&[]);
    let mut out;
    if kind == 0 {
        out = vec![0u8; INIT_HEADER_LEN + noise.len() + HANDSHAKE_MACS_LEN];
        let pattern = if arg.first().is_some_and(|b| b & 1 == 1) {
            Pattern::Xx
        } else {
            Pattern::Ik
        };
        // Up to ±10 minutes from the node's clock: inside and outside the skew window.
        let offset = i64::from(arg.get(5).copied().unwrap_or(0) as i8) * 5_000;
        let ts = now_ms.saturating_add_signed(offset);
        if let Ok(h) = (&mut out[..INIT_HEADER_LEN]).try_into() {
            emit_init_header(h, pattern, u32_of(arg, 1), ts);
        }
        out[INIT_HEADER_LEN..INIT_HEADER_LEN + noise.len()].copy_from_slice(noise);
        let key = match pattern {
            Pattern::Ik => Mac1Key::for_receiver(psk, &me.public()),
            Pattern::Xx => Mac1Key::anonymous(psk),
        };
        seal_macs(&mut out, &key, None);
    } else {
        out = vec![0u8; REPLY_HEADER_LEN + noise.len() + HANDSHAKE_MACS_LEN];
        if let Ok(h) = (&mut out[..REPLY_HEADER_LEN]).try_into() {
            emit_reply_header(h, kind == 2, u32_of(arg, 1), u32_of(arg, 5));
        }
        out[REPLY_HEADER_LEN..REPLY_HEADER_LEN + noise.len()].copy_from_slice(noise);
        let key = if arg.first().is_some_and(|b| b & 1 == 1) {
            Mac1Key::anonymous(psk)
        } else {
            Mac1Key::for_receiver(psk, &me.public())
        };
        seal_macs(&mut out, &key, None);
    }
    out
}

fn counts(node: &Node) -> Vec<u64> {
    DropReason::ALL
        .iter()
        .map(|&r| node.total_drops(r))
        .collect()
}

/// Runs one script; panics when a property fails.
pub fn fuzz_handshake(data: &[u8]) -> Outcome {
    let psk = ClusterPsk::derive(SECRET);
    let me = StaticKeypair::generate([2; 32]);
    let mut b = node();
    let start = Instant::now();
    let mut now = start;
    let from = SocketAddr::from((Ipv4Addr::new(198, 18, 0, 1), 6788));
    let mut outcome = Outcome::default();
    let mut last: Option<Vec<u8>> = None;
    // Initiations the node did work for: a copy must never cost work again.
    let mut taken: Vec<Vec<u8>> = Vec::new();
    // Datagrams this script sealed with the cluster secret.
    let mut sealed_here: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (arg, next) = tail.split_at(take);
        rest = next;
        let now_ms = START_MS + now.duration_since(start).as_millis() as u64;
        let (datagram, sealed_by_member) = match op % 5 {
            0 => (arg.to_vec(), false),
            1 => (handshake((op / 5) % 3, arg, now_ms, &psk, &me), true),
            2 => {
                let mut d = [0u8; COOKIE_REPLY_LEN];
                let mut nonce = [0u8; 12];
                let mut sealed = [0u8; 32];
                for (i, x) in nonce.iter_mut().chain(sealed.iter_mut()).enumerate() {
                    *x = arg.get(4 + i).copied().unwrap_or(0);
                }
                emit_cookie_reply(&mut d, u32_of(arg, 0), &nonce, &sealed);
                (d.to_vec(), false)
            }
            3 => {
                now += Duration::from_secs(u64::from(arg.first().copied().unwrap_or(1)));
                b.handle_timeout(now);
                while b.poll_transmit().is_some() {}
                continue;
            }
            _ => match last.clone() {
                Some(d) => (d, false),
                None => continue,
            },
        };
        if sealed_by_member {
            sealed_here.push(datagram.clone());
        }
        let replay_of_taken = taken.contains(&datagram);
        let work_before = b.handshake_status(now).responded;
        let before = counts(&b);
        let mut buf = datagram.clone();
        let got = b.decapsulate(now, from, &mut buf);
        let after = counts(&b);
        let work_after = b.handshake_status(now).responded;
        while b.poll_transmit().is_some() {}
        match got {
            Decap::Dropped(reason) => {
                let Some(i) = DropReason::ALL.iter().position(|&r| r == reason) else {
                    panic!("{reason:?} is not in DropReason::ALL");
                };
                assert_eq!(
                    after[i],
                    before[i] + 1,
                    "Dropped({reason:?}) not counted once"
                );
                outcome.dropped += 1;
                if reason == DropReason::HandshakeMac {
                    outcome.mac += 1;
                }
            }
            Decap::Consumed => outcome.consumed += 1,
            Decap::Deliver { .. } => panic!("delivered a packet without a session"),
        }
        if work_after > work_before {
            assert_eq!(work_after, work_before + 1, "one datagram, one handshake");
            assert!(!replay_of_taken, "a replayed initiation cost work again");
            assert!(
                sealed_here.contains(&datagram),
                "work for a datagram nobody sealed with the secret: {datagram:02x?}"
            );
            taken.push(datagram.clone());
        }
        last = Some(datagram);
    }
    outcome.responded = b.handshake_status(now).responded;
    outcome
}
