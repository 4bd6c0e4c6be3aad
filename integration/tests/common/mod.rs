//! Set-ups shared by the tests that run `meshd`.
#![allow(dead_code)] // each test binary uses a different part
#![allow(clippy::expect_used)] // helpers of tests fail by panicking, like the tests

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use mesh_api::{PeerState, Status};
use mesh_integration::{Host, MeshdOpts, Pod, Topology, require_root, wait_until};

/// How often pings and status are polled.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// Host names and blocks used by the tests.
pub(crate) const BLOCKS: [(&str, &str, &str); 3] = [
    ("a", "10.32.1.0/24", "10.32.1.10"),
    ("b", "10.32.2.0/24", "10.32.2.10"),
    ("c", "10.32.3.0/24", "10.32.3.10"),
];

/// A topology of `n` hosts (a, b, c…), each with `meshd` peering every other host and
/// one pod; returns it, its hosts and pods, and when the first `meshd` was started.
pub(crate) fn full_mesh(test: &str, n: usize) -> (Topology, Vec<Host>, Vec<Pod>, Instant) {
    full_mesh_with(test, n, &[])
}

/// [`full_mesh`] with extra `meshd` flags on every host.
pub(crate) fn full_mesh_with(
    test: &str,
    n: usize,
    extra: &[&str],
) -> (Topology, Vec<Host>, Vec<Pod>, Instant) {
    require_root();
    let mut topo = Topology::new(test).expect("topology");
    let (hosts, pods, started) = add_full_mesh(&mut topo, n, extra);
    (topo, hosts, pods, started)
}

/// Adds hosts a, b, c… (`n` of them) to `topo`, each with `meshd` (with `extra` flags)
/// peering every other one and one pod; returns the hosts, the pods and when the first
/// `meshd` was started.
pub(crate) fn add_full_mesh(
    topo: &mut Topology,
    n: usize,
    extra: &[&str],
) -> (Vec<Host>, Vec<Pod>, Instant) {
    let hosts: Vec<Host> = BLOCKS[..n]
        .iter()
        .map(|(name, _, _)| topo.add_host(name).expect("host"))
        .collect();
    let started = Instant::now();
    for (i, host) in hosts.iter().enumerate() {
        let others = hosts
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, h)| h);
        let mut opts = MeshdOpts::new(BLOCKS[i].1).peers(others);
        opts.extra_args = extra.iter().map(|s| (*s).to_owned()).collect();
        topo.start_meshd(host, opts).expect("start meshd");
    }
    let pods = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| topo.add_pod(host, "p1", BLOCKS[i].2).expect("pod"))
        .collect();
    (hosts, pods, started)
}

/// Polls `ping -c1 -W1` from `from` to `to` every [`POLL`] until one succeeds, at most
/// until `deadline`.
pub(crate) fn wait_ping(from: &Pod, to: &Pod, deadline: Instant) -> Result<(), String> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    wait_until(
        &format!(
            "ping {}@{} -> {} ({})",
            from.name, from.host, to.ip, to.host
        ),
        timeout,
        POLL,
        || from.ping(to.ip, 1).map(drop),
    )
}

/// Waits until `host` has a peer at `peer`'s underlay address in state `established`.
pub(crate) fn wait_established(
    topo: &Topology,
    host: &Host,
    peer: &Host,
    timeout: Duration,
) -> Status {
    wait_until(
        &format!("{} to establish a session with {}", host.name, peer.name),
        timeout,
        POLL,
        || {
            let status = topo.status(host)?;
            if peer_state(&status, peer.underlay_ip) == Some(PeerState::Established) {
                Ok(status)
            } else {
                Err(format!("{:?}", status.peers))
            }
        },
    )
    .expect("session established")
}

/// The state of the peer whose endpoint is at `ip`, if `status` lists one.
pub(crate) fn peer_state(status: &Status, ip: Ipv4Addr) -> Option<PeerState> {
    let prefix = format!("{ip}:");
    status
        .peers
        .iter()
        .find(|p| p.endpoint.starts_with(&prefix))
        .map(|p| p.state)
}

/// Drops (`add`) or lets through again (`!add`) every packet between `host` and
/// `other`'s underlay address, both ways, with iptables inside `host`'s namespace.
pub(crate) fn cut(host: &Host, other: &Host, add: bool) {
    let ip = other.underlay_ip.to_string();
    let op = if add { "-A" } else { "-D" };
    for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
        let out = host
            .exec(&["iptables", "-w", op, chain, dir, &ip, "-j", "DROP"])
            .expect("iptables");
        assert!(
            out.status.success(),
            "iptables {op} {chain} in {}: {}",
            host.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The address (without its prefix length) of an allocation.
pub(crate) fn address(a: &mesh_api::IpamAllocated) -> Ipv4Addr {
    a.address
        .split('/')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("address {:?}", a.address))
}

/// Whether `addr` lies in `net` (`a.b.c.d/n`).
pub(crate) fn inside(net: &str, addr: Ipv4Addr) -> bool {
    let (ip, len) = net.split_once('/').expect("cidr");
    let ip: Ipv4Addr = ip.parse().expect("ip");
    let len: u32 = len.parse().expect("len");
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(addr) & mask == u32::from(ip) & mask
}

/// The owner (public key) of `addr` in `view`'s address ring.
pub(crate) fn owner_of(view: &mesh_api::IpamStatus, addr: Ipv4Addr) -> Option<String> {
    view.owners
        .iter()
        .find(|s| s.blocks.iter().any(|b| inside(b, addr)))
        .and_then(|s| s.public_key.clone())
}

/// `meshctl dns` of `host`: (name, address) of each record it holds, or only of those it
/// answers (`served_only`: a dead owner's are held, not answered).
pub(crate) fn dns_records(host: &Host, served_only: bool) -> Vec<(String, String)> {
    let dns: mesh_api::DnsRecords =
        mesh_integration::api::meshctl_json(&host.api_socket(), &["dns"]).expect("meshctl dns");
    dns.records
        .into_iter()
        .filter(|r| r.served || !served_only)
        .map(|r| (r.name, r.address))
        .collect()
}

/// `meshctl --socket … ARGS` for `host`: whatever it did (exit status, stdout, stderr).
pub(crate) fn meshctl(topo: &Topology, host: &Host, args: &[&str]) -> std::process::Output {
    std::process::Command::new(topo.bin_dir().join("meshctl"))
        .arg("--socket")
        .arg(host.api_socket())
        .args(args)
        .output()
        .expect("run meshctl")
}
