//! The application's loader: how a miss becomes a value.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;

/// What a loader found for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// The value, cached for `ttl` (or the group's default TTL when `None`).
    Value {
        /// The bytes to cache and return.
        value: Bytes,
        /// How long to keep it; `None` uses the group's default.
        ttl: Option<Duration>,
    },
    /// The key does not exist. Cached as a negative entry for `ttl` (or the group's
    /// negative TTL when `None`), and callers get [`crate::ErrorKind::NotFound`].
    NotFound {
        /// How long to remember the absence; `None` uses the group's negative TTL.
        ttl: Option<Duration>,
    },
}

impl Loaded {
    /// A value with the group's default TTL.
    pub fn value(value: impl Into<Bytes>) -> Self {
        Loaded::Value {
            value: value.into(),
            ttl: None,
        }
    }

    /// "No such key", remembered for the group's negative TTL.
    pub fn not_found() -> Self {
        Loaded::NotFound { ttl: None }
    }

    /// The same result with its own TTL.
    pub fn with_ttl(self, ttl: Duration) -> Self {
        match self {
            Loaded::Value { value, .. } => Loaded::Value {
                value,
                ttl: Some(ttl),
            },
            Loaded::NotFound { .. } => Loaded::NotFound { ttl: Some(ttl) },
        }
    }
}

/// The future a [`Loader`] returns.
pub type LoadFuture = Pin<Box<dyn Future<Output = Result<Loaded>> + Send + 'static>>;

/// Loads the value of a key on a miss.
///
/// Called only on the node that owns the key (or on any node while the owner is
/// unreachable), at most once at a time per key in a process. It may run concurrently for
/// different keys. An `Err` is returned to every caller waiting on that key and is not
/// cached; wrap application errors with [`crate::Error::load`] so that bindings can hand
/// them back unchanged.
///
/// Any `Fn(Bytes) -> impl Future<Output = Result<Loaded>>` is a loader.
pub trait Loader: Send + Sync + 'static {
    /// Loads `key`.
    fn load(&self, key: Bytes) -> LoadFuture;
}

impl<F, Fut> Loader for F
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Loaded>> + Send + 'static,
{
    fn load(&self, key: Bytes) -> LoadFuture {
        Box::pin(self(key))
    }
}

/// A loader for groups that are only ever written with `set`: every miss is NotFound.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLoader;

impl Loader for NoLoader {
    fn load(&self, _key: Bytes) -> LoadFuture {
        Box::pin(async {
            Ok(Loaded::NotFound {
                ttl: Some(Duration::ZERO),
            })
        })
    }
}

pub(crate) struct DebugLoader;
impl fmt::Debug for DebugLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<loader>")
    }
}
