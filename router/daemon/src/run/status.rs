//! `meshctl status` and `meshctl ipam`: the node's and the pool's state in API form.

use super::*;

impl Shared {
    /// The `ipam` answer: the pool, and with automatic IPAM the ring as this node sees it.
    pub(crate) fn ipam_status(&self) -> mesh_api::IpamStatus {
        let mut out = self.ipam.status();
        out.block_prefix = self.config.block_prefix;
        if !self.automatic() {
            return out;
        }
        out.mode = mesh_api::IpamMode::Automatic;
        let now = Instant::now();
        let node = self.node();
        let names: BTreeMap<String, String> = node
            .members(now)
            .into_iter()
            .map(|m| (m.public_key, m.name))
            .collect();
        out.ring = node
            .ring_state()
            .and_then(|r| r.ring)
            .map(|id| id.to_string());
        let own = node.public_key();
        out.owners = node
            .ring_spans()
            .unwrap_or_default()
            .into_iter()
            .map(|(nets, owner)| {
                let key = owner.map(|k| k.to_string());
                mesh_api::IpamSpan {
                    blocks: nets.iter().map(ToString::to_string).collect(),
                    name: key
                        .as_ref()
                        .and_then(|k| names.get(k).cloned())
                        .unwrap_or_default(),
                    public_key: key,
                    local: owner == Some(own),
                }
            })
            .collect();
        out
    }

    pub(crate) fn status(&self) -> mesh_api::Status {
        let now = Instant::now();
        let pool_blocks = self.ipam.blocks();
        let mut warnings = self
            .warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if self.automatic() && pool_blocks.is_empty() {
            warnings.push(
                "this node has no address block yet, so pods get no address: it gets one from \
                 the cluster's address ring once it reaches a member that owns blocks (check \
                 its --peer and the members above)"
                    .to_owned(),
            );
        }
        let held = self.ring_held_datagrams.load(Ordering::Relaxed);
        if held > 0 && self.ring_unsaved.load(Ordering::Relaxed) {
            warnings.push(format!(
                "{held} datagrams held back because the address ring cannot be saved to {}: \
                 fix the state directory (meshd's log says why)",
                self.config.state_dir.display()
            ));
        }
        let node = self.node();
        let handshakes = node.handshake_status(now);
        if handshakes.under_load {
            warnings.push(
                "handshake load: more than 200 initiations a second, so senders must prove \
                 their address with a cookie first (one round trip more); a flood? see the \
                 handshake_cookie and handshake_mac drops"
                    .to_owned(),
            );
        }
        let mut drops = node.drops().to_api();
        for (reason, counter) in [
            ("tun_write", &self.tun_write_errors),
            ("tun_read", &self.tun_read_errors),
            ("udp_send", &self.udp_send_errors),
        ] {
            let n = counter.load(Ordering::Relaxed);
            if n > 0 {
                drops.push(mesh_api::DropCount {
                    reason: reason.into(),
                    packets: n,
                });
            }
        }
        let c = &self.config;
        mesh_api::Status {
            node: mesh_api::NodeStatus {
                name: c.name.clone(),
                public_key: self.public_key.to_string(),
                listen: c.listen.to_string(),
                range: c.range.to_string(),
                blocks: node.blocks().iter().map(ToString::to_string).collect(),
                bridge: c.bridge.clone(),
                gateway: pool_blocks
                    .first()
                    .map(|b| gateway_of(*b).to_string())
                    .unwrap_or_default(),
                tun: c.tun.clone(),
                mtu: c.mtu,
                cipher: c.ciphers.names(),
                uptime_secs: now.saturating_duration_since(self.started).as_secs(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            peers: node.peer_status(now),
            drops,
            datapath: self.datapath_status(),
            members: node.members(now),
            gossip: node.gossip_status(now),
            handshakes,
            warnings,
            dns: self.dns.as_deref().map(|d| {
                let (zone, (records, served)) =
                    d.read(|s| (s.config.zone.to_string(), s.store.counts()));
                let stats = d.stats();
                mesh_api::DnsSummary {
                    listen: self
                        .dns_listen
                        .get()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    zone,
                    records,
                    served,
                    queries: stats.udp_queries + stats.tcp_queries,
                }
            }),
        }
    }

    fn datapath_status(&self) -> mesh_api::DatapathStatus {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        mesh_api::DatapathStatus {
            tun_offload: c.tun_offload.load(Ordering::Relaxed),
            udp_gso_segments: get(&c.udp_gso_segments),
            udp_gro_segments: get(&c.udp_gro_segments),
            tun_reads: get(&c.tun_reads),
            tun_read_packets: get(&c.tun_read_packets),
            tun_writes: get(&c.tun_writes),
            tun_write_packets: get(&c.tun_write_packets),
            udp_sends: get(&c.udp_sends),
            udp_send_datagrams: get(&c.udp_send_datagrams),
            udp_recvs: get(&c.udp_recvs),
            udp_recv_datagrams: get(&c.udp_recv_datagrams),
            udp_rcvbuf: get(&c.udp_rcvbuf),
            udp_sndbuf: get(&c.udp_sndbuf),
        }
    }
}
