//! `mesh-demo`: three hosts with a pod each, `meshd` on every host, the status of host a,
//! and a ping between every pair of pods; everything is removed again at the end.
//! Exits non-zero if any ping failed. Needs root and `cargo build --workspace`.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use mesh_api::PeerState;
use mesh_integration::{Host, MeshdOpts, Pod, Topology, wait_until};

const NODES: [(&str, &str, &str); 3] = [
    ("a", "10.32.1.0/24", "10.32.1.10"),
    ("b", "10.32.2.0/24", "10.32.2.10"),
    ("c", "10.32.3.0/24", "10.32.3.10"),
];

fn main() -> ExitCode {
    match run() {
        Ok(0) => {
            println!("mesh-demo: every pod reached every other pod");
            ExitCode::SUCCESS
        }
        Ok(failed) => {
            eprintln!("mesh-demo: {failed} ping(s) failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mesh-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Returns how many pings failed.
fn run() -> Result<usize, String> {
    let mut topo = Topology::new("mesh-demo")?;
    println!("mesh-demo: namespaces prefixed {}", topo.prefix());
    let result = demo(&mut topo);
    if result != Ok(0) {
        topo.print_logs();
    }
    result
}

fn demo(topo: &mut Topology) -> Result<usize, String> {
    let hosts = NODES
        .iter()
        .map(|(name, _, _)| topo.add_host(name))
        .collect::<Result<Vec<Host>, String>>()?;
    for (i, host) in hosts.iter().enumerate() {
        let others = hosts.iter().filter(|h| h.name != host.name);
        println!(
            "mesh-demo: starting meshd on {} ({}), block {}",
            host.name, host.underlay_ip, NODES[i].1
        );
        topo.start_meshd(host, MeshdOpts::new(NODES[i].1).peers(others))?;
    }
    let pods = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| topo.add_pod(host, "p1", NODES[i].2))
        .collect::<Result<Vec<Pod>, String>>()?;
    for host in &hosts {
        let want = hosts.len() - 1;
        wait_until(
            &format!("{} to establish {want} sessions", host.name),
            Duration::from_secs(15),
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
    let mut failed = 0;
    for from in &pods {
        for to in &pods {
            if from.netns == to.netns {
                continue;
            }
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
                "{verdict} pod {}@{} ({}) -> pod {}@{} ({}): {summary}",
                from.name, from.host, from.ip, to.name, to.host, to.ip
            );
            if result.is_err() {
                failed += 1;
            }
        }
    }
    Ok(failed)
}
