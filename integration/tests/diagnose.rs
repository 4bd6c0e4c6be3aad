//! `meshctl debug`, `ping`, `connect` and `forget` against real `meshd`s in namespaces:
//! the debug view lists the bridge, the pod veths with their namespaces and the routes, and
//! reports a pod veth detached from the bridge (exit 3); `ping` by name and by pod address
//! gives a path and round trips; `connect` makes a session with a host started without that
//! peer and saves it, `forget` removes it from the saved peers; with a link cut, `ping`
//! shows the relay and `debug` reports the relayed peer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests fail by panicking

mod common;

use std::process::Output;
use std::time::Duration;

use common::{BLOCKS, POLL, full_mesh, meshctl, wait_established, wait_ping};
use mesh_api::{DebugReport, EndpointChanged, PathKind, PingResult, Severity};
use mesh_integration::topology::BRIDGE;
use mesh_integration::{Host, MeshdOpts, Topology, require_root, text, wait_until};

/// Bound of the first pings after meshd starts.
const PING_BOUND: Duration = Duration::from_secs(15);
/// Bound of a session to be established.
const SESSION_BOUND: Duration = Duration::from_secs(15);

fn json<T: serde::de::DeserializeOwned>(out: &Output, what: &str) -> T {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

fn debug(topo: &Topology, host: &Host) -> (Option<i32>, DebugReport) {
    let out = meshctl(topo, host, &["debug", "-o", "json"]);
    (out.status.code(), json(&out, "meshctl debug -o json"))
}

#[test]
fn debug_lists_bridge_veths_and_routes_and_reports_a_detached_veth() {
    let (topo, hosts, pods, started) = full_mesh("diag-debug", 2);
    wait_ping(&pods[0], &pods[1], started + PING_BOUND).expect("pods reach each other");
    let a = &hosts[0];
    let status = topo.status(a).expect("status");

    let (code, r) = debug(&topo, a);
    let errors: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert_eq!(code, Some(0), "no error on a healthy host: {errors:?}");
    assert!(errors.is_empty());
    assert!(
        r.errors.is_empty(),
        "everything was readable: {:?}",
        r.errors
    );
    let bridge = r.bridge.as_ref().expect("the bridge is listed");
    assert_eq!(
        (bridge.name.as_str(), bridge.kind.as_str()),
        (BRIDGE, "bridge")
    );
    assert!(bridge.admin_up);
    assert!(
        bridge.addresses.contains(&"10.32.1.1/24".to_owned()),
        "{bridge:?}"
    );
    assert_eq!(
        r.tun.as_ref().map(|t| t.name.as_str()),
        Some(status.node.tun.as_str())
    );
    assert!(r.ports.iter().any(|p| p.name == pods[0].host_if));
    let veth = r
        .veths
        .iter()
        .find(|v| v.link.name == pods[0].host_if)
        .unwrap_or_else(|| panic!("pod veth {} listed: {:?}", pods[0].host_if, r.veths));
    assert!(veth.attached);
    assert_eq!(veth.link.master.as_deref(), Some(BRIDGE));
    assert_eq!(veth.netns_name.as_deref(), Some(pods[0].netns.as_str()));
    assert!(
        veth.netns_id.is_some() && veth.peer_ifindex.is_some(),
        "{veth:?}"
    );
    assert_eq!(veth.pod_ifname.as_deref(), Some("eth0"));
    assert_eq!(veth.pod_addresses, vec![format!("{}/24", pods[0].ip)]);
    assert_eq!(veth.pod_mtu, Some(r.mtu));
    assert!(
        r.routes.iter().any(|x| x.destination == status.node.range
            && x.device == status.node.tun
            && x.table == 254),
        "{:?}",
        r.routes
    );
    assert_eq!(r.ip_forward, Some(true));
    assert_eq!(r.udp.local, status.node.listen);
    assert!(
        r.udp.socket_drops.is_some(),
        "meshd's socket found in /proc/net/udp"
    );
    assert!(r.udp.rcvbuf_errors.is_some());
    assert!(
        r.neighbours
            .iter()
            .any(|n| n.address == pods[0].ip.to_string()),
        "the pod's ARP entry after the pings: {:?}",
        r.neighbours
    );
    assert!(
        r.fdb.iter().any(|f| f.device == pods[0].host_if),
        "{:?}",
        r.fdb
    );
    let tun = r
        .offloads
        .iter()
        .find(|o| o.device == status.node.tun)
        .expect("the TUN device's offloads");
    assert!(tun.tun_vnet_hdr.is_some(), "{tun:?}");
    assert!(tun.source.starts_with("ethtool-netlink+"), "{tun:?}");
    let veth_offload = r
        .offloads
        .iter()
        .find(|o| o.device == pods[0].host_if)
        .expect("the pod veth's offloads");
    assert!(
        veth_offload
            .features
            .iter()
            .any(|f| f == "tx-tcp-segmentation"),
        "a veth has TSO on: {veth_offload:?}"
    );

    // The fault: the pod's host veth leaves the bridge.
    a.ip(&["link", "set", "dev", &pods[0].host_if, "nomaster"])
        .expect("detach the veth");
    let (code, r) = debug(&topo, a);
    assert_eq!(code, Some(3), "an error finding exits 3: {:?}", r.findings);
    let veth = r
        .veths
        .iter()
        .find(|v| v.link.name == pods[0].host_if)
        .expect("a detached pod veth is still found (by its pod end)");
    assert!(!veth.attached);
    let f = r
        .findings
        .iter()
        .find(|f| f.check == "veth_detached")
        .unwrap_or_else(|| panic!("finding for the detached veth: {:?}", r.findings));
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.subject, pods[0].host_if);
    assert!(
        f.message.contains(&format!("master {BRIDGE}")),
        "names the fix: {}",
        f.message
    );
    // The table says the same.
    let out = meshctl(&topo, a, &["debug"]);
    assert_eq!(out.status.code(), Some(3));
    let table = text(&out.stdout);
    assert!(
        table.contains(&format!(
            "pod veth {} is not attached to {BRIDGE}",
            pods[0].host_if
        )),
        "{table}"
    );

    // Put back, the finding goes.
    a.ip(&["link", "set", "dev", &pods[0].host_if, "master", BRIDGE])
        .expect("attach the veth again");
    let (code, r) = debug(&topo, a);
    assert_eq!(code, Some(0), "{:?}", r.findings);
}

#[test]
fn ping_by_name_and_pod_address_gives_path_round_trips_and_mtu() {
    let (topo, hosts, pods, started) = full_mesh("diag-ping", 2);
    wait_ping(&pods[0], &pods[1], started + PING_BOUND).expect("pods reach each other");
    let a = &hosts[0];

    let out = meshctl(
        &topo,
        a,
        &["ping", "b", "-c", "3", "-i", "50", "-o", "json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p: PingResult = json(&out, "meshctl ping b");
    assert_eq!(
        (p.name.as_str(), p.path, p.relay.as_deref()),
        ("b", PathKind::Direct, None)
    );
    assert_eq!(p.endpoint, hosts[1].peer_addr());
    assert_eq!((p.sent, p.rtts_us.len()), (3, 3));
    assert!(p.received >= 1, "{p:?}");
    assert!(p.rtt_min_us.is_some() && p.rtt_min_us <= p.rtt_avg_us && p.rtt_avg_us <= p.rtt_max_us);
    assert!(
        p.mtu_ok,
        "a full-size probe passes a lossless veth underlay: {p:?}"
    );

    // A pod address resolves to the member whose block holds it; the table shows the path.
    let out = meshctl(&topo, a, &["ping", BLOCKS[1].2, "-c", "2", "-i", "50"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.starts_with(&format!("PING {} = b (", BLOCKS[1].2)) && table.contains(", direct to "),
        "{table}"
    );
    assert!(table.contains("rtt min/avg/max "), "{table}");

    // Unknown targets: one line, exit 1.
    let out = meshctl(&topo, a, &["ping", "nobody", "-c", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("404") && err.contains("nobody"), "{err}");
}

#[test]
fn connect_makes_a_session_and_saves_it_forget_removes_it() {
    require_root();
    let mut topo = Topology::new("diag-connect").expect("topology");
    let a = topo.add_host("a").expect("host");
    let b = topo.add_host("b").expect("host");
    // Neither knows the other.
    topo.start_meshd(&a, MeshdOpts::new(BLOCKS[0].1))
        .expect("meshd a");
    topo.start_meshd(&b, MeshdOpts::new(BLOCKS[1].1))
        .expect("meshd b");
    let peers_file = a.state_dir().join("peers.json");

    // Bad addresses are usage errors, one line.
    let out = meshctl(&topo, &a, &["connect", "not an address:6788"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).trim().lines().count(), 1);
    // An endpoint nobody tried: 404, exit 1.
    let out = meshctl(&topo, &a, &["forget", &b.peer_addr()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("404") && err.trim().lines().count() == 1,
        "{err}"
    );

    let out = meshctl(&topo, &a, &["connect", &b.peer_addr(), "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c: EndpointChanged = json(&out, "meshctl connect");
    assert_eq!(
        (c.endpoint.as_str(), c.changed),
        (b.peer_addr().as_str(), true)
    );
    let status = wait_established(&topo, &a, &b, SESSION_BOUND);
    let b_key = topo.status(&b).expect("status of b").node.public_key;
    assert!(status.peers.iter().any(|p| p.public_key == b_key));
    let saved = wait_until("b saved in a's peers.json", SESSION_BOUND, POLL, || {
        let text = std::fs::read_to_string(&peers_file).map_err(|e| e.to_string())?;
        if text.contains(&b_key) {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .expect("saved");
    assert!(saved.contains(&b.peer_addr()), "{saved}");

    let out = meshctl(&topo, &a, &["forget", &b.peer_addr(), "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let f: EndpointChanged = json(&out, "meshctl forget");
    assert!(f.changed, "it was tried");
    assert_eq!(f.removed_keys, vec![b_key.clone()]);
    let text_after = std::fs::read_to_string(&peers_file).expect("peers.json");
    assert!(!text_after.contains(&b_key), "{text_after}");
    // Forgotten for good: a second forget finds nothing.
    let out = meshctl(&topo, &a, &["forget", &b.peer_addr()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    // A new session at the forgotten endpoint (b restarts and reaches a, which it saved) is
    // not saved again.
    let handshakes = |topo: &Topology| {
        topo.status(&a)
            .expect("status")
            .peers
            .iter()
            .find(|p| p.public_key == b_key)
            .map_or(0, |p| p.handshakes)
    };
    let before = handshakes(&topo);
    topo.restart_meshd(&b).expect("restart b");
    wait_until("a new session with b", SESSION_BOUND, POLL, || {
        let n = handshakes(&topo);
        if n > before {
            Ok(())
        } else {
            Err(format!("{n} handshakes"))
        }
    })
    .expect("new session");
    // The events task saves right after the session; give it that moment.
    std::thread::sleep(Duration::from_millis(500));
    let text_after = std::fs::read_to_string(&peers_file).expect("peers.json");
    assert!(!text_after.contains(&b_key), "saved again: {text_after}");

    // connect names it again: the peer reached there is saved at once.
    let out = meshctl(&topo, &a, &["connect", &b.peer_addr()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let text_after = std::fs::read_to_string(&peers_file).expect("peers.json");
    assert!(text_after.contains(&b_key), "{text_after}");
}

#[test]
fn a_cut_link_shows_as_a_relayed_path_in_ping_and_as_a_finding_in_debug() {
    require_root();
    let mut topo = Topology::new("diag-relay").expect("topology");
    let hosts: Vec<Host> = BLOCKS
        .iter()
        .map(|(name, _, _)| topo.add_host(name).expect("host"))
        .collect();
    let started = std::time::Instant::now();
    // b and c know only a; they learn each other by gossip.
    for (i, host) in hosts.iter().enumerate() {
        let peers: Vec<&Host> = if i == 0 { vec![] } else { vec![&hosts[0]] };
        topo.start_meshd(host, MeshdOpts::new(BLOCKS[i].1).peers(peers))
            .expect("start meshd");
    }
    let pods: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| topo.add_pod(h, "p1", BLOCKS[i].2).expect("pod"))
        .collect();
    let (b, c) = (&hosts[1], &hosts[2]);
    wait_ping(&pods[1], &pods[2], started + Duration::from_secs(30)).expect("b -> c direct");
    let out = meshctl(
        &topo,
        b,
        &["ping", "c", "-c", "2", "-i", "50", "-o", "json"],
    );
    let p: PingResult = json(&out, "meshctl ping c");
    assert_eq!(p.path, PathKind::Direct, "{p:?}");

    // Cut b <-> c: pod traffic moves through a.
    common::cut(b, c, true);
    wait_ping(
        &pods[1],
        &pods[2],
        std::time::Instant::now() + Duration::from_secs(20),
    )
    .expect("ping through the relay");
    let p = wait_until(
        "meshctl ping c through a relay",
        Duration::from_secs(10),
        POLL,
        || {
            let out = meshctl(
                &topo,
                b,
                &["ping", "c", "-c", "3", "-i", "50", "-o", "json"],
            );
            let p: PingResult = json(&out, "meshctl ping c");
            if p.path == PathKind::Relay && p.received > 0 {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        },
    )
    .expect("relayed ping");
    assert_eq!(p.relay.as_deref(), Some("a"));
    assert!(p.rtt_min_us.is_some());
    let out = meshctl(&topo, b, &["ping", "c", "-c", "1"]);
    assert!(
        text(&out.stdout).starts_with("PING c = c (")
            && text(&out.stdout).contains(", via relay a\n"),
        "{}",
        text(&out.stdout)
    );

    let (_, r) = debug(&topo, b);
    let f = r
        .findings
        .iter()
        .find(|f| f.check == "peer_relayed")
        .unwrap_or_else(|| panic!("a relayed peer is a finding: {:?}", r.findings));
    assert_eq!((f.severity, f.subject.as_str()), (Severity::Warning, "c"));
    assert!(
        f.message
            .starts_with(&format!("peer c unreachable directly at {}", c.peer_addr()))
            && f.message.contains("using relay a"),
        "{}",
        f.message
    );
    common::cut(b, c, false);
}
