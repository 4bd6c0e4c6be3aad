//! `meshctl`'s views (`peers`, `connections`, `routes`, `ipam`, each as `-o json` checked
//! against the topology) and `meshd`'s Prometheus endpoint (scraped from inside a host's
//! namespace with curl, checked with `promtool check metrics`, and compared with the API).
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests fail by panicking

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BLOCKS, full_mesh, wait_established, wait_ping};
use mesh_api::{
    ConnectionsView, IpamStatus, PathKind, PeerState, PeersView, RouteVia, Routes, Status,
    key_fingerprint,
};
use mesh_integration::topology::BRIDGE;
use mesh_integration::{Host, MESHD_PORT, MeshdOpts, Topology, require_root};
use mesh_integration::{MESHD_EXIT_BOUND as EXIT_BOUND, text};

/// Where meshd serves metrics by default (inside each host's namespace).
const METRICS_URL: &str = "http://127.0.0.1:6789/metrics";
/// Bound of the first pings after meshd starts.
const PING_BOUND: Duration = Duration::from_secs(15);
/// Bound of a session to be established.
const SESSION_BOUND: Duration = Duration::from_secs(15);

fn json<T: serde::de::DeserializeOwned>(topo: &Topology, host: &Host, view: &str) -> T {
    let out = topo
        .meshctl(host, &[view, "-o", "json"])
        .unwrap_or_else(|e| panic!("meshctl {view} -o json on {}: {e}", host.name));
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("meshctl {view} -o json on {}: {e}: {out}", host.name))
}

/// `curl` inside `host`'s namespace; the body of a 2xx answer.
fn curl(host: &Host, args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["curl", "-sS", "--fail-with-body", "--max-time", "10"];
    argv.extend_from_slice(args);
    let out = host.exec(&argv)?;
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!(
            "curl {args:?} in {}: {}: {}{}",
            host.netns,
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        ))
    }
}

fn scrape(host: &Host) -> String {
    curl(host, &[METRICS_URL]).expect("scrape /metrics")
}

/// `POST /v1/ipam/allocate` on `host`'s API socket, as mesh-cni does.
fn allocate(host: &Host, container: &str, pod: &str) -> mesh_api::IpamAllocated {
    let body = serde_json::json!({
        "container_id": container,
        "ifname": "eth0",
        "pod_name": pod,
        "pod_namespace": "obs",
        "network": "mesh",
    })
    .to_string();
    let socket = host.api_socket().to_string_lossy().into_owned();
    let out = curl(
        host,
        &[
            "--unix-socket",
            &socket,
            "-H",
            "content-type: application/json",
            "-d",
            &body,
            &format!("http://meshd{}", mesh_api::PATH_IPAM_ALLOCATE),
        ],
    )
    .expect("allocate");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("allocate answer {out}: {e}"))
}

/// `promtool check metrics` on `metrics`: exit 0 and nothing printed, or the panic says why.
fn promtool_check(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): scripts/deps.sh installs it (from Debian's prometheus package)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}: {}{}\n{metrics}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The samples of `metrics` (Prometheus text): series (name and labels as written) → value.
fn samples(metrics: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            (series.to_owned(), value.parse().expect("sample value"))
        })
        .collect()
}

fn peer_series(name: &str, peer: &str, key: &str) -> String {
    format!("{name}{{peer=\"{peer}\",key=\"{}\"}}", key_fingerprint(key))
}

#[test]
fn views_match_the_topology_and_metrics_match_the_api() {
    let (topo, hosts, pods, started) =
        full_mesh("views_match_the_topology_and_metrics_match_the_api", 3);
    for (i, host) in hosts.iter().enumerate() {
        for (j, peer) in hosts.iter().enumerate() {
            if i != j {
                wait_established(&topo, host, peer, SESSION_BOUND);
            }
        }
    }
    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate() {
            if i != j {
                wait_ping(from, to, started + PING_BOUND + PING_BOUND).expect("ping");
            }
        }
    }
    let statuses: Vec<Status> = hosts.iter().map(|h| topo.status(h).unwrap()).collect();
    let key_of = |name: &str| -> String {
        statuses
            .iter()
            .find(|s| s.node.name == name)
            .map(|s| s.node.public_key.clone())
            .unwrap()
    };

    for (i, host) in hosts.iter().enumerate() {
        let others: Vec<&Host> = hosts.iter().filter(|h| h.name != host.name).collect();

        // peers: every other host, established, with its key's fingerprint and address.
        let peers: PeersView = json(&topo, host, "peers");
        assert_eq!(peers.peers.len(), others.len(), "{peers:?}");
        for other in &others {
            let p = peers
                .peers
                .iter()
                .find(|p| p.name == other.name)
                .unwrap_or_else(|| panic!("{} misses peer {}: {peers:?}", host.name, other.name));
            assert_eq!(p.state, PeerState::Established);
            assert_eq!(p.public_key, key_of(&other.name));
            assert_eq!(p.fingerprint, key_fingerprint(&p.public_key));
            assert_eq!(p.endpoints, [format!("{}:{MESHD_PORT}", other.underlay_ip)]);
            assert!(p.last_handshake_secs_ago.is_some());
        }

        // connections: direct, encrypted, the node's MTU, traffic both ways after the pings.
        let conns: ConnectionsView = json(&topo, host, "connections");
        assert_eq!(conns.connections.len(), others.len());
        for c in &conns.connections {
            assert_eq!(c.path, PathKind::Direct, "{c:?}");
            assert_eq!(c.state, PeerState::Established, "{c:?}");
            // Both ends run on this machine with `--cipher auto`: AES-256-GCM where its CPU
            // has AES instructions.
            let cipher = if mesh_crypto::hardware_aes() {
                "aes-256-gcm"
            } else {
                "chacha20-poly1305"
            };
            assert_eq!(c.cipher.as_deref(), Some(cipher), "{c:?}");
            assert_eq!(c.mtu, statuses[i].node.mtu);
            // RTT is measured by the side that initiated the handshake only.
            assert!(c.handshakes >= 1, "{c:?}");
            assert!(c.rx_packets > 0 && c.tx_packets > 0, "{c:?}");
            assert!(c.rx_bytes > 0 && c.tx_bytes > 0, "{c:?}");
        }

        // routes: own block local, each other block to the host that owns it.
        let routes: Routes = json(&topo, host, "routes");
        assert_eq!(routes.routes.len(), hosts.len(), "{routes:?}");
        for (j, (name, block, _)) in BLOCKS[..hosts.len()].iter().enumerate() {
            let r = routes
                .routes
                .iter()
                .find(|r| r.block == *block)
                .unwrap_or_else(|| panic!("{} has no route to {block}: {routes:?}", host.name));
            assert_eq!(r.name, *name, "{r:?}");
            assert_eq!(r.public_key, key_of(name), "{r:?}");
            if i == j {
                assert_eq!(
                    (r.via, r.endpoint.as_str(), r.state),
                    (RouteVia::Local, "", None)
                );
            } else {
                assert_eq!(r.via, RouteVia::Peer, "{r:?}");
                assert_eq!(r.endpoint, format!("{}:{MESHD_PORT}", hosts[j].underlay_ip));
                assert_eq!(r.state, Some(PeerState::Established));
            }
        }

        // Tables for people answer too, with their header.
        for (view, header) in [
            ("peers", "NAME"),
            ("connections", "NAME"),
            ("routes", "BLOCK"),
            ("ipam", "mode       fixed (--block)"),
        ] {
            let out = topo.meshctl(host, &[view]).expect("table view");
            // Shown with --nocapture (docs/operations.md's examples come from here).
            println!("$ meshctl {view}   # on {}\n{out}", host.name);
            assert!(out.starts_with(header), "meshctl {view}: {out}");
        }
    }

    // ipam: what POST /v1/ipam/allocate handed out on host a, with container and pod.
    let a = &hosts[0];
    let first = allocate(a, "obs-c1", "web-1");
    let second = allocate(a, "obs-c2", "web-2");
    let ipam: IpamStatus = json(&topo, a, "ipam");
    assert_eq!(ipam.blocks, [BLOCKS[0].1]);
    assert_eq!(ipam.mode, mesh_api::IpamMode::Fixed);
    assert!(ipam.owners.is_empty(), "no ring with --block: {ipam:?}");
    assert_eq!(ipam.block_use.len(), 1, "{ipam:?}");
    assert_eq!(ipam.block_use[0].used, 2, "{ipam:?}");
    assert_eq!(ipam.bridge, BRIDGE);
    assert_eq!(ipam.used, 2, "{ipam:?}");
    for (container, pod, given) in [("obs-c1", "web-1", &first), ("obs-c2", "web-2", &second)] {
        let alloc = ipam
            .allocations
            .iter()
            .find(|x| x.container_id == container)
            .unwrap_or_else(|| panic!("no allocation of {container}: {ipam:?}"));
        assert_eq!(alloc.address, given.address);
        assert_eq!(alloc.pod_name.as_deref(), Some(pod));
        assert_eq!(alloc.pod_namespace.as_deref(), Some("obs"));
        assert!(!alloc.stranded);
    }

    // Metrics: valid for promtool, and each peer's counters between two API answers taken
    // around the scrape (counters only grow).
    for host in &hosts {
        let before = topo.status(host).unwrap();
        let metrics = scrape(host);
        let after = topo.status(host).unwrap();
        promtool_check(&metrics);
        let got = samples(&metrics);
        for p in &before.peers {
            let later = after
                .peers
                .iter()
                .find(|q| q.public_key == p.public_key)
                .unwrap();
            for (name, lo, hi) in [
                ("mesh_peer_rx_packets_total", p.rx_packets, later.rx_packets),
                ("mesh_peer_tx_packets_total", p.tx_packets, later.tx_packets),
                ("mesh_peer_rx_bytes_total", p.rx_bytes, later.rx_bytes),
                ("mesh_peer_tx_bytes_total", p.tx_bytes, later.tx_bytes),
                ("mesh_peer_handshakes_total", p.handshakes, later.handshakes),
            ] {
                let series = peer_series(name, &p.name, &p.public_key);
                let v = *got
                    .get(&series)
                    .unwrap_or_else(|| panic!("{series} missing on {}:\n{metrics}", host.name));
                assert!(
                    lo as f64 <= v && v <= hi as f64,
                    "{series} on {}: {v} not within the API's {lo}..={hi}",
                    host.name
                );
                assert!(v > 0.0, "{series} on {} is 0 after pings", host.name);
            }
            let state = format!(
                "mesh_peer_session_state{{peer=\"{}\",key=\"{}\",state=\"established\"}}",
                p.name,
                key_fingerprint(&p.public_key)
            );
            assert_eq!(got.get(&state), Some(&1.0), "{state}:\n{metrics}");
        }
        assert_eq!(
            got.get("mesh_peers{state=\"established\"}"),
            Some(&((hosts.len() - 1) as f64))
        );
        let d = &before.datapath;
        let tun_reads = got["mesh_datapath_tun_read_packets_total"];
        assert!(tun_reads >= d.tun_read_packets as f64 && tun_reads > 0.0);
        let sent = got["mesh_datapath_udp_send_datagrams_total"];
        assert!(sent >= d.udp_send_datagrams as f64 && sent > 0.0);
        assert!(got.contains_key("process_start_time_seconds"));
        // No full key (and no secret) is ever a label.
        assert!(!metrics.contains(&before.node.public_key));
        for p in &before.peers {
            assert!(!metrics.contains(&p.public_key));
        }
    }
    // DNS: one name registered on a, asked for from a's pod, and one that does not exist.
    topo.meshctl(a, &["dns", "add", "web", "10.32.1.50"])
        .expect("dns add");
    for (name, want) in [
        ("web.mesh.local", "status: NOERROR"),
        ("nope.mesh.local", "status: NXDOMAIN"),
    ] {
        let out = pods[0]
            .exec(&["dig", "@10.32.1.1", "+time=2", "+tries=1", name])
            .expect("dig");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(want), "{name}: {text}");
    }
    let metrics = scrape(a);
    println!("$ curl -s {METRICS_URL}   # on a\n{metrics}");
    println!(
        "$ meshctl ipam   # on a\n{}",
        topo.meshctl(a, &["ipam"]).unwrap()
    );
    let got = samples(&metrics);
    assert_eq!(got.get("mesh_ipam_addresses{state=\"used\"}"), Some(&2.0));
    assert_eq!(got.get("mesh_ipam_allocations"), Some(&2.0));
    for (series, want) in [
        (
            "mesh_dns_replies_total{source=\"zone\",rcode=\"NOERROR\"}",
            1.0,
        ),
        (
            "mesh_dns_replies_total{source=\"zone\",rcode=\"NXDOMAIN\"}",
            1.0,
        ),
        ("mesh_dns_queries_total{transport=\"udp\"}", 2.0),
        ("mesh_dns_records{served=\"yes\"}", 1.0),
        ("mesh_dns_reply_duration_seconds_count", 2.0),
        ("mesh_dns_reply_duration_seconds_bucket{le=\"+Inf\"}", 2.0),
    ] {
        assert_eq!(got.get(series), Some(&want), "{series}:\n{metrics}");
    }
    // `meshctl status` says the same.
    let dns = topo.status(a).expect("status").dns.expect("dns on");
    assert_eq!(
        (
            dns.listen.as_str(),
            dns.zone.as_str(),
            dns.records,
            dns.served,
            dns.queries
        ),
        ("10.32.1.1:53", "mesh.local.", 1, 1, 2)
    );
    let secret = std::fs::read_to_string(topo.secret_file()).unwrap();
    assert!(
        !metrics.contains(secret.trim()),
        "the cluster secret is in the metrics"
    );

    // A Prometheus server asks for OpenMetrics and gets it.
    let open = curl(
        a,
        &[
            "-H",
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            METRICS_URL,
        ],
    )
    .unwrap();
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("# TYPE mesh_peer_rx_packets counter\n"),
        "{open}"
    );
    // Anything but /metrics is a 404.
    assert!(curl(a, &["http://127.0.0.1:6789/"]).is_err());
}

#[test]
fn meshctl_views_fail_with_one_line_when_meshd_is_not_there() {
    require_root();
    let topo = Topology::new("meshctl_views_fail_with_one_line_when_meshd_is_not_there")
        .expect("topology");
    let meshctl = topo.bin_dir().join("meshctl");
    let socket = topo.dir().join("nobody.sock");
    for view in ["peers", "connections", "routes", "ipam"] {
        let out: Output = Command::new(&meshctl)
            .args(["--socket", &socket.to_string_lossy(), view, "-o", "json"])
            .env_remove("MESH_API_SOCKET")
            .output()
            .expect("run meshctl");
        assert_eq!(out.status.code(), Some(1), "{view}: {out:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{view}: {err:?}");
        assert!(
            err.starts_with("meshctl: cannot reach meshd at") && err.contains("is meshd running?"),
            "{view}: {err:?}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_busy_metrics_port_is_refused_and_off_serves_nothing() {
    require_root();
    let mut topo =
        Topology::new("a_busy_metrics_port_is_refused_and_off_serves_nothing").expect("topology");
    let host = topo.add_host("a").expect("host a");
    let holder = host
        .spawn(&[
            "socat",
            "TCP-LISTEN:6789,bind=127.0.0.1,reuseaddr,fork",
            "STDOUT",
        ])
        .expect("socat");
    mesh_integration::wait_until(
        "socat to listen on 127.0.0.1:6789",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let out = host.exec(&["ss", "-H", "-t", "-l", "-n"])?;
            let listing = text(&out.stdout);
            if listing.contains("127.0.0.1:6789 ") {
                Ok(())
            } else {
                Err(listing)
            }
        },
    )
    .expect("port held");
    let args = topo
        .meshd_args(&host, &MeshdOpts::new(BLOCKS[0].1))
        .expect("args");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = topo
        .run_meshd(&host, &argv, EXIT_BOUND)
        .expect("meshd exits");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains("127.0.0.1:6789") && stderr.contains("already in use"),
        "{stderr:?}"
    );
    for link in [BRIDGE, "meshtun0"] {
        assert!(!host.has_link(link).unwrap(), "{link} left behind");
    }
    assert!(!host.api_socket().exists(), "API socket left behind");
    drop(holder);
    assert!(started.elapsed() < EXIT_BOUND);

    // `--metrics off`: meshd runs, and nothing listens on the port.
    let mut opts = MeshdOpts::new(BLOCKS[0].1);
    opts.extra_args = vec!["--metrics".into(), "off".into()];
    topo.start_meshd(&host, opts)
        .expect("meshd with metrics off");
    assert!(
        curl(&host, &[METRICS_URL]).is_err(),
        "metrics served while off"
    );
    topo.status(&host).expect("the API still answers");
}

/// Inbound loss: with a quarter of a's datagrams to b dropped on b's underlay (iptables
/// `statistic`), `meshctl connections` on b shows a loss near 25% for a, and 0 on a for b.
#[test]
fn connections_show_the_inbound_loss_of_a_lossy_path() {
    let (topo, hosts, pods, started) = full_mesh("connections_show_inbound_loss", 2);
    let (a, b) = (&hosts[0], &hosts[1]);
    wait_established(&topo, a, b, SESSION_BOUND);
    wait_ping(&pods[0], &pods[1], started + PING_BOUND).expect("ping");
    let from_a = a.underlay_ip.to_string();
    let rule = [
        "INPUT",
        "-s",
        &from_a,
        "-p",
        "udp",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.25",
        "-j",
        "DROP",
    ];
    let mut add = vec!["iptables", "-w", "-A"];
    add.extend_from_slice(&rule);
    let out = b.exec(&add).expect("iptables");
    assert!(out.status.success(), "iptables: {out:?}");
    // 400 pings, 10 ms apart: about 100 requests lost on the way in to b.
    let _ = pods[0].exec_timeout(
        &[
            "ping",
            "-n",
            "-q",
            "-i",
            "0.01",
            "-W",
            "1",
            "-c",
            "400",
            &pods[1].ip.to_string(),
        ],
        Duration::from_secs(30),
    );
    let view: ConnectionsView = json(&topo, b, "connections");
    let c = view
        .connections
        .iter()
        .find(|c| c.name == a.name)
        .unwrap_or_else(|| panic!("no connection to a: {view:?}"));
    assert!(c.session_rx_expected >= 400, "{c:?}");
    let loss = c.session_rx_lost as f64 / c.session_rx_expected as f64;
    assert!((0.10..0.40).contains(&loss), "loss {loss} on b: {c:?}");
    let table = topo.meshctl(b, &["connections"]).expect("connections");
    assert!(table.contains("LOSS"), "{table}");
    // Nothing is dropped the other way.
    let view: ConnectionsView = json(&topo, a, "connections");
    let c = view
        .connections
        .iter()
        .find(|c| c.name == b.name)
        .expect("b");
    assert!(c.session_rx_expected > 0, "{c:?}");
    assert_eq!(c.session_rx_lost, 0, "{c:?}");
}
