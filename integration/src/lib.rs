//! Multi-host tests of the real `meshd` and `meshctl` binaries, on one machine.
//!
//! A [`Topology`] builds "hosts" as network namespaces joined by veths to a bridge in a
//! "switch" namespace (underlay 198.18.0.0/15), starts `meshd` in them, attaches "pods"
//! (more namespaces, veth to the host's `mesh0` bridge), captures underlay traffic and
//! re-sends datagrams. Dropping it ends every process it started, by PID, and deletes every
//! namespace it created, also when a test panics.
//!
//! It never touches the machine's own namespace: every link is created inside a namespace
//! of its own. It needs root, `ip` (iproute2), `tcpdump`, `socat`, `ping` and `kill`.
//! It does not build the binaries: `cargo build --workspace` first (or set `MESH_BIN_DIR`).
//!
//! Files: `topology.rs` (hosts, pods, links), `capture.rs` (underlay captures), `process.rs`
//! (processes started and ended by PID), `podman.rs`, `cni.rs` (running `mesh-cni` as a
//! runtime does), `fake_apiserver.rs` (a fake Kubernetes API server for `--kube` tests: Nodes
//! with list/watch, bookmarks, 410, merge patch; controlled over a Unix socket). Binaries:
//! `mesh-demo` (`scripts/demo.sh`), `mesh-flood` (the spoofed-source handshake flooder of
//! `tests/flood.rs`), `mesh-flood-bench` (`scripts/bench-flood.sh`) and `fake-apiserver`.
//! Each file under `tests/` says in its `//!` what it proves.
#![forbid(unsafe_code)]

pub mod api;
pub mod capture;
mod cmd;
pub mod cni;
pub mod fake_apiserver;
pub mod podman;
pub mod process;
pub mod topology;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use capture::{Capture, CapturedPacket, Frame, UdpDatagram};
pub use podman::Podman;
pub use process::Proc;
pub use topology::{Host, MESHD_PORT, MeshdOpts, Pod, PodOpts, Topology, random_secret};

/// Bound of a `meshd` that is expected to exit by itself (refusing its input, `reset`, ...).
pub const MESHD_EXIT_BOUND: Duration = Duration::from_secs(30);

/// A command's output as text (lossy UTF-8).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything a finished command printed, for assertion messages.
pub fn describe(out: &std::process::Output) -> String {
    format!(
        "status {}; stdout: {:?}; stderr: {:?}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Panics with a clear message unless the process runs as root (effective uid 0).
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .map(str::to_owned);
    if euid.as_deref() != Some("0") {
        panic!(
            "mesh integration tests create network namespaces and must run as root \
             (effective uid is {euid:?}); run `sudo -E cargo test -p mesh-integration` or \
             scripts/test.sh as root"
        );
    }
}

/// Where `meshd` and `meshctl` are: `$MESH_BIN_DIR`, else the directory of the running
/// executable if `meshd` is there (the demo), else `$CARGO_TARGET_DIR/debug`, else the
/// workspace's `target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .filter(|dir| dir.join("meshd").is_file())
    {
        return dir;
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("debug");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug")
}

/// The `meshd` binary in `bin_dir`, or an error saying how to build it.
pub fn meshd_bin(bin_dir: &std::path::Path) -> Result<PathBuf, String> {
    let meshd = bin_dir.join("meshd");
    if meshd.is_file() {
        Ok(meshd)
    } else {
        Err(format!(
            "meshd not found at {}: run `cargo build --workspace` first",
            meshd.display()
        ))
    }
}

/// Calls `probe` every `poll` until it returns `Ok` or `timeout` has passed. `probe`
/// returns `Err` with what it saw; the error names `what`, the timeout and the last of
/// those. The timeout is only a bound to fail, never a measurement.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(seen) if started.elapsed() >= timeout => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; last seen: {seen}"
                ));
            }
            Err(_) => std::thread::sleep(poll),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_reports_the_last_observation() {
        let mut n = 0;
        let err = wait_until(
            "n to reach 1000",
            Duration::from_millis(50),
            Duration::from_millis(5),
            || {
                n += 1;
                Err::<(), _>(format!("n = {n}"))
            },
        )
        .expect_err("never satisfied");
        assert!(err.contains("n to reach 1000"), "{err}");
        assert!(err.contains(&format!("n = {n}")), "{err}");
    }

    #[test]
    fn wait_until_returns_the_value() {
        let mut n = 0;
        let v = wait_until(
            "n > 2",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                if n > 2 {
                    Ok(n)
                } else {
                    Err(format!("n = {n}"))
                }
            },
        );
        assert_eq!(v, Ok(3));
    }
}
