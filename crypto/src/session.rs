//! Transport keys of one finished handshake and the per-packet path: counters, in-place
//! ChaCha20-Poly1305 or AES-256-GCM seal/open with ring, the replay window and the key lifetime limits.
//!
//! A `Session` seals into and opens from caller-owned buffers without allocating. It does not
//! frame packets (the counter travels in a header that `mesh-proto` defines and the caller
//! passes in, usually also as `aad`), does not pick which session to use for a peer, and does
//! not start rekeys: it only answers `needs_rekey` / `is_expired` for a `now` it is given.

use std::fmt;
use std::time::{Duration, Instant};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::cipher::Cipher;
use crate::keys::{KEY_LEN, wipe};
use crate::replay::{ReplayError, ReplayWindow};
use crate::timers::{
    REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME,
    RESPONDER_REKEY_AFTER_TIME,
};

/// Length of the Poly1305 tag appended to every sealed packet.
pub const TAG_LEN: usize = 16;

/// Why a packet could not be sealed. Blame: the caller (or the session is simply used up and
/// must be replaced by a new handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The send counter reached [`REJECT_AFTER_MESSAGES`]: a new handshake is overdue.
    #[error("session send counter exhausted; a new handshake is required")]
    Exhausted,
    /// The session is [`REJECT_AFTER_TIME`] old: a new handshake is overdue.
    #[error("session expired; a new handshake is required")]
    Expired,
    /// The buffer cannot hold the plaintext plus the tag (caller bug).
    #[error("buffer too small for plaintext plus {TAG_LEN}-byte tag")]
    BufferTooSmall,
    /// The plaintext exceeds the AEAD's limit (about 256 GiB for ChaCha20-Poly1305, 64 GiB
    /// for AES-256-GCM; caller bug).
    #[error("plaintext too long for the session's AEAD")]
    TooLong,
}

impl SealError {
    /// Stable snake_case name, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Exhausted => "exhausted",
            Self::Expired => "expired_session",
            Self::BufferTooSmall => "buffer_too_small",
            Self::TooLong => "too_long",
        }
    }
}

/// Why a received packet was dropped. Every variant is a counter, not a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The counter was already accepted. Blame: the network duplicated the packet, or someone
    /// replays captured traffic.
    #[error("replayed packet")]
    Replay,
    /// The counter is below the replay window. Blame: the network reordered beyond the
    /// window, or someone replays old traffic.
    #[error("packet counter below the replay window")]
    TooOld,
    /// The tag did not verify. Blame: the packet was altered, or it was sealed with other keys
    /// (another session, another peer, an attacker).
    #[error("packet failed authentication")]
    Authentication,
    /// The session is [`REJECT_AFTER_TIME`] old. Blame: the sending peer did not rekey in
    /// time; use a newer session.
    #[error("session expired")]
    Expired,
    /// Shorter than a tag. Blame: the peer or the network (truncated datagram).
    #[error("packet shorter than the {TAG_LEN}-byte tag")]
    Truncated,
}

impl OpenError {
    /// Stable snake_case name, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::TooOld => "too_old",
            Self::Authentication => "authentication",
            Self::Expired => "expired_session",
            Self::Truncated => "truncated",
        }
    }
}

impl From<ReplayError> for OpenError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replay => Self::Replay,
            ReplayError::TooOld => Self::TooOld,
        }
    }
}

/// One direction pair of transport keys with its counters and replay window.
pub struct Session {
    send: LessSafeKey,
    recv: LessSafeKey,
    cipher: Cipher,
    created: Instant,
    initiator: bool,
    /// Next counter to hand out; equals the number of counters handed out.
    next_send: u64,
    replay: ReplayWindow,
}

impl Session {
    /// Builds a session from the two raw keys of a Noise split, oriented for this side.
    pub(crate) fn new(
        mut send: [u8; KEY_LEN],
        mut recv: [u8; KEY_LEN],
        initiator: bool,
        now: Instant,
        cipher: Cipher,
    ) -> Result<Self, ring::error::Unspecified> {
        let keys = aead_key(cipher, &send).and_then(|s| Ok((s, aead_key(cipher, &recv)?)));
        wipe(&mut send);
        wipe(&mut recv);
        let (send, recv) = keys?;
        Ok(Self {
            send,
            recv,
            cipher,
            created: now,
            initiator,
            next_send: 0,
            replay: ReplayWindow::new(),
        })
    }

    /// The AEAD its packets use.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// When the handshake that made this session finished (the `now` given to
    /// `Handshake::into_session`).
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Whether this side initiated the handshake.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// How many send counters were handed out.
    pub fn sent(&self) -> u64 {
        self.next_send
    }

    /// Reserves the next send counter. Each counter is handed out once and must be used for
    /// at most one `seal`.
    pub fn next_counter(&mut self, now: Instant) -> Result<u64, SealError> {
        if self.is_expired(now) {
            return Err(SealError::Expired);
        }
        if self.next_send >= REJECT_AFTER_MESSAGES {
            return Err(SealError::Exhausted);
        }
        let counter = self.next_send;
        self.next_send += 1;
        Ok(counter)
    }

    /// Encrypts `buf[..plaintext_len]` in place and writes the tag to
    /// `buf[plaintext_len..plaintext_len + TAG_LEN]`; returns `plaintext_len + TAG_LEN`.
    ///
    /// The nonce is 4 zero bytes then `counter` little-endian (the Noise ChaChaPoly nonce).
    /// `counter` must come from [`Session::next_counter`]; reusing one breaks confidentiality.
    /// A counter at or above [`REJECT_AFTER_MESSAGES`] is refused. Does not allocate.
    pub fn seal(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, SealError> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(SealError::Exhausted);
        }
        let sealed_len = plaintext_len
            .checked_add(TAG_LEN)
            .ok_or(SealError::BufferTooSmall)?;
        let (plaintext, rest) = buf
            .get_mut(..sealed_len)
            .ok_or(SealError::BufferTooSmall)?
            .split_at_mut(plaintext_len);
        let tag = self
            .send
            .seal_in_place_separate_tag(nonce(counter), Aad::from(aad), plaintext)
            .map_err(|_| SealError::TooLong)?;
        rest.copy_from_slice(tag.as_ref());
        Ok(sealed_len)
    }

    /// `(span, accepted)` of the receiving side (see [`ReplayWindow::received`]): how many
    /// packets the peer sent up to the newest one that arrived, and how many arrived.
    pub fn received(&self) -> (u64, u64) {
        self.replay.received()
    }

    /// Opens `buf` (ciphertext then tag) in place; the plaintext is `buf[..returned_len]`.
    ///
    /// Order: expiry, length, replay check (without recording), decryption, then the counter
    /// is recorded. A packet that fails authentication never moves the replay window.
    pub fn open(
        &mut self,
        now: Instant,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, OpenError> {
        if self.is_expired(now) {
            return Err(OpenError::Expired);
        }
        if buf.len() < TAG_LEN {
            return Err(OpenError::Truncated);
        }
        self.replay.check(counter)?;
        let plaintext_len = self
            .recv
            .open_in_place(nonce(counter), Aad::from(aad), buf)
            .map_err(|_| OpenError::Authentication)?
            .len();
        self.replay.update(counter)?;
        Ok(plaintext_len)
    }

    /// Whether this side should start a new handshake now.
    ///
    /// Both sides: after [`REKEY_AFTER_MESSAGES`] sent packets. On time: the initiator at
    /// [`REKEY_AFTER_TIME`] (as in WireGuard), the responder only at
    /// [`RESPONDER_REKEY_AFTER_TIME`], one keepalive interval later, as a safety net for a
    /// silent initiator that does not make both sides handshake at once in the normal case.
    pub fn needs_rekey(&self, now: Instant) -> bool {
        let after = if self.initiator {
            REKEY_AFTER_TIME
        } else {
            RESPONDER_REKEY_AFTER_TIME
        };
        self.next_send >= REKEY_AFTER_MESSAGES || self.age(now) >= after
    }

    /// Whether the session is too old to send or receive ([`REJECT_AFTER_TIME`]).
    pub fn is_expired(&self, now: Instant) -> bool {
        self.age(now) >= REJECT_AFTER_TIME
    }

    /// Time since creation; zero if `now` is earlier than the creation.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.created)
    }

    #[cfg(test)]
    pub(crate) fn set_next_send_for_test(&mut self, next: u64) {
        self.next_send = next;
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("cipher", &self.cipher)
            .field("created", &self.created)
            .field("initiator", &self.initiator)
            .field("sent", &self.next_send)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

fn aead_key(
    cipher: Cipher,
    bytes: &[u8; KEY_LEN],
) -> Result<LessSafeKey, ring::error::Unspecified> {
    // ring only rejects a key of the wrong length, and KEY_LEN is the key length of both
    // ChaCha20-Poly1305 and AES-256-GCM.
    UnboundKey::new(cipher.algorithm(), bytes).map(LessSafeKey::new)
}

fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0_u8; aead::NONCE_LEN];
    bytes[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}
