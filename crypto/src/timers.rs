//! Every timer and message-count limit of mesh's key schedule, in one place.
//!
//! The values are WireGuard's (whitepaper §6.1, "Timers & Stateless UI") unless a doc comment
//! says otherwise. This module only names durations and computes the handshake retry schedule;
//! it reads no clock and starts no timer: the caller compares them with its own `now`.

use std::time::Duration;

/// A session's initiator starts a new handshake once the session is this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);

/// A session is neither used to send nor accepted for receiving once it is this old.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);

/// Send an empty (keepalive) packet on a session that sent nothing for this long, so each
/// side hears from a live peer at least this often (it doubles as the failure detector).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// WireGuard's fixed handshake retransmission interval: a handshake message unanswered for
/// this long is considered lost. mesh's actual retry schedule is [`handshake_retry_delay`]
/// (1 s doubling), which reaches this value from the third retry on.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);

/// Give up a round of handshake attempts after this long without success (the peer is
/// treated as unreachable until new traffic for it, or a new address, shows up).
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);

/// Cap of the exponential handshake retry backoff, before jitter (mesh's own value).
pub const HANDSHAKE_RETRY_MAX: Duration = Duration::from_secs(30);

/// First delay of the handshake retry backoff (mesh's own value); doubles per attempt.
pub const HANDSHAKE_RETRY_BASE: Duration = Duration::from_secs(1);

/// Upper bound (inclusive) of the random jitter added to every retry delay, in milliseconds.
pub const HANDSHAKE_RETRY_JITTER_MAX_MS: u64 = 333;

/// The responder of a session asks for a rekey once the session is this old (mesh's choice).
///
/// In WireGuard only the initiator rekeys on time. mesh lets the responder do it too, as a safety
/// net for a silent initiator, but one keepalive interval later than the initiator so that
/// in the normal case the two sides do not start crossing handshakes at the same instant.
/// This still leaves 50 s before [`REJECT_AFTER_TIME`].
pub const RESPONDER_REKEY_AFTER_TIME: Duration =
    Duration::from_secs(REKEY_AFTER_TIME.as_secs() + KEEPALIVE_TIMEOUT.as_secs());

/// Either side starts a new handshake after sending this many packets with one session.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;

/// A session refuses to send its counter number this (and higher): far below the 2^64 nonce
/// space, leaving room for the replay window.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// How long to wait before handshake attempt number `attempt + 1`, after attempt `attempt`
/// (0-based) went unanswered.
///
/// The delay is [`HANDSHAKE_RETRY_BASE`] doubled per attempt (1 s, 2 s, 4 s, 8 s, 16 s) and
/// capped at [`HANDSHAKE_RETRY_MAX`] (30 s from attempt 5 on), plus a jitter of
/// `jitter % 334` milliseconds, i.e. 0 to [`HANDSHAKE_RETRY_JITTER_MAX_MS`] ms inclusive, so
/// that many nodes restarted together do not retry in lock step. The cap applies before the
/// jitter. The caller passes a random `jitter` (from its seeded RNG); the function itself is
/// deterministic.
pub fn handshake_retry_delay(attempt: u32, jitter: u64) -> Duration {
    let backoff = 1_u32
        .checked_shl(attempt)
        .and_then(|factor| HANDSHAKE_RETRY_BASE.checked_mul(factor))
        .map_or(HANDSHAKE_RETRY_MAX, |delay| delay.min(HANDSHAKE_RETRY_MAX));
    backoff + Duration::from_millis(jitter % (HANDSHAKE_RETRY_JITTER_MAX_MS + 1))
}

// The schedule only makes sense in this order; checked at compile time.
const _: () = {
    assert!(REKEY_AFTER_TIME.as_secs() < RESPONDER_REKEY_AFTER_TIME.as_secs());
    assert!(RESPONDER_REKEY_AFTER_TIME.as_secs() < REJECT_AFTER_TIME.as_secs());
    assert!(REKEY_AFTER_MESSAGES < REJECT_AFTER_MESSAGES);
    assert!(HANDSHAKE_RETRY_MAX.as_secs() < REKEY_ATTEMPT_TIME.as_secs());
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_from_one_second_then_caps() {
        let secs: Vec<u64> = (0..8)
            .map(|a| handshake_retry_delay(a, 0).as_secs())
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(handshake_retry_delay(31, 0), HANDSHAKE_RETRY_MAX);
        assert_eq!(handshake_retry_delay(32, 0), HANDSHAKE_RETRY_MAX);
        assert_eq!(handshake_retry_delay(u32::MAX, 0), HANDSHAKE_RETRY_MAX);
    }

    #[test]
    fn retry_jitter_stays_within_bounds_and_is_deterministic() {
        assert_eq!(handshake_retry_delay(0, 333), Duration::from_millis(1333));
        assert_eq!(handshake_retry_delay(0, 334), Duration::from_secs(1));
        assert_eq!(
            handshake_retry_delay(9, u64::MAX),
            Duration::from_millis(30_000 + u64::MAX % 334)
        );
        for jitter in [0, 1, 17, 333, 1 << 40, u64::MAX] {
            let d = handshake_retry_delay(3, jitter);
            assert_eq!(d, handshake_retry_delay(3, jitter));
            assert!(d >= Duration::from_secs(8));
            assert!(d <= Duration::from_millis(8_333));
        }
    }
}
