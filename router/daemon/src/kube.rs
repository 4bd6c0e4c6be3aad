//! `meshd --kube`: the cluster's Node objects as a source of peers, and their deletion as the
//! operator's word that a node is gone for good.
//!
//! One task lists and watches Nodes (kube-runtime's watcher: list, then watch from the
//! list's resourceVersion, a relist after 410 Gone, restarts with backoff after errors) and,
//! every [`TICK`]:
//!
//! - gives the core every other Node as a bootstrap address (the `mesh/endpoint`
//!   annotation, else its InternalIP with this node's port) and, when the Node carries a
//!   `mesh/public-key`, as a known peer, so the first handshake is the 1-RTT IK;
//! - publishes this node's key, endpoint and ring on its own Node (a JSON merge patch of
//!   `metadata.annotations`, only when they differ);
//! - founds the address ring when this Node is the oldest and no Node names a ring;
//! - reclaims the blocks and DNS records of members whose Node was deleted, once they are
//!   dead, on exactly one node: the alive member with the lowest public key
//!   (docs/ipam.md, "Kubernetes").
//!
//! It does not fail meshd: API errors are logged once per streak and retried; meshd runs on
//! gossip meanwhile.

use crate::config::KubeConfig;
use crate::names;
use crate::run::Shared;
use anyhow::{Result, anyhow};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use mesh_crypto::PublicKey;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The node's public key (base64, as `meshctl members` shows it).
pub(crate) const ANN_KEY: &str = "mesh/public-key";
/// The node's underlay endpoint, `IP:PORT`; others contact it there.
pub(crate) const ANN_ENDPOINT: &str = "mesh/endpoint";
/// The id of the address ring the node belongs to (automatic IPAM, once it has one).
pub(crate) const ANN_RING: &str = "mesh/ring";
/// How often Nodes are compared with gossip (peers, annotations, founding, reclaims).
const TICK: Duration = Duration::from_secs(2);
/// A node founds the ring only this long after its key is on its Node (see `founds_ring`).
const FOUND_SETTLE: Duration = Duration::from_secs(10);
/// Keys seen on Nodes, kept across restarts: a Node deleted while meshd was down is still
/// recognised as a Kubernetes member.
const SEEN_FILE: &str = "kube-nodes.json";

/// A client from `--kubeconfig`, else the in-cluster ServiceAccount, else the default
/// kubeconfig; a one-line error naming the fix when there is none.
pub(crate) async fn connect(k: &KubeConfig) -> Result<kube::Client> {
    let config = match &k.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow!("--kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| anyhow!("--kubeconfig {}: {e}", path.display()))?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(in_cluster) => kube::Config::from_kubeconfig(&Default::default())
                .await
                .map_err(|file| {
                    anyhow!(
                        "--kube: no in-cluster config ({in_cluster}) and no kubeconfig ({file}): \
                         run meshd in a pod with a ServiceAccount or pass --kubeconfig PATH"
                    )
                })?,
        },
    };
    kube::Client::try_from(config).map_err(|e| anyhow!("--kube: cannot make a client: {e}"))
}

/// The address of a Node's meshd: its `mesh/endpoint` annotation, else its first
/// InternalIP with `port`.
pub(crate) fn endpoint_of(node: &KubeNode, port: u16) -> Option<SocketAddr> {
    if let Some(ep) = annotation(node, ANN_ENDPOINT).and_then(|a| a.trim().parse().ok()) {
        return Some(ep);
    }
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
}

/// The public key a Node's meshd published.
pub(crate) fn key_of(node: &KubeNode) -> Option<PublicKey> {
    annotation(node, ANN_KEY)?.trim().parse().ok()
}

fn annotation<'a>(node: &'a KubeNode, key: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn name_of(node: &KubeNode) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

/// Whether Node `own` founds the address ring. Only Nodes whose meshd runs count: they carry
/// a `mesh/public-key` this node sees alive in gossip (`live`), or are `own` with its key
/// published. Among them no Node names a ring yet, and `own` is the oldest (creation time,
/// then name), so of nodes started together exactly one founds. A Node meshd does not run
/// on (a node selector, a Windows node, a crash loop) or a stale annotation left by an earlier
/// installation never blocks the founding.
pub(crate) fn founds_ring(
    nodes: &BTreeMap<String, KubeNode>,
    own: &str,
    live: impl Fn(&PublicKey) -> bool,
) -> bool {
    let running: Vec<&KubeNode> = nodes
        .values()
        .filter(|n| key_of(n).is_some_and(|k| name_of(n) == own || live(&k)))
        .collect();
    // This Node's own ring annotation is stale when it is read here (the caller founds only
    // while this node has no ring; `publish` removes it).
    if !running.iter().any(|n| name_of(n) == own)
        || running
            .iter()
            .any(|n| name_of(n) != own && annotation(n, ANN_RING).is_some())
    {
        return false;
    }
    let oldest = running
        .iter()
        .min_by_key(|n| (n.metadata.creation_timestamp.clone(), name_of(n).to_owned()));
    oldest.is_some_and(|n| name_of(n) == own)
}

/// The one member that reclaims a deleted Node's blocks: the lowest key of those alive
/// (this node included).
pub(crate) fn reclaimer(own: PublicKey, alive: impl IntoIterator<Item = PublicKey>) -> PublicKey {
    alive.into_iter().fold(own, Ord::min)
}

/// The annotations this node wants on its Node.
pub(crate) fn own_annotations(
    key: &PublicKey,
    endpoint: Option<SocketAddr>,
    ring: Option<String>,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(ANN_KEY.to_owned(), key.to_string());
    if let Some(ep) = endpoint {
        a.insert(ANN_ENDPOINT.to_owned(), ep.to_string());
    }
    if let Some(ring) = ring {
        a.insert(ANN_RING.to_owned(), ring);
    }
    a
}

/// Whether `node` carries every annotation of `want` with the same value.
fn has_annotations(node: &KubeNode, want: &BTreeMap<String, String>) -> bool {
    want.iter()
        .all(|(k, v)| annotation(node, k) == Some(v.as_str()))
}

/// One line for an API error of `verb` on nodes, naming the fix.
pub(crate) fn explain(err: &kube::Error, verb: &str, node: &str) -> String {
    match err {
        kube::Error::Api(s) if s.code == 403 => format!(
            "the API server forbids `{verb}` on nodes: give meshd's ServiceAccount a \
             ClusterRole with verbs get, list, watch and patch on nodes (the chart does): {}",
            s.message
        ),
        kube::Error::Api(s) if s.code == 404 && verb == "patch" => format!(
            "Node {node:?} does not exist: check --kube-node (MESH_KUBE_NODE) against \
             `kubectl get nodes`; retrying, meshd runs on gossip meanwhile"
        ),
        e => format!("{verb} nodes failed: {e}"),
    }
}

/// A watcher error in one line.
fn explain_watch(err: &watcher::Error) -> String {
    match err {
        watcher::Error::InitialListFailed(e) => explain(e, "list", ""),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            explain(e, "watch", "")
        }
        watcher::Error::WatchError(s) if s.code == 403 => format!(
            "the API server forbids `watch` on nodes: give meshd's ServiceAccount a \
             ClusterRole with verbs get, list, watch and patch on nodes: {}",
            s.message
        ),
        e => e.to_string(),
    }
}

/// Logs a failure once per streak of the same kind; `None` ends the streak.
#[derive(Debug, Default)]
struct Streak(Option<String>);

impl Streak {
    fn fail(&mut self, what: &str, line: String) {
        if self.0.is_none() {
            tracing::warn!(error = %line, "{what}; retrying");
        }
        self.0 = Some(line);
    }

    fn ok(&mut self, what: &str) {
        if self.0.take().is_some() {
            tracing::info!("{what} works again");
        }
    }
}

fn load_seen(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join(SEEN_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_seen(dir: &Path, seen: &BTreeMap<String, String>) {
    let path = dir.join(SEEN_FILE);
    let tmp = dir.join(format!("{SEEN_FILE}.tmp"));
    let res = serde_json::to_string_pretty(seen)
        .map_err(std::io::Error::other)
        .and_then(|t| std::fs::write(&tmp, t))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = res {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the keys seen on Nodes");
    }
}

/// What the task knows between events.
struct Kube {
    shared: Arc<Shared>,
    api: Api<KubeNode>,
    own: String,
    port: u16,
    /// The Nodes as of the last list plus the watch events since.
    nodes: BTreeMap<String, KubeNode>,
    /// A list completed at least once.
    listed: bool,
    /// Public key -> Node name of every Node seen with a key (persisted).
    seen: BTreeMap<String, String>,
    /// Endpoints (and keys) already handed to the core.
    given: BTreeSet<(SocketAddr, Option<PublicKey>)>,
    watch_errors: Streak,
    patch_errors: Streak,
    missing_own: bool,
    waiting_founder: bool,
    /// Since when this Node carries this node's key: the founding waits [`FOUND_SETTLE`]
    /// after it, so that the meshd of every Node started together has published its key and
    /// reached this one.
    published_since: Option<Instant>,
    /// When the task started: no reclaim before gossip had `dead_after` to say who is alive
    /// (right after a restart every node would think itself the lowest alive key).
    started: Instant,
}

/// Runs `--kube` until meshd stops.
pub(crate) async fn run(shared: Arc<Shared>, client: kube::Client) -> Result<()> {
    let Some(k) = shared.config.kube.clone() else {
        return std::future::pending().await;
    };
    let api: Api<KubeNode> = Api::all(client);
    let mut st = Kube {
        port: shared.config.listen.port(),
        seen: load_seen(&shared.config.state_dir),
        shared,
        api: api.clone(),
        own: k.node.clone(),
        nodes: BTreeMap::new(),
        listed: false,
        given: BTreeSet::new(),
        watch_errors: Streak::default(),
        patch_errors: Streak::default(),
        missing_own: false,
        waiting_founder: false,
        published_since: None,
        started: Instant::now(),
    };
    tracing::info!(node = %k.node, "kube mode: watching Nodes");
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut init: Option<BTreeMap<String, KubeNode>> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Ok(ev)) => {
                    st.watch_errors.ok("watching Nodes");
                    match ev {
                        watcher::Event::Init => init = Some(BTreeMap::new()),
                        watcher::Event::InitApply(n) => {
                            init.get_or_insert_with(BTreeMap::new)
                                .insert(name_of(&n).to_owned(), n);
                        }
                        watcher::Event::InitDone => {
                            st.nodes = init.take().unwrap_or_default();
                            st.listed = true;
                            tracing::debug!(nodes = st.nodes.len(), "listed Nodes");
                            st.step().await;
                        }
                        watcher::Event::Apply(n) => {
                            st.nodes.insert(name_of(&n).to_owned(), n);
                            st.step().await;
                        }
                        watcher::Event::Delete(n) => {
                            tracing::info!(node = %name_of(&n), "Node deleted");
                            st.nodes.remove(name_of(&n));
                            st.step().await;
                        }
                    }
                }
                Some(Err(watcher::Error::WatchError(s))) if s.code == 410 => {
                    tracing::info!("the Node watch expired (410 Gone): listing again");
                }
                Some(Err(e)) => st.watch_errors.fail("watching Nodes failed", explain_watch(&e)),
                None => return std::future::pending().await,
            },
            _ = tick.tick() => if st.listed { st.step().await },
        }
    }
}

impl Kube {
    /// Everything that depends on the Nodes and on gossip, idempotent.
    async fn step(&mut self) {
        self.learn_peers();
        self.found();
        self.reconcile();
        self.publish().await;
    }

    /// Every other Node's endpoint (and key) into the core; keys into `seen`.
    fn learn_peers(&mut self) {
        let mut new = Vec::new();
        let mut seen_changed = false;
        for (name, n) in &self.nodes {
            let key = key_of(n);
            if let Some(k) = key {
                let k = k.to_string();
                if self.seen.get(&k) != Some(name) {
                    self.seen.insert(k, name.clone());
                    seen_changed = true;
                }
            }
            if *name == self.own {
                continue;
            }
            let Some(ep) = endpoint_of(n, self.port) else {
                continue;
            };
            if self.given.insert((ep, key)) {
                new.push((name.clone(), ep, key));
            }
        }
        if seen_changed {
            save_seen(&self.shared.config.state_dir, &self.seen);
        }
        // Addresses of Nodes that are gone (or moved) are no longer contacted; `--peer`s stay.
        let current: BTreeSet<SocketAddr> = self
            .nodes
            .iter()
            .filter(|(name, _)| **name != self.own)
            .filter_map(|(_, n)| endpoint_of(n, self.port))
            .collect();
        let stale: Vec<SocketAddr> = self
            .given
            .iter()
            .map(|(ep, _)| *ep)
            .filter(|ep| !current.contains(ep))
            .collect();
        if new.is_empty() && stale.is_empty() {
            return;
        }
        self.given.retain(|(ep, _)| current.contains(ep));
        let peers = &self.shared.config.peers;
        self.shared.update(|node, now| {
            for ep in stale {
                if !peers.contains(&ep) && node.forget_bootstrap(ep) {
                    tracing::info!(endpoint = %ep, "no Node has this address any more: not contacting it");
                }
            }
            for (name, ep, key) in new {
                if let Some(k) = key {
                    node.add_known_peer(now, k, ep);
                }
                if node.add_bootstrap(now, ep) {
                    tracing::info!(node = %name, endpoint = %ep, ik = key.is_some(), "peer from a Kubernetes Node");
                }
            }
        });
    }

    /// Founds the ring (automatic IPAM, no `--peer`) when this is the oldest Node and no Node
    /// names a ring.
    fn found(&mut self) {
        let c = &self.shared.config;
        if c.block.is_some() || !c.peers.is_empty() {
            return;
        }
        let now = Instant::now();
        let own_key = self.shared.public_key;
        let published = self
            .nodes
            .get(&self.own)
            .and_then(key_of)
            .is_some_and(|k| k == own_key);
        if !published {
            self.published_since = None;
            return;
        }
        let since = *self.published_since.get_or_insert(now);
        if now.saturating_duration_since(since) < FOUND_SETTLE {
            return;
        }
        let (nodes, own) = (&self.nodes, &self.own);
        // Decided and founded under one hold of the node lock.
        let founded = self.shared.update(|node, now| {
            if node.ring_id().is_some() {
                return None;
            }
            if !founds_ring(nodes, own, |k| node.is_alive(k)) {
                return Some(false);
            }
            let mut nonce = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
            tracing::info!(node = %own, "the oldest Node running meshd, and none names an address ring: founding it");
            node.found_ring(now, nonce);
            Some(true)
        });
        if founded == Some(false) && !self.waiting_founder {
            self.waiting_founder = true;
            tracing::info!(
                "joining the address ring of the oldest Node's meshd (or of a Node that names one)"
            );
        }
    }

    /// Reclaims members whose Node is gone, once dead, if this node is the one to.
    fn reconcile(&mut self) {
        if !self.listed || !self.shared.automatic() {
            return;
        }
        let live: BTreeSet<String> = self
            .nodes
            .values()
            .filter_map(key_of)
            .map(|k| k.to_string())
            .collect();
        let gone: Vec<(String, String)> = self
            .seen
            .iter()
            .filter(|(k, _)| !live.contains(*k))
            .map(|(k, n)| (k.clone(), n.clone()))
            .collect();
        let now = Instant::now();
        if gone.is_empty()
            || now.saturating_duration_since(self.started) < self.shared.config.dead_after
        {
            return;
        }
        let (shared, seen) = (&self.shared, &mut self.seen);
        // Decided and reclaimed under one hold of the node lock.
        let changed = shared.update(|node, now| {
            let own = node.public_key();
            let alive: Vec<PublicKey> = node
                .members(now)
                .into_iter()
                .filter(|m| m.state == mesh_api::MemberState::Alive)
                .filter_map(|m| m.public_key.parse().ok())
                .collect();
            let me_reclaims = reclaimer(own, alive) == own;
            let mut changed = false;
            for (k, name) in gone {
                let Ok(key) = k.parse::<PublicKey>() else {
                    seen.remove(&k);
                    changed = true;
                    continue;
                };
                if key == own || node.is_alive(&key) {
                    // Its meshd still runs (the Node went first): wait until gossip sees it dead.
                    continue;
                }
                if !node.member_gone(&key) && !node.owns_blocks(&key) {
                    // Nothing of it in the ring and gossip does not know it: done.
                    seen.remove(&k);
                    changed = true;
                    continue;
                }
                if !me_reclaims {
                    if !node.owns_blocks(&key) {
                        seen.remove(&k);
                        changed = true;
                    }
                    continue;
                }
                let blocks = match node.reclaim(now, key) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(node = %name, error = %e, "nothing to reclaim");
                        Vec::new()
                    }
                };
                let dns = names::remove_owner(shared, node, now, &key);
                tracing::warn!(node = %name, key = %key, ?blocks, dns_records = dns, "Node deleted and its member dead: its blocks are this node's now, its DNS records are removed");
                seen.remove(&k);
                changed = true;
            }
            changed
        });
        if changed {
            save_seen(&self.shared.config.state_dir, &self.seen);
        }
    }

    /// Puts this node's key, endpoint and ring on its Node when they differ.
    async fn publish(&mut self) {
        if !self.listed {
            return;
        }
        let Some(own) = self.nodes.get(&self.own) else {
            if !self.missing_own {
                self.missing_own = true;
                tracing::warn!(node = %self.own, "Node {:?} does not exist: check --kube-node (MESH_KUBE_NODE) against `kubectl get nodes`; retrying, meshd runs on gossip meanwhile", self.own);
            }
            return;
        };
        if std::mem::take(&mut self.missing_own) {
            tracing::info!(node = %self.own, "Node found");
        }
        let c = &self.shared.config;
        let endpoint = c
            .advertise
            .or_else(|| (!c.listen.ip().is_unspecified()).then_some(c.listen))
            .or_else(|| endpoint_of_internal(own, self.port));
        let ring = self.shared.read(|node, _| node.ring_id());
        // A ring annotation without a ring here is left from an earlier run: remove it.
        let stale_ring = ring.is_none() && annotation(own, ANN_RING).is_some();
        let want = own_annotations(&self.shared.public_key, endpoint, ring);
        if has_annotations(own, &want) && !stale_ring {
            return;
        }
        let mut annotations = serde_json::json!(want);
        if stale_ring {
            annotations[ANN_RING] = serde_json::Value::Null;
        }
        let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
        match self
            .api
            .patch(&self.own, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(n) => {
                self.patch_errors.ok("annotating this node's Node");
                tracing::info!(node = %self.own, ?want, "annotated this node's Node");
                self.nodes.insert(self.own.clone(), n);
            }
            Err(e) => self.patch_errors.fail(
                "annotating this node's Node failed",
                explain(&e, "patch", &self.own),
            ),
        }
    }
}

/// The InternalIP of a Node with `port` (never its own endpoint annotation).
fn endpoint_of_internal(node: &KubeNode, port: u16) -> Option<SocketAddr> {
    let mut n = node.clone();
    if let Some(a) = n.metadata.annotations.as_mut() {
        a.remove(ANN_ENDPOINT);
    }
    endpoint_of(&n, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn node(name: &str, created: i64, ip: &str, ann: &[(&str, &str)]) -> KubeNode {
        KubeNode {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
                )),
                annotations: Some(
                    ann.iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.into(),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn key(i: u8) -> PublicKey {
        mesh_crypto::StaticKeypair::generate([i; 32]).public()
    }

    #[test]
    fn the_endpoint_is_the_annotation_else_the_internal_ip_with_our_port() {
        let n = node("a", 1, "198.18.0.1", &[]);
        assert_eq!(
            endpoint_of(&n, 6788),
            Some("198.18.0.1:6788".parse().unwrap())
        );
        let n = node("a", 1, "198.18.0.1", &[(ANN_ENDPOINT, "203.0.113.9:7000")]);
        assert_eq!(
            endpoint_of(&n, 6788),
            Some("203.0.113.9:7000".parse().unwrap())
        );
        assert_eq!(
            endpoint_of_internal(&n, 6788),
            Some("198.18.0.1:6788".parse().unwrap())
        );
        let n = node("a", 1, "not an ip", &[(ANN_ENDPOINT, "garbage")]);
        assert_eq!(endpoint_of(&n, 6788), None);
        assert_eq!(key_of(&n), None);
        let k = key(1);
        let n = node("a", 1, "198.18.0.1", &[(ANN_KEY, &k.to_string())]);
        assert_eq!(key_of(&n), Some(k));
    }

    #[test]
    fn only_the_oldest_node_running_meshd_founds_and_only_while_none_names_a_ring() {
        let k: Vec<String> = (1..=5).map(|i| key(i).to_string()).collect();
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "b".to_owned(),
            node("b", 10, "198.18.0.2", &[(ANN_KEY, &k[1])]),
        );
        nodes.insert(
            "c".to_owned(),
            node("c", 20, "198.18.0.3", &[(ANN_KEY, &k[2])]),
        );
        nodes.insert(
            "a".to_owned(),
            node("a", 30, "198.18.0.1", &[(ANN_KEY, &k[0])]),
        );
        let all = |_: &PublicKey| true;
        assert!(founds_ring(&nodes, "b", all), "oldest");
        assert!(!founds_ring(&nodes, "a", all), "lowest name, but younger");
        assert!(!founds_ring(&nodes, "x", all), "not listed");
        // An older Node without meshd (no key) or whose meshd is not alive does not count.
        nodes.insert("w".to_owned(), node("w", 1, "198.18.0.9", &[]));
        nodes.insert(
            "v".to_owned(),
            node("v", 2, "198.18.0.8", &[(ANN_KEY, &k[4])]),
        );
        let dead_v = |p: &PublicKey| *p != key(5);
        assert!(founds_ring(&nodes, "b", dead_v), "w and v do not run meshd");
        assert!(!founds_ring(&nodes, "b", all), "v runs meshd and is older");
        // This node's own Node counts before gossip says anything about it.
        assert!(founds_ring(&nodes, "b", |p: &PublicKey| *p != key(5) && *p != key(2)));
        nodes.insert(
            "d".to_owned(),
            node("d", 10, "198.18.0.4", &[(ANN_KEY, &k[3])]),
        );
        assert!(
            founds_ring(&nodes, "b", dead_v) && !founds_ring(&nodes, "d", dead_v),
            "ties by name"
        );
        // A ring named by a live Node: join it; by a dead one (a stale annotation): ignore it.
        nodes.insert(
            "v".to_owned(),
            node("v", 2, "198.18.0.8", &[(ANN_KEY, &k[4]), (ANN_RING, "ab")]),
        );
        assert!(founds_ring(&nodes, "b", dead_v), "stale ring annotation");
        nodes.insert(
            "c".to_owned(),
            node("c", 20, "198.18.0.3", &[(ANN_KEY, &k[2]), (ANN_RING, "ab")]),
        );
        assert!(!founds_ring(&nodes, "b", dead_v), "a ring exists");
        // Its own stale ring annotation does not stop this node.
        nodes.insert(
            "c".to_owned(),
            node("c", 20, "198.18.0.3", &[(ANN_KEY, &k[2])]),
        );
        nodes.insert(
            "b".to_owned(),
            node(
                "b",
                10,
                "198.18.0.2",
                &[(ANN_KEY, &k[1]), (ANN_RING, "old")],
            ),
        );
        assert!(founds_ring(&nodes, "b", dead_v));
        // Without its key on its own Node a node does not found.
        nodes.insert("b".to_owned(), node("b", 10, "198.18.0.2", &[]));
        assert!(!founds_ring(&nodes, "b", all));
    }

    #[test]
    fn the_reclaimer_is_the_lowest_alive_key() {
        let (a, b, c) = (key(1), key(2), key(3));
        let mut keys = [a, b, c];
        keys.sort();
        assert_eq!(reclaimer(keys[2], [keys[0], keys[1]]), keys[0]);
        assert_eq!(reclaimer(keys[0], [keys[2]]), keys[0]);
        assert_eq!(reclaimer(keys[1], []), keys[1], "alone: itself");
    }

    #[test]
    fn own_annotations_and_whether_a_node_has_them() {
        let k = key(1);
        let want = own_annotations(
            &k,
            Some("198.18.0.1:6788".parse().unwrap()),
            Some("ff".into()),
        );
        assert_eq!(want.len(), 3);
        assert!(want.keys().all(|a| a.starts_with("mesh/")));
        let n = node("a", 1, "198.18.0.1", &[(ANN_KEY, &k.to_string())]);
        assert!(!has_annotations(&n, &want));
        let pairs: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let n = node("a", 1, "198.18.0.1", &pairs);
        assert!(has_annotations(&n, &want));
        assert_eq!(own_annotations(&k, None, None).len(), 1);
    }

    #[test]
    fn api_errors_name_the_missing_verb_or_node_in_one_line() {
        let status = |code: u16| {
            let mut s = kube::core::Status::failure("nodes is forbidden", "Forbidden");
            s.code = code;
            kube::Error::Api(Box::new(s))
        };
        let m = explain(&status(403), "watch", "n1");
        assert!(
            m.contains("forbids `watch` on nodes") && !m.contains('\n'),
            "{m}"
        );
        let m = explain(&status(404), "patch", "n1");
        assert!(
            m.contains("Node \"n1\" does not exist") && m.contains("--kube-node"),
            "{m}"
        );
        let m = explain_watch(&watcher::Error::InitialListFailed(status(403)));
        assert!(m.contains("forbids `list`"), "{m}");
    }

    #[test]
    fn seen_keys_survive_a_restart() {
        let d = std::env::temp_dir().join(format!("meshd-kube-seen-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert!(load_seen(&d).is_empty());
        let mut seen = BTreeMap::new();
        seen.insert(key(1).to_string(), "a".to_owned());
        save_seen(&d, &seen);
        assert_eq!(load_seen(&d), seen);
        let _ = std::fs::remove_dir_all(&d);
    }
}
