//! `make demo`: a 3-node meshcache cluster on loopback, as 3 processes, in front of a
//! slow simulated database (1 ms per load). Each node drives a Zipf workload through its
//! own group; every miss anywhere is loaded once in the whole cluster, by the key's owner.
//!
//! Prints per node: gets, local hits, hot hits, remote fetches, loads; then the total
//! loads, which equal the number of distinct keys loaded.
//!
//! `--gets N` (per node, default 200000), `--keys N` (default 50000), `--nodes N` (3).

use std::collections::HashSet;

use meshcache_testkit::http::arg;
use meshcache_testkit::node;

fn main() {
    if std::env::var_os(node::ENV).is_some() {
        node::child_main();
        return;
    }
    let (gets, keys, n) = (
        arg("--gets", 200_000),
        arg("--keys", 50_000),
        arg("--nodes", 3) as usize,
    );
    let exe = std::env::current_exe().expect("own executable");
    let mut nodes: Vec<node::Node> = (0..n).map(|_| node::Node::spawn(&exe, &[], 1)).collect();
    let peers = nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",");
    println!("meshcache demo: {n} nodes on loopback ({peers})");
    println!(
        "each node: {gets} gets over {keys} keys (Zipf 0.9), 32 concurrent callers; database: 1 ms per load\n"
    );
    for node in &mut nodes {
        node.call(&format!("peers {peers}"), "ok");
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        node.send(&format!("load {gets} {keys} 0.9 32 {}", i + 1));
    }
    let mut elapsed = Vec::new();
    for node in &mut nodes {
        let done = node.expect("done");
        let f: Vec<u64> = done.split_whitespace().map(|w| w.parse().unwrap_or(0)).collect();
        assert_eq!(f[1], 0, "failed gets");
        elapsed.push(f[2]);
    }
    println!(
        "{:<22} {:>9} {:>11} {:>9} {:>14} {:>7} {:>10}",
        "node", "gets", "local hits", "hot hits", "remote fetches", "loads", "gets/s"
    );
    let (mut total_loads, mut distinct) = (0u64, HashSet::new());
    for (i, node) in nodes.iter_mut().enumerate() {
        let s = node.stats();
        println!(
            "{:<22} {:>9} {:>11} {:>9} {:>14} {:>7} {:>10.0}",
            node.addr,
            s["gets"],
            s["hits"],
            s["hot_hits"],
            s["remote_fetches"],
            s["loads"],
            gets as f64 / (elapsed[i].max(1) as f64 / 1000.0)
        );
        total_loads += s["loads"];
        for k in node.call("loaded", "loaded").split_whitespace() {
            distinct.insert(k.to_string());
        }
    }
    println!(
        "\ntotal loads: {total_loads}; distinct keys loaded: {}",
        distinct.len()
    );
    if total_loads == distinct.len() as u64 {
        println!("every key was loaded once in the whole cluster");
    } else {
        println!("some keys were loaded more than once");
    }
    for node in nodes {
        node.quit();
    }
    if total_loads != distinct.len() as u64 {
        std::process::exit(1);
    }
}
