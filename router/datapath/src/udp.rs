//! The underlay UDP socket that carries handshakes, sealed packets and gossip.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use crate::DatapathError;

/// Binds the underlay UDP socket on `addr` and sizes its kernel buffers to `buf_bytes`.
///
/// The socket is nonblocking and has SO_REUSEADDR off, so a second meshd on the same port fails
/// with [`DatapathError::PortInUse`] instead of silently sharing it. Buffers are set with
/// SO_RCVBUFFORCE/SO_SNDBUFFORCE (which ignore `net.core.rmem_max`, CAP_NET_ADMIN needed) and
/// fall back to SO_RCVBUF/SO_SNDBUF, which the kernel caps at the sysctl maximum.
///
/// Must be called inside a tokio runtime.
pub fn bind_udp(
    addr: SocketAddr,
    buf_bytes: usize,
) -> Result<tokio::net::UdpSocket, DatapathError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(DatapathError::NoRuntime { what: "bind_udp" });
    }
    // std never sets SO_REUSEADDR on UDP sockets.
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| match e.raw_os_error() {
        Some(libc::EADDRINUSE) => DatapathError::PortInUse { addr },
        Some(libc::EADDRNOTAVAIL) => DatapathError::AddrNotAvailable { addr },
        _ => DatapathError::io(format!("bind UDP {addr}"), e),
    })?;
    socket
        .set_nonblocking(true)
        .map_err(|e| DatapathError::io("make the UDP socket nonblocking", e))?;

    let size = libc::c_int::try_from(buf_bytes).unwrap_or(libc::c_int::MAX);
    let fd = socket.as_raw_fd();
    set_buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, size, "SO_RCVBUF")?;
    set_buffer(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, size, "SO_SNDBUF")?;
    tracing::debug!(
        %addr,
        requested = buf_bytes,
        rcvbuf = getsockopt_int(fd, libc::SO_RCVBUF).ok(),
        sndbuf = getsockopt_int(fd, libc::SO_SNDBUF).ok(),
        "bound underlay UDP socket"
    );

    tokio::net::UdpSocket::from_std(socket)
        .map_err(|e| DatapathError::io("register the UDP socket with tokio", e))
}

fn set_buffer(
    fd: RawFd,
    force: libc::c_int,
    plain: libc::c_int,
    size: libc::c_int,
    name: &str,
) -> Result<(), DatapathError> {
    if setsockopt_int(fd, force, size).is_ok() {
        return Ok(());
    }
    setsockopt_int(fd, plain, size)
        .map_err(|e| DatapathError::io(format!("set {name} to {size} bytes"), e))
}

fn setsockopt_int(fd: RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its exact size; the kernel only
    // reads from the pointer during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an integer SOL_SOCKET option, e.g. the effective SO_RCVBUF (the kernel reports double
/// the requested size, the other half being its bookkeeping).
pub fn getsockopt_int(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals; `len` holds the size of `value`, so the kernel
    // writes at most that many bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}
