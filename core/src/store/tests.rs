//! Tests of the store: tiers, expiry, the budget under churn, and a model check.

use super::*;
use crate::clock::ManualClock;
use proptest::prelude::*;
use std::collections::HashMap;

fn store(capacity: usize, shards: usize) -> (Store, ManualClock) {
    let clock = ManualClock::new(1_000);
    let cfg = StoreConfig {
        capacity,
        shards,
        hot_divisor: 8,
    };
    (Store::new(cfg, Arc::new(clock.clone())), clock)
}

#[test]
fn get_after_insert_and_stats() {
    let (s, _) = store(1 << 20, 4);
    assert!(s.insert(
        Tier::Main,
        Bytes::from_static(b"a"),
        Some(Bytes::from_static(b"1")),
        0
    ));
    assert!(s.insert(
        Tier::Hot,
        Bytes::from_static(b"b"),
        Some(Bytes::from_static(b"2")),
        0
    ));
    assert!(s.insert(Tier::Main, Bytes::from_static(b"n"), None, 0));
    assert_eq!(s.tier_of(b"a"), Some(Tier::Main));
    assert_eq!(s.tier_of(b"b"), Some(Tier::Hot));
    assert!(s.get(b"a").is_some());
    assert_eq!(
        s.get(b"b").unwrap(),
        crate::entry::Entry {
            value: Some(Bytes::from_static(b"2")),
            deadline: 0,
            version: 0
        }
    );
    assert_eq!(s.get(b"n").unwrap().value, None);
    assert!(s.get(b"zz").is_none());
    let st = s.stats();
    assert_eq!((st.main.items, st.hot.items), (2, 1));
    assert_eq!((st.main.gets, st.main.hits, st.hot.hits), (4, 2, 1));
    assert!(st.main.bytes > 0 && st.hot.bytes > 0);
}

#[test]
fn get_with_lends_the_value() {
    let (s, _) = store(1 << 20, 2);
    s.insert(
        Tier::Main,
        Bytes::from_static(b"k"),
        Some(Bytes::from_static(b"v")),
        0,
    );
    s.insert(Tier::Main, Bytes::from_static(b"n"), None, 0);
    assert_eq!(
        s.get_with(b"k", |v| v.map(<[u8]>::to_vec)),
        Some(Some(b"v".to_vec()))
    );
    assert_eq!(s.get_with(b"n", |v| v.is_none()), Some(true));
    assert_eq!(s.get_with(b"x", |_| ()), None);
    assert_eq!((s.stats().main.gets, s.stats().main.hits), (3, 2));
}

#[test]
fn a_hit_shares_the_payload() {
    let (s, _) = store(1 << 20, 1);
    let v = Bytes::from(vec![7u8; 1000]);
    s.insert(Tier::Main, Bytes::from_static(b"k"), Some(v.clone()), 0);
    let got = s.get(b"k").unwrap().value.unwrap();
    assert_eq!(got.as_ptr(), v.as_ptr(), "a hit must not copy the value");
}

#[test]
fn expired_entries_are_not_returned_and_get_reaped() {
    let (s, clock) = store(1 << 20, 2);
    s.insert(
        Tier::Main,
        Bytes::from_static(b"t"),
        Some(Bytes::from_static(b"1")),
        1_500,
    );
    assert!(s.get(b"t").is_some());
    clock.set(1_500);
    assert!(s.get(b"t").is_none());
    assert!(!s.contains(b"t"));
    assert_eq!(s.reap(1024), 1);
    assert_eq!(s.used_bytes(), 0);
    assert_eq!(s.stats().main.expirations, 1);
    // Inserting an already-expired entry stores nothing and drops the old one.
    s.insert(
        Tier::Main,
        Bytes::from_static(b"u"),
        Some(Bytes::from_static(b"1")),
        0,
    );
    assert!(!s.insert(
        Tier::Main,
        Bytes::from_static(b"u"),
        Some(Bytes::from_static(b"2")),
        1_000
    ));
    assert!(s.get(b"u").is_none());
}

#[test]
fn remove_from_respects_the_tier() {
    let (s, _) = store(1 << 20, 1);
    s.insert(Tier::Main, Bytes::from_static(b"k"), Some(Bytes::new()), 0);
    assert!(!s.remove_from(Tier::Hot, b"k"));
    assert!(s.remove_from(Tier::Main, b"k"));
    assert!(!s.remove(b"k"));
}

#[test]
fn the_budget_holds_under_churn() {
    let (s, _) = store(64 * 1024, 4);
    for i in 0..10_000u32 {
        let tier = if i % 5 == 0 { Tier::Hot } else { Tier::Main };
        s.insert(
            tier,
            Bytes::from(i.to_string()),
            Some(Bytes::from(vec![0; (i % 300) as usize])),
            0,
        );
    }
    assert!(s.used_bytes() <= 64 * 1024);
    let st = s.stats();
    assert!(st.hot.bytes <= st.main.bytes);
    assert!(st.main.evictions > 0);
    s.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u16, Option<u16>),
    Get(u8),
    Remove(u8),
    Advance(u16),
    Reap,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), 0u16..600, proptest::option::of(1u16..500)).prop_map(|(k, l, t)| Op::Insert(k, l, t)),
        4 => any::<u8>().prop_map(Op::Get),
        1 => any::<u8>().prop_map(Op::Remove),
        1 => (0u16..300).prop_map(Op::Advance),
        1 => Just(Op::Reap),
    ]
}

proptest! {
    /// Against a model map: the budget is never exceeded, an expired entry is never
    /// returned, and a get returns exactly what was last set unless that entry was
    /// evicted or has expired.
    #[test]
    fn behaves_like_a_map_that_may_forget(ops in proptest::collection::vec(op(), 1..400), shards in 0usize..3) {
        let (s, clock) = store(16 * 1024, 1 << shards);
        let mut model: HashMap<u8, (Bytes, u64)> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k, len, ttl) => {
                    let v = Bytes::from(vec![k; len as usize]);
                    let deadline = ttl.map_or(0, |t| clock.now_ms() + t as u64);
                    s.insert(Tier::Main, Bytes::from(vec![k]), Some(v.clone()), deadline);
                    model.insert(k, (v, deadline));
                }
                Op::Get(k) => {
                    let got = s.get(&[k]);
                    let now = clock.now_ms();
                    match (got, model.get(&k)) {
                        (Some(hit), Some((v, d))) => {
                            prop_assert!(*d == 0 || *d > now, "expired entry returned");
                            prop_assert_eq!(hit.value.as_ref(), Some(v));
                        }
                        (Some(_), None) => prop_assert!(false, "returned a key never set or removed"),
                        (None, _) => {} // evicted or expired
                    }
                }
                Op::Remove(k) => {
                    s.remove(&[k]);
                    model.remove(&k);
                }
                Op::Advance(ms) => clock.advance(std::time::Duration::from_millis(ms as u64)),
                Op::Reap => { s.reap(usize::MAX); }
            }
            prop_assert!(s.used_bytes() <= s.capacity());
        }
        s.check_invariants();
    }
}
