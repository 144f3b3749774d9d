//! The one error type of meshcache.
//!
//! Every fallible operation returns [`Error`]. Match on [`Error::kind`]: the kinds are the
//! API and map one to one onto the C result codes, the Python exception classes and the
//! JavaScript `err.code` values (the table in docs/ARCHITECTURE.md). The `Display` text
//! is for people and is not API.
//!
//! An `Error` is cheap to clone (one `Arc`): a failed singleflight hands the same error to
//! every waiter.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// A boxed error from application code (a loader), kept so that bindings can hand the
/// original error back to their caller unchanged.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong, independent of the message.
///
/// New kinds may be added; the numbering of the C ABI never reuses a published number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The loader (on whichever node owns the key) said the key does not exist.
    NotFound,
    /// The application's loader failed; [`Error::source`] holds its error.
    Load,
    /// A peer could not be reached or answered with an error.
    Peer,
    /// A deadline passed before the operation completed.
    Timeout,
    /// The caller passed something unusable: a key or value over the limit, a bad address,
    /// an unknown group name.
    InvalidArgument,
    /// The cluster or group was shut down.
    Closed,
    /// Code run on behalf of the caller (usually a loader) panicked. The process lives on.
    Panic,
}

impl ErrorKind {
    /// A stable, machine-readable name (`"NOT_FOUND"`, `"LOAD"`, ...), used for JavaScript
    /// `err.code` and log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::Load => "LOAD",
            ErrorKind::Peer => "PEER",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::Closed => "CLOSED",
            ErrorKind::Panic => "PANIC",
        }
    }
}

impl ErrorKind {
    /// Every kind, in the order of the error table in docs/ARCHITECTURE.md.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::NotFound,
        ErrorKind::Load,
        ErrorKind::Peer,
        ErrorKind::Timeout,
        ErrorKind::InvalidArgument,
        ErrorKind::Closed,
        ErrorKind::Panic,
    ];

    /// The kind named `name` ([`ErrorKind::as_str`]'s inverse).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of every meshcache operation.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                source: None,
            }),
        }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(kind: ErrorKind, message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                source: Some(Arc::from(source.into())),
            }),
        }
    }

    /// The key does not exist (what a loader returns to ask for negative caching is
    /// [`crate::Loaded::NotFound`]; this is what callers receive).
    pub fn not_found() -> Self {
        Error::new(ErrorKind::NotFound, "not found")
    }

    /// A loader failure wrapping the application's own error.
    pub fn load(source: impl Into<BoxError>) -> Self {
        let source = source.into();
        let message = format!("loader failed: {source}");
        Error::with_source(ErrorKind::Load, message, source)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn closed() -> Self {
        Error::new(ErrorKind::Closed, "meshcache was shut down")
    }

    /// The kind: what callers should match on.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The application error behind a [`ErrorKind::Load`], if any, for downcasting.
    pub fn cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.inner.source.as_deref()
    }

    /// `true` for [`ErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// `true` for [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.kind, self.inner.message)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// The text of a panic payload (`panic!` with a string or a format), for error messages.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}

/// Shorthand for `Result<T, meshcache::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct AppError;
    impl fmt::Display for AppError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("db down")
        }
    }
    impl StdError for AppError {}

    #[test]
    fn load_error_keeps_the_application_error() {
        let err = Error::load(AppError);
        assert_eq!(err.kind(), ErrorKind::Load);
        assert!(err.cause().unwrap().downcast_ref::<AppError>().is_some());
        assert!(err.to_string().contains("db down"));
        let shared = err.clone();
        assert!(shared.cause().unwrap().is::<AppError>());
    }

    #[test]
    fn kinds_have_stable_names() {
        assert_eq!(ErrorKind::NotFound.as_str(), "NOT_FOUND");
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(k.as_str()), Some(k));
        }
        assert_eq!(ErrorKind::from_name("nope"), None);
        assert!(Error::not_found().is_not_found());
        assert!(Error::new(ErrorKind::Timeout, "t").is_timeout());
    }
}
