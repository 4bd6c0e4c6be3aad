//! Noise handshakes (snow) that authenticate two nodes and produce a [`Session`].
//!
//! Two patterns: `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` when the initiator already knows the
//! responder's static key, `Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s` for first contact. The
//! cluster PSK is mixed into both, so a node without the cluster secret cannot complete one.
//!
//! XX takes the PSK at the start (`psk0`), not at the end (`psk3`, as DESIGN.md first
//! said): with `psk3` the responder's static key travels in message 2 under keys that do
//! not depend on the PSK, so anybody who sends a bare message 1 learns it, and the
//! initiator finishes without ever checking the responder's PSK. With `psk0` every key of
//! the handshake depends on the PSK: an outsider learns nothing, and both sides notice a
//! wrong secret on the first message they read.
//! Ephemeral keys come from a caller-provided seed (ChaCha20), never from the OS: the same
//! seeds and inputs give byte-identical messages. This module does not frame messages, pick
//! peer indices, rate-limit, or retry: the caller moves the bytes and owns the timers.
//!
//! Where a wrong cluster secret is noticed (both sides hold some PSK; "fails at message N" means
//! the side reading message N gets [`HandshakeError::Authentication`]):
//! - IK: message 1 reads fine (the PSK enters after it); the initiator fails at message 2.
//!   A wrong responder static key instead fails at message 1, on the responder.
//! - XX: the responder fails at message 1 (its payload tag is keyed by the PSK).

use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng as _};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use crate::cipher::Cipher as Aead;
use crate::keys::{ClusterPsk, KEY_LEN, PublicKey, StaticKeypair};
use crate::session::{Session, TAG_LEN};

/// snow's limit on the size of one Noise message, handshake or transport.
pub const MAX_HANDSHAKE_MSG: usize = 65535;

/// The most bytes any handshake message of either pattern adds to its payload: an output
/// buffer of `payload.len() + HANDSHAKE_OVERHEAD_MAX` always suffices. It is XX message 2 and
/// IK message 1: 32 (ephemeral key) + 32 + 16 (encrypted static key) + 16 (payload tag).
pub const HANDSHAKE_OVERHEAD_MAX: usize = DH_LEN + (DH_LEN + TAG_LEN) + TAG_LEN;

/// The largest payload a handshake message can carry.
pub const MAX_HANDSHAKE_PAYLOAD: usize = MAX_HANDSHAKE_MSG - HANDSHAKE_OVERHEAD_MAX;

const DH_LEN: usize = KEY_LEN;

/// Bound into every handshake hash: a mesh handshake cannot be mistaken for another protocol
/// that happens to use the same Noise pattern.
const PROLOGUE: &[u8] = b"mesh v1";

const IK_PARAMS: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const XX_PARAMS: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";

/// The two Noise patterns mesh uses.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakePattern {
    /// `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`: two messages; the initiator knows the
    /// responder's static key.
    IK,
    /// `Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s`: three messages; both static keys are
    /// exchanged.
    XX,
}

impl HandshakePattern {
    fn params(self) -> &'static str {
        match self {
            Self::IK => IK_PARAMS,
            Self::XX => XX_PARAMS,
        }
    }

    fn psk_location(self) -> u8 {
        match self {
            Self::IK => 2,
            Self::XX => 0,
        }
    }

    /// Number of messages in the pattern.
    pub fn message_count(self) -> usize {
        match self {
            Self::IK => 2,
            Self::XX => 3,
        }
    }

    /// Bytes that message `index` (0-based) adds to its payload. In these PSK patterns the
    /// ephemeral key already keys the cipher, so every payload carries a tag.
    pub fn message_overhead(self, index: usize) -> Option<usize> {
        const E: usize = DH_LEN;
        const S: usize = DH_LEN + TAG_LEN;
        let tokens = match (self, index) {
            (Self::IK, 0) => E + S, // -> e, es, s, ss
            (Self::IK, 1) => E,     // <- e, ee, se, psk
            (Self::XX, 0) => E,     // -> psk, e
            (Self::XX, 1) => E + S, // <- e, ee, s, es
            (Self::XX, 2) => S,     // -> s, se
            _ => return None,
        };
        Some(tokens + TAG_LEN)
    }
}

/// Why a handshake step failed, and whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Blame: the peer (or an attacker). The message did not decrypt: the peer holds another
    /// cluster secret, we used a wrong static key for it (IK), or the message was altered.
    /// `message` is 1-based. The handshake is dead; start a new one if still wanted.
    #[error(
        "handshake message {message} failed authentication: the peer has another cluster \
         secret or static key, or the message was altered"
    )]
    Authentication {
        /// 1-based index of the message in the pattern.
        message: usize,
    },
    /// Blame: the peer (invalid message). Message `message` (1-based) is `len` bytes, shorter
    /// than the pattern requires or longer than a Noise message can be. The handshake is dead.
    #[error("handshake message {message} is malformed ({len} bytes)")]
    Malformed {
        /// 1-based index of the message in the pattern.
        message: usize,
        /// Length of the message received.
        len: usize,
    },
    /// Blame: the caller. The output buffer is too small; nothing was written or consumed.
    #[error("handshake buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
        /// Bytes offered.
        available: usize,
    },
    /// Blame: the caller. The payload does not fit in a Noise message.
    #[error("handshake payload of {len} bytes exceeds the maximum of {MAX_HANDSHAKE_PAYLOAD}")]
    PayloadTooLarge {
        /// Payload length offered.
        len: usize,
    },
    /// Blame: the caller. It is the other side's turn (read when `is_my_turn`, or write when
    /// not).
    #[error("handshake message out of turn")]
    OutOfTurn,
    /// Blame: the caller. The handshake has no more messages.
    #[error("handshake already finished")]
    AlreadyFinished,
    /// Blame: the caller. `into_session` before the last message.
    #[error("handshake not finished")]
    NotFinished,
    /// Blame: the caller. An earlier step of this handshake failed; it cannot continue.
    #[error("handshake already failed; start a new one")]
    Failed,
    /// Blame: mesh-crypto or snow (a bug): snow refused something this crate should have
    /// prevented.
    #[error("internal handshake error: {0}")]
    Internal(String),
}

impl HandshakeError {
    /// Stable snake_case name, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Authentication { .. } => "authentication",
            Self::Malformed { .. } => "malformed",
            Self::BufferTooSmall { .. } => "buffer_too_small",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::OutOfTurn => "out_of_turn",
            Self::AlreadyFinished => "already_finished",
            Self::NotFinished => "not_finished",
            Self::Failed => "failed",
            Self::Internal(_) => "internal",
        }
    }
}

fn internal(e: snow::Error) -> HandshakeError {
    HandshakeError::Internal(e.to_string())
}

/// One side of a handshake in progress.
pub struct Handshake {
    state: snow::HandshakeState,
    pattern: HandshakePattern,
    /// Messages written or read successfully so far.
    position: usize,
    /// Remote static key, recorded only once the message carrying it authenticated.
    remote: Option<PublicKey>,
    failed: bool,
    /// How this handshake was made, and every step it took: snow cannot undo a failed read
    /// (the state has mixed in the message's ephemeral key by the time the tag fails), so a
    /// failed read rebuilds the state from these, and a forged message cannot end a genuine
    /// handshake.
    recipe: Recipe,
    steps: Vec<Step>,
    /// A read failed: `state` must be rebuilt before the next step (lazily, so a handshake
    /// dropped after a failed read never pays for it).
    stale: bool,
}

#[derive(Clone)]
struct Recipe {
    initiator: bool,
    local: StaticKeypair,
    remote: Option<PublicKey>,
    psk: ClusterPsk,
    seed: [u8; 32],
}

#[derive(Clone)]
enum Step {
    Wrote(Vec<u8>),
    Read(Vec<u8>),
}

impl Handshake {
    /// Starts an IK handshake to a responder whose static key is `remote`.
    pub fn initiate_ik(
        local: &StaticKeypair,
        remote: &PublicKey,
        psk: &ClusterPsk,
        seed: [u8; 32],
    ) -> Result<Self, HandshakeError> {
        Self::build(HandshakePattern::IK, true, local, Some(remote), psk, seed)
    }

    /// Starts an XX handshake: the responder's static key is learned from message 2.
    pub fn initiate_xx(
        local: &StaticKeypair,
        psk: &ClusterPsk,
        seed: [u8; 32],
    ) -> Result<Self, HandshakeError> {
        Self::build(HandshakePattern::XX, true, local, None, psk, seed)
    }

    /// Prepares to answer a handshake of `pattern` (the caller knows it from the message type).
    pub fn respond(
        pattern: HandshakePattern,
        local: &StaticKeypair,
        psk: &ClusterPsk,
        seed: [u8; 32],
    ) -> Result<Self, HandshakeError> {
        Self::build(pattern, false, local, None, psk, seed)
    }

    fn build(
        pattern: HandshakePattern,
        initiator: bool,
        local: &StaticKeypair,
        remote: Option<&PublicKey>,
        psk: &ClusterPsk,
        seed: [u8; 32],
    ) -> Result<Self, HandshakeError> {
        let recipe = Recipe {
            initiator,
            local: local.clone(),
            remote: remote.copied(),
            psk: psk.clone(),
            seed,
        };
        let state = Self::snow_state(pattern, &recipe)?;
        Ok(Self {
            state,
            pattern,
            position: 0,
            remote: remote.copied(),
            failed: false,
            recipe,
            steps: Vec::new(),
            stale: false,
        })
    }

    fn snow_state(
        pattern: HandshakePattern,
        recipe: &Recipe,
    ) -> Result<snow::HandshakeState, HandshakeError> {
        let (local, remote, psk, seed) = (&recipe.local, &recipe.remote, &recipe.psk, recipe.seed);
        let params: NoiseParams = pattern.params().parse().map_err(internal)?;
        let mut builder = snow::Builder::with_resolver(params, Box::new(SeededResolver::new(seed)))
            .local_private_key(local.secret().as_bytes())
            .and_then(|b| b.psk(pattern.psk_location(), psk.as_bytes()))
            .and_then(|b| b.prologue(PROLOGUE))
            .map_err(internal)?;
        if let Some(remote) = remote {
            builder = builder
                .remote_public_key(remote.as_bytes())
                .map_err(internal)?;
        }
        if recipe.initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(internal)
    }

    /// The state as it was before the read that just failed: a new snow state taken
    /// through the same steps (same seed, so the same ephemeral keys and messages).
    fn rebuild(&mut self) -> Result<(), HandshakeError> {
        self.stale = false;
        let mut state = Self::snow_state(self.pattern, &self.recipe)?;
        let mut scratch = vec![0_u8; MAX_HANDSHAKE_MSG];
        for step in &self.steps {
            match step {
                Step::Wrote(payload) => state.write_message(payload, &mut scratch),
                Step::Read(msg) => state.read_message(msg, &mut scratch),
            }
            .map_err(internal)?;
        }
        self.state = state;
        Ok(())
    }

    /// The Noise pattern of this handshake.
    pub fn pattern(&self) -> HandshakePattern {
        self.pattern
    }

    /// Whether this side sends the first message.
    pub fn is_initiator(&self) -> bool {
        self.state.is_initiator()
    }

    /// Writes the next handshake message carrying `payload` into `out`, returns its length.
    ///
    /// `out` needs `payload.len() + HANDSHAKE_OVERHEAD_MAX` bytes at most. The payload of
    /// every message is encrypted, but only payloads after the PSK was mixed in (IK message 2,
    /// every XX message) are sure to reach only a holder of the cluster secret.
    pub fn write_message(
        &mut self,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, HandshakeError> {
        self.ready(true)?;
        let overhead = self
            .pattern
            .message_overhead(self.position)
            .ok_or(HandshakeError::AlreadyFinished)?;
        if payload.len() > MAX_HANDSHAKE_MSG - overhead {
            return Err(HandshakeError::PayloadTooLarge { len: payload.len() });
        }
        let needed = payload.len() + overhead;
        if out.len() < needed {
            return Err(HandshakeError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        match self.state.write_message(payload, out) {
            Ok(len) => {
                self.position += 1;
                if !self.is_finished() {
                    self.steps.push(Step::Wrote(payload.to_vec()));
                }
                Ok(len)
            }
            Err(e) => {
                self.failed = true;
                Err(internal(e))
            }
        }
    }

    /// Reads a handshake message, writes its decrypted payload into `payload_out`, returns the
    /// payload length.
    ///
    /// `payload_out` needs `msg.len()` bytes at most. On a peer error (`Authentication`,
    /// `Malformed`) the handshake is left as it was before the read, so the genuine message
    /// can still come: snow cannot roll back a failed read, so the state is rebuilt from the
    /// handshake's own steps. That costs the public-key operations of those steps again; the
    /// caller lets only messages that passed its MAC check get here.
    pub fn read_message(
        &mut self,
        msg: &[u8],
        payload_out: &mut [u8],
    ) -> Result<usize, HandshakeError> {
        self.ready(false)?;
        let message = self.position + 1;
        let overhead = self
            .pattern
            .message_overhead(self.position)
            .ok_or(HandshakeError::AlreadyFinished)?;
        if msg.len() < overhead || msg.len() > MAX_HANDSHAKE_MSG {
            return Err(HandshakeError::Malformed {
                message,
                len: msg.len(),
            });
        }
        let needed = msg.len() - overhead;
        if payload_out.len() < needed {
            return Err(HandshakeError::BufferTooSmall {
                needed,
                available: payload_out.len(),
            });
        }
        match self.state.read_message(msg, payload_out) {
            Ok(len) => {
                self.position += 1;
                if !self.is_finished() {
                    self.steps.push(Step::Read(msg.to_vec()));
                }
                if let Some(rs) = self.state.get_remote_static() {
                    let mut key = [0_u8; KEY_LEN];
                    key.copy_from_slice(rs);
                    self.remote = Some(PublicKey::from_bytes(key));
                }
                Ok(len)
            }
            Err(e) => {
                // Left as it was: rebuilt before the next step.
                self.stale = true;
                Err(match e {
                    snow::Error::Decrypt | snow::Error::Dh => {
                        HandshakeError::Authentication { message }
                    }
                    snow::Error::Input => HandshakeError::Malformed {
                        message,
                        len: msg.len(),
                    },
                    other => internal(other),
                })
            }
        }
    }

    fn ready(&mut self, writing: bool) -> Result<(), HandshakeError> {
        // Should the rebuild after a failed read itself fail, the handshake is dead.
        if self.stale && self.rebuild().is_err() {
            self.failed = true;
        }
        if self.failed {
            Err(HandshakeError::Failed)
        } else if self.is_finished() {
            Err(HandshakeError::AlreadyFinished)
        } else if self.is_my_turn() != writing {
            Err(HandshakeError::OutOfTurn)
        } else {
            Ok(())
        }
    }

    /// Whether the next step is `write_message` (false when finished or failed).
    pub fn is_my_turn(&self) -> bool {
        !self.failed && !self.is_finished() && self.state.is_my_turn()
    }

    /// Whether every message of the pattern was written or read successfully.
    pub fn is_finished(&self) -> bool {
        !self.failed && self.state.is_handshake_finished()
    }

    /// The peer's static key: from the start for an IK initiator, otherwise once the message
    /// carrying it authenticated (IK message 1, XX message 2 or 3). For XX, it is only proven
    /// to belong to a cluster member once the handshake finished.
    pub fn remote_static(&self) -> Option<PublicKey> {
        self.remote
    }

    /// The Noise handshake hash so far: identical on both sides of a finished handshake, so it
    /// can bind other data to this handshake.
    pub fn handshake_hash(&self) -> &[u8] {
        self.state.get_handshake_hash()
    }

    /// Turns a finished handshake into transport keys for ChaCha20-Poly1305; `now` becomes
    /// the session's creation time.
    pub fn into_session(self, now: Instant) -> Result<Session, HandshakeError> {
        self.into_session_with(now, Aead::ChaCha20Poly1305)
    }

    /// Turns a finished handshake into transport keys for `cipher` (what the two ends agreed
    /// on in the handshake payloads, see [`crate::Cipher`]).
    pub fn into_session_with(
        mut self,
        now: Instant,
        cipher: Aead,
    ) -> Result<Session, HandshakeError> {
        if self.failed {
            return Err(HandshakeError::Failed);
        }
        if !self.is_finished() {
            return Err(HandshakeError::NotFinished);
        }
        // Noise split: the first key encrypts initiator -> responder.
        let (first, second) = self.state.dangerously_get_raw_split();
        let initiator = self.is_initiator();
        let (send, recv) = if initiator {
            (first, second)
        } else {
            (second, first)
        };
        Session::new(send, recv, initiator, now, cipher)
            .map_err(|_| HandshakeError::Internal("ring rejected a transport key".into()))
    }
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("pattern", &self.pattern)
            .field("initiator", &self.is_initiator())
            .field("position", &self.position)
            .field("remote", &self.remote)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// snow's default primitives, except that randomness comes from a ChaCha20 stream seeded by
/// the caller. snow asks for an RNG once per handshake; should it ask again, every further
/// RNG uses the next ChaCha20 stream of the same seed, so no two share output.
struct SeededResolver {
    seed: [u8; 32],
    next_stream: Mutex<u64>,
}

impl SeededResolver {
    fn new(seed: [u8; 32]) -> Self {
        Self {
            seed,
            next_stream: Mutex::new(0),
        }
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let mut next = self.next_stream.lock().ok()?;
        let mut rng = ChaCha20Rng::from_seed(self.seed);
        rng.set_stream(*next);
        *next += 1;
        Some(Box::new(SeededRng(rng)))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

struct SeededRng(ChaCha20Rng);

impl Random for SeededRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

#[cfg(test)]
// A test starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    /// Runs a full IK handshake and returns both sides still as handshakes.
    fn finished_ik(seed: u8) -> (Handshake, Handshake) {
        let (a, b) = (
            StaticKeypair::generate([1; 32]),
            StaticKeypair::generate([2; 32]),
        );
        let psk = ClusterPsk::derive(b"interop");
        let mut i = Handshake::initiate_ik(&a, &b.public(), &psk, [seed; 32]).unwrap();
        let mut r = Handshake::respond(HandshakePattern::IK, &b, &psk, [seed ^ 0xff; 32]).unwrap();
        let (mut msg, mut out) = ([0_u8; 200], [0_u8; 200]);
        let len = i.write_message(b"", &mut msg).unwrap();
        r.read_message(&msg[..len], &mut out).unwrap();
        let len = r.write_message(b"", &mut msg).unwrap();
        i.read_message(&msg[..len], &mut out).unwrap();
        (i, r)
    }

    /// Our packets are exactly Noise transport messages: snow's own transport mode, built from
    /// an identical (deterministic) handshake, opens what `Session` seals and vice versa. This
    /// pins the split orientation and the nonce layout to the Noise spec.
    #[test]
    fn sessions_match_snow_transport_mode() {
        let now = Instant::now();
        let (i, _) = finished_ik(9);
        let (_, r_twin) = finished_ik(9);
        let (i_twin, r) = finished_ik(9);
        let initiator = i.into_session(now).unwrap();
        let mut responder = r.into_session(now).unwrap();
        let snow_responder = r_twin.state.into_stateless_transport_mode().unwrap();
        let snow_initiator = i_twin.state.into_stateless_transport_mode().unwrap();

        for counter in [0_u64, 1, 77, 1 << 33] {
            let mut buf = [0_u8; 40];
            buf[..24].copy_from_slice(b"initiator to responder!!");
            let len = initiator.seal(counter, b"", &mut buf, 24).unwrap();
            let mut plain = [0_u8; 40];
            let n = snow_responder
                .read_message(counter, &buf[..len], &mut plain)
                .unwrap();
            assert_eq!(&plain[..n], b"initiator to responder!!");

            let mut wire = [0_u8; 40];
            let len = snow_initiator
                .write_message(counter, b"snow initiator", &mut wire)
                .unwrap();
            let mut fake = [0_u8; 40];
            fake[..len].copy_from_slice(&wire[..len]);
            let n = responder.open(now, counter, b"", &mut fake[..len]).unwrap();
            assert_eq!(&fake[..n], b"snow initiator");
        }
    }

    #[test]
    fn seeded_resolver_gives_each_rng_its_own_stream() {
        let resolver = SeededResolver::new([5; 32]);
        let (mut a, mut b) = ([0_u8; 32], [0_u8; 32]);
        resolver
            .resolve_rng()
            .unwrap()
            .try_fill_bytes(&mut a)
            .unwrap();
        resolver
            .resolve_rng()
            .unwrap()
            .try_fill_bytes(&mut b)
            .unwrap();
        assert_ne!(a, b);
        let mut again = [0_u8; 32];
        SeededResolver::new([5; 32])
            .resolve_rng()
            .unwrap()
            .try_fill_bytes(&mut again)
            .unwrap();
        assert_eq!(a, again);
    }
}
