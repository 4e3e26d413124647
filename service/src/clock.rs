//! This instance's clock against the database server's. Every instance
//! judges times with its own clock: codes' and tickets' validity, device
//! signatures (within 300 s), webhook claims (2 s to spare). Instances
//! whose clocks disagree break those promises between them, so each one
//! compares its clock with PostgreSQL's at start and every minute, says
//! how far off it is in `/metrics`, and warns when it is off by more than
//! [`crate::webhook::CLOCK_MARGIN_SECS`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::db::{self, Db};

/// How often the clocks are compared.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// This process's clock in milliseconds since 1970.
fn local_ms() -> Option<i64> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// How far the database's clock is ahead of this instance's (negative:
/// behind), in milliseconds, and how uncertain that is (half the time the
/// reading took). `None` on SQLite (one clock) or when a clock cannot be
/// read as a number.
///
/// # Errors
/// The database fails.
pub async fn offset_ms(db: &Db) -> Result<Option<(i64, i64)>, crate::problem::Problem> {
    let before = local_ms();
    let theirs = db::autocommit(db, |tx| Ok(tx.database_clock_ms()?)).await?;
    let after = local_ms();
    let (Some(theirs), Some(before), Some(after)) = (theirs, before, after) else {
        return Ok(None);
    };
    let half = after.checked_sub(before).map(|took| took / 2);
    let mid = half.and_then(|half| before.checked_add(half));
    Ok(mid
        .zip(half)
        .and_then(|(mid, half)| Some((theirs.checked_sub(mid)?, half))))
}

/// The warning for an offset beyond the margin, if it is.
pub fn warning(offset_ms: i64, uncertainty_ms: i64) -> Option<String> {
    let margin = i64::try_from(crate::webhook::CLOCK_MARGIN_SECS)
        .ok()?
        .checked_mul(1000)?
        .checked_add(uncertainty_ms)?;
    if offset_ms.unsigned_abs() <= margin.unsigned_abs() {
        return None;
    }
    let how = if offset_ms > 0 { "behind" } else { "ahead of" };
    #[allow(clippy::cast_precision_loss)]
    let secs = offset_ms.unsigned_abs() as f64 / 1000.0;
    Some(format!(
        "this instance's clock is {secs:.1} s {how} PostgreSQL's: every instance judges \
         codes, tickets, device signatures (300 s) and webhook claims ({} s to spare) by its \
         own clock, so keep the instances' clocks synchronized (NTP)",
        crate::webhook::CLOCK_MARGIN_SECS
    ))
}

/// Compares the clocks now and every [`CHECK_EVERY`]: the gauge
/// `delivery_otp_clock_offset_seconds` (the database's clock less this
/// instance's), and a warning while they are further apart than the
/// margin. Nothing on SQLite.
pub async fn watch(db: Db) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    loop {
        every.tick().await;
        match offset_ms(&db).await {
            Ok(Some((offset, uncertainty))) => {
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("delivery_otp_clock_offset_seconds").set(offset as f64 / 1000.0);
                if let Some(warning) = warning(offset, uncertainty) {
                    tracing::warn!("{warning}");
                }
            }
            Ok(None) => return,
            // The database layer logs its failures; the next turn tries again.
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_names_the_direction_and_allows_the_margin_and_the_reading() {
        assert_eq!(warning(2_000, 0), None);
        assert_eq!(warning(-2_400, 500), None);
        let ahead = warning(-30_000, 3).unwrap();
        assert!(ahead.starts_with("this instance's clock is 30.0 s ahead of PostgreSQL's"));
        let behind = warning(2_501, 500).unwrap();
        assert!(behind.contains("2.5 s behind PostgreSQL's"), "{behind}");
        // No overflow at the ends.
        assert!(warning(i64::MIN, 0).is_some());
        assert!(warning(i64::MAX, i64::MAX).is_none());
    }
}
