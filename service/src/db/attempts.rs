//! The core's attempt store on a request's transaction: what the core
//! records commits with what the service records, or neither does.

use delivery_otp::store::attempts::remember_first_unless_in_turn;
use delivery_otp::{AttemptStore, OnlineEntry, OnlineStep, Unless};

use super::online::Part;
use super::value::{int, stored};
use super::{DbError, Engine, Tx, Value};

/// The columns of a counted attempt, in the order its parameters come.
const ATTEMPT_COLUMNS: &str = "scope, attempt, position, expires_at";
/// The columns of a remembered value, in the order its parameters come.
pub(super) const REMEMBERED_COLUMNS: &str = "key, value, expires_at";

/// The statement that counts an attempt: scope, attempt, position, expiry.
pub(super) fn count_attempt() -> String {
    format!("INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4)")
}

/// Where a new attempt goes, from the position of this attempt if it was
/// counted (`known`) and how many were: `Ok(position)` for a new one
/// counted now; `Err` with the answer when nothing is counted (the known
/// position, or `None` past the limit).
fn place(known: Option<i64>, counted: i64, limit: u32) -> Result<i64, Option<i64>> {
    match known {
        Some(known) => Err(Some(known)),
        None if counted >= i64::from(limit) => Err(None),
        None => Ok(counted.saturating_add(1)),
    }
}

/// An attempt's position as the core counts it.
fn position(p: i64) -> delivery_otp::Result<u32> {
    u32::try_from(p).map_err(|_| storage(DbError::Data(format!("attempt position {p}"))))
}

fn storage(e: DbError) -> delivery_otp::Error {
    tracing::error!(error = %e, "attempt store");
    delivery_otp::Error::StateStorage {
        reason: "the database failed".into(),
    }
}

impl Tx {
    /// The value an insert that did nothing found under `key`: a new
    /// statement sees it, whoever kept it.
    fn kept_before(&self, key: &str) -> delivery_otp::Result<String> {
        self.recall(key)?
            .ok_or_else(|| storage(DbError::Data(format!("{key} was kept and is gone"))))
    }
}

/// The core's attempt store, in this transaction.
impl AttemptStore for Tx {
    /// An online check in two statements on PostgreSQL (three at most on
    /// SQLite): what ended the code, the entry's position and the count read
    /// together, then the entry and (when it ends the code) its record
    /// written. The service checks codes only in `verifyCode`, which holds
    /// the delivery first ([`Tx::delivery_held`]), so two checks of one
    /// code never interleave. In a guarded request, answered from what was
    /// read with the delivery, the writes queued.
    fn check_online(&self, entry: &OnlineEntry<'_>) -> delivery_otp::Result<OnlineStep> {
        let expires = stored(entry.expires_at).map_err(storage)?;
        let expires_at = Value::Int(expires);
        // What ended the code, the entry's position if it was counted, and
        // the count: from a guarded request's snapshot, from the row of a
        // delivery this request holds, or read now.
        let read = self.snapshot(|s| {
            let (known, counted) = s.attempts(entry.scope, entry.attempt)?;
            Ok((s.recall(entry.end_key)?, known, counted))
        });
        let in_row = read.is_none()
            && self.in_row(entry.scope, Part::Attempts)
            && self.in_row(entry.end_key, Part::End);
        let (ended, known, counted) = match read {
            Some(read) => read.map_err(storage)?,
            None if in_row => self
                .with_online(entry.scope, |o| {
                    let (known, counted) = o.counted(entry.attempt)?;
                    Ok(((o.end.clone(), known, counted), false))
                })
                .map_err(storage)?,
            None => self.online_found(entry).map_err(storage)?,
        };
        if let Some(first) = ended {
            return Ok(OnlineStep::AlreadyEnded(first));
        }
        let (at, new) = match place(known, counted, entry.limit) {
            Ok(at) => (at, true),
            Err(Some(known)) => (known, false),
            Err(None) => return Ok(OnlineStep::Locked),
        };
        let value = entry
            .ends
            .map(|(before, after)| format!("{before}{at}{after}"));
        let first = match self.snapshot(|s| {
            if new {
                s.count_attempt(entry.scope, entry.attempt, at, expires_at.clone())?;
            }
            match &value {
                Some(value) => s.remember_first(entry.end_key, value, expires_at.clone()),
                None => Ok(None),
            }
        }) {
            Some(first) => first.map_err(storage)?,
            // Nothing ended the code when it was read, and the delivery is
            // held: the row's state is this request's to write.
            None if in_row => self
                .with_online(entry.scope, |o| {
                    if new {
                        o.attempts.push((entry.attempt.to_string(), at));
                    }
                    if let Some(value) = &value {
                        o.end = Some(value.clone());
                    }
                    o.expire_at(expires);
                    Ok((None, new || value.is_some()))
                })
                .map_err(storage)?,
            None => self.online_write(entry, at, new, value.as_deref(), expires_at)?,
        };
        let at = position(at)?;
        Ok(match (first, value) {
            (Some(first), _) => OnlineStep::AlreadyEnded(first),
            (None, Some(_)) => OnlineStep::Ended(at),
            (None, None) => OnlineStep::Counted(at),
        })
    }

    /// On PostgreSQL one statement: what is under `unless`, and the value
    /// kept unless there was one.
    fn remember_first_unless(
        &self,
        unless: &str,
        key: &str,
        value: &str,
        expires_at: u64,
    ) -> delivery_otp::Result<Unless> {
        if self.engine == Engine::Sqlite
            || self.guarded()
            || self.in_row(unless, Part::End)
            || self.in_row(key, Part::End)
        {
            return remember_first_unless_in_turn(self, unless, key, value, expires_at);
        }
        let row = self
            .query_one(
                "WITH found AS (SELECT value FROM remembered WHERE key = $1), \
                 added AS (INSERT INTO remembered (key, value, expires_at) SELECT $2, $3, $4 \
                 WHERE NOT EXISTS (SELECT 1 FROM found) ON CONFLICT (key) DO NOTHING RETURNING key) \
                 SELECT (SELECT value FROM found) AS found, (SELECT key FROM added) AS added",
                &[
                    unless.into(),
                    key.into(),
                    value.into(),
                    int(expires_at).map_err(storage)?,
                ],
            )
            .and_then(|row| row.ok_or(DbError::Gone))
            .map_err(storage)?;
        if let Value::Text(found) = row.value("found").map_err(storage)? {
            return Ok(Unless::Found(found.clone()));
        }
        if let Value::Text(_) = row.value("added").map_err(storage)? {
            return Ok(Unless::Remembered(None));
        }
        Ok(Unless::Remembered(Some(self.kept_before(key)?)))
    }

    fn record_attempt(
        &self,
        scope: &str,
        attempt: &str,
        limit: u32,
        expires_at: u64,
    ) -> delivery_otp::Result<Option<u32>> {
        let expires = stored(expires_at).map_err(storage)?;
        // The attempt's position if it was counted, and the count: from a
        // guarded request's snapshot, from the row of a delivery this
        // request holds, or read now with the scope locked.
        let read = self.snapshot(|s| s.attempts(scope, attempt));
        let in_row = read.is_none() && self.in_row(scope, Part::Attempts);
        let (known, counted) = match read {
            Some(read) => read,
            None if in_row => self.with_online(scope, |o| Ok((o.counted(attempt)?, false))),
            None => self
                .lock(scope)
                .and_then(|()| self.attempts_found(scope, attempt)),
        }
        .map_err(storage)?;
        let at = match place(known, counted, limit) {
            Ok(at) => at,
            Err(answer) => return answer.map(position).transpose(),
        };
        match self.snapshot(|s| s.count_attempt(scope, attempt, at, Value::Int(expires))) {
            Some(queued) => queued,
            None if in_row => self.with_online(scope, |o| {
                o.attempts.push((attempt.to_string(), at));
                o.expire_at(expires);
                Ok(((), true))
            }),
            None => self
                .execute(
                    &count_attempt(),
                    &[scope.into(), attempt.into(), at.into(), Value::Int(expires)],
                )
                .map(drop),
        }
        .map_err(storage)?;
        position(at).map(Some)
    }

    fn remember_first(
        &self,
        key: &str,
        value: &str,
        expires_at: u64,
    ) -> delivery_otp::Result<Option<String>> {
        if let Some(queued) = self.snapshot(|s| s.remember_first(key, value, int(expires_at)?)) {
            return queued.map_err(storage);
        }
        if self.in_row(key, Part::End) {
            let expires_at = stored(expires_at).map_err(storage)?;
            return self
                .with_online(key, |o| {
                    if let Some(first) = &o.end {
                        return Ok((Some(first.clone()), false));
                    }
                    o.end = Some(value.to_string());
                    o.expire_at(expires_at);
                    Ok((None, true))
                })
                .map_err(storage);
        }
        let added = self
            .execute(
                &format!(
                    "INSERT INTO remembered ({REMEMBERED_COLUMNS}) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO NOTHING"
                ),
                &[key.into(), value.into(), int(expires_at).map_err(storage)?],
            )
            .map_err(storage)?;
        if added == 1 {
            return Ok(None);
        }
        self.kept_before(key).map(Some)
    }

    /// One statement for all the keys.
    fn recall_many(&self, keys: &[&str]) -> delivery_otp::Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(read) = self.snapshot(|s| keys.iter().map(|k| s.recall(k)).collect()) {
            return read.map_err(storage);
        }
        if keys.iter().any(|k| self.in_row(k, Part::End)) {
            // Those kept in a row from it, the others in one statement.
            let rest: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| !self.in_row(k, Part::End))
                .collect();
            let found: std::collections::HashMap<&str, Option<String>> =
                rest.iter().copied().zip(self.recall_many(&rest)?).collect();
            return keys
                .iter()
                .map(|k| match found.get(k) {
                    Some(value) => Ok(value.clone()),
                    None => self.recall(k),
                })
                .collect();
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
        let queued = self.snapshot(|s| {
            items
                .iter()
                .map(|(key, value, expires_at)| s.remember_first(key, value, int(*expires_at)?))
                .collect()
        });
        if let Some(queued) = queued {
            return queued.map_err(storage);
        }
        if items.iter().any(|(k, _, _)| self.in_row(k, Part::End)) {
            // One at a time: each as `remember_first` keeps it.
            return items
                .iter()
                .map(|(key, value, expires_at)| self.remember_first(key, value, *expires_at))
                .collect();
        }
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
        if let Some(read) = self.snapshot(|s| s.recall(key)) {
            return read.map_err(storage);
        }
        if self.in_row(key, Part::End) {
            return self
                .with_online(key, |o| Ok((o.end.clone(), false)))
                .map_err(storage);
        }
        self.query_one("SELECT value FROM remembered WHERE key = $1", &[key.into()])
            .and_then(|row| row.map(|r| r.text("value")).transpose())
            .map_err(storage)
    }
}

impl Tx {
    /// An attempt's position if it was counted in `scope`, and how many
    /// were, in one statement.
    fn attempts_found(&self, scope: &str, attempt: &str) -> Result<(Option<i64>, i64), DbError> {
        let found = self
            .query_one(
                "SELECT (SELECT position FROM attempts WHERE scope = $1 AND attempt = $2) AS known, \
                 (SELECT COUNT(*) FROM attempts WHERE scope = $1) AS counted",
                &[scope.into(), attempt.into()],
            )?
            .ok_or(DbError::Gone)?;
        Ok((found.opt_int("known")?, found.int("counted")?))
    }

    /// An online check's reading, in one statement: what ended the code,
    /// the entry's position if it was counted, and the count.
    fn online_found(
        &self,
        entry: &OnlineEntry<'_>,
    ) -> Result<(Option<String>, Option<i64>, i64), DbError> {
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
            )?
            .ok_or(DbError::Gone)?;
        let ended = match found.value("ended")? {
            Value::Text(first) => Some(first.clone()),
            _ => None,
        };
        Ok((ended, found.opt_int("known")?, found.int("counted")?))
    }

    /// An online check's writing: the entry at `position` when it is `new`,
    /// and `value` under the end key when the entry ends the code (on
    /// PostgreSQL both in one statement); what was kept there first.
    fn online_write(
        &self,
        entry: &OnlineEntry<'_>,
        position: i64,
        new: bool,
        value: Option<&str>,
        expires_at: Value,
    ) -> delivery_otp::Result<Option<String>> {
        let count = count_attempt();
        let attempt = [
            entry.scope.into(),
            entry.attempt.into(),
            position.into(),
            expires_at,
        ];
        match (value, new, self.engine) {
            (None, false, _) => Ok(None),
            (None, true, _) => {
                self.execute(&count, &attempt).map_err(storage)?;
                Ok(None)
            }
            (Some(value), true, Engine::Postgres) => {
                let mut params = attempt.to_vec();
                params.push(entry.end_key.into());
                params.push(value.into());
                let kept = self
                    .execute(
                        &format!(
                            "WITH counted AS ({count}) INSERT INTO remembered \
                             ({REMEMBERED_COLUMNS}) VALUES ($5, $6, $4) ON CONFLICT (key) DO NOTHING"
                        ),
                        &params,
                    )
                    .map_err(storage)?;
                if kept == 1 {
                    Ok(None)
                } else {
                    self.kept_before(entry.end_key).map(Some)
                }
            }
            (Some(value), new, _) => {
                if new {
                    self.execute(&count, &attempt).map_err(storage)?;
                }
                self.remember_first(entry.end_key, value, entry.expires_at)
            }
        }
    }
}
