//! Remote get on loopback, three ways, in one run:
//!
//! - **meshcache**: node A gets keys that node B owns (`hot_sample(0)`, so every get is a
//!   gRPC round trip to B; B answers from its store);
//! - **raw TCP**: a tokio request/response server of the same payload (length-prefixed
//!   key in, length-prefixed value out) — the floor any protocol pays;
//! - **bare gRPC**: the same `Get` through a plain tonic client, without meshcache's
//!   layers (flight, coalescing, breaker) — what the transport alone costs;
//! - **redis-server** GET through `redis-benchmark` (no pipelining), if installed.
//!
//! For 100-byte and 10 KiB values: p50/p99 latency of sequential gets (1 caller), and
//! throughput with 16 and 50 concurrent callers. Contenders alternate over several
//! rounds; medians are printed, with the ratios the targets in BENCHMARKS.md refer to.
//!
//! `cargo run --release -p meshcache-bench --bin remote -- [--rounds 3] [--secs 2]`

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshcache::{Cluster, Group};
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

fn main() {
    let rounds = arg("--rounds", 3) as usize;
    let secs = arg("--secs", 2) as f64;
    println!(
        "remote get on loopback: meshcache vs raw TCP vs redis-server; {rounds} rounds of {secs} s, medians"
    );
    let redis = start_redis();
    if redis.is_none() {
        println!("(redis-server/redis-benchmark not found: apt-get install redis-server redis-tools)");
    }
    println!(
        "\n{:>7} {:<10} {:>9} {:>9} {:>12} {:>12}",
        "value", "contender", "p50 µs", "p99 µs", "ops/s c=16", "ops/s c=50"
    );
    for size in [100usize, 10 * 1024] {
        let value = Bytes::from(vec![b'x'; size]);
        let b = Cluster::builder().worker_threads(1).build().expect("node b");
        // Caller A is embedded in the application's runtime, which also runs the raw TCP
        // client; owner B has its own one-thread runtime, as another process would.
        let client_rt = runtime(1);
        let a = Cluster::builder()
            .runtime(client_rt.handle().clone())
            .peers([b.advertise_addr().to_string()])
            .build()
            .expect("a");
        let gb = b.group("bench").capacity(256 << 20).build().expect("group b");
        let ga = a
            .group("bench")
            .capacity(256 << 20)
            .hot_sample(0)
            .build()
            .expect("group a");
        let keys: Vec<Bytes> = (0..)
            .map(|i| format!("key:{i:012}"))
            .filter(|k| a.owner_of(k.as_bytes()) == b.advertise_addr())
            .take(KEYS)
            .map(Bytes::from)
            .collect();
        for k in &keys {
            b.runtime()
                .block_on(gb.set(k, value.clone(), None))
                .expect("preload");
        }
        let mesh: Arc<dyn Contender> = Arc::new(Mesh {
            group: ga.clone(),
            keys: keys.clone(),
        });

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

        let mut results: Vec<Vec<Sample>> = vec![Vec::new(), Vec::new(), Vec::new()];
        let mut redis_runs: Vec<(f64, f64, f64)> = Vec::new();
        for _ in 0..rounds {
            results[0].push(measure(&client_rt, mesh.clone(), secs));
            results[1].push(measure(&client_rt, raw.clone(), secs));
            results[2].push(measure(&client_rt, bare.clone(), secs));
            if let Some(r) = &redis {
                let n = (results[0].last().map_or(50_000.0, |s| s.ops16) * secs) as usize;
                let c1 = redis_get(r.port, size, 1, (n / 4).max(10_000));
                let c16 = redis_get(r.port, size, 16, n.max(20_000));
                let c50 = redis_get(r.port, size, 50, n.max(20_000));
                if let (Some(c1), Some(c16), Some(c50)) = (c1, c16, c50) {
                    redis_runs.push((c1.1, c16.0, c50.0));
                }
            }
        }
        let med = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
        let names = ["meshcache", "raw TCP", "bare gRPC"];
        for (i, name) in names.iter().enumerate() {
            println!(
                "{:>7} {:<10} {:>9.1} {:>9.1} {:>12.0} {:>12.0}",
                size,
                name,
                med(&results[i], |s| s.p50_us),
                med(&results[i], |s| s.p99_us),
                med(&results[i], |s| s.ops16),
                med(&results[i], |s| s.ops50)
            );
        }
        let (mut r16, mut r50) = (0.0, 0.0);
        if !redis_runs.is_empty() {
            let p50 = median(redis_runs.iter().map(|r| r.0).collect());
            r16 = median(redis_runs.iter().map(|r| r.1).collect());
            r50 = median(redis_runs.iter().map(|r| r.2).collect());
            println!(
                "{:>7} {:<10} {:>9.1} {:>9} {:>12.0} {:>12.0}",
                size, "redis GET", p50, "-", r16, r50
            );
        }
        let mp50 = med(&results[0], |s| s.p50_us);
        let tp50 = med(&results[1], |s| s.p50_us);
        print!(
            "{:>7} ratios: meshcache p50 / raw TCP p50 = {:.2} (target <= 2)",
            size,
            mp50 / tp50
        );
        if r16 > 0.0 {
            print!(
                "; meshcache / redis throughput c=16 {:.2}, c=50 {:.2} (target >= 1)",
                med(&results[0], |s| s.ops16) / r16,
                med(&results[0], |s| s.ops50) / r50
            );
        }
        println!();
        let st = ga.stats();
        assert_eq!(st.loads, 0, "the caller must not have loaded anything");
        client_rt.block_on(a.shutdown()).expect("shutdown a");
        b.shutdown_blocking().expect("shutdown b");
        drop((server_rt, client_rt));
    }
}
