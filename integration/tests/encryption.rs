//! What an observer of the underlay sees, and what `meshd` does with datagrams it did not
//! seal itself: replays, forgeries, and a node with another secret.
#![allow(clippy::expect_used)] // helpers of tests fail by panicking, like the tests

mod common;

use std::time::{Duration, Instant};

use common::{POLL, full_mesh, peer_state, wait_ping};
use mesh_api::PeerState;
use mesh_integration::capture::Frame;
use mesh_integration::{
    CapturedPacket, MESHD_PORT, MeshdOpts, UdpDatagram, random_secret, wait_until,
};

/// Type byte of a data datagram.
const TYPE_DATA: u8 = 4;
/// The `ping -p` pattern; it must never cross the underlay in clear.
const PATTERN_HEX: &str = "dec0ded0c0ffee1122334455aabbccdd";
const PATTERN: [u8; 16] = [
    0xde, 0xc0, 0xde, 0xd0, 0xc0, 0xff, 0xee, 0x11, 0x22, 0x33, 0x44, 0x55, 0xaa, 0xbb, 0xcc, 0xdd,
];

fn wait_first_ping(pods: &[mesh_integration::Pod], started: Instant) {
    wait_ping(&pods[0], &pods[1], started + Duration::from_secs(10)).expect("a -> b");
}

#[test]
fn pod_traffic_is_encrypted_on_the_underlay() {
    let (mut topo, hosts, pods, started) = full_mesh("pod_traffic_is_encrypted_on_the_underlay", 2);
    wait_first_ping(&pods, started);
    let capture = topo.capture_underlay(&hosts[0]).expect("capture");
    let out = pods[0]
        .exec(&[
            "ping",
            "-n",
            "-c",
            "10",
            "-i",
            "0.2",
            "-W",
            "1",
            "-s",
            "200",
            "-p",
            PATTERN_HEX,
            &pods[1].ip.to_string(),
        ])
        .expect("ping");
    assert!(out.status.success(), "ping with pattern: {out:?}");
    let packets = capture.stop().expect("capture parsed");

    let data: Vec<&UdpDatagram> = packets
        .iter()
        .filter_map(CapturedPacket::udp)
        .filter(|d| d.payload.first() == Some(&TYPE_DATA))
        .collect();
    assert!(
        data.len() >= 20,
        "expected 10 requests and 10 replies as data datagrams, saw {} of {} frames",
        data.len(),
        packets.len()
    );
    for p in &packets {
        assert!(
            !p.contains(&PATTERN),
            "pattern in clear on the underlay: {p:?}"
        );
        match &p.frame {
            Frame::Udp(d) => assert!(
                d.src.port() == MESHD_PORT || d.dst.port() == MESHD_PORT,
                "UDP datagram not to or from port {MESHD_PORT}: {d:?}"
            ),
            Frame::Arp => {}
            // The kernel's own IGMP membership reports for link-local groups (sent when an
            // interface comes up) are host chatter, not pod traffic.
            Frame::Ipv4 {
                dst, protocol: 2, ..
            } if dst.is_multicast() => {}
            other => panic!("unexpected frame between the hosts: {other:?} {p:?}"),
        }
    }
}

#[test]
fn replayed_and_forged_datagrams_are_dropped() {
    let (mut topo, hosts, pods, started) =
        full_mesh("replayed_and_forged_datagrams_are_dropped", 2);
    let (a, b) = (&hosts[0], &hosts[1]);
    wait_first_ping(&pods, started);
    let capture = topo.capture_underlay(a).expect("capture");
    pods[0].ping(pods[1].ip, 3).expect("ping while capturing");
    let packets = capture.stop().expect("capture parsed");
    let a_to_b: Vec<Vec<u8>> = packets
        .iter()
        .filter_map(CapturedPacket::udp)
        .filter(|d| {
            *d.src.ip() == a.underlay_ip
                && d.dst.to_string() == b.peer_addr()
                && d.payload.first() == Some(&TYPE_DATA)
                && d.payload.len() > 32
        })
        .map(|d| d.payload.clone())
        .collect();
    assert!(
        a_to_b.len() >= 2,
        "need 2 data datagrams a -> b, got {}",
        a_to_b.len()
    );

    // Replay: the very datagram b accepted once already.
    let before = topo.status(b).expect("status").total_drops("replay");
    topo.send_udp_from(a, &b.peer_addr(), &a_to_b[0])
        .expect("re-send");
    wait_until(
        "b to count a replay drop",
        Duration::from_secs(5),
        POLL,
        || {
            let now = topo.status(b)?.total_drops("replay");
            if now > before {
                Ok(())
            } else {
                Err(format!("replay drops {before} -> {now}"))
            }
        },
    )
    .expect("replay dropped");

    // Forgery: one bit of the tag flipped. The counter (bytes 8..16, little endian) is moved
    // far ahead as well, so the datagram cannot be turned away as a replay before it is
    // authenticated; a forged counter must not move the replay window either (checked by
    // the ping below).
    let mut forged = a_to_b[1].clone();
    let counter = u64::from_le_bytes(forged[8..16].try_into().expect("8 bytes"));
    forged[8..16].copy_from_slice(&(counter + (1 << 20)).to_le_bytes());
    let last = forged.len() - 1;
    forged[last - 7] ^= 0x01;
    let before = topo
        .status(b)
        .expect("status")
        .total_drops("authentication");
    topo.send_udp_from(a, &b.peer_addr(), &forged)
        .expect("send forgery");
    wait_until(
        "b to count an authentication drop",
        Duration::from_secs(5),
        POLL,
        || {
            let now = topo.status(b)?.total_drops("authentication");
            if now > before {
                Ok(())
            } else {
                Err(format!("authentication drops {before} -> {now}"))
            }
        },
    )
    .expect("forgery dropped");
    pods[0]
        .ping(pods[1].ip, 3)
        .expect("traffic still flows after the replay and the forgery");
}

#[test]
fn a_node_with_another_secret_gets_no_session() {
    let (mut topo, hosts, pods, started) =
        full_mesh("a_node_with_another_secret_gets_no_session", 2);
    let a = &hosts[0];
    let c = topo.add_host("c").expect("host c");
    topo.start_meshd(
        &c,
        MeshdOpts::new("10.32.3.0/24")
            .peers([a])
            .secret(&random_secret().expect("secret")),
    )
    .expect("start meshd on c");
    let pod_c = topo.add_pod(&c, "p1", "10.32.3.10").expect("pod c");
    // a itself works: it has a session with b.
    wait_first_ping(&pods, started);

    let watch_started = Instant::now();
    while watch_started.elapsed() < Duration::from_secs(10) {
        let sa = topo.status(a).expect("status a");
        assert_ne!(
            peer_state(&sa, c.underlay_ip),
            Some(PeerState::Established),
            "a established a session with c: {:?}",
            sa.peers
        );
        let sc = topo.status(&c).expect("status c");
        assert!(
            sc.peers.iter().all(|p| p.state != PeerState::Established),
            "c established a session: {:?}",
            sc.peers
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let err = pod_c
        .ping(pods[0].ip, 3)
        .expect_err("c's pod must not reach a's pod");
    assert!(err.contains("failed"), "{err}");
}
