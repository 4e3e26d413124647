//! The uniffi layer: the only module that knows about Kotlin and Swift.
//!
//! Thin delegation to the core. Objects wrap core values, records and enums
//! mirror core types with `From` conversions, and errors are the core's own
//! [`crate::Error`], exported with its fields. The `*_now` methods are the
//! only place that reads the clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current unix time in seconds (0 if the clock is before 1970).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `Debug` of an exported object is its core value's, which redacts secrets.
macro_rules! debug_as_inner {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.inner.fmt(f)
            }
        }
    )*};
}

#[cfg(feature = "ffi-bench")]
mod bench;
mod delivery;
mod otp;
mod policy;
mod receipt;

// ---------------------------------------------------------------------------
// Errors

/// Every exported function fails with the core's own error, which Kotlin sees
/// as `OtpException` and Swift as `OtpError`, with its fields and message.
type FfiResult<T> = Result<T, crate::Error>;
