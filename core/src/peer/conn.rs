//! The connections the peer server accepts: an accept loop that backs off instead of
//! spinning when the process is out of file descriptors, and a guard on every
//! connection that closes it when it never says hello, when it has served no request for
//! too long, or when shutdown's grace period is over.
//!
//! tonic's graceful shutdown waits for every connection to finish, and a connection
//! whose client is stopped (SIGSTOP), idle, or has not even sent the HTTP/2 preface never
//! finishes by itself. The guard makes every read and write of such a connection fail
//! once its time is up, so the connection ends and shutdown always returns.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Bytes a client must send before it counts as having said hello: the HTTP/2 client
/// preface is 24 bytes, the native framing's magic and hello 28, and a TLS ClientHello
/// is longer.
const HELLO_BYTES: u64 = 24;
/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;
/// The longest pause of the accept loop after an accept error (out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Time limits of server connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// A connection must send its first bytes (TLS hello or HTTP/2 preface) within this.
    pub(crate) handshake_timeout: Duration,
    /// A connection that has served no request for this long is closed.
    pub(crate) idle_timeout: Duration,
    /// Whether clients must speak TLS.
    pub(crate) tls: bool,
}

/// What the server counts about its connections.
#[derive(Debug, Default)]
pub(crate) struct ConnCounters {
    pub(crate) accept_errors: AtomicU64,
    pub(crate) handshake_timeouts: AtomicU64,
    pub(crate) idle_closed: AtomicU64,
    pub(crate) killed: AtomicU64,
    pub(crate) protocol_mismatch: AtomicU64,
}

/// One connection's activity, shared with the requests it carries (through tonic's
/// connect info): requests in flight, and when the last one started.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` when the last request ended.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Marks a request in flight until the returned guard is dropped. (The idle clock
    /// restarts when it ends: while it runs, `in_flight` keeps the connection open.)
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Acquire))
    }
}

/// A request in flight on its connection.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .last_ms
            .store(self.0.epoch.elapsed().as_millis() as u64, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connect info the server's requests carry (gRPC's through `listen::PeerIo`).
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub(crate) activity: Arc<Activity>,
    pub(crate) remote: Option<std::net::SocketAddr>,
}

/// An accepted connection, closed by its guard when its time is up.
#[derive(Debug)]
pub(crate) struct Guarded {
    io: TcpStream,
    info: ConnInfo,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Checked (one atomic load) on every read and write; `killed` and `deadline` are
    /// polled only when the connection is about to wait, so busy connections pay for
    /// neither a timer nor a lock.
    kill: CancellationToken,
    deadline: Pin<Box<Sleep>>,
    limits: ConnLimits,
    read: u64,
    /// Set once the kill switch has been seen (and counted).
    dead: bool,
    counters: Arc<ConnCounters>,
}

fn closed(kind: io::ErrorKind, why: &'static str) -> io::Error {
    io::Error::new(kind, why)
}

impl Guarded {
    fn new(io: TcpStream, kill: &CancellationToken, limits: ConnLimits, counters: Arc<ConnCounters>) -> Self {
        let remote = io.peer_addr().ok();
        Guarded {
            io,
            info: ConnInfo {
                activity: Arc::new(Activity::new()),
                remote,
            },
            // A child token per connection: waiting on it never contends with other
            // connections, and cancelling the parent reaches every child.
            killed: Box::pin(kill.child_token().cancelled_owned()),
            kill: kill.clone(),
            deadline: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
            limits,
            read: 0,
            dead: false,
            counters,
        }
    }

    /// `Err` once the connection must close; otherwise registers for the next deadline.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.dead || self.killed.as_mut().poll(cx).is_ready() {
            if !self.dead {
                self.dead = true;
                self.counters.killed.fetch_add(1, Ordering::Relaxed);
            }
            return Err(closed(io::ErrorKind::ConnectionAborted, "the server shut down"));
        }
        while self.deadline.as_mut().poll(cx).is_ready() {
            if self.read < HELLO_BYTES {
                self.counters.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(closed(io::ErrorKind::TimedOut, "no handshake in time"));
            }
            let a = &self.info.activity;
            let next = if a.in_flight.load(Ordering::Acquire) > 0 {
                Instant::now() + self.limits.idle_timeout
            } else {
                a.last().max(a.epoch) + self.limits.idle_timeout
            };
            if next <= Instant::now() {
                self.counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                return Err(closed(io::ErrorKind::TimedOut, "idle for too long"));
            }
            self.deadline.as_mut().reset(next);
        }
        Ok(())
    }
}

impl Guarded {
    pub(crate) fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// A plaintext client on a TLS port, or a TLS client on a plaintext one, would only
    /// ever see broken connections: say so where an operator looks, and count it.
    fn check_protocol(&self, first: u8) -> io::Result<()> {
        let speaks_tls = first == TLS_HANDSHAKE;
        if speaks_tls == self.limits.tls {
            return Ok(());
        }
        self.counters.protocol_mismatch.fetch_add(1, Ordering::Relaxed);
        let (client, port) = if speaks_tls {
            ("TLS", "plaintext")
        } else {
            ("plaintext", "TLS")
        };
        tracing::warn!(
            remote = ?self.info.remote,
            "a client speaks {client} to this {port} meshcache port: every node of a cluster must use TLS, or none"
        );
        Err(closed(io::ErrorKind::InvalidData, "TLS and plaintext do not mix"))
    }
}

impl Guarded {
    /// The kill switch, cheaply: one atomic load.
    fn alive(&mut self) -> io::Result<()> {
        if self.dead || self.kill.is_cancelled() {
            if !self.dead {
                self.dead = true;
                self.counters.killed.fetch_add(1, Ordering::Relaxed);
            }
            return Err(closed(io::ErrorKind::ConnectionAborted, "the server shut down"));
        }
        Ok(())
    }

    /// The inner IO is about to wait: arm the kill switch and the deadline (or fail now
    /// if either has passed).
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.check(cx) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.alive()?;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => return this.waiting(cx),
            Poll::Ready(r) => r?,
        }
        let n = (buf.filled().len() - before) as u64;
        if this.read == 0 && n > 0 {
            this.check_protocol(buf.filled()[before])?;
        }
        if this.read < HELLO_BYTES && this.read + n >= HELLO_BYTES {
            // Hello said: from now on the deadline is the idle one.
            let next = Instant::now() + this.limits.idle_timeout;
            this.deadline.as_mut().reset(next);
        }
        this.read += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.alive()?;
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.alive()?;
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead || this.kill.is_cancelled() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.alive()?;
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The server's incoming connections: accepted with `TCP_NODELAY`, each guarded.
pub(crate) struct Incoming {
    listener: TcpListener,
    kill: CancellationToken,
    limits: ConnLimits,
    counters: Arc<ConnCounters>,
    backoff: Duration,
    pause: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    pub(crate) fn new(
        listener: TcpListener,
        kill: CancellationToken,
        limits: ConnLimits,
        counters: Arc<ConnCounters>,
    ) -> Self {
        Incoming {
            listener,
            kill,
            limits,
            counters,
            backoff: Duration::ZERO,
            pause: None,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Guarded>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((io, _)) => {
                    this.backoff = Duration::ZERO;
                    let _ = io.set_nodelay(true);
                    let guarded = Guarded::new(io, &this.kill, this.limits, this.counters.clone());
                    return Poll::Ready(Some(Ok(guarded)));
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors (or memory): accepting again at once would
                    // fail again at once. Existing connections keep being served while
                    // the loop pauses, doubling the pause up to a second.
                    this.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                    this.backoff = (this.backoff * 2).clamp(Duration::from_millis(5), MAX_ACCEPT_BACKOFF);
                    tracing::warn!(error = %e, pause = ?this.backoff, "meshcache peer server cannot accept");
                    this.pause = Some(Box::pin(tokio::time::sleep(this.backoff)));
                }
            }
        }
    }
}

/// Accept errors that concern only the one connection being accepted.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
