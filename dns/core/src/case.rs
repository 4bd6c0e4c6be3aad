//! "0x20" letter-case randomisation of a query name (draft-vixie-dnsext-dns0x20): every
//! ASCII letter of the name sent upstream gets a random case, and an answer counts only
//! if its question spells the name with exactly that case. Upstreams copy the question
//! byte for byte, so a real answer passes; an off-path forger, who does not see the
//! query, must guess one bit per letter on top of the ID and the source port.
//!
//! Hand-written because it is ten lines over hickory-proto's `Label`; hickory's resolver
//! has its own 0x20 support but not as a function on a `Name`.

use hickory_proto::rr::Name;
use hickory_proto::rr::domain::Label;
use rand_core::RngCore;

/// `name` with each ASCII letter in a case drawn from `rng` (one bit per letter); other
/// bytes unchanged. A name without letters comes back as it is.
pub(crate) fn randomise(name: &Name, rng: &mut impl RngCore) -> Name {
    let mut bits = 0u64;
    let mut left = 0u32;
    let mut labels = Vec::with_capacity(usize::from(name.num_labels()));
    for label in name.iter() {
        let mut bytes = label.to_vec();
        for b in bytes.iter_mut().filter(|b| b.is_ascii_alphabetic()) {
            if left == 0 {
                bits = rng.next_u64();
                left = 64;
            }
            *b = if bits & 1 == 1 {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
            bits >>= 1;
            left -= 1;
        }
        match Label::from_raw_bytes(&bytes) {
            Ok(l) => labels.push(l),
            // Cannot happen (same length as a label that was valid); keep the name as is.
            Err(_) => return name.clone(),
        }
    }
    match Name::from_labels(labels) {
        Ok(mut out) => {
            out.set_fqdn(name.is_fqdn());
            out
        }
        Err(_) => name.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn only_letter_case_changes_and_it_varies() {
        let name = Name::from_ascii("www-1.example.com.").unwrap();
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let mut spellings = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let r = randomise(&name, &mut rng);
            assert_eq!(r, name, "equal ignoring case");
            assert!(r.is_fqdn());
            assert_eq!(r.to_string().to_lowercase(), "www-1.example.com.");
            spellings.insert(r.to_string());
        }
        // 13 letters: 64 draws of 2^13 spellings all but never repeat.
        assert!(spellings.len() > 60, "{spellings:?}");
    }

    #[test]
    fn a_name_without_letters_is_unchanged() {
        let name = Name::from_ascii("1.2.3.4.").unwrap();
        let r = randomise(&name, &mut ChaCha20Rng::from_seed([1; 32]));
        assert!(r.eq_case(&name));
        assert!(randomise(&Name::root(), &mut ChaCha20Rng::from_seed([1; 32])).is_root());
    }
}
