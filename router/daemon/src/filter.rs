//! meshd's side of its nftables filter (`mesh_datapath::install_filter`): put in place at
//! start, before the bridge exists and before forwarding is on, and read back at scrape time
//! by the metrics and by `meshctl debug`.
//!
//! The table stays when meshd stops or dies, as the bridge does, so the pods are never
//! exposed while meshd restarts. Only a start that fails right after creating the table
//! takes it away again (a table some earlier run left stays: it protects the pods that run
//! on). `meshd reset` removes it.

use anyhow::Result;
use mesh_api::{DebugFilter, DebugFilterCounter, FilterState};
use mesh_datapath::{FILTER_FAMILY, FILTER_TABLE, FilterSpec, InstalledFilter};

use crate::config::Config;

/// The filter for `config`'s range, bridge and TUN device.
pub(crate) fn spec(config: &Config) -> FilterSpec {
    FilterSpec {
        range: config.range,
        bridge: config.bridge.clone(),
        tun: config.tun.clone(),
    }
}

/// The table meshd installed, and whether this start created it (then a failed start
/// removes it again, on drop, unless [`Installed::keep`] was called).
#[derive(Debug)]
pub(crate) struct Installed {
    /// What the kernel had right after meshd installed it: `meshctl debug` compares with it.
    pub(crate) filter: InstalledFilter,
    remove_on_drop: bool,
}

impl Installed {
    /// The start went through: the table stays whatever happens to meshd.
    pub(crate) fn keep(mut self) -> InstalledFilter {
        self.remove_on_drop = false;
        std::mem::take(&mut self.filter)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.remove_on_drop
            && let Err(e) = mesh_datapath::remove_filter()
        {
            tracing::warn!(error = %e, "cannot remove the filter after a failed start");
        }
    }
}

/// Replaces meshd's table with the one for `config`, in one transaction. Fails with the
/// missing piece named when nftables is unusable, having changed nothing.
pub(crate) fn install(config: &Config) -> Result<Installed> {
    let existed = mesh_datapath::read_filter()?.is_some();
    let filter = mesh_datapath::install_filter(&spec(config))?;
    tracing::info!(
        table = format!("{FILTER_FAMILY} {FILTER_TABLE}"),
        range = %config.range,
        replaced = existed,
        "filter in place: the cluster range reaches the bridge only from the bridge, the TUN device and the host's own NAT"
    );
    Ok(Installed {
        filter,
        remove_on_drop: !existed,
    })
}

/// The table as the kernel has it now (`nft` runs on a blocking thread).
pub(crate) async fn read() -> Result<Option<InstalledFilter>, String> {
    match tokio::task::spawn_blocking(mesh_datapath::read_filter).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the nft task failed: {e}")),
    }
}

/// What `meshctl debug` shows of the table: `expected` is what meshd installed, `now` what
/// [`read`] found.
pub(crate) fn debug(
    expected: &InstalledFilter,
    now: Result<Option<InstalledFilter>, String>,
) -> DebugFilter {
    let table = format!("{FILTER_FAMILY} {FILTER_TABLE}");
    let now = match now {
        Ok(now) => now,
        Err(error) => {
            return DebugFilter {
                table,
                state: FilterState::Unreadable,
                error: Some(error),
                ..DebugFilter::default()
            };
        }
    };
    let (state, difference) =
        crate::debug::checks::filter_state(&expected.shape, now.as_ref().map(|f| &f.shape[..]));
    DebugFilter {
        table,
        state,
        difference,
        error: None,
        counters: now
            .map(|f| {
                f.counters
                    .into_iter()
                    .map(|(name, c)| DebugFilterCounter {
                        name,
                        packets: c.packets,
                        bytes: c.bytes,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
