//! Links, addresses and routes of the host, through rtnetlink: the `mesh0` bridge, the TUN
//! device and the route of the cluster range into it.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::route::RouteScope;
use rtnetlink::{LinkBridge, LinkUnspec, RouteMessageBuilder};
use tun_rs::{DeviceBuilder, Layer};

use crate::DatapathError;
use crate::error::netlink_errno;
use crate::pod::ipv4_of;

/// Longest interface name the kernel accepts (IFNAMSIZ minus the NUL).
const MAX_IFNAME_LEN: usize = 15;

/// A netlink connection to the network namespace of the thread that opened it.
///
/// Every method is idempotent, so meshd can run them again at each start and re-use what a
/// previous run left (the bridge survives meshd; the TUN device and its routes do not).
#[derive(Debug, Clone)]
pub struct HostNetwork {
    handle: rtnetlink::Handle,
}

impl HostNetwork {
    /// Opens a netlink connection and spawns its task on the current tokio runtime. The socket
    /// belongs to the network namespace of the calling thread.
    pub async fn connect() -> Result<Self, DatapathError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(DatapathError::NoRuntime {
                what: "HostNetwork::connect",
            });
        }
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| DatapathError::io("open a netlink route socket", e))?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The rtnetlink handle, for requests this type does not wrap.
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// Wraps a handle whose connection task already runs (see `connect_in_netns`).
    pub(crate) fn from_handle(handle: rtnetlink::Handle) -> Self {
        Self { handle }
    }

    /// Creates bridge `name` if absent, sets its MTU, adds `gateway` (address and prefix, e.g.
    /// 10.32.1.1/24) unless it is already there, and sets the bridge up. Other addresses on the
    /// bridge are left alone. Returns whether this call created the bridge.
    ///
    /// Fails with [`DatapathError::NotABridge`] if a link of another kind has that name.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Net,
        mtu: u32,
    ) -> Result<bool, DatapathError> {
        let (index, created) = self.bridge_up(name, mtu).await?;
        self.add_address(index, name, gateway).await?;
        Ok(created)
    }

    /// Like [`HostNetwork::ensure_bridge`] without adding an address: for a node that has no
    /// address block yet (automatic IPAM); [`HostNetwork::sync_addresses`] adds the gateways
    /// later. Returns whether this call created the bridge.
    pub async fn ensure_bridge_without_address(
        &self,
        name: &str,
        mtu: u32,
    ) -> Result<bool, DatapathError> {
        Ok(self.bridge_up(name, mtu).await?.1)
    }

    /// Makes the IPv4 addresses of link `name` that lie inside `within` exactly `want`: adds
    /// the missing ones, deletes the others inside `within`; addresses outside `within` are
    /// left alone. Returns what it added and what it deleted.
    pub async fn sync_addresses(
        &self,
        name: &str,
        within: Ipv4Net,
        want: &[Ipv4Net],
    ) -> Result<(Vec<Ipv4Net>, Vec<Ipv4Net>), DatapathError> {
        let index = self
            .link_index(name)
            .await?
            .ok_or_else(|| DatapathError::LinkNotFound {
                name: name.to_owned(),
            })?;
        let msgs = self.address_messages(index).await?;
        let have: Vec<Ipv4Net> = msgs.iter().filter_map(ipv4_of).collect();
        let mut added = Vec::new();
        for net in want {
            if !have.contains(net) {
                self.add_address(index, name, *net).await?;
                added.push(*net);
            }
        }
        let mut deleted = Vec::new();
        for msg in msgs {
            let Some(net) = ipv4_of(&msg) else {
                continue;
            };
            if !within.contains(&net.addr()) || want.contains(&net) {
                continue;
            }
            match self.handle.address().del(msg).execute().await {
                Ok(()) => {}
                // Gone since the listing: the state we want.
                Err(e) if netlink_errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
                Err(e) => {
                    return Err(DatapathError::netlink(
                        format!("delete address {net} from {name}"),
                        e,
                    ));
                }
            }
            tracing::info!(link = name, address = %net, "deleted address");
            deleted.push(net);
        }
        Ok((added, deleted))
    }

    /// Creates bridge `name` if absent and sets it up with MTU `mtu`; its index and whether
    /// this call created it.
    async fn bridge_up(&self, name: &str, mtu: u32) -> Result<(u32, bool), DatapathError> {
        check_name(name)?;
        let (index, created) = match self.link(name).await? {
            Some(link) => {
                let kind = link_kind(&link);
                if kind != Some(&InfoKind::Bridge) {
                    return Err(DatapathError::NotABridge {
                        name: name.to_owned(),
                        kind: kind.map_or_else(|| "device".to_owned(), ToString::to_string),
                    });
                }
                (link.header.index, false)
            }
            None => self.add_bridge(name, mtu).await?,
        };

        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(|e| match netlink_errno(&e) {
                Some(libc::EINVAL) => DatapathError::InvalidMtu {
                    name: name.to_owned(),
                    mtu,
                },
                _ => DatapathError::netlink(format!("set {name} up with MTU {mtu}"), e),
            })?;
        Ok((index, created))
    }

    /// Adds `net` to link `index` (called `name`) unless it is there already.
    async fn add_address(&self, index: u32, name: &str, net: Ipv4Net) -> Result<(), DatapathError> {
        if self.addresses(index).await?.contains(&net) {
            return Ok(());
        }
        let added = self
            .handle
            .address()
            .add(index, IpAddr::V4(net.addr()), net.prefix_len())
            .execute()
            .await;
        match added {
            Ok(()) => {}
            // Added concurrently by someone else: the state we want.
            Err(e) if netlink_errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(DatapathError::netlink(
                    format!("add address {net} to {name}"),
                    e,
                ));
            }
        }
        tracing::info!(bridge = name, gateway = %net, "added gateway address to bridge");
        Ok(())
    }

    async fn add_bridge(&self, name: &str, mtu: u32) -> Result<(u32, bool), DatapathError> {
        let added = self
            .handle
            .link()
            .add(LinkBridge::new(name).mtu(mtu).build())
            .execute()
            .await;
        let created = match added {
            Ok(()) => true,
            // Created between our look-up and our request; use it like any existing one.
            Err(e) if netlink_errno(&e) == Some(libc::EEXIST) => false,
            Err(e) => return Err(DatapathError::netlink(format!("create bridge {name}"), e)),
        };
        let link = self
            .link(name)
            .await?
            .ok_or_else(|| DatapathError::LinkNotFound {
                name: name.to_owned(),
            })?;
        if !created && link_kind(&link) != Some(&InfoKind::Bridge) {
            return Err(DatapathError::NotABridge {
                name: name.to_owned(),
                kind: link_kind(&link).map_or_else(|| "device".to_owned(), ToString::to_string),
            });
        }
        if created {
            tracing::info!(bridge = name, mtu, "created bridge");
        }
        Ok((link.header.index, created))
    }

    /// Creates TUN device `name`, or attaches to an existing persistent one: layer 3, no
    /// packet-information header, no offloads, one queue, MTU `mtu`, up, no address.
    ///
    /// The device is not persistent: when the returned device (its last descriptor) is
    /// dropped, the kernel deletes it together with its routes. Must be called inside a tokio
    /// runtime; the device belongs to the network namespace of the calling thread.
    pub fn create_tun(name: &str, mtu: u32) -> Result<tun_rs::AsyncDevice, DatapathError> {
        Self::open_tun(name, mtu, false)
    }

    /// Like [`HostNetwork::create_tun`], but asks for the kernel's offloads (`IFF_VNET_HDR`
    /// with TSO/USO): reads then hand over TCP super-packets of up to 64 KB, which
    /// `recv_multiple` splits into MTU-sized segments, and `send_multiple` coalesces written
    /// segments back. When the kernel refuses, falls back to a plain device. Returns the
    /// device and whether offloads are on.
    pub fn create_tun_offload(
        name: &str,
        mtu: u32,
    ) -> Result<(tun_rs::AsyncDevice, bool), DatapathError> {
        match Self::open_tun(name, mtu, true) {
            Ok(dev) => Ok((dev, true)),
            Err(e @ (DatapathError::TunBusy { .. } | DatapathError::NoTunDevice)) => Err(e),
            Err(e) => {
                tracing::warn!(tun = name, error = %e, "TUN offloads refused; using a plain TUN device");
                Ok((Self::open_tun(name, mtu, false)?, false))
            }
        }
    }

    fn open_tun(name: &str, mtu: u32, offload: bool) -> Result<tun_rs::AsyncDevice, DatapathError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(DatapathError::NoRuntime {
                what: "HostNetwork::create_tun",
            });
        }
        check_name(name)?;
        let mtu16 = u16::try_from(mtu)
            .ok()
            .filter(|m| *m >= 68)
            .ok_or_else(|| DatapathError::InvalidMtu {
                name: name.to_owned(),
                mtu,
            })?;
        // No .ipv4()/.ipv6(): tun-rs then assigns no address. It sets the MTU and IFF_UP with
        // ioctls on the new device.
        let device = DeviceBuilder::new()
            .name(name)
            .layer(Layer::L3)
            .packet_information(false)
            .offload(offload)
            .multi_queue(false)
            .mtu(mtu16)
            .enable(true)
            .build_async()
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) => DatapathError::TunBusy {
                    name: name.to_owned(),
                },
                Some(libc::ENOENT | libc::ENODEV) => DatapathError::NoTunDevice,
                _ => DatapathError::io(format!("create TUN device {name}"), e),
            })?;
        // IPv6 is not routed through the mesh yet: keep the kernel from sending router
        // solicitations and MLD reports into the TUN (they would only be counted as drops).
        let sysctl = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
        if std::path::Path::new(&sysctl).exists()
            && let Err(e) = std::fs::write(&sysctl, "1")
        {
            tracing::debug!(error = %e, "cannot disable IPv6 on the TUN device");
        }
        tracing::info!(tun = name, mtu, offload, "opened TUN device");
        Ok(device)
    }

    /// Adds route `range` dev `tun` src `src`, replacing any route to the same `range` (so
    /// running it again is harmless). `src` must be an address of this host, normally the
    /// bridge gateway, so that the host's own traffic into the overlay carries its overlay
    /// address rather than its underlay address.
    pub async fn route_to_tun(
        &self,
        range: Ipv4Net,
        tun: &str,
        src: Ipv4Addr,
    ) -> Result<(), DatapathError> {
        self.route_to_tun_from(range, tun, Some(src)).await
    }

    /// [`HostNetwork::route_to_tun`] with the preferred source optional: `None` while the
    /// node has no gateway address yet (automatic IPAM before its first block); run it again
    /// with the gateway once there is one.
    pub async fn route_to_tun_from(
        &self,
        range: Ipv4Net,
        tun: &str,
        src: Option<Ipv4Addr>,
    ) -> Result<(), DatapathError> {
        let index = self
            .link_index(tun)
            .await?
            .ok_or_else(|| DatapathError::LinkNotFound {
                name: tun.to_owned(),
            })?;
        let range = range.trunc();
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(range.network(), range.prefix_len())
            .output_interface(index);
        if let Some(src) = src {
            builder = builder.pref_source(src);
        }
        let route = builder.scope(RouteScope::Link).build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                let from = src.map(|s| format!(" src {s}")).unwrap_or_default();
                let hint = match src {
                    Some(s) if netlink_errno(&e) == Some(libc::EINVAL) => {
                        format!(" (is {s} an address of this host? ensure_bridge adds it)")
                    }
                    _ => String::new(),
                };
                DatapathError::netlink(format!("add route {range} dev {tun}{from}{hint}"), e)
            })?;
        tracing::debug!(%range, tun, ?src, "routed range into TUN");
        Ok(())
    }

    /// Deletes link `name` if it exists; returns whether it deleted one. Deleting the TUN
    /// device removes its routes with it.
    pub async fn delete_link(&self, name: &str) -> Result<bool, DatapathError> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => {
                tracing::info!(link = name, "deleted link");
                Ok(true)
            }
            // Vanished since the look-up (a TUN whose descriptor was just closed).
            Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(DatapathError::netlink(format!("delete link {name}"), e)),
        }
    }

    /// Index of link `name`, `None` if there is no such link.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, DatapathError> {
        Ok(self.link(name).await?.map(|l| l.header.index))
    }

    async fn link(&self, name: &str) -> Result<Option<LinkMessage>, DatapathError> {
        check_name(name)?;
        let result = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await;
        match result {
            Ok(link) => Ok(link),
            Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(DatapathError::netlink(format!("look up link {name}"), e)),
        }
    }
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

/// The kernel's rules for interface names (`dev_valid_name`).
fn check_name(name: &str) -> Result<(), DatapathError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if valid {
        Ok(())
    } else {
        Err(DatapathError::InvalidName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_kernel_rules() {
        for ok in ["mesh0", "meshtun0", "a", "abcdefghijklmno"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "abcdefghijklmnop",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            assert!(
                matches!(check_name(bad), Err(DatapathError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
