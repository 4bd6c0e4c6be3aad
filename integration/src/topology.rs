//! [`Topology`]: hosts (network namespaces on a shared underlay bridge), pods, `meshd`
//! processes and captures, all removed again when it is dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::capture::Capture;
use crate::cmd::{self, base36, in_netns, ip};
use crate::process::{Proc, TERM_GRACE};

/// UDP port every `meshd` of a topology listens on.
pub const MESHD_PORT: u16 = 6788;
/// Default cluster range given to `meshd --range`.
pub const DEFAULT_RANGE: &str = "10.32.0.0/12";
/// Default pod MTU.
pub const DEFAULT_POD_MTU: u32 = 1420;
/// The bridge `meshd` creates in its host's namespace; pods attach to it.
pub const BRIDGE: &str = "mesh0";
/// The `--dns-upstream` every `meshd` of [`Topology::meshd_args`] gets unless a test passes
/// its own: the discard port on the namespace's own loopback, where nobody listens, so a
/// forwarded name gets SERVFAIL quickly and no query leaves the namespace.
pub const HARNESS_DNS_UPSTREAM: &str = "127.0.0.1:9";
/// Name of every host's underlay veth inside the host's namespace.
pub const UNDERLAY_IF: &str = "ul0";
/// How long a command run inside a namespace may take unless told otherwise.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `meshd` gets to answer on its API socket after it starts.
pub const MESHD_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of each `meshd` log printed when a test fails.
const LOG_TAIL_LINES: usize = 50;

static TOPOLOGIES: AtomicU64 = AtomicU64::new(0);

/// One simulated node: a network namespace with veth `ul0` on the underlay bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The name given to [`Topology::add_host`]; also `meshd --name`.
    pub name: String,
    /// The host's network namespace.
    pub netns: String,
    /// Its underlay address (198.18.0.0/15).
    pub underlay_ip: Ipv4Addr,
    /// Files of this host: `state/`, `meshd.sock`, `meshd.log`, captures.
    pub dir: PathBuf,
}

impl Host {
    /// `IP:6788`, what other hosts pass as `--peer`.
    pub fn peer_addr(&self) -> String {
        format!("{}:{MESHD_PORT}", self.underlay_ip)
    }

    /// The `meshd --api-socket` path.
    pub fn api_socket(&self) -> PathBuf {
        self.dir.join("meshd.sock")
    }

    /// The `meshd --state-dir` path.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Where `meshd`'s stdout and stderr go (appended across restarts).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("meshd.log")
    }

    /// Runs `argv` inside the host's namespace, bounded by [`EXEC_TIMEOUT`].
    pub fn exec(&self, argv: &[&str]) -> Result<Output, String> {
        exec_in(&self.netns, argv, EXEC_TIMEOUT)
    }

    /// Starts `argv` inside the host's namespace; dropping the [`Proc`] ends it.
    pub fn spawn(&self, argv: &[&str]) -> Result<Proc, String> {
        Proc::spawn_argv(&in_netns(&self.netns, argv))
    }

    /// Runs `ip -n NETNS ARGS…` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        ip(&self.netns, args)
    }

    /// The names of every link in the host's namespace (`ul0`, `mesh0`, …).
    pub fn links(&self) -> Result<Vec<String>, String> {
        let out = ip(&self.netns, &["-o", "link", "show"])?;
        Ok(out
            .lines()
            .filter_map(|line| line.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_owned())
            .collect())
    }

    /// Whether the host's namespace has a link `name`.
    pub fn has_link(&self, name: &str) -> Result<bool, String> {
        Ok(self.links()?.iter().any(|l| l == name))
    }
}

/// One pod: a network namespace whose `eth0` is a veth to the host's `mesh0` bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// The name given to [`Topology::add_pod`].
    pub name: String,
    /// Name of the host it runs on.
    pub host: String,
    /// The pod's network namespace.
    pub netns: String,
    /// Its overlay address.
    pub ip: Ipv4Addr,
    /// Name of the host end of its veth (in the host's namespace).
    pub host_if: String,
}

impl Pod {
    /// Runs `argv` inside the pod, bounded by [`EXEC_TIMEOUT`].
    pub fn exec(&self, argv: &[&str]) -> Result<Output, String> {
        exec_in(&self.netns, argv, EXEC_TIMEOUT)
    }

    /// Runs `argv` inside the pod, bounded by `timeout`.
    pub fn exec_timeout(&self, argv: &[&str], timeout: Duration) -> Result<Output, String> {
        exec_in(&self.netns, argv, timeout)
    }

    /// Starts `argv` inside the pod; dropping the [`Proc`] ends it.
    pub fn spawn(&self, argv: &[&str]) -> Result<Proc, String> {
        Proc::spawn_argv(&in_netns(&self.netns, argv))
    }

    /// `ping -c COUNT -W 1 DST`; `Ok` with ping's output if every reply came back.
    pub fn ping(&self, dst: Ipv4Addr, count: u32) -> Result<String, String> {
        let out = self.exec(&[
            "ping",
            "-n",
            "-c",
            &count.to_string(),
            "-W",
            "1",
            &dst.to_string(),
        ])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && text.contains(&format!(" {count} received")) {
            Ok(text)
        } else {
            Err(format!(
                "ping {} -> {dst} failed: {}",
                self.name,
                text.trim()
            ))
        }
    }
}

/// How to start one `meshd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshdOpts {
    /// `--block`: the address block of this node's pods; `None` runs automatic IPAM (blocks
    /// from the cluster's address ring).
    pub block: Option<String>,
    /// `--peer`s, `IP:PORT` (see [`Host::peer_addr`]).
    pub peers: Vec<String>,
    /// Text of the secret file; `None` uses the topology's shared secret.
    pub secret: Option<String>,
    /// `--range`.
    pub range: String,
    /// `--mtu`, if given.
    pub mtu: Option<u32>,
    /// More arguments, appended last.
    pub extra_args: Vec<String>,
}

impl MeshdOpts {
    /// Options for a node owning `block`, with no peers and the shared secret.
    pub fn new(block: &str) -> Self {
        Self {
            block: Some(block.to_owned()),
            ..Self::automatic()
        }
    }

    /// Options for a node with automatic IPAM (no `--block`), no peers and the shared
    /// secret. Without peers it founds the cluster's address ring.
    pub fn automatic() -> Self {
        Self {
            block: None,
            peers: Vec::new(),
            secret: None,
            range: DEFAULT_RANGE.to_owned(),
            mtu: None,
            extra_args: Vec::new(),
        }
    }

    /// Adds `--peer` for each host.
    pub fn peers<'a>(mut self, hosts: impl IntoIterator<Item = &'a Host>) -> Self {
        self.peers.extend(hosts.into_iter().map(Host::peer_addr));
        self
    }

    /// Uses `secret` instead of the topology's shared one.
    pub fn secret(mut self, secret: &str) -> Self {
        self.secret = Some(secret.to_owned());
        self
    }
}

/// How to attach a pod (see [`Topology::add_pod_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOpts {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Prefix length on `eth0`; `None`: the host's `--block` prefix, else 24.
    pub prefix_len: Option<u8>,
    /// Default gateway; `None`: the first address of `ip/prefix_len` (the block's gateway).
    pub gateway: Option<Ipv4Addr>,
    /// MTU of both veth ends.
    pub mtu: u32,
    /// How long to wait for the host's `mesh0` bridge to appear.
    pub bridge_timeout: Duration,
}

impl PodOpts {
    /// Defaults for a pod at `ip`.
    pub fn new(ip: Ipv4Addr) -> Self {
        Self {
            ip,
            prefix_len: None,
            gateway: None,
            mtu: DEFAULT_POD_MTU,
            bridge_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Meshd {
    /// `--block`, if known (the prefix length of pods on this host).
    block: Option<String>,
    /// Arguments after the binary, reused by [`Topology::restart_meshd`].
    args: Vec<String>,
    proc: Option<Proc>,
}

/// Everything one test created. Dropping it ends every process it started (by PID) and
/// deletes every namespace it created, also when the test panics; then it prints the tail
/// of each `meshd` log and keeps its directory for inspection.
#[derive(Debug)]
pub struct Topology {
    test_name: String,
    prefix: String,
    dir: PathBuf,
    switch: String,
    subnet: u8,
    /// Every namespace created, in creation order.
    namespaces: Vec<String>,
    hosts: Vec<Host>,
    pods: Vec<Pod>,
    meshd: BTreeMap<String, Meshd>,
    captures: u32,
    bin_dir: PathBuf,
}

impl Topology {
    /// A new, empty underlay: a "switch" namespace holding bridge `br0`.
    pub fn new(test_name: &str) -> Result<Self, String> {
        crate::require_root();
        let n = TOPOLOGIES.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("m{}-{}", base36(u64::from(std::process::id())), base36(n));
        let dir = std::env::temp_dir().join(format!("mesh-it-{prefix}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
        }
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut topo = Self {
            test_name: test_name.to_owned(),
            switch: format!("{prefix}-sw"),
            prefix,
            dir,
            // Every topology has its own switch, so equal subnets could not collide; still
            // vary them so a capture or log names which run it came from.
            subnet: u8::try_from(n % 250).unwrap_or(0) + 1,
            namespaces: Vec::new(),
            hosts: Vec::new(),
            pods: Vec::new(),
            meshd: BTreeMap::new(),
            captures: 0,
            bin_dir: crate::bin_dir(),
        };
        let secret = random_secret()?;
        write_file(&topo.dir.join("secret"), secret.as_bytes())?;
        let switch = topo.switch.clone();
        topo.add_netns(&switch)?;
        ip(&switch, &["link", "add", "br0", "type", "bridge"])?;
        ip(&switch, &["link", "set", "br0", "up"])?;
        Ok(topo)
    }

    /// The directory holding secrets, state dirs, sockets, logs and captures.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The prefix of every namespace name of this topology.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every namespace this topology created and has not deleted yet.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Where `meshd` and `meshctl` are taken from (see [`crate::bin_dir`]).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Takes `meshd` and `meshctl` from `dir` from now on.
    pub fn set_bin_dir(&mut self, dir: impl Into<PathBuf>) {
        self.bin_dir = dir.into();
    }

    /// The hosts added so far.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The pods added so far.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Adds a host `name` (lower-case letters and digits) with underlay address
    /// 198.18.S.N/24, N counting from 1.
    pub fn add_host(&mut self, name: &str) -> Result<Host, String> {
        check_name(name)?;
        if self.hosts.iter().any(|h| h.name == name) {
            return Err(format!("host {name} exists already"));
        }
        let index = u8::try_from(self.hosts.len() + 1)
            .ok()
            .filter(|&i| i < 255)
            .ok_or_else(|| "too many hosts".to_owned())?;
        let netns = format!("{}-{name}", self.prefix);
        let underlay_ip = Ipv4Addr::new(198, 18, self.subnet, index);
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        self.add_netns(&netns)?;
        // A real node forwards between its pods' bridge and the tunnel.
        sysctl(&netns, "net.ipv4.ip_forward=1")?;
        let switch_port = format!("h{index}");
        ip(
            &netns,
            &[
                "link",
                "add",
                UNDERLAY_IF,
                "type",
                "veth",
                "peer",
                "name",
                &switch_port,
                "netns",
                &self.switch,
            ],
        )?;
        ip(
            &self.switch,
            &["link", "set", &switch_port, "master", "br0"],
        )?;
        ip(&self.switch, &["link", "set", &switch_port, "up"])?;
        ip(
            &netns,
            &[
                "addr",
                "add",
                &format!("{underlay_ip}/24"),
                "dev",
                UNDERLAY_IF,
            ],
        )?;
        ip(&netns, &["link", "set", UNDERLAY_IF, "up"])?;
        let host = Host {
            name: name.to_owned(),
            netns,
            underlay_ip,
            dir,
        };
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// Adds pod `name` at `ip` on `host` with [`PodOpts`] defaults.
    pub fn add_pod(&mut self, host: &Host, name: &str, ip: &str) -> Result<Pod, String> {
        let ip = ip.parse().map_err(|e| format!("pod address {ip:?}: {e}"))?;
        self.add_pod_with(host, name, PodOpts::new(ip))
    }

    /// Adds pod `name` on `host`: waits for the host's `mesh0`, then creates a namespace
    /// whose `eth0` is a veth attached to it, with the address, MTU and default route.
    pub fn add_pod_with(&mut self, host: &Host, name: &str, opts: PodOpts) -> Result<Pod, String> {
        check_name(name)?;
        let netns = format!("{}-{}-{name}", self.prefix, host.name);
        if self.pods.iter().any(|p| p.netns == netns) {
            return Err(format!("pod {name} exists already on {}", host.name));
        }
        let prefix_len = match opts.prefix_len {
            Some(len) => len,
            None => self
                .meshd
                .get(&host.name)
                .and_then(|m| m.block.as_deref())
                .and_then(|b| b.split_once('/'))
                .and_then(|(_, len)| len.parse().ok())
                .unwrap_or(24),
        };
        if prefix_len > 30 {
            return Err(format!("prefix /{prefix_len} leaves no room for a gateway"));
        }
        let gateway = opts.gateway.unwrap_or_else(|| {
            let mask = u32::MAX << (32 - u32::from(prefix_len));
            Ipv4Addr::from((u32::from(opts.ip) & mask) + 1)
        });
        crate::wait_until(
            &format!("bridge {BRIDGE} in {}", host.netns),
            opts.bridge_timeout,
            Duration::from_millis(100),
            || {
                ip(&host.netns, &["link", "show", BRIDGE]).map(drop)?;
                Ok(())
            },
        )?;
        let host_if = format!("vp{}", self.pods.len() + 1);
        let mtu = opts.mtu.to_string();
        self.add_netns(&netns)?;
        ip(
            &host.netns,
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        )?;
        ip(
            &host.netns,
            &["link", "set", &host_if, "mtu", &mtu, "master", BRIDGE],
        )?;
        ip(&host.netns, &["link", "set", &host_if, "up"])?;
        ip(&netns, &["link", "set", "eth0", "mtu", &mtu])?;
        ip(
            &netns,
            &[
                "addr",
                "add",
                &format!("{}/{prefix_len}", opts.ip),
                "dev",
                "eth0",
            ],
        )?;
        ip(&netns, &["link", "set", "eth0", "up"])?;
        ip(
            &netns,
            &[
                "route",
                "add",
                "default",
                "via",
                &gateway.to_string(),
                "dev",
                "eth0",
            ],
        )?;
        let pod = Pod {
            name: name.to_owned(),
            host: host.name.clone(),
            netns,
            ip: opts.ip,
            host_if,
        };
        self.pods.push(pod.clone());
        Ok(pod)
    }

    /// Adds an empty network namespace (only `lo`, up) "on" `host`, as a container runtime
    /// makes one for a container before it runs a CNI plugin; returns its name (the CNI_NETNS
    /// is `/var/run/netns/NAME`). Deleted with the topology, or earlier by
    /// [`Topology::delete_netns`].
    pub fn add_container_netns(&mut self, host: &Host, name: &str) -> Result<String, String> {
        check_name(name)?;
        let netns = format!("{}-{}-c{name}", self.prefix, host.name);
        if self.namespaces.contains(&netns) {
            return Err(format!("container {name} exists already on {}", host.name));
        }
        self.add_netns(&netns)?;
        Ok(netns)
    }

    /// Deletes namespace `netns` of this topology now (ending what still runs in it).
    pub fn delete_netns(&mut self, netns: &str) -> Result<(), String> {
        let Some(pos) = self.namespaces.iter().position(|n| n == netns) else {
            return Err(format!("namespace {netns} is not one of this topology"));
        };
        if let Ok(pids) = cmd::run(&["ip", "netns", "pids", netns]) {
            for pid in pids.split_whitespace() {
                let _ = cmd::output(&["kill", "-s", "KILL", pid]);
            }
        }
        cmd::run(&["ip", "netns", "del", netns])?;
        self.namespaces.remove(pos);
        Ok(())
    }

    /// Starts `meshd` in `host`'s namespace and waits until its API answers.
    pub fn start_meshd(&mut self, host: &Host, opts: MeshdOpts) -> Result<(), String> {
        let args = self.meshd_args(host, &opts)?;
        self.start_meshd_with_args(host, opts.block.as_deref(), args)
    }

    /// The arguments (after the binary) [`Topology::start_meshd`] gives `meshd` for `opts`:
    /// `--name`, `--listen 0.0.0.0:6788`, `--peer`s, `--secret-file` (written now),
    /// `--state-dir`, `--api-socket`, `--block` (if any), `--range`, `--mtu`, `--dns-upstream`
    /// [`HARNESS_DNS_UPSTREAM`] (unless the extra ones name an upstream), then the extra ones.
    pub fn meshd_args(&self, host: &Host, opts: &MeshdOpts) -> Result<Vec<String>, String> {
        let secret_file = match &opts.secret {
            Some(secret) => {
                let path = host.dir.join("secret");
                write_file(&path, secret.as_bytes())?;
                path
            }
            None => self.secret_file(),
        };
        let mut args: Vec<String> = vec![
            "--name".into(),
            host.name.clone(),
            "--listen".into(),
            format!("0.0.0.0:{MESHD_PORT}"),
        ];
        for peer in &opts.peers {
            args.extend(["--peer".into(), peer.clone()]);
        }
        args.extend([
            "--secret-file".into(),
            secret_file.to_string_lossy().into_owned(),
            "--state-dir".into(),
            host.state_dir().to_string_lossy().into_owned(),
            "--api-socket".into(),
            host.api_socket().to_string_lossy().into_owned(),
        ]);
        if let Some(block) = &opts.block {
            args.extend(["--block".into(), block.clone()]);
        }
        args.extend(["--range".into(), opts.range.clone()]);
        if let Some(mtu) = opts.mtu {
            args.extend(["--mtu".into(), mtu.to_string()]);
        }
        // Never the machine's own resolvers (meshd's default, from /etc/resolv.conf): a
        // port on the namespace's loopback where nobody listens, unless the test says.
        if !opts
            .extra_args
            .iter()
            .any(|a| a == "--dns-upstream" || a.starts_with("--dns-upstream="))
        {
            args.extend(["--dns-upstream".into(), HARNESS_DNS_UPSTREAM.into()]);
        }
        args.extend(opts.extra_args.iter().cloned());
        Ok(args)
    }

    /// The topology's shared secret file.
    pub fn secret_file(&self) -> PathBuf {
        self.dir.join("secret")
    }

    /// Starts `meshd ARGS…` in `host`'s namespace (output appended to its log, no `MESH_*`
    /// variables) and waits until its API answers on [`Host::api_socket`], which `args` must
    /// name (flag or config file). `block` is its `--block`, if known, for pods' prefix.
    /// Creates [`Host::state_dir`] first, as [`Topology::start_meshd`] passes it.
    pub fn start_meshd_with_args(
        &mut self,
        host: &Host,
        block: Option<&str>,
        args: Vec<String>,
    ) -> Result<(), String> {
        if self.meshd_pid(host).is_some() {
            return Err(format!("meshd on {} is running already", host.name));
        }
        let meshd = crate::meshd_bin(&self.bin_dir)?;
        let state_dir = host.state_dir();
        fs::create_dir_all(&state_dir)
            .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(host.log_file())
            .map_err(|e| format!("cannot open {}: {e}", host.log_file().display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot dup log file: {e}"))?;
        let mut argv: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            host.netns.clone(),
            meshd.to_string_lossy().into_owned(),
        ];
        argv.extend(args.iter().cloned());
        let _ = writeln!(&log, "=== harness: ip {}", argv.join(" "));
        let mut command = Command::new("ip");
        command
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .env("RUST_BACKTRACE", "1");
        without_mesh_env(&mut command);
        let proc = Proc::spawn(format!("meshd on {}", host.name), &mut command)?;
        self.meshd.insert(
            host.name.clone(),
            Meshd {
                block: block.map(str::to_owned),
                args,
                proc: Some(proc),
            },
        );
        let started = Instant::now();
        loop {
            let last = match self.status(host) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let exited = match self.meshd.get_mut(&host.name).and_then(|m| m.proc.as_mut()) {
                Some(p) => p.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                return Err(format!(
                    "meshd on {} exited ({status}) at start; log:\n{}",
                    host.name,
                    tail(&host.log_file(), LOG_TAIL_LINES)
                ));
            }
            if started.elapsed() >= MESHD_START_TIMEOUT {
                return Err(format!(
                    "meshd on {} gave no status within {MESHD_START_TIMEOUT:?}: {last}",
                    host.name
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `meshd ARGS…` (e.g. a subcommand, or flags meant to be refused) in `host`'s
    /// namespace without `MESH_*` variables, its stdout and stderr collected; the caller
    /// waits for it (e.g. [`Proc::wait_output`]). Not tracked as the host's `meshd`.
    pub fn spawn_meshd(&self, host: &Host, args: &[&str]) -> Result<Proc, String> {
        let meshd = crate::meshd_bin(&self.bin_dir)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &host.netns])
            .arg(&meshd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        without_mesh_env(&mut command);
        Proc::spawn(
            format!("meshd {} on {}", args.join(" "), host.name),
            &mut command,
        )
    }

    /// Runs `meshd ARGS…` as [`Topology::spawn_meshd`] does and waits up to `timeout` for it
    /// to exit; a `meshd` still running then is killed and that is an error.
    pub fn run_meshd(
        &self,
        host: &Host,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Output, String> {
        self.spawn_meshd(host, args)?.wait_output(timeout)
    }

    /// The PID of `host`'s running `meshd`.
    pub fn meshd_pid(&mut self, host: &Host) -> Option<u32> {
        let proc = self.meshd.get_mut(&host.name)?.proc.as_mut()?;
        proc.is_running().then(|| proc.pid())
    }

    /// SIGTERM to `host`'s `meshd`, then waits for it to exit (SIGKILL after
    /// [`TERM_GRACE`]); returns its exit status.
    pub fn stop_meshd(&mut self, host: &Host) -> Result<Option<ExitStatus>, String> {
        let proc = self.meshd_proc(host)?;
        Ok(proc.terminate(TERM_GRACE))
    }

    /// SIGKILL to `host`'s `meshd`; returns its exit status.
    pub fn kill_meshd(&mut self, host: &Host) -> Result<Option<ExitStatus>, String> {
        let proc = self.meshd_proc(host)?;
        Ok(proc.kill())
    }

    /// Starts `host`'s `meshd` again with the options and state dir it had (stopping it
    /// with SIGTERM first if it still runs).
    pub fn restart_meshd(&mut self, host: &Host) -> Result<(), String> {
        let meshd = self
            .meshd
            .get_mut(&host.name)
            .ok_or_else(|| format!("meshd was never started on {}", host.name))?;
        if let Some(mut proc) = meshd.proc.take() {
            proc.terminate(TERM_GRACE);
        }
        let block = meshd.block.clone();
        let args = meshd.args.clone();
        self.start_meshd_with_args(host, block.as_deref(), args)
    }

    fn meshd_proc(&mut self, host: &Host) -> Result<&mut Proc, String> {
        self.meshd
            .get_mut(&host.name)
            .and_then(|m| m.proc.as_mut())
            .ok_or_else(|| format!("meshd was never started on {}", host.name))
    }

    /// `meshctl --socket SOCK status -o json`, parsed.
    pub fn status(&self, host: &Host) -> Result<mesh_api::Status, String> {
        let out = self.meshctl(host, &["status", "-o", "json"])?;
        serde_json::from_str(&out)
            .map_err(|e| format!("meshctl status -o json of {}: {e}: {out}", host.name))
    }

    /// Runs `meshctl --socket SOCK ARGS…` for `host`'s `meshd` and returns its stdout.
    pub fn meshctl(&self, host: &Host, args: &[&str]) -> Result<String, String> {
        let meshctl = self.bin_dir.join("meshctl");
        if !meshctl.exists() {
            return Err(format!(
                "meshctl not found at {}: run `cargo build --workspace` first",
                meshctl.display()
            ));
        }
        let meshctl = meshctl.to_string_lossy().into_owned();
        let socket = host.api_socket().to_string_lossy().into_owned();
        let mut argv = vec![meshctl.as_str(), "--socket", &socket];
        argv.extend_from_slice(args);
        cmd::run(&argv)
    }

    /// The whole `meshd` log of `host` (every run).
    pub fn meshd_log(&self, host: &Host) -> String {
        fs::read_to_string(host.log_file()).unwrap_or_default()
    }

    /// Starts `tcpdump` on `host`'s underlay veth; returns once it listens.
    pub fn capture_underlay(&mut self, host: &Host) -> Result<Capture, String> {
        self.captures += 1;
        let file = host.dir.join(format!("underlay-{}.pcap", self.captures));
        Capture::start(&host.netns, UNDERLAY_IF, &file)
    }

    /// Sends `payload` as one UDP datagram from inside `host`'s namespace to `dst`
    /// (`IP:PORT`), from an ephemeral port.
    pub fn send_udp_from(&self, host: &Host, dst: &str, payload: &[u8]) -> Result<(), String> {
        if payload.len() > 4096 {
            return Err("payloads over 4096 bytes may be split by the pipe".to_owned());
        }
        let target = format!("UDP-SENDTO:{dst}");
        let argv = in_netns(
            &host.netns,
            &["socat", "-u", "-b", "65535", "STDIN", &target],
        );
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start socat: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(payload)
                .map_err(|e| format!("cannot feed socat: {e}"))?;
        }
        let mut proc = Proc::spawn_adopted("socat", child);
        match proc.wait_timeout(Duration::from_secs(10))? {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("socat to {dst} failed ({status})")),
            None => Err(format!("socat to {dst} hung")),
        }
    }

    fn add_netns(&mut self, name: &str) -> Result<(), String> {
        cmd::run(&["ip", "netns", "add", name])?;
        self.namespaces.push(name.to_owned());
        ip(name, &["link", "set", "lo", "up"])?;
        sysctl(name, "net.ipv6.conf.all.disable_ipv6=1")?;
        sysctl(name, "net.ipv6.conf.default.disable_ipv6=1")?;
        Ok(())
    }

    /// Prints where the files are and the last lines of every `meshd` log to stderr (done
    /// by `Drop` when a test panics).
    pub fn print_logs(&self) {
        let mut report = format!(
            "--- mesh topology {} of {}: files in {} (kept when a test fails)\n",
            self.prefix,
            self.test_name,
            self.dir.display()
        );
        for host in &self.hosts {
            if self.meshd.contains_key(&host.name) {
                let _ = writeln!(
                    report,
                    "--- last {LOG_TAIL_LINES} lines of meshd on {} ({}):\n{}",
                    host.name,
                    host.log_file().display(),
                    tail(&host.log_file(), LOG_TAIL_LINES)
                );
            }
        }
        eprintln!("{report}");
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for meshd in self.meshd.values_mut() {
            if let Some(mut proc) = meshd.proc.take() {
                proc.terminate(TERM_GRACE);
            }
        }
        let panicking = std::thread::panicking();
        if panicking {
            self.print_logs();
        }
        for netns in self.namespaces.drain(..).rev() {
            // Whatever still runs inside a namespace of ours was started by this test
            // (e.g. a shell's child); end it by PID before the namespace goes.
            if let Ok(pids) = cmd::run(&["ip", "netns", "pids", &netns]) {
                for pid in pids.split_whitespace() {
                    let _ = cmd::output(&["kill", "-s", "KILL", pid]);
                }
            }
            if let Err(e) = cmd::run(&["ip", "netns", "del", &netns]) {
                eprintln!("mesh-integration: cannot delete namespace {netns}: {e}");
            }
        }
        if !panicking {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `argv` in `netns` and returns its output, killing it after `timeout`.
fn exec_in(netns: &str, argv: &[&str], timeout: Duration) -> Result<Output, String> {
    Proc::spawn_argv(&in_netns(netns, argv))?.wait_output(timeout)
}

/// Removes every `MESH_*` variable from `command`'s environment, so only the arguments
/// configure `meshd`.
fn without_mesh_env(command: &mut Command) {
    // Nor a kubeconfig of the machine: `meshd --kube` in a test reaches only the test's fake.
    command.env_remove("KUBECONFIG");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MESH_") && key != "MESH_BIN_DIR" {
            command.env_remove(&key);
        }
    }
}

fn sysctl(netns: &str, setting: &str) -> Result<(), String> {
    cmd::run(&in_netns(netns, &["sysctl", "-q", "-w", setting])).map(drop)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 16
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?}: use 1..=16 lower-case letters or digits"
        ))
    }
}

/// Writes a file only its owner may read (the harness writes secrets with it).
fn write_file(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// 32 random bytes, base64: the text of a secret file.
pub fn random_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(cmd::base64(&bytes))
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
