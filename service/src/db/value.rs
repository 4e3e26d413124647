//! Parameters and result rows as both engines give them, and one open
//! connection of either engine.

use std::sync::Arc;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgRow};
use sqlx::{Column as _, PgConnection, Postgres, Row as _, TypeInfo as _};

use super::DbError;

/// A parameter or a column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// NULL (bound as text on PostgreSQL: see `bind_postgres`).
    Null,
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Int(i64::from(b))
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_string())
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Value::Text(text.clone())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

/// A `u64` (a time, a sequence) as a stored integer.
pub(super) fn stored(value: u64) -> Result<i64, DbError> {
    i64::try_from(value).map_err(|_| DbError::Data(format!("{value} is too large to store")))
}

/// A `u64` (a time, a sequence) as a stored integer [`Value`].
pub(super) fn int(value: u64) -> Result<Value, DbError> {
    stored(value).map(Value::Int)
}

/// One result row: its columns by name.
#[derive(Debug)]
pub struct Row {
    pub(super) cols: Vec<(String, Value)>,
}

impl Row {
    pub(super) fn value(&self, name: &str) -> Result<&Value, DbError> {
        self.cols
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| DbError::Data(format!("no column {name}")))
    }

    pub(super) fn opt_int(&self, name: &str) -> Result<Option<i64>, DbError> {
        match self.value(name)? {
            Value::Int(n) => Ok(Some(*n)),
            Value::Null => Ok(None),
            Value::Text(_) => Err(DbError::Data(format!("{name} is not an integer"))),
        }
    }

    pub(super) fn int(&self, name: &str) -> Result<i64, DbError> {
        self.opt_int(name)?
            .ok_or_else(|| DbError::Data(format!("{name} is null")))
    }

    pub(super) fn unsigned<T: TryFrom<i64>>(&self, name: &str) -> Result<T, DbError> {
        self.opt_unsigned(name)?
            .ok_or_else(|| DbError::Data(format!("{name} is null")))
    }

    pub(super) fn opt_unsigned<T: TryFrom<i64>>(&self, name: &str) -> Result<Option<T>, DbError> {
        self.opt_int(name)?
            .map(|n| {
                T::try_from(n).map_err(|_| DbError::Data(format!("{name} is {n}, out of range")))
            })
            .transpose()
    }

    pub(super) fn text(&self, name: &str) -> Result<String, DbError> {
        match self.value(name)? {
            Value::Text(t) => Ok(t.clone()),
            _ => Err(DbError::Data(format!("{name} is not text"))),
        }
    }
}

/// An open transaction's connection.
pub(super) enum Conn {
    /// The SQLite writer's connection, inside its transaction and savepoint.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL worker's connection inside its transaction, driven by
    /// the worker's own runtime.
    Postgres {
        conn: Box<PgConnection>,
        runtime: Arc<tokio::runtime::Runtime>,
        /// Set until the first statement of a request (its `BEGIN`, or the
        /// one statement of an autocommit request) on a connection kept from
        /// an earlier request: if that connection died meanwhile (the server
        /// restarted), the statement is sent again once on a new connection.
        redial: Option<Arc<PgConnectOptions>>,
    },
}

/// Whether the connection itself failed, as opposed to the statement: the
/// socket or the protocol broke, or PostgreSQL ended the connection's
/// backend (SQLSTATE 57P01, a shutdown, restart or an administrator's
/// `pg_terminate_backend`; 57P02, another backend crashed; 57P05, the
/// connection sat idle longer than the `idle_session_timeout` a DBA set). A
/// backend ended while the connection sat idle answers the next statement
/// with that error instead of running it.
pub(super) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => ends_connection(db.as_ref()),
        _ => false,
    }
}

/// Whether the database error `db` is PostgreSQL ending the connection's
/// backend (SQLSTATE 57P01, 57P02 or 57P05; see [`connection_lost`]).
pub(super) fn ends_connection(db: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P05"))
}

/// Binds `$1`, `$2`, ... by name, so their order in the text does not matter.
fn bind_sqlite(stmt: &mut rusqlite::CachedStatement<'_>, params: &[Value]) -> Result<(), DbError> {
    for (i, value) in params.iter().enumerate() {
        let name = format!("${}", i.saturating_add(1));
        let index = stmt
            .parameter_index(&name)?
            .ok_or_else(|| DbError::Data(format!("the statement has no {name}")))?;
        match value {
            Value::Int(n) => stmt.raw_bind_parameter(index, n)?,
            Value::Text(t) => stmt.raw_bind_parameter(index, t)?,
            Value::Null => stmt.raw_bind_parameter(index, rusqlite::types::Null)?,
        }
    }
    Ok(())
}

fn bind_postgres<'q>(
    mut query: sqlx::query::Query<'q, Postgres, PgArguments>,
    params: &'q [Value],
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    for value in params {
        query = match value {
            Value::Int(n) => query.bind(*n),
            Value::Text(t) => query.bind(t.as_str()),
            // As text: PostgreSQL keeps a statement's parameter types from
            // its first use, so a NULL must have the type its column's values
            // have, and the only NULL parameters are text (a delivery's
            // online state, `online.rs`).
            Value::Null => query.bind(None::<&str>),
        };
    }
    query
}

impl Conn {
    /// Runs `op` on the PostgreSQL connection; see the `redial` field.
    fn postgres<T>(
        &mut self,
        op: impl Fn(&mut PgConnection, &tokio::runtime::Runtime) -> Result<T, sqlx::Error>,
    ) -> Result<T, DbError> {
        let Conn::Postgres {
            conn,
            runtime,
            redial,
        } = self
        else {
            return Err(DbError::Gone);
        };
        let outcome = op(conn, runtime);
        match (outcome, redial.take()) {
            (Err(e), Some(options)) if connection_lost(&e) => {
                tracing::warn!(error = %e, "PostgreSQL: a kept connection was lost; connecting again");
                *conn = super::postgres::connect(&options, runtime).ok_or(DbError::Sqlx(e))?;
                Ok(op(conn, runtime)?)
            }
            (outcome, _) => Ok(outcome?),
        }
    }

    pub(super) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        match self {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                bind_sqlite(&mut stmt, params)?;
                let changed = stmt.raw_execute()?;
                Ok(u64::try_from(changed).unwrap_or(u64::MAX))
            }
            Conn::Postgres { .. } => self.postgres(|conn, runtime| {
                let query = bind_postgres(sqlx::query(sql), params);
                runtime
                    .block_on(query.execute(conn))
                    .map(|done| done.rows_affected())
            }),
        }
    }

    pub(super) fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        match self {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                bind_sqlite(&mut stmt, params)?;
                let names: Vec<String> =
                    stmt.column_names().into_iter().map(String::from).collect();
                let mut rows = stmt.raw_query();
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut cols = Vec::with_capacity(names.len());
                    for (i, name) in names.iter().enumerate() {
                        use rusqlite::types::ValueRef;
                        let value = match row.get_ref(i)? {
                            ValueRef::Integer(n) => Value::Int(n),
                            ValueRef::Text(t) => Value::Text(
                                String::from_utf8(t.to_vec())
                                    .map_err(|_| DbError::Data(format!("{name} is not UTF-8")))?,
                            ),
                            ValueRef::Null => Value::Null,
                            ValueRef::Real(_) | ValueRef::Blob(_) => {
                                return Err(DbError::Data(format!("{name} has an unexpected type")))
                            }
                        };
                        cols.push((name.clone(), value));
                    }
                    out.push(Row { cols });
                }
                Ok(out)
            }
            Conn::Postgres { .. } => {
                let rows = self.postgres(|conn, runtime| {
                    let query = bind_postgres(sqlx::query(sql), params);
                    runtime.block_on(query.fetch_all(conn))
                })?;
                rows.iter().map(postgres_row).collect()
            }
        }
    }
}

/// A PostgreSQL row as the engines share it: integers of any width as
/// [`Value::Int`], text as [`Value::Text`]; any other type is an error.
fn postgres_row(row: &PgRow) -> Result<Row, DbError> {
    let cols = row
        .columns()
        .iter()
        .map(|col| {
            let i = col.ordinal();
            let value = match col.type_info().name() {
                "INT8" => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
                "INT4" => row
                    .try_get::<Option<i32>, _>(i)?
                    .map(|n| Value::Int(i64::from(n))),
                "INT2" => row
                    .try_get::<Option<i16>, _>(i)?
                    .map(|n| Value::Int(i64::from(n))),
                "BOOL" => row
                    .try_get::<Option<bool>, _>(i)?
                    .map(|b| Value::Int(i64::from(b))),
                "TEXT" | "VARCHAR" => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
                other => {
                    return Err(DbError::Data(format!(
                        "{} has an unexpected type {other}",
                        col.name()
                    )))
                }
            };
            Ok((col.name().to_string(), value.unwrap_or(Value::Null)))
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Row { cols })
}
