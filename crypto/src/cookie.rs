//! The cheap checks in front of a handshake: two MACs on every handshake message and the
//! cookie a loaded node hands out instead of doing a handshake (WireGuard's `mac1`, `mac2`
//! and cookie reply, adapted to a cluster secret).
//!
//! - **mac1** is a keyed BLAKE2s-128 over the message (all bytes before the two MACs). Its
//!   key comes from the cluster PSK, and from the receiver's static key when the sender knows
//!   it ([`Mac1Key::for_receiver`]): nobody without the cluster secret can produce one, so a
//!   node pays one hash, and no public-key operation, for every datagram of an outsider.
//!   Binding the receiver's key also makes an IK initiation captured on its way to one node
//!   fail that hash at every other node.
//! - **mac2** is a keyed BLAKE2s-128 over the message and mac1, keyed by a cookie the
//!   receiver gave the sender's address. A message with a valid mac2 proves that its sender
//!   receives datagrams at the address it claims; all zeros when the sender has no cookie.
//! - **A cookie** is a BLAKE2s-128 of the sender's address and port, keyed by a secret the
//!   receiver draws anew every [`COOKIE_SECRET_LIFETIME`] ([`CookieJar`]). It travels in a
//!   cookie reply, sealed with ChaCha20-Poly1305 under a key derived from the cluster PSK,
//!   with the mac1 of the message it answers as associated data: only a cluster member that
//!   sent that very message can open it.
//!
//! WireGuard keys mac1 with the responder's public key alone, which anyone may know, so its
//! cookie is what stops outsiders. Here the cluster secret stops outsiders at mac1 already;
//! the cookie still limits members (and captured messages) to addresses they receive at.
//!
//! Why not ring's HMAC: keyed BLAKE2s is one compression function call for a message of up
//! to 64 bytes (HMAC-SHA256 is four), it is what WireGuard uses, and the `blake2` crate is
//! already in the build through snow. Which messages need which checks, the budget and the
//! replay cache are the caller's (mesh-core); this module only computes and compares.

use blake2::Blake2sMac;
use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput as _, KeyInit, Update as _};
use ring::aead;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keys::{ClusterPsk, KEY_LEN, PublicKey, wipe};

/// Length of mac1 and of mac2.
pub const MAC_LEN: usize = 16;
/// The two MACs that end every handshake message.
pub const MACS_LEN: usize = 2 * MAC_LEN;
/// Length of a cookie.
pub const COOKIE_LEN: usize = 16;
/// Nonce of a sealed cookie.
pub const COOKIE_NONCE_LEN: usize = 12;
/// A sealed cookie: the cookie and its 16-byte tag.
pub const SEALED_COOKIE_LEN: usize = COOKIE_LEN + 16;

/// A receiver draws a new cookie secret this often; a cookie is accepted while the secret
/// that made it is the current or the previous one (so for 120 to 240 s).
pub const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);
/// A sender uses a cookie for this long after receiving it: less than the shortest time the
/// receiver accepts it, with room for a round trip (WireGuard's 120 − 5 s).
pub const COOKIE_USE_LIFETIME: Duration = Duration::from_secs(115);

const LABEL_MAC1: &[u8] = b"mesh v2 mac1----";
const LABEL_COOKIE: &[u8] = b"mesh v2 cookie--";

/// BLAKE2s-256 of the parts, as a key.
fn hash_key(parts: &[&[u8]]) -> [u8; KEY_LEN] {
    use blake2::Digest as _;
    let mut h = blake2::Blake2s256::new();
    for p in parts {
        blake2::Digest::update(&mut h, p);
    }
    h.finalize().into()
}

/// Keyed BLAKE2s-128 of `data` (RFC 7693 keyed mode, as WireGuard's `MAC`).
fn mac(key: &[u8], data: &[&[u8]]) -> [u8; MAC_LEN] {
    // A BLAKE2s key of 1 to 32 bytes is always accepted; every key here is 16 or 32 bytes.
    let Ok(mut m) = <Blake2sMac<U16> as KeyInit>::new_from_slice(key) else {
        return [0; MAC_LEN];
    };
    for d in data {
        m.update(d);
    }
    m.finalize_fixed().into()
}

/// Constant-time comparison of two MACs.
fn same(a: &[u8; MAC_LEN], b: &[u8]) -> bool {
    if b.len() != MAC_LEN {
        return false;
    }
    let mut diff = 0_u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The key of mac1 for messages to one receiver. Cheap to keep: a node holds the one for
/// itself and the anonymous one, and makes others when it sends.
#[derive(Clone)]
pub struct Mac1Key([u8; KEY_LEN]);

impl Mac1Key {
    /// For messages whose sender knows the receiver's static key `receiver` (IK initiation,
    /// IK response, XX final).
    pub fn for_receiver(psk: &ClusterPsk, receiver: &PublicKey) -> Self {
        Self(hash_key(&[LABEL_MAC1, psk.as_bytes(), receiver.as_bytes()]))
    }

    /// For messages whose sender does not know the receiver's static key yet (XX
    /// initiation, XX response).
    pub fn anonymous(psk: &ClusterPsk) -> Self {
        Self(hash_key(&[LABEL_MAC1, psk.as_bytes()]))
    }

    /// mac1 of `message` (everything before the MACs).
    pub fn mac(&self, message: &[u8]) -> [u8; MAC_LEN] {
        mac(&self.0, &[message])
    }

    /// Whether `mac1` is this key's mac1 of `message`, in constant time.
    pub fn verify(&self, message: &[u8], mac1: &[u8]) -> bool {
        same(&self.mac(message), mac1)
    }
}

impl std::fmt::Debug for Mac1Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mac1Key(..)")
    }
}

impl Drop for Mac1Key {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// mac2 of `message_and_mac1` (every byte before mac2) under `cookie`.
pub fn mac2(cookie: &[u8; COOKIE_LEN], message_and_mac1: &[u8]) -> [u8; MAC_LEN] {
    mac(cookie, &[message_and_mac1])
}

/// Writes mac1 (under `key`) and mac2 (under `cookie`, or zeros without one) into the last
/// [`MACS_LEN`] bytes of `datagram`; returns mac1 (a cookie reply to this message is bound
/// to it). `datagram` must be longer than [`MACS_LEN`].
pub fn seal_macs(
    datagram: &mut [u8],
    key: &Mac1Key,
    cookie: Option<&[u8; COOKIE_LEN]>,
) -> [u8; MAC_LEN] {
    let n = datagram.len().saturating_sub(MACS_LEN);
    let m1 = key.mac(&datagram[..n]);
    datagram[n..n + MAC_LEN].copy_from_slice(&m1);
    let m2 = cookie.map_or([0; MAC_LEN], |c| mac2(c, &datagram[..n + MAC_LEN]));
    datagram[n + MAC_LEN..n + MACS_LEN].copy_from_slice(&m2);
    m1
}

/// Why a cookie reply was not accepted. Blame: the peer or an attacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cookie reply failed authentication: not sealed for the message it names")]
pub struct CookieError;

/// The key that seals and opens cookie replies in a cluster.
pub struct CookieKey(aead::LessSafeKey);

impl CookieKey {
    /// Derived from the cluster PSK.
    pub fn new(psk: &ClusterPsk) -> Self {
        let mut k = hash_key(&[LABEL_COOKIE, psk.as_bytes()]);
        // A 32-byte key is always a valid ChaCha20-Poly1305 key.
        let key = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &k)
            .map(aead::LessSafeKey::new)
            .ok();
        wipe(&mut k);
        match key {
            Some(key) => Self(key),
            None => unreachable_key(),
        }
    }

    /// Seals `cookie` for the sender of the message whose mac1 is `mac1`.
    pub fn seal(
        &self,
        cookie: &[u8; COOKIE_LEN],
        mac1: &[u8; MAC_LEN],
        nonce: [u8; COOKIE_NONCE_LEN],
    ) -> [u8; SEALED_COOKIE_LEN] {
        let mut out = [0_u8; SEALED_COOKIE_LEN];
        out[..COOKIE_LEN].copy_from_slice(cookie);
        let n = aead::Nonce::assume_unique_for_key(nonce);
        if let Ok(tag) =
            self.0
                .seal_in_place_separate_tag(n, aead::Aad::from(mac1), &mut out[..COOKIE_LEN])
        {
            out[COOKIE_LEN..].copy_from_slice(tag.as_ref());
        }
        out
    }

    /// Opens a sealed cookie answering the message whose mac1 was `mac1`.
    pub fn open(
        &self,
        sealed: &[u8; SEALED_COOKIE_LEN],
        mac1: &[u8; MAC_LEN],
        nonce: [u8; COOKIE_NONCE_LEN],
    ) -> Result<[u8; COOKIE_LEN], CookieError> {
        let mut buf = *sealed;
        let n = aead::Nonce::assume_unique_for_key(nonce);
        let plain = self
            .0
            .open_in_place(n, aead::Aad::from(mac1), &mut buf)
            .map_err(|_| CookieError)?;
        let mut cookie = [0_u8; COOKIE_LEN];
        cookie.copy_from_slice(plain.get(..COOKIE_LEN).ok_or(CookieError)?);
        Ok(cookie)
    }
}

#[cold]
fn unreachable_key() -> ! {
    // ring accepts every 32-byte ChaCha20-Poly1305 key; reaching this is a bug in ring.
    panic!("ring refused a 32-byte ChaCha20-Poly1305 key")
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

/// A receiver's cookie secrets: the current one and the one before it.
pub struct CookieJar {
    current: [u8; KEY_LEN],
    previous: [u8; KEY_LEN],
    drawn_at: Instant,
}

impl CookieJar {
    /// A jar whose first secret is `secret` (random, from the caller), drawn at `now`.
    pub fn new(now: Instant, secret: [u8; KEY_LEN]) -> Self {
        Self {
            current: secret,
            // Until the first rotation, nothing made with a "previous" secret exists; a
            // second random-looking value no cookie was made with is as good as none.
            previous: hash_key(&[b"mesh v2 no previous cookie secret", &secret]),
            drawn_at: now,
        }
    }

    /// Whether the current secret is older than [`COOKIE_SECRET_LIFETIME`]: then the caller
    /// passes a fresh one to [`CookieJar::rotate`].
    pub fn due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.drawn_at) >= COOKIE_SECRET_LIFETIME
    }

    /// Makes `secret` the current secret and the current one the previous.
    pub fn rotate(&mut self, now: Instant, secret: [u8; KEY_LEN]) {
        self.previous = std::mem::replace(&mut self.current, secret);
        self.drawn_at = now;
    }

    fn cookie_with(secret: &[u8; KEY_LEN], from: SocketAddr) -> [u8; COOKIE_LEN] {
        let port = from.port().to_le_bytes();
        match from.ip() {
            std::net::IpAddr::V4(ip) => mac(secret, &[&ip.octets(), &port]),
            std::net::IpAddr::V6(ip) => mac(secret, &[&ip.octets(), &port]),
        }
    }

    /// The cookie for a sender at `from`, under the current secret.
    pub fn cookie(&self, from: SocketAddr) -> [u8; COOKIE_LEN] {
        Self::cookie_with(&self.current, from)
    }

    /// Whether `mac2` is a valid mac2 of `message_and_mac1` under a cookie this jar gave
    /// `from` (current or previous secret).
    pub fn verify_mac2(&self, from: SocketAddr, message_and_mac1: &[u8], mac2_got: &[u8]) -> bool {
        [&self.current, &self.previous].into_iter().any(|s| {
            same(
                &mac2(&Self::cookie_with(s, from), message_and_mac1),
                mac2_got,
            )
        })
    }
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar")
            .field("drawn_at", &self.drawn_at)
            .finish_non_exhaustive()
    }
}

impl Drop for CookieJar {
    fn drop(&mut self) {
        wipe(&mut self.current);
        wipe(&mut self.previous);
    }
}

#[cfg(test)]
// A test starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::StaticKeypair;

    fn psk() -> ClusterPsk {
        ClusterPsk::derive(b"cookie tests secret")
    }

    #[test]
    fn mac1_needs_the_cluster_secret_and_the_right_receiver() {
        let b = StaticKeypair::generate([2; 32]).public();
        let c = StaticKeypair::generate([3; 32]).public();
        let mut msg = [7_u8; 100];
        seal_macs(&mut msg, &Mac1Key::for_receiver(&psk(), &b), None);
        let (body, macs) = msg.split_at(100 - MACS_LEN);
        assert!(Mac1Key::for_receiver(&psk(), &b).verify(body, &macs[..MAC_LEN]));
        assert!(!Mac1Key::for_receiver(&psk(), &c).verify(body, &macs[..MAC_LEN]));
        assert!(!Mac1Key::anonymous(&psk()).verify(body, &macs[..MAC_LEN]));
        let other = ClusterPsk::derive(b"another secret!!");
        assert!(!Mac1Key::for_receiver(&other, &b).verify(body, &macs[..MAC_LEN]));
        assert_eq!(&macs[MAC_LEN..], &[0; MAC_LEN], "no cookie: mac2 is zeros");
        // Any flipped bit of the message fails it.
        for i in 0..body.len() {
            let mut bad = body.to_vec();
            bad[i] ^= 1;
            assert!(!Mac1Key::for_receiver(&psk(), &b).verify(&bad, &macs[..MAC_LEN]));
        }
    }

    #[test]
    fn mac2_proves_the_address_the_cookie_was_made_for() {
        let t0 = Instant::now();
        let jar = CookieJar::new(t0, [9; 32]);
        let here: SocketAddr = "198.18.0.1:6788".parse().unwrap();
        let there: SocketAddr = "198.18.0.1:6789".parse().unwrap();
        let cookie = jar.cookie(here);
        let mut msg = [1_u8; 80];
        seal_macs(&mut msg, &Mac1Key::anonymous(&psk()), Some(&cookie));
        let n = msg.len() - MAC_LEN;
        assert!(jar.verify_mac2(here, &msg[..n], &msg[n..]));
        assert!(
            !jar.verify_mac2(there, &msg[..n], &msg[n..]),
            "another port"
        );
        let spoofed = CookieJar::new(t0, [8; 32]).cookie(here);
        seal_macs(&mut msg, &Mac1Key::anonymous(&psk()), Some(&spoofed));
        assert!(
            !jar.verify_mac2(here, &msg[..n], &msg[n..]),
            "a guessed cookie"
        );
    }

    #[test]
    fn a_cookie_lives_two_secrets() {
        let t0 = Instant::now();
        let mut jar = CookieJar::new(t0, [1; 32]);
        let a: SocketAddr = "198.18.0.9:6788".parse().unwrap();
        let cookie = jar.cookie(a);
        let mut msg = [3_u8; 64];
        seal_macs(&mut msg, &Mac1Key::anonymous(&psk()), Some(&cookie));
        let n = msg.len() - MAC_LEN;
        assert!(!jar.due(t0 + COOKIE_SECRET_LIFETIME - Duration::from_secs(1)));
        assert!(jar.due(t0 + COOKIE_SECRET_LIFETIME));
        jar.rotate(t0 + COOKIE_SECRET_LIFETIME, [2; 32]);
        assert!(jar.verify_mac2(a, &msg[..n], &msg[n..]), "previous secret");
        jar.rotate(t0 + 2 * COOKIE_SECRET_LIFETIME, [3; 32]);
        assert!(
            !jar.verify_mac2(a, &msg[..n], &msg[n..]),
            "two rotations on"
        );
    }

    #[test]
    fn a_sealed_cookie_opens_only_for_the_message_it_answers() {
        let key = CookieKey::new(&psk());
        let cookie = [5_u8; COOKIE_LEN];
        let mac1 = [6_u8; MAC_LEN];
        let sealed = key.seal(&cookie, &mac1, [7; COOKIE_NONCE_LEN]);
        assert_eq!(key.open(&sealed, &mac1, [7; COOKIE_NONCE_LEN]), Ok(cookie));
        assert_eq!(
            key.open(&sealed, &[0; MAC_LEN], [7; COOKIE_NONCE_LEN]),
            Err(CookieError)
        );
        assert_eq!(
            CookieKey::new(&ClusterPsk::derive(b"other secret....")).open(
                &sealed,
                &mac1,
                [7; COOKIE_NONCE_LEN]
            ),
            Err(CookieError)
        );
        let mut bad = sealed;
        bad[0] ^= 1;
        assert_eq!(
            key.open(&bad, &mac1, [7; COOKIE_NONCE_LEN]),
            Err(CookieError)
        );
    }
}
