//! The caches the throughput bench and example race against each other, behind one small
//! trait, and the workloads they run (feature `contenders`). Used by core's
//! `benches/store.rs` and `examples/throughput.rs`.
//!
//! Every contender stores `bytes::Bytes` keys and values and returns an owned `Bytes` on a
//! hit (a refcount clone), so they all do the same work per operation.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshcache::Group;
use meshcache::store::{Store, StoreConfig, Tier};

use crate::zipf::{Rng, Zipf, key16, scatter};

/// A cache under test.
pub trait Contender: Sync {
    fn get(&self, key: &[u8]) -> Option<Bytes>;
    fn set(&self, key: &[u8], value: Bytes);
}

impl Contender for Store {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        Store::get(self, key).and_then(|h| h.value)
    }
    fn set(&self, key: &[u8], value: Bytes) {
        self.insert(Tier::Main, Bytes::copy_from_slice(key), Some(value), 0);
    }
}

/// `Group::peek` (the bindings' fast path) for reads; the store underneath for writes is
/// reached through `Group::set`, which is async but never awaits, so a no-op waker drives
/// it.
impl Contender for Group {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.peek(key).ok().flatten()
    }
    fn set(&self, key: &[u8], value: Bytes) {
        let fut = Group::set(self, key, value, None);
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r.expect("set"),
            std::task::Poll::Pending => panic!("Group::set is expected to complete without waiting"),
        }
    }
}

pub type Moka = moka::sync::Cache<Bytes, Bytes>;

impl Contender for Moka {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        moka::sync::Cache::get(self, key)
    }
    fn set(&self, key: &[u8], value: Bytes) {
        self.insert(Bytes::copy_from_slice(key), value);
    }
}

pub type Quick = quick_cache::sync::Cache<Bytes, Bytes>;

impl Contender for Quick {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        quick_cache::sync::Cache::get(self, key)
    }
    fn set(&self, key: &[u8], value: Bytes) {
        self.insert(Bytes::copy_from_slice(key), value);
    }
}

/// The unlocked baseline: a plain `hashbrown` map, read-only (1 thread, get-hit only).
pub type Map = hashbrown::HashMap<Bytes, Bytes, foldhash::fast::RandomState>;

impl Contender for Map {
    #[inline]
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        hashbrown::HashMap::get(self, key).cloned()
    }
    fn set(&self, _key: &[u8], _value: Bytes) {
        unreachable!("the hashbrown baseline is read-only")
    }
}

/// A store with default sharding holding about `entries` entries of a 16-byte key and a
/// `value_len`-byte value. The per-entry charge is measured, not assumed.
pub fn meshcache_store(entries: usize, value_len: usize) -> Store {
    Store::new(
        StoreConfig::new(entries * entry_charge(value_len)),
        Arc::new(meshcache::SystemClock),
    )
}

/// A group whose store holds about `entries` such entries.
pub fn meshcache_group(entries: usize, value_len: usize) -> Group {
    Group::builder("bench")
        .capacity(entries * entry_charge(value_len))
        .build()
        .expect("group")
}

/// Bytes a store charges for one entry with a 16-byte key and a `value_len`-byte value.
pub fn entry_charge(value_len: usize) -> usize {
    let s = Store::new(StoreConfig::new(1 << 30), Arc::new(meshcache::SystemClock));
    s.insert(
        Tier::Main,
        Bytes::copy_from_slice(&key16(0)),
        Some(Bytes::from(vec![0u8; value_len])),
        0,
    );
    s.used_bytes()
}

pub fn moka(entries: usize) -> Moka {
    Moka::new(entries as u64)
}

pub fn quick(entries: usize) -> Quick {
    Quick::new(entries)
}

pub fn quick_sharded(entries: usize, shards: usize) -> Quick {
    let opts = quick_cache::OptionsBuilder::new()
        .estimated_items_capacity(entries)
        .weight_capacity(entries as u64)
        .shards(shards)
        .build()
        .expect("quick_cache options");
    Quick::with_options(
        opts,
        quick_cache::UnitWeighter,
        quick_cache::DefaultHashBuilder::default(),
        quick_cache::sync::DefaultLifecycle::default(),
    )
}

/// The baseline map holding every key of `w`.
pub fn filled_map(w: &Workload) -> Map {
    let mut m = Map::with_capacity_and_hasher(w.keys.len(), Default::default());
    for k in &w.keys {
        m.insert(Bytes::copy_from_slice(k), w.fresh_value());
    }
    // Clone each value once so every later clone is a plain refcount bump, as in the caches.
    for v in m.values() {
        black_box(v.clone());
    }
    m
}

pub const VALUE_LEN: usize = 100;

/// What each operation of a workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every op is a get of a resident key.
    GetHit,
    /// Ops whose trace entry has the top bit set are sets, the rest gets.
    Mixed,
    /// A get, and on a miss an insert of a fresh value (a read-through cache).
    GetOrInsert,
}

const SET_BIT: u32 = 1 << 31;

/// A workload: the key set and one precomputed access trace per thread, so that sampling
/// costs nothing inside the timed loop.
#[derive(Debug)]
pub struct Workload {
    pub name: String,
    pub mode: Mode,
    pub keys: Vec<[u8; 16]>,
    /// Entries a cache is sized for.
    pub capacity: usize,
    traces: Vec<Vec<u32>>,
    /// Where the next measurement starts in the traces: each one continues where the last
    /// stopped, so a run does not replay a prefix the caches have already learned.
    cursor: AtomicUsize,
    value: Bytes,
}

/// Trace length per thread (a power of two); get-or-insert needs a long one so the trace
/// does not repeat within a run.
const TRACE_LEN: usize = 1 << 20;
const LONG_TRACE_LEN: usize = 1 << 22;

impl Workload {
    /// `keys` keys, accessed with Zipf exponent `s` (`0.0`: uniform). `set_pct` percent of
    /// the ops are sets in `Mode::Mixed`.
    pub fn new(
        name: &str,
        mode: Mode,
        keys: usize,
        capacity: usize,
        s: f64,
        set_pct: u64,
        threads: usize,
    ) -> Self {
        let zipf = (s > 0.0).then(|| Zipf::new(keys, s));
        let len = if mode == Mode::GetOrInsert {
            LONG_TRACE_LEN
        } else {
            TRACE_LEN
        };
        let traces = (0..threads)
            .map(|t| {
                let mut rng = Rng::new(0x5eed + t as u64);
                (0..len)
                    .map(|_| {
                        let id = match &zipf {
                            Some(z) => scatter(z.sample(&mut rng), keys),
                            None => rng.below(keys as u64) as usize,
                        } as u32;
                        if mode == Mode::Mixed && rng.below(100) < set_pct {
                            id | SET_BIT
                        } else {
                            id
                        }
                    })
                    .collect()
            })
            .collect();
        Workload {
            name: name.to_string(),
            mode,
            keys: (0..keys).map(key16).collect(),
            capacity,
            traces,
            cursor: AtomicUsize::new(0),
            value: Bytes::from(vec![b'v'; VALUE_LEN]),
        }
    }

    pub fn threads(&self) -> usize {
        self.traces.len()
    }

    /// A fresh 100-byte value, its own allocation (as a loader would produce).
    pub fn fresh_value(&self) -> Bytes {
        Bytes::copy_from_slice(&self.value)
    }

    /// Fills `c` with every key (get-hit and mixed workloads) so that every get hits.
    pub fn populate(&self, c: &dyn Contender) {
        if self.mode == Mode::GetOrInsert {
            // Warm up with a stretch of trace no measurement starts in.
            self.run_ops(c, 0, LONG_TRACE_LEN / 2, TRACE_LEN);
            return;
        }
        for k in &self.keys {
            c.set(k, self.fresh_value());
        }
    }

    /// Fraction of the first `n` trace ops of thread 0 that hit.
    pub fn hit_ratio(&self, c: &dyn Contender, n: usize) -> f64 {
        let t = &self.traces[0];
        let hits = t
            .iter()
            .take(n)
            .filter(|&&i| c.get(&self.keys[(i & !SET_BIT) as usize]).is_some())
            .count();
        hits as f64 / n.min(t.len()) as f64
    }

    /// Runs `n` ops of thread `t`'s trace starting at `start`.
    #[inline]
    pub fn run_ops<C: Contender + ?Sized>(&self, c: &C, t: usize, start: usize, n: usize) {
        let trace = &self.traces[t];
        let mask = trace.len() - 1;
        match self.mode {
            Mode::GetHit => {
                for i in start..start + n {
                    black_box(c.get(&self.keys[trace[i & mask] as usize]));
                }
            }
            Mode::Mixed => {
                for i in start..start + n {
                    let id = trace[i & mask];
                    let key = &self.keys[(id & !SET_BIT) as usize];
                    if id & SET_BIT != 0 {
                        c.set(key, self.fresh_value());
                    } else {
                        black_box(c.get(key));
                    }
                }
            }
            Mode::GetOrInsert => {
                for i in start..start + n {
                    let key = &self.keys[trace[i & mask] as usize];
                    if black_box(c.get(key)).is_none() {
                        c.set(key, self.fresh_value());
                    }
                }
            }
        }
    }

    /// Runs the workload on `c` with every thread for about `dur`; returns ops per second.
    pub fn measure_for<C: Contender>(&self, c: &C, dur: Duration) -> f64 {
        let threads = self.threads();
        let stop = AtomicBool::new(false);
        let barrier = Barrier::new(threads + 1);
        const CHUNK: usize = 1024;
        let from = self.cursor.load(Ordering::Relaxed);
        let (ops, elapsed) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (stop, barrier) = (&stop, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let mut done = 0;
                        while !stop.load(Ordering::Relaxed) {
                            self.run_ops(c, t, from + done, CHUNK);
                            done += CHUNK;
                        }
                        done
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            std::thread::sleep(dur);
            stop.store(true, Ordering::Relaxed);
            let ops: usize = handles
                .into_iter()
                .map(|h| h.join().expect("bench thread panicked"))
                .sum();
            (ops, start.elapsed())
        });
        self.cursor.fetch_add(ops / threads, Ordering::Relaxed);
        ops as f64 / elapsed.as_secs_f64()
    }

    /// Runs `iters` ops on every thread (criterion's `iter_custom`); returns the wall time
    /// from the moment all threads are released until the last one finishes.
    pub fn measure_iters<C: Contender>(&self, c: &C, iters: u64) -> Duration {
        let threads = self.threads();
        let barrier = Barrier::new(threads + 1);
        let start = Mutex::new(None);
        let from = self.cursor.fetch_add(iters as usize, Ordering::Relaxed);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        self.run_ops(c, t, from, iters as usize);
                    })
                })
                .collect();
            *start.lock().expect("lock") = Some(Instant::now());
            barrier.wait();
            for h in handles {
                h.join().expect("bench thread panicked");
            }
        });
        let start = start.into_inner().expect("lock").expect("set");
        start.elapsed()
    }
}
