//! The fuzz targets' checks on a fixed pseudo-random corpus, so `cargo test` exercises the
//! same code paths and properties on every run without a fuzzer.
//!
//! The checks themselves live in `integration/fuzz/src/proto_checks.rs` (one body per
//! parser, shared with the fuzz targets of the same names). Inputs are
//! random bytes and mutations of valid messages, from a seeded xorshift: a failure names
//! its case number and input, and reproduces on every run.

#[allow(unreachable_pub, dead_code)]
#[path = "../../../integration/fuzz/src/proto_checks.rs"]
mod proto_checks;

use mesh_proto::control::{CONTROL_PEER_INFO, MAX_BLOCKS, MAX_NAME_LEN, PeerInfo};
use mesh_proto::datagram::{
    COOKIE_REPLY_LEN, DATA_HEADER_LEN, HANDSHAKE_MACS_LEN, INIT_HEADER_LEN, Pattern,
    REPLY_HEADER_LEN, emit_cookie_reply, emit_data_header, emit_init_header, emit_reply_header,
};
use proto_checks::{fuzz_datagram, fuzz_inner, fuzz_peer_info, fuzz_peer_info_emit};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Inputs per parser.
const CASES: usize = 4000;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../integration/fuzz/src/corpus.rs"]
mod corpus;

use corpus::Rng;

/// Bytes the wire-format parsers branch on.
const INTERESTING: [u8; 16] = [
    0, 1, 2, 3, 4, 5, 6, 0x3f, 0x40, 0x45, 0x60, 32, 33, 63, 64, 0xff,
];

fn byte(rng: &mut Rng) -> u8 {
    rng.byte_from(&INTERESTING)
}

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| byte(rng)).collect()
}

/// One to four random edits: flip a bit, set a byte, insert, remove, truncate, append.
fn mutate(rng: &mut Rng, v: Vec<u8>) -> Vec<u8> {
    corpus::mutate(rng, v, byte)
}

/// Runs `check` over `CASES` inputs: a third random bytes, the rest `valid` inputs, half of
/// those mutated. Returns how many the parser accepted.
fn run(
    name: &str,
    seed: u64,
    valid: impl Fn(&mut Rng) -> Vec<u8>,
    check: impl Fn(&[u8]) -> bool,
) -> usize {
    let mut rng = Rng::new(seed);
    let mut accepted = 0;
    for case in 0..CASES {
        let input = match case % 3 {
            0 => {
                let n = rng.below(300);
                bytes(&mut rng, n)
            }
            1 => valid(&mut rng),
            _ => {
                let v = valid(&mut rng);
                mutate(&mut rng, v)
            }
        };
        match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(e) => {
                eprintln!("{name}: case {case} (seed {seed:#x}) failed on {input:02x?}");
                resume_unwind(e);
            }
        }
    }
    accepted
}

fn valid_datagram(rng: &mut Rng) -> Vec<u8> {
    let body_len = rng.below(200);
    let body = bytes(rng, body_len);
    let mut out = match rng.below(5) {
        0 => {
            let mut h = [0u8; INIT_HEADER_LEN];
            let pattern = if rng.below(2) == 0 {
                Pattern::Ik
            } else {
                Pattern::Xx
            };
            emit_init_header(&mut h, pattern, rng.next() as u32, rng.next());
            let mut v = h.to_vec();
            v.extend_from_slice(&bytes(rng, HANDSHAKE_MACS_LEN));
            v
        }
        1 | 2 => {
            let mut h = [0u8; REPLY_HEADER_LEN];
            let final_ = rng.below(2) == 0;
            emit_reply_header(&mut h, final_, rng.next() as u32, rng.next() as u32);
            let mut v = h.to_vec();
            v.extend_from_slice(&bytes(rng, HANDSHAKE_MACS_LEN));
            v
        }
        3 => {
            let mut h = [0u8; COOKIE_REPLY_LEN];
            let nonce: [u8; 12] = bytes(rng, 12).try_into().unwrap_or([0; 12]);
            let sealed: [u8; 32] = bytes(rng, 32).try_into().unwrap_or([0; 32]);
            emit_cookie_reply(&mut h, rng.next() as u32, &nonce, &sealed);
            // A cookie reply has one length: no body after it.
            return h.to_vec();
        }
        _ => {
            let mut h = [0u8; DATA_HEADER_LEN];
            emit_data_header(&mut h, rng.next() as u32, rng.next());
            h.to_vec()
        }
    };
    out.extend_from_slice(&body);
    out
}

fn valid_peer_info(rng: &mut Rng) -> Vec<u8> {
    let name_len = rng.below(MAX_NAME_LEN + 1);
    let mut name: String = (0..name_len)
        .map(|_| match rng.below(8) {
            0 => 'é',
            1 => '-',
            _ => char::from(b'a' + rng.below(26) as u8),
        })
        .collect();
    while name.len() > MAX_NAME_LEN {
        name.pop();
    }
    let blocks = (0..rng.below(MAX_BLOCKS + 1))
        .map(|_| {
            let addr = std::net::Ipv4Addr::from(rng.next() as u32);
            // The prefix length is at most 32, so `new` cannot fail.
            ipnet::Ipv4Net::new(addr, rng.below(33) as u8)
                .map_or_else(|e| panic!("{e}"), |n| n.trunc())
        })
        .collect();
    let info = PeerInfo {
        info_version: rng.next(),
        acked_version: rng.next(),
        name,
        blocks,
        observed: (rng.next() & 1 == 1).then(|| {
            std::net::SocketAddrV4::new(
                std::net::Ipv4Addr::from(rng.next() as u32),
                rng.next() as u16,
            )
        }),
    };
    let mut buf = vec![0u8; info.buffer_len()];
    assert_eq!(info.emit(&mut buf), Some(buf.len()));
    buf
}

fn valid_block_request(rng: &mut Rng) -> Vec<u8> {
    use mesh_proto::block_request::BlockRequest;
    BlockRequest { count: byte(rng) }.to_bytes().to_vec()
}

fn valid_inner(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => Vec::new(),
        5 => valid_block_request(rng),
        1 => valid_peer_info(rng),
        2 => {
            let n = 40 + rng.below(60);
            let mut p = bytes(rng, n);
            p[0] = 0x60;
            p
        }
        3 => {
            let n = 1 + rng.below(40);
            let mut p = bytes(rng, n);
            p[0] = rng.below(0x40) as u8;
            p
        }
        _ => {
            let n = 20 + rng.below(60);
            let mut p = bytes(rng, n);
            p[0] = 0x45;
            p
        }
    }
}

#[test]
fn datagram_parse_never_panics_and_round_trips() {
    let accepted = run("datagram", 0xd47a_6a3e, valid_datagram, fuzz_datagram);
    assert!(accepted > CASES / 3, "only {accepted} inputs parsed");
}

#[test]
fn peer_info_parse_never_panics_and_round_trips() {
    let accepted = run("peer_info", 0x09ee_41f0, valid_peer_info, fuzz_peer_info);
    assert!(accepted > CASES / 4, "only {accepted} inputs parsed");
}

#[test]
fn peer_info_emit_round_trips() {
    let accepted = run(
        "peer_info_emit",
        0xe317,
        |rng| {
            let n = rng.below(260);
            bytes(rng, n)
        },
        fuzz_peer_info_emit,
    );
    assert!(accepted > CASES / 2, "only {accepted} infos emitted");
}

#[test]
fn inner_classify_never_panics() {
    let accepted = run("inner", 0x0001_a2e5, valid_inner, fuzz_inner);
    assert!(accepted > CASES / 3, "only {accepted} inputs classified");
}

#[test]
fn a_peer_info_control_message_goes_through_both_checks() {
    let mut rng = Rng::new(7);
    let info = valid_peer_info(&mut rng);
    assert_eq!(info[0], CONTROL_PEER_INFO);
    assert!(fuzz_inner(&info));
    assert!(fuzz_peer_info(&info));
    assert!(!fuzz_peer_info(&info[..info.len() - 1]));
}

#[test]
fn echo_messages_and_their_mutations_go_through_the_echo_check() {
    use mesh_proto::echo::Echo;
    let valid = |rng: &mut Rng| {
        let e = Echo {
            reply: rng.below(2) == 1,
            id: rng.next(),
            len: 10 + rng.below(1500),
        };
        let mut out = vec![0u8; e.buffer_len()];
        e.emit(&mut out).unwrap();
        out
    };
    let accepted = run("echo", 0x00ec_40ec, valid, proto_checks::fuzz_echo);
    assert!(accepted > CASES / 3, "only {accepted} echoes parsed");
    let mut rng = Rng::new(9);
    let echo = valid(&mut rng);
    assert!(fuzz_inner(&echo), "an echo is a control message");
}

fn valid_gossip(rng: &mut Rng) -> Vec<u8> {
    use mesh_proto::gossip::{
        AdjacencyBody, BUCKETS, GossipMsg, ListingEntry, MemberBody, WireRecord,
    };
    let key8 = |rng: &mut Rng| {
        let mut p = [0u8; 8];
        p.iter_mut().for_each(|b| *b = rng.next() as u8);
        p
    };
    let msg = match rng.below(4) {
        0 => {
            let n = rng.below(5);
            let records = (0..n)
                .map(|_| {
                    let mut id = [0u8; 32];
                    id.iter_mut().for_each(|b| *b = rng.next() as u8);
                    let body = if rng.below(2) == 0 {
                        MemberBody {
                            name: "n".repeat(rng.below(20)),
                            endpoint: (rng.below(2) == 0).then(|| {
                                std::net::SocketAddrV4::new(
                                    (rng.next() as u32).into(),
                                    rng.next() as u16,
                                )
                            }),
                            blocks: vec!["10.32.1.0/24".parse().unwrap_or_else(|e| panic!("{e}"))],
                            left: rng.below(2) == 0,
                        }
                        .to_bytes()
                    } else {
                        AdjacencyBody {
                            neighbours: (0..rng.below(6))
                                .map(|_| (key8(rng), rng.next() as u16))
                                .collect(),
                        }
                        .to_bytes()
                    };
                    WireRecord {
                        kind: 1 + rng.below(3) as u8,
                        id,
                        version: rng.next(),
                        body: body.unwrap_or_default(),
                    }
                })
                .collect();
            GossipMsg::Push(records)
        }
        1 => {
            let mut buckets = Box::new([0u32; BUCKETS]);
            buckets.iter_mut().for_each(|b| *b = rng.next() as u32);
            GossipMsg::Digest {
                count: rng.next() as u32,
                buckets,
                aside: rng.next() & 1 == 0,
            }
        }
        2 => {
            let bucket = rng.next() as u8;
            let mut entries: Vec<ListingEntry> = (0..rng.below(10))
                .map(|_| {
                    let mut p = key8(rng);
                    p[0] = bucket;
                    ListingEntry {
                        key: (1 + rng.below(3) as u8, p),
                        version: rng.next(),
                    }
                })
                .collect();
            entries.sort_by_key(|e| e.key);
            entries.dedup_by_key(|e| e.key);
            GossipMsg::Listing {
                bucket,
                low: (0, [bucket, 0, 0, 0, 0, 0, 0, 0]),
                high: (255, [bucket, 255, 255, 255, 255, 255, 255, 255]),
                entries,
            }
        }
        _ => GossipMsg::Pull(
            (0..rng.below(10))
                .map(|_| (rng.below(4) as u8, key8(rng)))
                .collect(),
        ),
    };
    msg.to_bytes().unwrap_or_default()
}

fn valid_relay(rng: &mut Rng) -> Vec<u8> {
    let mut dst = [0u8; 8];
    dst.iter_mut().for_each(|b| *b = rng.next() as u8);
    let inner = valid_datagram(rng);
    let mut out = mesh_proto::relay::wrap(dst, &inner);
    if rng.below(2) == 0 {
        out[0] = mesh_proto::relay::TYPE_RELAYED;
    }
    out
}

#[test]
fn gossip_parse_never_panics_and_round_trips() {
    let accepted = run(
        "gossip",
        0x0060_551b,
        valid_gossip,
        proto_checks::fuzz_gossip,
    );
    assert!(accepted > CASES / 4, "only {accepted} inputs parsed");
}

#[test]
fn relay_frames_parse_never_panics_and_rewrite_in_place() {
    let accepted = run("relay", 0x0004_e1a7, valid_relay, proto_checks::fuzz_relay);
    assert!(accepted > CASES / 4, "only {accepted} inputs parsed");
}

#[test]
fn block_requests_and_their_mutations_go_through_the_block_request_check() {
    let accepted = run(
        "block_request",
        0x0b10_c4e9,
        valid_block_request,
        proto_checks::fuzz_block_request,
    );
    assert!(
        accepted > CASES / 3,
        "only {accepted} block requests parsed"
    );
    let mut rng = Rng::new(11);
    let req = valid_block_request(&mut rng);
    assert!(fuzz_inner(&req), "a block request is a control message");
    assert!(
        proto_checks::fuzz_block_request(&req[..1]),
        "the type byte alone asks for one block"
    );
    assert!(!proto_checks::fuzz_block_request(&[]));
    assert!(!proto_checks::fuzz_block_request(&[0x04, 1]));
}
