//! Convergence checks a property test runs once faults are over. Each returns every
//! offending pair, so a failure says what is missing, not just that something is.

use crate::sim::Sim;
use mesh_api::{MemberState, PeerState};
use mesh_core::Encap;
use std::collections::BTreeSet;
use std::time::Duration;

/// Everyone learns everyone: every running node knows every other running node as an
/// alive member and routes its block.
pub fn check_membership(sim: &Sim) -> Result<(), String> {
    let up = sim.up_nodes();
    let now = sim.now();
    let mut missing = Vec::new();
    for &a in &up {
        let Some(node) = sim.node(a) else {
            continue;
        };
        let members = node.members(now);
        let routes = node.routes();
        for &b in &up {
            if a == b {
                continue;
            }
            let Some(key) = sim.public_key(b) else {
                continue;
            };
            let key = key.to_string();
            match members.iter().find(|m| m.public_key == key) {
                None => missing.push(format!("{a} does not know {b}")),
                Some(m) if m.state != MemberState::Alive => {
                    missing.push(format!("{a} sees {b} as {:?}", m.state))
                }
                Some(_) => {}
            }
            let block = sim.block(b);
            if !routes
                .iter()
                .any(|(net, k)| *net == block && k.to_string() == key)
            {
                missing.push(format!("{a} does not route {block} to {b}"));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "membership not converged at {:?} ({} problems):\n  {}",
            sim.elapsed(),
            missing.len(),
            missing
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        ))
    }
}

/// Every pair of running nodes where one bootstraps from the other has an established
/// session on both sides (bootstrap peers are the first gossip neighbours).
pub fn check_bootstrap_sessions(sim: &Sim) -> Result<(), String> {
    let mut missing = Vec::new();
    for (a, b) in sim.bootstrap_pairs() {
        if !(sim.is_up(a) && sim.is_up(b)) {
            continue;
        }
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
            "{} bootstrap pairs without a session at {:?}:\n  {}",
            missing.len(),
            sim.elapsed(),
            missing.join("\n  ")
        ))
    }
}

/// Sends one packet each way between every pair, lets `settle` of virtual time pass, and
/// checks that each was sent or queued for a handshake (sessions are made on demand), not
/// dropped, and delivered exactly once.
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
            if !matches!(r, Some(Encap::Send { .. } | Encap::Queued | Encap::Relayed)) {
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
