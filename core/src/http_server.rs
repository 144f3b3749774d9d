//! The HTTP/1.1 serve loop of `metrics_listen` (and of meshcached's REST port, which
//! uses it too): hyper's connection builder with a header read
//! timeout (a client that opens a connection and says nothing, or trickles its headers,
//! is dropped after [`HEADER_READ_TIMEOUT`]; it never holds up anyone else: every
//! connection is a task of its own), a bound on open connections, and a graceful stop
//! that lets requests in flight finish for up to the grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Longest time a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections open at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Serves `router` on `listener` until `stop` completes, then stops accepting and waits
/// at most `grace` for the connections still open to finish their request.
pub async fn serve(listener: TcpListener, router: Router, stop: impl Future<Output = ()>, grace: Duration) {
    serve_and_tell(listener, router, stop, grace, None).await;
}

/// [`serve`], telling `closed` once the listener is closed (new connections refused).
pub(crate) async fn serve_and_tell(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()>,
    grace: Duration,
    closed: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: let some connections end first.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("{MAX_CONNECTIONS} connections open: closing a new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if let Some(closed) = closed {
        let _ = closed.send(());
    }
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("http connections still open after {grace:?}: closing them");
    }
}
