//! The online state of a delivery's current code, kept in the delivery's
//! row (migration 0006): the record that ended the code (the core's
//! `online:<sequence>:<delivery>` key), the attempts counted for it
//! (`attempts:<sequence>:<delivery>`) and the latest expiry given with
//! them. An online check then sets columns in the update of the delivery it
//! makes anyway instead of inserting rows into `remembered` and `attempts`.
//!
//! Only the current sequence lives in the row, and only while a request
//! holds the delivery ([`Tx::delivery_held`], or a guarded request's read):
//! the store's keys for it are answered from the row read then and written
//! back to it. Keys of other sequences, and of deliveries the request does
//! not hold, stay in the tables. A resend or a reassignment moves the row's
//! state into the tables before it changes the sequence
//! ([`Tx::move_online`]), so nothing kept for an earlier code is lost.

use std::collections::HashMap;
use std::sync::PoisonError;

use super::attempts::{count_attempt, REMEMBERED_COLUMNS};
use super::{DbError, Row, Tx, Value};

/// The online columns of `deliveries`, in a `SELECT` or `RETURNING`.
pub(super) const ONLINE_COLUMNS: &str = "online_end, online_attempts, online_expires_at";

/// A delivery's online state for its current sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Online {
    /// The delivery's current sequence.
    pub(super) sequence: i64,
    /// The value that ended the code, if one did.
    pub(super) end: Option<String>,
    /// The attempts counted: (attempt, position).
    pub(super) attempts: Vec<(String, i64)>,
    /// The latest expiry given with them (Unix seconds).
    pub(super) expires_at: i64,
}

/// Which of a delivery's online records a store key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// `online:<sequence>:<delivery>`: what ended the code.
    End,
    /// `attempts:<sequence>:<delivery>`: the attempts counted.
    Attempts,
}

/// The part, sequence and delivery a store key names, for the two kinds
/// kept in the row; `None` for any other key.
pub(super) fn parse(key: &str) -> Option<(Part, i64, &str)> {
    let (kind, rest) = key.split_once(':')?;
    let part = match kind {
        "online" => Part::End,
        "attempts" => Part::Attempts,
        _ => return None,
    };
    let (sequence, delivery_id) = rest.split_once(':')?;
    Some((part, sequence.parse().ok()?, delivery_id))
}

impl Online {
    /// The state read with a delivery's row ([`ONLINE_COLUMNS`]).
    pub(super) fn from_row(r: &Row, sequence: i64) -> Result<Online, DbError> {
        let end = match r.value("online_end")? {
            Value::Text(t) => Some(t.clone()),
            Value::Null => None,
            Value::Int(_) => return Err(DbError::Data("online_end is not text".into())),
        };
        let attempts = match r.value("online_attempts")? {
            Value::Text(json) => serde_json::from_str(json)
                .map_err(|e| DbError::Data(format!("online_attempts: {e}")))?,
            Value::Null => Vec::new(),
            Value::Int(_) => return Err(DbError::Data("online_attempts is not text".into())),
        };
        Ok(Online {
            sequence,
            end,
            attempts,
            expires_at: r.int("online_expires_at")?,
        })
    }

    /// The attempts as the row keeps them (`NULL` for none).
    pub(super) fn attempts_value(&self) -> Result<Value, DbError> {
        if self.attempts.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::to_string(&self.attempts)
            .map(Value::Text)
            .map_err(|e| DbError::Data(format!("online_attempts: {e}")))
    }

    /// The end value as the row keeps it.
    pub(super) fn end_value(&self) -> Value {
        self.end.clone().map_or(Value::Null, Value::Text)
    }

    /// The position of `attempt` if it was counted, and how many were.
    pub(super) fn counted(&self, attempt: &str) -> Result<(Option<i64>, i64), DbError> {
        let known = self
            .attempts
            .iter()
            .find(|(a, _)| a == attempt)
            .map(|(_, position)| *position);
        let count = i64::try_from(self.attempts.len())
            .map_err(|_| DbError::Data("too many attempts".into()))?;
        Ok((known, count))
    }

    /// Takes a later expiry.
    pub(super) fn expire_at(&mut self, expires_at: i64) {
        self.expires_at = self.expires_at.max(expires_at);
    }
}

/// The online states of the deliveries a request holds, by delivery id.
pub(super) type Held = HashMap<String, Online>;

impl Tx {
    /// Notes the online state read with a delivery this request holds.
    pub(super) fn hold_online(&self, delivery_id: &str, online: Online) {
        self.online
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(delivery_id.to_string(), online);
    }

    /// Whether `key` is `part` of the current sequence of a delivery this
    /// request holds: then it lives in the delivery's row.
    pub(super) fn in_row(&self, key: &str, part: Part) -> bool {
        let Some((p, sequence, delivery_id)) = parse(key) else {
            return false;
        };
        p == part
            && self
                .online
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(delivery_id)
                .is_some_and(|o| o.sequence == sequence)
    }

    /// Runs `f` on the online state `key` names (which [`Tx::in_row`] said
    /// lives in a row) and, when `f` says it changed it, writes it back to
    /// the delivery's row.
    pub(super) fn with_online<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut Online) -> Result<(R, bool), DbError>,
    ) -> Result<R, DbError> {
        let delivery_id = parse(key)
            .map(|(_, _, d)| d)
            .ok_or_else(|| DbError::Data(format!("{key} is not kept in a row")))?;
        let mut held = self.online.lock().unwrap_or_else(PoisonError::into_inner);
        let online = held
            .get_mut(delivery_id)
            .ok_or_else(|| DbError::Data(format!("delivery {delivery_id} is not held")))?;
        let mut changed = online.clone();
        let (out, write) = f(&mut changed)?;
        if write {
            self.execute(
                "UPDATE deliveries SET online_end = $1, online_attempts = $2, \
                 online_expires_at = $3 WHERE delivery_id = $4",
                &[
                    changed.end_value(),
                    changed.attempts_value()?,
                    Value::Int(changed.expires_at),
                    delivery_id.into(),
                ],
            )?;
            *online = changed;
        }
        Ok(out)
    }

    /// Moves the online state kept in the delivery's row (its current
    /// sequence's) into the tables and empties the row's, before a resend
    /// or a reassignment changes the sequence: the records of the earlier
    /// code stay where the store finds them. The delivery must be held
    /// ([`Tx::delivery_held`]); its row then holds the (empty) state of
    /// `next_sequence`.
    pub(super) fn move_online(&self, delivery_id: &str, next_sequence: i64) -> Result<(), DbError> {
        let online = self
            .online
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(delivery_id)
            .cloned()
            .ok_or_else(|| DbError::Data(format!("delivery {delivery_id} is not held")))?;
        let expires_at = Value::Int(online.expires_at);
        if let Some(end) = &online.end {
            self.execute(
                &format!("INSERT INTO remembered ({REMEMBERED_COLUMNS}) VALUES ($1, $2, $3)"),
                &[
                    format!("online:{}:{delivery_id}", online.sequence).into(),
                    end.into(),
                    expires_at.clone(),
                ],
            )?;
        }
        let scope = format!("attempts:{}:{delivery_id}", online.sequence);
        for (attempt, position) in &online.attempts {
            self.execute(
                &count_attempt(),
                &[
                    scope.as_str().into(),
                    attempt.into(),
                    Value::Int(*position),
                    expires_at.clone(),
                ],
            )?;
        }
        self.execute(
            "UPDATE deliveries SET online_end = NULL, online_attempts = NULL, \
             online_expires_at = 0 WHERE delivery_id = $1",
            &[delivery_id.into()],
        )?;
        self.hold_online(
            delivery_id,
            Online {
                sequence: next_sequence,
                ..Online::default()
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Part};

    #[test]
    fn only_online_and_attempts_keys_name_a_row() {
        assert_eq!(parse("online:3:d1"), Some((Part::End, 3, "d1")));
        assert_eq!(
            parse("attempts:0:PKG:1"),
            Some((Part::Attempts, 0, "PKG:1"))
        );
        assert_eq!(parse("receipt:3:d1"), None);
        assert_eq!(parse("online:x:d1"), None);
        assert_eq!(parse("online:3"), None);
    }
}
