//! The node's pod address pool as the API serves it: a [`mesh_ipam::LocalPool`] over this
//! node's blocks (`--block`, or with automatic IPAM the blocks the node uses for pods, which
//! change while it runs: [`IpamService::set_blocks`]), written to `ipam.json` in the state
//! directory after every change and read back at start. The decisions are `mesh-ipam`'s;
//! this module only locks, persists and translates to `mesh-api` types.
//!
//! A change is applied to a copy of the pool and becomes visible only once the copy is on
//! disk, so a failed write refuses the request instead of handing out an address a restarted
//! meshd would not know about.
//!
//! ## DNS names (extension point for the DNS issue)
//!
//! The pod's name and namespace arrive with each allocation ([`mesh_ipam::PodRef`]) and every
//! freed allocation is returned by [`IpamService::release`] and [`IpamService::gc`]. When
//! meshd gets its record store, registering `POD.NAMESPACE` belongs right after a *fresh*
//! allocation in [`IpamService::allocate`], and unregistering after each allocation those
//! two return — the one place every attach and detach passes through. Nothing registers
//! names today.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use anyhow::Result;
use ipnet::Ipv4Net;
use mesh_ipam::{AllocateError, Allocation, AttachmentKey, LocalPool, PodRef};

use crate::config::Config;
use crate::state;

/// Why an IPAM request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IpamError {
    /// The request names an invalid attachment (the caller's fault).
    #[error("{0}")]
    BadRequest(#[from] mesh_ipam::KeyError),
    /// No address left, or no block at all.
    #[error("{0}")]
    Allocate(#[from] AllocateError),
    /// Automatic IPAM: no free address until the node gets (another) block; the caller
    /// should try again shortly.
    #[error("{0}")]
    Waiting(String),
    /// The change could not be written to the state directory (the node's fault).
    #[error("cannot save the address pool: {0:#}")]
    Persist(anyhow::Error),
}

/// The pool, its file and what a pod needs besides its address.
#[derive(Debug)]
pub(crate) struct IpamService {
    pool: Mutex<LocalPool>,
    /// The pool's blocks when the node was last asked for one more (automatic IPAM): it is
    /// asked again only once they changed, so retries do not ask for a block each.
    asked_with: Mutex<Option<Vec<Ipv4Net>>>,
    state_dir: PathBuf,
    range: Ipv4Net,
    mtu: u32,
    bridge: String,
}

impl IpamService {
    /// Reads `ipam.json` (if any) into a pool over `blocks` (the configured block, or the
    /// blocks in use of automatic IPAM). Allocations outside them are kept and logged; an
    /// unreadable file is an error.
    pub(crate) fn load(config: &Config, blocks: &[Ipv4Net]) -> Result<Self> {
        let blocks = blocks.iter().copied();
        let pool = match state::load_ipam(&config.state_dir)? {
            None => LocalPool::new(blocks),
            Some(saved) => {
                let (pool, report) = LocalPool::restore(blocks, saved);
                for a in &report.stranded {
                    tracing::warn!(
                        attachment = %a.key,
                        address = %a.address,
                        block = %a.block,
                        "allocation outside this node's blocks kept (the pod may still use it); \
                         it is freed when its pod goes, and never handed out again"
                    );
                }
                for a in &report.duplicates {
                    tracing::warn!(
                        attachment = %a.key,
                        address = %a.address,
                        "dropped a duplicate entry of the address pool file"
                    );
                }
                tracing::info!(
                    allocations = pool.allocations().count(),
                    stranded = report.stranded.len(),
                    "loaded the address pool"
                );
                pool
            }
        };
        Ok(Self {
            pool: Mutex::new(pool),
            asked_with: Mutex::new(None),
            state_dir: config.state_dir.clone(),
            range: config.range,
            mtu: config.mtu,
            bridge: config.bridge.clone(),
        })
    }

    fn pool(&self) -> MutexGuard<'_, LocalPool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The blocks addresses are handed out from.
    pub(crate) fn blocks(&self) -> Vec<Ipv4Net> {
        self.pool().blocks().to_vec()
    }

    /// Automatic IPAM: hands addresses out of `blocks` from now on (persisted first).
    /// Allocations outside them are kept, as stranded, and logged.
    pub(crate) fn set_blocks(&self, blocks: &[Ipv4Net]) -> Result<(), IpamError> {
        let stranded = self.update(|pool| Ok(pool.set_blocks(blocks.iter().copied())))?;
        for a in &stranded {
            tracing::warn!(
                attachment = %a.key,
                address = %a.address,
                block = %a.block,
                "this node no longer hands out addresses of this allocation's block; it is kept \
                 (the pod may still use it) and freed when its pod goes"
            );
        }
        Ok(())
    }

    /// Whether to ask the node for one more block now that the pool is full: only when its
    /// blocks changed since the last time (else the node is getting one already). Records
    /// the ask.
    pub(crate) fn should_ask_for_block(&self) -> bool {
        let blocks = self.blocks();
        let mut asked = self.asked_with.lock().unwrap_or_else(|e| e.into_inner());
        if asked.as_ref() == Some(&blocks) {
            return false;
        }
        *asked = Some(blocks);
        true
    }

    /// Applies `change` to a copy of the pool; if it changed anything, saves the copy and
    /// makes it current.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut LocalPool) -> Result<T, IpamError>,
    ) -> Result<T, IpamError> {
        let mut pool = self.pool();
        let mut next = pool.clone();
        let out = change(&mut next)?;
        if next != *pool {
            state::save_ipam(&self.state_dir, &next.state()).map_err(IpamError::Persist)?;
            *pool = next;
        }
        Ok(out)
    }

    pub(crate) fn allocate(
        &self,
        req: mesh_api::IpamAllocateRequest,
    ) -> Result<mesh_api::IpamAllocated, IpamError> {
        let key = AttachmentKey::new(req.container_id, req.ifname)?;
        let pod = PodRef {
            pod_name: req.pod_name.filter(|s| !s.is_empty()),
            pod_namespace: req.pod_namespace.filter(|s| !s.is_empty()),
            network: req.network.filter(|s| !s.is_empty()),
        };
        let got = self.update(|pool| Ok(pool.allocate(key, pod)?))?;
        let a = &got.allocation;
        if got.fresh {
            tracing::info!(
                attachment = %a.key,
                address = %a.address_net(),
                pod = a.pod.pod_name.as_deref().unwrap_or(""),
                namespace = a.pod.pod_namespace.as_deref().unwrap_or(""),
                "allocated pod address"
            );
        }
        Ok(mesh_api::IpamAllocated {
            address: a.address_net().to_string(),
            gateway: a.gateway().to_string(),
            mtu: self.mtu,
            bridge: self.bridge.clone(),
            range: self.range.to_string(),
            fresh: got.fresh,
        })
    }

    pub(crate) fn release(
        &self,
        req: mesh_api::IpamReleaseRequest,
    ) -> Result<mesh_api::IpamReleased, IpamError> {
        let key = AttachmentKey::new(req.container_id, req.ifname)?;
        let freed = self.update(|pool| Ok(pool.release(&key)))?;
        if let Some(a) = &freed {
            tracing::info!(attachment = %a.key, address = %a.address, "released pod address");
        }
        Ok(mesh_api::IpamReleased {
            released: freed.map(|a| a.address_net().to_string()),
        })
    }

    pub(crate) fn gc(
        &self,
        req: mesh_api::IpamGcRequest,
    ) -> Result<mesh_api::IpamGcResult, IpamError> {
        let keep = req
            .keep
            .into_iter()
            .map(|k| AttachmentKey::new(k.container_id, k.ifname))
            .collect::<Result<Vec<_>, _>>()?;
        let network = req.network.filter(|n| !n.is_empty());
        let freed = self.update(|pool| {
            Ok(match &network {
                Some(n) => pool.gc_network(n, &keep),
                None => pool.gc(&keep),
            })
        })?;
        for a in &freed {
            tracing::info!(attachment = %a.key, address = %a.address, "garbage-collected pod address");
        }
        let pool = self.pool();
        Ok(mesh_api::IpamGcResult {
            released: freed.iter().map(|a| to_api(&pool, a)).collect(),
        })
    }

    /// The pool's part of the `ipam` answer (the ring's part is the node's: `run.rs`).
    pub(crate) fn status(&self) -> mesh_api::IpamStatus {
        let pool = self.pool();
        mesh_api::IpamStatus {
            range: self.range.to_string(),
            bridge: self.bridge.clone(),
            mtu: self.mtu,
            blocks: pool.blocks().iter().map(ToString::to_string).collect(),
            allocations: pool.allocations().map(|a| to_api(&pool, a)).collect(),
            used: pool.used(),
            free: pool.free(),
            mode: mesh_api::IpamMode::Fixed,
            block_prefix: 0,
            ring: None,
            block_use: pool
                .usage()
                .into_iter()
                .map(|(block, used, free)| mesh_api::IpamBlockUse {
                    block: block.to_string(),
                    used,
                    free,
                })
                .collect(),
            owners: Vec::new(),
        }
    }
}

fn to_api(pool: &LocalPool, a: &Allocation) -> mesh_api::IpamAllocation {
    mesh_api::IpamAllocation {
        container_id: a.key.container_id().to_owned(),
        ifname: a.key.ifname().to_owned(),
        address: a.address_net().to_string(),
        pod_name: a.pod.pod_name.clone(),
        pod_namespace: a.pod.pod_namespace.clone(),
        network: a.pod.network.clone(),
        stranded: !pool.is_usable(a.address),
    }
}
