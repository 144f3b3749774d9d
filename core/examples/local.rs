//! A group in front of a slow database (1 ms per load) under a Zipf workload.
//!
//! `cargo run --release -p meshcache --example local`; it prints the hit ratio, how many loads reached the database and
//! the throughput. Run with `--help` for the knobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshcache::{Group, Loaded};
use meshcache_testkit::zipf;

fn arg(name: &str, default: u64) -> u64 {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == "--help" {
            println!("usage: demo [--keys N] [--gets N] [--tasks N] [--capacity-mib N]");
            std::process::exit(0);
        }
        if a == name {
            return args.next().and_then(|v| v.parse().ok()).unwrap_or(default);
        }
    }
    default
}

fn main() -> meshcache::Result<()> {
    let keys = arg("--keys", 100_000) as usize;
    let gets = arg("--gets", 2_000_000);
    let tasks = arg("--tasks", 64);
    let capacity = arg("--capacity-mib", 8) as usize * 1024 * 1024;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let db_reads = Arc::new(AtomicU64::new(0));
        let reads = db_reads.clone();
        let group = Group::builder("users")
            .capacity(capacity)
            .loader(move |key: Bytes| {
                let reads = reads.clone();
                async move {
                    // The "database": 1 ms per query.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    reads.fetch_add(1, Ordering::Relaxed);
                    Ok(Loaded::value(format!(
                        "{{\"id\":\"{}\",\"name\":\"user\"}}",
                        String::from_utf8_lossy(&key)
                    )))
                }
            })
            .build()?;
        let zipf = Arc::new(zipf::Zipf::new(keys, 0.99));
        let start = Instant::now();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (group, zipf) = (group.clone(), zipf.clone());
            handles.push(tokio::spawn(async move {
                let mut rng = zipf::Rng::new(t + 1);
                for _ in 0..gets / tasks {
                    let k = zipf::key16(zipf::scatter(zipf.sample(&mut rng), zipf.cdf_len()));
                    group.get(&k).await?;
                }
                Ok::<_, meshcache::Error>(())
            }));
        }
        for h in handles {
            h.await.expect("worker task panicked")?;
        }
        let elapsed = start.elapsed();
        let st = group.stats();
        println!(
            "meshcache demo: one group, {keys} keys (Zipf 0.99), {} MiB, {tasks} tasks",
            capacity >> 20
        );
        println!("  gets         {}", st.gets);
        println!("  hit ratio    {:.2}%", 100.0 * st.hits as f64 / st.gets as f64);
        println!(
            "  loads        {} (database reads: {})",
            st.loads,
            db_reads.load(Ordering::Relaxed)
        );
        println!(
            "  deduplicated {} (misses that waited for another caller's load)",
            st.deduplicated
        );
        println!(
            "  resident     {} items, {:.1} MiB",
            st.main.items,
            st.main.bytes as f64 / 1048576.0
        );
        println!(
            "  throughput   {:.0} gets/s in {:.2?}",
            st.gets as f64 / elapsed.as_secs_f64(),
            elapsed
        );
        Ok(())
    })
}
