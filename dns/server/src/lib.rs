//! mesh's DNS server shell: tokio UDP and TCP loops that move bytes between clients,
//! [`mesh_dns`]'s answering and forwarding state machines, and upstream resolvers.
//!
//! [`serve`] takes a bound UDP socket and TCP listener (the caller picks the addresses:
//! the node's bridge address, port 53, in `meshd`) and a shared [`DnsState`]: the record
//! store and zone configuration behind a lock that the local API and gossip update, and the
//! forwarder's configuration. Queries for the cluster zone are answered from the store;
//! everything else goes to one task that owns the [`mesh_dns::Forwarder`] (cache, failover
//! timers) and replies when an upstream answers. Large upstream answers that come back
//! truncated over UDP are fetched again over TCP.
//!
//! **Upstream sockets: a fresh one per upstream query (RFC 5452).** Each
//! [`mesh_dns::Transmit`] is sent from a UDP socket bound for it alone to port 0, so the
//! kernel picks a random port of the ephemeral range (Linux draws it at random on every
//! bind: about 15 bits with the default 32768–60999); a small task receives on it and hands
//! every datagram, with the query's token and the sender's address and port, to the
//! forwarder, which checks them (see `mesh_dns`'s `forward.rs`). The socket is closed when
//! the forwarder says the query waits for nothing more ([`mesh_dns::Forwarder::poll_close`]),
//! so a port lives for one round trip and then is gone. Chosen over a pool of long-lived
//! sockets because a pool's ports can be learnt: an attacker who makes a pod look up names
//! of its own domain sees the ports arrive at its server, and after enough lookups it knows
//! the whole pool, leaving only the ID and the name's case to guess; a port drawn per query
//! and closed after it tells it nothing about the next. The price is a `socket`, `bind`,
//! `close` and an epoll registration per cache miss: a few microseconds more than sending on
//! a shared socket (docs/performance.md, "DNS forwarder", has the measurement), next to an
//! upstream round trip of a millisecond or more. The number open at once is bounded
//! ([`mesh_dns::ForwarderConfig::max_upstream_queries`]) so that a burst of misses cannot
//! run `meshd` out of file descriptors. The sockets are not `connect`ed: the kernel would
//! then drop datagrams from other addresses and ports before anyone counted them, and the
//! forwarder counts them (`mismatched`) so that an attempt shows in the metrics.
//!
//! **Why not hickory-server.** Its `ServerFuture` + `RequestHandler` would parse every
//! request into its own `Request` type and write replies through its own
//! `ResponseHandler`, so `mesh_dns::answer(bytes) -> Answer` (which the fuzzer and the unit
//! tests drive byte for byte) would have to be split or duplicated, and the forwarder's
//! sans-I/O timers would still need a loop of their own. The loops here are ~300 lines
//! over `hickory-proto`'s `Message` codec (used inside `mesh-dns`; this crate never
//! encodes DNS itself), with one dependency less. A deviation from DESIGN.md's "server +
//! proto crates", for those reasons.
//!
//! It reads the OS RNG once, in [`serve`], for the 256-bit seed of the forwarder's CSPRNG
//! (upstream IDs and name case); the answer shuffles use the caller's seed. It does not
//! read resolv.conf (the caller parses it with [`mesh_dns::parse_resolv_conf`]), does not
//! gossip, and does not bind sockets for clients. Upstream sockets are bound to the
//! unspecified address on an ephemeral port, or to loopback when the upstream is on
//! loopback.
#![forbid(unsafe_code)]

use mesh_dns::{
    Answer, DropReason, Event, ForwardQuery, Forwarder, ForwarderConfig, ForwarderStats, Owner,
    QueryCtx, Server, Transmit, Transport, UpstreamQuery, ZoneConfig,
};
use rand_core::{OsRng, RngCore};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

/// A TCP client connection is closed after this long without a complete query.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent TCP client connections at most; more wait in the accept queue.
pub const MAX_TCP_CLIENTS: usize = 128;
/// An upstream TCP exchange (connect, send, receive) is abandoned after this long.
pub const UPSTREAM_TCP_TIMEOUT: Duration = Duration::from_secs(3);
/// Client questions waiting for the forwarder task at most; beyond it they are dropped.
pub const FORWARD_QUEUE: usize = 1024;
/// Upstream datagrams waiting for the forwarder task at most; beyond it the upstream
/// sockets' tasks wait (and the kernel drops what overflows their receive buffers).
pub const UPSTREAM_QUEUE: usize = 1024;
/// Largest upstream UDP datagram read whole: the larger of this and the payload size we
/// advertise (1232 by default); an upstream that sends more than it was told to is cut
/// here, its answer fails to parse and counts as `mismatched`.
pub const UPSTREAM_UDP_BUFFER: usize = 4096;

/// Upper bounds, in seconds, of the reply-time histogram's buckets (a last one, +Inf,
/// follows): from a query's arrival to its reply leaving.
pub const REPLY_SECONDS_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0, 2.5,
];
/// The response codes replies are counted by (the RCODE's name), `other` for the rest.
pub const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other",
];

/// Replies sent, by where the answer came from and response code, and how long they took.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReplyStats {
    /// Answered from the zone (the store), by [`RCODES`] index.
    pub zone: [u64; 7],
    /// Forwarded (from the cache or an upstream), by [`RCODES`] index.
    pub forward: [u64; 7],
    /// Replies per reply-time bucket ([`REPLY_SECONDS_BUCKETS`], then +Inf); not cumulative.
    pub seconds_buckets: [u64; 11],
    /// Sum of the reply times, seconds.
    pub seconds_sum: f64,
}

impl ReplyStats {
    /// Replies counted.
    pub fn count(&self) -> u64 {
        self.seconds_buckets.iter().sum()
    }
}

/// Counters of the shell, for metrics. Each field is a running total.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerStats {
    /// Datagrams received on the client UDP socket.
    pub udp_queries: u64,
    /// Queries received over TCP.
    pub tcp_queries: u64,
    /// Queries answered from the store (or with an error RCODE).
    pub answered: u64,
    /// Queries handed to the forwarder.
    pub forwarded: u64,
    /// Queries dropped unanswered: too short, too long, a response, unencodable, or the
    /// forwarder's queue full.
    pub dropped: u64,
    /// The forwarder's own counters (cache hits, upstream sends, timeouts…).
    pub forwarder: ForwarderStats,
    /// Replies by source and response code, and their times.
    pub replies: ReplyStats,
}

#[derive(Debug, Default)]
struct Counters {
    udp_queries: AtomicU64,
    tcp_queries: AtomicU64,
    answered: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    /// [zone, forward] × RCODES.
    replies: [[AtomicU64; 7]; 2],
    seconds_buckets: [AtomicU64; 11],
    nanos_sum: AtomicU64,
}

/// Where a reply's answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Zone = 0,
    Forward = 1,
}

/// What [`serve`] shares with the rest of `meshd`: the store and zone (under a lock), the
/// forwarder's configuration, and counters.
#[derive(Debug)]
pub struct DnsState {
    server: RwLock<Server>,
    forwarder: ForwarderConfig,
    near: Option<Owner>,
    seed: u64,
    seq: AtomicU64,
    counters: Counters,
    forwarder_stats: Mutex<ForwarderStats>,
}

impl DnsState {
    /// State for a server answering `zone` (records start empty), forwarding with
    /// `forwarder`. `local_node` is this node's owner id, whose records come first when
    /// [`ZoneConfig::subset`] is set. `seed` drives the answer shuffles (the upstream IDs
    /// and name case come from a CSPRNG that [`serve`] seeds from the OS).
    pub fn new(
        zone: ZoneConfig,
        forwarder: ForwarderConfig,
        local_node: Option<Owner>,
        seed: u64,
    ) -> Self {
        Self {
            server: RwLock::new(Server::new(zone)),
            forwarder,
            near: local_node,
            seed,
            seq: AtomicU64::new(0),
            counters: Counters::default(),
            forwarder_stats: Mutex::new(ForwarderStats::default()),
        }
    }

    /// Reads the store and zone (`meshctl dns`, gossip's anti-entropy).
    pub fn read<R>(&self, f: impl FnOnce(&Server) -> R) -> R {
        f(&self.server.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Edits the store or zone (local API, gossip merges, liveness changes). Keep `f`
    /// short: queries wait while it runs.
    pub fn update<R>(&self, f: impl FnOnce(&mut Server) -> R) -> R {
        f(&mut self.server.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// The counters so far.
    pub fn stats(&self) -> ServerStats {
        let c = &self.counters;
        ServerStats {
            udp_queries: c.udp_queries.load(Ordering::Relaxed),
            tcp_queries: c.tcp_queries.load(Ordering::Relaxed),
            answered: c.answered.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            forwarder: *self
                .forwarder_stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            replies: ReplyStats {
                zone: c.replies[0].each_ref().map(|a| a.load(Ordering::Relaxed)),
                forward: c.replies[1].each_ref().map(|a| a.load(Ordering::Relaxed)),
                seconds_buckets: c
                    .seconds_buckets
                    .each_ref()
                    .map(|a| a.load(Ordering::Relaxed)),
                seconds_sum: c.nanos_sum.load(Ordering::Relaxed) as f64 / 1e9,
            },
        }
    }

    /// Counts a reply about to leave: its source, response code and time since `received`.
    fn count_reply(&self, source: Source, reply: &[u8], received: Instant) {
        let c = &self.counters;
        let rcode = mesh_dns::response_code(reply)
            .map_or(RCODES.len() - 1, |r| usize::from(r).min(RCODES.len() - 1));
        c.replies[source as usize][rcode].fetch_add(1, Ordering::Relaxed);
        let took = received.elapsed();
        let secs = took.as_secs_f64();
        let bucket = REPLY_SECONDS_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(REPLY_SECONDS_BUCKETS.len());
        c.seconds_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        c.nanos_sum.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn next_seed(&self) -> u64 {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn answer(&self, query: &[u8], transport: Transport) -> Answer {
        let ctx = QueryCtx {
            transport,
            near: self.near,
        };
        let seed = self.next_seed();
        let answer = self.read(|s| s.answer(query, &ctx, seed));
        let counter = match &answer {
            Answer::Reply(_) => &self.counters.answered,
            Answer::Forward(_) => &self.counters.forwarded,
            Answer::Drop(reason) => {
                tracing::trace!(?reason, "dns query dropped");
                &self.counters.dropped
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }
}

/// Where a forwarded question's reply goes.
#[derive(Debug)]
enum Route {
    Udp(SocketAddr),
    Tcp(oneshot::Sender<Vec<u8>>),
}

#[derive(Debug)]
struct Request {
    query: ForwardQuery,
    route: Route,
    /// When the query arrived.
    received: Instant,
}

/// Serves DNS on `udp` and `tcp` until an I/O error on either (returned), or until the
/// future is dropped (which stops every task it started).
pub async fn serve(udp: UdpSocket, tcp: TcpListener, state: Arc<DnsState>) -> io::Result<()> {
    let udp = Arc::new(udp);
    let (fwd_tx, fwd_rx) = mpsc::channel(FORWARD_QUEUE);
    let mut rng_seed = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut rng_seed)
        .map_err(|e| io::Error::other(format!("the OS RNG failed: {e}")))?;
    tracing::debug!(
        udp = ?udp.local_addr().ok(),
        tcp = ?tcp.local_addr().ok(),
        upstreams = ?state.forwarder.upstreams,
        "dns server started"
    );
    let mut tasks = JoinSet::new();
    let fwd = Forwarder::new(state.forwarder.clone(), rng_seed);
    tasks.spawn(run_forwarder(state.clone(), fwd_rx, udp.clone(), fwd));
    tasks.spawn(run_tcp(tcp, state.clone(), fwd_tx.clone()));
    tasks.spawn(run_udp(udp, state, fwd_tx));
    // The loops only return on a fatal error; the first one ends the server.
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(io::Error::other(e)),
        None => Ok(()),
    }
}

async fn run_udp(
    udp: Arc<UdpSocket>,
    state: Arc<DnsState>,
    fwd: mpsc::Sender<Request>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = match udp.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors surface here on some systems; they concern one peer, not us.
            Err(e) if is_transient(&e) => continue,
            Err(e) => return Err(e),
        };
        let received = Instant::now();
        state.counters.udp_queries.fetch_add(1, Ordering::Relaxed);
        match state.answer(&buf[..n], Transport::Udp) {
            Answer::Reply(bytes) => {
                state.count_reply(Source::Zone, &bytes, received);
                send_udp(&udp, &bytes, peer).await;
            }
            Answer::Forward(query) => {
                let req = Request {
                    query: *query,
                    route: Route::Udp(peer),
                    received,
                };
                if fwd.try_send(req).is_err() {
                    state.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Answer::Drop(_) => {}
        }
    }
}

async fn send_udp(udp: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = udp.send_to(bytes, to).await {
        tracing::trace!(%to, error = %e, "dns reply not sent");
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

async fn run_tcp(
    listener: TcpListener,
    state: Arc<DnsState>,
    fwd: mpsc::Sender<Request>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_TCP_CLIENTS));
    let mut conns = JoinSet::new();
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (stream, peer) = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(x) => break x,
                    Err(e) if is_transient(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {}
                    // Out of file descriptors and the like: wait a little rather than spin.
                    Err(e) => {
                        tracing::warn!(error = %e, "dns tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        };
        let (state, fwd) = (state.clone(), fwd.clone());
        conns.spawn(async move {
            let _permit = permit;
            if let Err(e) = tcp_client(stream, &state, &fwd).await {
                tracing::trace!(%peer, error = %e, "dns tcp client closed");
            }
        });
    }
}

async fn read_frame(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let len = match stream.read_u16().await {
        Ok(n) => usize::from(n),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    let len = u16::try_from(bytes.len()).map_err(|_| io::Error::other("reply over 64 KiB"))?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    stream.write_all(&out).await
}

async fn tcp_client(
    mut stream: TcpStream,
    state: &DnsState,
    fwd: &mpsc::Sender<Request>,
) -> io::Result<()> {
    loop {
        let query = match tokio::time::timeout(TCP_IDLE_TIMEOUT, read_frame(&mut stream)).await {
            Ok(Ok(Some(q))) => q,
            Ok(Ok(None)) | Err(_) => return Ok(()),
            Ok(Err(e)) => return Err(e),
        };
        let received = Instant::now();
        state.counters.tcp_queries.fetch_add(1, Ordering::Relaxed);
        let reply = match state.answer(&query, Transport::Tcp) {
            Answer::Reply(bytes) => {
                state.count_reply(Source::Zone, &bytes, received);
                bytes
            }
            Answer::Forward(query) => {
                let (tx, rx) = oneshot::channel();
                let req = Request {
                    query: *query,
                    route: Route::Tcp(tx),
                    received,
                };
                if fwd.send(req).await.is_err() {
                    return Ok(());
                }
                match rx.await {
                    Ok(bytes) => bytes,
                    Err(_) => return Ok(()),
                }
            }
            // Nothing sensible to say on this stream; the client may send another query.
            Answer::Drop(DropReason::NotAQuery | DropReason::TooShort | DropReason::TooLong)
            | Answer::Drop(DropReason::Unencodable) => continue,
        };
        write_frame(&mut stream, &reply).await?;
    }
}

/// The task that owns the forwarder: client questions in, upstream datagrams in, timers;
/// upstream queries and client replies out.
async fn run_forwarder(
    state: Arc<DnsState>,
    mut requests: mpsc::Receiver<Request>,
    client_udp: Arc<UdpSocket>,
    mut fwd: Forwarder,
) -> io::Result<()> {
    let mut routes: HashMap<u64, (Route, Instant)> = HashMap::new();
    let mut next_client = 0u64;
    let (up_tx, mut up_rx) = mpsc::channel::<Received>(UPSTREAM_QUEUE);
    let mut upstream_tasks = JoinSet::new();
    let mut open: HashMap<UpstreamQuery, AbortHandle> = HashMap::new();
    let udp_buffer = UPSTREAM_UDP_BUFFER.max(usize::from(state.forwarder.max_udp_payload));
    loop {
        let wake = fwd.poll_timeout();
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { return Ok(()) };
                let client = next_client;
                next_client = next_client.wrapping_add(1);
                match fwd.handle_query(Instant::now(), client, req.query) {
                    Some(bytes) => deliver(&state, &client_udp, (req.route, req.received), bytes).await,
                    None => {
                        routes.insert(client, (req.route, req.received));
                    }
                }
            }
            Some(r) = up_rx.recv() => fwd.handle_response(Instant::now(), r.query, r.from, &r.bytes),
            Some(_) = upstream_tasks.join_next(), if !upstream_tasks.is_empty() => {}
            () = sleep => fwd.handle_timeout(Instant::now()),
        }
        // Sockets open before any closes: a query opened and closed in one turn goes too.
        while let Some(t) = fwd.poll_transmit() {
            let query = t.query;
            let task = match t.transport {
                Transport::Udp => upstream_tasks.spawn(udp_exchange(t, udp_buffer, up_tx.clone())),
                Transport::Tcp => upstream_tasks.spawn(tcp_exchange(t, up_tx.clone())),
            };
            open.insert(query, task);
        }
        while let Some(query) = fwd.poll_close() {
            if let Some(task) = open.remove(&query) {
                task.abort();
            }
        }
        while let Some(Event::Reply { client, bytes }) = fwd.poll_event() {
            if let Some(route) = routes.remove(&client) {
                deliver(&state, &client_udp, route, bytes).await;
            }
        }
        *state
            .forwarder_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fwd.stats();
    }
}

/// A datagram (or TCP reply) that an upstream query's socket received.
#[derive(Debug)]
struct Received {
    query: UpstreamQuery,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// Where an upstream query's socket is bound: loopback for an upstream on loopback, else
/// the unspecified address; port 0, so the kernel draws an ephemeral port at random.
fn upstream_bind_addr(to: SocketAddr) -> SocketAddr {
    let ip = match (to.is_ipv6(), to.ip().is_loopback()) {
        (false, false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (false, true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (true, false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (true, true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(ip, 0)
}

/// One upstream query over UDP: a socket of its own, the query sent from it, and every
/// datagram it receives, from anyone, passed on until the task is aborted (which closes the
/// socket).
async fn udp_exchange(t: Transmit, buffer: usize, tx: mpsc::Sender<Received>) {
    let sock = match UdpSocket::bind(upstream_bind_addr(t.to)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::trace!(to = %t.to, error = %e, "upstream socket not bound");
            return;
        }
    };
    if let Err(e) = sock.send_to(&t.payload, t.to).await {
        tracing::trace!(to = %t.to, error = %e, "upstream query not sent");
        return;
    }
    let mut buf = vec![0u8; buffer];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let r = Received {
                    query: t.query,
                    from,
                    bytes: buf[..n].to_vec(),
                };
                if tx.send(r).await.is_err() {
                    return;
                }
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                tracing::trace!(to = %t.to, error = %e, "upstream socket failed");
                return;
            }
        }
    }
}

/// One upstream query over TCP: connect, send, read one reply, pass it on.
async fn tcp_exchange(t: Transmit, tx: mpsc::Sender<Received>) {
    let exchange = async {
        let mut s = TcpStream::connect(t.to).await?;
        write_frame(&mut s, &t.payload).await?;
        read_frame(&mut s).await
    };
    match tokio::time::timeout(UPSTREAM_TCP_TIMEOUT, exchange).await {
        Ok(Ok(Some(bytes))) => {
            let r = Received {
                query: t.query,
                from: t.to,
                bytes,
            };
            let _ = tx.send(r).await;
        }
        Ok(Ok(None)) | Err(_) => {}
        Ok(Err(e)) => tracing::trace!(to = %t.to, error = %e, "upstream tcp failed"),
    }
}

/// Counts a forwarded question's reply and sends it to the client that asked.
async fn deliver(
    state: &DnsState,
    client_udp: &UdpSocket,
    (route, received): (Route, Instant),
    bytes: Vec<u8>,
) {
    state.count_reply(Source::Forward, &bytes, received);
    match route {
        Route::Udp(peer) => send_udp(client_udp, &bytes, peer).await,
        Route::Tcp(tx) => {
            // The client may have gone; nothing to do then.
            let _ = tx.send(bytes);
        }
    }
}
