//! `ClusterBuilder`: a node's options, their defaults, the checks that refuse what can
//! never work, and the start: bind, membership, server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio_rustls::rustls;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use tokio::runtime::Handle;

use super::discovery::{Discovery, Running};
use super::membership::Membership;
use super::runtime::{self, NodeRuntime};
use super::{Cluster, ClusterInner};
use crate::PeerProtocol;
use crate::error::{Error, Result};
use crate::peer::auth::Tokens;
use crate::peer::client::PeerOptions;
use crate::peer::conn::ConnLimits;
use crate::peer::server::{self, ServeOptions};
use crate::peer::wire_client::WireTls;
use crate::registry::Registry;
use crate::ring::{self, HashFn};

/// Default deadline of a call to a peer.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time to establish a connection to a peer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default retries of an idempotent call that could not reach its peer.
pub const DEFAULT_RETRIES: u32 = 1;
/// Default backoff before the first retry (it doubles with each retry).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// Default consecutive failures that open a peer's circuit breaker.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// Default time an open breaker waits before letting one probe through.
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(1);
/// Default largest gRPC message, either direction.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// Default time shutdown lets calls in flight finish before it closes every connection.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Default time a new connection has to send its first bytes (TLS hello or HTTP/2
/// preface) before it is closed.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may serve no request before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default number of peer requests a node works on at once; more are refused and their
/// callers load locally.
pub const DEFAULT_MAX_PEER_REQUESTS: usize = 1024;
/// Default HTTP/2 streams one peer connection may have open at once.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// How often the server pings an HTTP/2 client, and how long it waits for the answer
/// before dropping the connection (a stopped or vanished client).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS for peer traffic, from PEM files: this node's certificate and key (served to
/// peers, and presented to them as a client certificate), and the CA that signed every
/// node's certificate.
#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    client_auth: bool,
    server_name: Option<String>,
}

/// Default time after a ring change during which a node that misses a key it newly owns
/// first asks the key's previous owner (warm takeover).
pub const DEFAULT_WARM_WINDOW: Duration = Duration::from_secs(60);
/// Default longest time a graceful leave spends handing entries to their new owners.
pub const DEFAULT_HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);
/// Default most bytes (values and keys) a graceful leave hands off.
pub const DEFAULT_HANDOFF_MAX_BYTES: usize = 1 << 30;

/// Default worker threads of the runtime a cluster creates for itself.
pub const DEFAULT_WORKER_THREADS: usize = 2;

/// Builds a [`Cluster`].
#[derive(Clone)]
pub struct ClusterBuilder {
    listen: String,
    advertise: Option<String>,
    peers: Vec<String>,
    membership: String,
    opts: PeerOptions,
    vnodes: usize,
    hash: HashFn,
    worker_threads: usize,
    runtime: Option<Handle>,
    token: Option<String>,
    previous_token: Option<String>,
    token_file: Option<PathBuf>,
    tls: Option<TlsFiles>,
    shutdown_grace: Duration,
    conn: ConnLimits,
    max_peer_requests: usize,
    max_streams_per_connection: u32,
    warm_window: Duration,
    handoff_timeout: Duration,
    handoff_max_bytes: usize,
    metrics_listen: Option<String>,
}

impl std::fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token: only whether one is set.
        let set = |t: bool| if t { "<set>" } else { "<none>" };
        f.debug_struct("ClusterBuilder")
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("peers", &self.peers)
            .field(
                "membership",
                &self.membership.parse::<Discovery>().map_err(|_| "<invalid>"),
            )
            .field("token", &set(self.token.is_some() || self.token_file.is_some()))
            .field("previous_token", &set(self.previous_token.is_some()))
            .field("tls", &self.tls)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            listen: "127.0.0.1:0".into(),
            advertise: None,
            peers: Vec::new(),
            membership: String::new(),
            opts: PeerOptions {
                timeout: DEFAULT_PEER_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                retries: DEFAULT_RETRIES,
                backoff: DEFAULT_RETRY_BACKOFF,
                breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
                breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                tokens: Tokens::default(),
                latency: Default::default(),
                tls: None,
                wire_tls: None,
                protocol: PeerProtocol::Native,
            },
            vnodes: ring::DEFAULT_VNODES,
            hash: ring::default_hash,
            worker_threads: DEFAULT_WORKER_THREADS,
            runtime: None,
            token: None,
            previous_token: None,
            token_file: None,
            tls: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            conn: ConnLimits {
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                tls: false,
            },
            max_peer_requests: DEFAULT_MAX_PEER_REQUESTS,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            warm_window: DEFAULT_WARM_WINDOW,
            handoff_timeout: DEFAULT_HANDOFF_TIMEOUT,
            handoff_max_bytes: DEFAULT_HANDOFF_MAX_BYTES,
            metrics_listen: None,
        }
    }
}

impl ClusterBuilder {
    /// The address the peer server binds, `host:port`. Default `127.0.0.1:0` (port 0 picks
    /// a free port; [`Cluster::local_addr`] reports it).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// The address other nodes use to reach this one, and this node's name on the ring.
    /// Default: the bound address (which must then not be a wildcard like `0.0.0.0`).
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// The other nodes' advertised addresses. This node's own address may be in the
    /// list (every node can be given the same list). Default: none.
    pub fn peers<I, S>(mut self, peers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.peers = peers.into_iter().map(Into::into).collect();
        self
    }

    /// Where the other nodes come from, spelled the same in every language:
    ///
    /// - `static` (the default): [`ClusterBuilder::peers`], changed by
    ///   [`Cluster::set_peers`].
    /// - `etcd://host:2379[,host:2379]/prefix[?lease_ttl=10]`: the node registers its
    ///   advertised address under `<prefix>/nodes/` on a lease (default TTL
    ///   [`crate::DEFAULT_ETCD_LEASE_TTL`]) and follows the other registrations; it
    ///   revokes the lease on shutdown. etcd auth: `user:password@` before the hosts, or
    ///   `user=…&password_file=…`; TLS: `ca=…` (and `cert=…&key=…`, `server_name=…`).
    /// - `dns://name:port[?interval=5s]`: the nodes are the name's A/AAAA records, at
    ///   `port`, resolved every interval (default [`crate::DEFAULT_DNS_INTERVAL`]);
    ///   `resolver=ip:port` asks that DNS server instead of the system's.
    ///
    /// With etcd or DNS, `start` waits up to 5 s for the first ring, then goes on (alone,
    /// if the source cannot be reached: it keeps trying, and stats report it).
    pub fn membership(mut self, spec: impl Into<String>) -> Self {
        self.membership = spec.into();
        self
    }

    /// How long after a ring change a node that misses a key it newly owns first asks
    /// the key's previous owner (for at most 500 ms) before loading it: a node that joins
    /// (or takes over a leaver's keys) starts warm instead of sending every miss to the
    /// database. Default [`DEFAULT_WARM_WINDOW`]; zero turns it off.
    pub fn warm_window(mut self, window: Duration) -> Self {
        self.warm_window = window;
        self
    }

    /// Bounds of the handoff of a graceful leave (etcd or DNS membership): at most
    /// `timeout` and `max_bytes` of keys and values streamed to the entries' new owners
    /// before the node stops serving. Defaults [`DEFAULT_HANDOFF_TIMEOUT`] and
    /// [`DEFAULT_HANDOFF_MAX_BYTES`]; a zero timeout turns handoff off.
    pub fn handoff(mut self, timeout: Duration, max_bytes: usize) -> Self {
        self.handoff_timeout = timeout;
        self.handoff_max_bytes = max_bytes;
        self
    }

    /// Also serve the node's metrics and status over HTTP on `addr` (`host:port`; port 0
    /// picks one, see [`Cluster::metrics_addr`]): `/metrics` (Prometheus), `/` (a status
    /// page), `/v1/status` (JSON), `/healthz`, `/readyz`. A separate port from the peer
    /// port, read-only. Default: none ([`Cluster::metrics_text`] works either way).
    pub fn metrics_listen(mut self, addr: impl Into<String>) -> Self {
        self.metrics_listen = Some(addr.into());
        self
    }

    /// Deadline of every call to a peer. Default [`DEFAULT_PEER_TIMEOUT`].
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.opts.timeout = timeout;
        self
    }

    /// Time to establish a connection. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.opts.connect_timeout = timeout;
        self
    }

    /// Retries of an idempotent call that could not reach its peer, with exponential
    /// backoff starting at `backoff`. Default [`DEFAULT_RETRIES`] after
    /// [`DEFAULT_RETRY_BACKOFF`].
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.opts.retries = retries;
        self.opts.backoff = backoff;
        self
    }

    /// Consecutive failures that open a peer's breaker, and how long it stays open before
    /// one probe is let through. Default [`DEFAULT_BREAKER_THRESHOLD`],
    /// [`DEFAULT_BREAKER_COOLDOWN`].
    pub fn breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.opts.breaker_threshold = threshold;
        self.opts.breaker_cooldown = cooldown;
        self
    }

    /// Largest gRPC message sent or accepted. Default [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.opts.max_message_size = bytes;
        self
    }

    /// Points per node on the ring. Default [`ring::DEFAULT_VNODES`]. Every node of a
    /// cluster must use the same value.
    pub fn vnodes(mut self, vnodes: usize) -> Self {
        self.vnodes = vnodes;
        self
    }

    /// The ring's hash function (tests use an identity hash). Every node must agree.
    pub fn ring_hash(mut self, hash: HashFn) -> Self {
        self.hash = hash;
        self
    }

    /// Worker threads of the runtime the cluster creates for itself. Default
    /// [`DEFAULT_WORKER_THREADS`]; zero is
    /// refused by `build`.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// The cluster token: sent on every call to a peer, and required of every call from
    /// one (health checks excepted). Every node of a cluster needs the same token.
    /// Default: none — then anyone who can reach the port can read, write and load any
    /// key, so the port must be private. Printable ASCII, no spaces.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The token from a file (its first line, surrounding white space removed), read
    /// when the cluster starts. Overrides [`ClusterBuilder::token`].
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self
    }

    /// A token accepted besides the current one, for rotation: give every node the new
    /// token with the old one as previous, then, once all run it, drop the previous.
    pub fn previous_token(mut self, token: impl Into<String>) -> Self {
        self.previous_token = Some(token.into());
        self
    }

    /// TLS on peer traffic: this node's certificate chain and private key (PEM files),
    /// and the CA (PEM) that signed every node's certificate. With TLS, peers must
    /// present a certificate from that CA too (mutual TLS) unless
    /// [`ClusterBuilder::tls_client_auth`] turns that off. Every node of a cluster must
    /// use TLS or none.
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>, ca: impl Into<PathBuf>) -> Self {
        self.tls = Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
            client_auth: true,
            server_name: None,
        });
        self
    }

    /// How this node's calls to its peers travel: meshcache's native framing (the
    /// default) or gRPC. A node serves both on its port, so nodes with either setting
    /// work together; gRPC is for a network whose proxies pass only HTTP/2 between the
    /// nodes. Handoff streams over gRPC either way.
    pub fn peer_protocol(mut self, protocol: PeerProtocol) -> Self {
        self.opts.protocol = protocol;
        self
    }

    /// Whether peers must present a client certificate (mutual TLS). Default `true`
    /// when TLS is on. Without it, the token is what keeps strangers out.
    pub fn tls_client_auth(mut self, required: bool) -> Self {
        if let Some(t) = &mut self.tls {
            t.client_auth = required;
        }
        self
    }

    /// The name peers' certificates are checked against, when it is not the host part
    /// of their addresses (say, every node's certificate names `meshcache.internal`).
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        if let Some(t) = &mut self.tls {
            t.server_name = Some(name.into());
        }
        self
    }

    /// How long shutdown lets calls in flight finish before it closes every connection.
    /// Default [`DEFAULT_SHUTDOWN_GRACE`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long a new connection has to send its first bytes. Default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.conn.handshake_timeout = timeout;
        self
    }

    /// How long a connection may serve no request before it is closed. Default
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.conn.idle_timeout = timeout;
        self
    }

    /// Peer requests this node works on at once; more are refused (the peer loads
    /// locally instead). Default [`DEFAULT_MAX_PEER_REQUESTS`].
    pub fn max_peer_requests(mut self, n: usize) -> Self {
        self.max_peer_requests = n;
        self
    }

    /// Run on an existing tokio runtime instead of creating one.
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Starts the cluster from synchronous code: creates its own runtime (unless
    /// [`ClusterBuilder::runtime`] was given), binds the listener and starts serving.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidArgument`] for an address that does not parse or cannot be
    /// bound, or a wildcard listen address without `advertise`.
    ///
    /// # Panics
    ///
    /// Called from inside an async context, where it cannot block: use
    /// [`ClusterBuilder::start`] there.
    pub fn build(self) -> Result<Cluster> {
        self.validate()?;
        match self.runtime.clone() {
            Some(handle) => handle.block_on(self.start_on(NodeRuntime::borrowed(handle.clone()))),
            None => {
                let rt = runtime::create(self.worker_threads)?;
                let handle = rt.handle().clone();
                // The runtime is handed to the cluster only on success: on an error it must
                // be dropped here, outside `block_on` (dropping a runtime inside an async
                // context panics).
                let cluster = handle.block_on(self.start_on(NodeRuntime::borrowed(handle.clone())))?;
                cluster.inner.runtime.adopt(rt);
                Ok(cluster)
            }
        }
    }

    /// Starts the cluster on the current tokio runtime (or the one given with
    /// [`ClusterBuilder::runtime`]).
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::build`].
    pub async fn start(self) -> Result<Cluster> {
        let handle = match self.runtime.clone() {
            Some(h) => h,
            None => Handle::current(),
        };
        self.validate()?;
        self.start_on(NodeRuntime::borrowed(handle)).await
    }

    /// Options that can never work are refused here, once for every language.
    fn validate(&self) -> Result<()> {
        let o = &self.opts;
        if o.timeout.is_zero() || o.connect_timeout.is_zero() {
            return Err(Error::invalid(
                "peer_timeout and connect_timeout must be greater than zero",
            ));
        }
        if o.max_message_size == 0 {
            return Err(Error::invalid("max_message_size must be greater than zero"));
        }
        if self.vnodes == 0 {
            return Err(Error::invalid("vnodes must be greater than zero"));
        }
        let discovery: Discovery = self.membership.parse()?;
        if discovery != Discovery::Static && !self.peers.is_empty() {
            return Err(Error::invalid(format!(
                "peers come from the {} membership: give no peer list",
                discovery.kind()
            )));
        }
        if o.breaker_threshold == 0 {
            return Err(Error::invalid("the breaker threshold must be greater than zero"));
        }
        if self.conn.handshake_timeout.is_zero() || self.conn.idle_timeout.is_zero() {
            return Err(Error::invalid(
                "handshake_timeout and idle_timeout must be greater than zero",
            ));
        }
        if self.max_peer_requests == 0 {
            return Err(Error::invalid("max_peer_requests must be greater than zero"));
        }
        if self.worker_threads == 0 && self.runtime.is_none() {
            return Err(Error::invalid("worker_threads must be greater than zero"));
        }
        Ok(())
    }

    async fn start_on(mut self, runtime: NodeRuntime) -> Result<Cluster> {
        let token = match &self.token_file {
            Some(path) => Some(read_token(path)?),
            None => self.token.take(),
        };
        let tokens = Tokens::new(token, self.previous_token.take())?;
        self.opts.tokens = tokens.clone();
        let server_tls = match &self.tls {
            Some(files) => {
                let (server, client, wire) = tls_configs(files)?;
                self.opts.tls = Some(client);
                self.opts.wire_tls = Some(wire);
                Some(server)
            }
            None => None,
        };
        let listen: SocketAddr = tokio::net::lookup_host(&self.listen)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::invalid(format!("cannot resolve listen address {:?}", self.listen)))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::invalid(format!("cannot listen on {listen}: {e}")))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::invalid(format!("listener has no address: {e}")))?;
        let advertise = match self.advertise {
            Some(a) => a,
            None if local_addr.ip().is_unspecified() => {
                return Err(Error::invalid(format!(
                    "listening on {local_addr}: give an advertise address other nodes can reach"
                )));
            }
            None => local_addr.to_string(),
        };
        let handle = runtime.handle().clone();
        let membership = Arc::new(Membership::new(
            advertise,
            self.opts.clone(),
            self.vnodes,
            self.hash,
            handle.clone(),
            self.warm_window,
        ));
        membership.set_peers(self.peers)?;
        let registry = Arc::new(Registry::default());
        let serve = ServeOptions {
            max_message_size: self.opts.max_message_size,
            conn: ConnLimits {
                tls: server_tls.is_some(),
                ..self.conn
            },
            tokens,
            tls: server_tls,
            max_streams_per_connection: self.max_streams_per_connection,
            max_peer_requests: self.max_peer_requests,
            keepalive_interval: KEEPALIVE_INTERVAL,
            keepalive_timeout: KEEPALIVE_TIMEOUT,
        };
        let metrics_listener = match &self.metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr.as_str())
                    .await
                    .map_err(|e| Error::invalid(format!("cannot listen for metrics on {addr}: {e}")))?,
            ),
            None => None,
        };
        let latency = self.opts.latency.clone();
        let server = server::serve(listener, Arc::downgrade(&registry), serve, &handle).await?;
        // Registered once the server answers, so that no node routes here too early.
        let discovery =
            Running::start(&self.membership.parse()?, &membership, registry.watch(), &handle).await;
        let cluster = Cluster::from_parts(
            ClusterInner {
                discovery,
                membership,
                registry,
                local_addr,
                server,
                runtime,
                shutdown_grace: self.shutdown_grace,
                handoff: super::handoff::Limits {
                    timeout: self.handoff_timeout,
                    max_bytes: self.handoff_max_bytes,
                },
                metrics: Default::default(),
                http: Default::default(),
                closed: AtomicBool::new(false),
            },
            &latency,
        );
        if let Some(listener) = metrics_listener {
            let http = super::http::HttpServer::start(listener, Arc::downgrade(&cluster.inner), &handle)
                .map_err(|e| Error::invalid(format!("metrics server: {e}")))?;
            *cluster.inner.http.lock() = Some(http);
        }
        Ok(cluster)
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::invalid(format!("cannot read the {what} {}: {e}", path.display())))
}

/// The token in `path`: its first line, trimmed.
fn read_token(path: &Path) -> Result<String> {
    let bytes = read_file("token file", path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("the token file {} is not UTF-8", path.display())))?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// The server's configuration (for both protocols) and the clients' (gRPC's and the
/// native framing's), from the PEM files.
fn tls_configs(files: &TlsFiles) -> Result<(Arc<rustls::ServerConfig>, ClientTlsConfig, WireTls)> {
    let cert = read_file("TLS certificate", &files.cert)?;
    let key = read_file("TLS key", &files.key)?;
    let ca_pem = read_file("TLS CA certificate", &files.ca)?;
    let (server, wire) = crate::peer::tls::configs(&cert, &key, &ca_pem, files.client_auth)?;
    let ca = Certificate::from_pem(ca_pem);
    let identity = Identity::from_pem(cert, key);
    let mut client = ClientTlsConfig::new().ca_certificate(ca).identity(identity);
    if let Some(name) = &files.server_name {
        client = client.domain_name(name.clone());
    }
    let wire = WireTls {
        config: wire,
        server_name: files.server_name.clone(),
    };
    Ok((server, client, wire))
}
