//! The server side of the native framing (`wire.rs`): one task per connection reads a
//! call, answers it through the same handlers as gRPC (`PeerService`), and reads the
//! next. The token is checked once, at hello; limits, admission and connection guards
//! are the ones every peer request passes.

use bytes::Bytes;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::server::Connected;

use super::conn::ConnInfo;
use super::listen::Routed;
use super::server::PeerService;
use super::wire::{self, ERROR, Frame, MAGIC, OK, ReadError, Reader, method};

/// Serves one native connection until it closes, fails, or `stop` (between calls).
pub(crate) async fn serve(mut io: Routed, service: &PeerService, stop: &CancellationToken) {
    let info = io.connect_info();
    let max = service.max_message_size();
    let mut magic = [0u8; MAGIC.len()];
    if io.read_exact(&mut magic).await.is_err() || &magic != MAGIC {
        tracing::debug!(remote = ?info.remote, "meshcache peer: not a native framing hello");
        return;
    }
    let mut reader = Reader::default();
    let mut out = Vec::new();
    // Hello: the token, checked before anything else is read.
    let hello = match reader.next(&mut io, max).await {
        Ok(f) if f.method == method::HELLO => f,
        _ => return,
    };
    let presented = (!hello.payload.is_empty()).then_some(&hello.payload[..]);
    if let Err(status) = service.auth().admits(presented) {
        wire::encode(&mut out, hello.id, method::HELLO, ERROR, &wire::to_wire(&status));
        let _ = io.write_all(&out).await;
        return;
    }
    wire::encode_raw(&mut out, hello.id, method::HELLO, OK, &[]);
    if io.write_all(&out).await.is_err() {
        return;
    }
    // Registered once: a fresh `cancelled()` per call would take the token's lock.
    let mut stopped = std::pin::pin!(stop.cancelled());
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut stopped => return,
            frame = reader.next(&mut io, max) => frame,
        };
        let frame = match frame {
            Ok(f) => f,
            Err(ReadError::TooLarge(len)) => {
                // Its payload is not read: the connection cannot go on.
                let status = Status::invalid_argument(format!(
                    "a {len} byte call is over the {max} byte message limit"
                ));
                out.clear();
                wire::encode(&mut out, 0, 0, ERROR, &wire::to_wire(&status));
                let _ = io.write_all(&out).await;
                return;
            }
            Err(_) => return,
        };
        out.clear();
        answer(service, &info, frame, &mut out).await;
        if io.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Appends the answer to `frame` to `out`.
async fn answer(service: &PeerService, info: &ConnInfo, frame: Frame, out: &mut Vec<u8>) {
    let (id, m) = (frame.id, frame.method);
    if let Err(status) = dispatch(service, info, frame, out).await {
        wire::encode(out, id, m, ERROR, &wire::to_wire(&status));
    }
}

fn decode<M: Message + Default>(payload: Bytes) -> Result<M, Status> {
    M::decode(payload).map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))
}

/// Runs the call through the handlers gRPC uses, and appends its response to `out`.
async fn dispatch(
    service: &PeerService,
    info: &ConnInfo,
    frame: Frame,
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    let (id, m, p) = (frame.id, frame.method, frame.payload);
    let info = Some(info);
    match m {
        method::GET => wire::encode(out, id, m, OK, &service.handle_get(info, decode(p)?).await?),
        method::GET_MANY => wire::encode(out, id, m, OK, &service.handle_get_many(info, decode(p)?).await?),
        method::SET => wire::encode(out, id, m, OK, &service.handle_set(info, decode(p)?).await?),
        method::DELETE => wire::encode(out, id, m, OK, &service.handle_delete(info, decode(p)?).await?),
        other => {
            return Err(Status::unimplemented(format!(
                "no method {other} in the native framing"
            )));
        }
    }
    Ok(())
}
