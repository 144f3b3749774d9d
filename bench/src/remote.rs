//! Remote get on loopback, six ways, in one run:
//!
//! - **meshcache**: node A gets keys that node B owns (`hot_sample(0)`, so every get is a
//!   round trip to B over the native framing; B answers from its store);
//! - **meshcache gRPC**: the same through a node built with `PeerProtocol::Grpc`;
//! - **groupcache**: golang/groupcache's remote get (`bench/groupcache`, a Go program
//!   built and run by this bench in every round), if `go` is installed;
//! - **raw TCP**: a tokio request/response server of the same payload (length-prefixed
//!   key in, length-prefixed value out) — the floor any protocol pays;
//! - **bare gRPC**: the same `Get` through a plain tonic client, without meshcache's
//!   layers (flight, coalescing, breaker) — what the transport alone costs;
//! - **redis-server** GET through `redis-benchmark` (no pipelining), if installed.
//!
//! For 100-byte and 10 KiB values: p50/p99 latency of sequential gets (1 caller), and
//! throughput with 1, 16 and 50 concurrent callers. Contenders alternate over several
//! rounds; medians are printed, with the ratios the targets in BENCHMARKS.md refer to.
//!
//! `cargo run --release -p meshcache-bench --bin remote -- [--rounds 3] [--secs 2]`

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshcache::{Cluster, Group, PeerProtocol};
use meshcache_testkit::http::arg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Keys each concurrent caller cycles through; callers never share one, so no get joins
/// another's flight.
const PER_CALLER: usize = 200;
const KEYS: usize = 50 * PER_CALLER;

fn runtime(threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

/// What one contender measured in one round.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    p50_us: f64,
    p99_us: f64,
    ops1: f64,
    ops16: f64,
    ops50: f64,
}

trait Contender: Send + Sync {
    fn get(&self, i: usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send + '_>>;
}

struct Mesh {
    group: Group,
    keys: Vec<Bytes>,
}

impl Contender for Mesh {
    fn get(&self, i: usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send + '_>> {
        Box::pin(async move {
            self.group
                .get(&self.keys[i % KEYS])
                .await
                .expect("remote get")
                .len()
        })
    }
}

/// The bare gRPC call (`PeerClient::get` on one tonic channel) without meshcache's
/// layers (flight, coalescing, breaker): what the transport alone costs.
struct BareGrpc {
    client: meshcache::peer::pb::peer_client::PeerClient<tonic::transport::Channel>,
    keys: Vec<Bytes>,
}

impl Contender for BareGrpc {
    fn get(&self, i: usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send + '_>> {
        Box::pin(async move {
            let req = meshcache::peer::pb::GetRequest {
                group: "bench".into(),
                key: self.keys[i % KEYS].clone(),
                forwarded: true,
                peek: false,
            };
            self.client
                .clone()
                .get(req)
                .await
                .expect("bare get")
                .into_inner()
                .value
                .len()
        })
    }
}

/// A pool of raw TCP connections, one per caller.
struct RawTcp {
    conns: Vec<tokio::sync::Mutex<TcpStream>>,
    keys: Vec<Bytes>,
}

impl Contender for RawTcp {
    fn get(&self, i: usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send + '_>> {
        Box::pin(async move {
            let key = &self.keys[i % KEYS];
            let mut conn = self.conns[i / PER_CALLER % self.conns.len()].lock().await;
            let mut req = Vec::with_capacity(4 + key.len());
            req.extend_from_slice(&(key.len() as u32).to_le_bytes());
            req.extend_from_slice(key);
            conn.write_all(&req).await.expect("write");
            let mut len = [0u8; 4];
            conn.read_exact(&mut len).await.expect("read len");
            let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
            conn.read_exact(&mut buf).await.expect("read value");
            buf.len()
        })
    }
}

async fn raw_server(listener: TcpListener, value: Bytes) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let _ = s.set_nodelay(true);
        let value = value.clone();
        tokio::spawn(async move {
            let mut len = [0u8; 4];
            let mut key = vec![0u8; 64];
            loop {
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let n = u32::from_le_bytes(len) as usize;
                key.resize(n, 0);
                if s.read_exact(&mut key).await.is_err() {
                    return;
                }
                let mut out = Vec::with_capacity(4 + value.len());
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(&value);
                if s.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Sequential latency, then throughput at 16 and 50 callers.
fn measure(rt: &Runtime, c: Arc<dyn Contender>, secs: f64) -> Sample {
    // The sequential caller is a task on the runtime, as an application's request
    // handler would be (and as the throughput callers are), for every contender alike.
    let caller = c.clone();
    let mut lat = rt
        .block_on(rt.spawn(async move {
            let mut lat = Vec::with_capacity(20_000);
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut i = 0;
            while Instant::now() < end {
                let t = Instant::now();
                caller.get(i).await;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                i += 1;
            }
            lat
        }))
        .expect("latency task");
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let ops = |callers: usize| {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = (0..callers)
                .map(|caller| {
                    let (c, done, stop) = (c.clone(), done.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut j = 0;
                        while !stop.load(Ordering::Relaxed) {
                            c.get(caller * PER_CALLER + (j % PER_CALLER)).await;
                            j += 1;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                t.await.expect("caller");
            }
            done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
        })
    };
    Sample {
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        ops1: ops(1),
        ops16: ops(16),
        ops50: ops(50),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

struct Redis {
    server: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn start_redis() -> Option<Redis> {
    let port = free_port();
    let server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis { server, port };
    // Ready when it answers PING (bounded).
    for _ in 0..500 {
        let ok = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "ping"])
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"PONG"));
        if ok {
            return Some(redis);
        }
        std::thread::yield_now();
    }
    None
}

/// golang/groupcache's bench (`bench/groupcache`), built into `target/`; `None`
/// without Go.
fn build_groupcache() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("target/groupcache-bench");
    let built = Command::new("go")
        .args(["-C", "bench/groupcache", "build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&root)
        .status()
        .is_ok_and(|s| s.success());
    built.then_some(out)
}

/// One round of the groupcache bench for values of `size` bytes.
fn groupcache(bin: &std::path::Path, size: usize, secs: f64) -> Option<Sample> {
    let out = Command::new(bin)
        .args(["--size", &size.to_string(), "--secs", &secs.to_string()])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let f = |x: &serde_json::Value| x.as_f64().unwrap_or(0.0);
    Some(Sample {
        p50_us: f(&v["p50_us"]),
        p99_us: f(&v["p99_us"]),
        ops1: f(&v["ops"]["1"]),
        ops16: f(&v["ops"]["16"]),
        ops50: f(&v["ops"]["50"]),
    })
}

/// redis-benchmark GET: (rps, p50 µs) at `clients`.
fn redis_get(port: u16, size: usize, clients: usize, requests: usize) -> Option<(f64, f64)> {
    let p = port.to_string();
    let d = size.to_string();
    let c = clients.to_string();
    let n = requests.to_string();
    Command::new("redis-benchmark")
        .args([
            "-p", &p, "-t", "set", "-d", &d, "-r", "10000", "-n", "20000", "-q",
        ])
        .output()
        .ok()?;
    let out = Command::new("redis-benchmark")
        .args([
            "-p", &p, "-t", "get", "-d", &d, "-r", "10000", "-c", &c, "-n", &n, "--csv",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("\"GET\""))?;
    let f: Vec<f64> = line
        .split(',')
        .skip(1)
        .map(|v| v.trim_matches('"').parse().unwrap_or(0.0))
        .collect();
    // "rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
    Some((f[0], f.get(3).copied().unwrap_or(0.0) * 1000.0))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

const CONTENDERS: [&str; 6] = [
    "meshcache",
    "mesh gRPC",
    "raw TCP",
    "bare gRPC",
    "groupcache",
    "redis GET",
];
const MESH: usize = 0;
const RAW: usize = 2;
const GROUPCACHE: usize = 4;
const REDIS: usize = 5;

/// The targets of issue 15, as (what, measured ratio, target, higher is better).
fn targets(med: &dyn Fn(usize, fn(&Sample) -> f64) -> f64) -> Vec<(String, f64, f64, bool)> {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let mut t = vec![
        (
            "p50 / raw TCP p50".to_string(),
            ratio(med(MESH, |s| s.p50_us), med(RAW, |s| s.p50_us)),
            1.5,
            false,
        ),
        (
            "p99 / raw TCP p99".to_string(),
            ratio(med(MESH, |s| s.p99_us), med(RAW, |s| s.p99_us)),
            3.0,
            false,
        ),
    ];
    for (callers, f, target) in [
        (1, (|s: &Sample| s.ops1) as fn(&Sample) -> f64, 1.0),
        (16, |s: &Sample| s.ops16, 1.5),
        (50, |s: &Sample| s.ops50, 2.0),
    ] {
        t.push((
            format!("throughput / redis GET, {callers} callers"),
            ratio(med(MESH, f), med(REDIS, f)),
            target,
            true,
        ));
    }
    t.push((
        "p50 / groupcache p50".to_string(),
        ratio(med(MESH, |s| s.p50_us), med(GROUPCACHE, |s| s.p50_us)),
        0.5,
        false,
    ));
    t
}

/// A node that calls its peers over `protocol`, on the application's runtime.
fn caller(rt: &Runtime, owner: &Cluster, protocol: PeerProtocol) -> (Cluster, Group) {
    let c = Cluster::builder()
        .runtime(rt.handle().clone())
        .peers([owner.advertise_addr().to_string()])
        .peer_protocol(protocol)
        .build()
        .expect("caller node");
    let g = c
        .group("bench")
        .capacity(256 << 20)
        .hot_sample(0)
        .build()
        .expect("caller group");
    (c, g)
}

fn main() {
    let rounds = arg("--rounds", 3) as usize;
    let secs = arg("--secs", 2) as f64;
    // `--profile meshcache|grpc|raw|bare`: only that contender's sequential gets of
    // 100-byte values, so `perf stat` can count per get (see BENCHMARKS.md).
    let profile = std::env::args().skip_while(|a| a != "--profile").nth(1).map(|p| {
        ["meshcache", "grpc", "raw", "bare"]
            .iter()
            .position(|n| *n == p)
            .expect("--profile meshcache|grpc|raw|bare")
    });
    println!(
        "remote get on loopback: meshcache (native framing, and gRPC) vs raw TCP, bare gRPC, \
         golang/groupcache and redis-server; {rounds} interleaved rounds of {secs} s, medians"
    );
    let redis = profile.is_none().then(start_redis).flatten();
    if redis.is_none() {
        println!("(redis-server/redis-benchmark not found: apt-get install redis-server redis-tools)");
    }
    let gc = profile.is_none().then(build_groupcache).flatten();
    if gc.is_none() {
        println!("(go not found or bench/groupcache failed to build: groupcache is left out)");
    }
    println!(
        "\n{:>7} {:<11} {:>8} {:>8} {:>11} {:>11} {:>11}",
        "value", "contender", "p50 µs", "p99 µs", "ops/s c=1", "ops/s c=16", "ops/s c=50"
    );
    let mut summary = Vec::new();
    let sizes: &[usize] = if profile.is_some() {
        &[100]
    } else {
        &[100, 10 * 1024]
    };
    for &size in sizes {
        let value = Bytes::from(vec![b'x'; size]);
        let b = Cluster::builder().worker_threads(1).build().expect("node b");
        // The callers are embedded in the application's runtime, which also runs the raw
        // TCP and bare gRPC clients; owner B has its own one-thread runtime, as another
        // process would.
        let client_rt = runtime(1);
        let (a, ga) = caller(&client_rt, &b, PeerProtocol::Native);
        let (a2, ga2) = caller(&client_rt, &b, PeerProtocol::Grpc);
        let gb = b.group("bench").capacity(256 << 20).build().expect("group b");
        let keys: Vec<Bytes> = (0..)
            .map(|i| format!("key:{i:012}"))
            .filter(|k| {
                a.owner_of(k.as_bytes()) == b.advertise_addr()
                    && a2.owner_of(k.as_bytes()) == b.advertise_addr()
            })
            .take(KEYS)
            .map(Bytes::from)
            .collect();
        for k in &keys {
            b.runtime()
                .block_on(gb.set(k, value.clone(), None))
                .expect("preload");
        }
        let mesh = |group: &Group| -> Arc<dyn Contender> {
            Arc::new(Mesh {
                group: group.clone(),
                keys: keys.clone(),
            })
        };

        let server_rt = runtime(1);
        let listener = server_rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        server_rt.spawn(raw_server(listener, value.clone()));
        let conns = client_rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..50 {
                let s = TcpStream::connect(addr).await.expect("connect");
                s.set_nodelay(true).expect("nodelay");
                v.push(tokio::sync::Mutex::new(s));
            }
            v
        });
        let bare: Arc<dyn Contender> = client_rt.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", b.advertise_addr()))
                .expect("endpoint")
                .tcp_nodelay(true)
                .connect()
                .await
                .expect("connect");
            Arc::new(BareGrpc {
                client: meshcache::peer::pb::peer_client::PeerClient::new(channel),
                keys: keys.clone(),
            }) as Arc<dyn Contender>
        });
        let raw: Arc<dyn Contender> = Arc::new(RawTcp {
            conns,
            keys: keys.clone(),
        });
        let ours: [Arc<dyn Contender>; 4] = [mesh(&ga), mesh(&ga2), raw, bare];

        if let Some(i) = profile {
            // One contender's sequential gets alone, for `perf stat` around this process.
            let c = ours[i].clone();
            let n = client_rt
                .block_on(client_rt.spawn(async move {
                    let end = Instant::now() + Duration::from_secs_f64(secs);
                    let mut n = 0;
                    while Instant::now() < end {
                        c.get(n).await;
                        n += 1;
                    }
                    n
                }))
                .expect("profile task");
            println!("{} {size} B: {n} sequential gets in {secs} s", CONTENDERS[i]);
            return;
        }
        let mut results: Vec<Vec<Sample>> = vec![Vec::new(); CONTENDERS.len()];
        for round in 0..rounds {
            // Interleaved, the order rotating every round.
            for i in 0..ours.len() {
                let i = (i + round) % ours.len();
                results[i].push(measure(&client_rt, ours[i].clone(), secs));
            }
            if let Some(bin) = &gc
                && let Some(sample) = groupcache(bin, size, secs)
            {
                results[GROUPCACHE].push(sample);
            }
            if let Some(r) = &redis {
                let n = (results[MESH].last().map_or(50_000.0, |s| s.ops16) * secs) as usize;
                let c1 = redis_get(r.port, size, 1, (n / 4).max(10_000));
                let c16 = redis_get(r.port, size, 16, n.max(20_000));
                let c50 = redis_get(r.port, size, 50, n.max(20_000));
                if let (Some(c1), Some(c16), Some(c50)) = (c1, c16, c50) {
                    results[REDIS].push(Sample {
                        p50_us: c1.1,
                        p99_us: f64::NAN,
                        ops1: c1.0,
                        ops16: c16.0,
                        ops50: c50.0,
                    });
                }
            }
        }
        let med = |i: usize, f: fn(&Sample) -> f64| median(results[i].iter().map(f).collect());
        for (i, name) in CONTENDERS.iter().enumerate() {
            if results[i].is_empty() {
                continue;
            }
            println!(
                "{:>7} {:<11} {:>8.1} {:>8.1} {:>11.0} {:>11.0} {:>11.0}",
                size,
                name,
                med(i, |s| s.p50_us),
                med(i, |s| s.p99_us),
                med(i, |s| s.ops1),
                med(i, |s| s.ops16),
                med(i, |s| s.ops50)
            );
        }
        for (what, ratio, target, higher) in targets(&med) {
            summary.push((size, what, ratio, target, higher));
        }
        let st = ga.stats();
        assert_eq!(
            st.loads + ga2.stats().loads,
            0,
            "the callers must not have loaded anything"
        );
        client_rt.block_on(a.shutdown()).expect("shutdown a");
        client_rt.block_on(a2.shutdown()).expect("shutdown a2");
        b.shutdown_blocking().expect("shutdown b");
        drop((server_rt, client_rt));
    }
    println!("\nmeshcache remote get against the targets (ratios of the medians above):");
    for (size, what, ratio, target, higher) in summary {
        let met = if ratio.is_nan() {
            "not measured"
        } else if (higher && ratio >= target) || (!higher && ratio <= target) {
            "met"
        } else {
            "MISSED"
        };
        let op = if higher { ">=" } else { "<=" };
        println!("{size:>7} B  {what:<36} {ratio:>6.2}x  (target {op} {target}x)  {met}");
    }
}
