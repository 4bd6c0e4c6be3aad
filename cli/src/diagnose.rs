//! The `debug`, `ping`, `connect` and `forget` views as text for people. Pure functions
//! over `mesh_api` types, no I/O. Table cells are escaped by `render::table` and
//! `render::key_values`; values in a free-form line are escaped here ([`crate::escape`]).

use mesh_api::{
    DebugReport, EndpointChanged, Finding, PathKind, PingResult, Severity, key_fingerprint,
};

use crate::escape::escape;
use crate::render::{key_values, or_dash, rtt, table};

fn with_newline(lines: Vec<String>) -> String {
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn on_off(v: Option<bool>) -> String {
    match v {
        Some(true) => "on".to_owned(),
        Some(false) => "off".to_owned(),
        None => "-".to_owned(),
    }
}

fn up(admin_up: bool, oper: &str) -> String {
    let admin = if admin_up { "up" } else { "down" };
    if oper.is_empty() {
        admin.to_owned()
    } else {
        format!("{admin} (oper {oper})")
    }
}

pub(crate) fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn section(out: &mut Vec<String>, title: &str, empty: &str, lines: Vec<String>) {
    out.push(String::new());
    out.push(title.to_owned());
    if lines.len() <= 1 {
        out.push(format!("  {empty}"));
    } else {
        out.extend(lines.into_iter().map(|l| format!("  {l}")));
    }
}

/// ethtool features worth a glance, in this order, with their short names.
const FEATURES_SHOWN: [(&str, &str); 8] = [
    ("tx-checksum-ip-generic", "csum"),
    ("tx-scatter-gather", "sg"),
    ("tx-tcp-segmentation", "tso"),
    ("tx-generic-segmentation", "gso"),
    ("rx-gro", "gro"),
    ("rx-gro-list", "gro-list"),
    ("tx-udp-segmentation", "udp-gso"),
    ("rx-udp-gro-forwarding", "udp-gro-fwd"),
];

/// The short names of the [`FEATURES_SHOWN`] that are on, comma-separated; `-` when ethtool
/// gave nothing.
fn features_short(on: &[String]) -> String {
    if on.is_empty() {
        return "-".to_owned();
    }
    let shown: Vec<&str> = FEATURES_SHOWN
        .iter()
        .filter(|(name, _)| on.iter().any(|f| f == name))
        .map(|(_, short)| *short)
        .collect();
    if shown.is_empty() {
        "none".to_owned()
    } else {
        shown.join(",")
    }
}

/// The findings, worst first, one per line; or the line that says there are none.
pub(crate) fn findings_lines(findings: &[Finding]) -> Vec<String> {
    if findings.is_empty() {
        return vec!["no problems found".to_owned()];
    }
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                severity(f.severity).to_owned(),
                f.check.clone(),
                f.message.clone(),
            ]
        })
        .collect();
    table(&["SEVERITY", "CHECK", "FINDING"], &rows)
}

/// meshd's nftables table in one line: its state and drop counters.
fn filter_line(f: Option<&mesh_api::DebugFilter>) -> String {
    use mesh_api::FilterState;
    let Some(f) = f else {
        return "-".to_owned();
    };
    let state = match f.state {
        FilterState::Intact => "intact",
        FilterState::Missing => "MISSING",
        FilterState::Changed => "CHANGED",
        FilterState::Unreadable => "NOT READ",
    };
    let drops: Vec<String> = f
        .counters
        .iter()
        .map(|c| format!("{} {} ({} B)", c.name, c.packets, c.bytes))
        .collect();
    if drops.is_empty() {
        format!("{} {state}", f.table)
    } else {
        format!("{} {state}, drops: {}", f.table, drops.join(", "))
    }
}

/// `meshctl debug`.
pub(crate) fn debug_lines(r: &DebugReport) -> Vec<String> {
    let link_line = |l: &Option<mesh_api::DebugLink>, what: &str| match l {
        None => "missing".to_owned(),
        Some(l) => {
            let mut s = format!(
                "{} {}, MTU {}",
                l.name,
                up(l.admin_up, &l.oper_state),
                l.mtu
            );
            if !l.addresses.is_empty() {
                s.push_str(&format!(", {}", l.addresses.join(" ")));
            }
            if l.kind.is_empty() || l.kind == what {
                s
            } else {
                format!("{s} (a {} device)", l.kind)
            }
        }
    };
    let mut out = key_values(&[
        ("node", r.node.clone()),
        ("range", r.range.clone()),
        ("overlay MTU", r.mtu.to_string()),
        ("bridge", link_line(&r.bridge, "bridge")),
        ("tun", link_line(&r.tun, "tun")),
        ("ip_forward", on_off(r.ip_forward)),
        ("bridge-nf-call-iptables", on_off(r.bridge_nf_call_iptables)),
        ("filter", filter_line(r.filter.as_ref())),
        (
            "udp socket",
            format!(
                "{} drops {}, rx queue {} B",
                r.udp.local,
                opt(r.udp.socket_drops),
                opt(r.udp.rx_queue)
            ),
        ),
        (
            "udp host",
            format!(
                "RcvbufErrors {}, InErrors {}, SndbufErrors {}",
                opt(r.udp.rcvbuf_errors),
                opt(r.udp.in_errors),
                opt(r.udp.sndbuf_errors)
            ),
        ),
    ]);
    let rows: Vec<Vec<String>> = r
        .veths
        .iter()
        .map(|v| {
            vec![
                v.link.name.clone(),
                up(v.link.admin_up, &v.link.oper_state),
                v.link.mtu.to_string(),
                v.link.master.clone().unwrap_or_else(|| "-".to_owned()),
                opt(v.peer_ifindex),
                match (&v.netns_name, v.netns_id) {
                    (Some(n), Some(id)) => format!("{n} (id {id})"),
                    (None, Some(id)) => format!("id {id}"),
                    _ => "-".to_owned(),
                },
                match (&v.pod_ifname, v.pod_mtu) {
                    (Some(n), Some(m)) => format!("{n} MTU {m} {}", v.pod_addresses.join(" "))
                        .trim_end()
                        .to_owned(),
                    _ => "-".to_owned(),
                },
            ]
        })
        .collect();
    section(
        &mut out,
        "POD VETHS",
        "none",
        table(
            &[
                "NAME",
                "STATE",
                "MTU",
                "MASTER",
                "PEER IFINDEX",
                "NETNS",
                "POD END",
            ],
            &rows,
        ),
    );
    let others: Vec<Vec<String>> = r
        .ports
        .iter()
        .filter(|p| !r.veths.iter().any(|v| v.link.name == p.name))
        .map(|p| {
            vec![
                p.name.clone(),
                or_dash(&p.kind),
                up(p.admin_up, &p.oper_state),
                p.mtu.to_string(),
            ]
        })
        .collect();
    if !others.is_empty() {
        section(
            &mut out,
            "OTHER BRIDGE PORTS",
            "none",
            table(&["NAME", "KIND", "STATE", "MTU"], &others),
        );
    }
    let rows: Vec<Vec<String>> = r
        .neighbours
        .iter()
        .map(|n| {
            vec![
                n.address.clone(),
                n.device.clone(),
                or_dash(&n.mac),
                n.state.clone(),
            ]
        })
        .collect();
    section(
        &mut out,
        "ARP",
        "none",
        table(&["ADDRESS", "DEVICE", "MAC", "STATE"], &rows),
    );
    let rows: Vec<Vec<String>> = r
        .fdb
        .iter()
        .map(|f| {
            vec![
                f.mac.clone(),
                f.device.clone(),
                opt(f.vlan),
                f.state.clone(),
            ]
        })
        .collect();
    section(
        &mut out,
        "FDB",
        "none",
        table(&["MAC", "DEVICE", "VLAN", "STATE"], &rows),
    );
    let rows: Vec<Vec<String>> = r
        .routes
        .iter()
        .map(|x| {
            vec![
                x.destination.clone(),
                or_dash(&x.device),
                opt(x.gateway.as_ref()),
                opt(x.source.as_ref()),
                x.table.to_string(),
            ]
        })
        .collect();
    section(
        &mut out,
        "ROUTES",
        "none",
        table(
            &["DESTINATION", "DEVICE", "GATEWAY", "SOURCE", "TABLE"],
            &rows,
        ),
    );
    let rows: Vec<Vec<String>> = r
        .offloads
        .iter()
        .map(|o| {
            vec![
                o.device.clone(),
                features_short(&o.features),
                o.gso_max_size.to_string(),
                o.gso_max_segs.to_string(),
                o.gro_max_size.to_string(),
                o.tso_max_size.to_string(),
                on_off(o.tun_vnet_hdr),
                on_off(o.meshd_offload),
                o.source.clone(),
            ]
        })
        .collect();
    section(
        &mut out,
        "OFFLOADS",
        "none",
        table(
            &[
                "DEVICE", "ON", "GSO MAX", "GSO SEGS", "GRO MAX", "TSO MAX", "VNET HDR", "MESHD",
                "SOURCE",
            ],
            &rows,
        ),
    );
    out.push(String::new());
    out.push("FINDINGS".to_owned());
    out.extend(
        findings_lines(&r.findings)
            .into_iter()
            .map(|l| format!("  {l}")),
    );
    if !r.errors.is_empty() {
        out.push(String::new());
        out.push("NOT READ".to_owned());
        out.extend(r.errors.iter().map(|e| format!("  {}", escape(e))));
    }
    out
}

/// [`debug_lines`] as one string ending in a newline.
pub(crate) fn debug_text(r: &DebugReport) -> String {
    with_newline(debug_lines(r))
}

/// `meshctl ping`.
pub(crate) fn ping_lines(p: &PingResult) -> Vec<String> {
    let key = key_fingerprint(&p.public_key);
    let who = if p.name.is_empty() || p.name == key {
        escape(&key).into_owned()
    } else {
        format!("{} ({})", escape(&p.name), escape(&key))
    };
    let path = match p.path {
        PathKind::Direct => format!("direct to {}", escape(&or_dash(&p.endpoint))),
        PathKind::Relay => format!(
            "via relay {}",
            escape(p.relay.as_deref().unwrap_or("(unknown)"))
        ),
    };
    let mut out = vec![format!("PING {} = {who}, {path}", escape(&p.target))];
    for (i, r) in p.rtts_us.iter().enumerate() {
        out.push(format!(
            "probe {}: {}",
            i + 1,
            r.map_or_else(|| "lost".to_owned(), rtt)
        ));
    }
    out.push(format!(
        "{} sent, {} received, {}% loss",
        p.sent,
        p.received,
        p.loss_percent()
    ));
    if let (Some(min), Some(avg), Some(max)) = (p.rtt_min_us, p.rtt_avg_us, p.rtt_max_us) {
        out.push(format!(
            "rtt min/avg/max {} / {} / {}",
            rtt(min),
            rtt(avg),
            rtt(max)
        ));
    }
    out.push(if p.mtu_ok {
        format!("MTU {}: a full-size probe went there and back", p.mtu)
    } else {
        format!(
            "MTU {}: the full-size probe was lost (the path MTU may be below the overlay MTU, or it was just loss)",
            p.mtu
        )
    });
    out
}

/// [`ping_lines`] as one string ending in a newline.
pub(crate) fn ping_text(p: &PingResult) -> String {
    with_newline(ping_lines(p))
}

/// `meshctl connect`.
pub(crate) fn connected_text(c: &EndpointChanged) -> String {
    if c.changed {
        format!(
            "connecting to {}: see `meshctl peers` (whoever answers is saved as a known peer)\n",
            escape(&c.endpoint)
        )
    } else {
        format!("{} is tried already\n", escape(&c.endpoint))
    }
}

/// `meshctl forget`.
pub(crate) fn forgot_text(c: &EndpointChanged) -> String {
    let keys: Vec<String> = c
        .removed_keys
        .iter()
        .map(|k| escape(&key_fingerprint(k)).into_owned())
        .collect();
    let tried = if c.changed {
        "no longer tried"
    } else {
        "was not tried"
    };
    let endpoint = escape(&c.endpoint);
    if keys.is_empty() {
        format!("{endpoint}: {tried}\n")
    } else {
        format!(
            "{endpoint}: {tried}; removed from the known peers: {}\n",
            keys.join(", ")
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::escape::tests::HOSTILE;
    use mesh_api::{DebugLink, DebugRoute, DebugVeth};

    pub(crate) fn sample_ping() -> PingResult {
        PingResult {
            target: "beta".into(),
            name: "beta".into(),
            public_key: "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=".into(),
            endpoint: "198.18.0.2:6788".into(),
            path: PathKind::Direct,
            relay: None,
            sent: 4,
            received: 3,
            rtts_us: vec![Some(420), None, Some(310), Some(1_005)],
            rtt_min_us: Some(310),
            rtt_avg_us: Some(578),
            rtt_max_us: Some(1_005),
            mtu: 1420,
            mtu_ok: true,
        }
    }

    #[test]
    fn ping_shows_each_probe_loss_rtt_and_mtu() {
        assert_eq!(
            ping_lines(&sample_ping()),
            vec![
                "PING beta = beta (Zm9vYmFy), direct to 198.18.0.2:6788",
                "probe 1: 0.42 ms",
                "probe 2: lost",
                "probe 3: 0.31 ms",
                "probe 4: 1.01 ms",
                "4 sent, 3 received, 25% loss",
                "rtt min/avg/max 0.31 ms / 0.58 ms / 1.01 ms",
                "MTU 1420: a full-size probe went there and back",
            ]
        );
        let mut p = sample_ping();
        p.target = "10.32.2.7".into();
        p.path = PathKind::Relay;
        p.relay = Some("gamma".into());
        p.received = 0;
        p.rtts_us = vec![None; 4];
        p.rtt_min_us = None;
        p.rtt_avg_us = None;
        p.rtt_max_us = None;
        p.mtu_ok = false;
        let lines = ping_lines(&p);
        assert_eq!(
            lines[0],
            "PING 10.32.2.7 = beta (Zm9vYmFy), via relay gamma"
        );
        assert_eq!(lines[5], "4 sent, 0 received, 100% loss");
        assert!(lines[6].starts_with("MTU 1420: the full-size probe was lost"));
        assert_eq!(lines.len(), 7, "no rtt line without an answer");
    }

    fn link(name: &str, master: Option<&str>) -> DebugLink {
        DebugLink {
            name: name.into(),
            ifindex: 5,
            kind: "veth".into(),
            admin_up: true,
            oper_state: "up".into(),
            mtu: 1420,
            master: master.map(Into::into),
            mac: "02:00:00:00:00:01".into(),
            addresses: vec![],
        }
    }

    #[test]
    fn debug_lists_every_section_and_the_findings() {
        let r = DebugReport {
            node: "alpha".into(),
            range: "10.32.0.0/12".into(),
            mtu: 1420,
            bridge: Some(DebugLink {
                kind: "bridge".into(),
                addresses: vec!["10.32.1.1/24".into()],
                ..link("mesh0", None)
            }),
            ports: vec![link("vmesh0a", Some("mesh0"))],
            veths: vec![DebugVeth {
                link: link("vmesh0a", Some("mesh0")),
                peer_ifindex: Some(2),
                netns_id: Some(0),
                netns_name: Some("pod-a".into()),
                attached: true,
                pod_ifname: Some("eth0".into()),
                pod_mtu: Some(1420),
                pod_addresses: vec!["10.32.1.10/24".into()],
            }],
            routes: vec![DebugRoute {
                destination: "10.32.0.0/12".into(),
                device: "mesh-tun".into(),
                gateway: None,
                source: Some("10.32.1.1".into()),
                table: 254,
            }],
            ip_forward: Some(true),
            filter: Some(mesh_api::DebugFilter {
                table: "inet mesh".into(),
                counters: vec![
                    mesh_api::DebugFilterCounter {
                        name: "spoofed_source".into(),
                        packets: 3,
                        bytes: 252,
                    },
                    mesh_api::DebugFilterCounter {
                        name: "to_local_pods".into(),
                        packets: 0,
                        bytes: 0,
                    },
                ],
                ..Default::default()
            }),
            findings: vec![Finding {
                severity: Severity::Error,
                check: "veth_mtu".into(),
                subject: "vmesh0b".into(),
                message: "MTU of pod veth vmesh0b (1500) is larger than the overlay MTU (1420)"
                    .into(),
            }],
            ..DebugReport::default()
        };
        let text = debug_text(&r);
        for want in [
            "bridge                   mesh0 up (oper up), MTU 1420, 10.32.1.1/24\n",
            "tun                      missing\n",
            "ip_forward               on\n",
            "filter                   inet mesh intact, drops: spoofed_source 3 (252 B), to_local_pods 0 (0 B)\n",
            "  vmesh0a  up (oper up)  1420  mesh0   2             pod-a (id 0)  eth0 MTU 1420 10.32.1.10/24\n",
            "ARP\n  none\n",
            "  10.32.0.0/12  mesh-tun  -        10.32.1.1  254\n",
            "FINDINGS\n  SEVERITY  CHECK     FINDING\n  error     veth_mtu  MTU of pod veth vmesh0b (1500) is larger than the overlay MTU (1420)\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("NOT READ"));
        let missing = mesh_api::DebugFilter {
            table: "inet mesh".into(),
            state: mesh_api::FilterState::Missing,
            ..Default::default()
        };
        assert_eq!(filter_line(Some(&missing)), "inet mesh MISSING");
        assert_eq!(filter_line(None), "-");
        assert_eq!(features_short(&[]), "-");
        assert_eq!(
            features_short(&[
                "rx-gro".into(),
                "tx-checksum-ip-generic".into(),
                "highdma".into(),
                "tx-tcp-segmentation".into()
            ]),
            "csum,tso,gro"
        );
        assert_eq!(features_short(&["highdma".into()]), "none");
        assert_eq!(findings_lines(&[]), vec!["no problems found"]);
    }

    #[test]
    fn connect_and_forget_say_what_changed() {
        let c = EndpointChanged {
            endpoint: "198.18.0.3:6788".into(),
            changed: true,
            removed_keys: vec![],
        };
        assert!(connected_text(&c).starts_with("connecting to 198.18.0.3:6788"));
        assert_eq!(forgot_text(&c), "198.18.0.3:6788: no longer tried\n");
        let f = EndpointChanged {
            changed: false,
            removed_keys: vec!["Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=".into()],
            ..c
        };
        assert_eq!(
            forgot_text(&f),
            "198.18.0.3:6788: was not tried; removed from the known peers: Zm9vYmFy\n"
        );
    }

    /// A ping of a member named [`HOSTILE`], typed as the operator copied it, at an
    /// endpoint with a CR, through a relay whose name holds a CSI.
    pub(crate) fn hostile_ping() -> PingResult {
        PingResult {
            target: HOSTILE.into(),
            name: HOSTILE.into(),
            endpoint: "198.18.0.2:6788\r".into(),
            path: PathKind::Relay,
            relay: Some("gam\u{9b}2Jma".into()),
            ..sample_ping()
        }
    }

    #[test]
    fn ping_shows_remote_strings_escaped_exact_lines() {
        let lines = ping_lines(&hostile_ping());
        assert_eq!(
            lines[0],
            r"PING ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il = ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il (Zm9vYmFy), via relay gam\u{9b}2Jma"
        );
        let mut direct = hostile_ping();
        direct.path = PathKind::Direct;
        direct.public_key = "\x1b[2Jkey\u{202e}".into();
        direct.name.clear();
        assert_eq!(
            ping_lines(&direct)[0],
            r"PING ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il = \x1b[2Jkey\u{202e}, direct to 198.18.0.2:6788\x0d"
        );
        assert_eq!(lines[1..], ping_lines(&sample_ping())[1..]);
    }

    /// A debug report whose strings quote what a hostile host or member could have put
    /// there: a netns name, a pod's interface name, a finding and an error that quote a
    /// member's name.
    pub(crate) fn hostile_debug() -> DebugReport {
        DebugReport {
            node: HOSTILE.into(),
            range: "10.32.0.0/12".into(),
            mtu: 1420,
            bridge: Some(DebugLink {
                kind: "bridge".into(),
                addresses: vec!["10.32.1.1/24\u{202e}".into()],
                ..link("mesh0", None)
            }),
            ports: vec![link("vmesh0a", Some("mesh0"))],
            veths: vec![DebugVeth {
                link: link("vmesh0a", Some("mesh0")),
                peer_ifindex: Some(2),
                netns_id: Some(0),
                netns_name: Some("pod\x1b[2Ja".into()),
                attached: true,
                pod_ifname: Some("eth0\x07".into()),
                pod_mtu: Some(1420),
                pod_addresses: vec!["10.32.1.10/24".into()],
            }],
            neighbours: vec![mesh_api::DebugNeighbour {
                device: "mesh0".into(),
                address: "10.32.1.10".into(),
                mac: String::new(),
                state: "reachable\x7f".into(),
            }],
            tun: Some(DebugLink {
                kind: "tun".into(),
                ..link("meshtun0", None)
            }),
            fdb: vec![mesh_api::DebugFdb {
                device: "vmesh0a".into(),
                mac: "02:00:00:00:00:02".into(),
                vlan: None,
                state: "permanent".into(),
            }],
            offloads: vec![mesh_api::DebugOffload {
                device: "meshtun0".into(),
                source: "ethtool-netlink".into(),
                features: vec!["rx-gro".into()],
                gso_max_size: 65536,
                gso_max_segs: 64,
                gro_max_size: 65536,
                tso_max_size: 65536,
                tun_vnet_hdr: Some(true),
                meshd_offload: None,
            }],
            routes: vec![DebugRoute {
                destination: "10.32.0.0/12".into(),
                device: "mesh-tun".into(),
                gateway: None,
                source: Some("10.32.1.1".into()),
                table: 254,
            }],
            udp: mesh_api::DebugUdp {
                local: "198.18.0.1:6788".into(),
                ..mesh_api::DebugUdp::default()
            },
            findings: vec![Finding {
                severity: Severity::Warning,
                check: "relayed".into(),
                subject: HOSTILE.into(),
                message: format!("member {HOSTILE} is reached through a relay"),
            }],
            errors: vec![format!("cannot read netns \u{9b}2J{HOSTILE}")],
            ..DebugReport::default()
        }
    }

    #[test]
    fn debug_shows_remote_strings_escaped_exact_lines() {
        let lines = debug_lines(&hostile_debug());
        for want in [
            r"node                     ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il",
            r"bridge                   mesh0 up (oper up), MTU 1420, 10.32.1.1/24\u{202e}",
            r"  vmesh0a  up (oper up)  1420  mesh0   2             pod\x1b[2Ja (id 0)  eth0\x07 MTU 1420 10.32.1.10/24",
            r"  10.32.1.10  mesh0   -    reachable\x7f",
            "  SEVERITY  CHECK    FINDING",
            r"  warning   relayed  member ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il is reached through a relay",
            r"  cannot read netns \u{9b}2Jev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il",
        ] {
            assert!(
                lines.iter().any(|l| l == want),
                "no line {want:?} in\n{}",
                lines.join("\n")
            );
        }
    }

    #[test]
    fn connect_and_forget_show_the_endpoint_escaped() {
        let c = EndpointChanged {
            endpoint: "198.18.0.3:6788\x1b]0;x\x07".into(),
            changed: false,
            removed_keys: vec!["\u{202e}Zm9vYmFyYmF6".into()],
        };
        assert_eq!(
            connected_text(&c),
            "198.18.0.3:6788\\x1b]0;x\\x07 is tried already\n"
        );
        assert_eq!(
            forgot_text(&c),
            "198.18.0.3:6788\\x1b]0;x\\x07: was not tried; removed from the known peers: \\u{202e}Zm9vYmF\n"
        );
    }
}
