//! Pod attachments, for `mesh-cni`: the veth pair that joins a pod's network namespace to the
//! node's bridge, with the pod's address, MTU and routes, through rtnetlink.
//!
//! [`HostNetwork::attach_pod`] leaves nothing behind when it fails: the host end of the pair
//! is deleted, which deletes the pod end wherever it is by then. Detaching is deleting the
//! host end ([`HostNetwork::delete_link`]); the pod end goes with it, and with the namespace.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::netlink_errno;
use crate::{DatapathError, HostNetwork};

/// The kernel's main routing table.
const MAIN_TABLE: u32 = 254;

/// What [`HostNetwork::attach_pod`] creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// The pod's network namespace (`CNI_NETNS`), e.g. `/var/run/netns/NAME` or
    /// `/proc/PID/ns/net`.
    pub netns: PathBuf,
    /// Name of the host end (in the namespace of `self`).
    pub host_ifname: String,
    /// Name the host creates the pod end under before moving it; must be free on the host.
    pub temp_ifname: String,
    /// Name of the pod end inside the pod (`CNI_IFNAME`).
    pub pod_ifname: String,
    /// The bridge the host end joins.
    pub bridge: String,
    /// MTU of both ends.
    pub mtu: u32,
    /// The pod's address with its prefix, e.g. 10.32.1.5/24.
    pub address: Ipv4Net,
    /// Next hop of `routes` (the bridge's address).
    pub gateway: Ipv4Addr,
    /// Destinations routed via `gateway` (0.0.0.0/0 for a default route).
    pub routes: Vec<Ipv4Net>,
    /// Whether the bridge may send a frame back out of the port it came in on (a pod reaching
    /// itself through a service address).
    pub hairpin: bool,
}

/// One end of the pair as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    /// Interface name.
    pub name: String,
    /// Interface index in its namespace.
    pub index: u32,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Index of the bridge (or other controller) it is attached to.
    pub controller: Option<u32>,
}

/// The pair [`HostNetwork::attach_pod`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAttachment {
    /// The host end.
    pub host: LinkSummary,
    /// The pod end.
    pub pod: LinkSummary,
}

/// A route of the main table, as [`HostNetwork::routes_via`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSummary {
    /// Destination (0.0.0.0/0 for the default route).
    pub destination: Ipv4Net,
    /// Next hop, if any.
    pub gateway: Option<Ipv4Addr>,
}

impl HostNetwork {
    /// Opens a netlink connection to the network namespace at `path` (the calling thread
    /// stays where it is: a short-lived helper thread enters the namespace, opens the socket,
    /// which stays bound to that namespace, and ends). Must be called inside a tokio runtime.
    pub async fn connect_in_netns(path: &Path) -> Result<Self, DatapathError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DatapathError::NoRuntime {
                what: "HostNetwork::connect_in_netns",
            })?;
        let opened = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _entered = runtime.enter();
                    crate::enter_netns(path)?;
                    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
                        DatapathError::io(
                            format!("open a netlink route socket in {}", path.display()),
                            e,
                        )
                    })?;
                    Ok::<_, DatapathError>((connection, handle))
                })
                .join()
        });
        let (connection, handle) = opened.map_err(|_| {
            DatapathError::io(
                format!("enter network namespace {}", path.display()),
                std::io::Error::other("helper thread panicked"),
            )
        })??;
        tokio::spawn(connection);
        Ok(Self::from_handle(handle))
    }

    /// Creates the veth pair of `spec`, moves the pod end into the pod's namespace under its
    /// name with address, MTU and routes, attaches the host end to the bridge and sets both
    /// up. A host end left by an earlier attempt with the same name is replaced. On failure
    /// nothing is left behind.
    ///
    /// Fails if the pod already has an interface named `spec.pod_ifname`.
    pub async fn attach_pod(&self, spec: &PodSpec) -> Result<PodAttachment, DatapathError> {
        let bridge =
            self.link_index(&spec.bridge)
                .await?
                .ok_or_else(|| DatapathError::LinkNotFound {
                    name: spec.bridge.clone(),
                })?;
        let netns = File::open(&spec.netns).map_err(|e| {
            DatapathError::io(
                format!("open network namespace {}", spec.netns.display()),
                e,
            )
        })?;
        let pod_net = Self::connect_in_netns(&spec.netns).await?;
        if pod_net.link_index(&spec.pod_ifname).await?.is_some() {
            return Err(DatapathError::io(
                format!("create {} in {}", spec.pod_ifname, spec.netns.display()),
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the pod already has an interface of that name",
                ),
            ));
        }
        // Leftovers of an attempt that died half-way carry our deterministic names.
        self.delete_link(&spec.host_ifname).await?;
        self.delete_link(&spec.temp_ifname).await?;

        self.handle()
            .link()
            .add(
                LinkVeth::new(&spec.host_ifname, &spec.temp_ifname)
                    .mtu(spec.mtu)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| {
                DatapathError::netlink(
                    format!("create veth {} / {}", spec.host_ifname, spec.temp_ifname),
                    e,
                )
            })?;
        match self.finish_attach(spec, bridge, &netns, &pod_net).await {
            Ok(done) => Ok(done),
            Err(e) => {
                // Deleting the host end deletes the pod end too, wherever it is by now.
                if let Err(cleanup) = self.delete_link(&spec.host_ifname).await {
                    tracing::warn!(link = %spec.host_ifname, error = %cleanup, "cleanup failed");
                }
                Err(e)
            }
        }
    }

    async fn finish_attach(
        &self,
        spec: &PodSpec,
        bridge: u32,
        netns: &File,
        pod_net: &HostNetwork,
    ) -> Result<PodAttachment, DatapathError> {
        let temp = self.link_index(&spec.temp_ifname).await?.ok_or_else(|| {
            DatapathError::LinkNotFound {
                name: spec.temp_ifname.clone(),
            }
        })?;
        self.handle()
            .link()
            .set(
                LinkUnspec::new_with_index(temp)
                    .setns_by_fd(netns.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| {
                DatapathError::netlink(
                    format!("move {} into {}", spec.temp_ifname, spec.netns.display()),
                    e,
                )
            })?;

        // Inside the pod.
        let pod_index = pod_net
            .link_index(&spec.temp_ifname)
            .await?
            .ok_or_else(|| DatapathError::LinkNotFound {
                name: spec.temp_ifname.clone(),
            })?;
        pod_net
            .handle()
            .link()
            .set(
                LinkUnspec::new_with_index(pod_index)
                    .name(spec.pod_ifname.clone())
                    .mtu(spec.mtu)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| {
                DatapathError::netlink(format!("rename the pod end to {}", spec.pod_ifname), e)
            })?;
        pod_net
            .handle()
            .address()
            .add(
                pod_index,
                IpAddr::V4(spec.address.addr()),
                spec.address.prefix_len(),
            )
            .execute()
            .await
            .map_err(|e| {
                DatapathError::netlink(
                    format!("add address {} to {}", spec.address, spec.pod_ifname),
                    e,
                )
            })?;
        pod_net
            .handle()
            .link()
            .set(LinkUnspec::new_with_index(pod_index).up().build())
            .execute()
            .await
            .map_err(|e| DatapathError::netlink(format!("set {} up", spec.pod_ifname), e))?;
        for dst in &spec.routes {
            let dst = dst.trunc();
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst.network(), dst.prefix_len())
                .gateway(spec.gateway)
                .output_interface(pod_index)
                .build();
            pod_net
                .handle()
                .route()
                .add(route)
                .execute()
                .await
                .map_err(|e| {
                    let hint = if netlink_errno(&e) == Some(libc::EEXIST) {
                        " (the pod has such a route already: is another plugin its primary \
                         interface? then configure mesh-cni with \"primary\": false)"
                    } else {
                        ""
                    };
                    DatapathError::netlink(
                        format!(
                            "add route {dst} via {} dev {}{hint}",
                            spec.gateway, spec.pod_ifname
                        ),
                        e,
                    )
                })?;
        }

        // On the host.
        let host_index = self.link_index(&spec.host_ifname).await?.ok_or_else(|| {
            DatapathError::LinkNotFound {
                name: spec.host_ifname.clone(),
            }
        })?;
        self.handle()
            .link()
            .set(
                LinkUnspec::new_with_index(host_index)
                    .controller(bridge)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| {
                DatapathError::netlink(
                    format!("attach {} to bridge {}", spec.host_ifname, spec.bridge),
                    e,
                )
            })?;
        if spec.hairpin {
            self.handle()
                .link()
                .set_port(LinkBridgePort::new(host_index).hairpin(true).build())
                .execute()
                .await
                .map_err(|e| {
                    DatapathError::netlink(format!("set hairpin on {}", spec.host_ifname), e)
                })?;
        }
        self.handle()
            .link()
            .set(LinkUnspec::new_with_index(host_index).up().build())
            .execute()
            .await
            .map_err(|e| DatapathError::netlink(format!("set {} up", spec.host_ifname), e))?;

        let host = self.link_summary(&spec.host_ifname).await?.ok_or_else(|| {
            DatapathError::LinkNotFound {
                name: spec.host_ifname.clone(),
            }
        })?;
        let pod = pod_net
            .link_summary(&spec.pod_ifname)
            .await?
            .ok_or_else(|| DatapathError::LinkNotFound {
                name: spec.pod_ifname.clone(),
            })?;
        Ok(PodAttachment { host, pod })
    }

    /// Link `name` as the kernel reports it, `None` if there is no such link.
    pub async fn link_summary(&self, name: &str) -> Result<Option<LinkSummary>, DatapathError> {
        let result = self
            .handle()
            .link()
            .get()
            .match_name(name.to_owned())
            .execute()
            .try_next()
            .await;
        match result {
            Ok(Some(link)) => Ok(Some(summarize(name, &link))),
            Ok(None) => Ok(None),
            Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) if netlink_errno(&e) == Some(libc::EINVAL) => Err(DatapathError::InvalidName {
                name: name.to_owned(),
            }),
            Err(e) => Err(DatapathError::netlink(format!("look up link {name}"), e)),
        }
    }

    /// IPv4 addresses (with prefix) of link `index`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, DatapathError> {
        Ok(self
            .address_messages(index)
            .await?
            .iter()
            .filter_map(ipv4_of)
            .collect())
    }

    /// The address messages of link `index` (what deleting an address takes).
    pub(crate) async fn address_messages(
        &self,
        index: u32,
    ) -> Result<Vec<AddressMessage>, DatapathError> {
        self.handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| DatapathError::netlink(format!("list addresses of link {index}"), e))
    }

    /// IPv4 routes of the main table that leave through link `index`.
    pub async fn routes_via(&self, index: u32) -> Result<Vec<RouteSummary>, DatapathError> {
        let msgs: Vec<RouteMessage> = self
            .handle()
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| DatapathError::netlink("list routes", e))?;
        Ok(msgs
            .iter()
            .filter(|m| route_table(m) == MAIN_TABLE)
            .filter(|m| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index))
            })
            .map(|m| {
                let dst = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                        _ => None,
                    })
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                let gateway = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
                    _ => None,
                });
                RouteSummary {
                    destination: Ipv4Net::new(dst, m.header.destination_prefix_length)
                        .unwrap_or_default(),
                    gateway,
                }
            })
            .collect())
    }
}

fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn summarize(name: &str, link: &LinkMessage) -> LinkSummary {
    let mut s = LinkSummary {
        name: name.to_owned(),
        index: link.header.index,
        mac: String::new(),
        mtu: 0,
        up: link.header.flags.contains(LinkFlags::Up),
        controller: None,
    };
    for a in &link.attributes {
        match a {
            LinkAttribute::Address(bytes) => {
                s.mac = bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":");
            }
            LinkAttribute::Mtu(m) => s.mtu = *m,
            LinkAttribute::Controller(c) => s.controller = Some(*c),
            LinkAttribute::IfName(n) => s.name.clone_from(n),
            _ => {}
        }
    }
    s
}

/// The IPv4 address (with prefix) an address message carries, if it is one.
pub(crate) fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Net> {
    let len = msg.header.prefix_len;
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Ipv4Net::new(*ip, len).ok(),
        _ => None,
    })
}
