//! `Node::decapsulate` fed garbage and mangled datagrams, without a fuzzer: the `decapsulate`
//! fuzz target's check (`integration/fuzz/src/decap_checks.rs`, included here by path) run
//! over a fixed set of pseudo-random scripts from a seeded xorshift.
//!
//! The check panics if the node panics, delivers anything but a genuine sealed datagram the
//! first time it arrives, or drops without counting.

// The check starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#[allow(unreachable_pub, dead_code, clippy::disallowed_methods)]
#[path = "../../../integration/fuzz/src/decap_checks.rs"]
mod decap_checks;

use decap_checks::{Outcome, fuzz_decapsulate};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Scripts run; each builds fresh nodes, and half of them shake hands first.
const SCRIPTS: u64 = 64;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../integration/fuzz/src/corpus.rs"]
mod corpus;

use corpus::Rng;

/// A script in the fuzz target's input format: mode byte, then `[op][len][arg]` ops.
fn script(rng: &mut Rng, established: bool) -> Vec<u8> {
    let mut s = vec![u8::from(established)];
    for _ in 0..1 + rng.below(24) {
        let op = rng.next() as u8;
        let len = match op % 6 {
            3 => 1,
            1 => 2 * rng.below(4) as u8,
            _ => rng.below(120) as u8,
        };
        s.push(op);
        s.push(len);
        for _ in 0..len {
            // Small values are types, reserved bytes and flags the parsers look at.
            let b = if rng.below(2) == 0 {
                rng.below(6) as u8
            } else {
                rng.next() as u8
            };
            s.push(b);
        }
    }
    s
}

fn run(input: &[u8], what: &str) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| fuzz_decapsulate(input))) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{what} failed on {input:02x?}");
            resume_unwind(e);
        }
    }
}

#[test]
fn random_scripts_never_panic_deliver_garbage_or_drop_uncounted() {
    let mut rng = Rng::new(0x6a7b_a6e5_eed5);
    let mut total = Outcome::default();
    for i in 0..SCRIPTS {
        let input = script(&mut rng, i % 2 == 1);
        let o = run(&input, &format!("script {i}"));
        total.delivered += o.delivered;
        total.consumed += o.consumed;
        total.dropped += o.dropped;
    }
    // The scripts reach past the parser: some genuine data is delivered (once), some
    // handshakes are consumed, and most of the rest is dropped.
    assert!(total.delivered > 0, "{total:?}");
    assert!(total.consumed > 0, "{total:?}");
    assert!(total.dropped > total.delivered, "{total:?}");
}

#[test]
fn genuine_data_is_delivered_once_and_replays_are_not() {
    // Established; feed genuine datagram 0 twice, genuine datagram 1 (op 7 = 1 + 6) twice.
    let input = [1, 1, 0, 1, 0, 7, 0, 7, 0];
    let o = run(&input, "replays");
    assert_eq!(o.delivered, 2, "{o:?}");
    assert_eq!(o.dropped, 2, "{o:?}");
}

#[test]
fn one_flipped_bit_anywhere_is_never_delivered() {
    // Datagram 1 is 16 + 33 + 16 bytes: one op per bit, each XORing it into a fresh copy.
    let mut input = vec![1];
    for at in 0..65u8 {
        for bit in 0..8 {
            input.extend_from_slice(&[7, 2, at, 1 << bit]);
        }
    }
    let o = run(&input, "bit flips");
    assert_eq!(
        o,
        Outcome {
            delivered: 0,
            consumed: 0,
            dropped: 65 * 8
        }
    );
}

#[test]
fn a_handshake_initiation_is_consumed_and_its_mangled_copies_dropped() {
    // Not established: the genuine initiation is answered, a truncated copy is not.
    let o = run(&[0, 1, 0, 2, 1, 40], "initiation");
    assert_eq!(
        o,
        Outcome {
            delivered: 0,
            consumed: 1,
            dropped: 1
        }
    );
}
