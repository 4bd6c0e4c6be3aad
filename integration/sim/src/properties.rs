//! Convergence checks a property test runs once faults are over. Each returns every
//! offending pair, so a failure says what is missing, not just that something is.

use crate::sim::Sim;
use mesh_api::PeerState;
use mesh_core::Encap;
use std::collections::BTreeSet;
use std::time::Duration;

/// Today's promise: every pair of running nodes where one bootstraps from the other, and
/// every pair where either knows the other (from a bootstrap, a handshake or peers.json),
/// has an established session on both sides.
pub fn check_sessions(sim: &Sim) -> Result<(), String> {
    let mut pairs: BTreeSet<(usize, usize)> = sim
        .bootstrap_pairs()
        .into_iter()
        .filter(|&(a, b)| sim.is_up(a) && sim.is_up(b))
        .collect();
    pairs.extend(sim.knowing_pairs());
    let mut missing = Vec::new();
    for &(a, b) in &pairs {
        let state = |x: usize, y: usize| {
            sim.peer_states(x)
                .into_iter()
                .find(|(j, _)| *j == y)
                .map(|(_, s)| s)
        };
        let (ab, ba) = (state(a, b), state(b, a));
        if ab != Some(PeerState::Established) || ba != Some(PeerState::Established) {
            missing.push(format!("{a}<->{b}: {a} sees {ab:?}, {b} sees {ba:?}"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} pairs without a session at {:?}:\n  {}",
            missing.len(),
            pairs.len(),
            sim.elapsed(),
            missing.join("\n  ")
        ))
    }
}

/// Sends one packet each way between every pair, lets `settle` of virtual time pass, and
/// checks that each was sent at once (not queued or dropped) and delivered exactly once.
pub fn check_exchange(
    sim: &mut Sim,
    pairs: &BTreeSet<(usize, usize)>,
    settle: Duration,
) -> Result<(), String> {
    let mut sent = Vec::new();
    let mut problems = Vec::new();
    for &(a, b) in pairs {
        for (x, y) in [(a, b), (b, a)] {
            let (id, r) = sim.send_packet(x, y, 64);
            if !matches!(r, Some(Encap::Send { .. })) {
                problems.push(format!("{x}->{y}: encapsulate said {r:?}"));
            }
            sent.push((x, y, id));
        }
    }
    sim.run_for(settle);
    for (x, y, id) in sent {
        let n = sim.ledger().deliveries_of(id);
        if n != 1 {
            problems.push(format!("{x}->{y}: packet {id} delivered {n} times"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} packets went wrong:\n  {}",
            problems.len(),
            2 * pairs.len(),
            problems.join("\n  ")
        ))
    }
}

/// Every pair of running nodes.
pub fn all_pairs(sim: &Sim) -> BTreeSet<(usize, usize)> {
    let up = sim.up_nodes();
    let mut out = BTreeSet::new();
    for (k, &a) in up.iter().enumerate() {
        for &b in &up[k + 1..] {
            out.insert((a, b));
        }
    }
    out
}
