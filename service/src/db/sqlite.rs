//! SQLite: one writer thread owns the connection and runs every request's
//! transaction; the requests that wait while one commits commit together.

use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;
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
    open_with_queue(path, QUEUE).await
}

/// [`open_sqlite`] with at most `waiting` requests queued for the writer.
async fn open_with_queue(path: &Path, waiting: usize) -> Result<Db, DbError> {
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
    let (jobs, queue) = mpsc::sync_channel(waiting);
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
    let tx = Tx::open(Conn::Sqlite(conn), None);
    let mut finishes = Vec::with_capacity(group.len());
    for job in group {
        let savepoint = tx.execute("SAVEPOINT request", &[]);
        if savepoint.is_err() {
            continue;
        }
        let (keep, finish) = job.run(&tx);
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
        fresh_with_queue(name, QUEUE).await
    }

    async fn fresh_with_queue(name: &str, waiting: usize) -> (Db, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("dotp-db-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = open_with_queue(&dir.join("service.sqlite"), waiting)
            .await
            .unwrap();
        (db, dir)
    }

    /// A request that keeps token `name` and holds the writer for 800 ms,
    /// so that the requests sent meanwhile wait in the queue.
    fn hold_the_writer(
        db: &Db,
        name: &'static str,
    ) -> tokio::task::JoinHandle<Result<(), Problem>> {
        let db = db.clone();
        tokio::spawn(async move {
            transaction(&db, move |tx| {
                tx.insert_token(name, &format!("hash-{name}"), "read", 1)?;
                std::thread::sleep(std::time::Duration::from_millis(800));
                Ok(())
            })
            .await
        })
    }

    /// Whether the token with this hash was kept.
    async fn kept(db: &Db, hash: &str) -> bool {
        let hash = hash.to_string();
        transaction(db, move |tx| Ok(tx.token_scopes(&hash)?.is_some()))
            .await
            .unwrap()
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_busy_at_once_and_keeps_nothing_of_it() {
        let (db, dir) = fresh_with_queue("busy", 1).await;
        let slow = hold_the_writer(&db, "slow");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // One waits in the queue; the next finds it full.
        let waiting = {
            let db = db.clone();
            tokio::spawn(async move {
                transaction(&db, |tx| {
                    Ok(tx.insert_token("waiting", "hash-waiting", "read", 1)?)
                })
                .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let refused = transaction(&db, |tx| {
            Ok(tx.insert_token("refused", "hash-refused", "read", 1)?)
        })
        .await;
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        let problem = refused.unwrap_err();
        assert_eq!(problem.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(problem.detail.contains("busy"), "{}", problem.detail);
        slow.await.unwrap().unwrap();
        waiting.await.unwrap().unwrap();
        assert!(kept(&db, "hash-slow").await);
        assert!(kept(&db, "hash-waiting").await);
        assert!(!kept(&db, "hash-refused").await);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A group whose COMMIT fails answers every request in it with a 503 and
    /// keeps none of them; the writer goes on. Played with a deferred foreign
    /// key, which SQLite checks only at COMMIT.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_whose_commit_fails_keeps_none_of_its_requests() {
        let (db, dir) = fresh("commit").await;
        transaction(&db, |tx| {
            tx.execute("CREATE TABLE parents (id INTEGER PRIMARY KEY)", &[])?;
            tx.execute(
                "CREATE TABLE children (parent INTEGER REFERENCES parents (id) \
                 DEFERRABLE INITIALLY DEFERRED)",
                &[],
            )?;
            Ok(())
        })
        .await
        .unwrap();
        // The first request holds the writer while the next three queue up:
        // they commit together, and one of them breaks the key.
        let first = hold_the_writer(&db, "first");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut group = Vec::new();
        for name in ["a", "breaks", "b"] {
            let db = db.clone();
            group.push(tokio::spawn(async move {
                transaction(&db, move |tx| {
                    tx.insert_token(name, &format!("hash-{name}"), "read", 1)?;
                    if name == "breaks" {
                        tx.execute("INSERT INTO children (parent) VALUES (42)", &[])?;
                    }
                    Ok(())
                })
                .await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        first.await.unwrap().unwrap();
        for request in group {
            let problem = request.await.unwrap().unwrap_err();
            assert_eq!(problem.status, StatusCode::SERVICE_UNAVAILABLE);
        }
        assert!(kept(&db, "hash-first").await);
        for name in ["a", "breaks", "b"] {
            assert!(!kept(&db, &format!("hash-{name}")).await, "{name} was kept");
        }
        // The writer goes on.
        transaction(&db, |tx| {
            Ok(tx.insert_token("after", "hash-after", "read", 1)?)
        })
        .await
        .unwrap();
        assert!(kept(&db, "hash-after").await);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
