//! The client side: the native framing's connections to each peer (or, with
//! [`PeerProtocol::Grpc`], one reused HTTP/2 channel), a deadline on every call,
//! retries with backoff for idempotent calls on connection failures, and a circuit
//! breaker so a dead peer costs no timeout per request. A graceful leave's handoff
//! streams over gRPC whichever protocol the calls use.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Response, Status};

use super::auth::{Attach, Tokens};
use super::breaker::{Breaker, BreakerState};
use super::pb;
use super::pb::peer_client::PeerClient as RawClient;
use super::server::{MAX_KEYS_PER_GET_MANY, key_cost};
use super::wire::method;
use super::wire_client::{WireClient, WireTls};
use crate::entry::Entry;
use crate::error::{Error, ErrorKind, Result};
use crate::route::{BoxFuture, Remote, Stamp};

/// How a node talks to its peers. See [`crate::ClusterBuilder`] for the defaults.
#[derive(Debug, Clone)]
pub(crate) struct PeerOptions {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) max_message_size: usize,
    /// The cluster token sent on every call.
    pub(crate) tokens: Tokens,
    /// TLS to peers (`https`), when configured.
    pub(crate) tls: Option<ClientTlsConfig>,
    /// The same TLS for the native framing.
    pub(crate) wire_tls: Option<WireTls>,
    /// How calls travel.
    pub(crate) protocol: PeerProtocol,
    /// Where each call's duration goes (the cluster's metrics).
    pub(crate) latency: crate::cluster::PeerLatency,
}

type Transport = InterceptedService<Channel, Attach>;

/// How a node's calls to its peers travel. Either way they carry the same protobuf
/// messages to the same port, with the same token and TLS; a node serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PeerProtocol {
    /// meshcache's native framing: the messages in length-prefixed frames over pooled
    /// connections, one call per connection at a time. About half the round trip of
    /// gRPC (see BENCHMARKS.md). The default.
    #[default]
    Native,
    /// gRPC over HTTP/2 (tonic), as foreign clients and tools use the port: for a
    /// network whose proxies pass only HTTP/2 between the nodes.
    Grpc,
}

/// Records a call's duration in the latency histogram when the call ends, however.
struct Timed<'a>(&'a crate::cluster::PeerLatency, &'a str, std::time::Instant);

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        self.0.observe(self.1, self.2.elapsed());
    }
}

/// `GetMany` chunks of one large batch in flight at once.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Counters of the calls to one peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    /// Calls sent (each retry counts).
    pub requests: u64,
    /// Calls that got an answer (including application errors such as a failed load).
    pub successes: u64,
    /// Calls that failed to reach the peer or timed out.
    pub failures: u64,
    /// Of those, calls that hit their deadline.
    pub timeouts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Calls refused at once because the breaker was open.
    pub rejected: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
}

impl PeerStats {
    /// The counters by name, in the order every language lists them.
    pub fn fields(&self) -> [(&'static str, u64); 7] {
        [
            ("requests", self.requests),
            ("successes", self.successes),
            ("failures", self.failures),
            ("timeouts", self.timeouts),
            ("retries", self.retries),
            ("rejected", self.rejected),
            ("breaker_opened", self.breaker_opened),
        ]
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    retries: AtomicU64,
    rejected: AtomicU64,
}

/// One peer: its address, channel, breaker and counters.
#[derive(Debug)]
pub(crate) struct PeerClient {
    addr: String,
    client: RawClient<Transport>,
    /// The native framing's connections, unless the protocol is gRPC.
    wire: Option<WireClient>,
    breaker: Breaker,
    opts: PeerOptions,
    counters: Counters,
}

impl PeerClient {
    /// A client for `addr` (`host:port`). Connects lazily; must be called inside a runtime.
    pub(crate) fn new(addr: &str, opts: PeerOptions) -> Result<Self> {
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| Error::invalid(format!("bad peer address {addr:?}: {e}")))?
            .connect_timeout(opts.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .initial_stream_window_size(2 << 20)
            .initial_connection_window_size(8 << 20)
            // Fewer, larger DATA frames for large values and coalesced answers.
            .max_frame_size(256 << 10);
        if let Some(tls) = &opts.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| Error::invalid(format!("TLS configuration for peer {addr}: {e}")))?;
        }
        let channel = InterceptedService::new(endpoint.connect_lazy(), opts.tokens.attach());
        let client = RawClient::new(channel)
            .max_decoding_message_size(opts.max_message_size)
            .max_encoding_message_size(opts.max_message_size);
        let wire = match opts.protocol {
            PeerProtocol::Native => Some(WireClient::new(
                addr,
                opts.tokens.current(),
                opts.wire_tls.as_ref(),
                opts.connect_timeout,
                opts.max_message_size,
            )?),
            PeerProtocol::Grpc => None,
        };
        Ok(PeerClient {
            addr: addr.to_string(),
            client,
            wire,
            breaker: Breaker::new(opts.breaker_threshold, opts.breaker_cooldown),
            opts,
            counters: Counters::default(),
        })
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    pub(crate) fn stats(&self) -> PeerStats {
        let c = &self.counters;
        PeerStats {
            requests: c.requests.load(Ordering::Relaxed),
            successes: c.successes.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            breaker_opened: self.breaker.opened(),
        }
    }

    /// Runs one call with the deadline, breaker and (if `idempotent`) retries.
    async fn call<Req, T, F, Fut>(&self, idempotent: bool, message: Req, send: F) -> Result<T>
    where
        Req: Clone,
        F: Fn(Req) -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let c = &self.counters;
        let started = std::time::Instant::now();
        let _timed = Timed(&self.opts.latency, &self.addr, started);
        // Held until this call has reported success or failure (see `Breaker::allow`).
        let Some(_permit) = self.breaker.allow() else {
            c.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(
                ErrorKind::Peer,
                format!("peer {}: circuit breaker open after repeated failures", self.addr),
            ));
        };
        let mut attempt = 0;
        loop {
            c.requests.fetch_add(1, Ordering::Relaxed);
            // No grpc-timeout header: the deadline is enforced here, and an owner that is
            // still loading when the caller gives up finishes the load for the next get.
            let outcome = tokio::time::timeout(self.opts.timeout, send(message.clone())).await;
            let (err, retryable) = match outcome {
                Ok(Ok(resp)) => {
                    c.successes.fetch_add(1, Ordering::Relaxed);
                    self.breaker.success();
                    return Ok(resp);
                }
                Ok(Err(status)) => {
                    let err = super::from_status(&self.addr, &status);
                    if !matches!(err.kind(), ErrorKind::Peer | ErrorKind::Timeout) {
                        // The peer answered: it is healthy; the error is the application's.
                        c.successes.fetch_add(1, Ordering::Relaxed);
                        self.breaker.success();
                        return Err(err);
                    }
                    if err.kind() == ErrorKind::Timeout {
                        c.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    (err, status.code() == Code::Unavailable)
                }
                Err(_) => {
                    c.timeouts.fetch_add(1, Ordering::Relaxed);
                    let err = Error::new(
                        ErrorKind::Timeout,
                        format!("peer {}: no answer within {:?}", self.addr, self.opts.timeout),
                    );
                    (err, false)
                }
            };
            c.failures.fetch_add(1, Ordering::Relaxed);
            self.breaker.failure();
            // Retry only calls that are safe to repeat, only when the peer could not be
            // reached at all (not on a timeout: the first attempt may still be running
            // there), and only while the breaker still lets calls through.
            if idempotent
                && retryable
                && attempt < self.opts.retries
                && self.breaker.state() == BreakerState::Closed
            {
                attempt += 1;
                c.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(self.opts.backoff * 2u32.saturating_pow(attempt - 1)).await;
                continue;
            }
            return Err(err);
        }
    }

    /// Sends one call over the native framing (method `m`), or over gRPC through `grpc`.
    async fn send<Req, T, G, GFut>(&self, m: u8, req: Req, grpc: G) -> std::result::Result<T, Status>
    where
        Req: prost::Message,
        T: prost::Message + Default,
        G: FnOnce(RawClient<Transport>, Request<Req>) -> GFut,
        GFut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        match &self.wire {
            Some(wire) => wire.call(m, req).await,
            None => grpc(self.client.clone(), Request::new(req))
                .await
                .map(Response::into_inner),
        }
    }

    /// Asks the owner for `key`. A `None` value: the owner's loader says it does not exist.
    pub(crate) async fn get(&self, group: &str, key: Bytes) -> Result<Entry> {
        let req = pb::GetRequest {
            group: group.to_string(),
            key,
            forwarded: true,
            peek: false,
        };
        let resp = self
            .call(true, req, |r| {
                self.send(method::GET, r, |mut c, r| async move { c.get(r).await })
            })
            .await?;
        Ok(Entry {
            value: resp.found.then_some(resp.value),
            deadline: resp.expire_at_ms,
            version: resp.version,
        })
    }

    /// The peer's stored copy of `key`, never loaded there: `None` if it holds none.
    pub(crate) async fn peek(&self, group: &str, key: Bytes) -> Result<Option<Entry>> {
        let req = pb::GetRequest {
            group: group.to_string(),
            key,
            forwarded: true,
            peek: true,
        };
        let resp = self
            .call(true, req, |r| {
                self.send(method::GET, r, |mut c, r| async move { c.get(r).await })
            })
            .await?;
        Ok((!resp.absent).then(|| Entry {
            value: resp.found.then_some(resp.value),
            deadline: resp.expire_at_ms,
            version: resp.version,
        }))
    }

    /// Streams `entries` of `group` to the peer (a graceful leave), in messages of at most
    /// a quarter of the message limit. Returns how many the peer kept.
    pub(crate) async fn handoff(&self, group: &str, entries: Vec<(Bytes, Entry)>) -> Result<u64> {
        let budget = (self.opts.max_message_size / 4).max(1);
        let mut batches = vec![pb::HandoffBatch {
            group: group.to_string(),
            entries: Vec::new(),
        }];
        let mut size = 0;
        for (key, e) in entries {
            let cost = key.len() + e.value.as_ref().map_or(0, Bytes::len) + 32;
            let last = batches.last_mut().expect("never empty");
            if !last.entries.is_empty() && size + cost > budget {
                batches.push(pb::HandoffBatch {
                    group: group.to_string(),
                    entries: Vec::new(),
                });
                size = 0;
            }
            size += cost;
            batches
                .last_mut()
                .expect("never empty")
                .entries
                .push(pb::HandoffEntry {
                    key,
                    found: e.value.is_some(),
                    value: e.value.unwrap_or_default(),
                    expire_at_ms: e.deadline,
                    version: e.version,
                });
        }
        let mut client = self.client.clone();
        let resp = client
            .handoff(Request::new(futures_util::stream::iter(batches)))
            .await
            .map_err(|s| super::from_status(&self.addr, &s))?;
        Ok(resp.into_inner().accepted)
    }

    /// Asks the owner for many keys: one call per [`MAX_KEYS_PER_GET_MANY`] keys (each
    /// with its own deadline, so a large batch is not mistaken for a dead peer); one
    /// result per key, in order. A chunk that fails gives its error to each of its keys.
    pub(crate) async fn get_many(&self, group: &str, keys: Vec<Bytes>) -> Result<Vec<Result<Entry>>> {
        let chunks = chunk(keys, self.opts.max_message_size / 2);
        if chunks.len() == 1 {
            let keys = chunks.into_iter().next().expect("one chunk");
            return self.get_many_call(group, keys).await;
        }
        // A few chunks at a time, each with its own deadline: sent all at once, they
        // would share the owner's time and could all miss their deadlines together.
        let calls = chunks.into_iter().map(|chunk: Vec<Bytes>| async move {
            let n = chunk.len();
            match self.get_many_call(group, chunk).await {
                Ok(results) => results,
                Err(e) => vec![Err(e); n],
            }
        });
        let answers: Vec<Vec<Result<Entry>>> = stream::iter(calls).buffered(CHUNKS_IN_FLIGHT).collect().await;
        Ok(answers.into_iter().flatten().collect())
    }

    /// One `GetMany` call. Keys the owner left out of a response that grew too large are
    /// then asked for one by one.
    async fn get_many_call(&self, group: &str, keys: Vec<Bytes>) -> Result<Vec<Result<Entry>>> {
        let mut out = Vec::with_capacity(keys.len());
        for item in self.get_many_items(group, keys, false).await? {
            out.push(if item.omitted {
                self.get(group, item.key).await
            } else {
                self.item_result(item)
            });
        }
        Ok(out)
    }

    /// [`PeerClient::peek`] of many keys, in one `GetMany` (the caller keeps the batch
    /// small: a batcher's at most).
    pub(crate) async fn peek_many(
        &self,
        group: &str,
        keys: Vec<Bytes>,
    ) -> Result<Vec<Result<Option<Entry>>>> {
        let mut out = Vec::with_capacity(keys.len());
        for item in self.get_many_items(group, keys, true).await? {
            out.push(if item.omitted {
                self.peek(group, item.key).await
            } else if item.absent {
                Ok(None)
            } else {
                self.item_result(item).map(Some)
            });
        }
        Ok(out)
    }

    /// One `GetMany` call's items, checked to be one per key.
    async fn get_many_items(&self, group: &str, keys: Vec<Bytes>, peek: bool) -> Result<Vec<pb::Item>> {
        let n = keys.len();
        let req = pb::GetManyRequest {
            group: group.to_string(),
            keys,
            forwarded: true,
            peek,
        };
        let resp = self
            .call(true, req, |r| {
                self.send(method::GET_MANY, r, |mut c, r| async move { c.get_many(r).await })
            })
            .await?;
        if resp.items.len() != n {
            return Err(Error::new(
                ErrorKind::Peer,
                format!(
                    "peer {}: answered {} items for {n} keys",
                    self.addr,
                    resp.items.len()
                ),
            ));
        }
        Ok(resp.items)
    }

    fn item_result(&self, item: pb::Item) -> Result<Entry> {
        if !item.error_kind.is_empty() {
            // As for a whole call (`from_status`): an owner that is closing is as good as
            // unreachable, so the caller falls back.
            let kind = match ErrorKind::from_name(&item.error_kind) {
                Some(ErrorKind::Closed) | None => ErrorKind::Peer,
                Some(kind) => kind,
            };
            return Err(Error::new(
                kind,
                format!("peer {}: {}", self.addr, item.error_message),
            ));
        }
        Ok(Entry {
            value: item.found.then_some(item.value),
            deadline: item.expire_at_ms,
            version: item.version,
        })
    }

    /// Stores `value` on the owner.
    pub(crate) async fn set(
        &self,
        group: &str,
        key: Bytes,
        value: Bytes,
        deadline: u64,
        stamp: Stamp,
    ) -> Result<()> {
        let req = pb::SetRequest {
            group: group.to_string(),
            key,
            value,
            expire_at_ms: deadline,
            version: stamp.version,
            replica: stamp.replica,
        };
        self.call(true, req, |r| {
            self.send(method::SET, r, |mut c, r| async move { c.set(r).await })
        })
        .await?;
        Ok(())
    }

    /// Removes `key` from the peer, whichever tier holds it.
    pub(crate) async fn delete(&self, group: &str, key: Bytes, stamp: Stamp) -> Result<bool> {
        let req = pb::DeleteRequest {
            group: group.to_string(),
            key,
            version: stamp.version,
            tombstone: stamp.tombstone,
        };
        Ok(self
            .call(true, req, |r| {
                self.send(method::DELETE, r, |mut c, r| async move { c.delete(r).await })
            })
            .await?
            .removed)
    }
}

/// Splits `keys` into the chunks a server accepts: at most [`MAX_KEYS_PER_GET_MANY`]
/// keys, whose answer costs at most `budget` bytes before values.
fn chunk(keys: Vec<Bytes>, budget: usize) -> Vec<Vec<Bytes>> {
    let mut out = vec![Vec::new()];
    let mut cost = 0;
    for k in keys {
        let c = key_cost(k.len());
        let last = out.last_mut().expect("never empty");
        if !last.is_empty() && (last.len() == MAX_KEYS_PER_GET_MANY || cost + c > budget) {
            out.push(Vec::new());
            cost = 0;
        }
        cost += c;
        out.last_mut().expect("never empty").push(k);
    }
    out
}

impl Remote for PeerClient {
    fn addr(&self) -> &str {
        &self.addr
    }

    fn call_timeout(&self) -> Option<Duration> {
        Some(self.opts.timeout)
    }

    fn get<'a>(&'a self, group: &'a str, key: Bytes) -> BoxFuture<'a, Result<Entry>> {
        Box::pin(PeerClient::get(self, group, key))
    }

    fn get_many<'a>(&'a self, group: &'a str, keys: Vec<Bytes>) -> BoxFuture<'a, Result<Vec<Result<Entry>>>> {
        Box::pin(PeerClient::get_many(self, group, keys))
    }

    fn peek<'a>(&'a self, group: &'a str, key: Bytes) -> BoxFuture<'a, Result<Option<Entry>>> {
        Box::pin(PeerClient::peek(self, group, key))
    }

    fn peek_many<'a>(
        &'a self,
        group: &'a str,
        keys: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<Vec<Result<Option<Entry>>>>> {
        Box::pin(PeerClient::peek_many(self, group, keys))
    }

    fn set<'a>(
        &'a self,
        group: &'a str,
        key: Bytes,
        value: Bytes,
        deadline: u64,
        stamp: Stamp,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(PeerClient::set(self, group, key, value, deadline, stamp))
    }

    fn delete<'a>(&'a self, group: &'a str, key: Bytes, stamp: Stamp) -> BoxFuture<'a, Result<bool>> {
        Box::pin(PeerClient::delete(self, group, key, stamp))
    }

    fn handoff<'a>(&'a self, group: &'a str, entries: Vec<(Bytes, Entry)>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(PeerClient::handoff(self, group, entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_split_by_count_and_by_key_bytes() {
        let keys = |n: usize, len: usize| (0..n).map(|_| Bytes::from(vec![b'k'; len])).collect::<Vec<_>>();
        let sizes = |c: Vec<Vec<Bytes>>| c.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(chunk(keys(2500, 8), usize::MAX)), vec![1000, 1000, 500]);
        let per = key_cost(100);
        assert_eq!(sizes(chunk(keys(10, 100), per * 4)), vec![4, 4, 2]);
        // A key that alone exceeds the budget still goes (alone): the server says why.
        assert_eq!(sizes(chunk(keys(2, 100), 1)), vec![1, 1]);
        assert_eq!(sizes(chunk(Vec::new(), 1)), vec![0]);
    }
}
