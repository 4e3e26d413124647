//! Where the courier's app keeps attempt state between runs: the
//! [`StateStore`] contract, and a store in memory.

use std::sync::{Mutex, PoisonError};

#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;

/// Where the app keeps the attempt state between runs. `key` names the
/// delivery; values are short JSON texts to store as they are.
///
/// Every verifier of a ticket, in any thread or process, must see the same
/// store, and [`StateStore::compare_and_set`] must be atomic for them all
/// (a lock around a map, a database transaction, `synchronized` in Kotlin,
/// an `NSLock` or actor in Swift): that is what keeps the attempt count
/// exact however many verifier objects an app makes.
pub trait StateStore: Send + Sync {
    /// The value saved under `key`, or `None`.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the storage fails.
    fn load(&self, key: &str) -> Result<Option<String>>;

    /// Saves `value` under `key` if, and only if, the value there is still
    /// `expected` (`None`: no value), as one atomic step. Returns `true` when
    /// it saved, `false` when the value had changed (nothing is saved then;
    /// the core reads it again and retries). Return only once the value is
    /// durably stored.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the storage fails; the core then gives no
    /// outcome, so a failed save never looks like a success.
    fn compare_and_set(&self, key: &str, expected: Option<&str>, value: &str) -> Result<bool>;
}

/// A [`StateStore`] in memory: for tests and for apps that keep their own
/// copy elsewhere.
#[derive(Debug, Default)]
pub struct InMemoryStateStore {
    values: Mutex<std::collections::HashMap<String, String>>,
}

impl InMemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateStore for InMemoryStateStore {
    fn load(&self, key: &str) -> Result<Option<String>> {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(values.get(key).cloned())
    }

    fn compare_and_set(&self, key: &str, expected: Option<&str>, value: &str) -> Result<bool> {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        if values.get(key).map(String::as_str) != expected {
            return Ok(false);
        }
        values.insert(key.to_string(), value.to_string());
        Ok(true)
    }
}
