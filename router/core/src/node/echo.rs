//! The node's side of `meshctl ping`: echo requests sent inside a peer's session (so they
//! take the path data takes, direct or through a relay), replies as long as the request,
//! and the round trip of each answered probe, reported as an [`Event::EchoAnswered`].
//!
//! Also the bootstrap endpoints added and forgotten at run time (`meshctl connect` and
//! `forget`).

use super::{Bootstrap, Event, Node};
use mesh_crypto::PublicKey;
use mesh_proto::echo::{ECHO_HEADER_LEN, Echo};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

/// Probes waiting for an answer, at most (oldest go first).
const MAX_PROBES: usize = 256;
/// Largest echo message: a full 64 KB datagram less the sealing overhead.
pub const MAX_ECHO_LEN: usize = 65_535 - crate::DATA_OVERHEAD - 28;

/// Why a probe was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    /// The target is this node (caller's mistake).
    #[error("the target is this node itself")]
    IsSelf,
    /// No session with the peer yet: a handshake was started, try again shortly.
    #[error("no session with the peer yet (a handshake was started)")]
    NoSession,
}

/// Probes in flight.
#[derive(Debug, Default)]
pub(super) struct Probes {
    /// id -> (peer, sent at).
    pending: BTreeMap<u64, (PublicKey, Instant)>,
}

impl Node {
    /// Sends echo request `id`, `len` bytes of plaintext (clamped to 10..=[`MAX_ECHO_LEN`]),
    /// to peer `key` over its session; its round trip comes as [`Event::EchoAnswered`] once
    /// the reply came. Without a session it starts a handshake and fails with
    /// [`PingError::NoSession`].
    pub fn ping(
        &mut self,
        now: Instant,
        key: PublicKey,
        id: u64,
        len: usize,
    ) -> Result<(), PingError> {
        if key == self.keypair.public() {
            return Err(PingError::IsSelf);
        }
        let echo = Echo {
            reply: false,
            id,
            len: len.clamp(ECHO_HEADER_LEN, MAX_ECHO_LEN),
        };
        let mut msg = vec![0u8; echo.buffer_len()];
        let _ = echo.emit(&mut msg);
        if !self.send_plaintext(now, key, &msg) {
            if self.ensure_peer(now, key) {
                self.ensure_handshake(now, key);
            }
            return Err(PingError::NoSession);
        }
        let p = &mut self.probes;
        p.pending.insert(id, (key, now));
        while p.pending.len() > MAX_PROBES {
            p.pending.pop_first();
        }
        Ok(())
    }

    /// Stops waiting for probe `id` (the caller gave up on it).
    pub fn forget_ping(&mut self, id: u64) {
        self.probes.pending.remove(&id);
    }

    /// An echo message from peer `key`: a request is answered with a reply of the same
    /// length, a reply to one of our probes records its round trip. `false` if it does not
    /// parse.
    pub(super) fn on_echo(&mut self, now: Instant, key: PublicKey, msg: &[u8]) -> bool {
        let Ok(echo) = Echo::parse(msg) else {
            return false;
        };
        if !echo.reply {
            let reply = Echo {
                reply: true,
                ..echo
            };
            let mut out = vec![0u8; reply.buffer_len()];
            let _ = reply.emit(&mut out);
            self.send_plaintext(now, key, &out);
            return true;
        }
        let p = &mut self.probes;
        // Only a reply from the peer the probe went to counts.
        if p.pending.get(&echo.id).is_some_and(|(k, _)| *k == key)
            && let Some((_, sent)) = p.pending.remove(&echo.id)
        {
            self.events.push_back(Event::EchoAnswered {
                id: echo.id,
                rtt: now.saturating_duration_since(sent),
            });
        }
        true
    }

    /// Adds a bootstrap endpoint at run time, as `NodeConfig::bootstrap` does at start: the
    /// node handshakes with whoever answers there. `false` if it is tried already.
    pub fn add_bootstrap(&mut self, now: Instant, addr: SocketAddr) -> bool {
        if let Some(b) = self.bootstrap.iter_mut().find(|b| b.addr == addr) {
            // Asked for again: a round that ran out starts over.
            if !b.forgotten && !b.gave_up {
                return false;
            }
            b.forgotten = false;
            b.gave_up = false;
            b.round_started = None;
            b.attempts = 0;
            b.next_attempt = now;
        } else {
            #[allow(clippy::disallowed_methods)]
            // order-free: the lowest key among the peers at that address
            let resolved = self
                .peers
                .values()
                .filter(|p| p.endpoint == addr)
                .map(|p| p.key)
                .min();
            self.bootstrap.push(Bootstrap {
                addr,
                handshake: None,
                attempts: 0,
                next_attempt: now,
                resolved,
                is_self: false,
                forgotten: false,
                round_started: None,
                attempted_at: None,
                gave_up: false,
            });
        }
        self.schedule(now);
        true
    }

    /// Stops trying bootstrap endpoint `addr` (its handshake in flight is dropped). Sessions
    /// with whoever answered there stay. `false` if it was not a bootstrap endpoint.
    pub fn forget_bootstrap(&mut self, addr: SocketAddr) -> bool {
        // Entries are never removed: handshakes in flight name them by index.
        let Some(b) = self
            .bootstrap
            .iter_mut()
            .find(|b| b.addr == addr && !b.forgotten)
        else {
            return false;
        };
        b.forgotten = true;
        b.resolved = None;
        if let Some(h) = b.handshake.take() {
            self.slots.remove(&h);
        }
        true
    }

    /// The bootstrap endpoints tried now (given at start or added since, not forgotten).
    pub fn bootstrap_endpoints(&self) -> Vec<SocketAddr> {
        self.bootstrap
            .iter()
            .filter(|b| !b.forgotten)
            .map(|b| b.addr)
            .collect()
    }
}
