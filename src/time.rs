//! Points in time as tickets, receipts and outcomes hold them: whole seconds
//! since 1970-01-01T00:00:00Z.

use core::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time, in whole seconds since 1970-01-01T00:00:00Z (unix time).
///
/// Its JSON form is the number of seconds. With the `ffi` feature Kotlin sees
/// it as `java.time.Instant` and Swift as `Date`; a time from there counts its
/// whole seconds (the fraction is dropped, as the wire formats keep seconds),
/// and one before 1970 is an `InvalidNumber` error.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(u64);

impl UnixTime {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: UnixTime = UnixTime(0);

    /// The latest time Kotlin's `Instant` can hold (in the year 1,000,000,000).
    /// Later times, which only forged input carries, reach Kotlin and Swift as
    /// this one.
    pub const FOREIGN_MAX: UnixTime = UnixTime(31_556_889_864_403_199);

    /// The time `secs` seconds after 1970-01-01T00:00:00Z.
    pub const fn from_secs(secs: u64) -> Self {
        UnixTime(secs)
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub const fn secs(self) -> u64 {
        self.0
    }

    /// The system clock's time now (1970 if the clock is set before it).
    pub fn now() -> Self {
        SystemTime::now().into()
    }
}

/// A span in whole seconds, as tickets, settings and key URIs keep it.
///
/// # Errors
/// [`crate::Error::InvalidNumber`] naming `what` for a fraction of a second.
pub(crate) fn whole_secs(span: Duration, what: &str) -> crate::Result<u64> {
    if span.subsec_nanos() != 0 {
        return Err(crate::Error::InvalidNumber {
            what: what.to_string(),
            reason: "it is whole seconds".to_string(),
        });
    }
    Ok(span.as_secs())
}

impl From<SystemTime> for UnixTime {
    /// Whole seconds since 1970; a time before 1970 counts as 1970 itself.
    fn from(time: SystemTime) -> Self {
        UnixTime(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }
}

impl From<UnixTime> for SystemTime {
    /// The same instant, or the latest the platform can hold past that.
    fn from(time: UnixTime) -> Self {
        let latest = || {
            UNIX_EPOCH
                .checked_add(Duration::from_secs(UnixTime::FOREIGN_MAX.0))
                .unwrap_or(UNIX_EPOCH)
        };
        UNIX_EPOCH
            .checked_add(Duration::from_secs(time.0))
            .unwrap_or_else(latest)
    }
}

impl fmt::Display for UnixTime {
    /// The number of seconds, as the JSON forms write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(feature = "ffi")]
uniffi::custom_type!(UnixTime, SystemTime, {
    lower: |time| SystemTime::from(time.min(UnixTime::FOREIGN_MAX)),
    // A time before 1970 from Kotlin or Swift is an error, not 1970: the
    // functions that take one report it as their typed `InvalidNumber`.
    try_lift: |time| match time.duration_since(UNIX_EPOCH) {
        Ok(since) => Ok(UnixTime(since.as_secs())),
        Err(_) => Err(crate::Error::InvalidNumber {
            what: "time".into(),
            reason: "it is before 1970".into(),
        }
        .into()),
    },
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_times_round_trip_in_whole_seconds() {
        let t = UnixTime::from_secs(1_700_000_000);
        assert_eq!(UnixTime::from(SystemTime::from(t)), t);
        let with_fraction = UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        assert_eq!(UnixTime::from(with_fraction), t);
        let before_1970 = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(UnixTime::from(before_1970), UnixTime::EPOCH);
        assert_eq!(t.to_string(), "1700000000");
        assert_eq!(serde_json::to_string(&t).unwrap(), "1700000000");
    }

    #[test]
    fn the_largest_times_do_not_panic() {
        let far = SystemTime::from(UnixTime::from_secs(u64::MAX));
        assert!(far > SystemTime::from(UnixTime::from_secs(1_700_000_000)));
    }
}
