//! The REST API of a meshcached process: put/get/delete, batch get, bearer tokens, size
//! limits, hostile requests, and the metrics and status routes on the same port.

mod common;

use base64::Engine as _;
use bytes::Bytes;
use common::{Node, raw};
use serde_json::json;

const TOKEN: &str = "t0ken-for-tests";

/// One node with a `sessions` group (values up to 1 KiB) and the REST token.
fn config() -> String {
    format!(
        r#"
        listen = "127.0.0.1:0"
        http_listen = "127.0.0.1:0"
        http_token = "{TOKEN}"
        [[groups]]
        name = "sessions"
        capacity = "8MiB"
        max_value_len = "1KiB"
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_round_trip() {
    let node = Node::start(&config()).await;
    let c = node.client(Some(TOKEN));

    let r = c.put("/v1/groups/sessions/keys/alice?ttl=60", "hello").await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = c.get("/v1/groups/sessions/keys/alice").await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(r.header("content-type"), "application/octet-stream");

    // Keys are percent-decoded bytes: a slash, a space and a non-UTF-8 byte.
    let r = c
        .put(
            "/v1/groups/sessions/keys/a%2Fb%20c%FF",
            Bytes::from_static(&[0, 1, 2]),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = c.get("/v1/groups/sessions/keys/a%2Fb%20c%FF").await;
    assert_eq!((r.status, &r.body[..]), (200, &[0u8, 1, 2][..]));
    // An unencoded slash is the same key as an encoded one.
    assert_eq!(c.get("/v1/groups/sessions/keys/a/b%20c%FF").await.status, 200);

    let r = c.delete("/v1/groups/sessions/keys/alice").await;
    assert_eq!(r.status, 204, "{}", r.text());
    c.get("/v1/groups/sessions/keys/alice")
        .await
        .problem(404, "NotFound");

    // A value can be replaced.
    assert_eq!(c.put("/v1/groups/sessions/keys/bob", "one").await.status, 204);
    assert_eq!(c.put("/v1/groups/sessions/keys/bob", "two").await.status, 204);
    assert_eq!(c.get("/v1/groups/sessions/keys/bob").await.text(), "two");

    // Mistakes are typed problems.
    for bad in ["ttl=0", "ttl=soon", "ttl=-5", "tll=5"] {
        let r = c.put(&format!("/v1/groups/sessions/keys/k?{bad}"), "v").await;
        r.problem(400, "InvalidArgument");
    }
    c.get("/v1/groups/nope/keys/k").await.problem(404, "NotFound");
    c.get("/v1/groups/sessions/keys/")
        .await
        .problem(400, "InvalidArgument");
    c.put("/v1/groups/sessions/keys/", "v")
        .await
        .problem(400, "InvalidArgument");
    c.get("/v1/nothing").await.problem(404, "NotFound");
    let r = c
        .send(axum::http::Method::PATCH, "/v1/groups/sessions/keys/k", None, &[])
        .await;
    r.problem(405, "InvalidArgument");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_get_answers_each_key_once() {
    let node = Node::start(&config()).await;
    let c = node.client(Some(TOKEN));
    assert_eq!(c.put("/v1/groups/sessions/keys/a", "apple").await.status, 204);
    assert_eq!(
        c.put("/v1/groups/sessions/keys/b", Bytes::from_static(&[0xff, 0]))
            .await
            .status,
        204
    );

    let r = c.batch("sessions", &["a", "b", "c", "a", "c"]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json");
    let v = r.json();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    assert_eq!(v["values"], json!({ "a": b64(b"apple"), "b": b64(&[0xff, 0]) }));
    assert_eq!(v["missing"], json!(["c"]));

    // 1000 times the same key: one answer.
    let same = vec!["a"; 1000];
    let v = c.batch("sessions", &same).await.json();
    assert_eq!(v["values"], json!({ "a": b64(b"apple") }));
    assert_eq!(v["missing"], json!([]));

    // Over 1000 keys: refused before any work, and counted.
    let many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    c.batch("sessions", &many).await.problem(400, "InvalidArgument");
    let metrics = c.get("/metrics").await.text();
    assert!(
        metrics.contains("meshcache_http_rejected_requests_total{reason=\"too_many_keys\"} 1"),
        "{metrics}"
    );

    // Not the expected JSON, an empty key, an unknown group.
    let p = "/v1/groups/sessions/batch-get";
    c.post_json(p, &json!({ "key": ["a"] }))
        .await
        .problem(400, "InvalidArgument");
    c.post_json(p, &json!(["a"]))
        .await
        .problem(400, "InvalidArgument");
    let r = c
        .send(axum::http::Method::POST, p, Some(Bytes::from_static(b"{")), &[])
        .await;
    r.problem(400, "InvalidArgument");
    c.batch("sessions", &["a", ""])
        .await
        .problem(400, "InvalidArgument");
    c.batch("nope", &["a"]).await.problem(404, "NotFound");
    let v = c.batch("sessions", &[]).await.json();
    assert_eq!(v, json!({ "values": {}, "missing": [] }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_bearer_token_and_the_probes_do_not() {
    let node = Node::start(&config()).await;
    let anonymous = node.client(None);
    let wrong = node.client(Some("not-the-token"));
    let right = node.client(Some(TOKEN));

    for c in [&anonymous, &wrong] {
        let r = c.get("/v1/groups/sessions/keys/k").await;
        r.problem(401, "Unauthorized");
        assert!(
            r.header("www-authenticate").starts_with("Bearer"),
            "{:?}",
            r.headers
        );
        c.put("/v1/groups/sessions/keys/k", "v")
            .await
            .problem(401, "Unauthorized");
        c.delete("/v1/groups/sessions/keys/k")
            .await
            .problem(401, "Unauthorized");
        c.batch("sessions", &["k"]).await.problem(401, "Unauthorized");
        // Unknown groups are not told apart from known ones without the token.
        c.get("/v1/groups/nope/keys/k").await.problem(401, "Unauthorized");
    }
    let r = anonymous
        .send(
            axum::http::Method::GET,
            "/v1/groups/sessions/keys/k",
            None,
            &[("authorization", "Basic eDp5")],
        )
        .await;
    r.problem(401, "Unauthorized");
    assert_eq!(right.put("/v1/groups/sessions/keys/k", "v").await.status, 204);
    assert_eq!(right.get("/v1/groups/sessions/keys/k").await.status, 200);

    // Probes, status and metrics are open.
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    let r = anonymous.get("/readyz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
    assert_eq!(anonymous.get("/v1/status").await.status, 200);
    let r = anonymous.get("/").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<html"), "{}", r.text());
    let m = anonymous.get("/metrics").await;
    assert_eq!(m.status, 200);
    let m = m.text();
    assert!(
        m.contains("meshcache_http_rejected_requests_total{reason=\"unauthenticated\"} 11"),
        "{m}"
    );
    assert!(
        m.contains("meshcache_http_requests_total{op=\"put\",code=\"401\"} 2"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_status_and_probes_describe_the_node() {
    let node = Node::start(&config()).await;
    let c = node.client(Some(TOKEN));
    assert_eq!(c.put("/v1/groups/sessions/keys/k", "v").await.status, 204);
    for _ in 0..3 {
        assert_eq!(c.get("/v1/groups/sessions/keys/k").await.status, 200);
    }
    c.get("/v1/groups/sessions/keys/absent")
        .await
        .problem(404, "NotFound");

    let m = c.get("/metrics").await;
    assert_eq!(
        m.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = m.text();
    assert!(
        text.contains("meshcache_gets_total{group=\"sessions\",result=\"hit\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("meshcache_http_requests_total{op=\"get\",code=\"200\"} 3"),
        "{text}"
    );
    assert!(text.contains("meshcache_ring_members 1"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");

    let s = c.get("/v1/status").await.json();
    assert_eq!(s["node"], node.peer.to_string());
    assert_eq!(s["ring"]["members"][0]["addr"], node.peer.to_string());
    let g = &s["groups"][0];
    assert_eq!(
        (g["name"].as_str(), g["hits"].as_u64()),
        (Some("sessions"), Some(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_over_max_value_len_are_refused() {
    let node = Node::start(&config()).await;
    let c = node.client(Some(TOKEN));
    assert_eq!(
        c.put("/v1/groups/sessions/keys/k", vec![b'x'; 1024]).await.status,
        204
    );
    let p = c
        .put("/v1/groups/sessions/keys/k", vec![b'x'; 1025])
        .await
        .problem(413, "InvalidArgument");
    assert!(p["detail"].as_str().unwrap().contains("1024"), "{p}");
    // Chunked, so without a length up front: refused once the limit is passed.
    let chunk = "x".repeat(2048);
    let req = format!(
        "PUT /v1/groups/sessions/keys/k HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n800\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (status, text) = raw(node.http, req.as_bytes()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    // The old value stayed.
    assert_eq!(c.get("/v1/groups/sessions/keys/k").await.body.len(), 1024);
    let m = c.get("/metrics").await.text();
    assert!(
        m.contains("meshcache_http_rejected_requests_total{reason=\"too_large\"} 2"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_and_never_block_others() {
    let node = Node::start(&config()).await;
    let c = node.client(Some(TOKEN));

    // A slowloris: a connection that sends half a request line and then nothing.
    let mut idle = tokio::net::TcpStream::connect(node.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut idle, b"GET /v1/groups/sessions/keys/k HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    // Others are served meanwhile, on connections of their own.
    for i in 0..20 {
        let fresh = common::Http::new(node.http, Some(TOKEN));
        assert_eq!(
            fresh
                .put(&format!("/v1/groups/sessions/keys/k{i}"), "v")
                .await
                .status,
            204
        );
    }

    // A huge path: refused (414 from the HTTP parser, or 400 for the key length).
    let huge = "k".repeat(100_000);
    let req = format!("GET /v1/groups/sessions/keys/{huge} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let (status, text) = raw(node.http, req.as_bytes()).await;
    assert!((400..500).contains(&status), "{}", &text[..text.len().min(300)]);
    // A key over max_key_len (1 KiB by default) but a path the parser takes: 400.
    let long = "k".repeat(2000);
    c.get(&format!("/v1/groups/sessions/keys/{long}"))
        .await
        .problem(400, "InvalidArgument");
    c.batch("sessions", &[&long])
        .await
        .problem(400, "InvalidArgument");

    // A PUT without a body stores an empty value.
    let req = format!(
        "PUT /v1/groups/sessions/keys/empty HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n"
    );
    let (status, text) = raw(node.http, req.as_bytes()).await;
    assert_eq!(status, 204, "{text}");
    let r = c.get("/v1/groups/sessions/keys/empty").await;
    assert_eq!((r.status, r.body.len()), (200, 0));

    // A body that claims more than it sends, then stops: the limit answers first.
    let req = format!(
        "PUT /v1/groups/sessions/keys/k HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-length: 999999999\r\nconnection: close\r\n\r\nabc"
    );
    let (status, _) = raw(node.http, req.as_bytes()).await;
    assert_eq!(status, 413);

    // Garbage instead of HTTP: the connection is answered or closed, never hung.
    let mut junk = tokio::net::TcpStream::connect(node.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut junk, b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        common::BOUND,
        tokio::io::AsyncReadExt::read_to_end(&mut junk, &mut out),
    )
    .await
    .expect("a garbage connection was not closed")
    .ok();

    // 1000 times the same key in a batch is one key.
    let v = c.batch("sessions", &vec!["k0"; 1000]).await.json();
    assert_eq!(v["values"].as_object().unwrap().len(), 1);

    // The slowloris is still open (not served, not blocking): still everyone is served.
    assert_eq!(c.get("/healthz").await.status, 200);
    drop(idle);
}
