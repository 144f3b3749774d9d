//! The groups a node serves, by name: filled by the cluster, read by the peer server.

use std::collections::HashMap;
use std::fmt;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::group::Group;

/// The groups of one node. The peer server holds it (weakly) to find the group a request
/// names; the cluster adds groups as they are built and closes them all on shutdown.
#[derive(Default)]
pub(crate) struct Registry {
    /// Guards the groups and the closed flag: a group is never added after `close_all`.
    inner: RwLock<(HashMap<String, Group>, bool)>,
    /// Groups registered so far, for whoever waits for the first (an etcd node joins the
    /// ring once it serves a group).
    count: tokio::sync::watch::Sender<usize>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read();
        f.debug_struct("Registry")
            .field("groups", &inner.0.keys().collect::<Vec<_>>())
            .field("closed", &inner.1)
            .finish()
    }
}

impl Registry {
    /// The group registered under `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Group> {
        self.inner.read().0.get(name).cloned()
    }

    /// A receiver of the number of groups registered.
    pub(crate) fn watch(&self) -> tokio::sync::watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Every group.
    pub(crate) fn groups(&self) -> Vec<Group> {
        self.inner.read().0.values().cloned().collect()
    }

    /// Adds `group`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the name is taken; `Closed` after [`Registry::close_all`].
    pub(crate) fn insert(&self, group: &Group) -> Result<()> {
        let mut inner = self.inner.write();
        if inner.1 {
            return Err(Error::closed());
        }
        if inner.0.contains_key(group.name()) {
            return Err(Error::invalid(format!(
                "group {:?} already exists in this cluster",
                group.name()
            )));
        }
        inner.0.insert(group.name().to_string(), group.clone());
        self.count.send_replace(inner.0.len());
        Ok(())
    }

    /// Closes every group; later inserts fail.
    pub(crate) fn close_all(&self) {
        let groups: Vec<Group> = {
            let mut inner = self.inner.write();
            inner.1 = true;
            inner.0.values().cloned().collect()
        };
        for g in groups {
            g.close();
        }
    }
}
