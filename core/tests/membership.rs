//! Membership that follows the deployment: nodes joined through a real etcd (Debian's
//! `etcd-server`, started by the testkit on loopback ports) and through a DNS server run
//! in the test. Every wait is on an event (a ring change, etcd's "ready" line) with a
//! bound; nothing sleeps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshcache::{Cluster, ErrorKind, Group, Loaded, RingStats};
use meshcache_testkit::dns::Dns;
use meshcache_testkit::etcd::Etcd;
use meshcache_testkit::node::{self, Node};
use parking_lot::Mutex;

/// The child side: this same test binary, re-run with `MESHCACHE_NODE=1`.
#[test]
fn child_node() {
    if std::env::var_os(node::ENV).is_some() {
        node::child_main();
    }
}

fn is_child() -> bool {
    std::env::var_os(node::ENV).is_some()
}

fn spawn_node(membership: &str) -> Node {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", "child_node", "--nocapture", "--test-threads=1"])
        .env("MESHCACHE_MEMBERSHIP", membership);
    Node::spawn_with(&mut cmd, 0)
}

/// Asks `node` to wait (up to `ms`) for a ring of `n` members; returns how long it took.
fn members(node: &mut Node, n: usize, ms: u64) -> u64 {
    let answer = node.ask(&format!("members {n} {ms}"));
    let rest = answer
        .strip_prefix("members ")
        .unwrap_or_else(|| panic!("{} never saw {n} members within {ms} ms: {answer}", node.addr));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn etcd_nodes_agree_a_joiner_is_seen_within_a_second_and_the_dead_leave() {
    if is_child() {
        return;
    }
    let etcd = Etcd::start();
    let spec = etcd.membership("agree", 2);
    let mut nodes: Vec<Node> = (0..3).map(|_| spawn_node(&spec)).collect();
    for n in &mut nodes {
        members(n, 3, 10_000);
    }
    // A fourth node joins: every ring includes it within a second.
    let joiner = spawn_node(&spec);
    for n in &mut nodes {
        members(n, 4, 1_000);
    }
    // SIGKILL: its lease (2 s) expires, and every ring drops it within the TTL plus a second.
    let mut joiner = joiner;
    joiner.child.kill().expect("SIGKILL");
    joiner.child.wait().expect("reap");
    for n in &mut nodes {
        members(n, 3, 3_000);
    }
    // A graceful shutdown revokes the lease: the others drop the node at once.
    let leaver = nodes.pop().unwrap();
    leaver.quit();
    for n in &mut nodes {
        let took = members(n, 2, 1_000);
        assert!(took < 1_000, "{took} ms");
    }
    for n in nodes {
        n.quit();
    }
}

/// A loader that counts its calls per key.
fn counting_group(c: &Cluster, loads: &Arc<Mutex<HashMap<Bytes, u32>>>) -> Group {
    let loads = loads.clone();
    c.group("g")
        .hot_sample(0)
        .loader(move |key: Bytes| {
            *loads.lock().entry(key.clone()).or_default() += 1;
            std::future::ready(Ok(Loaded::value(key)))
        })
        .build()
        .unwrap()
}

async fn etcd_node(spec: &str, loads: &Arc<Mutex<HashMap<Bytes, u32>>>) -> (Cluster, Group) {
    let c = Cluster::builder().membership(spec).start().await.unwrap();
    let g = counting_group(&c, loads);
    (c, g)
}

async fn ring_of(c: &Cluster, n: usize) -> RingStats {
    c.wait_for_ring(Duration::from_secs(10), |r| r.members.len() == n && r.healthy)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.advertise_addr()))
}

/// Gets of `keys` from `group` until `stop`, one per millisecond; counts gets and failures.
fn callers(
    group: Group,
    keys: u64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(1));
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            pace.tick().await;
            let key = format!("k{}", i % keys);
            i += 1;
            if let Err(e) = group.get(key.as_bytes()).await {
                failed.lock().push(format!("{key}: {e}"));
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_through_etcd_under_load_fails_no_get() {
    let etcd = Etcd::start();
    let spec = etcd.membership("rolling", 2);
    let loads = Arc::new(Mutex::new(HashMap::new()));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(etcd_node(&spec, &loads).await);
    }
    for (c, _) in &nodes {
        ring_of(c, 3).await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let mut stops: Vec<Arc<AtomicBool>> = Vec::new();
    for (_, g) in &nodes {
        let stop = Arc::new(AtomicBool::new(false));
        callers(g.clone(), 300, stop.clone(), done.clone(), failed.clone());
        stops.push(stop);
    }
    let mut epochs_seen = 0;
    // Every member set the rings pass through: a key's owner in each bounds its loads.
    let addrs = |nodes: &[(Cluster, Group)]| -> Vec<String> {
        nodes
            .iter()
            .map(|(c, _)| c.advertise_addr().to_string())
            .collect()
    };
    let mut states = vec![addrs(&nodes)];
    for i in 0..3 {
        // This node's own callers stop with it; every other node's go on throughout.
        stops[i].store(true, Ordering::Relaxed);
        let (old, _) = std::mem::replace(&mut nodes[i], etcd_node(&spec, &loads).await);
        let (gone, new) = (
            old.advertise_addr().to_string(),
            nodes[i].0.advertise_addr().to_string(),
        );
        let mut joined = addrs(&nodes);
        joined.push(gone.clone());
        states.push(joined);
        states.push(addrs(&nodes));
        old.shutdown().await.unwrap();
        for (c, _) in &nodes {
            let ring = c
                .wait_for_ring(Duration::from_secs(10), |r| {
                    r.members.len() == 3 && r.members.contains(&new) && !r.members.contains(&gone)
                })
                .await
                .unwrap();
            epochs_seen = epochs_seen.max(ring.epoch);
        }
        stops[i] = Arc::new(AtomicBool::new(false));
        callers(
            nodes[i].1.clone(),
            300,
            stops[i].clone(),
            done.clone(),
            failed.clone(),
        );
    }
    for s in &stops {
        s.store(true, Ordering::Relaxed);
    }
    assert!(done.load(Ordering::Relaxed) > 0);
    assert!(failed.lock().is_empty(), "failed gets: {:?}", &failed.lock()[..]);
    assert!(epochs_seen >= 3, "the rings changed: epoch {epochs_seen}");
    // A key whose owner never changed was loaded once; only keys that moved load again.
    let rings: Vec<meshcache::ring::Ring> = states
        .iter()
        .map(|s| meshcache::ring::Ring::new(s.clone()))
        .collect();
    let mut moved = 0;
    for (key, n) in loads.lock().iter() {
        let owners: std::collections::HashSet<&str> = rings.iter().filter_map(|r| r.owner(key)).collect();
        if owners.len() == 1 {
            assert_eq!(*n, 1, "{key:?} kept its owner but was loaded {n} times");
        } else {
            moved += 1;
        }
    }
    assert!(moved > 0, "the restarts moved keys");
    for (c, _) in nodes {
        c.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_away_nodes_keep_their_ring_serve_every_get_and_register_again() {
    let mut etcd = Etcd::start();
    let spec = etcd.membership("away", 2);
    let loads = Arc::new(Mutex::new(HashMap::new()));
    let (a, ga) = etcd_node(&spec, &loads).await;
    let (b, gb) = etcd_node(&spec, &loads).await;
    for c in [&a, &b] {
        ring_of(c, 2).await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    callers(ga.clone(), 500, stop.clone(), done.clone(), failed.clone());
    callers(gb.clone(), 500, stop.clone(), done.clone(), failed.clone());
    etcd.stop();
    for c in [&a, &b] {
        let ring = c
            .wait_for_ring(Duration::from_secs(10), |r| !r.healthy)
            .await
            .unwrap();
        assert_eq!(ring.members.len(), 2, "the last ring is kept");
        assert!(ring.error.as_deref().unwrap_or("").contains("etcd"), "{ring:?}");
    }
    // Away for 30 s (the callers' gets go on meanwhile), longer than the lease TTL.
    let away = Duration::from_secs(
        std::env::var("MESHCACHE_ETCD_AWAY_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    let before = done.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut watch = a.wait_for_ring(away, |r| r.members.len() != 2).await;
    assert_eq!(
        watch.as_ref().map_err(|e| e.kind()).unwrap_err(),
        ErrorKind::Timeout
    );
    assert!(start.elapsed() >= away);
    assert!(
        done.load(Ordering::Relaxed) > before,
        "gets went on while etcd was away"
    );
    etcd.restart();
    for c in [&a, &b] {
        watch = c
            .wait_for_ring(Duration::from_secs(15), |r| r.healthy && r.members.len() == 2)
            .await;
        watch.as_ref().unwrap();
    }
    // Registered again: a third node sees both.
    let (c3, _) = etcd_node(&spec, &loads).await;
    ring_of(&c3, 3).await;
    stop.store(true, Ordering::Relaxed);
    assert!(failed.lock().is_empty(), "failed gets: {:?}", &failed.lock()[..]);
    for c in [a, b, c3] {
        c.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_nodes_follow_the_records_of_a_name() {
    let ips: Vec<IpAddr> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let dns = Dns::start(ips.clone()).await;
    // Every node listens on the same port (DNS gives addresses, the option the port), on
    // three loopback addresses.
    let first = Cluster::builder().start().await.unwrap();
    let port = first.local_addr().port();
    first.shutdown().await.unwrap();
    let spec = format!(
        "dns://meshcache.test:{port}?interval=100ms&resolver={}",
        dns.addr()
    );
    let mut nodes = Vec::new();
    for ip in &ips {
        let c = Cluster::builder()
            .listen(format!("{ip}:{port}"))
            .membership(&spec)
            .start()
            .await
            .unwrap();
        nodes.push(c);
    }
    for c in &nodes {
        let ring = ring_of(c, 3).await;
        assert_eq!(ring.source, "dns");
    }
    // The records change: the rings follow.
    dns.set(ips[..2].to_vec());
    for c in &nodes[..2] {
        ring_of(c, 2).await;
    }
    // DNS away: the last ring is kept and the health says why.
    drop(dns);
    for c in &nodes[..2] {
        let ring = c
            .wait_for_ring(Duration::from_secs(10), |r| !r.healthy)
            .await
            .unwrap();
        assert_eq!(ring.members.len(), 2);
    }
    for c in nodes {
        c.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn options_that_cannot_work_together_are_refused() {
    let e = Cluster::builder()
        .membership("etcd://127.0.0.1:1/p")
        .peers(["127.0.0.1:2"])
        .build();
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidArgument);
    let e = Cluster::builder().membership("consul://x").build();
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidArgument);
    // A static cluster reports its ring; each change bumps the epoch.
    let c = Cluster::builder().start().await.unwrap();
    let before = c.stats().ring;
    assert_eq!(
        (before.source.as_str(), before.healthy, before.members.len()),
        ("static", true, 1)
    );
    c.set_peers([c.advertise_addr().to_string(), "127.0.0.1:9".into()])
        .unwrap();
    let after = c.stats().ring;
    assert_eq!(after.epoch, before.epoch + 1);
    assert!(after.changed_at_ms >= before.changed_at_ms);
    // A wait in progress ends with Closed when the node shuts down.
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.wait_for_members(5, Duration::from_secs(60)).await })
    };
    c.shutdown().await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_node_refuses_set_peers_and_starts_alone_when_etcd_is_unreachable() {
    // Nothing listens on port 1: the node starts (after its first-ring wait), alone and
    // unhealthy, and keeps trying.
    let c = Cluster::builder()
        .membership("etcd://127.0.0.1:1/nowhere")
        .start()
        .await
        .unwrap();
    let ring = c.stats().ring;
    assert_eq!(
        (ring.source.as_str(), ring.healthy, ring.members.len()),
        ("etcd", false, 1)
    );
    let e = c.set_peers(["127.0.0.1:2"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let g = c
        .group("g")
        .loader(|k: Bytes| async move { Ok(Loaded::value(k)) })
        .build()
        .unwrap();
    assert_eq!(g.get(b"k").await.unwrap(), Bytes::from_static(b"k"));
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_mutual_tls_and_a_node_without_it_is_refused() {
    let dir = std::env::temp_dir().join(format!("meshcache-etcd-tls-{}", std::process::id()));
    let certs = meshcache_testkit::certs::write(&dir);
    let etcd = Etcd::start_tls(certs.ca.clone(), certs.cert.clone(), certs.key.clone());
    let tls = format!(
        "etcd://{}/tls?lease_ttl=2&ca={}&cert={}&key={}&server_name=localhost",
        etcd.endpoint(),
        certs.ca.display(),
        certs.cert.display(),
        certs.key.display()
    );
    let a = Cluster::builder().membership(&tls).start().await.unwrap();
    let b = Cluster::builder().membership(&tls).start().await.unwrap();
    for c in [&a, &b] {
        ring_of(c, 2).await;
    }
    // Plaintext to a TLS-only etcd, or TLS without a client certificate: never joins, and
    // says so in its stats.
    let without_cert = format!(
        "etcd://{}/tls?lease_ttl=2&ca={}",
        etcd.endpoint(),
        certs.ca.display()
    );
    for spec in [etcd.membership("tls", 2), without_cert] {
        let stranger = Cluster::builder().membership(&spec).start().await.unwrap();
        let ring = stranger.stats().ring;
        assert!(!ring.healthy && ring.members.len() == 1, "{ring:?}");
        assert_eq!(a.members().len(), 2);
        stranger.shutdown().await.unwrap();
    }
    for c in [a, b] {
        c.shutdown().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_auth_takes_a_user_and_refuses_a_wrong_password() {
    let etcd = Etcd::start();
    let mut admin = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    let _ = admin.role_add("root").await;
    admin.user_add("root", "rootpw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let dir = std::env::temp_dir().join(format!("meshcache-etcd-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("password");
    std::fs::write(&pw, "rootpw\n").unwrap();
    let by_file = format!(
        "etcd://{}/auth?lease_ttl=2&user=root&password_file={}",
        etcd.endpoint(),
        pw.display()
    );
    let inline = format!("etcd://root:rootpw@{}/auth?lease_ttl=2", etcd.endpoint());
    let a = Cluster::builder().membership(&by_file).start().await.unwrap();
    let b = Cluster::builder().membership(&inline).start().await.unwrap();
    for c in [&a, &b] {
        ring_of(c, 2).await;
    }
    let wrong = format!("etcd://root:nope@{}/auth?lease_ttl=2", etcd.endpoint());
    let stranger = Cluster::builder().membership(&wrong).start().await.unwrap();
    let ring = stranger.stats().ring;
    assert!(!ring.healthy && ring.members.len() == 1, "{ring:?}");
    assert!(
        !ring.error.unwrap_or_default().contains("nope"),
        "no password in errors"
    );
    for c in [a, b, stranger] {
        c.shutdown().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(dir);
}
