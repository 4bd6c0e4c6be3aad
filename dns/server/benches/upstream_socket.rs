//! What a fresh upstream socket per query costs (RFC 5452's random source port, see
//! `mesh-dns-server`'s docs): sending a 40-byte datagram on loopback from one shared
//! socket, against binding a socket to port 0, sending from it and closing it, per query.
//! std only, no harness, on 127.0.0.1; prints microseconds per query and a few of the
//! ports the kernel drew. `cargo bench -p mesh-dns-server --bench upstream_socket`, or
//! `rustc -O dns/server/benches/upstream_socket.rs && ./upstream_socket` on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::time::Instant;

const QUERIES: u32 = 20_000;

fn main() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_nonblocking(true).unwrap();
    let to = sink.local_addr().unwrap();
    let msg = [0u8; 40];
    let mut buf = [0u8; 64];
    // Keep the sink's receive buffer from filling (a full one drops, which costs less).
    let drain = |buf: &mut [u8]| while sink.recv_from(buf).is_ok() {};
    let shared = UdpSocket::bind("127.0.0.1:0").unwrap();
    for round in 0..3 {
        let t = Instant::now();
        for i in 0..QUERIES {
            shared.send_to(&msg, to).unwrap();
            if i % 64 == 0 {
                drain(&mut buf);
            }
        }
        let one = t.elapsed().as_secs_f64() * 1e6 / f64::from(QUERIES);
        drain(&mut buf);
        let mut ports = Vec::new();
        let t = Instant::now();
        for i in 0..QUERIES {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(&msg, to).unwrap();
            if ports.len() < 6 {
                ports.push(s.local_addr().unwrap().port());
            }
            drop(s);
            if i % 64 == 0 {
                drain(&mut buf);
            }
        }
        let fresh = t.elapsed().as_secs_f64() * 1e6 / f64::from(QUERIES);
        drain(&mut buf);
        println!(
            "round {round}: shared socket {one:.2} µs/query, fresh socket {fresh:.2} µs/query \
             (+{:.2} µs); ports drawn {ports:?}",
            fresh - one
        );
    }
}
