use super::*;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn node(n: u8) -> NodeId {
    [n; 32]
}

const A: u8 = 1;
const B: u8 = 2;
const C: u8 = 3;
const D: u8 = 4;

/// A ring of 16 /24 blocks (10.32.0.0/20), founded by `A`.
fn founded() -> Ring {
    let mut r = Ring::new(net("10.32.0.0/20"), 24).unwrap();
    r.found(node(A), RingId::derive(&node(A), b"t0")).unwrap();
    r
}

fn none_in_use(_: Ipv4Net) -> bool {
    false
}

/// Every entry of `from` into `to`.
fn sync(to: &mut Ring, from: &Ring) -> MergeOutcome {
    to.merge(from.entries().collect::<Vec<_>>()).unwrap()
}

#[test]
fn the_founder_owns_everything_and_founds_once() {
    let mut r = founded();
    assert_eq!(r.owned(node(A)), vec![net("10.32.0.0/20")]);
    assert_eq!(r.owned_blocks(node(A)).len(), 16);
    assert_eq!(r.owned_count(node(A)), 16);
    assert_eq!(r.unknown_blocks(), 0);
    assert_eq!(r.owner_of("10.32.7.9".parse().unwrap()), Some(node(A)));
    assert_eq!(r.owner_of("10.33.0.1".parse().unwrap()), None);
    assert_eq!(r.len(), 1);
    let id = r.id().unwrap();
    assert_eq!(
        r.found(node(B), RingId([9; 16])),
        Err(FoundError::AlreadyInRing(id))
    );
    let first = r.poll_write().unwrap();
    assert_eq!(
        (first.start(), first.end(), first.owner()),
        (0, 16, node(A))
    );
    assert_eq!(r.poll_write(), None);
}

#[test]
fn an_empty_replica_owns_nothing_and_cannot_donate_or_reclaim() {
    let mut r = Ring::with_geometry(Geometry::default());
    assert_eq!(r.id(), None);
    assert!(r.is_empty());
    assert_eq!(r.owner_of_block(0), None);
    assert!(r.spans().is_empty());
    assert_eq!(
        r.donate(node(A), node(B), Want::Blocks(1), none_in_use),
        Err(DonateError::NotInRing)
    );
    assert_eq!(r.reclaim(node(A), node(B)), Err(ReclaimError::NotInRing));
    assert_eq!(r.merge([]).unwrap(), MergeOutcome::default());
    assert_eq!(r.id(), None);
}

#[test]
fn donation_takes_the_high_end_of_the_largest_free_run() {
    let mut r = founded();
    let _ = r.poll_write();
    let given = r
        .donate(node(A), node(B), Want::Blocks(1), none_in_use)
        .unwrap();
    assert_eq!(given, vec![net("10.32.15.0/24")]);
    assert_eq!(r.owned(node(B)), given);
    assert_eq!(
        r.owned(node(A)),
        vec![
            net("10.32.0.0/21"),
            net("10.32.8.0/22"),
            net("10.32.12.0/23"),
            net("10.32.14.0/24")
        ]
    );
    // The donor restated what it kept and wrote the gift: two entries, one version.
    let written: Vec<Entry> = std::iter::from_fn(|| r.poll_write()).collect();
    assert_eq!(written.len(), 2);
    assert_eq!(written[0].version(), written[1].version());
    assert_eq!(written[0].version(), 2);

    // Four blocks: aligned to four, at the top of the largest run (0..15).
    let given = r
        .donate(node(A), node(C), Want::Blocks(4), none_in_use)
        .unwrap();
    assert_eq!(given, vec![net("10.32.8.0/22")]);
    // Three blocks: not a power of two, so the top three of the largest run (0..8).
    let given = r
        .donate(node(A), node(D), Want::Blocks(3), none_in_use)
        .unwrap();
    assert_eq!(given, vec![net("10.32.5.0/24"), net("10.32.6.0/23")]);
    assert_eq!(r.owned_count(node(A)), 8);
    assert_eq!(r.unknown_blocks(), 0);
    assert_eq!(r.donor_candidates(node(B)), vec![node(A), node(C), node(D)]);
    assert_eq!(r.donor_candidates(node(A)), vec![node(C), node(D), node(B)]);
}

#[test]
fn donation_never_gives_blocks_in_use_and_keeps_half_of_the_free_ones() {
    let mut r = founded();
    // Blocks 0..14 have pods; only 14 and 15 are free.
    let busy =
        |b: Ipv4Net| u32::from(b.network()) < u32::from("10.32.14.0".parse::<Ipv4Addr>().unwrap());
    let given = r.donate(node(A), node(B), Want::Blocks(10), busy).unwrap();
    assert_eq!(given, vec![net("10.32.15.0/24")], "half of 2 free");
    let given = r.donate(node(A), node(C), Want::Blocks(10), busy).unwrap();
    assert_eq!(given, vec![net("10.32.14.0/24")], "half of 1, rounded up");
    assert_eq!(
        r.donate(node(A), node(C), Want::Blocks(1), busy),
        Err(DonateError::NothingFree { owned: 14 })
    );
    assert_eq!(
        r.donate(node(A), node(C), Want::Block(net("10.32.3.0/24")), busy),
        Err(DonateError::InUse(net("10.32.3.0/24")))
    );
    assert_eq!(
        r.donate(node(A), node(C), Want::Block(net("10.32.15.0/24")), busy),
        Err(DonateError::NotOwner {
            block: net("10.32.15.0/24"),
            owner: Some(node(B))
        })
    );
    assert!(matches!(
        r.donate(node(A), node(C), Want::Block(net("10.32.2.0/23")), busy),
        Err(DonateError::NotABlock { .. })
    ));
    assert_eq!(
        r.donate(node(A), node(A), Want::Blocks(1), busy),
        Err(DonateError::ToSelf)
    );
    assert_eq!(
        r.donate(node(A), node(C), Want::Blocks(0), busy),
        Ok(vec![])
    );
    // A specific free block, and everything free for a node leaving.
    let mut r = founded();
    assert_eq!(
        r.donate(
            node(A),
            node(B),
            Want::Block(net("10.32.4.0/24")),
            none_in_use
        ),
        Ok(vec![net("10.32.4.0/24")])
    );
    let mut b_view = Ring::with_geometry(r.geometry());
    sync(&mut b_view, &r);
    let all = b_view
        .donate(node(B), node(C), Want::AllFree, none_in_use)
        .unwrap();
    assert_eq!(all, vec![net("10.32.4.0/24")]);
    assert_eq!(b_view.owned_count(node(B)), 0);
}

/// The case that makes entries carry their end: C learns that it owns the token at 4 but not
/// that B got the token at 8, cut out of the same range earlier. With "a token covers up to
/// the next token" C would think 4..16 its own, B's blocks included.
#[test]
fn a_partial_view_never_makes_a_node_own_blocks_of_another() {
    let mut a = founded();
    a.donate(
        node(A),
        node(B),
        Want::Block(net("10.32.8.0/24")),
        none_in_use,
    )
    .unwrap();
    a.donate(
        node(A),
        node(C),
        Want::Block(net("10.32.4.0/24")),
        none_in_use,
    )
    .unwrap();
    let mut c = Ring::with_geometry(a.geometry());
    let only_c: Vec<Entry> = a.entries().filter(|e| e.owner() == node(C)).collect();
    assert_eq!(only_c.len(), 1);
    let out = c.merge(only_c).unwrap();
    assert_eq!(out.adopted, a.id());
    assert_eq!(out.gained(node(C)), vec![net("10.32.4.0/24")]);
    assert_eq!(c.owned(node(C)), vec![net("10.32.4.0/24")]);
    assert_eq!(c.owner_of_block(8), None);
    assert_eq!(c.unknown_blocks(), 15);
    // Stale pieces the other way round: B has the genesis entry and its own token only.
    let mut b = Ring::with_geometry(a.geometry());
    let genesis = a.entry(0).unwrap();
    b.merge([Entry {
        end: 16,
        version: 1,
        ..genesis
    }])
    .unwrap();
    b.merge(a.entries().filter(|e| e.owner() == node(B)))
        .unwrap();
    assert_eq!(b.owned(node(B)), vec![net("10.32.8.0/24")]);
    assert_eq!(b.owner_of_block(4), Some(node(A)), "stale, but not B's");
    sync(&mut b, &a);
    sync(&mut c, &a);
    assert_eq!(b, a);
    assert_eq!(c, a);
    assert_eq!(c.owner_of_block(8), Some(node(B)));
}

#[test]
fn merge_is_order_independent_and_idempotent() {
    let mut a = founded();
    a.donate(node(A), node(B), Want::Blocks(4), none_in_use)
        .unwrap();
    let mut b = Ring::with_geometry(a.geometry());
    sync(&mut b, &a);
    b.donate(node(B), node(C), Want::Blocks(1), none_in_use)
        .unwrap();
    a.donate(node(A), node(D), Want::Blocks(2), none_in_use)
        .unwrap();
    let mut all: Vec<Entry> = a.entries().chain(b.entries()).collect();
    let mut forward = Ring::with_geometry(a.geometry());
    forward.merge(all.clone()).unwrap();
    all.reverse();
    let mut backward = Ring::with_geometry(a.geometry());
    for e in &all {
        backward.merge([*e]).unwrap();
    }
    assert_eq!(forward, backward);
    let again = forward.merge(all).unwrap();
    assert_eq!(again.applied, 0);
    assert!(again.changes.is_empty());
    let mut ab = a.clone();
    sync(&mut ab, &b);
    let mut ba = b.clone();
    sync(&mut ba, &a);
    assert_eq!(ab, ba);
    assert_eq!(ab, forward);
    for (n, count) in [(A, 10), (B, 3), (C, 1), (D, 2)] {
        assert_eq!(ab.owned_count(node(n)), count);
    }
}

#[test]
fn two_clusters_refuse_to_merge_and_say_how_to_fix_it() {
    let a = founded();
    let mut other = Ring::new(net("10.32.0.0/20"), 24).unwrap();
    other
        .found(node(B), RingId::derive(&node(B), b"t0"))
        .unwrap();
    let before = other.clone();
    let err = other.merge(a.entries()).unwrap_err();
    assert_eq!(
        err,
        MergeError::DifferentCluster {
            ours: other.id().unwrap(),
            theirs: a.id().unwrap()
        }
    );
    let msg = err.to_string();
    assert!(msg.contains(&a.id().unwrap().to_string()), "{msg}");
    assert!(msg.contains(&other.id().unwrap().to_string()), "{msg}");
    assert!(msg.contains("meshd reset"), "{msg}");
    assert!(msg.contains("docs/ipam.md"), "{msg}");
    assert_eq!(other, before, "nothing applied");

    // An empty replica given a batch that mixes both refuses it whole.
    let mut empty = Ring::with_geometry(a.geometry());
    let mixed: Vec<Entry> = a.entries().chain(before.entries()).collect();
    assert!(matches!(
        empty.merge(mixed),
        Err(MergeError::DifferentCluster { .. })
    ));
    assert_eq!(empty.id(), None);

    // Another range or block size.
    let mut wide = Ring::new(net("10.32.0.0/16"), 24).unwrap();
    let err = wide.merge(a.entries()).unwrap_err();
    assert!(matches!(err, MergeError::Geometry { .. }));
    assert!(
        err.to_string().contains("10.32.0.0/20 in /24 blocks"),
        "{err}"
    );
}

#[test]
fn reclaim_takes_every_block_of_the_dead_node() {
    let mut a = founded();
    a.donate(node(A), node(B), Want::Blocks(4), none_in_use)
        .unwrap();
    a.donate(node(A), node(C), Want::Blocks(2), none_in_use)
        .unwrap();
    let mut b = Ring::with_geometry(a.geometry());
    sync(&mut b, &a);
    b.donate(node(B), node(D), Want::Blocks(1), none_in_use)
        .unwrap();
    sync(&mut a, &b);
    // B dies; A has B's last entries (the contract) and reclaims.
    let taken = a.reclaim(node(A), node(B)).unwrap();
    assert_eq!(taken, vec![net("10.32.12.0/23"), net("10.32.14.0/24")]);
    assert_eq!(a.owned_count(node(B)), 0);
    assert_eq!(a.owned_count(node(D)), 1, "what B gave away stays given");
    assert_eq!(a.reclaim(node(A), node(B)), Ok(vec![]));
    assert_eq!(a.reclaim(node(A), node(A)), Err(ReclaimError::OwnNode));
    // The reclaim's version is the next epoch, tagged with the reclaimer.
    let e = a.entries().find(|e| e.start() == 12).unwrap();
    assert_eq!(e.version() >> EPOCH_SHIFT, 1);
    assert_eq!(e.version() & 0xff_ffff_ffff, 0x01_0101_0101);
}

/// The dead node comes back after all (the operator contract was broken): it did not see the
/// reclaim, donates one of its blocks to D, and then hears of the reclaim. It and D both
/// learn that the blocks are gone, and everyone agrees on A.
#[test]
fn a_reclaimed_node_that_comes_back_loses_its_blocks_and_knows_it() {
    let mut a = founded();
    a.donate(node(A), node(B), Want::Blocks(4), none_in_use)
        .unwrap();
    let mut b = Ring::with_geometry(a.geometry());
    sync(&mut b, &a);
    let b_persisted = b.state();

    a.reclaim(node(A), node(B)).unwrap();
    let mut zombie = Ring::from_state(b_persisted).unwrap();
    let gift = zombie
        .donate(node(B), node(D), Want::Blocks(1), none_in_use)
        .unwrap();
    let mut d = Ring::with_geometry(a.geometry());
    sync(&mut d, &zombie);
    assert_eq!(d.owned(node(D)), gift);

    let out = sync(&mut zombie, &a);
    assert_eq!(
        out.lost(node(B)),
        vec![net("10.32.12.0/23"), net("10.32.14.0/24")]
    );
    assert!(out.changes.iter().all(|c| c.to == Some(node(A))));
    assert_eq!(zombie.owned_count(node(B)), 0);
    let out = sync(&mut d, &a);
    assert_eq!(out.lost(node(D)), gift);
    // Full exchange: all three agree, A has the four blocks.
    sync(&mut a, &zombie);
    sync(&mut zombie, &a);
    sync(&mut d, &a);
    assert_eq!(a, zombie);
    assert_eq!(a, d);
    assert_eq!(a.owned_count(node(A)), 16);
}

/// Two nodes reclaim the same dead node without hearing of each other (the contract says one
/// does it): each block ends with the reclaimer of the larger tag, whatever the order, and
/// the other learns what it lost.
#[test]
fn concurrent_reclaims_settle_on_one_owner() {
    let mut a = founded();
    a.donate(node(A), node(B), Want::Blocks(4), none_in_use)
        .unwrap();
    a.donate(node(A), node(C), Want::Blocks(2), none_in_use)
        .unwrap();
    let mut c = Ring::with_geometry(a.geometry());
    sync(&mut c, &a);
    a.reclaim(node(A), node(B)).unwrap();
    c.reclaim(node(C), node(B)).unwrap();
    let ea = a.entry(12).unwrap();
    let ec = c.entry(12).unwrap();
    assert_ne!(
        ea.version(),
        ec.version(),
        "distinct tags, distinct versions"
    );
    let mut ac = a.clone();
    let out_a = sync(&mut ac, &c);
    let mut ca = c.clone();
    let out_c = sync(&mut ca, &a);
    assert_eq!(ac, ca);
    assert_eq!(
        ac.owned_count(node(C)),
        6,
        "C's tag 0x0303.. beats A's 0x0101.."
    );
    assert_eq!(out_a.lost(node(A)), vec![net("10.32.12.0/22")]);
    assert!(out_c.lost(node(C)).is_empty());
}

/// A reclaimer that missed the dead node's last donation overrides it: the recipient learns
/// it lost the block. This is why the contract wants the reclaimer to have the dead node's
/// last entries.
#[test]
fn a_reclaim_from_a_stale_view_overrides_the_dead_nodes_unseen_donation() {
    let mut a = founded();
    a.donate(node(A), node(B), Want::Blocks(4), none_in_use)
        .unwrap();
    let mut b = Ring::with_geometry(a.geometry());
    sync(&mut b, &a);
    let gift = b
        .donate(node(B), node(D), Want::Blocks(1), none_in_use)
        .unwrap();
    let mut d = Ring::with_geometry(a.geometry());
    sync(&mut d, &b);
    a.reclaim(node(A), node(B)).unwrap();
    let out = sync(&mut d, &a);
    assert_eq!(out.lost(node(D)), gift);
    assert_eq!(d.owned_count(node(A)), 16);
}

#[test]
fn records_stay_bounded_by_blocks() {
    let mut r = Ring::with_geometry(Geometry::default());
    r.found(node(0), RingId([1; 16])).unwrap();
    for i in 1..=200u8 {
        r.donate(node(0), node(i), Want::Blocks(3), none_in_use)
            .unwrap();
    }
    for i in 1..=200u8 {
        r.reclaim(node(0), node(i)).unwrap();
    }
    assert_eq!(r.owned_count(node(0)), 4096);
    assert!(r.len() <= 401, "{}", r.len());
    for e in r.entries() {
        assert_eq!(e.encode().len(), ENTRY_LEN);
        assert_eq!(Entry::decode(&e.encode()), Ok(e));
    }
}

#[test]
fn state_round_trips_through_json_and_bad_states_are_refused() {
    let mut a = founded();
    a.donate(node(A), node(B), Want::Blocks(3), none_in_use)
        .unwrap();
    let text = serde_json::to_string(&a).unwrap();
    assert!(text.contains(&"02".repeat(32)), "{text}");
    let back: Ring = serde_json::from_str(&text).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.owned(node(B)), a.owned(node(B)));
    let state: RingState = serde_json::from_str(&text).unwrap();
    assert_eq!(state, a.state());

    let mut s = a.state();
    s.version = 9;
    assert_eq!(Ring::from_state(s), Err(StateError::UnknownVersion(9)));
    let mut s = a.state();
    s.ring = None;
    assert_eq!(Ring::from_state(s), Err(StateError::RecordsWithoutRing));
    let mut s = a.state();
    s.records[0].end = 17;
    assert!(matches!(Ring::from_state(s), Err(StateError::Span { .. })));
    let mut s = a.state();
    let dup = s.records[0].clone();
    s.records.push(dup);
    assert_eq!(Ring::from_state(s), Err(StateError::DuplicateKey(0)));
    let mut s = a.state();
    s.block_prefix = 31;
    assert!(matches!(Ring::from_state(s), Err(StateError::Geometry(_))));
    let bad_owner = text.replace(&"02".repeat(32), "zz");
    assert!(serde_json::from_str::<Ring>(&bad_owner).is_err());
    // An empty replica persists too.
    let empty = Ring::with_geometry(Geometry::default());
    let back: Ring = serde_json::from_str(&serde_json::to_string(&empty).unwrap()).unwrap();
    assert_eq!(back, empty);
}

#[test]
fn spans_and_display_show_every_run() {
    let mut a = founded();
    a.donate(node(A), node(B), Want::Blocks(2), none_in_use)
        .unwrap();
    let spans = a.spans();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1].nets, vec![net("10.32.14.0/23")]);
    assert_eq!(spans[1].owner, Some(node(B)));
    let text = a.to_string();
    assert!(text.contains("10.32.14.0/23 -> 0202020202020202"), "{text}");
    let mut partial = Ring::with_geometry(a.geometry());
    partial
        .merge(a.entries().filter(|e| e.owner() == node(B)))
        .unwrap();
    let spans = partial.spans();
    assert_eq!(spans.len(), 1 + 1);
    assert_eq!(spans[0].owner, None);
    assert_eq!(partial.unknown_blocks(), 14);
}

/// A donation to B was on its way when B was declared dead: the reclaimer takes the block
/// when it arrives, and keeps doing so after a restart.
#[test]
fn blocks_given_to_a_reclaimed_node_later_are_reclaimed_on_arrival() {
    let mut a = founded();
    a.donate(node(A), node(B), Want::Blocks(2), none_in_use)
        .unwrap();
    a.donate(node(A), node(C), Want::Blocks(4), none_in_use)
        .unwrap();
    let mut c = Ring::with_geometry(a.geometry());
    sync(&mut c, &a);
    // C gives B a block; nobody but C knows yet. Then B dies and A reclaims it.
    let late = c
        .donate(node(C), node(B), Want::Blocks(1), none_in_use)
        .unwrap();
    a.reclaim(node(A), node(B)).unwrap();
    while a.poll_write().is_some() {}
    let mut a =
        Ring::from_state(serde_json::from_value(serde_json::to_value(a.state()).unwrap()).unwrap())
            .unwrap();
    let out = sync(&mut a, &c);
    assert_eq!(out.reclaimed, late);
    assert_eq!(out.gained(node(A)), late);
    assert_eq!(a.owned_count(node(B)), 0);
    let written: Vec<Entry> = std::iter::from_fn(|| a.poll_write()).collect();
    assert!(!written.is_empty());
    // Everyone else follows from the entries alone.
    sync(&mut c, &a);
    assert_eq!(c, a);
    assert_eq!(c.owned_count(node(A)), 10 + 2 + 1);
    // A replica that never reclaimed B does not write anything.
    let mut d = Ring::with_geometry(a.geometry());
    let out = sync(&mut d, &c);
    assert!(out.reclaimed.is_empty());
    assert_eq!(d.poll_write(), None);
}
