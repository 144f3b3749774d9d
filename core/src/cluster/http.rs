//! The metrics and status server of a node (`metrics_listen`): `/metrics` (Prometheus),
//! `/v1/status` (JSON), `/` (a self-contained status page that reads `/v1/status`),
//! `/healthz` (the process is up) and `/readyz` (the node is on the ring and serving).
//!
//! Read-only, and bounded per request: every answer is built from the stats snapshots
//! (no key is ever listed), so a request costs the same whatever it asks for; unknown
//! paths are 404. It binds its own address, separate from the peer port, so that it can
//! be exposed to Prometheus without exposing the cache.

use std::net::SocketAddr;
use std::sync::Weak;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::ClusterInner;

/// The status page: HTML, CSS and script in one file, no CDN. It reads `v1/status`
/// relative to where it is served (see [`crate::Cluster::status_json`]).
pub const STATUS_PAGE: &str = include_str!("status.html");

/// How long a stopping metrics server lets a scrape in flight finish.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// A running metrics server; stops when told or dropped.
#[derive(Debug)]
pub(crate) struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// Told once the listener is closed.
    closed: Option<oneshot::Receiver<()>>,
}

impl HttpServer {
    /// Serves on `listener` for the cluster behind `cluster`, on the current runtime.
    pub(crate) fn start(
        listener: tokio::net::TcpListener,
        cluster: Weak<ClusterInner>,
        runtime: &tokio::runtime::Handle,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/", get(page))
            .route("/metrics", get(metrics))
            .route("/v1/status", get(status))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(cluster);
        let (tx, rx) = oneshot::channel::<()>();
        let stop = async {
            let _ = rx.await;
        };
        let (closed_tx, closed) = oneshot::channel::<()>();
        runtime.spawn(crate::http_server::serve_and_tell(
            listener,
            app,
            stop,
            STOP_GRACE,
            Some(closed_tx),
        ));
        Ok(HttpServer {
            addr,
            stop: Some(tx),
            closed: Some(closed),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server; returns once its port refuses new connections.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(closed) = self.closed.take() {
            let _ = closed.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

type Cluster = State<Weak<ClusterInner>>;

fn gone() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down\n").into_response()
}

async fn page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

async fn metrics(State(c): Cluster) -> Response {
    let Some(c) = c.upgrade() else { return gone() };
    let text = c.metrics.get().map(|m| m.text()).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn ready(State(c): Cluster) -> Response {
    let Some(c) = c.upgrade() else { return gone() };
    let ring = c.membership.stats();
    let closed = c.closed.load(std::sync::atomic::Ordering::Acquire);
    if closed || !ring.healthy || !ring.members.iter().any(|m| m == c.membership.self_addr()) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not serving\n").into_response();
    }
    "ready\n".into_response()
}

async fn status(State(c): Cluster) -> Response {
    let Some(c) = c.upgrade() else { return gone() };
    Json(status_json(&c)).into_response()
}

/// What `/v1/status` answers (and the status page shows).
pub(crate) fn status_json(c: &ClusterInner) -> Value {
    let ring = c.membership.stats();
    // The live ring's own shares (its vnodes and hash), not a ring rebuilt from the names.
    let shares = c.membership.shares();
    let members: Vec<Value> = (ring.members.iter().zip(shares))
        .map(|(m, share)| json!({ "addr": m, "share": share }))
        .collect();
    let peers: Vec<Value> = (c.membership.clients().iter())
        .map(|p| {
            let mut v = json!({ "addr": p.addr(), "breaker": p.breaker_state().as_str() });
            for (k, n) in p.stats().fields() {
                v[k] = json!(n);
            }
            v
        })
        .collect();
    let groups: Vec<Value> = (c.registry.groups().iter())
        .map(|g| {
            let s = g.stats();
            let mut v = json!({ "name": g.name() });
            for (k, n) in s.counters() {
                v[k] = json!(n);
            }
            for (tier, t) in s.tiers() {
                let mut tv = json!({});
                for (k, n) in t.fields() {
                    tv[k] = json!(n);
                }
                v[tier] = tv;
            }
            v
        })
        .collect();
    json!({
        "node": c.membership.self_addr(),
        "ring": {
            "source": ring.source,
            "members": members,
            "epoch": ring.epoch,
            "changed_at_ms": ring.changed_at_ms,
            "healthy": ring.healthy,
            "error": ring.error,
        },
        "peers": peers,
        "groups": groups,
    })
}
