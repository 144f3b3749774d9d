//! Routed groups against a fake router: no gRPC, the peer's behaviour chosen by the test
//! (healthy, unreachable, NotFound, slow, partitioned).

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::super::*;
use super::counting_loader;
use crate::clock::ManualClock;
use crate::peer::batch::{MAX_BATCH, MAX_IN_FLIGHT};
use crate::registry::Registry;
use crate::route::{BoxFuture, Remote, Stamp};

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

    fn peek<'a>(&'a self, _group: &'a str, _key: Bytes) -> BoxFuture<'a, Result<Option<Entry>>> {
        Box::pin(async { Ok(None) })
    }

    fn peek_many<'a>(
        &'a self,
        _group: &'a str,
        keys: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<Vec<Result<Option<Entry>>>>> {
        Box::pin(async move { Ok(keys.iter().map(|_| Ok(None)).collect()) })
    }

    fn set<'a>(
        &'a self,
        _group: &'a str,
        key: Bytes,
        value: Bytes,
        _deadline: u64,
        _stamp: Stamp,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.owner == Owner::Unreachable {
                return Err(Error::new(ErrorKind::Peer, "connection refused"));
            }
            self.sets.lock().push((key, value));
            Ok(())
        })
    }

    fn delete<'a>(&'a self, _group: &'a str, key: Bytes, _stamp: Stamp) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::Peer, "connection refused"));
            }
            self.deletes.lock().push(key);
            Ok(true)
        })
    }

    fn handoff<'a>(&'a self, _group: &'a str, _entries: Vec<(Bytes, Entry)>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async { Err(Error::new(ErrorKind::Peer, "no handoff to a fake peer")) })
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
    // Still down for a while (the paused clock driven by the test): retried, kept.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(peer.deletes.lock().is_empty());
    assert_eq!(g.inner.retries.pending(), 1);
    // Back: delivered.
    peer.down.store(false, Ordering::SeqCst);
    // Each step moves the clock past one retry interval; bounded at 200 of them.
    for _ in 0..200 {
        if !peer.deletes.lock().is_empty() {
            break;
        }
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    assert_eq!(peer.deletes.lock().as_slice(), &[Bytes::from_static(b"a")]);
    assert_eq!(
        (g.stats().invalidations_retried, g.inner.retries.pending()),
        (1, 0)
    );
    // Down for longer than the hot TTL: given up, since the mirror expired anyway.
    peer.down.store(true, Ordering::SeqCst);
    g.delete(b"b").await.unwrap();
    tokio::time::advance(DEFAULT_HOT_TTL + Duration::from_secs(1)).await;
    // One more retry interval, for the task to see the entry has outlived its mirror.
    tokio::time::advance(Duration::from_millis(300)).await;
    assert_eq!(g.inner.retries.pending(), 0);
}
