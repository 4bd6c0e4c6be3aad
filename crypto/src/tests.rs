//! Handshake-to-session tests across the modules: two parties, real messages, real packets.
// A test starts its virtual clock at the real one: only `Instant::now` makes an `Instant`.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng as _};

use crate::timers::{
    REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME,
    RESPONDER_REKEY_AFTER_TIME,
};
use crate::*;

const SECRET: &[u8] = b"cluster secret for tests";

fn keypair(n: u8) -> StaticKeypair {
    StaticKeypair::generate([n; 32])
}

/// Runs a handshake to the end, each message carrying a distinct payload that the other side
/// must read back. Returns the two handshakes and the messages on the wire.
fn drive(
    mut initiator: Handshake,
    mut responder: Handshake,
) -> (Handshake, Handshake, Vec<Vec<u8>>) {
    let mut wire = Vec::new();
    let mut step = 0_u8;
    while !(initiator.is_finished() && responder.is_finished()) {
        let (writer, reader) = if initiator.is_my_turn() {
            (&mut initiator, &mut responder)
        } else {
            (&mut responder, &mut initiator)
        };
        let payload = vec![step; 10 + usize::from(step)];
        let mut msg = vec![0_u8; payload.len() + HANDSHAKE_OVERHEAD_MAX];
        let len = writer.write_message(&payload, &mut msg).unwrap();
        msg.truncate(len);
        let mut got = vec![0_u8; msg.len()];
        let got_len = reader.read_message(&msg, &mut got).unwrap();
        assert_eq!(&got[..got_len], &payload[..]);
        wire.push(msg);
        step += 1;
    }
    (initiator, responder, wire)
}

fn ik_pair(seed: u8) -> (Handshake, Handshake) {
    let (a, b) = (keypair(1), keypair(2));
    let psk = ClusterPsk::derive(SECRET);
    (
        Handshake::initiate_ik(&a, &b.public(), &psk, [seed; 32]).unwrap(),
        Handshake::respond(HandshakePattern::IK, &b, &psk, [seed + 100; 32]).unwrap(),
    )
}

fn xx_pair(seed: u8) -> (Handshake, Handshake) {
    let (a, b) = (keypair(1), keypair(2));
    let psk = ClusterPsk::derive(SECRET);
    (
        Handshake::initiate_xx(&a, &psk, [seed; 32]).unwrap(),
        Handshake::respond(HandshakePattern::XX, &b, &psk, [seed + 100; 32]).unwrap(),
    )
}

fn sessions(pair: (Handshake, Handshake), now: Instant) -> (Session, Session) {
    let (i, r, _) = drive(pair.0, pair.1);
    (i.into_session(now).unwrap(), r.into_session(now).unwrap())
}

/// Seals `data` with `counter` on `from`, returns the wire bytes.
fn seal(from: &Session, counter: u64, aad: &[u8], data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0_u8; data.len() + TAG_LEN];
    buf[..data.len()].copy_from_slice(data);
    let len = from.seal(counter, aad, &mut buf, data.len()).unwrap();
    assert_eq!(len, data.len() + TAG_LEN);
    buf
}

fn send(from: &mut Session, to: &mut Session, now: Instant, data: &[u8]) {
    let counter = from.next_counter(now).unwrap();
    let mut buf = seal(from, counter, b"hdr", data);
    let len = to.open(now, counter, b"hdr", &mut buf).unwrap();
    assert_eq!(&buf[..len], data);
}

fn exchange_both_ways(a: &mut Session, b: &mut Session, now: Instant) {
    for n in 0..50_u8 {
        send(a, b, now, &[n; 100]);
        send(b, a, now, &vec![n ^ 0xff; 1400]);
    }
    send(a, b, now, b"");
}

#[test]
fn ik_handshake_with_payloads_then_data_both_ways() {
    let now = Instant::now();
    let (i, r, wire) = drive(ik_pair(1).0, ik_pair(1).1);
    assert_eq!(wire.len(), 2);
    assert_eq!(i.remote_static(), Some(keypair(2).public()));
    assert_eq!(r.remote_static(), Some(keypair(1).public()));
    assert_eq!(i.handshake_hash(), r.handshake_hash());
    assert!(i.is_initiator() && !r.is_initiator());
    assert_eq!(i.pattern(), HandshakePattern::IK);
    let (mut a, mut b) = (i.into_session(now).unwrap(), r.into_session(now).unwrap());
    assert!(a.is_initiator() && !b.is_initiator());
    exchange_both_ways(&mut a, &mut b, now);
}

#[test]
fn xx_handshake_with_payloads_then_data_both_ways() {
    let now = Instant::now();
    let (i, r) = xx_pair(1);
    assert_eq!(i.remote_static(), None);
    let (i, r, wire) = drive(i, r);
    assert_eq!(wire.len(), 3);
    assert_eq!(i.remote_static(), Some(keypair(2).public()));
    assert_eq!(r.remote_static(), Some(keypair(1).public()));
    assert_eq!(i.pattern(), HandshakePattern::XX);
    let (mut a, mut b) = (i.into_session(now).unwrap(), r.into_session(now).unwrap());
    exchange_both_ways(&mut a, &mut b, now);
}

#[test]
fn message_overhead_is_as_documented() {
    for (pair, pattern) in [
        (ik_pair(3), HandshakePattern::IK),
        (xx_pair(3), HandshakePattern::XX),
    ] {
        let (_, _, wire) = drive(pair.0, pair.1);
        for (index, msg) in wire.iter().enumerate() {
            let payload_len = 10 + index;
            let overhead = msg.len() - payload_len;
            assert_eq!(Some(overhead), pattern.message_overhead(index));
            assert!(overhead <= HANDSHAKE_OVERHEAD_MAX);
        }
        let max = (0..pattern.message_count())
            .filter_map(|i| pattern.message_overhead(i))
            .max();
        assert_eq!(max, Some(HANDSHAKE_OVERHEAD_MAX));
    }
    assert_eq!(HANDSHAKE_OVERHEAD_MAX, 96);
}

#[test]
fn same_seeds_same_bytes() {
    let (_, _, first) = drive(xx_pair(7).0, xx_pair(7).1);
    let (_, _, again) = drive(xx_pair(7).0, xx_pair(7).1);
    let (_, _, other) = drive(xx_pair(8).0, xx_pair(8).1);
    assert_eq!(first, again);
    assert_ne!(first[0], other[0]);

    let (_, _, first) = drive(ik_pair(7).0, ik_pair(7).1);
    let (_, _, again) = drive(ik_pair(7).0, ik_pair(7).1);
    assert_eq!(first, again);

    // And the sessions agree: a packet sealed by one run opens in the other.
    let now = Instant::now();
    let (a1, _) = sessions(ik_pair(7), now);
    let (_, mut b2) = sessions(ik_pair(7), now);
    let mut buf = seal(&a1, 0, b"", b"determinism");
    assert_eq!(b2.open(now, 0, b"", &mut buf), Ok(11));
}

fn write(h: &mut Handshake) -> Vec<u8> {
    let mut msg = vec![0_u8; HANDSHAKE_OVERHEAD_MAX + 4];
    let len = h.write_message(b"ping", &mut msg).unwrap();
    msg.truncate(len);
    msg
}

fn read(h: &mut Handshake, msg: &[u8]) -> Result<usize, HandshakeError> {
    let mut out = vec![0_u8; msg.len()];
    h.read_message(msg, &mut out)
}

#[test]
fn ik_wrong_psk_fails_at_message_2_on_the_initiator() {
    let (a, b) = (keypair(1), keypair(2));
    let mut i = Handshake::initiate_ik(
        &a,
        &b.public(),
        &ClusterPsk::derive(b"other secret"),
        [1; 32],
    )
    .unwrap();
    let mut r = Handshake::respond(
        HandshakePattern::IK,
        &b,
        &ClusterPsk::derive(SECRET),
        [2; 32],
    )
    .unwrap();
    let m1 = write(&mut i);
    assert_eq!(
        read(&mut r, &m1),
        Ok(4),
        "the PSK enters IK after message 1"
    );
    let m2 = write(&mut r);
    let err = read(&mut i, &m2).unwrap_err();
    assert_eq!(err, HandshakeError::Authentication { message: 2 });
    assert_eq!(err.reason(), "authentication");
    assert!(!i.is_finished());
    assert_eq!(
        i.into_session(Instant::now()).unwrap_err(),
        HandshakeError::NotFinished,
        "the failed read left the handshake waiting for message 2"
    );
}

#[test]
fn xx_wrong_psk_fails_at_message_1_and_reveals_no_static_key() {
    let (a, b) = (keypair(1), keypair(2));
    let mut i = Handshake::initiate_xx(&a, &ClusterPsk::derive(SECRET), [1; 32]).unwrap();
    let mut r = Handshake::respond(
        HandshakePattern::XX,
        &b,
        &ClusterPsk::derive(b"other secret"),
        [2; 32],
    )
    .unwrap();
    let m1 = write(&mut i);
    assert_eq!(
        read(&mut r, &m1),
        Err(HandshakeError::Authentication { message: 1 }),
        "the PSK enters XX before message 1's payload"
    );
    assert!(!r.is_finished());
    assert_eq!(r.remote_static(), None);
}

#[test]
fn xx_outsider_cannot_learn_the_responders_static_key() {
    // An outsider with the wrong PSK gets message 2 from a responder that (wrongly) went on:
    // simulate it by a responder with the right PSK answering an initiator with the wrong one.
    let (a, b) = (keypair(1), keypair(2));
    let mut outsider =
        Handshake::initiate_xx(&a, &ClusterPsk::derive(b"guessing"), [1; 32]).unwrap();
    let mut insider = Handshake::initiate_xx(&a, &ClusterPsk::derive(SECRET), [1; 32]).unwrap();
    let mut r = Handshake::respond(
        HandshakePattern::XX,
        &b,
        &ClusterPsk::derive(SECRET),
        [9; 32],
    )
    .unwrap();
    let m1 = write(&mut insider);
    assert_eq!(read(&mut r, &m1), Ok(4));
    let m2 = write(&mut r);
    // Same ephemeral seed, wrong PSK: message 2 does not decrypt, the key stays hidden.
    let _ = write(&mut outsider);
    assert!(matches!(
        read(&mut outsider, &m2),
        Err(HandshakeError::Authentication { message: 2 })
    ));
    assert_eq!(outsider.remote_static(), None);
    assert!(!m2.windows(32).any(|w| w == b.public().as_bytes()));
}

#[test]
fn ik_wrong_remote_static_fails_at_message_1_on_the_responder() {
    let (a, b, c) = (keypair(1), keypair(2), keypair(3));
    let psk = ClusterPsk::derive(SECRET);
    let mut i = Handshake::initiate_ik(&a, &c.public(), &psk, [1; 32]).unwrap();
    let mut r = Handshake::respond(HandshakePattern::IK, &b, &psk, [2; 32]).unwrap();
    let m1 = write(&mut i);
    assert_eq!(
        read(&mut r, &m1),
        Err(HandshakeError::Authentication { message: 1 })
    );
    assert_eq!(r.remote_static(), None);
    assert_eq!(
        read(&mut r, &m1),
        Err(HandshakeError::Authentication { message: 1 }),
        "still waiting for a message 1; this one fails again"
    );
}

#[test]
fn tampered_handshake_message_fails() {
    let (mut i, mut r) = xx_pair(4);
    let m1 = write(&mut i);
    read(&mut r, &m1).unwrap();
    let mut m2 = write(&mut r);
    let last = m2.len() - 1;
    m2[last] ^= 1;
    assert_eq!(
        read(&mut i, &m2),
        Err(HandshakeError::Authentication { message: 2 })
    );
}

#[test]
fn handshake_misuse_is_reported() {
    let (mut i, mut r) = ik_pair(5);
    assert_eq!(read(&mut i, &[0; 200]), Err(HandshakeError::OutOfTurn));
    assert_eq!(
        r.write_message(b"", &mut [0; 200]),
        Err(HandshakeError::OutOfTurn)
    );
    assert_eq!(
        i.write_message(b"abc", &mut [0; 98]),
        Err(HandshakeError::BufferTooSmall {
            needed: 99,
            available: 98
        })
    );
    assert_eq!(
        i.write_message(
            &vec![0; MAX_HANDSHAKE_MSG],
            &mut vec![0; 2 * MAX_HANDSHAKE_MSG]
        ),
        Err(HandshakeError::PayloadTooLarge {
            len: MAX_HANDSHAKE_MSG
        })
    );
    let m1 = write(&mut i);
    assert_eq!(
        r.read_message(&m1, &mut [0; 3]),
        Err(HandshakeError::BufferTooSmall {
            needed: 4,
            available: 3
        })
    );
    // Nothing was consumed by the failed calls: the handshake still completes.
    assert_eq!(read(&mut r, &m1), Ok(4));
    assert!(!r.is_finished());
    assert_eq!(
        Handshake::respond(
            HandshakePattern::IK,
            &keypair(2),
            &ClusterPsk::derive(SECRET),
            [0; 32]
        )
        .unwrap()
        .into_session(Instant::now())
        .unwrap_err(),
        HandshakeError::NotFinished
    );
    let m2 = write(&mut r);
    read(&mut i, &m2).unwrap();
    assert!(i.is_finished() && r.is_finished());
    assert!(!i.is_my_turn() && !r.is_my_turn());
    assert_eq!(
        i.write_message(b"", &mut [0; 200]),
        Err(HandshakeError::AlreadyFinished)
    );
    assert_eq!(read(&mut r, &m2), Err(HandshakeError::AlreadyFinished));
}

#[test]
fn short_handshake_message_is_malformed_and_leaves_the_handshake_waiting() {
    let (mut i, mut r) = ik_pair(6);
    let m1 = write(&mut i);
    let err = read(&mut r, &m1[..40]).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::Malformed {
            message: 1,
            len: 40
        }
    );
    assert_eq!(err.reason(), "malformed");
    assert!(!r.is_my_turn());
    assert_eq!(
        read(&mut r, &m1),
        Ok(4),
        "the genuine message 1 still reads"
    );
    assert!(r.is_my_turn());
}

/// A forged or altered response (message 2) must not end the initiator's handshake: the
/// genuine response that comes after it completes it, with the same keys as a handshake that
/// never saw the forgery. Same for the XX responder waiting for message 3.
#[test]
fn a_forged_message_leaves_the_pending_handshake_in_place() {
    let (mut i, mut r) = ik_pair(11);
    let m1 = write(&mut i);
    read(&mut r, &m1).unwrap();
    let m2 = write(&mut r);
    for forged in [
        {
            let mut m = m2.clone();
            m[40] ^= 1;
            m
        },
        vec![0x55; m2.len()],
        m2[..m2.len() - 1].to_vec(),
    ] {
        assert!(read(&mut i, &forged).is_err());
        assert!(!i.is_finished());
    }
    assert_eq!(read(&mut i, &m2), Ok(4));
    let now = Instant::now();
    let si = i.into_session(now).unwrap();
    let mut sr = r.into_session(now).unwrap();
    let mut buf = [0_u8; 64];
    buf[..5].copy_from_slice(b"hello");
    let n = si.seal(0, b"", &mut buf, 5).unwrap();
    assert_eq!(sr.open(now, 0, b"", &mut buf[..n]), Ok(5));

    let (a, b) = (keypair(1), keypair(2));
    let psk = ClusterPsk::derive(SECRET);
    let mut i = Handshake::initiate_xx(&a, &psk, [3; 32]).unwrap();
    let mut r = Handshake::respond(HandshakePattern::XX, &b, &psk, [4; 32]).unwrap();
    let m1 = write(&mut i);
    read(&mut r, &m1).unwrap();
    let m2 = write(&mut r);
    read(&mut i, &m2).unwrap();
    let m3 = write(&mut i);
    let mut forged = m3.clone();
    forged[10] ^= 0x80;
    assert_eq!(
        read(&mut r, &forged),
        Err(HandshakeError::Authentication { message: 3 })
    );
    assert_eq!(r.remote_static(), None, "nothing learned from the forgery");
    assert!(read(&mut r, &m3).is_ok());
    assert!(r.is_finished());
    assert_eq!(r.remote_static(), Some(a.public()));
}

#[test]
fn open_errors_are_distinct() {
    let now = Instant::now();
    let (mut a, mut b) = sessions(ik_pair(10), now);
    let (mut other, _) = sessions(xx_pair(11), now);
    let mut reasons = std::collections::BTreeSet::new();

    // Tampered ciphertext, tag, aad, counter: authentication.
    for flip in [0_usize, 99, 100 + TAG_LEN - 1] {
        let mut buf = seal(&a, 0, b"hdr", &[7; 100]);
        buf[flip] ^= 0x80;
        assert_eq!(
            b.open(now, 0, b"hdr", &mut buf),
            Err(OpenError::Authentication)
        );
    }
    let mut buf = seal(&a, 0, b"hdr", &[7; 100]);
    assert_eq!(
        b.open(now, 0, b"HDR", &mut buf.clone()),
        Err(OpenError::Authentication)
    );
    assert_eq!(
        b.open(now, 1, b"hdr", &mut buf.clone()),
        Err(OpenError::Authentication)
    );
    // Sealed by a session with other keys: authentication.
    let c = other.next_counter(now).unwrap();
    let mut foreign = seal(&other, c, b"hdr", &[7; 100]);
    let err = b.open(now, c, b"hdr", &mut foreign).unwrap_err();
    assert_eq!(err, OpenError::Authentication);
    reasons.insert(err.reason());

    // The genuine packet still opens (failures did not mark counter 0), then is a replay.
    let copy = buf.clone();
    assert_eq!(b.open(now, 0, b"hdr", &mut buf), Ok(100));
    let err = b.open(now, 0, b"hdr", &mut copy.clone()).unwrap_err();
    assert_eq!(err, OpenError::Replay);
    reasons.insert(err.reason());

    // Far below the window: too old (checked before decryption).
    let high = 50_000;
    let mut buf = seal(&a, high, b"hdr", b"x");
    b.open(now, high, b"hdr", &mut buf).unwrap();
    let mut old = seal(&a, 5, b"hdr", b"x");
    let err = b.open(now, 5, b"hdr", &mut old).unwrap_err();
    assert_eq!(err, OpenError::TooOld);
    reasons.insert(err.reason());

    let err = b
        .open(now, high + 1, b"hdr", &mut [0; TAG_LEN - 1])
        .unwrap_err();
    assert_eq!(err, OpenError::Truncated);
    reasons.insert(err.reason());

    let later = now + REJECT_AFTER_TIME;
    let mut buf = seal(&a, high + 1, b"hdr", b"x");
    let err = b.open(later, high + 1, b"hdr", &mut buf).unwrap_err();
    assert_eq!(err, OpenError::Expired);
    reasons.insert(err.reason());
    assert_eq!(a.next_counter(later), Err(SealError::Expired));

    assert_eq!(
        reasons.into_iter().collect::<Vec<_>>(),
        [
            "authentication",
            "expired_session",
            "replay",
            "too_old",
            "truncated"
        ]
    );
}

#[test]
fn failed_authentication_does_not_move_the_window() {
    let now = Instant::now();
    let (a, mut b) = sessions(ik_pair(12), now);
    // A forged packet with a huge counter must not push genuine counters out of the window.
    let mut forged = vec![0_u8; 64];
    assert_eq!(
        b.open(now, 1 << 40, b"", &mut forged),
        Err(OpenError::Authentication)
    );
    let mut buf = seal(&a, 3, b"", b"genuine");
    assert_eq!(b.open(now, 3, b"", &mut buf), Ok(7));
    let mut forged = seal(&a, 4, b"", b"genuine");
    forged[0] ^= 1;
    assert_eq!(
        b.open(now, 4, b"", &mut forged),
        Err(OpenError::Authentication)
    );
    let mut buf = seal(&a, 4, b"", b"genuine");
    assert_eq!(b.open(now, 4, b"", &mut buf), Ok(7));
}

#[test]
fn out_of_order_delivery_within_the_window_accepted_once() {
    let now = Instant::now();
    let (mut a, mut b) = sessions(xx_pair(13), now);
    let mut packets: Vec<(u64, Vec<u8>)> = (0..20_000_u64)
        .map(|_| {
            let c = a.next_counter(now).unwrap();
            (c, seal(&a, c, b"", &c.to_le_bytes()))
        })
        .collect();
    let mut rng = ChaCha20Rng::from_seed([13; 32]);
    for chunk in packets.chunks_mut(8000) {
        for i in (1..chunk.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            chunk.swap(i, j);
        }
    }
    assert_ne!(packets[0].0, 0, "the shuffle shuffled");
    let mut seen = vec![false; packets.len()];
    for (counter, wire) in &packets {
        let mut buf = wire.clone();
        let len = b.open(now, *counter, b"", &mut buf).unwrap();
        assert_eq!(&buf[..len], &counter.to_le_bytes());
        let slot = &mut seen[usize::try_from(*counter).unwrap()];
        assert!(!*slot);
        *slot = true;
    }
    assert!(seen.iter().all(|s| *s));
    // Second delivery of everything: nothing is accepted again.
    for (counter, wire) in &packets {
        let err = b.open(now, *counter, b"", &mut wire.clone()).unwrap_err();
        assert!(
            matches!(err, OpenError::Replay | OpenError::TooOld),
            "{counter}: {err:?}"
        );
    }
}

#[test]
fn traffic_flows_across_a_rekey() {
    let t0 = Instant::now();
    let (mut a1, mut b1) = sessions(ik_pair(20), t0);
    exchange_both_ways(&mut a1, &mut b1, t0);

    // Packets sealed with the old session, still in flight while the rekey happens.
    let in_flight: Vec<(u64, Vec<u8>)> = (0..5)
        .map(|n| {
            let c = a1.next_counter(t0).unwrap();
            (c, seal(&a1, c, b"", &[n; 64]))
        })
        .collect();
    let back = b1.next_counter(t0).unwrap();
    let back_wire = seal(&b1, back, b"", b"reply in flight");

    let t1 = t0 + REKEY_AFTER_TIME;
    assert!(a1.needs_rekey(t1));
    let (mut a2, mut b2) = sessions(ik_pair(21), t1);
    assert_eq!(a2.created(), t1);
    exchange_both_ways(&mut a2, &mut b2, t1);

    // The old session still opens what was sealed under it, in reverse order even.
    for (n, (c, wire)) in in_flight.iter().enumerate().rev() {
        let mut buf = wire.clone();
        let len = b1.open(t1, *c, b"", &mut buf).unwrap();
        assert_eq!(&buf[..len], &[u8::try_from(n).unwrap(); 64]);
        // ...and the new one refuses them.
        assert_eq!(
            b2.open(t1, *c, b"", &mut wire.clone()),
            Err(OpenError::Authentication)
        );
    }
    let mut buf = back_wire.clone();
    assert_eq!(a1.open(t1, back, b"", &mut buf), Ok(15));
    exchange_both_ways(&mut a2, &mut b2, t1);
    exchange_both_ways(&mut a1, &mut b1, t1);
}

#[test]
fn counters_and_lifetimes() {
    let now = Instant::now();
    let (mut a, mut b) = sessions(ik_pair(30), now);
    assert_eq!(a.next_counter(now), Ok(0));
    assert_eq!(a.next_counter(now), Ok(1));
    assert_eq!(a.sent(), 2);

    assert!(!a.needs_rekey(now) && !b.needs_rekey(now));
    let just_before = now + REKEY_AFTER_TIME - Duration::from_nanos(1);
    assert!(!a.needs_rekey(just_before));
    assert!(a.needs_rekey(now + REKEY_AFTER_TIME));
    assert!(
        !b.needs_rekey(now + REKEY_AFTER_TIME),
        "the responder leaves time-based rekeys to the initiator"
    );
    assert!(b.needs_rekey(now + RESPONDER_REKEY_AFTER_TIME));

    b.set_next_send_for_test(REKEY_AFTER_MESSAGES);
    assert!(b.needs_rekey(now), "both sides rekey on message count");

    assert!(!a.is_expired(now + REJECT_AFTER_TIME - Duration::from_nanos(1)));
    assert!(a.is_expired(now + REJECT_AFTER_TIME));
    // A `now` before creation counts as age zero, not as a panic.
    assert!(!a.is_expired(now.checked_sub(Duration::from_secs(1)).unwrap_or(now)));

    a.set_next_send_for_test(REJECT_AFTER_MESSAGES - 1);
    assert_eq!(a.next_counter(now), Ok(REJECT_AFTER_MESSAGES - 1));
    let err = a.next_counter(now).unwrap_err();
    assert_eq!(err, SealError::Exhausted);
    assert_eq!(err.reason(), "exhausted");
    assert_eq!(
        a.seal(REJECT_AFTER_MESSAGES, b"", &mut [0; 32], 0),
        Err(SealError::Exhausted)
    );
    assert_eq!(SealError::Expired.reason(), "expired_session");
}

#[test]
fn seal_layout_and_buffer_checks() {
    let now = Instant::now();
    let (a, mut b) = sessions(xx_pair(31), now);
    let plaintext = [0x42_u8; 64];
    let mut buf = [0_u8; 100];
    buf[..64].copy_from_slice(&plaintext);
    assert_eq!(a.seal(9, b"aad", &mut buf, 64), Ok(64 + TAG_LEN));
    assert_ne!(&buf[..64], &plaintext[..], "encrypted in place");
    assert_eq!(
        &buf[64 + TAG_LEN..],
        &[0; 100 - 64 - TAG_LEN],
        "nothing written past the tag"
    );
    assert_eq!(b.open(now, 9, b"aad", &mut buf[..64 + TAG_LEN]), Ok(64));
    assert_eq!(&buf[..64], &plaintext[..]);

    let err = a.seal(0, b"", &mut [0; 64 + TAG_LEN - 1], 64).unwrap_err();
    assert_eq!(err, SealError::BufferTooSmall);
    assert_eq!(err.reason(), "buffer_too_small");
    assert_eq!(
        a.seal(0, b"", &mut [0; 8], usize::MAX),
        Err(SealError::BufferTooSmall)
    );
    // Empty plaintext: a keepalive is just a tag.
    let mut tag_only = [0_u8; TAG_LEN];
    assert_eq!(a.seal(10, b"", &mut tag_only, 0), Ok(TAG_LEN));
    assert_eq!(b.open(now, 10, b"", &mut tag_only), Ok(0));
}

#[test]
fn debug_output_redacts_keys() {
    let now = Instant::now();
    let (a, _) = sessions(ik_pair(32), now);
    let printed = format!("{a:?}");
    assert!(printed.starts_with("Session"));
    assert!(!printed.contains("send:") && !printed.contains("recv:"));
    let (i, _) = ik_pair(32);
    assert!(format!("{i:?}").contains("IK"));
}

#[test]
fn aes_256_gcm_sessions_carry_data_and_refuse_chacha_packets() {
    let now = Instant::now();
    let (i, r, _) = {
        let (i, r) = ik_pair(41);
        drive(i, r)
    };
    let (mut a, mut b) = (
        i.into_session_with(now, Cipher::Aes256Gcm).unwrap(),
        r.into_session_with(now, Cipher::Aes256Gcm).unwrap(),
    );
    assert_eq!(a.cipher(), Cipher::Aes256Gcm);
    exchange_both_ways(&mut a, &mut b, now);
    // The same handshake keys under the other cipher do not open each other's packets.
    let (i, r, _) = {
        let (i, r) = ik_pair(42);
        drive(i, r)
    };
    let (a, mut b) = (
        i.into_session_with(now, Cipher::Aes256Gcm).unwrap(),
        r.into_session(now).unwrap(),
    );
    let packet = seal(&a, 0, b"aad", b"hello");
    let mut buf = packet.clone();
    assert_eq!(
        b.open(now, 0, b"aad", &mut buf).unwrap_err(),
        OpenError::Authentication
    );
}
