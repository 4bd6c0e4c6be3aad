//! Handshake messages and cookie replies sealed with the cluster secret (so they pass mac1),
//! mangled, replayed and out of time, fed to a node without a fuzzer: the `handshake` fuzz
//! target's check (`integration/fuzz/src/handshake_checks.rs`, included here by path) over a
//! fixed set of pseudo-random scripts from a seeded xorshift.
//!
//! The check panics if the node panics, drops without counting, or does handshake work for a
//! replayed initiation or for a datagram not sealed with the secret.

// The check starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#[allow(unreachable_pub, dead_code, clippy::disallowed_methods)]
#[path = "../../../integration/fuzz/src/handshake_checks.rs"]
mod handshake_checks;

// handshake_checks builds its node with decap_checks' configuration.
#[allow(unreachable_pub, dead_code, clippy::disallowed_methods)]
#[path = "../../../integration/fuzz/src/decap_checks.rs"]
mod decap_checks;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../integration/fuzz/src/corpus.rs"]
mod corpus;

use corpus::Rng;
use handshake_checks::{Outcome, fuzz_handshake};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

const SCRIPTS: u64 = 96;

fn script(rng: &mut Rng) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..1 + rng.below(16) {
        let op = rng.next() as u8;
        let len = match op % 5 {
            3 => 1,
            4 => 0,
            _ => rng.below(140) as u8,
        };
        s.push(op);
        s.push(len);
        for _ in 0..len {
            s.push(if rng.below(3) == 0 {
                rng.below(4) as u8
            } else {
                rng.next() as u8
            });
        }
    }
    s
}

fn run(input: &[u8], what: &str) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| fuzz_handshake(input))) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{what} failed on {input:02x?}");
            resume_unwind(e);
        }
    }
}

#[test]
fn random_scripts_never_panic_drop_uncounted_or_work_for_replays() {
    let mut rng = Rng::new(0x4a5d_5ba4_e11e);
    let mut total = Outcome::default();
    for i in 0..SCRIPTS {
        let o = run(&script(&mut rng), &format!("script {i}"));
        total.consumed += o.consumed;
        total.dropped += o.dropped;
        total.mac += o.mac;
        total.responded += o.responded;
    }
    // The scripts reach past mac1 into the gate and the Noise code.
    assert!(total.dropped > total.mac, "{total:?}");
    assert!(total.responded > 0, "{total:?}");
}

/// A sealed IK-shaped initiation with a fresh timestamp costs work once; fed again (op 4)
/// it is refused as a replay. Unsealed copies (op 0) fail mac1.
#[test]
fn a_sealed_initiation_costs_work_once() {
    // op 1 (init), 10 header bytes + 96 bytes of Noise filler: the node reads it (and fails
    // the Noise tag), which is the work; then op 4 replays it.
    let mut input = vec![1u8, 106, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    input.extend_from_slice(&[0x33; 96]);
    input.extend_from_slice(&[4, 0]);
    let o = run(&input, "replay");
    assert_eq!(o.responded, 1, "{o:?}");
    assert_eq!(o.dropped, 2, "{o:?}");
}
