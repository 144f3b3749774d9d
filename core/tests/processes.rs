//! A cluster of separate OS processes: one is killed with SIGKILL under load, and the
//! others must not fail a single get.

use meshcache_testkit::node::{self, Node};

/// The child side: this same test binary, re-run with `MESHCACHE_NODE=1`.
#[test]
fn child_node() {
    if std::env::var_os(node::ENV).is_some() {
        node::child_main();
    }
}

fn spawn_cluster(n: usize, delay_ms: u64) -> Vec<Node> {
    let exe = std::env::current_exe().expect("test binary");
    let mut nodes: Vec<Node> = (0..n)
        .map(|_| {
            Node::spawn(
                &exe,
                &["--exact", "child_node", "--nocapture", "--test-threads=1"],
                delay_ms,
            )
        })
        .collect();
    let peers = nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",");
    for n in &mut nodes {
        assert_eq!(n.call(&format!("peers {peers}"), "ok"), "");
    }
    nodes
}

#[test]
fn sigkill_of_a_node_under_load_fails_no_get_elsewhere() {
    if std::env::var_os(node::ENV).is_some() {
        return;
    }
    let mut nodes = spawn_cluster(3, 1);
    // Load on nodes 0 and 1 (60k gets over 20k keys each); kill node 2 once both are
    // under way.
    for (i, n) in nodes.iter_mut().take(2).enumerate() {
        n.send(&format!("load 60000 20000 0.9 32 {}", i + 1));
    }
    for n in nodes.iter_mut().take(2) {
        n.expect("started");
    }
    let mut victim = nodes.pop().unwrap();
    victim.child.kill().expect("SIGKILL");
    victim.child.wait().expect("reap");
    for n in nodes.iter_mut() {
        let done = n.expect("done");
        let f: Vec<u64> = done.split_whitespace().map(|w| w.parse().unwrap()).collect();
        assert_eq!(f[0], 60000, "gets done");
        assert_eq!(f[1], 0, "failed gets after a SIGKILL: {done}");
    }
    let stats = nodes[0].stats();
    assert!(stats["remote_fetches"] > 0, "{stats:?}");
    for n in nodes {
        n.quit();
    }
}

#[test]
fn each_key_is_loaded_once_across_processes() {
    if std::env::var_os(node::ENV).is_some() {
        return;
    }
    let mut nodes = spawn_cluster(3, 1);
    for (i, n) in nodes.iter_mut().enumerate() {
        n.send(&format!("load 20000 5000 0.9 16 {}", i + 1));
    }
    for n in nodes.iter_mut() {
        let done = n.expect("done");
        assert!(done.split_whitespace().nth(1) == Some("0"), "failures: {done}");
    }
    let mut total = 0;
    let mut distinct = std::collections::HashSet::new();
    for n in nodes.iter_mut() {
        let keys = n.call("loaded", "loaded");
        for k in keys.split_whitespace() {
            total += 1;
            distinct.insert(k.to_string());
        }
    }
    assert_eq!(total, distinct.len(), "some key was loaded by more than one node");
    for n in nodes {
        n.quit();
    }
}
