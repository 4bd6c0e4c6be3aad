//! mesh's cryptography, sans-I/O: Noise handshakes (snow), the transport sessions they yield
//! with in-place ChaCha20-Poly1305 or AES-256-GCM packet sealing (ring; the two ends agree
//! on the cipher inside the handshake, see [`Cipher`]), the anti-replay window and the
//! rekey/expiry timers, and the MACs and cookies checked before any handshake work
//! ([`Mac1Key`], [`CookieJar`]).
//!
//! Nothing here reads a clock, the OS RNG, a file or a socket: callers pass `now` and 32-byte
//! random seeds, and move the bytes. This crate does not define packet framing (`mesh-proto`),
//! choose peers or sessions, rate-limit handshakes, or store keys on disk.
//!
//! Files: `handshake.rs` (Noise IK/XX through snow, with the cluster PSK; a handshake whose
//! read failed is rebuilt from its own steps), `session.rs` (in-place seal/open with ring,
//! counters, key lifetimes), `cipher.rs` (which cipher, and its offer and choice in the
//! handshake payloads), `replay.rs` (the 8,192-packet replay window), `keys.rs` (keys and the
//! PSK derivation), `cookie.rs` (handshake MACs, cookie secrets, sealed cookies) and
//! `timers.rs` (every timer constant).

#![forbid(unsafe_code)]

mod cipher;
mod cookie;
mod handshake;
mod keys;
mod replay;
mod session;
pub mod timers;

pub use cipher::{BadChoice, CHOICE, Cipher, CipherSet, OFFER, choice, hardware_aes};
pub use cookie::{
    COOKIE_LEN, COOKIE_NONCE_LEN, COOKIE_SECRET_LIFETIME, COOKIE_USE_LIFETIME, CookieError,
    CookieJar, CookieKey, MAC_LEN, MACS_LEN, Mac1Key, SEALED_COOKIE_LEN, mac2, seal_macs,
};
pub use handshake::{
    HANDSHAKE_OVERHEAD_MAX, Handshake, HandshakeError, HandshakePattern, MAX_HANDSHAKE_MSG,
    MAX_HANDSHAKE_PAYLOAD,
};
pub use keys::{ClusterPsk, KEY_LEN, PublicKey, PublicKeyParseError, StaticKeypair, StaticSecret};
pub use replay::{REPLAY_WINDOW, ReplayError, ReplayWindow};
pub use session::{OpenError, SealError, Session, TAG_LEN};

#[cfg(test)]
mod tests;
