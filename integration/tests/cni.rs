//! `mesh-cni` run the way a container runtime runs it — env `CNI_*`, the configuration on
//! stdin, inside the host's namespace — against real `meshd`s, with empty network namespaces
//! as the containers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests fail by panicking

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BLOCKS, POLL};
use mesh_integration::cni::{Cni, Run, network_conf};
use mesh_integration::{Host, MeshdOpts, Pod, Topology, require_root, wait_until};
use serde_json::{Value, json};

/// Bound of the first ping across hosts after meshd starts.
const FIRST_PING_BOUND: Duration = Duration::from_secs(15);

/// Panicking accessors of a plugin run, for the tests.
trait RunExt {
    /// The error code of a failed run.
    fn code(&self) -> u64;
    /// The output of a successful run.
    fn expect_ok(self, what: &str) -> Value;
}

impl RunExt for Run {
    fn code(&self) -> u64 {
        assert!(!self.ok, "expected a failure, got {:#}", self.stdout);
        self.error_code().unwrap_or_else(|| {
            panic!(
                "error output has no code: {:#} (stderr: {})",
                self.stdout, self.stderr
            )
        })
    }

    fn expect_ok(self, what: &str) -> Value {
        self.into_result(what).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The network configuration for `host`'s meshd.
fn conf(host: &Host) -> Value {
    network_conf(host)
}

/// Hosts a (and b) with meshd peering each other.
fn hosts(test: &str, n: usize, block_a: Option<&str>) -> (Topology, Vec<Host>) {
    require_root();
    let mut topo = Topology::new(test).expect("topology");
    let hosts: Vec<Host> = BLOCKS[..n]
        .iter()
        .map(|(name, _, _)| topo.add_host(name).expect("host"))
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        let others = hosts
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, h)| h);
        let block = if i == 0 {
            block_a.unwrap_or(BLOCKS[0].1)
        } else {
            BLOCKS[i].1
        };
        topo.start_meshd(host, MeshdOpts::new(block).peers(others))
            .expect("start meshd");
    }
    (topo, hosts)
}

/// The address (without prefix) of a result's first IP.
fn address(result: &Value) -> Ipv4Addr {
    let cidr = result["ips"][0]["address"].as_str().expect("an address");
    cidr.split('/').next().unwrap().parse().unwrap()
}

/// Attachments meshd has persisted for `host`, as (container, ifname, address).
fn persisted(host: &Host) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(host.state_dir().join("ipam.json")).unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(json!({}));
    v["allocations"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    (
                        a["container_id"].as_str().unwrap_or("").to_owned(),
                        a["ifname"].as_str().unwrap_or("").to_owned(),
                        a["address"].to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn held_by(host: &Host, container: &str) -> bool {
    persisted(host).iter().any(|(c, _, _)| c == container)
}

/// Links in `host`'s namespace whose name starts with `vmesh`/`tmesh` (pod veths).
fn pod_veths(host: &Host) -> Vec<String> {
    host.links()
        .unwrap()
        .into_iter()
        .filter(|l| l.starts_with("vmesh") || l.starts_with("tmesh"))
        .collect()
}

fn as_pod(host: &Host, netns: &str, ip: Ipv4Addr) -> Pod {
    Pod {
        name: netns.to_owned(),
        host: host.name.clone(),
        netns: netns.to_owned(),
        ip,
        host_if: String::new(),
    }
}

fn wait_ping(from: &Pod, to: Ipv4Addr, deadline: Instant) {
    wait_until(
        &format!("ping {} -> {to}", from.name),
        deadline.saturating_duration_since(Instant::now()),
        POLL,
        || from.ping(to, 1).map(drop),
    )
    .expect("ping");
}

#[test]
fn add_wires_a_pod_that_reaches_the_gateway_and_another_host_then_del_frees_it() {
    let (mut topo, hosts) = hosts("cni_add_ping_del", 2, None);
    let started = Instant::now();
    let (a, b) = (&hosts[0], &hosts[1]);
    let ns_a = topo.add_container_netns(a, "web").unwrap();
    let ns_b = topo.add_container_netns(b, "db").unwrap();

    let res_a = Cni::new(a, "ADD", "ctr-a", Some(&ns_a))
        .run(&topo, &conf(a))
        .expect_ok("ADD on a");
    assert_eq!(res_a["cniVersion"], "1.1.0");
    let ip_a = address(&res_a);
    assert_eq!(ip_a.octets()[..3], [10, 32, 1], "{res_a:#}");
    assert_ne!(ip_a, Ipv4Addr::new(10, 32, 1, 1));
    assert_eq!(res_a["ips"][0]["gateway"], "10.32.1.1");
    assert_eq!(res_a["ips"][0]["interface"], 1);
    assert_eq!(res_a["interfaces"][1]["name"], "eth0");
    assert_eq!(
        res_a["interfaces"][1]["sandbox"],
        format!("/var/run/netns/{ns_a}")
    );
    assert_eq!(res_a["interfaces"][1]["mtu"], 1420);
    assert_eq!(
        res_a["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.32.1.1"}])
    );
    assert_eq!(
        res_a["dns"],
        json!({"nameservers": ["10.32.1.1"], "search": ["mesh.local"]})
    );
    let host_veth = res_a["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert!(a.has_link(&host_veth).unwrap());
    assert!(held_by(a, "ctr-a"));
    // K8S_POD_NAME is registered in meshd's DNS with the pod's address.
    assert_eq!(
        common::dns_records(a, false),
        [("web.mesh.local.".to_owned(), ip_a.to_string())]
    );

    let res_b = Cni::new(b, "ADD", "ctr-b", Some(&ns_b))
        .run(&topo, &conf(b))
        .expect_ok("ADD on b");
    let ip_b = address(&res_b);

    let pod_a = as_pod(a, &ns_a, ip_a);
    let link = pod_a.exec(&["ip", "-o", "link", "show", "eth0"]).unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("mtu 1420"),
        "{link:?}"
    );
    wait_ping(
        &pod_a,
        Ipv4Addr::new(10, 32, 1, 1),
        started + FIRST_PING_BOUND,
    );
    wait_ping(&pod_a, ip_b, started + FIRST_PING_BOUND);
    wait_ping(&as_pod(b, &ns_b, ip_b), ip_a, started + FIRST_PING_BOUND);

    // CHECK passes as ADD left it, and fails once the pod's route is gone.
    let mut check_conf = conf(a);
    check_conf["prevResult"] = res_a.clone();
    let check = Cni::new(a, "CHECK", "ctr-a", Some(&ns_a)).run(&topo, &check_conf);
    assert!(check.ok, "CHECK: {:#} {}", check.stdout, check.stderr);
    pod_a
        .exec(&["ip", "route", "del", "default"])
        .expect("delete the route");
    let check = Cni::new(a, "CHECK", "ctr-a", Some(&ns_a)).run(&topo, &check_conf);
    assert_eq!(check.code(), 105, "{:#}", check.stdout);
    assert!(
        check.stdout["msg"].as_str().unwrap().contains("route"),
        "{:#}",
        check.stdout
    );

    // DEL frees the address and the veth; a second DEL is fine.
    Cni::new(a, "DEL", "ctr-a", Some(&ns_a))
        .run(&topo, &conf(a))
        .expect_ok("DEL");
    assert!(!a.has_link(&host_veth).unwrap());
    assert!(!held_by(a, "ctr-a"), "{:?}", persisted(a));
    assert!(
        common::dns_records(a, false).is_empty(),
        "DEL removes the pod's name"
    );
    Cni::new(a, "DEL", "ctr-a", Some(&ns_a))
        .run(&topo, &conf(a))
        .expect_ok("second DEL");
    assert!(pod_veths(a).is_empty(), "{:?}", pod_veths(a));
}

#[test]
fn exhausted_space_is_code_101_leaves_nothing_and_a_freed_address_is_reused() {
    // A /30 holds exactly one pod address.
    let (mut topo, hosts) = hosts("cni_exhausted", 1, Some("10.32.1.0/30"));
    let a = &hosts[0];
    let ns1 = topo.add_container_netns(a, "one").unwrap();
    let ns2 = topo.add_container_netns(a, "two").unwrap();
    let first = Cni::new(a, "ADD", "ctr-1", Some(&ns1))
        .run(&topo, &conf(a))
        .expect_ok("ADD 1");
    assert_eq!(address(&first), Ipv4Addr::new(10, 32, 1, 2));
    let full = Cni::new(a, "ADD", "ctr-2", Some(&ns2)).run(&topo, &conf(a));
    assert_eq!(full.code(), 101, "{:#}", full.stdout);
    assert!(
        full.stdout["details"]
            .as_str()
            .unwrap()
            .contains("exhausted"),
        "{:#}",
        full.stdout
    );
    assert_eq!(pod_veths(a).len(), 1, "{:?}", pod_veths(a));
    Cni::new(a, "DEL", "ctr-1", Some(&ns1))
        .run(&topo, &conf(a))
        .expect_ok("DEL 1");
    let second = Cni::new(a, "ADD", "ctr-2", Some(&ns2))
        .run(&topo, &conf(a))
        .expect_ok("ADD 2 after DEL 1");
    assert_eq!(address(&second), Ipv4Addr::new(10, 32, 1, 2));

    // Allocations survive a meshd restart: the address stays taken.
    topo.restart_meshd(a).unwrap();
    assert!(held_by(a, "ctr-2"));
    let again = Cni::new(a, "ADD", "ctr-1", Some(&ns1)).run(&topo, &conf(a));
    assert_eq!(again.code(), 101, "{:#}", again.stdout);
}

#[test]
fn del_is_idempotent_after_netns_deletion_and_after_a_failed_add() {
    let (mut topo, hosts) = hosts("cni_del_idempotent", 1, None);
    let a = &hosts[0];
    let ns = topo.add_container_netns(a, "gone").unwrap();
    Cni::new(a, "ADD", "ctr-gone", Some(&ns))
        .run(&topo, &conf(a))
        .expect_ok("ADD");
    topo.delete_netns(&ns).unwrap();
    Cni::new(a, "DEL", "ctr-gone", Some(&ns))
        .run(&topo, &conf(a))
        .expect_ok("DEL with the netns gone");
    assert!(!held_by(a, "ctr-gone"));
    Cni::new(a, "DEL", "ctr-gone", None)
        .run(&topo, &conf(a))
        .expect_ok("DEL without CNI_NETNS");

    // ADD into a namespace that does not exist: code 102, no address or veth kept.
    let failed = Cni::new(a, "ADD", "ctr-none", Some("no-such-netns")).run(&topo, &conf(a));
    assert_eq!(failed.code(), 102, "{:#}", failed.stdout);
    assert!(!held_by(a, "ctr-none"));
    Cni::new(a, "DEL", "ctr-none", Some("no-such-netns"))
        .run(&topo, &conf(a))
        .expect_ok("DEL after failed ADD");

    // ADD that fails after the address was handed out (eth0 exists in the container):
    // the address is released and no veth stays.
    let busy = topo.add_container_netns(a, "busy").unwrap();
    let made = Command::new("ip")
        .args([
            "-n", &busy, "link", "add", "eth0", "type", "veth", "peer", "name", "busypeer",
        ])
        .status()
        .unwrap();
    assert!(made.success());
    let failed = Cni::new(a, "ADD", "ctr-busy", Some(&busy)).run(&topo, &conf(a));
    assert_eq!(failed.code(), 104, "{:#}", failed.stdout);
    assert!(!held_by(a, "ctr-busy"), "{:?}", persisted(a));
    assert!(pod_veths(a).is_empty(), "{:?}", pod_veths(a));
}

#[test]
fn gc_frees_every_attachment_not_listed() {
    let (mut topo, hosts) = hosts("cni_gc", 1, None);
    let a = &hosts[0];
    let ns1 = topo.add_container_netns(a, "keep").unwrap();
    let ns2 = topo.add_container_netns(a, "drop").unwrap();
    Cni::new(a, "ADD", "ctr-keep", Some(&ns1))
        .run(&topo, &conf(a))
        .expect_ok("ADD keep");
    let dropped = Cni::new(a, "ADD", "ctr-drop", Some(&ns2))
        .run(&topo, &conf(a))
        .expect_ok("ADD drop");
    let dropped_veth = dropped["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut gc = conf(a);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-keep", "ifname": "eth0"}]);
    Cni::new(a, "GC", "", None).run(&topo, &gc).expect_ok("GC");
    assert!(held_by(a, "ctr-keep"));
    assert!(!held_by(a, "ctr-drop"));
    assert!(!a.has_link(&dropped_veth).unwrap());
    assert_eq!(pod_veths(a).len(), 1);
    // Without the list GC refuses rather than freeing everything.
    let refused = Cni::new(a, "GC", "", None).run(&topo, &conf(a));
    assert_eq!(refused.code(), 7);
    assert!(held_by(a, "ctr-keep"));
}

#[test]
fn bad_input_gets_the_spec_error_codes_and_status_follows_meshd() {
    let (mut topo, hosts) = hosts("cni_errors", 1, None);
    let a = &hosts[0];
    let ns = topo.add_container_netns(a, "x").unwrap();
    let plugin = topo.bin_dir().join("mesh-cni");
    let add = Cni::new(a, "ADD", "ctr-x", Some(&ns));

    let bad_json = add.run_plugin(&plugin, b"{\"cniVersion\": ");
    assert_eq!(bad_json.code(), 6);
    let mut old = conf(a);
    old["cniVersion"] = json!("0.2.0");
    let r = add.run(&topo, &old);
    assert_eq!(r.code(), 1);
    assert!(r.stdout["details"].as_str().unwrap().contains("1.1.0"));
    let r = Cni::new(a, "ADD", "ctr-x", Some(&ns))
        .without("CNI_CONTAINERID")
        .run(&topo, &conf(a));
    assert_eq!(r.code(), 4);
    assert!(
        r.stdout["msg"]
            .as_str()
            .unwrap()
            .contains("CNI_CONTAINERID")
    );
    let r = Cni::new(a, "", "ctr-x", Some(&ns)).run(&topo, &conf(a));
    assert_eq!(r.code(), 4);
    assert!(!held_by(a, "ctr-x"));

    let v = Cni::new(a, "VERSION", "", None)
        .run(&topo, &json!({"cniVersion": "1.0.0"}))
        .expect_ok("VERSION");
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));

    let status = Cni::new(a, "STATUS", "", None).run(&topo, &conf(a));
    assert!(status.ok, "{:#}", status.stdout);
    topo.stop_meshd(a).unwrap();
    let status = Cni::new(a, "STATUS", "", None).run(&topo, &conf(a));
    assert_eq!(status.code(), 50);
    let r = add.run(&topo, &conf(a));
    assert_eq!(r.code(), 100, "{:#}", r.stdout);
    assert!(pod_veths(a).is_empty());
}

#[test]
fn chained_after_another_plugin_as_a_secondary_interface_in_every_version() {
    let (mut topo, hosts) = hosts("cni_chained", 1, None);
    let a = &hosts[0];
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let ns = topo.add_container_netns(a, &format!("multi{i}")).unwrap();
        let id = format!("ctr-multi-{i}");
        let mut c = conf(a);
        c["cniVersion"] = json!(version);
        // What a first plugin (the pod's primary network) returned.
        let mut prev = json!({
            "cniVersion": version,
            "interfaces": [{"name": "eth0", "sandbox": format!("/var/run/netns/{ns}")}],
            "ips": [{"address": "192.168.77.2/24", "gateway": "192.168.77.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.77.1"}],
            "dns": {"nameservers": ["192.168.77.1"]}
        });
        if version == "0.4.0" {
            prev["ips"][0]["version"] = json!("4");
        }
        c["prevResult"] = prev;
        let res = Cni::new(a, "ADD", &id, Some(&ns))
            .ifname("net1")
            .run(&topo, &c)
            .expect_ok("chained ADD");
        assert_eq!(res["cniVersion"], version);
        assert_eq!(res["interfaces"].as_array().unwrap().len(), 3, "{res:#}");
        assert_eq!(res["interfaces"][0]["name"], "eth0");
        assert_eq!(res["interfaces"][2]["name"], "net1");
        assert_eq!(res["ips"][0]["address"], "192.168.77.2/24");
        assert_eq!(res["ips"][1]["interface"], 2);
        assert_eq!(res["ips"][1].get("version").is_some(), version == "0.4.0");
        assert_eq!(
            res["interfaces"][2].get("mtu").is_some(),
            version == "1.1.0"
        );
        assert_eq!(
            res["routes"][1],
            json!({"dst": "10.32.0.0/12", "gw": "10.32.1.1"})
        );
        assert_eq!(
            res["dns"]["nameservers"],
            json!(["192.168.77.1", "10.32.1.1"])
        );
        // Secondary: only the cluster range goes via mesh, no default route.
        let routes = Command::new("ip")
            .args(["-n", &ns, "route", "show"])
            .output()
            .unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout);
        assert!(
            routes.contains("10.32.0.0/12 via 10.32.1.1 dev net1"),
            "{routes}"
        );
        assert!(!routes.contains("default"), "{routes}");
        let mut check = c.clone();
        check["prevResult"] = res;
        Cni::new(a, "CHECK", &id, Some(&ns))
            .ifname("net1")
            .run(&topo, &check)
            .expect_ok("CHECK of the secondary interface");
        Cni::new(a, "DEL", &id, Some(&ns))
            .ifname("net1")
            .run(&topo, &c)
            .expect_ok("DEL");
    }
    assert!(pod_veths(a).is_empty());
}

/// Debian's `portmap` chained after `mesh-cni`: it takes our result as `prevResult`, and a
/// host port on node a then reaches the container from node b.
#[test]
fn portmap_chained_after_mesh_cni_forwards_a_host_port() {
    let portmap = Path::new("/usr/lib/cni/portmap");
    assert!(
        portmap.is_file(),
        "{} missing: install Debian's containernetworking-plugins (scripts/deps.sh does)",
        portmap.display()
    );
    let (mut topo, hosts) = hosts("cni_portmap", 2, None);
    let (a, b) = (&hosts[0], &hosts[1]);
    let ns = topo.add_container_netns(a, "srv").unwrap();
    let pm_conf = |prev: &Value| {
        json!({
            "cniVersion": "1.0.0",
            "name": "mesh",
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [
                {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}
            ]},
            "prevResult": prev,
        })
    };
    let mut mesh_conf = conf(a);
    mesh_conf["cniVersion"] = json!("1.0.0");
    // Debian's portmap (plugins 1.1) speaks up to cniVersion 1.0.0.
    let res10 = Cni::new(a, "ADD", "ctr-srv", Some(&ns))
        .run(&topo, &mesh_conf)
        .expect_ok("ADD 1.0.0");
    assert_eq!(res10["cniVersion"], "1.0.0");
    let pm = Cni::new(a, "ADD", "ctr-srv", Some(&ns))
        .run_plugin(portmap, pm_conf(&res10).to_string().as_bytes())
        .expect_ok("portmap ADD");
    assert_eq!(pm["ips"], res10["ips"], "portmap passes our result on");

    let pod = as_pod(a, &ns, address(&res10));
    let _server = pod
        .spawn(&[
            "socat",
            "-u",
            "TCP-LISTEN:8080,reuseaddr,fork",
            "OPEN:/dev/null",
        ])
        .unwrap();
    let target = format!("TCP:{}:18080,connect-timeout=2", a.underlay_ip);
    wait_until(
        "host port 18080 on a to reach the container",
        Duration::from_secs(20),
        POLL,
        || {
            let out = b.exec(&["socat", "-u", "OPEN:/dev/null", &target])?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    )
    .expect("port mapping works");

    Cni::new(a, "DEL", "ctr-srv", Some(&ns))
        .run_plugin(portmap, pm_conf(&res10).to_string().as_bytes())
        .expect_ok("portmap DEL");
    Cni::new(a, "DEL", "ctr-srv", Some(&ns))
        .run(&topo, &mesh_conf)
        .expect_ok("DEL");
    assert!(pod_veths(a).is_empty());
}

#[test]
fn with_automatic_ipam_add_waits_for_a_first_block_and_for_another_when_the_pool_is_full() {
    require_root();
    let mut topo = Topology::new("cni_automatic_ipam").expect("topology");
    let a = topo.add_host("a").expect("host a");
    let b = topo.add_host("b").expect("host b");
    let started = Instant::now();
    // /30 blocks: one pod address each, so the second pod needs a second block.
    for (host, peers) in [(&a, vec![]), (&b, vec![&a])] {
        let mut opts = MeshdOpts::automatic().peers(peers);
        opts.range = "10.32.0.0/16".to_owned();
        opts.extra_args = vec!["--block-size".into(), "30".into()];
        topo.start_meshd(host, opts).expect("start meshd");
    }
    // b has just started: it has no block until a donates one; ADD waits (meshd answers 503,
    // the plugin tries again) instead of failing.
    let ns1 = topo.add_container_netns(&b, "one").unwrap();
    let first = Cni::new(&b, "ADD", "ctr-1", Some(&ns1))
        .run(&topo, &conf(&b))
        .expect_ok("first ADD on b");
    // Its block is full now: the next ADD waits for another donation.
    let ns2 = topo.add_container_netns(&b, "two").unwrap();
    let second = Cni::new(&b, "ADD", "ctr-2", Some(&ns2))
        .run(&topo, &conf(&b))
        .expect_ok("second ADD on b");
    let (ip1, ip2) = (address(&first), address(&second));
    assert_ne!(
        u32::from(ip1) >> 2,
        u32::from(ip2) >> 2,
        "{ip1} and {ip2} come from two /30 blocks"
    );
    for res in [&first, &second] {
        let ip = address(res);
        let gw = Ipv4Addr::from((u32::from(ip) & !3) + 1);
        assert_eq!(res["ips"][0]["address"], format!("{ip}/30"), "{res:#}");
        assert_eq!(res["ips"][0]["gateway"], gw.to_string(), "{res:#}");
    }
    // And on the founder, a pod of its own; all three reach each other.
    let ns3 = topo.add_container_netns(&a, "three").unwrap();
    let third = Cni::new(&a, "ADD", "ctr-3", Some(&ns3))
        .run(&topo, &conf(&a))
        .expect_ok("ADD on a");
    let ip3 = address(&third);
    let deadline = started + Duration::from_secs(30);
    wait_ping(&as_pod(&b, &ns2, ip2), ip1, deadline);
    wait_ping(&as_pod(&b, &ns2, ip2), ip3, deadline);
    wait_ping(&as_pod(&a, &ns3, ip3), ip1, deadline);
}
