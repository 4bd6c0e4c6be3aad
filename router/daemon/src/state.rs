//! The state directory: the node's static key (`node.key`, created once, mode 0600), the
//! peers it has had sessions with (`peers.json`), so a restarted node reconnects at once, and
//! the pod addresses it handed out (`ipam.json`), so a restart never hands one out twice.

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
    let path = dir.join(IPAM_FILE);
    let tmp: PathBuf = dir.join(format!("{IPAM_FILE}.tmp"));
    let text = serde_json::to_string_pretty(state)?;
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
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
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
