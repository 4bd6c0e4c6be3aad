//! Receive-side coalescing for the TUN device: decrypted packets go in one at a time, and
//! consecutive TCP segments of one flow come out as one super-packet with a virtio-net header
//! (`VIRTIO_NET_HDR_GSO_TCPV4`), which the kernel takes whole into its TCP stack — one write
//! and one trip through the stack for up to 64 KB, instead of one per segment.
//!
//! Each packet is copied once, straight into its place in an output buffer: the payload of a
//! segment that continues a flow is appended to that flow's buffer, anything else starts a
//! buffer of its own (with a zero virtio header: the kernel checks it like any packet).
//!
//! A segment continues a flow when everything the kernel's own GRO compares is equal: IPv4
//! without options or fragments, the addresses, TOS, TTL, DF, the ports, the TCP header
//! length, options, acknowledgement number, flags (ACK, plus PSH on the last segment only)
//! and window; its sequence number is the flow's next one; its payload is as long as the
//! flow's first one (a shorter one is appended and ends the flow); the whole stays within
//! the 65,535 bytes an IPv4 packet can have. Every appended segment's TCP checksum is
//! verified first (the super-packet goes to the kernel as "checksum partial", which it does
//! not verify again), so a segment with a bad checksum is written alone and the kernel drops
//! it as it would have.
//!
//! Flows are kept in order: segments are appended only at their flow's end. Packets of
//! different flows may leave in a different order than they came, as with any GRO.
//! IPv6 and UDP packets pass through uncoalesced.

use tun_rs::{checksum, checksum_no_fold};

/// Length of the virtio-net header in front of every buffer.
pub const VNET_HDR_LEN: usize = 10;
/// The most bytes an IPv4 packet (so a super-packet) can have.
const MAX_IPV4: usize = 65_535;
/// Open flows looked at for each packet; more flows at once start new buffers.
const MAX_FLOWS: usize = 8;
const IPPROTO_TCP: u8 = 6;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;

/// A flow being coalesced into `buf`.
#[derive(Debug, Clone, Copy)]
struct Flow {
    buf: usize,
    /// IPv4 bytes 1 (TOS), 6..7 (flags/fragment; DF only), 8 (TTL), 12..20 (addresses).
    ip: [u8; 12],
    /// TCP bytes 0..4 (ports), 8..16 (ack, data offset, flags, window).
    tcp: [u8; 12],
    /// TCP options (bytes 20.. of the TCP header), `hdr_len - 40` of them.
    options: [u8; 40],
    hdr_len: usize,
    gso_size: usize,
    next_seq: u32,
    segments: u16,
}

/// Packets bound for the TUN device, coalesced where they can be (see the module docs).
#[derive(Debug)]
pub struct Coalescer {
    bufs: Vec<Vec<u8>>,
    used: usize,
    flows: Vec<Flow>,
    merge: bool,
}

impl Coalescer {
    /// A coalescer with room for `capacity` output buffers (each can grow to a 64 KB
    /// super-packet; they are kept and reused).
    pub fn new(capacity: usize) -> Self {
        Self {
            bufs: (0..capacity.max(1))
                .map(|_| Vec::with_capacity(VNET_HDR_LEN + MAX_IPV4))
                .collect(),
            used: 0,
            flows: Vec::with_capacity(MAX_FLOWS),
            merge: true,
        }
    }

    /// One that never merges (a TUN device without offloads takes no super-packets): every
    /// packet gets a buffer of its own, still behind a zero virtio header.
    pub fn without_merging(capacity: usize) -> Self {
        Self {
            merge: false,
            ..Self::new(capacity)
        }
    }

    /// Whether every output buffer is taken: [`Coalescer::finish`] and write them before
    /// pushing more.
    pub fn is_full(&self) -> bool {
        self.used == self.bufs.len()
    }

    /// Output buffers taken so far.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether nothing was pushed since the last [`Coalescer::clear`].
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Adds one packet (an IP packet, no header in front). Returns false, and drops nothing
    /// already pushed, when it needs a new buffer and all are taken.
    pub fn push(&mut self, pkt: &[u8]) -> bool {
        let seg = if self.merge {
            Segment::parse(pkt)
        } else {
            None
        };
        // The TCP checksum's verdict, once computed.
        let mut valid = None;
        if let Some(seg) = &seg
            && let Some(i) = self.flows.iter().position(|f| seg.continues(f, pkt))
        {
            if seg.checksum_ok(pkt) {
                self.append(i, seg, pkt);
                return true;
            }
            // Written alone below; the flow ends here (its next segment would be out of
            // order behind the dropped one anyway).
            self.close(i);
            valid = Some(false);
        }
        if self.is_full() {
            return false;
        }
        let b = self.used;
        self.used += 1;
        let buf = &mut self.bufs[b];
        buf.clear();
        buf.extend_from_slice(&[0; VNET_HDR_LEN]);
        buf.extend_from_slice(pkt);
        if let Some(seg) = seg
            && seg.payload_len > 0
            && seg.flags & TCP_PSH == 0
            && valid.unwrap_or_else(|| seg.checksum_ok(pkt))
        {
            if self.flows.len() == MAX_FLOWS {
                self.close(0);
            }
            self.flows.push(seg.flow(b, pkt));
        }
        true
    }

    fn append(&mut self, i: usize, seg: &Segment, pkt: &[u8]) {
        let flow = &mut self.flows[i];
        let payload = &pkt[seg.hdr_len..];
        let buf = &mut self.bufs[flow.buf];
        buf.extend_from_slice(payload);
        flow.segments += 1;
        flow.next_seq = flow.next_seq.wrapping_add(payload.len() as u32);
        if seg.flags & TCP_PSH != 0 {
            // PSH on the last segment only: the super-packet carries it.
            buf[VNET_HDR_LEN + 20 + 13] |= TCP_PSH;
        }
        let full = buf.len() - VNET_HDR_LEN + flow.gso_size > MAX_IPV4;
        if payload.len() < flow.gso_size || seg.flags & TCP_PSH != 0 || full {
            self.close(i);
        }
    }

    /// Ends open flow `i`: nothing more is appended to its buffer, whose headers are fixed.
    fn close(&mut self, i: usize) {
        let f = self.flows.remove(i);
        seal(&mut self.bufs[f.buf], &f);
    }

    /// Fixes the headers of every buffer still open and returns the buffers to write, each
    /// starting with its [`VNET_HDR_LEN`]-byte virtio header, in the order they were started.
    pub fn finish(&mut self) -> &[Vec<u8>] {
        for f in std::mem::take(&mut self.flows) {
            seal(&mut self.bufs[f.buf], &f);
        }
        &self.bufs[..self.used]
    }

    /// Forgets what was pushed (after the buffers were written).
    pub fn clear(&mut self) {
        self.used = 0;
        self.flows.clear();
    }
}

/// Turns a buffer with one or more segments of `f` into what the kernel expects: one
/// segment as it came (zero virtio header), several as a TCPv4 GSO super-packet with new
/// IPv4 length and header checksum and the pseudo-header sum in the TCP checksum field.
fn seal(buf: &mut [u8], f: &Flow) {
    if f.segments < 2 {
        return;
    }
    let (hdr, pkt) = buf.split_at_mut(VNET_HDR_LEN);
    let total = pkt.len();
    pkt[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    pkt[10..12].copy_from_slice(&[0, 0]);
    let ip_sum = !checksum(&pkt[..20], 0);
    pkt[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let pseudo = pseudo_header(&pkt[12..20], (total - 20) as u16);
    let folded = checksum(&[], pseudo);
    pkt[20 + 16..20 + 18].copy_from_slice(&folded.to_be_bytes());
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[1] = VIRTIO_NET_HDR_GSO_TCPV4;
    hdr[2..4].copy_from_slice(&(f.hdr_len as u16).to_le_bytes());
    hdr[4..6].copy_from_slice(&(f.gso_size as u16).to_le_bytes());
    hdr[6..8].copy_from_slice(&20u16.to_le_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
}

/// The unfolded sum of the IPv4 TCP pseudo-header (`addrs`: source then destination).
fn pseudo_header(addrs: &[u8], tcp_len: u16) -> u64 {
    let mut tail = [0u8; 4];
    tail[1] = IPPROTO_TCP;
    tail[2..4].copy_from_slice(&tcp_len.to_be_bytes());
    checksum_no_fold(&tail, checksum_no_fold(addrs, 0))
}

/// What [`Coalescer`] reads of an IPv4 TCP segment it may coalesce.
struct Segment {
    hdr_len: usize,
    payload_len: usize,
    seq: u32,
    flags: u8,
}

impl Segment {
    fn parse(pkt: &[u8]) -> Option<Self> {
        // IPv4, no options, TCP, not a fragment (DF is fine), length as the header says.
        if pkt.len() < 40 || pkt[0] != 0x45 || pkt[9] != IPPROTO_TCP {
            return None;
        }
        if pkt[6] & !0x40 != 0 || pkt[7] != 0 {
            return None;
        }
        if usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) != pkt.len() {
            return None;
        }
        let tcp_len = usize::from(pkt[20 + 12] >> 4) * 4;
        if tcp_len < 20 || pkt.len() < 20 + tcp_len {
            return None;
        }
        let flags = pkt[20 + 13];
        if flags != TCP_ACK && flags != TCP_ACK | TCP_PSH {
            return None;
        }
        Some(Self {
            hdr_len: 20 + tcp_len,
            payload_len: pkt.len() - 20 - tcp_len,
            seq: u32::from_be_bytes([pkt[24], pkt[25], pkt[26], pkt[27]]),
            flags,
        })
    }

    /// The flow this segment starts, in buffer `buf`.
    fn flow(&self, buf: usize, pkt: &[u8]) -> Flow {
        let mut options = [0u8; 40];
        options[..self.hdr_len - 40].copy_from_slice(&pkt[40..self.hdr_len]);
        Flow {
            buf,
            ip: ip_key(pkt),
            tcp: tcp_key(pkt),
            options,
            hdr_len: self.hdr_len,
            gso_size: self.payload_len,
            next_seq: self.seq.wrapping_add(self.payload_len as u32),
            segments: 1,
        }
    }

    /// Whether this segment (of `pkt`) goes right behind flow `f`'s last one.
    fn continues(&self, f: &Flow, pkt: &[u8]) -> bool {
        self.seq == f.next_seq
            && self.hdr_len == f.hdr_len
            && self.payload_len > 0
            && self.payload_len <= f.gso_size
            && ip_key(pkt) == f.ip
            && tcp_key(pkt) == f.tcp
            && pkt[40..self.hdr_len] == f.options[..self.hdr_len - 40]
    }

    fn checksum_ok(&self, pkt: &[u8]) -> bool {
        let tcp = &pkt[20..];
        let pseudo = pseudo_header(&pkt[12..20], tcp.len() as u16);
        checksum(tcp, pseudo) == 0xffff
    }
}

fn ip_key(pkt: &[u8]) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[0] = pkt[1];
    k[1] = pkt[6];
    k[2] = pkt[7];
    k[3] = pkt[8];
    k[4..12].copy_from_slice(&pkt[12..20]);
    k
}

fn tcp_key(pkt: &[u8]) -> [u8; 12] {
    let mut k = [0u8; 12];
    // Ports; then acknowledgement number, data offset, flags and window.
    k[0..4].copy_from_slice(&pkt[20..24]);
    k[4..12].copy_from_slice(&pkt[28..36]);
    // Flags without PSH, which the last segment may have.
    k[9] &= !TCP_PSH;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 4] = [10, 32, 1, 5];
    const B: [u8; 4] = [10, 32, 2, 6];

    /// An IPv4 TCP segment with valid checksums: `opts` TCP option bytes (a multiple of 4).
    fn seg(src: [u8; 4], sport: u16, seq: u32, flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let tcp_len = 20 + opts.len();
        let total = 20 + tcp_len + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&seq.to_be_bytes()[2..]); // an IP id that changes
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = IPPROTO_TCP;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&B);
        let ip_sum = !checksum(&p[..20], 0);
        p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&7777u32.to_be_bytes());
        p[32] = ((tcp_len / 4) as u8) << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p[40..40 + opts.len()].copy_from_slice(opts);
        p[20 + tcp_len..].copy_from_slice(payload);
        let pseudo = pseudo_header(&p[12..20], tcp_len as u16 + payload.len() as u16);
        let sum = !checksum(&p[20..], pseudo);
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        p
    }

    fn data(n: usize, fill: u8) -> Vec<u8> {
        (0..n).map(|i| fill ^ (i as u8)).collect()
    }

    const TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

    /// A flow of `n` segments of `size` bytes from `src:sport`, starting at `seq`.
    fn flow(src: [u8; 4], sport: u16, seq: u32, n: usize, size: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                seg(
                    src,
                    sport,
                    seq + (i * size) as u32,
                    TCP_ACK,
                    &TS,
                    &data(size, i as u8),
                )
            })
            .collect()
    }

    fn vnet(buf: &[u8]) -> (u8, u8, u16, u16, u16, u16) {
        let le = |i: usize| u16::from_le_bytes([buf[i], buf[i + 1]]);
        (buf[0], buf[1], le(2), le(4), le(6), le(8))
    }

    /// Checks a super-packet made of `segs` and returns its payload.
    fn check_super(buf: &[u8], segs: &[Vec<u8>]) {
        let first = &segs[0];
        let hdr_len = 20 + usize::from(first[32] >> 4) * 4;
        let gso = first.len() - hdr_len;
        assert_eq!(
            vnet(buf),
            (
                VIRTIO_NET_HDR_F_NEEDS_CSUM,
                VIRTIO_NET_HDR_GSO_TCPV4,
                hdr_len as u16,
                gso as u16,
                20,
                16
            )
        );
        let pkt = &buf[VNET_HDR_LEN..];
        let total: usize = hdr_len + segs.iter().map(|s| s.len() - hdr_len).sum::<usize>();
        assert_eq!(pkt.len(), total);
        assert_eq!(usize::from(u16::from_be_bytes([pkt[2], pkt[3]])), total);
        assert_eq!(checksum(&pkt[..20], 0), 0xffff, "IPv4 header checksum");
        // Headers as the first segment's, but for length, checksums and PSH.
        for i in (0..hdr_len).filter(|i| ![2, 3, 10, 11, 33, 36, 37].contains(i)) {
            assert_eq!(pkt[i], first[i], "header byte {i}");
        }
        let pseudo = pseudo_header(&pkt[12..20], (total - 20) as u16);
        assert_eq!(
            u16::from_be_bytes([pkt[36], pkt[37]]),
            checksum(&[], pseudo),
            "pseudo-header sum for the kernel to complete"
        );
        let payload: Vec<u8> = segs.iter().flat_map(|s| s[hdr_len..].to_vec()).collect();
        assert_eq!(&pkt[hdr_len..], &payload[..]);
    }

    fn push_all(c: &mut Coalescer, pkts: &[Vec<u8>]) {
        for p in pkts {
            assert!(c.push(p));
        }
    }

    #[test]
    fn consecutive_segments_of_one_flow_become_one_super_packet() {
        let segs = flow(A, 40000, 1000, 10, 1368);
        let mut c = Coalescer::new(8);
        push_all(&mut c, &segs);
        let out = c.finish();
        assert_eq!(out.len(), 1);
        check_super(&out[0], &segs);
    }

    #[test]
    fn a_short_last_segment_is_appended_and_ends_the_flow() {
        let mut segs = flow(A, 40000, 1000, 3, 1368);
        segs.push(seg(A, 40000, 1000 + 3 * 1368, TCP_ACK, &TS, &data(100, 9)));
        let after = seg(
            A,
            40000,
            1000 + 3 * 1368 + 100,
            TCP_ACK,
            &TS,
            &data(1368, 3),
        );
        let mut c = Coalescer::new(8);
        push_all(&mut c, &segs);
        assert!(c.push(&after));
        let out = c.finish();
        assert_eq!(out.len(), 2);
        check_super(&out[0], &segs);
        assert_eq!(vnet(&out[1]), (0, 0, 0, 0, 0, 0));
        assert_eq!(&out[1][VNET_HDR_LEN..], &after[..]);
    }

    #[test]
    fn interleaved_flows_are_coalesced_each_in_order() {
        let a = flow(A, 40000, 1000, 6, 1368);
        let b = flow(A, 40001, 9_000_000, 6, 1368);
        let mut c = Coalescer::new(8);
        for (x, y) in a.iter().zip(&b) {
            assert!(c.push(x));
            assert!(c.push(y));
        }
        let out = c.finish();
        assert_eq!(out.len(), 2);
        check_super(&out[0], &a);
        check_super(&out[1], &b);
    }

    #[test]
    fn a_gap_in_sequence_or_other_options_start_a_new_packet() {
        let mut c = Coalescer::new(8);
        let first = flow(A, 40000, 1000, 2, 1000);
        push_all(&mut c, &first);
        // A segment missing in between: not appended.
        let gap = seg(A, 40000, 1000 + 3000, TCP_ACK, &TS, &data(1000, 1));
        assert!(c.push(&gap));
        // Other timestamps: not appended either (the kernel would not merge them).
        let mut ts = TS;
        ts[7] = 9;
        let other = seg(A, 40000, 4000 + 1000, TCP_ACK, &ts, &data(1000, 2));
        assert!(c.push(&other));
        let out = c.finish();
        assert_eq!(out.len(), 3);
        check_super(&out[0], &first);
        assert_eq!(&out[1][VNET_HDR_LEN..], &gap[..]);
        assert_eq!(&out[2][VNET_HDR_LEN..], &other[..]);
    }

    #[test]
    fn a_segment_with_a_bad_checksum_is_written_alone_and_ends_the_flow() {
        let segs = flow(A, 40000, 1000, 4, 1368);
        let mut bad = segs[2].clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let mut c = Coalescer::new(8);
        push_all(&mut c, &segs[..2]);
        assert!(c.push(&bad));
        assert!(c.push(&segs[3]));
        let out = c.finish();
        assert_eq!(out.len(), 3);
        check_super(&out[0], &segs[..2]);
        assert_eq!(&out[1][VNET_HDR_LEN..], &bad[..]);
        assert_eq!(&out[2][VNET_HDR_LEN..], &segs[3][..]);
        // A flow whose first segment is bad is not opened.
        let mut c = Coalescer::new(8);
        assert!(c.push(&bad));
        assert!(c.push(&segs[3]));
        assert_eq!(c.finish().len(), 2);
    }

    #[test]
    fn other_packets_pass_through_with_a_zero_header() {
        let syn = seg(A, 40000, 1, 0x02, &[], &[]);
        let pure_ack = seg(A, 40000, 1, TCP_ACK, &[], &[]);
        let fin = seg(A, 40000, 1, TCP_ACK | 0x01, &[], &data(10, 0));
        let mut udp = seg(A, 40000, 1, TCP_ACK, &[], &data(10, 0));
        udp[9] = 17;
        let mut v6 = vec![0u8; 60];
        v6[0] = 0x60;
        let mut pkts = vec![syn, pure_ack.clone(), pure_ack, fin, udp, v6];
        each_alone(Coalescer::new(8), &pkts);
        // Without merging, a flow's segments pass through alone too.
        pkts.extend(flow(A, 40000, 1000, 3, 1368));
        each_alone(Coalescer::without_merging(16), &pkts);
    }

    /// Pushes `pkts` and checks each came out as it went in, behind a zero header.
    fn each_alone(mut c: Coalescer, pkts: &[Vec<u8>]) {
        push_all(&mut c, pkts);
        let out = c.finish();
        assert_eq!(out.len(), pkts.len());
        for (o, p) in out.iter().zip(pkts) {
            assert_eq!(vnet(o), (0, 0, 0, 0, 0, 0));
            assert_eq!(&o[VNET_HDR_LEN..], &p[..]);
        }
    }

    #[test]
    fn psh_on_the_last_segment_is_kept_and_ends_the_flow() {
        let mut segs = flow(A, 40000, 1000, 3, 1368);
        segs.push(seg(
            A,
            40000,
            1000 + 3 * 1368,
            TCP_ACK | TCP_PSH,
            &TS,
            &data(1368, 7),
        ));
        let next = seg(A, 40000, 1000 + 4 * 1368, TCP_ACK, &TS, &data(1368, 8));
        let mut c = Coalescer::new(8);
        push_all(&mut c, &segs);
        assert!(c.push(&next));
        let out = c.finish();
        assert_eq!(out.len(), 2);
        check_super(&out[0], &segs);
        assert_eq!(out[0][VNET_HDR_LEN + 33], TCP_ACK | TCP_PSH);
        // A segment with PSH in the middle of nothing starts no flow.
        let mut c = Coalescer::new(8);
        push_all(&mut c, &segs[3..]);
        assert!(c.push(&next));
        assert_eq!(c.finish().len(), 2);
    }

    #[test]
    fn super_packets_stay_within_the_ipv4_limit() {
        let segs = flow(A, 40000, 1000, 100, 1368);
        let mut c = Coalescer::new(8);
        push_all(&mut c, &segs);
        let out = c.finish().to_vec();
        assert!(out.len() >= 3, "{}", out.len());
        let mut at = 0;
        for o in &out {
            let n = (o.len() - VNET_HDR_LEN - 52) / 1368;
            assert!(o.len() - VNET_HDR_LEN <= MAX_IPV4);
            check_super(o, &segs[at..at + n]);
            at += n;
        }
        assert_eq!(at, segs.len());
    }

    #[test]
    fn a_full_coalescer_refuses_new_buffers_but_still_appends() {
        let a = flow(A, 40000, 1000, 3, 1000);
        let other = seg(A, 40001, 5, TCP_ACK, &TS, &data(1000, 0));
        let mut c = Coalescer::new(1);
        assert!(c.push(&a[0]));
        assert!(c.is_full());
        assert!(!c.push(&other));
        assert!(c.push(&a[1]));
        assert!(c.push(&a[2]));
        assert_eq!(c.finish().len(), 1);
        check_super(&c.finish()[0], &a);
        c.clear();
        assert!(c.is_empty());
        assert!(c.push(&other));
    }

    /// Pushes segment k of every flow, for k = 0, 1; returns the buffers merged.
    fn round_robin(n: u16) -> usize {
        let flows: Vec<Vec<Vec<u8>>> = (0..n)
            .map(|i| flow(A, 41000 + i, 100_000 * u32::from(i), 2, 500))
            .collect();
        let mut c = Coalescer::new(64);
        for k in 0..2 {
            for f in &flows {
                assert!(c.push(&f[k]));
            }
        }
        let out = c.finish();
        // Every byte arrives once: a merged buffer saves one segment's headers (52 bytes).
        let bytes: usize = out.iter().map(|o| o.len() - VNET_HDR_LEN).sum();
        let segments_bytes: usize = flows.iter().flatten().map(Vec::len).sum();
        let merged: Vec<&Vec<u8>> = out
            .iter()
            .filter(|o| o[1] == VIRTIO_NET_HDR_GSO_TCPV4)
            .collect();
        assert_eq!(bytes + merged.len() * 52, segments_bytes);
        for (o, f) in merged.iter().zip(&flows) {
            check_super(o, f);
        }
        merged.len()
    }

    #[test]
    fn as_many_flows_as_tracked_all_merge_and_more_are_written_unmerged() {
        assert_eq!(round_robin(MAX_FLOWS as u16), MAX_FLOWS);
        // Round robin over more flows than tracked evicts each flow before its next
        // segment: nothing merges, nothing is lost.
        assert_eq!(round_robin(MAX_FLOWS as u16 + 3), 0);
    }
}
