//! SQLite: one writer thread owns the connection and runs every request's
//! transaction; the requests that wait while one commits commit together.

use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::Executor;

use super::{Conn, Db, DbError, Engine, Job, Tx, QUEUE, SQLITE_GROUP, SQLITE_MIGRATIONS};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{transaction, Value};
    use crate::problem::Problem;
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
