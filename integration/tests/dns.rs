//! meshd's DNS server in network namespaces: `meshctl dns add/remove` edit the cluster zone
//! and a pod's `dig @gateway` sees it (A, PTR, NXDOMAIN with a SOA, TCP); a name outside the
//! zone is forwarded to a stub upstream (dnsmasq) running in another namespace of the test;
//! a DNS address that cannot be bound fails the start with one line and leaves nothing.
//!
//! Network safety: every process runs inside namespaces this test creates, and meshd is
//! always given `--dns-upstream` (the stub), never the machine's own resolvers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests fail by panicking

mod common;

use std::time::Duration;

use common::POLL;
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
    let server = format!("@{GATEWAY}");
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
    dig(pod, &[name, qtype, "+short"])
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
