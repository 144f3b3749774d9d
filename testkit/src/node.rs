//! A meshcache node driven line by line over stdin/stdout, so that tests and the demo can
//! run a cluster as separate OS processes (and kill one of them).
//!
//! The parent spawns its own executable with `MESHCACHE_NODE=1`; the child binds
//! 127.0.0.1:0, prints `addr <host:port>`, and then answers one line per command:
//!
//! | command | answer |
//! |---|---|
//! | `peers a,b,c` | `ok` |
//! | `get <key>` | `ok <value>` or `err <KIND>` |
//! | `load <gets> <keys> <zipf_s> <tasks> <seed>` | `started` after 1% of the gets, then `done <gets> <failures> <ms>` |
//! | `stats` | `stats gets=.. hits=.. hot_hits=.. remote_fetches=.. loads=.. fallback_loads=.. remote_errors=.. accept_errors=.. replica_reads=.. warm_takeovers=..` |
//! | `loaded` | `loaded <key> <key> ...`: every key this node's loader was called for |
//! | `setn <n> <prefix>` | `setn <failures>`: sets `<prefix>-<i>` to `set-<prefix>-<i>`, i < n |
//! | `checkn <n> <prefix>` | `checkn <right> <wrong> <failed>`: gets those keys and compares |
//! | `members <n> <ms>` | `members <ms waited> <a,b,..>` once the ring has `n` members, or `err Timeout <a,b,..>` after `ms` |
//! | `quit` (or end of input) | `bye`, then the node shuts down |
//!
//! `MESHCACHE_LOAD_DELAY_MS` sets the simulated database's latency (default 1 ms);
//! `MESHCACHE_MEMBERSHIP` the node's membership (default static); `MESHCACHE_REPLICAS` its
//! group's replicas (default 1).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshcache::{Cluster, Loaded};
use parking_lot::Mutex;

use crate::zipf;

pub const ENV: &str = "MESHCACHE_NODE";

fn say(line: String) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// Runs the child side until `quit` or end of input.
pub fn child_main() {
    let delay = std::env::var("MESHCACHE_LOAD_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let cluster = Cluster::builder()
        .listen("127.0.0.1:0")
        .membership(std::env::var("MESHCACHE_MEMBERSHIP").unwrap_or_default())
        .peer_timeout(Duration::from_secs(2))
        .breaker(3, Duration::from_millis(200))
        .build()
        .expect("start node");
    let loaded: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let log = loaded.clone();
    let replicas = std::env::var("MESHCACHE_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let group = cluster
        .group("demo")
        .capacity(64 << 20)
        .replicas(replicas)
        .loader(move |key: Bytes| {
            log.lock().push(key.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let mut v = b"value-of-".to_vec();
                v.extend_from_slice(&key);
                Ok(Loaded::value(v))
            }
        })
        .build()
        .expect("group");
    // A test harness may have printed a partial line ("test child_node ... "): start afresh.
    say(format!("\naddr {}", cluster.local_addr()));
    let rt = cluster.runtime().clone();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match words.next() {
            Some("peers") => {
                let peers: Vec<String> = words.next().unwrap_or("").split(',').map(String::from).collect();
                cluster.set_peers(peers).expect("set_peers");
                say("ok".into());
            }
            Some("get") => {
                let key = words.next().unwrap_or("");
                match rt.block_on(group.get(key.as_bytes())) {
                    Ok(v) => say(format!("ok {}", String::from_utf8_lossy(&v))),
                    Err(e) => say(format!("err {}", e.kind())),
                }
            }
            Some("load") => {
                let mut n = || words.next().and_then(|w| w.parse::<f64>().ok()).unwrap_or(0.0);
                let (gets, keys, s, tasks, seed) =
                    (n() as u64, n() as usize, n(), n().max(1.0) as u64, n() as u64);
                let zipf = Arc::new(zipf::Zipf::new(keys.max(1), s));
                let done = Arc::new(AtomicU64::new(0));
                let failures = Arc::new(AtomicU64::new(0));
                let announced = Arc::new(AtomicBool::new(false));
                let start = Instant::now();
                rt.block_on(async {
                    let mut handles = Vec::new();
                    for t in 0..tasks {
                        let (group, zipf, done, failures, announced) = (
                            group.clone(),
                            zipf.clone(),
                            done.clone(),
                            failures.clone(),
                            announced.clone(),
                        );
                        handles.push(tokio::spawn(async move {
                            let mut rng = zipf::Rng::new(seed * 1000 + t);
                            for _ in 0..gets / tasks {
                                let k = zipf::key16(zipf::scatter(zipf.sample(&mut rng), zipf.cdf_len()));
                                if group.get(&k).await.is_err() {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                }
                                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                                if d >= gets / 100 && !announced.swap(true, Ordering::Relaxed) {
                                    say("started".into());
                                }
                            }
                        }));
                    }
                    for h in handles {
                        h.await.expect("load task");
                    }
                });
                say(format!(
                    "done {} {} {}",
                    done.load(Ordering::Relaxed),
                    failures.load(Ordering::Relaxed),
                    start.elapsed().as_millis()
                ));
            }
            Some("stats") => {
                let s = group.stats();
                let server = cluster.stats().server;
                say(format!(
                    "stats gets={} hits={} hot_hits={} remote_fetches={} loads={} fallback_loads={} remote_errors={} accept_errors={} replica_reads={} warm_takeovers={}",
                    s.gets,
                    s.hits,
                    s.hot_hits,
                    s.remote_fetches,
                    s.loads,
                    s.fallback_loads,
                    s.remote_errors,
                    server.accept_errors,
                    s.replica_reads,
                    s.warm_takeovers
                ));
            }
            Some("loaded") => {
                let keys = loaded.lock();
                let mut line = String::from("loaded");
                for k in keys.iter() {
                    line.push(' ');
                    line.push_str(&String::from_utf8_lossy(k));
                }
                say(line);
            }
            Some("setn") | Some("checkn") => {
                let set = line.starts_with("setn");
                let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                let prefix = words.next().unwrap_or("k").to_string();
                let (mut right, mut wrong, mut failed) = (0, 0, 0);
                rt.block_on(async {
                    for i in 0..n {
                        let key = format!("{prefix}-{i}");
                        let want = format!("set-{key}");
                        if set {
                            if group.set(key.as_bytes(), Bytes::from(want), None).await.is_err() {
                                failed += 1;
                            }
                            continue;
                        }
                        match group.get(key.as_bytes()).await {
                            Ok(v) if v == want.as_bytes() => right += 1,
                            Ok(_) => wrong += 1,
                            Err(_) => failed += 1,
                        }
                    }
                });
                if set {
                    say(format!("setn {failed}"));
                } else {
                    say(format!("checkn {right} {wrong} {failed}"));
                }
            }
            Some("members") => {
                let mut n = || words.next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
                let (want, ms) = (n() as usize, n());
                let start = Instant::now();
                let ring = rt
                    .block_on(cluster.wait_for_ring(Duration::from_millis(ms), |r| r.members.len() == want));
                match ring {
                    Ok(r) => say(format!(
                        "members {} {}",
                        start.elapsed().as_millis(),
                        r.members.join(",")
                    )),
                    Err(e) => say(format!("err {} {}", e.kind(), cluster.members().join(","))),
                }
            }
            Some("quit") => break,
            _ => say(format!("err unknown command {line:?}")),
        }
    }
    let _ = cluster.shutdown_blocking();
    say("bye".into());
}

/// The parent's handle on a child node.
#[derive(Debug)]
pub struct Node {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub addr: String,
}

impl Node {
    /// Spawns `exe args...` with [`ENV`] set and waits for its address.
    pub fn spawn(exe: &std::path::Path, args: &[&str], delay_ms: u64) -> Node {
        Self::spawn_with(Command::new(exe).args(args), delay_ms)
    }

    /// [`Node::spawn`] of a command already prepared (say, run under `prlimit`).
    pub fn spawn_with(command: &mut Command, delay_ms: u64) -> Node {
        let mut child = command
            .env(ENV, "1")
            .env("MESHCACHE_LOAD_DELAY_MS", delay_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut node = Node {
            child,
            stdin,
            stdout,
            addr: String::new(),
        };
        node.addr = node.expect("addr").to_string();
        node
    }

    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to node");
        self.stdin.flush().expect("flush");
    }

    /// Reads lines until one starts with `word`; returns the rest of it. A child that
    /// exits first fails the caller (its output ends), so this never waits forever on a
    /// dead node.
    pub fn expect(&mut self, word: &str) -> String {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read from node");
            assert!(n > 0, "node exited while we waited for {word:?}");
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix(word) {
                return rest.trim_start().to_string();
            }
        }
    }

    /// Sends `line` and returns the next line of output, whatever it says.
    pub fn ask(&mut self, line: &str) -> String {
        self.send(line);
        let mut out = String::new();
        while out.trim().is_empty() {
            out.clear();
            let n = self.stdout.read_line(&mut out).expect("read from node");
            assert!(n > 0, "node exited while we waited for an answer to {line:?}");
        }
        out.trim_end().to_string()
    }

    pub fn call(&mut self, line: &str, word: &str) -> String {
        self.send(line);
        self.expect(word)
    }

    /// `stats` as (name, value) pairs.
    pub fn stats(&mut self) -> std::collections::HashMap<String, u64> {
        self.call("stats", "stats")
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
            .collect()
    }

    pub fn quit(mut self) {
        self.send("quit");
        let _ = self.expect("bye");
        let _ = self.child.wait();
    }
}
