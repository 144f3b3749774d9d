//! The cluster token: every peer call carries it, and a node configured with one refuses
//! calls without it (or with a wrong one) before any work is done.
//!
//! The token travels as `authorization: Bearer <token>` metadata. A node accepts its
//! current token and, during a rotation, the previous one; both are compared in
//! constant time. The `grpc.health.v1` service stays open, so probes need no token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::{Error, Result};

const HEADER: &str = "authorization";
const SCHEME: &[u8] = b"Bearer ";

/// The tokens a node sends and accepts.
#[derive(Clone, Default)]
pub(crate) struct Tokens {
    current: Option<Arc<[u8]>>,
    previous: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        f.debug_struct("Tokens")
            .field("current", &self.current.as_ref().map(|_| "<set>"))
            .field("previous", &self.previous.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A token must fit in an HTTP header and say something.
pub(crate) fn check_token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::invalid("the cluster token is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "the cluster token must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

impl Tokens {
    /// `current` is sent on every call and accepted; `previous` is accepted too.
    pub(crate) fn new(current: Option<String>, previous: Option<String>) -> Result<Self> {
        if previous.is_some() && current.is_none() {
            return Err(Error::invalid("a previous token needs a current token"));
        }
        for t in current.iter().chain(previous.iter()) {
            check_token(t)?;
        }
        let arc = |t: String| Arc::<[u8]>::from(t.into_bytes());
        Ok(Tokens {
            current: current.map(arc),
            previous: previous.map(arc),
        })
    }

    pub(crate) fn is_set(&self) -> bool {
        self.current.is_some()
    }

    fn accepts(&self, presented: &[u8]) -> bool {
        let matches = |t: &Option<Arc<[u8]>>| t.as_ref().is_some_and(|t| bool::from(t.ct_eq(presented)));
        // Both compared, always: the time taken does not say which one matched.
        let current = matches(&self.current);
        let previous = matches(&self.previous);
        current | previous
    }

    /// The token a client presents (the native framing's hello carries it as is).
    pub(crate) fn current(&self) -> Option<&[u8]> {
        self.current.as_deref()
    }

    /// The interceptor clients put on every call.
    pub(crate) fn attach(&self) -> Attach {
        Attach {
            header: self.current.as_ref().map(|t| {
                let mut v = SCHEME.to_vec();
                v.extend_from_slice(t);
                MetadataValue::try_from(v.as_slice()).expect("checked by check_token")
            }),
        }
    }

    /// The interceptor the server puts in front of the peer service.
    pub(crate) fn check(&self, refused: Arc<AtomicU64>) -> Check {
        Check {
            tokens: self.clone(),
            refused,
        }
    }
}

/// Adds the token to a client's calls.
#[derive(Clone)]
pub(crate) struct Attach {
    header: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attach")
            .field("token", &self.header.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Interceptor for Attach {
    fn call(&mut self, mut request: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            request.metadata_mut().insert(HEADER, h.clone());
        }
        Ok(request)
    }
}

/// Refuses calls without an accepted token, counting them.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    tokens: Tokens,
    refused: Arc<AtomicU64>,
}

impl Check {
    /// Whether a call presenting `presented` (the token, without the scheme) may go on:
    /// always without a token configured; otherwise only with an accepted one (a refusal
    /// is counted). Both protocols, gRPC and the native framing, ask here.
    pub(crate) fn admits(&self, presented: Option<&[u8]>) -> std::result::Result<(), Status> {
        if !self.tokens.is_set() {
            return Ok(());
        }
        match presented {
            Some(t) if self.tokens.accepts(t) => Ok(()),
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(Status::unauthenticated("missing or wrong cluster token"))
            }
        }
    }
}

impl Interceptor for Check {
    fn call(&mut self, request: Request<()>) -> std::result::Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get(HEADER)
            .map(|v| v.as_bytes())
            .and_then(|v| v.strip_prefix(SCHEME));
        self.admits(presented)?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(header: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(h) = header {
            r.metadata_mut().insert(HEADER, h.parse().unwrap());
        }
        r
    }

    #[test]
    fn current_and_previous_tokens_pass_others_are_refused_and_counted() {
        let tokens = Tokens::new(Some("new-secret".into()), Some("old-secret".into())).unwrap();
        let refused = Arc::new(AtomicU64::new(0));
        let mut check = tokens.check(refused.clone());
        assert!(check.call(with(Some("Bearer new-secret"))).is_ok());
        assert!(check.call(with(Some("Bearer old-secret"))).is_ok());
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("new-secret"),
            Some("Bearer new-secre"),
            Some("Bearer "),
        ] {
            let e = check.call(with(bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
        }
        assert_eq!(refused.load(Ordering::Relaxed), 5);
        // What a client attaches is what a server accepts.
        let sent = tokens.attach().call(Request::new(())).unwrap();
        assert!(check.call(sent).is_ok());
    }

    #[test]
    fn no_token_lets_everything_through_and_bad_tokens_are_refused_at_build() {
        let mut check = Tokens::default().check(Arc::default());
        assert!(check.call(with(None)).is_ok());
        assert!(Tokens::new(Some("has space".into()), None).is_err());
        assert!(Tokens::new(Some(String::new()), None).is_err());
        assert!(Tokens::new(None, Some("x".into())).is_err());
        let tokens = Tokens::new(Some("s3cret".into()), None).unwrap();
        assert!(!format!("{tokens:?}").contains("s3cret"));
        assert!(!format!("{:?}", tokens.attach()).contains("s3cret"));
    }
}
