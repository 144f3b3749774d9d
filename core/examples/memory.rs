//! Does the store's byte budget track real memory? Fills a `Store` with a 1 GiB budget
//! with 16-byte keys and fixed-size values, keeps inserting until a fifth of the budget
//! has been evicted and replaced (so the numbers include steady-state churn and the
//! allocator's free lists), reads every resident key once (a hit's first clone of a
//! value allocates the shared `Bytes` header), and reports the process's resident memory
//! against the budget.
//!
//! ```text
//! cargo run --release -p meshcache --example memory                 # both sizes, each in a fresh process
//! cargo run --release -p meshcache --example memory -- --value 100  # one fill in this process
//! ```
//!
//! Each fill runs in its own process because freed memory is not returned to the OS.

use std::sync::Arc;

use bytes::Bytes;
use meshcache::store::{Store, StoreConfig, Tier};
use meshcache_testkit::zipf;

const BUDGET: usize = 1 << 30;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == "--help" {
            println!("usage: memory [--value BYTES] [--budget-mib N]");
            std::process::exit(0);
        }
        if a == name {
            return args.next();
        }
    }
    None
}

/// Resident set size of this process in bytes, from `/proc/self/statm`.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm field");
    pages * 4096
}

fn fill(value_len: usize, budget: usize) {
    let before = rss();
    let store = Store::new(StoreConfig::new(budget), Arc::new(meshcache::SystemClock));
    let payload = vec![b'v'; value_len];
    let mut i = 0usize;
    // Insert until the evictions add up to a fifth of what fits.
    let mut fitted = None;
    loop {
        store.insert(
            Tier::Main,
            Bytes::copy_from_slice(&zipf::key16(i)),
            Some(Bytes::copy_from_slice(&payload)),
            0,
        );
        i += 1;
        if i.is_multiple_of(65_536) {
            let st = store.stats();
            if fitted.is_none() && st.main.evictions > 0 {
                fitted = Some(st.main.items);
            }
            if let Some(f) = fitted
                && st.main.evictions >= f / 5
            {
                break;
            }
        }
    }
    // Read every key that may be resident: the first clone of each value allocates the
    // header `Bytes` shares between clones, as on a real hit.
    let mut hits = 0usize;
    for k in 0..i {
        if let Some(h) = store.get(&zipf::key16(k)) {
            hits += 1;
            std::hint::black_box(h);
        }
    }
    let after = rss();
    let st = store.stats();
    let used = store.used_bytes();
    println!(
        "value {value_len:>5} B: budget {:.0} MiB, charged {:.1} MiB, {} entries ({} read), {} inserted, \
         RSS {:.1} MiB (baseline {:.1} MiB), RSS/budget {:.3}, (RSS-baseline)/budget {:.3}, \
         RSS per entry {:.0} B, charge per entry {:.0} B",
        budget as f64 / 1048576.0,
        used as f64 / 1048576.0,
        st.main.items,
        hits,
        i,
        after as f64 / 1048576.0,
        before as f64 / 1048576.0,
        after as f64 / budget as f64,
        (after - before) as f64 / budget as f64,
        (after - before) as f64 / st.main.items as f64,
        used as f64 / st.main.items as f64,
    );
    std::hint::black_box(&store);
}

fn main() {
    let budget = arg("--budget-mib")
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(BUDGET, |m| m << 20);
    if let Some(v) = arg("--value") {
        fill(v.parse().expect("--value takes a byte count"), budget);
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    for value in [100, 1024] {
        let status = std::process::Command::new(&exe)
            .args([
                "--value",
                &value.to_string(),
                "--budget-mib",
                &(budget >> 20).to_string(),
            ])
            .status()
            .expect("spawn a fresh process");
        assert!(status.success(), "fill with {value}-byte values failed");
    }
}
