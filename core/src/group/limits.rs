//! A group's size limits on keys and values, checked on every call.

use crate::error::{Error, Result};

/// Default longest key, in bytes.
pub const DEFAULT_MAX_KEY_LEN: usize = 1024;
/// Default largest value, in bytes.
pub const DEFAULT_MAX_VALUE_LEN: usize = 8 * 1024 * 1024;

/// Limits and defaults of a group, checked on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key accepted.
    pub max_key_len: usize,
    /// Largest value accepted from `set` or a loader.
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
        }
    }
}

impl Limits {
    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("key is empty"));
        }
        if key.len() > self.max_key_len {
            return Err(Error::invalid(format!(
                "key is {} bytes, over the limit of {}",
                key.len(),
                self.max_key_len
            )));
        }
        Ok(())
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_len {
            return Err(Error::invalid(format!(
                "value is {} bytes, over the limit of {}",
                value.len(),
                self.max_value_len
            )));
        }
        Ok(())
    }
}
