//! Memory after large `get_many` calls, alone in its own test process: resident memory
//! is process-wide, so tests running beside it in one binary would blur the measure.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use meshcache::Cluster;
use meshcache_testkit::cluster::{join, node};

const BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_thousand_one_kib_keys_come_back_whole() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(Cluster::builder(), "g", &calls).await;
    let (b, gb) = node(Cluster::builder(), "g", &calls).await;
    join(&[&a, &b]);
    let _ = ga;
    let keys: Vec<String> = (0..60_000).map(|i| format!("{i:0>1024}")).collect();
    let got = tokio::time::timeout(BOUND * 3, gb.get_many(&keys))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), keys.len());
    assert_eq!(gb.stats().fallback_loads, 0);
    drop(got);
    // The stores are full now (each bounded by its capacity). Asking again must not
    // leave more behind: keys and mirrors cached from a GetMany get their own bytes
    // instead of holding on to the whole request or answer buffer they came in (which
    // grew RSS by tens of MiB per call here), and a call's buffers are freed.
    let fetch_all = || async {
        let got = tokio::time::timeout(BOUND * 3, gb.get_many(&keys))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), keys.len());
    };
    fetch_all().await;
    let warm = rss_bytes();
    for _ in 0..3 {
        fetch_all().await;
    }
    let grown = rss_bytes().saturating_sub(warm);
    eprintln!(
        "RSS {} MiB when warm, grew {} MiB over three more 60k-key get_many calls",
        warm >> 20,
        grown >> 20
    );
    assert!(grown < 48 << 20, "RSS grew {} MiB", grown >> 20);
}

/// This process's resident memory (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib << 10
}
