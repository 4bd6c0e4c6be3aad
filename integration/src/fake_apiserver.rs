//! A fake Kubernetes API server for `meshd --kube` tests: Node objects only, with the real
//! list/watch semantics that kube-runtime's watcher relies on, and a control socket for the
//! test.
//!
//! API (plain HTTP, what a kubeconfig `server: http://…` points at):
//!
//! - `GET /api/v1/nodes`: a `NodeList` whose `metadata.resourceVersion` is the store's;
//! - `GET /api/v1/nodes?watch=1&resourceVersion=N[&allowWatchBookmarks=true][&timeoutSeconds=T]`:
//!   newline-delimited JSON events (`ADDED`, `MODIFIED`, `DELETED`) of every change after
//!   `N`, then live ones; `BOOKMARK`s (every [`BOOKMARK_EVERY`]) when asked for; without `N`
//!   (or `0`) first an `ADDED` per Node. A version older than the last compaction gets one
//!   `ERROR` event holding a `Status` with code 410, reason `Expired` (as the real server
//!   does once a watch is accepted), then the end of the stream;
//! - `GET /api/v1/nodes/NAME`; `PATCH /api/v1/nodes/NAME` with
//!   `Content-Type: application/merge-patch+json` (RFC 7386), a `MODIFIED` event;
//! - errors are `Status` objects (404 `NotFound`, 403 `Forbidden` for a denied verb, 415).
//!
//! Control (HTTP on a Unix socket in the test's directory, never a network port):
//! `POST /nodes` (create, body a Node), `PUT /nodes/NAME` (replace), `DELETE /nodes/NAME`,
//! `GET /nodes` (every Node, as a JSON array), `POST /break` (ends every open watch),
//! `POST /compact` (watches from any version before now get 410), `POST /deny/VERB` and
//! `POST /allow/VERB` (answer 403 to `list`, `watch`, `get` or `patch`), `GET /stats`
//! (requests served, as [`Stats`]).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How often an idle watch that asked for bookmarks gets one.
pub const BOOKMARK_EVERY: Duration = Duration::from_millis(500);
/// Changes kept for watches to resume from.
const LOG_LEN: usize = 10_000;

/// Requests served, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Lists of Nodes.
    pub lists: u64,
    /// Watches started.
    pub watches: u64,
    /// Watches answered 410 Expired.
    pub expired: u64,
    /// Merge patches applied.
    pub patches: u64,
}

#[derive(Debug)]
struct Store {
    rv: u64,
    /// Watches from a version below this get 410.
    floor: u64,
    nodes: BTreeMap<String, Value>,
    log: VecDeque<(u64, &'static str, Value)>,
    denied: BTreeSet<String>,
    stats: Stats,
    next_uid: u64,
}

/// The fake's state, shared by the API and the control routers.
#[derive(Debug, Clone)]
pub struct Fake {
    store: Arc<Mutex<Store>>,
    live: broadcast::Sender<(u64, &'static str, Value)>,
    breaker: Arc<watch::Sender<u64>>,
}

impl Default for Fake {
    fn default() -> Self {
        Self::new()
    }
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

impl Fake {
    /// An empty store at resourceVersion 1.
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(4096);
        Self {
            store: Arc::new(Mutex::new(Store {
                rv: 1,
                floor: 0,
                nodes: BTreeMap::new(),
                log: VecDeque::new(),
                denied: BTreeSet::new(),
                stats: Stats::default(),
                next_uid: 1,
            })),
            live,
            breaker: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change of `node` (already stamped with its new version) and tells watches.
    fn emit(&self, st: &mut Store, kind: &'static str, node: Value) {
        let rv = st.rv;
        st.log.push_back((rv, kind, node.clone()));
        if st.log.len() > LOG_LEN {
            st.log.pop_front();
            st.floor = st.floor.max(st.log.front().map_or(rv, |e| e.0));
        }
        let _ = self.live.send((rv, kind, node));
    }

    /// Creates Node `node` (its `metadata.name` required); `Err` if it exists.
    pub fn create(&self, mut node: Value) -> Result<Value, String> {
        let name = node["metadata"]["name"]
            .as_str()
            .ok_or("a Node needs metadata.name")?
            .to_owned();
        let mut st = self.lock();
        if st.nodes.contains_key(&name) {
            return Err(format!("node {name} exists"));
        }
        st.rv += 1;
        st.next_uid += 1;
        node["kind"] = json!("Node");
        node["apiVersion"] = json!("v1");
        node["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        node["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", st.next_uid));
        if node["metadata"]["creationTimestamp"].is_null() {
            // Seconds are all the API keeps; the version orders Nodes made in one second.
            node["metadata"]["creationTimestamp"] = json!(format!(
                "2026-01-01T00:{:02}:{:02}Z",
                (st.rv / 60) % 60,
                st.rv % 60
            ));
        }
        st.nodes.insert(name, node.clone());
        self.emit(&mut st, "ADDED", node.clone());
        Ok(node)
    }

    /// Replaces Node `name` (keeping its uid and creation time).
    pub fn replace(&self, name: &str, mut node: Value) -> Result<Value, String> {
        let mut st = self.lock();
        let old = st.nodes.get(name).ok_or(format!("no node {name}"))?.clone();
        st.rv += 1;
        node["kind"] = json!("Node");
        node["apiVersion"] = json!("v1");
        node["metadata"]["name"] = json!(name);
        node["metadata"]["uid"] = old["metadata"]["uid"].clone();
        node["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
        node["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        st.nodes.insert(name.to_owned(), node.clone());
        self.emit(&mut st, "MODIFIED", node.clone());
        Ok(node)
    }

    /// Applies a JSON merge patch to Node `name`.
    pub fn patch(&self, name: &str, patch: &Value) -> Result<Value, String> {
        let mut st = self.lock();
        let mut node = st.nodes.get(name).ok_or(format!("no node {name}"))?.clone();
        merge_patch(&mut node, patch);
        st.rv += 1;
        node["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        st.nodes.insert(name.to_owned(), node.clone());
        st.stats.patches += 1;
        self.emit(&mut st, "MODIFIED", node.clone());
        Ok(node)
    }

    /// Deletes Node `name`.
    pub fn delete(&self, name: &str) -> Result<Value, String> {
        let mut st = self.lock();
        let mut node = st.nodes.remove(name).ok_or(format!("no node {name}"))?;
        st.rv += 1;
        node["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        self.emit(&mut st, "DELETED", node.clone());
        Ok(node)
    }

    /// Every Node.
    pub fn nodes(&self) -> Vec<Value> {
        self.lock().nodes.values().cloned().collect()
    }

    /// Ends every open watch (clients resume from their last version).
    pub fn break_watches(&self) {
        self.breaker.send_modify(|g| *g += 1);
    }

    /// Forgets the change log: a watch from any version before now gets 410 Expired.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.rv += 1;
        st.floor = st.rv;
        st.log.clear();
    }

    /// Answers 403 to `verb` (`list`, `watch`, `get`, `patch`) from now on, or again not.
    pub fn deny(&self, verb: &str, denied: bool) {
        let mut st = self.lock();
        if denied {
            st.denied.insert(verb.to_owned());
        } else {
            st.denied.remove(verb);
        }
    }

    /// Requests served so far.
    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    fn forbidden(&self, verb: &str) -> Option<Response> {
        self.lock().denied.contains(verb).then(|| {
            status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "nodes is forbidden: User \"system:serviceaccount:mesh:mesh\" cannot {verb} \
                     resource \"nodes\" in API group \"\" at the cluster scope"
                ),
            )
        })
    }

    /// The Kubernetes API router.
    pub fn api_router(&self) -> Router {
        Router::new()
            .route("/api/v1/nodes", get(list_or_watch))
            .route("/api/v1/nodes/{name}", get(get_node).patch(patch_node))
            .with_state(self.clone())
    }

    /// The control router (for the test, on a Unix socket).
    pub fn control_router(&self) -> Router {
        Router::new()
            .route("/nodes", post(ctl_create).get(ctl_nodes))
            .route(
                "/nodes/{name}",
                axum::routing::put(ctl_replace).delete(ctl_delete),
            )
            .route("/break", post(ctl_break))
            .route("/compact", post(ctl_compact))
            .route("/deny/{verb}", post(ctl_deny))
            .route("/allow/{verb}", post(ctl_allow))
            .route("/stats", get(ctl_stats))
            .with_state(self.clone())
    }
}

async fn list_or_watch(State(f): State<Fake>, RawQuery(raw): RawQuery) -> Response {
    // The parameters used here never need percent-decoding.
    let q: HashMap<String, String> = raw
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let is = |k: &str| q.get(k).is_some_and(|v| v == "1" || v == "true");
    if is("watch") {
        return watch_nodes(f, &q, is("allowWatchBookmarks"));
    }
    if let Some(r) = f.forbidden("list") {
        return r;
    }
    let mut st = f.lock();
    st.stats.lists += 1;
    let body = json!({
        "kind": "NodeList", "apiVersion": "v1",
        "metadata": { "resourceVersion": st.rv.to_string() },
        "items": st.nodes.values().cloned().collect::<Vec<_>>(),
    });
    axum::Json(body).into_response()
}

fn event_line(kind: &str, object: &Value) -> Vec<u8> {
    let mut line =
        serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    line.push(b'\n');
    line
}

fn watch_nodes(f: Fake, q: &HashMap<String, String>, bookmarks: bool) -> Response {
    if let Some(r) = f.forbidden("watch") {
        return r;
    }
    let from: Option<u64> = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(v) => match v.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("invalid resourceVersion {v:?}"),
                );
            }
        },
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(3600), Duration::from_secs);
    let mut st = f.lock();
    st.stats.watches += 1;
    let mut backlog: Vec<Vec<u8>> = Vec::new();
    let expired = from.is_some_and(|n| n < st.floor);
    if expired {
        st.stats.expired += 1;
        let gone = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {} ({})", from.unwrap_or(0), st.floor),
            "reason": "Expired", "code": 410,
        });
        backlog.push(event_line("ERROR", &gone));
    } else if let Some(n) = from {
        for (rv, kind, obj) in &st.log {
            if *rv > n {
                backlog.push(event_line(kind, obj));
            }
        }
    } else {
        for obj in st.nodes.values() {
            backlog.push(event_line("ADDED", obj));
        }
    }
    let mut live = f.live.subscribe();
    let mut breaker = f.breaker.subscribe();
    let store = f.store.clone();
    drop(st);
    let stream = async_stream(move |tx| async move {
        for line in backlog {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        let end = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        loop {
            let line = tokio::select! {
                ev = live.recv() => match ev {
                    Ok((_, kind, obj)) => event_line(kind, &obj),
                    // A watch that falls behind is closed, as the real server does.
                    Err(_) => return,
                },
                _ = breaker.changed() => return,
                _ = tokio::time::sleep_until(end) => return,
                _ = tick.tick() => {
                    if !bookmarks {
                        continue;
                    }
                    let rv = store.lock().unwrap_or_else(|e| e.into_inner()).rv;
                    event_line("BOOKMARK", &json!({
                        "kind": "Node", "apiVersion": "v1",
                        "metadata": { "resourceVersion": rv.to_string() },
                    }))
                }
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A body stream fed by `producer` through a channel.
fn async_stream<F, Fut>(
    producer: F,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Vec<u8>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok(line), rx))
    })
}

async fn get_node(State(f): State<Fake>, Path(name): Path<String>) -> Response {
    if let Some(r) = f.forbidden("get") {
        return r;
    }
    match f.lock().nodes.get(&name) {
        Some(n) => axum::Json(n.clone()).into_response(),
        None => not_found(&name),
    }
}

fn not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("nodes \"{name}\" not found"),
    )
}

async fn patch_node(
    State(f): State<Fake>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = f.forbidden("patch") {
        return r;
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/merge-patch+json") {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the fake takes only merge patches, not {ct:?}"),
        );
    }
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
    };
    match f.patch(&name, &patch) {
        Ok(n) => axum::Json(n).into_response(),
        Err(_) => not_found(&name),
    }
}

fn ctl_answer(r: Result<Value, String>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::CONFLICT, e).into_response(),
    }
}

async fn ctl_create(State(f): State<Fake>, axum::Json(node): axum::Json<Value>) -> Response {
    ctl_answer(f.create(node))
}

async fn ctl_replace(
    State(f): State<Fake>,
    Path(name): Path<String>,
    axum::Json(node): axum::Json<Value>,
) -> Response {
    ctl_answer(f.replace(&name, node))
}

async fn ctl_delete(State(f): State<Fake>, Path(name): Path<String>) -> Response {
    ctl_answer(f.delete(&name))
}

async fn ctl_nodes(State(f): State<Fake>) -> Response {
    axum::Json(f.nodes()).into_response()
}

async fn ctl_break(State(f): State<Fake>) -> Response {
    f.break_watches();
    StatusCode::NO_CONTENT.into_response()
}

async fn ctl_compact(State(f): State<Fake>) -> Response {
    f.compact();
    StatusCode::NO_CONTENT.into_response()
}

async fn ctl_deny(State(f): State<Fake>, Path(verb): Path<String>) -> Response {
    f.deny(&verb, true);
    StatusCode::NO_CONTENT.into_response()
}

async fn ctl_allow(State(f): State<Fake>, Path(verb): Path<String>) -> Response {
    f.deny(&verb, false);
    StatusCode::NO_CONTENT.into_response()
}

async fn ctl_stats(State(f): State<Fake>) -> Response {
    axum::Json(f.stats()).into_response()
}

/// A Node as the kubelet would register it: name and InternalIP.
pub fn node_object(name: &str, internal_ip: &str) -> Value {
    json!({
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
        "status": { "addresses": [
            { "type": "InternalIP", "address": internal_ip },
            { "type": "Hostname", "address": name },
        ] },
    })
}

/// One HTTP/1.1 request over a Unix socket (the control socket, or an API on one in unit
/// tests): status and body. `Connection: close`, so the body is what follows the headers.
pub fn unix_request(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The test's side of a running fake: its control socket.
#[derive(Debug, Clone)]
pub struct Control {
    socket: std::path::PathBuf,
}

impl Control {
    /// The fake whose control socket is `socket`.
    pub fn new(socket: impl Into<std::path::PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<String, String> {
        let (code, text) = unix_request(&self.socket, method, path, body)?;
        if (200..300).contains(&code) {
            Ok(text)
        } else {
            Err(format!("{method} {path}: {code} {text}"))
        }
    }

    /// Creates a Node.
    pub fn create(&self, node: &Value) -> Result<(), String> {
        self.call("POST", "/nodes", Some(node)).map(drop)
    }

    /// Deletes Node `name`.
    pub fn delete(&self, name: &str) -> Result<(), String> {
        self.call("DELETE", &format!("/nodes/{name}"), None)
            .map(drop)
    }

    /// Every Node.
    pub fn nodes(&self) -> Result<Vec<Value>, String> {
        let t = self.call("GET", "/nodes", None)?;
        serde_json::from_str(&t).map_err(|e| format!("{e}: {t}"))
    }

    /// Node `name`'s annotations.
    pub fn annotations(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        let node = self
            .nodes()?
            .into_iter()
            .find(|n| n["metadata"]["name"] == name)
            .ok_or_else(|| format!("no Node {name}"))?;
        Ok(serde_json::from_value(node["metadata"]["annotations"].clone()).unwrap_or_default())
    }

    /// Ends every open watch.
    pub fn break_watches(&self) -> Result<(), String> {
        self.call("POST", "/break", None).map(drop)
    }

    /// Makes every older version expire (410 on the next watch from it).
    pub fn compact(&self) -> Result<(), String> {
        self.call("POST", "/compact", None).map(drop)
    }

    /// Denies (`true`) or allows `verb`.
    pub fn deny(&self, verb: &str, denied: bool) -> Result<(), String> {
        let what = if denied { "deny" } else { "allow" };
        self.call("POST", &format!("/{what}/{verb}"), None)
            .map(drop)
    }

    /// Requests served so far.
    pub fn stats(&self) -> Result<Stats, String> {
        let t = self.call("GET", "/stats", None)?;
        serde_json::from_str(&t).map_err(|e| format!("{e}: {t}"))
    }
}

/// A kubeconfig pointing at `server` (plain HTTP, no credentials).
pub fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
         current-context: fake\n"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// A fake serving its API and control routers on Unix sockets in a fresh directory.
    fn start(tag: &str) -> (Fake, std::path::PathBuf, Control, tokio::runtime::Runtime) {
        let dir = std::env::temp_dir().join(format!("fake-api-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fake = Fake::new();
        let api = dir.join("api.sock");
        let ctl = dir.join("control.sock");
        let (a, c) = rt.block_on(async {
            (
                tokio::net::UnixListener::bind(&api).unwrap(),
                tokio::net::UnixListener::bind(&ctl).unwrap(),
            )
        });
        let (ar, cr) = (fake.api_router(), fake.control_router());
        rt.spawn(async move { axum::serve(a, ar).await });
        rt.spawn(async move { axum::serve(c, cr).await });
        (fake, api, Control::new(ctl), rt)
    }

    /// Opens a watch and returns a reader of its event lines (after the headers).
    fn open_watch(api: &std::path::Path, query: &str) -> BufReader<std::os::unix::net::UnixStream> {
        let mut s = std::os::unix::net::UnixStream::connect(api).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /api/v1/nodes?{query} HTTP/1.1\r\nHost: f\r\n\r\n").unwrap();
        let mut r = BufReader::new(s);
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                return r;
            }
        }
    }

    /// The next event (type, object) of a chunked watch stream; `None` at its end.
    fn next_event(r: &mut BufReader<std::os::unix::net::UnixStream>) -> Option<(String, Value)> {
        loop {
            let mut size = String::new();
            if r.read_line(&mut size).ok()? == 0 {
                return None;
            }
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                return None;
            }
            let mut chunk = vec![0u8; n + 2];
            std::io::Read::read_exact(r, &mut chunk).ok()?;
            let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
            // One event per chunk: the fake sends each line as its own chunk.
            if let Some(line) = text.lines().find(|l| !l.is_empty()) {
                let v: Value = serde_json::from_str(line).unwrap();
                return Some((v["type"].as_str().unwrap().to_owned(), v["object"].clone()));
            }
        }
    }

    fn rv_of(v: &Value) -> u64 {
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null, "h": 1}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e", "h": 1}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }

    #[test]
    fn list_then_watch_from_its_version_sees_exactly_the_later_changes() {
        let (_f, api, ctl, _rt) = start("watch");
        ctl.create(&node_object("a", "198.18.0.1")).unwrap();
        let (code, body) = unix_request(&api, "GET", "/api/v1/nodes", None).unwrap();
        assert_eq!(code, 200);
        let list: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(list["kind"], "NodeList");
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let rv = rv_of(&list);
        ctl.create(&node_object("b", "198.18.0.2")).unwrap();
        let mut w = open_watch(&api, &format!("watch=1&resourceVersion={rv}"));
        let (t, o) = next_event(&mut w).unwrap();
        assert_eq!(
            (t.as_str(), o["metadata"]["name"].as_str()),
            ("ADDED", Some("b"))
        );
        assert!(rv_of(&o) > rv);
        // A merge patch through the API, then a delete: MODIFIED, DELETED, in order.
        let patch = json!({"metadata": {"annotations": {"mesh/endpoint": "198.18.0.2:6788"}}});
        let (code, _) = {
            use std::io::Read;
            let mut s = std::os::unix::net::UnixStream::connect(&api).unwrap();
            let body = patch.to_string();
            write!(s, "PATCH /api/v1/nodes/b HTTP/1.1\r\nHost: f\r\nConnection: close\r\nContent-Type: application/merge-patch+json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            (out.split_whitespace().nth(1).unwrap().to_owned(), out)
        };
        assert_eq!(code, "200");
        let (t, o) = next_event(&mut w).unwrap();
        assert_eq!(t, "MODIFIED");
        assert_eq!(
            o["metadata"]["annotations"]["mesh/endpoint"],
            "198.18.0.2:6788"
        );
        assert_eq!(
            o["status"]["addresses"][0]["address"], "198.18.0.2",
            "the rest kept"
        );
        ctl.delete("a").unwrap();
        let (t, o) = next_event(&mut w).unwrap();
        assert_eq!(
            (t.as_str(), o["metadata"]["name"].as_str()),
            ("DELETED", Some("a"))
        );
        // A plain JSON patch is refused.
        let (code, body) = unix_request(&api, "PATCH", "/api/v1/nodes/b", Some(&patch)).unwrap();
        assert_eq!(code, 415, "{body}");
        let (code, body) = unix_request(&api, "GET", "/api/v1/nodes/zz", None).unwrap();
        assert_eq!(code, 404);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["reason"],
            "NotFound"
        );
    }

    #[test]
    fn bookmarks_only_when_asked_and_broken_watches_end() {
        let (_f, api, ctl, _rt) = start("bookmark");
        ctl.create(&node_object("a", "198.18.0.1")).unwrap();
        let mut w = open_watch(&api, "watch=true&allowWatchBookmarks=true");
        let (t, _) = next_event(&mut w).unwrap();
        assert_eq!(t, "ADDED", "no version: the current Nodes first");
        let (t, o) = next_event(&mut w).unwrap();
        assert_eq!(t, "BOOKMARK");
        assert!(rv_of(&o) >= 2);
        let mut plain = open_watch(&api, "watch=1&resourceVersion=2");
        ctl.create(&node_object("b", "198.18.0.2")).unwrap();
        let (t, _) = next_event(&mut plain).unwrap();
        assert_eq!(t, "ADDED", "no bookmark in between: none was asked for");
        ctl.break_watches().unwrap();
        assert!(next_event(&mut plain).is_none(), "the watch ended");
        assert_eq!(ctl.stats().unwrap().watches, 2);
    }

    #[test]
    fn a_version_older_than_the_compaction_gets_410_expired() {
        let (_f, api, ctl, _rt) = start("gone");
        ctl.create(&node_object("a", "198.18.0.1")).unwrap();
        ctl.compact().unwrap();
        let mut w = open_watch(&api, "watch=1&resourceVersion=2");
        let (t, o) = next_event(&mut w).unwrap();
        assert_eq!(t, "ERROR");
        assert_eq!(
            (o["kind"].as_str(), o["code"].as_u64()),
            (Some("Status"), Some(410))
        );
        assert_eq!(o["reason"], "Expired");
        assert!(next_event(&mut w).is_none(), "and the stream ends");
        // A fresh list's version is watchable.
        let (_, body) = unix_request(&api, "GET", "/api/v1/nodes", None).unwrap();
        let rv = rv_of(&serde_json::from_str(&body).unwrap());
        let mut w = open_watch(&api, &format!("watch=1&resourceVersion={rv}"));
        ctl.delete("a").unwrap();
        assert_eq!(next_event(&mut w).unwrap().0, "DELETED");
        let s = ctl.stats().unwrap();
        assert_eq!((s.expired, s.lists), (1, 1));
    }

    #[test]
    fn denied_verbs_get_403_status_objects() {
        let (_f, api, ctl, _rt) = start("deny");
        ctl.deny("list", true).unwrap();
        let (code, body) = unix_request(&api, "GET", "/api/v1/nodes", None).unwrap();
        assert_eq!(code, 403);
        let s: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (s["reason"].as_str(), s["code"].as_u64()),
            (Some("Forbidden"), Some(403))
        );
        ctl.deny("list", false).unwrap();
        let (code, _) = unix_request(&api, "GET", "/api/v1/nodes", None).unwrap();
        assert_eq!(code, 200);
    }
}
