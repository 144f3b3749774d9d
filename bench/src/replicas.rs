//! What replicas cost a `set`, and how long a graceful leave takes to hand off its entries.
//!
//! `cargo run --release -p meshcache-bench --bin replicas -- [--sets N] [--leave-entries N]`
//!
//! 1. Three nodes in this process (static membership, loopback gRPC), one group with
//!    `replicas` 1, 2 and 3 in turn (interleaved, 3 rounds): `set` of 100-byte values from
//!    one node, one caller (latency: p50, p99) and 16 callers (throughput). Keys are spread
//!    over the ring, so a set goes to owners that are remote and local alike.
//! 2. Three nodes joined through a real etcd (Debian's `etcd-server`): one node holding
//!    the given number of entries (written with `set`) shuts down gracefully; the time
//!    from `shutdown()` to its return (lease revoked, handoff streamed, peers quiet, server
//!    stopped), and how many entries the others received.

use std::time::{Duration, Instant};

use bytes::Bytes;
use meshcache::{Cluster, Group, Loaded};
use meshcache_testkit::etcd::Etcd;
use meshcache_testkit::http::arg;

async fn group(c: &Cluster, replicas: usize) -> Group {
    c.group("bench")
        .capacity(256 << 20)
        .replicas(replicas)
        .loader(|k: Bytes| async move { Ok(Loaded::value(k)) })
        .build()
        .expect("group")
}

/// Three nodes with the same static list; the groups of node 0 first.
async fn static_nodes(replicas: usize) -> (Vec<Cluster>, Vec<Group>) {
    let mut clusters = Vec::new();
    for _ in 0..3 {
        clusters.push(Cluster::builder().start().await.expect("node"));
    }
    let addrs: Vec<String> = clusters.iter().map(|c| c.advertise_addr().to_string()).collect();
    let mut groups = Vec::new();
    for c in &clusters {
        c.set_peers(addrs.clone()).expect("peers");
        groups.push(group(c, replicas).await);
    }
    (clusters, groups)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// (p50, p99, sets per second at 16 callers).
async fn measure(replicas: usize, sets: usize, round: usize) -> (Duration, Duration, f64) {
    let (clusters, groups) = static_nodes(replicas).await;
    let g = groups[0].clone();
    let value = Bytes::from(vec![7u8; 100]);
    let mut lat = Vec::with_capacity(sets);
    for i in 0..sets {
        let k = format!("r{round}-one-{i}");
        let t = Instant::now();
        g.set(k.as_bytes(), value.clone(), None).await.expect("set");
        lat.push(t.elapsed());
    }
    lat.sort();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (g, value) = (g.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..sets / 16 {
                let k = format!("r{round}-many-{t}-{i}");
                g.set(k.as_bytes(), value.clone(), None).await.expect("set");
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
    let rate = (sets / 16 * 16) as f64 / start.elapsed().as_secs_f64();
    for c in clusters {
        c.shutdown().await.expect("shutdown");
    }
    (percentile(&lat, 0.5), percentile(&lat, 0.99), rate)
}

async fn graceful_leave(entries: usize) -> (Duration, u64, u64) {
    let etcd = Etcd::start();
    let spec = etcd.membership("leave", 10);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let c = Cluster::builder().membership(&spec).start().await.expect("node");
        let g = group(&c, 1).await;
        nodes.push((c, g));
    }
    for (c, _) in &nodes {
        c.wait_for_members(3, Duration::from_secs(10))
            .await
            .expect("ring");
    }
    let (leaver, lg) = nodes.remove(0);
    let value = Bytes::from(vec![7u8; 100]);
    let mut held = 0;
    let mut i = 0u64;
    while held < entries {
        let k = format!("leave-{i}");
        i += 1;
        if leaver.owner_of(k.as_bytes()) == leaver.advertise_addr() {
            lg.set(k.as_bytes(), value.clone(), None).await.expect("set");
            held += 1;
        }
    }
    let start = Instant::now();
    leaver.shutdown().await.expect("shutdown");
    let took = start.elapsed();
    let received: u64 = nodes.iter().map(|(_, g)| g.stats().handoff_received).sum();
    let sent = lg.stats().handoff_sent;
    for (c, _) in nodes {
        c.shutdown().await.expect("shutdown");
    }
    (took, sent, received)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sets = arg("--sets", 20_000) as usize;
    let leave_entries = arg("--leave-entries", 100_000) as usize;
    let mut results: Vec<Vec<(Duration, Duration, f64)>> = vec![Vec::new(); 3];
    for round in 0..3 {
        for replicas in 1..=3 {
            results[replicas - 1].push(measure(replicas, sets, round).await);
        }
    }
    println!("set of 100 B from one of 3 nodes (loopback gRPC), {sets} sets per measure, median of 3 rounds");
    println!(
        "{:<9} {:>10} {:>10} {:>14} {:>12}",
        "replicas", "p50 µs", "p99 µs", "sets/s (16)", "vs 1 replica"
    );
    let median = |v: &Vec<(Duration, Duration, f64)>, f: &dyn Fn(&(Duration, Duration, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let base = median(&results[0], &|r| r.2);
    for (i, r) in results.iter().enumerate() {
        let p50 = median(r, &|r| r.0.as_secs_f64() * 1e6);
        let p99 = median(r, &|r| r.1.as_secs_f64() * 1e6);
        let rate = median(r, &|r| r.2);
        println!(
            "{:<9} {p50:>10.1} {p99:>10.1} {rate:>14.0} {:>11.2}x",
            i + 1,
            rate / base
        );
    }
    let (took, sent, received) = graceful_leave(leave_entries).await;
    println!(
        "graceful leave of a node holding {leave_entries} entries (etcd, 3 nodes): {:.0} ms; handed off {sent}, kept by the new owners {received}",
        took.as_secs_f64() * 1e3
    );
}
