//! Criterion benches of the store against moka, quick_cache (default shards and 256
//! shards) and an unlocked hashbrown map, 16-byte keys and 100-byte `Bytes` values:
//!
//! - get-hit, 100k resident keys, Zipf 0.99 and uniform, 1 and 2 threads;
//! - mixed 80% get / 20% set, Zipf 0.99, 1 and 2 threads;
//! - get, insert on miss, 2M keys, capacity 100k entries, Zipf 0.9, 1 and 2 threads.
//!
//! ```text
//! cargo bench -p meshcache --bench store
//! ```
//!
//! One criterion iteration is one operation on every thread (`Throughput::Elements` is the
//! thread count); multi-threaded bodies use `iter_custom` with a barrier. After each group
//! the bench prints meshcache's ratio to every peer from the time criterion measured.
//! Criterion runs contenders one after another, so on a noisy machine prefer
//! `examples/throughput.rs`, which interleaves them; `BENCHMARKS.md` quotes that.

use std::cell::RefCell;
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use meshcache_testkit::contenders::{self, Contender, Mode, Workload};

/// Operations and time measured per contender, for the ratio printed after each group.
#[derive(Default)]
struct Tally(RefCell<Vec<(&'static str, f64, f64)>>);

impl Tally {
    fn add(&self, name: &'static str, ops: f64, secs: f64) {
        let mut v = self.0.borrow_mut();
        match v.iter_mut().find(|e| e.0 == name) {
            Some(e) => {
                e.1 += ops;
                e.2 += secs;
            }
            None => v.push((name, ops, secs)),
        }
    }

    fn print(&self, group: &str) {
        let v = self.0.borrow();
        let Some(&(_, ops, secs)) = v.iter().find(|e| e.0 == "meshcache_store") else {
            return;
        };
        let mine = ops / secs;
        println!("{group}: meshcache_store {:.2} Mops/s", mine / 1e6);
        for &(name, ops, secs) in v.iter().filter(|e| e.0 != "meshcache_store") {
            println!(
                "  vs {name:<22} {:.2} Mops/s  ratio {:.2}x",
                ops / secs / 1e6,
                mine / (ops / secs)
            );
        }
    }
}

fn run<C: Contender>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    tally: &Tally,
    name: &'static str,
    w: &Workload,
    c: &C,
) {
    let threads = w.threads();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let t = w.measure_iters(c, iters);
            tally.add(name, (iters * threads as u64) as f64, t.as_secs_f64());
            t
        })
    });
}

fn workload_group(cr: &mut Criterion, w: &Workload) {
    let n = w.capacity;
    let v = contenders::VALUE_LEN;
    let tally = Tally::default();
    let mut g = cr.benchmark_group(w.name.clone());
    g.throughput(Throughput::Elements(w.threads() as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));

    let store = contenders::meshcache_store(n, v);
    w.populate(&store);
    run(&mut g, &tally, "meshcache_store", w, &store);
    drop(store);
    if w.mode != Mode::GetOrInsert {
        let group = contenders::meshcache_group(n, v);
        w.populate(&group);
        run(&mut g, &tally, "meshcache_group_peek", w, &group);
    }
    let moka = contenders::moka(n);
    w.populate(&moka);
    moka.run_pending_tasks();
    run(&mut g, &tally, "moka_sync", w, &moka);
    drop(moka);
    let quick = contenders::quick(n);
    w.populate(&quick);
    run(&mut g, &tally, "quick_cache_default", w, &quick);
    drop(quick);
    let quick = contenders::quick_sharded(n, 256);
    w.populate(&quick);
    run(&mut g, &tally, "quick_cache_256_shards", w, &quick);
    drop(quick);
    if w.mode == Mode::GetHit && w.threads() == 1 {
        let map = contenders::filled_map(w);
        run(&mut g, &tally, "hashbrown_unlocked", w, &map);
    }
    g.finish();
    tally.print(&w.name);
}

fn benches(c: &mut Criterion) {
    for threads in [1, 2] {
        for (dist, s) in [("zipf0.99", 0.99), ("uniform", 0.0)] {
            let name = format!("get_hit/{dist}/{threads}t");
            workload_group(
                c,
                &Workload::new(&name, Mode::GetHit, 100_000, 200_000, s, 0, threads),
            );
        }
    }
    for threads in [1, 2] {
        let name = format!("mixed_80_20/zipf0.99/{threads}t");
        workload_group(
            c,
            &Workload::new(&name, Mode::Mixed, 100_000, 200_000, 0.99, 20, threads),
        );
    }
    for threads in [1, 2] {
        let name = format!("get_insert_on_miss/2M_keys_cap100k_zipf0.9/{threads}t");
        workload_group(
            c,
            &Workload::new(&name, Mode::GetOrInsert, 2_000_000, 100_000, 0.9, 0, threads),
        );
    }
}

criterion_group!(store, benches);
criterion_main!(store);
