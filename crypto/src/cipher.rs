//! Which AEAD a session's packets use, and how the two ends agree on it inside the handshake.
//!
//! Every node can do ChaCha20-Poly1305. AES-256-GCM is several times faster where the CPU has
//! AES instructions (AES-NI with carry-less multiply on x86-64, the ARMv8 crypto extensions),
//! and much slower where it does not; so it is an option a node offers, and a session uses it
//! only when both ends offered it.
//!
//! The agreement rides in the handshake payloads, which Noise encrypts and binds into the
//! handshake hash (so an attacker on the path cannot change an offer without failing the
//! handshake):
//!
//! - the initiator's first message carries an **offer**: `[OFFER, set]`, `set` a bit set of
//!   [`Cipher::bit`]s;
//! - the responder's reply carries its **choice**: `[CHOICE, id]`, one [`Cipher::id`] out of the
//!   offer (AES-256-GCM when both sides offer it).
//!
//! An empty payload (a node from before this negotiation) means "ChaCha20-Poly1305 only", and
//! bytes after the two are ignored, so later versions can add fields.

use std::fmt;

/// First byte of an offer payload.
pub const OFFER: u8 = 0x01;
/// First byte of a choice payload.
pub const CHOICE: u8 = 0x02;

/// The AEAD that seals a session's packets (16-byte tag, 96-bit nonce, either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Cipher {
    /// ChaCha20-Poly1305: every node has it; fast everywhere without AES hardware.
    #[default]
    ChaCha20Poly1305,
    /// AES-256-GCM: offered by nodes with AES instructions.
    Aes256Gcm,
}

impl Cipher {
    /// Every cipher, in the order of preference (best first).
    pub const PREFERENCE: [Cipher; 2] = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305];

    /// Its number in a choice payload.
    pub fn id(self) -> u8 {
        match self {
            Self::ChaCha20Poly1305 => 1,
            Self::Aes256Gcm => 2,
        }
    }

    /// Its bit in an offer's set.
    pub fn bit(self) -> u8 {
        1 << (self.id() - 1)
    }

    /// The cipher with number `id`.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::PREFERENCE.into_iter().find(|c| c.id() == id)
    }

    /// Its name in flags, config files, JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::Aes256Gcm => "aes-256-gcm",
        }
    }

    pub(crate) fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            Self::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
            Self::Aes256Gcm => &ring::aead::AES_256_GCM,
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The ciphers one node offers. ChaCha20-Poly1305 is always in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherSet(u8);

impl CipherSet {
    /// ChaCha20-Poly1305 alone.
    pub const CHACHA_ONLY: CipherSet = CipherSet(1);

    /// ChaCha20-Poly1305 plus AES-256-GCM when `aes`.
    pub fn with_aes(aes: bool) -> Self {
        if aes {
            Self(Cipher::ChaCha20Poly1305.bit() | Cipher::Aes256Gcm.bit())
        } else {
            Self::CHACHA_ONLY
        }
    }

    /// What this machine does well: AES-256-GCM too when the CPU has AES instructions.
    pub fn for_this_cpu() -> Self {
        Self::with_aes(hardware_aes())
    }

    /// Its ciphers, preferred first.
    pub fn ciphers(self) -> impl Iterator<Item = Cipher> {
        Cipher::PREFERENCE
            .into_iter()
            .filter(move |c| self.contains(*c))
    }

    /// Its names, preferred first, comma-separated (`aes-256-gcm,chacha20-poly1305`).
    pub fn names(self) -> String {
        self.ciphers()
            .map(Cipher::name)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether `c` is in the set.
    pub fn contains(self, c: Cipher) -> bool {
        self.0 & c.bit() != 0
    }

    /// The offer payload for the initiator's first handshake message.
    pub fn offer(self) -> [u8; 2] {
        [OFFER, self.0]
    }

    /// The set a received first-message payload offers: ChaCha20-Poly1305 alone for an empty
    /// or unrecognised payload (an older node), and always at least that.
    pub fn from_offer(payload: &[u8]) -> Self {
        match payload {
            [OFFER, set, ..] => Self((set & Self::with_aes(true).0) | Self::CHACHA_ONLY.0),
            _ => Self::CHACHA_ONLY,
        }
    }

    /// The responder's choice between its own set and the initiator's offer: the most
    /// preferred cipher both have.
    pub fn choose(self, offered: CipherSet) -> Cipher {
        Cipher::PREFERENCE
            .into_iter()
            .find(|c| self.contains(*c) && offered.contains(*c))
            .unwrap_or_default()
    }

    /// The cipher a responder's reply payload names, checked against what we offered: an
    /// empty or unrecognised payload means ChaCha20-Poly1305 (an older responder); a choice
    /// of something we did not offer is an error.
    pub fn accept_choice(self, payload: &[u8]) -> Result<Cipher, BadChoice> {
        match payload {
            [CHOICE, id, ..] => match Cipher::from_id(*id) {
                Some(c) if self.contains(c) => Ok(c),
                _ => Err(BadChoice(*id)),
            },
            _ => Ok(Cipher::ChaCha20Poly1305),
        }
    }
}

/// The choice payload naming `c`.
pub fn choice(c: Cipher) -> [u8; 2] {
    [CHOICE, c.id()]
}

/// A responder chose a cipher the initiator did not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the responder chose cipher {0}, which was not offered")]
pub struct BadChoice(pub u8);

/// Whether this CPU has the instructions that make AES-256-GCM fast.
pub fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_offering_aes_choose_aes_else_chacha() {
        let aes = CipherSet::with_aes(true);
        let chacha = CipherSet::CHACHA_ONLY;
        assert_eq!(
            aes.choose(CipherSet::from_offer(&aes.offer())),
            Cipher::Aes256Gcm
        );
        assert_eq!(
            aes.choose(CipherSet::from_offer(&chacha.offer())),
            Cipher::ChaCha20Poly1305
        );
        assert_eq!(
            chacha.choose(CipherSet::from_offer(&aes.offer())),
            Cipher::ChaCha20Poly1305
        );
    }

    #[test]
    fn an_empty_or_foreign_payload_means_chacha_only() {
        let aes = CipherSet::with_aes(true);
        for p in [&[][..], &[0x7f, 0xff], &[OFFER]] {
            assert_eq!(CipherSet::from_offer(p), CipherSet::CHACHA_ONLY, "{p:?}");
        }
        assert_eq!(aes.accept_choice(&[]), Ok(Cipher::ChaCha20Poly1305));
        assert_eq!(aes.accept_choice(&[0x7f, 2]), Ok(Cipher::ChaCha20Poly1305));
    }

    #[test]
    fn unknown_bits_in_an_offer_are_ignored_and_chacha_is_always_in() {
        let got = CipherSet::from_offer(&[OFFER, 0xfe, 9, 9]);
        assert!(got.contains(Cipher::Aes256Gcm));
        assert!(got.contains(Cipher::ChaCha20Poly1305));
        assert_eq!(CipherSet::with_aes(true).choose(got), Cipher::Aes256Gcm);
    }

    #[test]
    fn a_choice_outside_the_offer_is_refused() {
        let chacha = CipherSet::CHACHA_ONLY;
        assert_eq!(
            chacha.accept_choice(&choice(Cipher::Aes256Gcm)),
            Err(BadChoice(2))
        );
        assert_eq!(chacha.accept_choice(&[CHOICE, 0]), Err(BadChoice(0)));
        assert_eq!(chacha.accept_choice(&[CHOICE, 9]), Err(BadChoice(9)));
        assert_eq!(
            CipherSet::with_aes(true).accept_choice(&choice(Cipher::Aes256Gcm)),
            Ok(Cipher::Aes256Gcm)
        );
    }

    #[test]
    fn ids_round_trip_and_bits_differ() {
        for c in Cipher::PREFERENCE {
            assert_eq!(Cipher::from_id(c.id()), Some(c));
        }
        assert_eq!(Cipher::from_id(0), None);
        assert_ne!(Cipher::Aes256Gcm.bit(), Cipher::ChaCha20Poly1305.bit());
    }
}
