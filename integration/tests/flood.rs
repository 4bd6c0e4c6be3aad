//! Handshake floods and replays from a host on the underlay that has no secret (`mesh-flood`,
//! spoofing source addresses through a raw socket), against real meshd binaries.
//!
//! - A spoofed-source flood of junk initiations does not stop a real peer's handshake: the
//!   peer's meshd is restarted during the flood and its pod traffic resumes; the target
//!   counts the junk as `handshake_mac` and does no handshake work for it.
//! - A genuine initiation captured on the wire and sent again (from the real sender's address
//!   and from others) costs no public-key operation: the target's `handshakes.responded`
//!   does not move, and the copies are counted as `handshake_replay`. A version-1 initiation
//!   is refused with a log line naming the version (`handshake_version`).
//! - A hostile member's flood (initiations that pass mac1) puts the node under load: it says
//!   so, answers with cookies, keeps its handshake work within the budget, and a restarted
//!   real peer gets in with a cookie.
//!
//! The rates here are small (CI runs debug builds on 2 CPUs); the throughput under a flood is
//! measured by `scripts/bench-flood.sh`, not here.
#![allow(clippy::expect_used)] // helpers of tests fail by panicking, like the tests

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{full_mesh, wait_established, wait_ping};
use mesh_api::Status;
use mesh_integration::{Host, Topology, text};

/// How long a restarted node may take to carry pod traffic again, flood or not.
const BOUND: Duration = Duration::from_secs(30);

fn drops(status: &Status, reason: &str) -> u64 {
    status
        .drops
        .iter()
        .find(|d| d.reason == reason)
        .map_or(0, |d| d.packets)
}

/// Addresses of the underlay subnet nobody uses: spoofed sources reach the target whatever
/// its reverse-path filter says.
fn spoof_range(host: &Host) -> String {
    let [a, b, c, _] = host.underlay_ip.octets();
    format!("{}/25", Ipv4Addr::new(a, b, c, 128))
}

/// `mesh-flood ARGS` as an argv.
fn flood_argv(topo: &Topology, args: &[&str]) -> Vec<String> {
    let bin = topo.bin_dir().join("mesh-flood");
    let mut argv = vec![bin.to_str().expect("utf-8 path").to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv
}

/// Starts `mesh-flood ARGS` in `from`'s namespace, in the background.
fn spawn_flood(topo: &Topology, from: &Host, args: &[&str]) -> mesh_integration::Proc {
    let argv = flood_argv(topo, args);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    from.spawn(&argv).expect("start mesh-flood")
}

/// Runs `mesh-flood ARGS` in `from`'s namespace and waits for it.
fn flood(topo: &Topology, from: &Host, args: &[&str]) -> String {
    let argv = flood_argv(topo, args);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = from.exec(&argv).expect("run mesh-flood");
    assert!(
        out.status.success(),
        "mesh-flood failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Hosts `a` and `b` with meshd and a pod each, in touch, and `x`, the attacker; `b`'s
/// status before the attack.
fn two_nodes_and_an_attacker(
    test: &str,
) -> (
    Topology,
    Vec<Host>,
    Vec<mesh_integration::Pod>,
    Host,
    Status,
) {
    let (mut topo, hosts, pods, started) = full_mesh(test, 2);
    wait_established(&topo, &hosts[0], &hosts[1], BOUND);
    wait_ping(&pods[0], &pods[1], started + BOUND).expect("pods reach each other");
    let x = topo.add_host("x").expect("attacker host");
    let before = topo.status(&hosts[1]).expect("status of b");
    (topo, hosts, pods, x, before)
}

/// Restarts `a`'s meshd while `attacker` floods `b`: `a` gets its session with `b` back and
/// pods reach each other both ways, with the flood still running; returns `b`'s status
/// then, and stops the flood.
fn restart_under_flood(
    topo: &mut Topology,
    a: &Host,
    b: &Host,
    pods: &[mesh_integration::Pod],
    attacker: &mut mesh_integration::Proc,
) -> Status {
    topo.restart_meshd(a).expect("restart meshd on a");
    let restarted = Instant::now();
    wait_established(topo, a, b, BOUND);
    wait_ping(&pods[0], &pods[1], restarted + BOUND).expect("pod traffic after the restart");
    wait_ping(&pods[1], &pods[0], restarted + BOUND).expect("and back");
    let during = topo.status(b).expect("status of b");
    assert!(
        attacker.is_running(),
        "the flood ended before the peer was back: the test proves nothing"
    );
    attacker.terminate(Duration::from_secs(5));
    during
}

#[test]
fn a_spoofed_flood_does_not_stop_a_real_peers_handshake() {
    let (mut topo, hosts, pods, x, before) =
        two_nodes_and_an_attacker("a_spoofed_flood_does_not_stop_a_real_peers_handshake");
    let (a, b) = (&hosts[0], &hosts[1]);
    // The flood runs in the background for the whole restart.
    let (target, spoof) = (b.peer_addr(), spoof_range(b));
    let mut attacker = spawn_flood(
        &topo,
        &x,
        &[
            "--target",
            &target,
            "--spoof",
            &spoof,
            "--rate",
            "5000",
            "--seconds",
            "25",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let during = restart_under_flood(&mut topo, a, b, &pods, &mut attacker);

    let junk = drops(&during, "handshake_mac") - drops(&before, "handshake_mac");
    assert!(
        junk > 1000,
        "the junk reached meshd and was refused at mac1 ({junk})"
    );
    // The restarted peer's handshakes were the only work: a few, not thousands.
    let work = during.handshakes.responded - before.handshakes.responded;
    assert!(work < 20, "handshake work during the flood: {work}");
}

/// Extracts the first handshake initiation from `from` to `to` in a capture.
fn captured_init(packets: &[mesh_integration::CapturedPacket], from: &Host, to: &Host) -> Vec<u8> {
    packets
        .iter()
        .filter_map(|p| p.udp())
        .find(|u| {
            *u.src.ip() == from.underlay_ip
                && *u.dst.ip() == to.underlay_ip
                && u.payload.first() == Some(&1)
        })
        .map(|u| u.payload.clone())
        .expect("an initiation on the wire")
}

#[test]
fn a_replayed_initiation_costs_no_public_key_operation() {
    mesh_integration::require_root();
    let mut topo =
        Topology::new("a_replayed_initiation_costs_no_public_key_operation").expect("topology");
    let a = topo.add_host("a").expect("host a");
    let b = topo.add_host("b").expect("host b");
    let x = topo.add_host("x").expect("attacker host");
    let capture = topo.capture_underlay(&b).expect("capture on b");
    topo.start_meshd(&b, mesh_integration::MeshdOpts::new("10.32.2.0/24"))
        .expect("meshd b");
    topo.start_meshd(
        &a,
        mesh_integration::MeshdOpts::new("10.32.1.0/24").peers([&b]),
    )
    .expect("meshd a");
    wait_established(&topo, &a, &b, BOUND);
    let packets = capture.stop().expect("capture");
    let init = captured_init(&packets, &a, &b);
    let file = topo.dir().join("init.bin");
    std::fs::write(&file, &init).expect("write the capture");
    let file = file.to_str().expect("utf-8 path").to_owned();

    let before = topo.status(&b).expect("status");
    let target = b.peer_addr();
    let real = format!("{}:6788", a.underlay_ip);
    // From the real sender's address, then from spoofed ones.
    flood(
        &topo,
        &x,
        &[
            "--target", &target, "--source", &real, "--replay", &file, "--count", "50", "--rate",
            "500",
        ],
    );
    let spoof = spoof_range(&b);
    flood(
        &topo,
        &x,
        &[
            "--target", &target, "--spoof", &spoof, "--replay", &file, "--count", "50", "--rate",
            "500",
        ],
    );
    let after = mesh_integration::wait_until(
        "b to count the replays",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let s = topo.status(&b)?;
            if drops(&s, "handshake_replay") >= drops(&before, "handshake_replay") + 100 {
                Ok(s)
            } else {
                Err(format!("{:?}", s.drops))
            }
        },
    )
    .expect("replays counted");
    assert_eq!(
        after.handshakes.responded, before.handshakes.responded,
        "a replayed initiation cost handshake work"
    );
    // The session the replays aimed at is untouched.
    wait_established(&topo, &b, &a, BOUND);

    // A node of protocol version 1 is refused with a log line naming the version.
    flood(
        &topo,
        &x,
        &[
            "--target", &target, "--source", &real, "--shape", "v1", "--count", "3", "--rate",
            "100",
        ],
    );
    let log = mesh_integration::wait_until(
        "b to log the version-1 handshake",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let log = topo.meshd_log(&b);
            if log.contains("refused a handshake of mesh protocol version 1") {
                Ok(log)
            } else {
                Err("not logged yet".to_owned())
            }
        },
    )
    .expect("version-1 handshake logged");
    assert!(
        log.contains(&a.underlay_ip.to_string()),
        "the log names the sender"
    );
    let s = topo.status(&b).expect("status");
    assert!(drops(&s, "handshake_version") >= 3, "{:?}", s.drops);
}

/// A hostile member (it holds the cluster secret) floods `b` from spoofed sources with
/// initiations that pass mac1, the timestamp and the replay checks: past the handshake budget
/// `b` is under load, says so in its status, and answers unproven initiations with cookies
/// instead of handshakes, so its handshake work stays within the budget; a real peer
/// restarted during the flood still gets its session (with a cookie if it needs one) and its
/// pods reach each other.
#[test]
fn a_members_spoofed_flood_gets_cookies_and_a_real_peer_still_gets_in() {
    let (mut topo, hosts, pods, x, before) = two_nodes_and_an_attacker(
        "a_members_spoofed_flood_gets_cookies_and_a_real_peer_still_gets_in",
    );
    let (a, b) = (&hosts[0], &hosts[1]);
    let secret = topo.secret_file();
    let target = b.peer_addr();
    let flood_started = Instant::now();
    let mut attacker = spawn_flood(
        &topo,
        &x,
        &[
            "--target",
            &target,
            "--spoof",
            "198.19.0.0/16",
            "--member",
            secret.to_str().expect("utf-8 path"),
            "--to-key",
            &before.node.public_key,
            "--rate",
            "2000",
            "--seconds",
            "40",
        ],
    );
    let loaded = mesh_integration::wait_until(
        "b to be under handshake load",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let s = topo.status(b)?;
            if s.handshakes.under_load && s.handshakes.cookies_sent > 0 {
                Ok(s)
            } else {
                Err(format!("{:?}", s.handshakes))
            }
        },
    )
    .expect("under load");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.starts_with("handshake load")),
        "status says so: {:?}",
        loaded.warnings
    );
    let during = restart_under_flood(&mut topo, a, b, &pods, &mut attacker);
    let cookies = drops(&during, "handshake_cookie") - drops(&before, "handshake_cookie");
    assert!(
        cookies > 100,
        "unproven initiations got cookies ({cookies})"
    );
    // Work within the budget: the burst plus the rate over the flood's time, and the real
    // peer's few handshakes. The bound is the token bucket's, and grows with the time that
    // passed: a slow machine only loosens it (this measures no speed).
    let work = during.handshakes.responded - before.handshakes.responded;
    let budget = 200.0 + 200.0 * flood_started.elapsed().as_secs_f64() + 20.0;
    let a_side = topo.status(a).expect("status of a").handshakes;
    eprintln!(
        "b: handshake work {work}, budget {budget:.0}, cookies {cookies}, {:?}; a: {a_side:?}",
        during.handshakes
    );
    assert!(
        (work as f64) <= budget,
        "handshake work {work} over the budget {budget:.0}"
    );
}
