//! Throughput of meshcache's store against moka, quick_cache and an unlocked hashbrown map,
//! with the contenders interleaved in one process over several rounds (this machine is
//! noisy; a criterion run measures one contender after the other, so a burst of load
//! elsewhere lands on one of them). Prints the median Mops/s per contender and
//! meshcache's ratio to each peer. `BENCHMARKS.md` quotes this program.
//!
//! ```text
//! cargo run --release -p meshcache --example throughput -- [--rounds N] [--ms N] [--only NAME]
//! ```

use std::time::Duration;

use meshcache_testkit::contenders::{self, Contender, Mode, Workload};

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == "--help" {
            println!("usage: throughput [--rounds N (7)] [--ms N (250)] [--only WORKLOAD-SUBSTRING]");
            std::process::exit(0);
        }
        if a == name {
            return args.next();
        }
    }
    None
}

/// A contender by name, built for one workload.
enum Cache {
    Store(meshcache::store::Store),
    Group(meshcache::Group),
    Moka(contenders::Moka),
    Quick(contenders::Quick),
    Quick256(contenders::Quick),
    Map(contenders::Map),
}

impl Cache {
    fn name(&self) -> &'static str {
        match self {
            Cache::Store(_) => "meshcache Store",
            Cache::Group(_) => "meshcache Group::peek",
            Cache::Moka(_) => "moka::sync",
            Cache::Quick(_) => "quick_cache (default shards)",
            Cache::Quick256(_) => "quick_cache (256 shards)",
            Cache::Map(_) => "hashbrown (unlocked)",
        }
    }

    fn dyn_ref(&self) -> &dyn Contender {
        match self {
            Cache::Store(c) => c,
            Cache::Group(c) => c,
            Cache::Moka(c) => c,
            Cache::Quick(c) | Cache::Quick256(c) => c,
            Cache::Map(c) => c,
        }
    }

    /// Monomorphised per contender so no virtual call sits in the timed loop.
    fn measure(&self, w: &Workload, dur: Duration) -> f64 {
        match self {
            Cache::Store(c) => w.measure_for(c, dur),
            Cache::Group(c) => w.measure_for(c, dur),
            Cache::Moka(c) => w.measure_for(c, dur),
            Cache::Quick(c) | Cache::Quick256(c) => w.measure_for(c, dur),
            Cache::Map(c) => w.measure_for(c, dur),
        }
    }

    fn settle(&self) {
        if let Cache::Moka(m) = self {
            m.run_pending_tasks();
        }
    }
}

fn contenders(w: &Workload) -> Vec<Cache> {
    let n = w.capacity;
    let v = contenders::VALUE_LEN;
    let mut out = vec![
        Cache::Store(contenders::meshcache_store(n, v)),
        Cache::Group(contenders::meshcache_group(n, v)),
        Cache::Moka(contenders::moka(n)),
        Cache::Quick(contenders::quick(n)),
        Cache::Quick256(contenders::quick_sharded(n, 256)),
    ];
    if w.mode == Mode::GetHit && w.threads() == 1 {
        out.push(Cache::Map(contenders::filled_map(w)));
    }
    if w.mode == Mode::GetOrInsert {
        // The Group adds nothing on this path but a counter; keep the run short.
        out.retain(|c| !matches!(c, Cache::Group(_)));
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let rounds: usize = arg("--rounds").and_then(|v| v.parse().ok()).unwrap_or(7);
    let ms: u64 = arg("--ms").and_then(|v| v.parse().ok()).unwrap_or(250);
    let only = arg("--only");
    let dur = Duration::from_millis(ms);

    println!(
        "# throughput: {rounds} interleaved rounds of {ms} ms per contender; median Mops/s (min..max)\n\
         # 16-byte keys, 100-byte Bytes values; ratio = meshcache Store / peer"
    );
    let mut specs: Vec<(String, Mode, usize, usize, f64, u64)> = Vec::new();
    for threads in [1, 2] {
        for (dist, s) in [("zipf 0.99", 0.99), ("uniform", 0.0)] {
            // 100k resident keys; room for all of them (twice over, so no eviction).
            specs.push((
                format!("get-hit {dist}, {threads}T"),
                Mode::GetHit,
                100_000,
                200_000,
                s,
                threads as u64,
            ));
        }
    }
    for threads in [1, 2] {
        specs.push((
            format!("mixed 80/20 zipf 0.99, {threads}T"),
            Mode::Mixed,
            100_000,
            200_000,
            0.99,
            threads as u64,
        ));
    }
    for threads in [1, 2] {
        specs.push((
            format!("get+insert-on-miss 2M keys cap 100k zipf 0.9, {threads}T"),
            Mode::GetOrInsert,
            2_000_000,
            100_000,
            0.9,
            threads as u64,
        ));
    }

    for (name, mode, keys, cap, s, threads) in specs {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let w = Workload::new(&name, mode, keys, cap, s, 20, threads as usize);
        let caches = contenders(&w);
        for c in caches.iter().filter(|c| !matches!(c, Cache::Map(_))) {
            w.populate(c.dyn_ref());
            c.settle();
        }
        let mut results: Vec<Vec<f64>> = vec![Vec::new(); caches.len()];
        for r in 0..rounds {
            // Rotate the order each round so no contender always runs first or last.
            for k in 0..caches.len() {
                let i = (k + r) % caches.len();
                results[i].push(caches[i].measure(&w, dur) / 1e6);
                caches[i].settle();
            }
        }
        println!("\n## {name}");
        let medians: Vec<f64> = results.iter_mut().map(|v| median(v)).collect();
        for (i, c) in caches.iter().enumerate() {
            let (lo, hi) = results[i]
                .iter()
                .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
            let extra = if mode == Mode::GetOrInsert {
                format!("  hit ratio {:.3}", w.hit_ratio(c.dyn_ref(), 200_000))
            } else {
                String::new()
            };
            let ratio = if i == 0 {
                "      ".to_string()
            } else {
                format!("{:5.2}x", medians[0] / medians[i])
            };
            println!(
                "{:<30} {:8.2} Mops/s ({:6.2}..{:6.2})  Store/this {ratio}{extra}",
                c.name(),
                medians[i],
                lo,
                hi
            );
        }
        if let Some(i) = caches.iter().position(|c| matches!(c, Cache::Map(_))) {
            println!(
                "meshcache Store time per get / hashbrown time per get: {:.2}x",
                medians[i] / medians[0]
            );
        }
    }
}
