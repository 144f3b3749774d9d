//! Group tests: the public API of a standalone group. The routed paths, against a fake
//! router, are in `routed.rs`.

mod routed;

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::*;
use crate::clock::ManualClock;
use crate::loader::Loaded;
use crate::scope::LoadScope;

/// `n` tasks getting `key`, returned once all of them wait on its flight.
async fn waiting_gets(g: &Group, key: &'static [u8], n: usize) -> Vec<JoinHandle<Result<Bytes>>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let g = g.clone();
            tokio::spawn(async move { g.get(key).await })
        })
        .collect();
    let flight = Bytes::from_static(key);
    tokio::time::timeout(Duration::from_secs(10), async {
        while g.inner.local_flights.waiters(&flight) < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every get waits on the flight");
    tasks
}

fn counting_loader(calls: Arc<AtomicUsize>) -> impl Loader {
    move |key: Bytes| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            match &key[..] {
                b"missing" => Ok(Loaded::not_found()),
                b"fail" => Err(Error::load(std::io::Error::other("db down"))),
                b"short" => Ok(Loaded::value(Bytes::from_static(b"s")).with_ttl(Duration::from_secs(1))),
                _ => Ok(Loaded::value([b"v:", &key[..]].concat())),
            }
        }
    }
}

fn group(calls: Arc<AtomicUsize>, clock: &ManualClock) -> Group {
    Group::builder("g")
        .capacity(1 << 20)
        .clock(Arc::new(clock.clone()))
        .loader(counting_loader(calls))
        .build()
        .unwrap()
}

#[tokio::test]
async fn loads_once_then_hits() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = group(calls.clone(), &ManualClock::default());
    assert_eq!(g.peek(b"a").unwrap(), None);
    assert_eq!(&g.get(b"a").await.unwrap()[..], b"v:a");
    assert_eq!(&g.get(b"a").await.unwrap()[..], b"v:a");
    assert_eq!(g.peek(b"a").unwrap().as_deref(), Some(&b"v:a"[..]));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let st = g.stats();
    assert_eq!((st.gets, st.hits, st.loads), (4, 2, 1));
}

#[tokio::test]
async fn not_found_is_cached_negatively_and_errors_are_not() {
    let calls = Arc::new(AtomicUsize::new(0));
    let clock = ManualClock::default();
    let g = group(calls.clone(), &clock);
    assert!(g.get(b"missing").await.unwrap_err().is_not_found());
    assert!(g.get(b"missing").await.unwrap_err().is_not_found());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(g.peek(b"missing").unwrap(), None);
    clock.advance(DEFAULT_NEGATIVE_TTL);
    assert!(g.get(b"missing").await.unwrap_err().is_not_found());
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let e = g.get(b"fail").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Load);
    assert!(e.cause().unwrap().downcast_ref::<std::io::Error>().is_some());
    g.get(b"fail").await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(g.stats().load_errors, 2);
}

#[tokio::test]
async fn loader_ttl_and_default_ttl_expire_with_the_clock() {
    let calls = Arc::new(AtomicUsize::new(0));
    let clock = ManualClock::default();
    let g = Group::builder("g")
        .clock(Arc::new(clock.clone()))
        .default_ttl(Duration::from_secs(10))
        .loader(counting_loader(calls.clone()))
        .build()
        .unwrap();
    g.get(b"short").await.unwrap();
    g.get(b"long").await.unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(g.peek(b"short").unwrap(), None);
    assert!(g.peek(b"long").unwrap().is_some());
    clock.advance(Duration::from_secs(9));
    assert_eq!(g.peek(b"long").unwrap(), None);
    g.set(b"k", Bytes::from_static(b"x"), Some(Duration::from_millis(5)))
        .await
        .unwrap();
    assert!(g.peek(b"k").unwrap().is_some());
    clock.advance(Duration::from_millis(5));
    assert_eq!(g.peek(b"k").unwrap(), None);
}

#[tokio::test]
async fn set_delete_and_limits() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = Group::builder("g")
        .max_key_len(8)
        .max_value_len(4)
        .loader(counting_loader(calls.clone()))
        .build()
        .unwrap();
    g.set(b"k", Bytes::from_static(b"abcd"), None).await.unwrap();
    assert_eq!(&g.get(b"k").await.unwrap()[..], b"abcd");
    g.delete(b"k").await.unwrap();
    assert_eq!(g.peek(b"k").unwrap(), None);
    let kind = |r: Result<()>| r.unwrap_err().kind();
    assert_eq!(
        kind(g.set(b"k", Bytes::from_static(b"abcde"), None).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(g.set(b"123456789", Bytes::new(), None).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(g.set(b"", Bytes::new(), None).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        g.get(b"123456789").await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // A loader returning more than max_value_len is an error, not a cached value.
    assert_eq!(
        g.get(b"toolong").await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(g.peek(b"toolong").unwrap(), None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        Group::builder("").build().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        Group::builder("x").capacity(0).build().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[tokio::test]
async fn get_many_dedups_skips_not_found_and_loads_misses() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = group(calls.clone(), &ManualClock::default());
    g.get(b"a").await.unwrap();
    let got = g.get_many(&["a", "b", "missing", "b"]).await.unwrap();
    let keys: Vec<_> = got.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(keys, vec![&b"a"[..], b"b"]);
    assert_eq!(&got[1].1[..], b"v:b");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        g.get_many(&["a", "fail"]).await.unwrap_err().kind(),
        ErrorKind::Load
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_gets_load_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let g = {
        let (calls, gate) = (calls.clone(), gate.clone());
        Group::builder("g")
            .loader(move |_k: Bytes| {
                let (calls, gate) = (calls.clone(), gate.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok(Loaded::value(Bytes::from_static(b"v")))
                }
            })
            .build()
            .unwrap()
    };
    let tasks = waiting_gets(&g, b"k", 64).await;
    gate.notify_one();
    for t in tasks {
        assert_eq!(&t.await.unwrap().unwrap()[..], b"v");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(g.stats().deduplicated, 63);
}

#[tokio::test]
async fn a_panicking_loader_errors_and_the_next_get_loads_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = {
        let calls = calls.clone();
        Group::builder("g")
            .loader(move |_k: Bytes| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        panic!("loader bug");
                    }
                    Ok(Loaded::value(Bytes::from_static(b"ok")))
                }
            })
            .build()
            .unwrap()
    };
    assert_eq!(g.get(b"k").await.unwrap_err().kind(), ErrorKind::Panic);
    assert_eq!(&g.get(b"k").await.unwrap()[..], b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_in_flight_never_overwrites_a_later_set_or_delete() {
    let started = Arc::new(Notify::new());
    let gate = Arc::new(Notify::new());
    let g = {
        let (started, gate) = (started.clone(), gate.clone());
        Group::builder("g")
            .loader(move |_k: Bytes| {
                let (started, gate) = (started.clone(), gate.clone());
                async move {
                    started.notify_one();
                    gate.notified().await;
                    Ok(Loaded::value("old"))
                }
            })
            .build()
            .unwrap()
    };
    for write_is_delete in [false, true] {
        let key: &[u8] = if write_is_delete { b"d" } else { b"s" };
        let get = {
            let g = g.clone();
            tokio::spawn(async move { g.get(key).await })
        };
        started.notified().await;
        if write_is_delete {
            g.delete(key).await.unwrap();
        } else {
            g.set(key, Bytes::from_static(b"new"), None).await.unwrap();
        }
        gate.notify_one();
        // The caller that started the load gets what it loaded...
        assert_eq!(&get.await.unwrap().unwrap()[..], b"old");
        // ...but the cache keeps the write.
        let want: Option<&[u8]> = if write_is_delete { None } else { Some(b"new") };
        assert_eq!(g.peek(key).unwrap().as_deref(), want);
    }
}

#[tokio::test]
async fn a_default_group_caches_values_of_half_a_mebibyte() {
    let g = Group::builder("g")
        .loader(|_k: Bytes| async { Ok(Loaded::value(vec![7u8; 512 * 1024])) })
        .build()
        .unwrap();
    g.get(b"big").await.unwrap();
    assert_eq!(g.peek(b"big").unwrap().map(|v| v.len()), Some(512 * 1024));
    assert_eq!(g.stats().loads, 1);
}

#[tokio::test]
async fn peek_with_lends_what_peek_returns() {
    let g = Group::builder("g").build().unwrap();
    g.set(b"k", Bytes::from_static(b"abc"), None).await.unwrap();
    assert_eq!(g.peek_with(b"k", <[u8]>::len).unwrap(), Some(3));
    assert_eq!(g.peek_with(b"x", <[u8]>::len).unwrap(), None);
    assert_eq!(
        g.peek_with(b"", <[u8]>::len).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[tokio::test]
async fn closed_groups_refuse_calls() {
    let g = Group::builder("g").build().unwrap();
    g.close();
    assert_eq!(g.get(b"k").await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(g.peek(b"k").unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn get_without_a_runtime_reports_it() {
    let g = Group::builder("g").build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // A runtime that is not current at build time is still found at call time.
    assert!(rt.block_on(g.get(b"k")).unwrap_err().is_not_found());
}

#[test]
fn independent_groups_share_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let a = Group::builder("same").build().unwrap();
        let b = Group::builder("same").build().unwrap();
        a.set(b"k", Bytes::from_static(b"1"), None).await.unwrap();
        assert_eq!(b.peek(b"k").unwrap(), None);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_awaiting_its_own_key_is_refused_not_hung() {
    let me: Arc<std::sync::OnceLock<Group>> = Arc::default();
    let g = {
        let me = me.clone();
        Group::builder("g")
            .loader(move |k: Bytes| {
                let me = me.clone();
                async move {
                    let g = me.get().expect("set below");
                    // Another key is fine; the key being loaded would wait for itself.
                    assert!(matches!(g.get_now(b"other"), Ok(Now::Pending(_))));
                    g.get(&k).await.map(Loaded::value)
                }
            })
            .build()
            .unwrap()
    };
    me.set(g.clone()).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), g.get(b"k"))
        .await
        .expect("no hang")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaders_get_many_of_its_own_key_is_refused_not_hung() {
    let me: Arc<std::sync::OnceLock<Group>> = Arc::default();
    let g = {
        let me = me.clone();
        Group::builder("g")
            .loader(move |k: Bytes| {
                let me = me.clone();
                async move {
                    let g = me.get().expect("set below");
                    if &k[..] == b"outer" {
                        let got = g.get_many(&[&b"inner"[..]]).await?;
                        return Ok(Loaded::value(got[0].1.clone()));
                    }
                    if &k[..] == b"inner" {
                        return Ok(Loaded::value(Bytes::from_static(b"in")));
                    }
                    let e = g.get_many(&[&b"other"[..], &k[..]]).await.unwrap_err();
                    Ok(Loaded::value(e.kind().as_str()))
                }
            })
            .build()
            .unwrap()
    };
    me.set(g.clone()).unwrap();
    let v = tokio::time::timeout(Duration::from_secs(10), g.get(b"k"))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(&v[..], b"INVALID_ARGUMENT");
    assert_eq!(&g.get(b"outer").await.unwrap()[..], b"in", "another key is fine");
    // A scope carried to another task (as a binding does for an async get_many).
    let scope = LoadScope::new(g.id(), Bytes::from_static(b"x"));
    let e = tokio::spawn(scope.run({
        let g = g.clone();
        async move { g.get_many(&[b"x"]).await }
    }))
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn get_now_answers_hits_at_once_and_defers_misses() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = group(calls.clone(), &ManualClock::default());
    let Now::Pending(fut) = g.get_now(b"a").unwrap() else {
        panic!("a miss")
    };
    assert_eq!(&fut.await.unwrap()[..], b"v:a");
    assert!(matches!(g.get_now(b"a").unwrap(), Now::Ready(v) if v[..] == b"v:a"[..]));
    assert!(matches!(
        g.get_now_with(b"a", <[u8]>::len).unwrap(),
        Now::Ready(3)
    ));
    let Now::Pending(fut) = g.get_now_with(b"missing", <[u8]>::len).unwrap() else {
        panic!("a miss")
    };
    assert!(fut.await.unwrap_err().is_not_found());
    assert!(
        g.get_now(b"missing").unwrap_err().is_not_found(),
        "a cached NotFound is known now"
    );
    assert_eq!(g.get_now(b"").unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_every_caller_waiting_on_a_stuck_loader() {
    let g = Group::builder("g")
        .loader(|_k: Bytes| async {
            std::future::pending::<()>().await;
            Ok(Loaded::value("never"))
        })
        .build()
        .unwrap();
    let waiters = waiting_gets(&g, b"k", 8).await;
    g.close();
    for w in waiters {
        let r = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("released");
        assert_eq!(r.unwrap().unwrap_err().kind(), ErrorKind::Closed);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stuck_loader_times_out_and_the_next_get_loads_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let g = {
        let calls = calls.clone();
        Group::builder("g")
            .load_timeout(Duration::from_secs(2))
            .loader(move |_k: Bytes| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        std::future::pending::<()>().await;
                    }
                    Ok(Loaded::value("second try"))
                }
            })
            .build()
            .unwrap()
    };
    let (a, b) = tokio::join!(g.get(b"k"), g.get(b"k"));
    for r in [a, b] {
        assert_eq!(
            r.unwrap_err().kind(),
            ErrorKind::Timeout,
            "every waiter times out"
        );
    }
    assert_eq!(&g.get(b"k").await.unwrap()[..], b"second try");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(g.stats().load_errors, 1);
    assert_eq!(
        Group::builder("x")
            .load_timeout(Duration::ZERO)
            .build()
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
}

#[tokio::test]
async fn a_set_that_could_never_be_cached_is_an_error_not_a_silent_success() {
    // One entry may take half the capacity: 2 MiB cannot be held in 1 MiB.
    let g = Group::builder("g").capacity(1 << 20).build().unwrap();
    let e = g
        .set(b"big", Bytes::from(vec![0u8; 2 << 20]), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(g.peek(b"big").unwrap(), None);
    // What fits is stored, and reads back.
    g.set(b"ok", Bytes::from(vec![1u8; 400 << 10]), None)
        .await
        .unwrap();
    assert_eq!(g.peek(b"ok").unwrap().map(|v| v.len()), Some(400 << 10));
}

#[tokio::test]
async fn values_of_megabytes_are_stored_with_default_sharding() {
    let g = Group::builder("g").capacity(256 << 20).build().unwrap();
    g.set(b"4m", Bytes::from(vec![2u8; 4 << 20]), None).await.unwrap();
    assert_eq!(g.peek(b"4m").unwrap().map(|v| v.len()), Some(4 << 20));
    // The documented maximum fits a 1 GiB group; one byte more is refused as too long.
    let max = crate::DEFAULT_MAX_VALUE_LEN;
    let g = Group::builder("g").capacity(1 << 30).build().unwrap();
    g.set(b"8m", Bytes::from(vec![3u8; max]), None).await.unwrap();
    assert_eq!(g.peek(b"8m").unwrap().map(|v| v.len()), Some(max));
    let e = g
        .set(b"9m", Bytes::from(vec![3u8; max + 1]), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // A loaded value of megabytes is cached too.
    let g = Group::builder("g")
        .capacity(256 << 20)
        .loader(|_k: Bytes| async { Ok(Loaded::value(Bytes::from(vec![4u8; 4 << 20]))) })
        .build()
        .unwrap();
    g.get(b"loaded").await.unwrap();
    assert_eq!(g.peek(b"loaded").unwrap().map(|v| v.len()), Some(4 << 20));
}
