//! The checks behind the `datagram`, `peer_info`, `inner`, `gossip`, `relay`, `echo` and
//! `block_request` fuzz targets.
//!
//! One body per parser, shared by the fuzz targets (through this crate) and by the
//! deterministic corpus test `router/proto/tests/fuzz_corpus.rs`, which includes this file
//! by path, so `cargo test` runs the very same assertions on every CI run without a
//! fuzzer. It therefore depends on `mesh-proto` alone. Each function panics when a
//! property fails, and returns whether the parser accepted the input (the corpus test uses
//! that to make sure its inputs reach past the length checks).

use mesh_proto::ParseError;
use mesh_proto::block_request::{
    BLOCK_REQUEST_LEN, BlockRequest, CONTROL_BLOCK_REQUEST, MAX_BLOCKS_PER_REQUEST,
};
use mesh_proto::control::{
    CONTROL_PEER_INFO, MAX_BLOCKS, MAX_NAME_LEN, MAX_PEER_INFO_LEN, PeerInfo,
};
use mesh_proto::datagram::{
    COOKIE_REPLY_LEN, DATA_HEADER_LEN, Datagram, INIT_HEADER_LEN, REPLY_HEADER_LEN,
    emit_cookie_reply, emit_data_header, emit_init_header, emit_reply_header,
};
use mesh_proto::echo::{CONTROL_ECHO_REPLY, CONTROL_ECHO_REQUEST, ECHO_HEADER_LEN, Echo};
use mesh_proto::inner::{Inner, ipv4_addrs};
use std::net::Ipv4Addr;

/// A `Truncated` error describes the input it refused.
fn check_error(e: ParseError, len: usize) {
    if let ParseError::Truncated { len: got, need } = e {
        assert_eq!(got, len, "Truncated reports the wrong length");
        assert!(need > len, "Truncated but {need} <= {len} bytes were there");
    }
}

/// `Datagram::parse` never panics, and what it accepts is canonical: emitting the parsed
/// header again gives back the input byte for byte, which parses to the same value.
pub fn fuzz_datagram(data: &[u8]) -> bool {
    let parsed = match Datagram::parse(data) {
        Ok(d) => d,
        Err(e) => {
            check_error(e, data.len());
            return false;
        }
    };
    let mut out = Vec::with_capacity(data.len());
    match parsed {
        Datagram::HandshakeInit {
            pattern,
            sender,
            timestamp,
            noise,
            macs,
        } => {
            let mut h = [0u8; INIT_HEADER_LEN];
            emit_init_header(&mut h, pattern, sender, timestamp);
            out.extend_from_slice(&h);
            out.extend_from_slice(noise);
            out.extend_from_slice(macs);
        }
        Datagram::HandshakeResponse {
            sender,
            receiver,
            noise,
            macs,
        }
        | Datagram::HandshakeFinal {
            sender,
            receiver,
            noise,
            macs,
        } => {
            let final_ = matches!(parsed, Datagram::HandshakeFinal { .. });
            let mut h = [0u8; REPLY_HEADER_LEN];
            emit_reply_header(&mut h, final_, sender, receiver);
            out.extend_from_slice(&h);
            out.extend_from_slice(noise);
            out.extend_from_slice(macs);
        }
        Datagram::CookieReply {
            receiver,
            nonce,
            sealed,
        } => {
            let mut h = [0u8; COOKIE_REPLY_LEN];
            emit_cookie_reply(&mut h, receiver, nonce, sealed);
            out.extend_from_slice(&h);
        }
        Datagram::Data {
            receiver,
            counter,
            header,
            sealed,
        } => {
            let mut h = [0u8; DATA_HEADER_LEN];
            emit_data_header(&mut h, receiver, counter);
            assert_eq!(&h, header, "data header view differs from its fields");
            out.extend_from_slice(&h);
            out.extend_from_slice(sealed);
        }
    }
    assert_eq!(out, data, "{} datagram does not round-trip", parsed.kind());
    assert_eq!(Datagram::parse(&out), Ok(parsed));
    true
}

/// `PeerInfo::parse` never panics, and a parsed message respects the limits, emits to the
/// same bytes (the encoding is canonical), and parses again to the same value.
pub fn fuzz_peer_info(data: &[u8]) -> bool {
    let info = match PeerInfo::parse(data) {
        Ok(info) => info,
        Err(e) => {
            check_error(e, data.len());
            return false;
        }
    };
    assert!(info.name.len() <= MAX_NAME_LEN, "name over the limit");
    assert!(info.blocks.len() <= MAX_BLOCKS, "blocks over the limit");
    assert!(
        info.blocks.iter().all(|b| b.network() == b.addr()),
        "a block with host bits was accepted"
    );
    if data[1] == 1 {
        // Format version 1 (no observed endpoint) parses but is emitted as version 2.
        assert_eq!(info.observed, None);
        return true;
    }
    assert_eq!(info.buffer_len(), data.len());
    let mut buf = [0u8; MAX_PEER_INFO_LEN];
    let Some(n) = info.emit(&mut buf) else {
        panic!("a parsed PeerInfo does not emit: {info:?}");
    };
    assert_eq!(&buf[..n], data, "PeerInfo does not round-trip");
    assert_eq!(PeerInfo::parse(&buf[..n]).as_ref(), Ok(&info));
    true
}

/// The other direction: any `PeerInfo` within the limits that `data` describes emits to
/// exactly `buffer_len()` bytes that parse back to it; one over a limit does not emit.
pub fn fuzz_peer_info_emit(data: &[u8]) -> bool {
    let mut r = data.iter().copied();
    let mut next = || r.next().unwrap_or(0);
    let mut u64_ = || u64::from_le_bytes([(); 8].map(|()| next()));
    let info_version = u64_();
    let acked_version = u64_();
    let name_len = usize::from(next() & 0x7f);
    let name_bytes: Vec<u8> = (0..name_len).map(|_| next()).collect();
    let mut name = String::from_utf8_lossy(&name_bytes).into_owned();
    // Lossy decoding may lengthen the name; keep it under the limit most of the time.
    if next() & 1 == 0 {
        while name.len() > MAX_NAME_LEN {
            name.pop();
        }
    }
    let count = usize::from(next() & 0x3f);
    let blocks = (0..count)
        .filter_map(|_| {
            let a = Ipv4Addr::new(next(), next(), next(), next());
            ipnet::Ipv4Net::new(a, next() % 33).ok().map(|n| n.trunc())
        })
        .collect();
    let info = PeerInfo {
        info_version,
        acked_version,
        name,
        blocks,
        observed: (next() & 1 == 1).then(|| {
            std::net::SocketAddrV4::new(
                Ipv4Addr::new(next(), next(), next(), next()),
                u16::from(next()),
            )
        }),
    };
    let mut buf = [0u8; MAX_PEER_INFO_LEN + 64];
    let emitted = info.emit(&mut buf);
    if info.name.len() > MAX_NAME_LEN || info.blocks.len() > MAX_BLOCKS {
        assert_eq!(emitted, None, "PeerInfo over a limit was emitted");
        return false;
    }
    let Some(n) = emitted else {
        panic!("PeerInfo within limits does not emit: {info:?}");
    };
    assert_eq!(n, info.buffer_len());
    assert!(n <= MAX_PEER_INFO_LEN);
    assert_eq!(PeerInfo::parse(&buf[..n]).as_ref(), Ok(&info));
    // One byte short of the buffer it needs is refused, not truncated.
    assert_eq!(info.emit(&mut buf[..n - 1]), None);
    true
}

/// `Inner::classify` never panics and agrees with the bytes: a keepalive is empty, IPv4
/// addresses are where the header has them, a control message starts below 0x40. A
/// PeerInfo control message goes on through [`fuzz_peer_info`], an echo through
/// [`fuzz_echo`], a block request through [`fuzz_block_request`], as in the node.
pub fn fuzz_inner(data: &[u8]) -> bool {
    match Inner::classify(data) {
        Inner::Keepalive => {
            assert!(
                data.is_empty(),
                "non-empty plaintext classified as keepalive"
            );
            true
        }
        Inner::Ipv4 { src, dst } => {
            assert!(data.len() >= 20 && data[0] >> 4 == 4 && data[0] & 0x0f >= 5);
            assert_eq!(src.octets(), data[12..16]);
            assert_eq!(dst.octets(), data[16..20]);
            assert_eq!(ipv4_addrs(data), Some((src, dst)));
            true
        }
        Inner::Ipv6 => {
            assert!(data.len() >= 40 && data[0] >> 4 == 6);
            true
        }
        Inner::Control(kind, msg) => {
            assert_eq!(Some(&kind), data.first());
            assert!(kind < 0x40, "control type {kind:#x} is not below 0x40");
            assert_eq!(msg, data, "control message is not the whole plaintext");
            if kind == CONTROL_PEER_INFO {
                fuzz_peer_info(msg);
            }
            if kind == CONTROL_ECHO_REQUEST || kind == CONTROL_ECHO_REPLY {
                fuzz_echo(msg);
            }
            if kind == CONTROL_BLOCK_REQUEST {
                assert!(
                    fuzz_block_request(msg),
                    "a control message of the block request type was refused"
                );
            }
            true
        }
        Inner::Invalid => {
            assert!(!data.is_empty());
            let v = data[0] >> 4;
            assert!(
                v > 6
                    || v == 5
                    || (v == 4 && ipv4_addrs(data).is_none())
                    || (v == 6 && data.len() < 40),
                "valid-looking packet classified as invalid: {data:02x?}"
            );
            false
        }
    }
}

/// `GossipMsg::parse` never panics; a parsed message is within the size limit, re-encodes to
/// the same bytes and parses again to the same value. Record bodies of the known kinds get the
/// same treatment.
pub fn fuzz_gossip(data: &[u8]) -> bool {
    use mesh_proto::gossip::{
        AdjacencyBody, GossipMsg, KIND_ADJACENCY, KIND_MEMBER, MAX_GOSSIP_LEN, MemberBody,
    };
    // Bodies on their own, whatever the message does.
    if let Ok(m) = MemberBody::parse(data) {
        let Some(b) = m.to_bytes() else {
            panic!("a parsed member body does not encode: {m:?}");
        };
        assert_eq!(b, data, "member body does not round-trip");
    }
    if let Ok(a) = AdjacencyBody::parse(data) {
        let Some(b) = a.to_bytes() else {
            panic!("a parsed adjacency body does not encode: {a:?}");
        };
        assert_eq!(b, data, "adjacency body does not round-trip");
    }
    let msg = match GossipMsg::parse(data) {
        Ok(m) => m,
        Err(e) => {
            check_error(e, data.len());
            return false;
        }
    };
    assert!(data.len() <= MAX_GOSSIP_LEN);
    assert_eq!(msg.buffer_len(), data.len());
    let Some(out) = msg.to_bytes() else {
        panic!("a parsed gossip message does not encode: {msg:?}");
    };
    assert_eq!(out, data, "gossip message does not round-trip");
    if let GossipMsg::Push(records) = &msg {
        for r in records {
            match r.kind {
                KIND_MEMBER => {
                    let _ = MemberBody::parse(&r.body);
                }
                KIND_ADJACENCY => {
                    let _ = AdjacencyBody::parse(&r.body);
                }
                _ => {}
            }
        }
    }
    true
}

/// `RelayFrame::parse` never panics; a parsed frame names 8 key bytes and an inner datagram
/// that is the rest of the input, and rewriting its header in place keeps the inner bytes.
pub fn fuzz_relay(data: &[u8]) -> bool {
    use mesh_proto::relay::{RELAY_HEADER_LEN, RelayFrame, emit_relay_header};
    let frame = match RelayFrame::parse(data) {
        Ok(f) => f,
        Err(e) => {
            check_error(e, data.len());
            return false;
        }
    };
    assert_eq!(frame.inner, &data[RELAY_HEADER_LEN..]);
    assert_eq!(&frame.peer[..], &data[4..12]);
    let mut copy = data.to_vec();
    let mut h = [0u8; RELAY_HEADER_LEN];
    emit_relay_header(&mut h, !frame.to_forward, [0xab; 8]);
    copy[..RELAY_HEADER_LEN].copy_from_slice(&h);
    let again = RelayFrame::parse(&copy).map_err(|e| format!("{e}"));
    let Ok(again) = again else {
        panic!("a rewritten relay header does not parse: {again:?}");
    };
    assert_eq!(again.inner, frame.inner);
    assert_eq!(again.to_forward, !frame.to_forward);
    true
}

/// Echo (`meshctl ping`'s probes): whatever parses keeps its type, id and length, and emits
/// back to the same header with zero padding.
pub fn fuzz_echo(data: &[u8]) -> bool {
    let Ok(echo) = Echo::parse(data) else {
        return false;
    };
    assert_eq!(echo.len, data.len());
    assert_eq!(echo.reply, data[0] == CONTROL_ECHO_REPLY);
    let mut out = vec![0xffu8; echo.buffer_len()];
    assert_eq!(echo.emit(&mut out), Some(data.len()));
    assert_eq!(out[..ECHO_HEADER_LEN], data[..ECHO_HEADER_LEN]);
    assert!(out[ECHO_HEADER_LEN..].iter().all(|b| *b == 0));
    assert_eq!(Echo::parse(&out), Ok(echo));
    true
}

/// Block request (automatic IPAM's ask for a donation): whatever parses starts with its type
/// byte and keeps the count byte (1 when there is none); it emits to exactly the two bytes
/// every node sends, which parse to the same value; the count a donor honours is within
/// `1..=MAX_BLOCKS_PER_REQUEST`.
pub fn fuzz_block_request(data: &[u8]) -> bool {
    let req = match BlockRequest::parse(data) {
        Ok(r) => r,
        Err(e) => {
            check_error(e, data.len());
            assert!(
                data.first() != Some(&CONTROL_BLOCK_REQUEST),
                "a message of the block request type was refused: {e}"
            );
            return false;
        }
    };
    assert_eq!(data[0], CONTROL_BLOCK_REQUEST);
    assert_eq!(req.count, data.get(1).copied().unwrap_or(1));
    assert!((1..=u32::from(MAX_BLOCKS_PER_REQUEST)).contains(&req.wanted()));
    let mut out = [0xffu8; BLOCK_REQUEST_LEN + 1];
    assert_eq!(req.emit(&mut out), Some(BLOCK_REQUEST_LEN));
    assert_eq!(req.buffer_len(), BLOCK_REQUEST_LEN);
    assert_eq!(out[..BLOCK_REQUEST_LEN], req.to_bytes());
    assert_eq!(out[BLOCK_REQUEST_LEN], 0xff, "emit wrote past its length");
    if data.len() >= BLOCK_REQUEST_LEN {
        assert_eq!(out[..BLOCK_REQUEST_LEN], data[..BLOCK_REQUEST_LEN]);
    }
    assert_eq!(BlockRequest::parse(&out[..BLOCK_REQUEST_LEN]), Ok(req));
    assert_eq!(req.emit(&mut out[..BLOCK_REQUEST_LEN - 1]), None);
    true
}
