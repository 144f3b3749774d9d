//! Metrics and status of a node: the Prometheus text (from `metrics_text` and from
//! `/metrics` of `metrics_listen`), `/v1/status`, the status page, `/healthz`, `/readyz`,
//! hostile requests, and a real Prometheus (Debian's `prometheus`) scraping a node.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use meshcache::Cluster;
use meshcache_testkit::cluster::{join, node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` over a fresh connection: (status code, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    meshcache_testkit::http::get(&addr.to_string(), path, Duration::from_secs(10)).await
}

/// The value of the sample `series` (name and labels exactly as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.trim().split(' ').next()?.parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_its_metrics_status_and_health() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(Cluster::builder().metrics_listen("127.0.0.1:0"), "g", &calls).await;
    let (b, _gb) = node(Cluster::builder(), "g", &calls).await;
    join(&[&a, &b]);
    for i in 0..20 {
        ga.get(format!("k{i}").as_bytes()).await.unwrap();
    }
    for i in 0..20 {
        ga.get(format!("k{i}").as_bytes()).await.unwrap();
    }
    let text = a.metrics_text();
    let st = ga.stats();
    let hits = sample(&text, r#"meshcache_gets_total{group="g",result="hit"}"#).unwrap();
    assert_eq!(hits as u64, st.hits, "{text}");
    assert_eq!(
        sample(&text, r#"meshcache_loads_total{group="g"}"#).unwrap() as u64,
        st.loads
    );
    assert_eq!(sample(&text, "meshcache_ring_members").unwrap(), 2.0);
    assert!(text.contains(&format!(
        r#"meshcache_peer_breaker_state{{peer="{}"}} 0"#,
        b.advertise_addr()
    )));
    assert!(
        text.contains("meshcache_peer_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains(r#"meshcache_store_bytes{group="g",tier="main"}"#));
    assert!(!text.contains("k1"), "no key in any label");
    // The same over HTTP.
    let addr = a.metrics_addr().expect("metrics server");
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("meshcache_gets_total"));
    let (code, body) = http_get(addr, "/v1/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["node"], a.advertise_addr());
    let members = status["ring"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let shares: f64 = members.iter().map(|m| m["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-9);
    assert_eq!(status["groups"][0]["name"], "g");
    assert_eq!(status["groups"][0]["hits"].as_u64().unwrap(), ga.stats().hits);
    let (code, page) = http_get(addr, "/").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("<title>meshcache status</title>")
            && !page.contains("http://")
            && !page.contains("https://")
    );
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    assert_eq!(http_get(addr, "/nope").await.0, 404);
    a.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the metrics server stopped"
    );
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_to_the_metrics_port_are_bounded() {
    let c = Cluster::builder()
        .metrics_listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let addr = c.metrics_addr().unwrap();
    // Idle and stalled connections (nothing sent; half a request) hold nobody else up
    // (and are closed after the header read timeout).
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    // A huge path, a flood of headers, a method that is not GET, garbage: refused, and
    // the server still answers afterwards.
    let long = format!("/{}", "a".repeat(100_000));
    assert_ne!(http_get(addr, &long).await.0, 200);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = String::from("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    for i in 0..5000 {
        req.push_str(&format!("X-{i}: {}\r\n", "v".repeat(100)));
    }
    req.push_str("Connection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "too many headers are refused"
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 405"));
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    c.shutdown().await.unwrap();
}
