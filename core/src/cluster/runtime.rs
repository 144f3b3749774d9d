//! The runtime a cluster runs on: one it creates and owns, or one it was handed.

use std::fmt;

use parking_lot::Mutex;
use tokio::runtime::{Handle, Runtime};

use crate::error::{Error, ErrorKind, Result};

/// A cluster's runtime. An owned runtime winds down when the cluster is dropped.
pub(crate) struct NodeRuntime {
    handle: Handle,
    /// The runtime this cluster created, if it did.
    owned: Mutex<Option<Runtime>>,
}

impl fmt::Debug for NodeRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeRuntime")
            .field("owned", &self.owned.lock().is_some())
            .finish()
    }
}

/// A multi-threaded runtime of `worker_threads` threads named `meshcache`.
pub(crate) fn create(worker_threads: usize) -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .thread_name("meshcache")
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Closed, format!("cannot start a runtime: {e}")))
}

impl NodeRuntime {
    pub(crate) fn borrowed(handle: Handle) -> Self {
        NodeRuntime {
            handle,
            owned: Mutex::new(None),
        }
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Hands `rt` (whose handle this is) to the cluster, to be shut down with it.
    pub(crate) fn adopt(&self, rt: Runtime) {
        *self.owned.lock() = Some(rt);
    }
}

impl Drop for NodeRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.owned.get_mut().take() {
            // Dropping a runtime blocks, which panics inside async code (and a loader may
            // hold the last handle): let it wind down in the background.
            rt.shutdown_background();
        }
    }
}
