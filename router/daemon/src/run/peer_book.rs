//! The peer book: endpoints added and forgotten at run time (`meshctl connect`/`forget`),
//! and what `peers.json` keeps of them.

use super::*;

impl Shared {
    /// `meshctl connect`: tries `addr` as a bootstrap endpoint from now on (whoever answers
    /// there is saved in `peers.json` once reached, like any peer; one reached already is
    /// saved now). `false` if it is tried already.
    pub(crate) fn connect_endpoint(&self, addr: SocketAddr) -> Result<bool> {
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr);
        let (added, reached) = self.update(|node, now| {
            let added = node.add_bootstrap(now, addr);
            let reached: Vec<PublicKey> = node
                .peer_status(now)
                .iter()
                .filter(|p| {
                    p.state == mesh_api::PeerState::Established && p.endpoint == addr.to_string()
                })
                .filter_map(|p| p.public_key.parse().ok())
                .collect();
            (added, reached)
        });
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for k in reached {
            changed |= known.insert(k, addr) != Some(addr);
        }
        if changed {
            let list: Vec<_> = known.iter().map(|(k, e)| (*k, *e)).collect();
            state::save_peers(&self.config.state_dir, &list)?;
        }
        Ok(added)
    }

    /// `meshctl forget`: stops trying `addr`, removes the peers saved at that endpoint from
    /// `peers.json` and saves none there again until `meshctl connect` names it. Whether it
    /// was a bootstrap endpoint, and the keys removed; `None` when it was neither.
    pub(crate) fn forget_endpoint(
        &self,
        addr: SocketAddr,
    ) -> Result<Option<(bool, Vec<PublicKey>)>> {
        let was_bootstrap = self.node().forget_bootstrap(addr);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<PublicKey> = known
            .iter()
            .filter(|(_, e)| **e == addr)
            .map(|(k, _)| *k)
            .collect();
        if !was_bootstrap && keys.is_empty() {
            return Ok(None);
        }
        self.forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr);
        if !keys.is_empty() {
            for k in &keys {
                known.remove(k);
            }
            let list: Vec<_> = known.iter().map(|(k, e)| (*k, *e)).collect();
            state::save_peers(&self.config.state_dir, &list)?;
        }
        Ok(Some((was_bootstrap, keys)))
    }
}
