//! Seeded inputs for the corpus tests that run the fuzz targets' checks on every
//! `cargo test` (`router/proto/tests/fuzz_corpus.rs`, `router/core/tests/decap_garbage.rs`,
//! `dns/core/tests/fuzz_corpus.rs`): a tiny xorshift and byte-level edits. Those tests
//! include this file by path, like the checks, so it depends on nothing.

/// xorshift64*: tiny, seeded, no dependency. The same seed gives the same inputs.
pub struct Rng(u64);

impl Rng {
    /// A generator; seed 0 is moved to 1 (xorshift would stay at 0).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A byte: a third of the time one of `interesting` (values the parser under test
    /// branches on), otherwise any byte.
    pub fn byte_from(&mut self, interesting: &[u8]) -> u8 {
        if !interesting.is_empty() && self.below(3) == 0 {
            interesting[self.below(interesting.len())]
        } else {
            self.next() as u8
        }
    }
}

/// One to four random edits of `v` — flip a bit, set a byte, insert, remove, truncate,
/// append — with new bytes drawn by `byte`.
pub fn mutate(rng: &mut Rng, mut v: Vec<u8>, byte: impl Fn(&mut Rng) -> u8) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = byte(rng);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let b = byte(rng);
                v.insert(i, b);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            4 => {
                let n = rng.below(v.len() + 1);
                v.truncate(n);
            }
            _ => {
                for _ in 0..rng.below(8) {
                    let b = byte(rng);
                    v.push(b);
                }
            }
        }
    }
    v
}
