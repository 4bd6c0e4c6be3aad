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
