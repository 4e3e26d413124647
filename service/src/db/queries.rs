//! The service's statements, written once with `$1`-style parameters for
//! both engines (where PostgreSQL can do in one statement what SQLite does
//! in several, each engine gets its own text), and the rows they read.

use std::sync::PoisonError;

use super::online::{Online, ONLINE_COLUMNS};
use super::value::{int, stored};
use super::{Conn, DbError, Engine, Row, Tx, Value};

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

/// What the database says about a device's signed request
/// ([`Tx::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// A provisioned device, and a signature not seen before (now recorded).
    Fresh,
    /// The signature was received before.
    Replayed,
    /// The device was revoked.
    Revoked,
    /// The device was never provisioned.
    NotProvisioned,
}

/// A device's signed request whose signature is recorded with the
/// request's own writes, not before them ([`super::guarded`],
/// [`super::admitted`]): a request that fails or is thrown away keeps no
/// signature, and one that is kept keeps it in the same commit.
#[derive(Clone)]
pub struct Admission {
    /// The signing device's courier.
    pub courier_id: String,
    /// The signing device.
    pub device_id: String,
    /// The request's signature, recorded until `expires_at`.
    pub signature: String,
    /// When the record may be forgotten (Unix seconds).
    pub expires_at: u64,
    /// When the request was received (Unix seconds).
    pub now: u64,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("courier_id", &self.courier_id)
            .field("device_id", &self.device_id)
            .field("signature", &"<redacted>")
            .finish_non_exhaustive()
    }
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

/// The columns a receipt is kept with, in the order its parameters come
/// (here and in a guarded request's queued insert).
pub(super) const RECEIPT_COLUMNS: &str = "delivery_id, sequence, courier_id, device_id, body, \
     body_sha256, decision, explanation, repeated, received_at";
/// The columns of a history entry, in the order its parameters come.
pub(super) const EVENT_COLUMNS: &str = "delivery_id, at, kind, detail";
/// The columns of a webhook event in the outbox, in the order its
/// parameters come.
pub(super) const OUTBOX_COLUMNS: &str = "event_id, payload, created_at, attempts, next_attempt_at";

/// A claim's select: the due events not delivered, longest due first, read
/// in that order from the index of the events not delivered
/// (`webhook_outbox_waiting`, named on SQLite), never sorted; on PostgreSQL
/// skipping the rows another instance's claim holds.
pub(super) fn claim_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => {
            "SELECT event_id, payload, attempts FROM webhook_outbox \
             INDEXED BY webhook_outbox_waiting WHERE delivered_at IS NULL \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at, event_id LIMIT $2"
        }
        Engine::Postgres => {
            "SELECT event_id, payload, attempts FROM webhook_outbox WHERE delivered_at IS NULL \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at, event_id LIMIT $2 \
             FOR UPDATE SKIP LOCKED"
        }
    }
}

/// The backlog: how many events wait and when the oldest was made, read
/// from the index of when the events not delivered were made
/// (`webhook_outbox_waiting_since`, named on SQLite, whose planner would
/// otherwise read each waiting event's row through `webhook_outbox_due`).
pub(super) fn backlog_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => {
            "SELECT COUNT(*) AS waiting, MIN(created_at) AS oldest FROM webhook_outbox \
             INDEXED BY webhook_outbox_waiting_since WHERE delivered_at IS NULL"
        }
        Engine::Postgres => {
            "SELECT COUNT(*) AS waiting, MIN(created_at) AS oldest FROM webhook_outbox \
             WHERE delivered_at IS NULL"
        }
    }
}

/// Whether the device `$2`, `$3` is provisioned (1), revoked (0) or neither
/// (NULL), as a column of a statement that reads a delivery.
pub(super) const DEVICE_ACTIVE: &str = "(SELECT CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END \
     FROM devices WHERE courier_id = $2 AND device_id = $3) AS device_active";

/// The columns of [`DeliveryRow`], in a `SELECT`.
pub(super) const DELIVERY_COLUMNS: &str =
    "delivery_id, sequence, courier_id, settings, ticket, status, \
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
    pub(super) fn take(&self) -> Option<Conn> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(super) fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        if self.guarded() {
            // A guarded request writes only in its one guarded statement.
            return Err(DbError::Data(
                "a guarded request wrote outside its guarded statement".into(),
            ));
        }
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.as_mut().ok_or(DbError::Gone)?.execute(sql, params)
    }

    pub(super) fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.as_mut().ok_or(DbError::Gone)?.query(sql, params)
    }

    pub(super) fn query_one(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Serializes the transactions that touch `key`: with PostgreSQL, an
    /// advisory lock held until this transaction ends; with SQLite's single
    /// writer, every transaction is already alone.
    pub(super) fn lock(&self, key: &str) -> Result<(), DbError> {
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
    /// is locked by an update that adds one to its `version`, which tells a
    /// guarded request that read it before that it changed; SQLite's single
    /// writer runs every transaction alone). In a guarded request
    /// ([`super::guarded`]), the read without a lock that starts it. With it,
    /// in the same statement, whether `device` (courier id, device id) is
    /// provisioned: `Some(true)`, revoked: `Some(false)`, or never
    /// provisioned: `None`.
    ///
    /// # Errors
    /// The database fails.
    pub fn delivery_held(
        &self,
        delivery_id: &str,
        device: Option<(&str, &str)>,
    ) -> Result<Option<(DeliveryRow, Option<bool>)>, DbError> {
        if self.guarded() {
            return self.read_guarded(delivery_id, device);
        }
        let sql = match self.engine {
            Engine::Postgres => format!(
                "UPDATE deliveries SET version = version + 1 WHERE delivery_id = $1 \
                 RETURNING {DELIVERY_COLUMNS}, {DEVICE_ACTIVE}, {ONLINE_COLUMNS}"
            ),
            Engine::Sqlite => {
                format!(
                    "SELECT {DELIVERY_COLUMNS}, {DEVICE_ACTIVE}, {ONLINE_COLUMNS} \
                     FROM deliveries WHERE delivery_id = $1"
                )
            }
        };
        let Some((r, row, active)) =
            self.delivery_with_device(&sql, delivery_id, device, Vec::new())?
        else {
            return Ok(None);
        };
        self.hold_online(delivery_id, Online::from_row(&r, r.int("sequence")?)?);
        Ok(Some((row, active)))
    }

    /// Runs `sql`, a statement that reads the delivery `$1` with
    /// [`DELIVERY_COLUMNS`] and [`DEVICE_ACTIVE`] for the device (`$2`,
    /// `$3`), and `more` parameters from `$4` on: the whole row (for any other columns), the delivery, and
    /// whether the device is provisioned.
    pub(super) fn delivery_with_device(
        &self,
        sql: &str,
        delivery_id: &str,
        device: Option<(&str, &str)>,
        more: Vec<Value>,
    ) -> Result<Option<(Row, DeliveryRow, Option<bool>)>, DbError> {
        let (courier_id, device_id) = device.unwrap_or(("", ""));
        let mut params = vec![delivery_id.into(), courier_id.into(), device_id.into()];
        params.extend(more);
        let Some(r) = self.query_one(sql, &params)? else {
            return Ok(None);
        };
        let active = r.opt_int("device_active")?.map(|a| a == 1);
        let row = delivery_row(&r)?;
        Ok(Some((r, row, active)))
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
                         ({EVENT_COLUMNS}) SELECT delivery_id, $13, 'issued', $14 FROM added"
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
        self.move_online(delivery_id, stored(sequence)?)?;
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
        if let Some(done) = self.snapshot(|s| s.set_status(delivery_id, status, int(now)?)) {
            return done;
        }
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
        if let Some(done) =
            self.snapshot(|s| s.event(delivery_id, int(now)?, kind, detail.to_string()))
        {
            return done;
        }
        self.execute(
            &format!("INSERT INTO delivery_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4)"),
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
        let insert = format!(
            "INSERT INTO receipts ({RECEIPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
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
        let guarded = self.snapshot(|s| {
            s.receipt(
                r.delivery_id,
                r.sequence,
                r.decision,
                r.repeated,
                params.clone(),
            )
        });
        if let Some(done) = guarded {
            done?;
            if let Some(status) = r.status {
                self.set_status(r.delivery_id, status, r.now)?;
            }
            return self.event(r.delivery_id, r.now, "receipt", r.history);
        }
        match self.engine {
            Engine::Postgres => {
                params.push(r.status.unwrap_or_default().into());
                params.push(r.history.to_string().into());
                self.execute(
                    &format!(
                        "WITH kept AS ({insert}), changed AS (UPDATE deliveries SET status = $11, \
                         updated_at = $10 WHERE delivery_id = $1 AND $11 <> '') \
                         INSERT INTO delivery_events ({EVENT_COLUMNS}) \
                         VALUES ($1, $10, 'receipt', $12)"
                    ),
                    &params,
                )?;
            }
            Engine::Sqlite => {
                self.execute(&insert, &params)?;
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
        if let Some(done) = self.snapshot(|s| s.decision_recorded(delivery_id, sequence, decision))
        {
            return done;
        }
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

    /// A device's signed request, as the database sees it: whether the
    /// device is provisioned and not revoked, and then whether the
    /// signature is new (it is recorded until its `expires_at`, and expired
    /// ones are forgotten). On PostgreSQL this is one statement: sent
    /// outside a transaction ([`super::autocommit`]), a request from a
    /// device costs one round trip before its own work instead of five;
    /// in the request's transaction ([`super::admitted`]), the signature is
    /// kept only if the request's writes are.
    ///
    /// # Errors
    /// The database fails.
    pub fn admit(&self, a: &Admission) -> Result<DeviceRequest, DbError> {
        let Admission {
            courier_id,
            device_id,
            signature,
            expires_at,
            now,
        } = a;
        let (expires_at, now) = (*expires_at, *now);
        if self.engine == Engine::Sqlite {
            return Ok(match self.device_active(courier_id, device_id)? {
                None => DeviceRequest::NotProvisioned,
                Some(false) => DeviceRequest::Revoked,
                Some(true) if self.remember_signature(signature, expires_at, now)? => {
                    DeviceRequest::Fresh
                }
                Some(true) => DeviceRequest::Replayed,
            });
        }
        let row = self
            .query_one(
                "WITH forgotten AS (DELETE FROM request_signatures WHERE expires_at < $5), \
                 device AS (SELECT revoked_at FROM devices WHERE courier_id = $1 AND device_id = $2), \
                 added AS (INSERT INTO request_signatures (signature, expires_at) \
                  SELECT $3, $4 FROM device WHERE revoked_at IS NULL \
                  ON CONFLICT (signature) DO NOTHING RETURNING 1) \
                 SELECT (SELECT COUNT(*) FROM device) AS provisioned, \
                 (SELECT COUNT(*) FROM device WHERE revoked_at IS NULL) AS active, \
                 (SELECT COUNT(*) FROM added) AS added",
                &[
                    courier_id.as_str().into(),
                    device_id.as_str().into(),
                    signature.as_str().into(),
                    int(expires_at)?,
                    int(now)?,
                ],
            )?
            .ok_or(DbError::Gone)?;
        Ok(
            match (
                row.int("provisioned")?,
                row.int("active")?,
                row.int("added")?,
            ) {
                (0, _, _) => DeviceRequest::NotProvisioned,
                (_, 0, _) => DeviceRequest::Revoked,
                (_, _, 0) => DeviceRequest::Replayed,
                _ => DeviceRequest::Fresh,
            },
        )
    }

    /// Forgets the signatures of device requests that expired before `now`
    /// (a replay that old is refused by its timestamp).
    ///
    /// # Errors
    /// The database fails.
    pub fn forget_signatures(&self, now: u64) -> Result<u64, DbError> {
        self.execute(
            "DELETE FROM request_signatures WHERE expires_at < $1",
            &[int(now)?],
        )
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
        self.forget_signatures(now)?;
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
        let at = int(now)?;
        if let Some(done) = self.snapshot(|s| {
            s.outbox(event_id, payload, at.clone());
            Ok(())
        }) {
            return done;
        }
        self.execute(
            &format!("INSERT INTO webhook_outbox ({OUTBOX_COLUMNS}) VALUES ($1, $2, $3, 0, $4)"),
            &[event_id.into(), payload.into(), int(now)?, int(now)?],
        )
        .map(drop)
    }

    /// Claims up to `limit` due events for `lease_secs` (other instances
    /// skip them; if this one dies, they come due again when the lease
    /// ends, [`super::CLAIM_LEASE_SECS`] in the service): (event id, payload,
    /// tries so far), longest due first (a new event is due when it is made,
    /// so that is oldest first but for retries). The claim reads only due
    /// events, from the index of those not delivered (migration 0008),
    /// however many the outbox holds.
    ///
    /// # Errors
    /// The database fails.
    pub fn claim_events(
        &self,
        now: u64,
        limit: i64,
        lease_secs: u64,
    ) -> Result<Vec<(String, String, u64)>, DbError> {
        let rows = self.query(claim_sql(self.engine), &[int(now)?, limit.into()])?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((
                r.text("event_id")?,
                r.text("payload")?,
                r.unsigned("attempts")?,
            ));
        }
        if out.is_empty() {
            return Ok(out);
        }
        // One statement for the whole claim, the ids as a JSON array.
        let ids: Vec<&str> = out.iter().map(|(id, _, _)| id.as_str()).collect();
        let ids = serde_json::to_string(&ids)
            .map_err(|e| DbError::Data(format!("the claimed ids: {e}")))?;
        let update = match self.engine {
            Engine::Sqlite => {
                "UPDATE webhook_outbox SET next_attempt_at = $1 \
                 WHERE event_id IN (SELECT value FROM json_each($2))"
            }
            Engine::Postgres => {
                "UPDATE webhook_outbox SET next_attempt_at = $1 \
                 WHERE event_id IN (SELECT jsonb_array_elements_text($2::jsonb))"
            }
        };
        let claimed = self.execute(update, &[int(now.saturating_add(lease_secs))?, ids.into()])?;
        if claimed != u64::try_from(out.len()).unwrap_or(u64::MAX) {
            return Err(DbError::Data(format!(
                "a claim of {} events updated {claimed}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Gives back claimed events not sent, due again at `now`: each only
    /// while the claim that ends at `lease_end` is still this instance's
    /// (not sent, its due time the lease's end).
    ///
    /// # Errors
    /// The database fails.
    pub fn release_events(
        &self,
        event_ids: &[String],
        lease_end: u64,
        now: u64,
    ) -> Result<(), DbError> {
        for event_id in event_ids {
            self.execute(
                "UPDATE webhook_outbox SET next_attempt_at = $1 \
                 WHERE event_id = $2 AND next_attempt_at = $3 AND delivered_at IS NULL",
                &[int(now)?, event_id.into(), int(lease_end)?],
            )?;
        }
        Ok(())
    }

    /// The outbox's events not yet delivered (every instance's), and when
    /// the oldest of them was made (`None` when there is none).
    ///
    /// # Errors
    /// The database fails.
    pub fn outbox_backlog(&self) -> Result<(u64, Option<u64>), DbError> {
        let Some(row) = self.query_one(backlog_sql(self.engine), &[])? else {
            return Ok((0, None));
        };
        Ok((row.unsigned("waiting")?, row.opt_unsigned("oldest")?))
    }

    /// Deletes up to `limit` events delivered before `before`: the count
    /// deleted. An event delivered is only the record of a POST that
    /// succeeded; the decision it carried stays in `receipts` and the
    /// delivery's history. Events not delivered are never deleted.
    ///
    /// # Errors
    /// The database fails.
    pub fn forget_delivered_events(&self, before: u64, limit: i64) -> Result<u64, DbError> {
        self.execute(
            "DELETE FROM webhook_outbox WHERE event_id IN (SELECT event_id FROM webhook_outbox \
             WHERE delivered_at < $1 ORDER BY delivered_at LIMIT $2)",
            &[int(before)?, limit.into()],
        )
    }

    /// The database server's clock in milliseconds since 1970, read now
    /// (PostgreSQL's `clock_timestamp()`); `None` on SQLite, which reads
    /// this process's own clock.
    ///
    /// # Errors
    /// The database fails.
    pub fn database_clock_ms(&self) -> Result<Option<i64>, DbError> {
        if self.engine == Engine::Sqlite {
            return Ok(None);
        }
        self.query_one(
            "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS ms",
            &[],
        )?
        .map(|row| row.int("ms"))
        .transpose()
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

    /// Records `fingerprint` for the backend key `key_id` unless one is
    /// recorded; the one recorded (this one, or the first instance's).
    ///
    /// # Errors
    /// The database fails.
    pub fn key_fingerprint(
        &self,
        key_id: &str,
        fingerprint: &str,
        now: u64,
    ) -> Result<String, DbError> {
        self.execute(
            "INSERT INTO key_fingerprints (key_id, fingerprint, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id) DO NOTHING",
            &[key_id.into(), fingerprint.into(), int(now)?],
        )?;
        self.query_one(
            "SELECT fingerprint FROM key_fingerprints WHERE key_id = $1",
            &[key_id.into()],
        )?
        .ok_or(DbError::Gone)?
        .text("fingerprint")
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
