//! How today's mesh scales in the simulator: time until every promised session is up and
//! its routes are in, and the traffic each node sends to keep it up.
//!
//! `cargo run --release -p mesh-sim --bin sim-scale -- --nodes 100 --seed 1 --secs 300`
//! (`--topology full|star|random`, default `full`: node i bootstraps from every earlier
//! node; `--loss P` sets every link's loss probability).

use mesh_sim::{Link, Sim, SimConfig, SimRng, Topology};
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: sim-scale [--nodes N] [--seed S] [--secs T] [--topology full|star|random] [--loss P]";

struct Args {
    nodes: usize,
    seed: u64,
    secs: u64,
    topology: Topology,
    loss: f64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nodes: 10,
        seed: 1,
        secs: 300,
        topology: Topology::Full,
        loss: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}\n{USAGE}");
        match flag.as_str() {
            "--nodes" => a.nodes = value.parse().map_err(|e| bad(&e))?,
            "--seed" => a.seed = value.parse().map_err(|e| bad(&e))?,
            "--secs" => a.secs = value.parse().map_err(|e| bad(&e))?,
            "--loss" => a.loss = value.parse().map_err(|e| bad(&e))?,
            "--topology" => {
                a.topology = match value.as_str() {
                    "full" => Topology::Full,
                    "star" => Topology::Star,
                    "random" => Topology::RandomEarlier,
                    _ => return Err(bad(&"expected full, star or random")),
                }
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if a.nodes < 2 {
        return Err(format!("--nodes must be at least 2\n{USAGE}"));
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let wall = Instant::now();
    let mut config = SimConfig::default();
    if args.nodes > config.addressing.capacity() {
        // Smaller blocks so that every node gets one in 10.32.0.0/12.
        config.addressing =
            mesh_sim::Addressing::new(config.addressing.range(), 28).unwrap_or(config.addressing);
    }
    config.link = Link {
        loss: args.loss,
        ..Link::default()
    };
    let mut sim = Sim::with_config(args.seed, config);
    let mut rng = SimRng::new(args.seed, 100);
    args.topology.build(&mut sim, args.nodes, &mut rng);
    let built = wall.elapsed();

    // Per node, how many sessions (and routed blocks, its own included) it should reach.
    let pairs: BTreeSet<(usize, usize)> = sim.bootstrap_pairs();
    let mut degree = vec![0usize; args.nodes];
    for &(a, b) in &pairs {
        degree[a] += 1;
        degree[b] += 1;
    }
    let connected = |s: &Sim| {
        (0..s.len()).all(|i| {
            s.node(i).is_some_and(|n| {
                n.established_peers() == degree[i] && n.routes().len() == degree[i] + 1
            })
        })
    };
    let limit = Duration::from_secs(args.secs);
    let took = sim.run_until(limit, Duration::from_millis(10), connected);
    let at_connect = (sim.elapsed(), sim.stats().clone(), wall.elapsed());
    sim.run_for(limit.saturating_sub(sim.elapsed()));
    let wall_total = wall.elapsed();
    let s = sim.stats();
    let n = args.nodes as f64;
    let virt = sim.elapsed().as_secs_f64();
    let steady = (sim.elapsed() - at_connect.0).as_secs_f64();

    println!(
        "nodes {} topology {:?} seed {} sessions promised {} virtual {:.0} s",
        args.nodes,
        args.topology,
        args.seed,
        pairs.len(),
        virt
    );
    println!(
        "wall: {:.2} s total ({:.2} s building nodes, {:.2} s to connectivity), {:.0} events/s",
        wall_total.as_secs_f64(),
        built.as_secs_f64(),
        at_connect.2.as_secs_f64(),
        s.steps as f64 / wall_total.as_secs_f64()
    );
    match took {
        Some(t) => println!(
            "connectivity (every promised session up, its block routed): {:.3} s virtual",
            t.as_secs_f64()
        ),
        None => println!("connectivity: NOT reached within {} s virtual", args.secs),
    }
    println!(
        "whole run: {:.2} datagrams and {:.0} bytes per node per second ({} handshake, {} data datagrams; lost {:?})",
        s.datagrams as f64 / n / virt,
        s.bytes as f64 / n / virt,
        s.handshake_datagrams,
        s.data_datagrams,
        s.lost
    );
    if steady > 0.0 {
        let dd = (s.datagrams - at_connect.1.datagrams) as f64;
        let db = (s.bytes - at_connect.1.bytes) as f64;
        let dh = s.handshake_datagrams - at_connect.1.handshake_datagrams;
        println!(
            "after connectivity ({steady:.0} s): {:.2} datagrams and {:.0} bytes per node per second ({dh} handshake datagrams: rekeys)",
            dd / n / steady,
            db / n / steady
        );
    }
    ExitCode::SUCCESS
}
