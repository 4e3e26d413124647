//! PostgreSQL: worker threads, each owning one connection and a
//! single-threaded runtime that drives it from that thread.

use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, Executor, PgConnection};

use super::combine::Combiner;
use super::{Conn, Db, DbError, Engine, Job, Tx, POSTGRES_MIGRATIONS, QUEUE};

/// Connects to PostgreSQL at `url`, brings its schema up to date and
/// starts `connections` workers, each with its own connection.
///
/// # Errors
/// The server cannot be reached, a migration fails, or a thread cannot start.
pub async fn open_postgres(url: &str, connections: u32) -> Result<Db, DbError> {
    let options = PgConnectOptions::from_str(url)?;
    let mut conn = PgConnection::connect_with(&options).await?;
    POSTGRES_MIGRATIONS
        .run(&mut conn)
        .await
        .map_err(sqlx::Error::from)?;
    conn.close().await?;
    let (jobs, queue) = mpsc::sync_channel(QUEUE);
    let queue = Arc::new(Mutex::new(queue));
    let combiner = Arc::new(Combiner::default());
    for n in 0..connections.max(1) {
        let (options, queue, combiner) =
            (options.clone(), Arc::clone(&queue), Arc::clone(&combiner));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbError::Data(format!("cannot start a PostgreSQL worker: {e}")))?;
        std::thread::Builder::new()
            .name(format!("postgres-{n}"))
            .spawn(move || postgres_worker(Arc::new(options), &queue, Arc::new(runtime), &combiner))
            .map_err(|e| DbError::Data(format!("cannot start a PostgreSQL worker: {e}")))?;
    }
    Ok(Db {
        jobs,
        engine: Engine::Postgres,
    })
}

/// What every connection of the service's workers sets before its first
/// request: `enable_seqscan = off` and `plan_cache_mode =
/// force_generic_plan`. Statements rather than startup options, so that a
/// connection pooler between the service and PostgreSQL (PgBouncer refuses
/// startup options it does not know) lets them through.
///
/// `enable_seqscan = off`: every statement the service sends finds its rows
/// by a key with an index, and must keep doing so as the tables grow. A
/// prepared statement's plan is made once per connection and kept; when a
/// table's statistics say it is empty (analyzed before the first receipt,
/// request signature or decision was written, as on a new deployment or
/// after a vacuum), PostgreSQL plans a lookup in it as a scan of the whole
/// table, the cheapest way to read nothing, and keeps that plan while the
/// table grows, until the next `ANALYZE` of it. Measured here: after a
/// `VACUUM ANALYZE` while no request signature was kept, the read of a
/// device's signed check took 765 µs of execution on average over the next
/// 8 seconds of checks, against 25 µs with this setting. With sequential
/// scans off, the planner takes the index whatever the statistics say; a
/// statement with no index to use still scans the table.
///
/// `plan_cache_mode = force_generic_plan`: each statement is planned once
/// per connection, not again for each execution. By default PostgreSQL
/// plans a prepared statement afresh for its parameters whenever it
/// estimates that cheaper than its one plan for all parameters; for an
/// upload's read (the delivery, its receipt slot and its decisions) it did
/// so for 13 and 57 % of the executions in the two benchmark runs where it
/// was counted, at about 150 µs of planning each, and in 4 of 10 runs the
/// uploads were up to a third slower (BENCHMARKS.md, session 11). Every
/// statement here finds its rows through an index, by keys it is given (or
/// by a due time, for the webhook outbox and the expiry sweeps), so one
/// plan serves every value.
pub(super) const SESSION_SETTINGS: [&str; 2] = [
    "SET enable_seqscan = off",
    "SET plan_cache_mode = force_generic_plan",
];

/// How long a worker tries to reach PostgreSQL for a request before the
/// request gets a 503: while the server is down, requests fail fast, and
/// the next request after it is back connects again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A new connection, or none (logged) when the server cannot be reached
/// within [`CONNECT_TIMEOUT`].
pub(super) fn connect(
    options: &PgConnectOptions,
    runtime: &tokio::runtime::Runtime,
) -> Option<Box<PgConnection>> {
    let made = runtime.block_on(async {
        tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut conn = PgConnection::connect_with(options).await?;
            for setting in SESSION_SETTINGS {
                conn.execute(setting).await?;
            }
            Ok::<_, sqlx::Error>(conn)
        })
        .await
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
/// and runs it on its own connection, in one transaction (or, for
/// `autocommit`, statement by statement). A kept connection that died
/// since its last use (the server restarted) is replaced on the first
/// statement, which is sent again (`redial`): `BEGIN`, or the one
/// idempotent statement of an autocommit request.
fn postgres_worker(
    options: Arc<PgConnectOptions>,
    queue: &Mutex<mpsc::Receiver<Job>>,
    runtime: Arc<tokio::runtime::Runtime>,
    combiner: &Arc<Combiner>,
) {
    let mut kept: Option<Box<PgConnection>> = None;
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        let (conn, redial) = match kept.take() {
            Some(conn) => (Some(conn), Some(Arc::clone(&options))),
            None => (connect(&options, &runtime), None),
        };
        // Without a connection the job is dropped: its request gets a 503.
        let Some(conn) = conn else { continue };
        let tx = Tx::open(
            Conn::Postgres {
                conn,
                runtime: Arc::clone(&runtime),
                redial,
            },
            Some(Arc::clone(combiner)),
        );
        let autocommit = job.autocommit;
        if !autocommit {
            if let Err(e) = tx.execute("BEGIN", &[]) {
                // The job is dropped (a 503) and the connection with it.
                tracing::warn!(error = %e, "PostgreSQL: cannot begin");
                continue;
            }
        }
        let (keep, finish) = job.run(&tx);
        let left_open = tx.left_open();
        let Some(Conn::Postgres { mut conn, .. }) = tx.take() else {
            continue;
        };
        let ended = if autocommit {
            // Each statement committed by itself: the answer is the work's.
            // A transaction the work began and did not end (it failed or
            // panicked in between) ends with the connection, dropped here.
            if !left_open {
                kept = Some(conn);
            }
            Ok(())
        } else {
            let end = runtime.block_on(conn.execute(if keep { "COMMIT" } else { "ROLLBACK" }));
            // A connection whose transaction could not end is not used again.
            match end {
                Ok(_) => {
                    kept = Some(conn);
                    Ok(())
                }
                Err(e) => Err(DbError::from(e)),
            }
        };
        if let Some(finish) = finish {
            finish(ended);
        }
    }
}
