//! `mesh-demo`: three hosts (network namespaces), `meshd` on every host with automatic IPAM
//! (host a founds the cluster, b and c are given only a), a pod on each host made by
//! `mesh-cni` the way a container runtime makes it, the status of host a, a ping between
//! every pair of pods, every pod's name resolved by every host's DNS, and the pods removed
//! by `mesh-cni` again; everything is removed at the end. Exits non-zero if any check
//! failed. Needs root and `cargo build --workspace`.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use mesh_api::PeerState;
use mesh_integration::cni::{Cni, network_conf};
use mesh_integration::{Host, MeshdOpts, Pod, Topology, wait_until};

const HOSTS: [&str; 3] = ["a", "b", "c"];

fn main() -> ExitCode {
    match run() {
        Ok(0) => {
            println!("mesh-demo: every pod reached every other pod and resolved every name");
            ExitCode::SUCCESS
        }
        Ok(failed) => {
            eprintln!("mesh-demo: {failed} check(s) failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mesh-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Returns how many checks failed.
fn run() -> Result<usize, String> {
    let mut topo = Topology::new("mesh-demo")?;
    println!("mesh-demo: namespaces prefixed {}", topo.prefix());
    let result = demo(&mut topo);
    if result != Ok(0) {
        topo.print_logs();
    }
    result
}

/// A pod made by `mesh-cni ADD`.
struct CniPod {
    pod: Pod,
    container_id: String,
    gateway: String,
}

fn demo(topo: &mut Topology) -> Result<usize, String> {
    let hosts = HOSTS
        .iter()
        .map(|name| topo.add_host(name))
        .collect::<Result<Vec<Host>, String>>()?;
    for (i, host) in hosts.iter().enumerate() {
        let peers: Vec<&Host> = if i == 0 { vec![] } else { vec![&hosts[0]] };
        let how = if i == 0 {
            "founds the cluster".to_owned()
        } else {
            format!("joins through {}", hosts[0].name)
        };
        println!(
            "mesh-demo: starting meshd on {} ({}), automatic IPAM, {how}",
            host.name, host.underlay_ip
        );
        topo.start_meshd(host, MeshdOpts::automatic().peers(peers))?;
    }
    let mut pods = Vec::new();
    for host in &hosts {
        pods.push(add_pod(topo, host)?);
    }
    for host in &hosts {
        let want = hosts.len() - 1;
        wait_until(
            &format!("{} to establish {want} sessions", host.name),
            Duration::from_secs(20),
            Duration::from_millis(200),
            || {
                let status = topo.status(host)?;
                let up = status
                    .peers
                    .iter()
                    .filter(|p| p.state == PeerState::Established)
                    .count();
                if up >= want {
                    Ok(())
                } else {
                    Err(format!("{up} established: {:?}", status.peers))
                }
            },
        )?;
    }
    println!("mesh-demo: meshctl status on {}:", hosts[0].name);
    print!("{}", topo.meshctl(&hosts[0], &["status"])?);
    println!("mesh-demo: meshctl connections on {}:", hosts[0].name);
    print!("{}", topo.meshctl(&hosts[0], &["connections"])?);
    println!("mesh-demo: meshctl dns on {}:", hosts[0].name);
    print!("{}", topo.meshctl(&hosts[0], &["dns"])?);
    let mut failed = 0;
    for from in &pods {
        for to in &pods {
            if from.pod.netns == to.pod.netns {
                continue;
            }
            failed += usize::from(!ping(&from.pod, &to.pod));
        }
    }
    for from in &pods {
        for to in &pods {
            failed += usize::from(!resolve(from, &to.pod));
        }
    }
    for (host, p) in hosts.iter().zip(&pods) {
        Cni::new(host, "DEL", &p.container_id, Some(&p.pod.netns))
            .pod_name(&p.pod.name)
            .run(topo, &network_conf(host))
            .into_result("mesh-cni DEL")?;
        println!(
            "mesh-demo: mesh-cni DEL {} on {}: address {} freed",
            p.pod.name, host.name, p.pod.ip
        );
    }
    Ok(failed)
}

/// Makes pod `pod-HOST` on `host`: an empty network namespace wired by `mesh-cni ADD`.
fn add_pod(topo: &mut Topology, host: &Host) -> Result<CniPod, String> {
    let name = format!("pod-{}", host.name);
    let netns = topo.add_container_netns(host, "p1")?;
    let container_id = format!("demo-{}", host.name);
    let result = Cni::new(host, "ADD", &container_id, Some(&netns))
        .pod_name(&name)
        .run(topo, &network_conf(host))
        .into_result("mesh-cni ADD")?;
    let ip0 = &result["ips"][0];
    let cidr = ip0["address"].as_str().unwrap_or_default().to_owned();
    let gateway = ip0["gateway"].as_str().unwrap_or_default().to_owned();
    let ip: Ipv4Addr = cidr
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            format!(
                "mesh-cni ADD on {} gave no IPv4 address: {result}",
                host.name
            )
        })?;
    println!(
        "mesh-demo: mesh-cni ADD {name} on {}: {cidr} via {gateway}, nameserver {}",
        host.name, result["dns"]["nameservers"][0]
    );
    Ok(CniPod {
        pod: Pod {
            name,
            host: host.name.clone(),
            netns,
            ip,
            host_if: String::new(),
        },
        container_id,
        gateway,
    })
}

fn ping(from: &Pod, to: &Pod) -> bool {
    let result = from.ping(to.ip, 3);
    let summary = match &result {
        Ok(text) | Err(text) => text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| text.lines().last().unwrap_or(""))
            .to_owned(),
    };
    let verdict = if result.is_ok() { "ok  " } else { "FAIL" };
    println!(
        "{verdict} ping {}@{} ({}) -> {}@{} ({}): {summary}",
        from.name, from.host, from.ip, to.name, to.host, to.ip
    );
    result.is_ok()
}

/// Asks `from`'s DNS server (its gateway) for `to`'s name, as the pod's resolver would.
fn resolve(from: &CniPod, to: &Pod) -> bool {
    let fqdn = format!("{}.mesh.local", to.name);
    let server = format!("@{}", from.gateway);
    let answer = from
        .pod
        .exec(&["dig", &server, "+time=2", "+tries=2", "+short", &fqdn])
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let ok = answer.as_deref() == Ok(to.ip.to_string().as_str());
    let verdict = if ok { "ok  " } else { "FAIL" };
    let shown = match &answer {
        Ok(a) if a.is_empty() => "no answer".to_owned(),
        Ok(a) => a.replace('\n', " "),
        Err(e) => e.clone(),
    };
    println!(
        "{verdict} dns  {}@{} asks {}: {fqdn} -> {shown}",
        from.pod.name, from.pod.host, from.gateway
    );
    ok
}
