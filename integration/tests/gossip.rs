//! Gossip with real `meshd`s: five hosts where every host but the first is given only the
//! first as `--peer`; every pod reaches every pod, every host lists every member alive, and
//! a killed host is marked dead by the others within `--dead-after` plus detection time. An
//! iptables cut between two hosts moves their pings through a relay (full-size packets
//! included), and the heal brings the path back to direct.
#![allow(clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{POLL, cut, wait_ping};
use mesh_api::{MemberState, Status};
use mesh_integration::api::meshctl_json;
use mesh_integration::{Host, MeshdOpts, Pod, Topology, require_root, wait_until};

const HOSTS: [(&str, &str, &str); 5] = [
    ("a", "10.32.1.0/24", "10.32.1.10"),
    ("b", "10.32.2.0/24", "10.32.2.10"),
    ("c", "10.32.3.0/24", "10.32.3.10"),
    ("d", "10.32.4.0/24", "10.32.4.10"),
    ("e", "10.32.5.0/24", "10.32.5.10"),
];
/// Learning every member and pinging every pod, from the first meshd's start.
const CONVERGE_BOUND: Duration = Duration::from_secs(30);
/// `--dead-after` given to every host.
const DEAD_AFTER_SECS: u64 = 5;
/// A killed host's sessions stop counting after 30 s of silence; then `--dead-after`.
const DEAD_BOUND: Duration = Duration::from_secs(30 + DEAD_AFTER_SECS + 20);

fn status(host: &Host) -> Result<Status, String> {
    meshctl_json(&host.api_socket(), &["status"])
}

fn members_alive(host: &Host, n: usize) -> Result<(), String> {
    let s = status(host)?;
    let alive = s
        .members
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count();
    if alive == n - 1 {
        Ok(())
    } else {
        Err(format!(
            "{} sees {alive} alive of {}: {:?}",
            host.name,
            n - 1,
            s.members
        ))
    }
}

/// Waits until every host lists every other member alive, at most [`CONVERGE_BOUND`] after
/// `started`.
fn wait_all_alive(hosts: &[Host], started: Instant) {
    for host in hosts {
        wait_until(
            &format!("{} knows every member alive", host.name),
            CONVERGE_BOUND.saturating_sub(started.elapsed()),
            POLL,
            || members_alive(host, hosts.len()),
        )
        .expect("membership");
    }
}

#[test]
fn five_hosts_from_one_peer_learn_each_other_and_mark_a_killed_host_dead() {
    require_root();
    let mut topo = Topology::new("gossip_five_hosts").expect("topology");
    let hosts: Vec<Host> = HOSTS
        .iter()
        .map(|(name, _, _)| topo.add_host(name).expect("host"))
        .collect();
    let started = Instant::now();
    let dead_after = DEAD_AFTER_SECS.to_string();
    for (i, host) in hosts.iter().enumerate() {
        let peers: Vec<&Host> = if i == 0 { vec![] } else { vec![&hosts[0]] };
        let mut opts = MeshdOpts::new(HOSTS[i].1).peers(peers);
        opts.extra_args = vec!["--dead-after".into(), dead_after.clone()];
        topo.start_meshd(host, opts).expect("start meshd");
    }
    let pods: Vec<Pod> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| topo.add_pod(h, "p1", HOSTS[i].2).expect("pod"))
        .collect();

    wait_all_alive(&hosts, started);
    let deadline = started + CONVERGE_BOUND;
    let mut failures = Vec::new();
    for from in &pods {
        for to in &pods {
            if from.netns != to.netns
                && let Err(e) = wait_ping(from, to, deadline)
            {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Hosts b..e were never told about each other: what they know came by gossip, with the
    // endpoints the others announced.
    let c = status(&hosts[2]).expect("status of c");
    let d_key = status(&hosts[3]).expect("status of d").node.public_key;
    let d = c
        .members
        .iter()
        .find(|m| m.public_key == d_key)
        .expect("c knows d");
    assert_eq!(d.endpoint.as_deref(), Some(hosts[3].peer_addr().as_str()));
    assert_eq!(d.blocks, vec![HOSTS[3].1.to_string()]);

    // Kill e: the others mark it dead.
    let e_key = status(&hosts[4]).expect("status of e").node.public_key;
    topo.kill_meshd(&hosts[4]).expect("kill e");
    let killed = Instant::now();
    for host in &hosts[..4] {
        wait_until(
            &format!("{} marks e dead", host.name),
            DEAD_BOUND.saturating_sub(killed.elapsed()),
            POLL,
            || {
                let s = status(host)?;
                match s.members.iter().find(|m| m.public_key == e_key) {
                    Some(m) if m.state == MemberState::Dead => Ok(()),
                    other => Err(format!(
                        "{} sees e as {:?}",
                        host.name,
                        other.map(|m| m.state)
                    )),
                }
            },
        )
        .expect("dead");
    }
    eprintln!(
        "e marked dead everywhere {:?} after the kill",
        killed.elapsed()
    );
    // The living still reach each other.
    let deadline = Instant::now() + Duration::from_secs(10);
    for from in &pods[..4] {
        for to in &pods[..4] {
            if from.netns != to.netns {
                wait_ping(from, to, deadline).expect("survivors ping");
            }
        }
    }
}

fn path_to(host: &Host, peer_key: &str) -> Result<(mesh_api::PathKind, Option<String>), String> {
    let v: mesh_api::ConnectionsView = meshctl_json(&host.api_socket(), &["connections"])?;
    v.connections
        .into_iter()
        .find(|c| c.public_key == peer_key)
        .map(|c| (c.path, c.relay))
        .ok_or_else(|| format!("{} has no connection to {peer_key}", host.name))
}

#[test]
fn a_cut_link_goes_through_a_relay_and_back_to_direct_after_the_heal() {
    require_root();
    let mut topo = Topology::new("gossip_relay").expect("topology");
    let hosts: Vec<Host> = HOSTS[..3]
        .iter()
        .map(|(name, _, _)| topo.add_host(name).expect("host"))
        .collect();
    let started = Instant::now();
    for (i, host) in hosts.iter().enumerate() {
        let peers: Vec<&Host> = if i == 0 { vec![] } else { vec![&hosts[0]] };
        topo.start_meshd(host, MeshdOpts::new(HOSTS[i].1).peers(peers))
            .expect("start meshd");
    }
    let pods: Vec<Pod> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| topo.add_pod(h, "p1", HOSTS[i].2).expect("pod"))
        .collect();
    wait_all_alive(&hosts, started);
    let (a, b) = (&hosts[1], &hosts[2]);
    let (pa, pb) = (&pods[1], &pods[2]);
    wait_ping(pa, pb, started + CONVERGE_BOUND).expect("b -> c direct");
    let b_key = status(b).expect("status").node.public_key;
    let a_key = status(a).expect("status").node.public_key;
    assert_eq!(
        path_to(a, &b_key).expect("path").0,
        mesh_api::PathKind::Direct
    );

    // Cut b <-> c (hosts[1] and hosts[2]) with a steady ping running: traffic moves to a
    // path through a (hosts[0]).
    cut(a, b, true);
    let cut_at = Instant::now();
    wait_ping(pa, pb, cut_at + Duration::from_secs(20)).expect("ping through the relay");
    eprintln!(
        "first ping through the relay {:?} after the cut",
        cut_at.elapsed()
    );
    let (kind, relay) = path_to(a, &b_key).expect("path");
    assert_eq!(kind, mesh_api::PathKind::Relay);
    assert_eq!(relay.as_deref(), Some(hosts[0].name.as_str()));
    // Full-size packets fit through the relay (default MTU leaves room for its framing).
    let big = pa
        .exec(&[
            "ping",
            "-c",
            "3",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1392",
            &pb.ip.to_string(),
        ])
        .expect("big ping");
    assert!(
        big.status.success(),
        "full-size ping through the relay: {}",
        String::from_utf8_lossy(&big.stdout)
    );

    // Heal: direct again within 10 s (plus a poll).
    cut(a, b, false);
    let healed = Instant::now();
    wait_until("direct again", Duration::from_secs(12), POLL, || {
        match (path_to(a, &b_key)?, path_to(b, &a_key)?) {
            ((mesh_api::PathKind::Direct, _), (mesh_api::PathKind::Direct, _)) => Ok(()),
            other => Err(format!("paths {other:?}")),
        }
    })
    .expect("back to direct");
    eprintln!("direct again {:?} after the heal", healed.elapsed());
    wait_ping(pa, pb, Instant::now() + Duration::from_secs(5)).expect("direct ping");
}
