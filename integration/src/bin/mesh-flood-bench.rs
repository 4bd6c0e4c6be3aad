//! `mesh-flood-bench`: what a spoofed-source flood of junk handshake initiations costs meshd,
//! and what it leaves of pod-to-pod throughput. Run by `scripts/bench-flood.sh` (root); a
//! benchmark, not a test: it asserts nothing and prints a table for docs/performance.md.
//!
//! Three hosts on one underlay bridge (the integration harness's topology): `a` and `b` run
//! meshd with a pod each; `x`, without the secret, runs `mesh-flood` at `b`'s underlay
//! address from spoofed sources of the underlay subnet. Per case:
//! - `iperf3 -t SECONDS` from pod a to pod b, alone, then with the flood at each rate;
//! - the flood alone (no iperf3) at each rate, for meshd's CPU per junk datagram.
//!
//! meshd's CPU is user + system time of its process from `/proc/PID/stat`.
//!
//! ```text
//! mesh-flood-bench [--bin-dir DIR] [--seconds S] [--rates 20000,max] [--shape v2|v1]
//!                  [--spoof CIDR]
//! ```
//! `--spoof`: the range the junk's sources are drawn from (default 198.19.0.0/16: 65,536
//! sources outside the underlay subnet; test namespaces have no reverse-path filter).
//! `--bin-dir`: where meshd and meshctl are (default: beside this program; point it at an
//! older build to measure that version, with `--shape v1` for the junk it parses).

use mesh_integration::{Host, MeshdOpts, Topology};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    bin_dir: PathBuf,
    seconds: u64,
    rates: Vec<String>,
    shape: String,
    spoof: String,
}

fn parse() -> Result<Args, String> {
    let own_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .ok_or("cannot tell where this program is")?;
    let mut args = Args {
        bin_dir: own_dir,
        seconds: 10,
        rates: vec!["20000".into(), "max".into()],
        shape: "v2".into(),
        spoof: "198.19.0.0/16".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bin-dir" => args.bin_dir = PathBuf::from(value()?),
            "--seconds" => {
                let v = value()?;
                args.seconds = v.parse().map_err(|e| format!("--seconds {v}: {e}"))?;
            }
            "--rates" => args.rates = value()?.split(',').map(str::to_owned).collect(),
            "--shape" => args.shape = value()?,
            "--spoof" => args.spoof = value()?,
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: mesh-flood-bench [--bin-dir DIR] \
                     [--seconds S] [--rates 20000,max] [--shape v2|v1] [--spoof CIDR]"
                ));
            }
        }
    }
    Ok(args)
}

/// User + system CPU seconds of process `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

struct Bench {
    topo: Topology,
    b: Host,
    x: Host,
    flood_bin: PathBuf,
    seconds: u64,
    shape: String,
    spoof: String,
}

/// One measured run.
struct Run {
    gbits: Option<f64>,
    meshd_b_cpu: f64,
    junk_rate: f64,
}

impl Bench {
    fn run(&mut self, rate: Option<&str>, iperf: bool) -> Result<Run, String> {
        let pid = self
            .topo
            .meshd_pid(&self.b)
            .ok_or("meshd on b is not running")?;
        let flood = match rate {
            Some(rate) => {
                let target = self.b.peer_addr();
                let spoof = self.spoof.clone();
                let seconds = (self.seconds + 1).to_string();
                Some(self.x.spawn(&[
                    self.flood_bin.to_str().ok_or("path")?,
                    "--target",
                    &target,
                    "--spoof",
                    &spoof,
                    "--rate",
                    rate,
                    "--seconds",
                    &seconds,
                    "--shape",
                    &self.shape,
                ])?)
            }
            None => None,
        };
        // Let the flood reach its rate before measuring.
        std::thread::sleep(Duration::from_millis(500));
        let cpu0 = cpu_seconds(pid);
        let t0 = Instant::now();
        let gbits = if iperf {
            let pods = self.topo.pods();
            let (pa, pb) = (&pods[0], &pods[1]);
            let out = pa.exec(&[
                "iperf3",
                "-c",
                &pb.ip.to_string(),
                "-t",
                &self.seconds.to_string(),
                "-J",
            ])?;
            let json: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| format!("iperf3 -J: {e}"))?;
            json["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .map(|b| b / 1e9)
        } else {
            std::thread::sleep(Duration::from_secs(self.seconds));
            None
        };
        let cpu = cpu_seconds(pid) - cpu0;
        let elapsed = t0.elapsed().as_secs_f64();
        let mut junk_rate = 0.0;
        if let Some(f) = flood {
            let out = f.wait_output(Duration::from_secs(self.seconds + 30))?;
            let json: serde_json::Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("mesh-flood output: {e}"))?;
            junk_rate = json["rate"].as_f64().unwrap_or(0.0);
        }
        Ok(Run {
            gbits,
            meshd_b_cpu: cpu / elapsed,
            junk_rate,
        })
    }
}

fn bench(args: Args) -> Result<(), String> {
    let flood_bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("mesh-flood")))
        .ok_or("cannot find mesh-flood beside this program")?;
    let mut topo = Topology::new("flood-bench")?;
    topo.set_bin_dir(&args.bin_dir);
    let a = topo.add_host("a")?;
    let b = topo.add_host("b")?;
    let x = topo.add_host("x")?;
    topo.start_meshd(&b, MeshdOpts::new("10.32.2.0/24").peers([&a]))?;
    topo.start_meshd(&a, MeshdOpts::new("10.32.1.0/24").peers([&b]))?;
    topo.add_pod(&a, "p1", "10.32.1.10")?;
    let pb = topo.add_pod(&b, "p1", "10.32.2.10")?;
    let mut server = pb.spawn(&["iperf3", "-s"])?;
    let pa = topo.pods()[0].clone();
    mesh_integration::wait_until(
        "pod a to reach pod b",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || pa.ping(pb.ip, 1).map(drop),
    )?;
    let mut bench = Bench {
        topo,
        b,
        x,
        flood_bin,
        seconds: args.seconds,
        shape: args.shape.clone(),
        spoof: args.spoof.clone(),
    };
    println!(
        "meshd from {}, junk shape {}, sources spoofed from {}, {} s per run",
        args.bin_dir.display(),
        args.shape,
        args.spoof,
        args.seconds
    );
    println!();
    println!("| flood | junk sent/s | pod-to-pod Gbit/s | of no flood | meshd (b) CPU % |");
    println!("|---|---|---|---|---|");
    let base = bench.run(None, true)?;
    let base_g = base.gbits.unwrap_or(0.0);
    println!(
        "| none | 0 | {:.2} | 100 % | {:.1} |",
        base_g,
        base.meshd_b_cpu * 100.0
    );
    for rate in &args.rates {
        let r = bench.run(Some(rate), true)?;
        let g = r.gbits.unwrap_or(0.0);
        println!(
            "| {rate} | {:.0} | {:.2} | {:.0} % | {:.1} |",
            r.junk_rate,
            g,
            100.0 * g / base_g.max(1e-9),
            r.meshd_b_cpu * 100.0
        );
    }
    println!();
    println!(
        "| flood alone | junk sent/s | meshd (b) CPU % | CPU % per 10k/s | CPU s per 100k junk |"
    );
    println!("|---|---|---|---|---|");
    let idle = bench.run(None, false)?;
    println!("| none | 0 | {:.2} | | |", idle.meshd_b_cpu * 100.0);
    for rate in &args.rates {
        let r = bench.run(Some(rate), false)?;
        let extra = (r.meshd_b_cpu - idle.meshd_b_cpu).max(0.0);
        let per_10k = extra * 100.0 / (r.junk_rate / 10_000.0).max(1e-9);
        let per_100k_s = extra * 100_000.0 / r.junk_rate.max(1e-9);
        println!(
            "| {rate} | {:.0} | {:.2} | {:.2} | {:.4} |",
            r.junk_rate,
            r.meshd_b_cpu * 100.0,
            per_10k,
            per_100k_s
        );
    }
    let status = bench.topo.status(&bench.b)?;
    let drops: Vec<String> = status
        .drops
        .iter()
        .map(|d| format!("{} {}", d.reason, d.packets))
        .collect();
    println!();
    println!(
        "b's drops: {}; handshakes answered with work: {}",
        drops.join(", "),
        status.handshakes.responded
    );
    server.terminate(Duration::from_secs(2));
    Ok(())
}

fn main() -> ExitCode {
    match parse().and_then(bench) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-flood-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
