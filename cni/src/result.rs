//! The ADD result in the shape of the requested `cniVersion`, merged into the previous
//! plugin's result when chained.
//!
//! Differences handled: 0.4.0 gives each IP a `"version": "4"`; 1.0.0 drops it; 1.1.0 adds
//! `mtu` to interfaces. A `prevResult` is kept as it came (unknown fields included); ours is
//! appended, with interface indices shifted past the previous interfaces.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use crate::config::CniVersion;

/// One interface of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interface {
    pub(crate) name: String,
    pub(crate) mac: String,
    pub(crate) mtu: u32,
    /// The netns path for an interface inside the container.
    pub(crate) sandbox: Option<String>,
}

/// What ADD made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attached {
    /// The host end, then the pod end.
    pub(crate) host: Interface,
    pub(crate) pod: Interface,
    pub(crate) address: Ipv4Net,
    pub(crate) gateway: Ipv4Addr,
    /// Route destinations via `gateway`.
    pub(crate) routes: Vec<Ipv4Net>,
    /// DNS nameserver for the pod (the bridge address: meshd's DNS server listens there).
    pub(crate) nameserver: Ipv4Addr,
    pub(crate) search: Vec<String>,
}

fn interface_json(i: &Interface, version: CniVersion) -> Value {
    let mut v = json!({ "name": i.name, "mac": i.mac });
    if version >= CniVersion::V1_1_0 {
        v["mtu"] = json!(i.mtu);
    }
    if let Some(s) = &i.sandbox {
        v["sandbox"] = json!(s);
    }
    v
}

/// The result JSON for `version`, appended to `prev` if given.
pub(crate) fn build(a: &Attached, version: CniVersion, prev: Option<&Value>) -> Value {
    let mut out = match prev {
        Some(p) if p.is_object() => p.clone(),
        _ => json!({}),
    };
    out["cniVersion"] = json!(version.as_str());
    let offset = out
        .get("interfaces")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    push(&mut out, "interfaces", interface_json(&a.host, version));
    push(&mut out, "interfaces", interface_json(&a.pod, version));
    let mut ip = json!({
        "address": a.address.to_string(),
        "gateway": a.gateway.to_string(),
        "interface": offset + 1,
    });
    if version == CniVersion::V0_4_0 {
        ip["version"] = json!("4");
    }
    push(&mut out, "ips", ip);
    for dst in &a.routes {
        push(
            &mut out,
            "routes",
            json!({ "dst": dst.trunc().to_string(), "gw": a.gateway.to_string() }),
        );
    }
    let dns = out
        .as_object_mut()
        .map(|o| o.entry("dns").or_insert_with(|| json!({})));
    if let Some(dns) = dns {
        if !dns.is_object() {
            *dns = json!({});
        }
        add_unique(dns, "nameservers", &a.nameserver.to_string());
        for s in &a.search {
            add_unique(dns, "search", s);
        }
    }
    out
}

fn push(obj: &mut Value, key: &str, item: Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let slot = map.entry(key).or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    if let Some(list) = slot.as_array_mut() {
        list.push(item);
    }
}

fn add_unique(obj: &mut Value, key: &str, item: &str) {
    let exists = obj
        .get(key)
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(item)));
    if !exists {
        push(obj, key, json!(item));
    }
}

/// What CHECK expects, read back from `prevResult`: the address and gateway of the
/// container interface named `ifname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) sandbox: Option<String>,
    pub(crate) mtu: Option<u32>,
    pub(crate) address: Ipv4Net,
    pub(crate) gateway: Option<Ipv4Addr>,
}

/// Finds `ifname` among `prev`'s container interfaces and its IPv4 address.
pub(crate) fn expected(prev: &Value, ifname: &str) -> Option<Expected> {
    let interfaces = prev.get("interfaces")?.as_array()?;
    let index = interfaces.iter().position(|i| {
        i.get("name").and_then(Value::as_str) == Some(ifname)
            && i.get("sandbox")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
    })?;
    let iface = &interfaces[index];
    let ip = prev.get("ips")?.as_array()?.iter().find(|ip| {
        ip.get("interface").and_then(Value::as_u64) == Some(index as u64)
            && ip
                .get("address")
                .and_then(Value::as_str)
                .is_some_and(|a| a.parse::<Ipv4Net>().is_ok())
    })?;
    Some(Expected {
        sandbox: iface
            .get("sandbox")
            .and_then(Value::as_str)
            .map(str::to_owned),
        mtu: iface
            .get("mtu")
            .and_then(Value::as_u64)
            .and_then(|m| u32::try_from(m).ok()),
        address: ip.get("address")?.as_str()?.parse().ok()?,
        gateway: ip
            .get("gateway")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attached() -> Attached {
        Attached {
            host: Interface {
                name: "vmesh0123456789".into(),
                mac: "02:00:00:00:00:01".into(),
                mtu: 1440,
                sandbox: None,
            },
            pod: Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:02".into(),
                mtu: 1440,
                sandbox: Some("/var/run/netns/p".into()),
            },
            address: "10.32.1.5/24".parse().unwrap(),
            gateway: "10.32.1.1".parse().unwrap(),
            routes: vec!["0.0.0.0/0".parse().unwrap()],
            nameserver: "10.32.1.1".parse().unwrap(),
            search: vec!["mesh.local".into()],
        }
    }

    #[test]
    fn v1_1_0_shape() {
        let r = build(&attached(), CniVersion::V1_1_0, None);
        assert_eq!(
            r,
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "vmesh0123456789", "mac": "02:00:00:00:00:01", "mtu": 1440},
                    {"name": "eth0", "mac": "02:00:00:00:00:02", "mtu": 1440, "sandbox": "/var/run/netns/p"}
                ],
                "ips": [{"address": "10.32.1.5/24", "gateway": "10.32.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.32.1.1"}],
                "dns": {"nameservers": ["10.32.1.1"], "search": ["mesh.local"]}
            })
        );
    }

    #[test]
    fn v1_0_0_has_no_interface_mtu_and_v0_4_0_has_ip_versions() {
        let r = build(&attached(), CniVersion::V1_0_0, None);
        assert_eq!(r["cniVersion"], "1.0.0");
        assert!(r["interfaces"][0].get("mtu").is_none());
        assert!(r["ips"][0].get("version").is_none());
        let r = build(&attached(), CniVersion::V0_4_0, None);
        assert_eq!(r["cniVersion"], "0.4.0");
        assert_eq!(r["ips"][0]["version"], "4");
        assert!(r["interfaces"][1].get("mtu").is_none());
    }

    #[test]
    fn chained_result_keeps_the_previous_one_and_shifts_indices() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/p"}],
            "ips": [{"address": "192.168.9.2/24", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.9.1"}],
            "dns": {"nameservers": ["192.168.9.1"], "domain": "example"},
            "custom": {"kept": true}
        });
        let mut a = attached();
        a.pod.name = "net1".into();
        a.routes = vec!["10.32.0.0/12".parse().unwrap()];
        let r = build(&a, CniVersion::V1_0_0, Some(&prev));
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 3);
        assert_eq!(r["ips"][0]["address"], "192.168.9.2/24");
        assert_eq!(r["ips"][1]["interface"], 2);
        assert_eq!(r["routes"][1]["dst"], "10.32.0.0/12");
        assert_eq!(r["dns"]["nameservers"], json!(["192.168.9.1", "10.32.1.1"]));
        assert_eq!(r["dns"]["domain"], "example");
        assert_eq!(r["custom"]["kept"], true);
        // CHECK reads our interface back out of it.
        let e = expected(&r, "net1").unwrap();
        assert_eq!(e.address.to_string(), "10.32.1.5/24");
        assert_eq!(e.gateway, Some("10.32.1.1".parse().unwrap()));
        assert_eq!(expected(&r, "eth9"), None);
    }
}
