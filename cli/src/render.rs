//! Turns API answers into text for people: the `status` view, byte sizes,
//! durations and aligned tables. Pure functions, no I/O.
//!
//! Every value is escaped where it is rendered ([`crate::escape`]): [`table`] and
//! [`key_values`] escape each cell before measuring it, so columns stay aligned; a value put
//! into a free-form line is escaped by the code that formats the line.

use mesh_api::{DropCount, MemberState, PeerState, PeerStatus, Status, key_fingerprint};

use crate::escape::{escape, escaped};

/// Separator between table columns.
const GAP: &str = "  ";

/// One line on how packets move: offloads, and packets per system call both ways.
fn datapath(d: &mesh_api::DatapathStatus) -> String {
    let per = |n: u64, calls: u64| {
        if calls == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", n as f64 / calls as f64)
        }
    };
    format!(
        "offload {}, GSO {}, GRO {}; per call: TUN read {}, UDP send {}, UDP recv {}, TUN write {}; socket buffers {} rcv / {} snd",
        if d.tun_offload { "on" } else { "off" },
        d.udp_gso_segments,
        d.udp_gro_segments,
        per(d.tun_read_packets, d.tun_reads),
        per(d.udp_send_datagrams, d.udp_sends),
        per(d.udp_recv_datagrams, d.udp_recvs),
        per(d.tun_write_packets, d.tun_writes),
        mib(d.udp_rcvbuf),
        mib(d.udp_sndbuf),
    )
}

/// `8.0 MiB`; `-` for 0 (unknown).
fn mib(bytes: u64) -> String {
    if bytes == 0 {
        "-".to_owned()
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}

/// `1 neighbour`, `2 neighbours`.
fn count(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// One line on the cluster as gossip shows it: the other members by state (this node not
/// counted), then this node's gossip neighbours and records held. `-` when meshd reports no
/// members at all (not even itself).
fn members(status: &Status) -> String {
    if status.members.is_empty() {
        return "-".to_owned();
    }
    let (mut alive, mut dead, mut left) = (0u64, 0u64, 0u64);
    for m in &status.members {
        match m.state {
            MemberState::Local => {}
            MemberState::Alive => alive += 1,
            MemberState::Dead => dead += 1,
            MemberState::Left => left += 1,
        }
    }
    let parts: Vec<String> = [(alive, "alive"), (dead, "dead"), (left, "left")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    let by_state = if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    };
    format!(
        "{}{by_state}; gossip: {}, {}",
        alive + dead + left,
        count(status.gossip.neighbours, "neighbour"),
        count(status.gossip.records, "record"),
    )
}

/// The whole `meshctl status` view, one `String` per line (no trailing newline).
/// One line on the DNS server: where, the zone, records (served), queries; `off` without.
fn dns(status: &Status) -> String {
    match &status.dns {
        None => "off".to_owned(),
        Some(d) => {
            let served = if d.served == d.records {
                String::new()
            } else {
                format!(", {} served (owner dead)", d.served)
            };
            format!(
                "{} zone {}, {}{served}, {}",
                if d.listen.is_empty() {
                    "not listening yet (no block):".to_owned()
                } else {
                    format!("{},", d.listen)
                },
                or_dash(&d.zone),
                count(d.records, "record"),
                if d.queries == 1 {
                    "1 query".to_owned()
                } else {
                    format!("{} queries", d.queries)
                },
            )
        }
    }
}

pub(crate) fn status_lines(status: &Status) -> Vec<String> {
    let node = &status.node;
    let mut lines = key_values(&[
        ("node", or_dash(&node.name)),
        ("public key", or_dash(&node.public_key)),
        ("listen", or_dash(&node.listen)),
        ("range", or_dash(&node.range)),
        ("blocks", list_or_dash(&node.blocks)),
        (
            "bridge",
            format!(
                "{}, gateway {}",
                or_dash(&node.bridge),
                or_dash(&node.gateway)
            ),
        ),
        ("tun", or_dash(&node.tun)),
        ("mtu", node.mtu.to_string()),
        ("cipher", or_dash(&node.cipher)),
        ("version", or_dash(&node.version)),
        ("uptime", duration(node.uptime_secs)),
        ("datapath", datapath(&status.datapath)),
        ("members", members(status)),
        ("dns", dns(status)),
    ]);

    lines.push(String::new());
    if status.peers.is_empty() {
        lines.push("no peers".to_owned());
    } else {
        let rows: Vec<Vec<String>> = status.peers.iter().map(peer_row).collect();
        lines.extend(table(
            &[
                "NAME",
                "ENDPOINT",
                "STATE",
                "BLOCKS",
                "HANDSHAKE",
                "RTT",
                "RX",
                "TX",
                "DROPS",
            ],
            &rows,
        ));
    }

    if status.drops.iter().any(|d| d.packets > 0) {
        lines.push(String::new());
        lines.push(format!("node drops: {}", escape(&drops(&status.drops))));
    }
    let warnings = warnings(status);
    if !warnings.is_empty() {
        lines.push(String::new());
        lines.extend(warnings.into_iter().map(|w| format!("warning: {w}")));
    }
    lines
}

/// What someone debugging the node should look at first, one line each, escaped.
pub(crate) fn warnings(status: &Status) -> Vec<String> {
    use mesh_api::PeerState;
    // meshd's own first: they name their fix (e.g. another cluster's address ring).
    let mut out: Vec<String> = status.warnings.iter().map(|w| escaped(w)).collect();
    for p in &status.peers {
        let who = if p.name.is_empty() {
            escaped(&p.endpoint)
        } else {
            format!("{} ({})", escape(&p.name), escape(&p.endpoint))
        };
        let port = escape(p.endpoint.rsplit(':').next().unwrap_or("6788"));
        match p.state {
            PeerState::Handshaking => out.push(format!(
                "{who}: no session yet: is meshd running there, is UDP {port} open both ways, \
                 is it the same cluster secret?"
            )),
            PeerState::Expired => out.push(format!(
                "{who}: the session expired and new handshakes get no answer: is the node down?"
            )),
            PeerState::Idle | PeerState::Established => {}
        }
        if let Some(relay) = &p.relay {
            out.push(format!(
                "{who}: unreachable directly, traffic goes through relay {}: check that UDP {port} is open between the two (NAT, firewall)",
                escape(relay)
            ));
        }
    }
    for m in status
        .members
        .iter()
        .filter(|m| m.state == MemberState::Dead)
    {
        let who = format!(
            "member {} ({})",
            escape(&name_or_unknown(&m.name)),
            escape(&or_dash(&key_fingerprint(&m.public_key)))
        );
        out.push(match m.unreachable_secs {
            Some(secs) => format!("{who} dead: unreachable for {}", duration(secs)),
            None => format!("{who} dead"),
        });
    }
    let failed = status.total_drops("handshake_failed");
    if failed > 0 {
        out.push(format!(
            "{failed} handshake messages failed: a node with another cluster secret (or an \
             attacker) is trying to connect"
        ));
    }
    for (reason, what) in [
        (
            "udp_send",
            "datagrams could not be sent: check the underlay route to the peers",
        ),
        (
            "tun_write",
            "packets could not be written to the TUN device",
        ),
        (
            "no_route",
            "packets had no owner: a destination inside the range that no peer announced",
        ),
    ] {
        let n = status.total_drops(reason);
        if n > 0 {
            out.push(format!("{n} {what} ({reason})"));
        }
    }
    out
}

/// The `meshctl status` view as one string ending in a newline.
pub(crate) fn status_text(status: &Status) -> String {
    let mut out = status_lines(status).join("\n");
    out.push('\n');
    out
}

fn peer_row(peer: &PeerStatus) -> Vec<String> {
    vec![
        peer_name(peer),
        or_dash(&peer.endpoint),
        state(peer.state).to_owned(),
        list_or_dash(&peer.blocks),
        peer.last_handshake_secs_ago
            .map_or_else(|| "never".to_owned(), |s| format!("{} ago", duration(s))),
        peer.rtt_us.map_or_else(|| "-".to_owned(), rtt),
        traffic(peer.rx_packets, peer.rx_bytes),
        traffic(peer.tx_packets, peer.tx_bytes),
        drops(&peer.drops),
    ]
}

/// A peer that has not announced a name yet is "(unknown)"; one known only by
/// its address (no key yet) is "(unknown)" too, its ENDPOINT tells it apart.
pub(crate) fn peer_name(peer: &PeerStatus) -> String {
    name_or_unknown(&peer.name)
}

/// `(unknown)` for a node that has not announced a name.
pub(crate) fn name_or_unknown(name: &str) -> String {
    if name.is_empty() {
        "(unknown)".to_owned()
    } else {
        name.to_owned()
    }
}

pub(crate) fn member_state(state: MemberState) -> &'static str {
    match state {
        MemberState::Local => "local",
        MemberState::Alive => "alive",
        MemberState::Dead => "dead",
        MemberState::Left => "left",
    }
}

pub(crate) fn state(state: PeerState) -> &'static str {
    match state {
        PeerState::Idle => "idle",
        PeerState::Handshaking => "handshaking",
        PeerState::Established => "established",
        PeerState::Expired => "expired",
    }
}

/// Round-trip time in milliseconds with two decimals, rounded half up.
pub(crate) fn rtt(us: u64) -> String {
    let hundredths = us.saturating_add(5) / 10;
    format!("{}.{:02} ms", hundredths / 100, hundredths % 100)
}

/// `packets pkt / size`, e.g. `12 pkt / 1.5 KiB`.
pub(crate) fn traffic(packets: u64, bytes: u64) -> String {
    format!("{packets} pkt / {}", human_bytes(bytes))
}

/// Non-zero drop counters as `reason=packets` separated by spaces, or `-`.
pub(crate) fn drops(counts: &[DropCount]) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|d| d.packets > 0)
        .map(|d| format!("{}={}", d.reason, d.packets))
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Binary units with one decimal: `512 B`, `1.5 KiB`, `3.0 MiB`, ...
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Integer arithmetic in tenths of a unit keeps the output exact and testable.
    let mut unit = 0;
    let mut scale: u128 = 1024;
    while unit + 1 < UNITS.len() && u128::from(bytes) >= scale * 1024 {
        scale *= 1024;
        unit += 1;
    }
    let tenths = (u128::from(bytes) * 10 + scale / 2) / scale;
    // Rounding can carry into the next unit (1023.96 KiB → 1024.0 KiB); say 1.0 MiB instead.
    if tenths >= 10240 && unit + 1 < UNITS.len() {
        return format!("1.0 {}", UNITS[unit + 1]);
    }
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// Short duration for people, two units at most: `42s`, `5m 3s`, `2h 5m`, `3d 4h`.
pub(crate) fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

pub(crate) fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

pub(crate) fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

/// `label  value` lines with the values aligned; each value escaped.
pub(crate) fn key_values(pairs: &[(&str, String)]) -> Vec<String> {
    let width = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| {
            format!("{}{GAP}{}", pad(k, width), escape(v))
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// A left-aligned table: a header line then one line per row, columns as wide as
/// their widest cell, no trailing spaces. Every cell is escaped first, and its width is
/// that of the escaped text, as shown.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| escaped(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let joined: Vec<String> = cells.zip(&widths).map(|(cell, &w)| pad(cell, w)).collect();
        joined.join(GAP).trim_end().to_owned()
    };
    let mut out = Vec::with_capacity(rows.len() + 1);
    out.push(line(&mut headers.iter().copied()));
    for row in &rows {
        out.push(line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::escape::tests::HOSTILE;
    use mesh_api::{GossipStatus, MemberStatus, NodeStatus};

    fn drop_count(reason: &str, packets: u64) -> DropCount {
        DropCount {
            reason: reason.to_owned(),
            packets,
        }
    }

    fn member(
        name: &str,
        public_key: &str,
        state: MemberState,
        endpoint: Option<&str>,
        blocks: &[&str],
    ) -> MemberStatus {
        MemberStatus {
            name: name.to_owned(),
            public_key: public_key.to_owned(),
            endpoint: endpoint.map(str::to_owned),
            blocks: blocks.iter().map(|b| (*b).to_owned()).collect(),
            state,
            neighbour: false,
            session: false,
            unreachable_secs: None,
        }
    }

    /// A node with an established named peer, a peer known only by address, and
    /// node-wide drops; five members (this node, two alive, one dead, one that left).
    pub(crate) fn sample_status() -> Status {
        Status {
            node: NodeStatus {
                name: "alpha".to_owned(),
                public_key: "q2Ms0bVgZ0Vx7yH3nWmJ0k2pKf9cJbQkq3a0Xy1Wm2E=".to_owned(),
                listen: "198.18.0.1:6788".to_owned(),
                range: "10.32.0.0/12".to_owned(),
                blocks: vec!["10.32.1.0/24".to_owned()],
                bridge: "mesh0".to_owned(),
                gateway: "10.32.1.1/24".to_owned(),
                tun: "meshtun0".to_owned(),
                mtu: 1420,
                cipher: "chacha20-poly1305".to_owned(),
                uptime_secs: 3_723,
                version: "0.1.0".to_owned(),
            },
            datapath: mesh_api::DatapathStatus {
                tun_offload: true,
                udp_gso_segments: 64,
                udp_gro_segments: 64,
                tun_reads: 10,
                tun_read_packets: 455,
                tun_writes: 4,
                tun_write_packets: 100,
                udp_sends: 10,
                udp_send_datagrams: 455,
                udp_recvs: 0,
                udp_recv_datagrams: 0,
                udp_rcvbuf: 8 << 20,
                udp_sndbuf: 0,
            },
            peers: vec![
                PeerStatus {
                    name: "beta".to_owned(),
                    public_key: "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=".to_owned(),
                    endpoint: "198.18.0.2:6788".to_owned(),
                    state: PeerState::Established,
                    blocks: vec!["10.32.2.0/24".to_owned(), "10.32.9.0/24".to_owned()],
                    last_handshake_secs_ago: Some(12),
                    handshakes: 3,
                    rtt_us: Some(1_234),
                    rx_packets: 1_200,
                    rx_bytes: 1_572_864,
                    tx_packets: 10,
                    tx_bytes: 1_536,
                    drops: vec![drop_count("replay", 2), drop_count("authentication", 1)],
                    relay: None,
                    session_rx_expected: 1_250,
                    session_rx_lost: 5,
                    cipher: Some("chacha20-poly1305".to_owned()),
                },
                PeerStatus {
                    drops: vec![drop_count("replay", 0)],
                    ..PeerStatus::address_only("198.18.0.3:6788".to_owned(), PeerState::Handshaking)
                },
            ],
            drops: vec![drop_count("no_route", 3), drop_count("malformed", 1)],
            // In the API's order: by name.
            members: vec![
                member(
                    "alpha",
                    "q2Ms0bVgZ0Vx7yH3nWmJ0k2pKf9cJbQkq3a0Xy1Wm2E=",
                    MemberState::Local,
                    Some("198.18.0.1:6788"),
                    &["10.32.1.0/24"],
                ),
                MemberStatus {
                    neighbour: true,
                    session: true,
                    ..member(
                        "beta",
                        "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=",
                        MemberState::Alive,
                        Some("198.18.0.2:6788"),
                        &["10.32.2.0/24", "10.32.9.0/24"],
                    )
                },
                member(
                    "delta",
                    "ZGVsdGFkZWx0YWRlbHRhZGVsdGFkZWx0YWRlbHRhZGU=",
                    MemberState::Left,
                    Some("198.18.0.4:6788"),
                    &["10.32.4.0/24"],
                ),
                MemberStatus {
                    neighbour: true,
                    unreachable_secs: Some(12),
                    ..member(
                        "epsilon",
                        "ZXBzaWxvbmVwc2lsb25lcHNpbG9uZXBzaWxvbmVwc2k=",
                        MemberState::Alive,
                        None,
                        &[],
                    )
                },
                MemberStatus {
                    unreachable_secs: Some(754),
                    ..member(
                        "gamma",
                        "Z2FtbWFnYW1tYWdhbW1hZ2FtbWFnYW1tYWdhbW1hZ2E=",
                        MemberState::Dead,
                        Some("198.18.0.5:6788"),
                        &["10.32.5.0/24"],
                    )
                },
            ],
            gossip: GossipStatus {
                records: 10,
                neighbours: 2,
                outbound: 1,
                tx_messages: 40,
                tx_bytes: 5_120,
                rx_messages: 38,
                rx_bytes: 4_800,
                records_applied: 12,
                records_redundant: 30,
                records_pulled: 3,
                malformed: 1,
            },
            warnings: vec![],
            handshakes: Default::default(),
            dns: Some(mesh_api::DnsSummary {
                listen: "10.32.1.1:53".into(),
                zone: "mesh.local.".into(),
                records: 3,
                served: 2,
                queries: 1,
            }),
        }
    }

    /// [`sample_status`] as a hostile member makes it: peer and member `beta` named
    /// [`HOSTILE`], one of its blocks with a U+202E, the address-only peer's endpoint and a
    /// dead member's name with a CSI, a relay name with an ESC, meshd's own warning and the
    /// DNS zone quoting such strings too.
    pub(crate) fn hostile_status() -> Status {
        let mut status = sample_status();
        status.peers[0].name = HOSTILE.to_owned();
        status.peers[0].blocks[1] = "10.32.9.0/24\u{202e}".to_owned();
        status.peers[1].endpoint = "198.18.0.3:6788\x1b[2K".to_owned();
        status.members[1].name = HOSTILE.to_owned();
        status.members[1].endpoint = Some("198.18.0.2:6788\r".to_owned());
        status.members[4].name = "gam\u{9b}2Jma".to_owned();
        status.warnings = vec!["refusing address ownership of ring \x1b]0;x\x07".to_owned()];
        status.dns.as_mut().expect("sample has DNS").zone = "mesh.local.\x7f".to_owned();
        status
    }

    #[test]
    fn status_view_shows_remote_strings_escaped_exact_lines() {
        let lines = status_lines(&hostile_status());
        let want = [
            "node        alpha",
            "public key  q2Ms0bVgZ0Vx7yH3nWmJ0k2pKf9cJbQkq3a0Xy1Wm2E=",
            "listen      198.18.0.1:6788",
            "range       10.32.0.0/12",
            "blocks      10.32.1.0/24",
            "bridge      mesh0, gateway 10.32.1.1/24",
            "tun         meshtun0",
            "mtu         1420",
            "cipher      chacha20-poly1305",
            "version     0.1.0",
            "uptime      1h 2m",
            "datapath    offload on, GSO 64, GRO 64; per call: TUN read 45.5, UDP send 45.5, UDP recv -, TUN write 25.0; socket buffers 8.0 MiB rcv / - snd",
            "members     4 (2 alive, 1 dead, 1 left); gossip: 2 neighbours, 10 records",
            r"dns         10.32.1.1:53, zone mesh.local.\x7f, 3 records, 2 served (owner dead), 1 query",
            "",
            "NAME                                                 ENDPOINT                STATE        BLOCKS                             HANDSHAKE  RTT      RX                  TX                DROPS",
            r"ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il  198.18.0.2:6788         established  10.32.2.0/24,10.32.9.0/24\u{202e}  12s ago    1.23 ms  1200 pkt / 1.5 MiB  10 pkt / 1.5 KiB  replay=2 authentication=1",
            r"(unknown)                                            198.18.0.3:6788\x1b[2K  handshaking  -                                  never      -        0 pkt / 0 B         0 pkt / 0 B       -",
            "",
            "node drops: no_route=3 malformed=1",
            "",
            r"warning: refusing address ownership of ring \x1b]0;x\x07",
            r"warning: 198.18.0.3:6788\x1b[2K: no session yet: is meshd running there, is UDP 6788\x1b[2K open both ways, is it the same cluster secret?",
            r"warning: member gam\u{9b}2Jma (Z2FtbWFn) dead: unreachable for 12m 34s",
            "warning: 3 packets had no owner: a destination inside the range that no peer announced (no_route)",
        ];
        assert_eq!(lines, want);
        // The relay warning quotes the relay's name.
        let mut status = hostile_status();
        status.peers.truncate(1);
        status.peers[0].relay = Some("gamma\x1b[5m".into());
        assert!(
            warnings(&status).contains(
                &r"ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il (198.18.0.2:6788): unreachable directly, traffic goes through relay gamma\x1b[5m: check that UDP 6788 is open between the two (NAT, firewall)".to_owned()
            ),
            "{:?}",
            warnings(&status)
        );
    }

    #[test]
    fn status_view_renders_exact_lines() {
        let expected = [
            "node        alpha",
            "public key  q2Ms0bVgZ0Vx7yH3nWmJ0k2pKf9cJbQkq3a0Xy1Wm2E=",
            "listen      198.18.0.1:6788",
            "range       10.32.0.0/12",
            "blocks      10.32.1.0/24",
            "bridge      mesh0, gateway 10.32.1.1/24",
            "tun         meshtun0",
            "mtu         1420",
            "cipher      chacha20-poly1305",
            "version     0.1.0",
            "uptime      1h 2m",
            "datapath    offload on, GSO 64, GRO 64; per call: TUN read 45.5, UDP send 45.5, UDP recv -, TUN write 25.0; socket buffers 8.0 MiB rcv / - snd",
            "members     4 (2 alive, 1 dead, 1 left); gossip: 2 neighbours, 10 records",
            "dns         10.32.1.1:53, zone mesh.local., 3 records, 2 served (owner dead), 1 query",
            "",
            "NAME       ENDPOINT         STATE        BLOCKS                     HANDSHAKE  RTT      RX                  TX                DROPS",
            "beta       198.18.0.2:6788  established  10.32.2.0/24,10.32.9.0/24  12s ago    1.23 ms  1200 pkt / 1.5 MiB  10 pkt / 1.5 KiB  replay=2 authentication=1",
            "(unknown)  198.18.0.3:6788  handshaking  -                          never      -        0 pkt / 0 B         0 pkt / 0 B       -",
            "",
            "node drops: no_route=3 malformed=1",
            "",
            "warning: 198.18.0.3:6788: no session yet: is meshd running there, is UDP 6788 open both ways, is it the same cluster secret?",
            "warning: member gamma (Z2FtbWFn) dead: unreachable for 12m 34s",
            "warning: 3 packets had no owner: a destination inside the range that no peer announced (no_route)",
        ];
        assert_eq!(status_lines(&sample_status()), expected);
        assert_eq!(status_text(&sample_status()), expected.join("\n") + "\n");
    }

    #[test]
    fn meshd_warnings_come_first_as_given() {
        let mut status = sample_status();
        status.peers.truncate(1);
        status.drops.clear();
        status.warnings = vec!["refusing address ownership of cluster ring 0a: reset one".into()];
        let lines = status_lines(&status);
        assert_eq!(
            &lines[lines.len() - 3..],
            [
                "",
                "warning: refusing address ownership of cluster ring 0a: reset one",
                "warning: member gamma (Z2FtbWFn) dead: unreachable for 12m 34s",
            ]
        );
    }

    #[test]
    fn warnings_name_expired_peers_and_failed_handshakes() {
        let mut status = sample_status();
        status.peers[0].state = mesh_api::PeerState::Expired;
        status.peers.truncate(1);
        status.drops = vec![drop_count("handshake_failed", 4)];
        assert_eq!(
            warnings(&status),
            [
                "beta (198.18.0.2:6788): the session expired and new handshakes get no answer: is the node down?",
                "member gamma (Z2FtbWFn) dead: unreachable for 12m 34s",
                "4 handshake messages failed: a node with another cluster secret (or an attacker) is trying to connect",
            ]
        );
        status.peers[0].state = mesh_api::PeerState::Established;
        status.drops.clear();
        // Members that left, or are alive but unreachable for a while, are no warning.
        status.members[4].state = MemberState::Left;
        assert!(warnings(&status).is_empty());
        // A peer reached through a relay is one.
        status.peers[0].relay = Some("gamma".into());
        assert_eq!(
            warnings(&status),
            [
                "beta (198.18.0.2:6788): unreachable directly, traffic goes through relay gamma: check that UDP 6788 is open between the two (NAT, firewall)"
            ]
        );
    }

    #[test]
    fn the_dns_line_says_off_or_where_and_how_much() {
        let mut status = sample_status();
        status.dns = None;
        assert!(status_lines(&status).contains(&"dns         off".to_owned()));
        status.dns = Some(mesh_api::DnsSummary {
            listen: String::new(),
            zone: "mesh.local.".into(),
            records: 1,
            served: 1,
            queries: 0,
        });
        assert!(
            status_lines(&status).contains(
                &"dns         not listening yet (no block): zone mesh.local., 1 record, 0 queries"
                    .to_owned()
            ),
            "{:?}",
            status_lines(&status)
        );
    }

    #[test]
    fn status_view_without_peers_or_drops() {
        let mut status = sample_status();
        status.peers.clear();
        status.drops = vec![drop_count("no_route", 0)];
        status.node.blocks.clear();
        let lines = status_lines(&status);
        assert_eq!(lines[4], "blocks      -");
        assert_eq!(
            &lines[14..18],
            [
                "",
                "no peers",
                "",
                "warning: member gamma (Z2FtbWFn) dead: unreachable for 12m 34s"
            ]
        );
        assert_eq!(lines.len(), 18);
    }

    #[test]
    fn members_line_counts_the_other_members_by_state() {
        let mut status = sample_status();
        // gamma (dead) becomes a dead member that never announced a name or key.
        status.members[4].name.clear();
        status.members[4].public_key.clear();
        status.members[4].unreachable_secs = None;
        status.gossip.neighbours = 1;
        status.gossip.records = 1;
        assert_eq!(
            members(&status),
            "4 (2 alive, 1 dead, 1 left); gossip: 1 neighbour, 1 record"
        );
        assert!(
            warnings(&status).contains(&"member (unknown) (-) dead".to_owned()),
            "{:?}",
            warnings(&status)
        );

        status.members.retain(|m| m.state == MemberState::Local);
        status.gossip = GossipStatus::default();
        assert_eq!(members(&status), "0; gossip: 0 neighbours, 0 records");
        status.members.clear();
        assert_eq!(members(&status), "-", "a meshd that reports no members");
    }

    #[test]
    fn columns_stay_aligned_with_wide_cells() {
        let rows = vec![
            vec!["a".to_owned(), "x".to_owned(), "1".to_owned()],
            vec!["long-name".to_owned(), "".to_owned(), "2".to_owned()],
        ];
        assert_eq!(
            table(&["N", "MID", "Z"], &rows),
            [
                "N          MID  Z",
                "a          x    1",
                "long-name       2"
            ]
        );
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(10 * 1024 * 1024 + 512 * 1024), "10.5 MiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(60), "1m 0s");
        assert_eq!(duration(3_599), "59m 59s");
        assert_eq!(duration(3_600), "1h 0m");
        assert_eq!(duration(90_061), "1d 1h");
    }

    #[test]
    fn rtt_rounds_to_hundredths_of_a_millisecond() {
        assert_eq!(rtt(0), "0.00 ms");
        assert_eq!(rtt(4), "0.00 ms");
        assert_eq!(rtt(5), "0.01 ms");
        assert_eq!(rtt(1_234), "1.23 ms");
        assert_eq!(rtt(1_235), "1.24 ms");
        assert_eq!(rtt(250_000), "250.00 ms");
    }

    #[test]
    fn drops_skip_zero_counters() {
        assert_eq!(drops(&[]), "-");
        assert_eq!(drops(&[drop_count("replay", 0)]), "-");
        assert_eq!(
            drops(&[
                drop_count("replay", 2),
                drop_count("mtu", 0),
                drop_count("authentication", 1)
            ]),
            "replay=2 authentication=1"
        );
    }
}
