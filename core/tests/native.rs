//! The native framing (issue 15): nodes call each other over it by default, in the
//! format `peer.proto` documents, on the same port as gRPC; hostile frames get typed
//! errors and bounded work; connections closed while idle are replaced without a failed
//! call; a node still calling over gRPC works with one that speaks both.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use meshcache::peer::pb;
use meshcache::{Cluster, PeerProtocol};
use meshcache_testkit::cluster::{join, key_owned_by, node};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bound on every wait: generous, since CI machines are slow; nothing sleeps.
const BOUND: Duration = Duration::from_secs(20);
const MAGIC: &[u8; 16] = b"\0meshcache/wire1";
const HELLO: u8 = 0;
const GET: u8 = 1;
const GET_MANY: u8 = 2;

/// A frame as `peer.proto` documents it: u32 length, u32 id, method, status, two zeros.
fn frame(id: u32, method: u8, status: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&[method, status, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// Reads one frame: (id, method, status, payload); `None` if the connection ended.
async fn read_frame(s: &mut TcpStream) -> Option<(u32, u8, u8, Vec<u8>)> {
    let mut h = [0u8; 12];
    tokio::time::timeout(BOUND, s.read_exact(&mut h))
        .await
        .ok()?
        .ok()?;
    let len = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((
        u32::from_le_bytes(h[4..8].try_into().unwrap()),
        h[8],
        h[9],
        payload,
    ))
}

/// A native connection to `addr` that has said hello with `token`: the hello's answer.
async fn hello(addr: std::net::SocketAddr, token: &[u8]) -> (TcpStream, (u32, u8, u8, Vec<u8>)) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = MAGIC.to_vec();
    out.extend(frame(0, HELLO, 0, token));
    s.write_all(&out).await.unwrap();
    let answer = read_frame(&mut s).await.expect("an answer to hello");
    (s, answer)
}

fn get(key: &str) -> Vec<u8> {
    pb::GetRequest {
        group: "g".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        forwarded: true,
        peek: false,
    }
    .encode_to_vec()
}

/// A peer that is only a socket: what node A sends it is the documented format, token
/// included, and A takes its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_call_over_the_native_framing_in_the_documented_format() {
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap().to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(Cluster::builder().token("s3cret"), "g", &calls).await;
    a.set_peers([a.advertise_addr().to_string(), fake_addr.clone()])
        .unwrap();
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| a.owner_of(k.as_bytes()) == fake_addr)
        .unwrap();
    let peer = tokio::spawn(async move {
        let (mut s, _) = fake.accept().await.unwrap();
        let mut magic = [0u8; 16];
        s.read_exact(&mut magic).await.unwrap();
        assert_eq!(&magic, MAGIC);
        let (id, m, _, token) = read_frame(&mut s).await.unwrap();
        assert_eq!((m, &token[..]), (HELLO, &b"s3cret"[..]));
        s.write_all(&frame(id, HELLO, 0, &[])).await.unwrap();
        let (id, m, status, payload) = read_frame(&mut s).await.unwrap();
        assert_eq!((m, status), (GET, 0));
        let req = pb::GetRequest::decode(&payload[..]).unwrap();
        assert_eq!(req.group, "g");
        let resp = pb::GetResponse {
            found: true,
            value: Bytes::from(format!("{}-from-the-socket", String::from_utf8_lossy(&req.key))),
            ..Default::default()
        };
        s.write_all(&frame(id, GET, 0, &resp.encode_to_vec()))
            .await
            .unwrap();
        s
    });
    let value = tokio::time::timeout(BOUND, ga.get(key.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, format!("{key}-from-the-socket"));
    assert_eq!(ga.stats().loads, 0);
    drop(peer.await.unwrap());
}

/// Hostile frames on the native framing: a wrong token is refused at hello and counted;
/// an unknown method or a malformed message is an error and the connection goes on; an
/// oversized frame or a batch over the key limit is refused before any work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_native_frames_get_typed_errors_and_no_work() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(
        Cluster::builder().token("s3cret").max_message_size(1 << 20),
        "g",
        &calls,
    )
    .await;
    ga.set(b"k", Bytes::from_static(b"precious"), None).await.unwrap();
    let addr = a.local_addr();

    // Wrong or missing token: an UNAUTHENTICATED answer, then the connection closes.
    for token in [&b"wrong"[..], b""] {
        let (mut s, (_, m, status, payload)) = hello(addr, token).await;
        assert_eq!((m, status), (HELLO, 1));
        let err = pb::WireStatus::decode(&payload[..]).unwrap();
        assert_eq!(err.code, tonic::Code::Unauthenticated as i32);
        s.write_all(&frame(1, GET, 0, &get("k"))).await.ok();
        assert!(
            read_frame(&mut s).await.is_none(),
            "a refused connection was served"
        );
    }
    assert_eq!(a.stats().server.rejected_unauthenticated, 2);

    let (mut s, (_, _, status, _)) = hello(addr, b"s3cret").await;
    assert_eq!(status, 0);
    // A get: the stored value.
    s.write_all(&frame(7, GET, 0, &get("k"))).await.unwrap();
    let (id, m, status, payload) = read_frame(&mut s).await.unwrap();
    assert_eq!((id, m, status), (7, GET, 0));
    assert_eq!(
        &pb::GetResponse::decode(&payload[..]).unwrap().value[..],
        b"precious"
    );
    // Unknown method, malformed message: errors, and the connection still serves.
    for (m, payload) in [(9u8, get("k")), (GET, vec![0xff; 7])] {
        s.write_all(&frame(8, m, 0, &payload)).await.unwrap();
        let (_, _, status, payload) = read_frame(&mut s).await.unwrap();
        assert_eq!(status, 1);
        let code = pb::WireStatus::decode(&payload[..]).unwrap().code;
        assert!(
            code == tonic::Code::Unimplemented as i32 || code == tonic::Code::InvalidArgument as i32,
            "code {code}"
        );
    }
    // Too many keys in one GetMany (and duplicates): refused before any load.
    let many = pb::GetManyRequest {
        group: "g".into(),
        keys: vec![Bytes::from_static(b"dup"); 5000],
        forwarded: true,
        peek: false,
    };
    s.write_all(&frame(9, GET_MANY, 0, &many.encode_to_vec()))
        .await
        .unwrap();
    let (_, _, status, payload) = read_frame(&mut s).await.unwrap();
    assert_eq!(status, 1);
    assert_eq!(
        pb::WireStatus::decode(&payload[..]).unwrap().kind,
        "INVALID_ARGUMENT"
    );
    assert_eq!(a.stats().server.rejected_too_many_keys, 1);
    s.write_all(&frame(10, GET, 0, &get("k"))).await.unwrap();
    assert_eq!(read_frame(&mut s).await.unwrap().2, 0, "the connection goes on");
    // A frame over the message limit: refused unread, and the connection closes.
    let mut huge = (u32::MAX).to_le_bytes().to_vec();
    huge.extend_from_slice(&[11, 0, 0, 0, GET, 0, 0, 0]);
    s.write_all(&huge).await.unwrap();
    let (_, _, status, _) = read_frame(&mut s).await.unwrap();
    assert_eq!(status, 1);
    assert!(read_frame(&mut s).await.is_none());
    // Not a hello after the magic: closed without an answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = MAGIC.to_vec();
    out.extend(frame(0, GET, 0, &get("k")));
    s.write_all(&out).await.unwrap();
    assert!(read_frame(&mut s).await.is_none());
    assert_eq!(
        std::sync::atomic::AtomicUsize::load(&calls, std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// A node calling over gRPC and one calling over the native framing serve each other,
/// and each key is still loaded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_native_callers_share_one_cluster() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(Cluster::builder().peer_protocol(PeerProtocol::Grpc), "g", &calls).await;
    let (b, gb) = node(Cluster::builder(), "g", &calls).await;
    join(&[&a, &b]);
    for (owner, caller) in [(&a, &gb), (&b, &ga)] {
        let key = key_owned_by(owner, owner);
        for g in [caller, caller] {
            assert_eq!(g.get(key.as_bytes()).await.unwrap(), format!("value-of-{key}"));
        }
    }
    assert_eq!(ga.stats().remote_fetches + gb.stats().remote_fetches, 4);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A pooled connection the owner closed while it sat idle is replaced on the next call,
/// which succeeds without a failure, retry or fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_while_idle_are_replaced_without_a_failed_call() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(Cluster::builder(), "g", &calls).await;
    let (b, _gb) = node(
        Cluster::builder().idle_timeout(Duration::from_millis(200)),
        "g",
        &calls,
    )
    .await;
    join(&[&a, &b]);
    let key = key_owned_by(&a, &b);
    ga.get(key.as_bytes()).await.unwrap();
    tokio::time::timeout(BOUND, async {
        while b.stats().server.idle_closed == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the owner closed the idle connection");
    ga.delete(key.as_bytes()).await.unwrap();
    assert_eq!(ga.get(key.as_bytes()).await.unwrap(), format!("value-of-{key}"));
    let (_, _, peer) = a
        .stats()
        .peers
        .into_iter()
        .find(|p| p.0 == b.advertise_addr())
        .unwrap();
    assert_eq!((peer.failures, peer.retries), (0, 0));
    assert_eq!(ga.stats().fallback_loads, 0);
}

/// Shutdown ends within its grace period whatever native clients do: one idle after
/// hello, one stalled in the middle of a frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_clients_cannot_hold_shutdown() {
    let grace = Duration::from_millis(300);
    let a = Cluster::builder().shutdown_grace(grace).start().await.unwrap();
    let _g = a.group("g").build().unwrap();
    let (idle, _) = hello(a.local_addr(), b"").await;
    let (mut stalled, _) = hello(a.local_addr(), b"").await;
    stalled
        .write_all(&frame(1, GET, 0, &get("k"))[..20])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(BOUND, a.shutdown()).await.unwrap().unwrap();
    assert!(started.elapsed() < grace + Duration::from_secs(2));
    drop((idle, stalled));
}

/// A burst of concurrent writes to one owner shares a bounded pool of connections: one
/// connection per write overflowed the owner's accept backlog, and writes timed out
/// connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_to_one_owner_all_land() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, ga) = node(Cluster::builder(), "g", &calls).await;
    let (b, gb) = node(Cluster::builder(), "g", &calls).await;
    join(&[&a, &b]);
    let keys: Vec<String> = (0..)
        .map(|i| format!("w{i}"))
        .filter(|k| a.owner_of(k.as_bytes()) == b.advertise_addr())
        .take(3000)
        .collect();
    let sets = keys
        .iter()
        .map(|k| ga.set(k.as_bytes(), Bytes::from_static(b"v"), None));
    for r in futures_util::future::join_all(sets).await {
        r.unwrap();
    }
    for k in &keys {
        assert_eq!(gb.peek(k.as_bytes()).unwrap().as_deref(), Some(&b"v"[..]));
    }
}
