//! The peer port against hostile and broken clients: shutdown always ends, a token keeps
//! strangers out, TLS and mutual TLS, and bounded work per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshcache::peer::pb;
use meshcache::{BreakerState, Cluster, ClusterBuilder, ErrorKind, Loaded, MAX_KEYS_PER_GET_MANY};
use meshcache_testkit::certs::{self, CertFiles};
use meshcache_testkit::cluster::{counting, join, key_owned_by, node};
use meshcache_testkit::node::{self, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The bound on every wait: generous, since CI machines are slow; nothing sleeps.
const BOUND: Duration = Duration::from_secs(20);

/// The child side of the SIGSTOP test: this same test binary, re-run.
#[test]
fn child_node() {
    if std::env::var_os(node::ENV).is_some() {
        node::child_main();
    }
}

async fn raw(addr: std::net::SocketAddr) -> pb::peer_client::PeerClient<Channel> {
    pb::peer_client::PeerClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn get(key: &str) -> pb::GetRequest {
    pb::GetRequest {
        group: "g".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        forwarded: true,
        ..Default::default()
    }
}

// ---- Shutdown always ends ----

/// 2,000 idle TCP connections, a client that sent the HTTP/2 preface and then went
/// silent, and a peer process stopped with SIGSTOP while it holds a channel: shutdown
/// returns once the grace period is over.
#[test]
fn shutdown_ends_within_the_grace_period_whatever_the_clients_do() {
    if std::env::var_os(node::ENV).is_some() {
        return;
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let grace = Duration::from_millis(300);
    let cluster = Cluster::builder().shutdown_grace(grace).build().unwrap();
    let _g = cluster.group("demo").loader(counting(&calls)).build().unwrap();
    let addr = cluster.local_addr();
    let rt = cluster.runtime().clone();

    // A peer process that holds a channel to us, then is stopped.
    let exe = std::env::current_exe().unwrap();
    let mut child = Node::spawn(
        &exe,
        &["--exact", "child_node", "--nocapture", "--test-threads=1"],
        1,
    );
    cluster.set_peers([addr.to_string(), child.addr.clone()]).unwrap();
    assert_eq!(child.call(&format!("peers {addr},{}", child.addr), "ok"), "");
    let ours = key_owned_by(&cluster, &cluster);
    assert_eq!(
        child.call(&format!("get {ours}"), "ok"),
        format!("value-of-{ours}")
    );
    let pid = child.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );

    let (idle, silent) = rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..2000 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // The HTTP/2 preface and an empty SETTINGS frame, then nothing: never reads,
        // never acknowledges.
        silent
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        (idle, silent)
    });

    let started = Instant::now();
    let done = std::sync::mpsc::channel();
    let c = cluster.clone();
    std::thread::spawn(move || {
        let _ = done.0.send(c.shutdown_blocking());
    });
    let result = done.1.recv_timeout(BOUND).expect("shutdown returned");
    let took = started.elapsed();
    assert_eq!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    result.unwrap();
    assert!(took >= grace, "shutdown waited for its grace period ({took:?})");
    assert!(cluster.stats().server.closed_at_shutdown > 0);
    drop((idle, silent));
    child.quit();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_finish_during_the_grace_period() {
    let gate = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let a = Cluster::builder().shutdown_grace(BOUND).start().await.unwrap();
    let _ga = {
        let (gate, started) = (gate.clone(), started.clone());
        a.group("g")
            .loader(move |_k: Bytes| {
                let (gate, started) = (gate.clone(), started.clone());
                async move {
                    started.notify_one();
                    gate.notified().await;
                    Ok(Loaded::value("late but whole"))
                }
            })
            .build()
            .unwrap()
    };
    let mut client = raw(a.local_addr()).await;
    let call = tokio::spawn(async move { client.get(get("k")).await });
    started.notified().await;
    let shutdown = {
        let a = a.clone();
        tokio::spawn(async move { a.shutdown().await })
    };
    gate.notify_one();
    let answer = tokio::time::timeout(BOUND, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(&answer.value[..], b"late but whole");
    tokio::time::timeout(BOUND, shutdown)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    let a = Cluster::builder()
        .handshake_timeout(Duration::from_millis(200))
        .idle_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let _g = a.group("g").build().unwrap();
    // Says nothing: closed after the handshake timeout.
    let mut silent = TcpStream::connect(a.local_addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(BOUND, async {
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => return 0,
                Ok(n) => continue_reading(n),
            }
        }
    })
    .await
    .expect("the server closed the silent connection");
    assert_eq!(n, 0);
    assert_eq!(a.stats().server.handshake_timeouts, 1);
    // Made one call, then idle: closed after the idle timeout.
    let mut client = raw(a.local_addr()).await;
    let _ = client.get(get("k")).await;
    tokio::time::timeout(BOUND, async {
        while a.stats().server.idle_closed == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the idle connection was closed");
}

fn continue_reading(_n: usize) {}

// ---- Authentication ----

fn with_token(
    token: &'static str,
) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut r: tonic::Request<()>| {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(r)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_keeps_strangers_out_and_lets_members_in() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(
        Cluster::builder().token("new-token").previous_token("old-token"),
        "g",
        &calls,
    )
    .await;
    ga.set(b"k", Bytes::from_static(b"precious"), None).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", a.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Without the token (or with a wrong one): every call is refused, nothing changes.
    for stranger in [None, Some("wrong")] {
        let mut c = pb::peer_client::PeerClient::with_interceptor(channel.clone(), {
            move |mut r: tonic::Request<()>| {
                if let Some(t) = stranger {
                    r.metadata_mut()
                        .insert("authorization", format!("Bearer {t}").parse().unwrap());
                }
                Ok(r)
            }
        });
        let code = |r: Result<(), tonic::Status>| r.unwrap_err().code();
        let unauth = tonic::Code::Unauthenticated;
        assert_eq!(code(c.get(get("other")).await.map(drop)), unauth);
        assert_eq!(
            code(
                c.get_many(pb::GetManyRequest {
                    group: "g".into(),
                    keys: vec![Bytes::from_static(b"x")],
                    forwarded: true,
                    ..Default::default()
                })
                .await
                .map(drop)
            ),
            unauth
        );
        assert_eq!(
            code(
                c.set(pb::SetRequest {
                    group: "g".into(),
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"evil"),
                    ..Default::default()
                })
                .await
                .map(drop)
            ),
            unauth
        );
        assert_eq!(
            code(
                c.delete(pb::DeleteRequest {
                    group: "g".into(),
                    key: Bytes::from_static(b"k"),
                    ..Default::default()
                })
                .await
                .map(drop)
            ),
            unauth
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no load ran for a stranger");
    assert_eq!(ga.peek(b"k").unwrap().as_deref(), Some(&b"precious"[..]));
    assert_eq!(a.stats().server.rejected_unauthenticated, 8);
    // Health checks need no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    // The current and the previous token both work.
    for t in ["new-token", "old-token"] {
        let mut c = pb::peer_client::PeerClient::with_interceptor(channel.clone(), with_token(t));
        assert_eq!(
            &c.get(get("k")).await.unwrap().into_inner().value[..],
            b"precious"
        );
    }
    // A member with the old token (mid-rotation) fetches from a; one with a wrong token
    // cannot, and loads locally instead.
    let (b, gb) = node(Cluster::builder().token("old-token"), "g", &calls).await;
    let (c, gc) = node(Cluster::builder().token("not-ours"), "g", &calls).await;
    join(&[&a, &b]);
    join(&[&a, &c]);
    let served = ga.stats().served;
    let key = key_owned_by(&b, &a);
    gb.get(key.as_bytes()).await.unwrap();
    assert_eq!((ga.stats().served - served, gb.stats().remote_fetches), (1, 1));
    let key = key_owned_by(&c, &a);
    gc.get(key.as_bytes()).await.unwrap();
    assert_eq!(gc.stats().fallback_loads, 1);
    assert!(a.stats().server.rejected_unauthenticated > 8);
}

#[test]
fn a_token_file_is_read_and_bad_tokens_are_refused() {
    let dir = tempdir("token");
    let path = dir.join("token");
    std::fs::write(&path, "from-a-file\n").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, _ga) = node(Cluster::builder().token_file(&path), "g", &calls).await;
        let channel = Channel::from_shared(format!("http://{}", a.local_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut c = pb::peer_client::PeerClient::with_interceptor(channel, with_token("from-a-file"));
        c.get(get("k")).await.unwrap();
        for bad in [
            Cluster::builder().token("two words"),
            Cluster::builder().token_file(dir.join("missing")),
        ] {
            assert_eq!(bad.start().await.unwrap_err().kind(), ErrorKind::InvalidArgument);
        }
    });
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "meshcache-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---- TLS ----

fn tls(files: &CertFiles) -> ClusterBuilder {
    Cluster::builder().tls(&files.cert, &files.key, &files.ca)
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    id: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((cert, key)) = id {
        cfg = cfg.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(cfg)?
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_lets_members_in_and_keeps_everyone_else_out() {
    let files = certs::write(&tempdir("tls"));
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(tls(&files), "g", &calls).await;
    let (b, gb) = node(tls(&files), "g", &calls).await;
    join(&[&a, &b]);
    let key = key_owned_by(&b, &a);
    assert_eq!(gb.get(key.as_bytes()).await.unwrap(), format!("value-of-{key}"));
    assert_eq!((ga.stats().loads, gb.stats().remote_fetches), (1, 1));

    // A member's certificate: in.
    let ch = tls_channel(a.local_addr(), &files.ca, Some((&files.cert, &files.key)))
        .await
        .unwrap();
    pb::peer_client::PeerClient::new(ch).get(get("k")).await.unwrap();
    // No client certificate, or a stranger's: out.
    for id in [
        None,
        Some((files.stranger_cert.as_path(), files.stranger_key.as_path())),
    ] {
        let refused = match tls_channel(a.local_addr(), &files.ca, id).await {
            Err(_) => true,
            Ok(ch) => pb::peer_client::PeerClient::new(ch).get(get("k")).await.is_err(),
        };
        assert!(refused, "a client without a member's certificate got in");
    }
    // Plaintext to a TLS node: refused, and said so.
    let plain = Channel::from_shared(format!("http://{}", a.local_addr()))
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        assert!(pb::peer_client::PeerClient::new(ch).get(get("k")).await.is_err());
    }
    assert!(a.stats().server.rejected_protocol_mismatch >= 1);
    // A plaintext node among TLS ones cannot half-work silently: its calls fail (and it
    // falls back), and the TLS node counts the mismatch.
    let (c, gc) = node(Cluster::builder(), "g", &calls).await;
    join(&[&a, &c]);
    let before = a.stats().server.rejected_protocol_mismatch;
    let key = key_owned_by(&c, &a);
    gc.get(key.as_bytes()).await.unwrap();
    assert_eq!(gc.stats().fallback_loads, 1);
    assert!(a.stats().server.rejected_protocol_mismatch > before);
    // Unreadable files are a clear error at start.
    let bad = Cluster::builder().tls("/nonexistent/cert.pem", &files.key, &files.ca);
    assert_eq!(bad.start().await.unwrap_err().kind(), ErrorKind::InvalidArgument);
}

// ---- Bounded work per request ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_answers_duplicates_once_and_refuses_oversized_batches() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(Cluster::builder(), "g", &calls).await;
    let mut c = raw(a.local_addr()).await;
    let many = |n: usize| pb::GetManyRequest {
        group: "g".into(),
        keys: vec![Bytes::from_static(b"same"); n],
        forwarded: true,
        ..Default::default()
    };
    let items = c
        .get_many(many(MAX_KEYS_PER_GET_MANY))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(items.len(), MAX_KEYS_PER_GET_MANY);
    assert!(items.iter().all(|i| i.found && &i.value[..] == b"value-of-same"));
    assert_eq!(
        (calls.load(Ordering::SeqCst), ga.stats().served),
        (1, 1),
        "one key, served once"
    );
    // 100k copies: refused at once with a typed error, before any work.
    let e = c.get_many(many(100_000)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(e.metadata().get("meshcache-kind").unwrap(), "INVALID_ARGUMENT");
    assert_eq!(a.stats().server.rejected_too_many_keys, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_get_many_between_healthy_nodes_is_split_and_loads_each_key_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, _ga) = node(Cluster::builder(), "g", &calls).await;
    let (b, gb) = node(Cluster::builder(), "g", &calls).await;
    join(&[&a, &b]);
    let keys: Vec<String> = (0..20_000).map(|i| format!("many-{i}")).collect();
    let got = tokio::time::timeout(BOUND, gb.get_many(&keys))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), keys.len());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        keys.len(),
        "each key loaded once in the cluster"
    );
    assert_eq!(gb.stats().fallback_loads, 0);
    let st = b.stats();
    assert_eq!(st.peers[0].1, BreakerState::Closed);
    assert_eq!(a.stats().server.rejected_too_many_keys, 0);
}

/// A node out of file descriptors (a child process under `prlimit`) pauses its accept
/// loop instead of spinning, keeps serving the connections it has, counts the errors,
/// and accepts again once descriptors are free.
#[test]
fn out_of_file_descriptors_the_server_backs_off_and_keeps_serving() {
    if std::env::var_os(node::ENV).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut command = std::process::Command::new("prlimit");
    command.arg("--nofile=128:128").arg(&exe).args([
        "--exact",
        "child_node",
        "--nocapture",
        "--test-threads=1",
    ]);
    let mut child = Node::spawn_with(&mut command, 1);
    let addr: std::net::SocketAddr = child.addr.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let demo = |k: &str| pb::GetRequest {
        group: "demo".into(),
        key: Bytes::copy_from_slice(k.as_bytes()),
        forwarded: true,
        ..Default::default()
    };
    let (mut client, flood) = rt.block_on(async {
        let mut client = raw(addr).await;
        client.get(demo("before")).await.unwrap();
        // More connections than the child has descriptors for (but fewer than the
        // kernel's accept queue holds): the kernel queues them, and the child's accepts
        // fail with EMFILE.
        let mut flood = Vec::new();
        for _ in 0..200 {
            flood.push(TcpStream::connect(addr).await.unwrap());
        }
        (client, flood)
    });
    let deadline = Instant::now() + BOUND;
    let errors = loop {
        let n = child.stats()["accept_errors"];
        if n >= 4 {
            break n;
        }
        assert!(Instant::now() < deadline, "no accept error counted");
    };
    // Backing off, four errors take at least 75 ms; a spinning loop makes thousands.
    assert!(errors < 100, "{errors} accept errors: the accept loop spins");
    rt.block_on(async {
        let answer = client.get(demo("during")).await.unwrap().into_inner();
        assert!(answer.found, "an existing connection is still served");
    });
    drop(flood);
    rt.block_on(async {
        // Once descriptors are free again, new connections are accepted.
        let mut fresh = tokio::time::timeout(BOUND, raw(addr)).await.unwrap();
        fresh.get(demo("after")).await.unwrap();
    });
    child.quit();
}
