//! Storage: SQLite (one instance, the default) or PostgreSQL (several
//! instances), their migrations, and one transaction per request. The
//! core's [`AttemptStore`](delivery_otp::AttemptStore) is implemented on that transaction, so what the
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
//! concurrent commits together itself), except an online check and an
//! upload of one receipt, which are guarded requests (a read, then one
//! write statement that keeps everything only if the delivery did not
//! change; [`guarded`]), and the few requests whose writes are one
//! statement ([`autocommit`]). sqlx runs both engines' migrations.
//!
//! - `value`: parameters and rows, and one connection of either engine;
//! - `sqlite`: the writer thread and its group commit;
//! - `postgres`: the worker threads;
//! - `queries`: the service's statements, written once for both engines;
//! - `attempts`: the core's attempt store on a transaction;
//! - `guarded`: a request about one delivery in two round trips on
//!   PostgreSQL, without holding the delivery ([`guarded`]);
//! - `combine`: the guarded writes that several workers reach at once, made
//!   in one statement and one commit by one of them while the others go on
//!   to their next requests.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::problem::Problem;

mod attempts;
mod combine;
mod guarded;
mod online;
mod postgres;
mod queries;
mod sqlite;
mod value;

pub use guarded::Reads;
pub use postgres::open_postgres;
pub use queries::{Admission, DeliveryRow, DeviceRequest, EventRow, ReceiptRecord, ReceiptRow};
pub use sqlite::open_sqlite;
use value::Conn;
pub use value::{Row, Value};

/// SQLite's migrations, compiled in; `_sqlx_migrations` records which ran.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
/// PostgreSQL's migrations.
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a claimed webhook event is left to the instance that claimed
/// it. The sender starts a POST only if it ends, at its timeout, before the
/// lease does, and gives the rest of its batch back (`webhook::run`).
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
    /// A device request's signature was recorded by another request between
    /// this one's read and its write: a replay; nothing was written.
    #[error("the signed request was already received")]
    Replayed,
}

impl From<DbError> for Problem {
    fn from(e: DbError) -> Self {
        if matches!(e, DbError::Replayed) {
            return crate::auth::replayed_request();
        }
        tracing::error!(error = %e, "database error");
        Problem::unavailable("the database failed; the request may be sent again")
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
/// A request's work: run in a transaction (or, on PostgreSQL with
/// `autocommit`, outside one), it says whether to keep what it wrote and how
/// to answer once the commit is known.
struct Job {
    autocommit: bool,
    run: Work,
}

/// The work of a [`Job`].
type Work = Box<dyn FnOnce(&Arc<Tx>) -> (bool, Finish) + Send>;

impl Job {
    /// Runs the work on `tx`: whether to keep what it wrote, and how to
    /// answer. A job that panics keeps nothing, and its request, with no
    /// one left to answer it, gets a 503.
    fn run(self, tx: &Arc<Tx>) -> (bool, Option<Finish>) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.run)(tx))) {
            Ok((keep, finish)) => (keep, Some(finish)),
            Err(_) => (false, None),
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
    submit(db, false, work).await
}

/// Runs `work` in a transaction that first admits a device's signed request
/// (`admission`): the device is provisioned and not revoked, and the
/// signature is new and recorded in this transaction, so it is kept only if
/// the work is. Without an admission (a backend's token), as [`transaction`].
///
/// # Errors
/// As [`transaction`]; the refusal of [`DeviceRequest::admitted`].
pub async fn admitted<T, F>(db: &Db, admission: Option<Admission>, work: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce(&Arc<Tx>) -> Result<T, Problem> + Send + 'static,
{
    submit(db, false, move |tx| {
        if let Some(a) = &admission {
            tx.admit(a)?.admitted()?;
        }
        work(tx)
    })
    .await
}

/// Runs `work` outside a transaction on PostgreSQL: each statement commits
/// by itself, which saves the two round trips of `BEGIN` and `COMMIT`. Only
/// for work that writes with one statement that is idempotent (sending it
/// twice does what sending it once does: the first statement is sent again
/// when the connection it was given turns out to have died) and reads
/// nothing that needs a lock: issuing a code, whose one insert does nothing
/// when the delivery exists. On SQLite it is a transaction like any other.
///
/// # Errors
/// As [`transaction`].
pub async fn autocommit<T, F>(db: &Db, work: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce(&Arc<Tx>) -> Result<T, Problem> + Send + 'static,
{
    submit(db, true, work).await
}

/// How many times a guarded request runs without a lock: each run after
/// the first means another request changed the delivery between this
/// one's read and its write. After that it runs once more in a transaction
/// that holds the delivery, waiting its turn instead of trying again, so a
/// delivery many requests are about at once still answers each of them.
pub const GUARDED_RUNS: usize = 3;

/// Runs `work`, a request about one delivery that `work` reads first with
/// [`Tx::delivery_held`], as a guarded request on PostgreSQL: the delivery
/// and all the attempt store may be asked about it read in one statement
/// without a lock, the writes queued and then made in one statement that
/// keeps them only if the delivery has not changed since (two round trips
/// in all; see the `guarded` module). When it has changed, `work` runs
/// again on a fresh read, up to [`GUARDED_RUNS`] times, and then in a
/// transaction (as [`transaction`] runs it). The worker that ran it does
/// not wait for its write: it takes the next request, and the request is
/// answered (or sent to the workers again) when its write is made. `work` must write
/// only through the [`Tx`] methods that know a guarded request (the store,
/// [`Tx::event`], [`Tx::record_receipt`], [`Tx::enqueue_event`]): any other
/// write fails the request and keeps nothing. On SQLite it is a
/// transaction like any other.
///
/// # Errors
/// As [`transaction`].
pub async fn guarded<T, F>(
    db: &Db,
    reads: Reads,
    admission: Option<Admission>,
    work: F,
) -> Result<T, Problem>
where
    T: Send + 'static,
    F: Fn(&Arc<Tx>) -> Result<T, Problem> + Send + 'static,
{
    if db.engine == Engine::Sqlite {
        return admitted(db, admission, work).await;
    }
    let (answer, answered) = tokio::sync::oneshot::channel::<Result<T, Problem>>();
    let request = Guarded {
        reads,
        admission,
        work,
        runs: 0,
        answer,
    };
    request.send(&db.jobs).map_err(not_queued)?;
    answered
        .await
        .map_err(|_| Problem::unavailable("the database failed; the request may be sent again"))?
}

/// A guarded request on its way through the workers: what it does, how
/// many times it ran, and whom to answer. A worker runs it up to its write,
/// hands the write to the combiner with what to do with the outcome, and
/// takes the next request; the outcome answers it, or (the delivery changed
/// in between) sends it to the workers again.
struct Guarded<T, F> {
    reads: Reads,
    admission: Option<Admission>,
    work: F,
    runs: usize,
    answer: tokio::sync::oneshot::Sender<Result<T, Problem>>,
}

impl<T, F> Guarded<T, F>
where
    T: Send + 'static,
    F: Fn(&Arc<Tx>) -> Result<T, Problem> + Send + 'static,
{
    /// Queues this request for the workers. When it cannot be queued, it
    /// is dropped with its job, and so answered 503.
    ///
    /// # Errors
    /// The queue is full, or the workers are gone.
    fn send(self, jobs: &mpsc::SyncSender<Job>) -> Result<(), mpsc::TrySendError<Job>> {
        let again = jobs.clone();
        let run: Work = Box::new(move |tx| {
            self.run(tx, again);
            // Answered by `run` or by its write's outcome, not at the end of
            // the job.
            let finish: Finish = Box::new(|_| {});
            (true, finish)
        });
        jobs.try_send(Job {
            autocommit: true,
            run,
        })
    }

    /// Runs the request once on `tx`: without a lock up to its write, which
    /// goes to the combiner; after [`GUARDED_RUNS`] runs, in a transaction
    /// that holds the delivery.
    fn run(self, tx: &Arc<Tx>, jobs: mpsc::SyncSender<Job>) {
        let Guarded {
            reads,
            admission,
            work,
            runs,
            answer,
        } = self;
        if runs >= GUARDED_RUNS {
            metrics::counter!("delivery_otp_guarded_held_total").increment(1);
            tx.end_guard();
            let held = || {
                tx.begin()?;
                let out = match &admission {
                    Some(a) => tx
                        .admit(a)
                        .map_err(Problem::from)
                        .and_then(DeviceRequest::admitted)
                        .and_then(|()| work(tx)),
                    None => work(tx),
                };
                tx.end(out.is_ok())?;
                out
            };
            let _ = answer.send(held());
            return;
        }
        tx.begin_guard(reads, admission.clone());
        let written = (|| {
            let out = work(tx)?;
            // A device's request: refused, or its signature queued with the
            // writes; when the work read no delivery, admitted by itself.
            if let Some(a) = &admission {
                match tx.admit_guarded() {
                    Some(seen) => seen?.admitted()?,
                    None => {
                        // Nothing read, so nothing queued: the admission is
                        // the one write, a statement of its own.
                        tx.end_guard();
                        tx.admit(a)?.admitted()?;
                        return Ok((out, None));
                    }
                }
            }
            Ok((out, tx.guarded_write()?))
        })();
        let (out, write) = match written {
            Ok(written) => written,
            Err(problem) => {
                let _ = answer.send(Err(problem));
                return;
            }
        };
        let Some(write) = write else {
            let _ = answer.send(Ok(out));
            return;
        };
        let done: combine::Done = Box::new(move |kept| match kept {
            Ok(true) => {
                let _ = answer.send(Ok(out));
            }
            Ok(false) => {
                metrics::counter!("delivery_otp_guarded_reruns_total").increment(1);
                let again = Guarded {
                    reads,
                    admission,
                    work,
                    runs: runs.saturating_add(1),
                    answer,
                };
                // A full queue drops the request: it gets a 503.
                let _ = again.send(&jobs);
            }
            Err(e) => {
                let _ = answer.send(Err(Problem::from(e)));
            }
        });
        tx.write_guarded(write, done);
    }
}

/// The answer to a request the workers' queue did not take.
fn not_queued(e: mpsc::TrySendError<Job>) -> Problem {
    match e {
        mpsc::TrySendError::Full(_) => {
            Problem::unavailable("the database is busy; the request may be sent again")
        }
        mpsc::TrySendError::Disconnected(_) => Problem::from(DbError::Gone),
    }
}

async fn submit<T, F>(db: &Db, autocommit: bool, work: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce(&Arc<Tx>) -> Result<T, Problem> + Send + 'static,
{
    let (answer, answered) = tokio::sync::oneshot::channel::<Result<T, Problem>>();
    let run = Box::new(move |tx: &Arc<Tx>| {
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
    db.jobs
        .try_send(Job { autocommit, run })
        .map_err(not_queued)?;
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
    /// Set for a guarded request ([`guarded`]).
    guard: Mutex<Option<guarded::Guard>>,
    /// The online state kept in the rows of the deliveries this request
    /// holds ([`online`]).
    online: Mutex<online::Held>,
    /// Whether the work itself began a transaction it has not ended (a
    /// guarded request's last run): the worker must not keep the
    /// connection then.
    began: std::sync::atomic::AtomicBool,
    /// Where a guarded request's write joins the writes of the instance's
    /// other workers (PostgreSQL; see `combine`).
    combiner: Option<Arc<combine::Combiner>>,
}

impl Tx {
    /// A transaction on `conn`, whose engine it is; its guarded write
    /// joins others' at `combiner`, if any.
    fn open(conn: Conn, combiner: Option<Arc<combine::Combiner>>) -> Arc<Tx> {
        let engine = match conn {
            Conn::Sqlite(_) => Engine::Sqlite,
            Conn::Postgres { .. } => Engine::Postgres,
        };
        Arc::new(Tx {
            conn: Mutex::new(Some(conn)),
            engine,
            guard: Mutex::new(None),
            online: Mutex::new(online::Held::new()),
            began: std::sync::atomic::AtomicBool::new(false),
            combiner,
        })
    }

    /// Begins a transaction from within autocommit work.
    fn begin(&self) -> Result<(), DbError> {
        self.execute("BEGIN", &[])?;
        self.began.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Ends the transaction [`Tx::begin`] began: commits it, or rolls it back.
    fn end(&self, commit: bool) -> Result<(), DbError> {
        self.execute(if commit { "COMMIT" } else { "ROLLBACK" }, &[])?;
        self.began.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Whether a transaction the work began is still open.
    fn left_open(&self) -> bool {
        self.began.load(std::sync::atomic::Ordering::SeqCst)
    }
}
