//! Why a packet was dropped. A drop on the packet path is a counter, never a log line.

/// Reasons a datagram or packet was dropped. The names are stable API (`meshctl`, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The datagram does not parse.
    Malformed,
    /// A data or handshake message names a session index we do not have.
    UnknownSession,
    /// Counter already seen inside the replay window.
    Replay,
    /// Counter below the replay window.
    TooOld,
    /// The AEAD tag does not verify: tampered, or sealed with another key.
    Authentication,
    /// The session is past its reject-after time.
    ExpiredSession,
    /// A handshake message failed (wrong cluster secret, wrong key, corrupt).
    HandshakeFailed,
    /// Too many handshakes from one source address that proved it receives there (a valid
    /// cookie; see `gate`).
    HandshakeRateLimited,
    /// No peer owns the destination of a TUN packet.
    NoRoute,
    /// The packet waited for a session and the queue was full.
    QueueFull,
    /// A decrypted packet's source is outside the sending peer's blocks.
    SourceNotAllowed,
    /// A decrypted packet's destination is outside this node's blocks.
    WrongDestination,
    /// Not IPv4 (IPv6 is not routed yet) or an invalid inner packet.
    UnsupportedPacket,
    /// A control message that does not parse.
    BadControl,
    /// The caller's buffer was too small (a bug in the caller).
    BufferTooSmall,
    /// A relay frame from a node we have no session with, for a node we cannot reach, or
    /// whose end-to-end session does not belong to the node it names.
    RelayRefused,
    /// A handshake message whose mac1 does not verify: sent without the cluster secret, to
    /// another node, or altered. Refused after one hash, before any public-key work.
    HandshakeMac,
    /// A handshake initiation seen before (a replay), or whose timestamp is more than
    /// `gate::MAX_CLOCK_SKEW` from this node's clock.
    HandshakeReplay,
    /// An initiation answered with a cookie instead of a handshake: the node is under load and
    /// the source has not proved its address yet.
    HandshakeCookie,
    /// A handshake message of another protocol version (a node from before handshake MACs).
    HandshakeVersion,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 20] = [
        DropReason::Malformed,
        DropReason::UnknownSession,
        DropReason::Replay,
        DropReason::TooOld,
        DropReason::Authentication,
        DropReason::ExpiredSession,
        DropReason::HandshakeFailed,
        DropReason::HandshakeRateLimited,
        DropReason::NoRoute,
        DropReason::QueueFull,
        DropReason::SourceNotAllowed,
        DropReason::WrongDestination,
        DropReason::UnsupportedPacket,
        DropReason::BadControl,
        DropReason::BufferTooSmall,
        DropReason::RelayRefused,
        DropReason::HandshakeMac,
        DropReason::HandshakeReplay,
        DropReason::HandshakeCookie,
        DropReason::HandshakeVersion,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSession => "unknown_session",
            DropReason::Replay => "replay",
            DropReason::TooOld => "too_old",
            DropReason::Authentication => "authentication",
            DropReason::ExpiredSession => "expired_session",
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::HandshakeRateLimited => "handshake_rate_limited",
            DropReason::NoRoute => "no_route",
            DropReason::QueueFull => "queue_full",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::WrongDestination => "wrong_destination",
            DropReason::UnsupportedPacket => "unsupported_packet",
            DropReason::BadControl => "bad_control",
            DropReason::BufferTooSmall => "buffer_too_small",
            DropReason::RelayRefused => "relay_refused",
            DropReason::HandshakeMac => "handshake_mac",
            DropReason::HandshakeReplay => "handshake_replay",
            DropReason::HandshakeCookie => "handshake_cookie",
            DropReason::HandshakeVersion => "handshake_version",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }

    /// Maps a session open error to its reason.
    pub fn from_open(e: &mesh_crypto::OpenError) -> Self {
        use mesh_crypto::OpenError;
        // Exhaustive: a new OpenError does not compile until it has a counter.
        match e {
            OpenError::Replay => DropReason::Replay,
            OpenError::TooOld => DropReason::TooOld,
            OpenError::Authentication => DropReason::Authentication,
            OpenError::Expired => DropReason::ExpiredSession,
            OpenError::Truncated => DropReason::Malformed,
        }
    }
}

/// One counter per [`DropReason`].
#[derive(Debug, Clone, Default)]
pub struct DropCounters([u64; DropReason::ALL.len()]);

impl DropCounters {
    /// Counts one drop.
    pub fn add(&mut self, reason: DropReason) {
        self.add_n(reason, 1);
    }

    /// Counts `n` drops.
    pub fn add_n(&mut self, reason: DropReason, n: u64) {
        self.0[reason.slot()] += n;
    }

    /// The count for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.slot()]
    }

    /// Non-zero counters in API form.
    pub fn to_api(&self) -> Vec<mesh_api::DropCount> {
        DropReason::ALL
            .iter()
            .filter(|r| self.get(**r) > 0)
            .map(|r| mesh_api::DropCount {
                reason: r.as_str().to_owned(),
                packets: self.get(*r),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_slots_match_order() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.slot(), i);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }

    #[test]
    fn every_open_error_has_its_own_counter() {
        use mesh_crypto::OpenError;
        let cases = [
            (OpenError::Replay, DropReason::Replay),
            (OpenError::TooOld, DropReason::TooOld),
            (OpenError::Authentication, DropReason::Authentication),
            (OpenError::Expired, DropReason::ExpiredSession),
            (OpenError::Truncated, DropReason::Malformed),
        ];
        for (e, reason) in cases {
            assert_eq!(DropReason::from_open(&e), reason, "{e:?}");
            // The metric label says the same as the counter, but for a datagram too short
            // for its tag, which is counted as malformed.
            if e != OpenError::Truncated {
                assert_eq!(reason.as_str(), e.reason());
            }
        }
    }
}
