//! Sliding anti-replay window over 64-bit packet counters (RFC 6479 style, as in WireGuard).
//!
//! The window remembers which of the last [`REPLAY_WINDOW`] counters (ending at the highest
//! counter accepted so far) were seen, in a ring of 64-bit words, so moving it forward clears
//! whole words instead of shifting bits. It does not authenticate anything: call
//! [`ReplayWindow::check`] before decrypting and [`ReplayWindow::update`] only after the packet
//! authenticated, so forged packets cannot move the window.

/// How many counters, ending at the highest one accepted, the window remembers. A counter
/// `REPLAY_WINDOW` or more below the highest accepted one is rejected as too old.
pub const REPLAY_WINDOW: u64 = 8192;

const WORD_BITS: u64 = u64::BITS as u64;
/// One spare word, so the ring always holds the whole window whatever its alignment.
const WORDS: usize = (REPLAY_WINDOW / WORD_BITS) as usize + 1;

/// Why a counter is refused. Blame: the network (duplicates, heavy reordering) or an attacker
/// replaying captured packets; drop the packet and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The counter was already accepted.
    #[error("packet counter already seen (replayed or duplicated packet)")]
    Replay,
    /// The counter is [`REPLAY_WINDOW`] or more below the highest accepted counter.
    #[error("packet counter is below the replay window (packet too old)")]
    TooOld,
}

/// The anti-replay state of one receiving session.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Bit `c % 64` of word `(c / 64) % WORDS` is set when counter `c` was accepted.
    bitmap: [u64; WORDS],
    /// Highest accepted counter; meaningless while `empty`.
    highest: u64,
    empty: bool,
    /// Counters accepted so far.
    accepted: u64,
}

impl ReplayWindow {
    /// An empty window: every counter is acceptable.
    pub fn new() -> Self {
        Self {
            bitmap: [0; WORDS],
            highest: 0,
            empty: true,
            accepted: 0,
        }
    }

    /// Whether `counter` would be accepted, without recording it.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if self.empty || counter > self.highest {
            return Ok(());
        }
        if self.highest - counter >= REPLAY_WINDOW {
            return Err(ReplayError::TooOld);
        }
        let (word, bit) = position(counter);
        if self.bitmap[word] & bit != 0 {
            Err(ReplayError::Replay)
        } else {
            Ok(())
        }
    }

    /// Records `counter` as seen, moving the window forward if it is the highest so far.
    /// Fails, without changing anything, where [`ReplayWindow::check`] fails.
    pub fn update(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        if self.empty {
            self.empty = false;
            self.highest = counter;
        } else if counter > self.highest {
            // Clear the words between the old highest and the new one: they belong to counters
            // that dropped out of the window (or were never seen). At most the whole ring.
            let old_word = self.highest / WORD_BITS;
            let new_word = counter / WORD_BITS;
            let to_clear = (new_word - old_word).min(WORDS as u64);
            for i in 1..=to_clear {
                self.bitmap[ring_index(old_word + i)] = 0;
            }
            self.highest = counter;
        }
        let (word, bit) = position(counter);
        self.bitmap[word] |= bit;
        self.accepted += 1;
        Ok(())
    }

    /// `(span, accepted)`: counters from 0 to the highest accepted one, and how many of them
    /// were accepted. Senders number every packet, so `span - accepted` packets of this
    /// session never arrived (or are still on their way, when reordered).
    pub fn received(&self) -> (u64, u64) {
        let span = if self.empty { 0 } else { self.highest + 1 };
        (span, self.accepted)
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let highest = (!self.empty).then_some(self.highest);
        f.debug_struct("ReplayWindow")
            .field("highest", &highest)
            .finish_non_exhaustive()
    }
}

fn ring_index(word: u64) -> usize {
    // The remainder is below WORDS (129), so it fits any usize.
    (word % WORDS as u64) as usize
}

fn position(counter: u64) -> (usize, u64) {
    (ring_index(counter / WORD_BITS), 1 << (counter % WORD_BITS))
}

#[cfg(test)]
mod tests {

    #[test]
    fn received_counts_the_gaps_below_the_highest_counter() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.received(), (0, 0));
        for c in [0, 1, 2, 5, 4] {
            w.update(c).unwrap();
        }
        assert_eq!(w.received(), (6, 5), "counter 3 never came");
        assert!(w.update(4).is_err());
        assert_eq!(w.received(), (6, 5), "a replay is not counted");
    }

    use super::*;

    /// Reference model: the set of accepted counters, with the same rules stated directly.
    struct Model {
        seen: std::collections::BTreeSet<u64>,
    }

    impl Model {
        fn update(&mut self, c: u64) -> Result<(), ReplayError> {
            if self
                .seen
                .last()
                .is_some_and(|&max| c <= max && max - c >= REPLAY_WINDOW)
            {
                return Err(ReplayError::TooOld);
            }
            if !self.seen.insert(c) {
                return Err(ReplayError::Replay);
            }
            Ok(())
        }
    }

    #[test]
    fn counter_zero_once() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(0), Ok(()));
        assert_eq!(w.update(0), Ok(()));
        assert_eq!(w.check(0), Err(ReplayError::Replay));
        assert_eq!(w.update(0), Err(ReplayError::Replay));
        assert_eq!(w.update(1), Ok(()));
        assert_eq!(w.update(1), Err(ReplayError::Replay));
    }

    #[test]
    fn check_does_not_record() {
        let mut w = ReplayWindow::new();
        for _ in 0..3 {
            assert_eq!(w.check(5), Ok(()));
        }
        w.update(5).unwrap();
        assert_eq!(w.check(5), Err(ReplayError::Replay));
        assert_eq!(w.check(4), Ok(()));
    }

    #[test]
    fn window_boundary() {
        let mut w = ReplayWindow::new();
        let top = 100_000;
        w.update(top).unwrap();
        // Oldest counter still inside the window, and the first one outside.
        assert_eq!(w.check(top - (REPLAY_WINDOW - 1)), Ok(()));
        assert_eq!(w.check(top - REPLAY_WINDOW), Err(ReplayError::TooOld));
        w.update(top - (REPLAY_WINDOW - 1)).unwrap();
        assert_eq!(
            w.update(top - (REPLAY_WINDOW - 1)),
            Err(ReplayError::Replay)
        );
        // One step forward pushes that counter out: it is now too old, not a replay.
        w.update(top + 1).unwrap();
        assert_eq!(w.check(top - (REPLAY_WINDOW - 1)), Err(ReplayError::TooOld));
        assert_eq!(w.check(top - (REPLAY_WINDOW - 2)), Ok(()));
    }

    #[test]
    fn whole_window_is_remembered_at_every_alignment() {
        for start in [0_u64, 1, 63, 64, 65, 8191, 8192, 12_345] {
            let mut w = ReplayWindow::new();
            for c in start..start + REPLAY_WINDOW {
                w.update(c).unwrap();
            }
            for c in start..start + REPLAY_WINDOW {
                assert_eq!(w.check(c), Err(ReplayError::Replay), "start {start} c {c}");
            }
            let top = start + REPLAY_WINDOW;
            assert_eq!(w.check(top), Ok(()));
            w.update(top).unwrap();
            assert_eq!(w.check(start), Err(ReplayError::TooOld));
            assert_eq!(w.check(start + 1), Err(ReplayError::Replay));
        }
    }

    #[test]
    fn large_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new();
        for c in 0..200 {
            w.update(c).unwrap();
        }
        // Jump exactly one ring length of words: the words must be cleared, not reused.
        let jump = WORDS as u64 * WORD_BITS;
        w.update(jump + 199).unwrap();
        for c in jump + 199 - (REPLAY_WINDOW - 1)..jump + 199 {
            assert_eq!(w.check(c), Ok(()), "counter {c} aliased a stale bit");
        }
        assert_eq!(w.check(199), Err(ReplayError::TooOld));

        // A huge jump.
        w.update(1 << 50).unwrap();
        assert_eq!(w.check((1 << 50) - 1), Ok(()));
        assert_eq!(w.check(jump + 199), Err(ReplayError::TooOld));
        assert_eq!(w.update(1 << 50), Err(ReplayError::Replay));
    }

    #[test]
    fn far_below_window_is_too_old() {
        let mut w = ReplayWindow::new();
        w.update(1_000_000).unwrap();
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        assert_eq!(w.update(10), Err(ReplayError::TooOld));
    }

    #[test]
    fn near_u64_max() {
        let mut w = ReplayWindow::new();
        w.update(u64::MAX - 1).unwrap();
        assert_eq!(w.update(u64::MAX), Ok(()));
        assert_eq!(w.update(u64::MAX), Err(ReplayError::Replay));
        assert_eq!(w.update(u64::MAX - 1), Err(ReplayError::Replay));
        assert_eq!(w.update(u64::MAX - 5), Ok(()));
        assert_eq!(w.check(u64::MAX - (REPLAY_WINDOW - 1)), Ok(()));
        assert_eq!(w.check(u64::MAX - REPLAY_WINDOW), Err(ReplayError::TooOld));
        assert_eq!(w.check(0), Err(ReplayError::TooOld));

        let mut first = ReplayWindow::new();
        first.update(u64::MAX).unwrap();
        assert_eq!(first.check(u64::MAX), Err(ReplayError::Replay));
    }

    #[test]
    fn failed_update_changes_nothing() {
        let mut w = ReplayWindow::new();
        w.update(50_000).unwrap();
        w.update(49_000).unwrap();
        assert_eq!(w.update(49_000), Err(ReplayError::Replay));
        assert_eq!(w.update(1), Err(ReplayError::TooOld));
        assert_eq!(w.check(49_001), Ok(()));
        assert_eq!(w.check(50_000), Err(ReplayError::Replay));
    }

    #[test]
    fn matches_reference_model_on_pseudo_random_traffic() {
        // xorshift, fixed seed: reproducible without an RNG crate.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut w = ReplayWindow::new();
        let mut model = Model {
            seen: Default::default(),
        };
        let mut base = 0_u64;
        for step in 0..200_000 {
            let r = next();
            let counter = match r % 8 {
                // Mostly moving forward a little, sometimes a jump, often reordering.
                0..=3 => base + r % 70,
                4 => base.saturating_sub(r % 9000),
                5 => base.saturating_sub(REPLAY_WINDOW - 1 + r % 3),
                6 => base + (r >> 8) % 20_000,
                _ => base.saturating_sub(r % 200),
            };
            base = base.max(counter);
            let expected = model.update(counter);
            assert_eq!(w.update(counter), expected, "step {step} counter {counter}");
        }
    }
}
