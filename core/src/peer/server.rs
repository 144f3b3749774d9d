//! The server side: serves the keys this node owns to its peers, and starts and stops
//! the gRPC server that does it.
//!
//! A request names a group; an unknown group is `NOT_FOUND` without a kind (the caller
//! treats it as a peer failure and loads locally). Keys and values are checked against
//! the group's limits before anything else happens. Gets arriving here are never
//! forwarded again (see `Group::serve_get`).
//!
//! # Bounded work
//!
//! Before a request costs anything it passes the token check (`auth.rs`) and the node's
//! limit on requests in flight from peers. A `GetMany` carries at most
//! [`MAX_KEYS_PER_GET_MANY`] keys, answers each distinct key once however often it is
//! repeated, and keeps its answer inside the message limit counting keys and per-item
//! overhead, not only values. Connections are guarded by `conn.rs`, and shutdown waits
//! for calls in flight only for its grace period.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::auth::{Check, Tokens};
use super::conn::{Busy, ConnCounters, ConnInfo, ConnLimits, Incoming};
use super::listen::{Router, accept_loop};
use super::pb;
use super::pb::peer_server::{Peer, PeerServer};
use crate::entry::Entry;
use crate::error::{Error, ErrorKind, Result};
use crate::group::Group;
use crate::registry::Registry;
use crate::route::Stamp;

/// Most keys one `GetMany` may carry; clients split larger batches.
pub const MAX_KEYS_PER_GET_MANY: usize = 1000;
/// What an answer item costs beyond its key and value (tags, lengths, flags, expiry).
const ITEM_OVERHEAD: usize = 32;
/// Longest error message put in a `GetMany` item.
const MAX_ITEM_MESSAGE: usize = 256;
/// What one key costs an answer before its value: the key, the item's fields, and room
/// for an error message. A `GetMany`'s keys may cost at most half the message limit.
pub(crate) fn key_cost(key_len: usize) -> usize {
    key_len + ITEM_OVERHEAD + MAX_ITEM_MESSAGE
}

/// How long shutdown waits for connections after the grace period has closed them.
const AFTER_GRACE: Duration = Duration::from_secs(1);

/// How the server runs: limits, token, TLS.
#[derive(Debug, Clone)]
pub(crate) struct ServeOptions {
    pub(crate) max_message_size: usize,
    pub(crate) conn: ConnLimits,
    pub(crate) tokens: Tokens,
    /// TLS for both protocols (terminated by `listen.rs`).
    pub(crate) tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// HTTP/2 streams one connection may have open at once.
    pub(crate) max_streams_per_connection: u32,
    /// Requests from peers this node works on at once; more are refused
    /// (`RESOURCE_EXHAUSTED`), and their callers fall back.
    pub(crate) max_peer_requests: usize,
    /// Server pings every this often; a client that does not answer within
    /// `keepalive_timeout` is dropped.
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
}

/// How long a leaving node must go without peer requests before it stops serving.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// Counters of the server: refusals and connection events.
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    pub(crate) unauthenticated: Arc<AtomicU64>,
    pub(crate) overloaded: AtomicU64,
    pub(crate) too_many_keys: AtomicU64,
    pub(crate) conn: Arc<ConnCounters>,
    /// Requests admitted so far (a leaving node waits for them to stop coming).
    pub(crate) admitted: AtomicU64,
}

/// A snapshot of a node's server counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    /// Calls refused for a missing or wrong cluster token.
    pub rejected_unauthenticated: u64,
    /// Calls refused because the node had as many peer requests in flight as it allows.
    pub rejected_overloaded: u64,
    /// `GetMany` calls refused for carrying more keys (or key bytes) than one answer may.
    pub rejected_too_many_keys: u64,
    /// Accept errors (such as running out of file descriptors), each followed by a pause.
    pub accept_errors: u64,
    /// Connections closed for not sending their first bytes in time.
    pub handshake_timeouts: u64,
    /// Connections closed after serving no request for the idle timeout.
    pub idle_closed: u64,
    /// Connections still open when shutdown's grace period ended, then closed.
    pub closed_at_shutdown: u64,
    /// Connections refused for speaking plaintext to a TLS port, or TLS to a plaintext one.
    pub rejected_protocol_mismatch: u64,
}

impl ServerStats {
    /// The counters by name, in the order every language lists them.
    pub fn fields(&self) -> [(&'static str, u64); 8] {
        [
            ("rejected_unauthenticated", self.rejected_unauthenticated),
            ("rejected_overloaded", self.rejected_overloaded),
            ("rejected_too_many_keys", self.rejected_too_many_keys),
            ("accept_errors", self.accept_errors),
            ("handshake_timeouts", self.handshake_timeouts),
            ("idle_closed", self.idle_closed),
            ("closed_at_shutdown", self.closed_at_shutdown),
            ("rejected_protocol_mismatch", self.rejected_protocol_mismatch),
        ]
    }
}

impl ServerCounters {
    pub(crate) fn snapshot(&self) -> ServerStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStats {
            rejected_unauthenticated: l(&self.unauthenticated),
            rejected_overloaded: l(&self.overloaded),
            rejected_too_many_keys: l(&self.too_many_keys),
            accept_errors: l(&self.conn.accept_errors),
            handshake_timeouts: l(&self.conn.handshake_timeouts),
            idle_closed: l(&self.conn.idle_closed),
            closed_at_shutdown: l(&self.conn.killed),
            rejected_protocol_mismatch: l(&self.conn.protocol_mismatch),
        }
    }
}

#[derive(Debug)]
pub(crate) struct PeerService {
    /// The groups served, as the cluster registers them. Weak: a dropped cluster's
    /// groups go with it, and requests then see a node shutting down.
    registry: Weak<Registry>,
    /// Largest response body: a `GetMany` answer stops adding values past it.
    max_message_size: usize,
    /// Peer requests in flight on this node.
    in_flight: Arc<Semaphore>,
    pub(crate) counters: Arc<ServerCounters>,
    /// The token check, for the native framing's hello (gRPC runs it as an interceptor).
    auth: Check,
}

/// What a request holds while it is served.
struct Serving {
    _permit: OwnedSemaphorePermit,
    _busy: Option<Busy>,
}

impl PeerService {
    fn group(&self, name: &str) -> Result<Group, Status> {
        let registry = self
            .registry
            .upgrade()
            .ok_or_else(|| Status::unavailable("node is shutting down"))?;
        registry
            .get(name)
            .ok_or_else(|| Status::not_found(format!("unknown group {name:?}")))
    }

    pub(crate) fn auth(&self) -> &Check {
        &self.auth
    }

    pub(crate) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Admits a request: a slot among the node's peer requests, and its connection
    /// marked busy (so an idle timeout never cuts it).
    fn admit(&self, info: Option<&ConnInfo>) -> Result<Serving, Status> {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(
                "node is serving as many peer requests as it allows",
            ));
        };
        self.counters.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(Serving {
            _permit: permit,
            _busy: info.map(|i| i.activity.begin()),
        })
    }
}

/// A running peer server: stopped by [`Server::shutdown`] (or when dropped).
#[derive(Debug)]
pub(crate) struct Server {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<Result<()>>>>,
    /// Fails every connection's reads and writes: shutdown's last word.
    kill: CancellationToken,
    /// Stops accepting, and every native connection between two calls.
    stopping: CancellationToken,
    counters: Arc<ServerCounters>,
}

/// Serves `registry`'s groups and the `grpc.health.v1` service on `listener`, on
/// `runtime`, until [`Server::shutdown`].
///
/// # Errors
///
/// `InvalidArgument` if the TLS configuration is unusable.
pub(crate) async fn serve(
    listener: TcpListener,
    registry: Weak<Registry>,
    opts: ServeOptions,
    runtime: &Handle,
) -> Result<Server> {
    let counters = Arc::new(ServerCounters::default());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PeerServer<PeerService>>().await;
    let auth = opts.tokens.check(counters.unauthenticated.clone());
    let service = Arc::new(PeerService {
        registry,
        max_message_size: opts.max_message_size,
        in_flight: Arc::new(Semaphore::new(opts.max_peer_requests)),
        counters: counters.clone(),
        auth: auth.clone(),
    });
    let grpc_service = PeerServer::from_arc(service.clone())
        .max_decoding_message_size(opts.max_message_size)
        .max_encoding_message_size(opts.max_message_size);
    // The token guards the peer service only: health checks stay open.
    let grpc_service = tonic::service::interceptor::InterceptedService::new(grpc_service, auth);
    let kill = CancellationToken::new();
    let stopping = CancellationToken::new();
    let incoming = Incoming::new(listener, kill.clone(), opts.conn, counters.conn.clone());
    let (grpc_tx, mut grpc_rx) = tokio::sync::mpsc::channel(64);
    let router = Arc::new(Router {
        tls: opts.tls.map(tokio_rustls::TlsAcceptor::from),
        service,
        grpc: grpc_tx,
        handshake_timeout: opts.conn.handshake_timeout,
        stop: stopping.clone(),
    });
    let tracker = TaskTracker::new();
    runtime.spawn(accept_loop(incoming, router, tracker.clone()));
    let grpc_incoming = futures_util::stream::poll_fn(move |cx| grpc_rx.poll_recv(cx));
    let grpc = tonic::transport::Server::builder()
        // Large values in GetMany answers must not stall on 64 KiB windows.
        .initial_stream_window_size(Some(2 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .max_frame_size(Some(256 << 10))
        .max_concurrent_streams(Some(opts.max_streams_per_connection))
        .http2_keepalive_interval(Some(opts.keepalive_interval))
        .http2_keepalive_timeout(Some(opts.keepalive_timeout))
        .add_service(health_service)
        .add_service(grpc_service);
    let (tx, rx) = oneshot::channel::<()>();
    let task = runtime.spawn(async move {
        let result = grpc
            .serve_with_incoming_shutdown(grpc_incoming, async move {
                let _ = rx.await;
                health.set_not_serving::<PeerServer<PeerService>>().await;
            })
            .await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "meshcache peer server stopped");
        }
        // The native connections end between calls once stopping; wait for them too.
        tracker.wait().await;
        result.map_err(|e| Error::new(ErrorKind::Peer, format!("peer server failed: {e}")))
    });
    Ok(Server {
        stop: Mutex::new(Some(tx)),
        task: tokio::sync::Mutex::new(Some(task)),
        kill,
        stopping,
        counters,
    })
}

impl Server {
    /// Asks the server to stop accepting, without waiting.
    pub(crate) fn stop(&self) {
        if let Some(tx) = self.stop.lock().take() {
            let _ = tx.send(());
        }
        self.stopping.cancel();
    }

    /// The server's counters.
    pub(crate) fn stats(&self) -> ServerStats {
        self.counters.snapshot()
    }

    /// Waits until no request has come for [`DRAIN_QUIET`], for at most `limit`: a node
    /// that has left the ring keeps answering the peers whose rings still name it.
    pub(crate) async fn until_quiet(&self, limit: Duration) {
        let start = tokio::time::Instant::now();
        let mut seen = self.counters.admitted.load(Ordering::Relaxed);
        while start.elapsed() < limit {
            tokio::time::sleep(DRAIN_QUIET.min(limit)).await;
            let now = self.counters.admitted.load(Ordering::Relaxed);
            if now == seen {
                return;
            }
            seen = now;
        }
    }

    /// Stops accepting, lets calls in flight finish for up to `grace`, then closes every
    /// connection still open. Always returns: a connection whose client is stopped,
    /// idle or silent cannot hold it.
    ///
    /// # Errors
    ///
    /// The server's own error, if it failed while serving.
    pub(crate) async fn shutdown(&self, grace: Duration) -> Result<()> {
        self.stop();
        let Some(mut task) = self.task.lock().await.take() else {
            return Ok(());
        };
        let joined = |r: std::result::Result<Result<()>, tokio::task::JoinError>| {
            r.unwrap_or_else(|e| Err(Error::new(ErrorKind::Panic, format!("peer server task: {e}"))))
        };
        if let Ok(r) = tokio::time::timeout(grace, &mut task).await {
            return joined(r);
        }
        tracing::info!(
            ?grace,
            "meshcache peer server: grace period over, closing connections"
        );
        self.kill.cancel();
        match tokio::time::timeout(AFTER_GRACE, &mut task).await {
            Ok(r) => joined(r),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        self.kill.cancel();
    }
}

/// One `GetMany` answer item.
fn item(key: Bytes, r: &Result<Entry>, room: &mut usize) -> pb::Item {
    match r {
        Ok(Entry {
            value: Some(value),
            deadline,
            version,
        }) => {
            if value.len() > *room {
                // Left out to keep the answer inside the message limit: the caller asks
                // for it on its own.
                return pb::Item {
                    key,
                    omitted: true,
                    ..Default::default()
                };
            }
            *room -= value.len();
            pb::Item {
                key,
                found: true,
                value: value.clone(),
                expire_at_ms: *deadline,
                version: *version,
                ..Default::default()
            }
        }
        Ok(Entry {
            value: None,
            deadline,
            version,
        }) => pb::Item {
            key,
            expire_at_ms: *deadline,
            version: *version,
            ..Default::default()
        },
        Err(e) => {
            let mut message = e.message().to_string();
            if message.len() > MAX_ITEM_MESSAGE {
                let mut end = MAX_ITEM_MESSAGE;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            pb::Item {
                key,
                error_kind: e.kind().as_str().to_string(),
                error_message: message,
                ..Default::default()
            }
        }
    }
}

/// The connection a gRPC request came on.
fn conn_info<T>(request: &Request<T>) -> Option<ConnInfo> {
    request.extensions().get::<ConnInfo>().cloned()
}

/// The peer protocol over gRPC: each call goes to the handler the native framing uses.
#[tonic::async_trait]
impl Peer for PeerService {
    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let info = conn_info(&request);
        Ok(Response::new(
            self.handle_get(info.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn get_many(
        &self,
        request: Request<pb::GetManyRequest>,
    ) -> Result<Response<pb::GetManyResponse>, Status> {
        let info = conn_info(&request);
        Ok(Response::new(
            self.handle_get_many(info.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn set(&self, request: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        let info = conn_info(&request);
        Ok(Response::new(
            self.handle_set(info.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let info = conn_info(&request);
        Ok(Response::new(
            self.handle_delete(info.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn handoff(
        &self,
        request: Request<tonic::Streaming<pb::HandoffBatch>>,
    ) -> Result<Response<pb::HandoffResponse>, Status> {
        let _serving = self.admit(conn_info(&request).as_ref())?;
        let mut stream = request.into_inner();
        let (mut accepted, mut total) = (0, 0);
        while let Some(batch) = stream.message().await? {
            let group = self.group(&batch.group)?;
            total += batch.entries.len() as u64;
            // Own bytes: a cached entry must not keep the message buffer alive.
            accepted += group.accept_handoff(batch.entries.into_iter().map(|e| {
                let value = e.found.then(|| Bytes::copy_from_slice(&e.value));
                let entry = Entry {
                    value,
                    deadline: e.expire_at_ms,
                    version: e.version,
                };
                (Bytes::copy_from_slice(&e.key), entry)
            }));
        }
        Ok(Response::new(pb::HandoffResponse {
            accepted,
            refused: total - accepted,
        }))
    }
}

/// The handlers behind both protocols: admission, limits and the group's answer.
impl PeerService {
    pub(crate) async fn handle_get(
        &self,
        info: Option<&ConnInfo>,
        req: pb::GetRequest,
    ) -> Result<pb::GetResponse, Status> {
        let _serving = self.admit(info)?;
        let group = self.group(&req.group)?;
        // Its own bytes: a cached key must not keep the request buffer alive.
        let key = Bytes::copy_from_slice(&req.key);
        let entry = if req.peek {
            match group.serve_peek(&key).map_err(|e| super::to_status(&e))? {
                Some(entry) => entry,
                None => {
                    return Ok(pb::GetResponse {
                        absent: true,
                        ..Default::default()
                    });
                }
            }
        } else {
            group.serve_get(key).await.map_err(|e| super::to_status(&e))?
        };
        Ok(pb::GetResponse {
            found: entry.value.is_some(),
            value: entry.value.unwrap_or_default(),
            expire_at_ms: entry.deadline,
            version: entry.version,
            absent: false,
        })
    }

    pub(crate) async fn handle_get_many(
        &self,
        info: Option<&ConnInfo>,
        req: pb::GetManyRequest,
    ) -> Result<pb::GetManyResponse, Status> {
        let _serving = self.admit(info)?;
        if req.keys.len() > MAX_KEYS_PER_GET_MANY {
            self.counters.too_many_keys.fetch_add(1, Ordering::Relaxed);
            return Err(super::to_status(&Error::invalid(format!(
                "GetMany with {} keys: at most {MAX_KEYS_PER_GET_MANY} per call",
                req.keys.len()
            ))));
        }
        // Every item repeats its key: keys that cannot fit in one answer are refused
        // before any work (the client's split, by count, keeps within this by default).
        let fixed: usize = req.keys.iter().map(|k| key_cost(k.len())).sum();
        if fixed > self.max_message_size / 2 {
            self.counters.too_many_keys.fetch_add(1, Ordering::Relaxed);
            return Err(super::to_status(&Error::invalid(format!(
                "GetMany keys would need {fixed} bytes of answer, over half the {} byte message limit",
                self.max_message_size
            ))));
        }
        let group = self.group(&req.group)?;
        // The answer stays well inside the message limit: every item's key and overhead
        // are counted first, and values fill what is left; values that do not fit are
        // marked omitted and the caller asks for them one by one.
        let mut room = (self.max_message_size / 2).saturating_sub(fixed);
        // Each distinct key is served once, however often it is repeated.
        let mut first: HashMap<&Bytes, usize> = HashMap::with_capacity(req.keys.len());
        let mut distinct: Vec<Bytes> = Vec::new();
        let slots: Vec<usize> = req
            .keys
            .iter()
            .map(|k| {
                *first.entry(k).or_insert_with(|| {
                    // A key cached here must not hold on to the whole request buffer it
                    // was decoded from (a slice of it would): it gets its own bytes.
                    distinct.push(Bytes::copy_from_slice(k));
                    distinct.len() - 1
                })
            })
            .collect();
        if req.peek {
            let items = (req.keys.into_iter().zip(slots))
                .map(|(key, slot)| match group.serve_peek(&distinct[slot]) {
                    Ok(None) => pb::Item {
                        key,
                        absent: true,
                        ..Default::default()
                    },
                    Ok(Some(e)) => item(key, &Ok(e), &mut room),
                    Err(e) => item(key, &Err(e), &mut room),
                })
                .collect();
            return Ok(pb::GetManyResponse { items });
        }
        let results = join_all(distinct.into_iter().map(|key| {
            let group = group.clone();
            async move { group.serve_get(key).await }
        }))
        .await;
        let items = req
            .keys
            .into_iter()
            .zip(slots)
            .map(|(key, slot)| item(key, &results[slot], &mut room))
            .collect();
        Ok(pb::GetManyResponse { items })
    }

    pub(crate) async fn handle_set(
        &self,
        info: Option<&ConnInfo>,
        req: pb::SetRequest,
    ) -> Result<pb::SetResponse, Status> {
        let _serving = self.admit(info)?;
        let group = self.group(&req.group)?;
        // Own bytes for what is cached (the request buffer may be larger than both).
        group
            .serve_set(
                Bytes::copy_from_slice(&req.key),
                Bytes::copy_from_slice(&req.value),
                req.expire_at_ms,
                Stamp {
                    version: req.version,
                    replica: req.replica,
                    tombstone: false,
                },
            )
            .map_err(|e| super::to_status(&e))?;
        Ok(pb::SetResponse {})
    }

    pub(crate) async fn handle_delete(
        &self,
        info: Option<&ConnInfo>,
        req: pb::DeleteRequest,
    ) -> Result<pb::DeleteResponse, Status> {
        let _serving = self.admit(info)?;
        let group = self.group(&req.group)?;
        let stamp = Stamp {
            version: req.version,
            replica: false,
            tombstone: req.tombstone,
        };
        let removed = group
            .serve_delete(&req.key, stamp)
            .map_err(|e| super::to_status(&e))?;
        Ok(pb::DeleteResponse { removed })
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
