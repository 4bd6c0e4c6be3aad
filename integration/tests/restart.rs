//! A `meshd` killed and restarted keeps its identity and its pods' connectivity.
#![allow(clippy::expect_used)] // helpers of tests fail by panicking, like the tests

mod common;

use std::time::{Duration, Instant};

use common::{full_mesh, wait_ping};

#[test]
fn sigkilled_meshd_restarts_with_its_identity_and_traffic_resumes() {
    let (mut topo, hosts, pods, started) = full_mesh(
        "sigkilled_meshd_restarts_with_its_identity_and_traffic_resumes",
        2,
    );
    let b = &hosts[1];
    wait_ping(&pods[0], &pods[1], started + Duration::from_secs(10)).expect("a -> b");
    let key_before = topo.status(b).expect("status b").node.public_key;
    assert!(!key_before.is_empty());

    let killed = topo.kill_meshd(b).expect("kill meshd on b");
    assert!(killed.is_some_and(|s| !s.success()), "{killed:?}");
    let restarted = Instant::now();
    topo.restart_meshd(b).expect("restart meshd on b");
    let key_after = topo.status(b).expect("status b").node.public_key;
    assert_eq!(
        key_before, key_after,
        "b's public key changed across a restart"
    );
    wait_ping(&pods[0], &pods[1], restarted + Duration::from_secs(5))
        .expect("a -> b within 5 s of the restart");
    wait_ping(&pods[1], &pods[0], restarted + Duration::from_secs(5))
        .expect("b -> a within 5 s of the restart");
}
