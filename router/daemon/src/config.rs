//! meshd's configuration: flags, `MESH_*` environment variables and an optional TOML file,
//! in that order of precedence, over the defaults of `docs/defaults.md`.
//!
//! Parse, don't validate: everything is checked here, once, and a bad value is refused at
//! start with the key, the value and why.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Default UDP port of the mesh.
pub(crate) const DEFAULT_PORT: u16 = mesh_api::DEFAULT_UDP_PORT;
/// Default cluster range.
pub(crate) const DEFAULT_RANGE: &str = "10.32.0.0/12";
/// Default overlay MTU: 1500 - IPv4 20 - UDP 8 - mesh header 16 - AEAD tag 16.
pub(crate) const DEFAULT_MTU: u32 = 1420;
/// Default state directory.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/mesh";
/// Default bridge name.
pub(crate) const DEFAULT_BRIDGE: &str = "mesh0";
/// Default TUN name.
pub(crate) const DEFAULT_TUN: &str = "meshtun0";
/// Default address of the Prometheus metrics endpoint (loopback only).
pub(crate) const DEFAULT_METRICS: &str = "127.0.0.1:6789";
/// Port of the DNS server when `--dns` does not say.
pub(crate) const DEFAULT_DNS_PORT: u16 = 53;
/// Where the default upstream resolvers are read from.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Shortest cluster secret accepted, bytes.
const MIN_SECRET_LEN: usize = 16;
/// Default prefix length of the blocks of automatic IPAM.
pub(crate) const DEFAULT_BLOCK_SIZE: u8 = 24;
/// The smallest block: 4 addresses (network, gateway, one pod, broadcast).
const MAX_BLOCK_PREFIX: u8 = 30;

/// Flags of `meshd` (each also read from its `MESH_*` environment variable).
#[derive(Debug, Args, Default)]
pub(crate) struct RunArgs {
    /// TOML config file; its keys are the long flag names with `_` for `-`
    /// (e.g. `secret_file = "/etc/mesh/secret"`, `peers = ["198.18.0.2:6788"]`).
    #[arg(long, env = "MESH_CONFIG", value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Node name announced to peers [default: the hostname].
    #[arg(long, env = "MESH_NAME")]
    pub(crate) name: Option<String>,
    /// Underlay UDP address to listen on [default: 0.0.0.0:6788].
    #[arg(long, env = "MESH_LISTEN", value_name = "ADDR:PORT")]
    pub(crate) listen: Option<SocketAddr>,
    /// A peer to contact at start: HOST:PORT, IP:PORT, or a bare host or IP for port 6788
    /// (repeatable; env: comma-separated).
    #[arg(
        long = "peer",
        env = "MESH_PEERS",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub(crate) peers: Vec<String>,
    /// File holding the cluster secret (at least 16 bytes; surrounding whitespace ignored).
    #[arg(long, env = "MESH_SECRET_FILE", value_name = "PATH")]
    pub(crate) secret_file: Option<PathBuf>,
    /// Directory for the node key and remembered peers [default: /var/lib/mesh].
    #[arg(long, env = "MESH_STATE_DIR", value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Local API socket [default: /run/mesh/meshd.sock].
    #[arg(long, env = "MESH_API_SOCKET", value_name = "PATH")]
    pub(crate) api_socket: Option<PathBuf>,
    /// Cluster range routed into the mesh [default: 10.32.0.0/12].
    #[arg(long, env = "MESH_RANGE", value_name = "CIDR")]
    pub(crate) range: Option<String>,
    /// This node's one address block inside the range. Without it, meshd runs automatic
    /// IPAM: blocks come from the cluster's address ring (the first node, started without
    /// --peer, founds it; the others get blocks donated).
    #[arg(long, env = "MESH_BLOCK", value_name = "CIDR")]
    pub(crate) block: Option<String>,
    /// Automatic IPAM (no --block): the prefix length of a block, the same on every member
    /// [default: 24].
    #[arg(long, env = "MESH_BLOCK_SIZE", value_name = "N")]
    pub(crate) block_size: Option<u8>,
    /// Mark a member dead after it has been unreachable this many seconds [default: 30].
    #[arg(long, env = "MESH_DEAD_AFTER", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub(crate) dead_after: Option<u64>,
    /// Endpoint to announce to the cluster, `IP:PORT` [default: the one peers see].
    #[arg(long, env = "MESH_ADVERTISE", value_name = "IP:PORT")]
    pub(crate) advertise: Option<SocketAddr>,
    /// Overlay MTU for the TUN device and pods [default: 1420].
    #[arg(long, env = "MESH_MTU", value_name = "N")]
    pub(crate) mtu: Option<u32>,
    /// Bridge that pods attach to [default: mesh0].
    #[arg(long, env = "MESH_BRIDGE", value_name = "NAME")]
    pub(crate) bridge: Option<String>,
    /// TUN device name [default: meshtun0].
    #[arg(long, env = "MESH_TUN", value_name = "NAME")]
    pub(crate) tun: Option<String>,
    /// Kernel offloads on the TUN device (TSO/GRO super-packets) and UDP socket (GSO/GRO):
    /// `on` uses what the kernel supports, `off` moves one packet per system call
    /// [default: on].
    #[arg(long, env = "MESH_OFFLOAD", value_name = "on|off")]
    pub(crate) offload: Option<OnOff>,
    /// Packet cipher this node offers: `auto` offers AES-256-GCM besides ChaCha20-Poly1305
    /// when the CPU has AES instructions, `chacha20-poly1305` offers only that,
    /// `aes-256-gcm` offers AES-256-GCM even without them. A session uses AES-256-GCM when
    /// both ends offer it [default: auto].
    #[arg(
        long,
        env = "MESH_CIPHER",
        value_name = "auto|chacha20-poly1305|aes-256-gcm"
    )]
    pub(crate) cipher: Option<CipherArg>,
    /// Where to serve Prometheus metrics (`GET /metrics`), or `off`
    /// [default: 127.0.0.1:6789].
    #[arg(long, env = "MESH_METRICS", value_name = "ADDR:PORT|off")]
    pub(crate) metrics: Option<MetricsArg>,
    /// Where to serve DNS (UDP and TCP) for pods, or `off` [default: the bridge's gateway
    /// address (the first address of --block, or of the node's first block with automatic
    /// IPAM, once it has one), port 53].
    #[arg(long, env = "MESH_DNS", value_name = "ADDR:PORT|off")]
    pub(crate) dns: Option<DnsArg>,
    /// The cluster DNS zone, answered by meshd [default: mesh.local.].
    #[arg(long, env = "MESH_DNS_ZONE", value_name = "ZONE")]
    pub(crate) dns_zone: Option<String>,
    /// An upstream resolver for names outside the zone, IP or IP:PORT (repeatable; env:
    /// comma-separated) [default: the nameservers of /etc/resolv.conf, except meshd's own
    /// DNS address].
    #[arg(
        long = "dns-upstream",
        env = "MESH_DNS_UPSTREAM",
        value_name = "IP[:PORT]",
        value_delimiter = ','
    )]
    pub(crate) dns_upstreams: Vec<String>,
    /// TTL of positive answers from the cluster zone, in seconds (negative answers: 5 s)
    /// [default: 30].
    #[arg(long, env = "MESH_DNS_TTL", value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(0..=86400))]
    pub(crate) dns_ttl: Option<u32>,
    /// Load balancing: answer at most N addresses under a name, this node's own first, the
    /// rest shuffled [default: every address, shuffled].
    #[arg(long, env = "MESH_DNS_SUBSET", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) dns_subset: Option<u16>,
    /// Kubernetes mode: discover peers from the cluster's Node objects, publish this node's
    /// key and endpoint as annotations on its own Node, and reclaim a deleted Node's blocks
    /// and DNS records (`--kube` alone means `on`) [default: off].
    #[arg(long, env = "MESH_KUBE", value_name = "on|off", num_args = 0..=1, default_missing_value = "on")]
    pub(crate) kube: Option<OnOff>,
    /// With --kube: the name of this node's Node object (the chart passes spec.nodeName).
    #[arg(long, env = "MESH_KUBE_NODE", value_name = "NAME")]
    pub(crate) kube_node: Option<String>,
    /// With --kube: a kubeconfig file to reach the API server with [default: the in-cluster
    /// ServiceAccount, else the kubeconfig of $KUBECONFIG or ~/.kube/config].
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Log filter (tracing syntax, e.g. `info`, `debug`, `mesh_core=trace`) [default: info].
    #[arg(long, env = "MESH_LOG", value_name = "FILTER")]
    pub(crate) log: Option<String>,
}

/// `--kube`'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KubeConfig {
    /// This node's Node object.
    pub(crate) node: String,
    /// `--kubeconfig`; `None`: in-cluster, else the default kubeconfig.
    pub(crate) kubeconfig: Option<PathBuf>,
}

/// `--metrics`: an `ADDR:PORT` to listen on, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetricsArg(pub(crate) Option<SocketAddr>);

impl std::str::FromStr for MetricsArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        s.parse::<SocketAddr>()
            .map(|a| Self(Some(a)))
            .map_err(|_| format!("{s:?} is neither an ADDR:PORT like {DEFAULT_METRICS} nor `off`"))
    }
}

impl<'de> Deserialize<'de> for MetricsArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `--dns`: an `ADDR:PORT` to serve DNS on, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DnsArg {
    /// Serve on this address.
    At(SocketAddr),
    /// No DNS server.
    Off,
}

impl std::str::FromStr for DnsArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        s.parse::<SocketAddr>()
            .map(Self::At)
            .map_err(|_| format!("{s:?} is neither an ADDR:PORT like 10.32.1.1:53 nor `off`"))
    }
}

impl<'de> Deserialize<'de> for DnsArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The DNS server's checked configuration.
#[derive(Debug, Clone)]
pub(crate) struct DnsConfig {
    /// Where it listens (UDP and TCP); `None`: port 53 on the gateway of the node's first
    /// block, once it has one (automatic IPAM without `--dns`).
    pub(crate) listen: Option<SocketAddr>,
    /// The zone, with the cluster range as reverse zone.
    pub(crate) zone: mesh_dns::ZoneConfig,
    /// Upstream resolvers, in preference order (may be empty: names outside the zone then
    /// get SERVFAIL).
    pub(crate) upstreams: Vec<SocketAddr>,
}

/// The TOML file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    listen: Option<String>,
    #[serde(default)]
    peers: Vec<String>,
    secret_file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    api_socket: Option<PathBuf>,
    range: Option<String>,
    block: Option<String>,
    block_size: Option<u8>,
    mtu: Option<u32>,
    dead_after: Option<u64>,
    advertise: Option<SocketAddr>,
    bridge: Option<String>,
    tun: Option<String>,
    offload: Option<OnOff>,
    cipher: Option<CipherArg>,
    metrics: Option<MetricsArg>,
    dns: Option<DnsArg>,
    dns_zone: Option<String>,
    #[serde(default)]
    dns_upstream: Vec<String>,
    dns_ttl: Option<u32>,
    dns_subset: Option<u16>,
    kube: Option<OnOff>,
    kube_node: Option<String>,
    kubeconfig: Option<PathBuf>,
    log: Option<String>,
}

/// `--cipher`: which packet ciphers the node offers in its handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CipherArg {
    /// AES-256-GCM too when the CPU has AES instructions.
    Auto,
    /// ChaCha20-Poly1305 only.
    #[value(name = "chacha20-poly1305")]
    #[serde(rename = "chacha20-poly1305")]
    Chacha20Poly1305,
    /// AES-256-GCM too, whatever the CPU.
    #[value(name = "aes-256-gcm")]
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

impl CipherArg {
    /// The set the node offers.
    pub(crate) fn ciphers(self) -> mesh_crypto::CipherSet {
        match self {
            Self::Auto => mesh_crypto::CipherSet::for_this_cpu(),
            Self::Chacha20Poly1305 => mesh_crypto::CipherSet::CHACHA_ONLY,
            Self::Aes256Gcm => mesh_crypto::CipherSet::with_aes(true),
        }
    }
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) listen: SocketAddr,
    pub(crate) peers: Vec<SocketAddr>,
    /// The cluster secret's bytes. Never printed.
    pub(crate) secret: Secret,
    pub(crate) secret_file: PathBuf,
    /// Permission bits of the secret file (meshd warns when others may read it).
    pub(crate) secret_mode: u32,
    pub(crate) state_dir: PathBuf,
    pub(crate) api_socket: PathBuf,
    pub(crate) range: Ipv4Net,
    /// `--block`; `None`: automatic IPAM.
    pub(crate) block: Option<Ipv4Net>,
    /// Prefix length of a block: `--block`'s, or `--block-size`.
    pub(crate) block_prefix: u8,
    pub(crate) mtu: u32,
    /// A member unreachable this long is marked dead.
    pub(crate) dead_after: std::time::Duration,
    /// Endpoint announced to the cluster; `None`: the one peers observe.
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) bridge: String,
    pub(crate) tun: String,
    pub(crate) offload: bool,
    /// The packet ciphers offered in handshakes (`--cipher`).
    pub(crate) ciphers: mesh_crypto::CipherSet,
    /// Where the metrics endpoint listens; `None` = off.
    pub(crate) metrics: Option<SocketAddr>,
    /// The metrics socket, bound by `main` before `run` so a busy port fails the start
    /// before anything is set up.
    pub(crate) metrics_listener: crate::metrics::Prebound,
    /// The DNS server; `None` = off.
    pub(crate) dns: Option<DnsConfig>,
    /// `--kube`; `None` = off.
    pub(crate) kube: Option<KubeConfig>,
    pub(crate) log: String,
}

/// Secret bytes whose Debug prints nothing.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl RunArgs {
    /// Merges flags, file and defaults, and checks every value.
    pub(crate) fn resolve(self) -> Result<Config> {
        let file = match &self.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let name = match self.name.or(file.name) {
            Some(n) => n,
            None => hostname(),
        };
        check_name(&name)?;
        let listen = match (self.listen, file.listen) {
            (Some(l), _) => l,
            (None, Some(l)) => l
                .parse()
                .map_err(|_| anyhow!("listen = {l:?} in the config file is not an ADDR:PORT"))?,
            (None, None) => SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
        };
        let peer_strs = if self.peers.is_empty() {
            file.peers
        } else {
            self.peers
        };
        let mut peers = Vec::new();
        for p in peer_strs.iter().filter(|p| !p.trim().is_empty()) {
            peers.push(parse_peer(p.trim())?);
        }
        let secret_file = self.secret_file.or(file.secret_file).ok_or_else(|| {
            anyhow!("no cluster secret: pass --secret-file PATH (create one with `meshd gen-secret > PATH`)")
        })?;
        let (secret, secret_mode) = read_secret(&secret_file)?;
        let range_s = self
            .range
            .or(file.range)
            .unwrap_or_else(|| DEFAULT_RANGE.into());
        let range = parse_net("--range", &range_s)?;
        let block = match self.block.or(file.block) {
            Some(s) => {
                let block = parse_net("--block", &s)?;
                if !range.contains(&block) {
                    bail!("--block {block} is not inside --range {range}");
                }
                if block.prefix_len() > MAX_BLOCK_PREFIX {
                    bail!("--block {block} is too small: a block needs at least 4 addresses (/30)");
                }
                Some(block)
            }
            None => None,
        };
        let block_prefix = match (block, self.block_size.or(file.block_size)) {
            (Some(_), Some(n)) => bail!(
                "--block-size {n} is for automatic IPAM: with --block the node's block is \
                 that one block; drop one of the two"
            ),
            (Some(b), None) => b.prefix_len(),
            (None, n) => {
                let n = n.unwrap_or(DEFAULT_BLOCK_SIZE);
                if n < range.prefix_len() || n > MAX_BLOCK_PREFIX {
                    bail!(
                        "--block-size {n} is out of range: a block is a prefix length between \
                         that of --range {range} ({}) and {MAX_BLOCK_PREFIX}",
                        range.prefix_len()
                    );
                }
                if let Err(e) = mesh_ipam::Geometry::new(range, n) {
                    bail!("--block-size {n} with --range {range}: {e}");
                }
                n
            }
        };
        let mtu = self.mtu.or(file.mtu).unwrap_or(DEFAULT_MTU);
        if !(576..=65_000).contains(&mtu) {
            bail!("--mtu {mtu} is out of range: it must be between 576 and 65000");
        }
        let bridge = self
            .bridge
            .or(file.bridge)
            .unwrap_or_else(|| DEFAULT_BRIDGE.into());
        let tun = self.tun.or(file.tun).unwrap_or_else(|| DEFAULT_TUN.into());
        check_ifname("--bridge", &bridge)?;
        check_ifname("--tun", &tun)?;
        if bridge == tun {
            bail!("--bridge and --tun are both {bridge:?}: they must differ");
        }
        let mut dns = resolve_dns(
            self.dns.or(file.dns),
            self.dns_zone.or(file.dns_zone),
            if self.dns_upstreams.is_empty() {
                file.dns_upstream
            } else {
                self.dns_upstreams
            },
            block,
            range,
            || std::fs::read_to_string(RESOLV_CONF).unwrap_or_default(),
        )?;
        if let Some(d) = &mut dns {
            match self.dns_ttl.or(file.dns_ttl) {
                Some(ttl) if ttl > MAX_DNS_TTL => bail!(
                    "dns_ttl = {ttl} in the config file: at most {MAX_DNS_TTL} seconds (a day)"
                ),
                Some(ttl) => d.zone.ttl = ttl,
                None => {}
            }
            match self.dns_subset.or(file.dns_subset) {
                Some(0) => bail!(
                    "dns_subset = 0 in the config file: it must be at least 1 (leave it out to answer every address)"
                ),
                Some(n) => d.zone.subset = Some(usize::from(n)),
                None => {}
            }
        }
        let kube = match self.kube.or(file.kube).unwrap_or(OnOff::Off) {
            OnOff::Off => None,
            OnOff::On => {
                let node = self
                    .kube_node
                    .or(file.kube_node)
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        anyhow!(
                            "--kube needs this node's Node name: pass --kube-node NAME (or \
                             MESH_KUBE_NODE; the chart sets it from spec.nodeName)"
                        )
                    })?;
                Some(KubeConfig {
                    node,
                    kubeconfig: self.kubeconfig.or(file.kubeconfig),
                })
            }
        };
        Ok(Config {
            name,
            listen,
            peers,
            secret,
            secret_file,
            secret_mode,
            state_dir: self
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            api_socket: self
                .api_socket
                .or(file.api_socket)
                .unwrap_or_else(|| mesh_api::DEFAULT_SOCKET.into()),
            range,
            block,
            block_prefix,
            mtu,
            dead_after: match self.dead_after.or(file.dead_after) {
                Some(0) => bail!("dead_after = 0 in the config file: it must be at least 1 second"),
                Some(secs) => std::time::Duration::from_secs(secs),
                None => mesh_core::DEFAULT_DEAD_AFTER,
            },
            advertise: self.advertise.or(file.advertise),
            bridge,
            tun,
            offload: self.offload.or(file.offload).unwrap_or(OnOff::On) == OnOff::On,
            ciphers: self
                .cipher
                .or(file.cipher)
                .unwrap_or(CipherArg::Auto)
                .ciphers(),
            metrics: match self.metrics.or(file.metrics) {
                Some(MetricsArg(addr)) => addr,
                None => DEFAULT_METRICS.parse().ok(),
            },
            metrics_listener: crate::metrics::Prebound::default(),
            dns,
            kube,
            log: self.log.or(file.log).unwrap_or_else(|| "info".into()),
        })
    }
}

/// Largest `--dns-ttl`.
const MAX_DNS_TTL: u32 = 86_400;

/// The DNS server's configuration from `--dns`, `--dns-zone` and `--dns-upstream`;
/// `resolv_conf` gives the text of /etc/resolv.conf, read only when no upstream is given.
fn resolve_dns(
    dns: Option<DnsArg>,
    zone: Option<String>,
    upstreams: Vec<String>,
    block: Option<Ipv4Net>,
    range: Ipv4Net,
    resolv_conf: impl FnOnce() -> String,
) -> Result<Option<DnsConfig>> {
    let listen = match (dns, block) {
        (Some(DnsArg::Off), _) => return Ok(None),
        (Some(DnsArg::At(a)), _) => Some(a),
        (None, Some(block)) => {
            let gateway = u32::from(block.network()).saturating_add(1);
            Some(SocketAddr::new(
                IpAddr::V4(gateway.into()),
                DEFAULT_DNS_PORT,
            ))
        }
        (None, None) => None,
    };
    // Where queries would reach meshd itself: its address, or, while that is a gateway not
    // known yet, port 53 anywhere in the cluster range.
    let loops = |u: SocketAddr| match listen {
        Some(l) => loops_back(u, l),
        None => {
            u.port() == DEFAULT_DNS_PORT && matches!(u.ip(), IpAddr::V4(v4) if range.contains(&v4))
        }
    };
    let zone_s = zone.unwrap_or_else(|| mesh_dns::DEFAULT_ZONE.to_owned());
    let mut zone = mesh_dns::ZoneConfig::default()
        .with_zone(zone_s.trim())
        .map_err(|e| anyhow!("--dns-zone {zone_s:?}: {e}"))?;
    zone.reverse_zones = vec![ipnet::IpNet::V4(range)];
    let given: Vec<&str> = upstreams
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .collect();
    let upstreams = if given.is_empty() {
        mesh_dns::parse_resolv_conf(&resolv_conf())
            .into_iter()
            .filter(|u| !loops(*u))
            .collect()
    } else {
        let mut out = Vec::new();
        for u in given {
            let addr = parse_upstream(u)?;
            if loops(addr) {
                let ours = listen.map_or_else(
                    || format!("port {DEFAULT_DNS_PORT} on a gateway inside --range {range}"),
                    |l| format!("--dns {l}"),
                );
                bail!("--dns-upstream {u} is meshd's own DNS address ({ours}): queries would loop");
            }
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        out
    };
    Ok(Some(DnsConfig {
        listen,
        zone,
        upstreams,
    }))
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; port 53 when not given.
fn parse_upstream(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_DNS_PORT))
        .map_err(|_| anyhow!("--dns-upstream {s:?} is not an IP or IP:PORT like 192.0.2.53:53"))
}

/// Whether a query sent to `upstream` would reach meshd's own DNS server on `listen`.
fn loops_back(upstream: SocketAddr, listen: SocketAddr) -> bool {
    if upstream == listen {
        return true;
    }
    // Listening on the unspecified address takes every local address of the port; of
    // those, loopback ones are surely local.
    listen.ip().is_unspecified() && upstream.port() == listen.port() && upstream.ip().is_loopback()
}

fn read_file_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_owned();
        anyhow!("config file {}: {msg}", path.display())
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "mesh-node".into())
}

/// The node name is shown in every other member's `meshctl` views and logs: no spaces, no
/// C0/C1 controls or DEL (which drive a terminal), no `Bidi_Control` characters (which
/// reorder what is shown, "Trojan Source"). `meshctl` escapes them anyway (`cli/src/escape.rs`);
/// refusing them here means an honest node never shows up escaped. The error quotes the name
/// with Rust's escapes, so it is safe to print.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > mesh_proto_name_max() {
        bail!(
            "--name {name:?} must be 1 to {} bytes long",
            mesh_proto_name_max()
        );
    }
    let bidi = |c: char| {
        matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
    };
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || bidi(c))
    {
        bail!("--name {name:?} must not contain spaces, control characters or bidi controls");
    }
    Ok(())
}

fn mesh_proto_name_max() -> usize {
    63
}

fn check_ifname(flag: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 15
        || name.contains(['/', ':'])
        || name.chars().any(char::is_whitespace)
    {
        bail!("{flag} {name:?} is not a valid interface name (1-15 bytes, no '/', ':' or spaces)");
    }
    Ok(())
}

fn parse_net(flag: &str, s: &str) -> Result<Ipv4Net> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| anyhow!("{flag} {s:?} is not an IPv4 CIDR like 10.32.1.0/24"))?;
    if net.network() != net.addr() {
        bail!(
            "{flag} {s} has host bits set: did you mean {}?",
            net.trunc()
        );
    }
    Ok(net)
}

/// `HOST:PORT`, `IP:PORT`, or a bare host/IP (port 6788). Names are resolved once, now.
pub(crate) fn parse_peer(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let with_port = if s
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        s.to_owned()
    } else {
        format!("{s}:{DEFAULT_PORT}")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.find(SocketAddr::is_ipv4).or_else(|| it.next()))
        .ok_or_else(|| anyhow!("--peer {s:?} is not a HOST:PORT that resolves"))
}

fn read_secret(path: &Path) -> Result<(Secret, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read secret file {}", path.display()))?;
    if !meta.is_file() {
        bail!("secret file {} is not a regular file", path.display());
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read secret file {}", path.display()))?;
    let trimmed = bytes.trim_ascii();
    if trimmed.len() < MIN_SECRET_LEN {
        bail!(
            "secret file {} holds {} bytes; a cluster secret needs at least {MIN_SECRET_LEN} (make one with `meshd gen-secret`)",
            path.display(),
            trimmed.len()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    Ok((Secret(trimmed.to_vec()), mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn secret_file(dir: &Path, content: &str) -> PathBuf {
        let p = dir.join("secret");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(content.as_bytes()).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meshd-cfg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn args(dir: &Path) -> RunArgs {
        RunArgs {
            secret_file: Some(secret_file(dir, "0123456789abcdef0123\n")),
            block: Some("10.32.1.0/24".into()),
            name: Some("n1".into()),
            ..Default::default()
        }
    }

    /// [`args`] with `--config cfg`.
    fn args_with(dir: &Path, cfg: &Path) -> RunArgs {
        RunArgs {
            config: Some(cfg.to_path_buf()),
            ..args(dir)
        }
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let d = tmpdir("defaults");
        let c = args(&d).resolve().unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:6788");
        assert_eq!(c.range.to_string(), DEFAULT_RANGE);
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.bridge, "mesh0");
        assert_eq!(c.tun, "meshtun0");
        assert_eq!(c.api_socket, PathBuf::from("/run/mesh/meshd.sock"));
        assert_eq!(c.secret.0, b"0123456789abcdef0123");
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        assert_eq!(c.metrics, Some("127.0.0.1:6789".parse().unwrap()));
        assert_eq!(c.block, Some("10.32.1.0/24".parse().unwrap()));
        assert_eq!(c.block_prefix, 24);
        let dns = c.dns.expect("DNS is on by default");
        assert_eq!(dns.listen, Some("10.32.1.1:53".parse().unwrap()));
        assert_eq!(dns.zone.zone.to_string(), "mesh.local.");
        assert_eq!(
            dns.zone.reverse_zones,
            vec!["10.32.0.0/12".parse().unwrap()]
        );
    }

    fn dns_of(
        dns: Option<&str>,
        zone: Option<&str>,
        upstreams: &[&str],
        resolv: &str,
    ) -> Result<Option<DnsConfig>> {
        resolve_dns(
            dns.map(|d| d.parse().unwrap()),
            zone.map(str::to_owned),
            upstreams.iter().map(|s| (*s).to_owned()).collect(),
            Some("10.32.1.0/24".parse().unwrap()),
            DEFAULT_RANGE.parse().unwrap(),
            || resolv.to_owned(),
        )
    }

    #[test]
    fn dns_defaults_come_from_the_block_and_resolv_conf() {
        let resolv = "nameserver 192.0.2.1\nnameserver 10.32.1.1\nnameserver 127.0.0.53\n";
        let d = dns_of(None, None, &[], resolv).unwrap().unwrap();
        assert_eq!(d.listen, Some("10.32.1.1:53".parse().unwrap()));
        assert_eq!(
            d.upstreams,
            vec![
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "127.0.0.53:53".parse().unwrap()
            ],
            "our own address is left out; a loopback resolver that is not us stays"
        );
        // Listening on 0.0.0.0:53 takes 127.0.0.53:53 too.
        let d = dns_of(Some("0.0.0.0:53"), None, &[], resolv)
            .unwrap()
            .unwrap();
        assert_eq!(
            d.upstreams,
            vec![
                "192.0.2.1:53".parse().unwrap(),
                "10.32.1.1:53".parse().unwrap()
            ]
        );
        // On another port, nothing loops.
        let d = dns_of(Some("0.0.0.0:5353"), None, &[], resolv)
            .unwrap()
            .unwrap();
        assert_eq!(d.upstreams.len(), 3);
        assert!(dns_of(Some("off"), None, &[], resolv).unwrap().is_none());
    }

    #[test]
    fn dns_upstreams_and_zone_from_flags() {
        let d = dns_of(
            Some("10.32.1.1:5353"),
            Some("Cluster.Internal"),
            &[
                "198.18.0.9",
                "198.18.0.10:5300",
                "[fd00::53]:53",
                "fd00::54",
                "198.18.0.9",
            ],
            "nameserver 192.0.2.1\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.listen, Some("10.32.1.1:5353".parse().unwrap()));
        assert_eq!(d.zone.zone.to_string(), "cluster.internal.");
        assert_eq!(
            d.upstreams,
            vec![
                "198.18.0.9:53".parse::<SocketAddr>().unwrap(),
                "198.18.0.10:5300".parse().unwrap(),
                "[fd00::53]:53".parse().unwrap(),
                "[fd00::54]:53".parse().unwrap(),
            ],
            "given upstreams replace resolv.conf's"
        );
        for (dns, zone, ups, want) in [
            (
                None,
                None,
                vec!["banana"],
                "--dns-upstream \"banana\" is not an IP",
            ),
            (None, None, vec!["10.32.1.1"], "meshd's own DNS address"),
            (None, Some("bad..zone"), vec![], "--dns-zone \"bad..zone\""),
        ] {
            let err = dns_of(dns, zone, &ups, "").unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
        let err = "10.32.1.1".parse::<DnsArg>().unwrap_err();
        assert!(err.contains("neither an ADDR:PORT"), "{err}");
    }

    #[test]
    fn dns_settings_from_the_file() {
        let d = tmpdir("dns");
        let cfg = d.join("dns.toml");
        std::fs::write(
            &cfg,
            "dns = \"10.32.1.1:5353\"\ndns_zone = \"c.test\"\ndns_upstream = [\"198.18.0.9\"]\n",
        )
        .unwrap();
        let a = args_with(&d, &cfg);
        let dns = a.resolve().unwrap().dns.unwrap();
        assert_eq!(dns.listen, Some("10.32.1.1:5353".parse().unwrap()));
        assert_eq!(dns.zone.zone.to_string(), "c.test.");
        assert_eq!(dns.upstreams, vec!["198.18.0.9:53".parse().unwrap()]);
        std::fs::write(&cfg, "dns = \"off\"\n").unwrap();
        let a = args_with(&d, &cfg);
        assert!(a.resolve().unwrap().dns.is_none());
        // A flag beats the file.
        let mut a = args_with(&d, &cfg);
        a.dns = Some(DnsArg::At("127.0.0.1:5300".parse().unwrap()));
        a.dns_upstreams = vec!["198.18.0.1".into()];
        let dns = a.resolve().unwrap().dns.unwrap();
        assert_eq!(dns.listen, Some("127.0.0.1:5300".parse().unwrap()));
    }

    #[test]
    fn metrics_address_or_off_from_flag_and_file() {
        let d = tmpdir("metrics");
        let mut a = args(&d);
        a.metrics = Some("off".parse().unwrap());
        assert_eq!(a.resolve().unwrap().metrics, None);
        let mut a = args(&d);
        a.metrics = Some("0.0.0.0:9100".parse().unwrap());
        assert_eq!(
            a.resolve().unwrap().metrics,
            Some("0.0.0.0:9100".parse().unwrap())
        );
        let err = "127.0.0.1".parse::<MetricsArg>().unwrap_err();
        assert!(err.contains("neither an ADDR:PORT"), "{err}");

        let cfg = d.join("metrics.toml");
        std::fs::write(&cfg, "metrics = \"off\"\n").unwrap();
        let a = args_with(&d, &cfg);
        assert_eq!(a.resolve().unwrap().metrics, None);
        std::fs::write(&cfg, "metrics = \"[::1]:6790\"\n").unwrap();
        let a = args_with(&d, &cfg);
        assert_eq!(
            a.resolve().unwrap().metrics,
            Some("[::1]:6790".parse().unwrap())
        );
        std::fs::write(&cfg, "metrics = \"banana\"\n").unwrap();
        let a = args_with(&d, &cfg);
        let err = a.resolve().unwrap_err().to_string();
        assert!(err.contains("banana") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn names_in_any_script_are_taken_and_a_config_file_name_is_checked_too() {
        let d = tmpdir("names");
        for name in ["zoë-café", "节点-東京", "node_1.example"] {
            let mut a = args(&d);
            a.name = Some(name.into());
            assert_eq!(a.resolve().unwrap().name, name);
        }
        let cfg = d.join("name.toml");
        std::fs::write(&cfg, "name = \"a\\u202Eb\"\n").unwrap();
        let mut a = args_with(&d, &cfg);
        a.name = None;
        let err = a.resolve().unwrap_err().to_string();
        assert_eq!(
            err,
            r#"--name "a\u{202e}b" must not contain spaces, control characters or bidi controls"#
        );
    }

    #[test]
    fn bad_values_name_the_problem() {
        let d = tmpdir("bad");
        type Edit = Box<dyn Fn(&mut RunArgs)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|a| a.block = Some("10.64.1.0/24".into())),
                "not inside --range",
            ),
            (
                Box::new(|a| a.block = Some("10.32.1.7/24".into())),
                "did you mean 10.32.1.0/24",
            ),
            (
                Box::new(|a| a.block = Some("banana".into())),
                "is not an IPv4 CIDR",
            ),
            (
                Box::new(|a| a.block_size = Some(26)),
                "--block-size 26 is for automatic IPAM",
            ),
            (
                Box::new(|a| {
                    a.block = None;
                    a.block_size = Some(31);
                }),
                "--block-size 31 is out of range",
            ),
            (
                Box::new(|a| {
                    a.block = None;
                    a.block_size = Some(8);
                }),
                "between that of --range 10.32.0.0/12 (12) and 30",
            ),
            (
                Box::new(|a| {
                    a.block = None;
                    a.range = Some("0.0.0.0/2".into());
                    a.block_size = Some(30);
                }),
                "--block-size 30 with --range 0.0.0.0/2: the cluster range",
            ),
            (
                Box::new(|a| a.range = Some("10.32.0.0/33".into())),
                "--range",
            ),
            (Box::new(|a| a.mtu = Some(100)), "--mtu 100 is out of range"),
            (Box::new(|a| a.secret_file = None), "no cluster secret"),
            (
                Box::new(|a| a.secret_file = Some("/nonexistent/secret".into())),
                "cannot read secret file /nonexistent/secret",
            ),
            (Box::new(|a| a.tun = Some("mesh0".into())), "must differ"),
            (
                Box::new(|a| a.bridge = Some("a-very-long-bridge-name".into())),
                "not a valid interface name",
            ),
            (
                Box::new(|a| a.peers = vec!["no such host!:x".into()]),
                "--peer",
            ),
            (Box::new(|a| a.name = Some("two words".into())), "--name"),
            (
                Box::new(|a| a.name = Some("ev\x1b]0;pwned\x07il".into())),
                r#"--name "ev\u{1b}]0;pwned\u{7}il" must not contain spaces, control characters or bidi controls"#,
            ),
            (
                Box::new(|a| a.name = Some("a\u{9b}2Jb\x7f".into())),
                r#"--name "a\u{9b}2Jb\u{7f}" must not"#,
            ),
            (
                Box::new(|a| a.name = Some("a\rb".into())),
                r#"--name "a\rb" must not"#,
            ),
            (
                Box::new(|a| a.name = Some("gnp.\u{202e}exe".into())),
                r#"--name "gnp.\u{202e}exe" must not"#,
            ),
            (
                Box::new(|a| a.name = Some("a\u{2066}b".into())),
                r#"--name "a\u{2066}b" must not"#,
            ),
        ];
        for (edit, want) in cases {
            let mut a = args(&d);
            edit(&mut a);
            let err = a.resolve().unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    #[test]
    fn without_block_ipam_is_automatic_with_block_size_from_flag_or_file() {
        let d = tmpdir("auto");
        let mut a = args(&d);
        a.block = None;
        let c = a.resolve().unwrap();
        assert_eq!(c.block, None);
        assert_eq!(c.block_prefix, DEFAULT_BLOCK_SIZE);
        let dns = c.dns.expect("DNS stays on");
        assert_eq!(dns.listen, None, "on the first block's gateway, once known");
        let mut a = args(&d);
        a.block = None;
        a.block_size = Some(28);
        a.range = Some("10.32.0.0/16".into());
        let c = a.resolve().unwrap();
        assert_eq!((c.block, c.block_prefix), (None, 28));
        let mut a = args(&d);
        a.block = None;
        a.range = Some("10.32.0.0/16".into());
        a.block_size = Some(16);
        assert_eq!(
            a.resolve().unwrap().block_prefix,
            16,
            "one block: the whole range"
        );

        let cfg = d.join("auto.toml");
        std::fs::write(&cfg, "block_size = 26\n").unwrap();
        let mut a = args(&d);
        a.block = None;
        a.config = Some(cfg.clone());
        assert_eq!(a.resolve().unwrap().block_prefix, 26);
        let mut a = args(&d);
        a.block = None;
        a.config = Some(cfg);
        a.block_size = Some(25);
        assert_eq!(
            a.resolve().unwrap().block_prefix,
            25,
            "a flag beats the file"
        );
    }

    #[test]
    fn dns_without_a_block_keeps_out_upstreams_that_would_be_a_gateway() {
        let d = resolve_dns(
            None,
            None,
            vec![],
            None,
            DEFAULT_RANGE.parse().unwrap(),
            || "nameserver 10.32.0.1\nnameserver 192.0.2.1\n".to_owned(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.listen, None);
        assert_eq!(d.upstreams, vec!["192.0.2.1:53".parse().unwrap()]);
        let err = resolve_dns(
            None,
            None,
            vec!["10.32.7.1".into()],
            None,
            DEFAULT_RANGE.parse().unwrap(),
            String::new,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("meshd's own DNS address"), "{err}");
    }

    #[test]
    fn dns_ttl_and_subset_come_from_flags_or_the_file_and_are_checked() {
        let d = tmpdir("dnsttl");
        let c = args(&d).resolve().unwrap();
        let zone = &c.dns.as_ref().unwrap().zone;
        assert_eq!((zone.ttl, zone.subset), (mesh_dns::DEFAULT_TTL, None));
        let cfg = d.join("meshd.toml");
        std::fs::write(&cfg, "dns_ttl = 5\ndns_subset = 2\n").unwrap();
        let a = args_with(&d, &cfg);
        let zone = a.resolve().unwrap().dns.unwrap().zone;
        assert_eq!((zone.ttl, zone.subset), (5, Some(2)));
        let mut a = args_with(&d, &cfg);
        a.dns_ttl = Some(60);
        assert_eq!(
            a.resolve().unwrap().dns.unwrap().zone.ttl,
            60,
            "a flag beats the file"
        );
        for (text, want) in [
            (
                "dns_ttl = 90000\n",
                "dns_ttl = 90000 in the config file: at most 86400",
            ),
            (
                "dns_subset = 0\n",
                "dns_subset = 0 in the config file: it must be at least 1",
            ),
        ] {
            std::fs::write(&cfg, text).unwrap();
            let a = args_with(&d, &cfg);
            let err = a.resolve().unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            _run: RunArgs,
        }
        for flags in [["--dns-ttl", "90000"], ["--dns-subset", "0"]] {
            let argv = std::iter::once("meshd").chain(flags);
            let err = <Cli as clap::Parser>::try_parse_from(argv)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(flags[0]), "{err}");
        }
    }

    #[test]
    fn kube_needs_a_node_name_from_flag_env_or_file() {
        let d = tmpdir("kube");
        assert_eq!(args(&d).resolve().unwrap().kube, None, "off by default");
        let mut a = args(&d);
        a.kube = Some(OnOff::On);
        let err = a.resolve().unwrap_err().to_string();
        assert!(
            err.contains("--kube needs this node's Node name") && !err.contains('\n'),
            "{err}"
        );
        let mut a = args(&d);
        a.kube = Some(OnOff::On);
        a.kube_node = Some("worker-1".into());
        a.kubeconfig = Some("/etc/kube.conf".into());
        assert_eq!(
            a.resolve().unwrap().kube,
            Some(KubeConfig {
                node: "worker-1".into(),
                kubeconfig: Some("/etc/kube.conf".into())
            })
        );
        let cfg = d.join("kube.toml");
        std::fs::write(
            &cfg,
            "kube = \"on\"\nkube_node = \"w2\"\nkubeconfig = \"/k\"\n",
        )
        .unwrap();
        let a = args_with(&d, &cfg);
        let k = a.resolve().unwrap().kube.unwrap();
        assert_eq!((k.node.as_str(), k.kubeconfig), ("w2", Some("/k".into())));
        let mut a = args_with(&d, &cfg);
        a.kube = Some(OnOff::Off);
        assert_eq!(a.resolve().unwrap().kube, None, "a flag beats the file");
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let cli =
            <Cli as clap::Parser>::try_parse_from(["meshd", "--kube", "--kube-node", "n"]).unwrap();
        assert_eq!(cli.run.kube, Some(OnOff::On), "--kube alone is on");
    }

    #[test]
    fn short_secret_is_refused() {
        let d = tmpdir("short");
        let mut a = args(&d);
        a.secret_file = Some(secret_file(&d, "  short \n"));
        let err = a.resolve().unwrap_err().to_string();
        assert!(err.contains("holds 5 bytes"), "{err}");
    }

    #[test]
    fn file_values_apply_under_flags() {
        let d = tmpdir("file");
        let cfg = d.join("meshd.toml");
        std::fs::write(
            &cfg,
            "mtu = 1400\npeers = [\"198.18.0.9:7000\", \"198.18.0.10\"]\nbridge = \"br-x\"\n",
        )
        .unwrap();
        let mut a = args_with(&d, &cfg);
        a.bridge = Some("br-flag".into());
        let c = a.resolve().unwrap();
        assert_eq!(c.mtu, 1400);
        assert_eq!(c.bridge, "br-flag", "a flag beats the file");
        assert_eq!(
            c.peers,
            vec![
                "198.18.0.9:7000".parse::<SocketAddr>().unwrap(),
                "198.18.0.10:6788".parse().unwrap()
            ]
        );
        std::fs::write(&cfg, "mtuu = 1400\n").unwrap();
        let a = args_with(&d, &cfg);
        let err = a.resolve().unwrap_err().to_string();
        assert!(err.contains("mtuu"), "{err}");
    }
}
