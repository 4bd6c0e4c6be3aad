//! Prometheus metrics: `GET /metrics` on `--metrics ADDR:PORT` (default `127.0.0.1:6789`).
//!
//! Nothing is counted here: each scrape takes the snapshot the API's `/v1/status` and
//! `/v1/ipam` answer with (the node's per-peer counters, its drop counters, the packet loops'
//! counters, the address pool) and encodes it with `prometheus-client`'s collector
//! interface. So the packet path carries no metric of its own, and the metrics and
//! `meshctl` can never disagree about what a counter means.
//!
//! The answer is the Prometheus text format 0.0.4, or OpenMetrics 1.0 when the scraper asks
//! for it in `Accept` (a Prometheus server does). Labels name peers by name and public-key
//! fingerprint; no secret is ever a label.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mesh_api::{IpamStatus, MemberState, PeerState, Status, key_fingerprint};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::run::Shared;

/// The path metrics are served on.
pub(crate) const PATH: &str = "/metrics";

/// Every peer state, in the order the `state` label values are written.
const STATES: [(PeerState, &str); 4] = [
    (PeerState::Idle, "idle"),
    (PeerState::Handshaking, "handshaking"),
    (PeerState::Established, "established"),
    (PeerState::Expired, "expired"),
];

/// Member states counted in `mesh_members` (this node, `local`, is not counted), in the order
/// the `state` label values are written.
const MEMBER_STATES: [(MemberState, &str); 3] = [
    (MemberState::Alive, "alive"),
    (MemberState::Dead, "dead"),
    (MemberState::Left, "left"),
];

/// The metrics socket, bound by `main` before `run` (so a busy port is refused before the
/// bridge or the TUN device exist), and the time the process started.
#[derive(Debug, Clone)]
pub(crate) struct Prebound {
    listener: Arc<Mutex<Option<std::net::TcpListener>>>,
    started: SystemTime,
}

impl Default for Prebound {
    fn default() -> Self {
        Self {
            listener: Arc::new(Mutex::new(None)),
            started: SystemTime::now(),
        }
    }
}

impl Prebound {
    /// Binds `addr` (nothing for `None`: metrics off).
    pub(crate) fn bind(addr: Option<SocketAddr>) -> Result<Self> {
        let me = Self::default();
        if let Some(addr) = addr {
            let listener = std::net::TcpListener::bind(addr).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    anyhow::anyhow!(
                        "metrics address {addr} is already in use (another meshd?): pick another with --metrics ADDR:PORT, or --metrics off"
                    )
                } else {
                    anyhow::anyhow!("cannot listen for metrics on {addr}: {e}")
                }
            })?;
            listener
                .set_nonblocking(true)
                .context("cannot make the metrics socket non-blocking")?;
            *me.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
        }
        Ok(me)
    }
}

/// What `Shared` holds for the metrics server.
#[derive(Debug)]
pub(crate) struct Metrics {
    listener: Mutex<Option<std::net::TcpListener>>,
    started: SystemTime,
}

impl Metrics {
    /// Takes the socket `main` bound (see [`Prebound`]).
    pub(crate) fn new(config: &crate::config::Config) -> Self {
        let pre = &config.metrics_listener;
        let listener = pre
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Self {
            listener: Mutex::new(listener),
            started: pre.started,
        }
    }
}

/// Serves `GET /metrics` until the task is aborted; with metrics off, only waits.
pub(crate) async fn serve(shared: Arc<Shared>) -> Result<()> {
    let listener = shared
        .metrics
        .listener
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some(listener) = listener else {
        // Metrics off: a task that ends would stop meshd, so this one never does.
        std::future::pending::<()>().await;
        return Ok(());
    };
    let addr = listener.local_addr().ok();
    let listener =
        tokio::net::TcpListener::from_std(listener).context("cannot serve the metrics socket")?;
    tracing::info!(addr = ?addr, "serving metrics on {PATH}");
    let app = axum::Router::new()
        .route(PATH, get(scrape))
        .fallback(not_found)
        .with_state(shared);
    axum::serve(listener, app)
        .await
        .context("the metrics server failed")?;
    bail!("the metrics server stopped")
}

async fn scrape(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let status = shared.status();
    // The record counts come with the status; the counters from the server.
    let dns = shared
        .dns
        .as_deref()
        .zip(status.dns.as_ref())
        .map(|(d, summary)| DnsSnapshot {
            stats: d.stats(),
            served: summary.served,
            unserved: summary.records - summary.served,
        });
    let filter = crate::filter::debug(&shared.filter, crate::filter::read().await);
    let snapshot = Snapshot {
        status,
        ipam: shared.ipam.status(),
        started: shared.metrics.started,
        dns,
        filter: Some(filter),
    };
    let format = Format::from_accept(headers.get(header::ACCEPT));
    match encode(snapshot, format) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: metrics are at /metrics\n",
    )
        .into_response()
}

/// The exposition format of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Prometheus text format 0.0.4 (what `curl` and `promtool check metrics` read).
    Text,
    /// OpenMetrics 1.0 text (what a Prometheus server asks for).
    OpenMetrics,
}

impl Format {
    fn from_accept(accept: Option<&HeaderValue>) -> Self {
        match accept.and_then(|v| v.to_str().ok()) {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Everything one scrape reports.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) status: Status,
    pub(crate) ipam: IpamStatus,
    pub(crate) started: SystemTime,
    /// `None` with `--dns off`.
    pub(crate) dns: Option<DnsSnapshot>,
    /// meshd's nftables table, read at scrape time (what `meshctl debug` shows of it).
    pub(crate) filter: Option<mesh_api::DebugFilter>,
}

/// The DNS server's counters and how many records it holds.
#[derive(Debug)]
pub(crate) struct DnsSnapshot {
    pub(crate) stats: mesh_dns_server::ServerStats,
    /// Records answered.
    pub(crate) served: u64,
    /// Records kept but not answered (their owner is dead).
    pub(crate) unserved: u64,
}

/// A histogram read from counters kept elsewhere.
struct ConstHistogram {
    sum: f64,
    count: u64,
    /// (upper bound, count in this bucket), the last bound +Inf; not cumulative.
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// `snapshot` in `format`.
pub(crate) fn encode(snapshot: Snapshot, format: Format) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

/// One metric family: its descriptor, then every (labels, value) sample.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    let Some((_, first)) = samples.peek() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A metric without labels.
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: M,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, value.metric_type())?;
    value.encode(metric)
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

fn gauge_u(v: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.status;
        // Peers known only by address (no key yet) have no counters and no stable identity;
        // they are counted in `mesh_peers` only.
        let peers: Vec<_> = s
            .peers
            .iter()
            .filter(|p| !p.public_key.is_empty())
            .map(|p| (p, key_fingerprint(&p.public_key)))
            .collect();
        let id =
            |p: &mesh_api::PeerStatus, fp: &String| [("peer", p.name.clone()), ("key", fp.clone())];

        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        single(
            &mut e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, seconds.",
            ConstGauge::new(start),
        )?;
        family(
            &mut e,
            "mesh_node_info",
            "This node's name and key fingerprint, always 1.",
            [(
                [
                    ("name", s.node.name.clone()),
                    ("key", key_fingerprint(&s.node.public_key)),
                    ("version", s.node.version.clone()),
                ],
                gauge(1),
            )],
        )?;

        // Peers by state, and each peer's state as one 0/1 gauge per state.
        family(
            &mut e,
            "mesh_peers",
            "Peers by session state (peers known only by address included).",
            STATES.iter().map(|(st, name)| {
                let n = s.peers.iter().filter(|p| p.state == *st).count();
                ([("state", *name)], gauge_u(n as u64))
            }),
        )?;
        family(
            &mut e,
            "mesh_peer_session_state",
            "1 for the peer's current session state, 0 for the others.",
            peers.iter().flat_map(|(p, fp)| {
                STATES.iter().map(move |(st, name)| {
                    (
                        [
                            ("peer", p.name.clone()),
                            ("key", fp.clone()),
                            ("state", (*name).to_owned()),
                        ],
                        gauge(i64::from(p.state == *st)),
                    )
                })
            }),
        )?;

        // Traffic.
        for (name, help, get) in [
            (
                "mesh_peer_rx_packets",
                "Data packets received from the peer and decrypted.",
                (|p: &mesh_api::PeerStatus| p.rx_packets) as fn(&mesh_api::PeerStatus) -> u64,
            ),
            (
                "mesh_peer_rx_bytes",
                "Decrypted payload bytes received from the peer.",
                |p| p.rx_bytes,
            ),
            (
                "mesh_peer_tx_packets",
                "Data packets sealed and sent to the peer.",
                |p| p.tx_packets,
            ),
            (
                "mesh_peer_tx_bytes",
                "Payload bytes sealed and sent to the peer.",
                |p| p.tx_bytes,
            ),
            (
                "mesh_peer_handshakes",
                "Handshakes completed with the peer.",
                |p| p.handshakes,
            ),
        ] {
            family(
                &mut e,
                name,
                help,
                peers.iter().map(|(p, fp)| (id(p, fp), counter(get(p)))),
            )?;
        }
        family(
            &mut e,
            "mesh_peer_rtt_seconds",
            "Round-trip time of the last handshake with the peer, seconds.",
            peers.iter().filter_map(|(p, fp)| {
                p.rtt_us
                    .map(|us| (id(p, fp), ConstGauge::new(us as f64 / 1e6)))
            }),
        )?;
        family(
            &mut e,
            "mesh_peer_session_rx_loss_ratio",
            "Inbound loss in the current session: packets the peer sent that never arrived, 0 to 1.",
            peers
                .iter()
                .filter_map(|(p, fp)| p.rx_loss().map(|l| (id(p, fp), ConstGauge::new(l)))),
        )?;
        family(
            &mut e,
            "mesh_peer_last_handshake_age_seconds",
            "Seconds since the last completed handshake with the peer.",
            peers
                .iter()
                .filter_map(|(p, fp)| p.last_handshake_secs_ago.map(|a| (id(p, fp), gauge_u(a)))),
        )?;

        // Drops and handshake failures.
        family(
            &mut e,
            "mesh_peer_drops",
            "Packets from or for the peer that were dropped, by reason.",
            peers.iter().flat_map(|(p, fp)| {
                p.drops.iter().map(move |d| {
                    (
                        [
                            ("peer", p.name.clone()),
                            ("key", fp.clone()),
                            ("reason", d.reason.clone()),
                        ],
                        counter(d.packets),
                    )
                })
            }),
        )?;
        family(
            &mut e,
            "mesh_drops",
            "Packets dropped before a peer could be told apart (or by the socket or TUN device), by reason.",
            s.drops
                .iter()
                .map(|d| ([("reason", d.reason.clone())], counter(d.packets))),
        )?;
        single(
            &mut e,
            "mesh_handshake_failures",
            "Handshake messages that failed (wrong cluster secret, unknown key, corrupt), all peers.",
            counter(s.total_drops("handshake_failed")),
        )?;
        single(
            &mut e,
            "mesh_handshakes",
            "Handshakes completed, all peers.",
            counter(s.peers.iter().map(|p| p.handshakes).sum()),
        )?;
        let h = &s.handshakes;
        single(
            &mut e,
            "mesh_handshake_responses",
            "Handshake initiations answered with public-key work (those the MAC, replay, load and per-source checks let through).",
            counter(h.responded),
        )?;
        single(
            &mut e,
            "mesh_handshake_under_load",
            "1 while the node is under handshake load and answers unproven initiations with a cookie, else 0.",
            gauge(i64::from(h.under_load)),
        )?;
        single(
            &mut e,
            "mesh_handshake_cookies_sent",
            "Cookie replies sent instead of a handshake, under load.",
            counter(h.cookies_sent),
        )?;
        single(
            &mut e,
            "mesh_handshake_cookies_received",
            "Cookie replies accepted from loaded responders.",
            counter(h.cookies_received),
        )?;
        single(
            &mut e,
            "mesh_handshake_replay_cache_entries",
            "Handshake initiations remembered for replay detection.",
            gauge_u(h.replay_cache),
        )?;

        // The packet loops.
        let d = &s.datapath;
        single(
            &mut e,
            "mesh_datapath_tun_offload",
            "1 when the TUN device moves TCP super-packets (TSO/GRO), else 0.",
            gauge(i64::from(d.tun_offload)),
        )?;
        single(
            &mut e,
            "mesh_datapath_udp_gso_segments",
            "Datagrams per segmented UDP send (UDP GSO); 1 means off.",
            gauge_u(d.udp_gso_segments),
        )?;
        single(
            &mut e,
            "mesh_datapath_udp_socket_buffer_bytes",
            "The UDP socket's receive buffer (SO_RCVBUF, as the kernel reports it).",
            gauge_u(d.udp_rcvbuf),
        )?;
        single(
            &mut e,
            "mesh_datapath_udp_gro_segments",
            "Datagrams the kernel may coalesce per UDP receive (UDP GRO); 1 means off.",
            gauge_u(d.udp_gro_segments),
        )?;
        for (name, help, v) in [
            (
                "mesh_datapath_tun_reads",
                "Reads from the TUN device.",
                d.tun_reads,
            ),
            (
                "mesh_datapath_tun_read_packets",
                "Packets read from the TUN device.",
                d.tun_read_packets,
            ),
            (
                "mesh_datapath_tun_writes",
                "Batches written to the TUN device.",
                d.tun_writes,
            ),
            (
                "mesh_datapath_tun_write_packets",
                "Packets written to the TUN device.",
                d.tun_write_packets,
            ),
            (
                "mesh_datapath_udp_sends",
                "UDP send calls (one may carry a GSO run of datagrams).",
                d.udp_sends,
            ),
            (
                "mesh_datapath_udp_send_datagrams",
                "UDP datagrams sent.",
                d.udp_send_datagrams,
            ),
            ("mesh_datapath_udp_recvs", "UDP receive calls.", d.udp_recvs),
            (
                "mesh_datapath_udp_recv_datagrams",
                "UDP datagrams received.",
                d.udp_recv_datagrams,
            ),
        ] {
            single(&mut e, name, help, counter(v))?;
        }

        // Members and gossip.
        family(
            &mut e,
            "mesh_members",
            "Other cluster members this node knows, by state (this node not counted).",
            MEMBER_STATES.iter().map(|(st, name)| {
                let n = s.members.iter().filter(|m| m.state == *st).count();
                ([("state", *name)], gauge_u(n as u64))
            }),
        )?;
        let g = &s.gossip;
        single(
            &mut e,
            "mesh_gossip_neighbours",
            "Gossip neighbours now (chosen by this node or by them).",
            gauge_u(g.neighbours),
        )?;
        single(
            &mut e,
            "mesh_gossip_records",
            "Gossip records held.",
            gauge_u(g.records),
        )?;
        family(
            &mut e,
            "mesh_gossip_messages",
            "Gossip messages sent (tx) and received (rx).",
            [
                ([("direction", "tx")], counter(g.tx_messages)),
                ([("direction", "rx")], counter(g.rx_messages)),
            ],
        )?;
        family(
            &mut e,
            "mesh_gossip_bytes",
            "Bytes of gossip messages sent (tx) and received (rx), before sealing.",
            [
                ([("direction", "tx")], counter(g.tx_bytes)),
                ([("direction", "rx")], counter(g.rx_bytes)),
            ],
        )?;
        // Not `mesh_gossip_records_total`: in OpenMetrics that family would be named
        // `mesh_gossip_records`, the gauge's name.
        family(
            &mut e,
            "mesh_gossip_records_received",
            "Gossip records received: new or newer (applied) or already known (redundant).",
            [
                ([("result", "applied")], counter(g.records_applied)),
                ([("result", "redundant")], counter(g.records_redundant)),
            ],
        )?;
        single(
            &mut e,
            "mesh_gossip_records_pulled",
            "Gossip records pulled because a neighbour announced them and no push brought them \
             within the pull delay.",
            counter(g.records_pulled),
        )?;
        single(
            &mut e,
            "mesh_gossip_malformed",
            "Gossip messages or records received that did not parse.",
            counter(g.malformed),
        )?;

        // The address pool.
        let ip = &self.ipam;
        family(
            &mut e,
            "mesh_ipam_addresses",
            "Usable pod addresses of this node's blocks, used or free.",
            [
                ([("state", "used")], gauge_u(ip.used)),
                ([("state", "free")], gauge_u(ip.free)),
            ],
        )?;
        single(
            &mut e,
            "mesh_ipam_blocks",
            "Address blocks this node hands pod addresses out of.",
            gauge_u(ip.blocks.len() as u64),
        )?;
        single(
            &mut e,
            "mesh_ipam_allocations",
            "Pod attachments holding an address (stranded ones included).",
            gauge_u(ip.allocations.len() as u64),
        )?;
        single(
            &mut e,
            "mesh_ipam_stranded_allocations",
            "Allocations outside this node's current blocks (kept from an earlier configuration).",
            gauge_u(ip.allocations.iter().filter(|a| a.stranded).count() as u64),
        )?;
        if let Some(dns) = &self.dns {
            encode_dns(&mut e, dns)?;
        }
        if let Some(filter) = &self.filter {
            encode_filter(&mut e, filter)?;
        }
        Ok(())
    }
}

/// The `mesh_filter_*` families: meshd's nftables table and its drop counters.
fn encode_filter(
    e: &mut DescriptorEncoder<'_>,
    f: &mesh_api::DebugFilter,
) -> Result<(), std::fmt::Error> {
    single(
        e,
        "mesh_filter_intact",
        "1 when meshd's nftables table (inet mesh) is present and as meshd installed it, else 0.",
        gauge(i64::from(f.state == mesh_api::FilterState::Intact)),
    )?;
    family(
        e,
        "mesh_filter_dropped_packets",
        "Packets meshd's nftables table dropped (spoofed_source: a cluster source on another \
         interface; to_local_pods, to_remote_pods: forwarded from another interface without the \
         host's NAT), since meshd installed it.",
        f.counters
            .iter()
            .map(|c| ([("reason", c.name.clone())], counter(c.packets))),
    )?;
    family(
        e,
        "mesh_filter_dropped_bytes",
        "Bytes of the packets counted in mesh_filter_dropped_packets.",
        f.counters
            .iter()
            .map(|c| ([("reason", c.name.clone())], counter(c.bytes))),
    )
}

/// The `mesh_dns_*` families.
fn encode_dns(e: &mut DescriptorEncoder<'_>, dns: &DnsSnapshot) -> Result<(), std::fmt::Error> {
    let st = &dns.stats;
    family(
        e,
        "mesh_dns_queries",
        "DNS queries received from clients, by transport.",
        [
            ([("transport", "udp")], counter(st.udp_queries)),
            ([("transport", "tcp")], counter(st.tcp_queries)),
        ],
    )?;
    let r = &st.replies;
    family(
        e,
        "mesh_dns_replies",
        "DNS replies sent, by source (zone: meshd's records; forward: cache or upstream) and response code.",
        [("zone", &r.zone), ("forward", &r.forward)]
            .into_iter()
            .flat_map(|(source, counts)| {
                mesh_dns_server::RCODES
                    .iter()
                    .zip(counts)
                    .map(move |(rcode, n)| ([("source", source), ("rcode", *rcode)], counter(*n)))
            }),
    )?;
    single(
        e,
        "mesh_dns_dropped",
        "DNS queries dropped unanswered (malformed, too long, not a query, forwarder queue full).",
        counter(st.dropped),
    )?;
    let f = &st.forwarder;
    family(
        e,
        "mesh_dns_forwarder_events",
        "What the forwarder did with questions outside the zone.",
        [
            ("cache_hit", f.cache_hits),
            ("cache_miss", f.cache_misses),
            ("coalesced", f.coalesced),
            ("upstream_send", f.upstream_sends),
            ("upstream_answer", f.upstream_answers),
            ("upstream_error", f.upstream_errors),
            ("ignored", f.ignored),
            ("upstream_mismatch", f.mismatched),
            ("timeout", f.timeouts),
            ("overloaded", f.overloaded),
        ]
        .map(|(event, n)| ([("event", event)], counter(n))),
    )?;
    family(
        e,
        "mesh_dns_records",
        "DNS records of the zone held, answered or not (not: their owner is dead).",
        [
            ([("served", "yes")], gauge_u(dns.served)),
            ([("served", "no")], gauge_u(dns.unserved)),
        ],
    )?;
    let bounds = mesh_dns_server::REPLY_SECONDS_BUCKETS
        .iter()
        .copied()
        .chain([f64::INFINITY]);
    single(
        e,
        "mesh_dns_reply_duration_seconds",
        "Time from a DNS query's arrival to its reply leaving, seconds.",
        ConstHistogram {
            sum: r.seconds_sum,
            count: r.count(),
            buckets: bounds.zip(r.seconds_buckets).collect(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_api::{
        DatapathStatus, DropCount, GossipStatus, IpamAllocation, MemberStatus, NodeStatus,
        PeerStatus,
    };
    use std::time::Duration;

    fn drop_count(reason: &str, packets: u64) -> DropCount {
        DropCount {
            reason: reason.into(),
            packets,
        }
    }

    fn snapshot() -> Snapshot {
        let peer = PeerStatus {
            name: "beta".into(),
            public_key: "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=".into(),
            endpoint: "198.18.0.2:6788".into(),
            state: PeerState::Established,
            blocks: vec!["10.32.2.0/24".into()],
            last_handshake_secs_ago: Some(12),
            handshakes: 3,
            rtt_us: Some(1_250),
            rx_packets: 10,
            rx_bytes: 1_000,
            tx_packets: 20,
            tx_bytes: 2_000,
            drops: vec![drop_count("replay", 2), drop_count("handshake_failed", 1)],
            relay: None,
            session_rx_expected: 1000,
            session_rx_lost: 3,
            cipher: Some("aes-256-gcm".into()),
        };
        let unknown = PeerStatus::address_only("198.18.0.3:6788".into(), PeerState::Handshaking);
        let member = |name: &str, public_key: &str, state| MemberStatus {
            name: name.into(),
            public_key: public_key.into(),
            endpoint: Some("198.18.0.9:6788".into()),
            blocks: vec!["10.32.9.0/24".into()],
            state,
            neighbour: false,
            session: false,
            unreachable_secs: None,
        };
        let members = vec![
            member(
                "alpha",
                "q2Ms0bVgZ0Vx7yH3nWmJ0k2pKf9cJbQkq3a0Xy1Wm2E=",
                MemberState::Local,
            ),
            MemberStatus {
                neighbour: true,
                session: true,
                ..member(
                    "beta",
                    "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=",
                    MemberState::Alive,
                )
            },
            member(
                "delta",
                "ZGVsdGFkZWx0YWRlbHRhZGVsdGFkZWx0YWRlbHRhZGU=",
                MemberState::Left,
            ),
            member(
                "epsilon",
                "ZXBzaWxvbmVwc2lsb25lcHNpbG9uZXBzaWxvbmVwc2k=",
                MemberState::Alive,
            ),
            MemberStatus {
                unreachable_secs: Some(754),
                ..member(
                    "gamma",
                    "Z2FtbWFnYW1tYWdhbW1hZ2FtbWFnYW1tYWdhbW1hZ2E=",
                    MemberState::Dead,
                )
            },
        ];
        Snapshot {
            status: Status {
                node: NodeStatus {
                    name: "alpha".into(),
                    public_key: "q2Ms0bVgZ0Vx7yH3nWmJ0k2pKf9cJbQkq3a0Xy1Wm2E=".into(),
                    listen: "0.0.0.0:6788".into(),
                    range: "10.32.0.0/12".into(),
                    blocks: vec!["10.32.1.0/24".into()],
                    bridge: "mesh0".into(),
                    gateway: "10.32.1.1/24".into(),
                    tun: "meshtun0".into(),
                    mtu: 1440,
                    cipher: "chacha20-poly1305".into(),
                    uptime_secs: 5,
                    version: "0.1.0".into(),
                },
                peers: vec![unknown, peer],
                drops: vec![drop_count("no_route", 4)],
                datapath: DatapathStatus {
                    tun_offload: true,
                    udp_gso_segments: 64,
                    udp_gro_segments: 64,
                    tun_reads: 1,
                    tun_read_packets: 2,
                    tun_writes: 3,
                    tun_write_packets: 4,
                    udp_sends: 5,
                    udp_send_datagrams: 6,
                    udp_recvs: 7,
                    udp_recv_datagrams: 8,
                    udp_rcvbuf: 8 << 20,
                    udp_sndbuf: 8 << 20,
                },
                members,
                gossip: GossipStatus {
                    records: 10,
                    neighbours: 2,
                    outbound: 1,
                    tx_messages: 40,
                    tx_bytes: 5_120,
                    rx_messages: 38,
                    rx_bytes: 4_800,
                    records_applied: 12,
                    records_redundant: 30,
                    records_pulled: 3,
                    malformed: 1,
                },
                warnings: vec![],
                handshakes: mesh_api::HandshakeStatus {
                    responded: 11,
                    under_load: true,
                    cookies_sent: 7,
                    cookies_received: 2,
                    replay_cache: 9,
                },
                dns: None,
            },
            ipam: IpamStatus {
                range: "10.32.0.0/12".into(),
                bridge: "mesh0".into(),
                mtu: 1440,
                blocks: vec!["10.32.1.0/24".into()],
                allocations: vec![IpamAllocation {
                    container_id: "c1".into(),
                    ifname: "eth0".into(),
                    address: "10.32.1.2/24".into(),
                    pod_name: None,
                    pod_namespace: None,
                    network: None,
                    stranded: false,
                }],
                used: 1,
                free: 252,
                mode: mesh_api::IpamMode::Fixed,
                block_prefix: 24,
                ring: None,
                block_use: vec![],
                owners: vec![],
            },
            started: UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
            dns: Some(DnsSnapshot {
                stats: mesh_dns_server::ServerStats {
                    udp_queries: 9,
                    tcp_queries: 1,
                    answered: 6,
                    forwarded: 3,
                    dropped: 1,
                    forwarder: mesh_dns::ForwarderStats {
                        cache_hits: 2,
                        timeouts: 1,
                        mismatched: 4,
                        ..Default::default()
                    },
                    replies: mesh_dns_server::ReplyStats {
                        zone: [5, 0, 0, 1, 0, 0, 0],
                        forward: [2, 0, 1, 0, 0, 0, 0],
                        seconds_buckets: [4, 2, 1, 0, 0, 0, 0, 0, 0, 1, 1],
                        seconds_sum: 3.5,
                    },
                },
                served: 3,
                unserved: 1,
            }),
            filter: Some(mesh_api::DebugFilter {
                table: "inet mesh".into(),
                state: mesh_api::FilterState::Intact,
                difference: None,
                error: None,
                counters: vec![
                    mesh_api::DebugFilterCounter {
                        name: "spoofed_source".into(),
                        packets: 7,
                        bytes: 588,
                    },
                    mesh_api::DebugFilterCounter {
                        name: "to_local_pods".into(),
                        packets: 5_000_000_000,
                        bytes: 420_000_000_000,
                    },
                ],
            }),
        }
    }

    /// Every sample line's family has its HELP and TYPE lines before it, no series is
    /// written twice, and every value parses as a number.
    fn check_well_formed(text: &str) {
        let mut typed = std::collections::HashSet::new();
        let mut series = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
            } else if line.starts_with('#') {
                continue;
            } else {
                let (id, value) = line.rsplit_once(' ').unwrap();
                let name = id.split('{').next().unwrap();
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    typed.contains(name) || typed.contains(family),
                    "sample before its TYPE: {line}"
                );
                assert!(value.parse::<f64>().is_ok(), "bad value: {line}");
                assert!(series.insert(id.to_owned()), "series twice: {line}");
            }
        }
    }

    #[test]
    fn text_format_has_every_metric_with_peer_labels() {
        let text = encode(snapshot(), Format::Text).unwrap();
        check_well_formed(&text);
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# HELP mesh_peer_rx_packets_total Data packets received from the peer and decrypted.",
            "# TYPE mesh_peer_rx_packets_total counter",
            "mesh_peer_rx_packets_total{peer=\"beta\",key=\"Zm9vYmFy\"} 10",
            "mesh_peer_rx_bytes_total{peer=\"beta\",key=\"Zm9vYmFy\"} 1000",
            "mesh_peer_tx_packets_total{peer=\"beta\",key=\"Zm9vYmFy\"} 20",
            "mesh_peer_tx_bytes_total{peer=\"beta\",key=\"Zm9vYmFy\"} 2000",
            "mesh_peer_handshakes_total{peer=\"beta\",key=\"Zm9vYmFy\"} 3",
            "mesh_peer_rtt_seconds{peer=\"beta\",key=\"Zm9vYmFy\"} 0.00125",
            "mesh_peer_session_rx_loss_ratio{peer=\"beta\",key=\"Zm9vYmFy\"} 0.003",
            "mesh_peer_last_handshake_age_seconds{peer=\"beta\",key=\"Zm9vYmFy\"} 12",
            "mesh_peer_session_state{peer=\"beta\",key=\"Zm9vYmFy\",state=\"idle\"} 0",
            "mesh_peer_session_state{peer=\"beta\",key=\"Zm9vYmFy\",state=\"established\"} 1",
            "mesh_peer_drops_total{peer=\"beta\",key=\"Zm9vYmFy\",reason=\"replay\"} 2",
            "mesh_drops_total{reason=\"no_route\"} 4",
            "mesh_handshake_failures_total 1",
            "mesh_handshakes_total 3",
            "mesh_handshake_responses_total 11",
            "mesh_handshake_under_load 1",
            "mesh_handshake_cookies_sent_total 7",
            "mesh_handshake_cookies_received_total 2",
            "mesh_handshake_replay_cache_entries 9",
            "mesh_peers{state=\"idle\"} 0",
            "mesh_peers{state=\"handshaking\"} 1",
            "mesh_peers{state=\"established\"} 1",
            "mesh_peers{state=\"expired\"} 0",
            "mesh_node_info{name=\"alpha\",key=\"q2Ms0bVg\",version=\"0.1.0\"} 1",
            "mesh_datapath_tun_offload 1",
            "mesh_datapath_udp_gso_segments 64",
            "mesh_datapath_udp_socket_buffer_bytes 8388608",
            "mesh_datapath_tun_reads_total 1",
            "mesh_datapath_tun_read_packets_total 2",
            "mesh_datapath_tun_writes_total 3",
            "mesh_datapath_tun_write_packets_total 4",
            "mesh_datapath_udp_sends_total 5",
            "mesh_datapath_udp_send_datagrams_total 6",
            "mesh_datapath_udp_recvs_total 7",
            "mesh_datapath_udp_recv_datagrams_total 8",
            "mesh_ipam_addresses{state=\"used\"} 1",
            "mesh_ipam_addresses{state=\"free\"} 252",
            "mesh_ipam_blocks 1",
            "mesh_ipam_allocations 1",
            "mesh_ipam_stranded_allocations 0",
            "# HELP mesh_members Other cluster members this node knows, by state (this node not counted).",
            "# TYPE mesh_members gauge",
            "mesh_members{state=\"alive\"} 2",
            "mesh_members{state=\"dead\"} 1",
            "mesh_members{state=\"left\"} 1",
            "# TYPE mesh_gossip_neighbours gauge",
            "mesh_gossip_neighbours 2",
            "# TYPE mesh_gossip_records gauge",
            "mesh_gossip_records 10",
            "# TYPE mesh_gossip_messages_total counter",
            "mesh_gossip_messages_total{direction=\"tx\"} 40",
            "mesh_gossip_messages_total{direction=\"rx\"} 38",
            "# TYPE mesh_gossip_bytes_total counter",
            "mesh_gossip_bytes_total{direction=\"tx\"} 5120",
            "mesh_gossip_bytes_total{direction=\"rx\"} 4800",
            "# TYPE mesh_gossip_records_received_total counter",
            "mesh_gossip_records_received_total{result=\"applied\"} 12",
            "mesh_gossip_records_received_total{result=\"redundant\"} 30",
            "# TYPE mesh_gossip_records_pulled_total counter",
            "mesh_gossip_records_pulled_total 3",
            "# TYPE mesh_gossip_malformed_total counter",
            "mesh_gossip_malformed_total 1",
            "# TYPE process_start_time_seconds gauge",
            "process_start_time_seconds 1700000000.5",
            "mesh_dns_queries_total{transport=\"udp\"} 9",
            "mesh_dns_queries_total{transport=\"tcp\"} 1",
            "mesh_dns_replies_total{source=\"zone\",rcode=\"NOERROR\"} 5",
            "mesh_dns_replies_total{source=\"zone\",rcode=\"NXDOMAIN\"} 1",
            "mesh_dns_replies_total{source=\"forward\",rcode=\"SERVFAIL\"} 1",
            "mesh_dns_dropped_total 1",
            "mesh_dns_forwarder_events_total{event=\"cache_hit\"} 2",
            "mesh_dns_forwarder_events_total{event=\"timeout\"} 1",
            "mesh_dns_forwarder_events_total{event=\"upstream_mismatch\"} 4",
            "mesh_dns_records{served=\"yes\"} 3",
            "mesh_dns_records{served=\"no\"} 1",
            "# TYPE mesh_dns_reply_duration_seconds histogram",
            "mesh_dns_reply_duration_seconds_sum 3.5",
            "mesh_dns_reply_duration_seconds_count 9",
            "mesh_dns_reply_duration_seconds_bucket{le=\"0.0005\"} 4",
            "mesh_dns_reply_duration_seconds_bucket{le=\"0.001\"} 6",
            "mesh_dns_reply_duration_seconds_bucket{le=\"2.5\"} 8",
            "mesh_dns_reply_duration_seconds_bucket{le=\"+Inf\"} 9",
            "# TYPE mesh_filter_intact gauge",
            "mesh_filter_intact 1",
            "# TYPE mesh_filter_dropped_packets_total counter",
            "mesh_filter_dropped_packets_total{reason=\"spoofed_source\"} 7",
            "mesh_filter_dropped_packets_total{reason=\"to_local_pods\"} 5000000000",
            "mesh_filter_dropped_bytes_total{reason=\"spoofed_source\"} 588",
            "mesh_filter_dropped_bytes_total{reason=\"to_local_pods\"} 420000000000",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
        }
        // The peer known only by its address has no per-peer series; members have none.
        assert!(!text.contains("peer=\"\""), "{text}");
        assert!(!text.contains("state=\"local\""), "{text}");
        for name in ["delta", "epsilon", "gamma"] {
            assert!(!text.contains(name), "member {name} in a label: {text}");
        }
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn a_filter_that_is_not_intact_reads_zero() {
        for state in [
            mesh_api::FilterState::Missing,
            mesh_api::FilterState::Changed,
            mesh_api::FilterState::Unreadable,
        ] {
            let mut s = snapshot();
            s.filter.as_mut().unwrap().state = state;
            let text = encode(s, Format::Text).unwrap();
            assert!(
                text.lines().any(|l| l == "mesh_filter_intact 0"),
                "{state:?}: {text}"
            );
        }
    }

    #[test]
    fn no_secret_or_full_key_in_labels() {
        let s = snapshot();
        let mut full_keys = vec![
            s.status.node.public_key.clone(),
            s.status.peers[1].public_key.clone(),
        ];
        full_keys.extend(s.status.members.iter().map(|m| m.public_key.clone()));
        let text = encode(s, Format::Text).unwrap();
        for key in full_keys {
            assert!(!text.contains(&key), "full key {key} in metrics");
        }
    }

    #[test]
    fn openmetrics_on_request_ends_with_eof() {
        let text = encode(snapshot(), Format::OpenMetrics).unwrap();
        // Family names are unique in OpenMetrics too, where a counter's has no `_total`.
        check_well_formed(&text);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE mesh_gossip_records gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE mesh_gossip_records_received counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE mesh_peer_rx_packets counter\n"));
        assert!(text.contains("mesh_peer_rx_packets_total{peer=\"beta\",key=\"Zm9vYmFy\"} 10\n"));
        let accept = HeaderValue::from_static(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4",
        );
        assert_eq!(Format::from_accept(Some(&accept)), Format::OpenMetrics);
        assert_eq!(
            Format::from_accept(Some(&HeaderValue::from_static("*/*"))),
            Format::Text
        );
        assert_eq!(Format::from_accept(None), Format::Text);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = snapshot();
        s.status.peers[1].name = "we\"ird\\name".into();
        let text = encode(s, Format::Text).unwrap();
        check_well_formed(&text);
        assert!(
            text.contains(
                "mesh_peer_rx_packets_total{peer=\"we\\\"ird\\\\name\",key=\"Zm9vYmFy\"} 10"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_busy_port_is_one_line_naming_the_address() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let err = Prebound::bind(Some(addr)).unwrap_err().to_string();
        assert!(
            err.contains(&addr.to_string()) && err.contains("already in use"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let off = Prebound::bind(None).unwrap();
        assert!(off.listener.lock().unwrap().is_none());
    }
}
