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
//!    row, [`super::GUARDED_RUNS`]).
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

use super::attempts::{ATTEMPT_COLUMNS, REMEMBERED_COLUMNS};
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
    /// The attempts of the scope read: (attempt, position).
    attempts: HashMap<String, Vec<(String, i64)>>,
    /// The decisions (JSON) kept as new for the current sequence; `None`
    /// when the request did not read them ([`Reads::Check`]).
    decisions: Option<Vec<String>>,
    /// The delivery's new status and when, if the request changes it.
    status: Option<(String, Value)>,
    writes: Vec<Insert>,
}

/// A queued insert.
struct Insert {
    table: &'static str,
    columns: &'static str,
    values: Vec<Value>,
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
        self.writes.push(Insert {
            table: "attempts",
            columns: ATTEMPT_COLUMNS,
            values: vec![scope.into(), attempt.into(), position.into(), expires_at],
        });
        Ok(())
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
        // The signer's device and whether its signature was seen, for a
        // device's request.
        let signer = match admission {
            None => "",
            Some(_) => {
                ", (SELECT CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END FROM devices \
                 WHERE courier_id = $4 AND device_id = $5) AS signer_active, \
                 (SELECT COUNT(*) FROM request_signatures WHERE signature = $6) AS signature_seen"
            }
        };
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, version, {DEVICE_ACTIVE}{signer}, \
             k.online_key, k.attempts_key, \
             (SELECT value FROM remembered WHERE key = k.online_key) AS online_value, \
             (SELECT json_agg(json_build_array(attempt, position::text))::text FROM attempts \
              WHERE scope = k.attempts_key) AS attempts_known{receipts} \
             FROM deliveries d CROSS JOIN LATERAL (SELECT \
              'online:' || d.sequence || ':' || d.delivery_id AS online_key, \
              'attempts:' || d.sequence || ':' || d.delivery_id AS attempts_key, \
              'receipt:' || d.sequence || ':' || d.delivery_id AS receipt_key) k \
             WHERE d.delivery_id = $1"
        );
        let signer: Vec<Value> = admission.as_ref().map_or_else(Vec::new, |a| {
            vec![
                a.courier_id.as_str().into(),
                a.device_id.as_str().into(),
                a.signature.as_str().into(),
            ]
        });
        let Some((r, row, active)) =
            self.delivery_with_device(&sql, delivery_id, device, signer)?
        else {
            return Ok(None);
        };
        let admission = match admission {
            None => None,
            Some(a) => {
                let active = r.opt_int("signer_active")?.map(|n| n == 1);
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
        let mut remembered = HashMap::new();
        remembered.insert(r.text("online_key")?, opt_text("online_value")?);
        let decisions = match reads {
            Reads::Check => None,
            Reads::Receipt => {
                remembered.insert(r.text("receipt_key")?, opt_text("receipt_value")?);
                Some(texts(&r, "decisions")?)
            }
        };
        let known: Vec<(String, String)> = match opt_text("attempts_known")? {
            None => Vec::new(),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| DbError::Data(format!("attempts_known: {e}")))?,
        };
        let known = known
            .into_iter()
            .map(|(attempt, position)| {
                position
                    .parse::<i64>()
                    .map(|p| (attempt, p))
                    .map_err(|_| DbError::Data(format!("attempt position {position}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut attempts = HashMap::new();
        attempts.insert(r.text("attempts_key")?, known);
        let snapshot = Snapshot {
            reads,
            admission,
            delivery_id: row.delivery_id.clone(),
            version: r.int("version")?,
            sequence: r.int("sequence")?,
            remembered,
            attempts,
            decisions,
            status: None,
            writes: Vec::new(),
        };
        *self.guard.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Guard::Read(Box::new(snapshot)));
        Ok(Some((row, active)))
    }

    /// Step 3: writes what was queued if the delivery is still as it was
    /// read; `false` when it changed in between (nothing was written; run
    /// the request again). A request that queued nothing writes nothing.
    pub(super) fn write_guarded(&self) -> Result<bool, DbError> {
        let snapshot = {
            let mut guard = self.guard.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(Guard::Read(snapshot)) = guard.take() else {
                return Ok(true);
            };
            // Whatever follows in this request is not read yet.
            *guard = Some(Guard::Unread(
                snapshot.reads,
                snapshot.admission.as_ref().map(|(a, _, _)| a.clone()),
            ));
            snapshot
        };
        if snapshot.writes.is_empty() && snapshot.status.is_none() {
            return Ok(true);
        }
        let mut params: Vec<Value> = vec![
            snapshot.delivery_id.as_str().into(),
            Value::Int(snapshot.version),
        ];
        let mark = |params: &mut Vec<Value>, value: Value| {
            params.push(value);
            format!("${}", params.len())
        };
        let set_status = match &snapshot.status {
            Some((status, at)) => format!(
                ", status = {}, updated_at = {}",
                mark(&mut params, status.as_str().into()),
                mark(&mut params, at.clone())
            ),
            None => String::new(),
        };
        let mut sql = format!(
            "WITH guard AS (UPDATE deliveries SET version = version + 1{set_status} \
             WHERE delivery_id = $1 AND version = $2 RETURNING 1)"
        );
        for (n, insert) in snapshot.writes.into_iter().enumerate() {
            let marks: Vec<String> = insert
                .values
                .into_iter()
                .map(|v| mark(&mut params, v))
                .collect();
            sql.push_str(&format!(
                ", w{n} AS (INSERT INTO {} ({}) SELECT {} FROM guard)",
                insert.table,
                insert.columns,
                marks.join(", ")
            ));
        }
        sql.push_str(" SELECT COUNT(*) AS kept FROM guard");
        let kept = match self.query_one(&sql, &params) {
            Ok(row) => row.ok_or(DbError::Gone)?.int("kept")?,
            // The signature queued by `admit_guarded` was recorded since the
            // read: a replay racing this request. The statement wrote nothing.
            Err(DbError::Sqlx(sqlx::Error::Database(e)))
                if e.is_unique_violation() && e.constraint() == Some("request_signatures_pkey") =>
            {
                return Err(DbError::Replayed)
            }
            Err(e) => return Err(e),
        };
        Ok(kept == 1)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use delivery_otp::AttemptStore;
    use sqlx::Connection as _;

    use super::super::{
        guarded, open_postgres, transaction, Admission, Db, DeliveryRow, Reads, GUARDED_RUNS,
    };

    /// A PostgreSQL database of its own for the test `name`, on the server
    /// scripts/test starts (these tests fail without it, never skip).
    async fn fresh(name: &str) -> Db {
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
        let url = format!("{}/{db}", base.rsplit_once('/').unwrap().0);
        let db = open_postgres(&url, 2).await.unwrap();
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

    /// The history's kinds and the attempts counted for sequence 3.
    async fn kept(db: &Db) -> (Vec<String>, i64) {
        transaction(db, |tx| {
            let kinds = tx.events("d1")?.into_iter().map(|e| e.kind).collect();
            let counted = tx
                .query_one(
                    "SELECT COUNT(*) AS n FROM attempts WHERE scope = 'attempts:3:d1'",
                    &[],
                )?
                .map(|r| r.int("n"))
                .transpose()?
                .unwrap_or(-1);
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
        assert_eq!(
            wrote.unwrap_err().status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        let asked = guarded(&db, Reads::Receipt, None, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            tx.event("d1", 2, "online_check", &serde_json::json!({}))?;
            Ok(tx.recall("online:2:d1")?)
        })
        .await;
        assert_eq!(
            asked.unwrap_err().status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        // A check reads no receipts: asking for the delivery's receipt slot
        // or its decisions fails, though the key is the current one.
        let slot = guarded(&db, Reads::Check, None, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            tx.event("d1", 2, "online_check", &serde_json::json!({}))?;
            Ok(tx.recall("receipt:3:d1")?)
        })
        .await;
        assert_eq!(
            slot.unwrap_err().status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        let decided = guarded(&db, Reads::Check, None, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
            Ok(tx.decision_recorded("d1", 3, "confirmed")?)
        })
        .await;
        assert_eq!(
            decided.unwrap_err().status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        // An upload reads them: the same questions are answered.
        let read = guarded(&db, Reads::Receipt, None, |tx| {
            tx.delivery_held("d1", None)?.unwrap();
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
        guarded(db, Reads::Check, admission(signature), |tx| {
            tx.delivery_held("d1", Some(("c1", "dev1")))?.unwrap();
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
    }
}
