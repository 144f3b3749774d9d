//! Group tests: the public API standalone, and the routed paths against a fake router.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};

use super::*;
use crate::clock::ManualClock;
use crate::loader::Loaded;
use crate::peer::batch::{MAX_BATCH, MAX_IN_FLIGHT};
use crate::registry::Registry;
use crate::route::{BoxFuture, Remote};
use crate::scope::LoadScope;

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
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let g = g.clone();
            tokio::spawn(async move { g.get(b"k").await })
        })
        .collect();
    let key = Bytes::from_static(b"k");
    tokio::time::timeout(Duration::from_secs(10), async {
        while g.inner.local_flights.waiters(&key) < 64 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("64 waiters");
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

// ---- Routed groups against a fake router: no gRPC, the peer's behaviour chosen. ----

/// How the fake owner answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// `"owner:" + key`, expiring at 0.
    Value,
    /// The owner's loader says the key does not exist.
    NotFound,
    /// The owner cannot be reached.
    Unreachable,
    /// The owner answers only after the gate opens.
    Slow,
}

#[derive(Debug)]
struct FakePeer {
    addr: String,
    owner: Owner,
    timeout: Option<Duration>,
    /// While set, deletes fail as if the node could not be reached.
    down: AtomicBool,
    gate: Semaphore,
    gets: AtomicUsize,
    get_manys: AtomicUsize,
    keys_asked: AtomicUsize,
    sets: Mutex<Vec<(Bytes, Bytes)>>,
    deletes: Mutex<Vec<Bytes>>,
}

impl FakePeer {
    fn new(owner: Owner) -> Arc<Self> {
        Self::with_timeout(owner, None)
    }

    fn with_timeout(owner: Owner, timeout: Option<Duration>) -> Arc<Self> {
        Arc::new(FakePeer {
            addr: "fake:1".into(),
            owner,
            timeout,
            down: AtomicBool::new(false),
            gate: Semaphore::new(0),
            gets: AtomicUsize::new(0),
            get_manys: AtomicUsize::new(0),
            keys_asked: AtomicUsize::new(0),
            sets: Mutex::new(Vec::new()),
            deletes: Mutex::new(Vec::new()),
        })
    }

    async fn answer(&self, key: &Bytes) -> Result<Entry> {
        self.keys_asked.fetch_add(1, Ordering::SeqCst);
        match self.owner {
            Owner::Value => Ok(Entry::value([b"owner:", &key[..]].concat().into(), 0)),
            Owner::NotFound => Ok(Entry::not_found(0)),
            Owner::Unreachable => Err(Error::new(ErrorKind::Peer, "connection refused")),
            Owner::Slow => {
                // Like the real client, each call has its own deadline, if any.
                let wait = self.gate.acquire();
                let _permit = match self.timeout {
                    None => wait.await.expect("gate open"),
                    Some(t) => match tokio::time::timeout(t, wait).await {
                        Ok(p) => p.expect("gate open"),
                        Err(_) => return Err(Error::new(ErrorKind::Timeout, "no answer in time")),
                    },
                };
                Ok(Entry::value([b"owner:", &key[..]].concat().into(), 0))
            }
        }
    }
}

impl Remote for FakePeer {
    fn addr(&self) -> &str {
        &self.addr
    }

    fn call_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn get<'a>(&'a self, _group: &'a str, key: Bytes) -> BoxFuture<'a, Result<Entry>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { self.answer(&key).await })
    }

    fn get_many<'a>(
        &'a self,
        _group: &'a str,
        keys: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<Vec<Result<Entry>>>> {
        self.get_manys.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut out = Vec::new();
            for k in &keys {
                out.push(self.answer(k).await);
            }
            Ok(out)
        })
    }

    fn set<'a>(
        &'a self,
        _group: &'a str,
        key: Bytes,
        value: Bytes,
        _deadline: u64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.owner == Owner::Unreachable {
                return Err(Error::new(ErrorKind::Peer, "connection refused"));
            }
            self.sets.lock().push((key, value));
            Ok(())
        })
    }

    fn delete<'a>(&'a self, _group: &'a str, key: Bytes) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::Peer, "connection refused"));
            }
            self.deletes.lock().push(key);
            Ok(true)
        })
    }
}

/// Keys starting with `r` belong to the fake peer; the rest to this node.
#[derive(Debug)]
struct FakeRouter {
    peer: Arc<FakePeer>,
    closed: AtomicBool,
}

impl Router for FakeRouter {
    fn route(&self, key: &[u8]) -> Result<Route> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::closed());
        }
        Ok(if key.starts_with(b"r") {
            Route::Remote(self.peer.clone())
        } else {
            Route::Local
        })
    }

    fn peers(&self) -> Vec<Arc<dyn Remote>> {
        vec![self.peer.clone()]
    }
}

fn routed(owner: Owner, calls: Arc<AtomicUsize>) -> (Group, Arc<FakePeer>, Arc<FakeRouter>) {
    routed_to(FakePeer::new(owner), calls)
}

fn routed_to(peer: Arc<FakePeer>, calls: Arc<AtomicUsize>) -> (Group, Arc<FakePeer>, Arc<FakeRouter>) {
    let router = Arc::new(FakeRouter {
        peer: peer.clone(),
        closed: AtomicBool::new(false),
    });
    let g = Group::builder("g")
        .hot_sample(1)
        .loader(counting_loader(calls))
        .routed(router.clone(), Arc::new(Registry::default()), Handle::current())
        .build()
        .unwrap();
    (g, peer, router)
}

#[tokio::test]
async fn a_key_of_a_healthy_owner_comes_from_the_owner_not_the_loader() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, peer, _) = routed(Owner::Value, calls.clone());
    assert_eq!(&g.get(b"r1").await.unwrap()[..], b"owner:r1");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(peer.gets.load(Ordering::SeqCst), 1);
    // hot_sample(1): mirrored, so the next get is a hot hit.
    assert_eq!(&g.get(b"r1").await.unwrap()[..], b"owner:r1");
    let st = g.stats();
    assert_eq!((st.remote_fetches, st.hot_hits, st.hot_inserts), (1, 1, 1));
    // A local key never reaches the peer.
    assert_eq!(&g.get(b"a").await.unwrap()[..], b"v:a");
    assert_eq!(peer.gets.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_owner_makes_the_caller_load_locally_into_the_hot_tier() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, _, _) = routed(Owner::Unreachable, calls.clone());
    assert_eq!(&g.get(b"r1").await.unwrap()[..], b"v:r1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let st = g.stats();
    assert_eq!((st.remote_errors, st.fallback_loads), (1, 1));
    assert_eq!(
        (st.main.items, st.hot.items),
        (0, 1),
        "a fallback is never kept as owned"
    );
    // get_many falls back per key too, each key loaded once.
    let got = g.get_many(&["r2", "r3", "r2"]).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_owner_that_says_not_found_is_believed_without_a_local_load() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, _, _) = routed(Owner::NotFound, calls.clone());
    assert!(g.get(b"r1").await.unwrap_err().is_not_found());
    assert!(g.get_many(&["r1", "r2"]).await.unwrap().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(g.stats().remote_not_found, 3);
}

#[tokio::test]
async fn set_goes_to_the_owner_and_delete_reaches_every_peer() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, peer, _) = routed(Owner::Value, calls.clone());
    g.set(b"r1", Bytes::from_static(b"x"), None).await.unwrap();
    assert_eq!(
        peer.sets.lock().as_slice(),
        &[(Bytes::from_static(b"r1"), Bytes::from_static(b"x"))]
    );
    // A local key is stored here and invalidated on the peer.
    g.set(b"a", Bytes::from_static(b"y"), None).await.unwrap();
    assert_eq!(g.peek(b"a").unwrap().as_deref(), Some(&b"y"[..]));
    g.delete(b"a").await.unwrap();
    assert_eq!(g.peek(b"a").unwrap(), None);
    assert_eq!(
        peer.deletes.lock().len(),
        2,
        "the set's and the delete's invalidations"
    );
    // A set whose owner cannot be reached fails and caches nothing.
    let (g, _, _) = routed(Owner::Unreachable, calls);
    let e = g.set(b"r1", Bytes::from_static(b"x"), None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Peer);
    assert_eq!(g.peek(b"r1").unwrap(), None);
}

#[tokio::test]
async fn a_closed_router_closes_the_group_paths_that_need_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, _, router) = routed(Owner::Value, calls);
    g.set(b"a", Bytes::from_static(b"y"), None).await.unwrap();
    router.closed.store(true, Ordering::SeqCst);
    assert_eq!(g.get(b"b").await.unwrap_err().kind(), ErrorKind::Closed);
    // A hit needs no route.
    assert_eq!(&g.get(b"a").await.unwrap()[..], b"y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_remote_gets_share_calls() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, peer, _) = routed(Owner::Slow, calls.clone());
    let keys: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
    let tasks: Vec<_> = keys
        .iter()
        .map(|k| {
            let (g, k) = (g.clone(), k.clone());
            tokio::spawn(async move {
                g.get(k.as_bytes())
                    .await
                    .map(|v| v[..] == *format!("owner:{k}").as_bytes())
            })
        })
        .collect();
    // Every get is waiting: MAX_IN_FLIGHT calls are held by the slow owner, the rest queue.
    let queued = 200 - MAX_IN_FLIGHT;
    tokio::time::timeout(Duration::from_secs(20), async {
        while !(g.inner.batchers.queued() == queued
            && peer.keys_asked.load(Ordering::SeqCst) == MAX_IN_FLIGHT)
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("gets did not queue up");
    peer.gate.add_permits(1 << 20);
    for t in tasks {
        assert!(t.await.unwrap().unwrap());
    }
    let requests = peer.gets.load(Ordering::SeqCst) + peer.get_manys.load(Ordering::SeqCst);
    assert_eq!(
        requests,
        MAX_IN_FLIGHT + queued.div_ceil(MAX_BATCH),
        "200 gets should share calls"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
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

/// A get queued behind calls to a hung owner gives up after one peer timeout in all
/// (and loads locally), not after waiting for a call slot and then its own call.
#[tokio::test(start_paused = true)]
async fn a_get_queued_behind_a_hung_owner_waits_one_timeout_not_two() {
    let timeout = Duration::from_secs(1);
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, peer, _) = routed_to(FakePeer::with_timeout(Owner::Slow, Some(timeout)), calls.clone());
    let started = tokio::time::Instant::now();
    let gets: Vec<_> = (0..MAX_IN_FLIGHT + 3)
        .map(|i| {
            let g = g.clone();
            tokio::spawn(async move { g.get(format!("r{i}").as_bytes()).await })
        })
        .collect();
    for (i, t) in gets.into_iter().enumerate() {
        assert_eq!(
            t.await.unwrap().unwrap(),
            format!("v:r{i}"),
            "fell back to a local load"
        );
    }
    let took = started.elapsed();
    assert!(
        took < timeout * 3 / 2,
        "queued gets waited {took:?}: more than one timeout of {timeout:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), MAX_IN_FLIGHT + 3);
    assert!(peer.keys_asked.load(Ordering::SeqCst) >= MAX_IN_FLIGHT);
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
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let g = g.clone();
            tokio::spawn(async move { g.get(b"k").await })
        })
        .collect();
    let key = Bytes::from_static(b"k");
    tokio::time::timeout(Duration::from_secs(10), async {
        while g.inner.local_flights.waiters(&key) < 8 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("8 waiters");
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
    // One shard of 1 MiB: a 2 MiB value (under max_value_len) cannot be held.
    let g = Group::builder("g").capacity(1 << 20).build().unwrap();
    let e = g
        .set(b"big", Bytes::from(vec![0u8; 2 << 20]), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(g.peek(b"big").unwrap(), None);
    // What fits is stored, and reads back.
    g.set(b"ok", Bytes::from(vec![1u8; 512 << 10]), None)
        .await
        .unwrap();
    assert_eq!(g.peek(b"ok").unwrap().map(|v| v.len()), Some(512 << 10));
    // Fewer shards hold larger values in the same capacity.
    let g = Group::builder("g").capacity(64 << 20).shards(4).build().unwrap();
    g.set(b"4m", Bytes::from(vec![2u8; 4 << 20]), None).await.unwrap();
    assert_eq!(g.peek(b"4m").unwrap().map(|v| v.len()), Some(4 << 20));
}

#[tokio::test]
async fn hot_mirrors_live_no_longer_than_the_hot_ttl() {
    let clock = ManualClock::default();
    let peer = FakePeer::new(Owner::Value);
    let router = Arc::new(FakeRouter {
        peer: peer.clone(),
        closed: AtomicBool::new(false),
    });
    let g = Group::builder("g")
        .hot_sample(1)
        .hot_ttl(Duration::from_secs(10))
        .clock(Arc::new(clock.clone()))
        .routed(router, Arc::new(Registry::default()), Handle::current())
        .build()
        .unwrap();
    g.get(b"r1").await.unwrap();
    assert!(g.peek(b"r1").unwrap().is_some(), "mirrored");
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        g.peek(b"r1").unwrap(),
        None,
        "the owner said 'never expires', the mirror still does"
    );
    g.get(b"r1").await.unwrap();
    assert_eq!(
        peer.gets.load(Ordering::SeqCst),
        2,
        "fetched again from the owner"
    );
}

/// An invalidation that could not reach a peer is delivered once the peer is back (and
/// given up once no mirror could still hold the old value).
#[tokio::test(start_paused = true)]
async fn a_lost_invalidation_is_retried_until_the_peer_is_back() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, peer, _) = routed(Owner::Value, calls);
    peer.down.store(true, Ordering::SeqCst);
    g.delete(b"a").await.unwrap();
    assert_eq!(g.stats().invalidation_errors, 1);
    assert_eq!(g.inner.retries.pending(), 1);
    // Still down for a while: retried, kept.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(peer.deletes.lock().is_empty());
    assert_eq!(g.inner.retries.pending(), 1);
    // Back: delivered.
    peer.down.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), async {
        while peer.deletes.lock().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the retry reached the peer");
    assert_eq!(peer.deletes.lock().as_slice(), &[Bytes::from_static(b"a")]);
    assert_eq!(
        (g.stats().invalidations_retried, g.inner.retries.pending()),
        (1, 0)
    );
    // Down for longer than the hot TTL: given up, since the mirror expired anyway.
    peer.down.store(true, Ordering::SeqCst);
    g.delete(b"b").await.unwrap();
    tokio::time::sleep(DEFAULT_HOT_TTL + Duration::from_secs(1)).await;
    assert_eq!(g.inner.retries.pending(), 0);
}
