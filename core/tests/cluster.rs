//! Several nodes in one process, on 127.0.0.1:0.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use meshcache::peer::pb;
use meshcache::{BreakerState, Cluster, ErrorKind, Group, Loaded};
use tokio::sync::{Barrier, Notify};

const BOUND: Duration = Duration::from_secs(20);

/// A loader that counts its calls (shared across nodes) and answers `v<n>:<key>`.
fn counting(calls: Arc<AtomicUsize>) -> impl Fn(Bytes) -> futures_loaded::Fut + Send + Sync + 'static {
    move |key: Bytes| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if &key[..] == b"missing" {
                return Ok(Loaded::not_found());
            }
            Ok(Loaded::value(format!("v{n}:{}", String::from_utf8_lossy(&key))))
        })
    }
}

mod futures_loaded {
    pub type Fut =
        std::pin::Pin<Box<dyn std::future::Future<Output = meshcache::Result<meshcache::Loaded>> + Send>>;
}

struct Node {
    cluster: Cluster,
    group: Group,
}

async fn start_nodes(
    n: usize,
    calls: &Arc<AtomicUsize>,
    tweak: impl Fn(meshcache::ClusterBuilder) -> meshcache::ClusterBuilder,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        let cluster = tweak(Cluster::builder()).start().await.unwrap();
        let group = cluster
            .group("g")
            .hot_sample(1)
            .loader(counting(calls.clone()))
            .build()
            .unwrap();
        nodes.push(Node { cluster, group });
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| n.cluster.advertise_addr().to_string())
        .collect();
    for n in &nodes {
        n.cluster.set_peers(addrs.clone()).unwrap();
    }
    nodes
}

/// A key the ring gives to `owner`.
fn key_owned_by(nodes: &[Node], owner: usize, salt: &str) -> String {
    key_for(&nodes[0].cluster, nodes[owner].cluster.advertise_addr(), salt)
}

/// A key `c`'s ring gives to `owner`.
fn key_for(c: &Cluster, owner: &str, salt: &str) -> String {
    (0..)
        .map(|i| format!("{salt}-{i}"))
        .find(|k| c.owner_of(k.as_bytes()) == owner)
        .unwrap()
}

/// Two nodes started from `a` and `b`, each with both in its peer list.
async fn joined(a: meshcache::ClusterBuilder, b: meshcache::ClusterBuilder) -> (Cluster, Cluster) {
    let (a, b) = (a.start().await.unwrap(), b.start().await.unwrap());
    for c in [&a, &b] {
        c.set_peers([a.advertise_addr().to_string(), b.advertise_addr().to_string()])
            .unwrap();
    }
    (a, b)
}

fn peer_stats(c: &Cluster, addr: &str) -> (BreakerState, meshcache::PeerStats) {
    let st = c.stats();
    let (_, state, stats) = st.peers.into_iter().find(|p| p.0 == addr).expect("peer listed");
    (state, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_key_is_loaded_by_its_owner() {
    let calls = Arc::new(AtomicUsize::new(0));
    let nodes = start_nodes(2, &calls, |b| b).await;
    let k = key_owned_by(&nodes, 1, "k");
    let v = nodes[0].group.get(k.as_bytes()).await.unwrap();
    assert_eq!(v, format!("v0:{k}"));
    assert_eq!(nodes[1].group.stats().loads, 1);
    assert_eq!(nodes[0].group.stats().loads, 0);
    assert_eq!(nodes[0].group.stats().remote_fetches, 1);
    assert_eq!(nodes[1].group.stats().served, 1);
    // Mirrored on the caller (hot_sample 1), owned on the owner.
    assert_eq!(nodes[0].group.get(k.as_bytes()).await.unwrap(), v);
    assert_eq!(nodes[0].group.stats().hot_hits, 1);
    assert_eq!(nodes[1].group.peek(k.as_bytes()).unwrap(), Some(v));
    // NotFound from the owner is returned, not reloaded locally.
    let missing_owner = nodes[0].cluster.owner_of(b"missing");
    let caller = if missing_owner == nodes[0].cluster.advertise_addr() {
        1
    } else {
        0
    };
    let e = nodes[caller].group.get(b"missing").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(nodes[caller].group.stats().fallback_loads, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_is_loaded_once_in_the_whole_cluster() {
    let calls = Arc::new(AtomicUsize::new(0));
    let nodes = Arc::new(start_nodes(3, &calls, |b| b).await);
    let barrier = Arc::new(Barrier::new(150));
    let mut tasks = Vec::new();
    for i in 0..150 {
        let (nodes, barrier) = (nodes.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            nodes[i % 3].group.get(b"the-key").await
        }));
    }
    for t in tasks {
        assert_eq!(
            tokio::time::timeout(BOUND, t).await.unwrap().unwrap().unwrap(),
            "v0:the-key"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "loaded more than once in the cluster"
    );
    let loads: u64 = nodes.iter().map(|n| n.group.stats().loads).sum();
    assert_eq!(loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owner_means_fallback_then_traffic_returns_when_it_is_back() {
    let calls = Arc::new(AtomicUsize::new(0));
    let nodes = start_nodes(3, &calls, |b| b.breaker(2, Duration::ZERO)).await;
    let dead_addr = nodes[2].cluster.advertise_addr().to_string();
    let listen = nodes[2].cluster.local_addr();
    nodes[2].cluster.shutdown().await.unwrap();
    let mut nodes = nodes;
    drop(nodes.pop());

    for i in 0..5 {
        let k = key_for(&nodes[0].cluster, &dead_addr, &format!("dead{i}"));
        let got = tokio::time::timeout(BOUND, nodes[0].group.get(k.as_bytes()))
            .await
            .unwrap();
        assert!(
            got.unwrap().ends_with(k.as_bytes()),
            "a get failed while the owner was down"
        );
    }
    let st = nodes[0].group.stats();
    assert_eq!(st.fallback_loads, 5);
    assert_eq!(st.loads, 5);
    assert_eq!(st.remote_errors, 5);
    let (_, ps) = peer_stats(&nodes[0].cluster, &dead_addr);
    assert!(ps.breaker_opened >= 1, "breaker never opened: {ps:?}");
    assert!(ps.failures >= 2);

    // The owner comes back on the same address; the next probe closes the breaker.
    let back = Cluster::builder()
        .listen(listen.to_string())
        .start()
        .await
        .unwrap();
    let back_group = back.group("g").loader(counting(calls.clone())).build().unwrap();
    back.set_peers(
        nodes
            .iter()
            .map(|n| n.cluster.advertise_addr().to_string())
            .chain([dead_addr.clone()]),
    )
    .unwrap();
    let k = key_for(&nodes[0].cluster, &dead_addr, "back");
    assert!(
        nodes[0]
            .group
            .get(k.as_bytes())
            .await
            .unwrap()
            .ends_with(k.as_bytes())
    );
    assert_eq!(nodes[0].group.stats().remote_fetches, 1);
    assert_eq!(back_group.stats().loads, 1);
    assert_eq!(peer_stats(&nodes[0].cluster, &dead_addr).0, BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_skips_the_dead_peer_without_waiting() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut nodes = start_nodes(2, &calls, |b| {
        b.breaker(2, Duration::from_secs(3600)).retries(0, Duration::ZERO)
    })
    .await;
    let dead = nodes.pop().unwrap();
    let dead_addr = dead.cluster.advertise_addr().to_string();
    dead.cluster.shutdown().await.unwrap();
    drop(dead);
    for i in 0..6 {
        let k = format!("x{i}");
        if nodes[0].cluster.owner_of(k.as_bytes()) == dead_addr {
            nodes[0].group.get(k.as_bytes()).await.unwrap();
        }
    }
    let mut rejected_before = peer_stats(&nodes[0].cluster, &dead_addr).1.rejected;
    for i in 0..10 {
        // Keys the (dead) peer owns: all of them go straight to fallback.
        let k = key_for(&nodes[0].cluster, &dead_addr, &format!("y{i}"));
        nodes[0].group.get(k.as_bytes()).await.unwrap();
        let (state, ps) = peer_stats(&nodes[0].cluster, &dead_addr);
        if ps.breaker_opened > 0 {
            assert_eq!(state, BreakerState::Open);
            assert!(ps.rejected >= rejected_before);
            rejected_before = ps.rejected;
        }
    }
    let (_, ps) = peer_stats(&nodes[0].cluster, &dead_addr);
    assert_eq!(ps.breaker_opened, 1);
    assert!(ps.rejected >= 8, "{ps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_reaches_the_owner_and_every_mirror() {
    let calls = Arc::new(AtomicUsize::new(0));
    let nodes = start_nodes(3, &calls, |b| b).await;
    let k = key_owned_by(&nodes, 2, "del");
    for n in &nodes {
        assert_eq!(n.group.get(k.as_bytes()).await.unwrap(), format!("v0:{k}"));
    }
    assert!(
        nodes[0].group.peek(k.as_bytes()).unwrap().is_some(),
        "caller should hold a hot mirror"
    );
    nodes[0].group.delete(k.as_bytes()).await.unwrap();
    for n in &nodes {
        assert_eq!(n.group.peek(k.as_bytes()).unwrap(), None);
    }
    for n in &nodes {
        assert_eq!(n.group.get(k.as_bytes()).await.unwrap(), format!("v1:{k}"));
    }
    // set goes to the owner and drops the mirrors elsewhere.
    nodes[1]
        .group
        .set(k.as_bytes(), Bytes::from_static(b"new"), None)
        .await
        .unwrap();
    for n in &nodes {
        assert_eq!(n.group.get(k.as_bytes()).await.unwrap(), "new");
    }
    assert_eq!(
        nodes[2].group.peek(k.as_bytes()).unwrap().as_deref(),
        Some(&b"new"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_whose_rings_disagree_never_bounce_or_hang() {
    let calls = Arc::new(AtomicUsize::new(0));
    let a = Cluster::builder().start().await.unwrap();
    let b = Cluster::builder().start().await.unwrap();
    // Each names the other by another spelling of the same address, so the two rings
    // hash differently and disagree about many owners.
    a.set_peers([format!("localhost:{}", b.local_addr().port())])
        .unwrap();
    b.set_peers([format!("localhost:{}", a.local_addr().port())])
        .unwrap();
    let ga = a.group("g").loader(counting(calls.clone())).build().unwrap();
    let gb = b.group("g").loader(counting(calls.clone())).build().unwrap();
    let mut swapped = 0;
    for i in 0..200 {
        let k = format!("k{i}");
        let (oa, ob) = (a.owner_of(k.as_bytes()), b.owner_of(k.as_bytes()));
        if oa != a.advertise_addr() && ob != b.advertise_addr() {
            swapped += 1;
        }
    }
    assert!(swapped > 0, "the test needs keys each node thinks the other owns");
    let tasks: Vec<_> = (0..200)
        .flat_map(|i| {
            let (ga, gb) = (ga.clone(), gb.clone());
            [
                tokio::spawn(async move { ga.get(format!("k{i}").as_bytes()).await }),
                tokio::spawn(async move { gb.get(format!("k{i}").as_bytes()).await }),
            ]
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(BOUND, t)
            .await
            .expect("a get hung")
            .unwrap()
            .unwrap();
    }
    assert!(calls.load(Ordering::SeqCst) <= 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_calls_in_flight() {
    let (a, b) = joined(Cluster::builder(), Cluster::builder()).await;
    let started = Arc::new(Notify::new());
    let gate = Arc::new(Notify::new());
    let ga = a.group("g").build().unwrap();
    let (s, g) = (started.clone(), gate.clone());
    let _gb = b
        .group("g")
        .loader(move |_k: Bytes| {
            let (s, g) = (s.clone(), g.clone());
            async move {
                s.notify_one();
                g.notified().await;
                Ok(Loaded::value("slow"))
            }
        })
        .build()
        .unwrap();
    let k = key_for(&a, b.advertise_addr(), "s");
    let get = tokio::spawn(async move { ga.get(k.as_bytes()).await });
    started.notified().await;
    let shutdown = {
        let b = b.clone();
        tokio::spawn(async move { b.shutdown().await })
    };
    tokio::time::timeout(BOUND, async {
        while !b.is_closed() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    gate.notify_one();
    assert_eq!(
        tokio::time::timeout(BOUND, get).await.unwrap().unwrap().unwrap(),
        "slow"
    );
    tokio::time::timeout(BOUND, shutdown)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        b.get_group("g").unwrap().get(b"x").await.unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_sends_one_call_per_owner() {
    let calls = Arc::new(AtomicUsize::new(0));
    // No warm window: a node's first misses would also ask each key's owner-before-it
    // (the warm takeover of a node that just joined); only get_many's calls are counted.
    let nodes = start_nodes(3, &calls, |b| b.warm_window(Duration::ZERO)).await;
    let keys: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    let mut want = keys.clone();
    want.push("missing".into());
    let got = nodes[0].group.get_many(&want).await.unwrap();
    assert_eq!(got.len(), 30);
    for (k, v) in &got {
        assert!(v.ends_with(k));
    }
    for p in nodes[0].cluster.stats().peers {
        assert_eq!(p.2.requests, 1, "peer {} got {} calls", p.0, p.2.requests);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_never_hurts_the_node() {
    let calls = Arc::new(AtomicUsize::new(0));
    let nodes = start_nodes(2, &calls, |b| b.max_message_size(64 * 1024)).await;
    let g = &nodes[0].group;
    let big_key = vec![b'k'; 2000];
    assert_eq!(
        g.get(&big_key).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        g.set(b"k", Bytes::from(vec![0; 9 << 20]), None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        nodes[0].cluster.set_peers(["not an address"]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        Cluster::builder()
            .listen("nope")
            .start()
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        nodes[0].cluster.group("g").build().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    for bad in [
        Cluster::builder().max_message_size(0),
        Cluster::builder().peer_timeout(Duration::ZERO),
        Cluster::builder().vnodes(0),
        Cluster::builder().breaker(0, Duration::ZERO),
    ] {
        assert_eq!(bad.start().await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    // A raw client speaking the protocol badly.
    let addr = format!("http://{}", nodes[1].cluster.local_addr());
    let mut raw = pb::peer_client::PeerClient::connect(addr.clone()).await.unwrap();
    let st = raw
        .get(pb::GetRequest {
            group: "nope".into(),
            key: Bytes::from_static(b"k"),
            forwarded: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::NotFound);
    let st = raw
        .get(pb::GetRequest {
            group: "g".into(),
            key: Bytes::from(big_key.clone()),
            forwarded: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    let st = raw
        .set(pb::SetRequest {
            group: "g".into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![0; 100 * 1024]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            st.code(),
            tonic::Code::ResourceExhausted
                | tonic::Code::OutOfRange
                | tonic::Code::Internal
                | tonic::Code::Unknown
        ),
        "{st:?}"
    );

    // Garbage bytes on the socket, and a connection closed mid-request.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(nodes[1].cluster.local_addr())
            .await
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\x01\x02garbage")
            .await
            .unwrap();
        drop(s);
        let mut s = tokio::net::TcpStream::connect(nodes[1].cluster.local_addr())
            .await
            .unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04")
            .await
            .unwrap();
        drop(s);
    }
    // The node still serves.
    let k = key_owned_by(&nodes, 1, "alive");
    assert!(
        nodes[0]
            .group
            .get(k.as_bytes())
            .await
            .unwrap()
            .ends_with(k.as_bytes())
    );
    let channel = tonic::transport::Endpoint::from_shared(addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "meshcache.peer.v1.Peer".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[test]
fn clusters_with_their_own_runtimes_work_from_sync_code() {
    let calls = Arc::new(AtomicUsize::new(0));
    let a = Cluster::builder().build().unwrap();
    let b = Cluster::builder()
        .peers([a.advertise_addr().to_string()])
        .build()
        .unwrap();
    a.set_peers([b.advertise_addr().to_string()]).unwrap();
    let ga = a.group("g").loader(counting(calls.clone())).build().unwrap();
    let _gb = b.group("g").loader(counting(calls.clone())).build().unwrap();
    for i in 0..20 {
        let k = format!("k{i}");
        assert!(
            a.runtime()
                .block_on(ga.get(k.as_bytes()))
                .unwrap()
                .ends_with(k.as_bytes())
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    a.shutdown_blocking().unwrap();
    b.shutdown_blocking().unwrap();
    assert_eq!(ga.peek(b"k1").unwrap_err().kind(), ErrorKind::Closed);
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_answers_past_the_message_limit_arrive_one_by_one() {
    let limit = 64 * 1024;
    let (a, b) = joined(
        Cluster::builder().max_message_size(limit),
        Cluster::builder().max_message_size(limit),
    )
    .await;
    let ga = a.group("g").hot_sample(0).build().unwrap();
    let _gb = b
        .group("g")
        .loader(|k: Bytes| async move { Ok(Loaded::value(vec![k[0]; 20 * 1024])) })
        .build()
        .unwrap();
    let keys: Vec<String> = (0..)
        .map(|i| format!("{}big{i}", (b'a' + i as u8 % 26) as char))
        .filter(|k| a.owner_of(k.as_bytes()) == b.advertise_addr())
        .take(10)
        .collect();
    let got = ga.get_many(&keys).await.unwrap();
    assert_eq!(
        got.len(),
        10,
        "every key must arrive although 200 KiB exceed the 64 KiB limit"
    );
    for (k, v) in &got {
        assert_eq!(v.len(), 20 * 1024);
        assert_eq!(v[0], k[0]);
    }
    let (_, stats) = peer_stats(&a, b.advertise_addr());
    assert!(stats.requests > 1 && stats.failures == 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_times_out_means_a_local_fallback() {
    let (a, b) = joined(
        Cluster::builder().peer_timeout(Duration::from_millis(200)),
        Cluster::builder(),
    )
    .await;
    let ga = a
        .group("g")
        .loader(|k: Bytes| async move { Ok(Loaded::value(k)) })
        .build()
        .unwrap();
    // b's loader never answers.
    let _gb = b
        .group("g")
        .loader(|_k: Bytes| async move { std::future::pending::<meshcache::Result<Loaded>>().await })
        .build()
        .unwrap();
    let k = key_for(&a, b.advertise_addr(), "slow");
    let v = tokio::time::timeout(BOUND, ga.get(k.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, k);
    let st = ga.stats();
    assert_eq!((st.remote_errors, st.fallback_loads, st.loads), (1, 1, 1));
    let (_, ps) = peer_stats(&a, b.advertise_addr());
    assert_eq!(ps.timeouts, 1, "{ps:?}");
    assert_eq!(ps.retries, 0, "a timed-out call is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_of_megabytes_set_anywhere_is_readable_on_every_node() {
    // 64 MiB groups: an entry may take half (the store's own tests try 256 MiB and 1 GiB).
    let calls = Arc::new(AtomicUsize::new(0));
    let nodes = start_nodes(3, &calls, |b| b).await;
    let value = Bytes::from((0..4 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    // Set on a node that does not own the key: it travels to the owner.
    let key = key_owned_by(&nodes, 2, "big");
    nodes[0]
        .group
        .set(key.as_bytes(), value.clone(), None)
        .await
        .unwrap();
    for n in &nodes {
        assert_eq!(n.group.get(key.as_bytes()).await.unwrap(), value);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "read from the owner, never loaded"
    );
    // Over the limit: a typed error, and nothing stored anywhere.
    let too_long = Bytes::from(vec![0u8; meshcache::DEFAULT_MAX_VALUE_LEN + 1]);
    let e = nodes[1]
        .group
        .set(key.as_bytes(), too_long, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(nodes[2].group.peek(key.as_bytes()).unwrap(), Some(value));
}
