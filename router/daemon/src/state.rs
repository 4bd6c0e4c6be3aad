//! The state directory: the node's static key (`node.key`, created once, mode 0600), the
//! peers it has had sessions with (`peers.json`), so a restarted node reconnects at once, and
//! the pod addresses it handed out (`ipam.json`), so a restart never hands one out twice.
//! With automatic IPAM also its replica of the cluster's address ring (`ring.json`), so it
//! never forgets what it owns or gave away, and the blocks it hands pod addresses out of
//! (`blocks.json`), so they stay its blocks in use (never donated) after a restart.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mesh_crypto::{PublicKey, StaticKeypair};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the node key in the state directory.
pub(crate) const KEY_FILE: &str = "node.key";
/// File name of the remembered peers.
pub(crate) const PEERS_FILE: &str = "peers.json";
/// File name of the address pool's allocations.
pub(crate) const IPAM_FILE: &str = "ipam.json";
/// File name of the address ring replica (automatic IPAM).
pub(crate) const RING_FILE: &str = "ring.json";
/// File name of the blocks in use for pods (automatic IPAM).
pub(crate) const BLOCKS_FILE: &str = "blocks.json";

/// Creates the state directory (0700) if it does not exist.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))
}

/// Loads the node key, or creates it (0600) from `seed` when there is none.
/// Returns the key pair and whether it was created.
pub(crate) fn load_or_create_key(dir: &Path, seed: [u8; 32]) -> Result<(StaticKeypair, bool)> {
    let path = dir.join(KEY_FILE);
    match std::fs::metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "node key {} is readable by other users (mode {mode:o}): chmod 600 it",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read node key {}", path.display()))?;
            let bytes = STANDARD
                .decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            let Some(bytes) = bytes else {
                bail!(
                    "node key {} is not a base64 32-byte key (move it away to make a new one)",
                    path.display()
                );
            };
            Ok((StaticKeypair::from_secret_bytes(bytes), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = StaticKeypair::generate(seed);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create node key {}", path.display()))?;
            f.write_all(STANDARD.encode(pair.secret_bytes()).as_bytes())
                .and_then(|()| f.write_all(b"\n"))
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write node key {}", path.display()))?;
            Ok((pair, true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read node key {}", path.display())),
    }
}

/// One remembered peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KnownPeer {
    pub(crate) public_key: String,
    pub(crate) endpoint: SocketAddr,
}

/// Reads `peers.json`; a missing or unreadable file is an empty list (it is a cache).
pub(crate) fn load_peers(dir: &Path) -> Vec<(PublicKey, SocketAddr)> {
    let path = dir.join(PEERS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    match serde_json::from_str::<Vec<KnownPeer>>(&text) {
        Ok(list) => list
            .into_iter()
            .filter_map(|p| Some((p.public_key.parse().ok()?, p.endpoint)))
            .collect(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable peers file");
            Vec::new()
        }
    }
}

/// Writes `peers.json` atomically (temp file + rename).
pub(crate) fn save_peers(dir: &Path, peers: &[(PublicKey, SocketAddr)]) -> Result<()> {
    let list: Vec<KnownPeer> = peers
        .iter()
        .map(|(k, e)| KnownPeer {
            public_key: k.to_string(),
            endpoint: *e,
        })
        .collect();
    let path = dir.join(PEERS_FILE);
    let tmp: PathBuf = dir.join(format!("{PEERS_FILE}.tmp"));
    let text = serde_json::to_string_pretty(&list)?;
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads `ipam.json`; `None` when there is none yet. Unlike the peers file it is no cache:
/// an unreadable file is an error, since starting empty could hand a live pod's address to
/// another pod.
pub(crate) fn load_ipam(dir: &Path) -> Result<Option<mesh_ipam::PoolState>> {
    let path = dir.join(IPAM_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let state: mesh_ipam::PoolState = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a valid address pool file; fix it, or move it away to start with no \
             allocations (pods still running would then clash with new ones)",
            path.display()
        )
    })?;
    if state.version != mesh_ipam::PoolState::VERSION {
        bail!(
            "{} has format version {}, this meshd reads version {}: use the meshd that wrote it",
            path.display(),
            state.version,
            mesh_ipam::PoolState::VERSION
        );
    }
    Ok(Some(state))
}

/// Writes `ipam.json` atomically and durably (temp file, fsync, rename), so a crash leaves
/// either the old or the new allocations, never a torn file.
pub(crate) fn save_ipam(dir: &Path, state: &mesh_ipam::PoolState) -> Result<()> {
    save_durably(dir, IPAM_FILE, &serde_json::to_string_pretty(state)?)
}

/// Writes `dir/name` (mode 0600) atomically and durably: temp file, fsync, rename, fsync of
/// the directory, so a crash leaves the old or the new contents, never a torn file, and a
/// write that returned survives a power loss.
fn save_durably(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    let tmp: PathBuf = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    // The rename itself is durable once the directory is.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads `ring.json`; `None` when there is none. An unreadable file, one of another format
/// version, or one written for another range or block size is an error: starting from an
/// empty replica could make this node forget blocks it gave away and hand their addresses
/// out again.
pub(crate) fn load_ring(
    dir: &Path,
    range: ipnet::Ipv4Net,
    block_prefix: u8,
) -> Result<Option<mesh_ipam::RingState>> {
    let path = dir.join(RING_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let reset = "`meshd reset` makes this node a new member that gets fresh blocks";
    let state: mesh_ipam::RingState = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a valid address ring file ({reset})",
            path.display()
        )
    })?;
    if state.range != range || state.block_prefix != block_prefix {
        bail!(
            "{} was written for --range {} with /{} blocks, but this meshd runs with --range \
             {range} and --block-size {block_prefix}: every member of a cluster must use the \
             same; start it with the old values, or {reset}",
            path.display(),
            state.range,
            state.block_prefix
        );
    }
    if let Err(e) = mesh_ipam::Ring::from_state(state.clone()) {
        bail!("{}: {e} ({reset})", path.display());
    }
    Ok(Some(state))
}

/// Writes `ring.json` atomically and durably.
pub(crate) fn save_ring(dir: &Path, state: &mesh_ipam::RingState) -> Result<()> {
    save_durably(dir, RING_FILE, &serde_json::to_string(state)?)
}

/// `blocks.json`: the blocks a node with automatic IPAM hands pod addresses out of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BlocksFile {
    version: u32,
    active: Vec<ipnet::Ipv4Net>,
}

/// Reads `blocks.json`; empty when there is none. An unreadable file is an error (the
/// blocks with pods in them must not be donated).
pub(crate) fn load_blocks(dir: &Path) -> Result<Vec<ipnet::Ipv4Net>> {
    let path = dir.join(BLOCKS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: BlocksFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a valid blocks file: fix it (it lists the blocks this node hands pod \
             addresses out of), or `meshd reset` the node",
            path.display()
        )
    })?;
    if file.version != 1 {
        bail!(
            "{} has format version {}, this meshd reads version 1: use the meshd that wrote it",
            path.display(),
            file.version
        );
    }
    Ok(file.active)
}

/// Writes `blocks.json` atomically and durably.
pub(crate) fn save_blocks(dir: &Path, active: &[ipnet::Ipv4Net]) -> Result<()> {
    let file = BlocksFile {
        version: 1,
        active: active.to_vec(),
    };
    save_durably(dir, BLOCKS_FILE, &serde_json::to_string_pretty(&file)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meshd-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn key_is_created_once_with_mode_0600_and_reused() {
        let d = tmpdir("key");
        ensure_dir(&d).unwrap();
        let (a, created) = load_or_create_key(&d, [7; 32]).unwrap();
        assert!(created);
        let mode = std::fs::metadata(d.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, created) = load_or_create_key(&d, [8; 32]).unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
        std::fs::set_permissions(d.join(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&d, [8; 32]).unwrap_err().to_string();
        assert!(err.contains("readable by other users"), "{err}");
        std::fs::write(d.join(KEY_FILE), "garbage").unwrap();
        std::fs::set_permissions(d.join(KEY_FILE), std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create_key(&d, [8; 32]).unwrap_err().to_string();
        assert!(err.contains("not a base64 32-byte key"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn ipam_round_trips_and_garbage_is_refused() {
        let d = tmpdir("ipam");
        ensure_dir(&d).unwrap();
        assert_eq!(load_ipam(&d).unwrap(), None);
        let mut pool = mesh_ipam::LocalPool::new(["10.32.1.0/24".parse().unwrap()]);
        let key = mesh_ipam::AttachmentKey::new("c1", "eth0").unwrap();
        pool.allocate(key, mesh_ipam::PodRef::default()).unwrap();
        save_ipam(&d, &pool.state()).unwrap();
        assert_eq!(load_ipam(&d).unwrap(), Some(pool.state()));
        std::fs::write(d.join(IPAM_FILE), "{").unwrap();
        let err = format!("{:#}", load_ipam(&d).unwrap_err());
        assert!(err.contains("not a valid address pool file"), "{err}");
        std::fs::write(d.join(IPAM_FILE), r#"{"version":9}"#).unwrap();
        let err = format!("{:#}", load_ipam(&d).unwrap_err());
        assert!(err.contains("format version 9"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn ring_and_blocks_round_trip_with_mode_0600_and_garbage_is_refused() {
        let d = tmpdir("ring");
        ensure_dir(&d).unwrap();
        let range: ipnet::Ipv4Net = "10.32.0.0/16".parse().unwrap();
        assert_eq!(load_ring(&d, range, 24).unwrap(), None);
        let mut ring = mesh_ipam::Ring::new(range, 24).unwrap();
        let me = [1u8; 32];
        ring.found(me, mesh_ipam::RingId::derive(&me, b"nonce"))
            .unwrap();
        save_ring(&d, &ring.state()).unwrap();
        let mode = std::fs::metadata(d.join(RING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_ring(&d, range, 24).unwrap(), Some(ring.state()));
        let err = format!("{:#}", load_ring(&d, range, 26).unwrap_err());
        assert!(
            err.contains("--block-size 26") && err.contains("/24 blocks"),
            "{err}"
        );
        std::fs::write(d.join(RING_FILE), "{").unwrap();
        let err = format!("{:#}", load_ring(&d, range, 24).unwrap_err());
        assert!(err.contains("not a valid address ring file"), "{err}");

        assert!(load_blocks(&d).unwrap().is_empty());
        let blocks: Vec<ipnet::Ipv4Net> = vec![
            "10.32.0.0/24".parse().unwrap(),
            "10.32.7.0/24".parse().unwrap(),
        ];
        save_blocks(&d, &blocks).unwrap();
        assert_eq!(load_blocks(&d).unwrap(), blocks);
        let mode = std::fs::metadata(d.join(BLOCKS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(d.join(BLOCKS_FILE), r#"{"version":2,"active":[]}"#).unwrap();
        let err = format!("{:#}", load_blocks(&d).unwrap_err());
        assert!(err.contains("format version 2"), "{err}");
        std::fs::write(d.join(BLOCKS_FILE), "[").unwrap();
        let err = format!("{:#}", load_blocks(&d).unwrap_err());
        assert!(err.contains("not a valid blocks file"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn peers_round_trip_and_garbage_is_empty() {
        let d = tmpdir("peers");
        ensure_dir(&d).unwrap();
        assert!(load_peers(&d).is_empty());
        let k = StaticKeypair::generate([1; 32]).public();
        let list = vec![(k, "198.18.0.2:6788".parse().unwrap())];
        save_peers(&d, &list).unwrap();
        assert_eq!(load_peers(&d), list);
        std::fs::write(d.join(PEERS_FILE), "{").unwrap();
        assert!(load_peers(&d).is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
