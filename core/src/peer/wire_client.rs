//! The client side of the native framing (`wire.rs`): a small pool of connections to
//! one peer. A call takes an idle connection (or opens one), writes its request and
//! reads the answer on the caller's own task, and puts the connection back. No task or
//! channel stands between the caller and the socket, so a remote get costs what a raw
//! TCP exchange costs plus the encoding.
//!
//! Concurrent calls to one peer each use their own connection, up to [`MAX_CONNS`];
//! the group's batcher already folds concurrent gets into a few `GetMany` calls, so a
//! handful of connections carries the load. A call that is cancelled (its deadline passed) drops
//! its connection, whose state is then unknown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prost::Message;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tonic::Status;

use super::listen::Io;
use super::wire::{self, ERROR, MAGIC, OK, ReadError, Reader, method};
use crate::error::{Error, Result};

/// Connections to one peer at once: more concurrent calls wait for one (within their
/// deadline). Gets are already folded into a few `GetMany` calls; this bounds bursts of
/// writes, which would otherwise open a connection each (and overflow the owner's
/// accept backlog).
const MAX_CONNS: usize = 64;
/// An idle connection older than this is closed rather than reused (well within the
/// server's idle timeout, so a reused connection has not been closed under us).
const MAX_IDLE_AGE: Duration = Duration::from_secs(60);

/// TLS to a peer over the native framing.
#[derive(Clone)]
pub(crate) struct WireTls {
    pub(crate) config: Arc<ClientConfig>,
    /// The name the peer's certificate must carry; default: the host of its address.
    pub(crate) server_name: Option<String>,
}

impl std::fmt::Debug for WireTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// How one connection is used.
struct Conn {
    io: Box<dyn Io>,
    reader: Reader,
    out: Vec<u8>,
    next_id: u32,
    idle_since: Instant,
}

/// A connection that failed: it cannot be used again.
struct Broken {
    status: Status,
    /// Whether the connection failed before any answer came back (closed or reset: a
    /// reused connection the peer closed while it sat idle), so the call may go again
    /// on a new one.
    answered_nothing: bool,
}

impl Conn {
    /// Sends `req` and reads its answer: the peer's response or error, or `Broken`.
    async fn round_trip<Req: Message, Resp: Message + Default>(
        &mut self,
        m: u8,
        req: &Req,
        max: usize,
    ) -> std::result::Result<std::result::Result<Resp, Status>, Broken> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.out.clear();
        wire::encode(&mut self.out, id, m, OK, req);
        if let Err(e) = self.io.write_all(&self.out).await {
            return Err(Broken {
                status: Status::unavailable(format!("connection lost: {e}")),
                answered_nothing: true,
            });
        }
        let frame = match self.reader.next(&mut self.io, max).await {
            Ok(f) => f,
            Err(ReadError::Closed) => {
                return Err(Broken {
                    status: Status::unavailable("connection closed"),
                    answered_nothing: true,
                });
            }
            Err(ReadError::Io(e)) => {
                use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
                return Err(Broken {
                    answered_nothing: matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted),
                    status: Status::unavailable(format!("connection lost: {e}")),
                });
            }
            Err(ReadError::TooLarge(len)) => {
                return Err(Broken {
                    status: Status::resource_exhausted(format!(
                        "a {len} byte answer is over the {max} byte message limit"
                    )),
                    answered_nothing: false,
                });
            }
        };
        let broken = |why: String| Broken {
            status: Status::internal(why),
            answered_nothing: false,
        };
        if frame.id != id || frame.method != m {
            return Err(broken(format!(
                "answer {}/{} to call {id}/{m}",
                frame.id, frame.method
            )));
        }
        match frame.status {
            OK => Resp::decode(frame.payload)
                .map(Ok)
                .map_err(|e| broken(format!("malformed answer: {e}"))),
            ERROR => Ok(Err(wire::from_wire(frame.payload))),
            other => Err(broken(format!("answer with status {other}"))),
        }
    }
}

/// The native framing's connections to one peer.
pub(crate) struct WireClient {
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// What a new connection sends first: the magic and the hello with the token.
    hello: Vec<u8>,
    connect_timeout: Duration,
    max_message_size: usize,
    idle: Mutex<Vec<Conn>>,
    /// One permit per connection in use.
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for WireClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireClient")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("idle", &self.idle.lock().len())
            .finish_non_exhaustive()
    }
}

impl WireClient {
    pub(crate) fn new(
        addr: &str,
        token: Option<&[u8]>,
        tls: Option<&WireTls>,
        connect_timeout: Duration,
        max_message_size: usize,
    ) -> Result<Self> {
        let tls = match tls {
            Some(t) => {
                let name = t.server_name.clone().unwrap_or_else(|| host_of(addr).to_string());
                let name = ServerName::try_from(name)
                    .map_err(|e| Error::invalid(format!("TLS server name for peer {addr}: {e}")))?;
                Some((TlsConnector::from(t.config.clone()), name))
            }
            None => None,
        };
        let mut hello = MAGIC.to_vec();
        wire::encode_raw(&mut hello, 0, method::HELLO, OK, token.unwrap_or_default());
        Ok(WireClient {
            addr: addr.to_string(),
            tls,
            hello,
            connect_timeout,
            max_message_size,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(MAX_CONNS)),
        })
    }

    /// One call: its response, or the peer's error, or why the peer could not be asked
    /// (as gRPC would have said it: `UNAVAILABLE` when it could not be reached).
    pub(crate) async fn call<Req: Message, Resp: Message + Default>(
        &self,
        m: u8,
        req: Req,
    ) -> std::result::Result<Resp, Status> {
        let _slot = match self.slots.try_acquire() {
            Ok(permit) => permit,
            Err(_) => self
                .slots
                .acquire()
                .await
                .map_err(|_| Status::unavailable("the connection pool is closed"))?,
        };
        if let Some(mut conn) = self.take_idle() {
            match conn.round_trip(m, &req, self.max_message_size).await {
                Ok(answer) => {
                    self.put_back(conn);
                    return answer;
                }
                // Closed while it sat idle (the peer restarted, or timed it out):
                // the request never reached a live server, so it goes on a new one.
                Err(b) if b.answered_nothing => {}
                Err(b) => return Err(b.status),
            }
        }
        let mut conn = self.connect().await?;
        match conn.round_trip(m, &req, self.max_message_size).await {
            Ok(answer) => {
                self.put_back(conn);
                answer
            }
            Err(b) => Err(b.status),
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock();
        while let Some(conn) = idle.pop() {
            if conn.idle_since.elapsed() < MAX_IDLE_AGE {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, mut conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_CONNS {
            conn.idle_since = Instant::now();
            idle.push(conn);
        }
    }

    /// A new connection that has said hello, within the connect timeout.
    async fn connect(&self) -> std::result::Result<Conn, Status> {
        match tokio::time::timeout(self.connect_timeout, self.open()).await {
            Ok(r) => r,
            Err(_) => Err(Status::unavailable(format!(
                "no connection within {:?}",
                self.connect_timeout
            ))),
        }
    }

    async fn open(&self) -> std::result::Result<Conn, Status> {
        let unreachable = |e: std::io::Error| Status::unavailable(format!("cannot connect: {e}"));
        let tcp = TcpStream::connect(&self.addr).await.map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| Status::unavailable(format!("TLS handshake failed: {e}")))?,
            ),
            None => Box::new(tcp),
        };
        let mut conn = Conn {
            io,
            reader: Reader::default(),
            out: Vec::new(),
            next_id: 1,
            idle_since: Instant::now(),
        };
        conn.io.write_all(&self.hello).await.map_err(unreachable)?;
        match conn.reader.next(&mut conn.io, self.max_message_size).await {
            Ok(f) if f.method == method::HELLO && f.status == OK => Ok(conn),
            Ok(f) if f.status == ERROR => Err(wire::from_wire(f.payload)),
            Ok(_) => Err(Status::unavailable("the peer does not speak the native framing")),
            Err(_) => Err(Status::unavailable(
                "the peer closed the connection at hello (a node without the native framing, or TLS and plaintext mixed)",
            )),
        }
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:7000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7000"), "::1");
        assert_eq!(host_of("node-a.svc:7000"), "node-a.svc");
    }
}
