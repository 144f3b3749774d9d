//! Replicas and handoff: written values survive a SIGKILLed node and a rolling restart, a
//! scale-out causes no load storm, and a delete during a handoff stays deleted. Nodes join
//! through a real etcd (the testkit's) or a static list; every wait is on an event.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use meshcache::{Cluster, Group, Loaded};
use meshcache_testkit::etcd::Etcd;
use meshcache_testkit::node::{self, Node};
use meshcache_testkit::zipf;
use parking_lot::Mutex;

/// The child side: this same test binary, re-run with `MESHCACHE_NODE=1`.
#[test]
fn child_node() {
    if std::env::var_os(node::ENV).is_some() {
        node::child_main();
    }
}

#[test]
fn with_two_replicas_a_sigkilled_node_loses_no_written_value_and_nothing_is_reloaded() {
    if std::env::var_os(node::ENV).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["--exact", "child_node", "--nocapture", "--test-threads=1"])
                .env("MESHCACHE_REPLICAS", "2");
            Node::spawn_with(&mut cmd, 0)
        })
        .collect();
    let peers = nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",");
    for n in &mut nodes {
        n.call(&format!("peers {peers}"), "ok");
    }
    assert_eq!(nodes[0].call("setn 10000 w", "setn"), "0", "every set succeeded");
    let mut victim = nodes.pop().unwrap();
    victim.child.kill().expect("SIGKILL");
    victim.child.wait().expect("reap");
    for n in &mut nodes {
        let checked = n.call("checkn 10000 w", "checkn");
        assert_eq!(checked, "10000 0 0", "right, wrong, failed on {}", n.addr);
        let stats = n.stats();
        assert_eq!(stats["loads"], 0, "the loader was called: {stats:?}");
    }
    let reads: u64 = nodes.iter_mut().map(|n| n.stats()["replica_reads"]).sum();
    assert!(reads > 0, "the dead node's keys were read from their replicas");
    for n in nodes {
        n.quit();
    }
}

/// A node joined through etcd, whose group `g` loads `loaded-<key>` and counts loads.
async fn etcd_node(spec: &str, loads: &Arc<AtomicU64>, replicas: usize) -> (Cluster, Group) {
    let c = Cluster::builder().membership(spec).start().await.unwrap();
    let loads = loads.clone();
    let g = c
        .group("g")
        .hot_sample(0)
        .replicas(replicas)
        .loader(move |key: Bytes| {
            loads.fetch_add(1, Ordering::SeqCst);
            let mut v = b"loaded-".to_vec();
            v.extend_from_slice(&key);
            std::future::ready(Ok(Loaded::value(v)))
        })
        .build()
        .unwrap();
    (c, g)
}

async fn wait_ring(nodes: &[(Cluster, Group)], want: &[String]) {
    for (c, _) in nodes {
        c.wait_for_ring(Duration::from_secs(10), |r| {
            r.members.len() == want.len() && want.iter().all(|m| r.members.contains(m))
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.advertise_addr()));
    }
}

fn addrs(nodes: &[(Cluster, Group)]) -> Vec<String> {
    nodes
        .iter()
        .map(|(c, _)| c.advertise_addr().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_graceful_restart_under_load_loses_no_set_value_and_fails_no_get() {
    let etcd = Etcd::start();
    let spec = etcd.membership("rolling-set", 2);
    let loads = Arc::new(AtomicU64::new(0));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(etcd_node(&spec, &loads, 1).await);
    }
    wait_ring(&nodes, &addrs(&nodes)).await;
    const KEYS: usize = 2000;
    for i in 0..KEYS {
        let k = format!("k{i}");
        nodes[i % 3]
            .1
            .set(k.as_bytes(), Bytes::from(format!("set-{k}")), None)
            .await
            .unwrap();
    }
    // Callers on every node read the written keys throughout; a wrong value means a set
    // value was lost (and reloaded), an error a failed get.
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut stops = Vec::new();
    let reader = |g: Group, stop: Arc<AtomicBool>, bad: Arc<Mutex<Vec<String>>>| {
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_micros(500));
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let k = format!("k{}", i % KEYS);
                i += 7;
                match g.get(k.as_bytes()).await {
                    Ok(v) if v == format!("set-{k}").as_bytes() => {}
                    other => bad.lock().push(format!("{k}: {other:?}")),
                }
            }
        })
    };
    for (_, g) in &nodes {
        let s = Arc::new(AtomicBool::new(false));
        reader(g.clone(), s.clone(), bad.clone());
        stops.push(s);
    }
    for i in 0..3 {
        let (old, _) = std::mem::replace(&mut nodes[i], etcd_node(&spec, &loads, 1).await);
        stops[i].store(true, Ordering::Relaxed);
        let leaving = old.get_group("g").unwrap();
        old.shutdown().await.unwrap();
        assert!(
            leaving.stats().handoff_sent > 0,
            "the leaver handed its entries off"
        );
        wait_ring(&nodes, &addrs(&nodes)).await;
        stops[i] = Arc::new(AtomicBool::new(false));
        reader(nodes[i].1.clone(), stops[i].clone(), bad.clone());
    }
    stop.store(true, Ordering::Relaxed);
    for s in &stops {
        s.store(true, Ordering::Relaxed);
    }
    // Every written value is still there, on every node.
    for (_, g) in &nodes {
        for i in 0..KEYS {
            let k = format!("k{i}");
            assert_eq!(g.get(k.as_bytes()).await.unwrap(), format!("set-{k}").as_bytes());
        }
    }
    assert!(
        bad.lock().is_empty(),
        "{} bad gets: {:?}",
        bad.lock().len(),
        &bad.lock()[..5.min(bad.lock().len())]
    );
    assert_eq!(loads.load(Ordering::SeqCst), 0, "no written value was reloaded");
    let sent: u64 = nodes.iter().map(|(_, g)| g.stats().handoff_received).sum();
    assert!(sent > 0, "entries were handed off");
    for (c, _) in nodes {
        c.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_out_under_a_zipf_load_of_cached_keys_causes_almost_no_loads() {
    let etcd = Etcd::start();
    let spec = etcd.membership("scale", 2);
    let loads = Arc::new(AtomicU64::new(0));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(etcd_node(&spec, &loads, 1).await);
    }
    wait_ring(&nodes, &addrs(&nodes)).await;
    const KEYS: usize = 5000;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("z{i}")).collect();
    // Cache every key (loaded once, by its owner).
    nodes[0].1.get_many(&keys).await.unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), KEYS as u64);
    let before = meshcache::ring::Ring::new(addrs(&nodes));
    // A fourth node joins while callers on every node read Zipf-distributed keys.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let zipf = Arc::new(zipf::Zipf::new(KEYS, 0.9));
    let read = |g: Group, seed: u64| {
        let (stop, failed, zipf) = (stop.clone(), failed.clone(), zipf.clone());
        tokio::spawn(async move {
            let mut rng = zipf::Rng::new(seed);
            while !stop.load(Ordering::Relaxed) {
                let k = format!("z{}", zipf.sample(&mut rng));
                if g.get(k.as_bytes()).await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for (i, (_, g)) in nodes.iter().enumerate() {
        read(g.clone(), i as u64);
    }
    let before_join = loads.load(Ordering::SeqCst);
    nodes.push(etcd_node(&spec, &loads, 1).await);
    read(nodes[3].1.clone(), 3);
    wait_ring(&nodes, &addrs(&nodes)).await;
    // Then every key once from every node: each moved key is asked of its new owner.
    for (_, g) in &nodes {
        g.get_many(&keys).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let after = meshcache::ring::Ring::new(addrs(&nodes));
    let moved = keys
        .iter()
        .filter(|k| before.owner(k.as_bytes()) != after.owner(k.as_bytes()))
        .count();
    let reloaded = loads.load(Ordering::SeqCst) - before_join;
    assert!(moved > KEYS / 8, "{moved} keys moved");
    assert!(
        (reloaded as usize) * 100 < moved,
        "{reloaded} loads for {moved} moved keys (target: under 1%)"
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(nodes[3].1.stats().warm_takeovers > 0);
    for (c, _) in nodes {
        c.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_issued_during_a_handoff_stays_deleted_on_every_node() {
    let etcd = Etcd::start();
    let spec = etcd.membership("delete-handoff", 2);
    let loads = Arc::new(AtomicU64::new(0));
    let a = etcd_node(&spec, &loads, 1).await;
    let b = etcd_node(&spec, &loads, 1).await;
    let nodes = [a, b];
    wait_ring(&nodes, &addrs(&nodes)).await;
    let [(a, ga), (b, gb)] = nodes;
    // Many keys owned by A, so that its handoff takes a while; delete some of them from B
    // while A leaves.
    let owned: Vec<String> = (0..)
        .map(|i| format!("d{i}"))
        .filter(|k| a.owner_of(k.as_bytes()) == a.advertise_addr())
        .take(20_000)
        .collect();
    for k in &owned {
        ga.set(k.as_bytes(), Bytes::from(format!("set-{k}")), None)
            .await
            .unwrap();
    }
    let doomed: Vec<&String> = owned.iter().step_by(100).collect();
    let leaving = tokio::spawn(async move { a.shutdown().await });
    let mut deleted = HashMap::new();
    for k in &doomed {
        gb.delete(k.as_bytes()).await.unwrap();
        deleted.insert(k.to_string(), ());
    }
    leaving.await.unwrap().unwrap();
    drop(ga);
    // B owns everything now: the deleted keys hold no written value (a get loads them
    // anew), every other key kept its written value.
    for k in &owned {
        let v = gb.get(k.as_bytes()).await.unwrap();
        if deleted.contains_key(k) {
            assert_eq!(
                v,
                format!("loaded-{k}").as_bytes(),
                "{k} came back after its delete"
            );
        } else {
            assert_eq!(v, format!("set-{k}").as_bytes(), "{k} lost its value");
        }
    }
    b.shutdown().await.unwrap();
}
