//! The `dns_answer` and `dns_gossip` fuzz targets' checks on a fixed pseudo-random corpus, so `cargo test`
//! exercises the same properties on every run without a fuzzer.
//!
//! The check lives in `integration/fuzz/src/dns_checks.rs`. Inputs are valid queries built
//! with hickory (every type, class, opcode and EDNS shape we handle), one to four random
//! edits of those, and random bytes, from a seeded xorshift: a failure names its case
//! number and input, and reproduces on every run.
#![allow(clippy::unwrap_used)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../integration/fuzz/src/dns_checks.rs"]
mod dns_checks;

use dns_checks::{dns_server, fuzz_answer, fuzz_dns_gossip};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

const CASES: usize = 6000;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../integration/fuzz/src/corpus.rs"]
mod corpus;

use corpus::Rng;

/// Bytes the DNS codec branches on (label lengths, compression pointers, ...).
const INTERESTING: [u8; 12] = [
    0,
    1,
    2,
    0x0c,
    0x29,
    0x3f,
    0x40,
    0x80,
    0xc0,
    0xc0 | 12,
    0xfe,
    0xff,
];

fn byte(rng: &mut Rng) -> u8 {
    rng.byte_from(&INTERESTING)
}

fn valid_query(rng: &mut Rng) -> Vec<u8> {
    const NAMES: [&str; 12] = [
        "web.mesh.local.",
        "WEB.Mesh.Local.",
        "many.mesh.local.",
        "b.c.mesh.local.",
        "nothere.mesh.local.",
        "mesh.local.",
        "example.com.",
        "1.0.32.10.in-addr.arpa.",
        "9.9.33.10.in-addr.arpa.",
        "32.10.in-addr.arpa.",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
        ".",
    ];
    const TYPES: [RecordType; 9] = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::PTR,
        RecordType::SOA,
        RecordType::ANY,
        RecordType::MX,
        RecordType::TXT,
        RecordType::AXFR,
        RecordType::NS,
    ];
    let mut m = Message::new(rng.next() as u16, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rng.below(2) == 0;
    if rng.below(10) == 0 {
        m.metadata.op_code = OpCode::from_u8(rng.below(16) as u8);
    }
    for _ in 0..[1, 1, 1, 1, 0, 2][rng.below(6)] {
        let mut q = Query::query(
            Name::from_ascii(NAMES[rng.below(NAMES.len())]).unwrap(),
            TYPES[rng.below(TYPES.len())],
        );
        if rng.below(10) == 0 {
            q.set_query_class([DNSClass::CH, DNSClass::ANY, DNSClass::HS][rng.below(3)]);
        }
        m.queries.push(q);
    }
    if rng.below(2) == 0 {
        let mut e = Edns::new();
        e.set_max_payload([0, 512, 700, 1232, 4096, 65535][rng.below(6)] as u16);
        e.set_version(if rng.below(10) == 0 { 1 } else { 0 });
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

fn mutate(rng: &mut Rng, v: Vec<u8>) -> Vec<u8> {
    corpus::mutate(rng, v, byte)
}

#[test]
fn answer_survives_random_and_mutated_queries() {
    let server = dns_server();
    let mut rng = Rng::new(0x00d0_5eed_1234_5678);
    let mut parsed = 0;
    for case in 0..CASES {
        let input = match case % 3 {
            0 => valid_query(&mut rng),
            1 => {
                let v = valid_query(&mut rng);
                mutate(&mut rng, v)
            }
            _ => {
                let n = rng.below(64);
                (0..n).map(|_| byte(&mut rng)).collect()
            }
        };
        match catch_unwind(AssertUnwindSafe(|| fuzz_answer(&server, &input))) {
            Ok(p) => parsed += usize::from(p),
            Err(e) => {
                eprintln!("case {case} failed on input {input:02x?}");
                resume_unwind(e);
            }
        }
    }
    assert!(parsed > CASES / 3, "only {parsed} of {CASES} inputs parsed");
}

/// A gossiped DNS record as the `dns_gossip` target takes it: version (8 bytes, LE), body.
fn valid_gossip(rng: &mut Rng) -> Vec<u8> {
    const NAMES: [&str; 5] = [
        "web.mesh.local.",
        "a.b.c.mesh.local.",
        "x.",
        ".",
        "a-very-long-label-of-sixty-three-bytes-xxxxxxxxxxxxxxxxxxxxxxxx.mesh.local.",
    ];
    let addr: std::net::IpAddr = if rng.below(2) == 0 {
        std::net::Ipv4Addr::from(rng.next() as u32).into()
    } else {
        std::net::Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next())).into()
    };
    let entry = mesh_dns::Entry {
        name: Name::from_ascii(NAMES[rng.below(NAMES.len())]).unwrap(),
        addr,
        owner: mesh_dns::Owner([rng.next() as u8; 32]),
        stamp: mesh_dns::Stamp {
            version: rng.next() >> 1,
            tombstone: rng.below(2) == 0,
        },
    };
    let g = mesh_dns::to_gossip(&entry).unwrap();
    let mut v = g.version.to_le_bytes().to_vec();
    v.extend_from_slice(&g.body);
    v
}

#[test]
fn gossiped_records_survive_random_and_mutated_bodies() {
    let mut rng = Rng::new(0x0d05_9055_1b00_c0de);
    let mut parsed = 0;
    for case in 0..CASES {
        let input = match case % 3 {
            0 => valid_gossip(&mut rng),
            1 => {
                let v = valid_gossip(&mut rng);
                mutate(&mut rng, v)
            }
            _ => {
                let n = rng.below(80);
                (0..n).map(|_| byte(&mut rng)).collect()
            }
        };
        match catch_unwind(AssertUnwindSafe(|| fuzz_dns_gossip(&input))) {
            Ok(p) => parsed += usize::from(p),
            Err(e) => {
                eprintln!("case {case} failed on input {input:02x?}");
                resume_unwind(e);
            }
        }
    }
    assert!(parsed > CASES / 3, "only {parsed} of {CASES} inputs parsed");
}
