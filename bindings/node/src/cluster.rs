//! `Cluster`: this process's node, its runtime and its groups, and `ClusterOptions`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshcache::ErrorKind;
use napi::bindgen_prelude::*;
use napi::{JsValue, Unknown};
use napi_derive::napi;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::convert::{JsNumber, Out, convert, key_bytes, millis, options, size, whole};
use crate::errors::{map_error, range_error};
use crate::group::{Group, GroupOptions};
use crate::loader::js_loader;
use crate::promise::{Gets, or_reject, spawn};
use crate::stats::ClusterStats;

/// Options of `new Cluster()`. Every node of a cluster must agree on `vnodes`.
#[napi(object)]
#[derive(Default)]
pub struct ClusterOptions {
    /// Address the peer server binds, `host:port`. Default `'127.0.0.1:0'` (a free port;
    /// `cluster.localAddr` tells which).
    pub listen: Option<String>,
    /// Address other nodes use to reach this one, and its name on the ring. Default: the
    /// bound address.
    pub advertise: Option<String>,
    /// Every node's advertised address (this node's own may be included). Default: none,
    /// a single-node cache. Only with the `'static'` membership.
    pub peers: Option<Vec<String>>,
    /// Where the nodes come from, one string spelled the same in every language:
    /// `'static'` (the default: `peers`, replaced by `setPeers`),
    /// `'etcd://host:port[,host:port]/prefix[?lease_ttl=10&...]'` (nodes register under
    /// `<prefix>/nodes/` with a lease and watch each other; a graceful `close()` revokes
    /// the lease) or `'dns://name:port[?interval=5s&resolver=ip:port]'` (the name's
    /// A/AAAA records, re-resolved every interval). With etcd or DNS the constructor waits
    /// up to 5 s for the first ring, and `peers` / `setPeers` are refused. A spec that
    /// cannot work throws a `RangeError` (`MESHCACHE_INVALID_ARGUMENT`).
    pub membership: Option<String>,
    /// Deadline of each call to a peer, in ms. Default 1000.
    pub peer_timeout_ms: Option<f64>,
    /// Time to connect to a peer, in ms. Default 500.
    pub connect_timeout_ms: Option<f64>,
    /// Retries of an idempotent peer call that could not reach its peer. Default 1.
    pub retries: Option<u32>,
    /// First retry backoff in ms (doubles each retry). Default 10.
    pub retry_backoff_ms: Option<f64>,
    /// Consecutive failures that open a peer's circuit breaker. Default 5.
    pub breaker_threshold: Option<u32>,
    /// How long an open breaker waits before one probe, in ms. Default 1000.
    pub breaker_cooldown_ms: Option<f64>,
    /// Largest peer message, in bytes. Default 64 MiB.
    pub max_message_size: Option<u32>,
    /// Points per node on the hash ring. Default 128.
    pub vnodes: Option<u32>,
    /// Threads of the cluster's own runtime (network and loads; JS loaders still run on
    /// the JS thread), at least 1. Default 2.
    pub worker_threads: Option<u32>,
    /// The cluster token, the same on every node: sent on every peer call, and required
    /// of every call from a peer. Printable ASCII without spaces. Default: none, and then
    /// whoever reaches the port can read, write and load any key.
    pub token: Option<String>,
    /// A file holding the token (its first line, trimmed), read at start. Overrides
    /// `token`.
    pub token_file: Option<String>,
    /// A token accepted besides the current one, while rotating (needs a token).
    pub previous_token: Option<String>,
    /// TLS on peer traffic: this node's certificate chain (PEM file). `tlsCert`, `tlsKey`
    /// and `tlsCa` go together; every node of a cluster uses TLS or none.
    pub tls_cert: Option<String>,
    /// This node's private key (PEM file).
    pub tls_key: Option<String>,
    /// The CA (PEM file) that signed every node's certificate.
    pub tls_ca: Option<String>,
    /// Whether peers must present a certificate from `tlsCa` (mutual TLS). Default true.
    pub tls_client_auth: Option<bool>,
    /// The name peers' certificates are checked against, when it is not the host part of
    /// their addresses. Default: that host.
    pub tls_server_name: Option<String>,
    /// How long `close()` lets peer calls in flight finish before it closes every
    /// connection, in ms. Default 5000.
    pub shutdown_grace_ms: Option<f64>,
    /// Time a new connection has to send its first bytes, in ms. Default 10000.
    pub handshake_timeout_ms: Option<f64>,
    /// Time a connection may serve no request before it is closed, in ms. Default 300000.
    pub idle_timeout_ms: Option<f64>,
    /// Peer requests this node works on at once; more are refused (the peer loads the key
    /// itself). Default 1024.
    pub max_peer_requests: Option<u32>,
    /// How long after a ring change a node that misses a key it newly owns first asks the
    /// key's previous owner (for at most 250 ms) before loading it (warm takeover), in ms;
    /// 0 turns it off. Default 60000.
    pub warm_window_ms: Option<f64>,
    /// Longest time a graceful `close()` (etcd or DNS membership) spends handing the
    /// entries this node holds to their new owners, in ms; 0 turns handoff off. Default
    /// 10000.
    pub handoff_timeout_ms: Option<f64>,
    /// Most bytes (keys and values) that handoff sends: a number of bytes or a size such
    /// as `'256MiB'`. Default 1 GiB.
    pub handoff_max_bytes: Option<Either<f64, String>>,
    /// Also serve this node's metrics and status over HTTP on this address (`host:port`;
    /// port 0 picks a free one, `cluster.metricsAddr` tells which), apart from the peer
    /// port and read-only: `/metrics` (Prometheus text), `/` (a status page), `/v1/status`
    /// (JSON), `/healthz` and `/readyz`. An address that cannot be bound throws a
    /// `RangeError` (`MESHCACHE_INVALID_ARGUMENT`). Default: none (`metricsText()` works
    /// either way).
    pub metrics_listen: Option<String>,
}

/// Options of `cluster.waitForMembers()`.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct WaitOptions {
    /// How long to wait, in ms (> 0): then the promise rejects with `MESHCACHE_TIMEOUT`.
    /// Default 10000.
    pub timeout_ms: Option<f64>,
}

/// `waitForMembers`' deadline when none is given.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The core cluster shared by the JS `Cluster` and its groups, until `close()`.
pub(crate) struct Node {
    /// Guards the cluster handle; `None` once closed.
    cluster: Mutex<Option<meshcache::Cluster>>,
    /// The counters as the node stopped, once `close()` has shut it down.
    last_stats: Mutex<Option<meshcache::ClusterStats>>,
    pub(crate) rt: Handle,
    /// The pending gets that missed: how they settle, whether they keep the process alive.
    pub(crate) gets: Gets,
    /// Set by `close()`: pending `waitForMembers` calls reject with `MESHCACHE_CLOSED` then,
    /// instead of holding the cluster (and the process) until their deadline.
    closing: watch::Sender<bool>,
}

impl Node {
    pub(crate) fn cluster(&self) -> Option<meshcache::Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Never closed: the JS objects were collected (or the environment is going away).
        // Dropping the last handle stops the runtime, which blocks until its threads end:
        // do it off the JS thread.
        if let Some(c) = self.cluster.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            std::thread::spawn(move || drop(c));
        }
    }
}

/// One node of a meshcache cluster: its peer server, its groups, and the runtime they run
/// on. Every process of a service creates one with the same `peers`.
#[napi]
pub struct Cluster {
    node: Arc<Node>,
}

#[napi]
impl Cluster {
    /// Starts the node: binds `listen` and starts serving peers. Throws a `RangeError`
    /// (`MESHCACHE_INVALID_ARGUMENT`) for an address that cannot be resolved or bound.
    #[napi(constructor, ts_args_type = "options?: ClusterOptions | undefined | null")]
    pub fn new(env: Env, options: Option<Unknown<'_>>) -> Result<Self> {
        // Options not given keep core's defaults; values core cannot use (a zero
        // `workerThreads`, `vnodes` or timeout), core refuses.
        let o: ClusterOptions = self::options(&env, options, "options")?.unwrap_or_default();
        let mut b = meshcache::Cluster::builder();
        if let Some(l) = o.listen {
            b = b.listen(l);
        }
        if let Some(a) = o.advertise {
            b = b.advertise(a);
        }
        if let Some(p) = o.peers {
            b = b.peers(p);
        }
        // Parsed (and refused with `peers`) by core, at build.
        if let Some(m) = o.membership {
            b = b.membership(m);
        }
        if let Some(t) = o.peer_timeout_ms {
            b = b.peer_timeout(millis(&env, t, "peerTimeoutMs")?);
        }
        if let Some(t) = o.connect_timeout_ms {
            b = b.connect_timeout(millis(&env, t, "connectTimeoutMs")?);
        }
        // An option given alone keeps core's default for its partner.
        if o.retries.is_some() || o.retry_backoff_ms.is_some() {
            let backoff = match o.retry_backoff_ms {
                Some(t) => millis(&env, t, "retryBackoffMs")?,
                None => meshcache::DEFAULT_RETRY_BACKOFF,
            };
            b = b.retries(o.retries.unwrap_or(meshcache::DEFAULT_RETRIES), backoff);
        }
        if o.breaker_threshold.is_some() || o.breaker_cooldown_ms.is_some() {
            let cooldown = match o.breaker_cooldown_ms {
                Some(t) => millis(&env, t, "breakerCooldownMs")?,
                None => meshcache::DEFAULT_BREAKER_COOLDOWN,
            };
            let threshold = o
                .breaker_threshold
                .unwrap_or(meshcache::DEFAULT_BREAKER_THRESHOLD);
            b = b.breaker(threshold, cooldown);
        }
        if let Some(m) = o.max_message_size {
            b = b.max_message_size(m as usize);
        }
        if let Some(v) = o.vnodes {
            b = b.vnodes(v as usize);
        }
        if let Some(w) = o.worker_threads {
            b = b.worker_threads(w as usize);
        }
        // Tokens go to core as given: core checks them, and no message says what they are.
        if let Some(t) = o.token {
            b = b.token(t);
        }
        if let Some(f) = o.token_file {
            b = b.token_file(f);
        }
        if let Some(t) = o.previous_token {
            b = b.previous_token(t);
        }
        b = tls(
            &env,
            b,
            o.tls_cert,
            o.tls_key,
            o.tls_ca,
            o.tls_client_auth,
            o.tls_server_name,
        )?;
        if let Some(t) = o.shutdown_grace_ms {
            b = b.shutdown_grace(millis(&env, t, "shutdownGraceMs")?);
        }
        if let Some(t) = o.handshake_timeout_ms {
            b = b.handshake_timeout(millis(&env, t, "handshakeTimeoutMs")?);
        }
        if let Some(t) = o.idle_timeout_ms {
            b = b.idle_timeout(millis(&env, t, "idleTimeoutMs")?);
        }
        if let Some(n) = o.max_peer_requests {
            b = b.max_peer_requests(n as usize);
        }
        if let Some(t) = o.warm_window_ms {
            b = b.warm_window(millis(&env, t, "warmWindowMs")?);
        }
        // One call in core: an option given alone keeps core's default for its partner.
        if o.handoff_timeout_ms.is_some() || o.handoff_max_bytes.is_some() {
            let timeout = match o.handoff_timeout_ms {
                Some(t) => millis(&env, t, "handoffTimeoutMs")?,
                None => meshcache::DEFAULT_HANDOFF_TIMEOUT,
            };
            let max_bytes = match o.handoff_max_bytes {
                Some(m) => size(&env, m, "handoffMaxBytes")?,
                None => meshcache::DEFAULT_HANDOFF_MAX_BYTES,
            };
            b = b.handoff(timeout, max_bytes);
        }
        // Bound by core, at build.
        if let Some(a) = o.metrics_listen {
            b = b.metrics_listen(a);
        }
        // Before the cluster: a cluster dropped here would stop its runtime on the JS thread.
        let gets = Gets::new(&env)?;
        let cluster = b.build().map_err(|e| map_error(&env, &e))?;
        let rt = cluster.runtime().clone();
        Ok(Cluster {
            node: Arc::new(Node {
                cluster: Mutex::new(Some(cluster)),
                last_stats: Mutex::new(None),
                rt,
                gets,
                closing: watch::Sender::new(false),
            }),
        })
    }

    fn open(&self, env: &Env) -> Result<meshcache::Cluster> {
        self.node.cluster().ok_or_else(|| {
            map_error(
                env,
                &meshcache::Error::new(ErrorKind::Closed, "the cluster was closed"),
            )
        })
    }

    /// A group (a named cache) served by this node. Every node should create the same
    /// groups. Throws `MESHCACHE_INVALID_ARGUMENT` for a name in use or bad options, and
    /// `MESHCACHE_CLOSED` after `close()`.
    #[napi(ts_args_type = "name: string, options?: GroupOptions | undefined | null")]
    pub fn group(&self, env: &Env, name: Unknown<'_>, options: Option<Unknown<'_>>) -> Result<Group> {
        let name: String = convert(env, &name, "name")?;
        let o: GroupOptions = self::options(env, options, "options")?.unwrap_or_default();
        let cluster = self.open(env)?;
        let mut b = cluster.group(name);
        if let Some(c) = o.capacity {
            // Zero is core's to refuse; a negative or non-finite number is no size.
            b = b.capacity(size(env, c, "capacity")?);
        }
        if let Some(t) = o.ttl_ms {
            b = b.default_ttl(millis(env, t, "ttlMs")?);
        }
        if let Some(t) = o.negative_ttl_ms {
            b = b.negative_ttl(millis(env, t, "negativeTtlMs")?);
        }
        if let Some(n) = o.max_key_len {
            b = b.max_key_len(n as usize);
        }
        if let Some(n) = o.max_value_len {
            b = b.max_value_len(n as usize);
        }
        if let Some(n) = o.hot_sample {
            b = b.hot_sample(n);
        }
        if let Some(n) = o.shards {
            b = b.shards(n as usize);
        }
        if let Some(t) = o.load_timeout_ms {
            if t == 0.0 {
                return Err(range_error(env, "loadTimeoutMs must be greater than 0, not 0"));
            }
            b = b.load_timeout(millis(env, t, "loadTimeoutMs")?);
        }
        // Zero is core's to refuse (the owner always holds the key).
        if let Some(n) = o.replicas {
            b = b.replicas(whole(env, n, "replicas")?);
        }
        if let Some(on) = o.replicate_loads {
            b = b.replicate_loads(on);
        }
        let id = self.node.gets.group_id();
        if let Some(l) = o.loader {
            b = b.loader(js_loader(l, self.node.gets.clone(), id));
        }
        let group = b.build().map_err(|e| map_error(env, &e))?;
        let bounded = o.load_timeout_ms.is_some();
        Ok(Group::new(group, id, self.node.clone(), bounded))
    }

    /// Replaces the peer list; the ring is swapped at once. Throws a `RangeError`
    /// (`MESHCACHE_INVALID_ARGUMENT`) on a cluster whose membership is etcd or DNS.
    #[napi(ts_args_type = "peers: Array<string>")]
    pub fn set_peers(&self, env: Env, peers: Unknown<'_>) -> Result<()> {
        let peers: Vec<String> = convert(&env, &peers, "peers")?;
        self.open(&env)?.set_peers(peers).map_err(|e| map_error(&env, &e))
    }

    /// The ring's nodes (this one included), sorted.
    #[napi]
    pub fn members(&self, env: Env) -> Result<Vec<String>> {
        Ok(self.open(&env)?.members())
    }

    /// Resolves with the ring's members (sorted) once it has exactly `n` of them, this node
    /// included: "the cluster has formed", or a node has left. Wakes on each change of the
    /// ring, without polling. Rejects with `MESHCACHE_TIMEOUT` after `options.timeoutMs`
    /// (default 10000), and with `MESHCACHE_CLOSED` if the cluster is closed meanwhile; it
    /// keeps the process alive until then, never longer.
    #[napi(
        ts_args_type = "n: number, options?: WaitOptions | undefined | null",
        ts_return_type = "Promise<Array<string>>"
    )]
    pub fn wait_for_members<'env>(
        &self,
        env: &'env Env,
        n: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<Unknown<'env>> {
        let r = (|| {
            let n = member_count(env, &n)?;
            let o: WaitOptions = self::options(env, options, "options")?.unwrap_or_default();
            let timeout = match o.timeout_ms {
                Some(0.0) => return Err(range_error(env, "timeoutMs must be greater than 0, not 0")),
                Some(t) => millis(env, t, "timeoutMs")?,
                None => DEFAULT_WAIT,
            };
            let cluster = self.open(env)?;
            let mut closing = self.node.closing.subscribe();
            let wait = async move {
                tokio::select! {
                    r = cluster.wait_for_members(n, timeout) => r,
                    () = async {
                        if closing.wait_for(|c| *c).await.is_err() {
                            // The JS object was collected, never closed: the wait goes on.
                            std::future::pending::<()>().await;
                        }
                    } => Err(meshcache::Error::new(
                        ErrorKind::Closed,
                        "the cluster was closed while waiting for members",
                    )),
                }
            };
            spawn(env, &self.node.rt, wait, Out::Strings)
        })();
        or_reject(env, r)
    }

    /// The node that owns `key` now.
    #[napi(ts_args_type = "key: string")]
    pub fn owner_of(&self, env: Env, key: Unknown<'_>) -> Result<String> {
        let key = key_bytes(&env, &key)?;
        Ok(self.open(&env)?.owner_of(&key))
    }

    /// Peer counters and breaker states, and the peer server's counters. After `close()`
    /// has resolved: the counters as the node stopped (`server.closed_at_shutdown` is how
    /// many connections shutdown cut).
    #[napi]
    pub fn stats(&self, env: Env) -> Result<ClusterStats> {
        if let Some(c) = self.node.cluster() {
            return Ok(c.stats().into());
        }
        let last = self
            .node
            .last_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match last {
            Some(s) => Ok(s.into()),
            // closing: MESHCACHE_CLOSED until the shutdown is over
            None => self.open(&env).map(|c| c.stats().into()),
        }
    }

    /// The address the peer server is bound to (`host:port`, with the real port).
    #[napi(getter)]
    pub fn local_addr(&self, env: Env) -> Result<String> {
        Ok(self.open(&env)?.local_addr().to_string())
    }

    /// This node's advertised address: its name on the ring.
    #[napi(getter)]
    pub fn advertise_addr(&self, env: Env) -> Result<String> {
        Ok(self.open(&env)?.advertise_addr().to_string())
    }

    /// The address of the metrics and status server (`host:port`, with the real port):
    /// `null` without `metricsListen`, and once `close()` was called.
    #[napi(getter)]
    pub fn metrics_addr(&self) -> Option<String> {
        self.node.cluster()?.metrics_addr().map(|a| a.to_string())
    }

    /// This node's metrics in the Prometheus text exposition format (what `/metrics` of
    /// `metricsListen` serves), to append to the application's own `/metrics`: e.g.
    /// `meshcache_gets_total{group="users",result="hit"} 8`. No key appears in a label.
    /// Throws `MESHCACHE_CLOSED` after `close()`.
    #[napi]
    pub fn metrics_text(&self, env: Env) -> Result<String> {
        Ok(self.open(&env)?.metrics_text())
    }

    /// This node's status, what `/v1/status` of `metricsListen` answers (and the status
    /// page reads): the node, its ring (each member with its share of the keys), its peers
    /// and its groups' counters. Throws `MESHCACHE_CLOSED` after `close()`.
    #[napi(ts_return_type = "ClusterStatus")]
    pub fn status<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let text = self.open(env)?.status_json().to_string();
        let json: Object<'env> = env.get_global()?.get_named_property("JSON")?;
        let parse: Function<'env, String, Unknown<'env>> = json.get_named_property("parse")?;
        parse.call(text)
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.node.cluster().is_none()
    }

    /// Shuts the node down gracefully: stops serving peers, lets calls in flight finish
    /// for up to `shutdownGraceMs`, then closes every connection still open (whatever the
    /// peers do: it always ends), closes every group (their calls then reject with
    /// `MESHCACHE_CLOSED`) and stops the runtime. Afterwards the addon holds nothing that
    /// keeps the process alive. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let taken = self.node.cluster.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(cluster) = taken else {
            return Ok(PromiseRaw::resolve(env, Out::Undefined)?.to_unknown());
        };
        self.node.closing.send_replace(true);
        // Every pending get now waits for its MESHCACHE_CLOSED (sent when the runtime
        // drops it, maybe after the promise of close() resolved): keep the process alive
        // for it, even if the get was waiting for a JS loader.
        self.node.gets.closing(env);
        let (deferred, promise) = env.create_deferred()?;
        let node = self.node.clone();
        self.node.rt.spawn(async move {
            let result = cluster.shutdown().await;
            *node.last_stats.lock().unwrap_or_else(|p| p.into_inner()) = Some(cluster.stats());
            // The last handle owns the runtime: drop it outside the runtime.
            std::thread::spawn(move || drop(cluster));
            deferred.resolve(move |env| match result {
                Ok(()) => Ok(Out::Undefined),
                Err(e) => Err(map_error(&env, &e)),
            });
        });
        Ok(promise.to_unknown())
    }
}

/// The TLS options: `tlsCert`, `tlsKey` and `tlsCa` all or none, and `tlsClientAuth` or
/// `tlsServerName` only with them (core's builder takes the three files in one call, and
/// would silently ignore the other two without them).
fn tls(
    env: &Env,
    mut b: meshcache::ClusterBuilder,
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
    client_auth: Option<bool>,
    server_name: Option<String>,
) -> Result<meshcache::ClusterBuilder> {
    match (cert, key, ca) {
        (Some(cert), Some(key), Some(ca)) => b = b.tls(cert, key, ca),
        (None, None, None) => {
            if client_auth.is_some() || server_name.is_some() {
                return Err(range_error(
                    env,
                    "tlsClientAuth and tlsServerName need tlsCert, tlsKey and tlsCa",
                ));
            }
            return Ok(b);
        }
        (cert, key, ca) => {
            let missing: Vec<&str> = [
                ("tlsCert", cert.is_none()),
                ("tlsKey", key.is_none()),
                ("tlsCa", ca.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, missing)| missing.then_some(name))
            .collect();
            return Err(range_error(
                env,
                format!(
                    "tlsCert, tlsKey and tlsCa go together: {} missing",
                    missing.join(" and ")
                ),
            ));
        }
    }
    if let Some(required) = client_auth {
        b = b.tls_client_auth(required);
    }
    if let Some(name) = server_name {
        b = b.tls_server_name(name);
    }
    Ok(b)
}

/// `n` of `waitForMembers`: a whole number >= 0.
fn member_count(env: &Env, n: &Unknown<'_>) -> Result<usize> {
    let v: f64 = convert(env, n, "n")?;
    if !(v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64) {
        return Err(range_error(
            env,
            format!("n must be a whole number of members >= 0, not {}", JsNumber(v)),
        ));
    }
    Ok(v as usize)
}
