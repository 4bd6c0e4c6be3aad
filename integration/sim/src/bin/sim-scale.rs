//! How gossip membership scales in the simulator, phase by phase:
//!
//! 1. **cold start**: N nodes start at once, node `i` given node 0 (`star`) or a random
//!    earlier node (`random`) as its only `--peer`; the virtual time until every node knows
//!    every other as an alive member and routes its block (what
//!    `mesh_sim::properties::check_membership` checks, counted instead of compared:
//!    `member_counts() == (N-1, N-1)` and `route_count() == N`), and when each node first
//!    got there; and how many adjacency versions each node published meanwhile (each one
//!    floods the cluster: with the member records, they are what a cold start costs);
//! 2. **settle**: `--settle` seconds more (default 200, past the 180 s after which the
//!    sessions every joiner made with its bootstrap peer expire unless they are needed),
//!    then the same check again, and the adjacency versions published meanwhile;
//! 3. **steady state**: over `--window` seconds (default 60), per node and per second, the
//!    gossip bytes and messages sent (`gossip_status()`, before sealing), all UDP bytes and
//!    datagrams sent (the simulator's per-node counters: gossip, keepalives, handshakes),
//!    new and already-known records received; at the end, the sessions, gossip neighbours
//!    and records held per node;
//! 4. **join**: one more node bootstraps (the same way) into the converged cluster; the
//!    virtual time until every other node knows it alive and routes its block, and until it
//!    knows everyone.
//!
//! Then the wall time of each phase and the peak resident memory (`VmHWM`), so memory per
//! node can be read off. The same seed gives the same run (`trace hash` at the end).
//!
//! `cargo run --release -p mesh-sim --bin sim-scale -- --nodes 1000 --topology random`
//!
//! Flags: `--nodes N` (10), `--seed S` (1), `--secs T` (300: the virtual-time limit of the
//! cold start and of the join), `--topology star|random|full` (random; `full`: node `i` is
//! given every earlier node), `--loss P` (0: every link's loss probability), `--settle S`
//! (200), `--window S` (60), `--check-ms MS` (100: how often convergence is checked, the
//! resolution of the times), `--max-rss-mib M` (20480) and `--max-wall S` (900): stop once
//! the process's resident memory or the wall time goes over (checked between slices of
//! virtual time only, so a flood in a large cluster can overshoot: add `ulimit -v`);
//! `--progress S`: every S seconds of virtual time, a line of cluster-wide rates on stderr;
//! `--json`: print one JSON object instead of the table. Exit status: 0 when every phase
//! converged, 1 when one did not, 2 for bad arguments, 3 when stopped by a limit (what was
//! measured until then is still printed).

use mesh_proto::gossip::KIND_ADJACENCY;
use mesh_sim::{Link, Sim, SimConfig, SimRng, Topology};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: sim-scale [--nodes N] [--seed S] [--secs T] \
     [--topology star|random|full] [--loss P] [--settle S] [--window S] [--check-ms MS] \
     [--max-rss-mib M] [--max-wall S] [--progress S] [--json]";

struct Args {
    nodes: usize,
    seed: u64,
    secs: u64,
    topology: Topology,
    loss: f64,
    settle: u64,
    window: u64,
    check_ms: u64,
    max_rss_mib: u64,
    max_wall: u64,
    progress: u64,
    json: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nodes: 10,
        seed: 1,
        secs: 300,
        topology: Topology::RandomEarlier,
        loss: 0.0,
        settle: 200,
        window: 60,
        check_ms: 100,
        max_rss_mib: 20 * 1024,
        max_wall: 900,
        progress: 0,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => return Err(USAGE.to_string()),
            "--json" => {
                a.json = true;
                continue;
            }
            _ => {}
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
            "--settle" => a.settle = value.parse().map_err(|e| bad(&e))?,
            "--window" => a.window = value.parse().map_err(|e| bad(&e))?,
            "--check-ms" => a.check_ms = value.parse().map_err(|e| bad(&e))?,
            "--max-rss-mib" => a.max_rss_mib = value.parse().map_err(|e| bad(&e))?,
            "--max-wall" => a.max_wall = value.parse().map_err(|e| bad(&e))?,
            "--progress" => a.progress = value.parse().map_err(|e| bad(&e))?,
            "--topology" => {
                a.topology = match value.as_str() {
                    "full" => Topology::Full,
                    "star" => Topology::Star,
                    "random" => Topology::RandomEarlier,
                    _ => return Err(bad(&"expected star, random or full")),
                }
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if a.nodes < 2 {
        return Err(format!("--nodes must be at least 2\n{USAGE}"));
    }
    if a.check_ms == 0 || a.window == 0 {
        return Err(format!("--check-ms and --window must be positive\n{USAGE}"));
    }
    if !(0.0..=1.0).contains(&a.loss) {
        return Err(format!("--loss must be between 0 and 1\n{USAGE}"));
    }
    Ok(a)
}

fn topology_name(t: Topology) -> &'static str {
    match t {
        Topology::Star => "star",
        Topology::RandomEarlier => "random",
        Topology::Full => "full",
    }
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn rss() -> u64 {
    proc_status_bytes("VmRSS").unwrap_or(0)
}

fn peak_rss() -> u64 {
    proc_status_bytes("VmHWM").unwrap_or(0)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Stops the run when memory or wall time goes over the limits, and prints progress.
struct Guard {
    started: Instant,
    max_rss: u64,
    max_wall: Duration,
    /// Every this much virtual time, a line on stderr.
    progress: Option<Duration>,
    last: RefCell<Option<Progress>>,
}

/// Cluster-wide counters at the last progress line.
#[derive(Clone, Copy)]
struct Progress {
    at: Duration,
    wall: Instant,
    steps: u64,
    datagrams: u64,
    handshakes: u64,
    gossip_tx_bytes: u64,
    records_applied: u64,
    records_redundant: u64,
}

fn progress_now(sim: &Sim) -> Progress {
    let now = sim.now();
    let (mut gb, mut ra, mut rr) = (0, 0, 0);
    for i in 0..sim.len() {
        if let Some(node) = sim.node(i) {
            let g = node.gossip_status(now);
            gb += g.tx_bytes;
            ra += g.records_applied;
            rr += g.records_redundant;
        }
    }
    Progress {
        at: sim.elapsed(),
        wall: Instant::now(),
        steps: sim.stats().steps,
        datagrams: sim.stats().datagrams,
        handshakes: sim.stats().handshake_datagrams,
        gossip_tx_bytes: gb,
        records_applied: ra,
        records_redundant: rr,
    }
}

impl Guard {
    fn check(&self, sim: &Sim) -> Result<(), String> {
        let r = rss();
        if let Some(every) = self.progress {
            let mut last = self.last.borrow_mut();
            let due = last.is_none_or(|l| sim.elapsed() >= l.at + every);
            if due {
                let p = progress_now(sim);
                if let Some(l) = *last {
                    let secs = (p.at - l.at).as_secs_f64();
                    let per_node = |a: u64, b: u64| (b - a) as f64 / secs / sim.len() as f64;
                    let sessions: Vec<usize> =
                        (0..sim.len()).map(|i| sim.established_count(i)).collect();
                    eprintln!(
                        "[{:>7.1} s virtual, {:>7.1} s wall] per node per s: {:.0} events, \
                         {:.1} datagrams, {:.0} gossip bytes, {:.1} records applied, \
                         {:.1} redundant; {:.1} handshake datagrams/s in all; sessions mean \
                         {:.1} max {}; {:.0} MiB resident",
                        p.at.as_secs_f64(),
                        p.wall.duration_since(self.started).as_secs_f64(),
                        per_node(l.steps, p.steps),
                        per_node(l.datagrams, p.datagrams),
                        per_node(l.gossip_tx_bytes, p.gossip_tx_bytes),
                        per_node(l.records_applied, p.records_applied),
                        per_node(l.records_redundant, p.records_redundant),
                        (p.handshakes - l.handshakes) as f64 / secs,
                        sessions.iter().sum::<usize>() as f64 / sessions.len().max(1) as f64,
                        sessions.iter().max().copied().unwrap_or(0),
                        r as f64 / MIB,
                    );
                }
                *last = Some(p);
            }
        }
        if r > self.max_rss {
            return Err(format!(
                "resident memory {:.0} MiB is over --max-rss-mib {:.0}",
                r as f64 / MIB,
                self.max_rss as f64 / MIB
            ));
        }
        if self.started.elapsed() > self.max_wall {
            return Err(format!(
                "wall time {:.0} s is over --max-wall {}",
                self.started.elapsed().as_secs_f64(),
                self.max_wall.as_secs()
            ));
        }
        Ok(())
    }
}

/// Runs `d` of virtual time in slices of at most one second, checking the guard between.
fn advance(sim: &mut Sim, d: Duration, guard: &Guard) -> Result<(), String> {
    let end = sim.elapsed() + d;
    while sim.elapsed() < end {
        guard.check(sim)?;
        let slice = (end - sim.elapsed()).min(Duration::from_secs(1));
        sim.run_for(slice);
    }
    Ok(())
}

/// What node `i` sees: whether it knows `members` other members, all alive, and whether it
/// also routes `blocks` blocks (its own included). Routes are rebuilt at the node's
/// once-a-second maintenance tick, so the second lags the first by up to a second, or
/// longer: a member first heard of through someone's adjacency record counts as known and
/// alive before its own member record (endpoint, blocks) arrives, and only then is routed.
fn sees_all(sim: &Sim, i: usize, members: usize, blocks: usize) -> (bool, bool) {
    let Some(n) = sim.node(i) else {
        return (false, false);
    };
    let known = n.member_counts() == (members, members);
    (known, known && n.route_count() == blocks)
}

/// How far the convergence got, for a run that did not reach it.
fn shortfall(sim: &Sim, nodes: &[usize], members: usize) -> String {
    let mut short = 0;
    let mut min_known = usize::MAX;
    let mut min_alive = usize::MAX;
    let mut worst = 0;
    for &i in nodes {
        let (known, alive) = sim.node(i).map_or((0, 0), |n| n.member_counts());
        if (known, alive) != (members, members) {
            short += 1;
        }
        if alive < min_alive {
            worst = i;
        }
        min_known = min_known.min(known);
        min_alive = min_alive.min(alive);
    }
    format!(
        "{short} of {} nodes short of {members} alive members; fewest known {min_known}, \
         fewest alive {min_alive} (node {worst})",
        nodes.len()
    )
}

/// Convergence of `nodes`: the first virtual time (from the phase's start) at which each
/// saw what `ok` asks, and the time at which all did at once.
struct Converged {
    /// When all did at once; `None`: not within the limit.
    all: Option<Duration>,
    /// Per node, when it first did.
    first: Vec<Option<Duration>>,
    /// Per node, when it first knew every member alive (routes not yet rebuilt, maybe).
    first_members: Vec<Option<Duration>>,
    /// Nodes that did, and no longer did when all were checked together.
    regressions: usize,
}

/// Runs until every node of `nodes` sees all (the second of `view`), checking every `every`
/// for at most `limit` of virtual time. Nodes that got there are not checked again until
/// all have; then all are checked at once, and the ones that fell back are checked again.
fn converge(
    sim: &mut Sim,
    nodes: &[usize],
    limit: Duration,
    every: Duration,
    guard: &Guard,
    view: impl Fn(&Sim, usize) -> (bool, bool),
) -> Result<Converged, String> {
    let ok = |s: &Sim, i: usize| view(s, i).1;
    let t0 = sim.elapsed();
    let mut first: Vec<Option<Duration>> = vec![None; nodes.len()];
    let mut first_members: Vec<Option<Duration>> = vec![None; nodes.len()];
    let mut pending: Vec<usize> = (0..nodes.len()).collect();
    let mut regressions = 0;
    loop {
        let t = sim.elapsed() - t0;
        pending.retain(|&k| {
            let (known, done) = view(sim, nodes[k]);
            if known && first_members[k].is_none() {
                first_members[k] = Some(t);
            }
            if done && first[k].is_none() {
                first[k] = Some(t);
            }
            !done
        });
        if pending.is_empty() {
            pending = (0..nodes.len()).filter(|&k| !ok(sim, nodes[k])).collect();
            regressions += pending.len();
            if pending.is_empty() {
                return Ok(Converged {
                    all: Some(t),
                    first,
                    first_members,
                    regressions,
                });
            }
        }
        if t >= limit {
            return Ok(Converged {
                all: None,
                first,
                first_members,
                regressions,
            });
        }
        guard.check(sim)?;
        sim.run_for(every.min(limit - t).max(Duration::from_nanos(1)));
    }
}

/// Percentile `p` (0..=100) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

#[derive(Default, Clone, Copy)]
struct Spread {
    mean: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

fn spread(values: impl IntoIterator<Item = f64>) -> Spread {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Spread {
            mean: f64::NAN,
            p50: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
        };
    }
    v.sort_by(f64::total_cmp);
    Spread {
        mean: v.iter().sum::<f64>() / v.len() as f64,
        p50: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
        max: v[v.len() - 1],
    }
}

/// The per-node first times of a convergence, as a spread in seconds (nodes that never got
/// there left out).
fn first_times(c: &Converged) -> Spread {
    spread(c.first.iter().flatten().map(Duration::as_secs_f64))
}

/// The same for knowing every member alive (routes aside).
fn first_member_times(c: &Converged) -> Spread {
    spread(c.first_members.iter().flatten().map(Duration::as_secs_f64))
}

/// Of a join's convergence (the newcomer last): when every other node first knew the
/// newcomer alive and routed its block.
fn join_known_by_all(c: &Converged) -> Option<Duration> {
    let others = &c.first[..c.first.len().saturating_sub(1)];
    others
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// When the newcomer first knew every other node alive and routed their blocks.
fn join_newcomer(c: &Converged) -> Option<Duration> {
    c.first.last().copied().flatten()
}

/// The others' first times of a join, as a spread in seconds.
fn join_first_times(c: &Converged) -> Spread {
    let others = &c.first[..c.first.len().saturating_sub(1)];
    spread(others.iter().flatten().map(Duration::as_secs_f64))
}

/// The others' first times of knowing the newcomer alive (routes aside).
fn join_first_member_times(c: &Converged) -> Spread {
    let others = &c.first_members[..c.first_members.len().saturating_sub(1)];
    spread(others.iter().flatten().map(Duration::as_secs_f64))
}

/// Per-node counters at one instant.
#[derive(Clone)]
struct Snapshot {
    at: Duration,
    gossip_tx_bytes: Vec<u64>,
    gossip_tx_messages: Vec<u64>,
    tx_bytes: Vec<u64>,
    tx_datagrams: Vec<u64>,
    records_applied: Vec<u64>,
    records_redundant: Vec<u64>,
    /// The version of each node's own adjacency record: it goes up by one each time the
    /// node publishes a changed neighbour list, and each version floods the cluster.
    adjacency_versions: Vec<u64>,
    handshakes: u64,
}

/// Each node's gossip counters now (zeros for a node that is down).
fn gossip_statuses(sim: &Sim, n: usize) -> Vec<mesh_api::GossipStatus> {
    let now = sim.now();
    (0..n)
        .map(|i| {
            sim.node(i)
                .map(|node| node.gossip_status(now))
                .unwrap_or_default()
        })
        .collect()
}

fn snapshot(sim: &Sim, n: usize) -> Snapshot {
    let gossip = gossip_statuses(sim, n);
    Snapshot {
        at: sim.elapsed(),
        gossip_tx_bytes: gossip.iter().map(|g| g.tx_bytes).collect(),
        gossip_tx_messages: gossip.iter().map(|g| g.tx_messages).collect(),
        records_applied: gossip.iter().map(|g| g.records_applied).collect(),
        records_redundant: gossip.iter().map(|g| g.records_redundant).collect(),
        tx_bytes: (0..n).map(|i| sim.node_stats(i).tx_bytes).collect(),
        tx_datagrams: (0..n).map(|i| sim.node_stats(i).tx_datagrams).collect(),
        adjacency_versions: (0..n)
            .map(|i| {
                sim.node(i).map_or(0, |node| {
                    node.record(KIND_ADJACENCY, node.public_key().as_bytes())
                        .map_or(0, |(v, _)| v)
                })
            })
            .collect(),
        handshakes: sim.stats().handshake_datagrams,
    }
}

/// Per node and per second between two snapshots.
fn rate(a: &[u64], b: &[u64], secs: f64) -> Spread {
    spread(
        a.iter()
            .zip(b)
            .map(|(x, y)| y.saturating_sub(*x) as f64 / secs),
    )
}

/// Per node, the total between two snapshots.
fn total(a: &[u64], b: &[u64]) -> Spread {
    spread(a.iter().zip(b).map(|(x, y)| y.saturating_sub(*x) as f64))
}

struct Steady {
    secs: f64,
    gossip_bytes: Spread,
    gossip_messages: Spread,
    udp_bytes: Spread,
    udp_datagrams: Spread,
    records_applied: Spread,
    records_redundant: Spread,
    handshakes_per_s: f64,
    sessions: Spread,
    neighbours: Spread,
    outbound: Spread,
    records: Spread,
}

struct Report {
    nodes: usize,
    topology: Topology,
    seed: u64,
    loss: f64,
    block_prefix: u8,
    rss_start: u64,
    rss_built: u64,
    wall_build: f64,
    cold: Option<Converged>,
    cold_wall: f64,
    cold_gossip_bytes: Option<Spread>,
    cold_adjacency_versions: Option<Spread>,
    settle_adjacency_versions: Option<Spread>,
    cold_shortfall: Option<String>,
    settled_ok: Option<bool>,
    settle_wall: f64,
    steady: Option<Steady>,
    steady_wall: f64,
    join: Option<Converged>,
    join_wall: f64,
    join_gossip_bytes: Option<Spread>,
    join_shortfall: Option<String>,
    aborted: Option<String>,
    wall_total: f64,
    virtual_total: f64,
    steps: u64,
    peak_rss: u64,
    trace_hash: u64,
}

fn opt_secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "not reached".to_string(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    )
}

fn fmt_spread(s: Spread, digits: usize) -> String {
    format!(
        "mean {:.d$}  p50 {:.d$}  p99 {:.d$}  max {:.d$}",
        s.mean,
        s.p50,
        s.p99,
        s.max,
        d = digits
    )
}

fn print_table(r: &Report, args: &Args) {
    let n = r.nodes;
    println!(
        "sim-scale: {n} nodes, topology {}, seed {}, loss {}, blocks /{}",
        topology_name(r.topology),
        r.seed,
        r.loss,
        r.block_prefix
    );
    println!(
        "  build          wall {:>8.1} s   resident {:.0} MiB after building ({:.0} MiB at start)",
        r.wall_build,
        r.rss_built as f64 / MIB,
        r.rss_start as f64 / MIB
    );
    if let Some(c) = &r.cold {
        println!(
            "  cold start     wall {:>8.1} s   every node knows {} members alive and routes {n} blocks after {} virtual",
            r.cold_wall,
            n - 1,
            opt_secs(c.all)
        );
        println!(
            "                 per node, first knew all alive (s): {}",
            fmt_spread(first_member_times(c), 1)
        );
        println!(
            "                 per node, first also routed all (s): {}",
            fmt_spread(first_times(c), 1)
        );
        if let Some((k, t)) = c
            .first
            .iter()
            .enumerate()
            .filter_map(|(k, t)| t.map(|t| (k, t)))
            .max_by_key(|(_, t)| *t)
        {
            println!(
                "                 last to route all: node {k} at {:.1} s",
                t.as_secs_f64()
            );
        }
        if let Some(g) = r.cold_gossip_bytes {
            println!(
                "                 gossip bytes sent per node until then: {}",
                fmt_spread(g, 0)
            );
        }
        if let Some(v) = r.cold_adjacency_versions {
            println!(
                "                 adjacency versions published per node until then: {}",
                fmt_spread(v, 1)
            );
        }
        if c.regressions > 0 {
            println!(
                "                 {} times a node lost its full view before all had it",
                c.regressions
            );
        }
        if let Some(s) = &r.cold_shortfall {
            println!("                 {s}");
        }
    }
    if let Some(ok) = r.settled_ok {
        println!(
            "  settle         wall {:>8.1} s   {} virtual more: {}",
            r.settle_wall,
            args.settle,
            if ok {
                "still converged"
            } else {
                "NO LONGER CONVERGED"
            }
        );
        if let Some(v) = r.settle_adjacency_versions {
            println!(
                "                 adjacency versions published per node meanwhile: {}",
                fmt_spread(v, 1)
            );
        }
    }
    if let Some(s) = &r.steady {
        println!(
            "  steady state   wall {:>8.1} s   over {:.0} s virtual, per node and second:",
            r.steady_wall, s.secs
        );
        let rows = [
            ("gossip bytes   ", s.gossip_bytes, 0),
            ("gossip messages", s.gossip_messages, 2),
            ("UDP bytes      ", s.udp_bytes, 0),
            ("UDP datagrams  ", s.udp_datagrams, 2),
            ("records received, new", s.records_applied, 2),
            ("records received, known", s.records_redundant, 2),
        ];
        for (label, spread, digits) in rows {
            println!("                 {label} {}", fmt_spread(spread, digits));
        }
        println!(
            "                 handshake datagrams, whole cluster: {:.2}/s",
            s.handshakes_per_s
        );
        println!("               at the end, per node:");
        println!(
            "                 sessions        {}",
            fmt_spread(s.sessions, 1)
        );
        println!(
            "                 gossip neighbours {} (outbound {})",
            fmt_spread(s.neighbours, 1),
            fmt_spread(s.outbound, 1)
        );
        println!(
            "                 records held    {}",
            fmt_spread(s.records, 0)
        );
    }
    if let Some(c) = &r.join {
        println!(
            "  join           wall {:>8.1} s   all {n} others know the newcomer alive and route its block after {} virtual",
            r.join_wall,
            opt_secs(join_known_by_all(c))
        );
        println!(
            "                 per node, first knew it alive (s): {}",
            fmt_spread(join_first_member_times(c), 1)
        );
        println!(
            "                 per node, first also routed it (s): {}",
            fmt_spread(join_first_times(c), 1)
        );
        println!(
            "                 the newcomer knows all {n} alive and routes their blocks after {}; all {} nodes see all after {}",
            opt_secs(join_newcomer(c)),
            n + 1,
            opt_secs(c.all)
        );
        if c.regressions > 0 {
            println!(
                "                 {} times a node lost its full view before all had it",
                c.regressions
            );
        }
        if let Some(g) = r.join_gossip_bytes {
            println!(
                "                 gossip bytes sent per node during the join: {}",
                fmt_spread(g, 0)
            );
        }
        if let Some(s) = &r.join_shortfall {
            println!("                 {s}");
        }
    }
    if let Some(a) = &r.aborted {
        println!("  STOPPED: {a}");
    }
    println!(
        "  total          wall {:>8.1} s   {:.0} s virtual, {} events ({:.0}/s wall)",
        r.wall_total,
        r.virtual_total,
        r.steps,
        r.steps as f64 / r.wall_total.max(1e-9)
    );
    println!(
        "  memory         peak resident {:.0} MiB (VmHWM), {:.1} KiB per node over the start",
        r.peak_rss as f64 / MIB,
        r.peak_rss.saturating_sub(r.rss_start) as f64 / 1024.0 / n as f64
    );
    println!("  trace hash     {:016x}", r.trace_hash);
    // One row of the table in docs/performance.md.
    let cold = r.cold.as_ref().and_then(|c| c.all);
    let join = r.join.as_ref().and_then(join_known_by_all);
    let (gm, gx, sm, sx) =
        r.steady
            .as_ref()
            .map_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN), |s| {
                (
                    s.gossip_bytes.mean,
                    s.gossip_bytes.max,
                    s.sessions.mean,
                    s.sessions.max,
                )
            });
    println!(
        "row: | {n} | {} | {} | {} | {gm:.0} / {gx:.0} | {sm:.1} / {sx:.0} | {:.0} s | {:.0} MiB |",
        topology_name(r.topology),
        opt_secs(cold),
        opt_secs(join),
        r.wall_total,
        r.peak_rss as f64 / MIB
    );
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".to_string()
    }
}

fn json_secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "null".to_string(), |d| json_num(d.as_secs_f64()))
}

fn json_spread(s: Spread) -> String {
    format!(
        "{{\"mean\":{},\"p50\":{},\"p99\":{},\"max\":{}}}",
        json_num(s.mean),
        json_num(s.p50),
        json_num(s.p99),
        json_num(s.max)
    )
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn print_json(r: &Report) {
    let mut o = String::from("{");
    let mut field = |k: &str, v: String| {
        if o.len() > 1 {
            o.push(',');
        }
        let _ = write!(o, "\"{k}\":{v}");
    };
    field("nodes", r.nodes.to_string());
    field("topology", json_str(topology_name(r.topology)));
    field("seed", r.seed.to_string());
    field("loss", json_num(r.loss));
    field("block_prefix", r.block_prefix.to_string());
    field("rss_start_bytes", r.rss_start.to_string());
    field("rss_built_bytes", r.rss_built.to_string());
    field("wall_build_secs", json_num(r.wall_build));
    if let Some(c) = &r.cold {
        field("cold_start_secs", json_secs(c.all));
        field(
            "cold_start_first_knew_all_secs",
            json_spread(first_member_times(c)),
        );
        field(
            "cold_start_first_routed_all_secs",
            json_spread(first_times(c)),
        );
        field("cold_start_regressions", c.regressions.to_string());
        field("cold_start_wall_secs", json_num(r.cold_wall));
    }
    if let Some(g) = r.cold_gossip_bytes {
        field("cold_start_gossip_bytes_per_node", json_spread(g));
    }
    if let Some(v) = r.cold_adjacency_versions {
        field("cold_start_adjacency_versions_per_node", json_spread(v));
    }
    if let Some(v) = r.settle_adjacency_versions {
        field("settle_adjacency_versions_per_node", json_spread(v));
    }
    if let Some(s) = &r.cold_shortfall {
        field("cold_start_shortfall", json_str(s));
    }
    if let Some(ok) = r.settled_ok {
        field("settled_converged", ok.to_string());
        field("settle_wall_secs", json_num(r.settle_wall));
    }
    if let Some(s) = &r.steady {
        field("steady_secs", json_num(s.secs));
        field(
            "steady_gossip_bytes_per_node_per_sec",
            json_spread(s.gossip_bytes),
        );
        field(
            "steady_gossip_messages_per_node_per_sec",
            json_spread(s.gossip_messages),
        );
        field(
            "steady_udp_bytes_per_node_per_sec",
            json_spread(s.udp_bytes),
        );
        field(
            "steady_udp_datagrams_per_node_per_sec",
            json_spread(s.udp_datagrams),
        );
        field(
            "steady_records_applied_per_node_per_sec",
            json_spread(s.records_applied),
        );
        field(
            "steady_records_redundant_per_node_per_sec",
            json_spread(s.records_redundant),
        );
        field(
            "steady_handshake_datagrams_per_sec",
            json_num(s.handshakes_per_s),
        );
        field("sessions_per_node", json_spread(s.sessions));
        field("gossip_neighbours_per_node", json_spread(s.neighbours));
        field("gossip_outbound_per_node", json_spread(s.outbound));
        field("records_per_node", json_spread(s.records));
        field("steady_wall_secs", json_num(r.steady_wall));
    }
    if let Some(c) = &r.join {
        field("join_secs", json_secs(join_known_by_all(c)));
        field(
            "join_first_knew_secs",
            json_spread(join_first_member_times(c)),
        );
        field("join_first_routed_secs", json_spread(join_first_times(c)));
        field("join_newcomer_knows_all_secs", json_secs(join_newcomer(c)));
        field("join_all_converged_secs", json_secs(c.all));
        field("join_regressions", c.regressions.to_string());
        field("join_wall_secs", json_num(r.join_wall));
    }
    if let Some(g) = r.join_gossip_bytes {
        field("join_gossip_bytes_per_node", json_spread(g));
    }
    if let Some(s) = &r.join_shortfall {
        field("join_shortfall", json_str(s));
    }
    field(
        "aborted",
        r.aborted
            .as_deref()
            .map_or_else(|| "null".to_string(), json_str),
    );
    field("wall_secs", json_num(r.wall_total));
    field("virtual_secs", json_num(r.virtual_total));
    field("events", r.steps.to_string());
    field("peak_rss_bytes", r.peak_rss.to_string());
    field("trace_hash", json_str(&format!("{:016x}", r.trace_hash)));
    o.push('}');
    println!("{o}");
}

/// The phases; fills `r` as it goes, so a run stopped by the guard still reports what it
/// measured. `Err` only for the guard.
fn run(args: &Args, r: &mut Report, guard: &Guard) -> Result<(), String> {
    let n = args.nodes;
    let wall = Instant::now();
    let mut config = SimConfig::default();
    if n + 1 > config.addressing.capacity() {
        // Smaller blocks so that every node (and the newcomer) gets one in 10.32.0.0/12.
        config.addressing =
            mesh_sim::Addressing::new(config.addressing.range(), 28).unwrap_or(config.addressing);
    }
    r.block_prefix = config.addressing.block(0).map_or(0, |b| b.prefix_len());
    config.link = Link {
        loss: args.loss,
        ..Link::default()
    };
    let mut sim = Sim::with_config(args.seed, config);
    let mut rng = SimRng::new(args.seed, 100);
    args.topology.build(&mut sim, n, &mut rng);
    r.wall_build = wall.elapsed().as_secs_f64();
    r.rss_built = rss();
    let every = Duration::from_millis(args.check_ms);
    let limit = Duration::from_secs(args.secs);
    let all: Vec<usize> = (0..n).collect();

    let result = (|| {
        // 1. Cold start.
        let t = Instant::now();
        let s0 = snapshot(&sim, n);
        let cold = converge(&mut sim, &all, limit, every, guard, |s, i| {
            sees_all(s, i, n - 1, n)
        });
        r.cold_wall = t.elapsed().as_secs_f64();
        let cold = cold?;
        let s1 = snapshot(&sim, n);
        r.cold_gossip_bytes = Some(total(&s0.gossip_tx_bytes, &s1.gossip_tx_bytes));
        r.cold_adjacency_versions = Some(total(&s0.adjacency_versions, &s1.adjacency_versions));
        let converged = cold.all.is_some();
        if !converged {
            r.cold_shortfall = Some(shortfall(&sim, &all, n - 1));
        }
        r.cold = Some(cold);

        // 2. Settle.
        let t = Instant::now();
        advance(&mut sim, Duration::from_secs(args.settle), guard)?;
        let s2 = snapshot(&sim, n);
        r.settle_adjacency_versions = Some(total(&s1.adjacency_versions, &s2.adjacency_versions));
        r.settled_ok = Some(all.iter().all(|&i| sees_all(&sim, i, n - 1, n).1));
        r.settle_wall = t.elapsed().as_secs_f64();

        // 3. Steady state.
        let t = Instant::now();
        let a = snapshot(&sim, n);
        advance(&mut sim, Duration::from_secs(args.window), guard)?;
        let b = snapshot(&sim, n);
        let secs = (b.at - a.at).as_secs_f64();
        let gossip = gossip_statuses(&sim, n);
        r.steady = Some(Steady {
            secs,
            gossip_bytes: rate(&a.gossip_tx_bytes, &b.gossip_tx_bytes, secs),
            gossip_messages: rate(&a.gossip_tx_messages, &b.gossip_tx_messages, secs),
            udp_bytes: rate(&a.tx_bytes, &b.tx_bytes, secs),
            udp_datagrams: rate(&a.tx_datagrams, &b.tx_datagrams, secs),
            records_applied: rate(&a.records_applied, &b.records_applied, secs),
            records_redundant: rate(&a.records_redundant, &b.records_redundant, secs),
            handshakes_per_s: (b.handshakes - a.handshakes) as f64 / secs,
            sessions: spread((0..n).map(|i| sim.established_count(i) as f64)),
            neighbours: spread(gossip.iter().map(|g| g.neighbours as f64)),
            outbound: spread(gossip.iter().map(|g| g.outbound as f64)),
            records: spread(gossip.iter().map(|g| g.records as f64)),
        });
        r.steady_wall = t.elapsed().as_secs_f64();

        // 4. One late join.
        if !converged {
            return Ok(());
        }
        let t = Instant::now();
        let j0 = snapshot(&sim, n);
        let newcomer = sim.len();
        sim.add_node(mesh_sim::NodeSpec::bootstrap(
            args.topology.bootstrap(newcomer, &mut rng),
        ));
        let mut everyone = all.clone();
        everyone.push(newcomer);
        let join = converge(&mut sim, &everyone, limit, every, guard, |s, i| {
            sees_all(s, i, n, n + 1)
        });
        r.join_wall = t.elapsed().as_secs_f64();
        let join = join?;
        let j1 = snapshot(&sim, n);
        r.join_gossip_bytes = Some(total(&j0.gossip_tx_bytes, &j1.gossip_tx_bytes));
        if join.all.is_none() {
            r.join_shortfall = Some(shortfall(&sim, &everyone, n));
        }
        r.join = Some(join);
        Ok(())
    })();
    r.virtual_total = sim.elapsed().as_secs_f64();
    r.steps = sim.stats().steps;
    r.trace_hash = sim.trace_hash();
    result
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let guard = Guard {
        started,
        max_rss: args.max_rss_mib.saturating_mul(1024 * 1024),
        max_wall: Duration::from_secs(args.max_wall),
        progress: (args.progress > 0).then(|| Duration::from_secs(args.progress)),
        last: RefCell::new(None),
    };
    let mut r = Report {
        nodes: args.nodes,
        topology: args.topology,
        seed: args.seed,
        loss: args.loss,
        block_prefix: 0,
        rss_start: rss(),
        rss_built: 0,
        wall_build: 0.0,
        cold: None,
        cold_wall: 0.0,
        cold_gossip_bytes: None,
        cold_adjacency_versions: None,
        settle_adjacency_versions: None,
        cold_shortfall: None,
        settled_ok: None,
        settle_wall: 0.0,
        steady: None,
        steady_wall: 0.0,
        join: None,
        join_wall: 0.0,
        join_gossip_bytes: None,
        join_shortfall: None,
        aborted: None,
        wall_total: 0.0,
        virtual_total: 0.0,
        steps: 0,
        peak_rss: 0,
        trace_hash: 0,
    };
    if let Err(e) = run(&args, &mut r, &guard) {
        r.aborted = Some(e);
    }
    r.wall_total = started.elapsed().as_secs_f64();
    r.peak_rss = peak_rss();
    if args.json {
        print_json(&r);
    } else {
        print_table(&r, &args);
    }
    let converged = r.cold.as_ref().is_some_and(|c| c.all.is_some())
        && r.join.as_ref().is_some_and(|c| c.all.is_some())
        && r.settled_ok == Some(true);
    if r.aborted.is_some() {
        ExitCode::from(3)
    } else if converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
