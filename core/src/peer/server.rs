//! The server side: serves the keys this node owns to its peers, and starts and stops
//! the gRPC server that does it.
//!
//! A request names a group; an unknown group is `NOT_FOUND` without a kind (the caller
//! treats it as a peer failure and loads locally). Keys and values are checked against
//! the group's limits before anything else happens. Gets arriving here are never
//! forwarded again (see `Group::serve_get`).

use std::sync::Weak;

use bytes::Bytes;
use futures_util::future::join_all;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use super::pb;
use super::pb::peer_server::{Peer, PeerServer};
use crate::entry::Entry;
use crate::error::{Error, ErrorKind, Result};
use crate::group::Group;
use crate::registry::Registry;

#[derive(Debug)]
pub(crate) struct PeerService {
    /// The groups served, as the cluster registers them. Weak: a dropped cluster's
    /// groups go with it, and requests then see a node shutting down.
    registry: Weak<Registry>,
    /// Largest response body: a `GetMany` answer stops adding values past it.
    max_message_size: usize,
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
}

/// A running peer server: stopped by [`Server::shutdown`] (or when dropped).
#[derive(Debug)]
pub(crate) struct Server {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<Result<()>>>>,
}

/// Serves `registry`'s groups and the `grpc.health.v1` service on `listener`, on
/// `runtime`, until [`Server::shutdown`].
pub(crate) async fn serve(
    listener: TcpListener,
    registry: Weak<Registry>,
    max_message_size: usize,
    runtime: &Handle,
) -> Server {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PeerServer<PeerService>>().await;
    let service = PeerServer::new(PeerService {
        registry,
        max_message_size,
    })
    .max_decoding_message_size(max_message_size)
    .max_encoding_message_size(max_message_size);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (tx, rx) = oneshot::channel::<()>();
    let task = runtime.spawn(async move {
        let result = tonic::transport::Server::builder()
            // Large values in GetMany answers must not stall on 64 KiB windows.
            .initial_stream_window_size(Some(2 << 20))
            .initial_connection_window_size(Some(8 << 20))
            .max_frame_size(Some(256 << 10))
            .add_service(health_service)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = rx.await;
                health.set_not_serving::<PeerServer<PeerService>>().await;
            })
            .await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "meshcache peer server stopped");
        }
        result.map_err(|e| Error::new(ErrorKind::Peer, format!("peer server failed: {e}")))
    });
    Server {
        stop: Mutex::new(Some(tx)),
        task: tokio::sync::Mutex::new(Some(task)),
    }
}

impl Server {
    /// Asks the server to stop accepting, without waiting.
    pub(crate) fn stop(&self) {
        if let Some(tx) = self.stop.lock().take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server and waits until calls in flight have finished.
    ///
    /// # Errors
    ///
    /// The server's own error, if it failed while serving.
    pub(crate) async fn shutdown(&self) -> Result<()> {
        self.stop();
        match self.task.lock().await.take() {
            Some(t) => t
                .await
                .unwrap_or_else(|e| Err(Error::new(ErrorKind::Panic, format!("peer server task: {e}")))),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let req = request.into_inner();
        let group = self.group(&req.group)?;
        let entry = group.serve_get(req.key).await.map_err(|e| super::to_status(&e))?;
        Ok(Response::new(pb::GetResponse {
            found: entry.value.is_some(),
            value: entry.value.unwrap_or_default(),
            expire_at_ms: entry.deadline,
        }))
    }

    async fn get_many(
        &self,
        request: Request<pb::GetManyRequest>,
    ) -> Result<Response<pb::GetManyResponse>, Status> {
        let req = request.into_inner();
        let group = self.group(&req.group)?;
        let results = join_all(req.keys.into_iter().map(|key: Bytes| {
            let group = group.clone();
            async move {
                let r = group.serve_get(key.clone()).await;
                (key, r)
            }
        }))
        .await;
        // Values are added while the answer stays well inside the message limit; the rest
        // are marked omitted and the caller asks for them one by one.
        let mut budget = self.max_message_size / 2;
        let items = results
            .into_iter()
            .map(|(key, r)| match r {
                Ok(Entry {
                    value: Some(value), ..
                }) if value.len() + key.len() + 32 > budget => pb::Item {
                    key,
                    omitted: true,
                    ..Default::default()
                },
                Ok(Entry {
                    value: Some(value),
                    deadline,
                }) => {
                    budget -= value.len() + key.len() + 32;
                    pb::Item {
                        key,
                        found: true,
                        value,
                        expire_at_ms: deadline,
                        ..Default::default()
                    }
                }
                Ok(Entry {
                    value: None,
                    deadline,
                }) => pb::Item {
                    key,
                    expire_at_ms: deadline,
                    ..Default::default()
                },
                Err(e) => pb::Item {
                    key,
                    error_kind: e.kind().as_str().to_string(),
                    error_message: e.message().to_string(),
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(pb::GetManyResponse { items }))
    }

    async fn set(&self, request: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        let req = request.into_inner();
        let group = self.group(&req.group)?;
        group
            .serve_set(req.key, req.value, req.expire_at_ms)
            .map_err(|e| super::to_status(&e))?;
        Ok(Response::new(pb::SetResponse {}))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = request.into_inner();
        let group = self.group(&req.group)?;
        let removed = group.serve_delete(&req.key).map_err(|e| super::to_status(&e))?;
        Ok(Response::new(pb::DeleteResponse { removed }))
    }
}
