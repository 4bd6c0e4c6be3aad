//! The pure half of `meshctl debug`: parsing `/proc/net/udp` and `/proc/net/snmp`, and the
//! findings computed from a gathered [`DebugReport`] and the node's [`Status`]. No I/O, so
//! every check has a unit test over a made-up snapshot.

use mesh_api::{DebugReport, FilterState, Finding, MemberState, PeerState, Severity, Status};

/// `sysfs` flag of a TUN device with the virtio-net header (`IFF_VNET_HDR`).
pub(crate) const IFF_VNET_HDR: u32 = 0x4000;

/// One socket line of `/proc/net/udp` or `/proc/net/udp6`: what `meshctl debug` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UdpSocketLine {
    /// Local port.
    pub(crate) port: u16,
    /// Bytes waiting to be read.
    pub(crate) rx_queue: u64,
    /// The socket's inode (matches `/proc/self/fd/N -> socket:[inode]`).
    pub(crate) inode: u64,
    /// Datagrams dropped on this socket.
    pub(crate) drops: u64,
}

/// Parses one line of `/proc/net/udp{,6}` (`None` for the header or a malformed line):
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
/// ref pointer drops`, addresses as `HEXIP:HEXPORT`, queues in hex, the rest decimal.
pub(crate) fn parse_udp_line(line: &str) -> Option<UdpSocketLine> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 13 || !f[0].ends_with(':') {
        return None;
    }
    let (_, port) = f[1].rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let (_, rx) = f[4].split_once(':')?;
    Some(UdpSocketLine {
        port,
        rx_queue: u64::from_str_radix(rx, 16).ok()?,
        inode: f[9].parse().ok()?,
        drops: f[12].parse().ok()?,
    })
}

/// The socket in `table` (a whole `/proc/net/udp{,6}`) bound to `port` whose inode is one of
/// `inodes` (meshd's own sockets); failing inodes, the first bound to `port`.
pub(crate) fn find_udp_socket(table: &str, port: u16, inodes: &[u64]) -> Option<UdpSocketLine> {
    let lines: Vec<UdpSocketLine> = table
        .lines()
        .filter_map(parse_udp_line)
        .filter(|l| l.port == port)
        .collect();
    lines
        .iter()
        .find(|l| inodes.contains(&l.inode))
        .or_else(|| lines.first())
        .copied()
}

/// The value of `field` in the `Udp:` lines of `/proc/net/snmp` (a header line of names,
/// then a line of values).
pub(crate) fn snmp_udp(snmp: &str, field: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let at = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Whether the table listed now (`None`: no table) is the one meshd installed, and if not,
/// the first chain, rule or counter that one side has and the other lacks (both are shapes
/// of `mesh_datapath::InstalledFilter`: nft's JSON objects without handles or counts).
pub(crate) fn filter_state(
    expected: &[String],
    now: Option<&[String]>,
) -> (FilterState, Option<String>) {
    let Some(now) = now else {
        return (FilterState::Missing, None);
    };
    if now == expected {
        return (FilterState::Intact, None);
    }
    let first = expected
        .iter()
        .zip(now)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(now.len()));
    let difference = match (expected.get(first), now.get(first)) {
        (Some(want), Some(got)) => format!("expected {want}, found {got}"),
        (Some(want), None) => format!("missing {want}"),
        (None, Some(got)) => format!("added {got}"),
        (None, None) => String::new(),
    };
    (FilterState::Changed, Some(difference))
}

fn finding(severity: Severity, check: &str, subject: &str, message: String) -> Finding {
    Finding {
        severity,
        check: check.to_owned(),
        subject: subject.to_owned(),
        message,
    }
}

/// Every problem the snapshot shows, worst first. `bridge` and `tun` are the names meshd
/// was configured with (the report may lack the links).
pub(crate) fn findings(report: &DebugReport, status: &Status) -> Vec<Finding> {
    use Severity::{Error, Info, Warning};
    let node = &status.node;
    let (bridge, tun, mtu) = (node.bridge.as_str(), node.tun.as_str(), report.mtu);
    let mut out = Vec::new();
    if let Some(f) = &report.filter {
        let table = f.table.as_str();
        match f.state {
            FilterState::Intact => {}
            FilterState::Missing => out.push(finding(
                Error,
                "filter_missing",
                table,
                format!(
                    "nftables table {table} is missing: pods are reachable in clear from any host \
                     that routes the cluster range via this node; restart meshd (it installs it)"
                ),
            )),
            FilterState::Changed => out.push(finding(
                Error,
                "filter_changed",
                table,
                format!(
                    "nftables table {table} is not the one meshd installed ({}): see `nft list \
                     table {table}`; restart meshd to put its own back",
                    f.difference.as_deref().unwrap_or("it differs")
                ),
            )),
            FilterState::Unreadable => out.push(finding(
                Error,
                "filter_unreadable",
                table,
                format!(
                    "cannot check nftables table {table}: {}",
                    f.error.as_deref().unwrap_or("nft failed")
                ),
            )),
        }
    }
    if report.ip_forward == Some(false) {
        out.push(finding(
            Error,
            "ip_forward",
            "net.ipv4.ip_forward",
            "ip_forward is off: the host drops pod traffic between the bridge and the TUN device; \
             run `sysctl -w net.ipv4.ip_forward=1` (and find what turned it off: meshd sets it \
             at start)"
                .to_owned(),
        ));
    }
    match &report.bridge {
        None => out.push(finding(
            Error,
            "bridge_missing",
            bridge,
            format!(
                "bridge {bridge} is missing: pods have no way out; restart meshd (it creates it)"
            ),
        )),
        Some(b) => {
            if !b.admin_up {
                out.push(finding(
                    Error,
                    "bridge_down",
                    bridge,
                    format!("bridge {bridge} is down: run `ip link set dev {bridge} up`"),
                ));
            }
            if b.mtu > mtu {
                out.push(finding(
                    Warning,
                    "bridge_mtu",
                    bridge,
                    format!(
                        "MTU of bridge {bridge} ({}) is larger than the overlay MTU ({mtu}): run \
                         `ip link set dev {bridge} mtu {mtu}`",
                        b.mtu
                    ),
                ));
            }
            if !node.gateway.is_empty() && !b.addresses.contains(&node.gateway) {
                out.push(finding(
                    Error,
                    "gateway_missing",
                    bridge,
                    format!(
                        "bridge {bridge} lacks the gateway address {}: pods cannot reach their \
                         gateway; run `ip addr add {} dev {bridge}` or restart meshd",
                        node.gateway, node.gateway
                    ),
                ));
            }
        }
    }
    match &report.tun {
        None => out.push(finding(
            Error,
            "tun_missing",
            tun,
            format!("TUN device {tun} is missing: nothing leaves this node; restart meshd"),
        )),
        Some(t) if !t.admin_up => out.push(finding(
            Error,
            "tun_down",
            tun,
            format!("TUN device {tun} is down: run `ip link set dev {tun} up`"),
        )),
        Some(_) => {}
    }
    let to_tun = report
        .routes
        .iter()
        .any(|r| r.destination == report.range && r.device == tun && r.table == MAIN_TABLE);
    if report.tun.is_some() && !to_tun {
        out.push(finding(
            Error,
            "range_route_missing",
            &report.range,
            format!(
                "no route for the cluster range {} into {tun} in the main table: traffic to other \
                 nodes' pods goes elsewhere; run `ip route replace {} dev {tun}` or restart meshd",
                report.range, report.range
            ),
        ));
    }
    for r in &report.routes {
        if r.table == MAIN_TABLE
            && r.destination != report.range
            && r.device != tun
            && r.device != bridge
        {
            out.push(finding(
                Warning,
                "foreign_route",
                &r.destination,
                format!(
                    "route {} via {} overlaps the cluster range {} and does not go to {tun} or \
                     {bridge}: pod traffic may leak there; remove it with `ip route del {}` if it \
                     is not yours",
                    r.destination, r.device, report.range, r.destination
                ),
            ));
        }
    }
    for v in &report.veths {
        let name = v.link.name.as_str();
        match (&v.link.master, v.attached) {
            (_, true) => {}
            (None, false) => out.push(finding(
                Error,
                "veth_detached",
                name,
                format!(
                    "pod veth {name} is not attached to {bridge}: its pod is cut off; run `ip link \
                     set dev {name} master {bridge}`"
                ),
            )),
            (Some(other), false) => out.push(finding(
                Error,
                "veth_detached",
                name,
                format!(
                    "pod veth {name} is attached to {other}, not {bridge}: its pod is cut off; run \
                     `ip link set dev {name} master {bridge}`"
                ),
            )),
        }
        if !v.link.admin_up {
            out.push(finding(
                Error,
                "veth_down",
                name,
                format!("pod veth {name} is down: run `ip link set dev {name} up`"),
            ));
        }
        if v.link.mtu > mtu {
            out.push(finding(
                Error,
                "veth_mtu",
                name,
                format!(
                    "MTU of pod veth {name} ({}) is larger than the overlay MTU ({mtu}): full-size \
                     packets of its pod are dropped; set the MTU of both ends to {mtu} (`ip link \
                     set dev {name} mtu {mtu}`, and eth0 inside the pod)",
                    v.link.mtu
                ),
            ));
        }
        if let Some(pod_mtu) = v.pod_mtu.filter(|m| *m > mtu) {
            let pod_if = v.pod_ifname.as_deref().unwrap_or("eth0");
            out.push(finding(
                Error,
                "pod_mtu",
                name,
                format!(
                    "MTU of {pod_if} in the pod behind {name} ({pod_mtu}) is larger than the \
                     overlay MTU ({mtu}): full-size packets of that pod are dropped; set it to \
                     {mtu} (`ip -n {} link set dev {pod_if} mtu {mtu}`)",
                    v.netns_name.as_deref().unwrap_or("POD_NETNS")
                ),
            ));
        }
        if v.netns_id.is_none() {
            out.push(finding(
                Warning,
                "veth_no_netns",
                name,
                format!(
                    "pod veth {name} does not lead into another network namespace: its pod end is \
                     gone or still on the host; delete it with `ip link del {name}` if its pod is \
                     gone"
                ),
            ));
        }
    }
    for n in &report.neighbours {
        if n.state == "failed" {
            out.push(finding(
                Warning,
                "arp_failed",
                &n.address,
                format!(
                    "ARP for {} on {} failed: no pod answers there (pod gone, or its veth \
                     detached or down)",
                    n.address, n.device
                ),
            ));
        }
    }
    if let Some(drops) = report.udp.socket_drops.filter(|d| *d > 0) {
        out.push(finding(
            Warning,
            "udp_socket_drops",
            &report.udp.local,
            format!(
                "meshd's UDP socket {} dropped {drops} datagrams (receive buffer full): raise \
                 `net.core.rmem_max` (meshd asks for 4 MiB) or give meshd more CPU",
                report.udp.local
            ),
        ));
    }
    if let Some(n) = report.udp.rcvbuf_errors.filter(|n| *n > 0) {
        out.push(finding(
            Info,
            "udp_rcvbuf_errors",
            "",
            format!(
                "the host dropped {n} UDP datagrams for full receive buffers (any socket; \
                 /proc/net/snmp RcvbufErrors): if meshd's socket shows drops too, raise \
                 `net.core.rmem_max`"
            ),
        ));
    }
    if report.bridge_nf_call_iptables == Some(true) {
        out.push(finding(
            Info,
            "bridge_nf_call_iptables",
            "net.bridge.bridge-nf-call-iptables",
            "bridged pod traffic passes iptables (br_netfilter is loaded and \
             bridge-nf-call-iptables is 1): a DROP rule in FORWARD cuts pods off from each other"
                .to_owned(),
        ));
    }
    if report
        .offloads
        .iter()
        .any(|o| o.device == tun && o.meshd_offload == Some(false))
    {
        out.push(finding(
            Info,
            "tun_offload_off",
            tun,
            format!(
                "offloads of {tun} are off (meshd --offload off, or the kernel refused them): one \
                 packet per system call, so bulk transfers are slower"
            ),
        ));
    }
    let name_of = |key: &str| {
        status
            .members
            .iter()
            .find(|m| m.public_key == key && !m.name.is_empty())
            .map_or_else(|| mesh_api::key_fingerprint(key), |m| m.name.clone())
    };
    for p in &status.peers {
        let who = if p.name.is_empty() {
            if p.public_key.is_empty() {
                p.endpoint.clone()
            } else {
                mesh_api::key_fingerprint(&p.public_key)
            }
        } else {
            p.name.clone()
        };
        if let Some(relay) = &p.relay {
            out.push(finding(
                Warning,
                "peer_relayed",
                &who,
                format!(
                    "peer {who} unreachable directly at {}, using relay {}: check that UDP \
                     between the two hosts passes (firewall, NAT, --advertise)",
                    p.endpoint,
                    name_of(relay)
                ),
            ));
        }
        match p.state {
            PeerState::Handshaking if p.handshakes == 0 => out.push(finding(
                Warning,
                "peer_stuck_handshake",
                &who,
                format!(
                    "peer {who} stuck in handshake at {}: nothing answers, or it has another \
                     cluster secret; check that its meshd runs, that UDP to that port passes and \
                     that both use the same --secret-file",
                    p.endpoint
                ),
            )),
            PeerState::Expired => out.push(finding(
                Error,
                "peer_unreachable",
                &who,
                format!(
                    "peer {who} at {} is unreachable: its session expired and re-handshakes \
                     fail; check that its meshd runs and UDP to it passes",
                    p.endpoint
                ),
            )),
            _ => {}
        }
    }
    for m in &status.members {
        if m.state == MemberState::Dead {
            out.push(finding(
                Warning,
                "member_dead",
                &m.name,
                format!(
                    "member {} is dead (unreachable {}s): its pods are unreachable; if it is gone \
                     for good, `meshctl rmpeer {}` frees its blocks",
                    m.name,
                    m.unreachable_secs.unwrap_or(0),
                    if m.name.is_empty() {
                        &m.public_key
                    } else {
                        &m.name
                    }
                ),
            ));
        }
    }
    for w in &status.warnings {
        out.push(finding(Warning, "meshd", "", w.clone()));
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.check.cmp(&b.check))
            .then_with(|| a.subject.cmp(&b.subject))
    });
    out
}

/// The kernel's main routing table.
pub(crate) const MAIN_TABLE: u32 = 254;

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::{DebugLink, DebugRoute, DebugVeth, NodeStatus, PeerStatus};

    fn link(name: &str, kind: &str, mtu: u32, master: Option<&str>) -> DebugLink {
        DebugLink {
            name: name.into(),
            ifindex: 1,
            kind: kind.into(),
            admin_up: true,
            oper_state: "up".into(),
            mtu,
            master: master.map(Into::into),
            mac: String::new(),
            addresses: vec![],
        }
    }

    fn status() -> Status {
        Status {
            node: NodeStatus {
                name: "a".into(),
                public_key: "AAAA".into(),
                listen: "198.18.0.1:6788".into(),
                range: "10.32.0.0/12".into(),
                blocks: vec!["10.32.1.0/24".into()],
                bridge: "mesh0".into(),
                gateway: "10.32.1.1/24".into(),
                tun: "mesh-tun".into(),
                mtu: 1420,
                cipher: String::new(),
                uptime_secs: 1,
                version: String::new(),
            },
            peers: vec![],
            drops: vec![],
            datapath: Default::default(),
            members: vec![],
            gossip: Default::default(),
            warnings: vec![],
            handshakes: Default::default(),
            dns: None,
        }
    }

    /// A healthy node: no finding at all.
    fn healthy() -> DebugReport {
        let mut bridge = link("mesh0", "bridge", 1420, None);
        bridge.addresses = vec!["10.32.1.1/24".into()];
        DebugReport {
            node: "a".into(),
            range: "10.32.0.0/12".into(),
            mtu: 1420,
            bridge: Some(bridge),
            ports: vec![link("vmesh01", "veth", 1420, Some("mesh0"))],
            veths: vec![DebugVeth {
                link: link("vmesh01", "veth", 1420, Some("mesh0")),
                peer_ifindex: Some(2),
                netns_id: Some(0),
                netns_name: Some("pod".into()),
                attached: true,
                pod_ifname: Some("eth0".into()),
                pod_mtu: Some(1420),
                pod_addresses: vec!["10.32.1.10/24".into()],
            }],
            tun: Some(link("mesh-tun", "tun", 1420, None)),
            routes: vec![DebugRoute {
                destination: "10.32.0.0/12".into(),
                device: "mesh-tun".into(),
                gateway: None,
                source: None,
                table: MAIN_TABLE,
            }],
            ip_forward: Some(true),
            filter: Some(mesh_api::DebugFilter {
                table: "inet mesh".into(),
                ..Default::default()
            }),
            ..DebugReport::default()
        }
    }

    fn shape(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn the_filter_state_compares_the_listing_with_what_meshd_installed() {
        let installed = shape(&[r#"{"chain":"prerouting"}"#, r#"{"rule":"drop"}"#]);
        assert_eq!(
            filter_state(&installed, Some(&installed)),
            (FilterState::Intact, None)
        );
        assert_eq!(filter_state(&installed, None), (FilterState::Missing, None));
        // A rule taken out (`nft delete rule`), one added, one replaced.
        let deleted = shape(&[r#"{"chain":"prerouting"}"#]);
        assert_eq!(
            filter_state(&installed, Some(&deleted)),
            (
                FilterState::Changed,
                Some(r#"missing {"rule":"drop"}"#.into())
            )
        );
        let added = shape(&[
            r#"{"chain":"prerouting"}"#,
            r#"{"rule":"drop"}"#,
            r#"{"rule":"accept"}"#,
        ]);
        assert_eq!(
            filter_state(&installed, Some(&added)),
            (
                FilterState::Changed,
                Some(r#"added {"rule":"accept"}"#.into())
            )
        );
        let replaced = shape(&[r#"{"chain":"prerouting"}"#, r#"{"rule":"accept"}"#]);
        assert_eq!(
            filter_state(&installed, Some(&replaced)),
            (
                FilterState::Changed,
                Some(r#"expected {"rule":"drop"}, found {"rule":"accept"}"#.into())
            )
        );
    }

    #[test]
    fn a_missing_changed_or_unreadable_filter_is_an_error() {
        for (state, check, words) in [
            (
                FilterState::Missing,
                "filter_missing",
                "is missing: pods are reachable in clear",
            ),
            (
                FilterState::Changed,
                "filter_changed",
                "is not the one meshd installed (missing x)",
            ),
            (
                FilterState::Unreadable,
                "filter_unreadable",
                "cannot check nftables table inet mesh: nft gone",
            ),
        ] {
            let mut r = healthy();
            let f = r.filter.as_mut().unwrap();
            f.state = state;
            f.difference = Some("missing x".into());
            f.error = Some("nft gone".into());
            let got = findings(&r, &status());
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(
                (
                    got[0].severity,
                    got[0].check.as_str(),
                    got[0].subject.as_str()
                ),
                (Severity::Error, check, "inet mesh")
            );
            assert!(got[0].message.contains(words), "{}", got[0].message);
        }
        // A report without the filter (an older meshd's) has no finding about it.
        let mut r = healthy();
        r.filter = None;
        assert_eq!(findings(&r, &status()), vec![]);
    }

    fn checks(r: &DebugReport, s: &Status) -> Vec<(Severity, String, String)> {
        findings(r, s)
            .into_iter()
            .map(|f| (f.severity, f.check, f.subject))
            .collect()
    }

    #[test]
    fn a_healthy_node_has_no_finding() {
        assert_eq!(findings(&healthy(), &status()), vec![]);
    }

    #[test]
    fn a_detached_veth_is_an_error_naming_the_fix() {
        let mut r = healthy();
        r.veths[0].attached = false;
        r.veths[0].link.master = None;
        let f = findings(&r, &status());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].severity, f[0].check.as_str(), f[0].subject.as_str()),
            (Severity::Error, "veth_detached", "vmesh01")
        );
        assert_eq!(
            f[0].message,
            "pod veth vmesh01 is not attached to mesh0: its pod is cut off; run `ip link set dev \
             vmesh01 master mesh0`"
        );
        r.veths[0].link.master = Some("br9".into());
        assert!(
            findings(&r, &status())[0]
                .message
                .contains("attached to br9, not mesh0")
        );
    }

    #[test]
    fn forwarding_off_mtu_too_large_and_missing_pieces_are_errors() {
        let mut r = healthy();
        r.ip_forward = Some(false);
        r.veths[0].link.mtu = 1500;
        r.veths[0].link.admin_up = false;
        let got = checks(&r, &status());
        assert_eq!(
            got,
            vec![
                (
                    Severity::Error,
                    "ip_forward".into(),
                    "net.ipv4.ip_forward".into()
                ),
                (Severity::Error, "veth_down".into(), "vmesh01".into()),
                (Severity::Error, "veth_mtu".into(), "vmesh01".into()),
            ]
        );
        let f = findings(&r, &status());
        assert!(f[0].message.starts_with("ip_forward is off"));
        assert!(
            f[2].message.starts_with(
                "MTU of pod veth vmesh01 (1500) is larger than the overlay MTU (1420)"
            )
        );

        let mut r = healthy();
        r.veths[0].pod_mtu = Some(9000);
        let f = findings(&r, &status());
        assert_eq!((f.len(), f[0].check.as_str()), (1, "pod_mtu"), "{f:?}");
        assert!(f[0].message.starts_with(
            "MTU of eth0 in the pod behind vmesh01 (9000) is larger than the overlay MTU (1420)"
        ));
        assert!(
            f[0].message
                .contains("`ip -n pod link set dev eth0 mtu 1420`")
        );

        let mut r = healthy();
        r.bridge = None;
        r.tun = None;
        r.routes.clear();
        let got = checks(&r, &status());
        assert_eq!(
            got,
            vec![
                (Severity::Error, "bridge_missing".into(), "mesh0".into()),
                (Severity::Error, "tun_missing".into(), "mesh-tun".into()),
            ],
            "no route finding without a TUN device: that one says it all"
        );
        let mut r = healthy();
        r.routes[0].device = "eth0".into();
        r.bridge.as_mut().unwrap().addresses.clear();
        let got = checks(&r, &status());
        assert_eq!(got[0].1, "gateway_missing");
        assert_eq!(got[1].1, "range_route_missing");
    }

    #[test]
    fn peers_relayed_stuck_or_expired_are_named_with_their_relay() {
        let mut s = status();
        let mut relayed =
            PeerStatus::address_only("198.18.0.2:6788".into(), PeerState::Established);
        relayed.name = "b".into();
        relayed.public_key = "BBBB".into();
        relayed.handshakes = 3;
        relayed.relay = Some("CCCC".into());
        let stuck = PeerStatus::address_only("198.18.0.9:6788".into(), PeerState::Handshaking);
        let mut gone = PeerStatus::address_only("198.18.0.4:6788".into(), PeerState::Expired);
        gone.name = "d".into();
        s.peers = vec![relayed, stuck, gone];
        s.members = vec![mesh_api::MemberStatus {
            name: "c".into(),
            public_key: "CCCC".into(),
            endpoint: None,
            blocks: vec![],
            state: MemberState::Alive,
            neighbour: true,
            session: true,
            unreachable_secs: None,
        }];
        let f = findings(&healthy(), &s);
        let got: Vec<_> = f
            .iter()
            .map(|f| (f.severity, f.check.as_str(), f.subject.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Severity::Error, "peer_unreachable", "d"),
                (Severity::Warning, "peer_relayed", "b"),
                (Severity::Warning, "peer_stuck_handshake", "198.18.0.9:6788"),
            ]
        );
        assert!(
            f[1].message
                .starts_with("peer b unreachable directly at 198.18.0.2:6788, using relay c"),
            "{}",
            f[1].message
        );
        assert!(
            f[2].message
                .starts_with("peer 198.18.0.9:6788 stuck in handshake")
        );
    }

    #[test]
    fn socket_drops_and_host_counters_are_reported() {
        let mut r = healthy();
        r.udp.local = "198.18.0.1:6788".into();
        r.udp.socket_drops = Some(12);
        r.udp.rcvbuf_errors = Some(40);
        let got = checks(&r, &status());
        assert_eq!(
            got,
            vec![
                (
                    Severity::Warning,
                    "udp_socket_drops".into(),
                    "198.18.0.1:6788".into()
                ),
                (Severity::Info, "udp_rcvbuf_errors".into(), String::new()),
            ]
        );
        r.udp.socket_drops = Some(0);
        r.udp.rcvbuf_errors = Some(0);
        assert_eq!(findings(&r, &status()), vec![]);
    }

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1111 2 0000000000000000 0
  456: 010012C6:1A84 00000000:0000 07 00000000:00000A00 00:00000000 00000000     0        0 2222 2 0000000000000000 17
  789: 00000000:1A84 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3333 2 0000000000000000 5
";

    #[test]
    fn proc_net_udp_lines_parse_and_meshds_socket_is_found_by_inode() {
        assert_eq!(parse_udp_line(UDP.lines().next().unwrap()), None, "header");
        assert_eq!(parse_udp_line("  1: 00000000:0035"), None, "truncated");
        assert_eq!(
            parse_udp_line(UDP.lines().nth(2).unwrap()),
            Some(UdpSocketLine {
                port: 6788,
                rx_queue: 0xa00,
                inode: 2222,
                drops: 17
            })
        );
        assert_eq!(find_udp_socket(UDP, 6788, &[3333]).unwrap().drops, 5);
        assert_eq!(find_udp_socket(UDP, 6788, &[]).unwrap().inode, 2222);
        assert_eq!(find_udp_socket(UDP, 9999, &[1111]), None);
    }

    #[test]
    fn snmp_udp_counters_are_read_by_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 100 2 7 90 5 1 0 0 0\nUdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
        assert_eq!(snmp_udp(snmp, "RcvbufErrors"), Some(5));
        assert_eq!(snmp_udp(snmp, "InErrors"), Some(7));
        assert_eq!(snmp_udp(snmp, "SndbufErrors"), Some(1));
        assert_eq!(snmp_udp(snmp, "Nope"), None);
        assert_eq!(snmp_udp("Ip: a\nIp: 1\n", "InErrors"), None);
    }
}
