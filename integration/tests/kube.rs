//! `meshd --kube` against the fake API server (`fake-apiserver`), every process inside the
//! test's namespaces: host "api" runs the fake on its underlay address, hosts a, b, c run
//! `meshd --kube` with automatic IPAM and no `--peer`. Nodes added to the fake become peers
//! (every host sees every member alive, pods ping across hosts), each meshd annotates its
//! Node, a Node added after its watch was broken and compacted away (410 Expired) is still
//! found, and deleting a killed host's Node hands its blocks and DNS records to the lowest
//! alive key and only to it, also when every meshd was down during the deletion. A missing
//! Node and forbidden verbs are one-line warnings, once, and meshd runs on.
#![allow(clippy::expect_used)] // helpers of tests fail by panicking, like the tests

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{POLL, address, owner_of, wait_ping};
use mesh_api::{MemberState, Status};
use mesh_integration::api::{allocate_retrying, ipam, meshctl_json};
use mesh_integration::fake_apiserver::{Control, kubeconfig, node_object};
use mesh_integration::topology::PodOpts;
use mesh_integration::{Host, MeshdOpts, Pod, Proc, Topology, require_root, wait_until};

const RANGE: &str = "10.32.0.0/16";
/// Port of the fake API server on host "api".
const API_PORT: u16 = 6443;
/// Discovery, the ring, a block each and the first pings, from the first meshd's start.
const CONVERGE_BOUND: Duration = Duration::from_secs(60);
const DEAD_AFTER_SECS: u64 = 5;
/// A killed host's sessions stop counting after 30 s of silence; then `--dead-after`.
const DEAD_BOUND: Duration = Duration::from_secs(30 + DEAD_AFTER_SECS + 30);

struct Cluster {
    topo: Topology,
    _api: Proc,
    ctl: Control,
    kubeconfig: std::path::PathBuf,
}

/// A topology with host "api" running the fake; its kubeconfig written.
fn cluster(test: &str) -> Cluster {
    require_root();
    let mut topo = Topology::new(test).expect("topology");
    let api = topo.add_host("api").expect("api host");
    let control = topo.dir().join("fake-api-control.sock");
    let bin = mesh_integration::bin_dir().join("fake-apiserver");
    let listen = format!("{}:{API_PORT}", api.underlay_ip);
    let proc = api
        .spawn(&[
            &bin.to_string_lossy(),
            "--listen",
            &listen,
            "--control",
            &control.to_string_lossy(),
        ])
        .expect("start fake-apiserver (cargo builds it with the tests)");
    let ctl = Control::new(&control);
    wait_until("the fake API server", Duration::from_secs(10), POLL, || {
        ctl.stats().map(drop)
    })
    .expect("fake up");
    let kubeconfig = topo.dir().join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_text(&listen)).expect("kubeconfig");
    Cluster {
        topo,
        _api: proc,
        ctl,
        kubeconfig,
    }
}

fn kubeconfig_text(listen: &str) -> String {
    kubeconfig(&format!("http://{listen}"))
}

/// Adds host `name` with its Node in the fake and starts `meshd --kube` there.
fn kube_host(c: &mut Cluster, name: &str) -> Host {
    let host = c.topo.add_host(name).expect("host");
    c.ctl
        .create(&node_object(name, &host.underlay_ip.to_string()))
        .expect("create Node");
    start(c, &host);
    host
}

fn start(c: &mut Cluster, host: &Host) {
    let mut opts = MeshdOpts::automatic();
    opts.range = RANGE.to_owned();
    opts.extra_args = [
        "--kube",
        "--kube-node",
        &host.name,
        "--kubeconfig",
        &c.kubeconfig.to_string_lossy(),
        "--dead-after",
        &DEAD_AFTER_SECS.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    c.topo.start_meshd(host, opts).expect("start meshd --kube");
}

fn status(host: &Host) -> Result<Status, String> {
    meshctl_json(&host.api_socket(), &["status"])
}

/// Waits until every host sees every other one alive.
fn wait_all_alive(hosts: &[&Host], deadline: Instant) {
    let keys: Vec<String> = hosts
        .iter()
        .map(|h| status(h).expect("status").node.public_key)
        .collect();
    for h in hosts {
        wait_until(
            &format!("{} to see every member alive", h.name),
            deadline.saturating_duration_since(Instant::now()),
            POLL,
            || {
                let s = status(h)?;
                for k in &keys {
                    if *k == s.node.public_key {
                        continue;
                    }
                    match s.members.iter().find(|m| &m.public_key == k) {
                        Some(m) if m.state == MemberState::Alive => {}
                        other => return Err(format!("{k}: {:?}", other.map(|m| m.state))),
                    }
                }
                Ok(())
            },
        )
        .expect("all alive");
    }
}

/// The lowest public key (by its bytes) of `hosts`' meshd: the one that reclaims.
fn lowest_key(hosts: &[&Host]) -> String {
    use base64::Engine;
    hosts
        .iter()
        .map(|h| status(h).expect("status").node.public_key)
        .min_by_key(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .expect("key")
        })
        .expect("a host")
}

/// Waits until `host`'s ring view says `key` owns the block of `addr`.
fn wait_owner(host: &Host, addr: Ipv4Addr, key: &str) {
    wait_until(
        &format!(
            "{} to see the block of {addr} owned by the lowest key",
            host.name
        ),
        DEAD_BOUND,
        POLL,
        || {
            let v = ipam(&host.api_socket())?;
            match owner_of(&v, addr) {
                Some(k) if k == key => Ok(()),
                other => Err(format!("owner {other:?}")),
            }
        },
    )
    .expect("the deleted Node's block reclaimed");
}

/// A pod on `host` with an address meshd allocated.
fn pod_on(topo: &mut Topology, host: &Host, id: &str, deadline: Instant) -> Pod {
    let a = allocate_retrying(
        &host.api_socket(),
        id,
        deadline.saturating_duration_since(Instant::now()),
        POLL,
    )
    .unwrap_or_else(|e| panic!("allocate on {}: {e}", host.name));
    let mut opts = PodOpts::new(address(&a));
    opts.prefix_len = a.address.split('/').nth(1).and_then(|l| l.parse().ok());
    opts.gateway = Some(a.gateway.parse().expect("gateway"));
    topo.add_pod_with(host, "p1", opts).expect("pod")
}

#[test]
fn nodes_become_peers_get_annotated_survive_a_broken_watch_and_a_deleted_node_is_reclaimed() {
    let mut c = cluster("kube_nodes");
    // The oldest Node runs no meshd (a node selector, a Windows node): it must not keep the
    // others from founding. Its address answers nothing (no host has it).
    let api_ip = c.topo.hosts()[0].underlay_ip.octets();
    let nowhere = format!("{}.{}.{}.250", api_ip[0], api_ip[1], api_ip[2]);
    c.ctl
        .create(&node_object("0w", &nowhere))
        .expect("create a Node without meshd");
    let started = Instant::now();
    let deadline = started + CONVERGE_BOUND;
    let a = kube_host(&mut c, "a");
    let b = kube_host(&mut c, "b");
    let h3 = kube_host(&mut c, "c");
    let hosts = [&a, &b, &h3];

    // Discovery from Nodes alone: no --peer anywhere, the oldest Node running meshd (a)
    // founds the ring.
    wait_all_alive(&hosts, deadline);
    let pods: Vec<Pod> = hosts
        .iter()
        .map(|h| pod_on(&mut c.topo, h, &format!("{}0", h.name), deadline))
        .collect();
    for from in &pods {
        for to in &pods {
            if from.netns != to.netns {
                wait_ping(from, to, deadline).expect("pods ping across hosts");
            }
        }
    }
    eprintln!("discovered, blocks and pings after {:?}", started.elapsed());

    // The oldest Node's meshd founded the ring, and only it (not 0w, older but without meshd).
    let log_has = |h: &Host, what: &str| {
        std::fs::read_to_string(h.log_file())
            .unwrap_or_default()
            .contains(what)
    };
    let founders: Vec<&str> = hosts
        .iter()
        .filter(|h| log_has(h, "founding it"))
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(founders, ["a"]);

    // Each meshd published its key, endpoint and ring on its own Node.
    let ring = ipam(&a.api_socket()).expect("ipam").ring.expect("a ring");
    for h in hosts {
        let s = status(h).expect("status");
        wait_until(
            &format!("{}'s Node annotations", h.name),
            Duration::from_secs(20),
            POLL,
            || {
                let ann = c.ctl.annotations(&h.name)?;
                let want = [
                    ("mesh/public-key", s.node.public_key.clone()),
                    ("mesh/endpoint", format!("{}:6788", h.underlay_ip)),
                    ("mesh/ring", ring.clone()),
                ];
                for (k, v) in &want {
                    if ann.get(*k) != Some(v) {
                        return Err(format!("{ann:?}"));
                    }
                }
                Ok(())
            },
        )
        .expect("annotations");
    }

    // Break every watch and compact the store: the watchers resume from a version that is
    // gone, get 410 Expired, list again, and a Node added now is still discovered.
    let before = c.ctl.stats().expect("stats");
    c.ctl.compact().expect("compact");
    c.ctl.break_watches().expect("break");
    let d = c.topo.add_host("d").expect("host d");
    c.ctl
        .create(&node_object("d", &d.underlay_ip.to_string()))
        .expect("Node d");
    let d_endpoint = format!("{}:6788", d.underlay_ip);
    for h in hosts {
        wait_until(
            &format!("{} to try Node d's address", h.name),
            Duration::from_secs(30),
            POLL,
            || {
                let s = status(h)?;
                s.peers
                    .iter()
                    .any(|p| p.endpoint == d_endpoint)
                    .then_some(())
                    .ok_or_else(|| format!("{:?}", s.peers))
            },
        )
        .expect("Node d discovered after the broken watch");
    }
    let after = c.ctl.stats().expect("stats");
    assert!(
        after.expired > before.expired && after.lists > before.lists,
        "410 then a relist: {before:?} -> {after:?}"
    );
    start(&mut c, &d);
    let all = [&a, &b, &h3, &d];
    wait_all_alive(&all, Instant::now() + CONVERGE_BOUND);

    // h3 registers a name; then its meshd dies and its Node is deleted.
    let h3_key = status(&h3).expect("status").node.public_key;
    let h3_ip = pods[2].ip;
    c.topo
        .meshctl(&h3, &["dns", "add", "c0", &h3_ip.to_string()])
        .expect("dns add");
    let has_name = |h: &Host| -> Result<bool, String> {
        let l: mesh_api::DnsRecords = meshctl_json(&h.api_socket(), &["dns"])?;
        Ok(l.records.iter().any(|r| r.address == h3_ip.to_string()))
    };
    wait_until("a to learn c's name", Duration::from_secs(10), POLL, || {
        has_name(&a)?
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    })
    .expect("name gossiped");
    assert_eq!(
        owner_of(&ipam(&a.api_socket()).expect("ipam"), h3_ip).as_deref(),
        Some(h3_key.as_str())
    );
    c.topo.kill_meshd(&h3).expect("kill c");
    c.ctl.delete("c").expect("delete Node c");
    let killed = Instant::now();

    // The lowest alive key takes c's blocks over (once c is dead); every replica agrees,
    // and c's record is gone everywhere.
    let survivors = [&a, &b, &d];
    let reclaimer = lowest_key(&survivors);
    for h in survivors {
        wait_owner(h, h3_ip, &reclaimer);
        wait_until(
            &format!("{} to drop c's name", h.name),
            Duration::from_secs(20),
            POLL,
            || {
                (!has_name(h)?)
                    .then_some(())
                    .ok_or_else(|| "still listed".to_owned())
            },
        )
        .expect("c's name removed");
    }
    eprintln!("c reclaimed {:?} after the kill", killed.elapsed());
    // Nobody keeps contacting the deleted Node's address.
    for h in survivors {
        assert!(
            log_has(h, "no Node has this address any more"),
            "{} still has c's address as a bootstrap address",
            h.name
        );
    }
    // Exactly one node reclaimed: the others' logs say nothing of it.
    let reclaimed_by: Vec<&str> = survivors
        .iter()
        .filter(|h| {
            std::fs::read_to_string(h.log_file())
                .unwrap_or_default()
                .contains("Node deleted and its member dead")
        })
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(reclaimed_by.len(), 1, "{reclaimed_by:?}");
}

#[test]
fn a_missing_node_and_forbidden_verbs_are_one_line_warnings_and_meshd_runs_on() {
    let mut c = cluster("kube_errors");
    c.ctl.deny("patch", true).expect("deny patch");
    let a = c.topo.add_host("a").expect("host");
    c.ctl
        .create(&node_object("a", &a.underlay_ip.to_string()))
        .expect("Node a");
    // b's Node does not exist (a typo in --kube-node): meshd runs, warns once, retries.
    let b = c.topo.add_host("b").expect("host");
    start(&mut c, &a);
    start(&mut c, &b);
    let warned = |h: &Host, what: &str| {
        wait_until(
            &format!("{} to warn about {what}", h.name),
            Duration::from_secs(20),
            POLL,
            || {
                let log = std::fs::read_to_string(h.log_file()).map_err(|e| e.to_string())?;
                let n = log.lines().filter(|l| l.contains(what)).count();
                if n >= 1 { Ok(n) } else { Err("not yet".into()) }
            },
        )
        .expect("warning")
    };
    let missing = "Node \"b\" does not exist";
    warned(&b, missing);
    warned(&a, "forbids `patch` on nodes");
    // Once allowed, a's Node gets its annotations; the warning stayed one line.
    c.ctl.deny("patch", false).expect("allow patch");
    wait_until("a's annotations", Duration::from_secs(20), POLL, || {
        c.ctl
            .annotations("a")?
            .contains_key("mesh/public-key")
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    })
    .expect("annotated");
    let log = std::fs::read_to_string(a.log_file()).expect("log");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("forbids `patch`"))
            .count(),
        1,
        "one warning per streak"
    );
    let log = std::fs::read_to_string(b.log_file()).expect("log");
    assert_eq!(
        log.lines().filter(|l| l.contains(missing)).count(),
        1,
        "once, not per retry"
    );
    // b creates its Node late: it is found and annotated.
    c.ctl
        .create(&node_object("b", &b.underlay_ip.to_string()))
        .expect("Node b");
    wait_until("b's annotations", Duration::from_secs(20), POLL, || {
        c.ctl
            .annotations("b")?
            .contains_key("mesh/public-key")
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    })
    .expect("annotated");
    assert!(status(&a).is_ok() && status(&b).is_ok(), "both still run");
}

#[test]
fn kube_without_a_node_name_or_with_an_unreadable_kubeconfig_fails_the_start_in_one_line() {
    require_root();
    let mut topo = Topology::new("kube_bad_start").expect("topology");
    let host = topo.add_host("a").expect("host");
    let mut opts = MeshdOpts::automatic();
    opts.range = RANGE.to_owned();
    let base = topo.meshd_args(&host, &opts).expect("args");
    let missing = topo.dir().join("no-such-kubeconfig");
    let missing = missing.to_string_lossy();
    for (extra, code, want) in [
        (vec!["--kube"], 2, "--kube needs this node's Node name"),
        (
            vec!["--kube", "--kube-node", "a", "--kubeconfig", &missing],
            1,
            "--kubeconfig",
        ),
    ] {
        let mut argv: Vec<&str> = base.iter().map(String::as_str).collect();
        argv.extend(&extra);
        let out = topo
            .run_meshd(&host, &argv, mesh_integration::MESHD_EXIT_BOUND)
            .expect("meshd exits");
        let stderr = mesh_integration::text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stderr}");
        assert_eq!(lines.len(), 1, "{extra:?}: one line: {stderr}");
        assert!(lines[0].contains(want), "{extra:?}: {stderr}");
    }
    assert!(!host.has_link("mesh0").expect("links"), "nothing set up");
}

#[test]
fn a_node_deleted_while_every_meshd_was_down_is_reclaimed_after_the_restart() {
    let mut c = cluster("kube_down");
    let deadline = Instant::now() + CONVERGE_BOUND;
    let a = kube_host(&mut c, "a");
    let b = kube_host(&mut c, "b");
    let h3 = kube_host(&mut c, "c");
    wait_all_alive(&[&a, &b, &h3], deadline);
    let h3_block = wait_until("c to get a block", CONVERGE_BOUND, POLL, || {
        let v = ipam(&h3.api_socket())?;
        v.blocks
            .first()
            .cloned()
            .ok_or_else(|| "none yet".to_owned())
    })
    .expect("c's block");
    let (net, _) = h3_block.split_once('/').expect("cidr");
    let in_h3: Ipv4Addr = Ipv4Addr::from(u32::from(net.parse::<Ipv4Addr>().expect("ip")) + 1);
    let h3_key = status(&h3).expect("status").node.public_key;
    wait_until("a to know c's block", Duration::from_secs(20), POLL, || {
        let v = ipam(&a.api_socket())?;
        (owner_of(&v, in_h3).as_deref() == Some(h3_key.as_str()))
            .then_some(())
            .ok_or_else(|| format!("{v:?}"))
    })
    .expect("gossiped");

    // c dies; a and b stop; c's Node is deleted while nobody watches.
    c.topo.kill_meshd(&h3).expect("kill c");
    c.topo.stop_meshd(&a).expect("stop a");
    c.topo.stop_meshd(&b).expect("stop b");
    c.ctl.delete("c").expect("delete Node c");
    c.topo.restart_meshd(&a).expect("restart a");
    c.topo.restart_meshd(&b).expect("restart b");

    let reclaimer = lowest_key(&[&a, &b]);
    for h in [&a, &b] {
        wait_owner(h, in_h3, &reclaimer);
    }
    let reclaims: usize = [&a, &b]
        .iter()
        .map(|h| {
            std::fs::read_to_string(h.log_file())
                .unwrap_or_default()
                .matches("Node deleted and its member dead")
                .count()
        })
        .sum();
    assert_eq!(reclaims, 1, "exactly one node reclaimed c");
}
