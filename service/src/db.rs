//! Storage: SQLite (one instance, the default) or PostgreSQL (several
//! instances), their migrations, and one transaction per request. The
//! core's [`AttemptStore`] is implemented on that transaction, so what the
//! core records (attempts, the decision slot) and what the service records
//! (the receipt bytes, the delivery's status, its history) commit together
//! or not at all. Queries are written once, with `$1`-style parameters that
//! both engines read, through sqlx's `Any` driver.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use delivery_otp::AttemptStore;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tokio::runtime::Handle;

use crate::problem::Problem;

/// SQLite's migrations, compiled in; `_sqlx_migrations` records which ran.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
/// PostgreSQL's migrations.
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a claimed webhook event is left to the instance that claimed
/// it: twice the longest send, so a live instance finishes first.
pub const CLAIM_LEASE_SECS: u64 = 20;

/// Which database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One file, one instance.
    Sqlite,
    /// A server shared by several instances.
    Postgres,
}

/// The connection pool and its engine.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool.
    pub pool: AnyPool,
    /// The engine behind it.
    pub engine: Engine,
}

/// Opens the SQLite database at `path` (creating it), with every commit
/// synced to disk (`synchronous=FULL`, WAL), and brings its schema up to
/// date. One connection: SQLite has one writer anyway, and one connection
/// runs every request's transaction strictly one after another.
///
/// # Errors
/// The file cannot be opened or a migration fails.
pub async fn open_sqlite(path: &Path) -> Result<Db, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let text = path
        .to_str()
        .filter(|p| !p.contains(['?', '#']))
        .ok_or_else(|| {
            sqlx::Error::Configuration(
                "the data directory's path must be UTF-8 without '?' or '#'".into(),
            )
        })?;
    let options = AnyConnectOptions::from_str(&format!("sqlite://{text}?mode=rwc"))?;
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = FULL").await?;
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    SQLITE_MIGRATIONS.run(&pool).await?;
    Ok(Db {
        pool,
        engine: Engine::Sqlite,
    })
}

/// Connects to PostgreSQL at `url` and brings its schema up to date.
///
/// # Errors
/// The server cannot be reached or a migration fails.
pub async fn open_postgres(url: &str, connections: u32) -> Result<Db, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(url)?;
    // While the server is down, a request fails within 3 s with a 503
    // instead of waiting; the pool reconnects by itself once it is back.
    let pool = AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await?;
    POSTGRES_MIGRATIONS.run(&pool).await?;
    Ok(Db {
        pool,
        engine: Engine::Postgres,
    })
}

/// Runs `work` in one transaction on a blocking thread (the core is
/// synchronous) and commits it if `work` succeeds; on an error nothing it
/// wrote is kept.
///
/// # Errors
/// What `work` returns, or `unavailable` when the database fails.
pub async fn transaction<T, F>(db: &Db, work: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce(&Arc<Tx>) -> Result<T, Problem> + Send + 'static,
{
    let db = db.clone();
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let tx = handle.block_on(db.pool.begin())?;
        let tx = Arc::new(Tx {
            inner: Mutex::new(Some(tx)),
            handle: handle.clone(),
            engine: db.engine,
        });
        let out = work(&tx)?;
        tx.commit()?;
        Ok(out)
    })
    .await
    .map_err(|_| Problem::unavailable("the request's worker stopped"))?
}

/// One open transaction, used from a blocking thread.
pub struct Tx {
    inner: Mutex<Option<Transaction<'static, Any>>>,
    handle: Handle,
    engine: Engine,
}

/// A row of `deliveries`.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    /// The delivery id.
    pub delivery_id: String,
    /// The current sequence.
    pub sequence: u64,
    /// The courier it is assigned to.
    pub courier_id: String,
    /// The settings it was issued with (JSON).
    pub settings: String,
    /// The current ticket (JSON).
    pub ticket: String,
    /// `issued`, `confirmed`, `flagged`, `not_delivered`.
    pub status: String,
    /// Where the code goes (JSON `{"phone": ...}` or `{"email": ...}`).
    pub contact: String,
    /// The customer's locale.
    pub locale: String,
    /// The customer's UTC offset in minutes, for the expiry in the message.
    pub utc_offset_minutes: i32,
    /// SHA-256 of the issueCode request, to answer a retry alike.
    pub request_digest: String,
    /// Codes sent again so far.
    pub resends: u32,
    /// Unix seconds.
    pub created_at: u64,
}

/// A row of `delivery_events`.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Unix seconds.
    pub at: u64,
    /// What happened, such as `issued` or `receipt`.
    pub kind: String,
    /// Its details (JSON).
    pub detail: String,
}

/// A row of `receipts`, without the body.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    /// Sequence of the ticket it answers.
    pub sequence: u64,
    /// The device that made it.
    pub device_id: String,
    /// The decision (JSON of the core's `Decision`).
    pub decision: String,
    /// The explanation for support.
    pub explanation: String,
    /// Whether it was the same receipt again.
    pub repeated: bool,
    /// Unix seconds.
    pub received_at: u64,
}

fn to_i64(value: u64) -> Result<i64, sqlx::Error> {
    i64::try_from(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn to_u64(value: i64) -> Result<u64, sqlx::Error> {
    u64::try_from(value).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

macro_rules! with_tx {
    ($self:ident, |$conn:ident| $body:expr) => {{
        let mut guard = $self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut() {
            Some(tx) => {
                let $conn: &mut sqlx::AnyConnection = &mut *tx;
                $self.handle.block_on(async { $body })
            }
            None => Err(sqlx::Error::PoolClosed),
        }
    }};
}

impl Tx {
    fn commit(&self) -> Result<(), sqlx::Error> {
        let tx = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match tx {
            Some(tx) => self.handle.block_on(tx.commit()),
            None => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Serializes the transactions that touch `key` (a delivery id): with
    /// PostgreSQL, an advisory lock held until this transaction ends; with
    /// SQLite's single connection, every transaction is already alone.
    ///
    /// # Errors
    /// The database fails.
    pub fn lock(&self, key: &str) -> Result<(), sqlx::Error> {
        if self.engine == Engine::Sqlite {
            return Ok(());
        }
        with_tx!(self, |conn| {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// The delivery, if issued.
    ///
    /// # Errors
    /// The database fails.
    pub fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRow>, sqlx::Error> {
        let row = with_tx!(self, |conn| {
            sqlx::query(
                "SELECT delivery_id, sequence, courier_id, settings, ticket, status, contact, \
                 locale, utc_offset_minutes, request_digest, resends, created_at FROM deliveries \
                 WHERE delivery_id = $1",
            )
            .bind(delivery_id)
            .fetch_optional(conn)
            .await
        })?;
        row.map(|r| {
            Ok(DeliveryRow {
                delivery_id: r.try_get("delivery_id")?,
                sequence: to_u64(r.try_get("sequence")?)?,
                courier_id: r.try_get("courier_id")?,
                settings: r.try_get("settings")?,
                ticket: r.try_get("ticket")?,
                status: r.try_get("status")?,
                contact: r.try_get("contact")?,
                locale: r.try_get("locale")?,
                utc_offset_minutes: i32::try_from(r.try_get::<i64, _>("utc_offset_minutes")?)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                request_digest: r.try_get("request_digest")?,
                resends: u32::try_from(r.try_get::<i64, _>("resends")?)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                created_at: to_u64(r.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    /// Stores a newly issued delivery.
    ///
    /// # Errors
    /// The database fails.
    pub fn insert_delivery(&self, d: &DeliveryRow, now: u64) -> Result<(), sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query(
                "INSERT INTO deliveries (delivery_id, sequence, courier_id, settings, ticket, status, \
                 contact, locale, utc_offset_minutes, request_digest, resends, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&d.delivery_id)
            .bind(to_i64(d.sequence)?)
            .bind(&d.courier_id)
            .bind(&d.settings)
            .bind(&d.ticket)
            .bind(&d.status)
            .bind(&d.contact)
            .bind(&d.locale)
            .bind(i64::from(d.utc_offset_minutes))
            .bind(&d.request_digest)
            .bind(i64::from(d.resends))
            .bind(to_i64(d.created_at)?)
            .bind(to_i64(now)?)
            .execute(conn)
            .await
            .map(drop)
        })
    }

    /// Replaces the delivery's ticket (a resend or a reassignment).
    ///
    /// # Errors
    /// The database fails.
    pub fn update_ticket(
        &self,
        delivery_id: &str,
        sequence: u64,
        courier_id: &str,
        ticket: &str,
        resends: u32,
        now: u64,
    ) -> Result<(), sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query(
                "UPDATE deliveries SET sequence = $1, courier_id = $2, ticket = $3, resends = $4, \
                 status = 'issued', updated_at = $5 WHERE delivery_id = $6",
            )
            .bind(to_i64(sequence)?)
            .bind(courier_id)
            .bind(ticket)
            .bind(i64::from(resends))
            .bind(to_i64(now)?)
            .bind(delivery_id)
            .execute(conn)
            .await
            .map(drop)
        })
    }

    /// Sets the delivery's status.
    ///
    /// # Errors
    /// The database fails.
    pub fn set_status(&self, delivery_id: &str, status: &str, now: u64) -> Result<(), sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query("UPDATE deliveries SET status = $1, updated_at = $2 WHERE delivery_id = $3")
                .bind(status)
                .bind(to_i64(now)?)
                .bind(delivery_id)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    /// Appends to the delivery's history.
    ///
    /// # Errors
    /// The database fails.
    pub fn event(
        &self,
        delivery_id: &str,
        now: u64,
        kind: &str,
        detail: &serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query(
                "INSERT INTO delivery_events (delivery_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
            )
            .bind(delivery_id)
            .bind(to_i64(now)?)
            .bind(kind)
            .bind(detail.to_string())
            .execute(conn)
            .await
            .map(drop)
        })
    }

    /// The delivery's history, oldest first.
    ///
    /// # Errors
    /// The database fails.
    pub fn events(&self, delivery_id: &str) -> Result<Vec<EventRow>, sqlx::Error> {
        let rows = with_tx!(self, |conn| {
            sqlx::query(
                "SELECT at, kind, detail FROM delivery_events WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(delivery_id)
            .fetch_all(conn)
            .await
        })?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    at: to_u64(r.try_get("at")?)?,
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// The receipts received for the delivery, oldest first.
    ///
    /// # Errors
    /// The database fails.
    pub fn receipts(&self, delivery_id: &str) -> Result<Vec<ReceiptRow>, sqlx::Error> {
        let rows = with_tx!(self, |conn| {
            sqlx::query(
                "SELECT sequence, device_id, decision, explanation, repeated, received_at \
                 FROM receipts WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(delivery_id)
            .fetch_all(conn)
            .await
        })?;
        rows.iter()
            .map(|r| {
                Ok(ReceiptRow {
                    sequence: to_u64(r.try_get("sequence")?)?,
                    device_id: r.try_get("device_id")?,
                    decision: r.try_get("decision")?,
                    explanation: r.try_get("explanation")?,
                    repeated: r.try_get::<i64, _>("repeated")? != 0,
                    received_at: to_u64(r.try_get("received_at")?)?,
                })
            })
            .collect()
    }

    /// Keeps a receipt exactly as received, with its decision.
    ///
    /// # Errors
    /// The database fails.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_receipt(
        &self,
        delivery_id: &str,
        sequence: i64,
        courier_id: &str,
        device_id: &str,
        body: &str,
        decision: &str,
        explanation: &str,
        repeated: bool,
        now: u64,
    ) -> Result<(), sqlx::Error> {
        let digest = crate::auth::sha256_hex(body.as_bytes());
        with_tx!(self, |conn| {
            sqlx::query(
                "INSERT INTO receipts (delivery_id, sequence, courier_id, device_id, body, body_sha256, \
                 decision, explanation, repeated, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(delivery_id)
            .bind(sequence)
            .bind(courier_id)
            .bind(device_id)
            .bind(body)
            .bind(&digest)
            .bind(decision)
            .bind(explanation)
            .bind(i64::from(repeated))
            .bind(to_i64(now)?)
            .execute(conn)
            .await
            .map(drop)
        })
    }

    /// Records a device as provisioned now (again, if it was revoked).
    ///
    /// # Errors
    /// The database fails.
    pub fn provision_device(
        &self,
        courier_id: &str,
        device_id: &str,
        key_id: &str,
        now: u64,
    ) -> Result<(), sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query(
                "INSERT INTO devices (courier_id, device_id, key_id, provisioned_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (courier_id, device_id) DO UPDATE SET \
                 key_id = excluded.key_id, provisioned_at = excluded.provisioned_at, revoked_at = NULL",
            )
            .bind(courier_id)
            .bind(device_id)
            .bind(key_id)
            .bind(to_i64(now)?)
            .execute(conn)
            .await
            .map(drop)
        })
    }

    /// Revokes a device; returns whether it was provisioned.
    ///
    /// # Errors
    /// The database fails.
    pub fn revoke_device(
        &self,
        courier_id: &str,
        device_id: &str,
        now: u64,
    ) -> Result<bool, sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, $1) WHERE courier_id = $2 AND device_id = $3",
            )
            .bind(to_i64(now)?)
            .bind(courier_id)
            .bind(device_id)
            .execute(conn)
            .await
            .map(|r| r.rows_affected() > 0)
        })
    }

    /// `Some(true)` for a provisioned device, `Some(false)` for a revoked
    /// one, `None` for one never provisioned.
    ///
    /// # Errors
    /// The database fails.
    pub fn device_active(
        &self,
        courier_id: &str,
        device_id: &str,
    ) -> Result<Option<bool>, sqlx::Error> {
        let row = with_tx!(self, |conn| {
            sqlx::query("SELECT revoked_at FROM devices WHERE courier_id = $1 AND device_id = $2")
                .bind(courier_id)
                .bind(device_id)
                .fetch_optional(conn)
                .await
        })?;
        row.map(|r| Ok(r.try_get::<Option<i64>, _>("revoked_at")?.is_none()))
            .transpose()
    }

    /// The current tickets of the deliveries assigned to `courier_id` that
    /// are still open.
    ///
    /// # Errors
    /// The database fails.
    pub fn open_tickets(&self, courier_id: &str) -> Result<Vec<String>, sqlx::Error> {
        let rows = with_tx!(self, |conn| {
            sqlx::query(
                "SELECT ticket FROM deliveries WHERE courier_id = $1 AND status = 'issued' ORDER BY delivery_id",
            )
            .bind(courier_id)
            .fetch_all(conn)
            .await
        })?;
        rows.iter().map(|r| r.try_get("ticket")).collect()
    }

    /// Records a device request's signature until `expires_at`; `false`
    /// when it was already recorded (a replay). Forgets expired ones.
    ///
    /// # Errors
    /// The database fails.
    pub fn remember_signature(
        &self,
        signature: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query("DELETE FROM request_signatures WHERE expires_at < $1")
                .bind(to_i64(now)?)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO request_signatures (signature, expires_at) VALUES ($1, $2) ON CONFLICT (signature) DO NOTHING",
            )
            .bind(signature)
            .bind(to_i64(expires_at)?)
            .execute(&mut *conn)
            .await
            .map(|r| r.rows_affected() == 1)
        })
    }

    /// Writes a webhook event to the outbox, due now.
    ///
    /// # Errors
    /// The database fails.
    pub fn enqueue_event(
        &self,
        event_id: &str,
        payload: &str,
        now: u64,
    ) -> Result<(), sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query(
                "INSERT INTO webhook_outbox (event_id, payload, created_at, attempts, next_attempt_at) \
                 VALUES ($1, $2, $3, 0, $4)",
            )
            .bind(event_id)
            .bind(payload)
            .bind(to_i64(now)?)
            .bind(to_i64(now)?)
            .execute(conn)
            .await
            .map(drop)
        })
    }

    /// Claims up to `limit` due events for [`CLAIM_LEASE_SECS`] (other
    /// instances skip them; if this one dies, they come due again): (event
    /// id, payload, tries so far), oldest first.
    ///
    /// # Errors
    /// The database fails.
    pub fn claim_events(
        &self,
        now: u64,
        limit: i64,
    ) -> Result<Vec<(String, String, u64)>, sqlx::Error> {
        let select = match self.engine {
            Engine::Sqlite => {
                "SELECT event_id, payload, attempts FROM webhook_outbox WHERE delivered_at IS NULL \
                 AND next_attempt_at <= $1 ORDER BY created_at, event_id LIMIT $2"
            }
            Engine::Postgres => {
                "SELECT event_id, payload, attempts FROM webhook_outbox WHERE delivered_at IS NULL \
                 AND next_attempt_at <= $1 ORDER BY created_at, event_id LIMIT $2 FOR UPDATE SKIP LOCKED"
            }
        };
        let rows = with_tx!(self, |conn| {
            sqlx::query(select)
                .bind(to_i64(now)?)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let event_id: String = r.try_get("event_id")?;
            with_tx!(self, |conn| {
                sqlx::query("UPDATE webhook_outbox SET next_attempt_at = $1 WHERE event_id = $2")
                    .bind(to_i64(now.saturating_add(CLAIM_LEASE_SECS))?)
                    .bind(&event_id)
                    .execute(conn)
                    .await
                    .map(drop)
            })?;
            out.push((
                event_id,
                r.try_get("payload")?,
                to_u64(r.try_get("attempts")?)?,
            ));
        }
        Ok(out)
    }

    /// Marks an event delivered.
    ///
    /// # Errors
    /// The database fails.
    pub fn event_delivered(&self, event_id: &str, now: u64) -> Result<(), sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query(
                "UPDATE webhook_outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL \
                 WHERE event_id = $2",
            )
            .bind(to_i64(now)?)
            .bind(event_id)
            .execute(conn)
            .await
            .map(drop)
        })
    }

    /// Records a failed try and when to try again.
    ///
    /// # Errors
    /// The database fails.
    pub fn event_failed(
        &self,
        event_id: &str,
        next_attempt_at: u64,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 \
                 WHERE event_id = $3",
            )
            .bind(to_i64(next_attempt_at)?)
            .bind(error)
            .bind(event_id)
            .execute(conn)
            .await
            .map(drop)
        })
    }

    /// The scopes of the unrevoked token with this hash.
    ///
    /// # Errors
    /// The database fails.
    pub fn token_scopes(&self, token_hash: &str) -> Result<Option<String>, sqlx::Error> {
        let row = with_tx!(self, |conn| {
            sqlx::query(
                "SELECT scopes FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .bind(token_hash)
            .fetch_optional(conn)
            .await
        })?;
        row.map(|r| r.try_get("scopes")).transpose()
    }

    /// Marks a token revoked now; whether a live token had that hash.
    ///
    /// # Errors
    /// The database fails.
    pub fn revoke_token(&self, token_hash: &str, now: u64) -> Result<bool, sqlx::Error> {
        let done = with_tx!(self, |conn| {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
            )
            .bind(to_i64(now)?)
            .bind(token_hash)
            .execute(conn)
            .await
        })?;
        Ok(done.rows_affected() > 0)
    }

    /// Stores a token's hash and scopes.
    ///
    /// # Errors
    /// The database fails.
    pub fn insert_token(
        &self,
        name: &str,
        token_hash: &str,
        scopes: &str,
        now: u64,
    ) -> Result<(), sqlx::Error> {
        with_tx!(self, |conn| {
            sqlx::query(
                "INSERT INTO api_tokens (name, token_hash, scopes, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(name)
            .bind(token_hash)
            .bind(scopes)
            .bind(to_i64(now)?)
            .execute(conn)
            .await
            .map(drop)
        })
    }
}

fn storage(e: sqlx::Error) -> delivery_otp::Error {
    tracing::error!(error = %e, "attempt store");
    delivery_otp::Error::StateStorage {
        reason: "the database failed".into(),
    }
}

/// The core's attempt store, in this transaction.
impl AttemptStore for Tx {
    fn record_attempt(
        &self,
        scope: &str,
        attempt: &str,
        limit: u32,
        expires_at: u64,
    ) -> delivery_otp::Result<Option<u32>> {
        self.lock(scope).map_err(storage)?;
        let found = with_tx!(self, |conn| {
            let known: Option<i64> =
                sqlx::query_scalar("SELECT position FROM attempts WHERE scope = $1 AND attempt = $2")
                    .bind(scope)
                    .bind(attempt)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some(position) = known {
                return Ok(Some(position));
            }
            let counted: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE scope = $1")
                .bind(scope)
                .fetch_one(&mut *conn)
                .await?;
            if counted >= i64::from(limit) {
                return Ok(None);
            }
            let position = counted.saturating_add(1);
            sqlx::query(
                "INSERT INTO attempts (scope, attempt, position, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(scope)
            .bind(attempt)
            .bind(position)
            .bind(to_i64(expires_at)?)
            .execute(&mut *conn)
            .await?;
            Ok(Some(position))
        })
        .map_err(storage)?;
        found
            .map(|p| u32::try_from(p).map_err(|_| storage(sqlx::Error::RowNotFound)))
            .transpose()
    }

    fn remember_first(
        &self,
        key: &str,
        value: &str,
        expires_at: u64,
    ) -> delivery_otp::Result<Option<String>> {
        with_tx!(self, |conn| {
            let first: Option<String> =
                sqlx::query_scalar("SELECT value FROM remembered WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await?;
            if first.is_some() {
                return Ok(first);
            }
            sqlx::query("INSERT INTO remembered (key, value, expires_at) VALUES ($1, $2, $3)")
                .bind(key)
                .bind(value)
                .bind(to_i64(expires_at)?)
                .execute(&mut *conn)
                .await?;
            Ok(None)
        })
        .map_err(storage)
    }

    fn recall(&self, key: &str) -> delivery_otp::Result<Option<String>> {
        with_tx!(self, |conn| {
            sqlx::query_scalar("SELECT value FROM remembered WHERE key = $1")
                .bind(key)
                .fetch_optional(conn)
                .await
        })
        .map_err(storage)
    }
}
