//! `mesh-cni` under a real container runtime: Debian's podman (4.x, CNI backend) starts
//! busybox containers on two hosts (network namespaces, each with a real `meshd`) and
//! calls `mesh-cni` for them. podman runs inside each host's namespace (`nsenter --net`),
//! with its own store under a temporary directory and an image imported from
//! busybox-static, so no registry and none of the machine's podman state is involved.
//!
//! Needs podman, runc, conmon and busybox-static (scripts/deps.sh installs them); without
//! them the tests fail and say so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests fail by panicking

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{BLOCKS, POLL};
use mesh_integration::api::ipam;
use mesh_integration::podman::NETWORK;
use mesh_integration::{Host, MeshdOpts, Podman, Topology, require_root, wait_until};

/// Bound of the first ping across hosts once both containers run.
const FIRST_PING_BOUND: Duration = Duration::from_secs(20);
/// Start/remove cycles of the leak test.
const CYCLES: usize = 200;

/// What a test runs on. Fields drop in order: the containers go (podman calls DEL while
/// meshd still runs) before the hosts, also when the test panics.
struct Env {
    podman: Podman,
    hosts: Vec<Host>,
    topo: Topology,
}

/// Hosts a and b with meshd peering each other, and podman with a `mesh` network on each
/// host and the test image.
fn setup(test: &str) -> Env {
    require_root();
    let mut topo = Topology::new(test).expect("topology");
    let hosts: Vec<Host> = BLOCKS[..2]
        .iter()
        .map(|(name, _, _)| topo.add_host(name).expect("host"))
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        let other = &hosts[1 - i];
        topo.start_meshd(host, MeshdOpts::new(BLOCKS[i].1).peers([other]))
            .expect("start meshd");
    }
    let mut podman = Podman::new(topo.prefix(), &topo.bin_dir().join("mesh-cni"))
        .unwrap_or_else(|e| panic!("podman is needed for this test: {e}"));
    for host in &hosts {
        podman.add_mesh_network(host).expect("conflist");
    }
    podman.import_image(&hosts[0]).expect("import the image");
    Env {
        podman,
        hosts,
        topo,
    }
}

/// Container `name`'s address on eth0, read inside the container.
fn container_ip(podman: &Podman, host: &Host, name: &str) -> (Ipv4Addr, u8) {
    container_ip_on(podman, host, name, "eth0")
}

/// Container `name`'s address on `dev`, read inside the container.
fn container_ip_on(podman: &Podman, host: &Host, name: &str, dev: &str) -> (Ipv4Addr, u8) {
    let out = podman
        .exec(host, name, &["ip", "-4", "-o", "addr", "show", "dev", dev])
        .expect("podman exec ip");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ip addr in {name}: {out:?}");
    let cidr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no inet address on {dev} of {name}: {text}"));
    let (ip, len) = cidr.split_once('/').unwrap();
    (ip.parse().unwrap(), len.parse().unwrap())
}

/// meshd's allocations on `host` as (container ID, ifname, address).
fn allocations(host: &Host) -> Vec<(String, String, String)> {
    ipam(&host.api_socket())
        .expect("GET /v1/ipam")
        .allocations
        .into_iter()
        .map(|a| (a.container_id, a.ifname, a.address))
        .collect()
}

/// Pod veths (`vmesh…`) in `host`'s namespace.
fn pod_veths(host: &Host) -> Vec<String> {
    host.links()
        .unwrap()
        .into_iter()
        .filter(|l| l.starts_with("vmesh"))
        .collect()
}

/// Results libcni (inside podman) cached for container `id` in /var/lib/cni/results; DEL
/// removes them.
fn cni_cache(id: &str) -> Vec<String> {
    std::fs::read_dir("/var/lib/cni/results")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(id))
                .collect()
        })
        .unwrap_or_default()
}

/// `ping -c 1 -W 1 DST` inside container `name` until it succeeds, at most until `deadline`.
fn wait_ping(podman: &Podman, host: &Host, name: &str, dst: &str, deadline: Instant) {
    wait_until(
        &format!("ping {name}@{} -> {dst}", host.name),
        deadline.saturating_duration_since(Instant::now()),
        POLL,
        || {
            let out = podman.exec(host, name, &["ping", "-c", "1", "-W", "1", dst])?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() && text.contains("1 packets received") {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .expect("ping");
}

/// A container on host a pings one on host b through the mesh; both got their addresses
/// from their meshd's IPAM (GET /v1/ipam lists them under podman's container IDs), each
/// has a host veth on mesh0; `podman rm` makes podman call DEL, which frees both.
#[test]
fn podman_containers_on_two_hosts_ping_through_the_mesh_and_rm_frees_everything() {
    let mut env = setup("podman_ping");
    let (podman, hosts, topo) = (&mut env.podman, &env.hosts, &env.topo);
    let (a, b) = (&hosts[0], &hosts[1]);
    let ca = format!("{}-ca", topo.prefix());
    let cb = format!("{}-cb", topo.prefix());
    let id_a = podman.start(a, &ca).expect("start container on a");
    let id_b = podman.start(b, &cb).expect("start container on b");
    let started = Instant::now();

    let (ip_a, len_a) = container_ip(podman, a, &ca);
    let (ip_b, _) = container_ip(podman, b, &cb);
    assert_eq!(ip_a.octets()[..3], [10, 32, 1], "{ip_a}");
    assert_eq!(ip_b.octets()[..3], [10, 32, 2], "{ip_b}");
    assert_eq!(len_a, 24);
    // meshd's IPAM holds them, keyed by podman's container ID and eth0.
    assert_eq!(
        allocations(a),
        vec![(id_a.clone(), "eth0".to_owned(), format!("{ip_a}/24"))]
    );
    assert_eq!(
        allocations(b),
        vec![(id_b.clone(), "eth0".to_owned(), format!("{ip_b}/24"))]
    );
    // podman knows the address mesh-cni returned.
    let fmt = format!("{{{{.NetworkSettings.Networks.{NETWORK}.IPAddress}}}}");
    assert_eq!(podman.inspect(a, &ca, &fmt).unwrap(), ip_a.to_string());
    // The container's route and MTU, and the resolver podman wrote from the result.
    let routes = podman.exec(a, &ca, &["ip", "route"]).unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains("default via 10.32.1.1 dev eth0"),
        "{routes}"
    );
    let link = podman
        .exec(a, &ca, &["ip", "-o", "link", "show", "eth0"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("mtu 1420"),
        "{link:?}"
    );
    let resolv = podman.exec(a, &ca, &["cat", "/etc/resolv.conf"]).unwrap();
    let resolv = String::from_utf8_lossy(&resolv.stdout);
    assert!(resolv.contains("nameserver 10.32.1.1"), "{resolv}");
    // One veth per container on its host's bridge.
    let veths_a = pod_veths(a);
    assert_eq!(veths_a.len(), 1, "{veths_a:?}");
    let master = a.ip(&["-o", "link", "show", &veths_a[0]]).unwrap();
    assert!(master.contains("master mesh0"), "{master}");
    assert_eq!(pod_veths(b).len(), 1);

    let deadline = started + FIRST_PING_BOUND;
    wait_ping(podman, a, &ca, "10.32.1.1", deadline);
    wait_ping(podman, a, &ca, &ip_b.to_string(), deadline);
    wait_ping(podman, b, &cb, &ip_a.to_string(), deadline);
    // By name: podman passes the container name as K8S_POD_NAME, mesh-cni registers it with
    // its meshd, gossip brings it to the other host's meshd, and the container's resolver
    // (that meshd, search domain mesh.local) finds it.
    let both = vec![
        (format!("{ca}.mesh.local."), ip_a.to_string()),
        (format!("{cb}.mesh.local."), ip_b.to_string()),
    ];
    wait_until(
        "a to serve both names",
        Duration::from_secs(5),
        POLL,
        || {
            let names = common::dns_records(a, true);
            if names == both {
                Ok(())
            } else {
                Err(format!("{names:?}"))
            }
        },
    )
    .expect("names");
    wait_ping(podman, a, &ca, &cb, deadline);
    wait_ping(podman, b, &cb, &ca, deadline);

    let sandbox = podman
        .inspect(a, &ca, "{{.NetworkSettings.SandboxKey}}")
        .unwrap();
    // podman's libcni keeps the result for DEL; DEL removes it.
    assert_eq!(cni_cache(&id_a).len(), 1, "{:?}", cni_cache(&id_a));
    podman.remove(a, &ca).expect("podman rm on a");
    podman.remove(b, &cb).expect("podman rm on b");
    assert_eq!(allocations(a), vec![], "address on a not freed");
    assert_eq!(allocations(b), vec![], "address on b not freed");
    // The names go with them, on both hosts (a learns b's removal by gossip).
    assert_eq!(common::dns_records(b, true), vec![], "names on b left");
    wait_until(
        "a to forget both names",
        Duration::from_secs(5),
        POLL,
        || {
            let left = common::dns_records(a, true);
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .expect("names gone");
    assert_eq!(pod_veths(a), Vec::<String>::new(), "veth on a left");
    assert_eq!(pod_veths(b), Vec::<String>::new(), "veth on b left");
    assert!(
        !sandbox.is_empty() && !Path::new(&sandbox).exists(),
        "container netns {sandbox:?} left"
    );
    assert_eq!(cni_cache(&id_a), Vec::<String>::new());
    assert_eq!(cni_cache(&id_b), Vec::<String>::new());
}

/// 200 times: start a container on each host, check it holds one address and one veth,
/// remove both; no address, veth, netns or DNS name is left behind on either host.
#[test]
fn podman_start_remove_cycles_leak_no_address_or_veth() {
    let mut env = setup("podman_cycles");
    let (podman, hosts, topo) = (&mut env.podman, &env.hosts, &env.topo);
    let started = Instant::now();
    let mut seen: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    for cycle in 0..CYCLES {
        let mut names = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let name = format!("{}-{}{cycle}", topo.prefix(), host.name);
            let id = podman.start(host, &name).expect("start");
            let sandbox = podman
                .inspect(host, &name, "{{.NetworkSettings.SandboxKey}}")
                .unwrap();
            assert!(Path::new(&sandbox).exists(), "cycle {cycle}: {sandbox}");
            let held = allocations(host);
            assert_eq!(held.len(), 1, "cycle {cycle} on {}: {held:?}", host.name);
            assert_eq!(held[0].0, id, "cycle {cycle}");
            let (ip, _) = container_ip(podman, host, &name);
            assert_eq!(held[0].2, format!("{ip}/24"), "cycle {cycle}");
            seen[i].push(held[0].2.clone());
            assert_eq!(pod_veths(host).len(), 1, "cycle {cycle} on {}", host.name);
            names.push((name, id, sandbox));
        }
        for (host, (name, id, sandbox)) in hosts.iter().zip(&names) {
            podman.remove(host, name).expect("rm");
            assert!(
                !Path::new(sandbox).exists(),
                "cycle {cycle}: {sandbox} left"
            );
            assert_eq!(cni_cache(id), Vec::<String>::new(), "cycle {cycle}");
            assert_eq!(
                allocations(host),
                vec![],
                "cycle {cycle}: address on {} not freed",
                host.name
            );
            assert_eq!(
                pod_veths(host),
                Vec::<String>::new(),
                "cycle {cycle}: veth on {} left",
                host.name
            );
            assert_eq!(
                common::dns_records(host, true)
                    .into_iter()
                    .filter(|(n, _)| n.starts_with(&format!("{name}.")))
                    .collect::<Vec<_>>(),
                vec![],
                "cycle {cycle}: DNS name on {} left",
                host.name
            );
        }
    }
    for host in hosts {
        let status = ipam(&host.api_socket()).unwrap();
        assert_eq!(status.used, 0, "{}: {status:?}", host.name);
        assert!(status.allocations.is_empty());
    }
    eprintln!(
        "{CYCLES} podman start/remove cycles on 2 hosts in {:?}; addresses seen: a {:?}, b {:?}",
        started.elapsed(),
        seen[0],
        seen[1]
    );
    assert!(podman.containers().is_empty());
}

/// A container attached to a plain bridge network as `eth0` (its default route) and to the
/// mesh as `net1`, the way Multus adds a secondary network: mesh-cni gives `net1` only the
/// cluster range, the container reaches the mesh through it and its own network through
/// `eth0`; removing it frees the mesh address and veth.
#[test]
fn a_container_on_a_second_network_reaches_the_mesh_through_net1_only() {
    let mut env = setup("podman_two_nets");
    let (podman, hosts, topo) = (&mut env.podman, &env.hosts, &env.topo);
    let (a, b) = (&hosts[0], &hosts[1]);
    podman
        .add_bridge_network(a, "side", "cni-side0", "198.19.77.0/24")
        .expect("second network");
    let c1 = format!("{}-c1", topo.prefix());
    let cb = format!("{}-cb", topo.prefix());
    let id = podman
        .start_with(
            a,
            &c1,
            &[
                "--network",
                "side:interface_name=eth0",
                "--network",
                "mesh:interface_name=net1",
            ],
        )
        .expect("start on two networks");
    podman.start(b, &cb).expect("start on b");
    let started = Instant::now();

    let (side_ip, _) = container_ip_on(podman, a, &c1, "eth0");
    let (mesh_ip, len) = container_ip_on(podman, a, &c1, "net1");
    assert_eq!(side_ip.octets()[..3], [198, 19, 77], "{side_ip}");
    assert_eq!((mesh_ip.octets()[..3].to_vec(), len), (vec![10, 32, 1], 24));
    assert_eq!(
        allocations(a),
        vec![(id, "net1".to_owned(), format!("{mesh_ip}/24"))]
    );
    let routes = podman.exec(a, &c1, &["ip", "route"]).unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    let lines: Vec<&str> = routes.lines().map(str::trim).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("default via 198.19.77.1 dev eth0")),
        "{routes}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("10.32.0.0/12 via 10.32.1.1 dev net1")),
        "{routes}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("default") && l.contains("net1")),
        "net1 is not the primary interface: {routes}"
    );

    let (ip_b, _) = container_ip(podman, b, &cb);
    let deadline = started + FIRST_PING_BOUND;
    wait_ping(podman, a, &c1, "198.19.77.1", deadline);
    wait_ping(podman, a, &c1, &ip_b.to_string(), deadline);
    wait_ping(podman, b, &cb, &mesh_ip.to_string(), deadline);

    podman.remove(a, &c1).expect("rm");
    assert_eq!(allocations(a), vec![], "mesh address not freed");
    assert_eq!(pod_veths(a), Vec::<String>::new(), "veth left");
}
