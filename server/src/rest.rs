//! The REST API, and the metrics and status routes on the same port.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/groups/{group}/keys/{key}` | 200, the value (`application/octet-stream`) |
//! | `PUT /v1/groups/{group}/keys/{key}?ttl=<secs>` | the body is the value; 204 |
//! | `DELETE /v1/groups/{group}/keys/{key}` | 204 |
//! | `POST /v1/groups/{group}/batch-get` | `{"keys": [...]}` → `{"values": {k: base64}, "missing": [...]}` |
//! | `GET /metrics` | Prometheus text (open, or `metrics_token`) |
//! | `GET /v1/status`, `/`, `/healthz`, `/readyz` | status JSON, status page, live, ready (open) |
//!
//! `{key}` is the rest of the path, percent-decoded to bytes (so it may hold any byte,
//! `/` included); an empty key is 400. The `/v1/groups` routes require
//! `Authorization: Bearer <http_token>` when one is configured (compared in constant
//! time). Errors are problem details ([`crate::problem`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use meshcache::{Cluster, Group, MAX_KEYS_PER_GET_MANY};
use percent_encoding::percent_decode_str;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::problem::Problem;

/// Most keys one batch get may ask for.
pub const MAX_BATCH_KEYS: usize = MAX_KEYS_PER_GET_MANY;
/// Longest time a client may take to send a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Content type of `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = [(&'static str, String); 2];

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    cluster: Cluster,
    groups: HashMap<String, Group>,
    http_token: Option<Secret>,
    metrics_token: Option<Secret>,
    draining: AtomicBool,
    registry: Registry,
    requests: Family<Labels, Counter>,
    rejected: Family<[(&'static str, String); 1], Counter>,
}

impl App {
    /// The state of the API of `cluster`, serving `groups`.
    pub fn new(
        cluster: Cluster,
        groups: Vec<Group>,
        http_token: Option<Secret>,
        metrics_token: Option<Secret>,
    ) -> Arc<Self> {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let rejected = Family::<[(&'static str, String); 1], Counter>::default();
        registry.register(
            "meshcache_http_requests",
            "REST requests of meshcached by operation and status code",
            requests.clone(),
        );
        registry.register(
            "meshcache_http_rejected_requests",
            "REST requests refused before any work: unauthenticated, too_large, too_many_keys",
            rejected.clone(),
        );
        Arc::new(App {
            cluster,
            groups: groups.into_iter().map(|g| (g.name().to_string(), g)).collect(),
            http_token,
            metrics_token,
            draining: AtomicBool::new(false),
            registry,
            requests,
            rejected,
        })
    }

    /// From now on `/readyz` answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    fn group(&self, name: &str) -> Result<&Group, Problem> {
        (self.groups.get(name)).ok_or_else(|| Problem::not_found(format!("no group named {name:?}")))
    }

    fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&[("reason", reason.to_string())])
            .inc();
    }

    /// The cluster's metrics followed by the API's, one exposition.
    fn metrics_text(&self) -> String {
        let mut text = self.cluster.metrics_text();
        if let Some(n) = text.rfind("# EOF") {
            text.truncate(n);
        }
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        let _ = prometheus_client::encoding::text::encode_eof(&mut text);
        text
    }
}

/// The router of the whole HTTP port.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route(
            "/v1/groups/{group}/keys/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/v1/groups/{group}/keys", any(empty_key))
        .route("/v1/groups/{group}/keys/", any(empty_key))
        .route("/v1/groups/{group}/batch-get", post(batch_get))
        .route_layer(middleware::from_fn_with_state(app.clone(), auth))
        .route_layer(middleware::from_fn_with_state(app.clone(), count));
    Router::new()
        .route("/", get(|| async { Html(meshcache::STATUS_PAGE) }))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(api)
        .fallback(|| async { Problem::not_found("no such path") })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .with_state(app)
}

/// `Authorization: Bearer <expected>`, compared in constant time.
fn bearer_ok(headers: &HeaderMap, expected: &Secret) -> bool {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let v = v.as_bytes();
    if v.len() < 7 || !v[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    bool::from(v[7..].ct_eq(expected.0.as_bytes()))
}

async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(t) = &app.http_token
        && !bearer_ok(req.headers(), t)
    {
        app.reject("unauthenticated");
        let what = match req.headers().contains_key(header::AUTHORIZATION) {
            true => "the bearer token is wrong",
            false => "this API needs Authorization: Bearer <http_token>",
        };
        return Problem::unauthorized(what).into_response();
    }
    next.run(req).await
}

/// Counts every API request by operation and status.
async fn count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let op = match (req.method(), req.uri().path().ends_with("/batch-get")) {
        (_, true) => "batch_get",
        (&Method::GET | &Method::HEAD, _) => "get",
        (&Method::PUT, _) => "put",
        (&Method::DELETE, _) => "delete",
        _ => "other",
    };
    let resp = next.run(req).await;
    let code = resp.status();
    if code == StatusCode::PAYLOAD_TOO_LARGE {
        app.reject("too_large");
    }
    app.requests
        .get_or_create(&[("op", op.to_string()), ("code", code.as_str().to_string())])
        .inc();
    resp
}

/// The group and the key of `/v1/groups/{group}/keys/{key}`, percent-decoded.
fn group_and_key(uri: &Uri) -> Result<(String, Vec<u8>), Problem> {
    let rest = (uri.path().strip_prefix("/v1/groups/")).ok_or_else(|| Problem::not_found("no such path"))?;
    let (group, key) = rest.split_once("/keys/").unwrap_or((rest, ""));
    let group = (percent_decode_str(group).decode_utf8())
        .map_err(|_| Problem::not_found("a group name is UTF-8"))?
        .into_owned();
    let key: Vec<u8> = percent_decode_str(key).collect();
    if key.is_empty() {
        return Err(Problem::invalid("the key is empty"));
    }
    Ok((group, key))
}

async fn empty_key() -> Problem {
    Problem::invalid("the key is empty: /v1/groups/{group}/keys/{key}")
}

async fn get_key(State(app): State<Arc<App>>, uri: Uri) -> Result<Response, Problem> {
    let (group, key) = group_and_key(&uri)?;
    let value = app.group(&group)?.get(&key).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response())
}

/// The `ttl` of a PUT's query string, in whole seconds.
fn ttl_param(query: Option<&str>) -> Result<Option<Duration>, Problem> {
    let mut ttl = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "ttl" {
            return Err(Problem::invalid(format!(
                "unknown query parameter {k:?} (only ttl)"
            )));
        }
        let secs: u64 = (v.parse().ok())
            .filter(|s| (1..=u64::from(u32::MAX)).contains(s))
            .ok_or_else(|| {
                Problem::invalid(format!("ttl={v:?}: give a whole number of seconds, at least 1"))
            })?;
        ttl = Some(Duration::from_secs(secs));
    }
    Ok(ttl)
}

/// The body, up to `limit` bytes (413 beyond), within [`BODY_TIMEOUT`].
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Problem> {
    let declared = (headers.get(header::CONTENT_LENGTH)).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        return Err(Problem::too_large(n, limit));
    }
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(Problem::too_large(format!("over {limit}"), limit)),
        Ok(Err(e)) => Err(Problem::invalid(format!("reading the body: {e}"))),
        Err(_) => Err(Problem {
            status: StatusCode::REQUEST_TIMEOUT,
            kind: "Timeout",
            detail: format!("the body did not arrive within {BODY_TIMEOUT:?}"),
        }),
    }
}

async fn put_key(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Problem> {
    let (group, key) = group_and_key(&uri)?;
    let g = app.group(&group)?;
    let ttl = ttl_param(uri.query())?;
    let value = read_body(&headers, body, g.limits().max_value_len).await?;
    g.set(&key, value, ttl).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_key(State(app): State<Arc<App>>, uri: Uri) -> Result<StatusCode, Problem> {
    let (group, key) = group_and_key(&uri)?;
    app.group(&group)?.delete(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    keys: Vec<String>,
}

async fn batch_get(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let group = (uri.path().strip_prefix("/v1/groups/"))
        .and_then(|r| r.strip_suffix("/batch-get"))
        .and_then(|g| percent_decode_str(g).decode_utf8().ok())
        .ok_or_else(|| Problem::not_found("no such path"))?;
    let g = app.group(&group)?;
    // Room for the most keys of the longest length, each char escaped as \uXXXX.
    let limit = MAX_BATCH_KEYS * (g.limits().max_key_len * 6 + 8) + 4096;
    let body = read_body(&headers, body, limit).await?;
    let req: BatchRequest = serde_json::from_slice(&body)
        .map_err(|e| Problem::invalid(format!("the body is not {{\"keys\": [\"...\"]}}: {e}")))?;
    if req.keys.len() > MAX_BATCH_KEYS {
        app.reject("too_many_keys");
        return Err(Problem::invalid(format!(
            "{} keys: a batch get takes at most {MAX_BATCH_KEYS}",
            req.keys.len()
        )));
    }
    let found = g.get_many(&req.keys).await?;
    let mut values = serde_json::Map::with_capacity(found.len());
    for (k, v) in &found {
        let k = String::from_utf8_lossy(k).into_owned();
        values.insert(k, base64::engine::general_purpose::STANDARD.encode(v).into());
    }
    let mut seen = HashSet::with_capacity(req.keys.len());
    let missing: Vec<&String> = (req.keys.iter())
        .filter(|k| !values.contains_key(k.as_str()) && seen.insert(k.as_str()))
        .collect();
    Ok(axum::Json(serde_json::json!({ "values": values, "missing": missing })).into_response())
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(t) = &app.metrics_token
        && !bearer_ok(&headers, t)
    {
        app.reject("unauthenticated");
        return Problem::unauthorized("/metrics needs Authorization: Bearer <metrics_token>").into_response();
    }
    ([(header::CONTENT_TYPE, OPENMETRICS)], app.metrics_text()).into_response()
}

async fn status(State(app): State<Arc<App>>) -> Response {
    axum::Json(app.cluster.status_json()).into_response()
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let ring = app.cluster.stats().ring;
    let me = app.cluster.advertise_addr();
    let serving = !app.draining.load(Ordering::Acquire)
        && !app.cluster.is_closed()
        && ring.healthy
        && ring.members.iter().any(|m| m == me);
    match serving {
        true => "ready\n".into_response(),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not serving\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_decoded_bytes() {
        let uri: Uri = "/v1/groups/users/keys/a%2Fb/c%FF".parse().unwrap();
        let (g, k) = group_and_key(&uri).unwrap();
        assert_eq!(g, "users");
        assert_eq!(k, b"a/b/c\xff");
        let uri: Uri = "/v1/groups/users/keys/".parse().unwrap();
        assert_eq!(group_and_key(&uri).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn ttl_is_whole_seconds() {
        assert_eq!(ttl_param(None).unwrap(), None);
        assert_eq!(ttl_param(Some("ttl=60")).unwrap(), Some(Duration::from_secs(60)));
        for bad in [
            "ttl=0",
            "ttl=-1",
            "ttl=1.5",
            "ttl=",
            "tll=5",
            "ttl=99999999999999",
        ] {
            assert_eq!(
                ttl_param(Some(bad)).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let t = Secret("s3cret".into());
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, v.parse().unwrap());
            m
        };
        assert!(bearer_ok(&h("Bearer s3cret"), &t));
        assert!(bearer_ok(&h("bearer s3cret"), &t));
        assert!(!bearer_ok(&h("Bearer s3cre"), &t));
        assert!(!bearer_ok(&h("Basic s3cret"), &t));
        assert!(!bearer_ok(&HeaderMap::new(), &t));
    }
}
