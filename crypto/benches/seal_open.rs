//! Throughput of the per-packet path: `Session::seal` and `Session::open` in place, for a
//! small (64 B) and a full-MTU (1400 B) payload, with each cipher. Open needs a fresh counter per packet (the
//! replay window refuses repeats), so the open bench re-seals outside the timed section.

// A benchmark aborts on the first failure; there is no caller to hand an error to.
#![allow(clippy::expect_used)]
// The benchmark's clock starts at the real one: only `Instant::now` makes an `Instant`.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mesh_crypto::{
    Cipher, ClusterPsk, Handshake, HandshakePattern, Session, StaticKeypair, TAG_LEN,
};

fn sessions(now: Instant, cipher: Cipher) -> (Session, Session) {
    let (a, b) = (
        StaticKeypair::generate([1; 32]),
        StaticKeypair::generate([2; 32]),
    );
    let psk = ClusterPsk::derive(b"bench");
    let mut i = Handshake::initiate_ik(&a, &b.public(), &psk, [3; 32]).expect("initiator");
    let mut r = Handshake::respond(HandshakePattern::IK, &b, &psk, [4; 32]).expect("responder");
    let (mut msg, mut payload) = ([0_u8; 256], [0_u8; 256]);
    let len = i.write_message(&[], &mut msg).expect("message 1");
    r.read_message(&msg[..len], &mut payload).expect("read 1");
    let len = r.write_message(&[], &mut msg).expect("message 2");
    i.read_message(&msg[..len], &mut payload).expect("read 2");
    (
        i.into_session_with(now, cipher).expect("initiator session"),
        r.into_session_with(now, cipher).expect("responder session"),
    )
}

fn seal_open(c: &mut Criterion) {
    let now = Instant::now();
    let aad = [0_u8; 16];
    for (cipher, size) in Cipher::PREFERENCE
        .into_iter()
        .flat_map(|c| [(c, 64_usize), (c, 1400)])
    {
        let (mut tx, mut rx) = sessions(now, cipher);
        let mut group = c.benchmark_group(format!("{cipher}/{size}B"));
        group.throughput(Throughput::Bytes(size as u64));

        let mut buf = vec![0xab_u8; size + TAG_LEN];
        let mut counter = 0_u64;
        group.bench_function("seal", |bench| {
            bench.iter(|| {
                counter += 1;
                black_box(tx.seal(counter, &aad, &mut buf, size).expect("seal"))
            })
        });

        group.bench_function("open", |bench| {
            bench.iter_batched_ref(
                || {
                    let c = tx.next_counter(now).expect("counter");
                    let mut packet = vec![0xab_u8; size + TAG_LEN];
                    tx.seal(c, &aad, &mut packet, size).expect("seal");
                    (c, packet)
                },
                |(c, packet)| black_box(rx.open(now, *c, &aad, packet).expect("open")),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

/// What a junk handshake initiation costs before it is refused (one keyed BLAKE2s over a
/// 146-byte IK initiation), against what it cost before handshake MACs (reading IK message 1:
/// a Diffie-Hellman operation before its tag fails).
fn handshake_checks(c: &mut Criterion) {
    use mesh_crypto::{ClusterPsk, Handshake, HandshakePattern, Mac1Key, StaticKeypair};
    let psk = ClusterPsk::derive(b"benchmark cluster secret");
    let me = StaticKeypair::generate([7; 32]);
    let key = Mac1Key::for_receiver(&psk, &me.public());
    let junk = [0x5a_u8; 146];
    let mut group = c.benchmark_group("junk initiation");
    group.bench_function("mac1 check (refused)", |bench| {
        bench.iter(|| black_box(key.verify(&junk[..114], &junk[114..130])))
    });
    group.bench_function("IK message 1 read (refused, no MAC)", |bench| {
        bench.iter(|| {
            let mut hs =
                Handshake::respond(HandshakePattern::IK, &me, &psk, [1; 32]).expect("respond");
            let mut out = [0_u8; 200];
            black_box(hs.read_message(&junk[16..114], &mut out).is_err())
        })
    });
    group.finish();
}

criterion_group!(benches, seal_open, handshake_checks);
criterion_main!(benches);
