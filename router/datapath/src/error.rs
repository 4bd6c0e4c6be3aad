//! The one error type of this crate: each variant names the problem and what to do about it.

use std::io;
use std::net::SocketAddr;

/// Why setting up the data path failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatapathError {
    /// The process is neither root nor holds CAP_NET_ADMIN.
    #[error("meshd needs root (CAP_NET_ADMIN) to create network devices: run it as root")]
    NotRoot,
    /// Root, but CAP_NET_ADMIN was dropped (typical for a container started without it).
    #[error(
        "meshd runs as root but without CAP_NET_ADMIN: give the container --cap-add NET_ADMIN \
         (or run it privileged)"
    )]
    MissingCapability,
    /// `/dev/net/tun` does not exist.
    #[error(
        "/dev/net/tun is missing: load the tun module (modprobe tun) or give the container \
         /dev/net/tun (--device /dev/net/tun)"
    )]
    NoTunDevice,
    /// `/dev/net/tun` exists but cannot be opened.
    #[error(
        "/dev/net/tun cannot be opened ({cause}): give the container access to the device \
         (--device /dev/net/tun) and run meshd as root"
    )]
    TunUnavailable {
        /// What the kernel said (printed in the message, so not also a `source()`).
        cause: io::Error,
    },
    /// The TUN device exists and another process has it open.
    #[error("TUN device {name} is in use by another process: is another meshd running?")]
    TunBusy {
        /// Device name.
        name: String,
    },
    /// The UDP port is already bound.
    #[error("UDP {addr} is already in use: another meshd? pick another --listen port")]
    PortInUse {
        /// The address we tried to bind.
        addr: SocketAddr,
    },
    /// The address is not one of this host's addresses.
    #[error("cannot listen on UDP {addr}: no interface of this host has that address; use 0.0.0.0")]
    AddrNotAvailable {
        /// The address we tried to bind.
        addr: SocketAddr,
    },
    /// An interface name the kernel would refuse.
    #[error(
        "interface name {name:?} is invalid: it must be 1 to 15 bytes, without '/', ':' or \
         whitespace"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// An MTU out of range for the device.
    #[error("MTU {mtu} is out of range for {name}: use 68 to 65535")]
    InvalidMtu {
        /// Device name.
        name: String,
        /// The rejected MTU.
        mtu: u32,
    },
    /// A link with the bridge's name exists and is something else.
    #[error(
        "a link named {name} exists but is a {kind}, not a bridge: delete it (ip link del {name}) \
         or configure another bridge name"
    )]
    NotABridge {
        /// Link name.
        name: String,
        /// The kind the kernel reports (`veth`, `tun`, …, or `device` when it reports none).
        kind: String,
    },
    /// A link that must exist does not.
    #[error("network device {name} does not exist: create it first (for routes: the TUN device)")]
    LinkNotFound {
        /// Link name.
        name: String,
    },
    /// Called outside a tokio runtime: a bug in the caller.
    #[error("{what} must be called inside a tokio runtime (bug in meshd)")]
    NoRuntime {
        /// The function that was called.
        what: &'static str,
    },
    /// A netlink request failed.
    #[error("netlink: cannot {what}: {cause}")]
    Netlink {
        /// What we were doing, e.g. "add address 10.32.1.1/24 to mesh0".
        what: String,
        /// The error from rtnetlink (the kernel's errno for a refused request), printed in the
        /// message rather than chained, so it appears once.
        cause: rtnetlink::Error,
    },
    /// The `nft` command is not installed: meshd cannot put its filter in place.
    #[error(
        "nftables is unusable: the nft command was not found in PATH; install it (Debian and \
         Alpine package nftables)"
    )]
    NftMissing,
    /// `nft` ran and refused: the kernel lacks nf_tables, or the process lacks privileges.
    #[error("nftables is unusable: nft cannot {what}: {message}{hint}")]
    NftFailed {
        /// What we asked, e.g. "replace table inet mesh".
        what: String,
        /// nft's own first error line.
        message: String,
        /// What to do, derived from the message (empty when nothing specific is known).
        hint: &'static str,
    },
    /// A system call or file operation failed.
    #[error("cannot {what}: {cause}")]
    Io {
        /// What we were doing.
        what: String,
        /// The OS error, printed in the message rather than chained, so it appears once.
        cause: io::Error,
    },
}

impl DatapathError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            cause: source,
        }
    }

    pub(crate) fn netlink(what: impl Into<String>, source: rtnetlink::Error) -> Self {
        Self::Netlink {
            what: what.into(),
            cause: source,
        }
    }
}

/// The errno of a netlink error reply, if it is one.
pub(crate) fn netlink_errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}
