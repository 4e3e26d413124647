//! Where the backend counts online attempts and keeps its decisions: the
//! [`AttemptStore`] contract, and a store in memory for one process.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;

/// Where the backend counts online attempts and keeps what it decided:
/// which entry ended each code, and the first receipt for each ticket. Every
/// backend instance must see the same store (see `RedisStore` behind the
/// `redis` feature); each operation must be atomic. Entries may be forgotten
/// after their `expires_at` (unix seconds).
///
/// Every operation is idempotent, so a call whose answer was lost (a
/// timeout) can be made again and gets the same answer: an attempt is named
/// by an id derived from the entry, and counts once however often it comes.
pub trait AttemptStore: Send + Sync {
    /// Counts the attempt named `attempt` for `scope` unless it is already
    /// counted. Returns its position among the distinct attempts of `scope`
    /// (1 for the first), the same on every call with that id; or `None`
    /// when `limit` distinct attempts are counted and `attempt` is not one
    /// of them (nothing is stored then).
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails; then the attempt may or
    /// may not be counted, and calling again is safe.
    fn record_attempt(
        &self,
        scope: &str,
        attempt: &str,
        limit: u32,
        expires_at: u64,
    ) -> Result<Option<u32>>;

    /// Stores `value` under `key` unless a value is already there. Returns
    /// `None` when this call stored it, or the value stored first.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails; calling again is safe.
    fn remember_first(&self, key: &str, value: &str, expires_at: u64) -> Result<Option<String>>;

    /// The value stored under `key` by [`AttemptStore::remember_first`], if any.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails.
    fn recall(&self, key: &str) -> Result<Option<String>>;

    /// [`AttemptStore::recall`] for many keys, in their order. The default
    /// asks for each in turn; a store that can do it in one round trip
    /// (Redis) overrides it.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails.
    fn recall_many(&self, keys: &[&str]) -> Result<Vec<Option<String>>> {
        keys.iter().map(|key| self.recall(key)).collect()
    }

    /// [`AttemptStore::remember_first`] for many `(key, value, expires_at)`,
    /// in their order (a key given twice keeps the first value, and the
    /// second gets it back). The default stores each in turn; a store that
    /// can do it in one round trip (Redis) overrides it.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails; then some may be stored
    /// and others not, and calling again with the same values is safe.
    fn remember_first_many(&self, items: &[(&str, &str, u64)]) -> Result<Vec<Option<String>>> {
        items
            .iter()
            .map(|(key, value, expires_at)| self.remember_first(key, value, *expires_at))
            .collect()
    }

    /// [`AttemptStore::remember_first`] of `key`, unless a value is stored
    /// under `unless`: then that value, and nothing is stored. The default
    /// recalls `unless` and then remembers; a store that can do both in one
    /// round trip (Redis) overrides it.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails; calling again is safe.
    fn remember_first_unless(
        &self,
        unless: &str,
        key: &str,
        value: &str,
        expires_at: u64,
    ) -> Result<Unless> {
        remember_first_unless_in_turn(self, unless, key, value, expires_at)
    }

    /// One online entry: unless an entry already ended the code (a value
    /// under `end_key`), counts the attempt as [`AttemptStore::record_attempt`]
    /// does and, when the entry ends the code, keeps it under `end_key` as
    /// [`AttemptStore::remember_first`] does. The default makes those calls in
    /// turn; a store that can do it in one round trip (Redis) overrides it.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the store fails; calling again is safe.
    fn check_online(&self, entry: &OnlineEntry<'_>) -> Result<OnlineStep> {
        if let Some(first) = self.recall(entry.end_key)? {
            return Ok(OnlineStep::AlreadyEnded(first));
        }
        let Some(position) =
            self.record_attempt(entry.scope, entry.attempt, entry.limit, entry.expires_at)?
        else {
            return Ok(OnlineStep::Locked);
        };
        let Some((before, after)) = entry.ends else {
            return Ok(OnlineStep::Counted(position));
        };
        let value = format!("{before}{position}{after}");
        Ok(
            match self.remember_first(entry.end_key, &value, entry.expires_at)? {
                Some(first) => OnlineStep::AlreadyEnded(first),
                None => OnlineStep::Ended(position),
            },
        )
    }
}

/// One online entry, as [`AttemptStore::check_online`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineEntry<'a> {
    /// Where the entry that ended the code is kept.
    pub end_key: &'a str,
    /// Where the code's attempts are counted.
    pub scope: &'a str,
    /// The entry's attempt id.
    pub attempt: &'a str,
    /// How many distinct attempts the code allows.
    pub limit: u32,
    /// When what is stored may be forgotten (unix seconds).
    pub expires_at: u64,
    /// When the entry ends the code (the right code, or a guess from the
    /// ticket): the value to keep under `end_key`, as the text before and
    /// after the entry's position, which only the store knows.
    pub ends: Option<(&'a str, &'a str)>,
}

/// [`AttemptStore::remember_first_unless`] as its default makes it: a
/// recall, then a remember. For a store that does it in one step on some of
/// its backends only.
///
/// # Errors
/// [`Error::StateStorage`] when the store fails; calling again is safe.
pub fn remember_first_unless_in_turn<S: AttemptStore + ?Sized>(
    store: &S,
    unless: &str,
    key: &str,
    value: &str,
    expires_at: u64,
) -> Result<Unless> {
    if let Some(found) = store.recall(unless)? {
        return Ok(Unless::Found(found));
    }
    Ok(Unless::Remembered(
        store.remember_first(key, value, expires_at)?,
    ))
}

/// What [`AttemptStore::remember_first_unless`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unless {
    /// The value stored under `unless`; nothing was stored.
    Found(String),
    /// As [`AttemptStore::remember_first`]: `None` when this call stored
    /// the value, or the value stored first.
    Remembered(Option<String>),
}

/// What [`AttemptStore::check_online`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlineStep {
    /// An entry ended the code before this one: the value kept for it.
    /// This entry was not counted (or was, when it came in between).
    AlreadyEnded(String),
    /// The limit is reached and the entry is new: nothing was stored.
    Locked,
    /// Counted at this position (the same again for a retry); the entry does
    /// not end the code.
    Counted(u32),
    /// Counted at this position and kept as the entry that ended the code.
    Ended(u32),
}

#[derive(Debug, Default)]
struct MemoryEntries {
    attempts: HashMap<String, Vec<String>>,
    remembered: HashMap<String, String>,
}

/// A thread-safe [`AttemptStore`] in memory, for one backend process and for
/// tests. It never forgets an entry, and forgets everything when dropped.
#[derive(Debug, Default)]
pub struct InMemoryAttemptStore {
    entries: Mutex<MemoryEntries>,
}

impl InMemoryAttemptStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Keeps `value` under `key` unless a value is there (one lookup): the one
/// there, or `None`.
fn remember_in(map: &mut HashMap<String, String>, key: &str, value: &str) -> Option<String> {
    match map.entry(key.to_string()) {
        std::collections::hash_map::Entry::Occupied(first) => Some(first.get().clone()),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(value.to_string());
            None
        }
    }
}

impl AttemptStore for InMemoryAttemptStore {
    fn record_attempt(
        &self,
        scope: &str,
        attempt: &str,
        limit: u32,
        _expires_at: u64,
    ) -> Result<Option<u32>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = entries.attempts.entry(scope.to_string()).or_default();
        let position = |index: usize| u32::try_from(index).ok().and_then(|i| i.checked_add(1));
        if let Some(index) = seen.iter().position(|a| a == attempt) {
            return Ok(position(index));
        }
        if u32::try_from(seen.len()).unwrap_or(u32::MAX) >= limit {
            return Ok(None);
        }
        seen.push(attempt.to_string());
        Ok(position(seen.len().saturating_sub(1)))
    }

    fn remember_first(&self, key: &str, value: &str, _expires_at: u64) -> Result<Option<String>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(remember_in(&mut entries.remembered, key, value))
    }

    /// The two steps under one lock: nothing can come between them.
    fn remember_first_unless(
        &self,
        unless: &str,
        key: &str,
        value: &str,
        _expires_at: u64,
    ) -> Result<Unless> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = entries.remembered.get(unless) {
            return Ok(Unless::Found(found.clone()));
        }
        Ok(Unless::Remembered(remember_in(
            &mut entries.remembered,
            key,
            value,
        )))
    }

    fn recall(&self, key: &str) -> Result<Option<String>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(entries.remembered.get(key).cloned())
    }
}
