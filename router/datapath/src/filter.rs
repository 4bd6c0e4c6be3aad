//! meshd's packet filter: the nftables table `inet mesh`, which keeps plaintext from the
//! underlay off the pods.
//!
//! meshd turns IP forwarding on, so without a filter the host forwards anything addressed to
//! its pods from any interface: a host on the underlay that routes a pod block via this
//! node's underlay address reaches the pods in clear, with any source address. The table
//! lets packets to the cluster range reach the bridge only from the TUN device (decrypted,
//! already checked against the sender's blocks), from the bridge itself (pods on this node;
//! with br_netfilter, bridged traffic passes the forward hook with the bridge as both
//! interfaces) and from the host's own stack (local processes leave through OUTPUT, never
//! FORWARD; traffic the host's own NAT rules translated to a pod address, such as
//! kube-proxy's or the CNI portmap plugin's, carries `ct status dnat`). It lets nothing but
//! the bridge send to the TUN device through FORWARD (besides such DNAT): a node is not a
//! plaintext gateway into the mesh, and meshd seals only what its pods send. A packet with a
//! source in the cluster range that arrives on any interface but the bridge, the TUN device
//! or `lo` is dropped in prerouting, so the host's own services see no spoofed pod address
//! either. Each drop rule counts into a named counter ([`COUNTERS`]).
//!
//! The table is meshd's alone: [`install_filter`] replaces it in one nft transaction (add,
//! delete, add again: the standard idiom, so the table is never absent or half-built); no
//! other table, chain or rule is touched, and as base chains with policy accept the chains
//! here only ever add drops to what other tables decide. The table outlives meshd, as the
//! bridge does; `meshd reset` removes it ([`remove_filter`]).
//!
//! Why the `nftables` crate (JSON through the `nft` binary): it is the maintained,
//! Apache-2.0/MIT, typed builder for nftables' own JSON API, and `nft -f` applies a whole
//! batch as one kernel transaction, which is exactly the atomic replacement we need. The
//! netlink alternatives were `rustables` (GPL-3.0, which this Apache-2.0 project cannot take
//! in) and `nftnl` (bindings to the C libnftnl, which the static musl image would have to
//! build and link). The price is a run-time dependency on the `nft` command (Debian and
//! Alpine package `nftables`); its absence is a clear start error ([`DatapathError::NftMissing`]).
//! The listing is read as plain JSON rather than through the crate's types: their counter
//! values are `u32` and would overflow.
//!
//! [`filter_ruleset`] is pure; the other functions run `nft` and block, so async callers
//! run them on a blocking thread.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::OsStr;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem,
};
use nftables::helper::NftablesError;
use nftables::schema::{Chain, Counter, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{self, JumpTarget, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::DatapathError;

/// The table's family and name: `nft list table inet mesh` shows it.
pub const FILTER_TABLE: &str = "mesh";
/// The family of [`FILTER_TABLE`], as `nft` spells it.
pub const FILTER_FAMILY: &str = "inet";

/// Drops of packets with a source in the cluster range that came in on another interface
/// than the bridge, the TUN device or `lo` (prerouting).
pub const COUNTER_SPOOFED_SOURCE: &str = "spoofed_source";
/// Drops of forwarded packets to a pod on this node (out through the bridge) that came
/// neither from the bridge, the TUN device nor through the host's NAT.
pub const COUNTER_TO_LOCAL_PODS: &str = "to_local_pods";
/// Drops of forwarded packets to a pod on another node (out through the TUN device) that
/// came neither from the bridge nor through the host's NAT.
pub const COUNTER_TO_REMOTE_PODS: &str = "to_remote_pods";
/// Every counter of the table, in the order metrics and `meshctl debug` show them.
pub const COUNTERS: [&str; 3] = [
    COUNTER_SPOOFED_SOURCE,
    COUNTER_TO_LOCAL_PODS,
    COUNTER_TO_REMOTE_PODS,
];

/// Priority of the prerouting chain: `raw` (-300), before conntrack, so a spoofed packet
/// costs no connection-tracking entry.
const PRIO_RAW: i32 = -300;
/// Priority of the forward chain: `filter` (0), after DNAT (-100), so `ct status dnat` is set.
const PRIO_FILTER: i32 = 0;
/// The regular chain the forward chain sends cluster-bound packets to.
const TO_CLUSTER: &str = "to_cluster";

/// What the filter is built from: meshd's `--range`, `--bridge` and `--tun`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSpec {
    /// The cluster range.
    pub range: Ipv4Net,
    /// The bridge the pods hang on.
    pub bridge: String,
    /// meshd's TUN device.
    pub tun: String,
}

/// A drop counter's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValue {
    /// Packets dropped.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The table as the kernel has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstalledFilter {
    /// The table's chains, counters and rules, one compact JSON object each in nft's listing
    /// order, without handles or counter values: two listings of the same rule set give the
    /// same shape, whatever the counters say.
    pub shape: Vec<String>,
    /// Every named counter of the table, by name.
    pub counters: BTreeMap<String, CounterValue>,
}

/// The rule set of [`FILTER_TABLE`] for `spec`, as one nft batch: create the table if absent,
/// delete it, then build it anew, so that applying the batch (one transaction) replaces
/// whatever table of that name there was and touches nothing else.
pub fn filter_ruleset(spec: &FilterSpec) -> Nftables<'static> {
    let mut b = Batch::new();
    b.add(NfListObject::Table(table()));
    b.delete(NfListObject::Table(table()));
    b.add(NfListObject::Table(table()));
    for name in COUNTERS {
        b.add(NfListObject::Counter(Counter {
            family: NfFamily::INet,
            table: FILTER_TABLE.into(),
            name: name.into(),
            handle: None,
            packets: None,
            bytes: None,
        }));
    }
    b.add(NfListObject::Chain(base_chain(
        "prerouting",
        NfHook::Prerouting,
        PRIO_RAW,
    )));
    b.add(NfListObject::Chain(base_chain(
        "forward",
        NfHook::Forward,
        PRIO_FILTER,
    )));
    b.add(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: FILTER_TABLE.into(),
        name: TO_CLUSTER.into(),
        ..Chain::default()
    }));

    let (bridge, tun) = (spec.bridge.as_str(), spec.tun.as_str());
    let range = spec.range;
    // Prerouting: a cluster source only from the bridge, the TUN device or the host itself.
    rule(
        &mut b,
        "prerouting",
        [
            matches(meta(MetaKey::Iifname), names(&["lo", bridge, tun])),
            accept(),
        ],
    );
    rule(
        &mut b,
        "prerouting",
        [
            matches(ip("saddr"), prefix(range)),
            count(COUNTER_SPOOFED_SOURCE),
            drop(),
        ],
    );
    // Forward: everything to the cluster range goes through `to_cluster`.
    rule(
        &mut b,
        "forward",
        [
            matches(ip("daddr"), prefix(range)),
            Statement::Goto(JumpTarget {
                target: TO_CLUSTER.into(),
            }),
        ],
    );
    // The host's own NAT sent it here (kube-proxy, portmap), or it answers a pod's
    // connection that the host's NAT translated on the way out.
    rule(
        &mut b,
        TO_CLUSTER,
        [
            Statement::Match(Match {
                left: ct("status"),
                right: Expression::String("dnat".into()),
                op: Operator::IN,
            }),
            accept(),
        ],
    );
    rule(
        &mut b,
        TO_CLUSTER,
        [
            matches(ct("direction"), Expression::String("reply".into())),
            Statement::Match(Match {
                left: ct("status"),
                right: Expression::String("snat".into()),
                op: Operator::IN,
            }),
            accept(),
        ],
    );
    // Pods on this node: to each other (br_netfilter) and to other nodes' pods.
    rule(
        &mut b,
        TO_CLUSTER,
        [matches(meta(MetaKey::Iifname), name(bridge)), accept()],
    );
    // Decrypted traffic from peers, to pods on this node.
    rule(
        &mut b,
        TO_CLUSTER,
        [
            matches(meta(MetaKey::Iifname), name(tun)),
            matches(meta(MetaKey::Oifname), name(bridge)),
            accept(),
        ],
    );
    rule(
        &mut b,
        TO_CLUSTER,
        [
            matches(meta(MetaKey::Oifname), name(bridge)),
            count(COUNTER_TO_LOCAL_PODS),
            drop(),
        ],
    );
    rule(
        &mut b,
        TO_CLUSTER,
        [
            matches(meta(MetaKey::Oifname), name(tun)),
            count(COUNTER_TO_REMOTE_PODS),
            drop(),
        ],
    );
    b.to_nftables()
}

/// Replaces meshd's table with the one for `spec` (one transaction) and returns it as the
/// kernel now has it: the shape `meshctl debug` compares later listings with.
pub fn install_filter(spec: &FilterSpec) -> Result<InstalledFilter, DatapathError> {
    let what = format!("replace table {FILTER_FAMILY} {FILTER_TABLE}");
    nftables::helper::apply_ruleset(&filter_ruleset(spec)).map_err(|e| nft_error(&what, e))?;
    read_filter()?.ok_or_else(|| DatapathError::NftFailed {
        what,
        message: "the table is gone right after it was made".into(),
        hint: "",
    })
}

/// meshd's table as the kernel has it now; `None` when there is no such table.
pub fn read_filter() -> Result<Option<InstalledFilter>, DatapathError> {
    let what = format!("list table {FILTER_FAMILY} {FILTER_TABLE}");
    let args: [&OsStr; 3] = ["list".as_ref(), "table".as_ref(), FILTER_FAMILY.as_ref()];
    let args = args.into_iter().chain([OsStr::new(FILTER_TABLE)]);
    match nftables::helper::get_current_ruleset_raw(nftables::helper::DEFAULT_NFT, args) {
        Ok(json) => parse_listing(&json)
            .map(Some)
            .map_err(|message| DatapathError::NftFailed {
                what,
                message,
                hint: "",
            }),
        Err(NftablesError::NftFailed { stderr, .. }) if no_such_table(&stderr) => Ok(None),
        Err(e) => Err(nft_error(&what, e)),
    }
}

/// Deletes meshd's table; `false` when there was none.
pub fn remove_filter() -> Result<bool, DatapathError> {
    if read_filter()?.is_none() {
        return Ok(false);
    }
    let mut b = Batch::new();
    b.add(NfListObject::Table(table()));
    b.delete(NfListObject::Table(table()));
    let what = format!("delete table {FILTER_FAMILY} {FILTER_TABLE}");
    nftables::helper::apply_ruleset(&b.to_nftables()).map_err(|e| nft_error(&what, e))?;
    Ok(true)
}

/// The shape and counters of `nft -j list table` output.
fn parse_listing(json: &str) -> Result<InstalledFilter, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("unreadable JSON from nft: {e}"))?;
    let objects = v
        .get("nftables")
        .and_then(|o| o.as_array())
        .ok_or("nft's JSON has no \"nftables\" list")?;
    let mut out = InstalledFilter::default();
    for o in objects {
        let Some((kind, body)) = o.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        if kind == "metainfo" || kind == "table" {
            continue;
        }
        let mut body = body.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("handle");
            if kind == "counter" {
                let mut value = |k: &str| m.remove(k).and_then(|v| v.as_u64()).unwrap_or(0);
                let c = CounterValue {
                    packets: value("packets"),
                    bytes: value("bytes"),
                };
                if let Some(name) = m.get("name").and_then(|n| n.as_str()) {
                    out.counters.insert(name.to_owned(), c);
                }
            }
        }
        out.shape
            .push(serde_json::json!({ kind: body }).to_string());
    }
    Ok(out)
}

/// nft's complaint about a table that does not exist.
fn no_such_table(stderr: &str) -> bool {
    stderr.contains("No such file or directory")
}

fn nft_error(what: &str, e: NftablesError) -> DatapathError {
    match e {
        NftablesError::NftExecution { inner, .. }
            if inner.kind() == std::io::ErrorKind::NotFound =>
        {
            DatapathError::NftMissing
        }
        NftablesError::NftFailed { stderr, .. } => {
            let message = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no error message")
                .to_owned();
            let hint = nft_hint(&message);
            DatapathError::NftFailed {
                what: what.to_owned(),
                message,
                hint,
            }
        }
        other => DatapathError::NftFailed {
            what: what.to_owned(),
            message: other.to_string(),
            hint: "",
        },
    }
}

/// What to do about an nft error message.
fn nft_hint(message: &str) -> &'static str {
    if message.contains("Operation not permitted") {
        " (nft needs CAP_NET_ADMIN: run meshd as root)"
    } else if message.contains("not supported") || message.contains("Protocol not supported") {
        " (the kernel lacks nf_tables or one of its parts: modprobe nf_tables nft_ct nft_counter)"
    } else {
        ""
    }
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: FILTER_TABLE.into(),
        handle: None,
    }
}

fn base_chain(name: &'static str, hook: NfHook, prio: i32) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: FILTER_TABLE.into(),
        name: name.into(),
        _type: Some(NfChainType::Filter),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule<const N: usize>(
    b: &mut Batch<'static>,
    chain: &'static str,
    expr: [Statement<'static>; N],
) {
    b.add(NfListObject::Rule(Rule {
        family: NfFamily::INet,
        table: FILTER_TABLE.into(),
        chain: chain.into(),
        expr: Cow::Owned(expr.to_vec()),
        ..Rule::default()
    }));
}

fn matches(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

fn ip(field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: "ip".into(),
            field: field.into(),
        },
    )))
}

fn prefix(net: Ipv4Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(net.network().to_string().into())),
        len: u32::from(net.prefix_len()),
    }))
}

fn name(n: &str) -> Expression<'static> {
    Expression::String(n.to_owned().into())
}

fn names(ns: &[&str]) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        ns.iter().map(|n| SetItem::Element(name(n))).collect(),
    ))
}

fn count(counter: &'static str) -> Statement<'static> {
    Statement::Counter(stmt::Counter::Named(counter.into()))
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

fn drop() -> Statement<'static> {
    Statement::Drop(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spec() -> FilterSpec {
        FilterSpec {
            range: "10.32.0.0/16".parse().unwrap(),
            bridge: "br-pods".into(),
            tun: "tun-x".into(),
        }
    }

    /// The batch as (command, object kind, object) triples.
    fn commands(spec: &FilterSpec) -> Vec<(String, String, Value)> {
        let v = serde_json::to_value(filter_ruleset(spec)).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let (cmd, body) = o.as_object().unwrap().iter().next().unwrap();
                let (kind, obj) = body.as_object().unwrap().iter().next().unwrap();
                (cmd.clone(), kind.clone(), obj.clone())
            })
            .collect()
    }

    /// The rules of `chain`, each as its list of statements.
    fn rules(spec: &FilterSpec, chain: &str) -> Vec<Value> {
        commands(spec)
            .into_iter()
            .filter(|(_, k, o)| k == "rule" && o["chain"] == chain)
            .map(|(_, _, o)| o["expr"].clone())
            .collect()
    }

    fn iif(v: Value) -> Value {
        json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": v}})
    }

    fn oif(v: Value) -> Value {
        json!({"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": v}})
    }

    fn ip(field: &str) -> Value {
        json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": field}},
                         "right": {"prefix": {"addr": "10.32.0.0", "len": 16}}}})
    }

    #[test]
    fn the_batch_replaces_only_its_own_table() {
        let c = commands(&spec());
        let tables: Vec<_> = c.iter().filter(|(_, k, _)| k == "table").collect();
        assert_eq!(tables.len(), 3, "{c:?}");
        // add (so that delete cannot fail), delete, add: the old table goes in the same
        // transaction that brings the new one.
        for ((cmd, _, o), want) in tables.iter().zip(["add", "delete", "add"]) {
            assert_eq!(cmd, want);
            assert_eq!(o, &json!({"family": "inet", "name": "mesh"}));
        }
        assert!(c.iter().take(3).all(|(_, k, _)| k == "table"));
        // Every later object is added to this table, and nothing is flushed or deleted.
        for (cmd, kind, o) in &c[3..] {
            assert_eq!(cmd, "add", "{kind} {o}");
            assert_eq!(o["family"], "inet");
            assert_eq!(o["table"], "mesh", "{kind} {o}");
        }
    }

    #[test]
    fn base_chains_hook_prerouting_before_conntrack_and_forward_after_dnat() {
        let chains: Vec<Value> = commands(&spec())
            .into_iter()
            .filter(|(_, k, _)| k == "chain")
            .map(|(_, _, o)| o)
            .collect();
        assert_eq!(
            chains,
            vec![
                json!({"family": "inet", "table": "mesh", "name": "prerouting", "type": "filter",
                       "hook": "prerouting", "prio": -300, "policy": "accept"}),
                json!({"family": "inet", "table": "mesh", "name": "forward", "type": "filter",
                       "hook": "forward", "prio": 0, "policy": "accept"}),
                json!({"family": "inet", "table": "mesh", "name": "to_cluster"}),
            ]
        );
    }

    #[test]
    fn prerouting_drops_cluster_sources_from_other_interfaces() {
        assert_eq!(
            rules(&spec(), "prerouting"),
            vec![
                json!([iif(json!({"set": ["lo", "br-pods", "tun-x"]})), {"accept": null}]),
                json!([ip("saddr"), {"counter": "spoofed_source"}, {"drop": null}]),
            ]
        );
    }

    #[test]
    fn forward_lets_the_bridge_the_tun_and_host_nat_reach_pods_and_drops_the_rest() {
        assert_eq!(
            rules(&spec(), "forward"),
            vec![json!([ip("daddr"), {"goto": {"target": "to_cluster"}}])]
        );
        let ct = |key: &str, op: &str, v: &str| json!({"match": {"op": op, "left": {"ct": {"key": key}}, "right": v}});
        assert_eq!(
            rules(&spec(), "to_cluster"),
            vec![
                json!([ct("status", "in", "dnat"), {"accept": null}]),
                json!([ct("direction", "==", "reply"), ct("status", "in", "snat"), {"accept": null}]),
                json!([iif(json!("br-pods")), {"accept": null}]),
                json!([iif(json!("tun-x")), oif(json!("br-pods")), {"accept": null}]),
                json!([oif(json!("br-pods")), {"counter": "to_local_pods"}, {"drop": null}]),
                json!([oif(json!("tun-x")), {"counter": "to_remote_pods"}, {"drop": null}]),
            ]
        );
    }

    #[test]
    fn every_drop_is_counted_in_a_declared_counter() {
        let c = commands(&spec());
        let declared: Vec<String> = c
            .iter()
            .filter(|(_, k, _)| k == "counter")
            .map(|(_, _, o)| o["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(declared, COUNTERS);
        let mut used = Vec::new();
        for (_, kind, o) in &c {
            if kind != "rule" {
                continue;
            }
            let expr = o["expr"].as_array().unwrap();
            if expr.last() == Some(&json!({"drop": null})) {
                let counter = &expr[expr.len() - 2]["counter"];
                used.push(counter.as_str().unwrap().to_owned());
            }
        }
        assert_eq!(used, COUNTERS);
    }

    #[test]
    fn the_range_is_the_configured_one() {
        let s = FilterSpec {
            range: "172.20.0.0/14".parse().unwrap(),
            ..spec()
        };
        let text = serde_json::to_string(&filter_ruleset(&s)).unwrap();
        assert!(
            text.contains(r#"{"prefix":{"addr":"172.20.0.0","len":14}}"#),
            "{text}"
        );
        assert!(!text.contains("10.32."), "{text}");
    }

    #[test]
    fn a_listing_gives_a_shape_without_handles_or_counter_values() {
        let listing = |handle: u32, packets: u64| {
            json!({"nftables": [
                {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
                {"table": {"family": "inet", "name": "mesh", "handle": 7}},
                {"counter": {"family": "inet", "name": "spoofed_source", "table": "mesh",
                             "handle": handle, "packets": packets, "bytes": packets * 84}},
                {"rule": {"family": "inet", "table": "mesh", "chain": "prerouting",
                          "handle": handle + 3, "expr": [{"drop": null}]}},
            ]})
            .to_string()
        };
        let a = parse_listing(&listing(1, 0)).unwrap();
        let b = parse_listing(&listing(9, 5_000_000_000)).unwrap();
        assert_eq!(a.shape, b.shape);
        assert_eq!(a.shape.len(), 2);
        assert!(
            a.shape
                .iter()
                .all(|l| !l.contains("handle") && !l.contains("packets"))
        );
        assert_eq!(
            b.counters["spoofed_source"],
            CounterValue {
                packets: 5_000_000_000,
                bytes: 420_000_000_000
            }
        );
        assert!(parse_listing("not json").is_err());
        assert!(parse_listing("{}").is_err());
    }

    #[test]
    fn nft_errors_name_the_missing_piece() {
        let missing = nft_error(
            "x",
            NftablesError::NftExecution {
                program: "nft".into(),
                inner: std::io::ErrorKind::NotFound.into(),
            },
        );
        assert!(matches!(missing, DatapathError::NftMissing));
        assert!(missing.to_string().contains("nft command was not found"));
        let refused = nft_error(
            "replace table inet mesh",
            NftablesError::NftFailed {
                program: "nft".into(),
                hint: String::new(),
                stdout: String::new(),
                stderr: "\nError: Could not process rule: Operation not supported\nmore\n".into(),
            },
        );
        assert_eq!(
            refused.to_string(),
            "nftables is unusable: nft cannot replace table inet mesh: Error: Could not process \
             rule: Operation not supported (the kernel lacks nf_tables or one of its parts: \
             modprobe nf_tables nft_ct nft_counter)"
        );
        assert!(no_such_table(
            "Error: No such file or directory; did you mean table 'x'?"
        ));
    }
}
