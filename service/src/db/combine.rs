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
//! then; the workers that arrive while it does queue theirs and wait. When
//! its statement is done it answers each of them, and hands the lead to
//! the first still waiting, who writes what has queued meanwhile. A worker
//! alone writes at once, so a lightly loaded service waits for nothing.
//!
//! Two writes about one delivery never go in one statement (PostgreSQL
//! does not say which of two changes to one row in one statement wins):
//! the second waits for the next. The writes of a statement are in
//! delivery-id order, as every request that holds several deliveries takes
//! them, so two statements never wait for each other in a circle. When the
//! statement fails in the database (a replayed signature's unique index,
//! say) nothing of it was kept, and each of its writes is sent again by
//! itself, so each gets its own answer; when the connection fails, every
//! write of it fails (the requests get a 503, and sending them again is
//! safe).

use std::collections::{HashSet, VecDeque};
use std::sync::{mpsc, Mutex, PoisonError};

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

/// What a waiting write is told.
enum Turn {
    /// Its write was made (kept or not), or failed.
    Done(Result<bool, DbError>),
    /// It leads now: its write is still queued, and it writes the queue.
    Lead,
}

struct Waiting {
    write: Write,
    answer: mpsc::SyncSender<Turn>,
}

#[derive(Default)]
struct Queue {
    /// Whether a worker is writing (or about to).
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
    /// Makes `write` (alone or with others'), with `run` if this worker
    /// leads: whether it was kept.
    ///
    /// # Errors
    /// As `run`; [`DbError::Replayed`] for a replayed signature.
    pub(super) fn write(&self, write: Write, run: RunWrites<'_>) -> Result<bool, DbError> {
        let (answer, answered) = mpsc::sync_channel(1);
        {
            let mut queue = self.lock();
            let lead = !queue.leading;
            queue.leading = true;
            queue.waiting.push_back(Waiting { write, answer });
            drop(queue);
            if !lead {
                match answered.recv() {
                    Ok(Turn::Done(done)) => return done,
                    Ok(Turn::Lead) => {}
                    Err(_) => return Err(DbError::Gone),
                }
            }
        }
        // Leading: the first write queued is this worker's (it was alone,
        // or was handed the lead as the first waiting).
        let (writes, answers) = self.take();
        let mut lead = Lead {
            combiner: self,
            answers,
        };
        let outcomes = run_batch(&writes, run);
        for (answer, outcome) in lead.answers.drain(..).zip(outcomes) {
            let _ = answer.send(Turn::Done(outcome));
        }
        drop(lead);
        match answered.try_recv() {
            Ok(Turn::Done(done)) => done,
            _ => Err(DbError::Data("a combined write was not answered".into())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next statement's writes and whom to answer: from the front of
    /// the queue, one per delivery, at most [`MOST_WRITES`], in delivery-id
    /// order.
    fn take(&self) -> (Vec<Write>, Vec<mpsc::SyncSender<Turn>>) {
        let mut queue = self.lock();
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
        batch.into_iter().map(|w| (w.write, w.answer)).unzip()
    }
}

/// The lead, held while this worker writes: when it ends (or the worker
/// panics), whoever it did not answer is told, and the lead goes to the
/// first write still waiting, or to no one.
struct Lead<'a> {
    combiner: &'a Combiner,
    answers: Vec<mpsc::SyncSender<Turn>>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        for unanswered in self.answers.drain(..) {
            let _ = unanswered.send(Turn::Done(Err(DbError::Data(
                "a combined write was left unanswered".into(),
            ))));
        }
        let mut queue = self.combiner.lock();
        loop {
            match queue.waiting.front() {
                None => {
                    queue.leading = false;
                    return;
                }
                Some(next) => {
                    if next.answer.send(Turn::Lead).is_ok() {
                        return;
                    }
                    // Its worker is gone: its write goes with it.
                    queue.waiting.pop_front();
                }
            }
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
/// itself. Each write's outcome, in order.
pub(super) fn run_batch(writes: &[Write], run: RunWrites<'_>) -> Vec<Result<bool, DbError>> {
    metrics::counter!("delivery_otp_guarded_write_statements_total").increment(1);
    metrics::counter!("delivery_otp_guarded_writes_total").increment(writes.len() as u64);
    if let [write] = writes {
        return vec![alone(write, run)];
    }
    match run(writes) {
        Ok(kept) if kept.len() == writes.len() => kept.into_iter().map(Ok).collect(),
        Ok(_) => writes
            .iter()
            .map(|_| {
                Err(DbError::Data(
                    "a combined write gave too few answers".into(),
                ))
            })
            .collect(),
        // Nothing of the statement was kept: each write by itself, so
        // that a refused one (a replay) fails alone.
        Err(DbError::Sqlx(sqlx::Error::Database(e))) => {
            tracing::debug!(error = %e, writes = writes.len(), "combined write refused; writing one by one");
            writes.iter().map(|w| alone(w, run)).collect()
        }
        Err(e) => {
            let why = e.to_string();
            writes
                .iter()
                .map(|_| Err(DbError::Data(format!("a combined write failed: {why}"))))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier, Mutex};
    use std::time::Duration;

    use super::{Combiner, DbError, Write};

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

    /// A worker that fails while it leads (a panic in the middle of its
    /// statement): the worker whose write was in that statement with its
    /// own is told it failed (its request gets a 503), the lead passes on to
    /// whoever waits next, and writes are made again afterwards.
    #[test]
    fn a_leader_that_fails_hands_the_lead_on() {
        let combiner = Arc::new(Combiner::default());
        let made: Made = Arc::default();
        let in_statement = Arc::new(Barrier::new(2));
        let spawn = |id: &'static str, fails: bool, in_statement: Option<Arc<Barrier>>| {
            let (combiner, made) = (Arc::clone(&combiner), Arc::clone(&made));
            std::thread::spawn(move || {
                let record = recording(&made, Duration::from_millis(150));
                let run = move |writes: &[Write]| {
                    if let Some(barrier) = &in_statement {
                        barrier.wait();
                    }
                    assert!(!fails, "the worker fails in the middle of its statement");
                    record(writes)
                };
                combiner.write(write(id), &run)
            })
        };
        // The first leads alone and is slow; the failing one, then another,
        // queue behind it and go together in the next statement.
        let first = spawn("first-0", false, Some(Arc::clone(&in_statement)));
        in_statement.wait();
        let failing = spawn("boom-1", true, None);
        std::thread::sleep(Duration::from_millis(40));
        let with_it = spawn("with-2", false, None);
        assert!(first.join().unwrap().unwrap());
        assert!(failing.join().is_err(), "the second leader panicked");
        assert!(
            matches!(with_it.join().unwrap(), Err(DbError::Data(_))),
            "told its statement failed"
        );
        let run = recording(&made, Duration::ZERO);
        assert!(combiner.write(write("after-4"), &run).unwrap());
        assert_eq!(
            *made.lock().unwrap(),
            vec![vec!["first-0".to_string()], vec!["after-4".to_string()]]
        );
    }
}
