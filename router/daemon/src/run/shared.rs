//! What the tasks and the API share: the node behind its mutex, the rule that every path
//! taking datagrams out of the node goes through [`Shared::drain`] (which persists the
//! address ring first), the packet-path counters, and meshd's warnings.

use super::*;

/// What the tasks and the API share.
pub(crate) struct Shared {
    pub(super) node: Mutex<Node>,
    pub(crate) config: Config,
    pub(crate) public_key: PublicKey,
    pub(super) started: Instant,
    /// The pod address pool, served by the API to `mesh-cni`.
    pub(crate) ipam: crate::ipam::IpamService,
    pub(super) tun_write_errors: AtomicU64,
    pub(super) tun_read_errors: AtomicU64,
    pub(super) udp_send_errors: AtomicU64,
    pub(super) counters: Counters,
    /// The metrics socket and start time, for the metrics server (`metrics.rs`).
    pub(crate) metrics: crate::metrics::Metrics,
    /// The DNS server's records and counters; `None` with `--dns off`.
    pub(crate) dns: Option<Arc<mesh_dns_server::DnsState>>,
    /// Where the DNS server listens, once it does (with automatic IPAM and no `--dns`, only
    /// once the node has a block).
    pub(crate) dns_listen: OnceLock<SocketAddr>,
    /// The node's events for the events task (all but `RingChanged`, handled in `drain`,
    /// and `EchoAnswered`, handed to the waiting ping there).
    pub(super) events: mpsc::UnboundedSender<Event>,
    /// `meshctl ping`s waiting for their probes' answers, by probe id.
    pub(super) pings: Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<Duration>>>,
    /// Events held back while the ring could not be persisted (a block the ring gave this
    /// node is used only once the ring says so on disk).
    pub(super) held_events: Mutex<Vec<Event>>,
    /// The last attempt to persist the ring failed: the node's datagrams are held back (and
    /// dropped) until one succeeds.
    pub(super) ring_unsaved: AtomicBool,
    /// Datagrams dropped because the ring could not be persisted.
    pub(super) ring_held_datagrams: AtomicU64,
    /// Problems to show in `meshctl status` (one line each, naming the fix).
    pub(super) warnings: Mutex<Vec<String>>,
    /// The host's netlink connection (`meshctl debug` reads links, neighbours and routes).
    pub(crate) net: HostNetwork,
    /// Peers reached, by key, as saved in `peers.json` (the events task adds, `meshctl
    /// forget` removes).
    pub(super) known: Mutex<BTreeMap<PublicKey, SocketAddr>>,
    /// Endpoints `meshctl forget` named: peers there are not saved again (a session that
    /// stays up would otherwise save them at its next rekey) until `meshctl connect` names
    /// the endpoint again or meshd restarts.
    pub(super) forgotten: Mutex<std::collections::BTreeSet<SocketAddr>>,
    /// meshd's nftables table as the kernel had it right after meshd installed it
    /// (`filter.rs`): what `meshctl debug` compares the table with.
    pub(crate) filter: mesh_datapath::InstalledFilter,
    /// Wakes the timers task to send what an API handler queued in the node now (a ping's
    /// probe) rather than at its next tick.
    pub(super) kick: tokio::sync::Notify,
}

/// Packet-path counters; see `mesh_api::DatapathStatus`.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) tun_offload: AtomicBool,
    pub(super) udp_gso_segments: AtomicU64,
    pub(super) udp_rcvbuf: AtomicU64,
    pub(super) udp_sndbuf: AtomicU64,
    pub(super) udp_gro_segments: AtomicU64,
    pub(super) tun_reads: AtomicU64,
    pub(super) tun_read_packets: AtomicU64,
    pub(super) tun_writes: AtomicU64,
    pub(super) tun_write_packets: AtomicU64,
    pub(super) udp_sends: AtomicU64,
    pub(super) udp_send_datagrams: AtomicU64,
    pub(super) udp_recvs: AtomicU64,
    pub(super) udp_recv_datagrams: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn count(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The node, locked: for the packet loops and the status in `run/`, which drain or only
    /// read. Everything else goes through [`Shared::read`] or [`Shared::update`].
    pub(super) fn node(&self) -> MutexGuard<'_, Node> {
        // A panic while holding the lock already ended the process (panic = abort is not
        // set, but every task is joined and a panic propagates); recover the data anyway.
        self.node.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the node under its lock (nothing is queued or persisted by a read).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Node, Instant) -> R) -> R {
        f(&self.node(), Instant::now())
    }

    /// Changes the node under its lock, then settles it ([`Shared::settle`]: events handed
    /// on, the ring persisted) and wakes the timers task, which sends what the change queued
    /// at once rather than at its next tick. Outside `run/` this and [`Shared::read`] are the
    /// only ways to the node, so no handler can forget either step (DNS edits and kube's
    /// peers did: their gossip and handshakes waited up to 50 ms).
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let r = {
            let mut node = self.node();
            let r = f(&mut node, Instant::now());
            self.settle(&mut node);
            r
        };
        self.kick();
        r
    }

    /// A receiver of probe `id`'s round trip, which [`Shared::settle`] sends when the node
    /// reports the answer. Register before sending the probe.
    pub(crate) fn await_echo(&self, id: u64) -> tokio::sync::oneshot::Receiver<Duration> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        rx
    }

    /// Stops waiting for probe `id` (answered or given up).
    pub(crate) fn forget_echo(&self, id: u64) {
        self.pings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Whether blocks come from the cluster's address ring (no `--block`).
    pub(crate) fn automatic(&self) -> bool {
        self.config.block.is_none()
    }

    /// Hands the node's events on and persists its address ring if it changed; `false` when
    /// that failed (then nothing the node queued may leave). Call with the node locked, before
    /// taking any datagram out of it ([`Shared::drain`] does).
    pub(super) fn settle(&self, node: &mut Node) -> bool {
        let mut ring_changed = self.ring_unsaved.load(Ordering::Relaxed);
        let mut held = self.held_events.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::RingChanged => ring_changed = true,
                Event::EchoAnswered { id, rtt } => {
                    let waiting = self
                        .pings
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    if let Some(tx) = waiting {
                        // The ping may have given up on it already.
                        let _ = tx.send(rtt);
                    }
                }
                ev => held.push(ev),
            }
        }
        let saved = match (ring_changed, node.ring_state()) {
            (true, Some(ring)) => match state::save_ring(&self.config.state_dir, &ring) {
                Ok(()) => {
                    if self.ring_unsaved.swap(false, Ordering::Relaxed) {
                        tracing::info!("address ring saved again; datagrams flow again");
                    }
                    true
                }
                Err(e) => {
                    if !self.ring_unsaved.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            error = %format!("{e:#}"),
                            "cannot save the address ring: holding back this node's gossip, \
                             handshakes and keepalives until it can (a ring entry must not leave \
                             unsaved); fix the state directory"
                        );
                    }
                    false
                }
            },
            _ => true,
        };
        if saved {
            for ev in held.drain(..) {
                // The events task runs as long as meshd does.
                let _ = self.events.send(ev);
            }
        }
        saved
    }

    /// [`Shared::settle`], then every datagram the node queued into `out` (or dropped, while
    /// the ring cannot be saved).
    pub(super) fn drain(&self, node: &mut Node, out: &mut Vec<Transmit>) {
        let saved = self.settle(node);
        while let Some(t) = node.poll_transmit() {
            if saved {
                out.push(t);
            } else {
                self.count(&self.ring_held_datagrams, 1);
            }
        }
    }

    /// Wakes the timers task to send what the node queued now.
    pub(super) fn kick(&self) {
        self.kick.notify_one();
    }

    /// Records a warning for `meshctl status`, once.
    pub(super) fn warn(&self, line: String) {
        let mut w = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if !w.contains(&line) {
            w.push(line);
        }
    }
}

/// A block's bridge address: its first address, with the block's prefix.
pub(crate) fn gateway_of(block: Ipv4Net) -> Ipv4Net {
    Ipv4Net::new(mesh_ipam::local::gateway_of(block), block.prefix_len()).unwrap_or(block)
}

/// The message of a refused foreign ring (the ring's own, which names the fix).
pub(super) fn foreign_ring_message(ours: &str, theirs: &str) -> String {
    match (ours.parse(), theirs.parse()) {
        (Ok(ours), Ok(theirs)) => {
            mesh_ipam::MergeError::DifferentCluster { ours, theirs }.to_string()
        }
        _ => format!(
            "refusing address ownership of cluster ring {theirs}: this node belongs to cluster \
             ring {ours}; reset the nodes of one cluster with `meshd reset` and start them with \
             a --peer of the other (docs/ipam.md)"
        ),
    }
}
