//! What a node keeps per peer it has (or wants) sessions with: key, endpoint, which sessions it
//! sends and receives on, handshake retry state, and counters.

use crate::drops::DropCounters;
use mesh_crypto::PublicKey;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Packets kept per peer while its session is being set up.
pub(crate) const QUEUE_LIMIT: usize = 64;

#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) key: PublicKey,
    pub(crate) endpoint: SocketAddr,
    /// The member our datagrams to this peer go through, when the direct path failed.
    pub(crate) relay: Option<PublicKey>,
    /// Index of a direct handshake tried while relayed (back to direct when it completes).
    pub(crate) probe: Option<u32>,
    pub(crate) next_probe: Instant,
    /// When we first asked the peer for an immediate answer because packets went
    /// unanswered, and how many times we have asked since (see `PATH_ASKS`).
    pub(crate) liveness_probe: Option<(Instant, u32)>,
    /// When the path last failed over (its session dropped, a new one being made through a
    /// relay); cleared when a session is made. See `Peer::failing_over`.
    pub(crate) failed_over_at: Option<Instant>,
    /// Highest info version of the peer we applied.
    pub(crate) info_version: u64,
    /// Highest version of *our* info the peer acknowledged.
    pub(crate) acked_our_info: u64,
    /// When our unacknowledged info was last sent (times the round trip when it is acked).
    pub(crate) info_sent_at: Option<Instant>,
    pub(crate) info_next_send: Instant,

    /// Session index we send on.
    pub(crate) current: Option<u32>,
    /// The session before it, still accepted for receiving.
    pub(crate) previous: Option<u32>,

    /// Index of our initiator handshake in flight.
    pub(crate) handshake: Option<u32>,
    pub(crate) handshake_started: Option<Instant>,
    /// Consecutive handshakes that got no answer.
    pub(crate) attempts: u32,
    /// No new initiation before this.
    pub(crate) next_attempt: Instant,
    /// First attempt of the current round of handshake attempts (cleared by a session).
    pub(crate) round_started: Option<Instant>,
    /// The round ran out (`REKEY_ATTEMPT_TIME` without a session): the timers retry no
    /// more; the next need for the peer (a packet, gossip, a ping) starts a new round.
    pub(crate) gave_up: bool,

    pub(crate) last_handshake: Option<Instant>,
    pub(crate) handshakes: u64,
    pub(crate) rtt: Option<Duration>,
    pub(crate) ever_established: bool,
    /// When the first session with this peer was made.
    pub(crate) first_established: Option<Instant>,
    pub(crate) last_rx: Option<Instant>,
    pub(crate) last_tx: Option<Instant>,
    /// Last IP packet sent or delivered on a session with the peer (not keepalives or
    /// control): a session nobody uses and that no gossip needs is let expire.
    pub(crate) last_data: Option<Instant>,

    pub(crate) queue: VecDeque<Vec<u8>>,
    /// Gossip messages received from the peer.
    pub(crate) gossip_rx: u64,
    /// Our XX third message and the session it completes, kept until the peer sends
    /// anything on that session: until then the peer may not have it (the message may be
    /// lost), so packets wait in `queue` and the message is sent again with our info.
    pub(crate) unconfirmed_final: Option<(u32, Vec<u8>)>,
    pub(crate) rx_packets: u64,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_packets: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) drops: DropCounters,
}

/// How long a peer whose path failed over still counts as a gossip neighbour with a session
/// while its new session (through a relay) is made: a few round trips and a handshake retry.
/// Without it a maintenance tick that fell in that window dropped the neighbour, and the
/// adjacency records of both nodes were published again for a cut of a few seconds.
pub(crate) const FAILOVER_GRACE: Duration = Duration::from_secs(5);

impl Peer {
    /// Its path failed over less than [`FAILOVER_GRACE`] ago and no session was made since.
    pub(crate) fn failing_over(&self, now: Instant) -> bool {
        self.failed_over_at
            .is_some_and(|t| now.saturating_duration_since(t) < FAILOVER_GRACE)
    }

    pub(crate) fn new(key: PublicKey, endpoint: SocketAddr, now: Instant) -> Self {
        Self {
            key,
            endpoint,
            relay: None,
            probe: None,
            next_probe: now,
            liveness_probe: None,
            failed_over_at: None,
            info_version: 0,
            acked_our_info: 0,
            info_sent_at: None,
            info_next_send: now,
            current: None,
            previous: None,
            handshake: None,
            handshake_started: None,
            attempts: 0,
            next_attempt: now,
            round_started: None,
            gave_up: false,
            last_handshake: None,
            handshakes: 0,
            rtt: None,
            ever_established: false,
            first_established: None,
            last_rx: None,
            last_tx: None,
            last_data: None,
            queue: VecDeque::new(),
            gossip_rx: 0,
            unconfirmed_final: None,
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            drops: DropCounters::default(),
        }
    }

    pub(crate) fn state(&self) -> mesh_api::PeerState {
        use mesh_api::PeerState;
        if self.current.is_some() {
            PeerState::Established
        } else if self.ever_established {
            PeerState::Expired
        } else if self.handshake.is_some() {
            PeerState::Handshaking
        } else {
            PeerState::Idle
        }
    }

    /// Keeps `packet` until a session exists; the oldest is dropped when full.
    /// Returns whether one was dropped.
    pub(crate) fn enqueue(&mut self, packet: &[u8]) -> bool {
        let dropped = if self.queue.len() >= QUEUE_LIMIT {
            self.queue.pop_front();
            true
        } else {
            false
        };
        self.queue.push_back(packet.to_vec());
        dropped
    }
}
