//! Integration tests of mesh-datapath against the real kernel, each inside a network namespace
//! of its own that it deletes again, also when it fails. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use mesh_datapath::{DatapathError, HostNetwork, bind_udp, enable_ip_forwarding, enter_netns};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::RouteMessageBuilder;

const BRIDGE: &str = "mesh0";
const TUN: &str = "meshtun0";
const MTU: u32 = 1420;

fn gateway() -> Ipv4Net {
    "10.32.1.1/24".parse().unwrap()
}

fn cluster_range() -> Ipv4Net {
    "10.32.0.0/12".parse().unwrap()
}

/// A network namespace named `mdp-<pid>-<n>`, deleted on drop (also while unwinding).
struct TestNetns {
    name: String,
}

impl TestNetns {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mdp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name} failed");
        Self { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs `f` on a new thread inside the namespace, on a current-thread tokio runtime of that
    /// thread, so that every socket, netlink connection and device it opens lives there.
    fn run<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let path = self.path();
        let joined = std::thread::spawn(move || {
            enter_netns(&path).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(f())
        })
        .join();
        match joined {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let ok = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}

async fn routes_via(net: &HostNetwork, oif: u32) -> Vec<RouteMessage> {
    net.handle()
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_filter(|r| futures::future::ready(r.attributes.contains(&RouteAttribute::Oif(oif))))
        .try_collect()
        .await
        .unwrap()
}

fn route_dst(route: &RouteMessage) -> Option<Ipv4Net> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
            Ipv4Net::new(*ip, route.header.destination_prefix_length).ok()
        }
        _ => None,
    })
}

fn route_prefsrc(route: &RouteMessage) -> Option<Ipv4Addr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}

#[test]
fn ensure_bridge_creates_once_then_reuses() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let net = HostNetwork::connect().await.unwrap();
        assert_eq!(net.link_index(BRIDGE).await.unwrap(), None);
        assert!(net.ensure_bridge(BRIDGE, gateway(), MTU).await.unwrap());
        assert!(!net.ensure_bridge(BRIDGE, gateway(), MTU).await.unwrap());

        let index = net.link_index(BRIDGE).await.unwrap().unwrap();
        let link = net
            .handle()
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .unwrap()
            .unwrap();
        assert!(
            link.header.flags.contains(LinkFlags::Up),
            "{:?}",
            link.header.flags
        );
        assert!(
            link.attributes
                .contains(&netlink_packet_route::link::LinkAttribute::Mtu(MTU))
        );

        let addrs: Vec<_> = net
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .unwrap();
        let v4: Vec<_> = addrs
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(std::net::IpAddr::V4(ip)) => {
                        Some(Ipv4Net::new(*ip, m.header.prefix_len).unwrap())
                    }
                    _ => None,
                })
            })
            .collect();
        assert_eq!(
            v4,
            vec![gateway()],
            "exactly one gateway address after two calls"
        );
    });
}

#[test]
fn ensure_bridge_keeps_other_addresses_and_adds_a_missing_gateway() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let net = HostNetwork::connect().await.unwrap();
        assert!(net.ensure_bridge(BRIDGE, gateway(), MTU).await.unwrap());
        let index = net.link_index(BRIDGE).await.unwrap().unwrap();
        let second: Ipv4Net = "10.32.2.1/24".parse().unwrap();
        assert!(!net.ensure_bridge(BRIDGE, second, MTU).await.unwrap());
        let count = net
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_filter(|m| {
                futures::future::ready(m.header.family == netlink_packet_route::AddressFamily::Inet)
            })
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len();
        assert_eq!(count, 2);
    });
}

#[test]
fn ensure_bridge_refuses_a_link_of_another_kind() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let net = HostNetwork::connect().await.unwrap();
        let _tun = HostNetwork::create_tun(BRIDGE, MTU).unwrap();
        let err = net.ensure_bridge(BRIDGE, gateway(), MTU).await.unwrap_err();
        match &err {
            DatapathError::NotABridge { name, kind } => {
                assert_eq!(name, BRIDGE);
                assert_eq!(kind, "tun");
            }
            other => panic!("expected NotABridge, got {other:?}"),
        }
        assert!(err.to_string().contains("not a bridge"), "{err}");
    });
}

#[test]
fn tun_route_is_idempotent_and_goes_with_the_device() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let net = HostNetwork::connect().await.unwrap();
        net.ensure_bridge(BRIDGE, gateway(), MTU).await.unwrap();
        let tun = HostNetwork::create_tun(TUN, MTU).unwrap();
        assert_eq!(tun.name().unwrap(), TUN);
        assert_eq!(u32::from(tun.mtu().unwrap()), MTU);
        assert!(tun.is_running().unwrap());
        let index = net.link_index(TUN).await.unwrap().unwrap();
        assert_eq!(tun.if_index().unwrap(), index);

        // No address on the TUN device.
        let addrs: Vec<_> = net
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_filter(|m| {
                futures::future::ready(m.header.family == netlink_packet_route::AddressFamily::Inet)
            })
            .try_collect()
            .await
            .unwrap();
        assert!(addrs.is_empty(), "{addrs:?}");

        for _ in 0..2 {
            net.route_to_tun(cluster_range(), TUN, gateway().addr())
                .await
                .unwrap();
            let routes = routes_via(&net, index).await;
            assert_eq!(routes.len(), 1, "{routes:?}");
            assert_eq!(route_dst(&routes[0]), Some(cluster_range()));
            assert_eq!(route_prefsrc(&routes[0]), Some(gateway().addr()));
        }

        drop(tun);
        // The kernel unregisters a non-persistent TUN when its last descriptor closes.
        let mut gone = false;
        for _ in 0..50 {
            if net.link_index(TUN).await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            gone,
            "TUN device still present after the device was dropped"
        );
        assert!(routes_via(&net, index).await.is_empty());
        // The bridge stays.
        assert!(net.link_index(BRIDGE).await.unwrap().is_some());
    });
}

#[test]
fn a_bridge_without_address_gets_its_gateways_synced_and_the_route_its_source_later() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let net = HostNetwork::connect().await.unwrap();
        assert!(
            net.ensure_bridge_without_address(BRIDGE, MTU)
                .await
                .unwrap()
        );
        assert!(
            !net.ensure_bridge_without_address(BRIDGE, MTU)
                .await
                .unwrap()
        );
        let index = net.link_index(BRIDGE).await.unwrap().unwrap();
        assert!(net.addresses(index).await.unwrap().is_empty());
        let outside: Ipv4Net = "192.0.2.1/24".parse().unwrap();
        let first: Ipv4Net = "10.32.0.1/24".parse().unwrap();
        let second: Ipv4Net = "10.32.7.1/24".parse().unwrap();
        net.ensure_bridge(BRIDGE, outside, MTU).await.unwrap();
        let (added, deleted) = net
            .sync_addresses(BRIDGE, cluster_range(), &[first, second])
            .await
            .unwrap();
        assert_eq!((added, deleted), (vec![first, second], vec![]));
        let (added, deleted) = net
            .sync_addresses(BRIDGE, cluster_range(), &[second])
            .await
            .unwrap();
        assert_eq!((added, deleted), (vec![], vec![first]));
        let mut have = net.addresses(index).await.unwrap();
        have.sort();
        assert_eq!(have, [second, outside], "outside the range is left alone");

        // The route into the TUN device: no source while there is no gateway, then one.
        let _tun = HostNetwork::create_tun(TUN, MTU).unwrap();
        let tun = net.link_index(TUN).await.unwrap().unwrap();
        net.route_to_tun_from(cluster_range(), TUN, None)
            .await
            .unwrap();
        let routes = routes_via(&net, tun).await;
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert_eq!(route_prefsrc(&routes[0]), None);
        net.route_to_tun_from(cluster_range(), TUN, Some(second.addr()))
            .await
            .unwrap();
        let routes = routes_via(&net, tun).await;
        assert_eq!(routes.len(), 1, "replaced: {routes:?}");
        assert_eq!(route_prefsrc(&routes[0]), Some(second.addr()));
    });
}

#[test]
fn route_to_a_missing_tun_is_link_not_found() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let net = HostNetwork::connect().await.unwrap();
        let err = net
            .route_to_tun(cluster_range(), TUN, gateway().addr())
            .await
            .unwrap_err();
        assert!(matches!(err, DatapathError::LinkNotFound { .. }), "{err:?}");
    });
}

#[test]
fn second_open_of_an_attached_tun_is_busy() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let _tun = HostNetwork::create_tun(TUN, MTU).unwrap();
        match HostNetwork::create_tun(TUN, MTU) {
            Err(DatapathError::TunBusy { name }) => assert_eq!(name, TUN),
            Err(other) => panic!("expected TunBusy, got {other:?}"),
            Ok(_) => panic!("a second open of an attached TUN device succeeded"),
        }
    });
}

#[test]
fn delete_link_reports_whether_it_deleted() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let net = HostNetwork::connect().await.unwrap();
        net.ensure_bridge(BRIDGE, gateway(), MTU).await.unwrap();
        assert!(net.delete_link(BRIDGE).await.unwrap());
        assert!(!net.delete_link(BRIDGE).await.unwrap());
        assert_eq!(net.link_index(BRIDGE).await.unwrap(), None);
    });
}

#[test]
fn bind_udp_twice_is_port_in_use() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let buf = 4 << 20;
        let first = bind_udp("0.0.0.0:0".parse().unwrap(), buf).unwrap();
        let addr = first.local_addr().unwrap();
        let rcvbuf = {
            use std::os::fd::AsRawFd;
            mesh_datapath::getsockopt_int(first.as_raw_fd(), libc::SO_RCVBUF).unwrap()
        };
        // SO_RCVBUFFORCE as root: not capped by net.core.rmem_max (the kernel doubles it).
        assert!(
            usize::try_from(rcvbuf).unwrap() >= buf,
            "SO_RCVBUF {rcvbuf}"
        );
        let err = bind_udp(addr, buf).unwrap_err();
        match err {
            DatapathError::PortInUse { addr: a } => assert_eq!(a, addr),
            other => panic!("expected PortInUse, got {other:?}"),
        }
    });
}

#[test]
fn packet_to_the_cluster_range_arrives_on_the_tun_device() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let net = HostNetwork::connect().await.unwrap();
        net.ensure_bridge(BRIDGE, gateway(), MTU).await.unwrap();
        let tun = HostNetwork::create_tun(TUN, MTU).unwrap();
        net.route_to_tun(cluster_range(), TUN, gateway().addr())
            .await
            .unwrap();

        let dst: SocketAddr = "10.32.5.5:9999".parse().unwrap();
        let payload = b"hello through meshtun0";
        let sock = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
        sock.send_to(payload, dst).await.unwrap();

        let mut buf = vec![0u8; 65536];
        let packet = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let n = tun.recv(&mut buf).await.unwrap();
                let p = &buf[..n];
                // Skip IPv6 chatter (router solicitations and the like).
                if n >= 28 && p[0] >> 4 == 4 && p[9] == libc::IPPROTO_UDP as u8 {
                    return p.to_vec();
                }
            }
        })
        .await
        .expect("no IPv4 UDP packet on the TUN device");

        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        let dst_ip = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        assert_eq!(
            src,
            gateway().addr(),
            "host traffic must carry the overlay address"
        );
        assert_eq!(dst_ip, Ipv4Addr::new(10, 32, 5, 5));
        assert_eq!(u16::from_be_bytes([packet[ihl + 2], packet[ihl + 3]]), 9999);
        assert_eq!(&packet[ihl + 8..], payload);
    });
}

#[test]
fn ip_forwarding_is_enabled_in_the_namespace_only() {
    let read = || std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_before = read();
    let ns = TestNetns::new();
    ns.run(move || async move {
        // Prove /proc/sys/net shows the fresh namespace (only lo) before writing anything.
        let mut conf: Vec<String> = std::fs::read_dir("/proc/sys/net/ipv4/conf")
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        conf.sort();
        assert_eq!(
            conf,
            ["all", "default", "lo"],
            "not inside the test namespace"
        );
        enable_ip_forwarding().unwrap();
        assert_eq!(read().trim(), "1");
        enable_ip_forwarding().unwrap();
    });
    assert_eq!(read(), host_before, "the machine's own ip_forward changed");
}

#[test]
fn prerequisites_hold_for_root() {
    // Reads /proc/self/status and opens /dev/net/tun; creates nothing.
    mesh_datapath::check_prerequisites().unwrap();
}

#[test]
fn create_tun_reopens_a_persistent_device() {
    let ns = TestNetns::new();
    ns.run(|| async {
        let net = HostNetwork::connect().await.unwrap();
        let tun = HostNetwork::create_tun(TUN, MTU).unwrap();
        let index = tun.if_index().unwrap();
        // As if something made it persistent and went away.
        tun.persist().unwrap();
        drop(tun);
        assert_eq!(net.link_index(TUN).await.unwrap(), Some(index));

        let tun = HostNetwork::create_tun(TUN, 1300).unwrap();
        assert_eq!(
            tun.if_index().unwrap(),
            index,
            "attached to the same device"
        );
        assert_eq!(tun.mtu().unwrap(), 1300);
        drop(tun);
        // Still persistent: remove it explicitly.
        assert!(net.delete_link(TUN).await.unwrap());
    });
}
