//! Hit ratio of meshcache's store against a plain LRU, moka (W-TinyLFU), quick_cache and
//! the Belady optimum, on synthetic traces. Every request is a get, and a miss inserts the
//! key (a read-through cache); every request counts, cold misses included (as
//! `libcachesim` counts them). All entries are the same size, so a byte budget is an
//! entry count.
//!
//! ```text
//! cargo run --release -p meshcache --example hit_ratio -- [--only NAME] [--write-traces DIR]
//! ```
//!
//! `--write-traces DIR` also writes each trace as `DIR/<name>.txt` (one key id per line,
//! libcachesim's plain-text format) and `DIR/traces.tsv` (name and cache size in entries),
//! for `bench/libcachesim_check.py`.
//!
//! moka applies its admission policy and evictions in batches ("pending tasks"); left to
//! itself it may drop recorded reads when its buffers fill, and it holds more than its
//! capacity between batches. The simulation calls `run_pending_tasks` after every
//! `MOKA_SYNC_EVERY` requests so that moka sees every access and stays within its bound.

use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::Bytes;
use meshcache::store::{Store, StoreConfig, Tier};
use meshcache_testkit::zipf::{Rng, Zipf, key16, scatter};

const MOKA_SYNC_EVERY: usize = 16;
const VALUE_LEN: usize = 16;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == "--help" {
            println!("usage: hit_ratio [--only TRACE-SUBSTRING] [--write-traces DIR]");
            std::process::exit(0);
        }
        if a == name {
            return args.next();
        }
    }
    None
}

/// One trace: key ids, and the cache size in entries.
struct Trace {
    name: String,
    keys: Vec<u32>,
    cache: usize,
}

fn zipf_trace(n: usize, s: f64, len: usize, seed: u64) -> Vec<u32> {
    let z = Zipf::new(n, s);
    let mut rng = Rng::new(seed);
    (0..len).map(|_| scatter(z.sample(&mut rng), n) as u32).collect()
}

fn traces() -> Vec<Trace> {
    const N: usize = 1_000_000;
    const LEN: usize = 4_000_000;
    let mut out = Vec::new();
    for (s, pct) in [(0.8, 1), (0.8, 10), (0.9, 1), (0.99, 1), (0.99, 10)] {
        out.push(Trace {
            name: format!("zipf{s}-cache{pct}pct"),
            keys: zipf_trace(N, s, LEN, 7),
            cache: N * pct / 100,
        });
    }
    // Zipf 0.9 with the cache at 10%, and after every 500k requests a one-pass scan of
    // 100k keys never seen before (as large as the cache).
    let base = zipf_trace(N, 0.9, LEN, 11);
    let mut keys = Vec::with_capacity(LEN + LEN / 5);
    let mut fresh = N as u32;
    for chunk in base.chunks(500_000) {
        keys.extend_from_slice(chunk);
        keys.extend(fresh..fresh + 100_000);
        fresh += 100_000;
    }
    out.push(Trace {
        name: "zipf0.9-scans-cache10pct".into(),
        keys,
        cache: N / 10,
    });
    // A loop over 11k keys with a 10k-entry cache: LRU and FIFO never hit.
    out.push(Trace {
        name: "loop11k-cache10k".into(),
        keys: (0..100).flat_map(|_| 0..11_000u32).collect(),
        cache: 10_000,
    });
    out
}

/// Belady's MIN with bypass: on a miss with a full cache, the resident key (or the new
/// one) whose next use is furthest away goes. The optimum hit ratio for equal sizes.
fn belady(keys: &[u32], cache: usize) -> f64 {
    let mut next = vec![u32::MAX; keys.len()];
    let mut last: HashMap<u32, u32> = HashMap::new();
    for (i, &k) in keys.iter().enumerate().rev() {
        if let Some(&j) = last.get(&k) {
            next[i] = j;
        }
        last.insert(k, i as u32);
    }
    // key -> its next use while resident; heap of (next use, key), stale entries skipped.
    let mut resident: HashMap<u32, u32> = HashMap::with_capacity(cache);
    let mut heap: BinaryHeap<(u32, u32)> = BinaryHeap::with_capacity(cache * 2);
    let mut hits = 0u64;
    for (i, &k) in keys.iter().enumerate() {
        let nu = next[i];
        if let Some(slot) = resident.get_mut(&k) {
            hits += 1;
            *slot = nu;
            heap.push((nu, k));
            continue;
        }
        if nu == u32::MAX {
            continue; // never used again: bypass
        }
        if resident.len() >= cache {
            // Evict the furthest next use, unless the newcomer's is further still.
            loop {
                let &(far, victim) = heap.peek().expect("non-empty");
                if resident.get(&victim) != Some(&far) {
                    heap.pop();
                    continue;
                }
                if far > nu {
                    heap.pop();
                    resident.remove(&victim);
                }
                break;
            }
            if resident.len() >= cache {
                continue; // bypassed
            }
        }
        resident.insert(k, nu);
        heap.push((nu, k));
    }
    hits as f64 / keys.len() as f64
}

fn lru(keys: &[u32], cache: usize) -> f64 {
    let mut c = lru::LruCache::new(NonZeroUsize::new(cache).expect("cache > 0"));
    let mut hits = 0u64;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.put(k, ());
        }
    }
    hits as f64 / keys.len() as f64
}

fn moka(keys: &[u32], cache: usize) -> f64 {
    let c: moka::sync::Cache<u32, ()> = moka::sync::Cache::new(cache as u64);
    let mut hits = 0u64;
    for (i, &k) in keys.iter().enumerate() {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, ());
        }
        if i % MOKA_SYNC_EVERY == MOKA_SYNC_EVERY - 1 {
            c.run_pending_tasks();
        }
    }
    hits as f64 / keys.len() as f64
}

fn quick(keys: &[u32], cache: usize) -> f64 {
    let c: quick_cache::sync::Cache<u32, ()> = quick_cache::sync::Cache::new(cache);
    let mut hits = 0u64;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, ());
        }
    }
    hits as f64 / keys.len() as f64
}

fn meshcache(keys: &[u32], cache: usize, shards: usize) -> f64 {
    let clock = Arc::new(meshcache::SystemClock);
    let probe = Store::new(StoreConfig::new(1 << 30), clock.clone());
    let value = Bytes::from_static(&[0u8; VALUE_LEN]);
    probe.insert(
        Tier::Main,
        Bytes::copy_from_slice(&key16(0)),
        Some(value.clone()),
        0,
    );
    let charge = probe.used_bytes();
    let mut cfg = StoreConfig::new(cache * charge);
    cfg.shards = shards;
    let s = Store::new(cfg, clock);
    let mut hits = 0u64;
    for &k in keys {
        let key = key16(k as usize);
        if s.get(&key).is_some() {
            hits += 1;
        } else {
            s.insert(Tier::Main, Bytes::copy_from_slice(&key), Some(value.clone()), 0);
        }
    }
    hits as f64 / keys.len() as f64
}

fn main() {
    let only = arg("--only");
    let write_dir = arg("--write-traces");
    let traces: Vec<Trace> = traces()
        .into_iter()
        .filter(|t| only.as_deref().is_none_or(|o| t.name.contains(o)))
        .collect();
    if let Some(dir) = &write_dir {
        std::fs::create_dir_all(dir).expect("create trace dir");
        let mut index = std::fs::File::create(format!("{dir}/traces.tsv")).expect("index");
        for t in &traces {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(format!("{dir}/{}.txt", t.name)).expect("trace file"),
            );
            for k in &t.keys {
                writeln!(f, "{}", k + 1).expect("write"); // libcachesim treats id 0 as empty
            }
            writeln!(index, "{}\t{}", t.name, t.cache).expect("write");
        }
    }

    println!("# hit ratio (%), every request counted; a miss inserts the key");
    println!(
        "| trace | requests | cache | Belady | LRU | moka (W-TinyLFU) | quick_cache | meshcache 1 shard | meshcache default shards | mesh - best(moka, qc) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in &traces {
        let opt = belady(&t.keys, t.cache);
        let l = lru(&t.keys, t.cache);
        let m = moka(&t.keys, t.cache);
        let q = quick(&t.keys, t.cache);
        let m1 = meshcache(&t.keys, t.cache, 1);
        let md = meshcache(&t.keys, t.cache, 0);
        let pct = |x: f64| format!("{:.2}", x * 100.0);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:+.2} |",
            t.name,
            t.keys.len(),
            t.cache,
            pct(opt),
            pct(l),
            pct(m),
            pct(q),
            pct(m1),
            pct(md),
            (m1.min(md) - m.max(q)) * 100.0
        );
        for (name, x) in [
            ("LRU", l),
            ("moka", m),
            ("quick_cache", q),
            ("meshcache", m1),
            ("meshcache", md),
        ] {
            if x > opt + 1e-9 {
                println!("!! {name} beat Belady on {}: {x} > {opt}", t.name);
            }
        }
        std::io::stdout().flush().ok();
    }
}
