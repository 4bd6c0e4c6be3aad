//! meshd's DNS server in network namespaces: `meshctl dns add/remove` edit the cluster zone
//! and a pod's `dig @gateway` sees it (A, PTR, NXDOMAIN with a SOA, TCP); a name outside the
//! zone is forwarded to a stub upstream (dnsmasq) running in another namespace of the test;
//! a DNS address that cannot be bound fails the start with one line and leaves nothing.
//!
//! Network safety: every process runs inside namespaces this test creates, and meshd is
//! always given `--dns-upstream` (the stub), never the machine's own resolvers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests fail by panicking

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{BLOCKS, POLL, add_full_mesh};
use mesh_api::{DnsRecords, key_fingerprint};
use mesh_integration::topology::{BRIDGE, DEFAULT_RANGE};
use mesh_integration::{Host, MeshdOpts, Pod, Topology, require_root, wait_until};
use mesh_integration::{MESHD_EXIT_BOUND as EXIT_BOUND, describe, text};

/// The gateway (and DNS) address of block 10.32.1.0/24.
const GATEWAY: &str = "10.32.1.1";
/// What the stub upstream answers for every name under `example.test`.
const STUB_ANSWER: &str = "198.18.77.7";
/// Bound of the stub upstream to answer after it started.
const STUB_BOUND: Duration = Duration::from_secs(10);

/// `dig @GATEWAY ARGS…` in `pod`, one try of 2 s; dig's stdout.
fn dig(pod: &Pod, args: &[&str]) -> String {
    dig_at(pod, GATEWAY, args)
}

/// `dig @SERVER ARGS…` in `pod`, one try of 2 s; dig's stdout.
fn dig_at(pod: &Pod, server: &str, args: &[&str]) -> String {
    let server = format!("@{server}");
    let mut argv = vec!["dig", server.as_str(), "+time=2", "+tries=1"];
    argv.extend_from_slice(args);
    let out = pod
        .exec(&argv)
        .unwrap_or_else(|e| panic!("dig {args:?}: {e} (scripts/deps.sh installs bind9-dnsutils)"));
    assert!(out.status.success(), "dig {args:?}: {}", describe(&out));
    text(&out.stdout)
}

/// `dig +short` of `name` (type `qtype`) in `pod`: the answer lines.
fn short(pod: &Pod, name: &str, qtype: &str) -> Vec<String> {
    short_at(pod, GATEWAY, name, qtype)
}

/// [`short`] asking `server`.
fn short_at(pod: &Pod, server: &str, name: &str, qtype: &str) -> Vec<String> {
    dig_at(pod, server, &[name, qtype, "+short"])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Panics unless `name` gets NXDOMAIN with exactly one record, a SOA of the zone, in the
/// authority section.
fn assert_nxdomain(pod: &Pod, name: &str) {
    let out = dig(pod, &[name, "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{name}: {out}");
    assert!(out.contains("AUTHORITY: 1"), "{name}: {out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("mesh.local.") && l.contains("\tSOA\t")),
        "{name}: the authority section should hold the zone's SOA: {out}"
    );
}

fn meshctl_err(topo: &Topology, host: &Host, args: &[&str]) -> String {
    topo.meshctl(host, args)
        .expect_err(&format!("meshctl {args:?} should fail"))
}

/// Starts dnsmasq on `host`'s underlay address as the stub upstream and waits until it
/// answers. Dropping the [`mesh_integration::Proc`] ends it.
fn start_stub(host: &Host) -> mesh_integration::Proc {
    let listen = format!("--listen-address={}", host.underlay_ip);
    let address = format!("--address=/example.test/{STUB_ANSWER}");
    let stub = host
        .spawn(&[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--pid-file=",
            "--user=root",
            "--group=root",
            "--port=53",
            // Answers carry a TTL (dnsmasq's default for --address is 0: never cached).
            "--local-ttl=300",
            &listen,
            &address,
        ])
        .expect("start dnsmasq (scripts/deps.sh installs dnsmasq-base)");
    let server = format!("@{}", host.underlay_ip);
    wait_until("the stub upstream to answer", STUB_BOUND, POLL, || {
        let out = host.exec(&[
            "dig",
            &server,
            "+time=1",
            "+tries=1",
            "+short",
            "probe.example.test",
        ])?;
        let got = text(&out.stdout);
        if got.trim() == STUB_ANSWER {
            Ok(())
        } else {
            Err(describe(&out))
        }
    })
    .expect("stub upstream");
    stub
}

#[test]
fn names_registered_through_meshctl_resolve_from_a_pod_and_others_are_forwarded() {
    require_root();
    let mut topo = Topology::new("dns_names_resolve").expect("topology");
    let a = topo.add_host("a").expect("host a");
    let upstream = topo.add_host("up").expect("host up");
    let _stub = start_stub(&upstream);

    let mut opts = MeshdOpts::new("10.32.1.0/24");
    opts.extra_args = vec!["--dns-upstream".into(), upstream.underlay_ip.to_string()];
    topo.start_meshd(&a, opts).expect("start meshd");
    let pod = topo.add_pod(&a, "p1", "10.32.1.10").expect("pod");

    // Registered names resolve, over UDP and TCP, and backwards.
    let added = topo
        .meshctl(&a, &["dns", "add", "web", "10.32.1.50"])
        .expect("meshctl dns add");
    assert_eq!(added, "added web.mesh.local. 10.32.1.50\n");
    assert_eq!(short(&pod, "web.mesh.local", "A"), ["10.32.1.50"]);
    assert_eq!(
        dig(&pod, &["web.mesh.local", "A", "+tcp", "+short"]).trim(),
        "10.32.1.50"
    );
    assert_eq!(
        dig(&pod, &["-x", "10.32.1.50", "+short"]).trim(),
        "web.mesh.local."
    );
    topo.meshctl(&a, &["dns", "add", "db.mesh.local.", "fd00::db"])
        .expect("meshctl dns add AAAA");
    assert_eq!(short(&pod, "db.mesh.local", "AAAA"), ["fd00::db"]);

    // The list names the owner (this node) and says the records are served.
    let out = topo
        .meshctl(&a, &["dns", "-o", "json"])
        .expect("meshctl dns");
    let list: DnsRecords = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let own = key_fingerprint(&topo.status(&a).expect("status").node.public_key);
    assert_eq!(list.zone, "mesh.local.");
    assert_eq!(list.listen, format!("{GATEWAY}:53"));
    assert_eq!(list.upstreams, [format!("{}:53", upstream.underlay_ip)]);
    let rows: Vec<(&str, &str, &str, bool)> = list
        .records
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.address.as_str(),
                r.owner.as_str(),
                r.served,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("db.mesh.local.", "fd00::db", own.as_str(), true),
            ("web.mesh.local.", "10.32.1.50", own.as_str(), true)
        ]
    );
    let table = topo.meshctl(&a, &["dns"]).expect("meshctl dns");
    assert!(table.contains("web.mesh.local.  10.32.1.50"), "{table}");

    // A missing name: NXDOMAIN with the zone's SOA (not weaveDNS's bare NXDOMAIN).
    assert_nxdomain(&pod, "nothere.mesh.local");

    // Bad input: one line, 400, nothing registered.
    for (args, want) in [
        (
            vec!["dns", "add", "web", "not-an-ip"],
            "meshd answered 400: address \"not-an-ip\" is not an IPv4 or IPv6 address",
        ),
        (
            vec!["dns", "add", "web.example.com.", "10.32.1.51"],
            "meshd answered 400: web.example.com. is outside the zone mesh.local.",
        ),
        (
            vec!["dns", "add", "bad..name", "10.32.1.51"],
            "meshd answered 400: ",
        ),
        (
            vec!["dns", "remove", "nobody"],
            "meshd answered 404: this node has no record under nobody.mesh.local.",
        ),
    ] {
        let err = meshctl_err(&topo, &a, &args);
        assert!(
            err.contains(want),
            "meshctl {args:?}: {err:?} should contain {want:?}"
        );
        assert!(!err.trim_end().contains('\n'), "one line: {err:?}");
    }

    // Removed: NXDOMAIN again (the 5 s negative TTL is the client's business; meshd answers
    // from its store at once).
    let removed = topo
        .meshctl(&a, &["dns", "remove", "web"])
        .expect("meshctl dns remove");
    assert_eq!(removed, "removed web.mesh.local. 10.32.1.50\n");
    assert_nxdomain(&pod, "web.mesh.local");
    topo.meshctl(&a, &["dns", "remove", "db", "fd00::db"])
        .expect("meshctl dns remove NAME IP");
    let out = topo
        .meshctl(&a, &["dns", "-o", "json"])
        .expect("meshctl dns");
    let list: DnsRecords = serde_json::from_str(&out).unwrap();
    assert!(list.records.is_empty(), "{out}");

    // Outside the zone: forwarded to the stub upstream in the other namespace.
    assert_eq!(short(&pod, "www.example.test", "A"), [STUB_ANSWER]);
    assert_eq!(
        dig(&pod, &["api.example.test", "A", "+tcp", "+short"]).trim(),
        STUB_ANSWER
    );
}

#[test]
fn a_dns_address_that_cannot_be_bound_fails_the_start_and_leaves_nothing() {
    require_root();
    let mut topo = Topology::new("dns_bind_failure").expect("topology");
    let host = topo.add_host("a").expect("host a");
    let mut opts = MeshdOpts::new("10.32.1.0/24");
    // Not an address of this namespace: the bind fails after the bridge was made.
    opts.extra_args = vec![
        "--dns".into(),
        "10.99.0.1:53".into(),
        "--dns-upstream".into(),
        "198.18.0.250".into(),
    ];
    let args = topo.meshd_args(&host, &opts).expect("args");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = topo
        .run_meshd(&host, &argv, EXIT_BOUND)
        .expect("meshd exits");
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    // The log lines of the start come first; the error is one line of its own.
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("meshd:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {}", describe(&out));
    assert!(
        lines[0].contains("cannot serve DNS on udp 10.99.0.1:53") && lines[0].contains("--dns off"),
        "{}",
        describe(&out)
    );
    assert!(
        !host.api_socket().exists(),
        "API socket left behind: {}",
        describe(&out)
    );
    let gone = wait_until(
        "the bridge and TUN to be gone after the failed start",
        Duration::from_secs(5),
        POLL,
        || {
            let links = host.links()?;
            if links.iter().any(|l| l == BRIDGE || l == "meshtun0") {
                Err(format!("{links:?}"))
            } else {
                Ok(())
            }
        },
    );
    assert!(gone.is_ok(), "{gone:?}; meshd said: {}", describe(&out));
    let routes = host
        .ip(&["route", "show", DEFAULT_RANGE])
        .unwrap_or_default();
    assert!(routes.trim().is_empty(), "route left behind: {routes}");
}

/// Bound for a record registered on one host to be answered by another (issue #4: 2 s).
const PROPAGATION_BOUND: Duration = Duration::from_secs(2);
/// `--dead-after` of the cluster test.
const DEAD_AFTER_SECS: u64 = 5;
/// A killed host's sessions stop counting after 30 s of silence; then `--dead-after`.
const DEAD_BOUND: Duration = Duration::from_secs(30 + DEAD_AFTER_SECS + 20);

/// The gateway (and DNS server) of host `i`'s block.
fn gateway_of(i: usize) -> String {
    let block = BLOCKS[i].1;
    format!("{}.1", &block[..block.rfind(".0/").expect("a /24 block")])
}

/// Waits until `pod` (asking its own gateway `server`) gets exactly `want` (any order) for
/// `name`, at most `bound`; returns how long it took.
fn wait_answer(pod: &Pod, server: &str, name: &str, want: &[&str], bound: Duration) -> Duration {
    let start = Instant::now();
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    wait_until(
        &format!("{name} to answer {want:?} in {}", pod.netns),
        bound,
        POLL,
        || {
            let got: BTreeSet<String> = short_at(pod, server, name, "A").into_iter().collect();
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .expect("answer");
    start.elapsed()
}

/// Waits until `server` answers the zone's SOA to `pod` (meshd's DNS on `host` is up).
fn wait_dns_up(pod: &Pod, server: &str, host: &str) {
    let at = format!("@{server}");
    wait_until(
        &format!("DNS on {host}"),
        Duration::from_secs(20),
        POLL,
        || {
            let out = pod.exec(&["dig", &at, "+time=1", "+tries=1", "mesh.local", "SOA"])?;
            if text(&out.stdout).contains("status: NOERROR") {
                Ok(())
            } else {
                Err(describe(&out))
            }
        },
    )
    .expect("dns up");
}

#[test]
fn names_registered_on_one_host_resolve_everywhere_are_shuffled_and_go_with_a_dead_owner() {
    require_root();
    let mut topo = Topology::new("dns_cluster").expect("topology");
    let upstream = topo.add_host("up").expect("host up");
    let _stub = start_stub(&upstream);
    let upstreams = upstream.underlay_ip.to_string();
    let dead_after = DEAD_AFTER_SECS.to_string();
    let (hosts, pods, _) = add_full_mesh(
        &mut topo,
        3,
        &["--dns-upstream", &upstreams, "--dead-after", &dead_after],
    );
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);
    for (i, host) in hosts.iter().enumerate() {
        wait_dns_up(&pods[i], &gateway_of(i), &host.name);
    }

    // Registered on a, answered on c (and backwards), within the bound.
    topo.meshctl(a, &["dns", "add", "web", "10.32.1.50"])
        .expect("dns add on a");
    let took = wait_answer(
        &pods[2],
        &gateway_of(2),
        "web.mesh.local",
        &["10.32.1.50"],
        PROPAGATION_BOUND,
    );
    eprintln!("a's record answered on c after {took:?}");
    assert_eq!(
        dig_at(&pods[2], &gateway_of(2), &["-x", "10.32.1.50", "+short"]).trim(),
        "web.mesh.local."
    );

    // One name on three hosts: every host answers all three, in varying order.
    topo.meshctl(b, &["dns", "add", "web", "10.32.2.50"])
        .expect("dns add on b");
    topo.meshctl(c, &["dns", "add", "web", "10.32.3.50"])
        .expect("dns add on c");
    let all = ["10.32.1.50", "10.32.2.50", "10.32.3.50"];
    for (i, pod) in pods.iter().enumerate() {
        wait_answer(
            pod,
            &gateway_of(i),
            "web.mesh.local",
            &all,
            PROPAGATION_BOUND,
        );
    }
    let orders: BTreeSet<Vec<String>> = (0..12)
        .map(|_| short_at(&pods[0], &gateway_of(0), "web.mesh.local", "A"))
        .collect();
    assert!(
        orders.len() > 1,
        "12 answers in one order {orders:?}: not shuffled"
    );

    // The list on a names each record's owner.
    let out = topo
        .meshctl(a, &["dns", "-o", "json"])
        .expect("meshctl dns");
    let list: DnsRecords = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let owners: BTreeSet<(String, String, bool)> = list
        .records
        .iter()
        .map(|r| (r.address.clone(), r.owner.clone(), r.served))
        .collect();
    let fp = |h: &Host| key_fingerprint(&topo.status(h).expect("status").node.public_key);
    let b_fp = fp(b);
    assert_eq!(
        owners,
        BTreeSet::from([
            ("10.32.1.50".to_owned(), fp(a), true),
            ("10.32.2.50".to_owned(), b_fp.clone(), true),
            ("10.32.3.50".to_owned(), fp(c), true),
        ])
    );

    // A removal on c goes everywhere.
    topo.meshctl(c, &["dns", "remove", "web", "10.32.3.50"])
        .expect("dns remove on c");
    let two = ["10.32.1.50", "10.32.2.50"];
    wait_answer(
        &pods[0],
        &gateway_of(0),
        "web.mesh.local",
        &two,
        PROPAGATION_BOUND,
    );

    // b dies: a and c stop answering its address once they mark it dead; a lists it unserved.
    topo.kill_meshd(b).expect("kill b");
    let killed = Instant::now();
    wait_answer(
        &pods[0],
        &gateway_of(0),
        "web.mesh.local",
        &["10.32.1.50"],
        DEAD_BOUND,
    );
    wait_answer(
        &pods[2],
        &gateway_of(2),
        "web.mesh.local",
        &["10.32.1.50"],
        DEAD_BOUND.saturating_sub(killed.elapsed()),
    );
    eprintln!(
        "b's record unanswered everywhere {:?} after the kill",
        killed.elapsed()
    );
    let out = topo
        .meshctl(a, &["dns", "-o", "json"])
        .expect("meshctl dns");
    let list: DnsRecords = serde_json::from_str(&out).unwrap();
    let b_row = list
        .records
        .iter()
        .find(|r| r.owner == b_fp)
        .unwrap_or_else(|| panic!("b's record is kept while b is dead: {out}"));
    assert!(!b_row.served, "{out}");
}

#[test]
fn a_dead_first_upstream_costs_no_lookup_and_answers_are_cached() {
    require_root();
    let mut topo = Topology::new("dns_dead_upstream").expect("topology");
    let a = topo.add_host("a").expect("host a");
    let upstream = topo.add_host("up").expect("host up");
    let stub = start_stub(&upstream);
    // Nothing has this address on the underlay: queries to it vanish (no ARP answer).
    let octets = upstream.underlay_ip.octets();
    let dead = format!("{}.{}.{}.250", octets[0], octets[1], octets[2]);
    let mut opts = MeshdOpts::new("10.32.1.0/24");
    opts.extra_args = vec![
        "--dns-upstream".into(),
        format!("{dead},{}", upstream.underlay_ip),
    ];
    topo.start_meshd(&a, opts).expect("start meshd");
    let pod = topo.add_pod(&a, "p1", "10.32.1.10").expect("pod");
    wait_dns_up(&pod, GATEWAY, "a");

    // One try of 2 s each: weaveDNS's 5 s per dead upstream would fail these.
    for name in ["one.example.test", "two.example.test", "three.example.test"] {
        assert_eq!(short(&pod, name, "A"), [STUB_ANSWER], "{name}");
    }
    // The upstream goes away: what was asked is answered from the cache, the rest fails.
    drop(stub);
    assert_eq!(short(&pod, "one.example.test", "A"), [STUB_ANSWER]);
    // Two rounds over both upstreams, then SERVFAIL: about 2.4 s, so dig waits longer here.
    let out = pod
        .exec(&[
            "dig",
            &format!("@{GATEWAY}"),
            "+time=6",
            "+tries=1",
            "never-asked.example.test",
            "A",
        ])
        .expect("dig");
    let got = text(&out.stdout);
    assert!(got.contains("status: SERVFAIL"), "{}", describe(&out));
}
