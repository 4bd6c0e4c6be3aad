//! The underlay UDP socket, batched: `recvmmsg` with UDP GRO (several datagrams of one
//! flow arrive coalesced in one buffer), and `sendmsg` with UDP GSO (one call sends a run of
//! equal-sized datagrams to one destination), through quinn-udp, which detects what the
//! kernel supports and falls back by itself.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

pub use quinn_udp::{BATCH_SIZE, RecvMeta};
use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};
use tokio::io::Interest;

use crate::DatapathError;

/// Most payload bytes one segmented send may carry: the UDP length field is 16 bits, and
/// the kernel refuses (EMSGSIZE) a GSO buffer whose datagram would exceed it.
const MAX_GSO_BYTES: usize = 65_507;

/// A UDP socket with batched receive and segmented send.
#[derive(Debug)]
pub struct BatchUdp {
    socket: tokio::net::UdpSocket,
    state: UdpSocketState,
    /// Cleared after the kernel refused a segmented send; single sends from then on.
    gso_ok: AtomicBool,
}

impl BatchUdp {
    /// Wraps a bound socket (see [`crate::bind_udp`]).
    pub fn new(socket: tokio::net::UdpSocket) -> Result<Self, DatapathError> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))
            .map_err(|e| DatapathError::io("configure the UDP socket for batching", e))?;
        Ok(Self {
            socket,
            state,
            gso_ok: AtomicBool::new(true),
        })
    }

    /// Datagrams the kernel takes in one segmented send (1 when GSO is off).
    pub fn max_gso_segments(&self) -> usize {
        if self.gso_ok.load(Ordering::Relaxed) {
            self.state.max_gso_segments()
        } else {
            1
        }
    }

    /// Datagrams the kernel may coalesce into one receive buffer (1 when GRO is off).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Receives up to `bufs.len()` buffers; each `meta[i]` says how many bytes `bufs[i]` got
    /// and at which stride the datagrams in it start. Waits until at least one arrives.
    pub async fn recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        loop {
            self.socket.readable().await?;
            match self.socket.try_io(Interest::READABLE, || {
                self.state.recv(UdpSockRef::from(&self.socket), bufs, meta)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Sends `contents` to `to`: one datagram, or, with `segment` set, datagrams of
    /// `segment` bytes each (the last may be shorter) in as few calls as the kernel allows.
    pub async fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let segment = segment.filter(|s| *s < contents.len());
        match segment {
            Some(seg) if self.gso_ok.load(Ordering::Relaxed) => {
                let segments = self
                    .state
                    .max_gso_segments()
                    .min(MAX_GSO_BYTES / seg)
                    .max(1);
                let per_call = segments * seg;
                for chunk in contents.chunks(per_call) {
                    let seg = (chunk.len() > seg).then_some(seg);
                    if let Err(e) = self.send_one(to, chunk, seg).await {
                        if seg.is_some() && e.raw_os_error() == Some(libc::EIO) {
                            // The device refused segmentation offload: never ask again.
                            self.gso_ok.store(false, Ordering::Relaxed);
                            tracing::warn!(error = %e, "UDP GSO refused; sending datagrams one by one");
                            for d in chunk.chunks(seg.unwrap_or(chunk.len())) {
                                self.send_one(to, d, None).await?;
                            }
                        } else {
                            return Err(e);
                        }
                    }
                }
                Ok(())
            }
            Some(seg) => {
                for d in contents.chunks(seg) {
                    self.send_one(to, d, None).await?;
                }
                Ok(())
            }
            None => self.send_one(to, contents, None).await,
        }
    }

    async fn send_one(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let t = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state.try_send(UdpSockRef::from(&self.socket), &t)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (BatchUdp, tokio::net::UdpSocket) {
        let a = crate::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let b = crate::bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        (BatchUdp::new(a).unwrap(), b)
    }

    #[tokio::test]
    async fn segmented_send_arrives_as_separate_datagrams_with_a_short_last_one() {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut contents = Vec::new();
        for i in 0..5u8 {
            contents.extend(std::iter::repeat_n(i, 100));
        }
        contents.extend([9u8; 30]);
        a.send(to, &contents, Some(100)).await.unwrap();
        let mut buf = [0u8; 2000];
        let mut got = Vec::new();
        for _ in 0..6 {
            let (n, _) = b.recv_from(&mut buf).await.unwrap();
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got.len(), 6);
        for (i, d) in got.iter().take(5).enumerate() {
            assert_eq!(d, &vec![i as u8; 100]);
        }
        assert_eq!(got[5], vec![9u8; 30]);
    }

    #[tokio::test]
    async fn a_run_longer_than_one_udp_datagram_is_split_into_several_sends() {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        // 60 segments of 1452 bytes: 87 KB, more than one GSO buffer may carry.
        let contents: Vec<u8> = (0..60u8)
            .flat_map(|i| std::iter::repeat_n(i, 1452))
            .collect();
        a.send(to, &contents, Some(1452)).await.unwrap();
        let mut buf = [0u8; 2000];
        for i in 0..60u8 {
            let (n, _) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &[i; 1452][..], "datagram {i}");
        }
    }

    #[tokio::test]
    async fn batched_receive_splits_at_the_stride() {
        let (a, b) = pair();
        let b = BatchUdp::new(b).unwrap();
        let to = b.socket.local_addr().unwrap();
        let mut contents = vec![1u8; 200];
        contents.extend([2u8; 200]);
        contents.extend([3u8; 50]);
        a.send(to, &contents, Some(200)).await.unwrap();
        let mut storage = vec![[0u8; 65536]; 4];
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let mut meta = [RecvMeta::default(); 4];
            let mut slices: Vec<IoSliceMut<'_>> = storage
                .iter_mut()
                .map(|s| IoSliceMut::new(&mut s[..]))
                .collect();
            let n = b.recv(&mut slices, &mut meta).await.unwrap();
            for (i, m) in meta.iter().take(n).enumerate() {
                let data = &storage[i][..m.len];
                for d in data.chunks(m.stride) {
                    seen.push(d.to_vec());
                }
            }
        }
        assert_eq!(seen, vec![vec![1u8; 200], vec![2u8; 200], vec![3u8; 50]]);
    }
}
