//! How fast rings follow etcd: from a node's death (SIGKILL) and from its graceful leave
//! to every other ring dropping it, and from a join to the first get the new node serves.
//!
//! `cargo run --release -p meshcache-bench --bin membership -- [--rounds N] [--lease-ttl S]`
//!
//! A real etcd (Debian's `etcd-server`) on loopback; two observer nodes in this process;
//! the node that joins, leaves and dies is a child process (this binary, re-run as a
//! testkit node). Prints one line per measure: median, min and max over the rounds.

use std::time::{Duration, Instant};

use meshcache::{Cluster, Group, Loaded};
use meshcache_testkit::etcd::Etcd;
use meshcache_testkit::http::arg;
use meshcache_testkit::node::{self, Node};

fn spawn(membership: &str) -> (Node, Instant) {
    let start = Instant::now();
    let exe = std::env::current_exe().expect("own binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.env("MESHCACHE_MEMBERSHIP", membership);
    (Node::spawn_with(&mut cmd, 0), start)
}

/// Waits until every observer's ring has (or lacks) `addr`; returns when the last did.
async fn all_see(observers: &[(Cluster, Group)], addr: &str, present: bool) -> Instant {
    for (c, _) in observers {
        c.wait_for_ring(Duration::from_secs(60), |r| {
            r.members.iter().any(|m| m == addr) == present
        })
        .await
        .expect("ring change");
    }
    Instant::now()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(what: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{what:<46} median {:>8.1} ms   min {:>8.1}   max {:>8.1}   ({} rounds)",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.len()
    );
}

fn main() {
    // The child node blocks on its own runtime: it must not run inside this one.
    if std::env::var_os(node::ENV).is_some() {
        node::child_main();
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench());
}

async fn bench() {
    let rounds = arg("--rounds", 5) as usize;
    let ttl = arg("--lease-ttl", 2);
    let etcd = Etcd::start();
    let spec = etcd.membership("bench", ttl);
    let mut observers = Vec::new();
    for _ in 0..2 {
        let c = Cluster::builder()
            .membership(&spec)
            .start()
            .await
            .expect("observer");
        let g = c
            .group("demo")
            .hot_sample(0)
            .loader(|k: bytes::Bytes| async move { Ok(Loaded::value(k)) })
            .build()
            .expect("group");
        observers.push((c, g));
    }
    observers[0]
        .0
        .wait_for_members(2, Duration::from_secs(10))
        .await
        .expect("observers joined");
    let (mut join_spawn, mut join_reg, mut death, mut leave) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds * 2 {
        let (child, spawned) = spawn(&spec);
        let registered = Instant::now();
        let addr = child.addr.clone();
        all_see(&observers, &addr, true).await;
        let (c, g) = &observers[0];
        let key = (0..)
            .map(|i| format!("k{round}-{i}"))
            .find(|k| c.owner_of(k.as_bytes()) == addr)
            .expect("a key the new node owns");
        g.get(key.as_bytes()).await.expect("get served by the new node");
        let served = Instant::now();
        join_spawn.push(ms(served - spawned));
        join_reg.push(ms(served - registered));
        // Half the rounds kill the node, half let it leave.
        let mut child = child;
        let gone = Instant::now();
        if round % 2 == 0 {
            child.child.kill().expect("SIGKILL");
            let _ = child.child.wait();
            death.push(ms(all_see(&observers, &addr, false).await - gone));
        } else {
            let waiting = all_see(&observers, &addr, false);
            child.send("quit");
            leave.push(ms(waiting.await - gone));
            let _ = child.child.wait();
        }
    }
    println!("etcd membership, lease_ttl {ttl} s, 2 observers in-process, 1 node as a child process");
    report("join (process spawn) -> first get it serves", join_spawn);
    report("join (registered) -> first get it serves", join_reg);
    report("SIGKILL -> every ring dropped it", death);
    report("graceful leave -> every ring dropped it", leave);
    for (c, _) in observers {
        c.shutdown().await.expect("shutdown");
    }
}
