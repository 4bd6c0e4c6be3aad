//! Reading a `meshd`'s local API from tests that have only its socket path, through the
//! `meshctl` binary (which owns the API client), so the harness speaks no HTTP of its own.

use std::path::Path;
use std::process::Command;

/// `meshctl --socket SOCKET ARGS… -o json`, decoded as `T`.
pub fn meshctl_json<T: serde::de::DeserializeOwned>(
    socket: &Path,
    args: &[&str],
) -> Result<T, String> {
    let meshctl = crate::bin_dir().join("meshctl");
    let out = Command::new(&meshctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .args(["-o", "json"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", meshctl.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "meshctl {} on {}: {}",
            args.join(" "),
            socket.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_str(&stdout).map_err(|e| format!("meshctl {}: {e}: {stdout}", args.join(" ")))
}

/// meshd's address pool (`GET /v1/ipam`).
pub fn ipam(socket: &Path) -> Result<mesh_api::IpamStatus, String> {
    meshctl_json(socket, &["ipam"])
}

/// An address for attachment `container_id`/eth0 (`meshctl ipam allocate`), one try.
pub fn allocate(socket: &Path, container_id: &str) -> Result<mesh_api::IpamAllocated, String> {
    meshctl_json(socket, &["ipam", "allocate", container_id])
}

/// [`allocate`], tried again every `poll` while meshd answers 503 ("try again": automatic
/// IPAM is getting the node a block), up to `timeout`; other errors end it at once.
pub fn allocate_retrying(
    socket: &Path,
    container_id: &str,
    timeout: std::time::Duration,
    poll: std::time::Duration,
) -> Result<mesh_api::IpamAllocated, String> {
    let started = std::time::Instant::now();
    loop {
        match allocate(socket, container_id) {
            Err(e) if e.contains("answered 503") && started.elapsed() < timeout => {
                std::thread::sleep(poll);
            }
            other => return other,
        }
    }
}

/// Frees attachment `container_id`/eth0's address (`meshctl ipam release`).
pub fn release(socket: &Path, container_id: &str) -> Result<mesh_api::IpamReleased, String> {
    meshctl_json(socket, &["ipam", "release", container_id])
}
