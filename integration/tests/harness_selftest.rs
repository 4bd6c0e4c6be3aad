//! Tests of the harness itself; they need root but not `meshd`.
#![allow(clippy::expect_used)] // helpers of tests fail by panicking, like the tests

use std::time::Duration;

use mesh_integration::capture::Frame;
use mesh_integration::topology::BRIDGE;
use mesh_integration::{Topology, require_root, wait_until};

fn netns_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_gone(namespaces: &[String]) {
    let list = netns_list();
    for ns in namespaces {
        assert!(
            !list.split_whitespace().any(|w| w == ns),
            "namespace {ns} still exists: {list}"
        );
    }
}

#[test]
fn hosts_pods_processes_and_captures() {
    require_root();
    let mut topo = Topology::new("hosts_pods_processes_and_captures").expect("topology");
    let a = topo.add_host("a").expect("host a");
    let b = topo.add_host("b").expect("host b");
    assert_ne!(a.underlay_ip, b.underlay_ip);
    assert!(
        a.underlay_ip.octets()[..2] == [198, 18],
        "{}",
        a.underlay_ip
    );

    // Underlay.
    let out = a
        .exec(&[
            "ping",
            "-n",
            "-c",
            "2",
            "-W",
            "2",
            &b.underlay_ip.to_string(),
        ])
        .expect("ping");
    assert!(out.status.success(), "underlay ping a -> b: {out:?}");

    // IPv6 is off in every namespace.
    let out = a
        .exec(&["sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"])
        .expect("sysctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    // A bridge standing in for meshd's, and a pod on it.
    for args in [
        vec!["link", "add", BRIDGE, "type", "bridge"],
        vec!["addr", "add", "10.32.1.1/24", "dev", BRIDGE],
        vec!["link", "set", BRIDGE, "up"],
    ] {
        let mut argv = vec!["ip"];
        argv.extend(args);
        let out = a.exec(&argv).expect("ip");
        assert!(out.status.success(), "{argv:?}: {out:?}");
    }
    let pod = topo.add_pod(&a, "p1", "10.32.1.10").expect("pod");
    let out = pod
        .exec(&["ip", "-o", "link", "show", "eth0"])
        .expect("ip link");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("mtu 1420"),
        "{out:?}"
    );
    let out = pod
        .exec(&["ip", "route", "show", "default"])
        .expect("ip route");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("via 10.32.1.1"),
        "{out:?}"
    );
    pod.ping("10.32.1.1".parse().expect("ip"), 2)
        .expect("pod -> host");
    let out = a
        .exec(&["ping", "-n", "-c", "2", "-W", "2", "10.32.1.10"])
        .expect("ping");
    assert!(out.status.success(), "host -> pod: {out:?}");
    // Nothing answers outside the pod's subnet: a failing ping is reported as one.
    let err = pod
        .ping("10.32.9.9".parse().expect("ip"), 1)
        .expect_err("nobody at 10.32.9.9");
    assert!(err.contains("failed"), "{err}");

    // A process started in a namespace, ended by its PID.
    let mut sleeper = a.spawn(&["sleep", "600"]).expect("sleep");
    let pid = sleeper.pid();
    // The child enters the namespace right after it starts (`ip netns exec`): poll briefly.
    wait_until(
        &format!("sleep {pid} in {}", a.netns),
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let in_ns = std::process::Command::new("ip")
                .args(["netns", "pids", &a.netns])
                .output()
                .map_err(|e| e.to_string())?;
            if String::from_utf8_lossy(&in_ns.stdout)
                .split_whitespace()
                .any(|p| p == pid.to_string())
            {
                Ok(())
            } else {
                Err(format!("{in_ns:?}"))
            }
        },
    )
    .expect("the sleeper runs in the host's namespace");
    assert!(sleeper.is_running());
    let status = sleeper.terminate(Duration::from_secs(5)).expect("reaped");
    assert!(!status.success(), "sleep ended by SIGTERM: {status}");
    assert!(!sleeper.is_running());
    // Reaped, so its PID is gone (unless already reused by an unrelated process).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !cmdline.starts_with(b"sleep\x00600"),
        "sleep {pid} still there"
    );

    // A capture sees a ping's payload pattern and a re-sent UDP datagram: the checks that
    // look for plaintext in captures can fail.
    let capture = topo.capture_underlay(&a).expect("capture");
    let out = a
        .exec(&[
            "ping",
            "-n",
            "-c",
            "2",
            "-W",
            "2",
            "-s",
            "200",
            "-p",
            "dec0ded0c0ffee11",
            &b.underlay_ip.to_string(),
        ])
        .expect("ping");
    assert!(out.status.success(), "ping with pattern: {out:?}");
    let datagram = b"\x04harness-selftest-datagram";
    topo.send_udp_from(&a, &b.peer_addr(), datagram)
        .expect("send udp");
    let packets = capture.stop().expect("parse capture");
    let pattern = [0xde, 0xc0, 0xde, 0xd0, 0xc0, 0xff, 0xee, 0x11];
    let icmp_with_pattern = packets
        .iter()
        .filter(|p| matches!(p.frame, Frame::Ipv4 { protocol: 1, .. }) && p.contains(&pattern))
        .count();
    assert!(
        icmp_with_pattern >= 4,
        "expected 2 requests + 2 replies carrying the pattern, got {icmp_with_pattern} of {} frames",
        packets.len()
    );
    let udp: Vec<_> = packets.iter().filter_map(|p| p.udp()).collect();
    assert!(
        udp.iter().any(|d| d.payload == datagram
            && d.dst.to_string() == b.peer_addr()
            && *d.src.ip() == a.underlay_ip),
        "re-sent datagram not captured: {udp:?}"
    );

    let namespaces = topo.namespaces().to_vec();
    assert_eq!(namespaces.len(), 4, "{namespaces:?}");
    let dir = topo.dir().to_owned();
    drop(topo);
    assert_gone(&namespaces);
    assert!(!dir.exists(), "{} kept after a passing test", dir.display());
}

#[test]
fn drop_cleans_up_after_a_panic() {
    require_root();
    let seen = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let mut topo = Topology::new("drop_cleans_up_after_a_panic").expect("topology");
        let a = topo.add_host("a").expect("host a");
        let _sleeper = a.spawn(&["sleep", "600"]).expect("sleep");
        // A process the topology does not track, still inside its namespace.
        let stray = a.spawn(&["sleep", "601"]).expect("sleep");
        std::mem::forget(stray);
        let mut seen = seen.lock().expect("lock");
        seen.extend(topo.namespaces().iter().cloned());
        seen.push(topo.dir().to_string_lossy().into_owned());
        drop(seen);
        panic!("deliberate failure inside a test");
    });
    assert!(result.is_err());
    let mut namespaces = seen.into_inner().expect("lock");
    let dir = namespaces.pop().expect("dir");
    assert_eq!(namespaces.len(), 2, "{namespaces:?}");
    assert_gone(&namespaces);
    // A failed test keeps its files for inspection.
    assert!(std::path::Path::new(&dir).is_dir(), "{dir} removed");
    std::fs::remove_dir_all(&dir).expect("remove kept dir");
}

#[test]
fn meshd_missing_is_a_clear_error() {
    require_root();
    let mut topo = Topology::new("meshd_missing_is_a_clear_error").expect("topology");
    let a = topo.add_host("a").expect("host a");
    topo.set_bin_dir(std::env::temp_dir().join("mesh-no-such-bin-dir"));
    let err = topo
        .start_meshd(&a, mesh_integration::MeshdOpts::new("10.32.1.0/24"))
        .expect_err("no meshd there");
    assert!(err.contains("run `cargo build --workspace` first"), "{err}");
    assert!(err.contains("meshd not found at"), "{err}");
}

const FAKE_MESHD: &str = r#"#!/bin/sh
# Stands in for meshd: prints its arguments, makes mesh0 with the gateway address, marks
# the API socket, then idles.
echo "fake meshd $*"
while [ $# -gt 0 ]; do
    case "$1" in
        --block) block=$2; shift ;;
        --api-socket) sock=$2; shift ;;
    esac
    shift
done
net=${block%/*}
ip link show mesh0 >/dev/null 2>&1 || ip link add mesh0 type bridge
ip addr replace "${net%.*}.1/${block#*/}" dev mesh0
ip link set mesh0 up
touch "$sock"
exec sleep 600
"#;

const FAKE_MESHCTL: &str = r#"#!/bin/sh
# Stands in for meshctl: `--socket S status -o json` answers while S exists.
[ -e "$2" ] || { echo "no socket $2" >&2; exit 1; }
cat <<'JSON'
{"node":{"name":"a","public_key":"AAAA","listen":"0.0.0.0:6788","range":"10.32.0.0/12",
"blocks":["10.32.1.0/24"],"bridge":"mesh0","gateway":"10.32.1.1/24","tun":"meshtun0","mtu":1420,
"cipher":"chacha20-poly1305","uptime_secs":1,"version":"0.0.0"},
"peers":[{"name":"b","public_key":"BBBB","endpoint":"198.18.1.2:6788","state":"established",
"blocks":["10.32.2.0/24"],"last_handshake_secs_ago":1,"handshakes":1,"rtt_us":100,
"rx_packets":1,"rx_bytes":1,"tx_packets":1,"tx_bytes":1,
"drops":[{"reason":"replay","packets":2}]}],
"drops":[{"reason":"replay","packets":1}]}
JSON
"#;

/// The meshd plumbing of the harness (arguments, readiness, status parsing, kill and
/// restart by PID, logs), exercised with shell stand-ins for `meshd` and `meshctl`.
#[test]
fn meshd_plumbing_with_stand_in_binaries() {
    use std::os::unix::fs::PermissionsExt;
    require_root();
    let mut topo = Topology::new("meshd_plumbing_with_stand_in_binaries").expect("topology");
    let bin = topo.dir().join("fake-bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    for (name, script) in [("meshd", FAKE_MESHD), ("meshctl", FAKE_MESHCTL)] {
        let path = bin.join(name);
        std::fs::write(&path, script).expect("write stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    topo.set_bin_dir(&bin);
    let a = topo.add_host("a").expect("host a");
    let b = topo.add_host("b").expect("host b");
    topo.start_meshd(
        &a,
        mesh_integration::MeshdOpts::new("10.32.1.0/24").peers([&b]),
    )
    .expect("start stand-in meshd");
    let status = topo.status(&a).expect("status");
    assert_eq!(status.total_drops("replay"), 3);
    assert_eq!(status.peers[0].state, mesh_api::PeerState::Established);

    let pod = topo.add_pod(&a, "p1", "10.32.1.10").expect("pod");
    pod.ping("10.32.1.1".parse().expect("ip"), 1)
        .expect("pod -> gateway");

    let first = topo.meshd_pid(&a).expect("running");
    let killed = topo.kill_meshd(&a).expect("kill");
    assert!(killed.is_some_and(|s| !s.success()), "{killed:?}");
    assert_eq!(topo.meshd_pid(&a), None);
    topo.restart_meshd(&a).expect("restart");
    let second = topo.meshd_pid(&a).expect("running again");
    assert_ne!(first, second);
    pod.ping("10.32.1.1".parse().expect("ip"), 1)
        .expect("pod still on mesh0");
    let stopped = topo.stop_meshd(&a).expect("stop");
    assert!(stopped.is_some(), "stand-in ended by SIGTERM");

    let log = topo.meshd_log(&a);
    assert_eq!(
        log.matches("=== harness: ip netns exec").count(),
        2,
        "{log}"
    );
    let line = log
        .lines()
        .find(|l| l.starts_with("fake meshd"))
        .expect("args logged");
    for expected in [
        "--name a".to_owned(),
        "--listen 0.0.0.0:6788".to_owned(),
        format!("--peer {}", b.peer_addr()),
        format!("--secret-file {}", topo.dir().join("secret").display()),
        format!("--state-dir {}", a.state_dir().display()),
        format!("--api-socket {}", a.api_socket().display()),
        "--block 10.32.1.0/24".to_owned(),
        "--range 10.32.0.0/12".to_owned(),
    ] {
        assert!(line.contains(&expected), "{expected:?} not in {line:?}");
    }
    let secret = std::fs::read_to_string(topo.dir().join("secret")).expect("secret");
    assert_eq!(secret.len(), 44, "32 bytes in base64: {secret:?}");
}
