//! The check behind the `dns_answer` fuzz target.
//!
//! Shared with the deterministic corpus test `dns/core/tests/fuzz_corpus.rs`, which
//! includes this file by path, so `cargo test` runs the same assertions without a fuzzer.
//! It depends on `mesh-dns` and `hickory-proto` alone. It panics when a property fails and
//! returns whether hickory could parse the input as a message (the corpus test uses that to
//! make sure its inputs reach past the parser).
// Panicking is how a check reports a failed property.
#![allow(clippy::expect_used)]

use hickory_proto::op::{Message, MessageType, ResponseCode};
use mesh_dns::{Answer, Owner, QueryCtx, Server, Transport, ZoneConfig};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A small server: a few names, several addresses under one, two owners (one dead), a
/// reverse zone and a subset limit, so that every answering path is reachable.
pub fn dns_server() -> Server {
    let mut s = Server::new(ZoneConfig {
        reverse_zones: vec!["10.32.0.0/12".parse().expect("literal")],
        subset: Some(3),
        ..ZoneConfig::default()
    });
    let (a, b, dead) = (Owner([1; 32]), Owner([2; 32]), Owner([3; 32]));
    for (name, addr, owner) in [
        ("web", IpAddr::V4(Ipv4Addr::new(10, 32, 0, 1)), a),
        ("web", IpAddr::V4(Ipv4Addr::new(10, 32, 0, 2)), b),
        ("web", IpAddr::V4(Ipv4Addr::new(10, 32, 0, 3)), dead),
        (
            "web",
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            a,
        ),
        ("a.b.c", IpAddr::V4(Ipv4Addr::new(10, 33, 1, 1)), b),
    ] {
        let n = s.config.qualify(name).expect("valid name");
        s.store.add(&n, addr, owner, 1).expect("fqdn");
    }
    for i in 0..40u8 {
        let n = s.config.qualify("many").expect("valid name");
        s.store
            .add(&n, IpAddr::V4(Ipv4Addr::new(10, 34, 0, i)), a, 1)
            .expect("fqdn");
    }
    s.store.set_node_alive(dead, false);
    s
}

/// `answer` never panics; a reply parses, is a response with the query's ID and fits the
/// transport's limit; input hickory cannot parse gets nothing or FORMERR; a forwarded query
/// is one that parsed.
pub fn fuzz_answer(server: &Server, data: &[u8]) -> bool {
    let parsed = Message::from_vec(data).ok();
    for (i, transport) in [Transport::Udp, Transport::Tcp].into_iter().enumerate() {
        let ctx = QueryCtx {
            transport,
            near: Some(Owner([1; 32])),
        };
        let seed = data.len() as u64 + i as u64;
        match server.answer(data, &ctx, seed) {
            Answer::Drop(_) => {}
            Answer::Forward(f) => {
                let p = parsed
                    .as_ref()
                    .expect("forwarded a query hickory cannot parse");
                assert_eq!(p.queries.len(), 1, "forwarded without exactly one question");
                assert_eq!(f.request.metadata.id, p.metadata.id);
                if transport == Transport::Udp {
                    assert!((512..=1232).contains(&f.max_reply_len));
                }
            }
            Answer::Reply(bytes) => {
                let limit = match transport {
                    Transport::Udp => 1232,
                    Transport::Tcp => usize::from(u16::MAX),
                };
                assert!(bytes.len() <= limit, "reply of {} bytes", bytes.len());
                let reply = Message::from_vec(&bytes).expect("our reply does not parse");
                assert_eq!(reply.metadata.message_type, MessageType::Response);
                assert_eq!(&bytes[..2], &data[..2], "reply ID differs");
                if parsed.is_none() {
                    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
                }
                if transport == Transport::Udp && parsed.as_ref().is_some_and(|p| p.edns.is_none())
                {
                    assert!(bytes.len() <= 512, "{} bytes without EDNS", bytes.len());
                }
            }
        }
    }
    parsed.is_some()
}

/// A gossiped DNS record (`mesh_dns::from_gossip`): the first 8 bytes of `data` are the
/// version, the rest the body. Never panics; a body that parses has exactly one id, the
/// record decodes only under it, and encodes back to the same id, version and body.
/// Returns whether the body parsed.
pub fn fuzz_dns_gossip(data: &[u8]) -> bool {
    let Some((version, body)) = data.split_first_chunk::<8>() else {
        return false;
    };
    let version = u64::from_le_bytes(*version);
    let some_id = [data.len() as u8; 32];
    let Ok(id) = mesh_dns::body_id(body) else {
        assert!(mesh_dns::from_gossip(&some_id, version, body).is_err());
        return false;
    };
    if some_id != id {
        assert_eq!(
            mesh_dns::from_gossip(&some_id, version, body),
            Err(mesh_dns::GossipError::IdMismatch)
        );
    }
    let entry = mesh_dns::from_gossip(&id, version, body).expect("the body's own id");
    let again = mesh_dns::to_gossip(&entry).expect("a decoded version fits");
    assert_eq!(again.id, id);
    assert_eq!(again.version, version);
    assert_eq!(again.body, body);
    true
}
