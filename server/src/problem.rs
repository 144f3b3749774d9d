//! Errors of the REST API as RFC 9457 problem details (`application/problem+json`):
//! `type`, `title`, `status`, `detail`, and `kind`, the meshcache [`ErrorKind`] name
//! (`NotFound`, `Load`, ...; `Unauthorized` for a missing or wrong bearer token).
//!
//! | kind | status |
//! |---|---|
//! | `NotFound` (also an unknown group or path) | 404 |
//! | `InvalidArgument` (bad key, bad ttl, bad JSON, too many keys) | 400 |
//! | `InvalidArgument`, body over the group's `max_value_len` | 413 |
//! | `Unauthorized` | 401, with `WWW-Authenticate: Bearer` |
//! | `Load`, `Peer` (the origin or a peer failed) | 502 |
//! | `Timeout` | 504 |
//! | `Closed` (shutting down) | 503 |
//! | `Panic`, anything else | 500 |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meshcache::ErrorKind;
use serde_json::json;

/// One problem: the status, the kind and what happened.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `kind` member.
    pub kind: &'static str,
    /// The `detail` member, for people.
    pub detail: String,
}

/// The name of a kind, as the Rust enum spells it.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "NotFound",
        ErrorKind::Load => "Load",
        ErrorKind::Peer => "Peer",
        ErrorKind::Timeout => "Timeout",
        ErrorKind::InvalidArgument => "InvalidArgument",
        ErrorKind::Closed => "Closed",
        ErrorKind::Panic => "Panic",
        _ => "Internal",
    }
}

/// The status a kind is answered with.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Load | ErrorKind::Peer => StatusCode::BAD_GATEWAY,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Closed => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Problem {
    /// A problem of `kind` with its usual status.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Problem {
            status: status_of(kind),
            kind: kind_name(kind),
            detail: detail.into(),
        }
    }

    /// `400 InvalidArgument`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Problem::new(ErrorKind::InvalidArgument, detail)
    }

    /// `404 NotFound`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(ErrorKind::NotFound, detail)
    }

    /// `413 InvalidArgument`: a body over the limit.
    pub fn too_large(len: impl std::fmt::Display, limit: usize) -> Self {
        Problem {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "InvalidArgument",
            detail: format!("the body is {len} bytes, over this group's limit of {limit}"),
        }
    }

    /// `401 Unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem {
            status: StatusCode::UNAUTHORIZED,
            kind: "Unauthorized",
            detail: detail.into(),
        }
    }

    /// `405`, for a path that exists with another method.
    pub fn method_not_allowed() -> Self {
        Problem {
            status: StatusCode::METHOD_NOT_ALLOWED,
            kind: "InvalidArgument",
            detail: "this path does not take this method".into(),
        }
    }
}

impl From<meshcache::Error> for Problem {
    fn from(e: meshcache::Error) -> Self {
        Problem::new(e.kind(), e.message())
    }
}

/// `urn:meshcache:problem:not-found` from `NotFound`.
fn type_uri(kind: &str) -> String {
    let mut out = String::from("urn:meshcache:problem:");
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": type_uri(self.kind),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "kind": self.kind,
        });
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"meshcached\""),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_status_and_a_name() {
        assert_eq!(status_of(ErrorKind::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(status_of(ErrorKind::Load), StatusCode::BAD_GATEWAY);
        assert_eq!(status_of(ErrorKind::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(status_of(ErrorKind::Closed), StatusCode::SERVICE_UNAVAILABLE);
        for k in ErrorKind::ALL {
            assert_ne!(kind_name(k), "Internal");
        }
        assert_eq!(
            type_uri("InvalidArgument"),
            "urn:meshcache:problem:invalid-argument"
        );
    }
}
