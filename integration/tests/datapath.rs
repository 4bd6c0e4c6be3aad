//! Pod-to-pod traffic through real `meshd`s: reachability and bulk TCP integrity.
#![allow(clippy::expect_used)] // helpers of tests fail by panicking, like the tests

mod common;

use std::time::Duration;

use common::{full_mesh, full_mesh_with, wait_ping};
use mesh_integration::Pod;

/// Bound of the first successful ping after `meshd` starts.
const FIRST_PING_BOUND: Duration = Duration::from_secs(10);
/// Bytes sent each way by the transfer test.
const TRANSFER_BYTES: u64 = 100_000_000;
/// Bound of one transfer (a debug build on two cores is slow; this is no measurement).
const TRANSFER_BOUND: Duration = Duration::from_secs(600);

#[test]
fn two_hosts_pods_ping_both_ways() {
    let (_topo, _hosts, pods, started) = full_mesh("two_hosts_pods_ping_both_ways", 2);
    wait_ping(&pods[0], &pods[1], started + FIRST_PING_BOUND).expect("a -> b");
    wait_ping(&pods[1], &pods[0], started + FIRST_PING_BOUND).expect("b -> a");
}

#[test]
fn tcp_transfers_arrive_intact_both_ways() {
    let (topo, hosts, pods, started) = full_mesh("tcp_transfers_arrive_intact_both_ways", 2);
    transfers_both_ways(&topo, &pods, started);
    // Offloads are on by default: the TUN device hands over TCP super-packets, so reads
    // yield several packets each, and full-size datagrams leave in segmented sends.
    let dp = topo.status(&hosts[0]).expect("status").datapath;
    assert!(dp.tun_offload, "{dp:?}");
    assert!(
        dp.tun_read_packets > dp.tun_reads,
        "no batching from the TUN: {dp:?}"
    );
    assert!(
        dp.udp_send_datagrams > dp.udp_sends,
        "no segmented UDP sends: {dp:?}"
    );
    // And the receiver writes TCP segments back to its TUN device coalesced: the device's
    // kernel counter counts one packet per write, several times fewer than the datagrams
    // (when the buffers were too small to coalesce into, it was one write per datagram).
    for h in &hosts {
        let dp = topo.status(h).expect("status").datapath;
        let out = h
            .exec(&["cat", "/sys/class/net/meshtun0/statistics/rx_packets"])
            .expect("TUN counters");
        let written: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("rx_packets");
        eprintln!(
            "{}: {written} TUN writes for {} datagrams received",
            h.name, dp.udp_recv_datagrams
        );
        assert!(
            written * 4 < dp.udp_recv_datagrams,
            "{}: no coalescing into the TUN device: {written} writes, {dp:?}",
            h.name
        );
    }
}

#[test]
fn tcp_transfers_arrive_intact_with_offloads_off() {
    let (topo, hosts, pods, started) = full_mesh_with(
        "tcp_transfers_arrive_intact_with_offloads_off",
        2,
        &["--offload", "off", "--cipher", "chacha20-poly1305"],
    );
    transfers_both_ways(&topo, &pods, started);
    // The default run uses AES-256-GCM where the CPU has AES instructions; this one moves
    // the same bytes with ChaCha20-Poly1305.
    let status = topo.status(&hosts[1]).expect("status");
    assert_eq!(status.node.cipher, "chacha20-poly1305");
    for p in &status.peers {
        assert_eq!(p.cipher.as_deref(), Some("chacha20-poly1305"), "{p:?}");
    }
    let dp = status.datapath;
    assert!(!dp.tun_offload, "{dp:?}");
    assert_eq!(
        dp.tun_read_packets, dp.tun_reads,
        "one packet per read: {dp:?}"
    );
    assert!(dp.tun_reads > 0 && dp.udp_recv_datagrams > 0, "{dp:?}");
}

fn transfers_both_ways(
    topo: &mesh_integration::Topology,
    pods: &[Pod],
    started: std::time::Instant,
) {
    wait_ping(&pods[0], &pods[1], started + FIRST_PING_BOUND).expect("a -> b");
    let file = topo.dir().join("random.bin");
    let file_arg = file.to_string_lossy().into_owned();
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("head -c {TRANSFER_BYTES} /dev/urandom > '{file_arg}'"),
        ])
        .output()
        .expect("run head");
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .expect("run sha256sum");
    let sent = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned();
    transfer(&pods[0], &pods[1], &file_arg, &sent);
    transfer(&pods[1], &pods[0], &file_arg, &sent);
}

/// Sends `file` from `from` to `to` over TCP and checks the receiver's sha256 is `digest`.
fn transfer(from: &Pod, to: &Pod, file: &str, digest: &str) {
    let receiver = to
        .spawn(&[
            "sh",
            "-c",
            "socat -u TCP-LISTEN:5001,reuseaddr STDOUT | sha256sum",
        ])
        .expect("start receiver");
    let target = format!("TCP:{}:5001,retry=100,interval=0.1", to.ip);
    let sender = from
        .exec_timeout(
            &["socat", "-u", &format!("OPEN:{file},rdonly"), &target],
            TRANSFER_BOUND,
        )
        .expect("sender finishes");
    assert!(
        sender.status.success(),
        "socat {} -> {}: {}",
        from.host,
        to.host,
        String::from_utf8_lossy(&sender.stderr)
    );
    let received = receiver
        .wait_output(Duration::from_secs(60))
        .expect("receiver finishes");
    let got = String::from_utf8_lossy(&received.stdout);
    assert_eq!(
        got.split_whitespace().next(),
        Some(digest),
        "sha256 of what {} received from {} (stderr: {})",
        to.host,
        from.host,
        String::from_utf8_lossy(&received.stderr)
    );
}

#[test]
fn three_hosts_every_pod_pair_pings() {
    let (_topo, _hosts, pods, started) = full_mesh("three_hosts_every_pod_pair_pings", 3);
    let deadline = started + FIRST_PING_BOUND;
    let mut failures = Vec::new();
    for from in &pods {
        for to in &pods {
            if from.netns == to.netns {
                continue;
            }
            if let Err(e) = wait_ping(from, to, deadline) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
