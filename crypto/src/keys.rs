//! Long-term key material: X25519 static keys, their public halves as printable values, and
//! the pre-shared key derived from the cluster secret.
//!
//! This module does not read or write key files (the daemon does, mode 0600) and does not
//! decide which keys a node trusts. Secret types never print their bytes in `Debug` and are
//! overwritten with zeros when dropped (best effort: without `unsafe` or an extra crate, the
//! compiler is asked not to elide the write but copies made by moves are not covered).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng as _};
use ring::hmac;
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver as _, DefaultResolver};

/// Length of every key handled by this crate: X25519 keys, the PSK and the transport keys.
pub const KEY_LEN: usize = 32;

/// Length of a base64 (standard alphabet, padded) encoded key.
const BASE64_KEY_LEN: usize = 44;

/// HKDF salt of [`ClusterPsk::derive`]; changing it splits every cluster.
const PSK_SALT: &[u8] = b"mesh v1 cluster psk";
/// HKDF info of [`ClusterPsk::derive`].
const PSK_INFO: &[u8] = b"noise psk";

/// An X25519 public key: a node's identity on the mesh.
///
/// Printed and parsed as standard padded base64 (44 characters), like WireGuard keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Wraps raw key bytes. Every 32-byte string is accepted, as X25519 does.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The first 8 base64 characters: short enough for logs, long enough to tell nodes apart.
    pub fn fingerprint(&self) -> String {
        let encoded = self.encode();
        // Base64 output is ASCII, so any byte index is a char boundary.
        String::from_utf8_lossy(&encoded[..8]).into_owned()
    }

    fn encode(&self) -> [u8; BASE64_KEY_LEN] {
        let mut out = [0_u8; BASE64_KEY_LEN];
        // 32 bytes always encode to exactly 44 padded characters, so this cannot fail; the
        // fallback keeps the function total without a panic path.
        if STANDARD.encode_slice(self.0, &mut out).is_err() {
            out = [b'?'; BASE64_KEY_LEN];
        }
        out
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = self.encode();
        f.write_str(std::str::from_utf8(&encoded).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a public key. The string came from configuration, an annotation or a
/// peer: whoever supplied it is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyParseError {
    /// Not standard padded base64.
    #[error("public key is not valid base64 (standard alphabet, padded): {0}")]
    Base64(String),
    /// Valid base64, but not 32 bytes.
    #[error("public key must decode to 32 bytes, got {0}")]
    Length(usize),
}

impl FromStr for PublicKey {
    type Err = PublicKeyParseError;

    /// Parses exactly 44 characters of standard padded base64; surrounding whitespace is an
    /// error (trim file contents before parsing).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = STANDARD
            .decode(s)
            .map_err(|e| PublicKeyParseError::Base64(e.to_string()))?;
        let len = bytes.len();
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| PublicKeyParseError::Length(len))?;
        Ok(Self(key))
    }
}

/// An X25519 private key. Never printed; zeroed on drop.
#[derive(Clone)]
pub struct StaticSecret([u8; KEY_LEN]);

impl StaticSecret {
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticSecret(..)")
    }
}

impl Drop for StaticSecret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// A node's long-term X25519 key pair.
#[derive(Clone)]
pub struct StaticKeypair {
    secret: StaticSecret,
    public: PublicKey,
}

impl StaticKeypair {
    /// Generates a key pair from a 32-byte seed (ChaCha20 keystream). The same seed gives the
    /// same key pair: the seed must come from a CSPRNG and be used for nothing else.
    pub fn generate(seed: [u8; KEY_LEN]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut secret = [0_u8; KEY_LEN];
        rng.fill_bytes(&mut secret);
        let pair = Self::from_secret_bytes(secret);
        wipe(&mut secret);
        pair
    }

    /// Rebuilds a key pair from a stored private key (any 32 bytes; X25519 clamps them).
    pub fn from_secret_bytes(secret: [u8; KEY_LEN]) -> Self {
        let public = x25519_public(&secret);
        Self {
            secret: StaticSecret(secret),
            public,
        }
    }

    /// The private key bytes, for writing the key file. Handle with care.
    pub fn secret_bytes(&self) -> [u8; KEY_LEN] {
        self.secret.0
    }

    /// The private key.
    pub fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.public
    }
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The Noise pre-shared key of a cluster, derived from the cluster secret. Without it nobody
/// can complete a handshake. Never printed; zeroed on drop.
#[derive(Clone)]
pub struct ClusterPsk([u8; KEY_LEN]);

impl ClusterPsk {
    /// HKDF-SHA256 (RFC 5869) with salt `"mesh v1 cluster psk"` and info `"noise psk"`,
    /// 32 bytes of output. Deterministic: every node with the same secret gets the same PSK.
    ///
    /// With one 32-byte output block HKDF is exactly two HMACs, written out here so the
    /// function cannot fail.
    pub fn derive(cluster_secret: &[u8]) -> Self {
        let salt = hmac::Key::new(hmac::HMAC_SHA256, PSK_SALT);
        let prk = hmac::sign(&salt, cluster_secret);
        let prk = hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref());
        let mut ctx = hmac::Context::with_key(&prk);
        ctx.update(PSK_INFO);
        ctx.update(&[1]);
        let okm = ctx.sign();
        let mut psk = [0_u8; KEY_LEN];
        psk.copy_from_slice(&okm.as_ref()[..KEY_LEN]);
        Self(psk)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for ClusterPsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterPsk(..)")
    }
}

impl Drop for ClusterPsk {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites `bytes` with zeros; `black_box` keeps the compiler from dropping the dead store.
pub(crate) fn wipe(bytes: &mut [u8; KEY_LEN]) {
    *bytes = [0; KEY_LEN];
    std::hint::black_box(bytes);
}

/// The X25519 public key of `secret`, computed by the same snow implementation that runs the
/// handshakes.
#[allow(clippy::expect_used)]
fn x25519_public(secret: &[u8; KEY_LEN]) -> PublicKey {
    // The default resolver always has Curve25519: snow's `use-curve25519` feature is part of
    // its default features, which this crate builds with. `x25519_matches_rfc7748` checks it.
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .expect("snow built with its default Curve25519 implementation");
    dh.set(secret);
    let mut public = [0_u8; KEY_LEN];
    public.copy_from_slice(dh.pubkey());
    PublicKey(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0_u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn x25519_matches_rfc7748() {
        // RFC 7748 §6.1, Alice's key pair.
        let pair = StaticKeypair::from_secret_bytes(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            pair.public().as_bytes(),
            &hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
    }

    #[test]
    fn generate_is_deterministic_per_seed() {
        let a = StaticKeypair::generate([7; 32]);
        let b = StaticKeypair::generate([7; 32]);
        let c = StaticKeypair::generate([8; 32]);
        assert_eq!(a.public(), b.public());
        assert_eq!(a.secret_bytes(), b.secret_bytes());
        assert_ne!(a.public(), c.public());
        let restored = StaticKeypair::from_secret_bytes(a.secret_bytes());
        assert_eq!(restored.public(), a.public());
    }

    #[test]
    fn public_key_base64_round_trip() {
        let key = StaticKeypair::generate([1; 32]).public();
        let text = key.to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(format!("{key:?}"), text);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!(key.fingerprint(), text[..8]);

        let zero = PublicKey::from_bytes([0; 32]);
        assert_eq!(
            zero.to_string(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
    }

    #[test]
    fn public_key_parse_errors() {
        assert!(matches!(
            "not base64!".parse::<PublicKey>(),
            Err(PublicKeyParseError::Base64(_))
        ));
        assert_eq!(
            "AAAA".parse::<PublicKey>(),
            Err(PublicKeyParseError::Length(3))
        );
        let key = StaticKeypair::generate([1; 32]).public().to_string();
        assert!(format!("{key}\n").parse::<PublicKey>().is_err());
        assert!(key[..43].parse::<PublicKey>().is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let pair = StaticKeypair::generate([3; 32]);
        let secret_b64 = STANDARD.encode(pair.secret_bytes());
        let printed = format!("{pair:?} {:?}", pair.secret());
        assert!(!printed.contains(&secret_b64));
        assert!(printed.contains("StaticSecret(..)"));
        assert!(printed.contains(&pair.public().to_string()));
        assert_eq!(format!("{:?}", ClusterPsk::derive(b"s")), "ClusterPsk(..)");
    }

    #[test]
    fn psk_is_hkdf_sha256_with_domain_separation() {
        struct Len32;
        impl ring::hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let secret = b"correct horse battery staple";
        let mut expected = [0_u8; 32];
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, PSK_SALT)
            .extract(secret)
            .expand(&[PSK_INFO], Len32)
            .unwrap()
            .fill(&mut expected)
            .unwrap();
        assert_eq!(ClusterPsk::derive(secret).as_bytes(), &expected);
        assert_eq!(
            ClusterPsk::derive(secret).as_bytes(),
            ClusterPsk::derive(secret).as_bytes()
        );
        assert_ne!(
            ClusterPsk::derive(secret).as_bytes(),
            ClusterPsk::derive(b"another secret").as_bytes()
        );
        // Not the raw secret, not a plain hash of it.
        assert_ne!(ClusterPsk::derive(&[0; 32]).as_bytes(), &[0; 32]);
    }
}
