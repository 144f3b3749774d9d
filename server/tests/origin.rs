//! meshcached groups loading from an HTTP origin (a small axum server started by the
//! test, counting what it is asked), on one node and across two.

mod common;

use common::{Node, Origin, free_port};

fn origin_config(origin: &Origin, listen: &str, peers: &[String]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    format!(
        r#"
        listen = "{listen}"
        http_listen = "127.0.0.1:0"
        peers = [{peers}]
        [[groups]]
        name = "users"
        negative_ttl_secs = 600
        max_value_len = "16KiB"
        [groups.origin]
        url = "{url}"
        timeout_ms = 500
        headers = {{ "x-api-key" = "origin-secret" }}
        cache_control = true
        "#,
        peers = peers.join(", "),
        url = origin.url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_load_from_the_origin_once_and_its_errors_are_typed() {
    let origin = Origin::start().await;
    let node = Node::start(&origin_config(&origin, "127.0.0.1:0", &[])).await;
    let c = node.client(None);

    // 200: the value, loaded once; the next get is a hit.
    let r = c.get("/v1/groups/users/keys/42").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "value of 42"),
        "{}",
        r.text()
    );
    assert_eq!(c.get("/v1/groups/users/keys/42").await.text(), "value of 42");
    assert_eq!(origin.hits("42"), 1);
    assert_eq!(origin.api_keys(), ["origin-secret"]);

    // The key is percent-encoded in the origin's URL and arrives as it was.
    let r = c.get("/v1/groups/users/keys/a%20b%2Fc%3F").await;
    assert_eq!(r.text(), "value of a b/c?");
    assert_eq!(origin.hits("a b/c?"), 1);

    // 404: NotFound, remembered (negative caching): the origin is not asked again.
    for _ in 0..3 {
        c.get("/v1/groups/users/keys/missing-7")
            .await
            .problem(404, "NotFound");
    }
    assert_eq!(origin.hits("missing-7"), 1);

    // 500: a Load error (502), not cached: the next get asks again.
    let p = c.get("/v1/groups/users/keys/fail-1").await.problem(502, "Load");
    assert!(p["detail"].as_str().unwrap().contains("500"), "{p}");
    c.get("/v1/groups/users/keys/fail-1").await.problem(502, "Load");
    assert_eq!(origin.hits("fail-1"), 2);

    // No answer within timeout_ms: a Load error too.
    c.get("/v1/groups/users/keys/hang-1").await.problem(502, "Load");
    // A body over max_value_len: a Load error.
    let p = c.get("/v1/groups/users/keys/big-1").await.problem(502, "Load");
    assert!(p["detail"].as_str().unwrap().contains("max_value_len"), "{p}");

    // Cache-Control: no-store is asked every time, max-age=3600 once.
    for _ in 0..2 {
        assert_eq!(c.get("/v1/groups/users/keys/nostore-1").await.status, 200);
        assert_eq!(c.get("/v1/groups/users/keys/hour-1").await.status, 200);
    }
    assert_eq!(origin.hits("nostore-1"), 2);
    assert_eq!(origin.hits("hour-1"), 1);

    // A batch mixes hits, loads and absences.
    let v = c
        .batch("users", &["42", "43", "missing-7", "missing-8"])
        .await
        .json();
    assert_eq!(v["values"].as_object().unwrap().len(), 2, "{v}");
    assert_eq!(v["missing"], serde_json::json!(["missing-7", "missing-8"]));
    assert_eq!(
        (origin.hits("42"), origin.hits("43"), origin.hits("missing-7")),
        (1, 1, 1)
    );

    // A PUT overrides what the origin would say; a DELETE makes the next get load again.
    assert_eq!(c.put("/v1/groups/users/keys/42", "mine").await.status, 204);
    assert_eq!(c.get("/v1/groups/users/keys/42").await.text(), "mine");
    assert_eq!(c.delete("/v1/groups/users/keys/42").await.status, 204);
    assert_eq!(c.get("/v1/groups/users/keys/42").await.text(), "value of 42");
    assert_eq!(origin.hits("42"), 2);

    // An origin that is down: a Load error, promptly.
    drop(origin);
    let down = Origin::start().await;
    let node2 = Node::start(&origin_config(&down, "127.0.0.1:0", &[]).replace(
        &down.url(),
        &format!("http://127.0.0.1:{}/o/{{key}}", free_port()),
    ))
    .await;
    node2
        .client(None)
        .get("/v1/groups/users/keys/1")
        .await
        .problem(502, "Load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_load_each_key_once_in_the_whole_cluster() {
    let origin = Origin::start().await;
    let addrs = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let a = Node::start(&origin_config(&origin, &addrs[0], &addrs)).await;
    let b = Node::start(&origin_config(&origin, &addrs[1], &addrs)).await;
    let (ca, cb) = (a.client(None), b.client(None));
    for n in [&a, &b] {
        let s = n.client(None).get("/v1/status").await.json();
        assert_eq!(s["ring"]["members"].as_array().unwrap().len(), 2, "{s}");
    }

    // Both nodes ask for every key at once, twice: each key is loaded once, by its owner.
    let keys: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    for _ in 0..2 {
        let mut asks = Vec::new();
        for k in &keys {
            for c in [&ca, &cb] {
                let (c, path) = (c.clone(), format!("/v1/groups/users/keys/{k}"));
                asks.push(tokio::spawn(async move { c.get(&path).await }));
            }
        }
        for (i, ask) in asks.into_iter().enumerate() {
            let r = ask.await.unwrap();
            assert_eq!(r.text(), format!("value of {}", keys[i / 2]));
        }
    }
    for k in &keys {
        assert_eq!(origin.hits(k), 1, "{k} was loaded more than once");
    }
    // Both nodes own some of the keys (the ring spreads them).
    let sa = ca.get("/v1/status").await.json();
    let loads = |s: &serde_json::Value| s["groups"][0]["loads"].as_u64().unwrap();
    let sb = cb.get("/v1/status").await.json();
    assert_eq!(loads(&sa) + loads(&sb), 40, "{sa}\n{sb}");
    assert!(loads(&sa) > 0 && loads(&sb) > 0, "{sa}\n{sb}");

    // A batch on one node fetches the other node's keys from it: no new load.
    let all: Vec<&str> = keys.iter().map(String::as_str).collect();
    let v = cb.batch("users", &all).await.json();
    assert_eq!(v["values"].as_object().unwrap().len(), 40);
    assert!(keys.iter().all(|k| origin.hits(k) == 1));

    // A write on one node is read on the other; a delete on the other is seen on both.
    assert_eq!(
        ca.put("/v1/groups/users/keys/user-0", "written").await.status,
        204
    );
    assert_eq!(cb.get("/v1/groups/users/keys/user-0").await.text(), "written");
    assert_eq!(cb.delete("/v1/groups/users/keys/user-0").await.status, 204);
    assert_eq!(
        ca.get("/v1/groups/users/keys/user-0").await.text(),
        "value of user-0"
    );
    assert_eq!(origin.hits("user-0"), 2);
}
