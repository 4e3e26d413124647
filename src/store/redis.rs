//! [`RedisStore`]: the [`AttemptStore`] several backend instances share.
//!
//! Each operation is one Lua script (or one `GET`), so counting and
//! remembering are atomic on the server whatever the number of backend
//! instances and threads. Every key expires at the time the caller gives
//! (the code's expiry, or the receipt retention), never less than a minute
//! after the Redis server's own clock, so a small clock difference between a
//! backend and Redis cannot reset a count, and never later than
//! [`MAX_EXPIRY`], so no caller's time can make a command fail.
//!
//! # Durability
//!
//! A store that forgets on restart would let attempts be counted again, a
//! used code be used again and a judged receipt be judged afresh. So the
//! store checks, on every new connection, that the server writes an
//! append-only file and syncs it on every write (`appendonly yes`,
//! `appendfsync always`), and refuses to work otherwise
//! ([`Error::StateStorage`] naming the setting), unless the caller chose
//! [`RedisStore::allow_volatile`] on purpose.
//!
//! # Faults
//!
//! Every operation is idempotent (see [`AttemptStore`]), so a command whose
//! connection broke or timed out is sent once more on a new connection: a
//! restarted server is reconnected to without the caller noticing, and a
//! lost reply cannot count an attempt twice. If the second try fails too,
//! the call returns [`Error::StateStorage`] and can be made again later.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, Script};

use crate::error::{Error, Result};
use crate::store::attempts::{AttemptStore, OnlineEntry, OnlineStep, Unless};

/// How long a connection attempt, a read or a write may take: 2 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// What every key starts with, unless [`RedisStore::with_prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "delivery-otp:";
/// The latest expiry given to Redis: the end of the year 9999. Later times
/// (a caller's clock near 2^62, say) are lowered to it; Redis refuses
/// expiry times whose milliseconds do not fit in 63 bits.
pub const MAX_EXPIRY: u64 = 253_402_300_799;

const EXPIRY: &str =
    "local exp = math.max(tonumber(ARGV[1]), tonumber(redis.call('TIME')[1]) + 60)\n";

/// ARGV: expiry, attempt id, limit. Returns the attempt's position, or 0
/// when the limit is reached and the attempt is new.
const RECORD_ATTEMPT: &str = "local n = redis.call('HGET', KEYS[1], ARGV[2])\n\
     if n then return tonumber(n) end\n\
     local count = redis.call('HLEN', KEYS[1])\n\
     if count >= tonumber(ARGV[3]) then return 0 end\n\
     redis.call('HSET', KEYS[1], ARGV[2], count + 1)\n\
     redis.call('EXPIREAT', KEYS[1], exp)\n\
     return count + 1";

/// KEYS: the end key, the attempts. ARGV: expiry, attempt id, limit, the
/// value before and after the position, '1' when the entry ends the code.
/// Returns {1, value} when an entry ended the code before, {2, ''} at the
/// limit, {3, position} when counted, {4, position} when counted and kept.
const CHECK_ONLINE: &str = "local ended = redis.call('GET', KEYS[1])\n\
     if ended then return {1, ended} end\n\
     local n = redis.call('HGET', KEYS[2], ARGV[2])\n\
     if not n then\n\
       local count = redis.call('HLEN', KEYS[2])\n\
       if count >= tonumber(ARGV[3]) then return {2, ''} end\n\
       n = count + 1\n\
       redis.call('HSET', KEYS[2], ARGV[2], n)\n\
       redis.call('EXPIREAT', KEYS[2], exp)\n\
     end\n\
     n = tonumber(n)\n\
     if ARGV[6] ~= '1' then return {3, tostring(n)} end\n\
     redis.call('SET', KEYS[1], ARGV[4] .. tostring(n) .. ARGV[5], 'EXAT', exp)\n\
     return {4, tostring(n)}";

const REMEMBER_FIRST: &str = "local first = redis.call('GET', KEYS[1])\n\
     if first then return first end\n\
     redis.call('SET', KEYS[1], ARGV[2], 'EXAT', exp)\n\
     return false";

/// `remember_first` of KEYS[2] unless KEYS[1] holds a value: {1, that
/// value}; {2, the value kept first}; or {0, ''} when this call kept it.
const REMEMBER_UNLESS: &str = "local found = redis.call('GET', KEYS[1])\n\
     if found then return {1, found} end\n\
     local first = redis.call('GET', KEYS[2])\n\
     if first then return {2, first} end\n\
     redis.call('SET', KEYS[2], ARGV[2], 'EXAT', exp)\n\
     return {0, ''}";

/// An [`AttemptStore`] on a Redis server (6.2 or later, for `SET ... EXAT`; tested with 7.0).
///
/// Thread-safe. Keeps a few open connections and opens more when all are in
/// use; a connection that failed is dropped, not reused.
pub struct RedisStore {
    client: Client,
    idle: Mutex<Vec<Connection>>,
    prefix: String,
    timeout: Duration,
    volatile: bool,
    record_attempt: Script,
    remember_first: Script,
    remember_unless: Script,
    check_online: Script,
}

impl core::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The connection info may hold a password: leave it out.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("volatile", &self.volatile)
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
            volatile: false,
            record_attempt: Script::new(&format!("{EXPIRY}{RECORD_ATTEMPT}")),
            remember_first: Script::new(&format!("{EXPIRY}{REMEMBER_FIRST}")),
            remember_unless: Script::new(&format!("{EXPIRY}{REMEMBER_UNLESS}")),
            check_online: Script::new(&format!("{EXPIRY}{CHECK_ONLINE}")),
        })
    }

    /// Works with a server that does not persist every write. A restart of
    /// such a server forgets attempts, used codes and judged receipts: for
    /// tests and benchmarks, never for deliveries.
    pub fn allow_volatile(mut self) -> Self {
        self.volatile = true;
        self
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

    /// A pooled connection, or a new one (checked for durability).
    fn connection(&self, fresh: bool) -> Result<Connection> {
        if !fresh {
            let pooled = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            if let Some(connection) = pooled {
                return Ok(connection);
            }
        }
        let open = || -> redis::RedisResult<Connection> {
            let connection = self.client.get_connection_with_timeout(self.timeout)?;
            connection.set_read_timeout(Some(self.timeout))?;
            connection.set_write_timeout(Some(self.timeout))?;
            Ok(connection)
        };
        let mut connection = open().map_err(|e| storage_error(&e))?;
        if !self.volatile {
            self.check_durable(&mut connection)?;
        }
        Ok(connection)
    }

    /// Refuses a server that would forget writes on a restart.
    fn check_durable(&self, connection: &mut Connection) -> Result<()> {
        for (name, wanted) in [("appendonly", "yes"), ("appendfsync", "always")] {
            let reply: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query(connection)
                .map_err(|e| storage_error(&e))?;
            if reply.get(1).map(String::as_str) != Some(wanted) {
                return Err(Error::StateStorage {
                    reason: format!(
                        "the Redis server does not have {name} {wanted}, so a restart would \
                         forget attempts and decisions; configure it, or call allow_volatile() \
                         for tests"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Runs `command` on a connection; a broken or timed-out connection is
    /// dropped and the command sent once more on a new one (every operation
    /// is idempotent).
    fn run<T>(&self, command: impl Fn(&mut Connection) -> redis::RedisResult<T>) -> Result<T> {
        let mut last = None;
        for fresh in [false, true] {
            let mut connection = self.connection(fresh)?;
            match command(&mut connection) {
                Ok(value) => {
                    self.idle
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(connection);
                    return Ok(value);
                }
                Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                    last = Some(e);
                }
                Err(e) => return Err(storage_error(&e)),
            }
        }
        Err(last.map_or_else(
            || Error::StateStorage {
                reason: "Redis could not be reached".into(),
            },
            |e| storage_error(&e),
        ))
    }

    /// Runs `script` on `keys` (under the prefix) with `args`, in one round trip.
    fn script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T> {
        let keys: Vec<String> = keys.iter().map(|key| self.redis_key(key)).collect();
        self.run(|connection| {
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            invocation.invoke::<T>(connection)
        })
    }
}

impl AttemptStore for RedisStore {
    fn record_attempt(
        &self,
        scope: &str,
        attempt: &str,
        limit: u32,
        expires_at: u64,
    ) -> Result<Option<u32>> {
        let position: u64 = self.script(
            &self.record_attempt,
            &[scope],
            &[
                &expires_at.min(MAX_EXPIRY).to_string(),
                attempt,
                &limit.to_string(),
            ],
        )?;
        Ok(u32::try_from(position).ok().filter(|&p| p > 0))
    }

    fn remember_first(&self, key: &str, value: &str, expires_at: u64) -> Result<Option<String>> {
        self.script(
            &self.remember_first,
            &[&format!("first:{key}")],
            &[&expires_at.min(MAX_EXPIRY).to_string(), value],
        )
    }

    /// One script: reads `unless`, and keeps `value` unless it found one.
    fn remember_first_unless(
        &self,
        unless: &str,
        key: &str,
        value: &str,
        expires_at: u64,
    ) -> Result<Unless> {
        let (kind, found): (i64, String) = self.script(
            &self.remember_unless,
            &[&format!("first:{unless}"), &format!("first:{key}")],
            &[&expires_at.min(MAX_EXPIRY).to_string(), value],
        )?;
        match kind {
            0 => Ok(Unless::Remembered(None)),
            1 => Ok(Unless::Found(found)),
            2 => Ok(Unless::Remembered(Some(found))),
            other => Err(Error::StateStorage {
                reason: format!("Redis answered {other} to remember_first_unless"),
            }),
        }
    }

    fn recall(&self, key: &str) -> Result<Option<String>> {
        let key = self.redis_key(&format!("first:{key}"));
        self.run(|connection| redis::cmd("GET").arg(&key).query(connection))
    }

    /// One MGET.
    fn recall_many(&self, keys: &[&str]) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys
            .iter()
            .map(|key| self.redis_key(&format!("first:{key}")))
            .collect();
        let values: Vec<Option<String>> =
            self.run(|connection| redis::cmd("MGET").arg(&keys).query(connection))?;
        if values.len() == keys.len() {
            Ok(values)
        } else {
            Err(Error::StateStorage {
                reason: format!("Redis gave {} values for {} keys", values.len(), keys.len()),
            })
        }
    }

    /// One pipeline: the script is loaded (a no-op when it already is) and
    /// run once per item, in order, in one round trip.
    fn remember_first_many(&self, items: &[(&str, &str, u64)]) -> Result<Vec<Option<String>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let prepared: Vec<(String, String, &str)> = items
            .iter()
            .map(|(key, value, expires_at)| {
                (
                    self.redis_key(&format!("first:{key}")),
                    expires_at.min(&MAX_EXPIRY).to_string(),
                    *value,
                )
            })
            .collect();
        let firsts: Vec<Option<String>> = self.run(|connection| {
            let mut pipe = redis::pipe();
            pipe.load_script(&self.remember_first).ignore();
            for (key, expiry, value) in &prepared {
                let mut invocation = self.remember_first.prepare_invoke();
                invocation.key(key).arg(expiry).arg(*value);
                pipe.invoke_script(&invocation);
            }
            pipe.query(connection)
        })?;
        if firsts.len() == items.len() {
            Ok(firsts)
        } else {
            Err(Error::StateStorage {
                reason: format!(
                    "Redis gave {} answers for {} receipts",
                    firsts.len(),
                    items.len()
                ),
            })
        }
    }

    /// One round trip: a script reads the end key, counts the attempt and
    /// keeps the ending entry, atomically.
    fn check_online(&self, entry: &OnlineEntry<'_>) -> Result<OnlineStep> {
        let end_key = format!("first:{}", entry.end_key);
        let expiry = entry.expires_at.min(MAX_EXPIRY).to_string();
        let limit = entry.limit.to_string();
        let (before, after) = entry.ends.unwrap_or(("", ""));
        let ends = if entry.ends.is_some() { "1" } else { "0" };
        let (kind, value): (i64, String) = self.script(
            &self.check_online,
            &[&end_key, entry.scope],
            &[&expiry, entry.attempt, &limit, before, after, ends],
        )?;
        let position = || {
            value
                .parse::<u32>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Error::StateStorage {
                    reason: "Redis answered an online check with no position".into(),
                })
        };
        match kind {
            1 => Ok(OnlineStep::AlreadyEnded(value)),
            2 => Ok(OnlineStep::Locked),
            3 => Ok(OnlineStep::Counted(position()?)),
            4 => Ok(OnlineStep::Ended(position()?)),
            _ => Err(Error::StateStorage {
                reason: format!("Redis answered an online check with kind {kind}"),
            }),
        }
    }
}
