//! The server side: serves the keys this node owns to its peers.
//!
//! A request names a group; an unknown group is `NOT_FOUND` without a kind (the caller
//! treats it as a peer failure and loads locally). Keys and values are checked against
//! the group's limits before anything else happens. Gets arriving here are never
//! forwarded again (see `Group::serve_get`).

use std::sync::Weak;

use bytes::Bytes;
use futures_util::future::join_all;
use tonic::{Request, Response, Status};

use super::pb;
use super::pb::peer_server::Peer;
use crate::cluster::ClusterInner;
use crate::group::Group;

#[derive(Debug)]
pub(crate) struct PeerService {
    pub(crate) cluster: Weak<ClusterInner>,
    /// Largest response body: a `GetMany` answer stops adding values past it.
    pub(crate) max_message_size: usize,
}

impl PeerService {
    fn group(&self, name: &str) -> Result<Group, Status> {
        let cluster = self
            .cluster
            .upgrade()
            .ok_or_else(|| Status::unavailable("node is shutting down"))?;
        cluster
            .group_by_name(name)
            .ok_or_else(|| Status::not_found(format!("unknown group {name:?}")))
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let req = request.into_inner();
        let group = self.group(&req.group)?;
        let found = group.serve_get(req.key).await.map_err(|e| super::to_status(&e))?;
        Ok(Response::new(match found {
            Some(f) => pb::GetResponse {
                found: true,
                value: f.value,
                expire_at_ms: f.deadline,
            },
            None => pb::GetResponse::default(),
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
                Ok(Some(f)) if f.value.len() + key.len() + 32 > budget => pb::Item {
                    key,
                    omitted: true,
                    ..Default::default()
                },
                Ok(Some(f)) => {
                    budget -= f.value.len() + key.len() + 32;
                    pb::Item {
                        key,
                        found: true,
                        value: f.value,
                        expire_at_ms: f.deadline,
                        ..Default::default()
                    }
                }
                Ok(None) => pb::Item {
                    key,
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
