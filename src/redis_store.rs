//! [`RedisStore`]: the [`AttemptStore`] several backend instances share.
//!
//! Each operation is one Lua script, so counting, consuming and remembering
//! are atomic on the server whatever the number of backend instances and
//! threads. Every key expires at the time the caller gives (the code's
//! expiry, or the receipt retention), and never less than a minute after the
//! Redis server's own clock, so a small clock difference between a backend
//! and Redis cannot reset a count.
//!
//! A failed call returns [`Error::StateStorage`]; the store never retries a
//! command by itself, so nothing is counted twice. Only when a reply is lost
//! after the command reached the server (a timeout) is the count unknown;
//! the attempt then counts against the courier, never for them.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, Script};

use crate::backend::AttemptStore;
use crate::error::{Error, Result};

/// How long a connection attempt, a read or a write may take: 2 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// What every key starts with, unless [`RedisStore::with_prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "delivery-otp:";

const EXPIRY: &str =
    "local exp = math.max(tonumber(ARGV[1]), tonumber(redis.call('TIME')[1]) + 60)\n";

const RECORD_ATTEMPT: &str = "local n = redis.call('INCR', KEYS[1])\n\
     redis.call('EXPIREAT', KEYS[1], exp)\n\
     return n";

const CONSUME: &str = "if redis.call('SET', KEYS[1], '1', 'NX', 'EXAT', exp) then return 1 end\n\
     return 0";

const REMEMBER_FIRST: &str = "local first = redis.call('GET', KEYS[1])\n\
     if first then return first end\n\
     redis.call('SET', KEYS[1], ARGV[2], 'EXAT', exp)\n\
     return false";

/// An [`AttemptStore`] on a Redis server (6.2 or later, for `SET ... EXAT`; tested with 7.0).
///
/// Thread-safe. Keeps a few open connections and opens more when all are in
/// use; a connection that failed is dropped, not reused.
pub struct RedisStore {
    client: Client,
    idle: Mutex<Vec<Connection>>,
    prefix: String,
    timeout: Duration,
    record_attempt: Script,
    consume: Script,
    remember_first: Script,
}

impl core::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The connection info may hold a password: leave it out.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn storage_error(e: &redis::RedisError) -> Error {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connection_refusal() {
        "refused the connection"
    } else if e.is_io_error() {
        "could not be reached"
    } else {
        "returned an error"
    };
    Error::StateStorage {
        reason: format!("Redis {what} ({:?})", e.kind()),
    }
}

impl RedisStore {
    /// A store for the server at `url` (`redis://host:port/db`,
    /// `rediss://...`, `redis+unix:///path`). Connects on first use.
    ///
    /// # Errors
    /// [`Error::StateStorage`] when the URL cannot be read.
    pub fn open(url: &str) -> Result<Self> {
        let client = Client::open(url).map_err(|e| Error::StateStorage {
            reason: format!("the Redis URL cannot be used ({:?})", e.kind()),
        })?;
        Ok(RedisStore {
            client,
            idle: Mutex::new(Vec::new()),
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
            record_attempt: Script::new(&format!("{EXPIRY}{RECORD_ATTEMPT}")),
            consume: Script::new(&format!("{EXPIRY}{CONSUME}")),
            remember_first: Script::new(&format!("{EXPIRY}{REMEMBER_FIRST}")),
        })
    }

    /// Changes what every key starts with, to share one Redis database.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Changes how long connecting, reading or writing may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The full Redis key for a store key.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn connection(&self) -> redis::RedisResult<Connection> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(connection) = pooled {
            return Ok(connection);
        }
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// Runs `script` on one connection. A connection that failed is dropped;
    /// the command is not retried.
    fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: &[&str],
    ) -> Result<T> {
        let mut connection = self.connection().map_err(|e| storage_error(&e))?;
        let mut invocation = script.prepare_invoke();
        invocation.key(self.redis_key(key));
        for arg in args {
            invocation.arg(*arg);
        }
        match invocation.invoke::<T>(&mut connection) {
            Ok(value) => {
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(connection);
                Ok(value)
            }
            Err(e) => Err(storage_error(&e)),
        }
    }
}

impl AttemptStore for RedisStore {
    fn record_attempt(&self, scope: &str, expires_at: u64) -> Result<u32> {
        let count: u64 = self.run(
            &self.record_attempt,
            &format!("attempts:{scope}"),
            &[&expires_at.to_string()],
        )?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    fn consume(&self, scope: &str, expires_at: u64) -> Result<bool> {
        let first: u8 = self.run(
            &self.consume,
            &format!("consumed:{scope}"),
            &[&expires_at.to_string()],
        )?;
        Ok(first == 1)
    }

    fn remember_first(&self, key: &str, value: &str, expires_at: u64) -> Result<Option<String>> {
        self.run(
            &self.remember_first,
            &format!("first:{key}"),
            &[&expires_at.to_string(), value],
        )
    }
}
