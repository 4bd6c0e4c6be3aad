//! The loops that move bytes: TUN to UDP (seal), UDP to TUN (open, with the bound on
//! handshake work per lock hold and the pause under a junk flood), and the node's timers.

use super::*;

pub(super) async fn send_all(shared: &Shared, udp: &BatchUdp, out: &mut Vec<Transmit>) {
    for t in out.drain(..) {
        shared.count(&shared.counters.udp_sends, 1);
        shared.count(&shared.counters.udp_send_datagrams, 1);
        if udp.send(t.to, &t.payload, None).await.is_err() {
            shared.udp_send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// TUN -> underlay. One read returns up to [`TUN_BATCH`] packets (a TCP super-packet split
/// into MTU-sized segments when offloads are on); each lands in its own fixed-size slot of
/// one buffer, `DATA_HEADER_LEN` bytes in, so it is sealed in place. A run of equal-sized
/// datagrams to one peer (plus one shorter last one) is then moved back to back and leaves
/// in one segmented (GSO) send.
pub(super) async fn tun_to_udp(
    shared: Arc<Shared>,
    tun: Arc<tun_rs::AsyncDevice>,
    udp: Arc<BatchUdp>,
    mtu: usize,
) -> Result<()> {
    let slot = DATA_HEADER_LEN + mtu + TAG_LEN;
    let mut original = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + MAX_DATAGRAM];
    let mut store = vec![0u8; slot * TUN_BATCH];
    let mut sizes = vec![0usize; TUN_BATCH];
    let mut sealed: Vec<Option<(SocketAddr, usize)>> = vec![None; TUN_BATCH];
    let mut pending = Vec::new();
    loop {
        let n = {
            let mut bufs: Vec<&mut [u8]> = store.chunks_mut(slot).collect();
            match tun
                .recv_multiple(&mut original, &mut bufs, &mut sizes, DATA_HEADER_LEN)
                .await
            {
                Ok(n) => n,
                // An error of the read itself (device gone, bad descriptor) ends the task;
                // any other is about one packet the offload code could not split (a bad
                // virtio header, a segment that does not fit): drop it, count it, go on.
                Err(e) if e.raw_os_error().is_some_and(|c| c != libc::EINTR) => {
                    return Err(e).context("reading the TUN device failed");
                }
                Err(e) => {
                    tracing::trace!(error = %e, "unsplittable packet from the TUN device");
                    shared.tun_read_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        };
        shared.count(&shared.counters.tun_reads, 1);
        shared.count(&shared.counters.tun_read_packets, n as u64);
        {
            let mut node = shared.node();
            let now = Instant::now();
            for (i, chunk) in store.chunks_mut(slot).take(n).enumerate() {
                sealed[i] = match node.encapsulate(now, chunk, sizes[i]) {
                    Encap::Send { to, len } => Some((to, len)),
                    Encap::Queued | Encap::Relayed | Encap::Dropped(_) => None,
                };
            }
            shared.drain(&mut node, &mut pending);
        }
        let mut i = 0;
        while i < n {
            let Some((to, len)) = sealed[i] else {
                i += 1;
                continue;
            };
            let (end, bytes) = pack_run(&mut store, slot, &sealed[..n], i, to, len);
            let segment = (end - i > 1).then_some(len);
            let start = i * slot;
            shared.count(&shared.counters.udp_sends, 1);
            shared.count(&shared.counters.udp_send_datagrams, (end - i) as u64);
            if udp
                .send(to, &store[start..start + bytes], segment)
                .await
                .is_err()
            {
                shared.udp_send_errors.fetch_add(1, Ordering::Relaxed);
            }
            i = end;
        }
        if !pending.is_empty() {
            send_all(&shared, &udp, &mut pending).await;
        }
    }
}

/// Finds the run that starts at datagram `first` (to `to`, `len` bytes): following
/// datagrams to the same peer of the same length, plus at most one shorter last one, and
/// moves them back to back behind the first, so the run is one GSO buffer of `len`-byte
/// segments. Returns the index after the run and the run's total bytes.
pub(super) fn pack_run(
    store: &mut [u8],
    slot: usize,
    sealed: &[Option<(SocketAddr, usize)>],
    first: usize,
    to: SocketAddr,
    len: usize,
) -> (usize, usize) {
    let base = first * slot;
    let mut end = first + 1;
    let mut bytes = len;
    while let Some(&Some((t, l))) = sealed.get(end) {
        if t != to || l > len {
            break;
        }
        // Datagram `end` moves from its slot to right behind the run; the destination
        // never passes the source (l <= len <= slot), so nothing unread is overwritten.
        let src = end * slot;
        // Full-size segments fill their slot exactly: already in place.
        if src != base + bytes {
            store.copy_within(src..src + l, base + bytes);
        }
        bytes += l;
        end += 1;
        if l < len {
            break;
        }
    }
    (end, bytes)
}

/// Underlay -> TUN. One receive returns up to `BATCH_SIZE` buffers, each holding one
/// datagram or several coalesced by UDP GRO; every datagram is opened in place and its
/// packet copied once, into a [`Coalescer`] that merges consecutive TCP segments of a flow
/// into super-packets when the TUN device takes them (offloads on). Its buffers (at most
/// [`TUN_FLUSH`], each up to 64 KB) are written one `write` each; a batch with more
/// packets than that is written in several rounds.
pub(super) async fn udp_to_tun(
    shared: Arc<Shared>,
    tun: Arc<tun_rs::AsyncDevice>,
    udp: Arc<BatchUdp>,
    offload: bool,
) -> Result<()> {
    let mut rx: Vec<Vec<u8>> = (0..BATCH_SIZE).map(|_| vec![0u8; MAX_DATAGRAM]).collect();
    let mut meta = vec![RecvMeta::default(); BATCH_SIZE];
    let mut out = if offload {
        Coalescer::new(TUN_FLUSH)
    } else {
        Coalescer::without_merging(TUN_FLUSH)
    };
    // Without offloads the device takes bare packets, no virtio header.
    let skip = if offload { 0 } else { VNET_HDR_LEN };
    let mut pending = Vec::new();
    // When a receive last brought a datagram the node delivered or used.
    let mut last_useful = Instant::now();
    loop {
        let n = {
            let mut slices: Vec<IoSliceMut<'_>> =
                rx.iter_mut().map(|b| IoSliceMut::new(&mut b[..])).collect();
            match udp.recv(&mut slices, &mut meta).await {
                Ok(n) => n,
                Err(e) => {
                    // ICMP errors (port unreachable from a peer that is down) surface here
                    // on Linux; they are not fatal.
                    tracing::trace!(error = %e, "UDP receive error");
                    continue;
                }
            }
        };
        shared.count(&shared.counters.udp_recvs, 1);
        // Whether anything of this receive was delivered or used by the node, and the clock
        // of its last round.
        let mut useful = false;
        let mut clock = last_useful;
        // Where the next round starts: (buffer, byte offset in it).
        let mut at = (0, 0);
        while at.0 < n {
            let mut packets = 0u64;
            let mut datagrams = 0u64;
            // Handshake messages taken in this round: at most HANDSHAKES_PER_LOCK, so the
            // node lock (and this task's turn on the runtime) is held for a bounded time even
            // when every datagram of a batch is a handshake that passes the gate.
            let mut handshakes = 0usize;
            {
                let mut node = shared.node();
                let now = Instant::now();
                clock = now;
                'fill: while at.0 < n {
                    let m = &meta[at.0];
                    let from = canonical(m.addr);
                    let stride = m.stride.max(1);
                    let len = m.len;
                    let buf = &mut rx[at.0];
                    while at.1 < len {
                        if out.is_full() || handshakes >= HANDSHAKES_PER_LOCK {
                            break 'fill;
                        }
                        let end = (at.1 + stride).min(len);
                        let dg = &mut buf[at.1..end];
                        if is_handshake(dg) {
                            handshakes += 1;
                        }
                        at.1 = end;
                        datagrams += 1;
                        match node.decapsulate(now, from, dg) {
                            Decap::Deliver { start, len } => {
                                // Not full (checked above), so the packet is taken.
                                out.push(&dg[start..start + len]);
                                packets += 1;
                                useful = true;
                            }
                            Decap::Consumed => useful = true,
                            Decap::Dropped(_) => {}
                        }
                    }
                    at = (at.0 + 1, 0);
                }
                shared.drain(&mut node, &mut pending);
            }
            shared.count(&shared.counters.udp_recv_datagrams, datagrams);
            if !out.is_empty() {
                shared.count(&shared.counters.tun_write_packets, packets);
                let bufs = out.finish();
                shared.count(&shared.counters.tun_writes, bufs.len() as u64);
                for b in bufs {
                    if tun.send(&b[skip..]).await.is_err() {
                        shared.tun_write_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                out.clear();
            }
            if !pending.is_empty() {
                send_all(&shared, &udp, &mut pending).await;
            }
            if handshakes >= HANDSHAKES_PER_LOCK {
                // Let the other loops (established sessions' packets) run before more.
                tokio::task::yield_now().await;
            }
        }
        if useful {
            last_useful = clock;
        } else if clock.saturating_duration_since(last_useful) >= JUNK_QUIET {
            // Only dropped datagrams (junk: a flood) for a while, and this receive too: wait a
            // little so the next receive takes what came meanwhile in one call. At a high
            // flood rate that turns a system call per datagram into one per millisecond. While
            // anything useful arrives, nothing waits: a session's traffic is never delayed by
            // it, only a first datagram after a junk-only spell (by up to about a millisecond).
            tokio::time::sleep(JUNK_PAUSE).await;
        }
    }
}

/// How long `udp_to_tun` waits after a receive whose datagrams were all dropped, when
/// nothing useful came for [`JUNK_QUIET`].
const JUNK_PAUSE: Duration = Duration::from_millis(1);
/// See [`JUNK_PAUSE`].
const JUNK_QUIET: Duration = Duration::from_millis(50);

/// Handshake messages `udp_to_tun` hands the node per lock hold (see there).
const HANDSHAKES_PER_LOCK: usize = 16;

/// A handshake message or cookie reply, directly or inside a relay frame: the datagrams
/// that may cost the node public-key work.
fn is_handshake(dg: &[u8]) -> bool {
    use mesh_proto::datagram::{
        TYPE_COOKIE_REPLY, TYPE_HANDSHAKE_FINAL, TYPE_HANDSHAKE_INIT, TYPE_HANDSHAKE_RESPONSE,
    };
    let kind = |b: Option<&u8>| {
        matches!(
            b,
            Some(
                &(TYPE_HANDSHAKE_INIT
                    | TYPE_HANDSHAKE_RESPONSE
                    | TYPE_HANDSHAKE_FINAL
                    | TYPE_COOKIE_REPLY)
            )
        )
    };
    match dg.first() {
        Some(&(mesh_proto::relay::TYPE_RELAY | mesh_proto::relay::TYPE_RELAYED)) => {
            kind(dg.get(mesh_proto::relay::RELAY_HEADER_LEN))
        }
        first => kind(first),
    }
}

/// IPv4-mapped IPv6 addresses back to IPv4, so one peer has one endpoint form.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

pub(super) async fn timers(shared: Arc<Shared>, udp: Arc<BatchUdp>) -> Result<()> {
    let mut pending = Vec::new();
    loop {
        let deadline = {
            let node = shared.node();
            node.poll_timeout()
        };
        let now = Instant::now();
        let wake = deadline
            .map_or(now + TIMER_GRANULARITY, |d| d.min(now + TIMER_GRANULARITY))
            .max(now);
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            () = shared.kick.notified() => {}
        }
        {
            let mut node = shared.node();
            let now = Instant::now();
            // The monotonic clock stops while the host is suspended and the wall clock may
            // be stepped: initiations carry the wall clock, so follow it.
            node.sync_clock(now, unix_time());
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
            shared.drain(&mut node, &mut pending);
        }
        send_all(&shared, &udp, &mut pending).await;
    }
}

#[cfg(test)]
mod tests {
    use super::is_handshake;

    /// What counts towards the bound of handshake messages per lock hold: the four handshake
    /// types, directly or inside either relay frame; not data, junk or empty datagrams.
    #[test]
    fn handshakes_are_told_from_data_also_inside_relay_frames() {
        for t in [1u8, 2, 3, 7] {
            assert!(is_handshake(&[t, 0, 2, 0]), "type {t}");
            for relay in [5u8, 6] {
                let mut framed = vec![relay; 12];
                framed.push(t);
                assert!(is_handshake(&framed), "type {t} in relay frame {relay}");
            }
        }
        for other in [&[4u8, 0, 0, 0][..], &[9], &[], &[5; 12], &[6; 13]] {
            assert!(!is_handshake(other), "{other:?}");
        }
    }
}
