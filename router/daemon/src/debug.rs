//! `GET /v1/debug` (`meshctl debug`): one view of what `ip link`, `bridge`, `ip netns`,
//! `ip neigh`, `ip route`, `/proc/net/udp` and `/proc/net/snmp` show piecemeal, read here
//! through rtnetlink, `/proc` and `/sys` (never by running those tools), meshd's nftables
//! table (through `nft`, the one tool run here: `filter.rs`), plus the findings of
//! [`checks::findings`].
//!
//! Offloads: ethtool's feature bits through its generic-netlink family (the `ethtool`
//! crate of rust-netlink, as `ethtool -k` shows them), the GSO/GRO/TSO limits from
//! rtnetlink's link attributes and, for the TUN device, `/sys/class/net/<tun>/tun_flags`
//! (the virtio-net header) and whether meshd's own offload took effect.

pub(crate) mod checks;

use crate::run::Shared;
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use mesh_api::{
    DebugFdb, DebugLink, DebugNeighbour, DebugOffload, DebugReport, DebugRoute, DebugUdp, DebugVeth,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Prefix of the host end of a pod's veth made by `mesh-cni` (`cni/src/commands.rs`).
const VETH_PREFIX: &str = "vmesh";
/// Routing table of the kernel's local addresses: not shown.
const LOCAL_TABLE: u32 = 255;

/// One link and the attributes the report needs beyond [`DebugLink`].
struct Link {
    shown: DebugLink,
    master_index: Option<u32>,
    peer_ifindex: Option<u32>,
    netns_id: Option<i32>,
    gso_max_size: u32,
    gso_max_segs: u32,
    gro_max_size: u32,
    tso_max_size: u32,
}

/// Gathers the report: links, addresses, netns names, neighbours, FDB, routes, sysctls and
/// UDP counters, then the findings. Parts that cannot be read are listed in `errors`.
pub(crate) async fn report(shared: &Shared) -> DebugReport {
    let status = shared.status();
    let c = &shared.config;
    let handle = shared.net.handle().clone();
    let mut errors = Vec::new();

    let links = match links(&handle).await {
        Ok(l) => l,
        Err(e) => {
            errors.push(format!("cannot list links: {e}"));
            Vec::new()
        }
    };
    let names: HashMap<u32, String> = links
        .iter()
        .map(|l| (l.shown.ifindex, l.shown.name.clone()))
        .collect();
    let netns_names = netns_names(&handle).await;
    let shown = |l: &Link| {
        let mut s = l.shown.clone();
        s.master = l.master_index.and_then(|i| names.get(&i).cloned());
        s
    };
    let bridge = links.iter().find(|l| l.shown.name == c.bridge);
    let bridge_index = bridge.map(|b| b.shown.ifindex);
    let tun = links.iter().find(|l| l.shown.name == c.tun);
    let ports: Vec<DebugLink> = links
        .iter()
        .filter(|l| bridge_index.is_some() && l.master_index == bridge_index)
        .map(&shown)
        .collect();
    let mut veth_links: Vec<&Link> = Vec::new();
    let mut veths: Vec<DebugVeth> = Vec::new();
    for l in links.iter().filter(|l| l.shown.kind == "veth") {
        let attached = bridge_index.is_some() && l.master_index == bridge_index;
        let netns_name = l.netns_id.and_then(|id| netns_names.get(&id).cloned());
        let pod_end = match (&netns_name, l.peer_ifindex) {
            (Some(ns), Some(peer)) => pod_end(ns, peer).await,
            _ => None,
        };
        let in_range = pod_end.as_ref().is_some_and(|(_, _, addrs)| {
            addrs.iter().any(|a| {
                a.parse::<Ipv4Net>()
                    .is_ok_and(|n| c.range.contains(&n.addr()))
            })
        });
        if !(attached || l.shown.name.starts_with(VETH_PREFIX) || in_range) {
            continue;
        }
        let (pod_ifname, pod_mtu, pod_addresses) = match pod_end {
            Some((n, m, a)) => (Some(n), Some(m), a),
            None => (None, None, Vec::new()),
        };
        veth_links.push(l);
        veths.push(DebugVeth {
            link: shown(l),
            peer_ifindex: l.peer_ifindex,
            netns_id: l.netns_id,
            netns_name,
            attached,
            pod_ifname,
            pod_mtu,
            pod_addresses,
        });
    }

    let mut offloads: Vec<DebugOffload> = Vec::new();
    if let Some(t) = tun {
        let flags = std::fs::read_to_string(format!("/sys/class/net/{}/tun_flags", c.tun))
            .ok()
            .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok());
        let mut o = offload(t);
        o.source.push_str("+sysfs");
        o.tun_vnet_hdr = flags.map(|f| f & checks::IFF_VNET_HDR != 0);
        o.meshd_offload = Some(status.datapath.tun_offload);
        offloads.push(o);
    }
    offloads.extend(veth_links.iter().map(|l| offload(l)));
    let devices: Vec<String> = offloads.iter().map(|o| o.device.clone()).collect();
    match ethtool_features(&devices).await {
        Ok(mut features) => {
            for o in &mut offloads {
                if let Some(f) = features.remove(&o.device) {
                    o.features = f;
                    o.source = format!("ethtool-netlink+{}", o.source);
                }
            }
        }
        Err(e) => errors.push(format!("cannot read ethtool features over netlink: {e}")),
    }

    let (neighbours, fdb) = match bridge_index {
        Some(bi) => {
            let ports_idx: Vec<u32> = links
                .iter()
                .filter(|l| l.master_index == Some(bi))
                .map(|l| l.shown.ifindex)
                .collect();
            let n = neighbours(&handle, bi, &names).await.unwrap_or_else(|e| {
                errors.push(format!("cannot list ARP entries: {e}"));
                Vec::new()
            });
            let f = fdb(&handle, bi, &ports_idx, &names)
                .await
                .unwrap_or_else(|e| {
                    errors.push(format!("cannot list FDB entries: {e}"));
                    Vec::new()
                });
            (n, f)
        }
        None => (Vec::new(), Vec::new()),
    };
    let routes = routes(&handle, c.range, &names).await.unwrap_or_else(|e| {
        errors.push(format!("cannot list routes: {e}"));
        Vec::new()
    });

    let filter = crate::filter::debug(&shared.filter, crate::filter::read().await);
    let mut report = DebugReport {
        node: c.name.clone(),
        range: c.range.to_string(),
        mtu: c.mtu,
        bridge: bridge.map(&shown),
        ports,
        veths,
        tun: tun.map(&shown),
        neighbours,
        fdb,
        routes,
        offloads,
        ip_forward: read_flag("/proc/sys/net/ipv4/ip_forward"),
        bridge_nf_call_iptables: read_flag("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        udp: udp(c.listen),
        filter: Some(filter),
        findings: Vec::new(),
        errors,
    };
    report.findings = checks::findings(&report, &status);
    report
}

/// The ethtool features that are on, per device, through ethtool's generic-netlink family.
async fn ethtool_features(devices: &[String]) -> Result<BTreeMap<String, Vec<String>>, String> {
    use ethtool::{EthtoolAttr, EthtoolFeatureAttr};
    use futures::StreamExt;
    let (connection, mut handle, _) = ethtool::new_connection().map_err(|e| e.to_string())?;
    let task = tokio::spawn(connection);
    let mut out = BTreeMap::new();
    for dev in devices {
        let mut replies = match handle.feature().get(Some(dev)).execute().await {
            Ok(r) => r,
            Err(e) => {
                task.abort();
                return Err(e.to_string());
            }
        };
        let mut on = Vec::new();
        while let Some(Ok(msg)) = replies.next().await {
            for nla in &msg.payload.nlas {
                if let EthtoolAttr::Feature(EthtoolFeatureAttr::Active(bits)) = nla {
                    on.extend(bits.iter().filter(|b| b.value).map(|b| b.name.clone()));
                }
            }
        }
        on.sort();
        out.insert(dev.clone(), on);
    }
    task.abort();
    Ok(out)
}

fn offload(l: &Link) -> DebugOffload {
    DebugOffload {
        device: l.shown.name.clone(),
        source: "rtnetlink".into(),
        features: Vec::new(),
        gso_max_size: l.gso_max_size,
        gso_max_segs: l.gso_max_segs,
        gro_max_size: l.gro_max_size,
        tso_max_size: l.tso_max_size,
        tun_vnet_hdr: None,
        meshd_offload: None,
    }
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

async fn links(handle: &rtnetlink::Handle) -> Result<Vec<Link>, rtnetlink::Error> {
    let msgs: Vec<LinkMessage> = handle.link().get().execute().try_collect().await?;
    let mut addrs: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let amsgs: Vec<_> = handle.address().get().execute().try_collect().await?;
    for m in &amsgs {
        for a in &m.attributes {
            if let AddressAttribute::Local(IpAddr::V4(ip)) = a
                && let Ok(net) = Ipv4Net::new(*ip, m.header.prefix_len)
            {
                addrs
                    .entry(m.header.index)
                    .or_default()
                    .push(net.to_string());
            }
        }
    }
    Ok(msgs
        .iter()
        .map(|m| {
            let mut l = Link {
                shown: DebugLink {
                    ifindex: m.header.index,
                    admin_up: m.header.flags.contains(LinkFlags::Up),
                    addresses: addrs.remove(&m.header.index).unwrap_or_default(),
                    ..DebugLink::default()
                },
                master_index: None,
                peer_ifindex: None,
                netns_id: None,
                gso_max_size: 0,
                gso_max_segs: 0,
                gro_max_size: 0,
                tso_max_size: 0,
            };
            for a in &m.attributes {
                match a {
                    LinkAttribute::IfName(n) => l.shown.name.clone_from(n),
                    LinkAttribute::Mtu(v) => l.shown.mtu = *v,
                    LinkAttribute::Address(b) => l.shown.mac = mac(b),
                    LinkAttribute::Controller(i) => l.master_index = Some(*i),
                    LinkAttribute::Link(i) => l.peer_ifindex = Some(*i),
                    LinkAttribute::LinkNetNsId(id) => l.netns_id = Some(*id),
                    LinkAttribute::OperState(s) => {
                        l.shown.oper_state = s.to_string().to_ascii_lowercase();
                    }
                    LinkAttribute::GsoMaxSize(v) => l.gso_max_size = *v,
                    LinkAttribute::GsoMaxSegs(v) => l.gso_max_segs = *v,
                    LinkAttribute::GroMaxSize(v) => l.gro_max_size = *v,
                    LinkAttribute::TsoMaxSize(v) => l.tso_max_size = *v,
                    LinkAttribute::LinkInfo(infos) => {
                        for i in infos {
                            if let LinkInfo::Kind(k) = i {
                                l.shown.kind = k.to_string();
                            }
                        }
                    }
                    _ => {}
                }
            }
            l
        })
        .collect())
}

/// Netns id (as the host namespace numbers them) -> name under `/run/netns`.
async fn netns_names(handle: &rtnetlink::Handle) -> HashMap<i32, String> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(name) = entry.file_name().to_str().map(ToOwned::to_owned) else {
            continue;
        };
        if let Ok(Some(id)) = handle.link().get_netns_id(name.clone()).execute().await {
            out.insert(id, name);
        }
    }
    out
}

/// The name, MTU and IPv4 addresses of link `index` inside the namespace `/run/netns/NAME`
/// (a pod veth's other end); `None` when it cannot be read.
async fn pod_end(netns: &str, index: u32) -> Option<(String, u32, Vec<String>)> {
    let path = Path::new("/run/netns").join(netns);
    let net = mesh_datapath::HostNetwork::connect_in_netns(&path)
        .await
        .ok()?;
    let msg = net
        .handle()
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await
        .ok()??;
    let mut name = String::new();
    let mut mtu = 0;
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => name.clone_from(n),
            LinkAttribute::Mtu(m) => mtu = *m,
            _ => {}
        }
    }
    let addrs = net
        .addresses(index)
        .await
        .ok()?
        .iter()
        .map(ToString::to_string)
        .collect();
    Some((name, mtu, addrs))
}

/// IPv4 neighbour (ARP) entries on the bridge.
async fn neighbours(
    handle: &rtnetlink::Handle,
    bridge: u32,
    names: &HashMap<u32, String>,
) -> Result<Vec<DebugNeighbour>, rtnetlink::Error> {
    let msgs: Vec<_> = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute()
        .try_collect()
        .await?;
    let mut out: Vec<DebugNeighbour> = msgs
        .iter()
        .filter(|m| m.header.ifindex == bridge)
        .filter_map(|m| {
            let mut address = None;
            let mut lladdr = String::new();
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                        address = Some(ip.to_string());
                    }
                    NeighbourAttribute::LinkLayerAddress(b) => lladdr = mac(b),
                    _ => {}
                }
            }
            Some(DebugNeighbour {
                device: names.get(&m.header.ifindex).cloned().unwrap_or_default(),
                address: address?,
                mac: lladdr,
                state: m.header.state.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// FDB entries of the bridge and its ports.
async fn fdb(
    handle: &rtnetlink::Handle,
    bridge: u32,
    ports: &[u32],
    names: &HashMap<u32, String>,
) -> Result<Vec<DebugFdb>, rtnetlink::Error> {
    let msgs: Vec<_> = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await?;
    let mut out: Vec<DebugFdb> = msgs
        .iter()
        .filter(|m| {
            m.header.ifindex == bridge
                || ports.contains(&m.header.ifindex)
                || m.attributes
                    .iter()
                    .any(|a| matches!(a, NeighbourAttribute::Controller(c) if *c == bridge))
        })
        .filter_map(|m| {
            let mut lladdr = None;
            let mut vlan = None;
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::LinkLayerAddress(b) => lladdr = Some(mac(b)),
                    NeighbourAttribute::Vlan(v) => vlan = Some(*v),
                    _ => {}
                }
            }
            Some(DebugFdb {
                device: names.get(&m.header.ifindex).cloned().unwrap_or_default(),
                mac: lladdr?,
                vlan,
                state: m.header.state.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.device, &a.mac).cmp(&(&b.device, &b.mac)));
    Ok(out)
}

/// IPv4 routes (every table but `local`) whose destination overlaps `range`; the default
/// route does not count.
async fn routes(
    handle: &rtnetlink::Handle,
    range: Ipv4Net,
    names: &HashMap<u32, String>,
) -> Result<Vec<DebugRoute>, rtnetlink::Error> {
    let msgs: Vec<RouteMessage> = handle
        .route()
        .get(rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await?;
    let mut out: Vec<DebugRoute> = msgs
        .iter()
        .filter_map(|m| {
            let mut dst = Ipv4Addr::UNSPECIFIED;
            let (mut dev, mut gw, mut src) = (String::new(), None, None);
            let mut table = u32::from(m.header.table);
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                    RouteAttribute::Oif(i) => dev = names.get(i).cloned().unwrap_or_default(),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some(g.to_string()),
                    RouteAttribute::PrefSource(RouteAddress::Inet(s)) => {
                        src = Some(s.to_string());
                    }
                    RouteAttribute::Table(t) => table = *t,
                    _ => {}
                }
            }
            let net = Ipv4Net::new(dst, m.header.destination_prefix_length).ok()?;
            let overlaps = range.contains(&net) || net.contains(&range);
            (overlaps && net.prefix_len() > 0 && table != LOCAL_TABLE).then(|| DebugRoute {
                destination: net.trunc().to_string(),
                device: dev,
                gateway: gw,
                source: src,
                table,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.table, &a.destination).cmp(&(b.table, &b.destination)));
    Ok(out)
}

/// A `0`/`1` file of `/proc/sys`; `None` when it cannot be read.
fn read_flag(path: &str) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// meshd's UDP socket in `/proc/self/net/udp{,6}` (found by the inodes of meshd's own
/// descriptors) and the host's UDP counters of `/proc/self/net/snmp`.
fn udp(listen: std::net::SocketAddr) -> DebugUdp {
    let inodes = own_socket_inodes();
    let sock = ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(Path::new(p)).ok())
        .find_map(|t| checks::find_udp_socket(&t, listen.port(), &inodes));
    let snmp = std::fs::read_to_string("/proc/self/net/snmp").unwrap_or_default();
    DebugUdp {
        local: listen.to_string(),
        socket_drops: sock.map(|s| s.drops),
        rx_queue: sock.map(|s| s.rx_queue),
        rcvbuf_errors: checks::snmp_udp(&snmp, "RcvbufErrors"),
        in_errors: checks::snmp_udp(&snmp, "InErrors"),
        sndbuf_errors: checks::snmp_udp(&snmp, "SndbufErrors"),
    }
}

/// Inodes of the sockets this process holds (`/proc/self/fd/N -> socket:[inode]`).
fn own_socket_inodes() -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            t.parse().ok()
        })
        .collect()
}
