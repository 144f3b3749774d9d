//! One port, two protocols: every accepted connection is guarded (`conn.rs`), goes
//! through TLS when the node uses it, and is then routed by its first byte: the native
//! framing's [`MAGIC`] to `wire_server.rs`, anything else (an HTTP/2 preface) to the
//! gRPC server, which serves foreign clients, tooling and `grpc.health.v1`.
//!
//! TLS is terminated here for both, with the same rustls configuration, so the token and
//! the certificates guard the native framing exactly as they guard gRPC.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::Connected;

use super::conn::{ConnInfo, Guarded, Incoming};
use super::server::PeerService;
use super::wire::MAGIC;

/// What a connection's stream is, under TLS or not.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A routed connection: its first bytes, read to route it, are read again; it carries
/// its connect info to the gRPC server's requests.
pub(crate) struct Routed {
    prefix: Bytes,
    inner: Box<dyn Io>,
    info: ConnInfo,
}

impl Connected for Routed {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Routed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Routed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Where accepted connections go.
pub(crate) struct Router {
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) service: Arc<PeerService>,
    pub(crate) grpc: mpsc::Sender<io::Result<Routed>>,
    /// A TLS handshake must end within this (a client that sends a hello and stalls).
    pub(crate) handshake_timeout: Duration,
    /// Stops the accept loop and every native connection between two calls.
    pub(crate) stop: CancellationToken,
}

/// Accepts until `router.stop`, routing each connection on a task of `tracker` (closed
/// when the loop ends, so waiting on it waits for every native connection).
pub(crate) async fn accept_loop(mut incoming: Incoming, router: Arc<Router>, tracker: TaskTracker) {
    loop {
        let conn = tokio::select! {
            biased;
            _ = router.stop.cancelled() => break,
            conn = incoming.next() => conn,
        };
        let Some(Ok(conn)) = conn else { break };
        let router = router.clone();
        tracker.spawn(async move { route(conn, &router).await });
    }
    tracker.close();
}

async fn route(conn: Guarded, router: &Router) {
    let info = conn.info().clone();
    let mut io: Box<dyn Io> = match &router.tls {
        Some(acceptor) => match tokio::time::timeout(router.handshake_timeout, acceptor.accept(conn)).await {
            Ok(Ok(tls)) => Box::new(tls),
            Ok(Err(e)) => {
                tracing::debug!(remote = ?info.remote, error = %e, "meshcache peer TLS handshake failed");
                return;
            }
            Err(_) => {
                router
                    .service
                    .counters
                    .conn
                    .handshake_timeouts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
        },
        None => Box::new(conn),
    };
    let mut first = [0u8; 1];
    match io.read(&mut first).await {
        Ok(1) => {}
        _ => return,
    }
    let io = Routed {
        prefix: Bytes::copy_from_slice(&first),
        inner: io,
        info,
    };
    if first[0] == MAGIC[0] {
        super::wire_server::serve(io, &router.service, &router.stop).await;
    } else {
        // The gRPC server may have stopped (shutdown): the connection just closes.
        let _ = router.grpc.send(Ok(io)).await;
    }
}
