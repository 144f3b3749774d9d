//! A node's metrics and status page as their consumers see them: a real Prometheus
//! (Debian's `prometheus`) scrapes a node and answers a PromQL query with the node's
//! counter; headless Chromium (Debian's `chromium`) renders the status page, whose DOM
//! shows the members and a group row with the right hit ratio, with no console error,
//! and a screenshot lands in `target/`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use meshcache::Cluster;
use meshcache_testkit::cluster::{join, node};

async fn http_get(addr: &str, path: &str) -> String {
    meshcache_testkit::http::get(addr, path, Duration::from_secs(10))
        .await
        .1
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node with metrics, and a peer; 30 gets of 10 keys (20 hits on the node's own keys or
/// remote fetches, depending on ownership).
async fn observed_node() -> (Cluster, Cluster, meshcache::Group) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(Cluster::builder().metrics_listen("127.0.0.1:0"), "orders", &calls).await;
    let (b, _) = node(Cluster::builder(), "orders", &calls).await;
    join(&[&a, &b]);
    for _ in 0..3 {
        for i in 0..10 {
            ga.get(format!("k{i}").as_bytes()).await.unwrap();
        }
    }
    (a, b, ga)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_node_and_answers_promql() {
    let (a, b, ga) = observed_node().await;
    let target = a.metrics_addr().unwrap();
    let dir = std::env::temp_dir().join(format!("meshcache-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: meshcache\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run prometheus: install Debian's prometheus (make deps does)");
    // Ready when it says so (an event in its log, not a timer).
    let (tx, rx) = std::sync::mpsc::channel();
    let log = BufReader::new(prom.stderr.take().unwrap());
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in log.lines().map_while(Result::ok) {
            if line.contains("Server is ready to receive web requests")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("prometheus ready");
    // Prometheus scrapes every second: the query answers once a scrape has landed. Asked
    // at most every 200 ms for 30 s.
    let want = ga.stats().hits;
    let query = "/api/v1/query?query=meshcache_gets_total%7Bgroup%3D%22orders%22%2Cresult%3D%22hit%22%7D";
    let mut pace = tokio::time::interval(Duration::from_millis(200));
    let mut answer = String::new();
    for _ in 0..150 {
        pace.tick().await;
        answer = http_get(&web, query).await;
        if answer.contains(&format!("\"{want}\"]")) {
            break;
        }
    }
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        answer.contains(&format!("\"{want}\"]")),
        "PromQL answered {answer}, want {want}"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_renders_the_status_page_without_errors() {
    let (a, b, ga) = observed_node().await;
    let url = format!("http://{}/", a.metrics_addr().unwrap());
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/status-page.png");
    let profile = std::env::temp_dir().join(format!("meshcache-chromium-{}", std::process::id()));
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.display()))
            // Virtual time: the page's fetch and first render complete before the dump.
            .args(["--virtual-time-budget=5000", "--window-size=1000,900"])
            .args(["--enable-logging=stderr", "--v=0"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("cannot run chromium: install Debian's chromium (make deps does)")
    };
    let out = chromium(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        dom.contains(&format!("data-member=\"{}\"", a.advertise_addr())),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("data-member=\"{}\"", b.advertise_addr())),
        "{dom}"
    );
    let st = ga.stats();
    let ratio = format!("{:.1}%", 100.0 * (st.hits + st.hot_hits) as f64 / st.gets as f64);
    let row = dom
        .split("data-group=\"orders\"")
        .nth(1)
        .expect("a row for the group");
    assert!(
        row.contains(&format!("data-field=\"hit_ratio\">{ratio}<")),
        "want {ratio} in {row}"
    );
    for bad in ["Uncaught", "SyntaxError", "TypeError", "Failed to load resource"] {
        assert!(!log.contains(bad), "console error in:\n{log}");
    }
    let out = chromium(&[&format!("--screenshot={}", shot.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false),
        "screenshot at {}",
        shot.display()
    );
    let _ = std::fs::remove_dir_all(&profile);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
