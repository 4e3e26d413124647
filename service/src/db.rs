//! Storage: SQLite (one instance, the default) or PostgreSQL (several
//! instances), their migrations, and one transaction per request. The
//! core's [`AttemptStore`] is implemented on that transaction, so what the
//! core records (attempts, the decision slot) and what the service records
//! (the receipt bytes, the delivery's status, its history) commit together
//! or not at all. Queries are written once, with `$1`-style parameters that
//! both engines read.
//!
//! SQLite runs on one writer thread that owns the connection (rusqlite):
//! a request's whole transaction runs there, statement after statement
//! without a thread switch, and the requests that wait while one commits
//! commit together (group commit: each in its own savepoint, one `COMMIT`
//! and one sync of the log for all; none is answered before that sync).
//! PostgreSQL runs the same way on several worker threads, each owning one
//! connection (sqlx) and a single-threaded runtime that drives it from that
//! thread; each request is one transaction there (PostgreSQL syncs
//! concurrent commits together itself). sqlx runs both engines' migrations.

use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use delivery_otp::{AttemptStore, OnlineEntry, OnlineStep};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, Column as _, Connection as _, Executor, Row as _};

use crate::problem::Problem;

/// SQLite's migrations, compiled in; `_sqlx_migrations` records which ran.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
/// PostgreSQL's migrations.
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a claimed webhook event is left to the instance that claimed
/// it: twice the longest send, so a live instance finishes first.
pub const CLAIM_LEASE_SECS: u64 = 20;

/// Requests waiting for the database's workers at most; past that a
/// request is answered 503 at once instead of queueing without end.
pub const QUEUE: usize = 4096;

/// Requests committed together at most.
pub const SQLITE_GROUP: usize = 64;

/// Which database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One file, one instance.
    Sqlite,
    /// A server shared by several instances.
    Postgres,
}

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// From sqlx (PostgreSQL, the migrations).
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// From SQLite.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value the service cannot read (a negative time, a missing column).
    #[error("unexpected data: {0}")]
    Data(String),
    /// The connection is gone (the SQLite writer stopped, a transaction ended).
    #[error("the database connection is gone")]
    Gone,
}

impl From<DbError> for Problem {
    fn from(e: DbError) -> Self {
        tracing::error!(error = %e, "database error");
        Problem::unavailable("the database failed; the request may be sent again")
    }
}

/// A parameter or a column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// NULL.
    Null,
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Int(i64::from(b))
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_string())
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Value::Text(text.clone())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

/// A `u64` (a time, a sequence) as a stored integer.
fn int(value: u64) -> Result<Value, DbError> {
    i64::try_from(value)
        .map(Value::Int)
        .map_err(|_| DbError::Data(format!("{value} is too large to store")))
}

/// One result row: its columns by name.
#[derive(Debug)]
pub struct Row {
    cols: Vec<(String, Value)>,
}

impl Row {
    fn value(&self, name: &str) -> Result<&Value, DbError> {
        self.cols
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| DbError::Data(format!("no column {name}")))
    }

    fn opt_int(&self, name: &str) -> Result<Option<i64>, DbError> {
        match self.value(name)? {
            Value::Int(n) => Ok(Some(*n)),
            Value::Null => Ok(None),
            Value::Text(_) => Err(DbError::Data(format!("{name} is not an integer"))),
        }
    }

    fn int(&self, name: &str) -> Result<i64, DbError> {
        self.opt_int(name)?
            .ok_or_else(|| DbError::Data(format!("{name} is null")))
    }

    fn unsigned<T: TryFrom<i64>>(&self, name: &str) -> Result<T, DbError> {
        let n = self.int(name)?;
        T::try_from(n).map_err(|_| DbError::Data(format!("{name} is {n}, out of range")))
    }

    fn text(&self, name: &str) -> Result<String, DbError> {
        match self.value(name)? {
            Value::Text(t) => Ok(t.clone()),
            _ => Err(DbError::Data(format!("{name} is not text"))),
        }
    }
}

/// An open transaction's connection.
enum Conn {
    /// The SQLite writer's connection, inside its transaction and savepoint.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL worker's connection inside its transaction, driven by
    /// the worker's own runtime.
    Postgres {
        conn: Box<AnyConnection>,
        runtime: Arc<tokio::runtime::Runtime>,
    },
}

/// Binds `$1`, `$2`, ... by name, so their order in the text does not matter.
fn bind_sqlite(stmt: &mut rusqlite::CachedStatement<'_>, params: &[Value]) -> Result<(), DbError> {
    for (i, value) in params.iter().enumerate() {
        let name = format!("${}", i.saturating_add(1));
        let index = stmt
            .parameter_index(&name)?
            .ok_or_else(|| DbError::Data(format!("the statement has no {name}")))?;
        match value {
            Value::Int(n) => stmt.raw_bind_parameter(index, n)?,
            Value::Text(t) => stmt.raw_bind_parameter(index, t)?,
            Value::Null => stmt.raw_bind_parameter(index, rusqlite::types::Null)?,
        }
    }
    Ok(())
}

fn bind_any<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    params: &[Value],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for value in params {
        query = match value {
            Value::Int(n) => query.bind(*n),
            Value::Text(t) => query.bind(t.clone()),
            Value::Null => query.bind(None::<i64>),
        };
    }
    query
}

impl Conn {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        match self {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                bind_sqlite(&mut stmt, params)?;
                let changed = stmt.raw_execute()?;
                Ok(u64::try_from(changed).unwrap_or(u64::MAX))
            }
            Conn::Postgres { conn, runtime } => {
                let query = bind_any(sqlx::query(sql), params);
                let done = runtime.block_on(query.execute(&mut **conn))?;
                Ok(done.rows_affected())
            }
        }
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        match self {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                bind_sqlite(&mut stmt, params)?;
                let names: Vec<String> =
                    stmt.column_names().into_iter().map(String::from).collect();
                let mut rows = stmt.raw_query();
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut cols = Vec::with_capacity(names.len());
                    for (i, name) in names.iter().enumerate() {
                        use rusqlite::types::ValueRef;
                        let value = match row.get_ref(i)? {
                            ValueRef::Integer(n) => Value::Int(n),
                            ValueRef::Text(t) => Value::Text(
                                String::from_utf8(t.to_vec())
                                    .map_err(|_| DbError::Data(format!("{name} is not UTF-8")))?,
                            ),
                            ValueRef::Null => Value::Null,
                            ValueRef::Real(_) | ValueRef::Blob(_) => {
                                return Err(DbError::Data(format!("{name} has an unexpected type")))
                            }
                        };
                        cols.push((name.clone(), value));
                    }
                    out.push(Row { cols });
                }
                Ok(out)
            }
            Conn::Postgres { conn, runtime } => {
                let query = bind_any(sqlx::query(sql), params);
                let rows = runtime.block_on(query.fetch_all(&mut **conn))?;
                rows.iter()
                    .map(|row| {
                        let cols = row
                            .columns()
                            .iter()
                            .map(|col| {
                                let i = col.ordinal();
                                let value = match row.try_get::<Option<i64>, _>(i) {
                                    Ok(Some(n)) => Value::Int(n),
                                    Ok(None) => Value::Null,
                                    Err(_) => match row.try_get::<Option<String>, _>(i)? {
                                        Some(t) => Value::Text(t),
                                        None => Value::Null,
                                    },
                                };
                                Ok((col.name().to_string(), value))
                            })
                            .collect::<Result<Vec<_>, sqlx::Error>>()?;
                        Ok(Row { cols })
                    })
                    .collect()
            }
        }
    }
}

/// The database: its engine, and the queue of its worker thread(s).
#[derive(Clone)]
pub struct Db {
    jobs: mpsc::SyncSender<Job>,
    /// The engine behind it.
    pub engine: Engine,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// What a finished request does with the outcome of its commit.
type Finish = Box<dyn FnOnce(Result<(), DbError>) + Send>;
/// A request's work: run in a transaction, it says whether to keep what it
/// wrote and how to answer once the commit is known.
type Job = Box<dyn FnOnce(&Arc<Tx>) -> (bool, Finish) + Send>;

/// Opens the SQLite database at `path` (creating it) with every commit
/// synced to disk (`synchronous=FULL`, WAL), brings its schema up to date
/// and starts its writer thread.
///
/// # Errors
/// The file cannot be opened, a migration fails, or the thread cannot start.
pub async fn open_sqlite(path: &Path) -> Result<Db, DbError> {
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
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    SQLITE_MIGRATIONS
        .run(&pool)
        .await
        .map_err(sqlx::Error::from)?;
    pool.close().await;
    let conn = rusqlite::Connection::open(path)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Data(format!(
            "SQLite kept the journal mode {mode}"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    let (jobs, queue) = mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || sqlite_writer(conn, &queue))
        .map_err(|e| DbError::Data(format!("cannot start the SQLite writer: {e}")))?;
    Ok(Db {
        jobs,
        engine: Engine::Sqlite,
    })
}

/// The SQLite writer: takes the next request and every one already
/// waiting (up to [`SQLITE_GROUP`]), runs each in a savepoint of one
/// transaction, commits once, then answers them all.
fn sqlite_writer(mut conn: rusqlite::Connection, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < SQLITE_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match run_group(conn, group) {
            Some(kept) => conn = kept,
            None => return,
        }
    }
}

fn run_group(conn: rusqlite::Connection, group: Vec<Job>) -> Option<rusqlite::Connection> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping the jobs answers each with a 503.
        tracing::error!(error = %e, "SQLite: cannot begin");
        return Some(conn);
    }
    let tx = Arc::new(Tx {
        conn: Mutex::new(Some(Conn::Sqlite(conn))),
        engine: Engine::Sqlite,
    });
    let mut finishes = Vec::with_capacity(group.len());
    for job in group {
        let savepoint = tx.execute("SAVEPOINT request", &[]);
        if savepoint.is_err() {
            continue;
        }
        // A job that panics is rolled back and its request answered 503.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&tx)));
        let (keep, finish) = match ran {
            Ok((keep, finish)) => (keep, Some(finish)),
            Err(_) => (false, None),
        };
        let end = if keep {
            tx.execute("RELEASE request", &[])
        } else {
            tx.execute("ROLLBACK TO request", &[])
                .and_then(|_| tx.execute("RELEASE request", &[]))
        };
        match (end, finish) {
            (Ok(_), Some(finish)) => finishes.push(finish),
            (Err(e), Some(finish)) => finish(Err(e)),
            (_, None) => {}
        }
    }
    let Some(Conn::Sqlite(conn)) = tx.take() else {
        // Not expected: the transaction held this connection. Without it
        // the writer stops; these requests and every later one get 503s.
        tracing::error!("the SQLite writer lost its connection");
        return None;
    };
    let committed = conn.execute_batch("COMMIT").map_err(DbError::from);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for finish in finishes {
        let outcome = match &committed {
            Ok(()) => Ok(()),
            Err(e) => Err(DbError::Data(format!("the commit failed: {e}"))),
        };
        finish(outcome);
    }
    Some(conn)
}

/// Connects to PostgreSQL at `url`, brings its schema up to date and
/// starts `connections` workers, each with its own connection.
///
/// # Errors
/// The server cannot be reached, a migration fails, or a thread cannot start.
pub async fn open_postgres(url: &str, connections: u32) -> Result<Db, DbError> {
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(url)?;
    let mut conn = AnyConnection::connect_with(&options).await?;
    POSTGRES_MIGRATIONS
        .run(&mut conn)
        .await
        .map_err(sqlx::Error::from)?;
    conn.close().await?;
    let (jobs, queue) = mpsc::sync_channel(QUEUE);
    let queue = Arc::new(Mutex::new(queue));
    for n in 0..connections.max(1) {
        let (options, queue) = (options.clone(), Arc::clone(&queue));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbError::Data(format!("cannot start a PostgreSQL worker: {e}")))?;
        std::thread::Builder::new()
            .name(format!("postgres-{n}"))
            .spawn(move || postgres_worker(&options, &queue, Arc::new(runtime)))
            .map_err(|e| DbError::Data(format!("cannot start a PostgreSQL worker: {e}")))?;
    }
    Ok(Db {
        jobs,
        engine: Engine::Postgres,
    })
}

/// How long a worker tries to reach PostgreSQL for a request before the
/// request gets a 503: while the server is down, requests fail fast, and
/// the next request after it is back connects again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A new connection, or none (logged) when the server cannot be reached
/// within [`CONNECT_TIMEOUT`].
fn connect(
    options: &AnyConnectOptions,
    runtime: &tokio::runtime::Runtime,
) -> Option<Box<AnyConnection>> {
    let made = runtime.block_on(async {
        tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect_with(options)).await
    });
    match made {
        Ok(Ok(conn)) => Some(Box::new(conn)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "PostgreSQL: cannot connect");
            None
        }
        Err(_) => {
            tracing::error!("PostgreSQL: cannot connect: timed out");
            None
        }
    }
}

/// A PostgreSQL worker: takes one request at a time from the shared queue
/// and runs it in one transaction on its own connection, connecting again
/// when the connection was lost.
fn postgres_worker(
    options: &AnyConnectOptions,
    queue: &Mutex<mpsc::Receiver<Job>>,
    runtime: Arc<tokio::runtime::Runtime>,
) {
    let mut kept: Option<Box<AnyConnection>> = None;
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        // A kept connection may have died with the server since its last
        // use; then one new connection is tried before the request is
        // failed. Nothing of the request has run yet.
        let mut conn = None;
        for fresh in [false, true] {
            let candidate = match (fresh, kept.take()) {
                (false, None) => continue,
                (false, Some(old)) => Some(old),
                (true, _) => connect(options, &runtime),
            };
            let Some(mut candidate) = candidate else {
                break;
            };
            match runtime.block_on(candidate.execute("BEGIN")) {
                Ok(_) => {
                    conn = Some(candidate);
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "PostgreSQL: cannot begin"),
            }
        }
        // Without a connection the job is dropped: its request gets a 503.
        let Some(conn) = conn else { continue };
        let tx = Arc::new(Tx {
            conn: Mutex::new(Some(Conn::Postgres {
                conn,
                runtime: Arc::clone(&runtime),
            })),
            engine: Engine::Postgres,
        });
        // A job that panics is rolled back and its request answered 503.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&tx)));
        let Some(Conn::Postgres { mut conn, .. }) = tx.take() else {
            continue;
        };
        let (keep, finish) = match ran {
            Ok((keep, finish)) => (keep, Some(finish)),
            Err(_) => (false, None),
        };
        let end = runtime.block_on(conn.execute(if keep { "COMMIT" } else { "ROLLBACK" }));
        // A connection whose transaction could not end is not used again.
        let ended = match end {
            Ok(_) => {
                kept = Some(conn);
                Ok(())
            }
            Err(e) => Err(DbError::from(e)),
        };
        if let Some(finish) = finish {
            finish(ended);
        }
    }
}

/// Runs `work` in one transaction and commits it if `work` succeeds; on an
/// error nothing it wrote is kept. The answer comes only once the commit
/// is on disk.
///
/// # Errors
/// What `work` returns, or `unavailable` when the database fails or
/// more than [`QUEUE`] requests are already waiting.
pub async fn transaction<T, F>(db: &Db, work: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce(&Arc<Tx>) -> Result<T, Problem> + Send + 'static,
{
    let (answer, answered) = tokio::sync::oneshot::channel::<Result<T, Problem>>();
    let job: Job = Box::new(move |tx: &Arc<Tx>| {
        let out = work(tx);
        let keep = out.is_ok();
        let finish: Finish = Box::new(move |committed| {
            let result = match committed {
                Ok(()) => out,
                Err(e) => out.and(Err(Problem::from(e))),
            };
            let _ = answer.send(result);
        });
        (keep, finish)
    });
    db.jobs.try_send(job).map_err(|e| match e {
        mpsc::TrySendError::Full(_) => {
            Problem::unavailable("the database is busy; the request may be sent again")
        }
        mpsc::TrySendError::Disconnected(_) => Problem::from(DbError::Gone),
    })?;
    answered
        .await
        .map_err(|_| Problem::unavailable("the database failed; the request may be sent again"))?
}

/// Whether the database answers a query.
///
/// # Errors
/// `unavailable` when it does not.
pub async fn ping(db: &Db) -> Result<(), Problem> {
    transaction(db, |tx| Ok(tx.query("SELECT 1 AS one", &[]).map(drop)?)).await
}

/// One open transaction, used from the thread that runs the request's work.
pub struct Tx {
    conn: Mutex<Option<Conn>>,
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

/// A receipt as received, its decision, and what it changes.
#[derive(Debug)]
pub struct ReceiptRecord<'a> {
    /// The delivery.
    pub delivery_id: &'a str,
    /// The sequence of the ticket it answers.
    pub sequence: i64,
    /// The courier it names.
    pub courier_id: &'a str,
    /// The device that made it.
    pub device_id: &'a str,
    /// The exact text received, kept as evidence.
    pub body: &'a str,
    /// The decision (JSON of the core's `Decision`).
    pub decision: &'a str,
    /// The explanation for support.
    pub explanation: &'a str,
    /// Whether it was the same receipt again.
    pub repeated: bool,
    /// Unix seconds.
    pub now: u64,
    /// The delivery's new status, when the decision changes it.
    pub status: Option<&'a str>,
    /// The entry for the delivery's history.
    pub history: &'a serde_json::Value,
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

/// The columns of [`DeliveryRow`], in a `SELECT`.
const DELIVERY_COLUMNS: &str = "delivery_id, sequence, courier_id, settings, ticket, status, \
     contact, locale, utc_offset_minutes, request_digest, resends, created_at";

fn delivery_row(r: &Row) -> Result<DeliveryRow, DbError> {
    Ok(DeliveryRow {
        delivery_id: r.text("delivery_id")?,
        sequence: r.unsigned("sequence")?,
        courier_id: r.text("courier_id")?,
        settings: r.text("settings")?,
        ticket: r.text("ticket")?,
        status: r.text("status")?,
        contact: r.text("contact")?,
        locale: r.text("locale")?,
        utc_offset_minutes: i32::try_from(r.int("utc_offset_minutes")?)
            .map_err(|_| DbError::Data("utc_offset_minutes is out of range".into()))?,
        request_digest: r.text("request_digest")?,
        resends: r.unsigned("resends")?,
        created_at: r.unsigned("created_at")?,
    })
}

impl Tx {
    fn take(&self) -> Option<Conn> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.as_mut().ok_or(DbError::Gone)?.execute(sql, params)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.as_mut().ok_or(DbError::Gone)?.query(sql, params)
    }

    fn query_one(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Serializes the transactions that touch `key`: with PostgreSQL, an
    /// advisory lock held until this transaction ends; with SQLite's single
    /// writer, every transaction is already alone.
    fn lock(&self, key: &str) -> Result<(), DbError> {
        if self.engine == Engine::Sqlite {
            return Ok(());
        }
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[key.into()],
        )
        .map(drop)
    }

    /// The delivery, if issued.
    ///
    /// # Errors
    /// The database fails.
    pub fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRow>, DbError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE delivery_id = $1");
        self.query_one(&sql, &[delivery_id.into()])?
            .map(|r| delivery_row(&r))
            .transpose()
    }

    /// The delivery, if issued, held for this transaction: every
    /// transaction that changes a delivery or checks a code for it reads it
    /// this way first, so they run one after another (PostgreSQL: the row
    /// is locked, `FOR UPDATE`; SQLite's single writer runs every
    /// transaction alone). With it, in the same statement, whether
    /// `device` (courier id, device id) is provisioned: `Some(true)`,
    /// revoked: `Some(false)`, or never provisioned: `None`.
    ///
    /// # Errors
    /// The database fails.
    pub fn delivery_held(
        &self,
        delivery_id: &str,
        device: Option<(&str, &str)>,
    ) -> Result<Option<(DeliveryRow, Option<bool>)>, DbError> {
        let lock = match self.engine {
            Engine::Postgres => " FOR UPDATE",
            Engine::Sqlite => "",
        };
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, (SELECT CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END \
             FROM devices WHERE courier_id = $2 AND device_id = $3) AS device_active \
             FROM deliveries WHERE delivery_id = $1{lock}"
        );
        let (courier_id, device_id) = device.unwrap_or(("", ""));
        let Some(r) = self.query_one(
            &sql,
            &[delivery_id.into(), courier_id.into(), device_id.into()],
        )?
        else {
            return Ok(None);
        };
        let active = r.opt_int("device_active")?.map(|a| a == 1);
        Ok(Some((delivery_row(&r)?, active)))
    }

    /// Stores a newly issued delivery and its history's `issued` entry
    /// (`detail`), unless a delivery with its id exists; whether it did.
    /// On PostgreSQL this is one statement.
    ///
    /// # Errors
    /// The database fails.
    pub fn insert_delivery(
        &self,
        d: &DeliveryRow,
        now: u64,
        detail: &serde_json::Value,
    ) -> Result<bool, DbError> {
        const INSERT: &str = "INSERT INTO deliveries (delivery_id, sequence, courier_id, settings, \
             ticket, status, contact, locale, utc_offset_minutes, request_digest, resends, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (delivery_id) DO NOTHING";
        let mut params = vec![
            (&d.delivery_id).into(),
            int(d.sequence)?,
            (&d.courier_id).into(),
            (&d.settings).into(),
            (&d.ticket).into(),
            (&d.status).into(),
            (&d.contact).into(),
            (&d.locale).into(),
            i64::from(d.utc_offset_minutes).into(),
            (&d.request_digest).into(),
            i64::from(d.resends).into(),
            int(d.created_at)?,
            int(now)?,
        ];
        match self.engine {
            Engine::Postgres => {
                params.push(detail.to_string().into());
                let added = self.execute(
                    &format!(
                        "WITH added AS ({INSERT} RETURNING delivery_id) INSERT INTO delivery_events \
                         (delivery_id, at, kind, detail) SELECT delivery_id, $13, 'issued', $14 FROM added"
                    ),
                    &params,
                )?;
                Ok(added == 1)
            }
            Engine::Sqlite => {
                let added = self.execute(INSERT, &params)? == 1;
                if added {
                    self.event(&d.delivery_id, now, "issued", detail)?;
                }
                Ok(added)
            }
        }
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
    ) -> Result<(), DbError> {
        self.execute(
            "UPDATE deliveries SET sequence = $1, courier_id = $2, ticket = $3, resends = $4, \
             status = 'issued', updated_at = $5 WHERE delivery_id = $6",
            &[
                int(sequence)?,
                courier_id.into(),
                ticket.into(),
                i64::from(resends).into(),
                int(now)?,
                delivery_id.into(),
            ],
        )
        .map(drop)
    }

    /// Sets the delivery's status.
    ///
    /// # Errors
    /// The database fails.
    pub fn set_status(&self, delivery_id: &str, status: &str, now: u64) -> Result<(), DbError> {
        self.execute(
            "UPDATE deliveries SET status = $1, updated_at = $2 WHERE delivery_id = $3",
            &[status.into(), int(now)?, delivery_id.into()],
        )
        .map(drop)
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
    ) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO delivery_events (delivery_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
            &[
                delivery_id.into(),
                int(now)?,
                kind.into(),
                detail.to_string().into(),
            ],
        )
        .map(drop)
    }

    /// The delivery's history, oldest first.
    ///
    /// # Errors
    /// The database fails.
    pub fn events(&self, delivery_id: &str) -> Result<Vec<EventRow>, DbError> {
        self.query(
            "SELECT at, kind, detail FROM delivery_events WHERE delivery_id = $1 ORDER BY id",
            &[delivery_id.into()],
        )?
        .iter()
        .map(|r| {
            Ok(EventRow {
                at: r.unsigned("at")?,
                kind: r.text("kind")?,
                detail: r.text("detail")?,
            })
        })
        .collect()
    }

    /// The receipts received for the delivery, oldest first.
    ///
    /// # Errors
    /// The database fails.
    pub fn receipts(&self, delivery_id: &str) -> Result<Vec<ReceiptRow>, DbError> {
        self.query(
            "SELECT sequence, device_id, decision, explanation, repeated, received_at \
             FROM receipts WHERE delivery_id = $1 ORDER BY id",
            &[delivery_id.into()],
        )?
        .iter()
        .map(|r| {
            Ok(ReceiptRow {
                sequence: r.unsigned("sequence")?,
                device_id: r.text("device_id")?,
                decision: r.text("decision")?,
                explanation: r.text("explanation")?,
                repeated: r.int("repeated")? != 0,
                received_at: r.unsigned("received_at")?,
            })
        })
        .collect()
    }

    /// Keeps a receipt exactly as received with its decision, sets the
    /// delivery's status when the decision changes it, and adds the
    /// receipt to the delivery's history: one statement on PostgreSQL.
    ///
    /// # Errors
    /// The database fails.
    pub fn record_receipt(&self, r: &ReceiptRecord<'_>) -> Result<(), DbError> {
        const INSERT: &str = "INSERT INTO receipts (delivery_id, sequence, courier_id, device_id, \
             body, body_sha256, decision, explanation, repeated, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        let digest = crate::auth::sha256_hex(r.body.as_bytes());
        let mut params = vec![
            r.delivery_id.into(),
            r.sequence.into(),
            r.courier_id.into(),
            r.device_id.into(),
            r.body.into(),
            digest.into(),
            r.decision.into(),
            r.explanation.into(),
            r.repeated.into(),
            int(r.now)?,
        ];
        match self.engine {
            Engine::Postgres => {
                params.push(r.status.unwrap_or_default().into());
                params.push(r.history.to_string().into());
                self.execute(
                    &format!(
                        "WITH kept AS ({INSERT}), changed AS (UPDATE deliveries SET status = $11, \
                         updated_at = $10 WHERE delivery_id = $1 AND $11 <> '') \
                         INSERT INTO delivery_events (delivery_id, at, kind, detail) \
                         VALUES ($1, $10, 'receipt', $12)"
                    ),
                    &params,
                )?;
            }
            Engine::Sqlite => {
                self.execute(INSERT, &params)?;
                if let Some(status) = r.status {
                    self.set_status(r.delivery_id, status, r.now)?;
                }
                self.event(r.delivery_id, r.now, "receipt", r.history)?;
            }
        }
        Ok(())
    }

    /// Whether a receipt for the delivery's `sequence` was recorded with
    /// this decision (JSON) as new, not as a repeat.
    ///
    /// # Errors
    /// The database fails.
    pub fn decision_recorded(
        &self,
        delivery_id: &str,
        sequence: i64,
        decision: &str,
    ) -> Result<bool, DbError> {
        Ok(self
            .query_one(
                "SELECT 1 AS one FROM receipts WHERE delivery_id = $1 AND sequence = $2 \
                 AND decision = $3 AND repeated = 0 LIMIT 1",
                &[delivery_id.into(), sequence.into(), decision.into()],
            )?
            .is_some())
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
    ) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO devices (courier_id, device_id, key_id, provisioned_at, revoked_at) \
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (courier_id, device_id) DO UPDATE SET \
             key_id = excluded.key_id, provisioned_at = excluded.provisioned_at, revoked_at = NULL",
            &[
                courier_id.into(),
                device_id.into(),
                key_id.into(),
                int(now)?,
            ],
        )
        .map(drop)
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
    ) -> Result<bool, DbError> {
        let changed = self.execute(
            "UPDATE devices SET revoked_at = COALESCE(revoked_at, $1) WHERE courier_id = $2 AND device_id = $3",
            &[int(now)?, courier_id.into(), device_id.into()],
        )?;
        Ok(changed > 0)
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
    ) -> Result<Option<bool>, DbError> {
        let row = self.query_one(
            "SELECT revoked_at FROM devices WHERE courier_id = $1 AND device_id = $2",
            &[courier_id.into(), device_id.into()],
        )?;
        row.map(|r| Ok(r.opt_int("revoked_at")?.is_none()))
            .transpose()
    }

    /// The current tickets of the deliveries assigned to `courier_id` that
    /// are still open.
    ///
    /// # Errors
    /// The database fails.
    pub fn open_tickets(&self, courier_id: &str) -> Result<Vec<String>, DbError> {
        self.query(
            "SELECT ticket FROM deliveries WHERE courier_id = $1 AND status = 'issued' ORDER BY delivery_id",
            &[courier_id.into()],
        )?
        .iter()
        .map(|r| r.text("ticket"))
        .collect()
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
    ) -> Result<bool, DbError> {
        self.execute(
            "DELETE FROM request_signatures WHERE expires_at < $1",
            &[int(now)?],
        )?;
        let added = self.execute(
            "INSERT INTO request_signatures (signature, expires_at) VALUES ($1, $2) ON CONFLICT (signature) DO NOTHING",
            &[signature.into(), int(expires_at)?],
        )?;
        Ok(added == 1)
    }

    /// Writes a webhook event to the outbox, due now.
    ///
    /// # Errors
    /// The database fails.
    pub fn enqueue_event(&self, event_id: &str, payload: &str, now: u64) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO webhook_outbox (event_id, payload, created_at, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, 0, $4)",
            &[event_id.into(), payload.into(), int(now)?, int(now)?],
        )
        .map(drop)
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
    ) -> Result<Vec<(String, String, u64)>, DbError> {
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
        let rows = self.query(select, &[int(now)?, limit.into()])?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let event_id = r.text("event_id")?;
            self.execute(
                "UPDATE webhook_outbox SET next_attempt_at = $1 WHERE event_id = $2",
                &[
                    int(now.saturating_add(CLAIM_LEASE_SECS))?,
                    (&event_id).into(),
                ],
            )?;
            out.push((event_id, r.text("payload")?, r.unsigned("attempts")?));
        }
        Ok(out)
    }

    /// Marks an event delivered.
    ///
    /// # Errors
    /// The database fails.
    pub fn event_delivered(&self, event_id: &str, now: u64) -> Result<(), DbError> {
        self.execute(
            "UPDATE webhook_outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL \
             WHERE event_id = $2",
            &[int(now)?, event_id.into()],
        )
        .map(drop)
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
    ) -> Result<(), DbError> {
        self.execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 \
             WHERE event_id = $3",
            &[int(next_attempt_at)?, error.into(), event_id.into()],
        )
        .map(drop)
    }

    /// The scopes of the unrevoked token with this hash.
    ///
    /// # Errors
    /// The database fails.
    pub fn token_scopes(&self, token_hash: &str) -> Result<Option<String>, DbError> {
        self.query_one(
            "SELECT scopes FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            &[token_hash.into()],
        )?
        .map(|r| r.text("scopes"))
        .transpose()
    }

    /// Marks a token revoked now; whether a live token had that hash.
    ///
    /// # Errors
    /// The database fails.
    pub fn revoke_token(&self, token_hash: &str, now: u64) -> Result<bool, DbError> {
        let changed = self.execute(
            "UPDATE api_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
            &[int(now)?, token_hash.into()],
        )?;
        Ok(changed > 0)
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
    ) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO api_tokens (name, token_hash, scopes, created_at) VALUES ($1, $2, $3, $4)",
            &[name.into(), token_hash.into(), scopes.into(), int(now)?],
        )
        .map(drop)
    }
}

fn storage(e: DbError) -> delivery_otp::Error {
    tracing::error!(error = %e, "attempt store");
    delivery_otp::Error::StateStorage {
        reason: "the database failed".into(),
    }
}

/// The core's attempt store, in this transaction.
impl AttemptStore for Tx {
    /// An online check in three statements at most: what ended the code,
    /// the entry's position and the count read together, then the entry
    /// and (when it ends the code) its record written. The service checks
    /// codes only in `verifyCode`, which holds the delivery first
    /// ([`Tx::delivery_held`]), so two checks of one code never interleave.
    fn check_online(&self, entry: &OnlineEntry<'_>) -> delivery_otp::Result<OnlineStep> {
        let found = self
            .query_one(
                "SELECT (SELECT value FROM remembered WHERE key = $1) AS ended, \
                 (SELECT position FROM attempts WHERE scope = $2 AND attempt = $3) AS known, \
                 (SELECT COUNT(*) FROM attempts WHERE scope = $2) AS counted",
                &[
                    entry.end_key.into(),
                    entry.scope.into(),
                    entry.attempt.into(),
                ],
            )
            .and_then(|row| row.ok_or(DbError::Gone))
            .map_err(storage)?;
        if let Value::Text(first) = found.value("ended").map_err(storage)? {
            return Ok(OnlineStep::AlreadyEnded(first.clone()));
        }
        let position = match found.opt_int("known").map_err(storage)? {
            Some(known) => known,
            None => {
                let counted = found.int("counted").map_err(storage)?;
                if counted >= i64::from(entry.limit) {
                    return Ok(OnlineStep::Locked);
                }
                let position = counted.saturating_add(1);
                self.execute(
                    "INSERT INTO attempts (scope, attempt, position, expires_at) VALUES ($1, $2, $3, $4)",
                    &[
                        entry.scope.into(),
                        entry.attempt.into(),
                        position.into(),
                        int(entry.expires_at).map_err(storage)?,
                    ],
                )
                .map_err(storage)?;
                position
            }
        };
        let position = u32::try_from(position)
            .map_err(|_| storage(DbError::Data(format!("attempt position {position}"))))?;
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

    fn record_attempt(
        &self,
        scope: &str,
        attempt: &str,
        limit: u32,
        expires_at: u64,
    ) -> delivery_otp::Result<Option<u32>> {
        self.lock(scope).map_err(storage)?;
        let known = self
            .query_one(
                "SELECT position FROM attempts WHERE scope = $1 AND attempt = $2",
                &[scope.into(), attempt.into()],
            )
            .map_err(storage)?;
        if let Some(row) = known {
            return row.unsigned("position").map(Some).map_err(storage);
        }
        let counted = self
            .query_one(
                "SELECT COUNT(*) AS counted FROM attempts WHERE scope = $1",
                &[scope.into()],
            )
            .and_then(|row| match row {
                Some(row) => row.int("counted"),
                None => Ok(0),
            })
            .map_err(storage)?;
        if counted >= i64::from(limit) {
            return Ok(None);
        }
        let position = counted.saturating_add(1);
        self.execute(
            "INSERT INTO attempts (scope, attempt, position, expires_at) VALUES ($1, $2, $3, $4)",
            &[
                scope.into(),
                attempt.into(),
                position.into(),
                int(expires_at).map_err(storage)?,
            ],
        )
        .map_err(storage)?;
        u32::try_from(position)
            .map(Some)
            .map_err(|_| storage(DbError::Data(format!("attempt position {position}"))))
    }

    fn remember_first(
        &self,
        key: &str,
        value: &str,
        expires_at: u64,
    ) -> delivery_otp::Result<Option<String>> {
        let added = self
            .execute(
                "INSERT INTO remembered (key, value, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
                &[key.into(), value.into(), int(expires_at).map_err(storage)?],
            )
            .map_err(storage)?;
        if added == 1 {
            return Ok(None);
        }
        self.recall(key)?
            .map(Some)
            .ok_or_else(|| storage(DbError::Data(format!("{key} was kept and is gone"))))
    }

    /// One statement for all the keys.
    fn recall_many(&self, keys: &[&str]) -> delivery_otp::Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=keys.len()).map(|n| format!("${n}")).collect();
        let params: Vec<Value> = keys.iter().map(|k| (*k).into()).collect();
        let rows = self
            .query(
                &format!(
                    "SELECT key, value FROM remembered WHERE key IN ({})",
                    marks.join(", ")
                ),
                &params,
            )
            .map_err(storage)?;
        let mut found = std::collections::HashMap::new();
        for row in rows {
            found.insert(
                row.text("key").map_err(storage)?,
                row.text("value").map_err(storage)?,
            );
        }
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }

    /// One statement to keep every new key, and one to read the values kept
    /// before for the others.
    fn remember_first_many(
        &self,
        items: &[(&str, &str, u64)],
    ) -> delivery_otp::Result<Vec<Option<String>>> {
        // The first value given for a key is the one offered.
        let mut offered: Vec<(&str, &str, u64)> = Vec::new();
        for item in items {
            if !offered.iter().any(|(k, _, _)| *k == item.0) {
                offered.push(*item);
            }
        }
        if offered.is_empty() {
            return Ok(Vec::new());
        }
        let mut marks = Vec::with_capacity(offered.len());
        let mut params = Vec::with_capacity(offered.len().saturating_mul(3));
        for (n, (key, value, expires_at)) in (0usize..).zip(&offered) {
            let first = n.saturating_mul(3).saturating_add(1);
            marks.push(format!(
                "(${first}, ${}, ${})",
                first.saturating_add(1),
                first.saturating_add(2)
            ));
            params.push((*key).into());
            params.push((*value).into());
            params.push(int(*expires_at).map_err(storage)?);
        }
        let added: std::collections::HashSet<String> = self
            .query(
                &format!(
                    "INSERT INTO remembered (key, value, expires_at) VALUES {} \
                     ON CONFLICT (key) DO NOTHING RETURNING key",
                    marks.join(", ")
                ),
                &params,
            )
            .map_err(storage)?
            .iter()
            .map(|row| row.text("key"))
            .collect::<Result<_, _>>()
            .map_err(storage)?;
        let kept_before: Vec<&str> = offered
            .iter()
            .map(|(k, _, _)| *k)
            .filter(|k| !added.contains(*k))
            .collect();
        let before: std::collections::HashMap<&str, Option<String>> = kept_before
            .iter()
            .copied()
            .zip(self.recall_many(&kept_before)?)
            .collect();
        let mut seen = std::collections::HashSet::new();
        items
            .iter()
            .map(|(key, _, _)| {
                let first_time = seen.insert(*key);
                if added.contains(*key) {
                    // Kept now by its first occurrence; a later one gets that value.
                    return Ok(if first_time {
                        None
                    } else {
                        offered
                            .iter()
                            .find(|(k, _, _)| k == key)
                            .map(|(_, v, _)| (*v).to_string())
                    });
                }
                match before.get(key) {
                    Some(Some(value)) => Ok(Some(value.clone())),
                    _ => Err(storage(DbError::Data(format!(
                        "{key} was kept and is gone"
                    )))),
                }
            })
            .collect()
    }

    fn recall(&self, key: &str) -> delivery_otp::Result<Option<String>> {
        self.query_one("SELECT value FROM remembered WHERE key = $1", &[key.into()])
            .and_then(|row| row.map(|r| r.text("value")).transpose())
            .map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    async fn fresh(name: &str) -> (Db, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("dotp-db-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = open_sqlite(&dir.join("service.sqlite")).await.unwrap();
        (db, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sqlite_writer_syncs_every_commit() {
        let (db, dir) = fresh("pragmas").await;
        let read = transaction(&db, |tx| {
            let one = |sql: &str| -> Result<Value, DbError> {
                let row = tx.query_one(sql, &[])?.ok_or(DbError::Gone)?;
                Ok(row
                    .cols
                    .first()
                    .map(|(_, v)| v.clone())
                    .unwrap_or(Value::Null))
            };
            Ok([
                one("PRAGMA synchronous")?,
                one("PRAGMA journal_mode")?,
                one("PRAGMA foreign_keys")?,
            ])
        })
        .await
        .unwrap();
        // 2 is FULL: the log is synced at every commit.
        assert_eq!(
            read,
            [Value::Int(2), Value::Text("wal".into()), Value::Int(1)]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_committed_together_keep_only_their_own_writes() {
        let (db, dir) = fresh("group").await;
        let mut running = Vec::new();
        for i in 0..400u32 {
            let db = db.clone();
            running.push(tokio::spawn(async move {
                transaction(&db, move |tx| {
                    tx.insert_token(&format!("t{i}"), &format!("hash{i}"), "read", 1)?;
                    match i % 4 {
                        1 => Err(Problem::conflict("refused", "this one fails")),
                        2 => panic!("a bug in request {i}"),
                        _ => Ok(i),
                    }
                })
                .await
            }));
        }
        let mut answers = Vec::new();
        for r in running {
            answers.push(r.await.unwrap());
        }
        for (i, answer) in (0u32..).zip(&answers) {
            match i % 4 {
                1 => assert_eq!(answer.as_ref().unwrap_err().status, StatusCode::CONFLICT),
                2 => assert_eq!(
                    answer.as_ref().unwrap_err().status,
                    StatusCode::SERVICE_UNAVAILABLE
                ),
                _ => assert_eq!(answer.as_ref().ok(), Some(&i)),
            }
        }
        // What each request wrote is there exactly when it succeeded, and
        // the writer still works after the panics.
        let kept = transaction(&db, |tx| {
            (0..400u32)
                .map(|i| Ok(tx.token_scopes(&format!("hash{i}"))?.is_some()))
                .collect::<Result<Vec<bool>, Problem>>()
        })
        .await
        .unwrap();
        for (i, kept) in (0u32..).zip(kept) {
            assert_eq!(kept, i % 4 == 0 || i % 4 == 3, "request {i}");
        }
        // After a restart (the file opened again), the same.
        drop(db);
        let again = open_sqlite(&dir.join("service.sqlite")).await.unwrap();
        let count = transaction(&again, |tx| {
            Ok(tx
                .query_one("SELECT COUNT(*) AS n FROM api_tokens", &[])?
                .map(|r| r.int("n"))
                .transpose()?)
        })
        .await
        .unwrap();
        assert_eq!(count, Some(200));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
