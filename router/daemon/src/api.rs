//! The local API: HTTP/1.1 + JSON on a unix socket (mode 0600), for `meshctl` and
//! `mesh-cni`. Types and paths live in `mesh-api`.

use crate::ipam::IpamError;
use crate::names;
use crate::run::Shared;
use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

/// Binds the API socket. A stale socket file (nobody listening) is replaced; a live one
/// means another meshd runs with the same socket, which is an error.
pub(crate) fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "API socket path {} exists and is not a socket: remove it or pick --api-socket",
                path.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "API socket {} is in use: another meshd is running (stop it or pick --api-socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale API socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod API socket {}", path.display()))?;
    Ok(listener)
}

/// Serves the API until the task is aborted.
pub(crate) async fn serve(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    let app = axum::Router::new()
        .route(mesh_api::PATH_STATUS, get(status))
        .route(mesh_api::PATH_READY, get(ready))
        .route(mesh_api::PATH_IPAM, get(ipam_status))
        .route(mesh_api::PATH_ROUTES, get(routes))
        .route(mesh_api::PATH_IPAM_ALLOCATE, post(ipam_allocate))
        .route(mesh_api::PATH_IPAM_RELEASE, post(ipam_release))
        .route(mesh_api::PATH_IPAM_GC, post(ipam_gc))
        .route(mesh_api::PATH_DNS, get(dns_list))
        .route(mesh_api::PATH_DNS_ADD, post(dns_add))
        .route(mesh_api::PATH_DNS_REMOVE, post(dns_remove))
        .route(mesh_api::PATH_MEMBERS_REMOVE, post(members_remove))
        .route(mesh_api::PATH_DEBUG, get(debug))
        .route(mesh_api::PATH_PING, post(ping))
        .route(mesh_api::PATH_PEERS_CONNECT, post(peers_connect))
        .route(mesh_api::PATH_PEERS_FORGET, post(peers_forget))
        .fallback(not_found)
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "API server stopped");
    }
}

async fn debug(State(shared): State<Arc<Shared>>) -> Json<mesh_api::DebugReport> {
    Json(crate::debug::report(&shared).await)
}

async fn ping(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<mesh_api::PingRequest>,
) -> Response {
    refused(crate::ping::ping(&shared, &req).await)
}

/// An `IP:PORT`, or the 400 that says it is not one.
fn parse_endpoint(s: &str) -> Result<std::net::SocketAddr, Refusal> {
    s.trim().parse().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            format!("{s:?} is not an endpoint: give IP:PORT, e.g. 198.18.0.2:6788"),
        )
    })
}

async fn peers_connect(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<mesh_api::EndpointRequest>,
) -> Response {
    refused(parse_endpoint(&req.endpoint).and_then(|addr| {
        let changed = shared.connect_endpoint(addr).map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot save the known peers: {e:#}"),
            )
        })?;
        tracing::info!(endpoint = %addr, new = changed, "peer endpoint added (meshctl connect)");
        Ok(mesh_api::EndpointChanged {
            endpoint: addr.to_string(),
            changed,
            removed_keys: Vec::new(),
        })
    }))
}

async fn peers_forget(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<mesh_api::EndpointRequest>,
) -> Response {
    let forgot = parse_endpoint(&req.endpoint).and_then(|addr| {
        match shared.forget_endpoint(addr) {
            Ok(Some((changed, keys))) => {
                tracing::info!(endpoint = %addr, removed = keys.len(), "peer endpoint forgotten (meshctl forget)");
                Ok(mesh_api::EndpointChanged {
                    endpoint: addr.to_string(),
                    changed,
                    removed_keys: keys.iter().map(ToString::to_string).collect(),
                })
            }
            Ok(None) => Err((
                StatusCode::NOT_FOUND,
                format!(
                    "endpoint {addr} is unknown: it is neither tried (--peer, meshctl connect)                      nor a saved peer's (see `meshctl peers`)"
                ),
            )),
            Err(e) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot save the known peers: {e:#}"),
            )),
        }
    });
    refused(forgot)
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<mesh_api::Status> {
    Json(shared.status())
}

/// The node's route table, with each owner's name, endpoint and state.
async fn routes(State(shared): State<Arc<Shared>>) -> Json<mesh_api::Routes> {
    let status = shared.status();
    let (table, own) = shared.read(|node, _| (node.routes(), node.public_key()));
    Json(routes_answer(&table, own, &status.node.name, &status.peers))
}

/// [`mesh_api::Routes`] from the table's (block, owner) pairs: `local` for `own`, else the
/// peer with that key.
fn routes_answer(
    table: &[(ipnet::Ipv4Net, mesh_crypto::PublicKey)],
    own: mesh_crypto::PublicKey,
    own_name: &str,
    peers: &[mesh_api::PeerStatus],
) -> mesh_api::Routes {
    let routes = table
        .iter()
        .map(|(block, key)| {
            let public_key = key.to_string();
            if *key == own {
                return mesh_api::Route {
                    block: block.to_string(),
                    via: mesh_api::RouteVia::Local,
                    name: own_name.to_owned(),
                    public_key,
                    endpoint: String::new(),
                    state: None,
                };
            }
            let peer = peers.iter().find(|p| p.public_key == public_key);
            mesh_api::Route {
                block: block.to_string(),
                via: mesh_api::RouteVia::Peer,
                name: peer.map(|p| p.name.clone()).unwrap_or_default(),
                public_key,
                endpoint: peer.map(|p| p.endpoint.clone()).unwrap_or_default(),
                state: peer.map(|p| p.state),
            }
        })
        .collect();
    mesh_api::Routes { routes }
}

/// The API is served only once the bridge, the TUN device and the address pool are set up,
/// so answering at all means ready.
async fn ready() -> Json<mesh_api::Ready> {
    Json(mesh_api::Ready { ready: true })
}

async fn ipam_status(State(shared): State<Arc<Shared>>) -> Json<mesh_api::IpamStatus> {
    Json(shared.ipam_status())
}

async fn ipam_allocate(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<mesh_api::IpamAllocateRequest>,
) -> Response {
    match shared.ipam.allocate(req) {
        Err(IpamError::Allocate(e)) if shared.automatic() => {
            answer::<()>(Err(need_block(&shared, &e)))
        }
        result => answer(result),
    }
}

/// Automatic IPAM, the pool has no free address: asks the node for one more block (once per
/// set of blocks: retries do not ask again) and tells the caller to try again shortly.
fn need_block(shared: &Shared, e: &mesh_ipam::AllocateError) -> IpamError {
    match e {
        mesh_ipam::AllocateError::NoBlocks => IpamError::Waiting(
            "this node has no address block yet: it is getting one from the cluster's address \
             ring (it needs to reach a member that owns blocks); try again in a few seconds"
                .to_owned(),
        ),
        mesh_ipam::AllocateError::Exhausted { blocks, capacity } => {
            if shared.ipam.should_ask_for_block() {
                shared.update(|node, now| node.need_block(now));
            }
            let blocks: Vec<String> = blocks.iter().map(ToString::to_string).collect();
            IpamError::Waiting(format!(
                "all {capacity} pod addresses of this node's blocks ({}) are in use: it is \
                 getting another block from the cluster's address ring; try again in a few \
                 seconds",
                blocks.join(", ")
            ))
        }
    }
}

async fn members_remove(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<mesh_api::MemberRemoveRequest>,
) -> Response {
    refused(remove_member(&shared, &req))
}

/// `meshctl rmpeer`: the member named (by name or key) is gone for good; this node takes its
/// blocks over (see the operator contract in docs/ipam.md).
fn remove_member(
    shared: &Shared,
    req: &mesh_api::MemberRemoveRequest,
) -> Result<mesh_api::MemberRemoved, Refusal> {
    if !shared.automatic() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "this node runs with a fixed --block: there is no address ring to take blocks \
             back from (a member with a fixed --block owns only that block; just stop it)"
                .to_owned(),
        ));
    }
    let wanted = req.member.trim();
    // Looked up, decided and reclaimed under one hold of the node lock.
    let (name, key, who, blocks, dns_records) = shared.update(|node, now| {
        let members = node.members(now);
        let by_key: Vec<&mesh_api::MemberStatus> =
            members.iter().filter(|m| m.public_key == wanted).collect();
        let matches: Vec<&mesh_api::MemberStatus> = if by_key.is_empty() {
            members.iter().filter(|m| m.name == wanted).collect()
        } else {
            by_key
        };
        let (name, key, state) = match matches.as_slice() {
            [m] => (m.name.clone(), m.public_key.clone(), Some(m.state)),
            [] => match wanted.parse::<mesh_crypto::PublicKey>() {
                // A key gossip does not know (any more): its blocks may still be in the ring.
                Ok(k) => (String::new(), k.to_string(), None),
                Err(_) => {
                    return Err((
                        StatusCode::NOT_FOUND,
                        format!(
                            "no member is called {wanted:?}: give a name or public key from \
                             `meshctl members`"
                        ),
                    ));
                }
            },
            several => {
                let keys: Vec<String> = several
                    .iter()
                    .map(|m| format!("{} ({})", m.public_key, member_state(m.state)))
                    .collect();
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{} members are called {wanted:?}: give the public key of the one to remove: {}",
                        several.len(),
                        keys.join(", ")
                    ),
                ));
            }
        };
        let who = if name.is_empty() {
            mesh_api::key_fingerprint(&key)
        } else {
            name.clone()
        };
        match state {
            Some(mesh_api::MemberState::Local) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{who} is this node: run `meshctl rmpeer` on another member (after stopping \
                         this one for good)"
                    ),
                ));
            }
            Some(mesh_api::MemberState::Alive) if !req.force => {
                return Err((
                    StatusCode::CONFLICT,
                    format!(
                        "member {who} is alive: removing it hands its address blocks to this node \
                         while it may still give addresses out of them. Stop it for good first \
                         (and `meshd reset` it before it ever joins again), wait until `meshctl \
                         members` shows it dead, then run rmpeer again; --force removes it anyway"
                    ),
                ));
            }
            _ => {}
        }
        let dead = key.parse::<mesh_crypto::PublicKey>().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!("member {who} has no valid public key ({key:?})"),
            )
        })?;
        let blocks = node.reclaim(now, dead).map_err(|e| reclaim_refused(&e))?;
        let dns_records = names::remove_owner(shared, node, now, &dead);
        Ok::<_, Refusal>((name, key, who, blocks, dns_records))
    })?;
    tracing::warn!(member = %who, key = %key, ?blocks, dns_records, force = req.force, "member removed: its blocks are this node's now, its DNS records are removed");
    Ok(mesh_api::MemberRemoved {
        name,
        public_key: key,
        reclaimed: blocks.iter().map(ToString::to_string).collect(),
        dns_removed: dns_records,
    })
}

/// A refused reclaim: 503 with the reason's text, whoever is to blame (the answer `meshctl
/// rmpeer` has always had; a new reason must choose its status here).
fn reclaim_refused(e: &mesh_core::ReclaimError) -> Refusal {
    use mesh_core::ReclaimError;
    let code = match e {
        ReclaimError::FixedBlocks | ReclaimError::Ring(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, e.to_string())
}

fn member_state(state: mesh_api::MemberState) -> &'static str {
    match state {
        mesh_api::MemberState::Local => "this node",
        mesh_api::MemberState::Alive => "alive",
        mesh_api::MemberState::Dead => "dead",
        mesh_api::MemberState::Left => "left",
    }
}

async fn ipam_release(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<mesh_api::IpamReleaseRequest>,
) -> Response {
    answer(shared.ipam.release(req))
}

async fn ipam_gc(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<mesh_api::IpamGcRequest>,
) -> Response {
    answer(shared.ipam.gc(req))
}

/// 200 with the value, or the error with the status that says who is to blame: 400 for a
/// bad request, 507 when the address space of a fixed `--block` is exhausted, 503 without
/// any block or while automatic IPAM gets another one (try again), 500 when the state
/// directory cannot be written.
fn answer<T: serde::Serialize>(result: Result<T, IpamError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => {
            let code = match &e {
                IpamError::BadRequest(_) => StatusCode::BAD_REQUEST,
                IpamError::Allocate(mesh_ipam::AllocateError::Exhausted { .. }) => {
                    StatusCode::INSUFFICIENT_STORAGE
                }
                IpamError::Allocate(_) | IpamError::Waiting(_) => StatusCode::SERVICE_UNAVAILABLE,
                IpamError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if code.is_server_error() {
                tracing::warn!(error = %e, "IPAM request refused");
            }
            error(code, e.to_string())
        }
    }
}

/// A refused request: the status and the one-line message of its [`mesh_api::ApiError`].
pub(crate) type Refusal = (StatusCode, String);

fn refused<T: serde::Serialize>(result: Result<T, Refusal>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err((code, message)) => error(code, message),
    }
}

/// The DNS state, or the 503 that says DNS is off.
fn dns_state(shared: &Shared) -> Result<&mesh_dns_server::DnsState, Refusal> {
    shared.dns.as_deref().ok_or_else(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "DNS is off on this node (meshd --dns off)".to_owned(),
        )
    })
}

fn dns_record(l: &mesh_dns::Listed) -> mesh_api::DnsRecord {
    mesh_api::DnsRecord {
        name: l.name.to_string(),
        address: l.addr.to_string(),
        owner: mesh_crypto::PublicKey::from_bytes(l.owner.0).fingerprint(),
        served: l.served,
    }
}

fn dns_entry(e: &mesh_dns::Entry, served: bool) -> mesh_api::DnsRecord {
    dns_record(&mesh_dns::Listed {
        name: e.name.clone(),
        addr: e.addr,
        owner: e.owner,
        version: e.stamp.version,
        served,
    })
}

fn parse_addr(s: &str) -> Result<std::net::IpAddr, Refusal> {
    s.trim().parse().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            format!("address {s:?} is not an IPv4 or IPv6 address"),
        )
    })
}

fn bad_name(e: &DnsEditError) -> Refusal {
    (StatusCode::BAD_REQUEST, e.to_string())
}

fn own_owner(shared: &Shared) -> mesh_dns::Owner {
    mesh_dns::Owner(*shared.public_key.as_bytes())
}

async fn dns_list(State(shared): State<Arc<Shared>>) -> Response {
    refused(dns_records(&shared))
}

fn dns_records(shared: &Shared) -> Result<mesh_api::DnsRecords, Refusal> {
    let dns = dns_state(shared)?;
    let (zone, ttl, records) = dns.read(|s| {
        (
            s.config.zone.to_string(),
            s.config.ttl,
            s.store.list().iter().map(dns_record).collect(),
        )
    });
    let (listen, upstreams) = shared
        .config
        .dns
        .as_ref()
        .map(|d| {
            (
                shared
                    .dns_listen
                    .get()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                d.upstreams.iter().map(ToString::to_string).collect(),
            )
        })
        .unwrap_or_default();
    Ok(mesh_api::DnsRecords {
        zone,
        listen,
        upstreams,
        ttl,
        records,
    })
}

async fn dns_add(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<mesh_api::DnsAddRequest>,
) -> Response {
    refused(dns_add_record(&shared, &req))
}

fn dns_add_record(
    shared: &Shared,
    req: &mesh_api::DnsAddRequest,
) -> Result<mesh_api::DnsChanged, Refusal> {
    let dns = dns_state(shared)?;
    let addr = parse_addr(&req.address)?;
    let owner = own_owner(shared);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (entry, record) = dns
        .update(|s| {
            let name = s.config.qualify(req.name.trim())?;
            s.store
                .add(&name, addr, owner, now_ms)
                .map(|e| {
                    let shown = dns_entry(&e, s.store.is_alive(owner));
                    (e, shown)
                })
                .map_err(DnsEditError::Store)
        })
        .map_err(|e| bad_name(&e))?;
    shared.update(|node, now| names::publish(node, now, &[entry]));
    tracing::info!(name = %record.name, address = %record.address, "dns record added");
    Ok(mesh_api::DnsChanged {
        records: vec![record],
    })
}

async fn dns_remove(
    State(shared): State<Arc<Shared>>,
    Body(req): Body<mesh_api::DnsRemoveRequest>,
) -> Response {
    refused(dns_remove_records(&shared, &req))
}

fn dns_remove_records(
    shared: &Shared,
    req: &mesh_api::DnsRemoveRequest,
) -> Result<mesh_api::DnsChanged, Refusal> {
    let dns = dns_state(shared)?;
    let addr = req.address.as_deref().map(parse_addr).transpose()?;
    let owner = own_owner(shared);
    let (name, gone) = dns
        .update(|s| {
            let name = s.config.qualify(req.name.trim())?;
            let gone = s.store.remove(&name, addr, owner);
            Ok::<_, DnsEditError>((name, gone))
        })
        .map_err(|e| bad_name(&e))?;
    shared.update(|node, now| names::publish(node, now, &gone));
    let records: Vec<mesh_api::DnsRecord> = gone.iter().map(|e| dns_entry(e, false)).collect();
    if records.is_empty() {
        return Err((
            StatusCode::NOT_FOUND,
            match addr {
                Some(a) => format!("this node has no record {name} {a}"),
                None => format!("this node has no record under {name}"),
            },
        ));
    }
    for r in &records {
        tracing::info!(name = %r.name, address = %r.address, "dns record removed");
    }
    Ok(mesh_api::DnsChanged { records })
}

/// Why a DNS edit was refused: a 400 with the reason's text, whichever it is.
#[derive(Debug, thiserror::Error)]
enum DnsEditError {
    /// The name is not one of the zone. Blame: the caller.
    #[error(transparent)]
    Name(#[from] mesh_dns::NameError),
    /// The store refused the record. Blame: the caller (or forged gossip that used up the
    /// name's versions).
    #[error(transparent)]
    Store(#[from] mesh_dns::StoreError),
}

/// A JSON request body. A body that is not the JSON the endpoint takes is answered with a
/// 400 naming the problem before the handler runs.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(|e| bad_body(&e))
    }
}

fn bad_body(e: &JsonRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("bad request body: {}", e.body_text()),
    )
}

fn error(code: StatusCode, message: String) -> Response {
    (code, Json(mesh_api::ApiError { error: message })).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(mesh_api::ApiError {
            error: "no such endpoint".into(),
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::{PeerState, PeerStatus, RouteVia};
    use mesh_crypto::StaticKeypair;

    fn peer(name: &str, key: &str, endpoint: &str) -> PeerStatus {
        PeerStatus {
            name: name.into(),
            public_key: key.into(),
            endpoint: endpoint.into(),
            state: PeerState::Established,
            blocks: vec![],
            last_handshake_secs_ago: Some(1),
            handshakes: 1,
            rtt_us: None,
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            drops: vec![],
            relay: None,
            session_rx_expected: 0,
            session_rx_lost: 0,
            cipher: Some("chacha20-poly1305".into()),
        }
    }

    #[test]
    fn own_blocks_are_local_and_others_name_their_peer() {
        let own = StaticKeypair::generate([1; 32]).public();
        let other = StaticKeypair::generate([2; 32]).public();
        let stranger = StaticKeypair::generate([3; 32]).public();
        let table = [
            ("10.32.1.0/24".parse().unwrap(), own),
            ("10.32.2.0/24".parse().unwrap(), other),
            ("10.32.3.0/24".parse().unwrap(), stranger),
        ];
        let peers = [peer("b", &other.to_string(), "198.18.0.2:6788")];
        let r = routes_answer(&table, own, "a", &peers).routes;
        assert_eq!(r.len(), 3);
        assert_eq!(
            (
                r[0].via,
                r[0].name.as_str(),
                r[0].endpoint.as_str(),
                r[0].state
            ),
            (RouteVia::Local, "a", "", None)
        );
        assert_eq!(r[0].public_key, own.to_string());
        assert_eq!(
            (r[1].via, r[1].name.as_str(), r[1].endpoint.as_str()),
            (RouteVia::Peer, "b", "198.18.0.2:6788")
        );
        assert_eq!(r[1].state, Some(PeerState::Established));
        assert_eq!((r[2].name.as_str(), r[2].state), ("", None));
    }

    /// A refused DNS edit is a 400 with the error's own text, as when the store's error was
    /// turned into a string.
    #[test]
    fn a_refused_dns_edit_answers_400_with_its_reason() {
        let store = DnsEditError::Store(mesh_dns::StoreError::NotFqdn("web".into()));
        assert_eq!(
            bad_name(&store),
            (
                StatusCode::BAD_REQUEST,
                "name web is not fully qualified".to_owned()
            )
        );
        let name = DnsEditError::Name(mesh_dns::NameError::OutsideZone {
            name: "web.example.".into(),
            zone: "mesh.local.".into(),
        });
        assert_eq!(
            bad_name(&name),
            (
                StatusCode::BAD_REQUEST,
                "web.example. is outside the zone mesh.local.".to_owned()
            )
        );
    }

    /// `meshctl rmpeer`'s answers to a refused reclaim, as they were when the core returned
    /// strings: 503 and these texts.
    #[test]
    fn a_refused_reclaim_answers_503_with_its_reason() {
        use mesh_core::ReclaimError;
        for (e, text) in [
            (
                ReclaimError::FixedBlocks,
                "this node runs with a fixed --block: there is no address ring to reclaim from",
            ),
            (
                ReclaimError::Ring(mesh_ipam::ReclaimError::NotInRing),
                "this node belongs to no cluster ring yet",
            ),
            (
                ReclaimError::Ring(mesh_ipam::ReclaimError::OwnNode),
                "a node cannot reclaim its own blocks",
            ),
            (
                ReclaimError::Ring(mesh_ipam::ReclaimError::Version(
                    mesh_ipam::ring::VersionExhausted,
                )),
                "the ownership version of these blocks cannot rise any further",
            ),
        ] {
            assert_eq!(
                reclaim_refused(&e),
                (StatusCode::SERVICE_UNAVAILABLE, text.to_owned())
            );
        }
    }
}
