//! The `peers`, `connections`, `members`, `routes`, `ipam` and `rmpeer` views as text for
//! people. Pure
//! functions over `mesh_api` types, no I/O; the helpers (tables, sizes, durations) are
//! `render`'s. Table cells are escaped by `render::table` and `render::key_values`; values
//! in a free-form line are escaped here ([`crate::escape`]).

use mesh_api::{
    ConnectionsView, DnsChanged, DnsRecord, DnsRecords, IpamAllocated, IpamMode, IpamReleased,
    IpamStatus, MemberRemoved, MemberState, MemberStatus, PeerState, PeersView, RouteVia, Routes,
    Status, key_fingerprint,
};
use serde::{Deserialize, Serialize};

use crate::escape::escape;
use crate::render::{
    drops, duration, key_values, list_or_dash, member_state, name_or_unknown, or_dash, rtt, state,
    table, traffic,
};

/// Container ids are 64 hex digits; people recognise the first 12 (as `docker ps` shows).
const CONTAINER_ID_SHOWN: usize = 12;

fn ago(secs: Option<u64>) -> String {
    secs.map_or_else(|| "never".to_owned(), |s| format!("{} ago", duration(s)))
}

fn with_newline(lines: Vec<String>) -> String {
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// `meshctl peers`.
pub(crate) fn peers_lines(view: &PeersView) -> Vec<String> {
    if view.peers.is_empty() {
        return vec!["no peers".to_owned()];
    }
    let rows: Vec<Vec<String>> = view
        .peers
        .iter()
        .map(|p| {
            vec![
                name_or_unknown(&p.name),
                or_dash(&p.fingerprint),
                list_or_dash(&p.endpoints),
                state(p.state).to_owned(),
                ago(p.last_handshake_secs_ago),
            ]
        })
        .collect();
    table(&["NAME", "KEY", "ENDPOINTS", "STATE", "HANDSHAKE"], &rows)
}

/// [`peers_lines`] as one string ending in a newline.
pub(crate) fn peers_text(view: &PeersView) -> String {
    with_newline(peers_lines(view))
}

/// Inbound loss of a session as a percentage, `-` before anything arrived.
fn loss(expected: u64, lost: u64) -> String {
    if expected == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", lost as f64 * 100.0 / expected as f64)
    }
}

/// `meshctl connections`.
pub(crate) fn connections_lines(view: &ConnectionsView) -> Vec<String> {
    if view.connections.is_empty() {
        return vec!["no peers".to_owned()];
    }
    let rows: Vec<Vec<String>> = view
        .connections
        .iter()
        .map(|c| {
            vec![
                name_or_unknown(&c.name),
                or_dash(&c.fingerprint),
                match c.path {
                    mesh_api::PathKind::Direct => format!("direct {}", or_dash(&c.endpoint)),
                    mesh_api::PathKind::Relay => {
                        format!("via {}", c.relay.as_deref().unwrap_or("(unknown)"))
                    }
                },
                state(c.state).to_owned(),
                c.rtt_us.map_or_else(|| "-".to_owned(), rtt),
                loss(c.session_rx_expected, c.session_rx_lost),
                c.mtu.to_string(),
                c.cipher.clone().unwrap_or_else(|| "-".to_owned()),
                ago(c.last_handshake_secs_ago),
                traffic(c.rx_packets, c.rx_bytes),
                traffic(c.tx_packets, c.tx_bytes),
                drops(&c.drops),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "KEY",
            "PATH",
            "STATE",
            "RTT",
            "LOSS",
            "MTU",
            "CIPHER",
            "HANDSHAKE",
            "RX",
            "TX",
            "DROPS",
        ],
        &rows,
    )
}

/// [`connections_lines`] as one string ending in a newline.
pub(crate) fn connections_text(view: &ConnectionsView) -> String {
    with_newline(connections_lines(view))
}

/// `meshctl members -o json`: every cluster member this node knows, itself included (built
/// from [`Status`] by `meshctl`), in the table's order: this node, then the alive, then the
/// dead and the departed; by name, then key, within each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MembersView {
    /// Every member.
    pub(crate) members: Vec<MemberView>,
}

/// One member in [`MembersView`]: a [`MemberStatus`] and its key's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberView {
    /// The name it announced.
    pub(crate) name: String,
    /// Static public key, base64.
    pub(crate) public_key: String,
    /// [`key_fingerprint`] of `public_key`.
    pub(crate) fingerprint: String,
    /// The endpoint it announces, `IP:PORT`, if known.
    pub(crate) endpoint: Option<String>,
    /// Blocks it announces, CIDR.
    pub(crate) blocks: Vec<String>,
    /// `local`, `alive`, `dead` or `left`.
    pub(crate) state: MemberState,
    /// One of this node's gossip neighbours.
    pub(crate) neighbour: bool,
    /// This node has a session with it now.
    pub(crate) session: bool,
    /// Seconds since nothing shows it alive.
    pub(crate) unreachable_secs: Option<u64>,
}

/// Sort rank of a member state: this node, then the alive, then the dead and departed.
fn member_rank(state: MemberState) -> u8 {
    match state {
        MemberState::Local => 0,
        MemberState::Alive => 1,
        MemberState::Dead | MemberState::Left => 2,
    }
}

impl MembersView {
    /// The members of `status`.
    pub(crate) fn from_status(status: &Status) -> Self {
        let mut members: Vec<&MemberStatus> = status.members.iter().collect();
        members.sort_by(|a, b| {
            (member_rank(a.state), &a.name, &a.public_key).cmp(&(
                member_rank(b.state),
                &b.name,
                &b.public_key,
            ))
        });
        Self {
            members: members
                .into_iter()
                .map(|m| MemberView {
                    name: m.name.clone(),
                    public_key: m.public_key.clone(),
                    fingerprint: key_fingerprint(&m.public_key),
                    endpoint: m.endpoint.clone(),
                    blocks: m.blocks.clone(),
                    state: m.state,
                    neighbour: m.neighbour,
                    session: m.session,
                    unreachable_secs: m.unreachable_secs,
                })
                .collect(),
        }
    }
}

fn yes_or_dash(b: bool) -> String {
    if b { "yes" } else { "-" }.to_owned()
}

/// `meshctl members`.
pub(crate) fn members_lines(view: &MembersView) -> Vec<String> {
    if view.members.is_empty() {
        return vec!["no members".to_owned()];
    }
    let rows: Vec<Vec<String>> = view
        .members
        .iter()
        .map(|m| {
            vec![
                name_or_unknown(&m.name),
                member_state(m.state).to_owned(),
                m.endpoint
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), or_dash),
                list_or_dash(&m.blocks),
                yes_or_dash(m.neighbour),
                yes_or_dash(m.session),
                m.unreachable_secs.map_or_else(|| "-".to_owned(), duration),
                or_dash(&m.fingerprint),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "ENDPOINT",
            "BLOCKS",
            "NEIGHBOUR",
            "SESSION",
            "UNREACHABLE",
            "KEY",
        ],
        &rows,
    )
}

/// [`members_lines`] as one string ending in a newline.
pub(crate) fn members_text(view: &MembersView) -> String {
    with_newline(members_lines(view))
}

/// `meshctl routes`.
pub(crate) fn routes_lines(routes: &Routes) -> Vec<String> {
    if routes.routes.is_empty() {
        return vec!["no routes".to_owned()];
    }
    let rows: Vec<Vec<String>> = routes
        .routes
        .iter()
        .map(|r| {
            vec![
                r.block.clone(),
                match r.via {
                    RouteVia::Local => "local",
                    RouteVia::Peer => "peer",
                }
                .to_owned(),
                name_or_unknown(&r.name),
                or_dash(&key_fingerprint(&r.public_key)),
                or_dash(&r.endpoint),
                r.state.map_or("-", |s: PeerState| state(s)).to_owned(),
            ]
        })
        .collect();
    table(&["BLOCK", "VIA", "NAME", "KEY", "ENDPOINT", "STATE"], &rows)
}

/// [`routes_lines`] as one string ending in a newline.
pub(crate) fn routes_text(routes: &Routes) -> String {
    with_newline(routes_lines(routes))
}

/// `meshctl ipam`: the pool's summary, the use of each of its blocks, with automatic IPAM
/// who owns which blocks of the range, then one line per allocation.
pub(crate) fn ipam_lines(ipam: &IpamStatus) -> Vec<String> {
    let mut summary = vec![(
        "mode",
        match (ipam.mode, &ipam.ring) {
            (IpamMode::Fixed, _) => "fixed (--block)".to_owned(),
            (IpamMode::Automatic, Some(ring)) => format!("automatic, ring {ring}"),
            (IpamMode::Automatic, None) => "automatic, no ring yet".to_owned(),
        },
    )];
    summary.push(("range", or_dash(&ipam.range)));
    if ipam.mode == IpamMode::Automatic && ipam.block_prefix > 0 {
        summary.push(("block size", format!("/{}", ipam.block_prefix)));
    }
    summary.extend([
        ("bridge", or_dash(&ipam.bridge)),
        ("mtu", ipam.mtu.to_string()),
        ("blocks", list_or_dash(&ipam.blocks)),
        (
            "addresses",
            format!("{} used, {} free", ipam.used, ipam.free),
        ),
    ]);
    let mut lines = key_values(&summary);
    if !ipam.block_use.is_empty() {
        lines.push(String::new());
        let rows: Vec<Vec<String>> = ipam
            .block_use
            .iter()
            .map(|b| vec![b.block.clone(), b.used.to_string(), b.free.to_string()])
            .collect();
        lines.extend(table(&["BLOCK", "USED", "FREE"], &rows));
    }
    if ipam.mode == IpamMode::Automatic {
        lines.push(String::new());
        if ipam.owners.is_empty() {
            lines.push("no ring known yet".to_owned());
        } else {
            let rows: Vec<Vec<String>> = ipam
                .owners
                .iter()
                .map(|o| {
                    let key = o.public_key.as_deref().unwrap_or("");
                    vec![
                        list_or_dash(&o.blocks),
                        if key.is_empty() {
                            "(not known yet)".to_owned()
                        } else {
                            name_or_unknown(&o.name)
                        },
                        or_dash(&key_fingerprint(key)),
                        if o.local { "this node" } else { "-" }.to_owned(),
                    ]
                })
                .collect();
            lines.extend(table(&["OWNED", "OWNER", "KEY", "NOTE"], &rows));
        }
    }
    lines.push(String::new());
    if ipam.allocations.is_empty() {
        lines.push("no allocations".to_owned());
        return lines;
    }
    let rows: Vec<Vec<String>> = ipam
        .allocations
        .iter()
        .map(|a| {
            let pod = match (&a.pod_namespace, &a.pod_name) {
                (Some(ns), Some(name)) => format!("{ns}/{name}"),
                (None, Some(name)) => name.clone(),
                _ => "-".to_owned(),
            };
            vec![
                a.address.clone(),
                a.container_id.chars().take(CONTAINER_ID_SHOWN).collect(),
                or_dash(&a.ifname),
                pod,
                a.network.clone().unwrap_or_else(|| "-".to_owned()),
                if a.stranded { "stranded" } else { "-" }.to_owned(),
            ]
        })
        .collect();
    lines.extend(table(
        &["ADDRESS", "CONTAINER", "IFNAME", "POD", "NETWORK", "NOTE"],
        &rows,
    ));
    lines
}

/// [`ipam_lines`] as one string ending in a newline.
pub(crate) fn ipam_text(ipam: &IpamStatus) -> String {
    with_newline(ipam_lines(ipam))
}

/// `meshctl ipam allocate`: the address and what the pod needs besides.
pub(crate) fn allocated_text(a: &IpamAllocated) -> String {
    format!(
        "{} {} (gateway {}, bridge {}, mtu {})\n",
        if a.fresh { "allocated" } else { "already held" },
        escape(&a.address),
        escape(&a.gateway),
        escape(&a.bridge),
        a.mtu
    )
}

/// `meshctl ipam release`.
pub(crate) fn released_text(r: &IpamReleased) -> String {
    match &r.released {
        Some(a) => format!("released {}\n", escape(a)),
        None => "the attachment held no address\n".to_owned(),
    }
}

/// `meshctl rmpeer`: who was removed and which blocks this node took over.
pub(crate) fn removed_text(r: &MemberRemoved) -> String {
    let key = key_fingerprint(&r.public_key);
    let who = if r.name.is_empty() {
        escape(&key).into_owned()
    } else {
        format!("{} ({})", escape(&r.name), escape(&key))
    };
    let blocks = if r.reclaimed.is_empty() {
        "it owned no blocks this node knows of".to_owned()
    } else {
        format!("this node took over {}", escape(&r.reclaimed.join(", ")))
    };
    match r.dns_removed {
        0 => format!("removed {who}: {blocks}\n"),
        1 => format!("removed {who}: {blocks}; removed its 1 DNS record\n"),
        n => format!("removed {who}: {blocks}; removed its {n} DNS records\n"),
    }
}

fn dns_rows(records: &[DnsRecord]) -> Vec<Vec<String>> {
    records
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.address.clone(),
                or_dash(&r.owner),
                if r.served { "yes" } else { "no (owner dead)" }.to_owned(),
            ]
        })
        .collect()
}

const DNS_HEADERS: [&str; 4] = ["NAME", "ADDRESS", "OWNER", "SERVED"];

/// `meshctl dns`: the zone, where it is served, then one line per record.
pub(crate) fn dns_lines(dns: &DnsRecords) -> Vec<String> {
    let mut lines = key_values(&[
        ("zone", or_dash(&dns.zone)),
        ("listen", or_dash(&dns.listen)),
        ("upstreams", list_or_dash(&dns.upstreams)),
        ("ttl", format!("{} s", dns.ttl)),
    ]);
    lines.push(String::new());
    if dns.records.is_empty() {
        lines.push("no records".to_owned());
        return lines;
    }
    lines.extend(table(&DNS_HEADERS, &dns_rows(&dns.records)));
    lines
}

/// [`dns_lines`] as one string ending in a newline.
pub(crate) fn dns_text(dns: &DnsRecords) -> String {
    with_newline(dns_lines(dns))
}

/// `meshctl dns add` / `remove`: `VERB NAME ADDRESS` per record.
pub(crate) fn dns_changed_text(verb: &str, changed: &DnsChanged) -> String {
    with_newline(
        changed
            .records
            .iter()
            .map(|r| format!("{verb} {} {}", escape(&r.name), escape(&r.address)))
            .collect(),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::escape::tests::HOSTILE;
    use crate::render::tests::{hostile_status, sample_status};
    use mesh_api::{IpamAllocation, Route};

    pub(crate) fn sample_routes() -> Routes {
        Routes {
            routes: vec![
                Route {
                    block: "10.32.1.0/24".to_owned(),
                    via: RouteVia::Local,
                    name: "alpha".to_owned(),
                    public_key: "q2Ms0bVgZ0Vx7yH3nWmJ0k2pKf9cJbQkq3a0Xy1Wm2E=".to_owned(),
                    endpoint: String::new(),
                    state: None,
                },
                Route {
                    block: "10.32.2.0/24".to_owned(),
                    via: RouteVia::Peer,
                    name: "beta".to_owned(),
                    public_key: "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=".to_owned(),
                    endpoint: "198.18.0.2:6788".to_owned(),
                    state: Some(PeerState::Established),
                },
            ],
        }
    }

    pub(crate) fn sample_ipam() -> IpamStatus {
        IpamStatus {
            range: "10.32.0.0/12".to_owned(),
            bridge: "mesh0".to_owned(),
            mtu: 1420,
            blocks: vec!["10.32.1.0/24".to_owned()],
            allocations: vec![
                IpamAllocation {
                    container_id: "0123456789abcdef0123456789abcdef".to_owned(),
                    ifname: "eth0".to_owned(),
                    address: "10.32.1.2/24".to_owned(),
                    pod_name: Some("web".to_owned()),
                    pod_namespace: Some("default".to_owned()),
                    network: Some("mesh".to_owned()),
                    stranded: false,
                },
                IpamAllocation {
                    container_id: "old".to_owned(),
                    ifname: "net1".to_owned(),
                    address: "10.32.7.9/24".to_owned(),
                    pod_name: None,
                    pod_namespace: None,
                    network: None,
                    stranded: true,
                },
            ],
            used: 2,
            free: 251,
            mode: IpamMode::Fixed,
            block_prefix: 24,
            ring: None,
            block_use: vec![mesh_api::IpamBlockUse {
                block: "10.32.1.0/24".to_owned(),
                used: 1,
                free: 251,
            }],
            owners: vec![],
        }
    }

    /// Automatic IPAM: two blocks in use, the range shared by three owners and one run of
    /// blocks whose owner this node has not heard of.
    pub(crate) fn sample_ring_ipam() -> IpamStatus {
        IpamStatus {
            mode: IpamMode::Automatic,
            ring: Some("5f0c1e2d3c4b5a69788796a5b4c3d2e1".to_owned()),
            block_prefix: 24,
            range: "10.32.0.0/12".to_owned(),
            blocks: vec!["10.32.0.0/24".to_owned(), "10.32.1.0/24".to_owned()],
            block_use: vec![
                mesh_api::IpamBlockUse {
                    block: "10.32.0.0/24".to_owned(),
                    used: 253,
                    free: 0,
                },
                mesh_api::IpamBlockUse {
                    block: "10.32.1.0/24".to_owned(),
                    used: 1,
                    free: 252,
                },
            ],
            owners: vec![
                mesh_api::IpamSpan {
                    blocks: vec!["10.32.0.0/13".to_owned(), "10.32.8.0/14".to_owned()],
                    name: "alpha".to_owned(),
                    public_key: Some("q2Ms0bVgZ0Vx7yH3nWmJ0k2pKf9cJbQkq3a0Xy1Wm2E=".to_owned()),
                    local: true,
                },
                mesh_api::IpamSpan {
                    blocks: vec!["10.44.0.0/14".to_owned()],
                    name: String::new(),
                    public_key: None,
                    local: false,
                },
                mesh_api::IpamSpan {
                    blocks: vec!["10.47.255.0/24".to_owned()],
                    name: "beta".to_owned(),
                    public_key: Some("Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=".to_owned()),
                    local: false,
                },
            ],
            allocations: vec![],
            used: 254,
            free: 252,
            ..sample_ipam()
        }
    }

    pub(crate) fn sample_removed() -> MemberRemoved {
        MemberRemoved {
            name: "gamma".to_owned(),
            public_key: "Z2FtbWFnYW1tYWdhbW1hZ2FtbWFnYW1tYWdhbW1hZ2E=".to_owned(),
            reclaimed: vec!["10.32.5.0/24".to_owned(), "10.32.6.0/23".to_owned()],
            dns_removed: 0,
        }
    }

    #[test]
    fn peers_view_renders_exact_lines() {
        let view = PeersView::from_status(&sample_status());
        assert_eq!(
            peers_lines(&view),
            [
                "NAME       KEY       ENDPOINTS        STATE        HANDSHAKE",
                "beta       Zm9vYmFy  198.18.0.2:6788  established  12s ago",
                "(unknown)  -         198.18.0.3:6788  handshaking  never",
            ]
        );
        assert_eq!(peers_text(&PeersView { peers: vec![] }), "no peers\n");
    }

    #[test]
    fn connections_view_renders_exact_lines() {
        let view = ConnectionsView::from_status(&sample_status());
        assert_eq!(
            connections_lines(&view),
            [
                "NAME       KEY       PATH                    STATE        RTT      LOSS  MTU   CIPHER             HANDSHAKE  RX                  TX                DROPS",
                "beta       Zm9vYmFy  direct 198.18.0.2:6788  established  1.23 ms  0.4%  1420  chacha20-poly1305  12s ago    1200 pkt / 1.5 MiB  10 pkt / 1.5 KiB  replay=2 authentication=1",
                "(unknown)  -         direct 198.18.0.3:6788  handshaking  -        -     1420  -                  never      0 pkt / 0 B         0 pkt / 0 B       -",
            ]
        );
    }

    #[test]
    fn members_view_renders_exact_lines_local_then_alive_then_dead_or_left() {
        let view = MembersView::from_status(&sample_status());
        assert_eq!(
            members_lines(&view),
            [
                "NAME     STATE  ENDPOINT         BLOCKS                     NEIGHBOUR  SESSION  UNREACHABLE  KEY",
                "alpha    local  198.18.0.1:6788  10.32.1.0/24               -          -        -            q2Ms0bVg",
                "beta     alive  198.18.0.2:6788  10.32.2.0/24,10.32.9.0/24  yes        yes      -            Zm9vYmFy",
                "epsilon  alive  -                -                          yes        -        12s          ZXBzaWxv",
                "delta    left   198.18.0.4:6788  10.32.4.0/24               -          -        -            ZGVsdGFk",
                "gamma    dead   198.18.0.5:6788  10.32.5.0/24               -          -        12m 34s      Z2FtbWFn",
            ]
        );
        assert_eq!(
            members_text(&MembersView { members: vec![] }),
            "no members\n"
        );
    }

    #[test]
    fn members_view_sorts_by_state_rank_then_name_whatever_the_api_order() {
        let mut status = sample_status();
        status.members.reverse();
        status.members[0].name = "aardvark".into(); // gamma, dead: still after the alive
        let names: Vec<String> = MembersView::from_status(&status)
            .members
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["alpha", "beta", "epsilon", "aardvark", "delta"]);
    }

    #[test]
    fn routes_view_renders_exact_lines() {
        assert_eq!(
            routes_lines(&sample_routes()),
            [
                "BLOCK         VIA    NAME   KEY       ENDPOINT         STATE",
                "10.32.1.0/24  local  alpha  q2Ms0bVg  -                -",
                "10.32.2.0/24  peer   beta   Zm9vYmFy  198.18.0.2:6788  established",
            ]
        );
        assert_eq!(routes_text(&Routes { routes: vec![] }), "no routes\n");
    }

    #[test]
    fn ipam_view_renders_exact_lines() {
        assert_eq!(
            ipam_lines(&sample_ipam()),
            [
                "mode       fixed (--block)",
                "range      10.32.0.0/12",
                "bridge     mesh0",
                "mtu        1420",
                "blocks     10.32.1.0/24",
                "addresses  2 used, 251 free",
                "",
                "BLOCK         USED  FREE",
                "10.32.1.0/24  1     251",
                "",
                "ADDRESS       CONTAINER     IFNAME  POD          NETWORK  NOTE",
                "10.32.1.2/24  0123456789ab  eth0    default/web  mesh     -",
                "10.32.7.9/24  old           net1    -            -        stranded",
            ]
        );
        let mut empty = sample_ipam();
        empty.allocations.clear();
        empty.block_use.clear();
        let lines = ipam_lines(&empty);
        assert_eq!(&lines[6..], ["", "no allocations"]);
    }

    #[test]
    fn ipam_view_of_automatic_ipam_shows_the_ring() {
        assert_eq!(
            ipam_text(&sample_ring_ipam()),
            "\
mode        automatic, ring 5f0c1e2d3c4b5a69788796a5b4c3d2e1
range       10.32.0.0/12
block size  /24
bridge      mesh0
mtu         1420
blocks      10.32.0.0/24,10.32.1.0/24
addresses   254 used, 252 free

BLOCK         USED  FREE
10.32.0.0/24  253   0
10.32.1.0/24  1     252

OWNED                      OWNER            KEY       NOTE
10.32.0.0/13,10.32.8.0/14  alpha            q2Ms0bVg  this node
10.44.0.0/14               (not known yet)  -         -
10.47.255.0/24             beta             Zm9vYmFy  -

no allocations
"
        );
        let mut joining = sample_ring_ipam();
        joining.ring = None;
        joining.owners.clear();
        joining.blocks.clear();
        joining.block_use.clear();
        let lines = ipam_lines(&joining);
        assert_eq!(lines[0], "mode        automatic, no ring yet");
        assert_eq!(lines[5], "blocks      -");
        assert_eq!(&lines[7..], ["", "no ring known yet", "", "no allocations"]);
    }

    #[test]
    fn rmpeer_allocate_and_release_say_what_happened() {
        assert_eq!(
            removed_text(&sample_removed()),
            "removed gamma (Z2FtbWFn): this node took over 10.32.5.0/24, 10.32.6.0/23\n"
        );
        let mut none = sample_removed();
        none.reclaimed.clear();
        none.name.clear();
        assert_eq!(
            removed_text(&none),
            "removed Z2FtbWFn: it owned no blocks this node knows of\n"
        );
        none.dns_removed = 3;
        assert_eq!(
            removed_text(&none),
            "removed Z2FtbWFn: it owned no blocks this node knows of; removed its 3 DNS records\n"
        );
        let got = IpamAllocated {
            address: "10.32.1.5/24".to_owned(),
            gateway: "10.32.1.1".to_owned(),
            mtu: 1420,
            bridge: "mesh0".to_owned(),
            range: "10.32.0.0/12".to_owned(),
            fresh: true,
        };
        assert_eq!(
            allocated_text(&got),
            "allocated 10.32.1.5/24 (gateway 10.32.1.1, bridge mesh0, mtu 1420)\n"
        );
        assert_eq!(
            released_text(&IpamReleased {
                released: Some("10.32.1.5/24".to_owned())
            }),
            "released 10.32.1.5/24\n"
        );
        assert_eq!(
            released_text(&IpamReleased { released: None }),
            "the attachment held no address\n"
        );
    }

    #[test]
    fn connection_of_a_peer_without_session_has_no_cipher_and_only_nonzero_drops() {
        let view = ConnectionsView::from_status(&sample_status());
        assert_eq!(
            view.connections[0].cipher.as_deref(),
            Some("chacha20-poly1305")
        );
        assert_eq!(view.connections[1].cipher, None);
        assert!(view.connections[1].drops.is_empty());
        assert_eq!(view.connections[0].path, mesh_api::PathKind::Direct);
    }

    pub(crate) fn sample_dns() -> DnsRecords {
        DnsRecords {
            zone: "mesh.local.".into(),
            listen: "10.32.1.1:53".into(),
            upstreams: vec!["198.18.0.9:53".into()],
            ttl: 30,
            records: vec![
                DnsRecord {
                    name: "db.mesh.local.".into(),
                    address: "10.32.2.7".into(),
                    owner: "QUJDREVG".into(),
                    served: false,
                },
                DnsRecord {
                    name: "web.mesh.local.".into(),
                    address: "10.32.1.50".into(),
                    owner: "Zm9vYmFy".into(),
                    served: true,
                },
            ],
        }
    }

    #[test]
    fn dns_view_renders_exact_lines() {
        let text = dns_text(&sample_dns());
        let want = "\
zone       mesh.local.
listen     10.32.1.1:53
upstreams  198.18.0.9:53
ttl        30 s

NAME             ADDRESS     OWNER     SERVED
db.mesh.local.   10.32.2.7   QUJDREVG  no (owner dead)
web.mesh.local.  10.32.1.50  Zm9vYmFy  yes
";
        assert_eq!(text, want);
        let mut empty = sample_dns();
        empty.records.clear();
        assert!(dns_text(&empty).ends_with("\nno records\n"));
        let changed = DnsChanged {
            records: sample_dns().records,
        };
        assert_eq!(
            dns_changed_text("removed", &changed),
            "removed db.mesh.local. 10.32.2.7\nremoved web.mesh.local. 10.32.1.50\n"
        );
    }

    /// [`sample_routes`] with a peer named [`HOSTILE`] at an endpoint with a BEL and a
    /// block with a U+202E (as a member's announcement carries it).
    pub(crate) fn hostile_routes() -> Routes {
        let mut routes = sample_routes();
        routes.routes[1].name = HOSTILE.to_owned();
        routes.routes[1].endpoint = "198.18.0.2:6788\x07".to_owned();
        routes.routes[1].block = "10.32.2.0/24\u{202e}".to_owned();
        routes
    }

    /// [`sample_ring_ipam`] with an owner named [`HOSTILE`] and a pod whose name,
    /// namespace, container id, interface and network carry controls.
    pub(crate) fn hostile_ipam() -> IpamStatus {
        let mut ipam = sample_ring_ipam();
        ipam.owners[2].name = HOSTILE.to_owned();
        ipam.allocations = vec![IpamAllocation {
            container_id: "c0\x1b[2Jffee".to_owned(),
            ifname: "eth0\r".to_owned(),
            address: "10.32.1.2/24".to_owned(),
            pod_name: Some("web\u{202e}".to_owned()),
            pod_namespace: Some("de\u{9b}fault".to_owned()),
            network: Some("mesh\x7f".to_owned()),
            stranded: false,
        }];
        ipam
    }

    /// [`sample_dns`] with a record registered by a hostile member: its name holds
    /// [`HOSTILE`], its address and owner a CR and a CSI; the zone an ESC.
    pub(crate) fn hostile_dns() -> DnsRecords {
        let mut dns = sample_dns();
        dns.zone = "mesh.local.\x1b[8m".to_owned();
        dns.records[1].name = format!("{HOSTILE}.mesh.local.");
        dns.records[1].address = "10.32.1.50\r".to_owned();
        dns.records[1].owner = "Zm9v\u{9b}YmFy".to_owned();
        dns
    }

    #[test]
    fn peers_view_shows_remote_strings_escaped_exact_lines() {
        assert_eq!(
            peers_lines(&PeersView::from_status(&hostile_status())),
            [
                "NAME                                                 KEY       ENDPOINTS               STATE        HANDSHAKE",
                r"ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il  Zm9vYmFy  198.18.0.2:6788         established  12s ago",
                r"(unknown)                                            -         198.18.0.3:6788\x1b[2K  handshaking  never",
            ]
        );
    }

    #[test]
    fn connections_view_shows_remote_strings_escaped_exact_lines() {
        let mut status = hostile_status();
        status.peers[1].relay = Some("gam\x1bma".into());
        assert_eq!(
            connections_lines(&ConnectionsView::from_status(&status)),
            [
                "NAME                                                 KEY       PATH                    STATE        RTT      LOSS  MTU   CIPHER             HANDSHAKE  RX                  TX                DROPS",
                r"ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il  Zm9vYmFy  direct 198.18.0.2:6788  established  1.23 ms  0.4%  1420  chacha20-poly1305  12s ago    1200 pkt / 1.5 MiB  10 pkt / 1.5 KiB  replay=2 authentication=1",
                r"(unknown)                                            -         via gam\x1bma           handshaking  -        -     1420  -                  never      0 pkt / 0 B         0 pkt / 0 B       -",
            ]
        );
    }

    #[test]
    fn members_view_shows_remote_strings_escaped_exact_lines() {
        assert_eq!(
            members_lines(&MembersView::from_status(&hostile_status())),
            [
                "NAME                                                 STATE  ENDPOINT             BLOCKS                     NEIGHBOUR  SESSION  UNREACHABLE  KEY",
                "alpha                                                local  198.18.0.1:6788      10.32.1.0/24               -          -        -            q2Ms0bVg",
                "epsilon                                              alive  -                    -                          yes        -        12s          ZXBzaWxv",
                r"ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il  alive  198.18.0.2:6788\x0d  10.32.2.0/24,10.32.9.0/24  yes        yes      -            Zm9vYmFy",
                "delta                                                left   198.18.0.4:6788      10.32.4.0/24               -          -        -            ZGVsdGFk",
                r"gam\u{9b}2Jma                                        dead   198.18.0.5:6788      10.32.5.0/24               -          -        12m 34s      Z2FtbWFn",
            ]
        );
    }

    #[test]
    fn routes_view_shows_remote_strings_escaped_exact_lines() {
        assert_eq!(
            routes_lines(&hostile_routes()),
            [
                "BLOCK                 VIA    NAME                                                 KEY       ENDPOINT             STATE",
                "10.32.1.0/24          local  alpha                                                q2Ms0bVg  -                    -",
                r"10.32.2.0/24\u{202e}  peer   ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il  Zm9vYmFy  198.18.0.2:6788\x07  established",
            ]
        );
    }

    #[test]
    fn ipam_view_shows_remote_strings_escaped_exact_lines() {
        assert_eq!(
            ipam_lines(&hostile_ipam())[12..],
            [
                "OWNED                      OWNER                                                KEY       NOTE",
                "10.32.0.0/13,10.32.8.0/14  alpha                                                q2Ms0bVg  this node",
                "10.44.0.0/14               (not known yet)                                      -         -",
                r"10.47.255.0/24             ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il  Zm9vYmFy  -",
                "",
                "ADDRESS       CONTAINER      IFNAME    POD                        NETWORK   NOTE",
                r"10.32.1.2/24  c0\x1b[2Jffee  eth0\x0d  de\u{9b}fault/web\u{202e}  mesh\x7f  -",
            ]
        );
    }

    #[test]
    fn dns_view_shows_remote_strings_escaped_exact_lines() {
        assert_eq!(
            dns_text(&hostile_dns()),
            r"zone       mesh.local.\x1b[8m
listen     10.32.1.1:53
upstreams  198.18.0.9:53
ttl        30 s

NAME                                                             ADDRESS         OWNER           SERVED
db.mesh.local.                                                   10.32.2.7       QUJDREVG        no (owner dead)
ev\x1b]0;pwned\x07\x1b[2J\u{9b}1m\x7f\x0d\u{202e}il.mesh.local.  10.32.1.50\x0d  Zm9v\u{9b}YmFy  yes
"
        );
        let changed = DnsChanged {
            records: hostile_dns().records[1..].to_vec(),
        };
        assert_eq!(
            dns_changed_text("added", &changed),
            "added ev\\x1b]0;pwned\\x07\\x1b[2J\\u{9b}1m\\x7f\\x0d\\u{202e}il.mesh.local. 10.32.1.50\\x0d\n"
        );
    }

    #[test]
    fn rmpeer_allocate_and_release_show_remote_strings_escaped() {
        let mut removed = sample_removed();
        removed.name = HOSTILE.to_owned();
        removed.reclaimed[1] = "10.32.6.0/23\r".to_owned();
        assert_eq!(
            removed_text(&removed),
            "removed ev\\x1b]0;pwned\\x07\\x1b[2J\\u{9b}1m\\x7f\\x0d\\u{202e}il (Z2FtbWFn): this node took over 10.32.5.0/24, 10.32.6.0/23\\x0d\n"
        );
        // A member known only by a key that is not base64 (its fingerprint quotes it).
        removed.name.clear();
        removed.public_key = "\x1b[2Jkey".to_owned();
        removed.reclaimed.clear();
        assert_eq!(
            removed_text(&removed),
            "removed \\x1b[2Jkey: it owned no blocks this node knows of\n"
        );
        let got = IpamAllocated {
            address: "10.32.1.5/24\u{202e}".to_owned(),
            gateway: "10.32.1.1\x07".to_owned(),
            mtu: 1420,
            bridge: "mesh0\x1b[8m".to_owned(),
            range: "10.32.0.0/12".to_owned(),
            fresh: false,
        };
        assert_eq!(
            allocated_text(&got),
            "already held 10.32.1.5/24\\u{202e} (gateway 10.32.1.1\\x07, bridge mesh0\\x1b[8m, mtu 1420)\n"
        );
        assert_eq!(
            released_text(&IpamReleased {
                released: Some("10.32.1.5/24\x7f".to_owned())
            }),
            "released 10.32.1.5/24\\x7f\n"
        );
    }
}
