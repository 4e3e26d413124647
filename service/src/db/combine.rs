//! Guarded writes of concurrent requests in one statement (PostgreSQL).
//!
//! A guarded request ends with one write statement (see the `guarded`
//! module). When several requests reach that step at once, on the workers
//! of one instance, their writes go out together: one statement in which
//! each write keeps its own version guard and its own inserts, and one
//! commit for them all. PostgreSQL then does one commit's work where it
//! did several; each request is still answered only once its write is
//! committed, and each learns whether its own write was kept.
//!
//! Group commit with a leader: the first worker to reach the write step
//! finds no one writing and writes, with its own, every write queued by
//! then, on its own connection; it goes on writing what has queued
//! meanwhile, statement after statement, until nothing is left, and then
//! gives up the lead. A worker that finds a leader queues its write with
//! what to do with the outcome (answer the request, or send it to the
//! workers again when the delivery changed since its read) and returns at
//! once to take the next request: no worker sleeps waiting for its write,
//! so the others read and judge while a statement is in flight. The leader
//! answers each write once its statement is committed. A worker alone
//! writes at once, so a lightly loaded service waits for nothing.
//!
//! Two writes about one delivery never go in one statement (PostgreSQL
//! does not say which of two changes to one row in one statement wins):
//! the second waits for the next. The writes of a statement are in
//! delivery-id order, as every request that holds several deliveries takes
//! them, so two statements never wait for each other in a circle. When the
//! statement fails in the database (a replayed signature's unique index,
//! say) nothing of it was kept, and each of its writes is sent again by
//! itself, so each gets its own answer; when the connection fails, every
//! write of it fails, and so does every write still queued (the requests
//! get a 503, and sending them again is safe); the next write to come leads
//! on its own worker's connection.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::value::{connection_lost, ends_connection};
use super::{DbError, Value};

/// Writes in one statement at most.
pub const MOST_WRITES: usize = 32;

/// A queued insert of a guarded write, made from the row its guard updated.
pub(super) struct Insert {
    pub table: &'static str,
    pub columns: &'static str,
    pub values: Vec<Value>,
}

/// One guarded request's write: the delivery's update (the version plus
/// one, and `set`) if its version is still `version`, and the inserts made
/// only if it is.
pub(super) struct Write {
    pub delivery_id: String,
    pub version: i64,
    pub set: Vec<(&'static str, Value)>,
    pub inserts: Vec<Insert>,
}

/// The statement that makes `writes`, each under its own guard, and its
/// parameters: its one row has `k0`, `k1`, … (1 when that write was kept).
pub(super) fn statement(writes: &[Write]) -> (String, Vec<Value>) {
    let mut params: Vec<Value> = Vec::new();
    let mut mark = |value: Value| {
        params.push(value);
        format!("${}", params.len())
    };
    let mut ctes = Vec::new();
    let mut kept = Vec::new();
    for (g, write) in writes.iter().enumerate() {
        let set: String = write
            .set
            .iter()
            .map(|(column, value)| format!(", {column} = {}", mark(value.clone())))
            .collect();
        let (id, version) = (
            mark(write.delivery_id.as_str().into()),
            mark(Value::Int(write.version)),
        );
        ctes.push(format!(
            "g{g} AS (UPDATE deliveries SET version = version + 1{set} \
             WHERE delivery_id = {id} AND version = {version} RETURNING 1)"
        ));
        for (n, insert) in write.inserts.iter().enumerate() {
            let marks: Vec<String> = insert.values.iter().map(|v| mark(v.clone())).collect();
            ctes.push(format!(
                "g{g}w{n} AS (INSERT INTO {} ({}) SELECT {} FROM g{g})",
                insert.table,
                insert.columns,
                marks.join(", ")
            ));
        }
        kept.push(format!("(SELECT COUNT(*) FROM g{g}) AS k{g}"));
    }
    let sql = format!("WITH {} SELECT {}", ctes.join(", "), kept.join(", "));
    (sql, params)
}

/// What is done with a queued write's outcome: its request answered, or
/// run again (the delivery changed since its read). Called once.
pub(super) type Done = Box<dyn FnOnce(Result<bool, DbError>) + Send>;

struct Waiting {
    write: Write,
    done: Done,
}

#[derive(Default)]
struct Queue {
    /// Whether a worker is writing the queue.
    leading: bool,
    waiting: VecDeque<Waiting>,
}

/// The writes waiting on one instance's PostgreSQL workers.
#[derive(Default)]
pub(super) struct Combiner {
    queue: Mutex<Queue>,
}

/// How a leader runs a statement of writes on its connection: whether each
/// was kept, in order.
pub(super) type RunWrites<'a> = &'a dyn Fn(&[Write]) -> Result<Vec<bool>, DbError>;

impl Combiner {
    /// Queues `write`, whose outcome goes to `done`. When no worker is
    /// writing, this one leads: with `run`, on its own connection, it makes
    /// what is queued, statement after statement, until nothing is left.
    /// Otherwise it returns at once, free to take the next request while
    /// the leader makes its write: a worker does not wait for its write.
    pub(super) fn submit(&self, write: Write, done: Done, run: RunWrites<'_>) {
        {
            let mut queue = self.lock();
            queue.waiting.push_back(Waiting { write, done });
            if queue.leading {
                return;
            }
            queue.leading = true;
        }
        let mut lead = Lead {
            combiner: self,
            dones: Vec::new(),
            holding: true,
        };
        while let Some(writes) = lead.next() {
            let (outcomes, lost) = run_batch(&writes, run);
            for (done, outcome) in lead.dones.drain(..).zip(outcomes) {
                done(outcome);
            }
            if lost {
                // What is queued fails with the connection (each request
                // gets a 503; sending it again is safe), and the next write
                // to come leads on its worker's connection.
                return;
            }
        }
    }

    /// [`Combiner::submit`], waiting for the outcome.
    ///
    /// # Errors
    /// As `run`; [`DbError::Replayed`] for a replayed signature.
    #[cfg(test)]
    pub(super) fn write(&self, write: Write, run: RunWrites<'_>) -> Result<bool, DbError> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let done: Done = Box::new(move |outcome| {
            let _ = answer.send(outcome);
        });
        self.submit(write, done, run);
        answered.recv().unwrap_or(Err(DbError::Gone))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The lead, held while a worker writes the queue. When it ends (nothing
/// left, the connection failed, or the worker panicked), the writes it took
/// and did not answer are told they failed, and so is everything still
/// queued: no write waits for a leader that is gone.
struct Lead<'a> {
    combiner: &'a Combiner,
    dones: Vec<Done>,
    /// Whether this worker still leads: once it gives the lead up, another
    /// may take it, and what is queued then is the new leader's.
    holding: bool,
}

impl Lead<'_> {
    /// The next statement's writes (whose outcomes go to `self.dones`), from
    /// the front of the queue, one per delivery, at most [`MOST_WRITES`], in
    /// delivery-id order; `None`, giving up the lead, when nothing is queued.
    fn next(&mut self) -> Option<Vec<Write>> {
        let mut queue = self.combiner.lock();
        if queue.waiting.is_empty() {
            queue.leading = false;
            self.holding = false;
            return None;
        }
        let mut deliveries = HashSet::new();
        let mut batch = Vec::new();
        let mut left = VecDeque::new();
        while let Some(w) = queue.waiting.pop_front() {
            if batch.len() < MOST_WRITES && deliveries.insert(w.write.delivery_id.clone()) {
                batch.push(w);
            } else {
                left.push_back(w);
            }
        }
        queue.waiting = left;
        drop(queue);
        batch.sort_by(|a, b| a.write.delivery_id.cmp(&b.write.delivery_id));
        let (writes, dones) = batch.into_iter().map(|w| (w.write, w.done)).unzip();
        self.dones = dones;
        Some(writes)
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let gone = || Err(DbError::Data("a combined write was left unanswered".into()));
        for done in self.dones.drain(..) {
            done(gone());
        }
        if !self.holding {
            // Given up by `next` when nothing was left.
            return;
        }
        let unanswered = {
            let mut queue = self.combiner.lock();
            queue.leading = false;
            std::mem::take(&mut queue.waiting)
        };
        for waiting in unanswered {
            (waiting.done)(gone());
        }
    }
}

/// Makes `write` by itself, in a statement of its own: whether it was kept.
pub(super) fn alone(write: &Write, run: RunWrites<'_>) -> Result<bool, DbError> {
    Ok(run(std::slice::from_ref(write))?
        .first()
        .copied()
        .unwrap_or(false))
}

/// Runs `writes` as one statement; when the database refuses it, each by
/// itself. Each write's outcome, in order, and whether the connection was
/// lost on the way.
pub(super) fn run_batch(
    writes: &[Write],
    run: RunWrites<'_>,
) -> (Vec<Result<bool, DbError>>, bool) {
    metrics::counter!("delivery_otp_guarded_write_statements_total").increment(1);
    metrics::counter!("delivery_otp_guarded_writes_total").increment(writes.len() as u64);
    if let [write] = writes {
        let outcome = alone(write, run);
        let lost = lost(&outcome);
        return (vec![outcome], lost);
    }
    match run(writes) {
        Ok(kept) if kept.len() == writes.len() => (kept.into_iter().map(Ok).collect(), false),
        Ok(_) => (
            writes
                .iter()
                .map(|_| {
                    Err(DbError::Data(
                        "a combined write gave too few answers".into(),
                    ))
                })
                .collect(),
            false,
        ),
        // Nothing of the statement was kept: each write by itself, so
        // that a refused one (a replay) fails alone. Not when PostgreSQL
        // ended the connection (a database error too, SQLSTATE 57P01): each
        // write would only fail again on the dead socket.
        Err(DbError::Sqlx(sqlx::Error::Database(e))) if !ends_connection(e.as_ref()) => {
            tracing::debug!(error = %e, writes = writes.len(), "combined write refused; writing one by one");
            let outcomes: Vec<_> = writes.iter().map(|w| alone(w, run)).collect();
            let lost = outcomes.iter().any(lost);
            (outcomes, lost)
        }
        Err(e) => {
            let (why, lost) = (e.to_string(), lost(&Err(e)));
            let outcomes = writes
                .iter()
                .map(|_| Err(DbError::Data(format!("a combined write failed: {why}"))))
                .collect();
            (outcomes, lost)
        }
    }
}

/// Whether `outcome` is the connection failing (`value::connection_lost`),
/// not the statement.
fn lost(outcome: &Result<bool, DbError>) -> bool {
    matches!(outcome, Err(DbError::Sqlx(e)) if connection_lost(e))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier, Mutex};
    use std::time::Duration;

    use super::{Combiner, DbError, Done, Write};

    fn write(delivery_id: &str) -> Write {
        Write {
            delivery_id: delivery_id.into(),
            version: 0,
            set: Vec::new(),
            inserts: Vec::new(),
        }
    }

    /// The statements made: each one's delivery ids, in order.
    type Made = Arc<Mutex<Vec<Vec<String>>>>;

    /// A stand-in for the database: records each statement's writes, takes
    /// `pause`, and keeps the writes whose delivery id ends in an even digit.
    fn recording(made: &Made, pause: Duration) -> impl Fn(&[Write]) -> Result<Vec<bool>, DbError> {
        let made = Arc::clone(made);
        move |writes: &[Write]| {
            made.lock()
                .unwrap()
                .push(writes.iter().map(|w| w.delivery_id.clone()).collect());
            std::thread::sleep(pause);
            Ok(writes.iter().map(|w| kept(&w.delivery_id)).collect())
        }
    }

    fn kept(delivery_id: &str) -> bool {
        delivery_id.bytes().last().is_some_and(|b| b % 2 == 0)
    }

    /// A database error with SQLSTATE `code`, as PostgreSQL sends one.
    #[derive(Debug)]
    struct Refusal(&'static str);

    impl std::fmt::Display for Refusal {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Refusal {}

    impl sqlx::error::DatabaseError for Refusal {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn refused(code: &'static str) -> DbError {
        DbError::Sqlx(sqlx::Error::Database(Box::new(Refusal(code))))
    }

    /// A combined statement the database refuses (a replayed signature's
    /// unique index, SQLSTATE 23505, on "b-3"): each write is sent again
    /// alone, and only the refused one fails. When PostgreSQL instead ends
    /// the connection (57P01, a restart or pg_terminate_backend; it comes
    /// as a database error too), no write is sent again on the dead
    /// connection: all fail at once and the connection is reported lost.
    #[test]
    fn a_refused_statement_is_retried_write_by_write_and_a_lost_connection_is_not() {
        let made: Made = Arc::default();
        let writes = [write("a-2"), write("b-3"), write("c-4")];
        let run = |batch: &[Write]| -> Result<Vec<bool>, DbError> {
            made.lock()
                .unwrap()
                .push(batch.iter().map(|w| w.delivery_id.clone()).collect());
            if batch.iter().any(|w| w.delivery_id == "b-3") {
                return Err(refused("23505"));
            }
            Ok(batch.iter().map(|w| kept(&w.delivery_id)).collect())
        };
        let (outcomes, lost) = super::run_batch(&writes, &run);
        assert!(!lost);
        assert!(
            matches!(outcomes.as_slice(), [Ok(true), Err(_), Ok(true)]),
            "{outcomes:?}"
        );
        assert_eq!(
            made.lock().unwrap().len(),
            4,
            "the statement, then each write alone"
        );

        for code in ["57P01", "57P02", "57P05"] {
            let tries = AtomicUsize::new(0);
            let dead = |_: &[Write]| -> Result<Vec<bool>, DbError> {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(refused(code))
            };
            let (outcomes, lost) = super::run_batch(&writes, &dead);
            assert!(lost, "{code}: the connection is reported lost");
            assert_eq!(outcomes.len(), 3);
            assert!(outcomes.iter().all(Result::is_err), "{code}: {outcomes:?}");
            assert_eq!(
                tries.load(Ordering::SeqCst),
                1,
                "{code}: no write sent again"
            );
        }
    }

    /// Eight workers writing at once: their writes share statements, each
    /// write is made exactly once and each worker gets its own write's
    /// answer; no statement holds one delivery twice, and each lists its
    /// writes in delivery-id order.
    #[test]
    fn concurrent_writes_share_statements_and_each_gets_its_own_answer() {
        let combiner = Arc::new(Combiner::default());
        let made: Made = Arc::default();
        let start = Arc::new(Barrier::new(8));
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let (combiner, made, start) =
                    (Arc::clone(&combiner), Arc::clone(&made), Arc::clone(&start));
                std::thread::spawn(move || {
                    let run = recording(&made, Duration::from_millis(2));
                    start.wait();
                    for i in 0..20 {
                        // Worker 7 writes about one delivery over and over,
                        // and about worker 0's deliveries too.
                        let id = match t {
                            7 if i % 2 == 0 => "same-0".to_string(),
                            7 => format!("w0-{i}"),
                            _ => format!("w{t}-{i}"),
                        };
                        assert_eq!(combiner.write(write(&id), &run).unwrap(), kept(&id), "{id}");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let made = made.lock().unwrap();
        let all: Vec<&String> = made.iter().flatten().collect();
        assert_eq!(all.len(), 160, "every write made once");
        assert_eq!(all.iter().filter(|id| **id == "same-0").count(), 10);
        assert!(
            made.iter().any(|s| s.len() > 1),
            "writes that came together went together: {made:?}"
        );
        for statement in made.iter() {
            let mut sorted = statement.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(&sorted, statement, "one write per delivery, in order");
        }
    }

    /// Many workers writing as fast as they can, so that the lead is given
    /// up and taken again all the time: every write is answered, none of
    /// them with a failure, and each is made once.
    #[test]
    fn the_lead_changes_hands_without_failing_a_write() {
        let combiner = Arc::new(Combiner::default());
        let made: Made = Arc::default();
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let (combiner, made) = (Arc::clone(&combiner), Arc::clone(&made));
                std::thread::spawn(move || {
                    let run = recording(&made, Duration::ZERO);
                    for i in 0..3000 {
                        let id = format!("w{t}-{i}");
                        assert_eq!(combiner.write(write(&id), &run).unwrap(), kept(&id), "{id}");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(made.lock().unwrap().iter().flatten().count(), 24_000);
    }

    /// A worker that fails while it leads (a panic in the middle of its
    /// statement): its own write and the one queued behind it meanwhile are
    /// told they failed (their requests get a 503; nothing waits for a
    /// leader that is gone), and the next write leads and is made.
    #[test]
    fn a_leader_that_fails_answers_every_write_it_leaves() {
        let combiner = Arc::new(Combiner::default());
        let made: Made = Arc::default();
        let in_statement = Arc::new(Barrier::new(2));
        let failing = {
            let (combiner, in_statement) = (Arc::clone(&combiner), Arc::clone(&in_statement));
            std::thread::spawn(move || {
                let run = move |_: &[Write]| -> Result<Vec<bool>, DbError> {
                    in_statement.wait();
                    // Long enough for the next write to queue behind it.
                    std::thread::sleep(Duration::from_millis(150));
                    panic!("the worker fails in the middle of its statement");
                };
                combiner.write(write("boom-0"), &run)
            })
        };
        in_statement.wait();
        let queued = {
            let (combiner, made) = (Arc::clone(&combiner), Arc::clone(&made));
            std::thread::spawn(move || {
                let run = recording(&made, Duration::ZERO);
                combiner.write(write("queued-2"), &run)
            })
        };
        assert!(failing.join().is_err(), "the leader panicked");
        assert!(
            matches!(queued.join().unwrap(), Err(DbError::Data(_))),
            "told its write failed"
        );
        let run = recording(&made, Duration::ZERO);
        assert!(combiner.write(write("after-4"), &run).unwrap());
        assert_eq!(*made.lock().unwrap(), vec![vec!["after-4".to_string()]]);
    }

    /// While one worker leads, the others do not wait for their writes:
    /// they queue them and return, and the leader makes them all, statement
    /// after statement, answering each.
    #[test]
    fn a_worker_that_does_not_lead_returns_at_once() {
        let combiner = Arc::new(Combiner::default());
        let made: Made = Arc::default();
        let in_statement = Arc::new(Barrier::new(2));
        let first_over = Arc::new(AtomicBool::new(false));
        let leader = {
            let (combiner, made, in_statement, first_over) = (
                Arc::clone(&combiner),
                Arc::clone(&made),
                Arc::clone(&in_statement),
                Arc::clone(&first_over),
            );
            std::thread::spawn(move || {
                let record = recording(&made, Duration::ZERO);
                let run = move |writes: &[Write]| {
                    let kept = record(writes);
                    if !first_over.load(Ordering::SeqCst) {
                        in_statement.wait();
                        std::thread::sleep(Duration::from_millis(300));
                        first_over.store(true, Ordering::SeqCst);
                    }
                    kept
                };
                combiner.write(write("lead-0"), &run)
            })
        };
        in_statement.wait();
        let (answers, answered) = std::sync::mpsc::channel();
        let never = |_: &[Write]| -> Result<Vec<bool>, DbError> {
            panic!("a worker that does not lead runs no statement")
        };
        for id in ["b-2", "c-3", "d-4"] {
            let answers = answers.clone();
            let done: Done = Box::new(move |outcome| {
                let _ = answers.send((id, outcome));
            });
            combiner.submit(write(id), done, &never);
        }
        assert!(
            !first_over.load(Ordering::SeqCst),
            "queued without waiting for the statement in flight"
        );
        let mut got: Vec<(&str, bool)> = (0..3)
            .map(|_| {
                let (id, outcome) = answered.recv().unwrap();
                (id, outcome.unwrap())
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, vec![("b-2", true), ("c-3", false), ("d-4", true)]);
        assert!(leader.join().unwrap().unwrap());
        assert_eq!(
            *made.lock().unwrap(),
            vec![
                vec!["lead-0".to_string()],
                vec!["b-2".to_string(), "c-3".to_string(), "d-4".to_string()]
            ]
        );
    }
}
