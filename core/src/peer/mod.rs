//! The gRPC peer protocol (`core/proto/meshcache/peer/v1/peer.proto`): the client a node uses to
//! reach each peer, and the service through which it serves the keys it owns.
//!
//! Errors cross the wire as gRPC statuses. A status produced by meshcache carries its
//! [`ErrorKind`] in the `meshcache-kind` metadata entry, so the caller sees the kind the
//! owner saw (a loader failure stays `Load`). Any other status, and every transport
//! failure, is a [`ErrorKind::Peer`] (or [`ErrorKind::Timeout`]) error: the caller's cue
//! to fall back to a local load.

pub(crate) mod auth;
pub(crate) mod batch;
mod breaker;
pub(crate) mod client;
pub(crate) mod conn;
mod listen;
pub(crate) mod server;
pub(crate) mod tls;
mod wire;
pub(crate) mod wire_client;
mod wire_server;

use tonic::{Code, Status};

use crate::error::{Error, ErrorKind};

/// Generated protobuf and gRPC types of `meshcache.peer.v1`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("meshcache.peer.v1");
}

pub use breaker::BreakerState;
pub use client::{PeerProtocol, PeerStats};
pub use server::{MAX_KEYS_PER_GET_MANY, ServerStats};

const KIND_HEADER: &str = "meshcache-kind";

/// An [`Error`] as a status carrying its kind.
pub(crate) fn to_status(err: &Error) -> Status {
    let code = match err.kind() {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Closed => Code::Unavailable,
        ErrorKind::Peer => Code::Unavailable,
        _ => Code::Internal,
    };
    let mut status = Status::new(code, err.message().to_string());
    if let Ok(v) = err.kind().as_str().parse() {
        status.metadata_mut().insert(KIND_HEADER, v);
    }
    status
}

/// A status received from `peer` as an [`Error`].
pub(crate) fn from_status(peer: &str, status: &Status) -> Error {
    let tagged = status
        .metadata()
        .get(KIND_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorKind::from_name);
    let kind = match (tagged, status.code()) {
        // A node that is shutting down is as good as unreachable: fall back.
        (Some(ErrorKind::Closed), _) => ErrorKind::Peer,
        (Some(kind), _) => kind,
        (None, Code::DeadlineExceeded) => ErrorKind::Timeout,
        (None, _) => ErrorKind::Peer,
    };
    Error::new(kind, format!("peer {peer}: {}", status.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_survive_the_wire() {
        for kind in [
            ErrorKind::Load,
            ErrorKind::InvalidArgument,
            ErrorKind::Panic,
            ErrorKind::Timeout,
        ] {
            let e = from_status("p", &to_status(&Error::new(kind, "x")));
            assert_eq!(e.kind(), kind);
        }
        assert_eq!(
            from_status("p", &to_status(&Error::closed())).kind(),
            ErrorKind::Peer
        );
        assert_eq!(
            from_status("p", &Status::not_found("unknown group")).kind(),
            ErrorKind::Peer
        );
        assert_eq!(
            from_status("p", &Status::deadline_exceeded("slow")).kind(),
            ErrorKind::Timeout
        );
    }
}
