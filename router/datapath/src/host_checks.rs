//! Checks and settings of the host (or namespace) meshd runs in: privileges, `/dev/net/tun`,
//! IP forwarding, and entering a network namespace.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::DatapathError;

/// Bit of CAP_NET_ADMIN in the capability sets of `/proc/self/status`.
const CAP_NET_ADMIN: u32 = 12;

const TUN_PATH: &str = "/dev/net/tun";
const IP_FORWARD_PATH: &str = "/proc/sys/net/ipv4/ip_forward";

/// Checks, before anything is touched, that meshd may create network devices: effective uid 0
/// or CAP_NET_ADMIN in the effective set, and `/dev/net/tun` exists and opens.
///
/// Root without CAP_NET_ADMIN (a container started without it) is reported as
/// [`DatapathError::MissingCapability`], since the kernel would refuse every request later.
pub fn check_prerequisites() -> Result<(), DatapathError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| DatapathError::io("read /proc/self/status", e))?;
    check_privileges(&status)?;
    check_tun_device(Path::new(TUN_PATH))
}

/// The privilege half of [`check_prerequisites`], on the text of `/proc/self/status`.
fn check_privileges(status: &str) -> Result<(), DatapathError> {
    let cap_eff =
        status_field(status, "CapEff:").and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    let euid = status_field(status, "Uid:")
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u32>().ok());
    match (cap_eff, euid) {
        (Some(caps), _) if caps & (1 << CAP_NET_ADMIN) != 0 => Ok(()),
        // Without a readable capability set, trust the uid.
        (None, Some(0)) => Ok(()),
        (_, Some(0)) => Err(DatapathError::MissingCapability),
        _ => Err(DatapathError::NotRoot),
    }
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key))
}

fn check_tun_device(path: &Path) -> Result<(), DatapathError> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DatapathError::NoTunDevice),
        Err(cause) => Err(DatapathError::TunUnavailable { cause }),
    }
}

/// Writes 1 to `/proc/sys/net/ipv4/ip_forward`, which the kernel resolves to the network
/// namespace of the calling thread. Leaves the file alone when it already says 1.
pub fn enable_ip_forwarding() -> Result<(), DatapathError> {
    let current = std::fs::read_to_string(IP_FORWARD_PATH)
        .map_err(|e| DatapathError::io(format!("read {IP_FORWARD_PATH}"), e))?;
    if current.trim() == "1" {
        return Ok(());
    }
    std::fs::write(IP_FORWARD_PATH, "1\n")
        .map_err(|e| DatapathError::io(format!("write 1 to {IP_FORWARD_PATH}"), e))?;
    tracing::info!("enabled IPv4 forwarding");
    Ok(())
}

/// Moves the calling thread, and only it, into the network namespace at `path` (for example
/// `/var/run/netns/NAME`). Sockets, netlink connections and TUN devices the thread creates
/// afterwards belong to that namespace.
///
/// For tests and tools that drive the data path inside a namespace: run a current-thread tokio
/// runtime on that thread. meshd itself runs in whichever namespace it was started in.
pub fn enter_netns(path: &Path) -> Result<(), DatapathError> {
    let what = || format!("enter network namespace {}", path.display());
    let file = File::open(path).map_err(|e| DatapathError::io(what(), e))?;
    // SAFETY: `file` is an open descriptor that outlives the call; setns reads no memory of
    // ours and only changes the namespace of the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(DatapathError::io(what(), io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uid: &str, cap_eff: &str) -> String {
        format!("Name:\tmeshd\nUid:\t{uid}\nGid:\t0\t0\t0\t0\nCapEff:\t{cap_eff}\n")
    }

    #[test]
    fn root_with_all_capabilities_passes() {
        assert!(check_privileges(&status("0\t0\t0\t0", "000001ffffffffff")).is_ok());
    }

    #[test]
    fn unprivileged_user_with_net_admin_passes() {
        assert!(check_privileges(&status("1000\t1000\t1000\t1000", "0000000000001000")).is_ok());
    }

    #[test]
    fn unprivileged_user_without_capability_is_not_root() {
        let err = check_privileges(&status("1000\t1000\t1000\t1000", "0000000000000000"));
        assert!(matches!(err, Err(DatapathError::NotRoot)), "{err:?}");
    }

    #[test]
    fn root_without_net_admin_misses_capability() {
        // CAP_SYS_ADMIN and others, but bit 12 cleared.
        let err = check_privileges(&status("1000\t0\t0\t0", "000001ffffffefff"));
        assert!(
            matches!(err, Err(DatapathError::MissingCapability)),
            "{err:?}"
        );
    }

    #[test]
    fn missing_tun_device_is_named() {
        let err = check_tun_device(Path::new("/nonexistent/net/tun"));
        assert!(matches!(err, Err(DatapathError::NoTunDevice)), "{err:?}");
    }
}
