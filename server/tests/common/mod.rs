//! What the meshcached tests share: a node run as a process (the real binary, a temp
//! config file, its ready line), a small HTTP/1.1 client, raw TCP requests for hostile
//! clients, and an HTTP origin that counts what it is asked.
//!
//! Every wait is bounded and waits on an event (a line, an exit, an answer); nothing
//! sleeps. Everything listens on loopback.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for a node to start or stop, and for one HTTP answer.
pub const BOUND: Duration = Duration::from_secs(20);

/// A free loopback port (for static peer lists, which must be known before start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A meshcached process; killed when dropped (its stderr printed if the test failed).
pub struct Node {
    child: Option<Child>,
    /// The REST, metrics and status address.
    pub http: SocketAddr,
    /// The peer address.
    pub peer: SocketAddr,
    stderr: Arc<Mutex<String>>,
    err_task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// How a node that did not start ended.
#[derive(Debug)]
pub struct Failed {
    pub status: ExitStatus,
    pub stderr: String,
}

/// Options for starting a node besides its config text.
#[derive(Default)]
pub struct Start<'a> {
    pub args: Vec<String>,
    pub env: Vec<(&'a str, String)>,
}

impl Node {
    /// Starts meshcached with `config` as its config file, on ports picked by the system
    /// unless the config names them.
    pub async fn start(config: &str) -> Node {
        Node::start_with(config, Start::default())
            .await
            .unwrap_or_else(|f| panic!("meshcached did not start: {}\n{}", f.status, f.stderr))
    }

    /// Starts meshcached; `Err` with its exit status and stderr if it exits first.
    pub async fn start_with(config: &str, opts: Start<'_>) -> Result<Node, Failed> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshcached.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshcached"));
        cmd.arg("--config").arg(&path).args(&opts.args);
        for (k, _) in std::env::vars() {
            if k.starts_with("MESHCACHE_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn meshcached");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let err_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("no ready line in time")
            .unwrap();
        let Some(line) = line else {
            let status = tokio::time::timeout(BOUND, child.wait()).await.unwrap().unwrap();
            let _ = tokio::time::timeout(BOUND, err_task).await;
            let stderr = stderr.lock().unwrap().clone();
            return Err(Failed { status, stderr });
        };
        // Keep draining stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let field = |name: &str| -> SocketAddr {
            let at = line.find(&format!("{name}=")).unwrap_or_else(|| panic!("{line}"));
            let rest = &line[at + name.len() + 1..];
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        assert!(line.starts_with("meshcached ready "), "{line}");
        Ok(Node {
            http: field("http"),
            peer: field("peer"),
            child: Some(child),
            stderr,
            err_task: Some(err_task),
            _dir: dir,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id().unwrap()
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `signal` (`TERM`, `INT`) with kill(1) and waits (bounded) for the exit;
    /// returns the exit status and everything the node wrote on stderr.
    pub async fn signal_and_wait(mut self, signal: &str, bound: Duration) -> (ExitStatus, String) {
        let pid = self.pid().to_string();
        let ok = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .unwrap();
        assert!(ok.success());
        let mut child = self.child.take().unwrap();
        let status = match tokio::time::timeout(bound, child.wait()).await {
            Ok(s) => s.unwrap(),
            Err(_) => panic!("meshcached did not exit within {bound:?}:\n{}", self.stderr()),
        };
        // The pipe closed with the process: the reader ends.
        let task = self.err_task.take().unwrap();
        tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
        (status, self.stderr())
    }

    /// A client of its HTTP port with this bearer token.
    pub fn client(&self, token: Option<&str>) -> Http {
        Http::new(self.http, token)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- meshcached stderr ---\n{}", self.stderr());
        }
    }
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    /// Asserts a problem detail of `status` and `kind`; returns it.
    pub fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("content-type"), "application/problem+json");
        let p = self.json();
        assert_eq!(p["status"], status, "{p}");
        assert_eq!(p["kind"], kind, "{p}");
        assert!(p["type"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        assert!(p["title"].as_str().is_some(), "{p}");
        assert!(p["detail"].as_str().is_some(), "{p}");
        p
    }
}

/// A small HTTP/1.1 client of one node.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: Option<String>,
}

impl Http {
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
            token: token.map(str::to_string),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.unwrap_or_default())).unwrap();
        let resp = tokio::time::timeout(BOUND, self.client.request(req))
            .await
            .expect("no answer in time")
            .expect("request failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = tokio::time::timeout(BOUND, resp.into_body().collect())
            .await
            .expect("no body in time")
            .unwrap()
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn put(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send(Method::PUT, path, Some(body.into()), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, &[]).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let body = Bytes::from(body.to_string());
        self.send(
            Method::POST,
            path,
            Some(body),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// `keys` of a batch get on `group`.
    pub async fn batch(&self, group: &str, keys: &[&str]) -> Reply {
        let body = serde_json::json!({ "keys": keys });
        self.post_json(&format!("/v1/groups/{group}/batch-get"), &body)
            .await
    }
}

/// Sends `request` as is on a new connection and reads until the server closes it (ask
/// for `Connection: close`); returns the status code and the whole answer.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut out))
        .await
        .expect("no answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = (text.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (status, text)
}

/// An HTTP origin on loopback that counts requests per key: `GET /o/{key}` answers by
/// the key's prefix: `missing-` 404, `fail-` 500, `hang-` never, `big-` a body of 64 KiB,
/// `nostore-` 200 with `Cache-Control: no-store`, `hour-` 200 with `max-age=3600`, any
/// other 200 `value of {key}`.
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<OriginState>,
}

struct OriginState {
    hits: Mutex<HashMap<String, usize>>,
    api_keys: Mutex<Vec<String>>,
    /// Bumped on every request, for waiting on one.
    asked: tokio::sync::watch::Sender<usize>,
}

impl Origin {
    pub async fn start() -> Origin {
        let state = Arc::new(OriginState {
            hits: Mutex::default(),
            api_keys: Mutex::default(),
            asked: tokio::sync::watch::Sender::new(0),
        });
        let app = Router::new()
            .route("/o/{*key}", axum::routing::get(answer))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Origin { addr, state }
    }

    /// The URL template of a group's origin.
    pub fn url(&self) -> String {
        format!("http://{}/o/{{key}}", self.addr)
    }

    /// How many times `key` was asked for.
    pub fn hits(&self, key: &str) -> usize {
        self.state.hits.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    /// Waits (bounded) until `key` has been asked for `n` times.
    pub async fn wait_hits(&self, key: &str, n: usize) {
        let mut asked = self.state.asked.subscribe();
        let wait = async {
            while self.hits(key) < n {
                asked.changed().await.unwrap();
            }
        };
        tokio::time::timeout(BOUND, wait)
            .await
            .expect("the origin was not asked in time");
    }

    /// Every `x-api-key` header received, in order.
    pub fn api_keys(&self) -> Vec<String> {
        self.state.api_keys.lock().unwrap().clone()
    }
}

async fn answer(State(s): State<Arc<OriginState>>, Path(key): Path<String>, headers: HeaderMap) -> Response {
    *s.hits.lock().unwrap().entry(key.clone()).or_default() += 1;
    s.asked.send_modify(|n| *n += 1);
    if let Some(v) = headers.get("x-api-key") {
        s.api_keys
            .lock()
            .unwrap()
            .push(v.to_str().unwrap_or("").to_string());
    }
    if key.starts_with("missing-") {
        return StatusCode::NOT_FOUND.into_response();
    }
    if key.starts_with("fail-") {
        return (StatusCode::INTERNAL_SERVER_ERROR, "db down").into_response();
    }
    if key.starts_with("hang-") {
        std::future::pending::<()>().await;
    }
    if key.starts_with("big-") {
        return vec![b'x'; 64 << 10].into_response();
    }
    if key.starts_with("nostore-") {
        return ([(header::CACHE_CONTROL, "no-store")], format!("value of {key}")).into_response();
    }
    if key.starts_with("hour-") {
        return (
            [(header::CACHE_CONTROL, "public, max-age=3600")],
            format!("value of {key}"),
        )
            .into_response();
    }
    format!("value of {key}").into_response()
}
