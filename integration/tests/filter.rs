//! meshd's nftables filter (`inet mesh`) against a host on the underlay that has no secret:
//! it routes a node's pod block via that node's underlay address and tries to reach the pods
//! in clear (ping, TCP, UDP with a source address of another node's pods). Blocked while
//! meshd runs, after SIGTERM and after SIGKILL, counted, reported by `meshctl debug` when the
//! table is missing or changed, removed by `meshd reset`; and with the table deleted, the
//! same attack gets through (so the checks here can fail). What must still work: the host's
//! own NAT to a pod on another node (kube-proxy's kind of DNAT, from the underlay and from a
//! local process) and pod-to-pod traffic with br_netfilter's bridge-nf-call-iptables on.
#![allow(clippy::expect_used)] // helpers of tests fail by panicking, like the tests

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{POLL, full_mesh, meshctl, wait_established, wait_ping};
use mesh_api::{DebugReport, FilterState};
use mesh_integration::{Host, Pod, Proc, Topology, describe, text, wait_until};

/// Bound of pings and connections that must work.
const BOUND: Duration = Duration::from_secs(15);
/// The TCP port pods listen on.
const TCP_PORT: &str = "8080";
/// The UDP port pods receive on.
const UDP_PORT: &str = "7000";
/// An address of node a's block (10.32.1.0/24) that the attacker claims as its source.
const SPOOFED: &str = "10.32.1.99";

fn debug(topo: &Topology, host: &Host) -> (Option<i32>, DebugReport) {
    let out = meshctl(topo, host, &["debug", "-o", "json"]);
    let r = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "meshctl debug -o json: {e}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code(), r)
}

/// `nft ARGS…` in `host`'s namespace.
fn nft(host: &Host, args: &[&str]) -> Output {
    let mut argv = vec!["nft"];
    argv.extend_from_slice(args);
    host.exec(&argv).expect("run nft")
}

/// The packets counted so far by counter `name` of table `inet mesh` in `host`.
fn counter(host: &Host, name: &str) -> u64 {
    let out = nft(host, &["list", "counter", "inet", "mesh", name]);
    assert!(
        out.status.success(),
        "nft list counter {name}: {}",
        describe(&out)
    );
    let s = text(&out.stdout);
    let mut words = s.split_whitespace();
    words
        .find(|w| *w == "packets")
        .and_then(|_| words.next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {s}"))
}

fn has_table(host: &Host) -> bool {
    nft(host, &["list", "table", "inet", "mesh"])
        .status
        .success()
}

/// The attacker: a host on the underlay without the secret, routing the pod blocks via
/// node `via` and holding [`SPOOFED`] as a local address.
fn attacker(topo: &mut Topology, via: &Host) -> Host {
    let x = topo.add_host("x").expect("attacker host");
    for block in ["10.32.1.0/24", "10.32.2.0/24"] {
        x.ip(&["route", "add", block, "via", &via.underlay_ip.to_string()])
            .expect("attacker route");
    }
    x.ip(&["addr", "add", &format!("{SPOOFED}/32"), "dev", "lo"])
        .expect("spoofed address");
    x
}

/// Each pod listens on TCP and writes whatever UDP brings to a file in the topology dir.
fn listen(topo: &Topology, pod: &Pod) -> (std::path::PathBuf, [Proc; 2]) {
    let file = topo.dir().join(format!("udp-{}-{}", pod.host, pod.name));
    let tcp = pod
        .spawn(&[
            "socat",
            "-u",
            &format!("TCP-LISTEN:{TCP_PORT},reuseaddr,fork"),
            "OPEN:/dev/null",
        ])
        .expect("tcp listener");
    let udp = pod
        .spawn(&[
            "socat",
            "-u",
            &format!("UDP4-RECV:{UDP_PORT}"),
            &format!("OPEN:{},creat,append", file.display()),
        ])
        .expect("udp receiver");
    (file, [tcp, udp])
}

fn pings(from: &Host, dst: &str) -> bool {
    from.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", dst])
        .expect("run ping")
        .status
        .success()
}

fn connects(from: &Host, dst: &str) -> bool {
    from.exec(&[
        "socat",
        "-u",
        "OPEN:/dev/null",
        &format!("TCP:{dst}:{TCP_PORT},connect-timeout=2"),
    ])
    .expect("run socat")
    .status
    .success()
}

/// Sends `tag` by UDP from [`SPOOFED`] to `dst`; returns once sent.
fn send_spoofed(from: &Host, dst: &str, tag: &str) {
    let out = from
        .exec(&[
            "sh",
            "-c",
            &format!(
                "for i in 1 2 3; do echo {tag}; done | socat -u - UDP4-SENDTO:{dst}:{UDP_PORT},bind={SPOOFED}"
            ),
        ])
        .expect("run socat");
    assert!(out.status.success(), "send spoofed UDP: {}", describe(&out));
}

fn received(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_default()
}

/// The attack on pod `p` (on the node the attacker routes through): ping and TCP from the
/// attacker's own address, UDP from a source of node a's block. `true` for each that got
/// through.
fn attack(x: &Host, p: &Pod, file: &Path, tag: &str) -> (bool, bool, bool) {
    let dst = p.ip.to_string();
    let ping = pings(x, &dst);
    let tcp = connects(x, &dst);
    send_spoofed(x, &dst, tag);
    // The same datagrams' way as the ping's: a second ping's time is ample for them.
    std::thread::sleep(Duration::from_millis(500));
    (ping, tcp, received(file).contains(tag))
}

#[test]
fn the_underlay_cannot_reach_pods_in_clear_while_meshd_runs_after_sigterm_and_after_sigkill() {
    let (mut topo, hosts, pods, started) = full_mesh("filter-bypass", 2);
    let (a, b) = (&hosts[0], &hosts[1]);
    let (pa, pb) = (&pods[0], &pods[1]);
    let x = attacker(&mut topo, b);
    let (file_b, _listen_b) = listen(&topo, pb);
    let (file_a, _listen_a) = listen(&topo, pa);
    wait_established(&topo, a, b, BOUND.saturating_sub(started.elapsed()));
    wait_ping(pa, pb, Instant::now() + BOUND).expect("pod a -> pod b through the mesh");
    assert!(has_table(b), "meshd installed no table inet mesh");

    // While meshd runs: to b's own pod (to_local_pods), through b to a's pod (to_remote_pods),
    // and a spoofed source of a's block arriving on b's underlay (spoofed_source).
    assert_eq!(
        attack(&x, pb, &file_b, "run"),
        (false, false, false),
        "attack on b's pod while meshd runs"
    );
    assert!(
        !pings(&x, &pa.ip.to_string()),
        "b forwarded the underlay's ping to a's pod"
    );
    assert!(
        !connects(&x, &pa.ip.to_string()),
        "b forwarded the underlay's TCP to a's pod"
    );
    assert!(!received(&file_a).contains("run"));
    for name in ["to_local_pods", "to_remote_pods", "spoofed_source"] {
        assert!(counter(b, name) > 0, "counter {name} did not rise");
    }
    // meshctl debug and the metrics' source show the same counters and no finding.
    let (code, r) = debug(&topo, b);
    let f = r.filter.as_ref().expect("debug shows the filter");
    assert_eq!(f.state, FilterState::Intact, "{f:?}");
    assert_eq!(code, Some(0), "{:?}", r.findings);
    let shown = |n: &str| f.counters.iter().find(|c| c.name == n).map(|c| c.packets);
    assert!(shown("to_local_pods").is_some_and(|p| p > 0), "{f:?}");
    assert!(shown("spoofed_source").is_some_and(|p| p > 0), "{f:?}");

    // A rule added by hand: `meshctl debug` says the table changed.
    let out = nft(
        b,
        &["insert", "rule", "inet", "mesh", "prerouting", "accept"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let (code, r) = debug(&topo, b);
    assert_eq!(code, Some(3), "{:?}", r.findings);
    assert!(
        r.findings.iter().any(|f| f.check == "filter_changed"),
        "{:?}",
        r.findings
    );
    // The table deleted: a finding, and the same attack gets through (the control that
    // shows this test can fail).
    let out = nft(b, &["delete", "table", "inet", "mesh"]);
    assert!(out.status.success(), "{}", describe(&out));
    let (code, r) = debug(&topo, b);
    assert_eq!(code, Some(3), "{:?}", r.findings);
    assert!(
        r.findings.iter().any(|f| f.check == "filter_missing"),
        "{:?}",
        r.findings
    );
    assert_eq!(
        attack(&x, pb, &file_b, "open"),
        (true, true, true),
        "without the table the attack should get through"
    );

    // A restart puts the table back; SIGTERM leaves it in place and the attack blocked.
    topo.restart_meshd(b).expect("restart meshd on b");
    assert!(has_table(b));
    topo.stop_meshd(b).expect("SIGTERM meshd on b");
    assert!(has_table(b), "SIGTERM removed the table");
    let before = counter(b, "to_local_pods");
    assert_eq!(
        attack(&x, pb, &file_b, "term"),
        (false, false, false),
        "attack after SIGTERM"
    );
    assert!(counter(b, "to_local_pods") > before);

    // SIGKILL: the same.
    topo.restart_meshd(b).expect("restart meshd on b");
    wait_ping(pa, pb, Instant::now() + BOUND).expect("pod a -> pod b after the restart");
    topo.kill_meshd(b).expect("SIGKILL meshd on b");
    assert!(has_table(b), "SIGKILL removed the table");
    let before = counter(b, "spoofed_source");
    assert_eq!(
        attack(&x, pb, &file_b, "kill"),
        (false, false, false),
        "attack after SIGKILL"
    );
    assert!(counter(b, "spoofed_source") > before);

    // meshd reset removes it.
    let state = b.state_dir().to_string_lossy().into_owned();
    let socket = b.api_socket().to_string_lossy().into_owned();
    let out = topo
        .run_meshd(
            b,
            &["reset", "--state-dir", &state, "--api-socket", &socket],
            mesh_integration::MESHD_EXIT_BOUND,
        )
        .expect("meshd reset exits");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("removed nftables table inet mesh"),
        "{}",
        describe(&out)
    );
    assert!(!has_table(b), "meshd reset left the table");
}

#[test]
fn a_kube_proxy_dnat_reaches_a_pod_on_another_node_from_the_underlay_and_from_the_node() {
    let (mut topo, hosts, pods, started) = full_mesh("filter-dnat", 2);
    let (a, b) = (&hosts[0], &hosts[1]);
    let pb = &pods[1];
    let client = topo.add_host("client").expect("client host");
    let _listen = listen(&topo, pb);
    wait_established(&topo, a, b, BOUND.saturating_sub(started.elapsed()));
    // kube-proxy's kind of NodePort: a's address, port 30080, DNAT to b's pod, masqueraded
    // (its own table, in a's namespace only).
    let node_port = format!("{}:30080", a.underlay_ip);
    let dnat = format!("dnat to {}:{TCP_PORT}", pb.ip);
    for cmd in [
        "add table ip kubeproxy".to_owned(),
        "add chain ip kubeproxy pre { type nat hook prerouting priority -100; }".to_owned(),
        "add chain ip kubeproxy out { type nat hook output priority -100; }".to_owned(),
        "add chain ip kubeproxy post { type nat hook postrouting priority 100; }".to_owned(),
        format!(
            "add rule ip kubeproxy pre ip daddr {} tcp dport 30080 {dnat}",
            a.underlay_ip
        ),
        format!(
            "add rule ip kubeproxy out ip daddr {} tcp dport 30080 {dnat}",
            a.underlay_ip
        ),
        // Masquerade picks the first address of the host when the outgoing device has none,
        // and meshd's TUN device has none: a's underlay address, which b refuses as a source
        // from a (not in a's blocks). So to the mesh, SNAT to a's gateway address.
        "add rule ip kubeproxy post oifname \"meshtun0\" ct status dnat snat to 10.32.1.1"
            .to_owned(),
        "add rule ip kubeproxy post ct status dnat masquerade".to_owned(),
    ] {
        let out = a.exec(&["nft", &cmd]).expect("run nft");
        assert!(out.status.success(), "nft {cmd}: {}", describe(&out));
    }
    let target = format!("TCP:{node_port},connect-timeout=2");
    for (who, from) in [("the underlay", &client), ("node a itself", a)] {
        wait_until(
            &format!("node port on a from {who} to b's pod"),
            BOUND,
            POLL,
            || {
                let out = from.exec(&["socat", "-u", "OPEN:/dev/null", &target])?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(describe(&out))
                }
            },
        )
        .expect("the host's own DNAT reaches a pod on another node");
    }
    assert_eq!(counter(a, "to_remote_pods"), 0);
}

#[test]
fn pods_reach_each_other_on_one_node_and_across_nodes_with_bridge_nf_call_iptables_on() {
    let (mut topo, hosts, pods, started) = full_mesh("filter-pods", 2);
    let (a, b) = (&hosts[0], &hosts[1]);
    // The sysctl is per network namespace (Linux 5.3 and later); Kubernetes turns it on.
    let sysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    for h in [a, b] {
        let out = h
            .exec(&["sh", "-c", &format!("echo 1 > {sysctl} && cat {sysctl}")])
            .expect("run sh");
        assert!(
            out.status.success() && text(&out.stdout).trim() == "1",
            "cannot turn on bridge-nf-call-iptables in {} (is br_netfilter loaded?): {}",
            h.name,
            describe(&out)
        );
    }
    let pa2 = topo
        .add_pod(a, "p2", "10.32.1.11")
        .expect("second pod on a");
    let (pa, pb) = (&pods[0], &pods[1]);
    wait_established(&topo, a, b, BOUND.saturating_sub(started.elapsed()));
    let deadline = Instant::now() + BOUND;
    wait_ping(pa, &pa2, deadline).expect("pod to pod on one node");
    wait_ping(&pa2, pa, deadline).expect("pod to pod on one node, back");
    wait_ping(pa, pb, deadline).expect("pod a -> pod b");
    wait_ping(pb, &pa2, deadline).expect("pod b -> pod a2");
    let _listen = listen(&topo, pb);
    let out = pa2
        .exec(&[
            "socat",
            "-u",
            "OPEN:/dev/null",
            &format!("TCP:{}:{TCP_PORT},connect-timeout=2", pb.ip),
        ])
        .expect("run socat");
    assert!(
        out.status.success(),
        "TCP pod a2 -> pod b: {}",
        describe(&out)
    );
    for h in [a, b] {
        for name in ["to_local_pods", "to_remote_pods", "spoofed_source"] {
            assert_eq!(counter(h, name), 0, "{name} on {}", h.name);
        }
    }
}

#[test]
fn without_nft_meshd_refuses_to_start_with_one_line_and_leaves_nothing_behind() {
    mesh_integration::require_root();
    let mut topo = Topology::new("filter-no-nft").expect("topology");
    let a = topo.add_host("a").expect("host");
    let args = topo
        .meshd_args(&a, &mesh_integration::MeshdOpts::new("10.32.1.0/24"))
        .expect("meshd args");
    let meshd = mesh_integration::bin_dir().join("meshd");
    // `env` finds nothing in this PATH but meshd is named by its full path.
    let out = Command::new("ip")
        .args(["netns", "exec", &a.netns, "env", "PATH=/nonexistent"])
        .arg(&meshd)
        .args(&args)
        .args(["--metrics", "off"])
        .output()
        .expect("run meshd");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("nft")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("nftables is unusable: the nft command was not found"),
        "{stderr}"
    );
    let links = a.links().expect("links");
    assert!(
        !links.iter().any(|l| l == "mesh0" || l == "meshtun0"),
        "a failed start left {links:?}"
    );
    assert!(!has_table(&a), "a failed start left a table");
}
