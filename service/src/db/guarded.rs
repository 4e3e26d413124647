//! Guarded requests on PostgreSQL: a request about one delivery (an online
//! check, an upload of one receipt) in two round trips instead of five or
//! six, without `BEGIN`, `SELECT … FOR UPDATE` and `COMMIT`.
//!
//! 1. One statement reads the delivery, its `version`, the device's state
//!    and everything the core may ask the attempt store about it: the
//!    records under the delivery's `online:`, `attempts:` and `receipt:`
//!    keys for its current sequence, and the decisions kept for it.
//! 2. The request runs on that snapshot: the store's answers come from it,
//!    and every write is queued (and applied to the snapshot, so a second
//!    question in the same request sees the first write).
//! 3. One statement writes it all, only if the delivery's `version` is
//!    still the one read: an `UPDATE` of the delivery that adds one to its
//!    version, and each queued insert made from that update's row. The
//!    `UPDATE` waits for whoever holds the row and then checks the version
//!    again, so when another request changed the delivery in between, the
//!    statement writes nothing and the request runs again from step 1
//!    (three times at most; then once more in a transaction that holds the
//!    row, [`super::GUARDED_RUNS`]; each run is a job of its own for the
//!    workers). Writes that several workers of one instance reach at once
//!    go out together, each under its own guard, in one statement and one
//!    commit made by one of them, while the others go on to their next
//!    requests (the `combine` module).
//!
//! Every request that changes a delivery's state adds one to its version:
//! the guarded ones in step 3, and the others, which hold the delivery in a
//! transaction ([`Tx::delivery_held`]), when they take hold of it. So a
//! guarded request's writes are kept only if nothing it read has changed,
//! which is what holding the row would have given it. (The device's state
//! is read as a transaction that holds the row reads it too: a revocation
//! committed after the read does not stop this request, and stops every
//! request that reads after it.)

use std::collections::HashMap;
use std::sync::PoisonError;

use super::attempts::REMEMBERED_COLUMNS;
use super::combine::{self, Insert, Write};
use super::online::Online;
use super::queries::{
    DELIVERY_COLUMNS, DEVICE_ACTIVE, EVENT_COLUMNS, OUTBOX_COLUMNS, RECEIPT_COLUMNS,
};
use super::{Admission, DbError, DeliveryRow, DeviceRequest, Tx, Value};

/// What a guarded request reads with its delivery: only what its kind of
/// request may ask the store, so a check does not read receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// An online check: the delivery's `online:` record and its attempts.
    Check,
    /// An upload of one receipt: the `online:` record, the attempts, the
    /// `receipt:` slot and the decisions kept for the current sequence.
    Receipt,
}

/// Where a guarded request stands.
pub(super) enum Guard {
    /// Nothing read yet; what will be, and the device request to admit
    /// with the writes, if any.
    Unread(Reads, Option<Admission>),
    /// The delivery read, the writes queued so far.
    Read(Box<Snapshot>),
}

/// One delivery as a guarded request read it, and its queued writes.
pub(super) struct Snapshot {
    reads: Reads,
    /// A device request to admit: the request, whether its device is
    /// provisioned (`None`) and not revoked, and whether its signature was
    /// recorded before.
    admission: Option<(Admission, Option<bool>, bool)>,
    delivery_id: String,
    version: i64,
    sequence: i64,
    /// The values of the `remembered` keys read (`None`: nothing kept).
    remembered: HashMap<String, Option<String>>,
    /// The attempts of the scope read: (attempt, position). Its one scope
    /// is the current sequence's, kept in the delivery's row.
    attempts: HashMap<String, Vec<(String, i64)>>,
    /// The key of the record that ends the current code, kept in the
    /// delivery's row ([`super::online`]), and the latest expiry given.
    online_key: String,
    online_expires_at: i64,
    /// Whether the row's online state changed: written with the version.
    online_changed: bool,
    /// The decisions (JSON) kept as new for the current sequence; `None`
    /// when the request did not read them ([`Reads::Check`]).
    decisions: Option<Vec<String>>,
    /// The delivery's new status and when, if the request changes it.
    status: Option<(String, Value)>,
    writes: Vec<Insert>,
}

fn not_read(what: &str) -> DbError {
    DbError::Data(format!(
        "{what} was not read with the delivery in a guarded request"
    ))
}

impl Snapshot {
    /// The value under `key`, as read.
    pub(super) fn recall(&self, key: &str) -> Result<Option<String>, DbError> {
        self.remembered
            .get(key)
            .cloned()
            .ok_or_else(|| not_read(key))
    }

    /// Keeps `value` under `key` unless a value is there; the one there.
    pub(super) fn remember_first(
        &mut self,
        key: &str,
        value: &str,
        expires_at: Value,
    ) -> Result<Option<String>, DbError> {
        let slot = self.remembered.get_mut(key).ok_or_else(|| not_read(key))?;
        if let Some(first) = slot {
            return Ok(Some(first.clone()));
        }
        *slot = Some(value.to_string());
        if key == self.online_key {
            self.change_online(&expires_at);
            return Ok(None);
        }
        self.writes.push(Insert {
            table: "remembered",
            columns: REMEMBERED_COLUMNS,
            values: vec![key.into(), value.into(), expires_at],
        });
        Ok(None)
    }

    /// The attempts counted in `scope`: the position of `attempt` if it was
    /// counted, and how many there are.
    pub(super) fn attempts(
        &self,
        scope: &str,
        attempt: &str,
    ) -> Result<(Option<i64>, i64), DbError> {
        let counted = self.attempts.get(scope).ok_or_else(|| not_read(scope))?;
        let known = counted
            .iter()
            .find(|(a, _)| a == attempt)
            .map(|(_, position)| *position);
        let count = i64::try_from(counted.len())
            .map_err(|_| DbError::Data(format!("too many attempts in {scope}")))?;
        Ok((known, count))
    }

    /// Counts `attempt` in `scope` at `position`.
    pub(super) fn count_attempt(
        &mut self,
        scope: &str,
        attempt: &str,
        position: i64,
        expires_at: Value,
    ) -> Result<(), DbError> {
        let counted = self
            .attempts
            .get_mut(scope)
            .ok_or_else(|| not_read(scope))?;
        counted.push((attempt.to_string(), position));
        // The one scope read is the current sequence's, in the row.
        self.change_online(&expires_at);
        Ok(())
    }

    /// Notes that the row's online state changed, with an expiry given.
    fn change_online(&mut self, expires_at: &Value) {
        if let Value::Int(at) = expires_at {
            self.online_expires_at = self.online_expires_at.max(*at);
        }
        self.online_changed = true;
    }

    /// The row's online state as the write sets it: end, attempts, expiry.
    fn online_values(&self) -> Result<[Value; 3], DbError> {
        let online = Online {
            sequence: self.sequence,
            end: self.remembered.get(&self.online_key).cloned().flatten(),
            attempts: self.attempts.values().next().cloned().unwrap_or_default(),
            expires_at: self.online_expires_at,
        };
        Ok([
            online.end_value(),
            online.attempts_value()?,
            Value::Int(online.expires_at),
        ])
    }

    fn this_delivery(&self, delivery_id: &str) -> Result<(), DbError> {
        if delivery_id == self.delivery_id {
            Ok(())
        } else {
            Err(not_read(&format!("delivery {delivery_id}")))
        }
    }

    /// Appends to the delivery's history.
    pub(super) fn event(
        &mut self,
        delivery_id: &str,
        at: Value,
        kind: &str,
        detail: String,
    ) -> Result<(), DbError> {
        self.this_delivery(delivery_id)?;
        self.writes.push(Insert {
            table: "delivery_events",
            columns: EVENT_COLUMNS,
            values: vec![delivery_id.into(), at, kind.into(), detail.into()],
        });
        Ok(())
    }

    /// Sets the delivery's status.
    pub(super) fn set_status(
        &mut self,
        delivery_id: &str,
        status: &str,
        at: Value,
    ) -> Result<(), DbError> {
        self.this_delivery(delivery_id)?;
        self.status = Some((status.to_string(), at));
        Ok(())
    }

    /// Keeps a receipt as received (`values` for [`RECEIPT_COLUMNS`], in
    /// order), and its decision as new unless `repeated`.
    pub(super) fn receipt(
        &mut self,
        delivery_id: &str,
        sequence: i64,
        decision: &str,
        repeated: bool,
        values: Vec<Value>,
    ) -> Result<(), DbError> {
        self.this_delivery(delivery_id)?;
        let Some(decisions) = self.decisions.as_mut() else {
            return Err(not_read("the decisions"));
        };
        if !repeated && sequence == self.sequence {
            decisions.push(decision.to_string());
        }
        self.writes.push(Insert {
            table: "receipts",
            columns: RECEIPT_COLUMNS,
            values,
        });
        Ok(())
    }

    /// Whether the decision was kept as new for the delivery's `sequence`.
    pub(super) fn decision_recorded(
        &self,
        delivery_id: &str,
        sequence: i64,
        decision: &str,
    ) -> Result<bool, DbError> {
        self.this_delivery(delivery_id)?;
        if sequence != self.sequence {
            return Err(not_read(&format!("sequence {sequence}")));
        }
        let Some(decisions) = &self.decisions else {
            return Err(not_read("the decisions"));
        };
        Ok(decisions.iter().any(|d| d == decision))
    }

    /// A webhook event for the outbox, due now.
    pub(super) fn outbox(&mut self, event_id: &str, payload: &str, now: Value) {
        self.writes.push(Insert {
            table: "webhook_outbox",
            columns: OUTBOX_COLUMNS,
            values: vec![
                event_id.into(),
                payload.into(),
                now.clone(),
                Value::Int(0),
                now,
            ],
        });
    }
}

/// Reads a JSON array of texts (`NULL`: none).
fn texts(row: &super::Row, name: &str) -> Result<Vec<String>, DbError> {
    match row.value(name)? {
        Value::Null => Ok(Vec::new()),
        Value::Text(json) => serde_json::from_str(json)
            .map_err(|e| DbError::Data(format!("{name} is not a list of texts: {e}"))),
        Value::Int(_) => Err(DbError::Data(format!("{name} is not text"))),
    }
}

impl Tx {
    /// Whether this is a guarded request.
    pub(super) fn guarded(&self) -> bool {
        self.guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Starts (or starts again) a guarded request that will read `reads`:
    /// nothing read, nothing queued.
    pub(super) fn begin_guard(&self, reads: Reads, admission: Option<Admission>) {
        *self.guard.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Guard::Unread(reads, admission));
    }

    /// A guarded request's device admission, from what was read with the
    /// delivery: refused, or (`Fresh`) its signature queued with the
    /// writes, so that it is recorded only with them; a signature recorded
    /// by another request after the read fails the write
    /// ([`DbError::Replayed`]). `None` when no delivery was read.
    pub(super) fn admit_guarded(&self) -> Option<Result<DeviceRequest, DbError>> {
        let mut guard = self.guard.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(Guard::Read(snapshot)) = guard.as_mut() else {
            return None;
        };
        let Some((a, active, seen)) = &snapshot.admission else {
            return Some(Err(not_read("the admission")));
        };
        let seen = match (active, seen) {
            (None, _) => DeviceRequest::NotProvisioned,
            (Some(false), _) => DeviceRequest::Revoked,
            (Some(true), true) => DeviceRequest::Replayed,
            (Some(true), false) => {
                let values = match super::value::int(a.expires_at) {
                    Ok(expires_at) => vec![a.signature.as_str().into(), expires_at],
                    Err(e) => return Some(Err(e)),
                };
                snapshot.writes.push(Insert {
                    table: "request_signatures",
                    columns: "signature, expires_at",
                    values,
                });
                DeviceRequest::Fresh
            }
        };
        Some(Ok(seen))
    }

    /// Ends guarded work: what follows runs as in any transaction.
    pub(super) fn end_guard(&self) {
        *self.guard.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Runs `f` on the snapshot of a guarded request; `None` for a request
    /// that is not guarded (`f` is not run).
    pub(super) fn snapshot<R>(
        &self,
        f: impl FnOnce(&mut Snapshot) -> Result<R, DbError>,
    ) -> Option<Result<R, DbError>> {
        let mut guard = self.guard.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut()? {
            Guard::Read(snapshot) => Some(f(snapshot)),
            Guard::Unread(..) => Some(Err(not_read("the store"))),
        }
    }

    /// Step 1: the delivery and all a guarded request may need about it,
    /// in one statement without a lock.
    pub(super) fn read_guarded(
        &self,
        delivery_id: &str,
        device: Option<(&str, &str)>,
    ) -> Result<Option<(DeliveryRow, Option<bool>)>, DbError> {
        let (reads, admission) = match &*self.guard.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(Guard::Unread(reads, admission)) => (*reads, admission.clone()),
            _ => {
                return Err(DbError::Data(
                    "a guarded request reads one delivery, once".into(),
                ))
            }
        };
        // A receipt's slot and the decisions only for an upload.
        let receipts = match reads {
            Reads::Check => "",
            Reads::Receipt => {
                ", k.receipt_key, \
                 (SELECT value FROM remembered WHERE key = k.receipt_key) AS receipt_value, \
                 (SELECT json_agg(DISTINCT r.decision)::text FROM receipts r \
                  WHERE r.delivery_id = d.delivery_id AND r.sequence = d.sequence \
                  AND r.repeated = 0) AS decisions"
            }
        };
        // For a device's request, whether its signature was seen and, when
        // the signer is not the device read with the delivery, its state.
        let signer_is_device = admission
            .as_ref()
            .is_some_and(|a| device == Some((a.courier_id.as_str(), a.device_id.as_str())));
        let signer = match (&admission, signer_is_device) {
            (None, _) => "",
            (Some(_), true) => {
                ", (SELECT COUNT(*) FROM request_signatures WHERE signature = $4) AS signature_seen"
            }
            (Some(_), false) => {
                ", (SELECT CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END FROM devices \
                 WHERE courier_id = $5 AND device_id = $6) AS signer_active, \
                 (SELECT COUNT(*) FROM request_signatures WHERE signature = $4) AS signature_seen"
            }
        };
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, version, {DEVICE_ACTIVE}{signer}, \
             k.online_key, k.attempts_key, \
             d.online_end, d.online_attempts, d.online_expires_at{receipts} \
             FROM deliveries d CROSS JOIN LATERAL (SELECT \
              'online:' || d.sequence || ':' || d.delivery_id AS online_key, \
              'attempts:' || d.sequence || ':' || d.delivery_id AS attempts_key, \
              'receipt:' || d.sequence || ':' || d.delivery_id AS receipt_key) k \
             WHERE d.delivery_id = $1"
        );
        let signer: Vec<Value> = match &admission {
            None => Vec::new(),
            Some(a) if signer_is_device => vec![a.signature.as_str().into()],
            Some(a) => vec![
                a.signature.as_str().into(),
                a.courier_id.as_str().into(),
                a.device_id.as_str().into(),
            ],
        };
        let Some((r, row, active)) =
            self.delivery_with_device(&sql, delivery_id, device, signer)?
        else {
            return Ok(None);
        };
        let admission = match admission {
            None => None,
            Some(a) => {
                let active = if signer_is_device {
                    active
                } else {
                    r.opt_int("signer_active")?.map(|n| n == 1)
                };
                let seen = r.int("signature_seen")? > 0;
                Some((a, active, seen))
            }
        };
        let opt_text = |name: &str| -> Result<Option<String>, DbError> {
            match r.value(name)? {
                Value::Text(t) => Ok(Some(t.clone())),
                Value::Null => Ok(None),
                Value::Int(_) => Err(DbError::Data(format!("{name} is not text"))),
            }
        };
        // The online state of the current sequence, from the row.
        let online = Online::from_row(&r, r.int("sequence")?)?;
        let online_key = r.text("online_key")?;
        let mut remembered = HashMap::new();
        remembered.insert(online_key.clone(), online.end);
        let decisions = match reads {
            Reads::Check => None,
            Reads::Receipt => {
                remembered.insert(r.text("receipt_key")?, opt_text("receipt_value")?);
                Some(texts(&r, "decisions")?)
            }
        };
        let mut attempts = HashMap::new();
        attempts.insert(r.text("attempts_key")?, online.attempts);
        let snapshot = Snapshot {
            reads,
            admission,
            delivery_id: row.delivery_id.clone(),
            version: r.int("version")?,
            sequence: r.int("sequence")?,
            remembered,
            attempts,
            online_key,
            online_expires_at: online.expires_at,
            online_changed: false,
            decisions,
            status: None,
            writes: Vec::new(),
        };
        *self.guard.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Guard::Read(Box::new(snapshot)));
        Ok(Some((row, active)))
    }

    /// Step 3, made ready: the write of what was queued, which keeps it
    /// only if the delivery is still as it was read; `None` when nothing
    /// was queued (nothing to write).
    ///
    /// # Errors
    /// The online record cannot be put in the delivery's row.
    pub(super) fn guarded_write(&self) -> Result<Option<Write>, DbError> {
        let snapshot = {
            let mut guard = self.guard.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(Guard::Read(snapshot)) = guard.take() else {
                return Ok(None);
            };
            // Whatever follows in this request is not read yet.
            *guard = Some(Guard::Unread(
                snapshot.reads,
                snapshot.admission.as_ref().map(|(a, _, _)| a.clone()),
            ));
            snapshot
        };
        if snapshot.writes.is_empty() && snapshot.status.is_none() && !snapshot.online_changed {
            return Ok(None);
        }
        let mut set: Vec<(&'static str, Value)> = Vec::new();
        if let Some((status, at)) = &snapshot.status {
            set.push(("status", status.as_str().into()));
            set.push(("updated_at", at.clone()));
        }
        if snapshot.online_changed {
            let [end, attempts, expires_at] = snapshot.online_values()?;
            set.push(("online_end", end));
            set.push(("online_attempts", attempts));
            set.push(("online_expires_at", expires_at));
        }
        Ok(Some(Write {
            delivery_id: snapshot.delivery_id,
            version: snapshot.version,
            set,
            inserts: snapshot.writes,
        }))
    }

    /// Step 3: makes `write` (see [`Tx::guarded_write`]), with the writes
    /// of other requests when several reach this step at once; `done`
    /// learns whether it was kept (`false`: the delivery changed between
    /// the read and the write, nothing was written, run the request again).
    /// Returns as soon as the write is queued, unless this worker leads the
    /// writes (see the `combine` module).
    pub(super) fn write_guarded(&self, write: Write, done: combine::Done) {
        let run = |writes: &[Write]| self.run_writes(writes);
        match &self.combiner {
            Some(combiner) => combiner.submit(write, done, &run),
            None => done(combine::alone(&write, &run)),
        }
    }

    /// Makes `writes` in one statement on this request's connection:
    /// whether each was kept. A single write's replayed signature is
    /// [`DbError::Replayed`]; a statement of several that the database
    /// refuses is its error as it is (see `combine`).
    pub(super) fn run_writes(&self, writes: &[Write]) -> Result<Vec<bool>, DbError> {
        let (sql, params) = combine::statement(writes);
        let row = match self.query_one(&sql, &params) {
            Ok(row) => row.ok_or(DbError::Gone)?,
            // The signature queued by `admit_guarded` was recorded since the
            // read: a replay racing this request. The statement wrote nothing.
            Err(DbError::Sqlx(sqlx::Error::Database(e)))
                if writes.len() == 1
                    && e.is_unique_violation()
                    && e.constraint() == Some("request_signatures_pkey") =>
            {
                return Err(DbError::Replayed)
            }
            Err(e) => return Err(e),
        };
        (0..writes.len())
            .map(|g| Ok(row.int(&format!("k{g}"))? == 1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use delivery_otp::AttemptStore;
    use sqlx::Connection as _;

    use super::super::combine::{self, Insert, Write};
    use super::super::queries::{backlog_sql, claim_sql, EVENT_COLUMNS};
    use super::super::{
        autocommit, guarded, open_postgres, transaction, Admission, Db, DeliveryRow, Reads,
        CLAIM_LEASE_SECS, GUARDED_RUNS,
    };

    /// The URL of an empty PostgreSQL database of its own for the test
    /// `name`, on the server scripts/test starts (these tests fail without
    /// it, never skip).
    async fn empty_postgres(name: &str) -> String {
        let base = std::env::var("DELIVERY_OTP_TEST_POSTGRES_URL").expect(
            "DELIVERY_OTP_TEST_POSTGRES_URL is not set: run scripts/test, which starts PostgreSQL",
        );
        let db = format!("g{}_{name}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        for sql in [
            format!("DROP DATABASE IF EXISTS {db}"),
            format!("CREATE DATABASE {db}"),
        ] {
            sqlx::query(&sql).execute(&mut admin).await.unwrap();
        }
        format!("{}/{db}", base.rsplit_once('/').unwrap().0)
    }

    /// An empty directory of its own for the test `name`.
    fn empty_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dotp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `db` with delivery d1 issued at sequence 3 to courier c1.
    async fn with_d1(db: Db) -> Db {
        transaction(&db, |tx| {
            let row = DeliveryRow {
                delivery_id: "d1".into(),
                sequence: 3,
                courier_id: "c1".into(),
                settings: "{}".into(),
                ticket: "{}".into(),
                status: "issued".into(),
                contact: "{}".into(),
                locale: "en".into(),
                utc_offset_minutes: 0,
                request_digest: "x".into(),
                resends: 0,
                created_at: 1,
            };
            assert!(tx.insert_delivery(&row, 1, &serde_json::json!({}))?);
            Ok(())
        })
        .await
        .unwrap();
        db
    }

    /// Asserts that a request failed as the database failing does (503).
    fn assert_unavailable<T: std::fmt::Debug>(out: Result<T, crate::problem::Problem>) {
        assert_eq!(
            out.unwrap_err().status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
    }

    /// A PostgreSQL database of its own for the test `name`, with d1.
    async fn fresh(name: &str) -> Db {
        let url = empty_postgres(name).await;
        with_d1(open_postgres(&url, 2).await.unwrap()).await
    }

    /// The history's kinds and the attempts counted for sequence 3.
    async fn kept(db: &Db) -> (Vec<String>, i64) {
        transaction(db, |tx| {
            let kinds = tx.events("d1")?.into_iter().map(|e| e.kind).collect();
            // The current sequence's attempts are kept in the delivery's row.
            let row = tx
                .query_one(
                    "SELECT online_attempts, \
                     (SELECT COUNT(*) FROM attempts WHERE scope = 'attempts:3:d1') AS in_table \
                     FROM deliveries WHERE delivery_id = 'd1'",
                    &[],
                )?
                .unwrap();
            assert_eq!(row.int("in_table")?, 0, "none in the table");
            let counted = match row.value("online_attempts")? {
                super::Value::Text(json) => serde_json::from_str::<Vec<(String, i64)>>(json)
                    .unwrap()
                    .len() as i64,
                _ => 0,
            };
            Ok((kinds, counted))
        })
        .await
        .unwrap()
    }

    /// Another request takes hold of the delivery between each of a guarded
    /// request's reads and its write: the guarded one writes nothing then and
    /// runs again on a fresh read, [`GUARDED_RUNS`] times, and then once in
    /// a transaction that holds the delivery; that run is kept, once.
    #[tokio::test]
    async fn a_delivery_changed_between_read_and_write_runs_the_request_again() {
        let db = fresh("changed").await;
        let other = db.clone();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let out = guarded(&db, Reads::Check, None, move |tx| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            let (row, _) = tx.delivery_held("d1", None)?.unwrap();
            let position =
                tx.record_attempt(&format!("attempts:{}:d1", row.sequence), "a1", 5, 100)?;
            tx.event("d1", 2, "online_check", &serde_json::json!({ "run": run }))?;
            if tx.guarded() {
                let other = other.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(transaction(&other, |tx| {
                        Ok(tx.delivery_held("d1", None)?.is_some())
                    }))
                })
                .join()
                .unwrap()
                .unwrap();
            }
            Ok((run, position))
        })
        .await
        .unwrap();
        assert_eq!(
            out,
            (GUARDED_RUNS, Some(1)),
            "kept from the run in a transaction, the attempt first"
        );
        assert_eq!(runs.load(Ordering::SeqCst), GUARDED_RUNS + 1);
        assert_eq!(
            kept(&db).await,
            (vec!["issued".to_string(), "online_check".to_string()], 1)
        );
        // The same again: the attempt is known, nothing changes meanwhile,
        // one run.
        let out = guarded(&db, Reads::Check, None, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            Ok(tx.record_attempt("attempts:3:d1", "a1", 5, 100)?)
        })
        .await
        .unwrap();
        assert_eq!(out, Some(1));
        assert_eq!(kept(&db).await.1, 1);
    }

    /// `work` as a guarded request reading `reads` (no device), after it has
    /// read d1.
    async fn held<T: Send + 'static>(
        db: &Db,
        reads: Reads,
        work: impl Fn(&Arc<super::Tx>) -> Result<T, crate::problem::Problem> + Send + 'static,
    ) -> Result<T, crate::problem::Problem> {
        guarded(db, reads, None, move |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            work(tx)
        })
        .await
    }

    /// A guarded request that writes other than through its queue, or asks
    /// the store about a key it did not read, fails and keeps nothing.
    #[tokio::test]
    async fn a_guarded_request_keeps_nothing_when_it_steps_outside() {
        let db = fresh("outside").await;
        let wrote = guarded(&db, Reads::Receipt, None, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            tx.event("d1", 2, "online_check", &serde_json::json!({}))?;
            tx.set_status("d1", "confirmed", 2)?;
            tx.update_ticket("d1", 4, "c1", "{}", 1, 2)?;
            Ok(())
        })
        .await;
        assert_unavailable(wrote);
        assert_unavailable(
            held(&db, Reads::Receipt, |tx| {
                tx.event("d1", 2, "online_check", &serde_json::json!({}))?;
                Ok(tx.recall("online:2:d1")?)
            })
            .await,
        );
        // A check reads no receipts: asking for the delivery's receipt slot
        // or its decisions fails, though the key is the current one.
        assert_unavailable(
            held(&db, Reads::Check, |tx| {
                tx.event("d1", 2, "online_check", &serde_json::json!({}))?;
                Ok(tx.recall("receipt:3:d1")?)
            })
            .await,
        );
        assert_unavailable(
            held(&db, Reads::Check, |tx| {
                Ok(tx.decision_recorded("d1", 3, "confirmed")?)
            })
            .await,
        );
        // An upload reads them: the same questions are answered.
        let read = held(&db, Reads::Receipt, |tx| {
            Ok((
                tx.recall("receipt:3:d1")?,
                tx.decision_recorded("d1", 3, "confirmed")?,
            ))
        })
        .await
        .unwrap();
        assert_eq!(read, (None, false));
        assert_eq!(kept(&db).await, (vec!["issued".to_string()], 0));
        let status = transaction(&db, |tx| Ok(tx.delivery("d1")?.unwrap().status))
            .await
            .unwrap();
        assert_eq!(status, "issued");
    }

    /// A device's request for `signature`, from device dev1 of courier c1.
    fn admission(signature: &str) -> Option<Admission> {
        Some(Admission {
            courier_id: "c1".into(),
            device_id: "dev1".into(),
            signature: signature.into(),
            expires_at: 1_000,
            now: 10,
        })
    }

    /// A guarded check by device dev1 that keeps one history entry.
    async fn check(db: &Db, signature: &str) -> Result<(), axum::http::StatusCode> {
        check_reading(db, signature, Some(("c1", "dev1"))).await
    }

    /// The same, reading the delivery with `device` (when it is not the
    /// signer, the signer's state is read by itself).
    async fn check_reading(
        db: &Db,
        signature: &str,
        device: Option<(&'static str, &'static str)>,
    ) -> Result<(), axum::http::StatusCode> {
        guarded(db, Reads::Check, admission(signature), move |tx| {
            tx.delivery_held("d1", device)?.unwrap();
            tx.event("d1", 2, "online_check", &serde_json::json!({}))?;
            Ok(())
        })
        .await
        .map_err(|p| p.status)
    }

    /// A device's signature is recorded with the request's writes, in the
    /// same statement: a replay is refused and keeps nothing, also when the
    /// other copy is recorded between this one's read and its write; a
    /// request that fails or is refused keeps no signature.
    #[tokio::test]
    async fn a_device_request_is_admitted_with_its_writes() {
        use axum::http::StatusCode;
        let db = fresh("admitted").await;
        let entries = |n: usize| {
            let mut kinds = vec!["issued".to_string()];
            kinds.extend(std::iter::repeat_n("online_check".to_string(), n));
            (kinds, 0)
        };
        // Never provisioned: 403, nothing kept.
        assert_eq!(check(&db, "s0").await, Err(StatusCode::FORBIDDEN));
        transaction(&db, |tx| Ok(tx.provision_device("c1", "dev1", "k1", 5)?))
            .await
            .unwrap();
        assert_eq!(
            check(&db, "s0").await,
            Ok(()),
            "refused before, so not seen"
        );
        assert_eq!(kept(&db).await, entries(1));
        // The same request again: seen when read.
        assert_eq!(check(&db, "s0").await, Err(StatusCode::UNAUTHORIZED));
        assert_eq!(kept(&db).await, entries(1));
        // The other copy recorded after this one's read: the write fails
        // as a whole, and the request is not run again.
        let other = db.clone();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let raced = guarded(&db, Reads::Check, admission("s1"), move |tx| {
            counted.fetch_add(1, Ordering::SeqCst);
            tx.delivery_held("d1", Some(("c1", "dev1")))?.unwrap();
            tx.event("d1", 2, "online_check", &serde_json::json!({}))?;
            let other = other.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(transaction(&other, |tx| {
                    Ok(tx.remember_signature("s1", 1_000, 10)?)
                }))
            })
            .join()
            .unwrap()
            .unwrap();
            Ok(())
        })
        .await;
        assert_eq!(raced.unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(kept(&db).await, entries(1));
        // Work that fails keeps no signature: the same request later is new.
        let failed: Result<(), _> = guarded(&db, Reads::Check, admission("s2"), |tx| {
            tx.delivery_held("d1", Some(("c1", "dev1")))?.unwrap();
            tx.event("d1", 2, "online_check", &serde_json::json!({}))?;
            Err(crate::problem::Problem::bad_request("test", "fails"))
        })
        .await;
        assert_eq!(failed.unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(check(&db, "s2").await, Ok(()));
        assert_eq!(kept(&db).await, entries(2));
        // Revoked: 403, and its signature is not kept.
        transaction(&db, |tx| Ok(tx.revoke_device("c1", "dev1", 20)?))
            .await
            .unwrap();
        assert_eq!(check(&db, "s3").await, Err(StatusCode::FORBIDDEN));
        let recorded = transaction(&db, |tx| {
            let mut out = Vec::new();
            for s in ["s0", "s1", "s2", "s3"] {
                out.push(
                    tx.query_one(
                        "SELECT 1 AS one FROM request_signatures WHERE signature = $1",
                        &[s.into()],
                    )?
                    .is_some(),
                );
            }
            Ok(out)
        })
        .await
        .unwrap();
        assert_eq!(recorded, [true, true, true, false]);
        assert_eq!(kept(&db).await, entries(2));
        // A request that reads the delivery without the signer's device
        // reads the signer's state by itself: refused while revoked, and
        // admitted once provisioned again.
        assert_eq!(
            check_reading(&db, "s4", None).await,
            Err(StatusCode::FORBIDDEN)
        );
        transaction(&db, |tx| Ok(tx.provision_device("c1", "dev1", "k1", 30)?))
            .await
            .unwrap();
        assert_eq!(check_reading(&db, "s4", None).await, Ok(()));
        assert_eq!(
            check_reading(&db, "s4", None).await,
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(kept(&db).await, entries(3));
    }

    /// An online entry for delivery d1 at `sequence`.
    fn entry<'a>(
        end_key: &'a str,
        scope: &'a str,
        attempt: &'a str,
        ends: Option<(&'a str, &'a str)>,
    ) -> delivery_otp::OnlineEntry<'a> {
        delivery_otp::OnlineEntry {
            end_key,
            scope,
            attempt,
            limit: 3,
            expires_at: 500,
            ends,
        }
    }

    /// The current code's online state lives in the delivery's row; a resend
    /// moves it to the tables before it changes the sequence, so the earlier
    /// code's record and attempts are still found under their keys, and the
    /// new code starts with none. On both engines, each step its own
    /// transaction (as requests are).
    async fn online_state_moves_on_resend(db: &Db) {
        use delivery_otp::OnlineStep;
        transaction(db, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            let e = entry("online:3:d1", "attempts:3:d1", "a1", None);
            assert_eq!(tx.check_online(&e)?, OnlineStep::Counted(1));
            let e = entry("online:3:d1", "attempts:3:d1", "a2", Some(("ok at ", "")));
            assert_eq!(tx.check_online(&e)?, OnlineStep::Ended(2));
            Ok(())
        })
        .await
        .unwrap();
        let state = |db: Db| async move {
            transaction(&db, |tx| {
                let r = tx
                    .query_one(
                        "SELECT online_end, online_attempts, \
                         (SELECT COUNT(*) FROM attempts WHERE scope = 'attempts:3:d1') AS old_attempts, \
                         (SELECT COUNT(*) FROM remembered WHERE key = 'online:3:d1') AS old_end \
                         FROM deliveries WHERE delivery_id = 'd1'",
                        &[],
                    )?
                    .unwrap();
                Ok((
                    r.value("online_end")?.clone(),
                    r.value("online_attempts")?.clone(),
                    r.int("old_attempts")?,
                    r.int("old_end")?,
                ))
            })
            .await
        };
        let (end, attempts, old_attempts, old_end) = state(db.clone()).await.unwrap();
        assert_eq!(end, super::Value::Text("ok at 2".into()));
        assert_eq!(
            attempts,
            super::Value::Text(r#"[["a1",1],["a2",2]]"#.into())
        );
        assert_eq!(
            (old_attempts, old_end),
            (0, 0),
            "in the row, not the tables"
        );
        transaction(db, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            tx.update_ticket("d1", 4, "c1", "{}", 1, 9)?;
            Ok(())
        })
        .await
        .unwrap();
        let (end, attempts, old_attempts, old_end) = state(db.clone()).await.unwrap();
        assert_eq!((end, attempts), (super::Value::Null, super::Value::Null));
        assert_eq!((old_attempts, old_end), (2, 1), "moved to the tables");
        transaction(db, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            // The earlier code: as it was, from the tables.
            assert_eq!(tx.recall("online:3:d1")?, Some("ok at 2".into()));
            let e = entry("online:3:d1", "attempts:3:d1", "a3", None);
            assert_eq!(
                tx.check_online(&e)?,
                OnlineStep::AlreadyEnded("ok at 2".into())
            );
            assert_eq!(tx.record_attempt("attempts:3:d1", "a1", 3, 500)?, Some(1));
            // The new code: nothing yet.
            assert_eq!(tx.recall("online:4:d1")?, None);
            let e = entry("online:4:d1", "attempts:4:d1", "b1", None);
            assert_eq!(tx.check_online(&e)?, OnlineStep::Counted(1));
            assert_eq!(
                tx.recall_many(&["online:3:d1", "online:4:d1", "receipt:4:d1"])?,
                vec![Some("ok at 2".to_string()), None, None]
            );
            Ok(())
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn online_state_moves_on_resend_postgres() {
        online_state_moves_on_resend(&fresh("moves").await).await;
    }

    #[tokio::test]
    async fn online_state_moves_on_resend_sqlite() {
        let dir = empty_dir("moves");
        let db = super::super::open_sqlite(&dir.join("db.sqlite3"))
            .await
            .unwrap();
        online_state_moves_on_resend(&with_d1(db).await).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Records kept in the tables before migration 0006 for a delivery's
    /// current sequence move into its row; an earlier sequence's stay.
    async fn legacy_records_move(db: &Db) {
        let read = transaction(db, |tx| {
            let r = tx
                .query_one(
                    "SELECT online_end, online_attempts, online_expires_at, \
                     (SELECT COUNT(*) FROM remembered) AS remembered, \
                     (SELECT COUNT(*) FROM attempts) AS attempts, \
                     (SELECT value FROM remembered WHERE key = 'online:1:d1') AS old_end \
                     FROM deliveries WHERE delivery_id = 'd1'",
                    &[],
                )?
                .unwrap();
            Ok((
                r.value("online_end")?.clone(),
                r.value("online_attempts")?.clone(),
                r.int("online_expires_at")?,
                r.int("remembered")?,
                r.int("attempts")?,
                r.value("old_end")?.clone(),
            ))
        })
        .await
        .unwrap();
        let (end, attempts, expires_at, remembered, counted, old_end) = read;
        assert_eq!(end, super::Value::Text("ok at 2".into()));
        let attempts = match attempts {
            super::Value::Text(json) => serde_json::from_str::<Vec<(String, i64)>>(&json).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(attempts, [("a1".to_string(), 1), ("a2".to_string(), 2)]);
        assert_eq!(expires_at, 700);
        assert_eq!((remembered, counted), (1, 1), "the earlier sequence's stay");
        assert_eq!(old_end, super::Value::Text("old".into()));
        // And the store finds both where they now are.
        transaction(db, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            assert_eq!(tx.recall("online:2:d1")?, Some("ok at 2".into()));
            assert_eq!(tx.recall("online:1:d1")?, Some("old".into()));
            assert_eq!(tx.record_attempt("attempts:2:d1", "a2", 5, 900)?, Some(2));
            Ok(())
        })
        .await
        .unwrap();
    }

    /// What the service kept before migration 0006: a delivery at sequence
    /// 2 with its current and earlier records in the tables.
    const LEGACY: &[&str] = &[
        "INSERT INTO deliveries (delivery_id, sequence, courier_id, settings, ticket, status, \
         contact, locale, request_digest, resends, created_at, updated_at) \
         VALUES ('d1', 2, 'c1', '{}', '{}', 'issued', '{}', 'en', 'x', 2, 1, 1)",
        "INSERT INTO remembered (key, value, expires_at) VALUES ('online:2:d1', 'ok at 2', 600)",
        "INSERT INTO remembered (key, value, expires_at) VALUES ('online:1:d1', 'old', 600)",
        "INSERT INTO attempts (scope, attempt, position, expires_at) VALUES ('attempts:2:d1', 'a2', 2, 700)",
        "INSERT INTO attempts (scope, attempt, position, expires_at) VALUES ('attempts:2:d1', 'a1', 1, 650)",
        "INSERT INTO attempts (scope, attempt, position, expires_at) VALUES ('attempts:1:d1', 'a0', 1, 600)",
    ];

    /// The migrations before 0006 of `all`.
    fn before_0006(all: &sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
        sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                all.migrations
                    .iter()
                    .filter(|m| m.version < 6)
                    .cloned()
                    .collect(),
            ),
            ..sqlx::migrate::Migrator::DEFAULT
        }
    }

    #[tokio::test]
    async fn legacy_records_move_into_the_row_postgres() {
        let url = empty_postgres("legacy").await;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        before_0006(&super::super::POSTGRES_MIGRATIONS)
            .run(&mut conn)
            .await
            .unwrap();
        for sql in LEGACY {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
        legacy_records_move(&open_postgres(&url, 1).await.unwrap()).await;
    }

    #[tokio::test]
    async fn legacy_records_move_into_the_row_sqlite() {
        let dir = empty_dir("legacy");
        let path = dir.join("db.sqlite3");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        before_0006(&super::super::SQLITE_MIGRATIONS)
            .run(&mut conn)
            .await
            .unwrap();
        for sql in LEGACY {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
        legacy_records_move(&super::super::open_sqlite(&path).await.unwrap()).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Several requests' writes in one statement on PostgreSQL: each is
    /// kept or not under its own version guard, with its own inserts; and
    /// when the database refuses the statement (one write's signature was
    /// recorded since its read), nothing of it is kept and each write is
    /// made by itself: the replayed one refused, the other kept.
    #[tokio::test]
    async fn writes_in_one_statement_each_keep_their_own_guard() {
        let db = fresh("combined").await;
        transaction(&db, |tx| {
            let mut row = tx.delivery_held("d1", None)?.unwrap().0;
            row.delivery_id = "d2".into();
            assert!(tx.insert_delivery(&row, 1, &serde_json::json!({}))?);
            tx.execute(
                "INSERT INTO request_signatures (signature, expires_at) VALUES ('seen', 100)",
                &[],
            )?;
            Ok(())
        })
        .await
        .unwrap();
        let state = |db: &Db| {
            let db = db.clone();
            async move {
                transaction(&db, |tx| {
                    let mut out = Vec::new();
                    for id in ["d1", "d2"] {
                        let row = tx
                            .query_one(
                                "SELECT version FROM deliveries WHERE delivery_id = $1",
                                &[id.into()],
                            )?
                            .unwrap();
                        let kinds: Vec<String> =
                            tx.events(id)?.into_iter().map(|e| e.kind).collect();
                        out.push((row.int("version")?, kinds));
                    }
                    Ok(out)
                })
                .await
                .unwrap()
            }
        };
        let before = state(&db).await;
        let (v1, v2) = (before[0].0, before[1].0);
        let event = |id: &str, kind: &str| Insert {
            table: "delivery_events",
            columns: EVENT_COLUMNS,
            values: vec![id.into(), 5_i64.into(), kind.into(), "{}".into()],
        };
        let write = |id: &str, version: i64, inserts: Vec<Insert>| Write {
            delivery_id: id.into(),
            version,
            set: vec![("updated_at", 7_i64.into())],
            inserts,
        };
        // d1 as read; d2 changed since its read (a stale version).
        let kept = autocommit(&db, move |tx| {
            Ok(tx.run_writes(&[
                write("d1", v1, vec![event("d1", "first")]),
                write("d2", v2 - 1, vec![event("d2", "stale")]),
            ])?)
        })
        .await
        .unwrap();
        assert_eq!(kept, vec![true, false]);
        let after = state(&db).await;
        assert_eq!(after[0], (v1 + 1, vec!["issued".into(), "first".into()]));
        assert_eq!(after[1], before[1], "the stale write kept nothing");
        // d1 with a signature recorded since, d2 as read: the statement is
        // refused as a whole, then each write goes by itself.
        let signature = Insert {
            table: "request_signatures",
            columns: "signature, expires_at",
            values: vec!["seen".into(), 100_i64.into()],
        };
        let outcomes = autocommit(&db, move |tx| {
            let run = |writes: &[Write]| tx.run_writes(writes);
            let writes = [
                write("d1", v1 + 1, vec![signature, event("d1", "replayed")]),
                write("d2", v2, vec![event("d2", "second")]),
            ];
            Ok(combine::run_batch(&writes, &run)
                .0
                .into_iter()
                .map(|outcome| match outcome {
                    Ok(kept) => format!("{kept}"),
                    Err(e) => format!("{e:?}"),
                })
                .collect::<Vec<_>>())
        })
        .await
        .unwrap();
        assert_eq!(outcomes, vec!["Replayed".to_string(), "true".into()]);
        let last = state(&db).await;
        assert_eq!(last[0], after[0], "the replayed write kept nothing");
        assert_eq!(last[1], (v2 + 1, vec!["issued".into(), "second".into()]));
    }

    /// The statements a worker prepares are planned once on its connection
    /// and that plan used for every later execution, not planned again for
    /// each request's values: an upload's read was planned afresh for 13 and
    /// 57 % of the uploads in two benchmark runs, at about 150 µs each
    /// (`postgres::SESSION_SETTINGS`).
    #[tokio::test]
    async fn an_uploads_read_is_planned_once_per_connection() {
        let db = with_d1(
            open_postgres(&empty_postgres("planned_once").await, 1)
                .await
                .unwrap(),
        )
        .await;
        for _ in 0..8 {
            let slot = held(&db, Reads::Receipt, |tx| Ok(tx.recall("receipt:3:d1")?))
                .await
                .unwrap();
            assert_eq!(slot, None);
        }
        // The one worker's connection, which made the reads above.
        let plans = autocommit(&db, |tx| {
            let rows = tx.query(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
                 WHERE statement LIKE '%receipt_key%' \
                 AND statement NOT LIKE '%pg_prepared_statements%'",
                &[],
            )?;
            let mut plans = Vec::new();
            for r in rows {
                plans.push((r.int("generic_plans")?, r.int("custom_plans")?));
            }
            Ok(plans)
        })
        .await
        .unwrap();
        assert_eq!(plans.len(), 1, "the read is prepared once: {plans:?}");
        let (generic, custom) = plans[0];
        assert_eq!(custom, 0, "planned for its values {custom} times");
        assert_eq!(generic, 8, "one plan used for each of the 8 reads");
    }

    /// The backend process of `db`'s one worker connection, and that
    /// connection's `enable_seqscan` and `plan_cache_mode`.
    async fn backend(db: &Db) -> Result<(i64, String, String), crate::problem::Problem> {
        autocommit(db, |tx| {
            let r = tx
                .query_one(
                    "SELECT pg_backend_pid() AS pid, \
                     current_setting('enable_seqscan') AS seqscan, \
                     current_setting('plan_cache_mode') AS plans",
                    &[],
                )?
                .unwrap();
            Ok((r.int("pid")?, r.text("seqscan")?, r.text("plans")?))
        })
        .await
    }

    /// Ends the backend `pid` of the database at `url`, as an administrator's
    /// `pg_terminate_backend` (or a restart) does: whether it was ended.
    async fn terminate_backend(url: &str, pid: i64) -> bool {
        let mut admin = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar("SELECT pg_terminate_backend($1::int)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap()
    }

    /// A worker's connection whose backend PostgreSQL ended while it sat
    /// idle (a restart, an administrator's `pg_terminate_backend`) is
    /// replaced through `postgres::connect` by the next request, which does
    /// not fail for it (`value::connection_lost`), and the new connection
    /// has the same settings: no sequential scans, one plan per statement
    /// (`postgres::SESSION_SETTINGS`).
    #[tokio::test]
    async fn a_replaced_connection_keeps_the_session_settings() {
        let url = empty_postgres("replaced").await;
        let db = with_d1(open_postgres(&url, 1).await.unwrap()).await;
        let (first, ..) = backend(&db).await.unwrap();
        assert!(terminate_backend(&url, first).await);
        let mut failed = 0;
        let (second, seqscan, plans) = loop {
            match backend(&db).await {
                Ok(now) => break now,
                Err(_) if failed < 2 => failed += 1,
                Err(e) => panic!("no new connection: {e:?}"),
            }
        };
        assert_ne!(second, first, "a new connection");
        assert_eq!(
            (seqscan.as_str(), plans.as_str()),
            ("off", "force_generic_plan")
        );
        assert_eq!(
            failed, 0,
            "requests failed before the connection was replaced"
        );
    }

    /// A database whose DBA set `idle_session_timeout`: PostgreSQL ends a
    /// worker's connection after it sat idle that long, and the next
    /// request reconnects and runs instead of failing.
    #[tokio::test]
    async fn a_connection_ended_for_idling_is_replaced_without_failing_a_request() {
        let url = empty_postgres("idle_timeout").await;
        let db = with_d1(open_postgres(&url, 1).await.unwrap()).await;
        let name = url.rsplit_once('/').unwrap().1.to_string();
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(&format!(
            "ALTER DATABASE {name} SET idle_session_timeout = '300ms'"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
        // The setting takes hold on connections made after it: end the one
        // the worker has, so that it connects again.
        let (first, ..) = backend(&db).await.unwrap();
        let _ = terminate_backend(&url, first).await;
        let (mut last, ..) = backend(&db).await.unwrap();
        assert_ne!(last, first);
        for round in 0..2 {
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            let read = held(&db, Reads::Receipt, |tx| Ok(tx.recall("receipt:3:d1")?)).await;
            assert_eq!(read.unwrap(), None, "round {round}: the request ran");
            let (now, ..) = backend(&db).await.unwrap();
            assert_ne!(now, last, "round {round}: the idle connection was replaced");
            last = now;
        }
    }

    /// The lookups a guarded request reads in tables that start empty keep
    /// their index on the service's connections when those tables were
    /// analyzed empty (a new deployment, a vacuum before the first
    /// receipt): a plan made then is kept while the table grows, and a scan
    /// of the whole table per request was 30 times the cost of the read in
    /// the benchmark (`postgres::SESSION_SETTINGS`).
    #[tokio::test]
    async fn lookups_in_tables_analyzed_empty_keep_their_index() {
        let db = open_postgres(&empty_postgres("analyzed_empty").await, 1)
            .await
            .unwrap();
        let plans = autocommit(&db, |tx| {
            tx.execute("ANALYZE request_signatures, remembered, receipts", &[])?;
            let mut plans = Vec::new();
            for lookup in [
                "SELECT COUNT(*) FROM request_signatures WHERE signature = 'x'",
                "SELECT value FROM remembered WHERE key = 'receipt:1:d1'",
                "SELECT decision FROM receipts WHERE delivery_id = 'd1' AND sequence = 1",
            ] {
                let mut plan = String::new();
                for row in tx.query(&format!("EXPLAIN {lookup}"), &[])? {
                    plan.push_str(&row.text("QUERY PLAN")?);
                    plan.push('\n');
                }
                plans.push(plan);
            }
            Ok(plans)
        })
        .await
        .unwrap();
        for plan in plans {
            assert!(
                plan.contains("Index") && !plan.contains("Seq Scan"),
                "a lookup planned as a scan of the table:\n{plan}"
            );
        }
    }

    /// The outbox's ids due to `claimer` at `now`, claimed for the lease.
    async fn claim(claimer: &Db, now: u64) -> Vec<String> {
        transaction(claimer, move |tx| {
            Ok(tx.claim_events(now, 10, CLAIM_LEASE_SECS)?)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect()
    }

    /// Two instances on one database: events one claimed are skipped by the
    /// other for the lease; if the claimant dies before sending them, they
    /// come due again to the other after it, untried; one it marked sent
    /// before dying never comes back. This is what keeps webhooks going out
    /// at least once, each under one event id, when an instance is killed
    /// (cluster.rs kills one mid-load, but holds a claim only in some runs).
    async fn a_dead_instances_claims_come_due_after_the_lease(first: Db, second: Db) {
        const T: u64 = 1_000;
        transaction(&first, move |tx| {
            tx.enqueue_event("ev-1", r#"{"n":1}"#, T)?;
            tx.enqueue_event("ev-2", r#"{"n":2}"#, T)?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(claim(&first, T).await, ["ev-1", "ev-2"]);
        assert!(
            claim(&second, T + CLAIM_LEASE_SECS - 1).await.is_empty(),
            "claimed events are skipped during the lease"
        );
        transaction(&first, move |tx| Ok(tx.event_delivered("ev-2", T + 1)?))
            .await
            .unwrap();
        drop(first); // dies without sending ev-1
        let due = transaction(&second, move |tx| {
            Ok(tx.claim_events(T + CLAIM_LEASE_SECS, 10, CLAIM_LEASE_SECS)?)
        })
        .await
        .unwrap();
        assert_eq!(
            due,
            [("ev-1".to_string(), r#"{"n":1}"#.to_string(), 0)],
            "the unsent event comes due again, untried; the sent one does not"
        );
        transaction(&second, move |tx| {
            Ok(tx.event_delivered("ev-1", T + CLAIM_LEASE_SECS + 1)?)
        })
        .await
        .unwrap();
        assert!(claim(&second, T + 100 * CLAIM_LEASE_SECS).await.is_empty());

        // Claimed events given back (a claim running short) are due again at
        // once; giving back under a lease that is not the claim's changes
        // nothing.
        const U: u64 = T + 1_000;
        const END: u64 = U + CLAIM_LEASE_SECS;
        transaction(&second, move |tx| Ok(tx.enqueue_event("ev-3", "{}", U)?))
            .await
            .unwrap();
        assert_eq!(claim(&second, U).await, ["ev-3"]);
        let give_back = |lease_end: u64| {
            transaction(&second, move |tx| {
                Ok(tx.release_events(&["ev-3".to_string()], lease_end, U + 1)?)
            })
        };
        give_back(END + 1).await.unwrap();
        assert!(claim(&second, U + 1).await.is_empty(), "another claim's");
        give_back(END).await.unwrap();
        assert_eq!(claim(&second, U + 1).await, ["ev-3"], "due at once");

        // Delivered events are deleted once delivered before the given
        // time (oldest first, up to the limit); one not delivered stays.
        let forget = |before: u64, limit: i64| {
            transaction(&second, move |tx| {
                Ok(tx.forget_delivered_events(before, limit)?)
            })
        };
        assert_eq!(forget(T + 1, 10).await.unwrap(), 0, "delivered at T + 1");
        assert_eq!(forget(U, 1).await.unwrap(), 1, "one at most");
        assert_eq!(forget(U, 10).await.unwrap(), 1);
        assert_eq!(forget(u64::from(u32::MAX), 10).await.unwrap(), 0);
        let backlog = transaction(&second, |tx| Ok(tx.outbox_backlog()?));
        assert_eq!(backlog.await.unwrap(), (1, Some(U)), "ev-3 waits");
    }

    #[tokio::test]
    async fn a_dead_instances_claims_come_due_after_the_lease_postgres() {
        let url = empty_postgres("lease").await;
        let first = open_postgres(&url, 1).await.unwrap();
        let second = open_postgres(&url, 1).await.unwrap();
        a_dead_instances_claims_come_due_after_the_lease(first, second).await;
    }

    #[tokio::test]
    async fn a_dead_instances_claims_come_due_after_the_lease_sqlite() {
        let dir = empty_dir("lease");
        let path = dir.join("db.sqlite3");
        let first = super::super::open_sqlite(&path).await.unwrap();
        let second = super::super::open_sqlite(&path).await.unwrap();
        a_dead_instances_claims_come_due_after_the_lease(first, second).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The pages PostgreSQL read for `sql` (`EXPLAIN (ANALYZE, BUFFERS)`:
    /// the top node's shared pages, found in its cache or read) and the rows
    /// it gave.
    async fn pages_read(conn: &mut sqlx::PgConnection, sql: &str, binds: &[i64]) -> (u64, u64) {
        let explain = format!("EXPLAIN (ANALYZE, BUFFERS) {sql}");
        let mut query = sqlx::query_scalar::<_, String>(&explain);
        for b in binds {
            query = query.bind(*b);
        }
        let plan = query.fetch_all(conn).await.unwrap();
        let pages = plan
            .iter()
            .find_map(|line| line.trim().strip_prefix("Buffers: shared "))
            .unwrap_or_else(|| panic!("no buffers in {plan:#?}"))
            .split(',') // then "temp read=..., written=..."
            .next()
            .unwrap_or_default()
            .split(' ')
            .filter_map(|part| part.split_once('='))
            .filter(|(what, _)| *what == "hit" || *what == "read")
            .map(|(_, n)| n.parse::<u64>().unwrap())
            .sum();
        let rows = plan[0]
            .split("rows=")
            .nth(2)
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        (pages, rows)
    }

    /// A claim and the backlog gauges read the events waiting, not the
    /// delivered ones kept for 30 days: on an outbox of 200,000 delivered and
    /// 100,000 waiting events, a claim of 20 reads a few pages whether 30 of
    /// the waiting are due (a receiver down, each on its backoff) or all of
    /// them (the receiver back), and the backlog's count reads the index of
    /// the waiting ones, as the service's connections plan them. Before
    /// migration 0008 a claim read every due event and sorted them by age,
    /// and the count read every waiting event's row: with 1,000,000 waiting
    /// and all due, 1.2 s a claim (a 438 MB sort on disk) for every claim of
    /// every instance.
    #[tokio::test]
    async fn claims_and_the_backlog_read_only_the_waiting_events_postgres() {
        let url = empty_postgres("outbox_pages").await;
        drop(open_postgres(&url, 1).await.unwrap()); // the migrations
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        const NOW: i64 = 1_800_000_000;
        for sql in [
            // Delivered, within their 30 days.
            format!(
                "INSERT INTO webhook_outbox (event_id, payload, created_at, attempts, \
                 next_attempt_at, delivered_at) SELECT 'evt_d' || g, repeat('x', 300), \
                 {NOW} - 200000 + g, 1, {NOW} - 200000 + g, {NOW} - 200000 + g \
                 FROM generate_series(1, 200000) g"
            ),
            // Waiting: tried 12 times, due again within the hour; 30 due now.
            format!(
                "INSERT INTO webhook_outbox (event_id, payload, created_at, attempts, \
                 next_attempt_at) SELECT 'evt_w' || g, repeat('y', 300), {NOW} - 100000 + g, \
                 12, CASE WHEN g <= 30 THEN {NOW} - g ELSE {NOW} + g % 3600 END \
                 FROM generate_series(1, 100000) g"
            ),
            "VACUUM ANALYZE webhook_outbox".to_string(),
        ] {
            sqlx::query(&sql).execute(&mut conn).await.unwrap();
        }
        // As the service's own connections plan them.
        for setting in super::super::postgres::SESSION_SETTINGS {
            sqlx::query(setting).execute(&mut conn).await.unwrap();
        }
        let table_pages: i64 = sqlx::query_scalar(
            "SELECT pg_relation_size('webhook_outbox') / current_setting('block_size')::bigint",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(table_pages > 10_000, "the table has {table_pages} pages");

        let claim = claim_sql(super::super::Engine::Postgres);
        let (pages, rows) = pages_read(&mut conn, claim, &[NOW, 20]).await;
        assert_eq!(rows, 20, "20 of the 30 due");
        assert!(pages < 100, "a claim with 30 due read {pages} pages");
        let (pages, rows) = pages_read(&mut conn, claim, &[NOW + 3600, 20]).await;
        assert_eq!(rows, 20);
        assert!(
            pages < 100,
            "a claim with every event due read {pages} pages"
        );

        let backlog = backlog_sql(super::super::Engine::Postgres);
        let (pages, rows) = pages_read(&mut conn, backlog, &[]).await;
        assert_eq!(rows, 1);
        assert!(
            pages < 1_000,
            "the backlog read {pages} pages of a table of {table_pages}"
        );
        let backlog = sqlx::query_as::<_, (i64, i64)>(backlog)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(backlog, (100_000, NOW - 100_000 + 1));
    }

    /// The same on SQLite, from its query plans: a claim searches the index
    /// of the waiting events for the due ones, in its order (no sort), and
    /// the backlog reads only the index of when they were made. Before, a
    /// claim sorted every due event by when it was made, and the count read
    /// each waiting event's row.
    #[tokio::test]
    async fn claims_and_the_backlog_read_only_the_waiting_events_sqlite() {
        let dir = empty_dir("outbox_plans");
        let path = dir.join("db.sqlite3");
        drop(super::super::open_sqlite(&path).await.unwrap()); // the migrations
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let mut plan = async |sql: &str| -> Vec<String> {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&explain).fetch_all(&mut conn).await.unwrap();
            rows.into_iter().map(|(_, _, _, detail)| detail).collect()
        };
        assert_eq!(
            plan(claim_sql(super::super::Engine::Sqlite)).await,
            ["SEARCH webhook_outbox USING INDEX webhook_outbox_waiting (next_attempt_at<?)"]
        );
        assert_eq!(
            plan(backlog_sql(super::super::Engine::Sqlite)).await,
            ["SCAN webhook_outbox USING COVERING INDEX webhook_outbox_waiting_since"]
        );
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// On PostgreSQL two instances claiming at the same moment get disjoint
    /// events: the second skips the rows the first holds, uncommitted
    /// (`FOR UPDATE SKIP LOCKED`), instead of waiting or taking them too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_claiming_at_once_never_share_an_event() {
        let url = empty_postgres("claims").await;
        let first = open_postgres(&url, 1).await.unwrap();
        let second = open_postgres(&url, 1).await.unwrap();
        transaction(&first, |tx| {
            for i in 0..6 {
                tx.enqueue_event(&format!("ev-{i}"), "{}", 1_000)?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let (claimed, go) = (
            Arc::new(std::sync::Barrier::new(2)),
            Arc::new(std::sync::Barrier::new(2)),
        );
        let (held, released) = (Arc::clone(&claimed), Arc::clone(&go));
        // The first claims three and holds them, uncommitted, until the
        // second has claimed.
        let holder = tokio::spawn(async move {
            transaction(&first, move |tx| {
                let mine = tx.claim_events(1_000, 3, CLAIM_LEASE_SECS)?;
                held.wait();
                released.wait();
                Ok(mine)
            })
            .await
        });
        let (other_claimed, other_go) = (Arc::clone(&claimed), Arc::clone(&go));
        let other = tokio::task::spawn_blocking(move || other_claimed.wait());
        other.await.unwrap();
        let theirs = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            transaction(&second, |tx| {
                Ok(tx.claim_events(1_000, 10, CLAIM_LEASE_SECS)?)
            }),
        )
        .await
        .expect("the second claim waited for the rows the first holds")
        .unwrap();
        tokio::task::spawn_blocking(move || other_go.wait())
            .await
            .unwrap();
        let mine = holder.await.unwrap().unwrap();
        let ids = |v: &[(String, String, u64)]| -> Vec<String> {
            v.iter().map(|(id, _, _)| id.clone()).collect()
        };
        assert_eq!(ids(&mine), ["ev-0", "ev-1", "ev-2"]);
        assert_eq!(ids(&theirs), ["ev-3", "ev-4", "ev-5"]);
    }
}
