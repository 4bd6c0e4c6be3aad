//! ADD, DEL, CHECK, STATUS and GC: meshd for the address, mesh-datapath for the interfaces.

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use mesh_datapath::{DatapathError, HostNetwork, PodSpec};
use mesh_ipam::AttachmentKey;
use serde_json::Value;

use crate::config::{Env, NetConf};
use crate::error::{CniError, Code};
use crate::meshd::{Meshd, MeshdError};
use crate::result::{self, Attached, Interface};

/// Prefix of the host end of a pod's veth; the rest is a hash of the attachment, so DEL finds
/// it from `CNI_CONTAINERID` and `CNI_IFNAME` alone.
const HOST_PREFIX: &str = "vmesh";
/// Prefix of the pod end while it is still on the host, before it moves and is renamed.
const TEMP_PREFIX: &str = "tmesh";
/// Tries of an allocation meshd answers "try again" (503: automatic IPAM is getting the node
/// a block), and the pause between them: about 8 s in all, then CNI error 11.
const ALLOCATE_TRIES: u32 = 16;
const ALLOCATE_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// The host-side names of `key`'s veth: `vmesh` / `tmesh` + 10 hex digits of a stable hash
/// (FNV-1a, so the names do not change with the Rust version that built the plugin).
pub(crate) fn veth_names(key: &AttachmentKey) -> (String, String) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key
        .container_id()
        .bytes()
        .chain([0])
        .chain(key.ifname().bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let tag = format!("{:010x}", h & 0xff_ffff_ffff);
    (format!("{HOST_PREFIX}{tag}"), format!("{TEMP_PREFIX}{tag}"))
}

fn attachment(env: &Env) -> Result<&AttachmentKey, CniError> {
    env.key.as_ref().ok_or_else(|| {
        CniError::new(
            Code::InvalidEnv,
            "CNI_CONTAINERID and CNI_IFNAME are not set",
            "",
        )
    })
}

fn meshd_error(e: MeshdError, what: &str) -> CniError {
    match &e {
        MeshdError::Unreachable { .. } => CniError::new(
            Code::MeshdUnreachable,
            format!("cannot {what}: meshd is unreachable"),
            e.to_string(),
        ),
        MeshdError::Api { code, .. } if code.as_u16() == 507 => CniError::new(
            Code::AddressesExhausted,
            "no free pod address on this node",
            e.to_string(),
        ),
        MeshdError::Api { code, .. } if code.as_u16() == 503 => CniError::new(
            Code::TryAgainLater,
            format!("cannot {what} yet: try again later"),
            e.to_string(),
        ),
        _ => CniError::new(Code::MeshdError, format!("cannot {what}"), e.to_string()),
    }
}

/// Runs `call` until it succeeds, fails with anything but 503 (meshd's "try again": it has no
/// free address until it gets another block), or `tries` calls were made, `pause` apart.
async fn retry_unavailable<T, F, Fut>(
    tries: u32,
    pause: std::time::Duration,
    mut call: F,
) -> Result<T, MeshdError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, MeshdError>>,
{
    let mut left = tries.max(1);
    loop {
        left -= 1;
        match call().await {
            Err(MeshdError::Api { code, .. }) if code.as_u16() == 503 && left > 0 => {
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

fn netns_must_exist(netns: &Path) -> Result<(), CniError> {
    match std::fs::metadata(netns) {
        Ok(_) => Ok(()),
        Err(e) => Err(CniError::new(
            Code::NetnsNotFound,
            format!("network namespace {} does not exist", netns.display()),
            e.to_string(),
        )),
    }
}

fn datapath_error(e: &DatapathError, what: &str) -> CniError {
    CniError::new(Code::InterfaceSetup, what.to_owned(), e.to_string())
}

fn parse_net(s: &str, what: &str) -> Result<Ipv4Net, CniError> {
    s.parse().map_err(|_| {
        CniError::new(
            Code::MeshdError,
            format!("meshd gave a {what} that is not an IPv4 CIDR"),
            s.to_owned(),
        )
    })
}

fn parse_addr(s: &str, what: &str) -> Result<Ipv4Addr, CniError> {
    s.parse().map_err(|_| {
        CniError::new(
            Code::MeshdError,
            format!("meshd gave a {what} that is not an IPv4 address"),
            s.to_owned(),
        )
    })
}

/// ADD: address from meshd, veth into the pod, result. Any failure after the address was
/// handed out releases it again (and `attach_pod` removes its veth), so nothing half-made
/// stays behind.
pub(crate) async fn add(conf: &NetConf, env: &Env) -> Result<Value, CniError> {
    let key = attachment(env)?;
    let netns = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(Code::InvalidEnv, "CNI_NETNS is not set", ""))?;
    netns_must_exist(netns)?;
    let meshd = Meshd::new(&conf.socket);
    let request = mesh_api::IpamAllocateRequest {
        container_id: key.container_id().to_owned(),
        ifname: key.ifname().to_owned(),
        pod_name: env.args.pod_name.clone(),
        pod_namespace: env.args.pod_namespace.clone(),
        network: Some(conf.name.clone()),
    };
    let allocated: mesh_api::IpamAllocated =
        retry_unavailable(ALLOCATE_TRIES, ALLOCATE_PAUSE, || {
            meshd.post(mesh_api::PATH_IPAM_ALLOCATE, &request)
        })
        .await
        .map_err(|e| meshd_error(e, "get a pod address"))?;
    match wire(conf, key, netns, &allocated).await {
        Ok(result) => {
            if let Some(pod) = &env.args.pod_name {
                register_dns(&meshd, pod, &allocated.address).await;
            }
            Ok(result)
        }
        Err(e) => {
            let released: Result<mesh_api::IpamReleased, _> = meshd
                .post(
                    mesh_api::PATH_IPAM_RELEASE,
                    &mesh_api::IpamReleaseRequest {
                        container_id: key.container_id().to_owned(),
                        ifname: key.ifname().to_owned(),
                    },
                )
                .await;
            match released {
                Ok(_) => Err(e),
                Err(r) => Err(CniError::new(
                    e.code,
                    e.msg,
                    format!(
                        "{}; releasing the address failed too ({r}): a DEL or GC will free it",
                        e.details
                    ),
                )),
            }
        }
    }
}

async fn wire(
    conf: &NetConf,
    key: &AttachmentKey,
    netns: &Path,
    allocated: &mesh_api::IpamAllocated,
) -> Result<Value, CniError> {
    let address = parse_net(&allocated.address, "pod address")?;
    let gateway = parse_addr(&allocated.gateway, "gateway")?;
    let range = parse_net(&allocated.range, "cluster range")?;
    let routes = if conf.is_primary(key.ifname()) {
        vec![Ipv4Net::default()]
    } else {
        vec![range]
    };
    let (host_ifname, temp_ifname) = veth_names(key);
    let spec = PodSpec {
        netns: netns.to_owned(),
        host_ifname,
        temp_ifname,
        pod_ifname: key.ifname().to_owned(),
        bridge: allocated.bridge.clone(),
        mtu: allocated.mtu,
        address,
        gateway,
        routes: routes.clone(),
        hairpin: conf.hairpin,
    };
    let host = HostNetwork::connect()
        .await
        .map_err(|e| datapath_error(&e, "cannot open netlink"))?;
    let made = host.attach_pod(&spec).await.map_err(|e| {
        if std::fs::metadata(netns).is_err() {
            CniError::new(
                Code::NetnsNotFound,
                format!("network namespace {} vanished during ADD", netns.display()),
                e.to_string(),
            )
        } else {
            datapath_error(&e, &format!("cannot attach the pod to {}", spec.bridge))
        }
    })?;
    let attached = Attached {
        host: Interface {
            name: made.host.name,
            mac: made.host.mac,
            mtu: made.host.mtu,
            sandbox: None,
        },
        pod: Interface {
            name: made.pod.name,
            mac: made.pod.mac,
            mtu: made.pod.mtu,
            sandbox: Some(netns.to_string_lossy().into_owned()),
        },
        address,
        gateway,
        routes,
        nameserver: gateway,
        search: vec![conf.domain.clone()],
    };
    Ok(result::build(
        &attached,
        conf.cni_version,
        conf.prev_result.as_ref(),
    ))
}

/// DEL: delete the host end of the veth (its pod end goes with it), then release the
/// address. Both are idempotent; a missing netns is fine.
pub(crate) async fn del(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    let key = attachment(env)?;
    let (host_ifname, temp_ifname) = veth_names(key);
    let host = HostNetwork::connect()
        .await
        .map_err(|e| datapath_error(&e, "cannot open netlink"))?;
    for name in [&host_ifname, &temp_ifname] {
        host.delete_link(name)
            .await
            .map_err(|e| datapath_error(&e, &format!("cannot delete {name}")))?;
    }
    let meshd = Meshd::new(&conf.socket);
    let released: mesh_api::IpamReleased = meshd
        .post(
            mesh_api::PATH_IPAM_RELEASE,
            &mesh_api::IpamReleaseRequest {
                container_id: key.container_id().to_owned(),
                ifname: key.ifname().to_owned(),
            },
        )
        .await
        .map_err(|e| meshd_error(e, "release the pod address"))?;
    if let (Some(pod), Some(address)) = (&env.args.pod_name, &released.released) {
        unregister_dns(&meshd, pod, address).await;
    }
    Ok(())
}

/// The address of `CIDR` or of a bare address, as meshd's IPAM answers it.
fn bare_address(address: &str) -> &str {
    address.split('/').next().unwrap_or(address)
}

/// Registers `K8S_POD_NAME` under meshd's DNS zone with the pod's address. Best effort: a
/// pod works without its name (DNS off, a name that is no DNS name, meshd busy), so a
/// failure does not fail ADD.
async fn register_dns(meshd: &Meshd, pod: &str, address: &str) {
    let _: Result<mesh_api::DnsChanged, _> = meshd
        .post(
            mesh_api::PATH_DNS_ADD,
            &mesh_api::DnsAddRequest {
                name: pod.to_owned(),
                address: bare_address(address).to_owned(),
            },
        )
        .await;
}

/// Removes the record [`register_dns`] made for the released address (only that address:
/// another pod of the same name elsewhere keeps its own). Best effort, like registering.
async fn unregister_dns(meshd: &Meshd, pod: &str, address: &str) {
    let _: Result<mesh_api::DnsChanged, _> = meshd
        .post(
            mesh_api::PATH_DNS_REMOVE,
            &mesh_api::DnsRemoveRequest {
                name: pod.to_owned(),
                address: Some(bare_address(address).to_owned()),
            },
        )
        .await;
}

/// CHECK: the pod's interface, address and route are as ADD left them, the host end is on
/// the bridge, and meshd still holds the address for this attachment.
pub(crate) async fn check(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    let key = attachment(env)?;
    let netns = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(Code::InvalidEnv, "CNI_NETNS is not set", ""))?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "CHECK needs the ADD result as prevResult",
            "the runtime passes it in the configuration",
        )
    })?;
    let failed = |msg: String| CniError::new(Code::CheckFailed, msg, "");
    let expected = result::expected(prev, key.ifname()).ok_or_else(|| {
        failed(format!(
            "prevResult has no container interface {} with an IPv4 address",
            key.ifname()
        ))
    })?;
    netns_must_exist(netns)?;

    let ipam: mesh_api::IpamStatus = Meshd::new(&conf.socket)
        .get(mesh_api::PATH_IPAM)
        .await
        .map_err(|e| meshd_error(e, "read the address pool"))?;
    let held = ipam
        .allocations
        .iter()
        .find(|a| a.container_id == key.container_id() && a.ifname == key.ifname());
    match held {
        Some(a) if a.address == expected.address.to_string() => {}
        Some(a) => {
            return Err(failed(format!(
                "meshd holds {} for {key}, the result says {}",
                a.address, expected.address
            )));
        }
        None => return Err(failed(format!("meshd holds no address for {key}"))),
    }
    let range = parse_net(&ipam.range, "cluster range")?;

    let host = HostNetwork::connect()
        .await
        .map_err(|e| datapath_error(&e, "cannot open netlink"))?;
    let (host_ifname, _) = veth_names(key);
    let bridge = host
        .link_summary(&ipam.bridge)
        .await
        .map_err(|e| datapath_error(&e, "cannot read the bridge"))?
        .ok_or_else(|| failed(format!("bridge {} does not exist", ipam.bridge)))?;
    let host_end = host
        .link_summary(&host_ifname)
        .await
        .map_err(|e| datapath_error(&e, "cannot read the host veth"))?
        .ok_or_else(|| failed(format!("host end {host_ifname} of the pod's veth is gone")))?;
    if host_end.controller != Some(bridge.index) || !host_end.up {
        return Err(failed(format!(
            "host end {host_ifname} is not up on bridge {}",
            ipam.bridge
        )));
    }

    let pod = HostNetwork::connect_in_netns(netns)
        .await
        .map_err(|e| datapath_error(&e, "cannot enter the pod's network namespace"))?;
    let iface = pod
        .link_summary(key.ifname())
        .await
        .map_err(|e| datapath_error(&e, "cannot read the pod interface"))?
        .ok_or_else(|| failed(format!("the pod has no interface {}", key.ifname())))?;
    if !iface.up {
        return Err(failed(format!("{} is down", key.ifname())));
    }
    if let Some(mtu) = expected.mtu
        && mtu != iface.mtu
    {
        return Err(failed(format!(
            "{} has MTU {}, the result says {mtu}",
            key.ifname(),
            iface.mtu
        )));
    }
    if iface.mtu != ipam.mtu {
        return Err(failed(format!(
            "{} has MTU {}, meshd says {}",
            key.ifname(),
            iface.mtu,
            ipam.mtu
        )));
    }
    let addrs = pod
        .addresses(iface.index)
        .await
        .map_err(|e| datapath_error(&e, "cannot read the pod's addresses"))?;
    if !addrs.contains(&expected.address) {
        return Err(failed(format!(
            "{} lacks address {} (has {addrs:?})",
            key.ifname(),
            expected.address
        )));
    }
    let gateway = expected
        .gateway
        .unwrap_or_else(|| mesh_ipam::local::gateway_of(expected.address.trunc()));
    let want = if conf.is_primary(key.ifname()) {
        Ipv4Net::default()
    } else {
        range
    };
    let routes = pod
        .routes_via(iface.index)
        .await
        .map_err(|e| datapath_error(&e, "cannot read the pod's routes"))?;
    if !routes
        .iter()
        .any(|r| r.destination == want && r.gateway == Some(gateway))
    {
        return Err(failed(format!(
            "the pod has no route {want} via {gateway} dev {}",
            key.ifname()
        )));
    }
    Ok(())
}

/// GC: frees in meshd every attachment of this network the runtime does not list, and
/// deletes the host veths of those freed.
pub(crate) async fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "GC needs \"cni.dev/valid-attachments\"",
            "without the list every attachment would be freed; the runtime passes it",
        )
    })?;
    let keep = valid
        .iter()
        .map(|a| mesh_api::AttachmentRef {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
        })
        .collect();
    let freed: mesh_api::IpamGcResult = Meshd::new(&conf.socket)
        .post(
            mesh_api::PATH_IPAM_GC,
            &mesh_api::IpamGcRequest {
                keep,
                network: Some(conf.name.clone()),
            },
        )
        .await
        .map_err(|e| meshd_error(e, "garbage-collect pod addresses"))?;
    let host = HostNetwork::connect()
        .await
        .map_err(|e| datapath_error(&e, "cannot open netlink"))?;
    for a in &freed.released {
        let Ok(key) = AttachmentKey::new(a.container_id.clone(), a.ifname.clone()) else {
            continue;
        };
        let (host_ifname, _) = veth_names(&key);
        host.delete_link(&host_ifname)
            .await
            .map_err(|e| datapath_error(&e, &format!("cannot delete {host_ifname}")))?;
    }
    Ok(())
}

/// STATUS: ready when meshd answers `/v1/ready`.
pub(crate) async fn status(conf: &NetConf) -> Result<(), CniError> {
    let ready: Result<mesh_api::Ready, _> =
        Meshd::new(&conf.socket).get(mesh_api::PATH_READY).await;
    match ready {
        Ok(r) if r.ready => Ok(()),
        Ok(_) => Err(CniError::new(
            Code::PluginNotAvailable,
            "meshd is not ready",
            "it is still starting",
        )),
        Err(e) => Err(CniError::new(
            Code::PluginNotAvailable,
            "meshd is not ready",
            e.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> MeshdError {
        MeshdError::Api {
            code: mesh_api_client::StatusCode::from_u16(code).unwrap(),
            message: format!("answer {code}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn allocation_is_retried_while_meshd_says_try_again() {
        let pause = std::time::Duration::from_millis(1);
        // 503 twice, then an address.
        let mut calls = 0;
        let got = retry_unavailable(16, pause, || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(api_error(503)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(got.unwrap(), 3);
        // 503 every time: as many calls as tries, then the 503 (CNI code 11).
        let mut calls = 0;
        let got: Result<u32, _> = retry_unavailable(4, pause, || {
            calls += 1;
            async { Err(api_error(503)) }
        })
        .await;
        assert_eq!(calls, 4);
        let err = meshd_error(got.unwrap_err(), "get a pod address");
        assert_eq!(err.code, Code::TryAgainLater);
        assert!(err.msg.contains("try again later"), "{}", err.msg);
        // Anything else is not retried.
        let mut calls = 0;
        let got: Result<u32, _> = retry_unavailable(4, pause, || {
            calls += 1;
            async { Err(api_error(507)) }
        })
        .await;
        assert_eq!(calls, 1);
        assert_eq!(
            meshd_error(got.unwrap_err(), "get a pod address").code,
            Code::AddressesExhausted
        );
    }

    #[test]
    fn veth_names_are_stable_short_and_distinct() {
        let a = AttachmentKey::new("abc", "eth0").unwrap();
        let b = AttachmentKey::new("abc", "net1").unwrap();
        let (h, t) = veth_names(&a);
        assert_eq!(h.len(), 15);
        assert_eq!(&h[5..], &t[5..]);
        assert!(h.starts_with("vmesh") && t.starts_with("tmesh"));
        assert_eq!(veth_names(&a), (h.clone(), t));
        assert_ne!(veth_names(&b).0, h);
        // Pinned: a new plugin build must find veths an old one made.
        assert_eq!(h, veth_names(&AttachmentKey::new("abc", "eth0").unwrap()).0);
    }
}
