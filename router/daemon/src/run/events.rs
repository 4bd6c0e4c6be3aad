//! The node's events: persisted peers and blocks, gateways on the bridge, the pool's blocks,
//! a refused foreign ring, gossiped DNS records and owners' liveness.

use super::*;

/// Acts on the node's events, in order: persists peers it reached (`peers.json`); with
/// automatic IPAM persists the blocks in use (`blocks.json`), puts their gateways on the
/// bridge (and takes those of blocks no longer in use off), routes the range with the first
/// gateway as source and gives the pool the blocks; records a refused foreign ring for
/// `meshctl status`; merges gossiped DNS records and tells the DNS store which owners are dead.
pub(super) async fn events(
    shared: Arc<Shared>,
    net: HostNetwork,
    mut rx: mpsc::UnboundedReceiver<Event>,
    gateway: watch::Sender<Option<Ipv4Addr>>,
) -> Result<()> {
    let c = &shared.config;
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::PeerEstablished { key, endpoint } => {
                let mut known = shared.known.lock().unwrap_or_else(|e| e.into_inner());
                let forgotten = shared
                    .forgotten
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&endpoint);
                if !forgotten && known.insert(key, endpoint) != Some(endpoint) {
                    let list: Vec<_> = known.iter().map(|(k, e)| (*k, *e)).collect();
                    if let Err(e) = state::save_peers(&c.state_dir, &list) {
                        tracing::warn!(error = %e, "cannot save known peers");
                    }
                }
            }
            Event::BlocksChanged { active } => {
                if c.block.is_none() {
                    use_blocks(&shared, &net, &active, &gateway).await;
                }
            }
            Event::ForeignRing { ours, theirs } => {
                shared.warn(foreign_ring_message(&ours, &theirs));
            }
            Event::RecordChanged { kind, id } if kind == names::KIND_DNS => {
                names::record_changed(&shared, &id);
            }
            Event::MemberDead { key } => names::member_liveness(&shared, &key, false),
            Event::MemberAlive { key } => names::member_liveness(&shared, &key, true),
            Event::RingChanged
            | Event::EchoAnswered { .. }
            | Event::BlockConflict { .. }
            | Event::RecordChanged { .. } => {}
        }
    }
    // Shared holds the sender: the channel closes only when meshd stops.
    std::future::pending().await
}

/// Automatic IPAM: pods get addresses out of `active` from now on.
async fn use_blocks(
    shared: &Shared,
    net: &HostNetwork,
    active: &[Ipv4Net],
    gateway: &watch::Sender<Option<Ipv4Addr>>,
) {
    let c = &shared.config;
    // First on disk: blocks in use are never donated, also after a restart.
    if let Err(e) = state::save_blocks(&c.state_dir, active) {
        tracing::error!(error = %format!("{e:#}"), ?active, "cannot save the blocks in use; pods get no address from new blocks until it can");
        return;
    }
    let gateways: Vec<Ipv4Net> = active.iter().map(|b| gateway_of(*b)).collect();
    match net.sync_addresses(&c.bridge, c.range, &gateways).await {
        Ok((added, deleted)) => {
            if !added.is_empty() || !deleted.is_empty() {
                tracing::info!(bridge = %c.bridge, ?added, ?deleted, "gateways on the bridge");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, bridge = %c.bridge, "cannot put the gateways on the bridge")
        }
    }
    let first = gateways.first().map(|g| g.addr());
    if *gateway.borrow() != first {
        if let Err(e) = net.route_to_tun_from(c.range, &c.tun, first).await {
            tracing::warn!(error = %e, "cannot set the source address of the route into the mesh");
        }
        gateway.send_replace(first);
    }
    if let Err(e) = shared.ipam.set_blocks(active) {
        tracing::error!(error = %e, "cannot give the address pool its new blocks");
    }
}
