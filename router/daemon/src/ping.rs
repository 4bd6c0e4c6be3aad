//! `POST /v1/ping` (`meshctl ping`): echo probes to a member through the node's session
//! with it (so over the path data takes: direct or relayed), then one probe of the overlay
//! MTU. The node times each probe (`Node::ping`, sans-I/O); this only paces the probes and
//! waits for the answers.

use crate::api::Refusal;
use crate::run::Shared;
use axum::http::StatusCode;
use ipnet::Ipv4Net;
use mesh_api::{MemberStatus, PathKind, PingRequest, PingResult};
use mesh_crypto::PublicKey;
use rand_core::{OsRng, RngCore};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Length of an ordinary probe (the echo header and a few bytes).
const SMALL_PROBE: usize = 16;
/// How long the last probe's answer is waited for.
const LAST_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Who `target` names: a member's public key, its name, or an address inside a routed
/// block (the block's owner). `own` is this node's key.
pub(crate) fn resolve(
    target: &str,
    members: &[MemberStatus],
    routes: &[(Ipv4Net, PublicKey)],
    own: PublicKey,
) -> Result<PublicKey, Refusal> {
    let t = target.trim();
    let is_own = |k: &PublicKey| {
        if *k == own {
            Err((
                StatusCode::BAD_REQUEST,
                format!("{t} is this node: ping another member"),
            ))
        } else {
            Ok(*k)
        }
    };
    if let Ok(key) = t.parse::<PublicKey>() {
        return is_own(&key);
    }
    let named: Vec<&MemberStatus> = members.iter().filter(|m| m.name == t).collect();
    match named.as_slice() {
        [m] => {
            let key = m.public_key.parse::<PublicKey>().map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("member {t} has no valid public key"),
                )
            })?;
            return is_own(&key);
        }
        [] => {}
        several => {
            let keys: Vec<&str> = several.iter().map(|m| m.public_key.as_str()).collect();
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "{} members are called {t:?}: give the public key of one: {}",
                    several.len(),
                    keys.join(", ")
                ),
            ));
        }
    }
    if let Ok(addr) = t.parse::<Ipv4Addr>() {
        let owner = routes
            .iter()
            .filter(|(net, _)| net.contains(&addr))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, k)| *k);
        return match owner {
            Some(k) if k == own => Err((
                StatusCode::BAD_REQUEST,
                format!("{t} is in this node's own blocks: ping an address of another member"),
            )),
            Some(k) => Ok(k),
            None => Err((
                StatusCode::NOT_FOUND,
                format!("no member owns a block holding {t} (see `meshctl routes`)"),
            )),
        };
    }
    Err((
        StatusCode::NOT_FOUND,
        format!(
            "no member is called {t:?}: give a name or public key from `meshctl members`, or a pod address"
        ),
    ))
}

/// Min, mean and max of the answered round trips.
pub(crate) fn summary(rtts: &[Option<u64>]) -> (Option<u64>, Option<u64>, Option<u64>) {
    let got: Vec<u64> = rtts.iter().flatten().copied().collect();
    if got.is_empty() {
        return (None, None, None);
    }
    let sum: u64 = got.iter().sum();
    (
        got.iter().min().copied(),
        Some(sum / got.len() as u64),
        got.iter().max().copied(),
    )
}

/// Sends the probes of `req` and waits for their answers.
pub(crate) async fn ping(shared: &Shared, req: &PingRequest) -> Result<PingResult, Refusal> {
    if req.count == 0 || req.count > mesh_api::MAX_PING_COUNT {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("count must be 1 to {}", mesh_api::MAX_PING_COUNT),
        ));
    }
    let interval = Duration::from_millis(req.interval_ms.clamp(10, 1000));
    let key = shared.read(|node, now| {
        let members = node.members(now);
        resolve(&req.target, &members, &node.routes(), node.public_key())
    })?;
    let mtu = shared.config.mtu as usize;
    let base = OsRng.next_u64() >> 1;
    // Probe ids: base..base+count, then the MTU probe.
    let mut sent: Vec<(u64, bool)> = Vec::new();
    let mut answers = Vec::new();
    for i in 0..=req.count {
        let id = base + u64::from(i);
        let len = if i == req.count { mtu } else { SMALL_PROBE };
        answers.push(shared.await_echo(id));
        let ok = shared.update(|node, now| node.ping(now, key, id, len).is_ok());
        sent.push((id, ok));
        if i < req.count {
            tokio::time::sleep(interval).await;
        }
    }
    // Answers came while we slept (the node reports each as an event); wait a little for
    // the last ones.
    let deadline = tokio::time::Instant::now() + LAST_ANSWER_WAIT;
    let mut rtts: Vec<Option<u64>> = vec![None; sent.len()];
    for (i, ((id, ok), rx)) in sent.iter().zip(answers).enumerate() {
        if *ok && let Ok(Ok(d)) = tokio::time::timeout_at(deadline, rx).await {
            rtts[i] = Some(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        }
        shared.forget_echo(*id);
    }
    let node_key = key.to_string();
    let (peer, members) = shared.update(|node, now| {
        for (id, _) in &sent {
            node.forget_ping(*id);
        }
        let peer = node
            .peer_status(now)
            .into_iter()
            .find(|p| p.public_key == node_key);
        (peer, node.members(now))
    });
    let name_of = |k: &str| {
        members
            .iter()
            .find(|m| m.public_key == k && !m.name.is_empty())
            .map_or_else(|| mesh_api::key_fingerprint(k), |m| m.name.clone())
    };
    let mtu_ok = rtts.last().copied().flatten().is_some();
    let probes = &rtts[..rtts.len() - 1];
    let (min, avg, max) = summary(probes);
    let relay = peer.as_ref().and_then(|p| p.relay.clone());
    Ok(PingResult {
        target: req.target.trim().to_owned(),
        name: name_of(&node_key),
        public_key: node_key,
        endpoint: peer.map(|p| p.endpoint).unwrap_or_default(),
        path: if relay.is_some() {
            PathKind::Relay
        } else {
            PathKind::Direct
        },
        relay: relay.map(|r| name_of(&r)),
        sent: req.count,
        received: probes.iter().flatten().count() as u32,
        rtts_us: probes.to_vec(),
        rtt_min_us: min,
        rtt_avg_us: avg,
        rtt_max_us: max,
        mtu: shared.config.mtu,
        mtu_ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::MemberState;
    use mesh_crypto::StaticKeypair;

    fn member(name: &str, key: PublicKey) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            public_key: key.to_string(),
            endpoint: None,
            blocks: vec![],
            state: MemberState::Alive,
            neighbour: false,
            session: true,
            unreachable_secs: None,
        }
    }

    #[test]
    fn targets_resolve_by_key_name_or_pod_address() {
        let own = StaticKeypair::generate([1; 32]).public();
        let b = StaticKeypair::generate([2; 32]).public();
        let c = StaticKeypair::generate([3; 32]).public();
        let members = [
            member("a", own),
            member("b", b),
            member("c", c),
            member("c", b),
        ];
        let routes = [
            ("10.32.1.0/24".parse().unwrap(), own),
            ("10.32.2.0/24".parse().unwrap(), b),
            ("10.32.2.128/25".parse().unwrap(), c),
        ];
        assert_eq!(resolve("b", &members, &routes, own), Ok(b));
        assert_eq!(resolve(&c.to_string(), &members, &routes, own), Ok(c));
        assert_eq!(resolve(" 10.32.2.5 ", &members, &routes, own), Ok(b));
        assert_eq!(
            resolve("10.32.2.200", &members, &routes, own),
            Ok(c),
            "longest prefix"
        );
        let code = |t: &str| resolve(t, &members, &routes, own).unwrap_err().0;
        assert_eq!(code("a"), StatusCode::BAD_REQUEST, "this node");
        assert_eq!(code("10.32.1.9"), StatusCode::BAD_REQUEST, "own block");
        assert_eq!(code("c"), StatusCode::BAD_REQUEST, "ambiguous");
        assert_eq!(code("nobody"), StatusCode::NOT_FOUND);
        assert_eq!(code("10.40.0.1"), StatusCode::NOT_FOUND);
    }

    #[test]
    fn summary_skips_lost_probes() {
        assert_eq!(summary(&[]), (None, None, None));
        assert_eq!(summary(&[None, None]), (None, None, None));
        assert_eq!(
            summary(&[Some(300), None, Some(100), Some(200)]),
            (Some(100), Some(200), Some(300))
        );
    }
}
